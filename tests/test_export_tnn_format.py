"""TNN file format: exact layout of the worked example of the format notes, strict reading of damaged
files (truncation, wrong magic numbers, bit flips, absurd dims), proto line limits, atomic writes."""

from __future__ import annotations

import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper

from mobilefer.errors import ExportError, InvalidInputError, ModelFormatError, OutputExistsError
from mobilefer.export.tnn import (
    TnnInput,
    TnnLayer,
    TnnModel,
    TnnResource,
    format_model,
    format_proto,
    onnx_to_tnn,
    onnx_to_tnn_model,
    read_tnn,
    run_tnn,
    write_tnn,
)
from mobilefer.export.tnn.graph import MAGIC_V2, MAX_SEGMENT_CHARS
from mobilefer.export.tnn.reader import parse_model, parse_proto

# The worked example of the format notes (section 1.6 / 2.5), which ran in TNNTest on X86 and NAIVE.
EXAMPLE_PROTO = """\
"1 6 1 4206624772 ,"
"input 4 1 3 32 32 0 ,"
" input conv0_out relu6_0_out gap0_out fc0_out prob ,"
"prob ,"
" 5 ,"
"Convolution conv0 1 1 input conv0_out 1 3 8 3 3 2 2 1 1 1 -1 1 1 0 ,"
"ReLU6 relu6_0 1 1 conv0_out relu6_0_out ,"
"Pooling gap0 1 1 relu6_0_out gap0_out 1 0 0 1 1 0 0 -1 -1 -1 0 0 -1 -1 ,"
"InnerProduct fc0 1 1 gap0_out fc0_out 4 1 0 1 ,"
"SoftmaxCaffe prob 1 1 fc0_out prob 1 ,"
"""


def _example(seed: int = 0, half: bool = False) -> TnnModel:
    rng = np.random.default_rng(seed)
    dtype = np.float16 if half else np.float32
    conv_w = rng.standard_normal((8, 3, 3, 3)).astype(dtype)
    conv_b = rng.standard_normal(8).astype(dtype)
    fc_w = rng.standard_normal((4, 8)).astype(dtype)
    fc_b = rng.standard_normal(4).astype(dtype)
    layers = (
        TnnLayer("Convolution", "conv0", ("input",), ("conv0_out",), tuple("1 3 8 3 3 2 2 1 1 1 -1 1 1 0".split())),
        TnnLayer("ReLU6", "relu6_0", ("conv0_out",), ("relu6_0_out",)),
        TnnLayer("Pooling", "gap0", ("relu6_0_out",), ("gap0_out",), tuple("1 0 0 1 1 0 0 -1 -1 -1 0 0 -1 -1".split())),
        TnnLayer("InnerProduct", "fc0", ("gap0_out",), ("fc0_out",), ("4", "1", "0", "1")),
        TnnLayer("SoftmaxCaffe", "prob", ("fc0_out",), ("prob",), ("1",)),
    )
    resources = {
        "conv0": TnnResource("Convolution", "conv0", (conv_w, conv_b)),
        "fc0": TnnResource("InnerProduct", "fc0", (fc_w, fc_b)),
    }
    return TnnModel((TnnInput("input", (1, 3, 32, 32)),), ("prob",), layers, resources)


def _write(tmp_path: Path, model: TnnModel, name: str = "ex") -> tuple[Path, Path]:
    files = write_tnn(model, tmp_path / name)
    return files.proto, files.model


def _structure(model: TnnModel) -> tuple[object, ...]:
    resources = tuple(
        (name, res.layer_type, tuple((buf.dtype.str, buf.shape) for buf in res.buffers))
        for name, res in sorted(model.resources.items())
    )
    return model.inputs, model.outputs, model.layers, resources


# ----------------------------------------------------------------------------- exact layout


def test_worked_example_proto_and_model_layout() -> None:
    model = _example()
    assert format_proto(model) == EXAMPLE_PROTO
    data = format_model(model)
    assert len(data) == 1227  # the size of the verified example file
    assert struct.unpack_from("<Ii", data, 0) == (MAGIC_V2, 2)
    assert struct.unpack_from("<i", data, 8)[0] == 1  # LAYER_CONVOLUTION
    assert struct.unpack_from("<Iiii4i", data, 49) == (MAGIC_V2, 0, 864, 4, 8, 3, 3, 3)
    assert struct.unpack_from("<Iiiii", data, 945) == (MAGIC_V2, 0, 32, 1, 8)
    assert struct.unpack_from("<i", data, 997)[0] == 19  # LAYER_INNER_PRODUCT
    assert struct.unpack_from("<Iiiiii", data, 1031) == (MAGIC_V2, 0, 128, 2, 4, 8)
    assert struct.unpack_from("<Iiiii", data, 1183) == (MAGIC_V2, 0, 16, 1, 4)
    assert struct.unpack_from("<Ii", data, 1219) == (MAGIC_V2, 0)  # empty constant map


def test_worked_example_executes_like_torch(tmp_path: Path) -> None:
    model = _example(1)
    proto, _ = _write(tmp_path, model)
    back = read_tnn(proto)
    assert _structure(back) == _structure(model)
    for name, res in model.resources.items():
        for a, b in zip(res.buffers, back.resources[name].buffers, strict=True):
            np.testing.assert_array_equal(a, b)
    x = np.random.default_rng(2).standard_normal((1, 3, 32, 32)).astype(np.float32)
    out = run_tnn(back, {"input": x})["prob"]
    conv_w, conv_b = (torch.from_numpy(b) for b in model.resources["conv0"].buffers)
    fc_w, fc_b = (torch.from_numpy(b) for b in model.resources["fc0"].buffers)
    y = F.conv2d(torch.from_numpy(x), conv_w, conv_b, stride=2, padding=1).clamp(0, 6).mean((2, 3))
    expected = torch.softmax(F.linear(y, fc_w, fc_b), dim=1).numpy()
    assert out.shape == (1, 4)
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_half_buffers_roundtrip(tmp_path: Path) -> None:
    model = _example(3, half=True)
    proto, weights = _write(tmp_path, model)
    back = read_tnn((proto, weights))
    assert back.resources["conv0"].buffers[0].dtype == np.float16
    assert weights.stat().st_size == 1227 - (864 + 32 + 128 + 16) // 2
    assert write_tnn(back, tmp_path / "again").half


# ----------------------------------------------------------------------------- damaged files


def test_every_truncation_of_the_model_is_rejected(tmp_path: Path) -> None:
    _, weights = _write(tmp_path, _example())
    data = weights.read_bytes()
    layers = parse_proto(EXAMPLE_PROTO)[2]
    for cut in range(len(data)):
        if cut == len(data) - 8:
            continue  # the constant-map trailer is optional: dropping it whole leaves a valid file
        with pytest.raises(ModelFormatError):
            parse_model(data[:cut], layers)
    parse_model(data, layers)  # the whole file is fine
    resources, constants = parse_model(data[:-8], layers)
    assert set(resources) == {"conv0", "fc0"} and not constants


def test_truncated_proto_is_rejected_or_equivalent(tmp_path: Path) -> None:
    proto, weights = _write(tmp_path, _example())
    text = proto.read_text()
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    reference = run_tnn(read_tnn(proto), {"input": x})["prob"]
    rejected = 0
    for cut in range(len(text)):
        proto.write_text(text[:cut])
        try:
            model = read_tnn((proto, weights))
            out = run_tnn(model, {"input": x})["prob"]
        except ModelFormatError:
            rejected += 1
            continue
        # a cut that only drops optional trailing tokens leaves an equivalent model
        np.testing.assert_array_equal(out, reference)
    assert rejected > 0.9 * len(text)


@pytest.mark.parametrize(
    ("offset", "value", "match"),
    [
        (0, 0x12345678, "magic"),  # file magic
        (4, 9999, "record count"),  # absurd count for a 1 KB file
        (49, 0xFABC0003, "magic"),  # RawBuffer magic
        (57, 0x7FFFFFFF, "truncated|bytes"),  # RawBuffer byte length
        (61, 4000, "rank"),  # RawBuffer rank
        (65, 1 << 30, "dims"),  # RawBuffer dim -> absurd size
        (53, 42, "data type"),  # RawBuffer data type
        (1219, 0, "constant-map magic"),
    ],
)
def test_corrupt_model_fields_are_rejected_without_allocating(tmp_path: Path, offset: int, value: int, match: str) -> None:
    _, weights = _write(tmp_path, _example())
    data = bytearray(weights.read_bytes())
    struct.pack_into("<I", data, offset, value)
    weights.write_bytes(bytes(data))
    tracemalloc.start()
    try:
        with pytest.raises(ModelFormatError, match=match):
            read_tnn(tmp_path / "ex")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20


def test_absurd_input_dims_are_rejected(tmp_path: Path) -> None:
    proto, _ = _write(tmp_path, _example())
    text = proto.read_text()
    for bad in ("input 4 1 3 100000 100000 0", "input 4 1 3 -32 32 0", "input 5 1 3 32 32 0", "input 4 1 3 32 x 0"):
        proto.write_text(text.replace("input 4 1 3 32 32 0", bad))
        with pytest.raises(ModelFormatError):
            read_tnn(proto)


def test_bit_flips_are_rejected_or_harmless(tmp_path: Path) -> None:
    model = _example()
    _, weights = _write(tmp_path, model)
    data = weights.read_bytes()
    layers = parse_proto(EXAMPLE_PROTO)[2]
    expected = _structure(model)[3]
    accepted = 0
    for offset in range(len(data)):
        for bit in (0x01, 0x80):
            flipped = bytearray(data)
            flipped[offset] ^= bit
            try:
                resources, constants = parse_model(bytes(flipped), layers)
            except ModelFormatError:
                continue
            accepted += 1
            back = TnnModel(model.inputs, model.outputs, model.layers, resources, constants)
            assert _structure(back)[3] == expected  # only weight values (or ignored bytes) changed
    data_bytes = 864 + 32 + 128 + 16
    assert accepted <= 2 * (data_bytes + 16)  # structural bytes (almost) never go unnoticed


def test_wrong_proto_magic_and_bad_records(tmp_path: Path) -> None:
    proto, _ = _write(tmp_path, _example())
    text = proto.read_text()
    cases = {
        "magic": text.replace("4206624772", "4206624771"),
        "two spaces": text.replace('"prob ,"', '"prob  fc0_out ,"'),
        "unknown": text.replace("ReLU6 relu6_0", "Relu7 relu6_0"),
        "used twice": text.replace("ReLU6 relu6_0", "ReLU6 conv0"),
        "characters long": text.replace("conv0 1 1 input", "conv0 1 1 input " + "x" * MAX_SEGMENT_CHARS),
        "too few": text.replace("ReLU6 relu6_0 1 1", "ReLU6 relu6_0 1 3"),
        "before any layer": text.replace("Convolution conv0 1 1 input conv0_out", "Convolution conv0 3 1 input"),
    }
    for match, bad in cases.items():
        proto.write_text(bad)
        with pytest.raises(ModelFormatError, match=match):
            read_tnn(proto)


def test_missing_weights_record_is_rejected(tmp_path: Path) -> None:
    model = _example()
    proto, weights = _write(tmp_path, model)
    text = proto.read_text().replace("fc0", "fc1")
    proto.write_text(text)
    with pytest.raises(ModelFormatError, match="fc0"):
        read_tnn(proto)


def test_missing_file_is_invalid_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError):
        read_tnn(tmp_path / "nothing")


# ----------------------------------------------------------------------------- writer rules


def test_layer_line_limit_is_enforced() -> None:
    model = _example()
    long_name = "n" * 1000
    layers = list(model.layers)
    layers[1] = TnnLayer("ReLU6", "relu6_0", ("conv0_out",), (long_name,))
    layers[2] = TnnLayer("Pooling", "gap0", (long_name,), ("gap0_out",), layers[2].params)
    ok = TnnModel(model.inputs, model.outputs, tuple(layers), model.resources)
    assert max(len(line) for line in format_proto(ok).splitlines()) > 1000  # 1000-char names are fine
    concat = TnnLayer("Concat", "cat", (long_name,) * 5, ("cat_out",), ("1",))
    bad = TnnModel(model.inputs, ("cat_out",), (*layers, concat), model.resources)
    with pytest.raises(ExportError, match="4095"):
        format_proto(bad)


def test_long_blob_list_is_allowed() -> None:
    # segment 2 (the blob list) is ignored by TNN, so it may exceed the 4095-character limit
    layers = [TnnLayer("ReLU", f"layer_{i:04d}", (f"blob_{i - 1:04d}" if i else "input",), (f"blob_{i:04d}",))
              for i in range(500)]
    model = TnnModel((TnnInput("input", (1, 2)),), ("blob_0499",), tuple(layers))
    text = format_proto(model)
    assert len(text.splitlines()[2]) > MAX_SEGMENT_CHARS
    inputs, outputs, parsed = parse_proto(text)
    assert len(parsed) == 500 and outputs == ("blob_0499",)


def _concat_graph(n: int, name_len: int) -> object:
    nodes = [helper.make_node("Relu", ["input"], [f"r{i:04d}_" + "x" * name_len], name=f"relu{i}") for i in range(n)]
    nodes.append(helper.make_node("Concat", [node.output[0] for node in nodes], ["output"], axis=1, name="cat"))
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_converter_shortens_names_for_long_concat(tmp_path: Path) -> None:
    files = onnx_to_tnn(_concat_graph(100, 60), tmp_path / "cat")
    lines = files.proto.read_text().replace('"', "").split(",")
    assert max(len(seg) for i, seg in enumerate(lines) if i != 2) <= MAX_SEGMENT_CHARS
    model = read_tnn(files.proto)
    assert model.outputs == ("output",) and model.input_names == ("input",)
    x = np.array([[-1.0, 2.0]], np.float32)
    np.testing.assert_array_equal(run_tnn(model, {"input": x})["output"], np.tile([[0.0, 2.0]], (1, 100)))


def test_converter_refuses_concat_that_cannot_fit() -> None:
    with pytest.raises(ExportError, match="4095"):
        onnx_to_tnn_model(_concat_graph(1000, 4))


def test_refuses_to_overwrite_and_writes_atomically(tmp_path: Path) -> None:
    model = _example()
    files = write_tnn(model, tmp_path / "m")
    before = (files.proto.read_bytes(), files.model.read_bytes())
    other = _example(seed=7)
    with pytest.raises(OutputExistsError):
        write_tnn(other, tmp_path / "m")
    with pytest.raises(OutputExistsError):
        write_tnn(other, tmp_path / "m.tnnproto")  # suffix is stripped: same files
    assert (files.proto.read_bytes(), files.model.read_bytes()) == before
    broken = TnnModel(model.inputs, ("nope",), model.layers, model.resources)
    with pytest.raises(ExportError):
        write_tnn(broken, tmp_path / "m", force=True)
    assert (files.proto.read_bytes(), files.model.read_bytes()) == before
    write_tnn(other, tmp_path / "m", force=True)
    assert files.model.read_bytes() != before[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tnnmodel", "m.tnnproto"]  # no temp files left


def test_onnx_to_tnn_checks_existing_output_before_converting(tmp_path: Path) -> None:
    (tmp_path / "m.tnnmodel").write_bytes(b"keep")
    with pytest.raises(OutputExistsError):
        onnx_to_tnn(_concat_graph(2, 1), tmp_path / "m")
    assert (tmp_path / "m.tnnmodel").read_bytes() == b"keep"
    assert not (tmp_path / "m.tnnproto").exists()


def test_writer_rejects_inconsistent_models() -> None:
    model = _example()
    no_weights = TnnModel(model.inputs, model.outputs, model.layers, {"conv0": model.resources["conv0"]})
    with pytest.raises(ExportError, match="fc0"):
        format_model(no_weights)
    dup = TnnModel(model.inputs, model.outputs, (*model.layers[:-1], TnnLayer("SoftmaxCaffe", "conv0", ("fc0_out",),
                                                                                ("prob",), ("1",))), model.resources)
    with pytest.raises(ExportError, match="twice"):
        format_proto(dup)
    bad_input = TnnModel((TnnInput("in:put", (1, 3, 32, 32)),), model.outputs, model.layers, model.resources)
    with pytest.raises(ExportError, match="':'"):
        format_proto(bad_input)
    f64 = TnnResource("InnerProduct", "fc0", tuple(b.astype(np.float64) for b in model.resources["fc0"].buffers))
    with pytest.raises(ExportError, match="dtype"):
        format_model(TnnModel(model.inputs, model.outputs, model.layers, {**model.resources, "fc0": f64}))


def test_run_tnn_validates_inputs() -> None:
    model = _example()
    with pytest.raises(InvalidInputError, match="shape"):
        run_tnn(model, {"input": np.zeros((1, 3, 16, 16), np.float32)})
    with pytest.raises(InvalidInputError, match="missing"):
        run_tnn(model, {})
