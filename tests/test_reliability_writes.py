"""Reliability of everything that writes a file: no silent overwrite, atomic replacement.

Outputs that exist are only replaced with ``force``/``--force``. Every file is written to a temporary
file beside the target and moved into place with ``os.replace``, so a write interrupted by an
exception (disk full, Ctrl-C) leaves the previous file byte-for-byte intact and no temporary file
behind, and a process killed mid-write (SIGKILL) leaves the previous file intact too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from _core_helpers import GRAY48, SPEC, isolated_home, make_model, read_bgr, write_video
from mobilefer.checkpoint import load_classifier, save_classifier
from mobilefer.cli import main as cli_main
from mobilefer.errors import OutputExistsError
from mobilefer.export.onnx import to_onnx
from mobilefer.export.tnn import read_tnn, to_tnn

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def _home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with isolated_home(tmp_path_factory.mktemp("mobilefer-home")) as home:
        yield home


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file in ``folder`` (recursively, hidden temp files included) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


class Interrupt:
    """Replaces ``os.replace`` (or ``os.fsync``) so that the n-th call raises ``error``."""

    def __init__(self, real: Callable[..., Any], error: BaseException, at: int = 1) -> None:
        self.real, self.error, self.at, self.calls = real, error, at, 0

    def __call__(self, *args: Any) -> Any:
        self.calls += 1
        if self.calls == self.at:
            raise self.error
        return self.real(*args)


ERRORS = [
    pytest.param(OSError(28, "No space left on device"), id="disk-full"),
    pytest.param(KeyboardInterrupt(), id="ctrl-c"),
]


def _tiny_net() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)).eval()


# ----------------------------------------------------------------------------------------------- library writers


@pytest.mark.parametrize("error", ERRORS)
@pytest.mark.parametrize("hook", ["replace", "fsync"])
def test_to_onnx_interrupted_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: BaseException,
                                                hook: str) -> None:
    path = tmp_path / "model.onnx"
    to_onnx(_tiny_net(), path, input_size=16)
    before = snapshot(tmp_path)
    with pytest.raises(OutputExistsError, match="--force"):
        to_onnx(_tiny_net(), path, input_size=16)
    assert snapshot(tmp_path) == before
    monkeypatch.setattr(os, hook, Interrupt(getattr(os, hook), error))
    with pytest.raises(type(error)):
        to_onnx(nn.Sequential(nn.Conv2d(3, 2, 1), nn.Flatten()).eval(), path, input_size=16, force=True)
    monkeypatch.undo()
    assert snapshot(tmp_path) == before  # same bytes, no temp file left


@pytest.mark.parametrize("error", ERRORS)
@pytest.mark.parametrize("at", [1, 2, 3], ids=["first-write", "second-write", "second-rename"])
def test_to_tnn_interrupted_keeps_both_old_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: BaseException,
                                                 at: int) -> None:
    prefix = tmp_path / "model"
    files = to_tnn(_tiny_net(), prefix, input_size=16)
    before = snapshot(tmp_path)
    with pytest.raises(OutputExistsError, match="force"):
        to_tnn(_tiny_net(), prefix, input_size=16)
    # at=1/2: the first/second file's fsync fails; at=3: the second os.replace fails after the first
    # file was already moved into place, which must be rolled back.
    hook, nth = ("fsync", at) if at < 3 else ("replace", 2)
    monkeypatch.setattr(os, hook, Interrupt(getattr(os, hook), error, at=nth))
    other = nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    with pytest.raises(type(error)):
        to_tnn(other, prefix, input_size=16, force=True)
    monkeypatch.undo()
    assert snapshot(tmp_path) == before
    assert read_tnn(files.proto).outputs  # the old pair still reads


def test_to_tnn_without_interruption_replaces_both_files(tmp_path: Path) -> None:
    prefix = tmp_path / "model"
    to_tnn(_tiny_net(), prefix, input_size=16)
    other = nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    files = to_tnn(other, prefix, input_size=16, force=True)
    assert sorted(snapshot(tmp_path)) == ["model.tnnmodel", "model.tnnproto"]  # no backups or temps left
    assert {layer.type for layer in read_tnn(files.proto).layers} >= {"Convolution"}


@pytest.mark.parametrize("error", ERRORS)
def test_save_classifier_interrupted_keeps_the_old_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              error: BaseException) -> None:
    path = tmp_path / "best.safetensors"
    save_classifier(path, make_model(0), SPEC, GRAY48, {"acc": 0.5})
    before = snapshot(tmp_path)
    monkeypatch.setattr(os, "replace", Interrupt(os.replace, error))
    with pytest.raises(type(error)):
        save_classifier(path, make_model(1), SPEC, GRAY48, {"acc": 0.9})
    monkeypatch.undo()
    assert snapshot(tmp_path) == before
    assert load_classifier(path).metrics == {"acc": 0.5}


def test_checkpoint_killed_mid_write_leaves_the_old_file(tmp_path: Path) -> None:
    """SIGKILL after the new bytes are written but before the rename: the old checkpoint stays."""
    path = tmp_path / "best.safetensors"
    save_classifier(path, make_model(0), SPEC, GRAY48, {"acc": 0.5})
    old = path.read_bytes()
    script = tmp_path / "writer.py"
    script.write_text(
        "import os, sys, time\n"
        "from _core_helpers import GRAY48, SPEC, make_model\n"
        "from mobilefer.checkpoint import save_classifier\n"
        "real_fsync = os.fsync\n"
        "def hang(fd):\n"
        "    real_fsync(fd)\n"
        "    sys.stdout.write('written\\n'); sys.stdout.flush()\n"
        "    time.sleep(600)\n"
        "os.fsync = hang\n"
        f"save_classifier({str(path)!r}, make_model(1), SPEC, GRAY48, {{'acc': 0.9}})\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "tests")]), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, env=env)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"written\n"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert path.read_bytes() == old and load_classifier(path).metrics == {"acc": 0.5}
    # The killed writer's complete-but-unrenamed temp file is a hidden sibling, never the checkpoint.
    stale = [p.name for p in tmp_path.iterdir() if p.name.startswith(".best.safetensors.") and p.name.endswith(".tmp")]
    assert len(stale) == 1 and len(list(tmp_path.glob("*.safetensors"))) == 1


# ----------------------------------------------------------------------------------------------- CLI outputs


@pytest.fixture(scope="module")
def cli_inputs(tmp_path_factory: pytest.TempPathFactory, shared_images: list[Path]) -> tuple[list[str], list[Path]]:
    import cv2

    folder = tmp_path_factory.mktemp("cli")
    checkpoint = folder / "clf.safetensors"
    save_classifier(checkpoint, make_model(0), SPEC, GRAY48)
    photo = cv2.resize(read_bgr(shared_images[0]), (320, 240), interpolation=cv2.INTER_AREA)
    image = folder / "photo.jpg"
    cv2.imwrite(str(image), photo)
    video = write_video(folder, "clip", [np.roll(photo, 4 * i, axis=1) for i in range(5)])
    args = ["--detector", "haar", "--backend", "torch", "--classifier", str(checkpoint)]
    return args, [image, video]


@pytest.mark.parametrize("error", ERRORS)
@pytest.mark.parametrize("which", [0, 1], ids=["image", "video"])
def test_cli_outputs_need_force_and_survive_interrupted_writes(
    cli_inputs: tuple[list[str], list[Path]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], error: BaseException, which: int,
) -> None:
    args, sources = cli_inputs
    out = tmp_path / "out"
    command = ["predict", str(sources[which]), "-o", str(out), *args]
    assert cli_main(command) == 0
    before = snapshot(out)
    assert len(before) == 2  # annotated file + JSON
    assert cli_main(command) == 1  # no --force: refused before any work
    assert "--force" in capsys.readouterr().err
    assert snapshot(out) == before
    monkeypatch.setattr(os, "replace", Interrupt(os.replace, error))
    if isinstance(error, KeyboardInterrupt):
        assert cli_main([*command, "--force"]) == 130
    else:
        assert cli_main([*command, "--force"]) == 1
        assert "No space left" in capsys.readouterr().err
    monkeypatch.undo()
    assert snapshot(out) == before  # old outputs intact, no temp files
