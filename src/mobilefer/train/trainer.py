"""The training loop: seeded, resumable, atomic checkpoints, optional EMA/mixup/DDP.

A run lives in ``RUNS_DIR/<name>-<YYYYmmdd-HHMMSS>/`` (never reused) and holds ``config.yaml``,
``metrics.json``, ``curves.png``, ``confusion_matrix.png``, ``best.safetensors`` + ``preset.json``
(selected on val accuracy) and ``last.safetensors`` (model, EMA, optimizer and RNG state: everything
needed to resume; no pickle).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mobilefer.checkpoint import atomic_save_file, atomic_write_bytes, save_classifier
from mobilefer.errors import InvalidConfigError, InvalidInputError, ModelFormatError
from mobilefer.models.factory import ModelSpec
from mobilefer.preset import Preset
from mobilefer.train.augment import augment_batch, mix_batch
from mobilefer.train.config import TrainConfig, config_from_dict, dump_config
from mobilefer.train.data import ImageSet, load_split, stratified_subset
from mobilefer.train.metrics import EvalResult, classification_report

__all__ = [
    "TrainResult",
    "train",
    "resume",
    "default_preset",
    "model_spec",
    "init_from_checkpoint",
    "predict_logits",
    "evaluate_arrays",
    "LAST",
    "BEST",
    "STATE_FORMAT",
]

logger = logging.getLogger(__name__)

LAST = "last.safetensors"
BEST = "best.safetensors"
#: ``format`` metadata of ``last.safetensors`` (training state: ``model.*``, ``ema.*``, ``optim.*``, ``rng.*``).
STATE_FORMAT = "mobilefer-train-state-v1"


@dataclass(frozen=True)
class TrainResult:
    """Outcome of a run.

    Attributes:
        run_dir: The run directory.
        best_epoch: Epoch (1-based) of the best val accuracy.
        best: Val evaluation of the best epoch.
        epochs_run: Epochs completed in total (including before a resume).
        seconds: Wall time of the training loop in this process.
        images_per_second: Training throughput (all ranks) in this process.
    """

    run_dir: Path
    best_epoch: int
    best: EvalResult
    epochs_run: int
    seconds: float
    images_per_second: float


def default_preset(cfg: TrainConfig, classes: tuple[str, ...]) -> Preset:
    """The preprocessing preset a run trains with (and ships in its checkpoint)."""
    size = cfg.data.image_size
    if cfg.data.color == "gray":
        mean: tuple[float, ...] = (127.5,)
        std: tuple[float, ...] = (127.5,)
    else:  # ImageNet statistics in pixel units, so ImageNet-initialised backbones fit.
        mean, std = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
    return Preset(
        name=cfg.train.name,
        input_size=(size, size),
        color=cfg.data.color,
        mean=mean,
        std=std,
        interpolation="linear",
        labels=classes,
    )


def model_spec(cfg: TrainConfig, num_classes: int) -> ModelSpec:
    """The architecture a run with ``cfg`` trains (stored in its checkpoints)."""
    return _spec(cfg, num_classes)


def _spec(cfg: TrainConfig, num_classes: int) -> ModelSpec:
    m = cfg.model
    return ModelSpec(
        m.name,
        num_classes,
        1 if cfg.data.color == "gray" else 3,
        width_mult=m.width_mult,
        stem_stride=m.stem_stride,
        dropout=m.dropout,
    )


def _to_nchw(images: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(images))
    return t.unsqueeze(1) if t.ndim == 3 else t.permute(0, 3, 1, 2).contiguous()


def _normalize(x: torch.Tensor, preset: Preset) -> torch.Tensor:
    mean = torch.tensor(preset.mean, dtype=x.dtype).view(1, -1, 1, 1)
    std = torch.tensor(preset.std, dtype=x.dtype).view(1, -1, 1, 1)
    return (x - mean) / std


def _lr_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _class_weights(labels: np.ndarray, num_classes: int, power: float) -> torch.Tensor:
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    w = np.where(counts > 0, (1.0 / np.maximum(counts, 1)) ** power, 0.0)
    w = w / (w[counts > 0].mean() if (counts > 0).any() else 1.0)
    return torch.tensor(w, dtype=torch.float32)


@torch.inference_mode()
def predict_logits(
    model: nn.Module, images: np.ndarray, preset: Preset, batch_size: int = 256, tta: bool = False,
    channels_last: bool = False,
) -> np.ndarray:
    """Logits for uint8 images already at the preset's size and colour ((N,H,W) or (N,H,W,3)).

    With ``tta`` the logits of the image and its horizontal mirror are averaged.
    """
    model.eval()
    out: list[np.ndarray] = []
    for start in range(0, len(images), batch_size):
        x = _normalize(_to_nchw(images[start : start + batch_size]).float(), preset)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        logits = model(x)
        if tta:
            logits = (logits + model(torch.flip(x, dims=[3]))) / 2
        out.append(logits.float().numpy())
    k = len(preset.labels)
    return np.concatenate(out) if out else np.zeros((0, k), np.float32)


def evaluate_arrays(
    model: nn.Module, data: ImageSet, preset: Preset, batch_size: int = 256, tta: bool = False,
    channels_last: bool = False,
) -> EvalResult:
    """Evaluate ``model`` on an :class:`ImageSet` (accuracy, macro-F1, per class, confusion, loss)."""
    logits = predict_logits(model, data.images, preset, batch_size, tta, channels_last)
    loss = float(F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(data.labels)).item()) if len(data) else 0.0
    return classification_report(data.labels, logits.argmax(1), data.classes, loss)


# ------------------------------------------------------------------------------------------ init
def _check_unpacked_size(path: Path) -> None:
    """Refuse a torch zip file whose records would unpack to far more than the file holds.

    torch writes tensor records uncompressed, so a real checkpoint declares about its own size; a
    deflated record declaring gigabytes (a zip bomb) would make ``torch.load`` allocate them.
    """
    from mobilefer._files import declared_zip_size

    size = path.stat().st_size
    declared = declared_zip_size(path)
    if declared is not None and declared > 4 * size + (64 << 20):
        raise InvalidConfigError(
            f"model.init_checkpoint: {path} would unpack to {declared} bytes from {size} on disk; "
            "torch checkpoints are stored uncompressed, so this file is damaged or hostile"
        )


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a local state-dict file (.safetensors, or a torch file loaded with ``weights_only``)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            raw: Any = load_file(str(path))
        else:
            _check_unpacked_size(path)
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except InvalidConfigError:
        raise
    except Exception as exc:  # torch raises many kinds for a damaged or pickled-code file
        raise InvalidConfigError(f"model.init_checkpoint: cannot read {path} as a state dict ({exc})") from exc
    for wrapper in ("state_dict", "model", "state_dict_ema", "model_ema"):
        if isinstance(raw, dict) and isinstance(raw.get(wrapper), dict):
            raw = raw[wrapper]
            break
    if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in raw.items()):
        raise InvalidConfigError(f"model.init_checkpoint: {path} does not hold a state dict (str -> tensor)")
    return {(k[7:] if k.startswith("module.") else k): v for k, v in raw.items()}


def _adapt_channels(value: torch.Tensor, shape: torch.Size) -> torch.Tensor | None:
    """A conv weight with 3 input channels summed for a 1-channel model (or spread for 3), else None."""
    if value.ndim != 4 or len(shape) != 4 or value.shape[0] != shape[0] or value.shape[2:] != shape[2:]:
        return None
    if value.shape[1] == 3 and shape[1] == 1:
        return value.sum(dim=1, keepdim=True)
    if value.shape[1] == 1 and shape[1] == 3:
        return value.repeat(1, 3, 1, 1) / 3.0
    return None


def init_from_checkpoint(model: nn.Module, path: str | Path) -> int:
    """Copy the weights of a local torchvision/timm (or mobilefer) state-dict file into ``model``.

    For our MobileNetV2, torchvision (``features.*``) and timm (``conv_stem``/``blocks.*``) layouts are
    converted with :mod:`mobilefer.models.convert`. For other models tensors are matched by name. Tensors
    whose shape differs (e.g. a 1000-class classifier) keep their random initialisation; a 3-channel stem
    is summed over RGB for a grayscale model. The global RNG is left untouched. Nothing is downloaded.

    Returns:
        The number of tensors copied.

    Raises:
        InvalidConfigError: (naming ``model.init_checkpoint``) if the file is unreadable or nothing fits.
    """
    from mobilefer.errors import MobileferError
    from mobilefer.models.factory import ChannelRepeat
    from mobilefer.models.mobilenetv2 import MobileNetV2

    path = Path(path)
    state = _read_state_dict(path)
    target = model.net if isinstance(model, ChannelRepeat) else model
    own = target.state_dict()
    layout = "torchvision" if "features.0.0.weight" in state else "timm" if "conv_stem.weight" in state else ""
    if isinstance(target, MobileNetV2) and layout:
        from mobilefer.models import convert

        converter = convert.from_torchvision if layout == "torchvision" else convert.from_timm
        try:
            with torch.random.fork_rng(devices=[]):
                ref = converter(state, in_chans=target.in_chans, stem_stride=target.stem_stride)
        except MobileferError as exc:
            raise InvalidConfigError(f"model.init_checkpoint: {path} is not a usable {layout} MobileNetV2 ({exc})") from exc
        state = dict(ref.state_dict())
        mismatched = [k for k in own if not k.startswith("classifier.") and own[k].shape != state[k].shape]
        if mismatched:
            raise InvalidConfigError(
                f"model.init_checkpoint: {path} holds a width {ref.width_mult} MobileNetV2 that does not fit "
                f"model.width_mult {target.width_mult} (e.g. {mismatched[0]})"
            )
    usable: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key not in own:
            continue
        if own[key].shape == value.shape:
            usable[key] = value
        else:
            adapted = _adapt_channels(value, own[key].shape)
            if adapted is not None:
                usable[key] = adapted
    if not usable:
        raise InvalidConfigError(
            f"model.init_checkpoint: no tensor of {path} matches the model {type(target).__name__} by name and shape"
        )
    skipped = sorted(set(own) - set(usable))
    target.load_state_dict(usable, strict=False)
    logger.info("initialised %d tensors from %s (%d left as initialised: %s)", len(usable), path, len(skipped),
                skipped[:5])
    return len(usable)


# ------------------------------------------------------------------------------------------ state I/O
def _pack_state(
    model: nn.Module, ema: nn.Module | None, opt: torch.optim.Optimizer, gen: torch.Generator,
    epoch: int, step: int, history: list[dict[str, Any]],
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    tensors: dict[str, torch.Tensor] = {f"model.{k}": v for k, v in model.state_dict().items()}
    if ema is not None:
        tensors.update({f"ema.{k}": v for k, v in ema.state_dict().items()})
    opt_state = opt.state_dict()
    extra: dict[str, Any] = {}
    for idx, st in opt_state["state"].items():
        for key, value in st.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{idx}.{key}"] = value
            else:
                extra[f"{idx}.{key}"] = value
    tensors["rng.gen"] = gen.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    meta = {
        "format": STATE_FORMAT,
        "epoch": str(epoch),
        "step": str(step),
        "param_groups": json.dumps(
            [{k: v for k, v in g.items() if k != "params"} | {"params": g["params"]} for g in opt_state["param_groups"]]
        ),
        "optim_extra": json.dumps(extra),
        "history": json.dumps(history),
    }
    return tensors, meta


def _unpack_state(
    path: Path, model: nn.Module, ema: nn.Module | None, opt: torch.optim.Optimizer, gen: torch.Generator
) -> tuple[int, int, list[dict[str, Any]]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = dict(fh.metadata() or {})
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except (SafetensorError, OSError) as exc:
        raise ModelFormatError(f"{path}: cannot read the training state ({exc})") from exc
    if meta.get("format") != STATE_FORMAT:
        raise ModelFormatError(f"{path}: not a mobilefer training state")
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True)
    if ema is not None:
        ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}, strict=True)
    state: dict[int, dict[str, Any]] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, idx, key = k.split(".", 2)
            state.setdefault(int(idx), {})[key] = v
    for k, v in json.loads(meta["optim_extra"]).items():
        idx, key = k.split(".", 1)
        state.setdefault(int(idx), {})[key] = v
    opt.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})
    gen.set_state(tensors["rng.gen"])
    torch.set_rng_state(tensors["rng.torch"])
    return int(meta["epoch"]), int(meta["step"]), list(json.loads(meta["history"]))


def _new_run_dir(runs_dir: Path, name: str) -> Path:
    runs_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for i in range(1000):
        candidate = runs_dir / (f"{name}-{stamp}" if i == 0 else f"{name}-{stamp}-{i}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise InvalidConfigError(f"could not create a fresh run directory in {runs_dir}")  # pragma: no cover


# ------------------------------------------------------------------------------------------ loop
class _Run:
    def __init__(self, cfg: TrainConfig, run_dir: Path) -> None:
        self.cfg = cfg
        self.run_dir = run_dir
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.is_main = self.rank == 0

    def setup(self) -> None:
        cfg = self.cfg
        if cfg.train.threads > 0:
            torch.set_num_threads(cfg.train.threads)
        torch.manual_seed(cfg.train.seed)
        self.gen = torch.Generator().manual_seed(cfg.train.seed)
        if self.world > 1 and not torch.distributed.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            torch.distributed.init_process_group(backend=backend)
        d = cfg.data
        train_set, val_set = load_split(
            d.format, d.train, d.val, image_size=d.image_size, color=d.color, labels=d.labels,
            train_usage=d.train_usage, val_usage=d.val_usage, val_fraction=d.val_fraction,
            seed=cfg.train.seed, skip_unreadable=d.skip_unreadable,
        )
        if d.labels and d.format != "imagefolder":
            if len(d.labels) != len(train_set.classes):
                raise InvalidConfigError(
                    f"data.labels: {len(d.labels)} names given but the data has {len(train_set.classes)} classes"
                )
            train_set = ImageSet(train_set.images, train_set.labels, tuple(d.labels), train_set.sources)
            val_set = ImageSet(val_set.images, val_set.labels, tuple(d.labels), val_set.sources)
        train_set = train_set.subset(stratified_subset(train_set.labels, d.train_subset, cfg.train.seed))
        val_set = val_set.subset(stratified_subset(val_set.labels, d.val_subset, cfg.train.seed + 1))
        self.train_set, self.val_set = train_set, val_set
        self.classes = train_set.classes
        self.preset = default_preset(cfg, self.classes)
        self.spec = _spec(cfg, len(self.classes))
        self.train_x = _to_nchw(train_set.images)
        self.train_y = torch.from_numpy(train_set.labels)
        try:
            model = self.spec.build()
        except InvalidInputError as exc:
            raise InvalidConfigError(f"model.name: {exc}") from exc
        if cfg.model.init_checkpoint:
            self._init_from(model, Path(cfg.model.init_checkpoint))
        self.memory_format = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
        self.model = model.to(memory_format=self.memory_format)
        self.ema: nn.Module | None = None
        if cfg.train.ema_decay > 0:
            self.ema = copy.deepcopy(self.model).eval()
            for p in self.ema.parameters():
                p.requires_grad_(False)
        self.ddp: nn.Module = self.model
        if self.world > 1:
            self.ddp = nn.parallel.DistributedDataParallel(self.model)
        o = cfg.optim
        groups = _param_groups(self.model, o.weight_decay)
        if o.name == "adamw":
            self.opt: torch.optim.Optimizer = torch.optim.AdamW(groups, lr=o.lr)
        else:
            self.opt = torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov)
        bs = cfg.train.batch_size
        per_rank = math.ceil(len(train_set) / self.world)
        steps = max(1, per_rank // bs)
        if cfg.train.max_steps_per_epoch:
            steps = min(steps, cfg.train.max_steps_per_epoch)
        self.steps_per_epoch = steps
        self.total_steps = steps * cfg.schedule.epochs
        self.warmup_steps = int(round(cfg.schedule.warmup_epochs * steps))
        k = len(self.classes)
        self.class_weights = (
            _class_weights(train_set.labels, k, cfg.train.balance_power)
            if cfg.train.class_balance == "loss"
            else None
        )
        self.sample_weights = (
            _class_weights(train_set.labels, k, cfg.train.balance_power)[self.train_y]
            if cfg.train.class_balance == "sampler"
            else None
        )

    def _init_from(self, model: nn.Module, path: Path) -> None:
        init_from_checkpoint(model, path)

    def _epoch_order(self) -> torch.Tensor:
        n = len(self.train_y)
        if self.sample_weights is not None:
            order = torch.multinomial(self.sample_weights, n, replacement=True, generator=self.gen)
        else:
            order = torch.randperm(n, generator=self.gen)
        return order[self.rank :: self.world]

    def _update_ema(self) -> None:
        if self.ema is None:
            return
        decay = self.cfg.train.ema_decay
        with torch.no_grad():
            for e, p in zip(self.ema.parameters(), self.model.parameters(), strict=True):
                e.mul_(decay).add_(p.detach(), alpha=1.0 - decay)
            for eb, b in zip(self.ema.buffers(), self.model.buffers(), strict=True):
                eb.copy_(b)

    def _train_epoch(self, epoch: int, step: int) -> tuple[int, float, float, int, float]:
        cfg, k = self.cfg, len(self.classes)
        self.ddp.train()
        order = self._epoch_order()
        bs = cfg.train.batch_size
        base_lr = cfg.optim.lr
        total_loss, correct, seen = 0.0, 0, 0
        t0 = time.perf_counter()
        bar = None
        if cfg.train.progress and self.is_main:
            from tqdm import tqdm

            bar = tqdm(total=self.steps_per_epoch, desc=f"epoch {epoch}/{cfg.schedule.epochs}", leave=False)
        for i in range(self.steps_per_epoch):
            idx = order[i * bs : (i + 1) * bs]
            x = augment_batch(self.train_x[idx].float(), cfg.augment, self.gen)
            y = self.train_y[idx]
            x, soft = mix_batch(x, y, k, cfg.augment, self.gen)
            x = _normalize(x, self.preset).contiguous(memory_format=self.memory_format)
            factor = _lr_factor(step, self.total_steps, self.warmup_steps, cfg.schedule.min_lr_ratio)
            for g in self.opt.param_groups:
                g["lr"] = base_lr * factor
            logits = self.ddp(x)
            ls = cfg.optim.label_smoothing
            target = soft * (1.0 - ls) + ls / k
            per_sample = -(target * F.log_softmax(logits, dim=1)).sum(1)
            if self.class_weights is not None:
                per_sample = per_sample * (soft @ self.class_weights)
            loss = per_sample.mean()
            self.opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            if cfg.optim.grad_clip > 0:
                nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip)
            self.opt.step()
            self._update_ema()
            step += 1
            total_loss += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(idx)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}")
        if bar is not None:
            bar.close()
        seconds = time.perf_counter() - t0
        return step, total_loss / max(seen, 1), correct / max(seen, 1), seen * self.world, seconds

    def _sync_buffers(self) -> None:
        """Give every rank rank 0's buffers (BN statistics) after an epoch.

        DDP broadcasts rank 0's buffers before each forward, but the last step of an epoch updates each
        rank's statistics from its own batch. Without this the ranks would evaluate (and EMA-copy)
        different BN statistics.
        """
        for module in (self.model, self.ema):
            if module is None:
                continue
            for buffer in module.buffers():
                torch.distributed.broadcast(buffer, src=0)

    def _save(self, epoch: int, step: int, history: list[dict[str, Any]], best: EvalResult | None,
              best_epoch: int) -> None:
        tensors, meta = _pack_state(self.model, self.ema, self.opt, self.gen, epoch, step, history)
        atomic_save_file(tensors, self.run_dir / LAST, meta)
        summary = {
            "history": history,
            "best_epoch": best_epoch,
            "best": best.to_dict() if best else None,
            "classes": list(self.classes),
        }
        atomic_write_bytes(self.run_dir / "metrics.json", json.dumps(summary, indent=2).encode())
        if not self.cfg.train.plots:
            return
        from mobilefer.train.plots import plot_confusion, plot_curves

        plot_curves(history, self.run_dir / "curves.png")
        if best is not None:
            plot_confusion(best, self.run_dir / "confusion_matrix.png")

    def loop(
        self, start_epoch: int, step: int, history: list[dict[str, Any]], stop_after: int | None = None
    ) -> TrainResult:
        cfg = self.cfg
        final_epoch = cfg.schedule.epochs if stop_after is None else min(stop_after, cfg.schedule.epochs)
        best_epoch, best = 0, None
        for h in history:
            if best is None or h["val_accuracy"] > best.accuracy:
                best_epoch = int(h["epoch"])
                best = EvalResult(h["val_accuracy"], h["val_macro_f1"], (), (), int(h["val_n"]), h["val_loss"])
        if best is not None and (self.run_dir / "metrics.json").is_file():
            stored = json.loads((self.run_dir / "metrics.json").read_text()).get("best")
            if stored:
                best = _eval_from_dict(stored)
        t_start = time.perf_counter()
        images = 0
        for epoch in range(start_epoch + 1, final_epoch + 1):
            step, tr_loss, tr_acc, n_imgs, secs = self._train_epoch(epoch, step)
            if self.world > 1:
                self._sync_buffers()
            images += n_imgs
            eval_model = self.ema if self.ema is not None else self.model
            result = evaluate_arrays(
                eval_model, self.val_set, self.preset, cfg.train.eval_batch_size,
                channels_last=cfg.train.channels_last,
            )
            record = {
                "epoch": epoch,
                "step": step,
                "lr": self.opt.param_groups[0]["lr"],
                "train_loss": tr_loss,
                "train_accuracy": tr_acc,
                "val_loss": result.loss,
                "val_accuracy": result.accuracy,
                "val_macro_f1": result.macro_f1,
                "val_n": result.n,
                "epoch_seconds": secs,
                "images_per_second": n_imgs / secs if secs > 0 else 0.0,
            }
            history.append(record)
            if self.is_main:
                logger.info(
                    "epoch %d/%d train_loss %.4f train_acc %.4f val_loss %.4f val_acc %.4f val_f1 %.4f (%.0f img/s)",
                    epoch, cfg.schedule.epochs, tr_loss, tr_acc, result.loss or 0.0, result.accuracy,
                    result.macro_f1, record["images_per_second"],
                )
            improved = best is None or result.accuracy > best.accuracy
            if improved:
                best, best_epoch = result, epoch
            if self.is_main:
                if improved:
                    plain = copy.deepcopy(eval_model).to(memory_format=torch.contiguous_format)
                    metrics = {"val_accuracy": result.accuracy, "val_macro_f1": result.macro_f1, "epoch": epoch}
                    save_classifier(self.run_dir / BEST, plain, self.spec, self.preset, metrics)
                    atomic_write_bytes(self.run_dir / "preset.json", self.preset.to_json().encode())
                self._save(epoch, step, history, best, best_epoch)
            if self.world > 1:
                torch.distributed.barrier()
        seconds = time.perf_counter() - t_start
        if best is None:
            best = evaluate_arrays(self.model, self.val_set, self.preset, cfg.train.eval_batch_size)
        return TrainResult(
            self.run_dir, best_epoch, best, len(history), seconds, images / seconds if seconds > 0 else 0.0
        )


def _eval_from_dict(d: dict[str, Any]) -> EvalResult:
    from mobilefer.train.metrics import ClassMetrics

    per_class = tuple(
        ClassMetrics(name, v["precision"], v["recall"], v["f1"], int(v["support"])) for name, v in d["per_class"].items()
    )
    cm = tuple(tuple(int(x) for x in row) for row in d["confusion_matrix"])
    return EvalResult(d["accuracy"], d["macro_f1"], per_class, cm, int(d["n"]), d.get("loss"))


def train(cfg: TrainConfig, runs_dir: str | Path, *, stop_after: int | None = None) -> TrainResult:
    """Train from scratch into a fresh run directory under ``runs_dir``.

    Args:
        cfg: The validated configuration.
        runs_dir: Parent folder of the run directory ``<train.name>-<timestamp>``.
        stop_after: Stop after this epoch without changing the schedule (the run can then be continued
            with :func:`resume`); None trains all ``schedule.epochs``.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) every rank calls this; rank 0 creates the run directory and
    alone writes files and logs.
    """
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    run_dir: Path
    if world > 1:
        # All ranks must agree on the directory: rank 0 creates it and broadcasts the name.
        run = _Run(cfg, Path(runs_dir))
        run.setup()
        names: list[Any] = [str(_new_run_dir(Path(runs_dir), cfg.train.name)) if rank == 0 else None]
        torch.distributed.broadcast_object_list(names, src=0)
        run.run_dir = Path(str(names[0]))
        run_dir = run.run_dir
    else:
        # Load data and build the model first: a failing config leaves no empty run directory behind.
        run = _Run(cfg, Path(runs_dir))
        run.setup()
        run_dir = _new_run_dir(Path(runs_dir), cfg.train.name)
        run.run_dir = run_dir
    if rank == 0:
        atomic_write_bytes(run_dir / "config.yaml", dump_config(cfg).encode())
        logger.info("run directory %s: %d train / %d val images, %d classes, %d steps/epoch",
                    run_dir, len(run.train_set), len(run.val_set), len(run.classes), run.steps_per_epoch)
    return run.loop(0, 0, [], stop_after)


def resume(run_dir: str | Path, *, stop_after: int | None = None) -> TrainResult:
    """Continue a run from its ``last.safetensors`` on the same schedule.

    The run's own ``config.yaml`` is used; a run continued to the end reaches the same weights as one
    never interrupted (same seed, same machine and thread count). ``stop_after`` is as for :func:`train`.

    Raises:
        InvalidConfigError: If the folder is not a run directory.
        ModelFormatError: If its state file is damaged.
    """
    import yaml

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise InvalidConfigError(f"{run_dir} is not a run directory (no config.yaml)")
    cfg = config_from_dict(yaml.safe_load((run_dir / "config.yaml").read_text()), base_dir=run_dir)
    run = _Run(cfg, run_dir)
    run.setup()
    if not (run_dir / LAST).is_file():
        if run.is_main:
            logger.info("%s has no %s yet: starting from epoch 1", run_dir, LAST)
        return run.loop(0, 0, [], stop_after)
    epoch, step, history = _unpack_state(run_dir / LAST, run.model, run.ema, run.opt, run.gen)
    if run.is_main:
        logger.info("resuming %s after epoch %d (step %d)", run_dir, epoch, step)
    return run.loop(epoch, step, history, stop_after)
