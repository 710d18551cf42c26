"""Typed training configuration: dataclass sections loaded from YAML with strict validation.

Sections: ``data``, ``model``, ``optim``, ``schedule``, ``augment``, ``train``. Unknown keys, wrong types,
impossible values and missing data paths are rejected with :class:`~mobilefer.errors.InvalidConfigError`
naming the offending key (e.g. ``optim.lr``).
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from mobilefer.errors import InvalidConfigError

__all__ = [
    "DataConfig",
    "ModelConfig",
    "OptimConfig",
    "ScheduleConfig",
    "AugmentConfig",
    "TrainSection",
    "TrainConfig",
    "load_config",
    "config_from_dict",
    "config_to_dict",
    "dump_config",
    "apply_overrides",
]

DataFormat = Literal["fer2013_npz", "fer2013_csv", "imagefolder"]


@dataclass(frozen=True)
class DataConfig:
    """Where the images come from and how they are presented to the network.

    Attributes:
        format: ``fer2013_npz`` (keys images/labels/ids/classes), ``fer2013_csv`` (Kaggle
            ``emotion,pixels,Usage``) or ``imagefolder`` (``root/<class>/*``).
        train: Training data: npz file, csv file, or class-folder root.
        val: Validation data (same form). For csv, the same file is read with ``val_usage``. If empty,
            a seeded stratified ``val_fraction`` split of ``train`` is used.
        train_usage: csv ``Usage`` value of the training rows.
        val_usage: csv ``Usage`` value of the validation rows.
        val_fraction: Fraction held out when ``val`` is empty.
        image_size: Network input side in pixels (square).
        color: ``gray`` or ``rgb``.
        labels: Class names; empty = taken from the data.
        train_subset: Use only this many (seeded, stratified) training images; 0 = all.
        val_subset: Likewise for validation.
        skip_unreadable: Skip images that cannot be decoded (reported with their path) instead of failing.
        num_workers: DataLoader workers for folder datasets (in-memory data needs none).
    """

    format: DataFormat = "fer2013_npz"
    train: str = ""
    val: str = ""
    train_usage: str = "Training"
    val_usage: str = "PublicTest"
    val_fraction: float = 0.1
    image_size: int = 48
    color: Literal["gray", "rgb"] = "gray"
    labels: tuple[str, ...] = ()
    train_subset: int = 0
    val_subset: int = 0
    skip_unreadable: bool = False
    num_workers: int = 0


@dataclass(frozen=True)
class ModelConfig:
    """Backbone choice.

    Attributes:
        name: ``mobilenet_v2``, ``mobilenet_v1``, ``timm:<name>`` (e.g. ``timm:resnet18``) or ``googlenet``.
        width_mult: Width multiplier (ours only).
        stem_stride: 1 or 2 (ours only).
        dropout: Dropout before the classifier.
        init_checkpoint: Optional local torchvision/timm state-dict file to start from (never downloaded).
    """

    name: str = "mobilenet_v2"
    width_mult: float = 1.0
    stem_stride: int = 2
    dropout: float = 0.2
    init_checkpoint: str = ""


@dataclass(frozen=True)
class OptimConfig:
    """Optimizer and loss.

    Attributes:
        name: ``adamw`` or ``sgd``.
        lr: Peak learning rate (reached after warm-up).
        weight_decay: Decoupled (AdamW) or L2 (SGD) weight decay of conv/linear weights; biases and norm
            parameters get none.
        momentum: SGD momentum.
        nesterov: SGD Nesterov momentum.
        label_smoothing: Label smoothing of the cross-entropy targets.
        grad_clip: Clip the global gradient norm to this (0 = off).
    """

    name: Literal["adamw", "sgd"] = "adamw"
    lr: float = 2e-3
    weight_decay: float = 0.05
    momentum: float = 0.9
    nesterov: bool = True
    label_smoothing: float = 0.1
    grad_clip: float = 0.0


@dataclass(frozen=True)
class ScheduleConfig:
    """Learning-rate schedule: linear warm-up, then cosine decay, stepped every batch.

    Attributes:
        epochs: Training epochs.
        warmup_epochs: Linear warm-up length in epochs (may be fractional).
        min_lr_ratio: Final learning rate as a fraction of ``optim.lr``.
    """

    epochs: int = 30
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.01


@dataclass(frozen=True)
class AugmentConfig:
    """Face-friendly augmentation computed on tensors.

    Attributes:
        hflip: Probability of a horizontal flip.
        scale: (min, max) zoom of the random resized crop (1.0 = no zoom).
        shift: Maximum translation as a fraction of the side.
        rotate: Maximum rotation in degrees.
        brightness: Maximum additive brightness change (fraction of the range).
        contrast: Maximum multiplicative contrast change.
        erasing: Probability of random erasing of one rectangle.
        mixup: Mixup alpha (0 = off).
        cutmix: CutMix alpha (0 = off).
        mix_prob: Probability a batch is mixed when mixup/cutmix is on.
    """

    hflip: float = 0.5
    scale: tuple[float, float] = (0.85, 1.15)
    shift: float = 0.1
    rotate: float = 10.0
    brightness: float = 0.2
    contrast: float = 0.2
    erasing: float = 0.25
    mixup: float = 0.0
    cutmix: float = 0.0
    mix_prob: float = 0.5


@dataclass(frozen=True)
class TrainSection:
    """Loop settings.

    Attributes:
        name: Run name; the run directory is ``RUNS_DIR/<name>-<timestamp>``.
        seed: Global seed (data order, augmentation, initialisation).
        batch_size: Per-process batch size.
        eval_batch_size: Batch size for evaluation.
        threads: torch intra-op threads (0 = leave torch's default).
        channels_last: Use the channels-last memory format (faster on CPUs for depthwise convs).
        class_balance: ``none``, ``loss`` (class-weighted loss) or ``sampler`` (weighted sampling).
        balance_power: Weights are ``(1 / frequency) ** balance_power``, normalised to mean 1.
        ema_decay: EMA of the weights (0 = off); the EMA model is the one evaluated and saved.
        progress: Show tqdm progress bars.
        max_steps_per_epoch: Cap the steps of each epoch (0 = no cap; for smoke tests).
        plots: Write ``curves.png`` and ``confusion_matrix.png`` after every epoch (false skips them,
            e.g. in smoke tests; matplotlib takes about a second per plot on a small CPU).
    """

    name: str = "run"
    seed: int = 0
    batch_size: int = 128
    eval_batch_size: int = 256
    threads: int = 0
    channels_last: bool = True
    class_balance: Literal["none", "loss", "sampler"] = "none"
    balance_power: float = 0.5
    ema_decay: float = 0.0
    progress: bool = True
    max_steps_per_epoch: int = 0
    plots: bool = True


@dataclass(frozen=True)
class TrainConfig:
    """A complete training configuration (one YAML file; each section a mapping)."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainSection = field(default_factory=TrainSection)


_SECTIONS: dict[str, type[Any]] = {
    "data": DataConfig,
    "model": ModelConfig,
    "optim": OptimConfig,
    "schedule": ScheduleConfig,
    "augment": AugmentConfig,
    "train": TrainSection,
}


_YAML11_EXPONENT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _coerce(key: str, annotation: Any, value: Any) -> Any:
    """Check ``value`` against the (resolved) type ``annotation``; return it in canonical form."""
    origin = get_origin(annotation)
    if origin is Literal:
        allowed = get_args(annotation)
        if value not in allowed:
            raise InvalidConfigError(f"{key}: must be one of {list(allowed)}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        raise InvalidConfigError(f"{key}: unsupported union type")  # pragma: no cover - not used
    if origin is tuple:
        args = get_args(annotation)
        if not isinstance(value, (list, tuple)):
            raise InvalidConfigError(f"{key}: must be a list, got {type(value).__name__} {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(f"{key}[{i}]", args[0], v) for i, v in enumerate(value))
        if len(value) != len(args):
            raise InvalidConfigError(f"{key}: must have {len(args)} items, got {len(value)}")
        return tuple(_coerce(f"{key}[{i}]", a, v) for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if annotation is bool:
        if not isinstance(value, bool):
            raise InvalidConfigError(f"{key}: must be true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidConfigError(f"{key}: must be an integer, got {type(value).__name__} {value!r}")
        return value
    if annotation is float:
        if isinstance(value, str) and _YAML11_EXPONENT.fullmatch(value.strip()):
            value = float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string; accept it as the number it means
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidConfigError(f"{key}: must be a finite number, got {value!r}")
        try:
            number = float(value)
        except OverflowError:  # an int beyond the float range
            number = math.inf
        if not math.isfinite(number):
            raise InvalidConfigError(f"{key}: must be a finite number, got {value!r}")
        return number
    if annotation is str:
        if not isinstance(value, str):
            raise InvalidConfigError(f"{key}: must be a string, got {type(value).__name__} {value!r}")
        return value
    raise InvalidConfigError(f"{key}: unsupported type {annotation!r}")  # pragma: no cover


def _build_section(name: str, cls: type[Any], raw: Any) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise InvalidConfigError(f"{name}: must be a mapping of keys to values, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known, key=str)
    if unknown:
        raise InvalidConfigError(f"{name}.{unknown[0]}: unknown key (valid keys: {', '.join(sorted(known))})")
    values = {k: _coerce(f"{name}.{k}", hints[k], v) for k, v in raw.items()}
    return cls(**values)


def _check_values(cfg: TrainConfig, base_dir: Path | None, check_paths: bool = True) -> None:
    def bad(key: str, msg: str) -> InvalidConfigError:
        return InvalidConfigError(f"{key}: {msg}")

    d, m, o, s, a, t = cfg.data, cfg.model, cfg.optim, cfg.schedule, cfg.augment, cfg.train
    if not d.train:
        raise bad("data.train", "is required (path to the training data)")
    for key, value in (("data.train", d.train), ("data.val", d.val)):
        if value and check_paths:
            path = resolve_path(value, base_dir)
            if not path.exists():
                raise bad(key, f"path does not exist: {path}")
            if d.format == "imagefolder" and not path.is_dir():
                raise bad(key, f"data.format imagefolder needs a folder of class folders, got the file {path}")
            if d.format != "imagefolder" and not path.is_file():
                raise bad(key, f"data.format {d.format} needs a file, got the folder {path}")
    if d.image_size < 8 or d.image_size > 1024:
        raise bad("data.image_size", f"must be in [8, 1024], got {d.image_size}")
    if not 0.0 < d.val_fraction < 1.0:
        raise bad("data.val_fraction", f"must be in (0, 1), got {d.val_fraction}")
    if d.train_subset < 0 or d.val_subset < 0:
        raise bad("data.train_subset" if d.train_subset < 0 else "data.val_subset", "must be >= 0")
    if d.num_workers < 0:
        raise bad("data.num_workers", "must be >= 0")
    if len(set(d.labels)) != len(d.labels):
        raise bad("data.labels", "names must be unique")
    if not (m.name in ("mobilenet_v2", "mobilenet_v1", "googlenet") or (m.name.startswith("timm:") and len(m.name) > 5)):
        raise bad("model.name", f"must be mobilenet_v2, mobilenet_v1, googlenet or timm:<name>, got {m.name!r}")
    if not m.width_mult > 0:
        raise bad("model.width_mult", f"must be > 0, got {m.width_mult}")
    if m.stem_stride not in (1, 2):
        raise bad("model.stem_stride", f"must be 1 or 2, got {m.stem_stride}")
    if not 0.0 <= m.dropout < 1.0:
        raise bad("model.dropout", f"must be in [0, 1), got {m.dropout}")
    if m.init_checkpoint and check_paths and not resolve_path(m.init_checkpoint, base_dir).is_file():
        raise bad("model.init_checkpoint", f"file does not exist: {resolve_path(m.init_checkpoint, base_dir)}")
    if not o.lr > 0:
        raise bad("optim.lr", f"must be > 0, got {o.lr}")
    if o.weight_decay < 0:
        raise bad("optim.weight_decay", f"must be >= 0, got {o.weight_decay}")
    if not 0.0 <= o.label_smoothing < 1.0:
        raise bad("optim.label_smoothing", f"must be in [0, 1), got {o.label_smoothing}")
    if not 0.0 <= o.momentum < 1.0:
        raise bad("optim.momentum", f"must be in [0, 1), got {o.momentum}")
    if o.grad_clip < 0:
        raise bad("optim.grad_clip", "must be >= 0")
    if s.epochs < 1:
        raise bad("schedule.epochs", f"must be >= 1, got {s.epochs}")
    if s.warmup_epochs < 0 or s.warmup_epochs > s.epochs:
        raise bad("schedule.warmup_epochs", f"must be in [0, epochs], got {s.warmup_epochs}")
    if not 0.0 <= s.min_lr_ratio <= 1.0:
        raise bad("schedule.min_lr_ratio", f"must be in [0, 1], got {s.min_lr_ratio}")
    for key, p in (("augment.hflip", a.hflip), ("augment.erasing", a.erasing), ("augment.mix_prob", a.mix_prob)):
        if not 0.0 <= p <= 1.0:
            raise bad(key, f"must be a probability in [0, 1], got {p}")
    if not 0.0 < a.scale[0] <= a.scale[1]:
        raise bad("augment.scale", f"must be (min, max) with 0 < min <= max, got {list(a.scale)}")
    if not 0.0 <= a.shift < 0.5:
        raise bad("augment.shift", f"must be in [0, 0.5), got {a.shift}")
    if not 0.0 <= a.rotate <= 180.0:
        raise bad("augment.rotate", f"must be in [0, 180], got {a.rotate}")
    for key, v in (("augment.brightness", a.brightness), ("augment.contrast", a.contrast)):
        if not 0.0 <= v < 1.0:
            raise bad(key, f"must be in [0, 1), got {v}")
    for key, v in (("augment.mixup", a.mixup), ("augment.cutmix", a.cutmix)):
        if v < 0:
            raise bad(key, f"must be >= 0, got {v}")
    if not t.name or any(c in t.name for c in "/\\:"):
        raise bad("train.name", f"must be a non-empty name without path separators, got {t.name!r}")
    if t.batch_size < 1 or t.eval_batch_size < 1:
        raise bad("train.batch_size" if t.batch_size < 1 else "train.eval_batch_size", "must be >= 1")
    if t.threads < 0:
        raise bad("train.threads", "must be >= 0")
    if not 0.0 <= t.ema_decay < 1.0:
        raise bad("train.ema_decay", f"must be in [0, 1), got {t.ema_decay}")
    if t.balance_power < 0:
        raise bad("train.balance_power", "must be >= 0")
    if t.max_steps_per_epoch < 0:
        raise bad("train.max_steps_per_epoch", "must be >= 0")


def resolve_path(value: str, base_dir: Path | None) -> Path:
    """A config path: absolute as given, relative to the config file's folder (or the cwd)."""
    path = Path(value).expanduser()
    if not path.is_absolute() and base_dir is not None and (base_dir / path).exists():
        return (base_dir / path).resolve()
    return path.resolve()


def config_from_dict(raw: Any, base_dir: Path | None = None, check_paths: bool = True) -> TrainConfig:
    """Build and validate a :class:`TrainConfig` from a parsed YAML mapping.

    Args:
        raw: The parsed mapping of sections.
        base_dir: Folder relative paths are resolved against (the config file's).
        check_paths: Check that the data and checkpoint paths exist (off to read a run's saved config
            for evaluation after its data moved).

    Raises:
        InvalidConfigError: Naming the offending key.
    """
    if not isinstance(raw, Mapping):
        raise InvalidConfigError(f"the config must be a mapping with sections {sorted(_SECTIONS)}")
    unknown = sorted(set(raw) - set(_SECTIONS), key=str)
    if unknown:
        raise InvalidConfigError(f"{unknown[0]}: unknown section (valid sections: {', '.join(sorted(_SECTIONS))})")
    sections = {name: _build_section(name, cls, raw.get(name)) for name, cls in _SECTIONS.items()}
    cfg = TrainConfig(**sections)
    _check_values(cfg, base_dir, check_paths)
    return _absolute_paths(cfg, base_dir)


def _parse_scalar(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(raw: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``a.b=value`` overrides (values parsed as YAML scalars) to a raw config mapping (a copy)."""
    out: dict[str, Any] = {k: dict(v) if isinstance(v, Mapping) else v for k, v in raw.items()}
    for item in overrides:
        if "=" not in item:
            raise InvalidConfigError(f"override {item!r} must look like section.key=value")
        dotted, value = item.split("=", 1)
        parts = dotted.strip().split(".")
        if len(parts) != 2 or not all(parts):
            raise InvalidConfigError(f"override {dotted!r} must be section.key (e.g. optim.lr=0.001)")
        section, key = parts
        if section not in _SECTIONS:
            raise InvalidConfigError(f"{section}: unknown section (valid sections: {', '.join(sorted(_SECTIONS))})")
        current = out.get(section) or {}
        if not isinstance(current, dict):
            raise InvalidConfigError(f"{section}: must be a mapping")
        current[key] = _parse_scalar(value)
        out[section] = current
    return out


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a YAML config file, apply ``--set`` overrides and validate.

    Raises:
        InvalidConfigError: For a missing/unparsable file or any invalid key or value (named in the message).
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InvalidConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InvalidConfigError(f"{path}: not valid YAML ({exc})") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise InvalidConfigError(f"{path}: the config must be a mapping with sections {sorted(_SECTIONS)}")
    return config_from_dict(apply_overrides(raw, overrides), base_dir=path.resolve().parent)


def _absolute_paths(cfg: TrainConfig, base_dir: Path | None) -> TrainConfig:
    """Replace relative data/checkpoint paths by absolute ones (so a saved config is self-contained)."""
    d, m = cfg.data, cfg.model
    data = dataclasses.replace(
        d,
        train=str(resolve_path(d.train, base_dir)),
        val=str(resolve_path(d.val, base_dir)) if d.val else "",
    )
    model = dataclasses.replace(
        m, init_checkpoint=str(resolve_path(m.init_checkpoint, base_dir)) if m.init_checkpoint else ""
    )
    return dataclasses.replace(cfg, data=data, model=model)


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """Plain-data form (tuples as lists) suitable for YAML/JSON."""

    def plain(v: Any) -> Any:
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        return v

    return {name: {k: plain(v) for k, v in dataclasses.asdict(getattr(cfg, name)).items()} for name in _SECTIONS}


def dump_config(cfg: TrainConfig) -> str:
    import yaml

    return str(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
