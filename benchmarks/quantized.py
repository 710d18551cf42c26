"""fp16 and int8 ONNX variants of the classifier: size, onnxruntime latency and FER2013 val accuracy cost.

Variants of mobilefer's ONNX export of the classifier:

* fp32: the export the Pipeline runs;
* fp16 weights: ``mobilefer.export.onnx_half.half_weights_onnx`` (weights stored as float16, arithmetic
  stays float32: half the file, same speed);
* int8 dynamic: ``onnxruntime.quantization.quantize_dynamic`` (int8 weights, activations quantized at
  run time);
* int8 static QDQ: ``quantize_static`` (per-channel int8 weights, uint8 activations calibrated on
  FER2013 training faces, the x86 "U8S8" format).

Accuracy is measured on the FER2013 val split with the preset's preprocessing; the latency of each
variant is timed side by side (interleaved) at batch 1 and 32. Meaningful only with trained weights:
by default the shipped classifier; ``--classifier PATH`` takes a checkpoint of ``mobilefer train``.

Usage::

    python benchmarks/quantized.py
    python benchmarks/quantized.py --classifier runs/<run>/best.safetensors --calib 1000
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import _bench
import numpy as np


def variants(fp32: bytes, calib: np.ndarray, folder: Path) -> dict[str, bytes]:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from mobilefer.export.onnx_half import half_weights_onnx

    src = folder / "fp32.onnx"
    src.write_bytes(fp32)
    pre = folder / "fp32_pre.onnx"
    try:
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
    except Exception as exc:  # noqa: BLE001 - optional step; quantize the plain export instead
        print(f"quant_pre_process failed ({exc}); quantizing the plain export")
        pre = src
    out: dict[str, bytes] = {"fp32": fp32, "fp16 weights": half_weights_onnx(fp32)}
    quantize_dynamic(str(pre), str(folder / "dyn.onnx"), weight_type=QuantType.QInt8)
    out["int8 dynamic"] = (folder / "dyn.onnx").read_bytes()

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self.batches = iter([calib[i : i + 64] for i in range(0, len(calib), 64)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {"input": batch}

    quantize_static(str(pre), str(folder / "qdq.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    out["int8 static QDQ"] = (folder / "qdq.onnx").read_bytes()
    return out


def main() -> int:
    from mobilefer.export.onnx import export_onnx_bytes, export_spec
    from mobilefer.runtime import make_session
    from mobilefer.train.data import load_fer2013_npz

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classifier", default="default", help="'default' (shipped) or a checkpoint path")
    parser.add_argument("--threads", type=int, default=_bench.available_cpus())
    parser.add_argument("--val", default=str(_bench.SHARED / "data/fer2013/fer2013_val.npz"))
    parser.add_argument("--train", default=str(_bench.SHARED / "data/fer2013/fer2013_train.npz"))
    parser.add_argument("--calib", type=int, default=512, help="training faces for static calibration")
    parser.add_argument("--val-limit", type=int, default=0, help="first N val faces only (0 = all)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-write", action="store_true", help="print only (no results/*.md, *.png)")
    args = parser.parse_args()
    env = _bench.environment()
    clf, note = _bench.load_classifier("torch", checkpoint=args.classifier)
    preset = clf.preset
    val = load_fer2013_npz(args.val, image_size=preset.input_size, color=preset.color)
    x_val = preset.normalize(val.images[: args.val_limit or None])
    y_val = val.labels[: args.val_limit or None]
    rng = np.random.default_rng(0)
    train = load_fer2013_npz(args.train, image_size=preset.input_size, color=preset.color)
    x_calib = preset.normalize(train.images[rng.choice(len(train.images), args.calib, replace=False)])

    fp32 = export_onnx_bytes(export_spec(clf), dynamic_batch=True)
    with tempfile.TemporaryDirectory() as tmp:
        models = variants(fp32, x_calib, Path(tmp))
    sessions = {k: make_session(v, args.threads) for k, v in models.items()}

    def logits(session: Any, x: np.ndarray) -> np.ndarray:
        return np.concatenate([session.run(["logits"], {"input": x[i : i + 256]})[0] for i in range(0, len(x), 256)])

    ref = logits(sessions["fp32"], x_val)
    rows: list[list[Any]] = []
    lat: dict[int, dict[str, float]] = {}
    for batch in (1, 32):
        xb = x_val[:batch]
        t = _bench.compare({k: (lambda s=s, xb=xb: s.run(None, {"input": xb})) for k, s in sessions.items()},
                           warmup=5, repeats=args.repeats)
        lat[batch] = {k: v.median_ms for k, v in t.items()}
    for name, session in sessions.items():
        out = ref if name == "fp32" else logits(session, x_val)
        pred = out.argmax(1)
        rows.append([name, f"{len(models[name]) / 1024:.0f}", _bench.fmt(lat[1][name], 3), _bench.fmt(lat[32][name]),
                     f"{(pred == y_val).mean():.4f}", f"{((pred == y_val).mean() - (ref.argmax(1) == y_val).mean()) * 100:+.2f}",
                     f"{(pred == ref.argmax(1)).mean():.4f}", f"{np.abs(out - ref).max():.3g}"])
        print(" | ".join(str(v) for v in rows[-1]), flush=True)
    result = _bench.table(["variant", "size KiB", "ms batch 1", "ms batch 32", "val accuracy", "vs fp32 (points)",
                           "same top-1 as fp32", "max |logit diff|"], rows)
    print(result)
    notes = [note, f"threads: {args.threads}; median of {args.repeats} repeats, variants interleaved",
             f"val faces: {len(y_val)}; static calibration: {args.calib} random training faces"]
    if args.no_write:
        return 0
    png = "quantized.png"
    _bench.grouped_bars(_bench.RESULTS / png, f"Classifier ONNX variants, onnxruntime, {args.threads} threads",
                        "ms per batch", ["batch 1", "batch 32"], {k: [lat[1][k], lat[32][k]] for k in models}, log=True)
    path = _bench.write_report("quantized", "Classifier ONNX variants: fp32, fp16 weights, int8", _bench.command_line(),
                               ["## Size, latency and FER2013 val accuracy", result], env, notes, [png])
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
