"""Half-precision weight storage for ONNX files (``mobilefer export --format onnx --half``).

:func:`half_weights_onnx` stores every float32 ``Conv``/``Gemm``/``MatMul`` weight and bias initializer
as float16 and inserts a ``Cast`` back to float32 in front of its users, so the file is about half
the size while inputs, outputs and arithmetic stay float32 (the same rule as the TNN writer's
``half=True``). :func:`verify_half_onnx` checks the result against the float32 graph with the same
weights rounded through float16.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mobilefer.errors import ExportError, ExportVerificationError

__all__ = ["half_weights_onnx", "round_weights_onnx", "verify_half_onnx"]

_WEIGHT_OPS = ("Conv", "Gemm", "MatMul")
_FP16_MAX = float(np.finfo(np.float16).max)


def _weight_names(graph: object) -> set[str]:
    nodes = graph.node  # type: ignore[attr-defined]
    return {name for node in nodes if node.op_type in _WEIGHT_OPS for name in list(node.input)[1:] if name}


def half_weights_onnx(model_bytes: bytes) -> bytes:
    """A copy of an ONNX model whose Conv/Gemm/MatMul float32 weight initializers are stored as float16.

    Raises:
        ExportError: If a weight is not finite or lies outside the float16 range.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load_from_string(model_bytes)
    graph = model.graph
    wanted = _weight_names(graph)
    taken = {i.name for i in graph.initializer} | {o for n in graph.node for o in n.output} | {i.name for i in graph.input}
    kept = []
    casts = []
    for init in graph.initializer:
        if init.name not in wanted or init.data_type != TensorProto.FLOAT:
            kept.append(init)
            continue
        array = numpy_helper.to_array(init)
        if not np.all(np.isfinite(array)) or float(np.max(np.abs(array), initial=0.0)) > _FP16_MAX:
            raise ExportError(f"weight {init.name!r} does not fit float16 (non-finite or |w| > {_FP16_MAX:g})")
        name = f"{init.name}_fp16"
        while name in taken:
            name += "_"
        taken.add(name)
        kept.append(numpy_helper.from_array(array.astype(np.float16), name))
        casts.append(helper.make_node("Cast", [name], [init.name], name=f"{name}_cast", to=TensorProto.FLOAT))
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend([*casts, *nodes])
    entry = model.metadata_props.add()
    entry.key, entry.value = "mobilefer.weights_dtype", "float16"
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def round_weights_onnx(model_bytes: bytes) -> bytes:
    """The same float32 model with its Conv/Gemm/MatMul weight initializers rounded through float16."""
    import onnx
    from onnx import TensorProto, numpy_helper

    model = onnx.load_from_string(model_bytes)
    wanted = _weight_names(model.graph)
    for init in model.graph.initializer:
        if init.name in wanted and init.data_type == TensorProto.FLOAT:
            rounded = numpy_helper.to_array(init).astype(np.float16).astype(np.float32)
            init.CopyFrom(numpy_helper.from_array(rounded, init.name))
    return bytes(model.SerializeToString())


def verify_half_onnx(
    half_bytes: bytes,
    float_bytes: bytes,
    input_shape: Sequence[int],
    *,
    input_name: str = "input",
    tolerance: float = 1e-4,
    seed: int = 0,
) -> float:
    """Largest |onnxruntime(half file) - onnxruntime(float file with fp16-rounded weights)|.

    Raises:
        ExportVerificationError: If it exceeds ``tolerance`` or the outputs differ in shape.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    half = ort.InferenceSession(half_bytes, options, providers=["CPUExecutionProvider"])
    reference = ort.InferenceSession(round_weights_onnx(float_bytes), options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(seed).standard_normal(tuple(int(d) for d in input_shape)).astype(np.float32)
    names = [o.name for o in reference.get_outputs()]
    worst = 0.0
    for name, got, want in zip(names, half.run(names, {input_name: x}), reference.run(names, {input_name: x}), strict=True):
        if np.shape(got) != np.shape(want):
            raise ExportVerificationError(f"output {name!r}: shape {np.shape(got)} != {np.shape(want)}")
        worst = max(worst, float(np.max(np.abs(np.asarray(got) - np.asarray(want)), initial=0.0)))
    if not worst <= tolerance:
        raise ExportVerificationError(f"float16-weight ONNX differs from its reference by {worst:.3g} (> {tolerance:g})")
    return worst
