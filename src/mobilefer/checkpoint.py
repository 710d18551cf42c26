"""Classifier checkpoints as safetensors: weights plus JSON metadata (architecture spec, preset,
metrics). No pickle anywhere: loading a checkpoint never executes code."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mobilefer.errors import ModelFormatError
from mobilefer.models.factory import ModelSpec
from mobilefer.preset import Preset

__all__ = ["FORMAT", "Checkpoint", "save_classifier", "load_classifier", "atomic_write_bytes", "atomic_save_file"]

FORMAT = "mobilefer-classifier-v1"


@dataclass(frozen=True)
class Checkpoint:
    """A loaded classifier checkpoint.

    Attributes:
        model: The network in eval mode.
        preset: Its preprocessing preset.
        spec: Architecture description.
        metrics: Metrics recorded at save time (may be empty).
        path: The file it came from.
    """

    model: nn.Module
    preset: Preset
    spec: ModelSpec
    metrics: dict[str, float]
    path: Path


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder and ``os.replace``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_save_file(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str]) -> None:
    """``safetensors.torch.save`` to ``path`` atomically."""
    from safetensors.torch import save

    contiguous = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_write_bytes(path, save(contiguous, metadata=metadata))


def save_classifier(
    path: str | Path,
    model: nn.Module,
    spec: ModelSpec,
    preset: Preset,
    metrics: dict[str, float] | None = None,
) -> None:
    """Save weights + spec + preset (+ metrics) as one safetensors file, atomically."""
    state = {k: v for k, v in model.state_dict().items()}
    metadata = {
        "format": FORMAT,
        "model": json.dumps(spec.to_dict(), sort_keys=True),
        "preset": preset.to_json(),
        "metrics": json.dumps(metrics or {}, sort_keys=True),
    }
    atomic_save_file(state, path, metadata)


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of a safetensors file (validated header), without loading tensors."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            return dict(fh.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFormatError(f"{path}: not a valid safetensors file ({exc})") from exc


def load_classifier(path: str | Path) -> Checkpoint:
    """Load a classifier saved by :func:`save_classifier` (or a training run's best/last file).

    Raises:
        ModelFormatError: If the file is not a mobilefer classifier checkpoint or its tensors do not fit
            the architecture it describes.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    meta = read_metadata(path)
    if meta.get("format") != FORMAT:
        raise ModelFormatError(f"{path}: not a mobilefer classifier checkpoint (format {meta.get('format')!r})")
    try:
        spec = ModelSpec.from_dict(json.loads(meta["model"]))
        preset = Preset.from_json(meta["preset"])
        metrics: dict[str, Any] = json.loads(meta.get("metrics", "{}"))
    except (KeyError, json.JSONDecodeError, ValueError) as exc:
        raise ModelFormatError(f"{path}: damaged checkpoint metadata ({exc})") from exc
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise ModelFormatError(f"{path}: cannot read tensors ({exc})") from exc
    prefix = "model."
    if all(k.startswith(prefix) or k.startswith("ema.") or k.startswith("optim.") for k in state):
        source = "ema." if any(k.startswith("ema.") for k in state) else prefix
        state = {k[len(source) :]: v for k, v in state.items() if k.startswith(source)}
    model = spec.build()
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelFormatError(f"{path}: weights do not match the {spec.name} architecture ({exc})") from exc
    model.eval()
    return Checkpoint(model, preset, spec, {k: float(v) for k, v in metrics.items()}, path)
