"""Training throughput (images/s) of mobilefer's MobileNetV2 vs timm's ``mobilenetv2_100``.

Both networks are trained with the same step as ``mobilefer train`` (augmentation on tensors,
normalisation, label-smoothed cross-entropy, AdamW, optional EMA) on the same random uint8 batch,
at the same input size, colour, batch size and memory format. Models alternate within each repeat so
background load hits both alike; each repeat times ``--steps`` steps after ``--warmup`` steps, and the
table reports the median (and min/max) over repeats.

Usage::

    python benchmarks/train_throughput.py                      # recipe: 48 px gray, batch 128, channels_last
    python benchmarks/train_throughput.py --size 96 --color rgb --batch 64 --threads 2
"""

from __future__ import annotations

import argparse
import copy
import importlib.metadata
import statistics
import time
from collections.abc import Callable

import _bench
import torch
import torch.nn.functional as F
from torch import nn

from mobilefer.preset import Preset
from mobilefer.train.augment import augment_batch
from mobilefer.train.config import AugmentConfig


def make_models(num_classes: int, in_chans: int, width: float) -> dict[str, nn.Module]:
    import timm

    from mobilefer.models.mobilenetv2 import MobileNetV2

    timm_name = {1.0: "mobilenetv2_100", 0.5: "mobilenetv2_050", 0.75: "mobilenetv2_075", 1.4: "mobilenetv2_140"}
    if width not in timm_name:
        raise SystemExit(f"--width must be one of {sorted(timm_name)} (widths timm builds)")
    ours = MobileNetV2(num_classes=num_classes, width_mult=width, in_chans=in_chans)
    # The same classifier dropout in both (ours defaults to torchvision's 0.2, timm's to 0).
    drop_rate = next(m.p for m in ours.modules() if isinstance(m, nn.Dropout))
    return {
        "mobilefer MobileNetV2": ours,
        f"timm {timm_name[width]}": timm.create_model(
            timm_name[width], pretrained=False, num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate
        ),
    }


def make_step(
    model: nn.Module, batch: torch.Tensor, labels: torch.Tensor, preset: Preset, args: argparse.Namespace
) -> Callable[[], None]:
    """One training step of the ``mobilefer train`` loop (augment, normalise, forward, loss, AdamW, EMA)."""
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format).train()
    ema = copy.deepcopy(model).eval() if args.ema else None
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    gen = torch.Generator().manual_seed(0)
    augment = AugmentConfig()
    mean = torch.tensor(preset.mean).view(1, -1, 1, 1)
    std = torch.tensor(preset.std).view(1, -1, 1, 1)

    def step() -> None:
        x = augment_batch(batch.float(), augment, gen) if args.augment else batch.float()
        x = ((x - mean) / std).contiguous(memory_format=memory_format)
        logits = model(x)
        loss = F.cross_entropy(logits, labels, label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        if ema is not None:
            with torch.no_grad():
                for e, p in zip(ema.parameters(), model.parameters(), strict=True):
                    e.mul_(0.999).add_(p.detach(), alpha=0.001)

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size", type=int, default=48, help="input side in pixels (default 48, the recipe)")
    parser.add_argument("--color", choices=("gray", "rgb"), default="gray")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--width", type=float, default=1.0, help="width multiplier (timm has 0.5, 0.75, 1.0, 1.4)")
    parser.add_argument("--classes", type=int, default=7)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per model before timing")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--no-write", action="store_true", help="print only (no results/*.md, *.png)")
    parser.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    parser.add_argument("--no-augment", dest="augment", action="store_false", help="time the network step only")
    parser.add_argument("--no-ema", dest="ema", action="store_false")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    in_chans = 1 if args.color == "gray" else 3
    preset = Preset(
        name="bench", input_size=(args.size, args.size), color=args.color,
        mean=(127.5,) * in_chans, std=(127.5,) * in_chans,
    )
    batch = torch.randint(0, 256, (args.batch, in_chans, args.size, args.size), dtype=torch.uint8)
    labels = torch.randint(0, args.classes, (args.batch,))
    models = make_models(args.classes, in_chans, args.width)
    steps = {name: make_step(m, batch, labels, preset, args) for name, m in models.items()}
    for step in steps.values():
        for _ in range(args.warmup):
            step()
    rates: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.repeats):
        for name, step in steps.items():
            t0 = time.perf_counter()
            for _ in range(args.steps):
                step()
            rates[name].append(args.steps * args.batch / (time.perf_counter() - t0))

    params = {name: sum(p.numel() for p in m.parameters()) for name, m in models.items()}
    setting = (
        f"train step: {args.size}x{args.size} {args.color}, batch {args.batch}, width {args.width}, "
        f"channels_last={args.channels_last}, augment={args.augment}, ema={args.ema}, "
        f"threads={torch.get_num_threads()}, {args.repeats} repeats x {args.steps} steps after {args.warmup} warm-up; "
        "models alternate within each repeat"
    )
    medians = {name: statistics.median(values) for name, values in rates.items()}
    ours, theirs = list(medians.values())
    rows = [
        [name, f"{params[name]:,}", _bench.fmt(medians[name], 1), _bench.fmt(min(values), 1), _bench.fmt(max(values), 1)]
        for name, values in rates.items()
    ]
    result = _bench.table(["model", "params", "median img/s", "min img/s", "max img/s"], rows)
    verdict = "met" if ours / theirs >= 1.0 else "missed"
    notes = [
        setting,
        f"ratio mobilefer / timm (median img/s): {ours / theirs:.3f} (goal >= 1.0: {verdict}); "
        f"spread of one model over repeats: {_spread(rates):.0%} of its median",
    ]
    print(result)
    print("\n".join(notes))
    if args.no_write:
        return
    env = _bench.environment()
    env["timm"] = importlib.metadata.version("timm")
    png = "train_throughput.png"
    plt = _bench.pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    names = list(rates)
    ax.boxplot([rates[n] for n in names], tick_labels=names)
    ax.set_ylabel("training images / s (one value per repeat)")
    ax.set_title(f"train step, {args.size}x{args.size} {args.color}, batch {args.batch} "
                 f"({torch.get_num_threads()} threads): ratio {ours / theirs:.3f}", fontsize=10)
    fig.tight_layout()
    fig.savefig(_bench.RESULTS / png, dpi=110)
    plt.close(fig)
    path = _bench.write_report(
        "train_throughput", "Training throughput: mobilefer MobileNetV2 vs timm mobilenetv2_100",
        _bench.command_line(), ["## Training images per second", result], env, notes, [png],
    )
    print(f"wrote {path}")


def _spread(rates: dict[str, list[float]]) -> float:
    """Largest (max - min) / median over the models: how noisy this run was."""
    return max((max(v) - min(v)) / statistics.median(v) for v in rates.values())


if __name__ == "__main__":
    main()
