"""The Android bundle: manifest generated from the Pipeline's presets, replay from the manifest alone
reproduces ``Pipeline.predict`` (torch backend), the bundle's TNN files reproduce its ONNX files, and
the writing rules (no overwrite without force, typed errors, nothing written on failure)."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

import mobilefer
from _core_helpers import GRAY48, SPEC, isolated_home, make_model, read_bgr
from conftest import REPO_ROOT, shared_file
from mobilefer import Pipeline
from mobilefer.checkpoint import save_classifier
from mobilefer.classify import FER2013_LABELS, ExpressionClassifier
from mobilefer.classify.classifier import DEFAULT_CLASSIFIER
from mobilefer.detect.ultraface import ULTRAFACE
from mobilefer.errors import (
    ChecksumMismatchError,
    InvalidInputError,
    ModelFormatError,
    NoShippedModelError,
    OutputExistsError,
    WeightsNotFoundError,
)
from mobilefer.export import Bundle, BundleRunner, android_bundle
from mobilefer.export.bundle import (
    GRAY_WEIGHTS,
    MANIFEST_NAME,
    SCHEMA,
    SCHEMA_VERSION,
    ULTRAFACE_LICENSE,
    _gray,
    _priors_from_manifest,
    bundle_file_names,
    read_manifest,
)
from mobilefer.export.tnn import read_tnn
from mobilefer.preset import CropRule, Preset
from mobilefer.video import DEFAULT_SMOOTHING
from mobilefer.weights import list_records

LOG = logging.getLogger(__name__)

BOX_ATOL = 1e-3  # pixels
PROB_ATOL = 1e-4
TNN_ATOL = 1e-4

#: The test classifier's preset: distinct crop rules per detector, so the manifest must pick the right one.
PRESET: Preset = GRAY48.with_crop_rule("ultraface-rfb-320", CropRule(margin=0.1, shift_y=0.05)).with_crop_rule(
    "ultraface-slim-320", CropRule(margin=0.2, square=False, border="constant")
)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random MobileNetV2 w=0.35, gray 48 px, saved like ``mobilefer train`` does."""
    path = tmp_path_factory.mktemp("ckpt") / "fer-test.safetensors"
    save_classifier(path, make_model(3), SPEC, PRESET)
    return path


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, checkpoint: Path, rfb_weights: Path) -> Bundle:
    return android_bundle(tmp_path_factory.mktemp("bundle") / "out", classifier=checkpoint, detector_weights=rfb_weights)


def _manifest(bundle: Bundle) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(bundle.manifest.read_text(encoding="utf-8"))
    return data


def _compare(actual: list[Any], expected: list[Any], where: str) -> tuple[float, float]:
    """Same faces, labels; boxes / probabilities within tolerance. Returns the max box and prob diffs."""
    assert len(actual) == len(expected), f"{where}: {len(actual)} faces from the bundle, {len(expected)} from Pipeline"
    box_diff = prob_diff = 0.0
    for a, e in zip(actual, expected, strict=True):
        assert a.label == e.label, where
        assert list(a.probs) == list(e.probs) == list(FER2013_LABELS)
        box_diff = max(box_diff, float(np.max(np.abs(np.subtract(a.box, e.box)))))
        prob_diff = max(prob_diff, max(abs(a.probs[k] - e.probs[k]) for k in a.probs))
        assert abs(a.score - e.score) <= PROB_ATOL, where
    assert box_diff <= BOX_ATOL, f"{where}: boxes differ by {box_diff:.3g} px"
    assert prob_diff <= PROB_ATOL, f"{where}: probabilities differ by {prob_diff:.3g}"
    return box_diff, prob_diff


# ----------------------------------------------------------------------------- manifest


@pytest.mark.realdata
def test_bundle_writes_every_file_and_records_its_hash(bundle: Bundle) -> None:
    names = [p.name for p in bundle.files]
    assert names == list(bundle_file_names())
    assert names[-1] == MANIFEST_NAME and bundle.manifest == bundle.out_dir / MANIFEST_NAME
    assert sorted(p.name for p in bundle.out_dir.iterdir()) == sorted(names)  # no temp files left
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in bundle.files)  # shareable, not mkstemp's 0600
    manifest = _manifest(bundle)
    assert manifest["schema"] == SCHEMA and manifest["schema_version"] == SCHEMA_VERSION == 1
    assert manifest["mobilefer_version"] == mobilefer.__version__
    assert set(manifest["files_sha256"]) == set(names) - {MANIFEST_NAME}
    for name, digest in manifest["files_sha256"].items():
        assert hashlib.sha256((bundle.out_dir / name).read_bytes()).hexdigest() == digest, name
    assert read_manifest(bundle.out_dir) == manifest
    assert set(bundle.max_diffs) == {"detector.onnx", "detector.tnn", "classifier.onnx", "classifier.tnn"}
    assert all(0.0 <= v <= 1e-4 for v in bundle.max_diffs.values())


@pytest.mark.realdata
def test_manifest_values_come_from_the_pipeline_presets(bundle: Bundle, checkpoint: Path) -> None:
    manifest = _manifest(bundle)
    clf = ExpressionClassifier.from_checkpoint(checkpoint)
    pipeline = Pipeline("ultraface-rfb-320", classifier=clf, backend="torch",
                        detector_weights=shared_file("weights/ultraface/version-RFB-320.pth"))
    for entry, preset in ((manifest["classifier"], clf.preset), (manifest["detector"], pipeline.detector.preset)):
        assert entry["input"] == {
            "name": "input", "width": preset.width, "height": preset.height, "channels": preset.channels,
            "color": preset.color, "layout": "NCHW", "mean": list(preset.mean), "std": list(preset.std),
            "scale": list(preset.scale), "bias": list(preset.bias), "interpolation": preset.interpolation,
        }
    assert manifest["detector"]["input"]["scale"] == [1 / 128] * 3
    assert manifest["detector"]["input"]["bias"] == [-127 / 128] * 3
    assert manifest["classifier"]["input"]["scale"] == [1 / 127.5] and manifest["classifier"]["input"]["bias"] == [-1.0]
    crop = dict(manifest["classifier"]["crop"])
    crop.pop("rule")
    assert crop == asdict(clf.preset.crop_rule("ultraface-rfb-320")) == asdict(CropRule(margin=0.1, shift_y=0.05))
    assert crop != asdict(clf.preset.crop_rule("default"))
    assert manifest["classifier"]["labels"] == list(clf.labels) == list(FER2013_LABELS)
    assert manifest["classifier"]["name"] == "fer-test" and manifest["classifier"]["tta"] is False
    assert manifest["classifier"]["outputs"] == {"logits": "logits"}
    det = manifest["detector"]
    assert det["name"] == pipeline.detector.name == "ultraface-rfb-320" and det["kind"] == "ultraface"
    assert det["outputs"] == {"scores": "scores", "boxes": "boxes"}
    assert det["priors"]["min_boxes"] == [list(m) for m in ULTRAFACE.min_boxes]
    assert det["priors"]["strides"] == list(ULTRAFACE.strides)
    assert det["priors"]["feature_maps"] == [[40, 30], [20, 15], [10, 8], [5, 4]]
    assert det["priors"]["num_priors"] == ULTRAFACE.num_priors(320) == 4420
    assert (det["priors"]["center_variance"], det["priors"]["size_variance"], det["priors"]["clamp"]) == (
        ULTRAFACE.center_variance, ULTRAFACE.size_variance, ULTRAFACE.clamp_priors)
    post = det["postprocess"]
    assert (post["score_threshold"], post["iou_threshold"], post["candidate_size"], post["top_k"]) == (
        ULTRAFACE.score_threshold, ULTRAFACE.iou_threshold, ULTRAFACE.candidate_size, ULTRAFACE.top_k)
    assert manifest["smoothing"] == asdict(DEFAULT_SMOOTHING)
    assert manifest["gray_weights"] == dict(GRAY_WEIGHTS)
    assert manifest["tnn"]["weights"] == "float32"
    # Priors generated from the manifest settings alone are exactly the detector's.
    priors = _priors_from_manifest(det["priors"], 320, 240)
    assert priors.dtype == np.float32 and np.array_equal(priors, pipeline.detector.priors.numpy())  # type: ignore[attr-defined]


@pytest.mark.realdata
def test_model_files_have_the_manifest_tensor_names_and_shapes(bundle: Bundle) -> None:
    manifest = _manifest(bundle)
    for key, shape in (("detector", [1, 3, 240, 320]), ("classifier", [1, 1, 48, 48])):
        entry = manifest[key]
        model = onnx.load(str(bundle.out_dir / entry["files"]["onnx"]))
        (inp,) = model.graph.input
        assert inp.name == entry["input"]["name"]
        assert [d.dim_value for d in inp.type.tensor_type.shape.dim] == shape
        assert [o.name for o in model.graph.output] == list(entry["outputs"].values())
        tnn = read_tnn((bundle.out_dir / entry["files"]["tnnproto"], bundle.out_dir / entry["files"]["tnnmodel"]))
        assert tnn.input_names == (entry["input"]["name"],) and list(tnn.inputs[0].shape) == shape
        assert set(tnn.outputs) == set(entry["outputs"].values())
        assert all(b.dtype == np.float32 for r in tnn.resources.values() for b in r.buffers)


@pytest.mark.realdata
def test_licence_files(bundle: Bundle) -> None:
    text = (bundle.out_dir / "LICENSE-ultraface.txt").read_bytes()
    assert text == ULTRAFACE_LICENSE.encode() == shared_file("weights/ultraface/LICENSE").read_bytes()
    assert b"Copyright (c) 2019 linzai" in text
    notice = (bundle.out_dir / "NOTICE-classifier.txt").read_text(encoding="utf-8")
    assert "FER2013" in notice and "research" in notice
    manifest = _manifest(bundle)
    assert "LICENSE-ultraface.txt" in manifest["detector"]["license"] and "MIT" in manifest["detector"]["license"]
    assert "NOTICE-classifier.txt" in manifest["classifier"]["license"]


def _key_tree(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _key_tree(v) for k, v in value.items()}
    return type(value).__name__ if not isinstance(value, (int, float)) or isinstance(value, bool) else "number"


@pytest.mark.realdata
def test_docs_manifest_reference_matches_the_written_manifest(bundle: Bundle) -> None:
    """docs/export.md shows a complete manifest; its keys and value types must be the real ones."""
    doc = (REPO_ROOT / "docs" / "export.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```json\n(.*?)```", doc, flags=re.S)
    assert blocks, "docs/export.md has no ```json block"
    documented = json.loads(blocks[0])
    actual = _manifest(bundle)
    documented["files_sha256"] = actual["files_sha256"] = {}
    tree_doc, tree_actual = _key_tree(documented), _key_tree(actual)
    tree_doc["detector"]["postprocess"]["top_k"] = tree_actual["detector"]["postprocess"]["top_k"]  # null or int
    assert tree_doc == tree_actual


def test_gray_weights_equal_opencv_on_every_colour() -> None:
    import cv2

    values = np.arange(256, dtype=np.uint8)
    for blue in range(0, 256, 16):
        b, g, r = np.meshgrid(values[blue : blue + 16], values, values, indexing="ij")
        image = np.stack([b, g, r], axis=-1).reshape(16 * 256, 256, 3)
        assert np.array_equal(_gray(image, GRAY_WEIGHTS), cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
        bgra = np.concatenate([image, np.full(image.shape[:2] + (1,), 7, np.uint8)], axis=2)
        assert np.array_equal(_gray(bgra, GRAY_WEIGHTS), cv2.cvtColor(bgra, cv2.COLOR_BGRA2GRAY))


# ----------------------------------------------------------------------------- replay


@pytest.mark.realdata
def test_replay_from_the_manifest_reproduces_pipeline_predict(
    bundle: Bundle, checkpoint: Path, rfb_weights: Path, shared_images: list[Path]
) -> None:
    runner = BundleRunner(bundle.out_dir)
    pipeline = Pipeline("ultraface-rfb-320", classifier=checkpoint, backend="torch", detector_weights=rfb_weights)
    faces = 0
    worst_box = worst_prob = 0.0
    for path in shared_images:
        image = read_bgr(path)
        expected = pipeline.predict(image)
        box_diff, prob_diff = _compare(runner.predict(image), expected, path.name)
        worst_box, worst_prob = max(worst_box, box_diff), max(worst_prob, prob_diff)
        faces += len(expected)
    assert faces >= 20, f"only {faces} faces on the shared photos: the comparison would be too weak"
    LOG.info(f"bundle replay vs Pipeline: {faces} faces, max box diff {worst_box:.2e} px, max prob diff {worst_prob:.2e}")


@pytest.mark.realdata
def test_bundle_tnn_files_match_its_onnx_files(bundle: Bundle, shared_images: list[Path]) -> None:
    ort_runner = BundleRunner(bundle.out_dir)
    tnn_runner = BundleRunner(bundle.out_dir, engine="tnn")
    image = read_bgr(shared_images[1])
    x = ort_runner.detector_input(image)
    assert x.shape == (1, 3, 240, 320)
    (s_ort, b_ort), (s_tnn, b_tnn) = ort_runner.run_detector(x), tnn_runner.run_detector(x)
    assert s_ort.shape == s_tnn.shape == (4420, 2) and b_ort.shape == b_tnn.shape == (4420, 4)
    det_diff = max(float(np.max(np.abs(s_ort - s_tnn))), float(np.max(np.abs(b_ort - b_tnn))))
    assert det_diff <= TNN_ATOL
    detections = ort_runner.detect(image)
    assert len(detections) >= 2
    clf_diff = 0.0
    for d in detections:
        c = ort_runner.classifier_input(ort_runner.crop(image, d.box))
        assert c.shape == (1, 1, 48, 48)
        clf_diff = max(clf_diff, float(np.max(np.abs(ort_runner.run_classifier(c) - tnn_runner.run_classifier(c)))))
    assert clf_diff <= TNN_ATOL
    expected = ort_runner.predict(image)
    actual = tnn_runner.predict(image)
    assert [a.label for a in actual] == [e.label for e in expected]
    assert max(float(np.max(np.abs(np.subtract(a.box, e.box)))) for a, e in zip(actual, expected, strict=True)) <= BOX_ATOL
    LOG.info(f"TNN executor vs onnxruntime: detector {det_diff:.2e}, classifier logits {clf_diff:.2e}")


@pytest.mark.realdata
def test_slim_bundle_with_tta_classifier_object_reproduces_pipeline(
    tmp_path: Path, checkpoint: Path, shared_images: list[Path]
) -> None:
    slim = shared_file("weights/ultraface/version-slim-320.pth")
    clf = ExpressionClassifier.from_checkpoint(checkpoint, tta=True)
    bundle = android_bundle(tmp_path / "slim", classifier=clf, detector="ultraface-slim-320", detector_weights=slim)
    manifest = _manifest(bundle)
    assert manifest["detector"]["name"] == bundle.detector == "ultraface-slim-320"
    assert manifest["classifier"]["tta"] is True
    crop = dict(manifest["classifier"]["crop"])
    crop.pop("rule")
    assert crop == asdict(CropRule(margin=0.2, square=False, border="constant"))
    runner = BundleRunner(bundle.out_dir)
    pipeline = Pipeline("ultraface-slim-320", classifier=clf, backend="torch", detector_weights=slim)
    faces = 0
    for path in shared_images[:3]:
        image = read_bgr(path)
        expected = pipeline.predict(image)
        _compare(runner.predict(image), expected, path.name)
        faces += len(expected)
    assert faces >= 5


# ----------------------------------------------------------------------------- writing rules and errors


@pytest.mark.realdata
def test_existing_bundle_is_not_overwritten(bundle: Bundle, checkpoint: Path, rfb_weights: Path) -> None:
    before = {p.name: p.read_bytes() for p in bundle.files}
    with pytest.raises(OutputExistsError, match="force"):
        android_bundle(bundle.out_dir, classifier=checkpoint, detector_weights=rfb_weights)
    assert {p.name: p.read_bytes() for p in bundle.files} == before


def test_one_existing_target_blocks_every_write(tmp_path: Path, checkpoint: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "classifier.onnx").write_bytes(b"mine")
    with pytest.raises(OutputExistsError, match="classifier.onnx"):
        android_bundle(out, classifier=checkpoint, detector_weights=tmp_path / "missing.pth")
    assert [p.name for p in out.iterdir()] == ["classifier.onnx"]
    assert (out / "classifier.onnx").read_bytes() == b"mine"


@pytest.mark.realdata
def test_force_replaces_a_stale_bundle_with_half_weights(tmp_path: Path, checkpoint: Path, rfb_weights: Path,
                                                         bundle: Bundle, shared_images: list[Path]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / MANIFEST_NAME).write_text("{}")
    (out / "detector.tnnmodel").write_bytes(b"stale")
    (out / "keep.txt").write_text("not ours")
    half = android_bundle(out, classifier=checkpoint, detector_weights=rfb_weights, half=True, force=True)
    assert half.half and (out / "keep.txt").read_text() == "not ours"
    manifest = read_manifest(out)
    assert manifest["tnn"]["weights"] == "float16"
    for stem in ("detector", "classifier"):
        # The ONNX files stay float32 (byte-identical to the fp32 bundle); the TNN weights are half as big.
        assert (out / f"{stem}.onnx").read_bytes() == (bundle.out_dir / f"{stem}.onnx").read_bytes()
        size_half = (out / f"{stem}.tnnmodel").stat().st_size
        assert size_half < 0.55 * (bundle.out_dir / f"{stem}.tnnmodel").stat().st_size
        tnn = read_tnn(out / stem)
        assert any(b.dtype == np.float16 for r in tnn.resources.values() for b in r.buffers)
    ort_runner, tnn_runner = BundleRunner(out), BundleRunner(out, engine="tnn")
    image = read_bgr(shared_images[1])
    x = ort_runner.detector_input(image)
    (s_ort, b_ort), (s_tnn, b_tnn) = ort_runner.run_detector(x), tnn_runner.run_detector(x)
    assert 0 < float(np.max(np.abs(s_ort - s_tnn))) < 1e-2  # float16 weights: close, not identical
    assert float(np.max(np.abs(b_ort - b_tnn))) < 0.1


def test_haar_and_unknown_detectors_are_refused(tmp_path: Path, checkpoint: Path) -> None:
    with pytest.raises(InvalidInputError, match="Haar cascade detector cannot be bundled"):
        android_bundle(tmp_path / "a", classifier=checkpoint, detector="haar")
    with pytest.raises(InvalidInputError, match="ultraface-rfb-320, ultraface-slim-320"):
        android_bundle(tmp_path / "b", classifier=checkpoint, detector="ultraface-rfb-640")
    with pytest.raises(InvalidInputError, match="classifier must be"):
        android_bundle(tmp_path / "c", classifier=42)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="does not exist"):
        android_bundle(tmp_path / "d", classifier=tmp_path / "nope.safetensors")
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidInputError, match="not a folder"):
        android_bundle(tmp_path / "file", classifier=checkpoint)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_missing_detector_weights_say_what_is_needed(tmp_path: Path, checkpoint: Path) -> None:
    with isolated_home(tmp_path / "home"):
        with pytest.raises(WeightsNotFoundError) as info:
            android_bundle(tmp_path / "out", classifier=checkpoint)
    message = str(info.value)
    assert "version-RFB-320.pth" in message and "--detector-weights" in message and "detector_weights=" in message
    assert not (tmp_path / "out").exists()


def test_default_classifier_is_the_shipped_model(tmp_path: Path) -> None:
    if DEFAULT_CLASSIFIER not in {r.name for r in list_records()}:
        with pytest.raises(NoShippedModelError, match="ships no default expression classifier"):
            android_bundle(tmp_path / "out")
        assert not (tmp_path / "out").exists()
        return
    rfb = shared_file("weights/ultraface/version-RFB-320.pth")
    bundle = android_bundle(tmp_path / "out", detector_weights=rfb)
    manifest = read_manifest(bundle.out_dir)
    assert bundle.classifier == manifest["classifier"]["name"] == DEFAULT_CLASSIFIER
    assert manifest["classifier"]["input"]["width"] == ExpressionClassifier.default().preset.width
    assert "FER2013" in (bundle.out_dir / "NOTICE-classifier.txt").read_text(encoding="utf-8")


@pytest.mark.realdata
def test_runner_refuses_damaged_or_foreign_bundles(bundle: Bundle, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(bundle.out_dir, copy)
    data = bytearray((copy / "classifier.tnnmodel").read_bytes())
    data[len(data) // 2] ^= 0x01
    (copy / "classifier.tnnmodel").write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatchError, match="classifier.tnnmodel"):
        BundleRunner(copy)
    (copy / "classifier.tnnmodel").unlink()
    with pytest.raises(ChecksumMismatchError, match="missing"):
        BundleRunner(copy)
    manifest = _manifest(bundle)
    manifest["detector"]["files"]["onnx"] = "../detector.onnx"
    (copy / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(ModelFormatError, match="bare file name"):
        BundleRunner(copy, verify=False)
    manifest = _manifest(bundle)
    manifest["schema_version"] = 2
    (copy / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(ModelFormatError, match="schema_version"):
        BundleRunner(copy, verify=False)
    (copy / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(ModelFormatError, match="not valid JSON"):
        read_manifest(copy)
    with pytest.raises(InvalidInputError, match="does not exist"):
        BundleRunner(tmp_path / "nothing")
    with pytest.raises(InvalidInputError, match="engine"):
        BundleRunner(bundle.out_dir, engine="tflite")  # type: ignore[arg-type]


def test_failed_move_rolls_the_whole_bundle_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mobilefer.export import bundle as bundle_module

    out = tmp_path / "out"
    out.mkdir()
    (out / "a.bin").write_bytes(b"old a")
    (out / "b.bin").write_bytes(b"old b")
    real_replace = bundle_module.os.replace
    calls: list[str] = []

    def flaky_replace(src: str, dst: object) -> None:
        calls.append(str(dst))
        if str(dst).endswith("c.bin"):
            raise OSError("disk full")
        real_replace(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(bundle_module.os, "replace", flaky_replace)
    with pytest.raises(OSError, match="disk full"):
        bundle_module._write_all(out, [("a.bin", b"new a"), ("b.bin", b"new b"), ("c.bin", b"new c")])
    monkeypatch.undo()
    assert sorted(p.name for p in out.iterdir()) == ["a.bin", "b.bin"]  # no temp or backup files left
    assert (out / "a.bin").read_bytes() == b"old a" and (out / "b.bin").read_bytes() == b"old b"
    assert any(c.endswith("c.bin") for c in calls)
    written = bundle_module._write_all(out, [("a.bin", b"new a"), ("c.bin", b"new c")])
    assert [p.name for p in written] == ["a.bin", "c.bin"] and (out / "a.bin").read_bytes() == b"new a"
