"""Per-stage latency, frames per second and peak memory of ``mobilefer.Pipeline`` at 640x480.

Every configuration (detector x backend x threads) runs in its own child process, so that its peak
resident memory (``ru_maxrss`` of that child, read with ``os.wait4``) is its own. In each child the
frames are JPEG-encoded once (quality 95) and then timed stage by stage:

* decode: ``cv2.imdecode`` of the JPEG;
* detect: the pipeline's detector on the decoded frame (preprocessing, network, box decoding, NMS);
* crop + preprocess: the preset's crop rule for every face, then ``ExpressionClassifier.preprocess``;
* classify: the classifier network on all faces of the frame in one batch, plus softmax;
* predict: ``Pipeline.predict(frame)`` on the decoded frame (a camera or video decoder hands over
  decoded frames): FPS = 1000 / predict ms;
* total: ``Pipeline.predict(cv2.imdecode(jpeg))`` end to end: FPS incl. decode = 1000 / total ms.

Frames: ``group_5.jpg`` (1 face), ``group_3.jpg`` (5), ``group_6.jpg`` (14), ``group_1.jpg`` (46), each
resized to 640x480. Threads are applied to torch (``torch.set_num_threads``), OpenCV
(``cv2.setNumThreads``) and onnxruntime (``Pipeline(threads=...)``). The script also compares the
official UltraFace ONNX files with mobilefer's own exports for the detector network alone (the official
files list their initializers as graph inputs, which stops onnxruntime from folding constants), and
profiles ``Pipeline.predict`` with cProfile.

Usage::

    python benchmarks/pipeline_speed.py
    python benchmarks/pipeline_speed.py --threads 1 --detectors ultraface-rfb-320 --backends onnxruntime
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import subprocess
import sys
from typing import Any

import _bench
import numpy as np

FRAMES = {"group_5.jpg": "1 face", "group_3.jpg": "few", "group_6.jpg": "crowded", "group_1.jpg": "crowded"}
MARK = "RESULT "
STAGES = ("decode", "detect", "crop+preprocess", "classify", "predict", "total")


# ---------------------------------------------------------------------------------------- child
def build_pipeline(detector: str, backend: str, threads: int) -> tuple[Any, str]:
    import cv2

    from mobilefer.pipeline import Pipeline

    _bench.set_threads(threads)
    cv2.setNumThreads(threads)
    clf, note = _bench.load_classifier(backend, threads)
    weights = _bench.DETECTOR_WEIGHTS[detector]
    pipe = Pipeline(detector, clf, backend, detector_weights=weights, threads=threads)  # type: ignore[arg-type]
    return pipe, note


def child(config: dict[str, Any]) -> dict[str, Any]:
    import cv2
    import torch

    pipe, note = build_pipeline(config["detector"], config["backend"], config["threads"])
    clf = pipe.classifier
    name = pipe.detector.name
    out: dict[str, Any] = {"note": note, "frames": {}}
    for image in config["frames"]:
        jpeg = cv2.imencode(".jpg", _bench.frame_640x480(image), [cv2.IMWRITE_JPEG_QUALITY, 95])[1]
        frame = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)
        dets = pipe.detector.detect(frame)
        x = clf.preprocess([clf.crop(frame, d.box, name) for d in dets])

        def classify(x: np.ndarray = x) -> np.ndarray:
            logits = clf._logits(x)  # the network alone (preprocessing is the previous stage)
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            return e / e.sum(axis=1, keepdims=True)

        stages = {
            "decode": lambda jpeg=jpeg: cv2.imdecode(jpeg, cv2.IMREAD_COLOR),
            "detect": lambda frame=frame: pipe.detector.detect(frame),
            "crop+preprocess": lambda frame=frame, dets=dets: clf.preprocess(
                [clf.crop(frame, d.box, name) for d in dets]
            ),
            "classify": classify if dets else (lambda: None),
            "predict": lambda frame=frame: pipe.predict(frame),
            "total": lambda jpeg=jpeg: pipe.predict(cv2.imdecode(jpeg, cv2.IMREAD_COLOR)),
        }
        warmup, repeats = config["warmup"], config["repeats"]
        if _bench.measure(stages["total"], warmup=1, repeats=1, number=1).median_ms > 250:
            warmup, repeats = 1, max(3, repeats // 3)  # a slow configuration: fewer repeats
        with torch.inference_mode():
            timings = _bench.compare(stages, warmup=warmup, repeats=repeats, target_ms=config["target_ms"])
        out["frames"][image] = {
            "faces": len(pipe.predict(frame)),
            "ms": {k: v.median_ms for k, v in timings.items()},
            "spread": [timings["total"].min_ms, timings["total"].max_ms],
            "repeats": repeats,
        }
    return out


def run_child(config: dict[str, Any]) -> tuple[dict[str, Any], float]:
    """Run one configuration in a fresh process; returns its result and its peak RSS in MiB."""
    cmd = [sys.executable, os.path.abspath(__file__), "--child", json.dumps(config)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    lines = [ln for ln in stdout.splitlines() if ln.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"config {config} failed (exit {proc.returncode}):\n{stderr[-3000:]}")
    return json.loads(lines[-1][len(MARK):]), usage.ru_maxrss / 1024.0  # Linux: KiB


# ---------------------------------------------------------------------------------------- extras
def official_vs_ours(threads: int, repeats: int) -> list[list[Any]]:
    """The detector network alone in onnxruntime: official UltraFace ONNX vs mobilefer's export."""
    import onnx

    from mobilefer.detect import create_detector
    from mobilefer.runtime import cached_export, make_session

    rows: list[list[Any]] = []
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 240, 320)).astype(np.float32)
    for name, official in (("ultraface-rfb-320", "version-RFB-320_without_postprocessing.onnx"),
                           ("ultraface-slim-320", "version-slim-320_without_postprocessing.onnx")):
        path = _bench.ULTRAFACE_DIR / official
        if not path.is_file() or _bench.DETECTOR_WEIGHTS[name] is None:
            rows.append([name, threads, "official file missing", "", "", ""])
            continue
        proto = onnx.load(str(path))
        init_inputs = len({i.name for i in proto.graph.input} & {i.name for i in proto.graph.initializer})
        det = create_detector(name, weights=_bench.DETECTOR_WEIGHTS[name])
        sessions = {"official": make_session(str(path), threads), "mobilefer": make_session(cached_export(det), threads)}
        ref, ours = (s.run(["scores", "boxes"], {"input": x}) for s in sessions.values())
        diff = max(float(np.abs(a - b).max()) for a, b in zip(ref, ours, strict=True))
        t = _bench.compare({k: (lambda s=s: s.run(None, {"input": x})) for k, s in sessions.items()},
                           warmup=5, repeats=repeats)
        a, b = t["official"].median_ms, t["mobilefer"].median_ms
        rows.append([name, threads, f"{init_inputs} initializers as inputs", _bench.fmt(a), _bench.fmt(b),
                     f"{a / b:.2f}x (max |diff| {diff:.1e})"])
        print(" | ".join(str(v) for v in rows[-1]), flush=True)
    return rows


def profile_predict(threads: int, calls: int) -> str:
    """cProfile of Pipeline.predict (RFB-320, onnxruntime) on the single-face frame: top functions."""
    import cv2

    pipe, _ = build_pipeline("ultraface-rfb-320", "onnxruntime", threads)
    frame = cv2.imdecode(cv2.imencode(".jpg", _bench.frame_640x480("group_5.jpg"))[1], cv2.IMREAD_COLOR)
    for _ in range(10):
        pipe.predict(frame)
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(calls):
        pipe.predict(frame)
    prof.disable()
    buffer = io.StringIO()
    stats = pstats.Stats(prof, stream=buffer)
    stats.strip_dirs().sort_stats("tottime").print_stats(14)
    text = buffer.getvalue()
    return "\n".join(line for line in text.splitlines() if line.strip())


# ---------------------------------------------------------------------------------------- main
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--detectors", default="ultraface-rfb-320,ultraface-slim-320,haar")
    parser.add_argument("--backends", default="onnxruntime,torch")
    parser.add_argument("--threads", default="1,2", help="thread counts to compare")
    parser.add_argument("--frames", default=",".join(FRAMES))
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--target-ms", type=float, default=150.0, help="duration of one timed repeat")
    parser.add_argument("--profile-calls", type=int, default=300)
    parser.add_argument("--no-write", action="store_true", help="print only (no results/*.md, *.png)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(MARK + json.dumps(child(json.loads(args.child))), flush=True)
        return 0

    env = _bench.environment()
    frames = args.frames.split(",")
    thread_counts = [int(t) for t in args.threads.split(",")]
    rows: list[list[Any]] = []
    results: dict[tuple[str, str, int], dict[str, Any]] = {}
    note = ""
    for detector in args.detectors.split(","):
        for backend in args.backends.split(","):
            for threads in thread_counts:
                config = {"detector": detector, "backend": backend, "threads": threads, "frames": frames,
                          "warmup": args.warmup, "repeats": args.repeats, "target_ms": args.target_ms}
                result, rss = run_child(config)
                note = result["note"]
                results[(detector, backend, threads)] = result
                for image in frames:
                    r = result["frames"][image]
                    ms = r["ms"]
                    rows.append([detector.replace("ultraface-", ""), backend, threads,
                                 f"{image} ({FRAMES.get(image, '?')})", r["faces"],
                                 *(_bench.fmt(ms[k]) for k in STAGES),
                                 _bench.fmt(1000.0 / ms["predict"]), _bench.fmt(1000.0 / ms["total"]), f"{rss:.0f}"])
                    print(" | ".join(str(v) for v in rows[-1]), flush=True)
    headers = ["detector", "backend", "threads", "frame 640x480", "faces", "decode ms", "detect ms",
               "crop+prep ms", "classify ms", "predict ms", "total ms", "FPS", "FPS incl. decode", "peak RSS MiB"]
    table = _bench.table(headers, rows)
    print(table)

    # ---------------------------------------------------------------- targets
    single = frames[0]
    summary: list[str] = []
    best = {}
    for (detector, backend, threads), result in results.items():
        ms = result["frames"][single]["ms"]
        best[(detector, backend, threads)] = 1000.0 / ms["predict"]
    rfb = {k: v for k, v in best.items() if k[0] == "ultraface-rfb-320"}
    if rfb:
        key = max(rfb, key=lambda k: rfb[k])
        with_decode = 1000.0 / results[key]["frames"][single]["ms"]["total"]
        summary.append(f"single-face 640x480 with RFB-320: best {rfb[key]:.0f} FPS on decoded frames "
                       f"({with_decode:.0f} FPS including JPEG decode) ({key[1]}, {key[2]} threads); "
                       f"target >= 150 FPS: {'met' if rfb[key] >= 150 else 'MISSED'}")
    per_face = []
    for (detector, backend, threads), result in results.items():
        r = result["frames"][single]
        if r["faces"] >= 1:
            per_face.append((r["ms"]["classify"] / r["faces"], backend, threads))
        crowded = max(frames, key=lambda image: result["frames"][image]["faces"])
        rr = result["frames"][crowded]
        if detector == "ultraface-rfb-320" and rr["faces"] > 1:
            summary.append(f"classifier per face in one batch of {rr['faces']} ({crowded}, {backend}, {threads} threads): "
                           f"{rr['ms']['classify'] / rr['faces']:.2f} ms")
    if per_face:
        fastest = min(per_face)
        summary.insert(1, f"classifier, one face (batch 1), best: {fastest[0]:.2f} ms ({fastest[1]}, {fastest[2]} threads); "
                          f"target <= 2 ms: {'met' if fastest[0] <= 2.0 else 'MISSED'}")
    summary = list(dict.fromkeys(summary))
    print("\n".join(summary))

    # ---------------------------------------------------------------- official ONNX vs ours, profile
    official_rows: list[list[Any]] = []
    for threads in thread_counts:
        official_rows += official_vs_ours(threads, args.repeats)
    official = _bench.table(["detector network", "threads", "official file", "official ms", "mobilefer ms",
                             "official/mobilefer"], official_rows)
    print(official)
    profile = profile_predict(max(thread_counts), args.profile_calls)
    print(profile)

    notes = [note, f"median of {args.repeats} repeats after {args.warmup} warm-up calls per stage; "
             "stages timed separately; FPS = 1000 / predict ms (decoded frame), FPS incl. decode = 1000 / total ms "
             "(Pipeline.predict(cv2.imdecode(jpeg)))",
             "configurations slower than 250 ms per frame get 1 warm-up call and max(3, repeats // 3) repeats",
             "peak RSS: ru_maxrss of the child process running that configuration (includes importing torch)"]
    if args.no_write:
        return 0
    png = "pipeline_speed.png"
    plot(results, frames, _bench.RESULTS / png)
    path = _bench.write_report(
        "pipeline_speed", "Pipeline speed at 640x480 (per stage, FPS, peak memory)", _bench.command_line(),
        ["## Per-stage latency", table, "## Targets", "\n".join(f"- {s}" for s in summary),
         "## Detector network alone: official UltraFace ONNX vs mobilefer's export (onnxruntime)", official,
         f"## Profile of Pipeline.predict (RFB-320, onnxruntime, {max(thread_counts)} threads, single-face frame, "
         f"{args.profile_calls} calls, cProfile, sorted by own time)", "```\n" + profile + "\n```"],
        env, notes, [png],
    )
    print(f"wrote {path}")
    return 0


def plot(results: dict[tuple[str, str, int], dict[str, Any]], frames: list[str], path: Any) -> None:
    plt = _bench.pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 0.45 * len(results) + 2.5))
    labels = [f"{d.replace('ultraface-', '')} {b} {t}thr" for d, b, t in results]
    ort = [k for k in results if k[1] == "onnxruntime"] or list(results)
    left = np.zeros(len(ort))
    for stage in ("decode", "detect", "crop+preprocess", "classify"):
        values = np.array([results[k]["frames"][frames[0]]["ms"][stage] for k in ort])
        ax1.barh([f"{d.replace('ultraface-', '')} {b} {t}thr" for d, b, t in ort], values, left=left, label=stage)
        left += values
    ax1.set_xlabel(f"ms per frame ({frames[0]}, 640x480, 1 face)")
    ax1.set_title("Stage latency, single-face frame (onnxruntime backend)", fontsize=10)
    ax1.legend(fontsize=8)
    ax1.invert_yaxis()
    ys = np.arange(len(results))
    height = 0.8 / len(frames)
    for i, image in enumerate(frames):
        fps = [1000.0 / r["frames"][image]["ms"]["predict"] for r in results.values()]
        faces = next(iter(results.values()))["frames"][image]["faces"]
        ax2.barh(ys + (i - (len(frames) - 1) / 2) * height, fps, height, label=f"{image} (~{faces} faces)")
    ax2.axvline(150, color="tab:red", linestyle="--", linewidth=1, label="target 150 FPS (1 face, RFB)")
    ax2.set_yticks(ys, labels)
    ax2.set_xscale("log")
    ax2.set_xlabel("frames per second, decoded frames (log)")
    ax2.set_title("End-to-end FPS at 640x480", fontsize=10)
    ax2.legend(fontsize=7)
    ax2.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
