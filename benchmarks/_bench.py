"""Shared helpers of the benchmark scripts (timing, the classifier under test, reports, plots).

Not a benchmark itself. The scripts import it as ``import _bench`` (they run as
``python benchmarks/<name>.py``, which puts this folder on ``sys.path``).

Timing protocol: every candidate is warmed up, then each *repeat* calls it ``number`` times in a row
and records the mean time per call; the reported figure is the median over repeats. When several
candidates are compared, :func:`compare` interleaves them within each repeat (A, B, A, B, ...) so that
background load hits all of them alike, and ratios are taken between medians of the same run.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
RESULTS = ROOT / "benchmarks" / "results"
IMAGES = SHARED / "images"
ULTRAFACE_DIR = SHARED / "weights" / "ultraface"

#: Official UltraFace weight files by detector name (passed explicitly, so no download is attempted).
DETECTOR_WEIGHTS = {
    "ultraface-rfb-320": ULTRAFACE_DIR / "version-RFB-320.pth",
    "ultraface-slim-320": ULTRAFACE_DIR / "version-slim-320.pth",
    "haar": None,
}

STANDIN_NOTE = (
    "classifier: random-weight stand-in MobileNetV2(num_classes=7, in_chans=1, width_mult=1.0, stem_stride=2), "
    "preset fer2013-mnv2 48x48 gray (no shipped model in this build; latency does not depend on the weights, "
    "accuracy figures of it are meaningless)"
)


@dataclass(frozen=True)
class Timing:
    """Milliseconds per call: median, min and max over repeats (each repeat = mean of ``number`` calls)."""

    median_ms: float
    min_ms: float
    max_ms: float
    repeats: int
    number: int

    @property
    def per_second(self) -> float:
        return 1000.0 / self.median_ms if self.median_ms > 0 else float("inf")


def _timing(samples: Sequence[float], number: int) -> Timing:
    return Timing(statistics.median(samples), min(samples), max(samples), len(samples), number)


def measure(fn: Callable[[], Any], *, warmup: int = 3, repeats: int = 7, number: int | None = None,
            target_ms: float = 150.0) -> Timing:
    """Time ``fn()``: ``warmup`` untimed calls, then ``repeats`` x ``number`` timed calls."""
    return compare({"x": fn}, warmup=warmup, repeats=repeats, number=number, target_ms=target_ms)["x"]


def compare(
    fns: Mapping[str, Callable[[], Any]], *, warmup: int = 3, repeats: int = 7,
    number: int | Mapping[str, int] | None = None, target_ms: float = 150.0,
) -> dict[str, Timing]:
    """Time several candidates side by side, interleaved within every repeat.

    ``number`` (calls per repeat) may be one count for all, one per candidate, or ``None`` to pick per
    candidate with :func:`auto_number` so that a repeat lasts about ``target_ms``.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    if number is None:
        counts = {name: auto_number(fn, target_ms) for name, fn in fns.items()}
    elif isinstance(number, int):
        counts = dict.fromkeys(fns, number)
    else:
        counts = dict(number)
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            n = counts[name]
            start = time.perf_counter()
            for _ in range(n):
                fn()
            samples[name].append((time.perf_counter() - start) * 1000.0 / n)
    return {name: _timing(s, counts[name]) for name, s in samples.items()}


def auto_number(fn: Callable[[], Any], target_ms: float = 150.0, cap: int = 1000) -> int:
    """Calls per repeat so that one repeat lasts about ``target_ms`` (from one untimed-ish probe call)."""
    fn()
    start = time.perf_counter()
    fn()
    one = (time.perf_counter() - start) * 1000.0
    return max(1, min(cap, int(target_ms / max(one, 1e-3))))


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask), not the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def set_threads(threads: int) -> None:
    """Use ``threads`` intra-op threads in torch (onnxruntime sessions take theirs at creation)."""
    import torch

    torch.set_num_threads(threads)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def environment() -> dict[str, str]:
    """What the figures were measured on (printed and written with every table)."""
    import cv2
    import onnxruntime
    import torch

    return {
        "date": _dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "cpu": f"{cpu_name()}; {os.cpu_count()} CPUs in the machine, {available_cpus()} usable by this process",
        "load average (1/5/15 min) at start": loadavg(),
        "python": platform.python_version(),
        "versions": f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, opencv {cv2.__version__}, "
        f"numpy {np.__version__}",
    }


# ---------------------------------------------------------------------------------------- classifier
def standin_model() -> Any:
    """The architecture the shipped classifier will have, with random weights."""
    import torch

    from mobilefer.models import MobileNetV2

    torch.manual_seed(0)
    return MobileNetV2(num_classes=7, in_chans=1, width_mult=1.0, stem_stride=2).eval()


def standin_preset() -> Any:
    from mobilefer.classify import FER2013_LABELS
    from mobilefer.preset import Preset

    return Preset("fer2013-mnv2", (48, 48), "gray", (127.5,), (127.5,), labels=FER2013_LABELS)


def load_classifier(backend: str = "torch", threads: int | None = None, checkpoint: str = "default") -> tuple[Any, str]:
    """The shipped classifier (``ExpressionClassifier.default()``) or, if there is none, the stand-in.

    Args:
        backend: ``"torch"`` or ``"onnxruntime"``.
        threads: onnxruntime intra-op threads.
        checkpoint: ``"default"`` or a checkpoint written by ``mobilefer train`` (used instead).

    Returns:
        ``(classifier, note)``; the note says which one it is (printed and written with every table).
    """
    from mobilefer.classify import ExpressionClassifier
    from mobilefer.errors import NoShippedModelError

    if checkpoint != "default":
        clf = ExpressionClassifier.from_checkpoint(checkpoint, backend=backend, threads=threads)
        return clf, f"classifier: checkpoint {checkpoint} ({clf.preset.name}, {clf.preset.input_size}, {clf.preset.color})"
    try:
        clf = ExpressionClassifier.default(backend=backend, threads=threads)
        return clf, f"classifier: shipped {clf.name} ({clf.preset.name}, {clf.preset.input_size}, {clf.preset.color})"
    except NoShippedModelError:
        clf = ExpressionClassifier(standin_model(), standin_preset(), backend=backend, threads=threads, name="standin")
        return clf, STANDIN_NOTE


def ort_session(module: Any, width: int, height: int, channels: int, threads: int | None) -> Any:
    """An onnxruntime session of mobilefer's ONNX export of ``module`` (dynamic batch, initializers
    not listed as graph inputs) for ``(N, channels, height, width)`` input."""
    import dataclasses

    from mobilefer.export.onnx import export_onnx_bytes, export_spec
    from mobilefer.runtime import make_session

    spec = dataclasses.replace(export_spec(module, input_size=(width, height)), input_shape=(1, channels, height, width))
    return make_session(export_onnx_bytes(spec, dynamic_batch=True), threads)


# ---------------------------------------------------------------------------------------- images
def frame_640x480(name: str) -> np.ndarray:
    """``../shared/images/<name>`` resized to 640x480 BGR (INTER_AREA)."""
    import cv2

    path = IMAGES / name
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SystemExit(f"cannot read {path} (the benchmarks need ../shared/images)")
    return cv2.resize(image, (640, 480), interpolation=cv2.INTER_AREA)


# ---------------------------------------------------------------------------------------- reports
def fmt(value: float, digits: int = 2) -> str:
    if value != value:  # NaN
        return "n/a"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.{digits}f}"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-markdown table (also readable as plain text)."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells]
    return "\n".join([line, rule, *body])


def env_block(env: Mapping[str, str], notes: Sequence[str] = ()) -> str:
    lines = [f"- {k}: {v}" for k, v in env.items()]
    lines += [f"- {n}" for n in notes]
    lines.append(f"- load average (1/5/15 min) at end: {loadavg()}")
    return "\n".join(lines)


def write_report(name: str, title: str, command: str, sections: Sequence[str], env: Mapping[str, str],
                 notes: Sequence[str] = (), plots: Sequence[str] = ()) -> Path:
    """Write ``benchmarks/results/<name>.md`` and return its path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    parts = [f"# {title}", "", f"Command: `{command}`", "", env_block(env, notes), ""]
    for section in sections:
        parts += [section, ""]
    for plot in plots:
        parts += [f"![{plot}]({plot})", ""]
    path = RESULTS / f"{name}.md"
    path.write_text("\n".join(parts))
    update_readme(name, sections, env, notes, plots)
    return path


def update_readme(name: str, sections: Sequence[str], env: Mapping[str, str], notes: Sequence[str],
                  plots: Sequence[str]) -> None:
    """Replace the block between ``<!-- name:start -->`` and ``<!-- name:end -->`` in benchmarks/README.md."""
    readme = ROOT / "benchmarks" / "README.md"
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if not readme.is_file():
        return
    text = readme.read_text()
    if start not in text or end not in text:
        return
    body = [f"Measured {env.get('date', '')}; {env.get('cpu', '')}; load average at start "
            f"{env.get('load average (1/5/15 min) at start', 'n/a')}, at end {loadavg()}.", ""]
    body += [f"- {n}" for n in notes] + [""]
    for section in sections:
        body += ["#### " + section[3:] if section.startswith("## ") else section, ""]
    body += [f"![{p}](results/{p})" for p in plots]
    head, rest = text.split(start, 1)
    tail = rest.split(end, 1)[1]
    readme.write_text(head + start + "\n" + "\n".join(body).strip() + "\n" + end + tail)


def latency_parser(doc: str | None, threads_help: str = "torch and ORT threads") -> argparse.ArgumentParser:
    """The options every latency script shares: ``--repeats``, ``--warmup``, ``--batches``, ``--no-write``.

    ``--threads`` is added by the caller, whose meaning of it differs (one count, or a list).
    """
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batches", default="1,32", help="comma-separated batch sizes")
    parser.add_argument("--no-write", action="store_true", help="print only (no results/*.md, *.png)")
    return parser


def command_line() -> str:
    return "python " + " ".join([f"benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]])


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def grouped_bars(path: Path, title: str, ylabel: str, groups: Sequence[str], series: Mapping[str, Sequence[float]],
                 *, log: bool = False) -> None:
    """A grouped bar chart: one group per entry of ``groups``, one bar per series."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(groups) * max(1, len(series)) / 2 + 2), 4.2))
    n = max(1, len(series))
    width = 0.8 / n
    xs = np.arange(len(groups))
    for i, (label, values) in enumerate(series.items()):
        bars = ax.bar(xs + (i - (n - 1) / 2) * width, values, width, label=label)
        ax.bar_label(bars, labels=[fmt(v) for v in values], fontsize=7, padding=1)
    ax.set_xticks(xs, groups, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if log:
        ax.set_yscale("log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
