"""ONNX export of mobilefer's classifiers and detectors, verified against onnxruntime.

:func:`to_onnx` writes one self-contained ``.onnx`` file (no external-data side file) with fixed
tensor names — classifier ``input`` → ``logits``; detector ``input`` → ``scores``, ``boxes`` (raw
network outputs: soft-maxed scores and prior regressions; decoding is left to the caller, as mobile
apps do) — and the model's preset in the metadata. Before returning it runs ``onnx.checker`` and
compares onnxruntime with PyTorch on random (and optionally real) inputs, raising
:class:`~mobilefer.errors.ExportVerificationError` when they differ by more than the tolerance.
"""

from __future__ import annotations

import io
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mobilefer.errors import ExportError, ExportVerificationError, InvalidInputError, OutputExistsError
from mobilefer.preset import Preset

__all__ = ["OnnxExport", "ExportSpec", "export_spec", "export_onnx_bytes", "to_onnx", "verify_onnx", "DEFAULT_OPSET"]

logger = logging.getLogger(__name__)

DEFAULT_OPSET = 17
TOLERANCE = 1e-4


@dataclass(frozen=True)
class ExportSpec:
    """What is exported: the module, its input shape, tensor names and metadata.

    Attributes:
        module: The torch module traced (eval mode).
        kind: ``"classifier"`` or ``"detector"``.
        input_shape: ``(1, C, H, W)`` example shape.
        input_name: Always ``"input"``.
        output_names: ``("logits",)`` or ``("scores", "boxes")``.
        preset: The preprocessing preset written into the metadata (may be None for bare modules).
        metadata: Extra metadata (strings).
    """

    module: nn.Module
    kind: str
    input_shape: tuple[int, int, int, int]
    input_name: str
    output_names: tuple[str, ...]
    preset: Preset | None
    metadata: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class OnnxExport:
    """Result of :func:`to_onnx`.

    Attributes:
        path: The written file.
        kind: ``"classifier"`` or ``"detector"``.
        input_name: ``"input"``.
        output_names: Output tensor names.
        input_shape: Example input shape (batch dimension dynamic if requested).
        max_abs_diff: Largest |onnxruntime - torch| seen during verification.
        opset: ONNX opset of the file.
    """

    path: Path
    kind: str
    input_name: str
    output_names: tuple[str, ...]
    input_shape: tuple[int, int, int, int]
    max_abs_diff: float
    opset: int


def _size_tuple(input_size: int | tuple[int, int] | None, default: tuple[int, int]) -> tuple[int, int]:
    if input_size is None:
        return default
    if isinstance(input_size, int) and not isinstance(input_size, bool):
        size = (input_size, input_size)
    elif isinstance(input_size, (tuple, list)) and len(input_size) == 2:
        size = (int(input_size[0]), int(input_size[1]))
    else:
        raise InvalidInputError(f"input_size must be an int or (width, height), got {input_size!r}")
    if not all(8 <= v <= 4096 for v in size):
        raise InvalidInputError(f"input_size must be within 8..4096 pixels, got {input_size!r}")
    return size


def export_spec(model: Any, *, input_size: int | tuple[int, int] | None = None, preset: Preset | None = None) -> ExportSpec:
    """Work out what to export for ``model``.

    Accepts an :class:`~mobilefer.classify.ExpressionClassifier`, an UltraFace detector or network,
    or a bare classification ``nn.Module`` (MobileNetV2/V1 or any module taking (N, C, H, W)).

    Raises:
        InvalidInputError: For objects that cannot be exported.
    """
    from mobilefer.detect.ultraface import ULTRAFACE, UltraFaceDetector
    from mobilefer.detect.ultraface_net import UltraFaceNet

    if isinstance(model, UltraFaceDetector) or isinstance(model, UltraFaceNet):
        net = model.net if isinstance(model, UltraFaceDetector) else model
        det_preset = model.preset if isinstance(model, UltraFaceDetector) else ULTRAFACE.preset(320)
        width, height = _size_tuple(input_size, det_preset.input_size)
        det_preset = ULTRAFACE.preset(width)
        if det_preset.input_size != (width, height):
            raise InvalidInputError(f"UltraFace input size must be one of {ULTRAFACE.input_sizes}, got {(width, height)}")
        cfg = ULTRAFACE
        priors = {
            "min_boxes": [list(m) for m in cfg.min_boxes],
            "strides": list(cfg.strides),
            "center_variance": cfg.center_variance,
            "size_variance": cfg.size_variance,
            "clamp_priors": cfg.clamp_priors,
            "score_threshold": cfg.score_threshold,
            "iou_threshold": cfg.iou_threshold,
            "candidate_size": cfg.candidate_size,
            "num_priors": cfg.num_priors(width),
            "prior_center": "(i + 0.5) / feature_map_width, (j + 0.5) / feature_map_height",
        }
        name = model.name if isinstance(model, UltraFaceDetector) else f"ultraface-{net.arch}-320"
        return ExportSpec(
            module=net.eval(),
            kind="detector",
            input_shape=(1, 3, height, width),
            input_name="input",
            output_names=("scores", "boxes"),
            preset=det_preset,
            metadata=(("mobilefer.model", name), ("mobilefer.ultraface", json.dumps(priors, sort_keys=True))),
        )
    classifier_preset = preset
    module = model
    if hasattr(model, "model") and hasattr(model, "preset") and isinstance(model.model, nn.Module):
        module, classifier_preset = model.model, preset or model.preset
    if not isinstance(module, nn.Module):
        raise InvalidInputError(
            f"to_onnx() exports an nn.Module, an ExpressionClassifier or an UltraFace detector, got {type(model).__name__}"
        )
    default = classifier_preset.input_size if classifier_preset is not None else (224, 224)
    width, height = _size_tuple(input_size, default)
    channels = classifier_preset.channels if classifier_preset is not None else int(getattr(module, "in_chans", 3))
    meta: list[tuple[str, str]] = [("mobilefer.model", type(module).__name__)]
    return ExportSpec(
        module=module.eval(),
        kind="classifier",
        input_shape=(1, channels, height, width),
        input_name="input",
        output_names=("logits",),
        preset=classifier_preset,
        metadata=tuple(meta),
    )


def export_onnx_bytes(spec: ExportSpec, *, dynamic_batch: bool = True, opset: int = DEFAULT_OPSET) -> bytes:
    """Trace ``spec.module`` to a serialized ONNX model (metadata included), without verification."""
    import onnx

    example = torch.zeros(spec.input_shape)
    names = [spec.input_name, *spec.output_names]
    dynamic_axes = {n: {0: "batch"} for n in names} if dynamic_batch else None
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        try:
            torch.onnx.export(
                spec.module,
                (example,),
                buffer,  # type: ignore[arg-type]  # the TorchScript exporter accepts file objects
                input_names=[spec.input_name],
                output_names=list(spec.output_names),
                dynamic_axes=dynamic_axes,
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
        except Exception as exc:  # noqa: BLE001 - torch raises many types; report them uniformly
            raise ExportError(f"torch.onnx.export failed for {type(spec.module).__name__}: {exc}") from exc
    proto = onnx.load_from_string(buffer.getvalue())
    # Initializers must not be graph inputs (lets onnxruntime fold them, unlike the official UltraFace files).
    init_names = {i.name for i in proto.graph.initializer}
    keep = [i for i in proto.graph.input if i.name not in init_names]
    if [i.name for i in keep] != [spec.input_name]:
        raise ExportError(
            f"the traced graph of {type(spec.module).__name__} has inputs {[i.name for i in keep]} instead of "
            f"[{spec.input_name!r}]: its outputs do not depend on the input tensor (data-dependent Python code, "
            ".numpy() or .item() calls are frozen into constants when tracing)"
        )
    del proto.graph.input[:]
    proto.graph.input.extend(keep)
    meta = dict(spec.metadata)
    meta["mobilefer.kind"] = spec.kind
    meta["mobilefer.input"] = spec.input_name
    meta["mobilefer.outputs"] = ",".join(spec.output_names)
    if spec.preset is not None:
        meta["mobilefer.preset"] = spec.preset.to_json()
        meta["labels"] = json.dumps(list(spec.preset.labels))
        meta["mean"] = json.dumps(list(spec.preset.mean))
        meta["std"] = json.dumps(list(spec.preset.std))
        meta["layout"] = "NCHW"
        meta["color"] = spec.preset.color
    from mobilefer import __version__

    meta["mobilefer.version"] = __version__
    del proto.metadata_props[:]
    for key, value in sorted(meta.items()):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "mobilefer"
    onnx.checker.check_model(proto)
    return bytes(proto.SerializeToString())


def _torch_outputs(module: nn.Module, x: np.ndarray) -> list[np.ndarray]:
    with torch.inference_mode():
        out = module(torch.from_numpy(x))
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return [o.detach().float().numpy() for o in outs]


def verify_onnx(
    model_bytes: bytes,
    spec: ExportSpec,
    inputs: list[np.ndarray] | None = None,
    *,
    tolerance: float = TOLERANCE,
    batch: int = 2,
    seed: int = 0,
) -> float:
    """Run the ONNX model in onnxruntime and torch on random (+ given) inputs; return the max abs diff.

    Raises:
        ExportVerificationError: If any output differs by more than ``tolerance``.
    """
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise ExportVerificationError(f"onnxruntime cannot load the exported model: {exc}") from exc
    rng = np.random.default_rng(seed)
    _, c, h, w = spec.input_shape
    dynamic = not isinstance(session.get_inputs()[0].shape[0], int)
    trials = [rng.standard_normal((batch if dynamic else 1, c, h, w)).astype(np.float32)]
    trials.extend(np.asarray(x, dtype=np.float32) for x in (inputs or []))
    worst = 0.0
    for x in trials:
        expected = _torch_outputs(spec.module, x)
        try:
            got = session.run(list(spec.output_names), {spec.input_name: x})
        except Exception as exc:  # noqa: BLE001 - e.g. a batch size a static-batch export does not take
            raise ExportVerificationError(
                f"onnxruntime cannot run the exported model on an input of shape {x.shape}: {exc}"
            ) from exc
        for name, e, g in zip(spec.output_names, expected, got, strict=True):
            if e.shape != g.shape:
                raise ExportVerificationError(f"output {name!r}: onnxruntime shape {g.shape} != torch shape {e.shape}")
            diff = float(np.max(np.abs(e - g))) if e.size else 0.0
            if not np.isfinite(diff) or diff > tolerance:
                raise ExportVerificationError(
                    f"output {name!r} differs between onnxruntime and torch by {diff:.3g} (> {tolerance:g})"
                )
            worst = max(worst, diff)
    return worst


def to_onnx(
    model: Any,
    path: str | Path,
    *,
    input_size: int | tuple[int, int] | None = None,
    dynamic_batch: bool = True,
    opset: int = DEFAULT_OPSET,
    force: bool = False,
    preset: Preset | None = None,
    verify_inputs: list[np.ndarray] | None = None,
    tolerance: float = TOLERANCE,
) -> OnnxExport:
    """Export ``model`` to ``path`` as a verified, self-contained ONNX file.

    Args:
        model: An ExpressionClassifier, an UltraFace detector/network, or a classification nn.Module.
        path: Output file (``.onnx``). Existing files are only replaced with ``force=True``.
        input_size: ``(width, height)`` or a side; defaults to the model's preset (224 for bare modules).
        dynamic_batch: Make the batch dimension dynamic.
        opset: ONNX opset.
        force: Overwrite an existing file.
        preset: Preset to record for a bare module.
        verify_inputs: Extra (N, C, H, W) float32 network inputs (e.g. real preprocessed images) to verify on.
        tolerance: Maximum allowed |onnxruntime - torch|.

    Raises:
        OutputExistsError: If ``path`` exists and ``force`` is False.
        ExportError / ExportVerificationError: If export or verification fails (nothing is written).
    """
    from mobilefer.checkpoint import atomic_write_bytes

    path = Path(path)
    if path.exists() and not force:
        raise OutputExistsError(f"{path} exists; pass force=True (or --force) to overwrite it")
    if path.is_dir():
        raise InvalidInputError(f"{path} is a directory; give a file path ending in .onnx")
    if not path.parent.is_dir():
        raise InvalidInputError(f"output folder {path.parent} does not exist")
    if not isinstance(opset, int) or not 13 <= opset <= 21:
        raise InvalidInputError(f"opset must be an int in 13..21, got {opset!r}")
    spec = export_spec(model, input_size=input_size, preset=preset)
    data = export_onnx_bytes(spec, dynamic_batch=dynamic_batch, opset=opset)
    diff = verify_onnx(data, spec, verify_inputs, tolerance=tolerance)
    atomic_write_bytes(path, data)
    logger.info("wrote %s (%s, max |ort - torch| = %.2e)", path, spec.kind, diff)
    return OnnxExport(path, spec.kind, spec.input_name, spec.output_names, spec.input_shape, diff, opset)
