"""OpenCV Haar-cascade detector."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from mobilefer.detect import Detector, HaarDetector, UltraFaceDetector, create_detector
from mobilefer.detect.haar import HAAR_CASCADE_FILE, default_cascade_path
from mobilefer.errors import InvalidImageError, InvalidInputError, ModelFormatError, WeightsNotFoundError

# Plausible Haar face counts (defaults: scaleFactor 1.1, minNeighbors 5, minSize 24x24) on two shared
# photos; measured 37 and 4 with OpenCV 4.x, UltraFace-RFB finds 46 and 4.
EXPECTED_COUNTS = {"group_1.jpg": (28, 48), "group_2.jpg": (3, 6)}


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(2)
    area_a = (a[:, 2:] - a[:, :2]).prod(1)
    area_b = (b[:, 2:] - b[:, :2]).prod(1)
    return inter / (area_a[:, None] + area_b[None, :] - inter)


@pytest.fixture(scope="module")
def haar() -> HaarDetector:
    return HaarDetector()


def photo(shared_images: list[Path], name: str) -> np.ndarray:
    matches = [p for p in shared_images if p.name == name]
    if not matches:
        pytest.fail(f"{name} missing from ../shared/images")
    image = cv2.imread(str(matches[0]), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def test_uses_opencv_bundled_cascade(haar: HaarDetector) -> None:
    assert haar.cascade_path == Path(cv2.data.haarcascades) / HAAR_CASCADE_FILE
    assert default_cascade_path() == haar.cascade_path
    assert haar.name == "haar" and isinstance(haar, Detector)
    assert (haar.scale_factor, haar.min_neighbors, haar.min_size) == (1.1, 5, (24, 24))


def test_blank_image_has_no_faces(haar: HaarDetector) -> None:
    assert haar.detect(np.full((240, 320, 3), 128, dtype=np.uint8)) == []


def test_missing_or_broken_cascade_is_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        HaarDetector(cascade=tmp_path / "none.xml")
    broken = tmp_path / "broken.xml"
    broken.write_text("<opencv_storage></opencv_storage>")
    with pytest.raises(ModelFormatError):
        HaarDetector(cascade=broken)
    with pytest.raises(WeightsNotFoundError):
        create_detector("haar", weights=tmp_path / "none.xml")


def test_missing_bundled_cascade(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(cv2.data, "haarcascades", str(tmp_path))
    with pytest.raises(WeightsNotFoundError, match=HAAR_CASCADE_FILE):
        HaarDetector()


@pytest.mark.parametrize(
    "kwargs", [{"scale_factor": 1.0}, {"min_neighbors": -1}, {"min_size": (0, 10)}, {"min_size": (10,)}]
)
def test_invalid_parameters(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError):
        HaarDetector(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((40, 40, 3), dtype=np.float64),
        np.zeros((40, 40, 5), dtype=np.uint8),
        np.zeros((0, 0), np.uint8),
        "x",
    ],
)
def test_bad_input_raises_invalid_image(haar: HaarDetector, bad: object) -> None:
    with pytest.raises(InvalidImageError):
        haar.detect(bad)  # type: ignore[arg-type]


@pytest.mark.realdata
def test_haar_finds_the_faces_ultraface_finds(
    haar: HaarDetector, shared_images: list[Path], rfb_weights: Path
) -> None:
    rfb = UltraFaceDetector.from_file("ultraface-rfb-320", rfb_weights)
    for name, (low, high) in EXPECTED_COUNTS.items():
        image = photo(shared_images, name)
        detections = haar.detect(image)
        assert low <= len(detections) <= high, (name, len(detections))
        assert all(d.score == 1.0 for d in detections)
        boxes = np.array([d.box for d in detections])
        assert all(isinstance(v, float) for d in detections for v in d.box)
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        assert (
            boxes.min() >= 0
            and (boxes[:, 2] <= image.shape[1]).all()
            and (boxes[:, 3] <= image.shape[0]).all()
        )
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        assert (np.diff(areas) <= 0).all()  # equal scores, ties ordered by decreasing area
        reference = np.array([d.box for d in rfb.detect(image)])
        best = iou_matrix(boxes, reference).max(axis=1)
        assert (best > 0.3).mean() >= 0.8, (name, np.round(best, 2))


@pytest.mark.realdata
def test_gray_and_bgra_give_same_result(haar: HaarDetector, shared_images: list[Path]) -> None:
    image = photo(shared_images, "group_2.jpg")
    expected = haar.detect(image)
    assert expected
    assert haar.detect(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)) == expected
    assert haar.detect(cv2.cvtColor(image, cv2.COLOR_BGR2BGRA)) == expected
