"""``mobilefer export``: the Android bundle and single-model ONNX / TNN exports through the CLI, with
their outputs checked numerically against torch, and the exit codes and messages of failures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from _core_helpers import GRAY48, SPEC, isolated_home, make_model, read_bgr
from conftest import shared_file
from mobilefer.checkpoint import save_classifier
from mobilefer.classify import ExpressionClassifier
from mobilefer.classify.classifier import DEFAULT_CLASSIFIER
from mobilefer.cli import main
from mobilefer.detect.ultraface import load_ultraface_net
from mobilefer.export.bundle import bundle_file_names, read_manifest
from mobilefer.export.tnn import read_tnn, run_tnn
from mobilefer.weights import ULTRAFACE_PRESET, list_records

ATOL = 1e-4


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "fer-cli.safetensors"
    save_classifier(path, make_model(5), SPEC, GRAY48)
    return path


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["export", *args])
    return code, capsys.readouterr().err


def _ort(path: Path, x: np.ndarray, outputs: list[str]) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return [np.asarray(o) for o in session.run(outputs, {"input": x})]


def _torch_logits(checkpoint: Path, x: np.ndarray) -> np.ndarray:
    model = ExpressionClassifier.from_checkpoint(checkpoint).model
    with torch.inference_mode():
        return model(torch.from_numpy(x)).numpy()


# ----------------------------------------------------------------------------- android


@pytest.mark.realdata
def test_android_bundle_then_force_half(tmp_path: Path, checkpoint: Path, rfb_weights: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bundle"
    base = ["--format", "android", str(out), "--classifier", str(checkpoint), "--detector-weights", str(rfb_weights)]
    code, err = _run(base, capsys)
    assert code == 0, err
    for name in bundle_file_names():
        assert name in err
    assert "verification" in err and "max |TNN - onnxruntime|" in err
    manifest = read_manifest(out)
    assert manifest["detector"]["name"] == "ultraface-rfb-320" and manifest["tnn"]["weights"] == "float32"
    for name, digest in manifest["files_sha256"].items():
        assert f"sha256 {digest[:16]}" in err, name  # the printed hashes are the files' hashes
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    code, err = _run(base, capsys)
    assert code == 1 and "exist" in err and "--force" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before

    code, err = _run([*base, "--force", "--half"], capsys)
    assert code == 0, err
    assert read_manifest(out)["tnn"]["weights"] == "float16"
    assert (out / "detector.tnnmodel").stat().st_size < 0.55 * len(before["detector.tnnmodel"])
    assert (out / "detector.onnx").read_bytes() == before["detector.onnx"]


def test_android_without_weights_names_the_file(tmp_path: Path, checkpoint: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    with isolated_home(tmp_path / "home"):
        code, err = _run(["--format", "android", str(tmp_path / "out"), "--classifier", str(checkpoint)], capsys)
    assert code == 1
    assert "version-RFB-320.pth" in err and "--detector-weights" in err
    assert not (tmp_path / "out").exists()


def test_android_usage_errors(tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "out")
    code, err = _run(["--format", "android", out, "--classifier", str(checkpoint), "--detector", "haar"], capsys)
    assert code == 1 and "Haar cascade detector cannot be bundled" in err
    code, err = _run(["--format", "android", out, "extra"], capsys)
    assert code == 2 and "one argument" in err
    code, err = _run(["--format", "android", out, "--input-size", "64"], capsys)
    assert code == 2 and "--input-size" in err
    with pytest.raises(SystemExit) as info:
        main(["export", out])  # --format is required
    assert info.value.code == 2
    assert not (tmp_path / "out").exists()


def test_default_classifier(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(["--format", "onnx", "default", str(tmp_path / "fer")], capsys)
    if DEFAULT_CLASSIFIER not in {r.name for r in list_records()}:
        assert code == 1 and "ships no default expression classifier" in err
        assert not (tmp_path / "fer.onnx").exists()
    else:
        assert code == 0 and (tmp_path / "fer.onnx").is_file()


# ----------------------------------------------------------------------------- single models


def test_onnx_classifier(tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(["--format", "onnx", str(checkpoint), str(tmp_path / "sub" / "fer")], capsys)
    path = tmp_path / "sub" / "fer.onnx"
    assert code == 0, err
    assert f"wrote {path}" in err and "max |onnxruntime - torch|" in err
    x = np.random.default_rng(0).uniform(-1, 1, (3, 1, 48, 48)).astype(np.float32)  # dynamic batch
    (logits,) = _ort(path, x, ["logits"])
    assert np.max(np.abs(logits - _torch_logits(checkpoint, x))) <= ATOL

    # A prefix ending in .onnx is used as is; --input-size changes the input; existing files are kept.
    named = tmp_path / "fer64.onnx"
    code, err = _run(["--format", "onnx", str(checkpoint), str(named), "--input-size", "64"], capsys)
    assert code == 0, err
    dims = onnx.load(str(named)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims][1:] == [1, 64, 64]
    stamp = named.read_bytes()
    code, err = _run(["--format", "onnx", str(checkpoint), str(named)], capsys)
    assert code == 1 and "exists" in err and named.read_bytes() == stamp


def test_onnx_half_weights(tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["--format", "onnx", str(checkpoint), str(tmp_path / "fp32")], capsys)[0] == 0
    code, err = _run(["--format", "onnx", str(checkpoint), str(tmp_path / "fp16"), "--half"], capsys)
    assert code == 0, err
    assert "float16 weights" in err and "rounded weights" in err
    fp32, fp16 = tmp_path / "fp32.onnx", tmp_path / "fp16.onnx"
    assert fp16.stat().st_size < 0.55 * fp32.stat().st_size
    model = onnx.load(str(fp16))
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    x = np.random.default_rng(1).uniform(-1, 1, (2, 1, 48, 48)).astype(np.float32)
    (half,), (full,) = _ort(fp16, x, ["logits"]), _ort(fp32, x, ["logits"])
    assert 0 < float(np.max(np.abs(half - full))) < 0.1


def test_tnn_classifier(tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(["--format", "tnn", str(checkpoint), str(tmp_path / "fer")], capsys)
    assert code == 0, err
    assert "fer.tnnproto" in err and "fer.tnnmodel" in err and "max |TNN executor - onnxruntime|" in err
    assert all((tmp_path / f"fer.{ext}").stat().st_mode & 0o777 == 0o644 for ext in ("tnnproto", "tnnmodel"))
    model = read_tnn(tmp_path / "fer")
    x = np.random.default_rng(2).uniform(-1, 1, (1, 1, 48, 48)).astype(np.float32)
    logits = run_tnn(model, {"input": x})["logits"]
    assert np.max(np.abs(logits - _torch_logits(checkpoint, x))) <= ATOL


@pytest.mark.realdata
def test_tnn_and_onnx_detectors(tmp_path: Path, rfb_weights: Path, shared_images: list[Path],
                                capsys: pytest.CaptureFixture[str]) -> None:
    slim = shared_file("weights/ultraface/version-slim-320.pth")
    code, err = _run(["--format", "tnn", "ultraface-slim-320", str(tmp_path / "slim"), "--detector-weights", str(slim)],
                     capsys)
    assert code == 0, err
    x = ULTRAFACE_PRESET.preprocess([read_bgr(shared_images[0])])
    with torch.inference_mode():
        scores, boxes = (t.numpy() for t in load_ultraface_net("slim", slim)(torch.from_numpy(x)))
    out = run_tnn(read_tnn(tmp_path / "slim"), {"input": x})
    assert np.max(np.abs(out["scores"] - scores)) <= ATOL and np.max(np.abs(out["boxes"] - boxes)) <= ATOL

    code, err = _run(["--format", "onnx", "ultraface-rfb-320", str(tmp_path / "rfb160"), "--input-size", "160",
                      "--detector-weights", str(rfb_weights)], capsys)
    assert code == 0, err
    model = onnx.load(str(tmp_path / "rfb160.onnx"))
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim][1:] == [3, 120, 160]
    assert [o.name for o in model.graph.output] == ["scores", "boxes"]


def test_single_model_usage_errors(tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prefix = str(tmp_path / "m")
    cases = [
        (["--format", "onnx", str(checkpoint)], "two arguments"),
        (["--format", "tnn", str(checkpoint), prefix, "--classifier", str(checkpoint)], "--classifier"),
        (["--format", "onnx", str(tmp_path / "missing.safetensors"), prefix], "not an existing classifier checkpoint"),
        (["--format", "onnx", "haar", prefix], "cannot be exported"),
        (["--format", "tnn", str(checkpoint), prefix, "--detector-weights", str(checkpoint)], "detector models"),
    ]
    other = tmp_path / "model.pt"
    other.write_bytes(b"x")
    cases.append((["--format", "onnx", str(other), prefix], ".safetensors"))
    for args, needle in cases:
        code, err = _run(args, capsys)
        assert code == 2, (args, err)
        assert needle in err, (args, err)
    code, err = _run(["--format", "onnx", "ultraface-rfb-320", prefix, "--input-size", "300",
                      "--detector-weights", str(tmp_path / "none.pth")], capsys)
    assert code == 1 and "none.pth" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]

