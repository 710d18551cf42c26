"""mobilefer side by side with PyPI ``fer`` 25.10.3 (Haar cascade + mini-Xception, its defaults).

``fer`` runs in its own virtual environment, ``benchmarks/.fer-venv`` (created on first use, or with
``--setup-only``): ``fer==25.10.3`` is installed with ``--no-deps`` plus what it imports
(tensorflow-cpu, opencv-python-headless<5, pandas, requests, setuptools<81, matplotlib, tqdm, pillow),
because its declared dependency facenet-pytorch pins an old torch and would pull gigabytes. A small
runner (``benchmarks/_fer_runner.py``) drives ``fer`` in a subprocess of that environment over JSON
lines, so both libraries see exactly the same 640x480 frames (lossless PNG files).

Measured:

* frame rate on a single-face frame (``group_5.jpg``) and few-face frames (``group_3.jpg``, 5 faces;
  ``group_2.jpg``, 4): mobilefer ``Pipeline.predict(frame)`` vs ``FER().detect_emotions(frame)``,
  interleaved in every repeat (mobilefer, fer, mobilefer, ...), medians after warm-up, and their ratio;
* faces found by each, and label agreement on the faces both found (boxes matched at IoU >= 0.3);
* both classifiers' accuracy on the FER2013 val split: mobilefer with
  ``mobilefer.train.trainer.evaluate_arrays``; fer by feeding each 48x48 face to its emotion model
  the way ``FER.detect_emotions`` does after detection (resize to 64x64, ``(x / 255 - 0.5) * 2``).

Usage::

    python benchmarks/vs_fer.py                   # creates benchmarks/.fer-venv on first use
    python benchmarks/vs_fer.py --setup-only      # only create the venv
    python benchmarks/vs_fer.py --repeats 5 --val-limit 500
    python benchmarks/vs_fer.py --classifier runs/<run>/best.safetensors   # a model not shipped (yet)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import _bench
import numpy as np
import torch

VENV = _bench.ROOT / "benchmarks" / ".fer-venv"
RUNNER = _bench.ROOT / "benchmarks" / "_fer_runner.py"
FER_VERSION = "25.10.3"
FER_IMPORTS = ["tensorflow-cpu", "opencv-python-headless<5", "pandas", "requests", "setuptools<81", "matplotlib",
               "tqdm", "pillow"]
FRAMES = {"group_5.jpg": "single face", "group_3.jpg": "few faces", "group_2.jpg": "few faces"}
DETECTORS = ("ultraface-rfb-320", "haar")


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_venv() -> None:
    """Create ``benchmarks/.fer-venv`` with fer and what it imports, unless it already works."""
    python = venv_python()
    check = [str(python), "-c", f"import fer, tensorflow; assert fer.__version__ == '{FER_VERSION}'"]
    if python.is_file() and subprocess.run(check, capture_output=True).returncode == 0:
        return
    print(f"creating {VENV} (fer {FER_VERSION}, tensorflow-cpu; a few minutes, about 2 GB)", flush=True)
    if not python.is_file():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "--no-deps", f"fer=={FER_VERSION}"], check=True)
    subprocess.run([*pip, *FER_IMPORTS], check=True)
    subprocess.run(check, check=True)


class FerRunner:
    """``fer`` in a subprocess of its venv, driven over JSON lines (see ``_fer_runner.py``)."""

    def __init__(self) -> None:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONNOUSERSITE": "1"}
        env.pop("PYTHONPATH", None)
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen([str(venv_python()), str(RUNNER)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log, text=True, env=env,
                                     cwd=tempfile.gettempdir())

    def ask(self, **msg: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        for line in self.proc.stdout:
            if line.startswith("@@ "):
                answer: dict[str, Any] = json.loads(line[3:])
                if "error" in answer:
                    raise SystemExit(f"fer runner: {answer['error']}")
                return answer
        self.log.seek(0)
        raise SystemExit(f"the fer runner exited ({self.proc.wait()}):\n{self.log.read()[-3000:]}")

    def close(self) -> None:
        try:
            self.ask(cmd="quit")
        finally:
            self.proc.wait(timeout=60)


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match(ours: list[tuple[Sequence[float], str]], theirs: list[tuple[Sequence[float], str]],
          threshold: float = 0.3) -> list[tuple[str, str]]:
    """Greedy IoU matching of (box, label) lists; returns the label pairs of matched faces."""
    pairs = sorted(((iou(a[0], b[0]), i, j) for i, a in enumerate(ours) for j, b in enumerate(theirs)), reverse=True)
    used_i: set[int] = set()
    used_j: set[int] = set()
    out = []
    for score, i, j in pairs:
        if score < threshold or i in used_i or j in used_j:
            continue
        used_i.add(i)
        used_j.add(j)
        out.append((ours[i][1], theirs[j][1]))
    return out


def time_side_by_side(pipes: dict[str, Any], runner: FerRunner, frames: list[np.ndarray],
                       args: argparse.Namespace) -> dict[tuple[str, int], float]:
    """Median ms per frame of every mobilefer pipeline and of fer, interleaved within each repeat."""
    samples: dict[tuple[str, int], list[float]] = {}
    counts: dict[tuple[str, int], int] = {}
    with torch.inference_mode():
        for i, frame in enumerate(frames):
            for det, pipe in pipes.items():
                for _ in range(args.warmup):
                    pipe.predict(frame)
                counts[(det, i)] = _bench.auto_number(lambda pipe=pipe, frame=frame: pipe.predict(frame), args.target_ms)
            for _ in range(args.warmup):
                runner.ask(cmd="time", i=i, number=1)
            one = runner.ask(cmd="time", i=i, number=1)["ms"]
            counts[("fer", i)] = max(1, min(1000, int(args.target_ms / max(one, 1e-3))))
        for _ in range(args.repeats):
            for i, frame in enumerate(frames):
                for det, pipe in pipes.items():
                    t = _bench.compare({"x": lambda pipe=pipe, frame=frame: pipe.predict(frame)}, warmup=0,
                                       repeats=1, number=counts[(det, i)])["x"]
                    samples.setdefault((det, i), []).append(t.median_ms)
                samples.setdefault(("fer", i), []).append(runner.ask(cmd="time", i=i, number=counts[("fer", i)])["ms"])
    return {k: float(np.median(v)) for k, v in samples.items()}


def main() -> int:
    import cv2

    from mobilefer.pipeline import Pipeline
    from mobilefer.train.data import load_fer2013_npz
    from mobilefer.train.trainer import evaluate_arrays, predict_logits

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", default="1,2", help="thread counts, applied to both libraries alike")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--target-ms", type=float, default=300.0, help="duration of one timed repeat per side")
    parser.add_argument("--val", default=str(_bench.SHARED / "data/fer2013/fer2013_val.npz"))
    parser.add_argument("--val-limit", type=int, default=0, help="first N val faces only (0 = all)")
    parser.add_argument("--classifier", default="default", help="'default' (shipped) or a mobilefer checkpoint")
    parser.add_argument("--setup-only", action="store_true", help="create the fer venv and exit")
    parser.add_argument("--no-write", action="store_true", help="print only (no results/*.md, *.png)")
    args = parser.parse_args()
    ensure_venv()
    if args.setup_only:
        print(f"{VENV} is ready")
        return 0
    env = _bench.environment()
    thread_counts = [int(t) for t in args.threads.split(",")]

    tmp = Path(tempfile.mkdtemp(prefix="mobilefer-vs-fer-"))
    paths, frames = [], []
    for name in FRAMES:
        path = tmp / f"{Path(name).stem}_640x480.png"
        cv2.imwrite(str(path), _bench.frame_640x480(name))
        paths.append(str(path))
        frames.append(cv2.imread(str(path), cv2.IMREAD_COLOR))  # exactly what fer reads

    speed_rows: list[list[Any]] = []
    ratios: dict[tuple[str, int], list[float]] = {}
    faces_table = acc_table = ""
    agree = 0.0
    fer_ms_face = 0.0
    note = ""
    for threads in thread_counts:
        _bench.set_threads(threads)
        cv2.setNumThreads(threads)
        runner = FerRunner()
        try:
            info = runner.ask(cmd="load", frames=paths, threads=threads)
            env["fer"] = f"fer {info['fer']}, tensorflow {info['tensorflow']}, opencv {info['opencv']}"
            clf, note = _bench.load_classifier("onnxruntime", threads, checkpoint=args.classifier)
            pipes = {det: Pipeline(det, clf, "onnxruntime", detector_weights=_bench.DETECTOR_WEIGHTS[det], threads=threads)
                     for det in DETECTORS}
            if threads == thread_counts[0]:
                faces_table = faces_and_labels(pipes, runner, frames)
                print(faces_table)
                acc_table, agree, fer_ms_face = accuracy(clf, runner, args, tmp, load_fer2013_npz, evaluate_arrays,
                                                         predict_logits)
                print(acc_table)
            median = time_side_by_side(pipes, runner, frames, args)
        finally:
            runner.close()
        for i, (name, kind) in enumerate(FRAMES.items()):
            fer_ms = median[("fer", i)]
            for det in DETECTORS:
                ms = median[(det, i)]
                ratios.setdefault((det, threads), []).append(fer_ms / ms)
                speed_rows.append([f"{name} ({kind})", threads, f"mobilefer {det}", _bench.fmt(ms), _bench.fmt(1000 / ms),
                                   _bench.fmt(fer_ms), _bench.fmt(1000 / fer_ms), f"{fer_ms / ms:.1f}x"])
                print(" | ".join(str(v) for v in speed_rows[-1]), flush=True)
    speed_table = _bench.table(["frame 640x480", "threads", "mobilefer config", "mobilefer ms", "mobilefer FPS",
                                "fer ms", "fer FPS", "FPS ratio mobilefer/fer"], speed_rows)
    print(speed_table)

    targets = []
    for threads in thread_counts:
        r = ratios[("ultraface-rfb-320", threads)]
        targets.append(f"{threads} thread(s), mobilefer RFB-320 vs fer: single-face frame {r[0]:.1f}x (target >= 20x: "
                       f"{'met' if r[0] >= 20 else 'MISSED'}), few-face frames at least {min(r[1:]):.1f}x (target >= 10x: "
                       f"{'met' if min(r[1:]) >= 10 else 'MISSED'})")
    targets.append(f"classifier prediction agreement mobilefer vs fer on FER2013 val: {agree:.1%}; fer's classifier "
                   f"{fer_ms_face:.2f} ms per face (its per-face TFLite loop)")
    print("\n".join(targets))
    notes = [note, f"threads: {args.threads}, applied alike: mobilefer Pipeline(threads=...), torch.set_num_threads, "
             "cv2.setNumThreads; fer: cv2.setNumThreads and its TFLite interpreter's num_threads",
             f"median of {args.repeats} repeats after {args.warmup} warm-up calls; mobilefer configs and fer "
             "interleaved within each repeat; fer timed inside its own process (no IPC in the timed loop)"]
    if args.no_write:
        return 0
    png = "vs_fer.png"
    groups = [f"{n}\n({k})" for n, k in FRAMES.items()]
    _bench.grouped_bars(_bench.RESULTS / png, "mobilefer vs fer: frame-rate ratio at 640x480 (higher is better)",
                        "mobilefer FPS / fer FPS", groups,
                        {f"{d.replace('ultraface-', '')}, {t} thr": r for (d, t), r in ratios.items()})
    path = _bench.write_report(
        "vs_fer", f"mobilefer vs fer {FER_VERSION}", _bench.command_line(),
        ["## Frame rate", speed_table, "## Faces found and label agreement", faces_table,
         "## FER2013 val accuracy", acc_table, "## Targets", "\n".join(f"- {t}" for t in targets)],
        env, notes, [png],
    )
    print(f"wrote {path}")
    return 0


def faces_and_labels(pipes: dict[str, Any], runner: FerRunner, frames: list[np.ndarray]) -> str:
    rows: list[list[Any]] = []
    fer_faces = [runner.ask(cmd="detect", i=i)["faces"] for i in range(len(frames))]
    for det, pipe in pipes.items():
        for i, name in enumerate(FRAMES):
            ours = [(r.box, r.label) for r in pipe.predict(frames[i])]
            theirs = [(f["box"], f["label"]) for f in fer_faces[i]]
            pairs = match(ours, theirs)
            same = sum(a == b for a, b in pairs)
            rows.append([f"mobilefer {det}", name, len(ours), len(theirs), len(pairs),
                         f"{same}/{len(pairs)}" if pairs else "n/a"])
    return _bench.table(["mobilefer config", "frame", "faces (mobilefer)", "faces (fer)", "matched (IoU >= 0.3)",
                         "same label"], rows)


def accuracy(clf: Any, runner: FerRunner, args: argparse.Namespace, tmp: Path, load: Any, evaluate: Any,
             predict: Any) -> tuple[str, float, float]:
    val = load(args.val, image_size=clf.preset.input_size, color=clf.preset.color)
    with np.load(args.val) as raw:
        images, labels = np.asarray(raw["images"]), np.asarray(raw["labels"])
    npz = args.val
    if args.val_limit:
        keep = slice(0, args.val_limit)
        val = type(val)(val.images[keep], val.labels[keep], val.classes, val.sources[keep])
        images, labels = images[keep], labels[keep]
        npz = str(tmp / "val_subset.npz")
        np.savez(npz, images=images, labels=labels)
    ours = evaluate(clf.model, val, clf.preset)
    ours_pred = predict(clf.model, val.images, clf.preset).argmax(1)
    theirs = runner.ask(cmd="val", npz=npz)
    fer_pred = np.asarray(theirs["pred"])
    fer_acc = float((fer_pred == labels).mean())
    f1s = []
    for c in range(len(val.classes)):
        tp = float(((fer_pred == c) & (labels == c)).sum())
        denom = float((fer_pred == c).sum() + (labels == c).sum())
        f1s.append(2 * tp / denom if denom else 0.0)
    table = _bench.table(
        ["classifier", "input", "FER2013 val accuracy", "macro-F1", "faces"],
        [[f"mobilefer {clf.name}", f"{clf.preset.input_size[0]}x{clf.preset.input_size[1]} {clf.preset.color}",
          f"{ours.accuracy:.4f}", f"{ours.macro_f1:.4f}", len(labels)],
         ["fer mini-Xception (TFLite, as fer runs it)", f"{theirs['input_size'][0]}x{theirs['input_size'][1]} gray",
          f"{fer_acc:.4f}", f"{float(np.mean(f1s)):.4f}", len(labels)]],
    )
    return table, float((fer_pred == ours_pred).mean()), float(theirs["ms_per_face"])


if __name__ == "__main__":
    raise SystemExit(main())
