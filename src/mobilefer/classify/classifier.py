"""The expression classifier: crops faces with the preset's rule and predicts class probabilities."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from mobilefer.errors import InvalidImageError, InvalidInputError, NoShippedModelError, WeightsError
from mobilefer.preset import FER2013_LABELS, Preset

__all__ = [
    "Backend",
    "ExpressionClassifier",
    "FER2013_LABELS",
    "DEFAULT_CLASSIFIER",
    "default_checkpoint_path",
    "as_crop_batch",
    "softmax",
]

logger = logging.getLogger(__name__)

Backend = Literal["torch", "onnxruntime"]
BACKENDS: tuple[str, ...] = ("torch", "onnxruntime")


#: Registry name of the shipped FER2013 classifier.
DEFAULT_CLASSIFIER = "fer2013-mobilenetv2"


def default_checkpoint_path() -> Path:
    """Path of the shipped classifier (verified against its registry SHA-256).

    Raises:
        NoShippedModelError: If this build of mobilefer ships no classifier.
        ChecksumMismatchError: If the packaged file is damaged.
    """
    from mobilefer.weights import get_record, list_records, resolve

    if DEFAULT_CLASSIFIER not in {r.name for r in list_records()}:
        raise NoShippedModelError(
            "this mobilefer build ships no default expression classifier yet; pass "
            "classifier=ExpressionClassifier.from_checkpoint(PATH) with a model trained by `mobilefer train`"
        )
    record = get_record(DEFAULT_CLASSIFIER)
    try:
        return resolve(record, offline=True)
    except WeightsError as exc:
        if isinstance(exc, FileNotFoundError):
            raise NoShippedModelError(
                f"the shipped classifier {record.filename} is missing from the installed package ({exc}); reinstall mobilefer"
            ) from exc
        raise


def _check_one(index: int, crop: Any) -> np.ndarray:
    if not isinstance(crop, np.ndarray):
        raise InvalidImageError(f"crop {index}: expected a numpy uint8 array, got {type(crop).__name__}")
    if crop.dtype != np.uint8:
        raise InvalidImageError(f"crop {index}: expected dtype uint8 (0-255 pixels), got {crop.dtype}")
    if not (crop.ndim == 2 or (crop.ndim == 3 and crop.shape[2] in (1, 3, 4))):
        raise InvalidImageError(
            f"crop {index}: expected shape (H, W), (H, W, 1), (H, W, 3) BGR or (H, W, 4) BGRA, got {crop.shape}"
        )
    if crop.shape[0] < 1 or crop.shape[1] < 1:
        raise InvalidImageError(f"crop {index}: empty image of shape {crop.shape}")
    return crop


def as_crop_batch(crops: Any) -> list[np.ndarray]:
    """Validate crops: a list/tuple of uint8 images or an (N, H, W[, C]) uint8 array.

    Raises:
        InvalidImageError: For anything else (the message names the offending crop).
    """
    if isinstance(crops, np.ndarray):
        if crops.dtype != np.uint8 or crops.ndim not in (3, 4):
            raise InvalidImageError(
                f"predict_proba() takes a list of crops or an (N, H, W[, C]) uint8 array, got {crops.dtype} {crops.shape}"
            )
        if crops.ndim == 3 and crops.shape[2] in (3, 4):
            # (H, W, 3) is one colour image, not H gray crops of width 3: refuse instead of guessing.
            raise InvalidImageError(
                f"predict_proba() got a single array of shape {crops.shape}, which looks like one BGR/BGRA image; "
                "pass [image] (a list) or a batch of shape (N, H, W, C)"
            )
        return [_check_one(i, c) for i, c in enumerate(crops)]
    if isinstance(crops, (list, tuple)):
        return [_check_one(i, c) for i, c in enumerate(crops)]
    raise InvalidImageError(f"predict_proba() takes a list of crops or an uint8 array, got {type(crops).__name__}")


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (N, K) logits in float32 (max-subtracted for stability)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    probs: np.ndarray = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
    return probs


class ExpressionClassifier:
    """A face-expression classifier: a network plus its preprocessing :class:`~mobilefer.preset.Preset`.

    Args:
        model: A classification network taking the preset's (N, C, H, W) input and returning logits.
        preset: Input description (size, colour, mean/std, labels, crop rules).
        backend: ``"torch"`` or ``"onnxruntime"`` (runs mobilefer's verified ONNX export of ``model``).
        tta: Average the logits of each crop and its horizontal mirror (about 2x the classifier cost).
        threads: onnxruntime intra-op threads (``None``: its default).
        name: A label for logs and ``repr``.
    """

    def __init__(
        self,
        model: nn.Module,
        preset: Preset,
        *,
        backend: Backend = "torch",
        tta: bool = False,
        threads: int | None = None,
        name: str = "custom",
    ) -> None:
        if not isinstance(model, nn.Module):
            raise InvalidInputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(preset, Preset):
            raise InvalidInputError(f"preset must be a mobilefer.preset.Preset, got {type(preset).__name__}")
        if not preset.labels:
            raise InvalidInputError(f"preset {preset.name!r} has no labels; a classifier needs its class names")
        if backend not in BACKENDS:
            raise InvalidInputError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if not isinstance(tta, bool):
            raise InvalidInputError(f"tta must be True or False, got {tta!r}")
        self.model = model.eval()
        self.preset = preset
        self.backend: Backend = backend
        self.tta = tta
        self.threads = threads
        self.name = name
        self._session: Any = None
        if backend == "onnxruntime":
            from mobilefer.runtime import cached_export, make_session

            self._session = make_session(cached_export(self), threads)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_checkpoint(cls, path: str | Path, **kwargs: Any) -> ExpressionClassifier:
        """Load a classifier saved by ``mobilefer train`` (``best.safetensors``) or :func:`save_classifier`."""
        from mobilefer.checkpoint import load_classifier

        ckpt = load_classifier(path)
        kwargs.setdefault("name", Path(path).stem)
        return cls(ckpt.model, ckpt.preset, **kwargs)

    @classmethod
    def default(cls, **kwargs: Any) -> ExpressionClassifier:
        """The shipped FER2013 classifier (offline, from the installed package).

        Raises:
            NoShippedModelError: If this build ships none.
        """
        kwargs.setdefault("name", DEFAULT_CLASSIFIER)
        return cls.from_checkpoint(default_checkpoint_path(), **kwargs)

    def with_backend(self, backend: Backend, threads: int | None = None) -> ExpressionClassifier:
        """The same weights and preset on another backend."""
        return ExpressionClassifier(
            self.model, self.preset, backend=backend, tta=self.tta, threads=threads, name=self.name
        )

    # ------------------------------------------------------------------ inference
    @property
    def labels(self) -> tuple[str, ...]:
        return self.preset.labels

    @property
    def num_classes(self) -> int:
        return len(self.preset.labels)

    def crop(self, image: np.ndarray, box: Sequence[float], detector: str = "default") -> np.ndarray:
        """Cut the face for ``box`` out of ``image`` with the crop rule the preset holds for ``detector``."""
        return self.preset.crop_rule(detector).crop(image, box)

    def preprocess(self, crops: Any) -> np.ndarray:
        """Crops (any size, BGR/BGRA/gray uint8) → (N, C, H, W) float32 network input."""
        return self.preset.preprocess(as_crop_batch(crops))

    def _logits(self, x: np.ndarray) -> np.ndarray:
        if self._session is not None:
            out = self._session.run(["logits"], {"input": x})[0]
            return np.asarray(out, dtype=np.float32)
        with torch.inference_mode():
            logits: np.ndarray = self.model(torch.from_numpy(x)).float().numpy()
        return logits

    def predict_logits(self, crops: Any) -> np.ndarray:
        """(N, num_classes) float32 logits (mirror-averaged when ``tta``)."""
        x = self.preprocess(crops)
        if x.shape[0] == 0:
            return np.zeros((0, self.num_classes), np.float32)
        logits = self._logits(x)
        if self.tta:
            logits = (logits + self._logits(np.ascontiguousarray(x[:, :, :, ::-1]))) / 2
        return logits

    def predict_proba(self, crops: Any) -> np.ndarray:
        """(N, num_classes) float32 probabilities for a list of crops or an (N, H, W[, C]) uint8 array."""
        return softmax(self.predict_logits(crops))

    def __repr__(self) -> str:
        return (
            f"ExpressionClassifier({self.name!r}, backend={self.backend!r}, preset={self.preset.name!r}, "
            f"input={self.preset.input_size}, {self.preset.color}, tta={self.tta})"
        )
