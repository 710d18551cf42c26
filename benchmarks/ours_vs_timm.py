"""mobilefer's MobileNetV2 vs timm's ``mobilenetv2_100`` carrying the same weights: CPU inference latency.

timm's network is built with random weights; ``mobilefer.models.from_timm`` copies them into ours and
the outputs are checked to agree before anything is timed. Both run side by side (interleaved in every
repeat) in PyTorch eager and in onnxruntime (each exported with mobilefer's exporter), at 224x224 RGB
(1000 classes) and at the FER input (48x48 gray, 7 classes), batch 1 and 32. The goal is a latency
ratio ours/timm <= 1.0. Training throughput is compared by ``benchmarks/train_throughput.py``.

Usage::

    python benchmarks/ours_vs_timm.py
    python benchmarks/ours_vs_timm.py --threads 1 --repeats 9
"""

from __future__ import annotations

from typing import Any

import _bench
import numpy as np
import torch


def main() -> int:
    import timm

    from mobilefer.models import from_timm

    parser = _bench.latency_parser(__doc__)
    parser.add_argument("--threads", type=int, default=_bench.available_cpus(), help="torch and ORT threads")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    _bench.set_threads(args.threads)
    env = _bench.environment()
    env["timm"] = timm.__version__
    inputs = {  # label: (num_classes, channels, height, width)
        "224x224 RGB, 1000 classes": (1000, 3, 224, 224),
        "48x48 gray, 7 classes (FER)": (7, 1, 48, 48),
    }
    rows: list[list[Any]] = []
    parity: list[str] = []
    groups: list[str] = []
    ratios: dict[str, list[float]] = {"ours / timm": []}
    for label, (classes, chans, h, w) in inputs.items():
        torch.manual_seed(0)
        theirs = timm.create_model("mobilenetv2_100", pretrained=False, num_classes=classes, in_chans=chans).eval()
        ours = from_timm(theirs.state_dict()).eval()
        probe = torch.randn(2, chans, h, w)
        with torch.inference_mode():
            reference = theirs(probe)
            diff = float((ours(probe) - reference).abs().max())
        parity.append(f"{label}: max |ours - timm| on random input = {diff:.2e} "
                      f"(outputs up to {float(reference.abs().max()):.2f})")
        if diff > 1e-3:
            raise SystemExit(f"outputs differ ({diff}); from_timm is broken, not timing")
        models = {"ours": ours, "timm": theirs}
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
                a, b = t["ours"].median_ms, t["timm"].median_ms
                rows.append([label, batch, runtime, _bench.fmt(a), _bench.fmt(b), f"{a / b:.3f}",
                             "yes" if a / b <= 1.0 else "no"])
                print(" | ".join(str(c) for c in rows[-1]), flush=True)
                groups.append(f"{'224 RGB' if chans == 3 else '48 gray'}\nb{batch} {runtime.split()[0]}")
                ratios["ours / timm"].append(a / b)
    result = _bench.table(
        ["input", "batch", "runtime", "ours ms", "timm ms", "ours/timm", "<= 1.0"], rows
    )
    print(result)
    notes = [f"threads: {args.threads} (torch.set_num_threads and ORT intra_op_num_threads)",
             f"median of {args.repeats} repeats after {args.warmup} warm-up calls; ours and timm interleaved per repeat",
             *parity,
             "training throughput (ours vs timm): see benchmarks/train_throughput.py and its results"]
    print("\n".join(notes))
    if args.no_write:
        return 0
    png = "ours_vs_timm.png"
    plt = _bench.pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    bars = ax.bar(range(len(groups)), ratios["ours / timm"], color="tab:blue")
    ax.bar_label(bars, labels=[f"{r:.2f}" for r in ratios["ours / timm"]], fontsize=8)
    ax.axhline(1.0, color="tab:red", linestyle="--", label="goal: <= 1.0")
    ax.set_xticks(range(len(groups)), groups, fontsize=8)
    ax.set_ylabel("latency ours / timm")
    ax.set_title(f"mobilefer MobileNetV2 vs timm mobilenetv2_100, same weights ({args.threads} threads)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(_bench.RESULTS / png, dpi=110)
    plt.close(fig)
    path = _bench.write_report(
        "ours_vs_timm", "mobilefer MobileNetV2 vs timm mobilenetv2_100 (inference latency)", _bench.command_line(),
        ["## Latency (same weights)", result], env, notes, [png],
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
