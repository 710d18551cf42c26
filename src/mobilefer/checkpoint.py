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

from mobilefer.errors import InvalidInputError, ModelFormatError, WeightsNotFoundError
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
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; outputs are ordinary files
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
    """The metadata of a safetensors file (validated header), without loading tensors.

    Raises:
        WeightsNotFoundError: If ``path`` is not a file.
        ModelFormatError: If it is not a readable safetensors file.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"checkpoint file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as fh:
            return dict(fh.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFormatError(f"{path}: not a valid safetensors file ({exc})") from exc


def _check_shapes_before_building(path: Path, spec: ModelSpec, shapes: dict[str, tuple[int, ...]]) -> None:
    """Refuse a spec that does not describe the file's tensors, before allocating its network.

    The architecture is built on the ``meta`` device (shapes only, no memory), so damaged or hostile
    metadata describing a huge network (``width_mult=1e6``, ``num_classes=1e12``) is refused instead
    of allocating terabytes; the real network then needs about as much memory as the file holds.
    """
    try:
        with torch.device("meta"):
            skeleton = spec.build()
    except Exception as exc:  # noqa: BLE001 - absurd sizes fail in many ways (TypeError, RuntimeError, ...)
        first_line = (str(exc).splitlines() or [""])[0]  # torch appends C++ stack frames
        raise ModelFormatError(
            f"{path}: the checkpoint describes an architecture this build cannot create "
            f"({type(exc).__name__}: {first_line})"
        ) from exc
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    if expected != shapes:
        missing = sorted(set(expected) - set(shapes))
        unexpected = sorted(set(shapes) - set(expected))
        wrong = sorted(k for k in expected if k in shapes and expected[k] != shapes[k])
        raise ModelFormatError(
            f"{path}: weights do not match the {spec.name} architecture it describes (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}, wrong shape {[(k, shapes[k], expected[k]) for k in wrong[:3]]})"
        )


def load_classifier(path: str | Path) -> Checkpoint:
    """Load a classifier saved by :func:`save_classifier` (or a training run's best/last file).

    Raises:
        WeightsNotFoundError: If ``path`` does not exist (also a ``FileNotFoundError``).
        ModelFormatError: If the file is not a mobilefer classifier checkpoint (wrong format tag, damaged
            metadata, truncated, or tensors that do not fit the architecture it describes).
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
        metrics_raw: Any = json.loads(meta.get("metrics", "{}"))
        metrics = {str(k): float(v) for k, v in dict(metrics_raw).items()}
    except (KeyError, json.JSONDecodeError, ValueError, TypeError) as exc:
        raise ModelFormatError(f"{path}: damaged checkpoint metadata ({exc})") from exc
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise ModelFormatError(f"{path}: cannot read tensors ({exc})") from exc
    prefix = "model."
    if all(k.startswith(prefix) or k.startswith("ema.") or k.startswith("optim.") for k in state):
        source = "ema." if any(k.startswith("ema.") for k in state) else prefix
        state = {k[len(source) :]: v for k, v in state.items() if k.startswith(source)}
    _check_shapes_before_building(path, spec, {k: tuple(v.shape) for k, v in state.items()})
    try:
        model = spec.build()
    except InvalidInputError as exc:
        raise ModelFormatError(f"{path}: the checkpoint describes an architecture this build cannot create ({exc})") from exc
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelFormatError(f"{path}: weights do not match the {spec.name} architecture ({exc})") from exc
    model.eval()
    return Checkpoint(model, preset, spec, metrics, path)
