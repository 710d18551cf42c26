"""Read a ``.tnnproto`` / ``.tnnmodel`` pair back into a :class:`~mobilefer.export.tnn.graph.TnnModel`.

The reader follows TNN's own parser (``model_interpreter.cc``) but is stricter: anything TNN would
silently misread (over-long records, empty tokens on the input/output lines, unknown types,
truncated buffers, trailing bytes, records for layers that do not exist) is a
:class:`~mobilefer.errors.ModelFormatError`. Every count, length and dimension in the binary file is
checked against the bytes that remain *before* anything is allocated, so a corrupted file can never
make the reader allocate more memory than the file's own size.

Only the layer types of :data:`~mobilefer.export.tnn.graph.LAYER_TYPE_ENUM` are understood.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mobilefer.errors import InvalidInputError, ModelFormatError
from mobilefer.export.tnn.graph import (
    LAYER_TYPE_ENUM,
    MAGIC_V1,
    MAGIC_V2,
    MAX_ELEMENTS,
    MAX_SEGMENT_CHARS,
    RESOURCE_LAYOUT,
    TnnInput,
    TnnLayer,
    TnnModel,
    TnnResource,
)
from mobilefer.export.tnn.writer import tnn_paths

__all__ = ["read_tnn", "parse_proto", "parse_model"]

_MAX_RECORDS = 10000  # TNN refuses resource counts >= 10000
_MAX_NDIMS = 16
_MAX_STRING = 1 << 16

_DTYPES: dict[int, np.dtype[np.generic]] = {
    0: np.dtype("<f4"),
    1: np.dtype("<f2"),
    2: np.dtype("i1"),
    3: np.dtype("<i4"),
    4: np.dtype("<u2"),  # bfp16: the upper half of a float32, converted on read
    5: np.dtype("<i8"),
    6: np.dtype("<u4"),
}


def _int_token(token: str, what: str) -> int:
    text = token[1:] if token.startswith("-") else token
    if not text.isdigit() or not text.isascii():
        raise ModelFormatError(f"{what}: expected an integer, got {token!r}")
    return int(token)


def _parse_inputs(segment: str, version: int) -> tuple[TnnInput, ...]:
    inputs: list[TnnInput] = []
    for group in segment.split(":"):
        tokens = group.strip(" " + "".join(map(chr, range(0x20)))).split(" ")
        if any(token == "" for token in tokens):
            raise ModelFormatError(f"input record {group!r} has an empty token (two spaces in a row?)")
        name = tokens[0]
        if version == 2:
            if len(tokens) < 3:
                raise ModelFormatError(f"input record {group!r} is too short for the v2 format")
            ndims = _int_token(tokens[1], f"input {name!r} rank")
            if not 1 <= ndims <= _MAX_NDIMS or len(tokens) != ndims + 3:
                raise ModelFormatError(f"input {name!r}: rank {tokens[1]} does not match its {len(tokens) - 3} dims")
            dims = tuple(_int_token(t, f"input {name!r} dim") for t in tokens[2 : 2 + ndims])
            data_type = _int_token(tokens[-1], f"input {name!r} data type")
        else:
            if len(tokens) < 2 or len(tokens) > _MAX_NDIMS + 1:
                raise ModelFormatError(f"input record {group!r} has no dims")
            dims = tuple(_int_token(t, f"input {name!r} dim") for t in tokens[1:])
            data_type = 0
        if any(d < 1 for d in dims):
            raise ModelFormatError(f"input {name!r} has non-positive dims {dims}")
        if int(np.prod(dims, dtype=np.float64)) > MAX_ELEMENTS:
            raise ModelFormatError(f"input {name!r} has absurd dims {dims}")
        if data_type not in _DTYPES:
            raise ModelFormatError(f"input {name!r} has unknown data type {data_type}")
        if any(item.name == name for item in inputs):
            raise ModelFormatError(f"input {name!r} is declared twice")
        inputs.append(TnnInput(name, dims, data_type))
    return tuple(inputs)


def parse_proto(text: str) -> tuple[tuple[TnnInput, ...], tuple[str, ...], tuple[TnnLayer, ...]]:
    """Parse ``.tnnproto`` text into (inputs, outputs, layers).

    Raises:
        ModelFormatError: On anything TNN would reject or misread.
    """
    cleaned = text.replace('"', "").replace("\n", "")
    if not cleaned:
        raise ModelFormatError("the .tnnproto is empty")
    segments = cleaned.split(",")
    if len(segments) <= 5:
        raise ModelFormatError(f"the .tnnproto has {len(segments)} records; TNN needs more than 5")
    for index, segment in enumerate(segments):
        if index != 2 and len(segment) > MAX_SEGMENT_CHARS:
            raise ModelFormatError(
                f"record {index} of the .tnnproto is {len(segment)} characters long; TNN would truncate it "
                f"at {MAX_SEGMENT_CHARS}"
            )
    trim = " " + "".join(map(chr, range(0x20)))
    segments = [segment.strip(trim) for segment in segments]
    header = segments[0].split(" ")
    if len(header) < 4:
        raise ModelFormatError("the .tnnproto header has no magic number (4th token)")
    magic = _int_token(header[3], "proto magic number")
    if magic == MAGIC_V2:
        version = 2
    elif magic == MAGIC_V1:
        version = 1
    else:
        raise ModelFormatError(f"unknown .tnnproto magic number {magic} (expected {MAGIC_V2} or {MAGIC_V1})")
    inputs = _parse_inputs(segments[1], version)
    outputs = tuple(segments[3].split(" "))
    if not segments[3] or any(name == "" for name in outputs):
        raise ModelFormatError(f"the output record {segments[3]!r} is empty or has two spaces in a row")
    layers: list[TnnLayer] = []
    names: set[str] = set()
    for segment in segments[5:]:
        if not segment:
            continue
        tokens = [t for t in segment.split(" ") if t]
        if len(tokens) < 4:
            raise ModelFormatError(f"layer record {segment[:80]!r} is too short")
        layer_type, name = tokens[0], tokens[1]
        if layer_type not in LAYER_TYPE_ENUM:
            raise ModelFormatError(f"layer {name!r} has an unknown or unsupported type {layer_type!r}")
        n_in = _int_token(tokens[2], f"layer {name!r} input count")
        n_out = _int_token(tokens[3], f"layer {name!r} output count")
        if n_in < 0 or n_out < 1 or 4 + n_in + n_out > len(tokens):
            raise ModelFormatError(f"layer {name!r} declares {n_in} inputs and {n_out} outputs; too few tokens")
        if name in names:
            raise ModelFormatError(f"layer name {name!r} is used twice")
        names.add(name)
        layers.append(
            TnnLayer(
                type=layer_type,
                name=name,
                inputs=tuple(tokens[4 : 4 + n_in]),
                outputs=tuple(tokens[4 + n_in : 4 + n_in + n_out]),
                params=tuple(tokens[4 + n_in + n_out :]),
            )
        )
    return inputs, outputs, tuple(layers)


class _Cursor:
    """Bounds-checked little-endian reader over the ``.tnnmodel`` bytes."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, size: int, what: str) -> bytes:
        if size < 0 or size > self.remaining:
            raise ModelFormatError(
                f"the .tnnmodel is truncated: {what} needs {size} bytes at offset {self.pos}, "
                f"{self.remaining} remain"
            )
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def u32(self, what: str) -> int:
        value: int = struct.unpack("<I", self.take(4, what))[0]
        return value

    def i32(self, what: str) -> int:
        value: int = struct.unpack("<i", self.take(4, what))[0]
        return value

    def string(self, what: str) -> str:
        length = self.i32(f"{what} length")
        if length < 0 or length > _MAX_STRING:
            raise ModelFormatError(f"{what} has an absurd length {length}")
        raw = self.take(length, what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ModelFormatError(f"{what} is not valid text") from exc

    def raw_buffer(self, what: str) -> np.ndarray:
        magic = self.u32(f"{what} magic")
        if magic not in (MAGIC_V1, MAGIC_V2):
            raise ModelFormatError(f"{what} has a bad magic number 0x{magic:08X}")
        code = self.i32(f"{what} data type")
        if code not in _DTYPES:
            raise ModelFormatError(f"{what} has unknown data type {code}")
        dtype = _DTYPES[code]
        length = self.i32(f"{what} byte length")
        if length < 0:
            raise ModelFormatError(f"{what} has a negative byte length {length}")
        if length == 0:
            return np.zeros((0,), dtype=np.float32 if code == 4 else dtype)
        shape: tuple[int, ...] | None = None
        if magic == MAGIC_V2:
            ndims = self.i32(f"{what} rank")
            if not 0 <= ndims <= _MAX_NDIMS:
                raise ModelFormatError(f"{what} has an absurd rank {ndims}")
            dims = tuple(self.i32(f"{what} dim") for _ in range(ndims))
            if any(d < 0 for d in dims):
                raise ModelFormatError(f"{what} has negative dims {dims}")
            if ndims > 0:
                count = int(np.prod(dims, dtype=np.float64))
                if count * dtype.itemsize != length:
                    raise ModelFormatError(
                        f"{what}: dims {dims} of {dtype.itemsize}-byte elements need {count * dtype.itemsize} "
                        f"bytes, the header says {length}"
                    )
                shape = dims
        if length % dtype.itemsize:
            raise ModelFormatError(f"{what}: {length} bytes is not a whole number of {dtype.itemsize}-byte items")
        raw = self.take(length, f"{what} data")
        array = np.frombuffer(raw, dtype=dtype).copy()
        if shape is not None:
            array = array.reshape(shape)
        if code == 4:
            array = (array.astype(np.uint32) << 16).view(np.float32)
        return array.astype(array.dtype.newbyteorder("="), copy=False)


def parse_model(data: bytes, layers: Sequence[TnnLayer]) -> tuple[dict[str, TnnResource], dict[str, np.ndarray]]:
    """Parse ``.tnnmodel`` bytes against the layers of the matching proto.

    Returns:
        (resources keyed by layer name, constant map).

    Raises:
        ModelFormatError: On a bad magic number, truncation, absurd counts or dims, records that do
            not match a proto layer, missing weights, or trailing bytes.
    """
    cur = _Cursor(data)
    if len(data) < 8:
        raise ModelFormatError(f"the .tnnmodel is only {len(data)} bytes long")
    magic = cur.u32("model magic")
    if magic not in (MAGIC_V1, MAGIC_V2):
        raise ModelFormatError(f"bad .tnnmodel magic number 0x{magic:08X} (expected 0x{MAGIC_V2:08X})")
    count = cur.i32("record count") & 0x1FFFFFFF
    if count >= _MAX_RECORDS or count * 12 > cur.remaining:
        raise ModelFormatError(f"absurd .tnnmodel record count {count} for a {len(data)}-byte file")
    by_name = {layer.name: layer for layer in layers}
    resources: dict[str, TnnResource] = {}
    for index in range(count):
        where = f"weight record {index}"
        enum = cur.i32(f"{where} type")
        type_str = cur.string(f"{where} type name")
        name = cur.string(f"{where} layer name")
        where = f"weight record {index} ({type_str} {name!r})"
        if type_str not in RESOURCE_LAYOUT:
            raise ModelFormatError(f"{where}: layer type {type_str!r} has no weight layout mobilefer knows")
        if enum not in (0, LAYER_TYPE_ENUM[type_str]):
            raise ModelFormatError(f"{where}: type number {enum} does not match {type_str!r}")
        layer = by_name.get(name)
        if layer is None or layer.type != type_str:
            raise ModelFormatError(f"{where}: the .tnnproto has no {type_str} layer of that name")
        if name in resources:
            raise ModelFormatError(f"{where}: duplicate record")
        if type_str in ("Add", "Sub", "Mul", "Div") and len(layer.inputs) != 1:
            raise ModelFormatError(f"{where}: a {len(layer.inputs)}-input {type_str} layer takes no weights")
        buffers: list[np.ndarray] = []
        if type_str in ("Convolution", "Scale"):
            cur.string(f"{where} name copy")
            flag = cur.i32(f"{where} bias flag")
            if flag not in (0, 1):
                raise ModelFormatError(f"{where}: bias flag is {flag}, expected 0 or 1")
            buffers.append(cur.raw_buffer(f"{where} weights"))
            if flag:
                buffers.append(cur.raw_buffer(f"{where} bias"))
        elif type_str == "InnerProduct":
            cur.string(f"{where} name copy")
            buffers.append(cur.raw_buffer(f"{where} weights"))
            buffers.append(cur.raw_buffer(f"{where} bias"))
        else:
            for part in RESOURCE_LAYOUT[type_str]:
                buffers.append(cur.raw_buffer(f"{where} {part}"))
        resources[name] = TnnResource(type_str, name, tuple(buffers))
    constants: dict[str, np.ndarray] = {}
    if cur.remaining:
        trailer_magic = cur.u32("constant map magic")
        if trailer_magic not in (MAGIC_V1, MAGIC_V2):
            raise ModelFormatError(f"bad constant-map magic 0x{trailer_magic:08X}")
        n_const = cur.i32("constant count")
        if n_const < 0 or n_const * 16 > cur.remaining:
            raise ModelFormatError(f"absurd constant count {n_const}")
        for index in range(n_const):
            name = cur.string(f"constant {index} name")
            constants[name] = cur.raw_buffer(f"constant {name!r}")
    if cur.remaining:
        raise ModelFormatError(f"{cur.remaining} unexpected bytes after the end of the .tnnmodel")
    for layer in layers:
        needs = layer.type in RESOURCE_LAYOUT and not (
            layer.type in ("Add", "Sub", "Mul", "Div") and len(layer.inputs) != 1
        )
        if needs and layer.name not in resources:
            raise ModelFormatError(f"layer {layer.name!r} ({layer.type}) has no weights in the .tnnmodel")
    return resources, constants


def _check_graph(inputs: Sequence[TnnInput], outputs: Sequence[str], layers: Sequence[TnnLayer],
                 constants: dict[str, np.ndarray]) -> None:
    """Every layer reads blobs that exist already (layers run in file order); every blob is produced once."""
    defined = {item.name for item in inputs} | set(constants)
    for layer in layers:
        for blob in layer.inputs:
            if blob not in defined:
                raise ModelFormatError(f"layer {layer.name!r} reads blob {blob!r} before any layer produces it")
        for blob in layer.outputs:
            if blob in defined:
                raise ModelFormatError(f"layer {layer.name!r} produces blob {blob!r} a second time")
            defined.add(blob)
    for name in outputs:
        if name not in defined:
            raise ModelFormatError(f"output {name!r} is not produced by any layer")


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise InvalidInputError(f"{path} does not exist") from exc
    except OSError as exc:  # a folder, a permission problem, an I/O error
        raise InvalidInputError(f"{path} is not a readable file ({exc.strerror or exc})") from exc


def read_tnn(prefix_or_paths: str | os.PathLike[str] | tuple[str | os.PathLike[str], str | os.PathLike[str]]) -> TnnModel:
    """Read a TNN model from disk.

    Args:
        prefix_or_paths: Either the common prefix (``"out/model"`` or ``"out/model.tnnproto"``) or a
            ``(proto_path, model_path)`` pair.

    Returns:
        The parsed model; weights are numpy arrays in their stored dtype.

    Raises:
        InvalidInputError: If a file does not exist.
        ModelFormatError: If either file is malformed (see :func:`parse_proto`, :func:`parse_model`).
    """
    if isinstance(prefix_or_paths, tuple):
        if len(prefix_or_paths) != 2:
            raise InvalidInputError("pass a prefix or a (proto_path, model_path) pair")
        proto_path, model_path = Path(prefix_or_paths[0]), Path(prefix_or_paths[1])
    else:
        proto_path, model_path = tnn_paths(prefix_or_paths)
    raw = _read_bytes(proto_path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ModelFormatError(f"{proto_path} is not a text file") from exc
    inputs, outputs, layers = parse_proto(text)
    resources, constants = parse_model(_read_bytes(model_path), layers)
    _check_graph(inputs, outputs, layers, constants)
    return TnnModel(inputs=inputs, outputs=outputs, layers=layers, resources=resources, constants=constants)
