"""Helpers shared by the Core II tests (classifier, pipeline, video, export, CLI, checkpoint).

Not a test module (no ``test_`` prefix): imported by the tests as ``from _core_helpers import ...``.
There is no shipped FER model yet, so the tests build small random MobileNets whose BatchNorm
statistics are randomised so that their outputs really depend on the input.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mobilefer.classify import FER2013_LABELS, ExpressionClassifier
from mobilefer.models.factory import ModelSpec
from mobilefer.preset import Preset

__all__ = [
    "GRAY48",
    "SPEC",
    "isolated_home",
    "make_model",
    "make_classifier",
    "read_bgr",
    "write_video",
]

#: The preset of the test classifiers (gray 48x48, FER2013 labels).
GRAY48 = Preset("test-gray48", (48, 48), "gray", (127.5,), (127.5,), labels=FER2013_LABELS)

#: Architecture of the test classifiers (as stored in a checkpoint).
SPEC = ModelSpec("mobilenet_v2", num_classes=7, in_chans=1, width_mult=0.35)


@contextlib.contextmanager
def isolated_home(home: Path, *, offline: bool = True) -> Iterator[Path]:
    """Point ``MOBILEFER_HOME`` at ``home`` (and forbid downloads) for the duration of the block."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MOBILEFER_HOME", str(home))
        if offline:
            mp.setenv("MOBILEFER_OFFLINE", "1")
        yield home


def _randomise_norms(model: nn.Module, seed: int) -> None:
    """Give every BatchNorm random running statistics and affine parameters.

    The running statistics are first calibrated on smooth random images (so that activations stay in
    a sensible range through the whole depth) and then jittered; the classifier weights are scaled up
    so that the softmax is far from uniform. Outputs then vary clearly from one input to the next.
    """
    gen = torch.Generator().manual_seed(seed)
    in_chans = int(getattr(model, "in_chans", 1))
    low = torch.rand((24, in_chans, 6, 6), generator=gen) * 2 - 1
    calib = nn.functional.interpolate(low, size=(48, 48), mode="bilinear", align_corners=False)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batch
    model.train()
    with torch.no_grad():
        model(calib)
        for m in norms:
            assert m.running_mean is not None and m.running_var is not None
            m.running_mean.add_(torch.randn(m.running_mean.shape, generator=gen) * 0.05)
            m.running_var.mul_(torch.empty(m.running_var.shape).uniform_(0.8, 1.25, generator=gen))
            m.weight.copy_(torch.empty(m.weight.shape).uniform_(0.7, 1.3, generator=gen))
            m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
            m.momentum = 0.1
        classifier = getattr(model, "classifier", None)
        if isinstance(classifier, nn.Linear):
            classifier.weight.mul_(3.0)
    model.eval()


def make_model(seed: int = 0, *, arch: str = "mobilenet_v2", in_chans: int = 1) -> nn.Module:
    """A small random MobileNet (width 0.35, 7 classes) with randomised BatchNorm statistics."""
    torch.manual_seed(seed)
    spec = ModelSpec(arch, num_classes=7, in_chans=in_chans, width_mult=0.35)
    model = spec.build()
    _randomise_norms(model, seed)
    return model


def make_classifier(seed: int = 0, *, backend: str = "torch", tta: bool = False) -> ExpressionClassifier:
    """An :class:`ExpressionClassifier` on :func:`make_model` with the :data:`GRAY48` preset."""
    return ExpressionClassifier(make_model(seed), GRAY48, backend=backend, tta=tta, name=f"random-{seed}")  # type: ignore[arg-type]


def read_bgr(path: Path) -> np.ndarray:
    """Read a photo as BGR uint8 (fails the test when OpenCV cannot decode it)."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        pytest.fail(f"OpenCV cannot read {path}")
    return image


def write_video(folder: Path, stem: str, frames: Sequence[np.ndarray], fps: float = 10.0) -> Path:
    """Write ``frames`` (BGR, same size) as a video that OpenCV reads back with the same frame count.

    Tries mp4v/.mp4 first, then MJPG/.avi; fails the test when neither round-trips.
    """
    import cv2

    h, w = frames[0].shape[:2]
    for fourcc, suffix in (("mp4v", ".mp4"), ("MJPG", ".avi")):
        path = folder / f"{stem}{suffix}"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), fps, (w, h))
        if not writer.isOpened():
            continue
        for frame in frames:
            writer.write(frame)
        writer.release()
        capture = cv2.VideoCapture(str(path))
        count = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            assert frame.shape == (h, w, 3)
            count += 1
        capture.release()
        if count == len(frames):
            return path
        path.unlink(missing_ok=True)
    pytest.fail("OpenCV can write neither mp4v/.mp4 nor MJPG/.avi videos that read back here")
