"""Evaluate a classifier checkpoint on labelled data in any supported form.

A checkpoint is a run's ``best.safetensors`` (weights + spec + preset), its ``last.safetensors``
(training state; the run's ``config.yaml`` and ``preset.json`` beside it describe the model; the EMA
weights are used when the run kept them), a run directory (its ``best.safetensors``) or ``"default"``
(the model shipped with mobilefer). Images are loaded at the checkpoint's preset size and colour.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mobilefer.checkpoint import FORMAT, Checkpoint, load_classifier, read_metadata
from mobilefer.errors import (
    DataError,
    InvalidConfigError,
    InvalidInputError,
    ModelFormatError,
    NoShippedModelError,
)
from mobilefer.preset import Preset
from mobilefer.train.data import ImageSet, align_classes, infer_format, load_data
from mobilefer.train.metrics import EvalResult

__all__ = ["Evaluation", "load_checkpoint", "load_eval_data", "evaluate_checkpoint"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Evaluation:
    """An evaluation run.

    Attributes:
        checkpoint: The checkpoint file evaluated.
        data: The data path.
        format: The data form (``fer2013_npz``, ``fer2013_csv`` or ``imagefolder``).
        tta: Whether horizontal-flip test-time augmentation was used.
        result: Accuracy, macro-F1, per-class metrics and confusion matrix.
    """

    checkpoint: Path
    data: Path
    format: str
    tta: bool
    result: EvalResult

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the :meth:`EvalResult.to_dict` keys plus ``checkpoint``, ``data``, ``format``, ``tta``."""
        return {
            "checkpoint": str(self.checkpoint),
            "data": str(self.data),
            "format": self.format,
            "tta": self.tta,
            **self.result.to_dict(),
        }


def _default_checkpoint() -> Path:
    """The shipped model's checkpoint (``mobilefer.classify.default_checkpoint_path()``)."""
    import importlib

    try:
        finder = getattr(importlib.import_module("mobilefer.classify"), "default_checkpoint_path", None)
    except ImportError:
        finder = None
    if finder is None:
        raise NoShippedModelError(
            "this mobilefer installation ships no default expression model (mobilefer.classify."
            "default_checkpoint_path is unavailable); pass a checkpoint file instead of 'default'"
        )
    return Path(finder())


def _load_train_state(path: Path) -> Checkpoint:
    """A model from a run's ``last.safetensors`` (training state) and the run files beside it."""
    import yaml
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from mobilefer.train.config import config_from_dict
    from mobilefer.train.trainer import default_preset, model_spec

    run_dir = path.parent
    config_file = run_dir / "config.yaml"
    if not config_file.is_file():
        raise ModelFormatError(f"{path}: a training state needs its run's config.yaml beside it ({config_file})")
    try:
        raw = yaml.safe_load(config_file.read_text(encoding="utf-8"))
        cfg = config_from_dict(raw, base_dir=run_dir, check_paths=False)
    except (yaml.YAMLError, InvalidConfigError) as exc:
        raise ModelFormatError(f"{config_file}: not a valid run config ({exc})") from exc
    preset_file, metrics_file = run_dir / "preset.json", run_dir / "metrics.json"
    try:
        if preset_file.is_file():
            preset = Preset.from_json(preset_file.read_text(encoding="utf-8"))
        elif metrics_file.is_file():
            classes = tuple(str(c) for c in json.loads(metrics_file.read_text(encoding="utf-8"))["classes"])
            preset = default_preset(cfg, classes)
        else:
            raise ModelFormatError(f"{path}: neither preset.json nor metrics.json beside it names the classes")
    except (InvalidInputError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ModelFormatError(f"{run_dir}: damaged preset.json/metrics.json ({exc})") from exc
    spec = model_spec(cfg, len(preset.labels))
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise ModelFormatError(f"{path}: cannot read tensors ({exc})") from exc
    prefix = "ema." if any(k.startswith("ema.") for k in tensors) else "model."
    state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    model = spec.build()
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelFormatError(f"{path}: weights do not match the {spec.name} architecture ({exc})") from exc
    model.eval()
    logger.info("loaded the %s weights of training state %s", prefix.rstrip("."), path)
    return Checkpoint(model, preset, spec, {}, path)


def load_checkpoint(source: str | Path) -> Checkpoint:
    """Load a classifier for evaluation.

    Args:
        source: ``"default"``, a ``best.safetensors``/``last.safetensors`` file, a classifier checkpoint
            saved by :func:`mobilefer.checkpoint.save_classifier`, or a run directory.

    Raises:
        NoShippedModelError: For ``"default"`` when no model is shipped.
        ModelFormatError: If the file is not a mobilefer checkpoint or does not fit its architecture.
        FileNotFoundError: If the file does not exist.
    """
    from mobilefer.train.trainer import BEST, LAST, STATE_FORMAT

    if str(source) == "default":
        path = _default_checkpoint()
    else:
        path = Path(source)
        if path.is_dir():
            candidates = [path / BEST, path / LAST]
            found = [c for c in candidates if c.is_file()]
            if not found:
                raise FileNotFoundError(f"{path}: no {BEST} or {LAST} in this folder")
            path = found[0]
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    kind = read_metadata(path).get("format")
    if kind == STATE_FORMAT:
        return _load_train_state(path)
    if kind != FORMAT:
        raise ModelFormatError(f"{path}: not a mobilefer checkpoint (format {kind!r})")
    return load_classifier(path)


def load_eval_data(
    path: str | Path,
    preset: Preset,
    fmt: str | None = None,
    *,
    usage: str = "PublicTest",
    skip_unreadable: bool = False,
) -> tuple[ImageSet, str]:
    """Load labelled images at ``preset``'s size and colour, labels in ``preset.labels`` order.

    Returns:
        The images and the data form used.

    Raises:
        DataError: If the data is missing, malformed, or has classes the preset does not know.
    """
    form = infer_format(path) if fmt is None else fmt
    classes: tuple[str, ...] = ()
    if form == "imagefolder" and preset.labels:
        root = Path(path)
        present = {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")} if root.is_dir() else set()
        known = tuple(c for c in preset.labels if c in present)
        extra = sorted(present - set(preset.labels))
        if known and extra:
            raise DataError(f"{root}: class folder(s) {extra} are not classes of the model {list(preset.labels)}")
        # Read the model's classes in its order when the folder names match them; otherwise all folders.
        classes = known
    data = load_data(
        path, form, image_size=preset.input_size, color=preset.color, usage=usage, classes=classes,
        skip_unreadable=skip_unreadable,
    )
    if preset.labels:
        data = align_classes(data, preset.labels)
    return data, form


def evaluate_checkpoint(
    checkpoint: str | Path | Checkpoint,
    data: str | Path,
    *,
    fmt: str | None = None,
    usage: str = "PublicTest",
    tta: bool = False,
    batch_size: int = 256,
    skip_unreadable: bool = False,
) -> Evaluation:
    """Evaluate a checkpoint on labelled data.

    Args:
        checkpoint: Anything :func:`load_checkpoint` accepts, or a loaded :class:`Checkpoint`.
        data: ``.npz``, Kaggle ``.csv`` or a folder of class folders.
        fmt: Force the data form instead of inferring it from ``data``.
        usage: Rows of a csv to read (its ``Usage`` column).
        tta: Average the logits of each image and its mirror image.
        batch_size: Evaluation batch size.
        skip_unreadable: Skip undecodable images in folders (logged) instead of failing.
    """
    from mobilefer.train.trainer import evaluate_arrays

    if batch_size < 1:
        raise InvalidInputError(f"batch_size must be >= 1, got {batch_size}")
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    images, form = load_eval_data(data, ckpt.preset, fmt, usage=usage, skip_unreadable=skip_unreadable)
    result = evaluate_arrays(ckpt.model, images, ckpt.preset, batch_size, tta=tta)
    return Evaluation(ckpt.path, Path(data), form, tta, result)
