"""``mobilefer export`` (wired into :mod:`mobilefer.cli`).

::

    mobilefer export --format android OUT_DIR [--classifier CHECKPOINT] [--detector NAME]
                     [--detector-weights PTH] [--half] [--force]
    mobilefer export --format onnx MODEL OUT_PREFIX [--half] [--input-size N] [--force]
    mobilefer export --format tnn  MODEL OUT_PREFIX [--half] [--input-size N] [--force]

MODEL is a classifier checkpoint (``.safetensors``), ``default`` (the shipped classifier) or a detector
name (``ultraface-rfb-320`` / ``ultraface-slim-320``, weights from ``--detector-weights`` or the
registry). ``onnx`` writes ``OUT_PREFIX.onnx`` (``OUT_PREFIX`` itself when it ends in ``.onnx``),
``tnn`` writes ``OUT_PREFIX.tnnproto`` and ``OUT_PREFIX.tnnmodel``. What was written and the
verification figures go to stderr. Exit codes: 0 ok, 1 export failure (missing weights, existing
files, verification), 2 invalid arguments.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]

__all__ = ["add_export_parser", "run_export", "FORMATS"]

#: Values of ``--format``.
FORMATS: tuple[str, ...] = ("android", "onnx", "tnn")

_EPILOG = """\
examples:
  mobilefer export --format android bundle/ --classifier runs/fer-1/best.safetensors
  mobilefer export --format onnx runs/fer-1/best.safetensors out/fer          # out/fer.onnx
  mobilefer export --format tnn ultraface-rfb-320 out/rfb --detector-weights version-RFB-320.pth
See docs/export.md.
"""


def add_export_parser(subparsers: SubParsers) -> None:
    """Add the ``export`` sub-command (its handler is :func:`run_export`)."""
    p = subparsers.add_parser(
        "export",
        help="export models to ONNX or TNN, or write the Android bundle",
        description="Export a classifier or detector to ONNX / TNN (verified against torch), or write the "
        "Android bundle (detector + classifier as TNN and ONNX, licences, mobilefer.json).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--format", required=True, choices=FORMATS, help="android, onnx or tnn")
    p.add_argument("targets", nargs="+", metavar="ARG", help="android: OUT_DIR; onnx / tnn: MODEL OUT_PREFIX")
    p.add_argument("--classifier", default=None, metavar="CHECKPOINT",
                   help="android: classifier checkpoint (default: the shipped model)")
    p.add_argument("--detector", default=None, metavar="NAME",
                   help="android: ultraface-rfb-320 (default) or ultraface-slim-320")
    p.add_argument("--detector-weights", default=None, metavar="PTH",
                   help="UltraFace .pth weights (default: the weights registry: cache, else download)")
    p.add_argument("--half", action="store_true",
                   help="store conv / inner-product weights as float16 (android: TNN files only)")
    p.add_argument("--input-size", type=int, default=None, metavar="N",
                   help="onnx / tnn: classifier input side, or detector input width (128, 160, 320, 480, 640)")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    p.set_defaults(func=run_export)


def _say(line: str) -> None:
    sys.stderr.write(line + "\n")


def _load_model(model: str, detector_weights: str | None) -> tuple[Any, str]:
    """The object to export and its kind (``"classifier"`` / ``"detector"``)."""
    from mobilefer.cli import CliError
    from mobilefer.detect.ultraface import ULTRAFACE_VARIANTS

    if model == "haar":
        raise CliError("the Haar cascade is an OpenCV classifier, not a network: it cannot be exported; "
                       f"choose one of {', '.join(sorted(ULTRAFACE_VARIANTS))}")
    if model in ULTRAFACE_VARIANTS:
        from mobilefer.export.bundle import _load_detector

        return _load_detector(model, detector_weights, purpose=f"exporting {model}"), "detector"
    if detector_weights is not None:
        raise CliError("--detector-weights applies to detector models (ultraface-rfb-320, ultraface-slim-320)")
    from mobilefer.classify.classifier import ExpressionClassifier

    if model == "default":
        from mobilefer.errors import NoShippedModelError

        try:
            return ExpressionClassifier.default(), "classifier"
        except NoShippedModelError as exc:
            raise NoShippedModelError(f"{exc} (command line: give a checkpoint as MODEL)") from exc
    path = Path(model)
    if path.is_file():
        if path.suffix != ".safetensors":
            raise CliError(f"{path}: a classifier checkpoint is a .safetensors file (written by mobilefer train)")
        return ExpressionClassifier.from_checkpoint(path), "classifier"
    raise CliError(
        f"MODEL {model!r} is not an existing classifier checkpoint (.safetensors), 'default', or a detector name "
        f"({', '.join(sorted(ULTRAFACE_VARIANTS))})"
    )


def _input_size(kind: str, size: int | None) -> int | tuple[int, int] | None:
    if size is None:
        return None
    if kind == "detector":
        from mobilefer.detect.ultraface import ULTRAFACE

        return ULTRAFACE.input_size(size)
    return size


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)


def _export_onnx(args: argparse.Namespace, model_name: str, prefix: str) -> int:
    from mobilefer.checkpoint import atomic_write_bytes
    from mobilefer.errors import OutputExistsError
    from mobilefer.export.onnx import export_onnx_bytes, export_spec, verify_onnx
    from mobilefer.export.onnx_half import half_weights_onnx, verify_half_onnx

    path = Path(prefix if prefix.endswith(".onnx") else prefix + ".onnx")
    if path.exists() and not args.force:
        raise OutputExistsError(f"{path} exists; pass --force to overwrite it")
    if path.is_dir():
        raise OutputExistsError(f"{path} is a folder; give a file path")
    model, kind = _load_model(model_name, args.detector_weights)
    spec = export_spec(model, input_size=_input_size(kind, args.input_size))
    data = export_onnx_bytes(spec)
    diff = verify_onnx(data, spec)
    notes = [f"max |onnxruntime - torch| = {diff:.2e}"]
    if args.half:
        half = half_weights_onnx(data)
        half_diff = verify_half_onnx(half, data, spec.input_shape)
        drift = verify_onnx(half, spec, tolerance=math.inf)
        notes = [
            f"max |onnxruntime - torch| = {diff:.2e} (float32 weights)",
            f"max |float16-weight file - float32 file with the same rounded weights| = {half_diff:.2e}",
            f"max |float16-weight file - torch| = {drift:.2e} (weight rounding)",
        ]
        data = half
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data)
    _say(f"wrote {path} ({kind}, input '{spec.input_name}' {_shape(spec.input_shape)} with dynamic batch, "
         f"outputs {', '.join(spec.output_names)}, {'float16' if args.half else 'float32'} weights, {len(data):,} bytes)")
    for line in notes:
        _say(f"verification: {line}")
    return 0


def _export_tnn(args: argparse.Namespace, model_name: str, prefix: str) -> int:
    import onnx

    from mobilefer.errors import OutputExistsError
    from mobilefer.export.onnx import export_onnx_bytes, export_spec, verify_onnx
    from mobilefer.export.tnn import onnx_to_tnn_model, verify_tnn, write_tnn
    from mobilefer.export.tnn.writer import tnn_paths

    targets = tnn_paths(prefix)
    if not args.force:
        for target in targets:
            if target.exists():
                raise OutputExistsError(f"{target} exists; pass --force to overwrite it")
    model, kind = _load_model(model_name, args.detector_weights)
    spec = export_spec(model, input_size=_input_size(kind, args.input_size))
    data = export_onnx_bytes(spec, dynamic_batch=False)
    onnx_diff = verify_onnx(data, spec)
    proto = onnx.load_from_string(data)
    tnn_model = onnx_to_tnn_model(proto, half=args.half)
    tnn_diff = verify_tnn(proto, tnn_model, half=args.half)
    files = write_tnn(tnn_model, prefix, force=args.force)
    sizes = f"{files.proto.stat().st_size:,} + {files.model.stat().st_size:,} bytes"
    _say(f"wrote {files.proto} and {files.model} ({kind}, {len(tnn_model.layers)} layers, input "
         f"'{spec.input_name}' {_shape(files.input_shapes[0])}, outputs {', '.join(files.output_names)}, "
         f"{'float16' if args.half else 'float32'} weights, {sizes})")
    _say(f"verification: max |onnxruntime - torch| = {onnx_diff:.2e}; max |TNN executor - onnxruntime| = "
         f"{tnn_diff:.2e}{' (against float16-rounded weights)' if args.half else ''}")
    return 0


def _export_android(args: argparse.Namespace, out_dir: str) -> int:
    import hashlib

    from mobilefer.errors import NoShippedModelError
    from mobilefer.export.bundle import android_bundle

    try:
        bundle = android_bundle(
            out_dir,
            classifier=args.classifier,
            detector=args.detector or "ultraface-rfb-320",
            detector_weights=args.detector_weights,
            half=args.half,
            force=args.force,
        )
    except NoShippedModelError as exc:
        raise NoShippedModelError(f"{exc} (command line: --classifier CHECKPOINT)") from exc
    _say(f"wrote the Android bundle {bundle.out_dir} (detector {bundle.detector}, classifier {bundle.classifier}, "
         f"TNN weights {'float16' if bundle.half else 'float32'}):")
    for path in bundle.files:
        data = path.read_bytes()
        _say(f"  {path.name:22s} {len(data):>10,} bytes  sha256 {hashlib.sha256(data).hexdigest()[:16]}")
    d = bundle.max_diffs
    _say(f"verification: detector max |onnxruntime - torch| = {d['detector.onnx']:.2e}, max |TNN - onnxruntime| = "
         f"{d['detector.tnn']:.2e}; classifier {d['classifier.onnx']:.2e}, {d['classifier.tnn']:.2e}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    """Handler of ``mobilefer export``; returns the exit code (errors propagate to :func:`mobilefer.cli.main`)."""
    from mobilefer.cli import CliError

    targets: list[str] = list(args.targets)
    if args.format == "android":
        if len(targets) != 1:
            raise CliError(f"--format android takes one argument, OUT_DIR; got {len(targets)}: {targets}")
        if args.input_size is not None:
            raise CliError("--input-size applies to --format onnx / tnn; the bundle uses each model's own input size")
        return _export_android(args, targets[0])
    if len(targets) != 2:
        raise CliError(f"--format {args.format} takes two arguments, MODEL OUT_PREFIX; got {len(targets)}: {targets}")
    if args.classifier is not None or args.detector is not None:
        raise CliError(f"--classifier / --detector apply to --format android; with --format {args.format} "
                       "give the model as MODEL")
    if args.format == "onnx":
        return _export_onnx(args, targets[0], targets[1])
    return _export_tnn(args, targets[0], targets[1])
