"""Distance to the limit: achieved GFLOP/s of the classifier and the detectors vs a measured sgemm peak.

The practical peak is the best of a large float32 matrix product (2048x2048 @ 2048x2048 by default) in
torch (``torch.matmul``) and in onnxruntime (a one-node ``MatMul`` graph, the MLAS kernels its
convolutions use) on the same number of threads. Each network's FLOPs per image are
``2 * mobilefer.models.count_macs`` (``torch.utils.flop_counter``: convolutions and linear layers);
achieved GFLOP/s = FLOPs x batch / median latency. Small depthwise-separable networks are memory- and
overhead-bound, so a low fraction of the sgemm peak is expected; the table says how far each is.

Usage::

    python benchmarks/roofline.py                 # threads 1 and all usable CPUs
    python benchmarks/roofline.py --threads 2 --gemm 1024
"""

from __future__ import annotations

from typing import Any

import _bench
import numpy as np
import torch


def ort_matmul_session(n: int, threads: int) -> Any:
    import onnx
    from onnx import TensorProto, helper

    from mobilefer.runtime import make_session

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])], "sgemm",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, [n, n])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return make_session(model.SerializeToString(), threads)


def peaks(n: int, threads: int, repeats: int) -> dict[str, float]:
    """GFLOP/s of an n x n float32 matrix product in torch, onnxruntime and numpy (median of repeats)."""
    _bench.set_threads(threads)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    session = ort_matmul_session(n, threads)
    t = _bench.compare({
        "torch.matmul": lambda: torch.matmul(ta, tb),
        "onnxruntime MatMul": lambda: session.run(None, {"a": a, "b": b}),
        "numpy (its BLAS, default threads)": lambda: a @ b,
    }, warmup=2, repeats=repeats, number=1)
    return {k: 2.0 * n**3 / (v.median_ms / 1000.0) / 1e9 for k, v in t.items()}


def workloads() -> dict[str, tuple[torch.nn.Module, int, int, int]]:
    """name -> (module, channels, height, width)."""
    from mobilefer.detect.ultraface import load_ultraface_net
    from mobilefer.detect.ultraface_net import UltraFaceNet

    clf, _ = _bench.load_classifier("torch")
    w, h = clf.preset.input_size
    out: dict[str, tuple[torch.nn.Module, int, int, int]] = {
        f"classifier {w}x{h} {clf.preset.color}": (clf.model.eval(), clf.preset.channels, h, w)
    }
    for arch, name in (("rfb", "ultraface-rfb-320"), ("slim", "ultraface-slim-320")):
        path = _bench.DETECTOR_WEIGHTS[name]
        net = load_ultraface_net(arch, path) if path is not None and path.is_file() else UltraFaceNet(arch).eval()
        out[f"detector {name} 320x240"] = (net, 3, 240, 320)
    return out


def main() -> int:
    from mobilefer.models import count_macs

    parser = _bench.latency_parser(__doc__)
    cpus = _bench.available_cpus()
    parser.add_argument("--threads", default=",".join(str(t) for t in sorted({1, cpus})))
    parser.add_argument("--gemm", type=int, default=2048, help="matrix side of the peak sgemm")
    args = parser.parse_args()
    thread_counts = [int(t) for t in args.threads.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    env = _bench.environment()
    _, note = _bench.load_classifier("torch")
    nets = workloads()
    flops = {name: 2 * count_macs(m, (h, w), in_chans=c) for name, (m, c, h, w) in nets.items()}

    peak_rows: list[list[Any]] = []
    rows: list[list[Any]] = []
    plot_groups: list[str] = []
    plot_series: dict[str, list[float]] = {}
    for threads in thread_counts:
        peak = peaks(args.gemm, threads, args.repeats)
        best = max(peak["torch.matmul"], peak["onnxruntime MatMul"])
        peak_rows += [[threads, k, _bench.fmt(v)] for k, v in peak.items()]
        print(f"threads {threads}: sgemm {args.gemm}: " + ", ".join(f"{k} {v:.1f}" for k, v in peak.items()), flush=True)
        _bench.set_threads(threads)
        for name, (model, c, h, w) in nets.items():
            session = _bench.ort_session(model, w, h, c, threads)
            for batch in batches:
                x = np.random.default_rng(0).standard_normal((batch, c, h, w)).astype(np.float32)
                xt = torch.from_numpy(x)
                with torch.inference_mode():
                    t = _bench.compare({"torch eager": lambda xt=xt, model=model: model(xt),
                                        "onnxruntime": lambda x=x, session=session: session.run(None, {"input": x})},
                                       warmup=args.warmup, repeats=args.repeats)
                for runtime, timing in t.items():
                    gflops = flops[name] * batch / (timing.median_ms / 1000.0) / 1e9
                    rows.append([name, threads, batch, runtime, f"{flops[name] / 1e6:.1f}", _bench.fmt(timing.median_ms),
                                 _bench.fmt(gflops), f"{100 * gflops / best:.1f}%"])
                    print(" | ".join(str(v) for v in rows[-1]), flush=True)
                    series = f"{runtime}, {threads} thr"
                    plot_series.setdefault(series, [])
                    label = f"{name.split()[0]} {name.split()[1].replace('ultraface-', '')}\nbatch {batch}"
                    if label not in plot_groups:
                        plot_groups.append(label)
                    plot_series[series].append(100 * gflops / best)
    peak_table = _bench.table(["threads", f"sgemm {args.gemm}x{args.gemm} float32", "GFLOP/s"], peak_rows)
    result = _bench.table(
        ["network", "threads", "batch", "runtime", "MFLOP/img", "ms/batch", "GFLOP/s", "of peak"], rows
    )
    print(peak_table)
    print(result)
    notes = [note, "peak = the better of torch.matmul and onnxruntime MatMul at the same thread count",
             f"median of {args.repeats} repeats after {args.warmup} warm-up calls"]
    if args.no_write:
        return 0
    png = "roofline.png"
    _bench.grouped_bars(_bench.RESULTS / png, f"Achieved fraction of the measured sgemm peak ({args.gemm}^3 float32)",
                        "% of practical peak", plot_groups, plot_series)
    path = _bench.write_report(
        "roofline", "Distance to the limit (achieved GFLOP/s vs measured sgemm peak)", _bench.command_line(),
        ["## Practical peak", peak_table, "## Networks", result], env, notes, [png],
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
