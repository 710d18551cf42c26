"""Round-trip parity of the pure-Python TNN export: numpy execution of the written TNN files must equal
onnxruntime on the source ONNX graph (fp32), or on the same graph with float16-rounded weights
(``half=True``), within 1e-5."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from conftest import shared_file
from mobilefer.errors import ExportError, UnsupportedOpError
from mobilefer.export.tnn import (
    infer_tnn_shapes,
    onnx_to_tnn,
    onnx_to_tnn_model,
    read_tnn,
    run_tnn,
    simplify_onnx,
)
from mobilefer.models.mobilenetv2 import MobileNetV2

ATOL = 1e-5


# ----------------------------------------------------------------------------- helpers


def _ort(model: onnx.ModelProto | str | Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds), strict=True))


def _round_weights_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same graph with every Conv/Gemm weight and bias initializer rounded through float16."""
    rounded = onnx.ModelProto()
    rounded.CopyFrom(model)
    weight_names = {
        name for node in rounded.graph.node if node.op_type in ("Conv", "Gemm") for name in node.input[1:]
    }
    for init in rounded.graph.initializer:
        if init.name in weight_names and init.data_type == TensorProto.FLOAT:
            array = numpy_helper.to_array(init).astype(np.float16).astype(np.float32)
            init.CopyFrom(numpy_helper.from_array(array, init.name))
    return rounded


def _roundtrip(onnx_model: onnx.ModelProto | str | Path, tmp_path: Path, x: np.ndarray, *, half: bool = False,
               input_name: str = "input") -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], Path]:
    """(TNN numpy outputs read back from files, ORT reference outputs, prefix)."""
    prefix = tmp_path / ("model_half" if half else "model")
    files = onnx_to_tnn(onnx_model, prefix, half=half)
    assert files.proto.exists() and files.model.exists()
    tnn_out = run_tnn(read_tnn(files.proto), {input_name: x})
    reference_model = simplify_onnx(onnx_model)
    if half:
        reference_model = _round_weights_fp16(reference_model)
    ref = _ort(reference_model, {input_name: x})
    return tnn_out, ref, prefix


def _max_diff(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, float]:
    assert set(a) == set(b)
    for name in a:
        assert a[name].shape == b[name].shape, name
    return {name: float(np.abs(a[name].astype(np.float64) - b[name]).max()) for name in a}


def _randomise(model: nn.Module, seed: int) -> nn.Module:
    """Random BN statistics/affine and a non-trivial classifier so logits are O(1), not ~0."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                c = module.num_features
                module.running_mean.copy_(torch.rand(c, generator=gen) - 0.5)
                module.running_var.copy_(torch.rand(c, generator=gen) * 1.5 + 0.5)
                module.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                module.bias.copy_((torch.rand(c, generator=gen) - 0.5) * 0.2)
            elif isinstance(module, nn.Linear):
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * 0.1)
                module.bias.copy_(torch.randn(module.bias.shape, generator=gen) * 0.1)
    return model.eval()


def _export(model: nn.Module, path: Path, x: torch.Tensor, *, dynamo: bool, output: str = "logits",
            dynamic_batch: bool = False) -> Path:
    kwargs: dict[str, object] = {}
    if dynamic_batch:
        if dynamo:
            kwargs["dynamic_shapes"] = ({0: torch.export.Dim("batch")},)
        else:
            kwargs["dynamic_axes"] = {"input": {0: "batch"}, output: {0: "batch"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (x,), str(path), dynamo=dynamo, opset_version=17, input_names=["input"],
            output_names=[output], **kwargs,
        )
    return path


def _mnv2(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return _randomise(MobileNetV2(num_classes=7, width_mult=0.35, in_chans=1), seed)


class _MeanPoolHead(nn.Module):
    """MobileNetV2 features -> x.mean((2, 3)) -> classifier: exported as ReduceMean, not GlobalAveragePool."""

    def __init__(self, base: nn.Module, keepdim: bool) -> None:
        super().__init__()
        self.base = base
        self.keepdim = keepdim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.base.forward_features(x).mean((2, 3), keepdim=self.keepdim)
        return self.base.classifier(feats.flatten(1))


def _image_input(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1.0, 1.0, shape).astype(np.float32)


# ----------------------------------------------------------------------------- classifiers


@pytest.mark.parametrize(
    "dynamo", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["torchscript", "dynamo"]
)
def test_mobilenetv2_roundtrip_fp32_and_fp16(tmp_path: Path, dynamo: bool) -> None:
    model = _mnv2()
    x = _image_input((1, 1, 64, 64))
    path = _export(model, tmp_path / "mnv2.onnx", torch.from_numpy(x), dynamo=dynamo)
    torch_logits = model(torch.from_numpy(x)).detach().numpy()

    out, ref, prefix = _roundtrip(path, tmp_path, x)
    diff = _max_diff(out, ref)
    assert diff["logits"] < ATOL, diff
    assert float(np.abs(torch_logits).max()) > 0.1  # logits are not trivially ~0
    assert np.abs(out["logits"] - torch_logits).max() < 1e-4

    tnn = read_tnn(prefix)
    types = [layer.type for layer in tnn.layers]
    assert types.count("Convolution") == 52  # every conv of MobileNetV2, BN folded in
    assert types.count("ReLU6") == 35
    assert types.count("InnerProduct") == 1 and types.count("Pooling") == 1
    assert "BatchNormCxx" not in types
    assert tnn.input_names == ("input",) and tnn.outputs == ("logits",)

    out16, ref16, prefix16 = _roundtrip(path, tmp_path, x, half=True)
    diff16 = _max_diff(out16, ref16)
    assert diff16["logits"] < ATOL, diff16
    half_model = read_tnn(prefix16)
    assert all(buf.dtype == np.float16 for res in half_model.resources.values() for buf in res.buffers)
    size32 = prefix.with_suffix(".tnnmodel").stat().st_size
    size16 = prefix16.with_suffix(".tnnmodel").stat().st_size
    assert 0.45 < size16 / size32 < 0.55
    # fp16 rounding changes the logits measurably, so the half comparison is not vacuous
    assert np.abs(out16["logits"] - out["logits"]).max() > 1e-6


def test_mobilenetv2_dynamic_batch_becomes_1(tmp_path: Path) -> None:
    model = _mnv2(1)
    x = _image_input((1, 1, 64, 64), 1)
    path = _export(model, tmp_path / "dyn.onnx", torch.from_numpy(x), dynamo=False, dynamic_batch=True)
    assert onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim[0].dim_param
    out, ref, prefix = _roundtrip(path, tmp_path, x)
    assert _max_diff(out, ref)["logits"] < ATOL
    assert read_tnn(prefix).inputs[0].shape == (1, 1, 64, 64)
    assert prefix.with_suffix(".tnnproto").read_text().splitlines()[1] == '"input 4 1 1 64 64 0 ,"'


@pytest.mark.parametrize("keepdim", [False, True])
def test_reduce_mean_head_roundtrip(tmp_path: Path, keepdim: bool) -> None:
    model = _MeanPoolHead(_mnv2(2), keepdim).eval()
    x = _image_input((1, 1, 64, 64), 2)
    path = _export(model, tmp_path / "mean.onnx", torch.from_numpy(x), dynamo=False)
    assert "ReduceMean" in {node.op_type for node in onnx.load(str(path)).graph.node}
    out, ref, prefix = _roundtrip(path, tmp_path, x)
    assert _max_diff(out, ref)["logits"] < ATOL
    expected = model(torch.from_numpy(x)).detach().numpy()
    assert np.abs(out["logits"] - expected).max() < 1e-4
    types = [layer.type for layer in read_tnn(prefix).layers]
    assert types.count("Pooling") == 1  # ReduceMean over H,W -> global average pooling


def test_mobilenetv1_roundtrip(tmp_path: Path) -> None:
    v1 = pytest.importorskip("mobilefer.models.mobilenetv1")
    torch.manual_seed(3)
    model = _randomise(v1.MobileNetV1(num_classes=7, width_mult=0.25, in_chans=1), 3)
    x = _image_input((1, 1, 64, 64), 3)
    path = _export(model, tmp_path / "v1.onnx", torch.from_numpy(x), dynamo=False)
    out, ref, _ = _roundtrip(path, tmp_path, x)
    assert _max_diff(out, ref)["logits"] < ATOL
    out16, ref16, _ = _roundtrip(path, tmp_path, x, half=True)
    assert _max_diff(out16, ref16)["logits"] < ATOL


# ----------------------------------------------------------------------------- UltraFace


@pytest.mark.realdata
@pytest.mark.parametrize(
    "name", ["version-RFB-320_without_postprocessing.onnx", "version-RFB-320.onnx"], ids=["raw", "decoded"]
)
def test_ultraface_rfb_roundtrip(tmp_path: Path, name: str) -> None:
    path = shared_file(f"weights/ultraface/{name}")
    x = _image_input((1, 3, 240, 320), 4)
    out, ref, prefix = _roundtrip(path, tmp_path, x)
    diff = _max_diff(out, ref)
    assert diff["scores"] < ATOL and diff["boxes"] < ATOL, diff
    # the reference itself equals onnxruntime on the untouched official file (folding/fusion are exact)
    assert _max_diff(_ort(path, {"input": x}), ref)["boxes"] < 1e-5
    tnn = read_tnn(prefix)
    assert set(tnn.outputs) == {"scores", "boxes"}
    shapes = infer_tnn_shapes(tnn)
    assert shapes["scores"] == (1, 4420, 2) and shapes["boxes"] == (1, 4420, 4)
    types = {layer.type for layer in tnn.layers}
    assert "BatchNormCxx" not in types  # the 35 BatchNormalization nodes are fused into convs
    if name == "version-RFB-320.onnx":
        assert {"StridedSliceV2", "Exp", "Mul", "Sub"} <= types
    else:
        assert len(tnn.layers) == 110  # as the onnx-simplified graph in the format doc


@pytest.mark.realdata
def test_ultraface_rfb_half(tmp_path: Path) -> None:
    path = shared_file("weights/ultraface/version-RFB-320_without_postprocessing.onnx")
    x = _image_input((1, 3, 240, 320), 5)
    out, ref, _ = _roundtrip(path, tmp_path, x, half=True)
    diff = _max_diff(out, ref)
    assert diff["scores"] < ATOL and diff["boxes"] < ATOL, diff


def test_conversion_is_deterministic(tmp_path: Path) -> None:
    model = _mnv2(4)
    path = _export(model, tmp_path / "m.onnx", torch.zeros(1, 1, 64, 64), dynamo=False)
    a = onnx_to_tnn(path, tmp_path / "a")
    b = onnx_to_tnn(onnx.load(str(path)), tmp_path / "b")
    assert a.proto.read_bytes() == b.proto.read_bytes()
    assert a.model.read_bytes() == b.model.read_bytes()


# ----------------------------------------------------------------------------- single ops (synthetic graphs)


def _graph(nodes: list[onnx.NodeProto], in_shape: list[int], out_shape: list[int] | None,
           inits: dict[str, np.ndarray] | None = None, opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, out_shape)],
        initializer=[numpy_helper.from_array(v, k) for k, v in (inits or {}).items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _f32(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


_CASES: dict[str, tuple[onnx.ModelProto, list[int], str]] = {
    "maxpool_pad": (
        _graph([helper.make_node("MaxPool", ["input"], ["output"], kernel_shape=[3, 3], strides=[2, 2],
                                 pads=[1, 1, 1, 1])], [1, 3, 9, 10], None),
        [1, 3, 9, 10], "Pooling"),
    "maxpool_ceil": (
        _graph([helper.make_node("MaxPool", ["input"], ["output"], kernel_shape=[3, 3], strides=[2, 2],
                                 ceil_mode=1)], [1, 2, 10, 10], None),
        [1, 2, 10, 10], "Pooling"),
    "avgpool_exclude_pad_ceil": (
        _graph([helper.make_node("AveragePool", ["input"], ["output"], kernel_shape=[3, 3], strides=[2, 2],
                                 pads=[1, 1, 1, 1], ceil_mode=1)], [1, 2, 8, 9], None),
        [1, 2, 8, 9], "Pooling"),
    "global_max": (_graph([helper.make_node("GlobalMaxPool", ["input"], ["output"])], [1, 4, 5, 6], None),
                   [1, 4, 5, 6], "Pooling"),
    "sigmoid_tanh_exp": (
        _graph([helper.make_node("Sigmoid", ["input"], ["a"]), helper.make_node("Tanh", ["a"], ["b"]),
                helper.make_node("Exp", ["b"], ["output"])], [1, 3, 4, 4], None),
        [1, 3, 4, 4], "Tanh"),
    "clip_general": (
        _graph([helper.make_node("Clip", ["input", "lo", "hi"], ["output"])], [1, 3, 4, 4], None,
               {"lo": np.array(-0.5, np.float32), "hi": np.array(0.7, np.float32)}),
        [1, 3, 4, 4], "Clip"),
    "clip_min_only_is_relu": (
        _graph([helper.make_node("Clip", ["input", "lo"], ["output"])], [1, 3, 4, 4], None,
               {"lo": np.array(0.0, np.float32)}),
        [1, 3, 4, 4], "ReLU"),
    "div_by_const": (
        _graph([helper.make_node("Div", ["input", "c"], ["output"])], [1, 3, 4, 4], None,
               {"c": np.array([[[3.0]], [[0.5]], [[-7.0]]], np.float32)}),
        [1, 3, 4, 4], "Mul"),
    "const_div_x": (
        _graph([helper.make_node("Sigmoid", ["input"], ["s"]), helper.make_node("Add", ["s", "one"], ["t"]),
                helper.make_node("Div", ["c", "t"], ["output"])],
               [1, 3, 4, 4], None, {"c": np.array([2.0], np.float32), "one": np.array(1.0, np.float32)}),
        [1, 3, 4, 4], "Div"),
    "dynamo_style_head_opset18": (
        _graph([helper.make_node("ReduceMean", ["input", "axes"], ["m"], keepdims=1),
                helper.make_node("Reshape", ["m", "shape"], ["v"], allowzero=1),
                helper.make_node("Gemm", ["v", "w"], ["output"], transB=1)],
               [1, 8, 3, 3], None,
               {"axes": np.array([-1, -2], np.int64), "shape": np.array([-1, 8], np.int64),
                "w": _f32(5, 8, seed=13)}, opset=18),
        [1, 8, 3, 3], "InnerProduct"),
    "const_sub_x_channelwise_mul": (
        _graph([helper.make_node("Sub", ["c", "input"], ["a"]), helper.make_node("Mul", ["a", "m"], ["output"])],
               [1, 3, 4, 4], None,
               {"c": np.array(1.5, np.float32), "m": _f32(1, 3, 1, 1, seed=1)}),
        [1, 3, 4, 4], "Sub"),
    "two_blob_ops": (
        _graph([helper.make_node("Sigmoid", ["input"], ["s"]), helper.make_node("Mul", ["input", "s"], ["m"]),
                helper.make_node("Div", ["m", "s"], ["d"]), helper.make_node("Sub", ["d", "s"], ["output"])],
               [1, 3, 4, 4], None),
        [1, 3, 4, 4], "Div"),
    "concat_transpose_softmax": (
        _graph([helper.make_node("Transpose", ["input"], ["t"], perm=[0, 2, 3, 1]),
                helper.make_node("Concat", ["t", "t"], ["c"], axis=-1),
                helper.make_node("Softmax", ["c"], ["output"], axis=1)], [1, 3, 4, 5], None),
        [1, 3, 4, 5], "Permute"),
    "softmax_opset11_last_axis": (
        _graph([helper.make_node("Softmax", ["input"], ["output"], axis=2)], [1, 6, 5], None, opset=11),
        [1, 6, 5], "SoftmaxCaffe"),
    "flatten_axis2": (_graph([helper.make_node("Flatten", ["input"], ["output"], axis=2)], [2, 3, 4, 5], None),
                      [2, 3, 4, 5], "Flatten"),
    "matmul_add": (
        _graph([helper.make_node("MatMul", ["input", "w"], ["mm"]), helper.make_node("Add", ["mm", "b"], ["output"])],
               [2, 6], None, {"w": _f32(6, 4, seed=2), "b": _f32(4, seed=3)}),
        [2, 6], "InnerProduct"),
    "matmul_opset9": (
        _graph([helper.make_node("MatMul", ["input", "w"], ["output"])], [3, 6], None,
               {"w": _f32(6, 2, seed=14)}, opset=9),
        [3, 6], "InnerProduct"),
    "gemm_transb0_alpha_beta": (
        _graph([helper.make_node("Gemm", ["input", "w", "b"], ["output"], alpha=0.5, beta=2.0)],
               [1, 6], None, {"w": _f32(6, 5, seed=4), "b": _f32(1, 5, seed=5)}),
        [1, 6], "InnerProduct"),
    "slice_steps": (
        _graph([helper.make_node("Slice", ["input", "st", "en", "ax", "sp"], ["output"])], [1, 4, 9, 8], None,
               {"st": np.array([1, -7], np.int64), "en": np.array([4, 100], np.int64),
                "ax": np.array([1, 2], np.int64), "sp": np.array([2, 3], np.int64)}),
        [1, 4, 9, 8], "StridedSliceV2"),
    "batchnorm_standalone": (
        _graph([helper.make_node("BatchNormalization", ["input", "g", "b", "m", "v"], ["output"], epsilon=1e-3)],
               [1, 3, 4, 4], None,
               {"g": _f32(3, seed=6), "b": _f32(3, seed=7), "m": _f32(3, seed=8),
                "v": np.abs(_f32(3, seed=9)) + 0.5}),
        [1, 3, 4, 4], "BatchNormCxx"),
    "conv_same_upper_asymmetric": (
        _graph([helper.make_node("Conv", ["input", "w", "b"], ["output"], strides=[2, 2], auto_pad="SAME_UPPER")],
               [1, 2, 8, 8], None, {"w": _f32(4, 2, 3, 3, seed=10), "b": _f32(4, seed=11)}),
        [1, 2, 8, 8], "Convolution"),
    "conv_dilated_grouped_nobias": (
        _graph([helper.make_node("Conv", ["input", "w"], ["output"], group=2, dilations=[2, 2], pads=[2, 2, 2, 2])],
               [1, 4, 9, 9], None, {"w": _f32(6, 2, 3, 3, seed=12)}),
        [1, 4, 9, 9], "Convolution"),
    "reduce_mean_channels": (
        _graph([helper.make_node("ReduceMean", ["input"], ["output"], axes=[1], keepdims=1)], [1, 3, 4, 4], None),
        [1, 3, 4, 4], "ReduceMean"),
    "reduce_max_hw_keepdims0": (
        _graph([helper.make_node("ReduceMax", ["input"], ["output"], axes=[2, 3], keepdims=0)], [1, 3, 4, 4], None),
        [1, 3, 4, 4], "Flatten"),
    "unsqueeze_squeeze": (
        _graph([helper.make_node("Unsqueeze", ["input", "a"], ["u"]), helper.make_node("Relu", ["u"], ["r"]),
                helper.make_node("Squeeze", ["r", "a"], ["output"])], [2, 3], None,
               {"a": np.array([1], np.int64)}),
        [2, 3], "Reshape"),
    "identity_dropout_removed": (
        _graph([helper.make_node("Identity", ["input"], ["i"]), helper.make_node("Relu", ["i"], ["r"]),
                helper.make_node("Dropout", ["r"], ["output"])], [1, 3], None),
        [1, 3], "ReLU"),
}


@pytest.mark.parametrize("case", sorted(_CASES))
def test_single_op_roundtrip(tmp_path: Path, case: str) -> None:
    model, shape, expected_layer = _CASES[case]
    x = _f32(*shape, seed=20)
    out, ref, prefix = _roundtrip(model, tmp_path, x)
    diff = _max_diff({"output": out["output"]}, {"output": ref["output"]})
    assert diff["output"] < ATOL, diff
    # the reference is also onnxruntime on the untouched graph
    assert np.abs(_ort(model, {"input": x})["output"] - ref["output"]).max() < 1e-6
    assert expected_layer in {layer.type for layer in read_tnn(prefix).layers}


def test_conv_same_upper_uses_tnn_same_padding() -> None:
    model, _, _ = _CASES["conv_same_upper_asymmetric"]
    conv = onnx_to_tnn_model(model).layers[0]
    assert conv.params[7:11] == ("0", "0", "1", "0")  # pad 0 0, has_bias, pad_type 0 (TF SAME)


# ----------------------------------------------------------------------------- refusals


def test_unsupported_op_names_op_and_node() -> None:
    model = _graph([helper.make_node("Relu", ["input"], ["r"], name="relu0"),
                    helper.make_node("HardSwish", ["r"], ["output"], name="the_hardswish")], [1, 3, 4, 4], None)
    with pytest.raises(UnsupportedOpError, match=r"HardSwish.*the_hardswish"):
        onnx_to_tnn_model(model)


def test_asymmetric_padding_is_refused(tmp_path: Path) -> None:
    model = _graph([helper.make_node("Conv", ["input", "w"], ["output"], pads=[0, 1, 1, 0], name="odd_conv")],
                   [1, 2, 6, 6], None, {"w": _f32(2, 2, 3, 3)})
    with pytest.raises(UnsupportedOpError, match=r"Conv.*odd_conv.*asymmetric"):
        onnx_to_tnn(model, tmp_path / "m")
    assert not list(tmp_path.iterdir())  # nothing written


def test_avgpool_count_include_pad_is_refused() -> None:
    model = _graph([helper.make_node("AveragePool", ["input"], ["output"], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                                     count_include_pad=1, name="avg")], [1, 2, 6, 6], None)
    with pytest.raises(UnsupportedOpError, match=r"AveragePool.*avg.*count_include_pad"):
        onnx_to_tnn_model(model)


def test_custom_domain_op_is_refused() -> None:
    node = helper.make_node("Gelu", ["input"], ["output"], name="g", domain="com.microsoft")
    model = _graph([node], [1, 3], None)
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    with pytest.raises(UnsupportedOpError, match=r"Gelu.*'g'"):
        onnx_to_tnn_model(model)


def test_dynamic_spatial_dims_need_input_shapes(tmp_path: Path) -> None:
    model = _graph([helper.make_node("Relu", ["input"], ["output"])], [1, 3, "h", "w"], None)  # type: ignore[list-item]
    with pytest.raises(ExportError, match="input_shapes"):
        onnx_to_tnn_model(model)
    tnn = onnx_to_tnn_model(model, input_shapes={"input": (1, 3, 5, 7)})
    assert tnn.inputs[0].shape == (1, 3, 5, 7)


def test_bad_io_name_is_refused() -> None:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["in put"], ["output"])], "g",
        [helper.make_tensor_value_info("in put", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(ExportError, match="in put"):
        onnx_to_tnn_model(model)


def test_internal_names_are_sanitised() -> None:
    nodes = [helper.make_node("Relu", ["input"], ["a b,c\"d"], name="x y"),
             helper.make_node("Sigmoid", ["a b,c\"d"], ["output"], name="x,y")]
    model = _graph(nodes, [1, 3], None)
    tnn = onnx_to_tnn_model(model)
    assert len({layer.name for layer in tnn.layers}) == 2
    for layer in tnn.layers:
        for name in (layer.name, *layer.inputs, *layer.outputs):
            assert not set(name) & set(' ,"')
    x = _f32(1, 3)
    assert np.abs(run_tnn(tnn, {"input": x})["output"] - _ort(model, {"input": x})["output"]).max() < 1e-6


# ----------------------------------------------------------------------------- to_tnn (torch model -> ONNX -> TNN)


def test_to_tnn_from_torch_classifier(tmp_path: Path) -> None:
    from mobilefer.errors import ExportVerificationError, InvalidInputError
    from mobilefer.export.tnn import to_tnn

    model = _mnv2(5)
    files = to_tnn(model, tmp_path / "fer", input_size=64)
    assert (files.input_names, files.output_names, files.input_shapes) == (("input",), ("logits",), ((1, 1, 64, 64),))
    x = _image_input((1, 1, 64, 64), 5)
    out = run_tnn(read_tnn(files.proto), {"input": x})["logits"]
    assert np.abs(out - model(torch.from_numpy(x)).detach().numpy()).max() < 1e-4
    with pytest.raises(ExportVerificationError):
        to_tnn(model, tmp_path / "strict", input_size=64, tolerance=1e-12)
    assert not list(tmp_path.glob("strict*"))  # nothing written when verification fails
    with pytest.raises(InvalidInputError):
        to_tnn(onnx.load(str(_export(model, tmp_path / "m.onnx", torch.zeros(1, 1, 64, 64), dynamo=False))),
               tmp_path / "x", input_size=64)


def test_to_tnn_from_ultraface_net(tmp_path: Path) -> None:
    net_module = pytest.importorskip("mobilefer.detect.ultraface_net")
    from mobilefer.export.tnn import to_tnn

    torch.manual_seed(6)
    net = _randomise(net_module.UltraFaceNet("slim"), 6)
    files = to_tnn(net, tmp_path / "det", half=True)
    assert files.output_names == ("scores", "boxes") and files.input_shapes == ((1, 3, 240, 320),)
    shapes = infer_tnn_shapes(read_tnn(files.proto))
    assert shapes["scores"] == (1, 4420, 2) and shapes["boxes"] == (1, 4420, 4)
