"""ONNX -> TNN conversion in pure Python (no C++ converter).

Pipeline:

1. **Load** the ONNX model (``onnx.ModelProto`` or a path). Initializers that are also listed as
   graph inputs (old exporters, e.g. the official UltraFace files) are treated as constants. A
   dynamic batch dimension becomes 1; any other dynamic dimension needs ``input_shapes``.
2. **Simplify** (:func:`simplify_onnx`), repeated until nothing changes: drop ``Identity`` /
   ``Dropout``, fold ``Constant`` nodes, ``Shape`` of statically shaped tensors and every node whose
   inputs are all constant (numpy, deterministic), fuse ``BatchNormalization`` into the preceding
   ``Conv``, turn ``MatMul`` by a constant into ``Gemm`` and fuse a following bias ``Add``, remove
   dead nodes; shapes come from ONNX shape inference.
3. **Map** every node to TNN layers (see ``docs/export-tnn.md`` for the table); anything else raises
   :class:`~mobilefer.errors.UnsupportedOpError` naming the op type and node.
4. **Verify** that TNN's shape inference (:func:`~mobilefer.export.tnn.executor.infer_tnn_shapes`)
   gives every mapped blob the shape ONNX gives it, then write the two files atomically.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from mobilefer.errors import (
    ExportError,
    InvalidInputError,
    ModelFormatError,
    OutputExistsError,
    UnsupportedOpError,
)
from mobilefer.export.tnn.executor import infer_tnn_shapes
from mobilefer.export.tnn.graph import (
    MAX_ELEMENTS,
    TnnFiles,
    TnnInput,
    TnnLayer,
    TnnModel,
    TnnResource,
    name_problem,
)
from mobilefer.export.tnn.writer import tnn_paths, validate_tnn_model, write_tnn

if TYPE_CHECKING:  # pragma: no cover
    import onnx

__all__ = ["onnx_to_tnn", "onnx_to_tnn_model", "simplify_onnx", "to_tnn", "verify_tnn", "SUPPORTED_ONNX_OPS"]

_LOG = logging.getLogger(__name__)

_FLT_MAX = float(np.finfo(np.float32).max)
_FOLD_LIMIT = 1 << 24  # never materialise a folded constant larger than this many elements
_INT32_MAX = 2**31 - 1

# ============================================================================ working graph


@dataclass
class _Node:
    op: str
    name: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any]
    domain: str = ""

    def label(self) -> str:
        return repr(self.name) if self.name else f"with outputs {self.outputs}"


@dataclass
class _Graph:
    nodes: list[_Node]
    consts: dict[str, np.ndarray]
    inputs: list[tuple[str, tuple[int, ...]]]
    outputs: list[tuple[str, int]]  # (name, ONNX elem_type)
    opset: int
    opset_imports: list[tuple[str, int]]
    ir_version: int
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    dtypes: dict[str, int] = field(default_factory=dict)

    @property
    def output_names(self) -> list[str]:
        return [name for name, _ in self.outputs]

    def consumers(self) -> dict[str, list[_Node]]:
        users: dict[str, list[_Node]] = {}
        for node in self.nodes:
            for name in node.inputs:
                if name:
                    users.setdefault(name, []).append(node)
        return users

    def rename(self, old: str, new: str) -> None:
        for node in self.nodes:
            node.inputs = [new if name == old else name for name in node.inputs]
            node.outputs = [new if name == old else name for name in node.outputs]


def _load(source: object) -> onnx.ModelProto:
    import onnx

    if isinstance(source, onnx.ModelProto):
        return source
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise InvalidInputError(f"ONNX file {path} does not exist")
        try:
            return onnx.load(path)
        except Exception as exc:  # onnx raises DecodeError / various on corrupt files
            raise ModelFormatError(f"cannot parse ONNX file {path}: {exc}") from exc
    raise InvalidInputError(f"expected an onnx.ModelProto or a path to a .onnx file, got {type(source).__name__}")


def _decode_attrs(node: onnx.NodeProto) -> dict[str, Any]:
    from onnx import AttributeProto, helper, numpy_helper

    attrs: dict[str, Any] = {}
    for attr in node.attribute:
        if attr.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS):
            raise UnsupportedOpError(
                f"ONNX op {node.op_type} (node {node.name!r}) has a subgraph; control flow is not supported"
            )
        value = helper.get_attribute_value(attr)
        if attr.type == AttributeProto.TENSOR:
            value = numpy_helper.to_array(value)
        elif isinstance(value, bytes):
            value = value.decode("utf-8")
        elif isinstance(value, list):
            value = [v.decode("utf-8") if isinstance(v, bytes) else v for v in value]
        attrs[attr.name] = value
    return attrs


def _constant_value(node: _Node) -> np.ndarray:
    attrs = node.attrs
    if "value" in attrs:
        return np.asarray(attrs["value"])
    if "value_float" in attrs:
        return np.asarray(attrs["value_float"], dtype=np.float32)
    if "value_floats" in attrs:
        return np.asarray(attrs["value_floats"], dtype=np.float32)
    if "value_int" in attrs:
        return np.asarray(attrs["value_int"], dtype=np.int64)
    if "value_ints" in attrs:
        return np.asarray(attrs["value_ints"], dtype=np.int64)
    raise UnsupportedOpError(f"ONNX op Constant (node {node.label()}) has an unsupported value kind {list(attrs)}")


def _build_graph(model: onnx.ModelProto, input_shapes: Mapping[str, Sequence[int]] | None) -> _Graph:
    from onnx import TensorProto, numpy_helper

    graph = model.graph
    opset = 0
    imports: list[tuple[str, int]] = []
    for entry in model.opset_import:
        imports.append((entry.domain, int(entry.version)))
        if entry.domain in ("", "ai.onnx"):
            opset = int(entry.version)
    if opset == 0:
        raise ModelFormatError("the ONNX model has no default-domain opset import")
    consts: dict[str, np.ndarray] = {}
    for init in graph.initializer:
        consts[init.name] = numpy_helper.to_array(init)
    overrides = {str(k): tuple(int(d) for d in v) for k, v in (input_shapes or {}).items()}
    inputs: list[tuple[str, tuple[int, ...]]] = []
    for value in graph.input:
        if value.name in consts:
            continue
        tensor_type = value.type.tensor_type
        if tensor_type.elem_type != TensorProto.FLOAT:
            raise ExportError(f"input {value.name!r} must be float32 (ONNX elem_type {tensor_type.elem_type})")
        dims: list[int | None] = [
            d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tensor_type.shape.dim
        ]
        if value.name in overrides:
            shape = overrides.pop(value.name)
            if len(shape) != len(dims) or any(d < 1 for d in shape):
                raise InvalidInputError(f"input_shapes[{value.name!r}] = {shape} does not fit rank {len(dims)}")
            if any(known is not None and known != want for known, want in zip(dims, shape, strict=False)):
                _LOG.info("input %s: overriding static shape %s with %s", value.name, dims, shape)
        else:
            if dims and dims[0] is None:
                _LOG.info("input %s: dynamic batch dimension fixed to 1 for TNN", value.name)
                dims[0] = 1
            if not dims or any(d is None for d in dims):
                raise ExportError(
                    f"input {value.name!r} has a dynamic shape {dims}; TNN needs static shapes "
                    "(pass input_shapes={name: (1, C, H, W)})"
                )
            shape = tuple(int(d) for d in dims if d is not None)
        inputs.append((value.name, shape))
    if overrides:
        raise InvalidInputError(f"input_shapes names unknown inputs {sorted(overrides)}")
    if not inputs:
        raise ExportError("the ONNX model has no (non-constant) inputs")
    nodes: list[_Node] = []
    for proto in graph.node:
        if proto.domain not in ("", "ai.onnx"):
            raise UnsupportedOpError(
                f"ONNX op {proto.domain}::{proto.op_type} (node {proto.name!r}) is not in the default domain"
            )
        node = _Node(proto.op_type, proto.name, list(proto.input), list(proto.output), _decode_attrs(proto))
        if node.op == "Constant":
            consts[node.outputs[0]] = _constant_value(node)
            continue
        nodes.append(node)
    outputs = [(value.name, int(value.type.tensor_type.elem_type)) for value in graph.output]
    return _Graph(nodes, consts, inputs, outputs, opset, imports, max(int(model.ir_version), 4))


def _to_proto(g: _Graph) -> onnx.ModelProto:
    from onnx import TensorProto, helper, numpy_helper

    used: list[str] = []
    seen: set[str] = set()
    for node in g.nodes:
        for name in node.inputs:
            if name in g.consts and name not in seen:
                seen.add(name)
                used.append(name)
    for name in g.output_names:
        if name in g.consts and name not in seen:
            seen.add(name)
            used.append(name)
    nodes = []
    for node in g.nodes:
        attrs = {}
        for key, value in node.attrs.items():
            attrs[key] = numpy_helper.from_array(np.asarray(value)) if isinstance(value, np.ndarray) else value
        nodes.append(helper.make_node(node.op, node.inputs, node.outputs, name=node.name or None, **attrs))
    graph = helper.make_graph(
        nodes,
        "mobilefer_simplified",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name, shape in g.inputs],
        [helper.make_tensor_value_info(name, elem, None) for name, elem in g.outputs],
        initializer=[numpy_helper.from_array(np.array(g.consts[name], order="C"), name) for name in used],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in g.opset_imports])
    model.ir_version = g.ir_version
    return model


def _infer_shapes(g: _Graph) -> None:
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(_to_proto(g), check_type=True, strict_mode=True, data_prop=True)
    except Exception as exc:
        raise ExportError(f"ONNX shape inference failed on the simplified graph: {exc}") from exc
    shapes: dict[str, tuple[int, ...]] = {}
    dtypes: dict[str, int] = {}
    for value in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output):
        tensor_type = value.type.tensor_type
        if tensor_type.elem_type:
            dtypes[value.name] = int(tensor_type.elem_type)
        if not tensor_type.HasField("shape"):
            continue
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor_type.shape.dim]
        if all(d >= 0 for d in dims):
            shapes[value.name] = tuple(int(d) for d in dims)
    for name, array in g.consts.items():
        shapes[name] = tuple(array.shape)
    g.shapes = shapes
    g.dtypes = dtypes


# ============================================================================ constant folding


def _ints(array: np.ndarray | None) -> list[int]:
    return [] if array is None else [int(v) for v in np.asarray(array).reshape(-1)]


def _opt(inputs: list[np.ndarray | None], index: int) -> np.ndarray | None:
    return inputs[index] if index < len(inputs) else None


def _axes_arg(node: _Node, inputs: list[np.ndarray | None], opset: int, since: int) -> list[int] | None:
    if opset >= since:
        value = _opt(inputs, 1)
        return None if value is None else _ints(value)
    axes = node.attrs.get("axes")
    return None if axes is None else [int(a) for a in axes]


def _slice_spec(shape: tuple[int, ...], starts: list[int], ends: list[int], axes: list[int] | None,
                steps: list[int] | None) -> list[tuple[int, int, int, int]]:
    """ONNX Slice semantics resolved against a static shape: (axis, start, end, step) per axis."""
    rank = len(shape)
    axes = list(range(len(starts))) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise ExportError("Slice starts/ends/axes/steps differ in length")
    spec = []
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=False):
        axis = axis + rank if axis < 0 else axis
        if not 0 <= axis < rank or step == 0:
            raise ExportError(f"Slice axis {axis} / step {step} invalid for shape {shape}")
        dim = shape[axis]
        start = start + dim if start < 0 else start
        end = end + dim if end < 0 else end
        if step > 0:
            start, end = min(max(start, 0), dim), min(max(end, 0), dim)
        else:
            start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
        spec.append((axis, start, end, step))
    return spec


def _slice_inputs(node: _Node, inputs: list[np.ndarray | None], opset: int) -> tuple[list[int], list[int], list[int] | None, list[int] | None]:
    if opset < 10:
        axes = node.attrs.get("axes")
        return (
            [int(v) for v in node.attrs["starts"]],
            [int(v) for v in node.attrs["ends"]],
            None if axes is None else [int(v) for v in axes],
            None,
        )
    axes_arr, steps_arr = _opt(inputs, 3), _opt(inputs, 4)
    return (
        _ints(inputs[1]),
        _ints(inputs[2]),
        None if axes_arr is None else _ints(axes_arr),
        None if steps_arr is None else _ints(steps_arr),
    )


def _int_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    quotient = np.abs(a) // np.abs(b)
    return np.asarray(np.sign(a) * np.sign(b) * quotient, dtype=a.dtype)


def _fold_binary(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Callable[..., list[np.ndarray]]:
    def fold(node: _Node, inputs: list[np.ndarray], opset: int) -> list[np.ndarray]:
        a, b = inputs
        if node.op == "Div" and np.issubdtype(a.dtype, np.integer):
            return [_int_div(a, b)]
        return [np.asarray(fn(a, b), dtype=a.dtype)]

    return fold


def _fold_unsqueeze(node: _Node, inputs: list[np.ndarray], opset: int) -> list[np.ndarray]:
    axes = _axes_arg(node, list(inputs), opset, 13) or []
    data = inputs[0]
    rank = data.ndim + len(axes)
    for axis in sorted(a + rank if a < 0 else a for a in axes):
        data = np.expand_dims(data, axis)
    return [data]


def _fold_squeeze(node: _Node, inputs: list[np.ndarray], opset: int) -> list[np.ndarray]:
    axes = _axes_arg(node, list(inputs), opset, 13)
    data = inputs[0]
    if axes is None:
        return [np.squeeze(data)]
    return [np.squeeze(data, axis=tuple(a + data.ndim if a < 0 else a for a in axes))]


def _fold_reshape(node: _Node, inputs: list[np.ndarray], opset: int) -> list[np.ndarray]:
    data, shape = inputs[0], _ints(inputs[1])
    if not node.attrs.get("allowzero", 0):
        shape = [data.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return [data.reshape(shape)]


def _fold_slice(node: _Node, inputs: list[np.ndarray], opset: int) -> list[np.ndarray]:
    data = inputs[0]
    index: list[slice] = [slice(None)] * data.ndim
    for axis, start, end, step in _slice_spec(data.shape, *_slice_inputs(node, list(inputs), opset)):
        index[axis] = slice(start, end if end >= 0 else None, step)
    return [data[tuple(index)]]


def _fold_cast(node: _Node, inputs: list[np.ndarray], opset: int) -> list[np.ndarray]:
    from onnx import helper

    return [inputs[0].astype(helper.tensor_dtype_to_np_dtype(int(node.attrs["to"])))]


def _fold_constant_of_shape(node: _Node, inputs: list[np.ndarray], opset: int) -> list[np.ndarray]:
    shape = _ints(inputs[0])
    value = node.attrs.get("value")
    fill = np.zeros(1, dtype=np.float32) if value is None else np.asarray(value).reshape(-1)
    if math.prod(shape) > _FOLD_LIMIT:
        raise _NotFoldable
    return [np.full(shape, fill[0], dtype=fill.dtype)]


def _fold_expand(node: _Node, inputs: list[np.ndarray], opset: int) -> list[np.ndarray]:
    shape = np.broadcast_shapes(inputs[0].shape, tuple(_ints(inputs[1])))
    if math.prod(shape) > _FOLD_LIMIT:
        raise _NotFoldable
    return [np.broadcast_to(inputs[0], shape).copy()]


def _fold_range(node: _Node, inputs: list[np.ndarray], opset: int) -> list[np.ndarray]:
    start, limit, delta = (np.asarray(v).reshape(()) for v in inputs)
    if delta == 0 or abs(float(limit) - float(start)) / abs(float(delta)) > _FOLD_LIMIT:
        raise _NotFoldable
    return [np.arange(start.item(), limit.item(), delta.item(), dtype=start.dtype)]


def _fold_flatten(node: _Node, inputs: list[np.ndarray], opset: int) -> list[np.ndarray]:
    data = inputs[0]
    axis = int(node.attrs.get("axis", 1))
    axis = axis + data.ndim if axis < 0 else axis
    return [data.reshape(math.prod(data.shape[:axis]), math.prod(data.shape[axis:]))]


class _NotFoldable(Exception):
    """Raised by a folder that declines (result too large)."""


_FOLDERS: dict[str, Callable[..., list[np.ndarray]]] = {
    "Add": _fold_binary(np.add),
    "Sub": _fold_binary(np.subtract),
    "Mul": _fold_binary(np.multiply),
    "Div": _fold_binary(np.divide),
    "Pow": _fold_binary(np.power),
    "Equal": lambda n, i, o: [np.equal(i[0], i[1])],
    "Less": lambda n, i, o: [np.less(i[0], i[1])],
    "Greater": lambda n, i, o: [np.greater(i[0], i[1])],
    "Not": lambda n, i, o: [np.logical_not(i[0])],
    "Where": lambda n, i, o: [np.where(i[0], i[1], i[2])],
    "Neg": lambda n, i, o: [np.negative(i[0])],
    "Abs": lambda n, i, o: [np.abs(i[0])],
    "Sqrt": lambda n, i, o: [np.sqrt(i[0]).astype(i[0].dtype)],
    "Exp": lambda n, i, o: [np.exp(i[0]).astype(i[0].dtype)],
    "Reciprocal": lambda n, i, o: [np.reciprocal(i[0]).astype(i[0].dtype)],
    "Floor": lambda n, i, o: [np.floor(i[0])],
    "Ceil": lambda n, i, o: [np.ceil(i[0])],
    "Relu": lambda n, i, o: [np.maximum(i[0], 0).astype(i[0].dtype)],
    "Min": lambda n, i, o: [np.minimum.reduce(i)],
    "Max": lambda n, i, o: [np.maximum.reduce(i)],
    "Identity": lambda n, i, o: [i[0]],
    "Cast": _fold_cast,
    "Gather": lambda n, i, o: [np.take(i[0], i[1], axis=int(n.attrs.get("axis", 0)))],
    "Unsqueeze": _fold_unsqueeze,
    "Squeeze": _fold_squeeze,
    "Concat": lambda n, i, o: [np.concatenate(i, axis=int(n.attrs["axis"]))],
    "Reshape": _fold_reshape,
    "Flatten": _fold_flatten,
    "Transpose": lambda n, i, o: [np.transpose(i[0], n.attrs.get("perm"))],
    "Slice": _fold_slice,
    "ConstantOfShape": _fold_constant_of_shape,
    "Expand": _fold_expand,
    "Range": _fold_range,
}


def _fold(g: _Graph) -> bool:
    changed = False
    kept: list[_Node] = []
    for node in g.nodes:
        folded: list[np.ndarray] | None = None
        if node.op in ("Shape", "Size") and node.inputs and node.inputs[0] in g.shapes:
            shape = g.shapes[node.inputs[0]]
            if node.op == "Size":
                folded = [np.asarray(math.prod(shape), dtype=np.int64)]
            else:
                start = int(node.attrs.get("start", 0))
                end = node.attrs.get("end")
                folded = [np.asarray(shape[start : None if end is None else int(end)], dtype=np.int64)]
        elif node.op in _FOLDERS and all(not name or name in g.consts for name in node.inputs):
            values = [g.consts[name] if name else None for name in node.inputs]
            while values and values[-1] is None:
                values.pop()
            try:
                folded = _FOLDERS[node.op](node, values, g.opset)
            except _NotFoldable:
                folded = None
            except Exception as exc:
                raise ExportError(f"cannot fold constant ONNX node {node.op} {node.label()}: {exc}") from exc
        if folded is None or len(folded) < len([o for o in node.outputs if o]):
            kept.append(node)
            continue
        for name, value in zip(node.outputs, folded, strict=False):
            if name:
                g.consts[name] = np.array(value, order="C")
        changed = True
    g.nodes = kept
    return changed


# ============================================================================ graph rewrites


def _remove_identities(g: _Graph) -> bool:
    changed = False
    outputs = set(g.output_names)
    for node in list(g.nodes):
        passthrough = node.op in ("Identity", "Dropout") or (
            node.op == "Cast" and g.dtypes.get(node.inputs[0]) == int(node.attrs.get("to", -1))
        )
        if not passthrough:
            continue
        if node.op == "Dropout":
            if len(node.outputs) > 1 and node.outputs[1] and g.consumers().get(node.outputs[1]):
                raise UnsupportedOpError(f"ONNX op Dropout (node {node.label()}): its mask output is used")
            mode = node.inputs[2] if len(node.inputs) > 2 else ""
            if mode and (mode not in g.consts or bool(np.asarray(g.consts[mode]).reshape(-1)[0])):
                raise UnsupportedOpError(f"ONNX op Dropout (node {node.label()}) in training mode")
        src, dst = node.inputs[0], node.outputs[0]
        if src in g.consts:
            continue  # folding turns it into a constant
        g.nodes.remove(node)
        if dst in outputs:
            producer = next((n for n in g.nodes if src in n.outputs), None)
            if producer is None or src in outputs:
                raise ExportError(f"graph output {dst!r} is a plain copy of {src!r}; TNN needs a layer to produce it")
            g.rename(src, dst)
        else:
            _replace_uses(g, dst, src)
        changed = True
    return changed


def _replace_uses(g: _Graph, old: str, new: str) -> None:
    for node in g.nodes:
        node.inputs = [new if name == old else name for name in node.inputs]


def _single_use(g: _Graph, name: str, users: dict[str, list[_Node]]) -> bool:
    return len(users.get(name, [])) == 1 and name not in g.output_names


def _fuse_batchnorm(g: _Graph) -> bool:
    changed = False
    users = g.consumers()
    producers = {out: node for node in g.nodes for out in node.outputs}
    for bn in list(g.nodes):
        if bn.op != "BatchNormalization" or len([o for o in bn.outputs if o]) != 1:
            continue
        if bn.attrs.get("training_mode", 0):
            continue
        conv = producers.get(bn.inputs[0])
        if conv is None or conv.op != "Conv" or not _single_use(g, bn.inputs[0], users):
            continue
        params = bn.inputs[1:5]
        if not all(name in g.consts for name in params) or conv.inputs[1] not in g.consts:
            continue
        if len(conv.inputs) > 2 and conv.inputs[2] and conv.inputs[2] not in g.consts:
            continue
        weight = g.consts[conv.inputs[1]]
        gamma, beta, mean, var = (g.consts[name].astype(np.float64).reshape(-1) for name in params)
        out_ch = weight.shape[0]
        if not all(v.size == out_ch for v in (gamma, beta, mean, var)):
            continue
        bias = (
            g.consts[conv.inputs[2]].astype(np.float64)
            if len(conv.inputs) > 2 and conv.inputs[2]
            else np.zeros(out_ch, dtype=np.float64)
        )
        scale = gamma / np.sqrt(var + float(bn.attrs.get("epsilon", 1e-5)))
        new_w = (weight.astype(np.float64) * scale.reshape((-1,) + (1,) * (weight.ndim - 1))).astype(weight.dtype)
        new_b = ((bias - mean) * scale + beta).astype(weight.dtype)
        w_name, b_name = _fresh_const(g, conv.inputs[1] + "_bnfused"), _fresh_const(g, conv.outputs[0] + "_bias")
        g.consts[w_name], g.consts[b_name] = new_w, new_b
        conv.inputs = [conv.inputs[0], w_name, b_name]
        conv.outputs = [bn.outputs[0]]
        g.nodes.remove(bn)
        changed = True
        users = g.consumers()
        producers = {out: node for node in g.nodes for out in node.outputs}
    return changed


def _fresh_const(g: _Graph, base: str) -> str:
    taken = set(g.consts) | {o for n in g.nodes for o in n.outputs} | {n for n, _ in g.inputs}
    name, k = base, 0
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    return name


def _matmul_to_gemm(g: _Graph) -> bool:
    changed = False
    for node in g.nodes:
        if node.op != "MatMul" or len(node.inputs) != 2:
            continue
        a, b = node.inputs
        if b not in g.consts or a in g.consts or len(g.shapes.get(a, ())) != 2 or g.consts[b].ndim != 2:
            continue
        node.op, node.attrs = "Gemm", {}
        if g.opset < 11:  # C is mandatory before opset 11
            zero = _fresh_const(g, node.outputs[0] + "_zero_bias")
            g.consts[zero] = np.zeros(g.consts[b].shape[1], dtype=g.consts[b].dtype)
            node.inputs = [a, b, zero]
        changed = True
    return changed


def _fuse_gemm_bias(g: _Graph) -> bool:
    changed = False
    users = g.consumers()
    for gemm in list(g.nodes):
        if gemm.op != "Gemm" or not _single_use(g, gemm.outputs[0], users):
            continue
        add = users[gemm.outputs[0]][0]
        if add.op != "Add" or len(add.inputs) != 2:
            continue
        other = add.inputs[1] if add.inputs[0] == gemm.outputs[0] else add.inputs[0]
        out_shape = g.shapes.get(gemm.outputs[0])
        if other not in g.consts or out_shape is None or len(out_shape) != 2:
            continue
        extra = g.consts[other]
        n = out_shape[1]
        if extra.ndim > 2 or extra.size not in (1, n) or (extra.ndim == 2 and extra.shape[0] != 1):
            continue
        beta = float(gemm.attrs.get("beta", 1.0))
        bias = np.broadcast_to(extra.astype(np.float64).reshape(-1), (n,)).copy()
        if len(gemm.inputs) > 2 and gemm.inputs[2]:
            old = g.consts.get(gemm.inputs[2])
            if old is None or old.ndim > 2 or old.size not in (1, n) or (old.ndim == 2 and old.shape[0] != 1):
                continue
            bias = bias + beta * np.broadcast_to(old.astype(np.float64).reshape(-1), (n,))
        name = _fresh_const(g, gemm.outputs[0] + "_bias")
        g.consts[name] = bias.astype(extra.dtype)
        gemm.inputs = [*gemm.inputs[:2], name]
        gemm.attrs["beta"] = 1.0
        gemm.outputs = [add.outputs[0]]
        g.nodes.remove(add)
        users = g.consumers()
        changed = True
    return changed


def _eliminate_dead(g: _Graph) -> bool:
    needed = set(g.output_names)
    kept: list[_Node] = []
    for node in reversed(g.nodes):
        if any(name in needed for name in node.outputs if name):
            kept.append(node)
            needed.update(name for name in node.inputs if name)
    kept.reverse()
    changed = len(kept) != len(g.nodes)
    g.nodes = kept
    for name in list(g.consts):
        if name not in needed:
            del g.consts[name]
    return changed


def _simplify(g: _Graph) -> None:
    for _ in range(64):
        _infer_shapes(g)
        changed = _remove_identities(g)
        changed |= _fold(g)
        changed |= _fuse_batchnorm(g)
        changed |= _matmul_to_gemm(g)
        if changed:
            continue
        _infer_shapes(g)
        changed |= _fuse_gemm_bias(g)
        changed |= _eliminate_dead(g)
        if not changed:
            break
    else:  # pragma: no cover - 64 rounds of rewrites means a bug
        raise ExportError("graph simplification did not converge")
    _eliminate_dead(g)
    _infer_shapes(g)
    for name in g.output_names:
        if name in g.consts:
            raise ExportError(f"graph output {name!r} is a constant; TNN cannot produce it without a layer")
        if name in dict(g.inputs):
            raise ExportError(f"graph output {name!r} is also a graph input")


def simplify_onnx(
    onnx_model_or_path: onnx.ModelProto | str | os.PathLike[str],
    *,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
) -> onnx.ModelProto:
    """The ONNX graph exactly as :func:`onnx_to_tnn` maps it: constants and shape chains folded,
    BatchNorm fused into Conv, MatMul+Add turned into Gemm, identities and dead nodes removed,
    static input shapes (dynamic batch -> 1).

    It is a valid ONNX model that onnxruntime can run, which makes it the natural reference for
    checking a TNN export (e.g. with weights rounded to float16 for ``half=True``).

    Raises:
        InvalidInputError / ModelFormatError: If the model cannot be loaded.
        ExportError / UnsupportedOpError: If it cannot be made static or contains custom ops.
    """
    g = _build_graph(_load(onnx_model_or_path), input_shapes)
    _simplify(g)
    return _to_proto(g)


# ============================================================================ mapping to TNN


def _fmt_float(value: float) -> str:
    value = max(-_FLT_MAX, min(_FLT_MAX, float(value)))
    return repr(float(np.float32(value)))


class _Mapper:
    """Maps the simplified ONNX graph to TNN layers, naming blobs and layers safely."""

    def __init__(self, g: _Graph, half: bool) -> None:
        self.g = g
        self.half = half
        self.layers: list[TnnLayer] = []
        self.resources: dict[str, TnnResource] = {}
        self.layer_names: set[str] = set()
        self.blob_map: dict[str, str] = {}
        self.taken: set[str] = set()
        io_names = [name for name, _ in g.inputs] + g.output_names
        for name in io_names:
            problem = name_problem(name, is_input=name in dict(g.inputs))
            if problem:
                raise ExportError(f"graph input/output name {name!r} cannot be written to a .tnnproto: {problem}")
            self.blob_map[name] = name
            self.taken.add(name)
        for node in g.nodes:
            for name in node.outputs:
                if name and name not in self.blob_map and name_problem(name) is None:
                    self.blob_map[name] = name
                    self.taken.add(name)

    # ------------------------------------------------------------------ names
    def _unique(self, base: str, taken: set[str]) -> str:
        base = "".join(ch if name_problem(ch, is_input=True) is None else "_" for ch in base)[:200] or "t"
        name, k = base, 0
        while name in taken:
            k += 1
            name = f"{base}_{k}"
        taken.add(name)
        return name

    def blob(self, onnx_name: str) -> str:
        if onnx_name not in self.blob_map:
            self.blob_map[onnx_name] = self._unique(onnx_name, self.taken)
        return self.blob_map[onnx_name]

    def new_blob(self, hint: str) -> str:
        return self._unique(hint, self.taken)

    def layer_name(self, node: _Node, suffix: str = "") -> str:
        base = (node.name or self.blob(node.outputs[0])) + suffix
        return self._unique(base, self.layer_names)

    # ------------------------------------------------------------------ helpers
    def unsupported(self, node: _Node, why: str = "") -> UnsupportedOpError:
        detail = f": {why}" if why else ""
        return UnsupportedOpError(f"ONNX op {node.op} (node {node.label()}) is not supported by the TNN writer{detail}")

    def shape(self, node: _Node, name: str) -> tuple[int, ...]:
        shape = self.g.shapes.get(name)
        if shape is None:
            raise ExportError(f"ONNX node {node.op} {node.label()}: tensor {name!r} has no static shape")
        return shape

    def const(self, name: str) -> np.ndarray | None:
        return self.g.consts.get(name) if name else None

    def var(self, node: _Node, index: int) -> str:
        """The blob of a variable float input; constants and integer tensors are refused."""
        if index >= len(node.inputs) or not node.inputs[index]:
            raise self.unsupported(node, f"input {index} is missing")
        name = node.inputs[index]
        if name in self.g.consts:
            raise self.unsupported(node, f"constant input {name!r} where TNN expects a blob")
        dtype = self.g.dtypes.get(name, 1)
        if dtype not in (1,):
            raise self.unsupported(
                node, f"input {name!r} is not float32 (ONNX type {dtype}); integer computations must fold to constants"
            )
        return self.blob(name)

    def weight(self, array: np.ndarray, node: _Node) -> np.ndarray:
        data = np.array(array, dtype=np.float32, order="C")
        if not np.all(np.isfinite(data)):
            raise ExportError(f"ONNX node {node.op} {node.label()} has non-finite weights")
        if self.half:
            half = data.astype(np.float16)
            if not np.all(np.isfinite(half)):
                raise ExportError(f"ONNX node {node.op} {node.label()} has weights outside the float16 range")
            return half
        return data

    def add(self, node: _Node, layer_type: str, inputs: Sequence[str], outputs: Sequence[str],
            params: Sequence[object] = (), buffers: Sequence[np.ndarray] | None = None, suffix: str = "") -> None:
        name = self.layer_name(node, suffix)
        self.layers.append(TnnLayer(layer_type, name, tuple(inputs), tuple(outputs), tuple(str(p) for p in params)))
        if buffers is not None:
            self.resources[name] = TnnResource(layer_type, name, tuple(buffers))

    def attr_ints(self, node: _Node, key: str, default: Sequence[int]) -> list[int]:
        value = node.attrs.get(key)
        return [int(v) for v in (default if value is None else value)]

    # ------------------------------------------------------------------ spatial padding
    def spatial_pads(self, node: _Node, in_hw: Sequence[int], out_hw: Sequence[int], kernel: Sequence[int],
                     strides: Sequence[int], dilations: Sequence[int]) -> tuple[int, int, int]:
        """(pad_h, pad_w, pad_type) for TNN, from ONNX pads / auto_pad."""
        auto_pad = str(node.attrs.get("auto_pad", "NOTSET"))
        extents = [d * (k - 1) + 1 for k, d in zip(kernel, dilations, strict=False)]
        if auto_pad == "VALID":
            pads = [0, 0, 0, 0]
        elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            pads = [0, 0, 0, 0]
            for i in range(2):
                out = -(-in_hw[i] // strides[i])
                total = max(0, (out - 1) * strides[i] + extents[i] - in_hw[i])
                small, large = total // 2, total - total // 2
                pads[i], pads[i + 2] = (small, large) if auto_pad == "SAME_UPPER" else (large, small)
        elif auto_pad == "NOTSET":
            pads = self.attr_ints(node, "pads", [0, 0, 0, 0])
            if len(pads) != 4:
                raise self.unsupported(node, f"pads {pads} (only 2-D)")
        else:
            raise self.unsupported(node, f"auto_pad {auto_pad}")
        if pads[0] == pads[2] and pads[1] == pads[3]:
            return pads[0], pads[1], -1
        # TNN's pad_type 0 (TF SAME): output ceil(in/stride), the odd pixel at the bottom/right.
        same = True
        for i in range(2):
            out = -(-in_hw[i] // strides[i])
            along = (out - 1) * strides[i] + extents[i] - in_hw[i]
            if out != out_hw[i] or along < 0 or (pads[i], pads[i + 2]) != (along // 2, along - along // 2):
                same = False
        if same:
            return 0, 0, 0
        raise self.unsupported(node, f"asymmetric padding {pads} (TNN states one pad per axis)")

    # ------------------------------------------------------------------ ops
    def map_conv(self, node: _Node) -> None:
        x = self.var(node, 0)
        weight = self.const(node.inputs[1])
        if weight is None:
            raise self.unsupported(node, "the weights must be constant")
        in_shape, out_shape = self.shape(node, node.inputs[0]), self.shape(node, node.outputs[0])
        if weight.ndim != 4 or len(in_shape) != 4:
            raise self.unsupported(node, f"only 2-D convolution (weights {weight.shape}, input {in_shape})")
        group = int(node.attrs.get("group", 1))
        oc, icg, kh, kw = (int(d) for d in weight.shape)
        kernel = self.attr_ints(node, "kernel_shape", [kh, kw])
        if kernel != [kh, kw]:
            raise self.unsupported(node, f"kernel_shape {kernel} differs from the weights {weight.shape}")
        strides = self.attr_ints(node, "strides", [1, 1])
        dilations = self.attr_ints(node, "dilations", [1, 1])
        ph, pw, pad_type = self.spatial_pads(node, in_shape[2:4], out_shape[2:4], kernel, strides, dilations)
        bias = self.const(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else np.zeros(oc, np.float32)
        if bias is None:
            raise self.unsupported(node, "the bias must be constant")
        params = [group, icg, oc, kh, kw, *strides, ph, pw, 1, pad_type, *dilations, 0]
        buffers = [self.weight(weight, node), self.weight(bias.reshape(oc), node)]
        self.add(node, "Convolution", [x], [self.blob(node.outputs[0])], params, buffers)

    def map_unary(self, node: _Node) -> None:
        layer_type = {"Relu": "ReLU", "Sigmoid": "Sigmoid", "Exp": "Exp", "Tanh": "Tanh"}[node.op]
        self.add(node, layer_type, [self.var(node, 0)], [self.blob(node.outputs[0])])

    def map_clip(self, node: _Node) -> None:
        low: float | None
        high: float | None
        if self.g.opset < 11:
            low, high = node.attrs.get("min"), node.attrs.get("max")
        else:
            bounds: list[float | None] = []
            for index in (1, 2):
                name = node.inputs[index] if index < len(node.inputs) else ""
                if not name:
                    bounds.append(None)
                    continue
                value = self.const(name)
                if value is None or value.size != 1:
                    raise self.unsupported(node, "min/max must be constant scalars")
                bounds.append(float(value.reshape(-1)[0]))
            low, high = bounds
        x, out = self.var(node, 0), self.blob(node.outputs[0])
        if low == 0.0 and high == 6.0:
            self.add(node, "ReLU6", [x], [out])
        elif low == 0.0 and high is None:
            self.add(node, "ReLU", [x], [out])
        else:
            params = [_fmt_float(-_FLT_MAX if low is None else low), _fmt_float(_FLT_MAX if high is None else high)]
            self.add(node, "Clip", [x], [out], params)

    def map_binary(self, node: _Node) -> None:
        if len(node.inputs) != 2:
            raise self.unsupported(node, f"{len(node.inputs)} inputs")
        consts = [self.const(name) for name in node.inputs]
        out = self.blob(node.outputs[0])
        if consts[0] is None and consts[1] is None:
            self.add(node, node.op, [self.var(node, 0), self.var(node, 1)], [out], [-1])
            return
        index = 0 if consts[0] is not None else 1
        value = consts[0] if consts[0] is not None else consts[1]
        if value is None:  # pragma: no cover - excluded by the branch above
            raise ExportError("internal error: no constant operand")
        if not np.issubdtype(value.dtype, np.floating):
            raise self.unsupported(node, f"constant {node.inputs[index]!r} is not floating point")
        value = np.asarray(value, dtype=np.float64)
        layer_type = node.op
        if node.op == "Div" and index == 1:
            layer_type, value = "Mul", 1.0 / value  # as onnx2tnn: x / c -> x * (1 / c)
        if value.ndim == 0:
            value = value.reshape(1)
        data = np.array(value, dtype=np.float32, order="C")
        if not np.all(np.isfinite(data)):
            raise ExportError(f"ONNX node {node.op} {node.label()} has a non-finite constant")
        self.add(node, layer_type, [self.var(node, 1 - index)], [out], [index], [data])

    def map_global_pool(self, node: _Node) -> None:
        shape = self.shape(node, node.inputs[0])
        if len(shape) != 4:
            raise self.unsupported(node, f"input of rank {len(shape)} (TNN pools NCHW)")
        pool_type = 0 if node.op == "GlobalMaxPool" else 1
        params = [pool_type, 0, 0, 1, 1, 0, 0, -1, -1, -1, 0, 0, -1, -1]
        self.add(node, "Pooling", [self.var(node, 0)], [self.blob(node.outputs[0])], params)

    def map_pool(self, node: _Node) -> None:
        if len([o for o in node.outputs if o]) > 1:
            raise self.unsupported(node, "the indices output")
        in_shape, out_shape = self.shape(node, node.inputs[0]), self.shape(node, node.outputs[0])
        kernel = self.attr_ints(node, "kernel_shape", [])
        if len(in_shape) != 4 or len(kernel) != 2:
            raise self.unsupported(node, "only 2-D pooling on NCHW")
        strides = self.attr_ints(node, "strides", [1, 1])
        if self.attr_ints(node, "dilations", [1, 1]) != [1, 1]:
            raise self.unsupported(node, "dilated pooling")
        if int(node.attrs.get("storage_order", 0)) != 0:
            raise self.unsupported(node, "storage_order 1")
        ceil_mode = int(node.attrs.get("ceil_mode", 0))
        ph, pw, pad_type = self.spatial_pads(node, in_shape[2:4], out_shape[2:4], kernel, strides, [1, 1])
        if pad_type != -1:
            raise self.unsupported(node, "asymmetric pooling pads")
        is_avg = node.op == "AveragePool"
        pads = (ph, pw)
        for i in range(2):
            size = in_shape[2 + i]
            value = (size + 2 * pads[i] - kernel[i]) / strides[i] + 1
            tnn_out = math.ceil(value) if ceil_mode else math.floor(value)
            if tnn_out != out_shape[2 + i]:
                raise self.unsupported(node, f"TNN computes output size {tnn_out}, ONNX {out_shape[2 + i]} (ceil_mode)")
            overhang = (tnn_out - 1) * strides[i] + kernel[i] > size + 2 * pads[i]
            if is_avg and int(node.attrs.get("count_include_pad", 0)) and (pads[i] or overhang):
                raise self.unsupported(node, "count_include_pad=1 with padding (TNN averages valid pixels only)")
        params = [0 if node.op == "MaxPool" else 1, *kernel, *strides, ph, pw, -1, -1, -1, ceil_mode, 0, -1, -1]
        self.add(node, "Pooling", [self.var(node, 0)], [self.blob(node.outputs[0])], params)

    def map_reduce(self, node: _Node) -> None:
        shape = self.shape(node, node.inputs[0])
        rank = len(shape)
        since = 13 if node.op == "ReduceSum" else 18
        if self.g.opset >= since:
            axes_name = node.inputs[1] if len(node.inputs) > 1 else ""
            if axes_name and self.const(axes_name) is None:
                raise self.unsupported(node, "axes must be constant")
            axes = _ints(self.const(axes_name)) if axes_name else []
        else:
            axes = [int(a) for a in node.attrs.get("axes", [])]
        if not axes and int(node.attrs.get("noop_with_empty_axes", 0)):
            raise self.unsupported(node, "noop_with_empty_axes=1")
        axes = sorted({a + rank if a < 0 else a for a in axes}) or list(range(rank))
        if any(not 0 <= a < rank for a in axes):
            raise self.unsupported(node, f"axes {axes} for rank {rank}")
        keep = int(node.attrs.get("keepdims", 1))
        x, out = self.var(node, 0), self.blob(node.outputs[0])
        if node.op in ("ReduceMean", "ReduceMax") and rank == 4 and axes == [2, 3]:
            pool_type = 1 if node.op == "ReduceMean" else 0
            params = [pool_type, 0, 0, 1, 1, 0, 0, -1, -1, -1, 0, 0, -1, -1]
            if keep:
                self.add(node, "Pooling", [x], [out], params)
            else:
                pooled = self.new_blob(out + "_pool")
                self.add(node, "Pooling", [x], [pooled], params)
                self.add(node, "Flatten", [pooled], [out], [1], suffix="_flatten")
            return
        self.add(node, node.op, [x], [out], [keep, *axes])

    def map_flatten(self, node: _Node) -> None:
        rank = len(self.shape(node, node.inputs[0]))
        axis = int(node.attrs.get("axis", 1))
        axis = axis + rank if axis < 0 else axis
        self.add(node, "Flatten", [self.var(node, 0)], [self.blob(node.outputs[0])], [axis])

    def _reshape_layer(self, node: _Node, target: Sequence[int]) -> None:
        if any(abs(v) > _INT32_MAX for v in target):
            raise self.unsupported(node, f"shape {list(target)} does not fit in 32-bit integers")
        params = [0, len(target), len(target), *target, 0]
        self.add(node, "Reshape", [self.var(node, 0)], [self.blob(node.outputs[0])], params)

    def map_reshape(self, node: _Node) -> None:
        target = self.const(node.inputs[1])
        if target is None:
            raise self.unsupported(node, "the shape input did not fold to a constant")
        values = _ints(target)
        if int(node.attrs.get("allowzero", 0)) and 0 in values:
            raise self.unsupported(node, "allowzero=1 with a 0 in the shape")
        self._reshape_layer(node, values)

    def map_squeeze(self, node: _Node) -> None:
        self._reshape_layer(node, list(self.shape(node, node.outputs[0])))

    def map_gemm(self, node: _Node) -> None:
        a = self.var(node, 0)
        b = self.const(node.inputs[1])
        if b is None or b.ndim != 2:
            raise self.unsupported(node, "B must be a constant matrix")
        if len(self.shape(node, node.inputs[0])) != 2:
            raise self.unsupported(node, "A must be 2-D")
        if int(node.attrs.get("transA", 0)):
            raise self.unsupported(node, "transA=1")
        weight = b.astype(np.float64) if int(node.attrs.get("transB", 0)) else b.astype(np.float64).T
        alpha, beta = float(node.attrs.get("alpha", 1.0)), float(node.attrs.get("beta", 1.0))
        weight = weight * alpha
        n = weight.shape[0]
        bias = np.zeros(n, dtype=np.float64)
        if len(node.inputs) > 2 and node.inputs[2]:
            c = self.const(node.inputs[2])
            if c is None:
                raise self.unsupported(node, "C must be constant")
            if c.ndim > 2 or c.size not in (1, n) or (c.ndim == 2 and c.shape[0] != 1):
                raise self.unsupported(node, f"C of shape {c.shape} is not a per-output bias")
            bias = beta * np.broadcast_to(c.astype(np.float64).reshape(-1), (n,))
        buffers = [self.weight(weight, node), self.weight(bias, node)]
        self.add(node, "InnerProduct", [a], [self.blob(node.outputs[0])], [n, 1, 0, 1], buffers)

    def map_softmax(self, node: _Node) -> None:
        shape = self.shape(node, node.inputs[0])
        rank = len(shape)
        axis = int(node.attrs.get("axis", 1 if self.g.opset < 13 else -1))
        axis = axis + rank if axis < 0 else axis
        if self.g.opset < 13 and math.prod(shape[axis + 1 :]) != 1:
            raise self.unsupported(node, f"opset-{self.g.opset} softmax over all axes from {axis} of {shape}")
        self.add(node, "SoftmaxCaffe", [self.var(node, 0)], [self.blob(node.outputs[0])], [axis])

    def map_concat(self, node: _Node) -> None:
        rank = len(self.shape(node, node.outputs[0]))
        axis = int(node.attrs["axis"])
        axis = axis + rank if axis < 0 else axis
        inputs = [self.var(node, i) for i in range(len(node.inputs))]
        self.add(node, "Concat", inputs, [self.blob(node.outputs[0])], [axis])

    def map_transpose(self, node: _Node) -> None:
        rank = len(self.shape(node, node.inputs[0]))
        perm = self.attr_ints(node, "perm", list(reversed(range(rank))))
        self.add(node, "Permute", [self.var(node, 0)], [self.blob(node.outputs[0])], [rank, *perm])

    def map_slice(self, node: _Node) -> None:
        shape = self.shape(node, node.inputs[0])
        if self.g.opset >= 10 and any(name and self.const(name) is None for name in node.inputs[1:]):
            raise self.unsupported(node, "starts/ends/axes/steps must be constant")
        values = [self.const(name) if name else None for name in node.inputs]
        spec = _slice_spec(shape, *_slice_inputs(node, values, self.g.opset))
        begins, ends, axes, steps = [], [], [], []
        for axis, start, end, step in spec:
            if step < 0:
                raise self.unsupported(node, "negative steps")
            if end <= start:
                raise self.unsupported(node, f"an empty slice on axis {axis}")
            begins.append(start)
            ends.append(end)
            axes.append(axis)
            steps.append(step)
        n = len(axes)
        params = [n, *begins, n, *ends, n, *axes, n, *steps]
        self.add(node, "StridedSliceV2", [self.var(node, 0)], [self.blob(node.outputs[0])], params)

    def map_batchnorm(self, node: _Node) -> None:
        if int(node.attrs.get("training_mode", 0)) or len([o for o in node.outputs if o]) > 1:
            raise self.unsupported(node, "training mode")
        values = [self.const(name) for name in node.inputs[1:5]]
        if any(v is None for v in values):
            raise self.unsupported(node, "scale/bias/mean/var must be constant")
        gamma, beta, mean, var = (np.asarray(v, dtype=np.float64).reshape(-1) for v in values if v is not None)
        scale = gamma / np.sqrt(var + float(node.attrs.get("epsilon", 1e-5)))
        bias = beta - mean * scale
        buffers = [scale.astype(np.float32), bias.astype(np.float32)]
        self.add(node, "BatchNormCxx", [self.var(node, 0)], [self.blob(node.outputs[0])], (), buffers)

    def map_node(self, node: _Node) -> None:
        handler = _MAPPERS.get(node.op)
        if handler is None:
            raise self.unsupported(node)
        handler(self, node)


_MAPPERS: dict[str, Callable[[_Mapper, _Node], None]] = {
    "Conv": _Mapper.map_conv,
    "Relu": _Mapper.map_unary,
    "Sigmoid": _Mapper.map_unary,
    "Exp": _Mapper.map_unary,
    "Tanh": _Mapper.map_unary,
    "Clip": _Mapper.map_clip,
    "Add": _Mapper.map_binary,
    "Sub": _Mapper.map_binary,
    "Mul": _Mapper.map_binary,
    "Div": _Mapper.map_binary,
    "GlobalAveragePool": _Mapper.map_global_pool,
    "GlobalMaxPool": _Mapper.map_global_pool,
    "MaxPool": _Mapper.map_pool,
    "AveragePool": _Mapper.map_pool,
    "ReduceMean": _Mapper.map_reduce,
    "ReduceMax": _Mapper.map_reduce,
    "ReduceSum": _Mapper.map_reduce,
    "Flatten": _Mapper.map_flatten,
    "Reshape": _Mapper.map_reshape,
    "Squeeze": _Mapper.map_squeeze,
    "Unsqueeze": _Mapper.map_squeeze,
    "Gemm": _Mapper.map_gemm,
    "Softmax": _Mapper.map_softmax,
    "Concat": _Mapper.map_concat,
    "Transpose": _Mapper.map_transpose,
    "Slice": _Mapper.map_slice,
    "BatchNormalization": _Mapper.map_batchnorm,
}

#: ONNX op types the converter maps (after folding; ``Identity``/``Dropout``/``Constant`` and
#: constant-only subgraphs such as ``Shape``->``Gather``->``Concat`` disappear before mapping).
SUPPORTED_ONNX_OPS: frozenset[str] = frozenset(_MAPPERS) | {"Identity", "Dropout", "Constant", "Shape", "MatMul"}


def _shorten_names(model: TnnModel) -> TnnModel:
    """Rename internal blobs and layers to short ``b<i>`` / ``l<i>`` names (keeps input/output names)."""
    keep = set(model.input_names) | set(model.outputs)
    mapping: dict[str, str] = {name: name for name in keep}
    counter = 0
    for layer in model.layers:
        for blob in layer.outputs:
            if blob not in mapping:
                name = f"b{counter}"
                while name in keep:
                    counter += 1
                    name = f"b{counter}"
                mapping[blob] = name
                counter += 1
    layers = []
    resources = {}
    for index, layer in enumerate(model.layers):
        name = f"l{index}"
        layers.append(
            TnnLayer(
                layer.type,
                name,
                tuple(mapping[b] for b in layer.inputs),
                tuple(mapping[b] for b in layer.outputs),
                layer.params,
            )
        )
        old = model.resources.get(layer.name)
        if old is not None:
            resources[name] = TnnResource(layer.type, name, old.buffers)
    return TnnModel(model.inputs, model.outputs, tuple(layers), resources, model.constants)


def onnx_to_tnn_model(
    onnx_model_or_path: onnx.ModelProto | str | os.PathLike[str],
    *,
    half: bool = False,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
) -> TnnModel:
    """Convert an ONNX model to an in-memory :class:`TnnModel` (nothing is written).

    Args:
        onnx_model_or_path: An ``onnx.ModelProto`` or the path of a ``.onnx`` file.
        half: Store convolution and inner-product weights and biases as float16 (elementwise
            constants and BatchNorm parameters stay float32, as with onnx2tnn's ``-half``).
        input_shapes: Static shapes for inputs whose ONNX shape is dynamic beyond the batch
            dimension (a dynamic batch alone becomes 1).

    Raises:
        UnsupportedOpError: Naming the ONNX op type and node that has no TNN mapping.
        ExportError: If the graph cannot be made static or would be written inexactly.
    """
    if not isinstance(half, bool):
        raise InvalidInputError(f"half must be a bool, got {half!r}")
    g = _build_graph(_load(onnx_model_or_path), input_shapes)
    _simplify(g)
    mapper = _Mapper(g, half)
    for node in g.nodes:
        mapper.map_node(node)
    inputs = tuple(TnnInput(name, shape, 0) for name, shape in g.inputs)
    model = TnnModel(inputs, tuple(g.output_names), tuple(mapper.layers), mapper.resources)
    # Verify that TNN's shape inference agrees with ONNX's for every blob that has an ONNX twin.
    tnn_shapes = infer_tnn_shapes(model)
    for onnx_name, blob in mapper.blob_map.items():
        if blob in tnn_shapes and onnx_name in g.shapes and tnn_shapes[blob] != g.shapes[onnx_name]:
            raise ExportError(
                f"internal error: TNN would compute shape {tnn_shapes[blob]} for {onnx_name!r}, ONNX {g.shapes[onnx_name]}"
            )
    for item in inputs:
        if math.prod(item.shape) > MAX_ELEMENTS:
            raise ExportError(f"input {item.name!r} is too large: {item.shape}")
    try:
        validate_tnn_model(model)
    except ExportError as exc:
        if "characters long" not in str(exc):
            raise
        _LOG.info("proto record too long with ONNX names; using short internal names")
        model = _shorten_names(model)
        validate_tnn_model(model)
    return model


def _round_conv_gemm_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose Conv/Gemm weight and bias initializers are rounded through float16."""
    import onnx
    from onnx import TensorProto, numpy_helper

    rounded = onnx.ModelProto()
    rounded.CopyFrom(model)
    names = {name for node in rounded.graph.node if node.op_type in ("Conv", "Gemm") for name in node.input[1:]}
    for init in rounded.graph.initializer:
        if init.name in names and init.data_type == TensorProto.FLOAT:
            array = numpy_helper.to_array(init).astype(np.float16).astype(np.float32)
            init.CopyFrom(numpy_helper.from_array(array, init.name))
    return rounded


def verify_tnn(
    onnx_model_or_path: onnx.ModelProto | str | os.PathLike[str],
    tnn_model: TnnModel,
    *,
    half: bool = False,
    tolerance: float = 1e-4,
    seed: int = 0,
) -> float:
    """Compare :func:`~mobilefer.export.tnn.executor.run_tnn` on ``tnn_model`` with onnxruntime on the
    simplified ONNX graph (Conv/Gemm weights rounded through float16 when ``half``) for one seeded
    input uniform in [-1, 1].

    Returns:
        The largest absolute difference over all outputs.

    Raises:
        ExportVerificationError: If it exceeds ``tolerance`` or the outputs differ in name or shape.
    """
    import onnxruntime as ort

    from mobilefer.errors import ExportVerificationError
    from mobilefer.export.tnn.executor import run_tnn

    reference = simplify_onnx(onnx_model_or_path, input_shapes={i.name: i.shape for i in tnn_model.inputs})
    if half:
        reference = _round_conv_gemm_weights(reference)
    rng = np.random.default_rng(seed)
    feeds = {item.name: rng.uniform(-1.0, 1.0, item.shape).astype(np.float32) for item in tnn_model.inputs}
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(reference.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    expected = dict(zip(names, session.run(names, feeds), strict=True))
    actual = run_tnn(tnn_model, feeds)
    if set(actual) != set(expected):
        raise ExportVerificationError(f"TNN outputs {sorted(actual)} differ from ONNX outputs {sorted(expected)}")
    worst = 0.0
    for name, value in expected.items():
        if actual[name].shape != np.shape(value):
            raise ExportVerificationError(f"output {name!r}: TNN shape {actual[name].shape}, ONNX {np.shape(value)}")
        worst = max(worst, float(np.max(np.abs(actual[name].astype(np.float64) - value), initial=0.0)))
    if not worst <= tolerance:
        raise ExportVerificationError(f"TNN export differs from onnxruntime by {worst:.3g} (tolerance {tolerance:g})")
    return worst


def to_tnn(
    model_or_onnx: object,
    out_prefix: str | os.PathLike[str],
    *,
    input_size: int | tuple[int, int] | None = None,
    half: bool = False,
    force: bool = False,
    verify: bool = True,
    tolerance: float = 1e-4,
) -> TnnFiles:
    """Export a model to ``<out_prefix>.tnnproto`` / ``<out_prefix>.tnnmodel``.

    Args:
        model_or_onnx: An ``onnx.ModelProto``, a ``.onnx`` path, or anything
            :func:`mobilefer.export.onnx.export_spec` accepts (classifier ``nn.Module``,
            ``ExpressionClassifier``, UltraFace detector or network), which is first exported to
            ONNX with static shapes.
        out_prefix: Output path without suffix.
        input_size: ``(width, height)`` or a side, for torch models (see ``export_spec``).
        half: Store convolution / inner-product weights as float16.
        force: Overwrite existing files.
        verify: Before writing, check the numpy execution of the TNN graph against onnxruntime on the
            ONNX graph (see :func:`verify_tnn`).
        tolerance: Largest allowed absolute difference for ``verify``.

    Raises:
        OutputExistsError: If an output exists and ``force`` is false (checked first).
        UnsupportedOpError / ExportError / ExportVerificationError: If the model cannot be exported
            faithfully; nothing is written then.
    """
    import onnx

    if not force:
        for path in tnn_paths(out_prefix):
            if path.exists():
                raise OutputExistsError(f"{path} exists; pass force=True to overwrite it")
    if isinstance(model_or_onnx, (onnx.ModelProto, str, os.PathLike)):
        if input_size is not None:
            raise InvalidInputError("input_size applies to torch models; an ONNX model keeps its own input shape")
        source = _load(model_or_onnx)
    else:
        from mobilefer.export.onnx import export_onnx_bytes, export_spec

        spec = export_spec(model_or_onnx, input_size=input_size)
        source = onnx.load_from_string(export_onnx_bytes(spec, dynamic_batch=False))
    tnn_model = onnx_to_tnn_model(source, half=half)
    if verify:
        worst = verify_tnn(source, tnn_model, half=half, tolerance=tolerance)
        _LOG.info("TNN export verified: max abs difference %.3g", worst)
    return write_tnn(tnn_model, out_prefix, force=force)


def onnx_to_tnn(
    onnx_model_or_path: onnx.ModelProto | str | os.PathLike[str],
    out_prefix: str | os.PathLike[str],
    *,
    half: bool = False,
    force: bool = False,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
) -> TnnFiles:
    """Convert an ONNX model and write ``<out_prefix>.tnnproto`` / ``<out_prefix>.tnnmodel`` (TNN v2).

    Args:
        onnx_model_or_path: An ``onnx.ModelProto`` or the path of a ``.onnx`` file.
        out_prefix: Output path without suffix (a ``.tnnproto``/``.tnnmodel`` suffix is stripped).
        half: Store convolution / inner-product weights as float16.
        force: Overwrite existing files.
        input_shapes: See :func:`onnx_to_tnn_model`.

    Returns:
        The written paths and tensor names.

    Raises:
        OutputExistsError: If an output file exists and ``force`` is false (checked before converting).
        UnsupportedOpError: Naming the ONNX op type and node that has no TNN mapping.
        ExportError: If the graph cannot be converted faithfully.
    """
    if not force:
        for path in tnn_paths(out_prefix):
            if path.exists():
                raise OutputExistsError(f"{path} exists; pass force=True to overwrite it")
    model = onnx_to_tnn_model(onnx_model_or_path, half=half, input_shapes=input_shapes)
    return write_tnn(model, out_prefix, force=force)
