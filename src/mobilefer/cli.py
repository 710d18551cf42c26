"""The ``mobilefer`` command line.

Sub-commands: ``predict`` (images, folders, videos → annotated files + JSON), ``info`` (versions,
weights, cache), ``train`` and ``eval`` (see :mod:`mobilefer.train.cli`) and ``export``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mobilefer.errors import InvalidInputError, MobileferError, OutputExistsError

__all__ = ["main", "build_parser"]

logger = logging.getLogger("mobilefer.cli")

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


class CliError(MobileferError):
    """A usage problem reported by the CLI (exit code 2)."""


@dataclass(frozen=True)
class Job:
    """One input and the files it produces."""

    source: Path
    kind: str  # "image" | "video"
    annotated: Path
    json_path: Path


def _collect_inputs(inputs: Sequence[str]) -> list[tuple[Path, str]]:
    found: list[tuple[Path, str]] = []
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            members = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES)
            if not members:
                raise CliError(f"{path}: folder holds no images ({', '.join(IMAGE_SUFFIXES)}) or videos")
            found.extend((p, "video" if p.suffix.lower() in VIDEO_SUFFIXES else "image") for p in members)
        elif path.is_file():
            suffix = path.suffix.lower()
            if suffix in VIDEO_SUFFIXES:
                found.append((path, "video"))
            elif suffix in IMAGE_SUFFIXES:
                found.append((path, "image"))
            else:
                raise CliError(f"{path}: unsupported file type {suffix!r} (images: {IMAGE_SUFFIXES}, videos: {VIDEO_SUFFIXES})")
        else:
            raise CliError(f"{path}: no such file or folder")
    return found


def _plan(inputs: Sequence[str], out_dir: Path, force: bool) -> list[Job]:
    jobs: list[Job] = []
    seen: dict[Path, Path] = {}
    for source, kind in _collect_inputs(inputs):
        ext = ".mp4" if kind == "video" else (source.suffix.lower() if source.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp") else ".png")
        annotated = out_dir / f"{source.stem}.annotated{ext}"
        json_path = out_dir / f"{source.stem}.json"
        for target in (annotated, json_path):
            if target in seen and seen[target] != source.resolve():
                raise CliError(f"inputs {seen[target]} and {source} would both write {target}; rename one of them")
            seen[target] = source.resolve()
            if target.exists() and not force:
                raise OutputExistsError(f"{target} exists; pass --force to overwrite it")
        jobs.append(Job(source, kind, annotated, json_path))
    return jobs


def _run_image(pipeline: Any, job: Job) -> dict[str, Any]:
    import cv2
    import numpy as np

    from mobilefer.checkpoint import atomic_write_bytes
    from mobilefer.errors import InvalidImageError

    data = np.fromfile(str(job.source), dtype=np.uint8)
    frame = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if frame is None:
        raise InvalidImageError(f"{job.source}: cannot decode the image (corrupt or not an image)")
    results = pipeline.predict(frame)
    ok, encoded = cv2.imencode(job.annotated.suffix, pipeline.annotate(frame, results))
    if not ok:
        raise MobileferError(f"cannot encode {job.annotated}")
    atomic_write_bytes(job.annotated, encoded.tobytes())
    record = {
        "input": str(job.source),
        "type": "image",
        "width": int(frame.shape[1]),
        "height": int(frame.shape[0]),
        "detector": pipeline.detector.name,
        "classifier": pipeline.classifier.name,
        "annotated": str(job.annotated),
        "faces": [r.to_dict() for r in results],
    }
    atomic_write_bytes(job.json_path, (json.dumps(record, indent=2) + "\n").encode())
    return record


def _run_video(pipeline: Any, job: Job) -> dict[str, Any]:
    import cv2

    from mobilefer.checkpoint import atomic_write_bytes

    fd, tmp_name = tempfile.mkstemp(prefix=f".{job.annotated.stem}.", suffix=job.annotated.suffix, dir=job.annotated.parent)
    os.close(fd)
    writer = None
    frames: list[dict[str, Any]] = []
    try:
        frames_iter = pipeline.iter_video(job.source)  # opens (and checks) the video now
        probe = cv2.VideoCapture(str(job.source))
        fps = probe.get(cv2.CAP_PROP_FPS) or 25.0
        probe.release()
        for index, frame, results in frames_iter:
            if writer is None:
                h, w = frame.shape[:2]
                writer = cv2.VideoWriter(tmp_name, cv2.VideoWriter.fourcc(*"mp4v"), float(fps), (w, h))
            writer.write(pipeline.annotate(frame, results))
            frames.append({"frame_index": index, "faces": [r.to_dict() for r in results]})
        if writer is None:
            raise InvalidInputError("the video opened but no frame could be decoded; nothing written")
        writer.release()
        writer = None
        os.chmod(tmp_name, 0o644)  # mkstemp creates 0600; outputs are ordinary files
        os.replace(tmp_name, job.annotated)
    finally:
        if writer is not None:
            writer.release()
        Path(tmp_name).unlink(missing_ok=True)
    record = {
        "input": str(job.source),
        "type": "video",
        "detector": pipeline.detector.name,
        "classifier": pipeline.classifier.name,
        "annotated": str(job.annotated),
        "frames": frames,
    }
    atomic_write_bytes(job.json_path, (json.dumps(record) + "\n").encode())
    return record


def _cmd_predict(args: argparse.Namespace) -> int:
    from mobilefer.pipeline import Pipeline

    if args.jobs < 1:
        raise CliError(f"--jobs must be >= 1, got {args.jobs}")
    out_dir = Path(args.output)
    if out_dir.exists() and not out_dir.is_dir():
        raise CliError(f"{out_dir} exists and is not a folder")
    jobs = _plan(args.inputs, out_dir, args.force)
    out_dir.mkdir(parents=True, exist_ok=True)
    pipeline = Pipeline(
        detector=args.detector, classifier=args.classifier, backend=args.backend,
        detector_weights=args.detector_weights, tta=True if args.tta else None,
    )
    logger.info("%r", pipeline)

    def run(job: Job) -> dict[str, Any]:
        return (_run_video if job.kind == "video" else _run_image)(pipeline, job)

    failures = 0
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run, job) for job in jobs]
        for job, future in zip(jobs, futures, strict=True):
            try:
                record = future.result()
            except (MobileferError, OSError) as exc:  # OSError: an output cannot be written (disk full, ...)
                failures += 1
                sys.stderr.write(f"mobilefer: error: {job.source}: {exc}\n")
                continue
            if args.json:
                sys.stdout.write(json.dumps(record) + "\n")
            else:
                count = len(record["faces"]) if "faces" in record else len(record["frames"])
                unit = "face(s)" if "faces" in record else "frame(s)"
                sys.stderr.write(f"{job.source}: {count} {unit} -> {job.annotated}, {job.json_path}\n")
    return 1 if failures else 0


def _cmd_info(args: argparse.Namespace) -> int:
    import platform

    from mobilefer import __version__
    from mobilefer.errors import WeightsError
    from mobilefer.weights import cache_dir, list_records, resolve

    versions: dict[str, str] = {"mobilefer": __version__, "python": platform.python_version()}
    for module in ("torch", "torchvision", "numpy", "cv2", "onnx", "onnxruntime", "timm", "safetensors"):
        try:
            versions[module] = str(__import__(module).__version__)
        except ImportError:
            versions[module] = "not installed"
    weights: dict[str, dict[str, Any]] = {}
    for record in list_records():
        try:
            path = resolve(record, offline=True)
            weights[record.name] = {"status": "ok", "path": str(path)}
        except WeightsError as exc:
            weights[record.name] = {"status": "unavailable", "reason": str(exc), "url": record.url}
    info = {
        "versions": versions,
        "cache_dir": str(cache_dir()),
        "mobilefer_home": os.environ.get("MOBILEFER_HOME", str(Path.home() / ".cache" / "mobilefer")),
        "offline": os.environ.get("MOBILEFER_OFFLINE", ""),
        "weights": weights,
    }
    if args.json:
        sys.stdout.write(json.dumps(info) + "\n")
        return 0
    lines = ["mobilefer " + __version__, "", "versions:"]
    lines += [f"  {k:12s} {v}" for k, v in versions.items()]
    lines += ["", f"cache dir: {info['cache_dir']}", "", "weights:"]
    for name, w in weights.items():
        where = w["path"] if w["status"] == "ok" else f"unavailable ({w['reason']})"
        lines.append(f"  {name:22s} {where}")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mobilefer", description="Real-time facial expression recognition.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("predict", help="detect faces and classify expressions in images, folders or videos")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image, folder or video")
    p.add_argument("-o", "--output", default="mobilefer-out", help="output folder (default ./mobilefer-out)")
    p.add_argument("--json", action="store_true", help="print one JSON object per input to stdout")
    p.add_argument("--detector", default="auto", help="auto, ultraface-rfb-320, ultraface-slim-320 or haar")
    p.add_argument("--detector-weights", default=None, help="UltraFace .pth file (default: registry)")
    p.add_argument("--classifier", default=None, help="classifier checkpoint (default: the shipped model)")
    p.add_argument("--backend", default="onnxruntime", choices=["onnxruntime", "torch"])
    p.add_argument("--tta", action="store_true", help="mirror test-time augmentation for the classifier")
    p.add_argument("--jobs", type=int, default=1, help="inputs processed in parallel (threads)")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.set_defaults(func=_cmd_predict)

    i = sub.add_parser("info", help="versions, weights and where they resolve from, cache dir")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=_cmd_info)

    from mobilefer.train.cli import add_eval_parser, add_train_parser

    add_train_parser(sub)
    add_eval_parser(sub)
    try:
        from mobilefer.export.cli import add_export_parser
    except ImportError:  # pragma: no cover - the export CLI is optional in partial installs
        pass
    else:
        add_export_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mobilefer`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        code: int = args.func(args)
        return code
    except CliError as exc:
        sys.stderr.write(f"mobilefer: error: {exc}\n")
        return 2
    except MobileferError as exc:
        sys.stderr.write(f"mobilefer: error: {exc}\n")
        return 1
    except KeyboardInterrupt:  # pragma: no cover
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
