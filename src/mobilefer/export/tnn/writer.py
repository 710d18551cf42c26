"""Serialise a :class:`~mobilefer.export.tnn.graph.TnnModel` to ``.tnnproto`` text and ``.tnnmodel`` bytes.

Everything is checked before a byte is written (:func:`validate_tnn_model`): names TNN's tokenizer
would split or trim, proto segments longer than TNN's 4095-character buffer, duplicate layer names,
blobs used before they are produced, missing or superfluous weight records, and buffers whose dtype
has no TNN code. Files are written atomically (temporary file in the same folder, then
:func:`os.replace`) and existing files are only replaced with ``force=True``.
"""

from __future__ import annotations

import logging
import os
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np

from mobilefer.errors import ExportError, InvalidInputError, OutputExistsError
from mobilefer.export.tnn.graph import (
    DATA_TYPE_CODES,
    LAYER_TYPE_ENUM,
    MAGIC_V2,
    MAX_ELEMENTS,
    MAX_SEGMENT_CHARS,
    RESOURCE_LAYOUT,
    TnnFiles,
    TnnModel,
    name_problem,
)

__all__ = ["format_proto", "format_model", "validate_tnn_model", "write_tnn", "tnn_paths"]

_LOG = logging.getLogger(__name__)

_ELEMENTWISE = ("Add", "Sub", "Mul", "Div")


def tnn_paths(prefix: str | os.PathLike[str]) -> tuple[Path, Path]:
    """The ``(.tnnproto, .tnnmodel)`` paths of ``prefix``.

    A prefix that already ends in ``.tnnproto`` or ``.tnnmodel`` is stripped of that suffix, so
    ``tnn_paths("m.tnnproto") == tnn_paths("m")``.

    Raises:
        InvalidInputError: If ``prefix`` is empty or names a folder.
    """
    if not isinstance(prefix, (str, os.PathLike)):
        raise InvalidInputError(f"a TNN output prefix must be a path, got {type(prefix).__name__}")
    path = Path(prefix)
    if str(prefix) == "" or path.name == "":
        raise InvalidInputError("the TNN output prefix is empty; pass e.g. 'out/model'")
    if path.suffix in (".tnnproto", ".tnnmodel"):
        path = path.with_suffix("")
    if path.is_dir():
        raise InvalidInputError(f"the TNN output prefix {path} is a folder; pass e.g. '{path}/model'")
    return path.with_name(path.name + ".tnnproto"), path.with_name(path.name + ".tnnmodel")


def _check_token(token: str, where: str) -> None:
    if not token or any(ord(ch) <= 0x20 or ord(ch) >= 0x7F or ch in ",\"':;" for ch in token):
        raise ExportError(f"{where}: parameter token {token!r} cannot be written into a .tnnproto")


def _expected_resource(layer_type: str, n_inputs: int) -> bool:
    if layer_type in _ELEMENTWISE:
        return n_inputs == 1
    return layer_type in RESOURCE_LAYOUT


def validate_tnn_model(model: TnnModel) -> None:
    """Check that ``model`` can be written so that TNN reads back exactly this graph.

    Raises:
        ExportError: Naming the first problem found (bad name, duplicate layer, undefined blob,
            missing weights, over-long proto line, ...).
    """
    if not isinstance(model, TnnModel):
        raise InvalidInputError(f"expected a TnnModel, got {type(model).__name__}")
    if not model.inputs:
        raise ExportError("a TNN model needs at least one input")
    if not model.outputs:
        raise ExportError("a TNN model needs at least one output")
    defined: set[str] = set()
    for item in model.inputs:
        problem = name_problem(item.name, is_input=True)
        if problem:
            raise ExportError(f"input name {item.name!r} cannot be written to a .tnnproto: {problem}")
        if item.name in defined:
            raise ExportError(f"input {item.name!r} is declared twice")
        if not item.shape or any(not isinstance(d, int) or isinstance(d, bool) or d < 1 for d in item.shape):
            raise ExportError(f"input {item.name!r} needs a static shape of positive integers, got {item.shape}")
        if int(np.prod(item.shape, dtype=np.int64)) > MAX_ELEMENTS:
            raise ExportError(f"input {item.name!r} has too many elements: {item.shape}")
        if item.data_type not in DATA_TYPE_CODES.values():
            raise ExportError(f"input {item.name!r} has unknown TNN data type {item.data_type}")
        defined.add(item.name)
    defined.update(model.constants)
    for name, array in model.constants.items():
        problem = name_problem(name)
        if problem:
            raise ExportError(f"constant name {name!r} cannot be written: {problem}")
        _check_buffer(array, f"constant {name!r}")

    layer_names: set[str] = set()
    for layer in model.layers:
        where = f"layer {layer.name!r} ({layer.type})"
        if layer.type not in LAYER_TYPE_ENUM:
            raise ExportError(f"{where}: unknown TNN layer type {layer.type!r}")
        problem = name_problem(layer.name)
        if problem:
            raise ExportError(f"layer name {layer.name!r} cannot be written to a .tnnproto: {problem}")
        if layer.name in layer_names:
            raise ExportError(f"layer name {layer.name!r} is used twice (TNN looks weights up by layer name)")
        layer_names.add(layer.name)
        if not layer.outputs:
            raise ExportError(f"{where} has no output")
        for blob in layer.inputs:
            if blob not in defined:
                raise ExportError(f"{where} reads blob {blob!r} before any layer produces it")
        for blob in layer.outputs:
            problem = name_problem(blob)
            if problem:
                raise ExportError(f"{where}: blob name {blob!r} cannot be written: {problem}")
            if blob in defined:
                raise ExportError(f"{where}: blob {blob!r} is produced twice")
            defined.add(blob)
        for token in layer.params:
            _check_token(token, where)
        needs = _expected_resource(layer.type, len(layer.inputs))
        resource = model.resources.get(layer.name)
        if needs and resource is None:
            raise ExportError(f"{where} needs weights in the .tnnmodel but has none")
        if not needs and resource is not None:
            raise ExportError(f"{where} has a weight record but this layer form takes none")
        if resource is not None:
            if resource.layer_type != layer.type or resource.layer_name != layer.name:
                raise ExportError(
                    f"{where}: weight record is for {resource.layer_type} {resource.layer_name!r}"
                )
            _check_resource_buffers(layer.type, layer.params, resource.buffers, where)
    for name in model.resources:
        if name not in layer_names:
            raise ExportError(f"weight record {name!r} has no layer of that name")
    seen_outputs: set[str] = set()
    for out in model.outputs:
        problem = name_problem(out)
        if problem:
            raise ExportError(f"output name {out!r} cannot be written to a .tnnproto: {problem}")
        if out in seen_outputs:
            raise ExportError(f"output {out!r} is listed twice")
        seen_outputs.add(out)
        if out not in defined or out in model.input_names or out in model.constants:
            raise ExportError(f"output {out!r} is not produced by any layer")
    for index, segment in enumerate(_segments(model)):
        if index != 2 and len(segment) > MAX_SEGMENT_CHARS:
            raise ExportError(
                f"proto record {index} is {len(segment)} characters long; TNN truncates records at "
                f"{MAX_SEGMENT_CHARS} characters (shorten the blob names): {segment[:80]}..."
            )


def _check_buffer(array: object, where: str) -> None:
    if not isinstance(array, np.ndarray):
        raise ExportError(f"{where}: buffers must be numpy arrays, got {type(array).__name__}")
    if array.dtype.name not in DATA_TYPE_CODES:
        raise ExportError(f"{where}: dtype {array.dtype} has no TNN data type code")
    if array.size > MAX_ELEMENTS:
        raise ExportError(f"{where}: buffer of {array.size} elements is too large")


def _check_resource_buffers(layer_type: str, params: tuple[str, ...], buffers: tuple[np.ndarray, ...], where: str) -> None:
    for i, buf in enumerate(buffers):
        _check_buffer(buf, f"{where} buffer {i}")
    if layer_type == "Convolution":
        has_bias = params[9] if len(params) > 9 else "0"
        expected = 2 if has_bias != "0" else 1
    elif layer_type == "Scale":
        expected = 2 if len(params) > 2 and params[2] != "0" else 1
    else:
        expected = len(RESOURCE_LAYOUT[layer_type])
    if len(buffers) != expected:
        raise ExportError(f"{where}: expected {expected} weight buffer(s), got {len(buffers)}")


def _blob_names(model: TnnModel) -> list[str]:
    names = list(model.input_names)
    seen = set(names)
    for layer in model.layers:
        for blob in (*layer.inputs, *layer.outputs):
            if blob not in seen:
                seen.add(blob)
                names.append(blob)
    return names


def _layer_line(layer_type: str, name: str, inputs: tuple[str, ...], outputs: tuple[str, ...],
                params: tuple[str, ...]) -> str:
    tokens = [layer_type, name, str(len(inputs)), str(len(outputs)), *inputs, *outputs, *params]
    return " ".join(tokens)


def _records(model: TnnModel) -> list[str]:
    """The proto records (segments) before quoting: header, inputs, blobs, outputs, count, layers."""
    blobs = _blob_names(model)
    header = f"1 {len(blobs)} 1 {MAGIC_V2}"
    inputs = " : ".join(
        " ".join([item.name, str(len(item.shape)), *map(str, item.shape), str(item.data_type)])
        for item in model.inputs
    )
    records = [header, inputs, " " + " ".join(blobs), " ".join(model.outputs), f" {len(model.layers)}"]
    for layer in model.layers:
        records.append(_layer_line(layer.type, layer.name, layer.inputs, layer.outputs, layer.params))
    return records


def _segments(model: TnnModel) -> list[str]:
    # What TNN's tokenizer sees for each record: the text between two commas, quotes and newlines
    # removed, including the space written before the comma.
    return [record + " " for record in _records(model)]


def format_proto(model: TnnModel) -> str:
    """The ``.tnnproto`` text of ``model`` (one quoted record per line, each ending in `` ,``).

    Raises:
        ExportError: If :func:`validate_tnn_model` rejects the model.
    """
    validate_tnn_model(model)
    return "".join(f'"{record} ,"\n' for record in _records(model))


def _raw_buffer(array: np.ndarray) -> bytes:
    code = DATA_TYPE_CODES[array.dtype.name]
    data = np.array(array, order="C").astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
    if not data:
        return struct.pack("<Iii", MAGIC_V2, code, 0)
    shape = array.shape
    return struct.pack(f"<Iiii{len(shape)}i", MAGIC_V2, code, len(data), len(shape), *shape) + data


def _string(value: str) -> bytes:
    raw = value.encode("utf-8")
    return struct.pack("<i", len(raw)) + raw


def format_model(model: TnnModel) -> bytes:
    """The ``.tnnmodel`` bytes of ``model`` (v2 magic, one record per weighted layer, constant map).

    Raises:
        ExportError: If :func:`validate_tnn_model` rejects the model.
    """
    validate_tnn_model(model)
    parts: list[bytes] = [struct.pack("<Ii", MAGIC_V2, len(model.resources))]
    for layer in model.layers:
        resource = model.resources.get(layer.name)
        if resource is None:
            continue
        parts.append(struct.pack("<i", LAYER_TYPE_ENUM[layer.type]))
        parts.append(_string(layer.type))
        parts.append(_string(layer.name))
        if layer.type in ("Convolution", "Scale"):
            parts.append(_string(layer.name))
            parts.append(struct.pack("<i", 1 if len(resource.buffers) > 1 else 0))
        elif layer.type == "InnerProduct":
            parts.append(_string(layer.name))
        parts.extend(_raw_buffer(buf) for buf in resource.buffers)
    parts.append(struct.pack("<Ii", MAGIC_V2, len(model.constants)))
    for name, array in model.constants.items():
        parts.append(_string(name))
        parts.append(_raw_buffer(array))
    return b"".join(parts)


def _atomic_write(pairs: list[tuple[Path, bytes]]) -> None:
    temps: list[tuple[str, Path]] = []
    try:
        for path, data in pairs:
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            temps.append((tmp, path))
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o644)  # mkstemp creates 0600; exported models are meant to be shared
        _replace_all(temps)
    finally:
        for tmp, _ in temps:
            if os.path.exists(tmp):
                os.unlink(tmp)


def _replace_all(temps: list[tuple[str, Path]]) -> None:
    """Move every temp file into place; if a move fails, put back the files already moved.

    The previous files are kept as hard links (copies where links are unsupported) until every move
    succeeded, so an error between the two renames never leaves a new ``.tnnmodel`` beside an old
    ``.tnnproto``.
    """
    backups: list[str | None] = []  # previous content of each target (None: it did not exist)
    moved = 0
    try:
        for tmp, path in temps:
            backup: str | None = None
            if path.exists():
                fd, backup = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent)
                os.close(fd)
                os.unlink(backup)
                try:
                    os.link(path, backup)
                except OSError:
                    shutil.copy2(path, backup)
            backups.append(backup)
            os.replace(tmp, path)
            moved += 1
    except BaseException:
        for (_, path), backup in zip(temps[:moved], backups[:moved], strict=True):
            if backup is not None:
                os.replace(backup, path)
            else:
                path.unlink(missing_ok=True)
        raise
    finally:
        for backup in backups:
            if backup is not None and os.path.exists(backup):
                os.unlink(backup)


def write_tnn(model: TnnModel, out_prefix: str | os.PathLike[str], *, force: bool = False) -> TnnFiles:
    """Write ``<out_prefix>.tnnproto`` and ``<out_prefix>.tnnmodel`` (TNN v2 format).

    Both files are fully serialised and validated in memory first, then written to temporary files
    beside the targets and moved into place with :func:`os.replace`.

    Args:
        model: The model to write.
        out_prefix: Output path without suffix; missing parent folders are created.
        force: Replace existing files instead of raising :class:`OutputExistsError`.

    Returns:
        The written paths and the model's input/output names.

    Raises:
        OutputExistsError: If either file exists and ``force`` is false.
        ExportError: If the model cannot be written faithfully.
    """
    proto_path, model_path = tnn_paths(out_prefix)
    if not force:
        for path in (proto_path, model_path):
            if path.exists():
                raise OutputExistsError(f"{path} exists; pass force=True to overwrite it")
    proto = format_proto(model).encode("ascii")
    weights = format_model(model)
    proto_path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write([(model_path, weights), (proto_path, proto)])
    _LOG.info("wrote %s (%d layers) and %s (%d bytes)", proto_path, len(model.layers), model_path, len(weights))
    half = any(buf.dtype == np.float16 for res in model.resources.values() for buf in res.buffers)
    return TnnFiles(
        proto=proto_path,
        model=model_path,
        input_names=model.input_names,
        output_names=tuple(model.outputs),
        input_shapes=tuple(item.shape for item in model.inputs),
        half=half,
    )
