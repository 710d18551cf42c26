"""ExpressionClassifier: input handling, probabilities, backends (torch vs onnxruntime), TTA, default()."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from _core_helpers import GRAY48, isolated_home, make_classifier, make_model, read_bgr
from mobilefer.classify import (
    DEFAULT_CLASSIFIER,
    FER2013_LABELS,
    CropRule,
    ExpressionClassifier,
    Preset,
    default_checkpoint_path,
)
from mobilefer.errors import InvalidImageError, InvalidInputError, NoShippedModelError
from mobilefer.weights import list_records

K = len(FER2013_LABELS)


@pytest.fixture(scope="module", autouse=True)
def _home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with isolated_home(tmp_path_factory.mktemp("mobilefer-home")) as home:
        yield home


@pytest.fixture(scope="module")
def clf() -> ExpressionClassifier:
    return make_classifier(0)


@pytest.fixture(scope="module")
def clf_ort(clf: ExpressionClassifier) -> ExpressionClassifier:
    return clf.with_backend("onnxruntime", threads=1)


@pytest.fixture(scope="module")
def photo_crops(shared_images: list[Path]) -> list[np.ndarray]:
    """Crops of different sizes cut from a real photo (BGR), plus gray and BGRA versions."""
    import cv2

    image = read_bgr(shared_images[0])
    rng = np.random.default_rng(0)
    crops = []
    for size in (40, 57, 64, 90, 120):
        y = int(rng.integers(0, image.shape[0] - size))
        x = int(rng.integers(0, image.shape[1] - size))
        crops.append(image[y : y + size, x : x + size + 7])
    crops.append(cv2.cvtColor(crops[0], cv2.COLOR_BGR2GRAY))
    crops.append(cv2.cvtColor(crops[1], cv2.COLOR_BGR2BGRA))
    return crops


def _manual_logits(clf: ExpressionClassifier, crops: list[np.ndarray], *, mirror: bool = False) -> np.ndarray:
    import cv2

    gray = [c if c.ndim == 2 else cv2.cvtColor(c, cv2.COLOR_BGR2GRAY if c.shape[2] == 3 else cv2.COLOR_BGRA2GRAY) for c in crops]
    resized = [cv2.resize(g, (48, 48), interpolation=cv2.INTER_LINEAR) if g.shape != (48, 48) else g for g in gray]
    x = (np.stack(resized).astype(np.float32)[:, None] - 127.5) / 127.5
    if mirror:
        x = np.ascontiguousarray(x[:, :, :, ::-1])
    with torch.no_grad():
        return clf.model(torch.from_numpy(x)).numpy()


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# ---------------------------------------------------------------------------------------- outputs
def test_predict_proba_takes_crops_of_different_sizes(clf: ExpressionClassifier, photo_crops: list[np.ndarray]) -> None:
    probs = clf.predict_proba(photo_crops)
    assert probs.shape == (len(photo_crops), K) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert np.all((probs >= 0) & (probs <= 1))
    np.testing.assert_allclose(probs, _softmax(_manual_logits(clf, photo_crops)), rtol=0, atol=1e-6)
    assert len({int(i) for i in probs.argmax(axis=1)}) >= 2 or float(probs.std(axis=0).max()) > 0.01
    # BGRA (last crop) is the BGR crop it was made from; gray is the gray conversion of crop 0.
    np.testing.assert_allclose(probs[-1], probs[1], atol=1e-6)
    np.testing.assert_allclose(probs[-2], probs[0], atol=1e-6)


def test_predict_proba_takes_uint8_batches(clf: ExpressionClassifier) -> None:
    rng = np.random.default_rng(1)
    color = rng.integers(0, 256, (3, 50, 40, 3), dtype=np.uint8)
    gray = rng.integers(0, 256, (2, 48, 48), dtype=np.uint8)
    np.testing.assert_array_equal(clf.predict_proba(color), clf.predict_proba(list(color)))
    np.testing.assert_array_equal(clf.predict_proba(gray), clf.predict_proba(list(gray)))
    np.testing.assert_array_equal(clf.predict_proba(tuple(gray)), clf.predict_proba(list(gray)))
    np.testing.assert_array_equal(clf.predict_proba(color[:, :, :, :1]), clf.predict_proba(list(color[:, :, :, 0])))


def test_empty_inputs_give_empty_results(clf: ExpressionClassifier) -> None:
    for empty in ([], (), np.zeros((0, 48, 48), np.uint8), np.zeros((0, 48, 48, 3), np.uint8)):
        out = clf.predict_proba(empty)
        assert out.shape == (0, K) and out.dtype == np.float32
        assert clf.predict_logits(empty).shape == (0, K)


BAD_INPUTS = {
    "float-crop": [np.zeros((48, 48, 3), np.float32)],
    "int64-crop": [np.zeros((48, 48), np.int64)],
    "bool-crop": [np.zeros((48, 48), bool)],
    "float-batch": np.zeros((2, 48, 48), np.float64),
    "none-in-list": [np.zeros((48, 48), np.uint8), None],
    "list-of-lists": [[[0, 1], [2, 3]]],
    "two-channels": [np.zeros((48, 48, 2), np.uint8)],
    "five-channels": [np.zeros((48, 48, 5), np.uint8)],
    "1d-crop": [np.zeros(48, np.uint8)],
    "4d-crop": [np.zeros((1, 48, 48, 3), np.uint8)],
    "empty-crop": [np.zeros((0, 10, 3), np.uint8)],
    "empty-width": [np.zeros((10, 0), np.uint8)],
    "2d-array": np.zeros((48, 48), np.uint8),
    "5d-array": np.zeros((1, 1, 48, 48, 3), np.uint8),
    "batch-two-channels": np.zeros((2, 48, 48, 2), np.uint8),
    "single-bgr-image": np.zeros((60, 50, 3), np.uint8),
    "single-bgra-image": np.zeros((60, 50, 4), np.uint8),
    "string": "face.jpg",
    "none": None,
    "int": 3,
    "dict": {"a": np.zeros((4, 4), np.uint8)},
    "torch-tensor": torch.zeros((1, 48, 48), dtype=torch.uint8),
}


@pytest.mark.parametrize("bad", list(BAD_INPUTS.values()), ids=list(BAD_INPUTS))
def test_invalid_inputs_raise_invalid_image_error(clf: ExpressionClassifier, bad: object) -> None:
    with pytest.raises(InvalidImageError) as info:
        clf.predict_proba(bad)
    assert isinstance(info.value, ValueError) and isinstance(info.value, TypeError)


def test_error_names_the_offending_crop(clf: ExpressionClassifier) -> None:
    good = np.zeros((48, 48), np.uint8)
    with pytest.raises(InvalidImageError, match="crop 2"):
        clf.predict_proba([good, good, good.astype(np.float32)])


def test_inputs_are_not_modified(clf: ExpressionClassifier) -> None:
    crops = list(np.random.default_rng(2).integers(0, 256, (2, 30, 30, 3), dtype=np.uint8))
    copies = [c.copy() for c in crops]
    for c in crops:
        c.flags.writeable = False
    clf.predict_proba(crops)
    for c, original in zip(crops, copies, strict=True):
        np.testing.assert_array_equal(c, original)


# ---------------------------------------------------------------------------------------- tta
def test_tta_averages_mirror_logits(clf: ExpressionClassifier, photo_crops: list[np.ndarray]) -> None:
    tta = ExpressionClassifier(clf.model, clf.preset, tta=True)
    plain = _manual_logits(clf, photo_crops)
    mirrored = _manual_logits(clf, photo_crops, mirror=True)
    expected = (plain + mirrored) / 2
    np.testing.assert_allclose(tta.predict_logits(photo_crops), expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(tta.predict_proba(photo_crops), _softmax(expected), rtol=0, atol=1e-6)
    # Averaging logits is not averaging probabilities, and mirroring really changes the output here.
    assert np.max(np.abs(plain - mirrored)) > 1e-2
    # TTA is mirror-invariant: a crop and its mirror image get the same probabilities.
    flipped = [np.ascontiguousarray(c[:, ::-1]) for c in photo_crops]
    np.testing.assert_allclose(tta.predict_proba(flipped), tta.predict_proba(photo_crops), atol=1e-5)


# ---------------------------------------------------------------------------------------- backends
def test_onnxruntime_backend_matches_torch(
    clf: ExpressionClassifier, clf_ort: ExpressionClassifier, photo_crops: list[np.ndarray]
) -> None:
    assert clf_ort.backend == "onnxruntime" and clf.backend == "torch"
    rng = np.random.default_rng(3)
    crops = photo_crops + list(rng.integers(0, 256, (4, 48, 48), dtype=np.uint8))
    logit_diff = float(np.max(np.abs(clf_ort.predict_logits(crops) - clf.predict_logits(crops))))
    prob_diff = float(np.max(np.abs(clf_ort.predict_proba(crops) - clf.predict_proba(crops))))
    assert logit_diff <= 1e-4 and prob_diff <= 1e-4, (logit_diff, prob_diff)
    tta_t = ExpressionClassifier(clf.model, clf.preset, tta=True)
    tta_o = tta_t.with_backend("onnxruntime")
    np.testing.assert_allclose(tta_o.predict_proba(crops), tta_t.predict_proba(crops), rtol=0, atol=1e-4)
    assert clf_ort.predict_proba([]).shape == (0, K)


def test_export_cache_is_reused(clf: ExpressionClassifier, clf_ort: ExpressionClassifier, _home: Path) -> None:
    files = sorted((_home / "onnx").glob("*.onnx"))
    assert files, "the onnxruntime backend caches its export under $MOBILEFER_HOME/onnx"
    mtimes = [f.stat().st_mtime_ns for f in files]
    again = clf.with_backend("onnxruntime")
    assert sorted((_home / "onnx").glob("*.onnx")) == files
    assert [f.stat().st_mtime_ns for f in files] == mtimes
    crops = [np.full((48, 48), 90, np.uint8)]
    np.testing.assert_array_equal(again.predict_proba(crops), clf_ort.predict_proba(crops))


def test_concurrent_predictions_match_sequential(clf: ExpressionClassifier, clf_ort: ExpressionClassifier) -> None:
    batches = [list(np.random.default_rng(10 + i).integers(0, 256, (3, 48, 48), dtype=np.uint8)) for i in range(4)]
    def work(model: ExpressionClassifier, i: int, got: list[np.ndarray | None]) -> None:
        got[i] = model.predict_proba(batches[i])

    for model in (clf, clf_ort):
        expected = [model.predict_proba(b) for b in batches]
        got: list[np.ndarray | None] = [None] * len(batches)
        threads = [threading.Thread(target=work, args=(model, i, got)) for i in range(len(batches))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for e, g in zip(expected, got, strict=True):
            assert g is not None
            np.testing.assert_array_equal(g, e)


# ---------------------------------------------------------------------------------------- construction
@pytest.mark.parametrize(
    "kwargs",
    [
        {"model": "not a module"},
        {"preset": {"name": "x"}},
        {"preset": Preset("nolabels", (48, 48), "gray", (127.5,), (127.5,))},
        {"backend": "tensorflow"},
        {"tta": "yes"},
    ],
)
def test_constructor_validates_arguments(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"model": make_model(0), "preset": GRAY48}
    args.update(kwargs)
    model, preset = args.pop("model"), args.pop("preset")
    with pytest.raises(InvalidInputError):
        ExpressionClassifier(model, preset, **args)  # type: ignore[arg-type]


def test_properties_and_crop_rule_per_detector(clf: ExpressionClassifier) -> None:
    assert clf.labels == FER2013_LABELS and clf.num_classes == K
    assert "random-0" in repr(clf) and "torch" in repr(clf)
    rule = CropRule(margin=0.25, shift_y=0.1)
    custom = ExpressionClassifier(clf.model, GRAY48.with_crop_rule("haar", rule))
    image = np.random.default_rng(4).integers(0, 256, (100, 120, 3), dtype=np.uint8)
    box = (30.0, 20.0, 70.0, 80.0)
    np.testing.assert_array_equal(custom.crop(image, box, "haar"), rule.crop(image, box))
    np.testing.assert_array_equal(custom.crop(image, box, "ultraface-rfb-320"), CropRule().crop(image, box))


def test_default_classifier_follows_the_registry() -> None:
    if DEFAULT_CLASSIFIER in {r.name for r in list_records()}:
        path = default_checkpoint_path()
        assert path.is_file()
        shipped = ExpressionClassifier.default()
        assert shipped.labels == FER2013_LABELS and shipped.name == DEFAULT_CLASSIFIER
        probs = shipped.predict_proba([np.full((64, 64, 3), 128, np.uint8)])
        assert probs.shape == (1, K)
        np.testing.assert_allclose(probs.sum(), 1.0, atol=1e-5)
    else:
        with pytest.raises(NoShippedModelError) as info:
            ExpressionClassifier.default()
        assert isinstance(info.value, FileNotFoundError)
        assert "from_checkpoint" in str(info.value)
        with pytest.raises(NoShippedModelError):
            default_checkpoint_path()
