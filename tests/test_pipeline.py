"""Pipeline: backend parity on real photos, result structure, input validation, auto detector, drawing."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import mobilefer
from _core_helpers import GRAY48, SPEC, isolated_home, make_classifier, read_bgr
from mobilefer.checkpoint import save_classifier
from mobilefer.classify import FER2013_LABELS, ExpressionClassifier
from mobilefer.detect import UltraFaceDetector, UltraFaceNet
from mobilefer.errors import InvalidImageError, InvalidInputError, WeightsNotFoundError
from mobilefer.pipeline import MAX_PIXELS, FaceResult, Pipeline, validate_frame

BOX_TOL = 1e-3  # pixels
PROB_TOL = 1e-4


@pytest.fixture(scope="module", autouse=True)
def _home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with isolated_home(tmp_path_factory.mktemp("mobilefer-home")) as home:
        yield home


@pytest.fixture(scope="module")
def clf() -> ExpressionClassifier:
    return make_classifier(0)


@pytest.fixture(scope="module")
def torch_pipe(clf: ExpressionClassifier, rfb_weights: Path) -> Pipeline:
    return Pipeline("ultraface-rfb-320", clf, backend="torch", detector_weights=rfb_weights)


@pytest.fixture(scope="module")
def ort_pipe(clf: ExpressionClassifier, rfb_weights: Path) -> Pipeline:
    return Pipeline("ultraface-rfb-320", clf, backend="onnxruntime", detector_weights=rfb_weights, threads=1)


@pytest.fixture(scope="module")
def photos(shared_images: list[Path]) -> dict[str, np.ndarray]:
    return {p.name: read_bgr(p) for p in shared_images}


@pytest.fixture(scope="module")
def torch_results(torch_pipe: Pipeline, photos: dict[str, np.ndarray]) -> dict[str, list[FaceResult]]:
    return {name: torch_pipe.predict(img) for name, img in photos.items()}


@pytest.fixture(scope="module")
def small_photo(photos: dict[str, np.ndarray]) -> np.ndarray:
    """A photo with a few faces (fewest faces > 1), for the cheaper checks."""
    import cv2

    image = photos["group_2.jpg"] if "group_2.jpg" in photos else next(iter(photos.values()))
    return cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA)


# ---------------------------------------------------------------------------------------- parity
def test_torch_and_onnxruntime_backends_agree_on_every_photo(
    ort_pipe: Pipeline,
    photos: dict[str, np.ndarray],
    torch_results: dict[str, list[FaceResult]],
    record_property: pytest.RecordProperty,
) -> None:
    assert ort_pipe.backend == "onnxruntime" and ort_pipe.classifier.backend == "onnxruntime"
    box_diff = prob_diff = score_diff = 0.0
    total = 0
    for name, image in photos.items():
        expected = torch_results[name]
        got = ort_pipe.predict(image)
        assert len(got) == len(expected), name
        assert expected, f"{name}: the detector finds no face (the photos all show people)"
        for e, g in zip(expected, got, strict=True):
            box_diff = max(box_diff, max(abs(a - b) for a, b in zip(e.box, g.box, strict=True)))
            score_diff = max(score_diff, abs(e.score - g.score))
            prob_diff = max(prob_diff, max(abs(e.probs[k] - g.probs[k]) for k in FER2013_LABELS))
            assert e.label == g.label, name
        total += len(expected)
    record_property("max_box_diff_px", box_diff)
    record_property("max_prob_diff", prob_diff)
    record_property("max_score_diff", score_diff)
    record_property("faces_compared", total)
    assert box_diff <= BOX_TOL and prob_diff <= PROB_TOL and score_diff <= PROB_TOL, (box_diff, prob_diff, score_diff)


def test_results_are_sorted_well_formed_faces(
    torch_pipe: Pipeline, photos: dict[str, np.ndarray], torch_results: dict[str, list[FaceResult]]
) -> None:
    labels_seen: set[str] = set()
    assert max(len(r) for r in torch_results.values()) > 1
    for name, results in torch_results.items():
        scores = [r.score for r in results]
        assert scores == sorted(scores, reverse=True), name
        h, w = photos[name].shape[:2]
        for r in results:
            assert isinstance(r, FaceResult)
            assert len(r.box) == 4 and all(isinstance(v, float) for v in r.box)
            x1, y1, x2, y2 = r.box
            assert x2 > x1 and y2 > y1 and x1 < w and y1 < h and x2 > 0 and y2 > 0
            assert 0.7 < r.score <= 1.0  # UltraFace keeps scores > 0.7
            assert tuple(r.probs) == FER2013_LABELS
            assert abs(sum(r.probs.values()) - 1.0) < 1e-5
            assert r.label == max(r.probs, key=lambda k: r.probs[k])
            assert r.track_id is None
            labels_seen.add(r.label)
    assert len(labels_seen) >= 2  # the random classifier's output depends on the face


def test_probabilities_are_the_classifier_on_the_preset_crop(
    torch_pipe: Pipeline, photos: dict[str, np.ndarray], torch_results: dict[str, list[FaceResult]]
) -> None:
    name = max(torch_results, key=lambda n: len(torch_results[n]))
    image, results = photos[name], torch_results[name][:5]
    clf = torch_pipe.classifier
    crops = [clf.crop(image, r.box, "ultraface-rfb-320") for r in results]
    expected = clf.predict_proba(crops)
    for r, p in zip(results, expected, strict=True):
        np.testing.assert_allclose([r.probs[k] for k in FER2013_LABELS], p, rtol=0, atol=1e-6)


def test_face_result_is_frozen_and_serialisable(torch_results: dict[str, list[FaceResult]]) -> None:
    r = next(r for results in torch_results.values() for r in results)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.label = "x"  # type: ignore[misc]
    d = json.loads(json.dumps(r.to_dict()))
    assert set(d) == {"box", "score", "label", "probs"}
    assert d["box"] == list(r.box) and d["label"] == r.label and d["probs"] == dict(r.probs)
    tracked = dataclasses.replace(r, track_id=4)
    assert tracked.to_dict()["track_id"] == 4


def test_predict_batch_equals_per_frame_predict(torch_pipe: Pipeline, small_photo: np.ndarray) -> None:
    import cv2

    frames = [small_photo, cv2.flip(small_photo, 1), np.zeros((40, 60, 3), np.uint8), small_photo[: small_photo.shape[0] // 2]]
    batch = torch_pipe.predict_batch(frames)
    assert len(batch) == len(frames)
    for frame, results in zip(frames, batch, strict=True):
        single = torch_pipe.predict(frame)
        assert [r.box for r in results] == [r.box for r in single]
        assert [r.label for r in results] == [r.label for r in single]
        for a, b in zip(results, single, strict=True):
            for k in FER2013_LABELS:
                assert abs(a.probs[k] - b.probs[k]) <= 1e-6
    assert batch[0] and batch[2] == []
    assert torch_pipe.predict_batch([]) == []
    assert torch_pipe.predict_batch(tuple(frames[:1]))[0] == batch[0]


def test_gray_and_bgra_frames_are_accepted(torch_pipe: Pipeline, small_photo: np.ndarray) -> None:
    import cv2

    bgr = small_photo
    bgra = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)
    bgra[:, :, 3] = 7  # alpha must be ignored
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    base = torch_pipe.predict(bgr)
    with_alpha = torch_pipe.predict(bgra)
    assert [r.box for r in with_alpha] == [r.box for r in base]
    assert [r.probs for r in with_alpha] == [r.probs for r in base]
    from_gray = torch_pipe.predict(gray)
    as_bgr = torch_pipe.predict(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))
    assert from_gray and len(from_gray) == len(as_bgr)
    for a, b in zip(from_gray, as_bgr, strict=True):
        assert max(abs(x - y) for x, y in zip(a.box, b.box, strict=True)) <= 1e-3
        assert a.label == b.label


def _huge_frame() -> np.ndarray:
    # 10000 x 10000 x 3 = 1e8 pixels > MAX_PIXELS, backed by 3 bytes of memory.
    return np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (10_000, 10_000, 3))


BAD_FRAMES = {
    "float32": np.zeros((32, 32, 3), np.float32),
    "float64-gray": np.zeros((32, 32), np.float64),
    "uint16": np.zeros((32, 32, 3), np.uint16),
    "int8": np.zeros((32, 32, 3), np.int8),
    "zero-channels": np.zeros((32, 32, 0), np.uint8),
    "one-channel": np.zeros((32, 32, 1), np.uint8),
    "two-channels": np.zeros((32, 32, 2), np.uint8),
    "five-channels": np.zeros((32, 32, 5), np.uint8),
    "1d": np.zeros(32, np.uint8),
    "4d": np.zeros((1, 32, 32, 3), np.uint8),
    "empty-height": np.zeros((0, 32, 3), np.uint8),
    "empty-width": np.zeros((32, 0), np.uint8),
    "none": None,
    "list": [[0, 0, 0]],
    "nested-list": np.zeros((4, 4, 3), np.uint8).tolist(),
    "string": "photo.jpg",
    "too-many-pixels": "HUGE",
}


@pytest.mark.parametrize("bad", list(BAD_FRAMES.values()), ids=list(BAD_FRAMES))
def test_invalid_frames_raise_invalid_image_error(torch_pipe: Pipeline, bad: object) -> None:
    frame = _huge_frame() if isinstance(bad, str) and bad == "HUGE" else bad
    with pytest.raises(InvalidImageError) as info:
        torch_pipe.predict(frame)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError) and isinstance(info.value, TypeError)
    with pytest.raises(InvalidImageError, match=r"frames\[1\]"):
        torch_pipe.predict_batch([np.zeros((8, 8, 3), np.uint8), frame])  # type: ignore[list-item]


def test_max_pixels_limit_message_and_boundary() -> None:
    with pytest.raises(InvalidImageError, match="over the limit"):
        validate_frame(_huge_frame())
    side = int(MAX_PIXELS**0.5)
    ok = np.broadcast_to(np.zeros((1, 1), np.uint8), (side, side))
    assert side * side <= MAX_PIXELS
    assert validate_frame(ok[:1, :1]).shape == (1, 1)
    # The check itself must not copy the frame (the broadcast array would need gigabytes).
    with pytest.raises(InvalidImageError):
        validate_frame(np.broadcast_to(np.zeros((1, 1), np.uint8), (side + 1, side + 1)))


def test_predict_batch_rejects_non_lists(torch_pipe: Pipeline, small_photo: np.ndarray) -> None:
    for bad in (small_photo, np.stack([small_photo, small_photo]), "frames", None, 3):
        with pytest.raises(InvalidImageError):
            torch_pipe.predict_batch(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 1), (1, 1, 4), (2, 300, 3), (300, 2)])
def test_tiny_frames_are_valid(torch_pipe: Pipeline, ort_pipe: Pipeline, shape: tuple[int, ...]) -> None:
    frame = np.full(shape, 128, np.uint8)
    assert torch_pipe.predict(frame) == []
    assert ort_pipe.predict(frame) == []


def test_read_only_inputs_are_never_modified(
    torch_pipe: Pipeline, ort_pipe: Pipeline, small_photo: np.ndarray
) -> None:
    import cv2

    frames = [small_photo.copy(), cv2.cvtColor(small_photo, cv2.COLOR_BGR2GRAY), cv2.cvtColor(small_photo, cv2.COLOR_BGR2BGRA)]
    originals = [f.copy() for f in frames]
    for f in frames:
        f.flags.writeable = False
    for pipe in (torch_pipe, ort_pipe):
        for f in frames:
            results = pipe.predict(f)
            assert results
            pipe.annotate(f, results)
        pipe.predict_batch(frames)
    for f, original in zip(frames, originals, strict=True):
        np.testing.assert_array_equal(f, original)


# ---------------------------------------------------------------------------------------- drawing
def test_annotate_draws_on_a_copy(torch_pipe: Pipeline, small_photo: np.ndarray) -> None:
    import cv2

    frame = small_photo.copy()
    results = torch_pipe.predict(frame)
    assert results
    drawn = torch_pipe.annotate(frame, results)
    np.testing.assert_array_equal(frame, small_photo)
    assert drawn.shape == frame.shape and drawn.dtype == np.uint8
    assert not np.shares_memory(drawn, frame)
    changed = np.any(drawn != frame, axis=2)
    for r in results:
        x1, y1, x2, y2 = (int(round(v)) for v in r.box)
        x1, x2 = max(x1, 0), min(x2, frame.shape[1] - 1)
        y1, y2 = max(y1, 0), min(y2, frame.shape[0] - 1)
        # The box outline: most pixels on the bottom edge and both side edges changed.
        assert changed[y2, x1:x2].mean() > 0.5
        assert changed[y1:y2, x1].mean() > 0.5 and changed[y1:y2, x2].mean() > 0.5
    # Far from every box nothing is drawn.
    mask = np.zeros(changed.shape, bool)
    for r in results:
        x1, y1, x2, y2 = (int(round(v)) for v in r.box)
        mask[max(y1 - 60, 0) : y2 + 10, max(x1 - 10, 0) : x2 + 200] = True
    assert not changed[~mask].any()
    assert np.array_equal(torch_pipe.annotate(frame, []), frame)
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    assert torch_pipe.annotate(gray, results).shape == frame.shape
    assert torch_pipe.annotate(cv2.cvtColor(frame, cv2.COLOR_BGR2BGRA), results).shape == frame.shape
    with pytest.raises(InvalidImageError):
        torch_pipe.annotate(frame.astype(np.float32), results)


# ---------------------------------------------------------------------------------------- construction
def test_auto_falls_back_to_haar_without_weights(
    clf: ExpressionClassifier, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("MOBILEFER_HOME", str(tmp_path / "empty-home"))
    monkeypatch.setenv("MOBILEFER_OFFLINE", "1")
    with caplog.at_level(logging.WARNING, logger="mobilefer.pipeline"):
        pipe = Pipeline("auto", clf, backend="torch")
    assert pipe.detector.name == "haar"
    assert any("falling back" in rec.getMessage() for rec in caplog.records)
    assert Pipeline(classifier=clf, backend="torch").detector.name == "haar"  # "auto" is the default
    # A named detector does not fall back: missing weights are an error.
    with pytest.raises(WeightsNotFoundError):
        Pipeline("ultraface-rfb-320", clf, backend="torch")


def test_auto_uses_ultraface_when_weights_resolve(
    clf: ExpressionClassifier, rfb_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    (home / "weights").mkdir(parents=True)
    shutil.copy(rfb_weights, home / "weights" / "version-RFB-320.pth")
    monkeypatch.setenv("MOBILEFER_HOME", str(home))
    monkeypatch.setenv("MOBILEFER_OFFLINE", "1")
    pipe = Pipeline("auto", clf, backend="torch")
    assert pipe.detector.name == "ultraface-rfb-320"
    assert pipe.detector.name != "auto"


def test_auto_with_explicit_weights_never_falls_back(
    clf: ExpressionClassifier, rfb_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOBILEFER_HOME", str(tmp_path / "empty-home"))
    assert Pipeline("auto", clf, backend="torch", detector_weights=rfb_weights).detector.name == "ultraface-rfb-320"
    with pytest.raises(WeightsNotFoundError):
        Pipeline("auto", clf, backend="torch", detector_weights=tmp_path / "typo.pth")


def test_haar_pipeline_detects_and_is_thread_safe(clf: ExpressionClassifier, small_photo: np.ndarray) -> None:
    pipe = Pipeline("haar", clf, backend="torch")
    assert pipe.detector.name == "haar"
    expected = pipe.predict(small_photo)
    assert expected and all(r.score == 1.0 for r in expected)
    got: list[list[FaceResult]] = []
    lock = threading.Lock()

    def work() -> None:
        out = pipe.predict(small_photo)
        with lock:
            got.append(out)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 3 and all(g == expected for g in got)


def test_ort_pipeline_keeps_the_detector_interface(ort_pipe: Pipeline, rfb_weights: Path) -> None:
    det = ort_pipe.detector
    assert isinstance(det, UltraFaceDetector) and det.name == "ultraface-rfb-320"
    assert isinstance(det.net, UltraFaceNet)
    assert det.priors.shape == (4420, 4)
    # Passing a detector object: the onnxruntime pipeline wraps a copy, the original stays on torch.
    original = UltraFaceDetector("ultraface-rfb-320", weights=rfb_weights)
    module = original.model
    pipe = Pipeline(original, ort_pipe.classifier, backend="onnxruntime")
    assert original.model is module and pipe.detector is not original


def test_classifier_arguments(clf: ExpressionClassifier, rfb_weights: Path, tmp_path: Path) -> None:
    path = tmp_path / "clf.safetensors"
    save_classifier(path, clf.model, SPEC, GRAY48)
    from_path = Pipeline("haar", path, backend="torch")
    assert from_path.classifier.preset == GRAY48 and from_path.classifier.name == "clf"
    from_str = Pipeline("haar", str(path), backend="torch", tta=True)
    assert from_str.classifier.tta is True
    assert Pipeline("haar", clf, backend="torch").classifier is clf  # nothing to change: reused as is
    ort_clf = make_classifier(0, backend="onnxruntime")
    switched = Pipeline("haar", ort_clf, backend="torch")
    assert switched.classifier.backend == "torch" and ort_clf.backend == "onnxruntime"
    assert "haar" in repr(switched) and "torch" in repr(switched)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"backend": "tensorrt"}, InvalidInputError),
        ({"detector": "yolo"}, InvalidInputError),
        ({"detector": 3}, InvalidInputError),
        ({"classifier": 3}, InvalidInputError),
        ({"classifier": "missing.safetensors"}, WeightsNotFoundError),
    ],
)
def test_constructor_validates_arguments(
    clf: ExpressionClassifier, kwargs: dict[str, object], error: type[Exception]
) -> None:
    args: dict[str, object] = {"detector": "haar", "classifier": clf, "backend": "torch"}
    args.update(kwargs)
    with pytest.raises(error):
        Pipeline(**args)  # type: ignore[arg-type]


def test_package_exports_pipeline_lazily() -> None:
    assert mobilefer.Pipeline is Pipeline and mobilefer.FaceResult is FaceResult
    with pytest.raises(AttributeError):
        _ = mobilefer.NoSuchThing  # type: ignore[attr-defined]
