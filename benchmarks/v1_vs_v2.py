"""MobileNetV1 vs MobileNetV2: parameters, MACs and CPU latency (PyTorch eager and onnxruntime).

Reproduces the MobileNetV2 paper's comparison (Sandler et al. 2018, Table 4: V1 569M MACs / 4.2M
parameters, V2 300M / 3.4M at 224x224, 1000 classes) with mobilefer's own networks, then measures
what it means on this CPU, at 224x224 RGB and at mobilefer's FER input (48x48 gray, 7 classes, the
shipped classifier's configuration), batch 1 and 32. Both models run side by side (interleaved in
every repeat); figures are medians over repeats after warm-up. Weights are random: latency does not
depend on them.

Usage::

    python benchmarks/v1_vs_v2.py                  # all usable CPUs
    python benchmarks/v1_vs_v2.py --threads 1 --repeats 9
"""

from __future__ import annotations

from typing import Any

import _bench
import numpy as np
import torch

PAPER = {"MobileNetV1": (4.2e6, 569e6), "MobileNetV2": (3.4e6, 300e6)}


def build(name: str, num_classes: int, in_chans: int) -> torch.nn.Module:
    from mobilefer.models import MobileNetV1, MobileNetV2

    torch.manual_seed(0)
    cls = MobileNetV1 if name == "MobileNetV1" else MobileNetV2
    return cls(num_classes=num_classes, in_chans=in_chans, width_mult=1.0, stem_stride=2).eval()


def main() -> int:
    from mobilefer.models import count_macs, count_parameters

    parser = _bench.latency_parser(__doc__)
    parser.add_argument("--threads", type=int, default=_bench.available_cpus(), help="torch and ORT threads")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    _bench.set_threads(args.threads)
    env = _bench.environment()
    names = ("MobileNetV1", "MobileNetV2")
    inputs = {  # label: (num_classes, channels, height, width)
        "224x224 RGB, 1000 classes": (1000, 3, 224, 224),
        "48x48 gray, 7 classes (FER)": (7, 1, 48, 48),
    }

    # ---------------------------------------------------------------- complexity
    rows: list[list[Any]] = []
    stats: dict[tuple[str, str], tuple[int, int]] = {}
    for label, (classes, chans, h, w) in inputs.items():
        for name in names:
            model = build(name, classes, chans)
            stats[(label, name)] = (count_parameters(model), count_macs(model, (h, w), in_chans=chans))
    im, fer = list(inputs)
    for name in names:
        p224, m224 = stats[(im, name)]
        pfer, mfer = stats[(fer, name)]
        paper_p, paper_m = PAPER[name]
        rows.append([name, f"{p224 / 1e6:.2f}M", f"{paper_p / 1e6:.1f}M", f"{m224 / 1e6:.0f}M", f"{paper_m / 1e6:.0f}M",
                     f"{pfer / 1e6:.2f}M", f"{mfer / 1e6:.1f}M"])
    ratio = [
        stats[(im, names[0])][0] / stats[(im, names[1])][0],
        stats[(im, names[0])][1] / stats[(im, names[1])][1],
        stats[(fer, names[0])][0] / stats[(fer, names[1])][0],
        stats[(fer, names[0])][1] / stats[(fer, names[1])][1],
    ]
    rows.append(["ratio V1/V2", f"{ratio[0]:.2f}x", f"{4.2 / 3.4:.2f}x", f"{ratio[1]:.2f}x", f"{569 / 300:.2f}x",
                 f"{ratio[2]:.2f}x", f"{ratio[3]:.2f}x"])
    complexity = _bench.table(
        ["model", "params 224", "paper", "MACs 224", "paper", "params FER (7 cls, gray)", "MACs 48x48 gray"], rows
    )
    print(complexity)

    # ---------------------------------------------------------------- latency
    lat_rows: list[list[Any]] = []
    plot_groups: list[str] = []
    plot_series: dict[str, list[float]] = {n: [] for n in names}
    for label, (classes, chans, h, w) in inputs.items():
        models = {n: build(n, classes, chans) for n in names}
        sessions = {n: _bench.ort_session(m, w, h, chans, args.threads) for n, m in models.items()}
        for batch in batches:
            x = np.random.default_rng(0).standard_normal((batch, chans, h, w)).astype(np.float32)
            xt = torch.from_numpy(x)
            for runtime in ("torch eager", "onnxruntime"):
                if runtime == "torch eager":
                    fns = {n: (lambda m=m, xt=xt: m(xt)) for n, m in models.items()}
                else:
                    fns = {n: (lambda s=s, x=x: s.run(None, {"input": x})) for n, s in sessions.items()}
                with torch.inference_mode():
                    t = _bench.compare(fns, warmup=args.warmup, repeats=args.repeats)
                v1, v2 = t[names[0]].median_ms, t[names[1]].median_ms
                lat_rows.append([label, batch, runtime, _bench.fmt(v1), _bench.fmt(v2), f"{v1 / v2:.2f}x",
                                 _bench.fmt(batch * 1000 / v1), _bench.fmt(batch * 1000 / v2)])
                print(" | ".join(str(c) for c in lat_rows[-1]), flush=True)
                plot_groups.append(f"{'224 RGB' if chans == 3 else '48 gray'}\nb{batch} {runtime.split()[0]}")
                plot_series[names[0]].append(v1 / batch)
                plot_series[names[1]].append(v2 / batch)
    latency = _bench.table(
        ["input", "batch", "runtime", "V1 ms/batch", "V2 ms/batch", "V1/V2", "V1 img/s", "V2 img/s"], lat_rows
    )
    print(latency)
    notes = [f"threads: {args.threads} (torch.set_num_threads and ORT intra_op_num_threads)",
             f"median of {args.repeats} repeats after {args.warmup} warm-up calls; models interleaved per repeat",
             "MACs: mobilefer.models.count_macs (torch.utils.flop_counter; convolutions and linear layers, "
             "as in the papers); ONNX: mobilefer.export.onnx export, ORT_ENABLE_ALL"]
    print("\n".join(notes))
    if args.no_write:
        return 0
    png = "v1_vs_v2.png"
    _bench.grouped_bars(_bench.RESULTS / png, f"MobileNetV1 vs V2 latency per image ({args.threads} threads)",
                        "ms per image (log)", plot_groups, plot_series, log=True)
    path = _bench.write_report(
        "v1_vs_v2", "MobileNetV1 vs MobileNetV2", _bench.command_line(),
        ["## Parameters and MACs", complexity,
         "Paper: Sandler et al., *MobileNetV2*, Table 4 (ImageNet, 224x224).",
         "## CPU latency", latency],
        env, notes, [png],
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
