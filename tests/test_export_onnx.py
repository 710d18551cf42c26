"""to_onnx: self-contained files, fixed tensor names, metadata, dynamic batch, parity, overwrite rules."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from _core_helpers import GRAY48, isolated_home, make_classifier, make_model, read_bgr
from mobilefer.classify import ExpressionClassifier
from mobilefer.detect import ULTRAFACE, UltraFaceDetector
from mobilefer.errors import ExportError, ExportVerificationError, InvalidInputError, OutputExistsError
from mobilefer.export import OnnxExport, to_onnx
from mobilefer.preset import Preset

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

TOL = 1e-4


@pytest.fixture(scope="module", autouse=True)
def _home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with isolated_home(tmp_path_factory.mktemp("mobilefer-home")) as home:
        yield home


@pytest.fixture(scope="module")
def clf() -> ExpressionClassifier:
    return make_classifier(0)


@pytest.fixture(scope="module")
def photo(shared_images: list[Path]) -> np.ndarray:
    return read_bgr(shared_images[0])


@pytest.fixture(scope="module")
def face_crops(photo: np.ndarray, rfb_weights: Path) -> list[np.ndarray]:
    det = UltraFaceDetector("ultraface-rfb-320", weights=rfb_weights)
    boxes = [d.box for d in det.detect(photo)[:4]]
    assert boxes, "no face found in the shared photo"
    return [GRAY48.crop_rule(det.name).crop(photo, b) for b in boxes]


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _torch(module: nn.Module, x: np.ndarray) -> list[np.ndarray]:
    with torch.no_grad():
        out = module(torch.from_numpy(x))
    return [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]


def _assert_self_contained(path: Path) -> onnx.ModelProto:
    from onnx.external_data_helper import uses_external_data

    assert sorted(p.name for p in path.parent.iterdir()) == [path.name], "export wrote side files"
    model = onnx.load(str(path), load_external_data=False)
    assert model.graph.initializer
    assert not any(uses_external_data(t) for t in model.graph.initializer)
    init_names = {t.name for t in model.graph.initializer}
    assert [i.name for i in model.graph.input] == ["input"]
    assert not init_names & {i.name for i in model.graph.input}  # initializers are not graph inputs
    onnx.checker.check_model(model)
    return model


def _meta(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


# ---------------------------------------------------------------------------------------- classifiers
def test_classifier_export(clf: ExpressionClassifier, face_crops: list[np.ndarray], tmp_path: Path) -> None:
    real = clf.preprocess(face_crops)
    path = tmp_path / "out" / "fer.onnx"
    path.parent.mkdir()
    result = to_onnx(clf, path, verify_inputs=[real])
    assert isinstance(result, OnnxExport)
    assert (result.path, result.kind, result.input_name, result.output_names) == (path, "classifier", "input", ("logits",))
    assert result.input_shape == (1, 1, 48, 48) and result.opset == 17
    assert 0.0 <= result.max_abs_diff <= TOL

    model = _assert_self_contained(path)
    assert [o.name for o in model.graph.output] == ["logits"]
    meta = _meta(model)
    assert Preset.from_json(meta["mobilefer.preset"]) == clf.preset
    assert json.loads(meta["labels"]) == list(clf.labels)
    assert json.loads(meta["mean"]) == [127.5] and json.loads(meta["std"]) == [127.5]
    assert meta["color"] == "gray" and meta["layout"] == "NCHW"
    assert meta["mobilefer.kind"] == "classifier" and meta["mobilefer.outputs"] == "logits"
    assert meta["mobilefer.model"] == "MobileNetV2" and meta["mobilefer.version"]

    session = _session(path)
    rng = np.random.default_rng(0)
    for x in (rng.standard_normal((3, 1, 48, 48)).astype(np.float32), real):  # dynamic batch: 3 and len(crops)
        (got,) = session.run(["logits"], {"input": x})
        (expected,) = _torch(clf.model, x)
        assert got.shape == (x.shape[0], 7)
        assert float(np.max(np.abs(got - expected))) <= TOL
    assert float(np.std(expected)) > 0.1  # a model whose outputs depend on the input


@pytest.mark.parametrize("arch", ["mobilenet_v2", "mobilenet_v1"])
def test_bare_module_export(arch: str, tmp_path: Path) -> None:
    model = make_model(1, arch=arch, in_chans=3)
    path = tmp_path / f"{arch}.onnx"
    result = to_onnx(model, path, input_size=(64, 56))
    assert result.input_shape == (1, 3, 56, 64)
    onnx_model = _assert_self_contained(path)
    meta = _meta(onnx_model)
    assert "mobilefer.preset" not in meta and meta["mobilefer.kind"] == "classifier"
    x = np.random.default_rng(1).standard_normal((3, 3, 56, 64)).astype(np.float32)
    (got,) = _session(path).run(["logits"], {"input": x})
    (expected,) = _torch(model, x)
    assert float(np.max(np.abs(got - expected))) <= TOL
    assert float(np.std(expected)) > 0.1


def test_bare_module_with_preset_records_it(tmp_path: Path) -> None:
    preset = Preset("rgb64", (64, 64), "rgb", (123.675, 116.28, 103.53), (58.395, 57.12, 57.375), labels=tuple("abcdefg"))
    to_onnx(make_model(2, in_chans=3), tmp_path / "m.onnx", preset=preset)
    meta = _meta(onnx.load(str(tmp_path / "m.onnx")))
    assert Preset.from_json(meta["mobilefer.preset"]) == preset
    assert meta["color"] == "rgb" and json.loads(meta["std"]) == [58.395, 57.12, 57.375]


def test_static_batch_export(clf: ExpressionClassifier, tmp_path: Path) -> None:
    to_onnx(clf, tmp_path / "static.onnx", dynamic_batch=False)
    shape = _session(tmp_path / "static.onnx").get_inputs()[0].shape
    assert shape == [1, 1, 48, 48]


# ---------------------------------------------------------------------------------------- detectors
@pytest.mark.parametrize("variant", ["ultraface-rfb-320", "ultraface-slim-320"])
def test_detector_export(
    variant: str, request: pytest.FixtureRequest, photo: np.ndarray, tmp_path: Path
) -> None:
    weights = request.getfixturevalue("rfb_weights" if "rfb" in variant else "slim_weights")
    det = UltraFaceDetector(variant, weights=weights)
    real = det.preset.preprocess([photo])
    path = tmp_path / f"{variant}.onnx"
    result = to_onnx(det, path, verify_inputs=[real])
    assert result.kind == "detector" and result.output_names == ("scores", "boxes")
    assert result.input_shape == (1, 3, 240, 320) and result.max_abs_diff <= TOL

    model = _assert_self_contained(path)
    assert [o.name for o in model.graph.output] == ["scores", "boxes"]
    meta = _meta(model)
    assert meta["mobilefer.kind"] == "detector" and meta["mobilefer.model"] == variant
    assert Preset.from_json(meta["mobilefer.preset"]) == det.preset
    assert json.loads(meta["mean"]) == [127.0] * 3 and json.loads(meta["std"]) == [128.0] * 3
    assert meta["color"] == "rgb"
    priors = json.loads(meta["mobilefer.ultraface"])
    assert priors["min_boxes"] == [list(m) for m in ULTRAFACE.min_boxes]
    assert priors["strides"] == list(ULTRAFACE.strides)
    assert (priors["center_variance"], priors["size_variance"]) == (0.1, 0.2)
    assert priors["num_priors"] == 4420 and priors["clamp_priors"] is True
    assert (priors["score_threshold"], priors["iou_threshold"]) == (0.7, 0.3)

    session = _session(path)
    rng = np.random.default_rng(2)
    batch3 = np.concatenate([real, rng.standard_normal((2, 3, 240, 320)).astype(np.float32)])
    scores, boxes = session.run(["scores", "boxes"], {"input": batch3})
    assert scores.shape == (3, 4420, 2) and boxes.shape == (3, 4420, 4)
    t_scores, t_boxes = _torch(det.net, batch3)
    assert float(np.max(np.abs(scores - t_scores))) <= TOL
    assert float(np.max(np.abs(boxes - t_boxes))) <= TOL
    assert float(scores[0, :, 1].max()) > 0.9  # the photo's faces are there


def test_detector_network_at_another_input_size(rfb_weights: Path, tmp_path: Path) -> None:
    det = UltraFaceDetector("ultraface-rfb-320", weights=rfb_weights)
    to_onnx(det.net, tmp_path / "rfb160.onnx", input_size=(160, 120))
    meta = _meta(onnx.load(str(tmp_path / "rfb160.onnx")))
    priors = json.loads(meta["mobilefer.ultraface"])
    assert priors["num_priors"] == ULTRAFACE.num_priors(160)
    scores, _ = _session(tmp_path / "rfb160.onnx").run(None, {"input": np.zeros((1, 3, 120, 160), np.float32)})
    assert scores.shape == (1, priors["num_priors"], 2)
    with pytest.raises(InvalidInputError):
        to_onnx(det, tmp_path / "bad.onnx", input_size=(300, 200))


# ---------------------------------------------------------------------------------------- files
def test_existing_file_needs_force(clf: ExpressionClassifier, tmp_path: Path) -> None:
    path = tmp_path / "fer.onnx"
    path.write_bytes(b"precious")
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    with pytest.raises(OutputExistsError) as info:
        to_onnx(clf, path)
    assert isinstance(info.value, FileExistsError)
    assert path.read_bytes() == b"precious" and path.stat().st_mtime_ns == 1_000_000_000
    to_onnx(clf, path, force=True)
    onnx.checker.check_model(onnx.load(str(path)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fer.onnx"]


class _DiffersWhenTraced(nn.Module):
    """Adds 1 to its output only while being exported, so onnxruntime and torch disagree."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x).mean(dim=(2, 3))
        if torch.onnx.is_in_onnx_export():
            y = y + 1.0
        return y


def test_verification_failure_raises_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "bad.onnx"
    with pytest.raises(ExportVerificationError, match="differs"):
        to_onnx(_DiffersWhenTraced(), path, input_size=16)
    assert list(tmp_path.iterdir()) == []
    path.write_bytes(b"old")
    with pytest.raises(ExportVerificationError):
        to_onnx(_DiffersWhenTraced(), path, input_size=16, force=True)
    assert path.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["bad.onnx"]


def test_zero_tolerance_is_enforced(tmp_path: Path) -> None:
    # A tolerance below the float32 rounding noise of a real network must fail verification.
    model = make_model(5, in_chans=3)
    with pytest.raises(ExportVerificationError):
        to_onnx(model, tmp_path / "m.onnx", input_size=48, tolerance=0.0)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("model", "kwargs"),
    [
        ("not a model", {}),
        (None, {}),
        ("module", {"opset": 12}),
        ("module", {"opset": 99}),
        ("module", {"input_size": 4}),
        ("module", {"input_size": (48, 48, 3)}),
        ("module", {"input_size": "48"}),
    ],
)
def test_invalid_arguments(model: object, kwargs: dict[str, object], tmp_path: Path) -> None:
    target = make_model(0) if model == "module" else model
    with pytest.raises(InvalidInputError):
        to_onnx(target, tmp_path / "x.onnx", **kwargs)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_bad_output_paths(clf: ExpressionClassifier, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="does not exist"):
        to_onnx(clf, tmp_path / "missing-folder" / "x.onnx")
    with pytest.raises(InvalidInputError, match="directory"):
        to_onnx(clf, tmp_path, force=True)


def test_untraceable_module_raises_export_error(tmp_path: Path) -> None:
    class Untraceable(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(x.numpy().copy())  # leaves the graph

    with pytest.raises(ExportError, match="do not depend on the input"):
        to_onnx(Untraceable(), tmp_path / "u.onnx", input_size=16)
    assert list(tmp_path.iterdir()) == []


def test_static_batch_rejects_batched_verify_inputs(clf: ExpressionClassifier, tmp_path: Path) -> None:
    x = np.zeros((3, 1, 48, 48), np.float32)
    with pytest.raises(ExportVerificationError, match="cannot run"):
        to_onnx(clf, tmp_path / "s.onnx", dynamic_batch=False, verify_inputs=[x])
    assert list(tmp_path.iterdir()) == []
