"""A small numpy reference executor for TNN models (the layer subset mobilefer writes).

The executor implements TNN's *runtime* semantics (``source/tnn/layer/*`` shape inference and the
naive CPU kernels), not ONNX's, so that comparing it with onnxruntime checks the mapping from ONNX
to TNN. It computes in float64 and returns float32 arrays; it is meant for tests and debugging of
small inputs, not for speed.

:func:`infer_tnn_shapes` runs the same shape logic without data; it is how the ONNX converter checks
that TNN will compute the same blob shapes as ONNX before a file is written.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from mobilefer.errors import InvalidInputError, ModelFormatError, UnsupportedOpError
from mobilefer.export.tnn.graph import MAX_ELEMENTS, TnnLayer, TnnModel, TnnResource

__all__ = ["run_tnn", "infer_tnn_shapes", "SUPPORTED_LAYERS"]

Shape = tuple[int, ...]
Array = np.ndarray[Any, np.dtype[np.float64]]
_Result = tuple[list[Shape], list[Array] | None]
_Handler = Callable[["_Params", list[Shape], "list[Array] | None", "TnnResource | None"], _Result]


class _Params:
    """Integer/float access to a layer's parameter tokens with TNN's defaults."""

    def __init__(self, layer: TnnLayer) -> None:
        self.layer = layer
        self.tokens = layer.params

    def fail(self, message: str) -> ModelFormatError:
        return ModelFormatError(f"layer {self.layer.name!r} ({self.layer.type}): {message}")

    def unsupported(self, message: str) -> UnsupportedOpError:
        return UnsupportedOpError(
            f"layer {self.layer.name!r} ({self.layer.type}): {message} is not supported by the numpy executor"
        )

    def int_at(self, index: int, default: int | None = None) -> int:
        if index >= len(self.tokens):
            if default is None:
                raise self.fail(f"mandatory parameter {index} is missing")
            return default
        token = self.tokens[index]
        try:
            return int(token)
        except ValueError:
            raise self.fail(f"parameter {index} is {token!r}, expected an integer") from None

    def float_at(self, index: int, default: float | None = None) -> float:
        if index >= len(self.tokens):
            if default is None:
                raise self.fail(f"mandatory parameter {index} is missing")
            return default
        token = self.tokens[index]
        try:
            value = float(token)
        except ValueError:
            raise self.fail(f"parameter {index} is {token!r}, expected a number") from None
        if math.isnan(value):
            raise self.fail(f"parameter {index} is NaN")
        return value


def _count(shape: Shape) -> int:
    return int(np.prod(shape, dtype=np.int64)) if shape else 1


def _axis(p: _Params, axis: int, rank: int, *, allow_end: bool = False) -> int:
    normalized = axis + rank if axis < 0 else axis
    if not 0 <= normalized < rank + (1 if allow_end else 0):
        raise p.fail(f"axis {axis} is out of range for a rank-{rank} input")
    return normalized


def _one_input(p: _Params, shapes: list[Shape]) -> Shape:
    if len(shapes) != 1:
        raise p.fail(f"expected 1 input, got {len(shapes)}")
    return shapes[0]


def _rank4(p: _Params, shape: Shape) -> Shape:
    if len(shape) != 4:
        raise p.fail(f"expected a 4-D NCHW input, got shape {shape}")
    return shape


def _buffer(p: _Params, res: TnnResource | None, index: int, what: str) -> Array:
    if res is None or index >= len(res.buffers):
        raise p.fail(f"the {what} buffer is missing from the .tnnmodel")
    return res.buffers[index].astype(np.float64)


# ----------------------------------------------------------------------------- convolution


def _same_pads(size: int, out: int, stride: int, extent: int) -> tuple[int, int]:
    along = (out - 1) * stride + extent - size
    begin = int(along / 2)  # C++ integer division truncates toward zero
    end = max(along - begin, 0)
    return begin, end


def _conv(p: _Params, shapes: list[Shape], arrays: list[Array] | None, res: TnnResource | None) -> _Result:
    n, c, h, w = _rank4(p, _one_input(p, shapes))
    group, icg, oc = p.int_at(0), p.int_at(1), p.int_at(2)
    kh, kw, sh, sw, ph, pw = (p.int_at(i) for i in range(3, 9))
    has_bias, pad_type = p.int_at(9), p.int_at(10)
    dh, dw, act = p.int_at(11, 1), p.int_at(12, 1), p.int_at(13, 0)
    if min(group, icg, oc, kh, kw, sh, sw, dh, dw) < 1 or min(ph, pw) < 0:
        raise p.fail("group, channels, kernel, stride and dilation must be positive and pads non-negative")
    if c != group * icg or oc % group:
        raise p.fail(f"{c} input channels do not match group {group} x {icg} (output {oc})")
    if act not in (0, 1, 2, 256):
        raise p.unsupported(f"activation_type {act}")
    ext_h, ext_w = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    if pad_type == -1:
        oh, ow = (h + 2 * ph - ext_h) // sh + 1, (w + 2 * pw - ext_w) // sw + 1
        top, left = ph, pw
        bottom, right = ph, pw
    elif pad_type in (0, 1):
        if pad_type == 0:
            oh, ow = -(-h // sh), -(-w // sw)
        else:
            oh, ow = -(-(h - ext_h + 1) // sh), -(-(w - ext_w + 1) // sw)
        top, bottom = _same_pads(h, oh, sh, ext_h)
        left, right = _same_pads(w, ow, sw, ext_w)
        if top < 0 or left < 0:
            raise p.unsupported("a padding mode that crops the input")
    else:
        raise p.fail(f"pad_type {pad_type} is invalid for a convolution")
    if oh < 1 or ow < 1:
        raise p.fail(f"output would be {oh}x{ow} for a {h}x{w} input")
    out_shape = (n, oc, oh, ow)
    if res is None or not res.buffers:
        raise p.fail("the filter buffer is missing from the .tnnmodel")
    if res.buffers[0].size != oc * icg * kh * kw:
        raise p.fail(f"filter has {res.buffers[0].size} values, expected {oc}x{icg}x{kh}x{kw}")
    if has_bias:
        if len(res.buffers) < 2 or res.buffers[1].size != oc:
            raise p.fail(f"has_bias is set but the bias buffer does not have {oc} values")
    if arrays is None:
        return [out_shape], None
    x = arrays[0]
    weight = _buffer(p, res, 0, "filter").reshape(group, oc // group, icg, kh, kw)
    need_h = (oh - 1) * sh + ext_h
    need_w = (ow - 1) * sw + ext_w
    padded = np.zeros((n, c, max(need_h, h + top), max(need_w, w + left)), dtype=np.float64)
    padded[:, :, top : top + h, left : left + w] = x
    padded = padded.reshape(n, group, icg, padded.shape[2], padded.shape[3])
    out = np.zeros((n, group, oc // group, oh * ow), dtype=np.float64)
    for i in range(kh):
        for j in range(kw):
            patch = padded[:, :, :, i * dh : i * dh + (oh - 1) * sh + 1 : sh, j * dw : j * dw + (ow - 1) * sw + 1 : sw]
            out += np.matmul(weight[:, :, :, i, j], patch.reshape(n, group, icg, oh * ow))
    y = out.reshape(out_shape)
    if has_bias:
        y = y + _buffer(p, res, 1, "bias").reshape(1, oc, 1, 1)
    if act == 1:
        y = np.maximum(y, 0.0)
    elif act == 2:
        y = np.clip(y, 0.0, 6.0)
    elif act == 256:
        y = y / (1.0 + np.exp(-y))
    return [out_shape], [y]


# ----------------------------------------------------------------------------- pooling


def _pool_geometry(p: _Params, size: int, kernel: int, stride: int, pad: int, pad_type: int,
                   ceil_mode: int) -> tuple[int, int]:
    """(output size, leading pad) exactly as TNN's PoolingLayer::InferOutputShape computes them."""
    if pad_type == -1:
        value = (size + 2 * pad - kernel) / stride + 1
        out = math.ceil(value) if ceil_mode == 1 else math.floor(value)
        return out, pad
    if pad_type == 0:
        out = math.ceil(size / stride)
    elif pad_type == 1:
        out = math.ceil((size - kernel + 1) / stride)
    else:
        raise p.fail(f"pad_type {pad_type} is invalid for pooling")
    along = (out - 1) * stride + kernel - size
    return out, int(along / 2)


def _pool(p: _Params, shapes: list[Shape], arrays: list[Array] | None, res: TnnResource | None) -> _Result:
    n, c, h, w = _rank4(p, _one_input(p, shapes))
    pool_type = p.int_at(0)
    kh, kw, sh, sw, ph, pw = (p.int_at(i) for i in range(1, 7))
    kih, kiw = p.int_at(7, -1), p.int_at(8, -1)
    pad_type, ceil_mode, adaptive = p.int_at(9, 0), p.int_at(10, 0), p.int_at(11, 0)
    if pool_type not in (0, 1):
        raise p.fail(f"pool_type {pool_type} is not 0 (max) or 1 (average)")
    if (kih, kiw) != (-1, -1):
        raise p.unsupported("kernel_index other than -1 -1")
    if adaptive:
        raise p.unsupported("adaptive pooling")
    kh, kw = (kh or h), (kw or w)
    if min(kh, kw, sh, sw) < 1 or min(ph, pw) < 0:
        raise p.fail("kernel and stride must be positive and pads non-negative")
    oh, top = _pool_geometry(p, h, kh, sh, ph, pad_type, ceil_mode)
    ow, left = _pool_geometry(p, w, kw, sw, pw, pad_type, ceil_mode)
    if oh < 1 or ow < 1:
        raise p.fail(f"output would be {oh}x{ow} for a {h}x{w} input")
    if top < 0 or left < 0:
        raise p.unsupported("a padding mode that crops the input")
    # Every window must cover at least one input element (TNN divides by the valid count).
    if (oh - 1) * sh - top >= h or (ow - 1) * sw - left >= w or top >= kh or left >= kw:
        raise p.fail("a pooling window lies entirely in the padding")
    out_shape = (n, c, oh, ow)
    if arrays is None:
        return [out_shape], None
    x = arrays[0]
    full_h = max((oh - 1) * sh + kh, top + h)
    full_w = max((ow - 1) * sw + kw, left + w)
    fill = -np.inf if pool_type == 0 else 0.0
    padded = np.full((n, c, full_h, full_w), fill, dtype=np.float64)
    padded[:, :, top : top + h, left : left + w] = x
    windows = np.lib.stride_tricks.sliding_window_view(padded, (kh, kw), axis=(2, 3))
    windows = windows[:, :, : (oh - 1) * sh + 1 : sh, : (ow - 1) * sw + 1 : sw]
    if pool_type == 0:
        y = windows.max(axis=(-2, -1))
    else:
        ones = np.zeros((full_h, full_w), dtype=np.float64)
        ones[top : top + h, left : left + w] = 1.0
        counts = np.lib.stride_tricks.sliding_window_view(ones, (kh, kw))[
            : (oh - 1) * sh + 1 : sh, : (ow - 1) * sw + 1 : sw
        ].sum(axis=(-2, -1))
        y = windows.sum(axis=(-2, -1)) / counts
    return [out_shape], [y]


# ----------------------------------------------------------------------------- elementwise


def _unary(fn: Callable[[Array], Array]) -> _Handler:
    def handler(p: _Params, shapes: list[Shape], arrays: list[Array] | None, res: TnnResource | None) -> _Result:
        shape = _one_input(p, shapes)
        return [shape], None if arrays is None else [fn(arrays[0])]

    return handler


def _clip(p: _Params, shapes: list[Shape], arrays: list[Array] | None, res: TnnResource | None) -> _Result:
    shape = _one_input(p, shapes)
    low, high = p.float_at(0), p.float_at(1)
    return [shape], None if arrays is None else [np.clip(arrays[0], low, high)]


def _sigmoid(x: Array) -> Array:
    result: Array = 1.0 / (1.0 + np.exp(-x))
    return result


_BINARY: dict[str, Callable[[Array, Array], Array]] = {
    "Add": np.add,
    "Sub": np.subtract,
    "Mul": np.multiply,
    "Div": np.divide,
}


def _binary(p: _Params, shapes: list[Shape], arrays: list[Array] | None, res: TnnResource | None) -> _Result:
    fn = _BINARY[p.layer.type]
    if len(shapes) == 2:
        if res is not None:
            raise p.fail("a two-input elementwise layer must not have weights")
        a_shape, b_shape = shapes
        a_arr = b_arr = None
        if arrays is not None:
            a_arr, b_arr = arrays
    elif len(shapes) == 1:
        index = p.int_at(0, 1)
        const = _buffer(p, res, 0, "constant")
        if index == 0:
            a_shape, b_shape = const.shape, shapes[0]
            a_arr, b_arr = const, (arrays[0] if arrays is not None else None)
        elif index == 1:
            a_shape, b_shape = shapes[0], const.shape
            a_arr, b_arr = (arrays[0] if arrays is not None else None), const
        else:
            raise p.fail(f"weight_input_index {index} must be 0 or 1")
    else:
        raise p.unsupported(f"{len(shapes)} inputs")
    try:
        out_shape = tuple(int(d) for d in np.broadcast_shapes(a_shape, b_shape))
    except ValueError:
        raise p.fail(f"shapes {a_shape} and {b_shape} cannot be broadcast") from None
    if a_arr is None or b_arr is None:
        return [out_shape], None
    with np.errstate(divide="ignore", invalid="ignore"):
        return [out_shape], [fn(a_arr, b_arr)]


def _batchnorm(p: _Params, shapes: list[Shape], arrays: list[Array] | None, res: TnnResource | None) -> _Result:
    shape = _one_input(p, shapes)
    if len(shape) < 2:
        raise p.fail(f"needs a channel axis, got shape {shape}")
    channels = shape[1]
    scale = _buffer(p, res, 0, "scale").reshape(-1)
    if p.layer.type == "Scale":
        axis, num_axes, bias_term = p.int_at(0), p.int_at(1), p.int_at(2)
        if (axis, num_axes) != (1, 1):
            raise p.unsupported(f"Scale with axis {axis} and num_axes {num_axes}")
        bias = _buffer(p, res, 1, "bias").reshape(-1) if bias_term else np.zeros(0)
    else:
        bias = _buffer(p, res, 1, "bias").reshape(-1)
    if scale.size not in (1, channels) or bias.size not in (0, 1, channels):
        raise p.fail(f"scale/bias sizes {scale.size}/{bias.size} do not match {channels} channels")
    if arrays is None:
        return [shape], None
    bshape = (1, -1) + (1,) * (len(shape) - 2)
    y = arrays[0] * scale.reshape(bshape)
    if bias.size:
        y = y + bias.reshape(bshape)
    return [shape], [y]


# ----------------------------------------------------------------------------- dense / shape ops


def _inner_product(p: _Params, shapes: list[Shape], arrays: list[Array] | None, res: TnnResource | None) -> _Result:
    shape = _one_input(p, shapes)
    num_output, has_bias, transpose, axis = p.int_at(0), p.int_at(1), p.int_at(2), p.int_at(3)
    if transpose != 0:
        raise p.unsupported("transpose=1")
    if num_output < 1 or not 0 <= axis < len(shape):
        raise p.fail(f"num_output {num_output} / axis {axis} invalid for shape {shape}")
    k = _count(shape[axis:])
    if res is None or res.buffers[0].size != num_output * k:
        raise p.fail(f"weight buffer must hold {num_output}x{k} values")
    if has_bias and res.buffers[1].size != num_output:
        raise p.fail(f"bias buffer must hold {num_output} values")
    out_shape = shape[:axis] + (num_output,)
    if arrays is None:
        return [out_shape], None
    weight = _buffer(p, res, 0, "weight").reshape(num_output, k)
    y = arrays[0].reshape(_count(shape[:axis]), k) @ weight.T
    if has_bias:
        y = y + _buffer(p, res, 1, "bias").reshape(1, num_output)
    return [out_shape], [y.reshape(out_shape)]


def _flatten(p: _Params, shapes: list[Shape], arrays: list[Array] | None, res: TnnResource | None) -> _Result:
    shape = _one_input(p, shapes)
    axis = p.int_at(0)
    if not 0 <= axis <= len(shape):
        raise p.fail(f"axis {axis} is out of range for shape {shape}")
    out_shape = (_count(shape[:axis]), _count(shape[axis:]))
    return [out_shape], None if arrays is None else [arrays[0].reshape(out_shape)]


def _reshape(p: _Params, shapes: list[Shape], arrays: list[Array] | None, res: TnnResource | None) -> _Result:
    shape = _one_input(p, shapes)
    axis, num_axes, length = p.int_at(0), p.int_at(1), p.int_at(2)
    if length < 1 or length > 64:
        raise p.fail(f"shape length {length} is invalid")
    target = [p.int_at(3 + i) for i in range(length)]
    reshape_type = p.int_at(3 + length, 0)
    if reshape_type != 0:
        raise p.unsupported(f"reshape_type {reshape_type}")
    if num_axes == -1:
        num_axes = length
    if not 0 <= axis <= len(shape) or not 0 <= num_axes <= length:
        raise p.fail(f"axis {axis} / num_axes {num_axes} invalid for shape {shape} and {length} entries")
    out = [1] * (length + axis)
    out[:axis] = shape[:axis]
    infer = []
    for j in range(num_axes):
        i = axis + j
        if target[j] == -1:
            infer.append(i)
        elif target[j] == 0:
            if i >= len(shape):
                raise p.fail(f"shape entry 0 copies dim {i}, but the input {shape} has no such dim")
            out[i] = shape[i]
        elif target[j] > 0:
            out[i] = target[j]
        else:
            raise p.fail(f"shape entry {target[j]} is invalid")
    if len(infer) > 1:
        raise p.fail("more than one -1 in the shape")
    known = _count(tuple(out))
    if infer:
        if known == 0 or _count(shape) % known:
            raise p.fail(f"cannot reshape {shape} to {target}")
        out[infer[0]] = _count(shape) // known
    if _count(tuple(out)) != _count(shape):
        raise p.fail(f"cannot reshape {shape} ({_count(shape)} values) to {tuple(out)}")
    out_shape = tuple(out)
    return [out_shape], None if arrays is None else [arrays[0].reshape(out_shape)]


def _permute(p: _Params, shapes: list[Shape], arrays: list[Array] | None, res: TnnResource | None) -> _Result:
    shape = _one_input(p, shapes)
    n = p.int_at(0)
    if n != len(shape):
        raise p.fail(f"permutation of {n} axes for a rank-{len(shape)} input")
    perm = [p.int_at(1 + i) for i in range(n)]
    if sorted(perm) != list(range(n)):
        raise p.fail(f"{perm} is not a permutation")
    out_shape = tuple(shape[i] for i in perm)
    return [out_shape], None if arrays is None else [np.transpose(arrays[0], perm)]


def _concat(p: _Params, shapes: list[Shape], arrays: list[Array] | None, res: TnnResource | None) -> _Result:
    if not shapes:
        raise p.fail("needs at least one input")
    rank = len(shapes[0])
    axis = _axis(p, p.int_at(0, 1), rank)
    for shape in shapes:
        if len(shape) != rank or any(a != b for i, (a, b) in enumerate(zip(shape, shapes[0], strict=False)) if i != axis):
            raise p.fail(f"inputs {shapes} cannot be concatenated on axis {axis}")
    out_shape = shapes[0][:axis] + (sum(s[axis] for s in shapes),) + shapes[0][axis + 1 :]
    return [out_shape], None if arrays is None else [np.concatenate(arrays, axis=axis)]


def _softmax(p: _Params, shapes: list[Shape], arrays: list[Array] | None, res: TnnResource | None) -> _Result:
    shape = _one_input(p, shapes)
    axis = _axis(p, p.int_at(0, 1), len(shape))
    if arrays is None:
        return [shape], None
    x = arrays[0]
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return [shape], [e / e.sum(axis=axis, keepdims=True)]


_REDUCE: dict[str, Callable[..., Array]] = {"ReduceMean": np.mean, "ReduceMax": np.max, "ReduceSum": np.sum}


def _reduce(p: _Params, shapes: list[Shape], arrays: list[Array] | None, res: TnnResource | None) -> _Result:
    shape = _one_input(p, shapes)
    keep = p.int_at(0)
    axes = sorted({_axis(p, p.int_at(i), len(shape)) for i in range(1, len(p.tokens))}) or list(range(len(shape)))
    if keep:
        out_shape = tuple(1 if i in axes else d for i, d in enumerate(shape))
    else:
        out_shape = tuple(d for i, d in enumerate(shape) if i not in axes)
    if arrays is None:
        return [out_shape], None
    y = _REDUCE[p.layer.type](arrays[0], axis=tuple(axes), keepdims=bool(keep))
    return [out_shape], [np.asarray(y, dtype=np.float64).reshape(out_shape)]


def _strided_slice(p: _Params, shapes: list[Shape], arrays: list[Array] | None, res: TnnResource | None) -> _Result:
    shape = _one_input(p, shapes)
    fields: list[list[int]] = []
    index = 0
    for _ in range(4):
        count = p.int_at(index)
        if not 0 <= count <= 64:
            raise p.fail(f"list length {count} is invalid")
        fields.append([p.int_at(index + 1 + i) for i in range(count)])
        index += 1 + count
    begins, ends, axes, strides = fields
    if not len(begins) == len(ends) == len(axes) == len(strides):
        raise p.fail("begins, ends, axes and strides differ in length")
    slices = [slice(None)] * len(shape)
    out = list(shape)
    for b, e, a, s in zip(begins, ends, axes, strides, strict=False):
        axis = _axis(p, a, len(shape))
        dim = shape[axis]
        if s <= 0:
            raise p.unsupported(f"stride {s}")
        if b < 0:
            b += dim
        if e == 2147483647 or e > dim:
            e = dim
        elif e < 0:
            e += dim
        if not 0 <= b < dim or e <= b:
            raise p.fail(f"slice {b}:{e} is empty or out of range for dim {dim}")
        out[axis] = (e - b - 1) // s + 1
        slices[axis] = slice(b, e, s)
    out_shape = tuple(out)
    return [out_shape], None if arrays is None else [arrays[0][tuple(slices)]]


_HANDLERS: dict[str, _Handler] = {
    "Convolution": _conv,
    "Pooling": _pool,
    "ReLU": _unary(lambda x: np.maximum(x, 0.0)),
    "ReLU6": _unary(lambda x: np.clip(x, 0.0, 6.0)),
    "Sigmoid": _unary(_sigmoid),
    "Exp": _unary(np.exp),
    "Tanh": _unary(np.tanh),
    "Clip": _clip,
    "Add": _binary,
    "Sub": _binary,
    "Mul": _binary,
    "Div": _binary,
    "BatchNormCxx": _batchnorm,
    "Scale": _batchnorm,
    "InnerProduct": _inner_product,
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Permute": _permute,
    "Concat": _concat,
    "Softmax": _softmax,
    "SoftmaxCaffe": _softmax,
    "ReduceMean": _reduce,
    "ReduceMax": _reduce,
    "ReduceSum": _reduce,
    "StridedSliceV2": _strided_slice,
}

#: Layer type strings the executor (and :func:`infer_tnn_shapes`) understands.
SUPPORTED_LAYERS: frozenset[str] = frozenset(_HANDLERS)


def _walk(model: TnnModel, values: dict[str, Array] | None) -> dict[str, Shape]:
    if not isinstance(model, TnnModel):
        raise InvalidInputError(f"expected a TnnModel, got {type(model).__name__}")
    shapes: dict[str, Shape] = {item.name: tuple(item.shape) for item in model.inputs}
    for name, const in model.constants.items():
        shapes[name] = tuple(const.shape)
        if values is not None:
            values[name] = const.astype(np.float64)
    for layer in model.layers:
        handler = _HANDLERS.get(layer.type)
        if handler is None:
            raise UnsupportedOpError(f"layer {layer.name!r}: TNN type {layer.type!r} is not supported by the executor")
        params = _Params(layer)
        missing = [blob for blob in layer.inputs if blob not in shapes]
        if missing:
            raise params.fail(f"reads blob(s) {missing} before they are produced")
        in_shapes = [shapes[blob] for blob in layer.inputs]
        arrays = None if values is None else [values[blob] for blob in layer.inputs]
        out_shapes, outs = handler(params, in_shapes, arrays, model.resources.get(layer.name))
        if len(out_shapes) != len(layer.outputs):
            raise params.fail(f"produces {len(out_shapes)} outputs, the proto lists {len(layer.outputs)}")
        for blob, shape in zip(layer.outputs, out_shapes, strict=False):
            if _count(shape) > MAX_ELEMENTS or any(d < 1 for d in shape):
                raise params.fail(f"output {blob!r} would have shape {shape}")
            shapes[blob] = shape
        if values is not None and outs is not None:
            for blob, shape, array in zip(layer.outputs, out_shapes, outs, strict=False):
                if tuple(array.shape) != shape:  # pragma: no cover - internal consistency check
                    raise params.fail(f"computed shape {array.shape} differs from inferred {shape}")
                values[blob] = array
    for name in model.outputs:
        if name not in shapes:
            raise ModelFormatError(f"output {name!r} is not produced by any layer")
    return shapes


def infer_tnn_shapes(model: TnnModel) -> dict[str, tuple[int, ...]]:
    """Every blob's shape as TNN's shape inference computes it for the declared input shapes.

    Raises:
        ModelFormatError: If a layer's parameters or weights are inconsistent with its inputs.
        UnsupportedOpError: If a layer type or parameter is outside the executor's subset.
    """
    return _walk(model, None)


def run_tnn(model: TnnModel, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run ``model`` on ``inputs`` with numpy, following TNN's layer semantics.

    Args:
        model: A model from :func:`~mobilefer.export.tnn.reader.read_tnn` or the converter.
        inputs: One array per network input, of exactly the declared shape.

    Returns:
        The network outputs (float32), keyed by output blob name.

    Raises:
        InvalidInputError: If inputs are missing, unexpected, or of the wrong shape.
        ModelFormatError / UnsupportedOpError: As :func:`infer_tnn_shapes`.
    """
    if not isinstance(inputs, Mapping):
        raise InvalidInputError(f"inputs must be a mapping of name to array, got {type(inputs).__name__}")
    expected = {item.name: item.shape for item in model.inputs}
    unknown = sorted(set(inputs) - set(expected))
    missing = sorted(set(expected) - set(inputs))
    if unknown or missing:
        raise InvalidInputError(f"inputs must be exactly {sorted(expected)}; missing {missing}, unexpected {unknown}")
    values: dict[str, Array] = {}
    for name, shape in expected.items():
        array = np.asarray(inputs[name])
        if array.shape != tuple(shape):
            raise InvalidInputError(f"input {name!r} must have shape {tuple(shape)}, got {array.shape}")
        if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
            raise InvalidInputError(f"input {name!r} must be numeric, got dtype {array.dtype}")
        values[name] = array.astype(np.float64)
    _walk(model, values)
    return {name: values[name].astype(np.float32) for name in model.outputs}
