"""Video: SmoothingTracker (IoU matching + EMA) and Pipeline.iter_video on a self-written clip."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from _core_helpers import isolated_home, make_classifier, read_bgr, write_video
from mobilefer.classify import FER2013_LABELS
from mobilefer.errors import DataError, InvalidInputError, MobileferError
from mobilefer.pipeline import FaceResult, Pipeline, VideoFrame
from mobilefer.video import SmoothingTracker, box_iou

N_FRAMES = 10


# ---------------------------------------------------------------------------------------- box_iou
@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ((0, 0, 10, 10), (0, 0, 10, 10), 1.0),
        ((0, 0, 10, 10), (20, 20, 30, 30), 0.0),
        ((0, 0, 10, 10), (5, 0, 15, 10), 50 / 150),
        ((0, 0, 10, 10), (10, 0, 20, 10), 0.0),  # touching edges
        ((0, 0, 10, 10), (2, 2, 4, 4), 4 / 100),
        ((0, 0, 0, 10), (0, 0, 0, 10), 0.0),  # empty boxes
    ],
)
def test_box_iou_hand_values(a: tuple[float, ...], b: tuple[float, ...], expected: float) -> None:
    assert box_iou(a, b) == pytest.approx(expected, abs=1e-12)
    assert box_iou(b, a) == pytest.approx(expected, abs=1e-12)


# ---------------------------------------------------------------------------------------- tracker
def _probs(*rows: tuple[float, ...]) -> np.ndarray:
    return np.asarray(rows, dtype=np.float32)


def test_smoothed_label_does_not_flicker_when_raw_probabilities_alternate() -> None:
    # The face's raw argmax flips every frame (0.70 vs 0.45 for class 0), its average favours class 0.
    a = (0.70, 0.30, 0.0)
    b = (0.45, 0.55, 0.0)
    tracker = SmoothingTracker(alpha=0.6)
    box = (100.0, 100.0, 180.0, 190.0)
    raw_labels, smooth_labels, ids = [], [], []
    expected = None
    for frame in range(20):
        raw = _probs(a if frame % 2 == 0 else b)
        jitter = (frame % 3) - 1.0
        (track_id, smoothed), = tracker.update(frame, [tuple(v + jitter for v in box)], raw)
        expected = raw[0] if expected is None else 0.6 * expected + 0.4 * raw[0]
        np.testing.assert_allclose(smoothed, expected, rtol=0, atol=1e-6)  # exact EMA
        raw_labels.append(int(raw[0].argmax()))
        smooth_labels.append(int(smoothed.argmax()))
        ids.append(track_id)
    assert all(raw_labels[i] != raw_labels[i + 1] for i in range(len(raw_labels) - 1))
    assert set(smooth_labels) == {0}
    assert set(ids) == {0}


def test_without_smoothing_the_same_sequence_flickers() -> None:
    tracker = SmoothingTracker(alpha=0.0)
    labels = []
    for frame in range(6):
        raw = _probs((0.70, 0.30) if frame % 2 == 0 else (0.45, 0.55))
        (_, smoothed), = tracker.update(frame, [(0, 0, 50, 50)], raw)
        np.testing.assert_array_equal(smoothed, raw[0])
        labels.append(int(smoothed.argmax()))
    assert labels == [0, 1, 0, 1, 0, 1]


def test_tracks_keep_ids_and_new_faces_get_new_ids() -> None:
    tracker = SmoothingTracker(alpha=0.5, match_iou=0.3, max_age=2)
    left, right = (10.0, 10.0, 60.0, 70.0), (200.0, 20.0, 250.0, 80.0)
    p = _probs((1.0, 0.0), (0.0, 1.0))
    first = tracker.update(0, [left, right], p)
    assert [t for t, _ in first] == [0, 1]
    # Detections come in another order and move a little: ids follow the faces, not the order.
    moved = tracker.update(1, [(203.0, 21.0, 252.0, 82.0), (12.0, 11.0, 61.0, 72.0)], p[::-1].copy())
    assert [t for t, _ in moved] == [1, 0]
    # A third face far away starts a new track with its raw probabilities.
    third = tracker.update(2, [left, right, (400.0, 10.0, 450.0, 70.0)], _probs((1, 0), (0, 1), (0.25, 0.75)))
    assert [t for t, _ in third] == [0, 1, 2]
    np.testing.assert_array_equal(third[2][1], [0.25, 0.75])


def test_greedy_matching_prefers_the_highest_iou() -> None:
    tracker = SmoothingTracker(alpha=0.5, match_iou=0.1)
    tracker.update(0, [(0.0, 0.0, 100.0, 100.0)], _probs((1.0, 0.0)))
    # Both detections overlap the track; the better-overlapping one (listed second) keeps id 0.
    out = tracker.update(1, [(40.0, 0.0, 140.0, 100.0), (5.0, 0.0, 105.0, 100.0)], _probs((0.0, 1.0), (0.0, 1.0)))
    assert [t for t, _ in out] == [1, 0]


def test_tracks_expire_after_max_age() -> None:
    tracker = SmoothingTracker(alpha=0.5, max_age=2)
    box = (0.0, 0.0, 50.0, 50.0)
    p = _probs((0.9, 0.1))
    assert tracker.update(0, [box], p)[0][0] == 0
    tracker.update(1, [], np.zeros((0, 2), np.float32))
    tracker.update(2, [], np.zeros((0, 2), np.float32))
    assert tracker.update(3, [box], p)[0][0] == 0  # unseen for 2 frames: still alive
    for frame in (4, 5, 6):
        tracker.update(frame, [], np.zeros((0, 2), np.float32))
    assert tracker.tracks == []
    assert tracker.update(7, [box], p)[0][0] == 1  # came back too late: a new track


@pytest.mark.parametrize(
    "kwargs",
    [
        {"alpha": 1.0},
        {"alpha": -0.1},
        {"alpha": True},
        {"alpha": "0.5"},
        {"match_iou": 0.0},
        {"match_iou": 1.5},
        {"max_age": -1},
        {"max_age": 1.5},
    ],
)
def test_tracker_validates_arguments(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError):
        SmoothingTracker(**kwargs)  # type: ignore[arg-type]


def test_tracker_rejects_mismatched_rows() -> None:
    with pytest.raises(InvalidInputError):
        SmoothingTracker().update(0, [(0, 0, 1, 1), (2, 2, 3, 3)], _probs((1.0, 0.0)))


# ---------------------------------------------------------------------------------------- iter_video
@pytest.fixture(scope="module", autouse=True)
def _home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with isolated_home(tmp_path_factory.mktemp("mobilefer-home")) as home:
        yield home


@pytest.fixture(scope="module")
def pipe(rfb_weights: Path) -> Pipeline:
    return Pipeline("ultraface-rfb-320", make_classifier(0), backend="torch", detector_weights=rfb_weights)


@pytest.fixture(scope="module")
def clip(shared_images: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 frames of a group photo resized to 640x480, shifted by -1/0/+1 px (a still scene)."""
    import cv2

    name = "group_2.jpg"
    source = next((p for p in shared_images if p.name == name), shared_images[0])
    image = cv2.resize(read_bgr(source), (640, 480), interpolation=cv2.INTER_AREA)
    frames = [np.roll(image, (i % 3) - 1, axis=1) for i in range(N_FRAMES)]
    return write_video(tmp_path_factory.mktemp("video"), "clip", frames)


@pytest.fixture(scope="module")
def raw_frames(pipe: Pipeline, clip: Path) -> list[VideoFrame]:
    return list(pipe.iter_video(clip, smoothing=None))


@pytest.fixture(scope="module")
def smoothed_frames(pipe: Pipeline, clip: Path) -> list[VideoFrame]:
    return list(pipe.iter_video(clip, smoothing=0.6))


def test_iter_video_yields_every_frame_with_results(pipe: Pipeline, raw_frames: list[VideoFrame]) -> None:
    assert [f.frame_index for f in raw_frames] == list(range(N_FRAMES))
    for index, frame, results in raw_frames:
        assert frame.shape == (480, 640, 3) and frame.dtype == np.uint8
        assert results and all(isinstance(r, FaceResult) and r.track_id is None for r in results)
        # Without smoothing the results are exactly predict() on the decoded frame.
        expected = pipe.predict(frame)
        assert [r.box for r in results] == [r.box for r in expected], index
        assert [r.probs for r in results] == [r.probs for r in expected], index


def test_track_ids_are_stable_for_still_faces(smoothed_frames: list[VideoFrame]) -> None:
    first = smoothed_frames[0].results
    assert len(first) >= 2
    assert sorted(r.track_id for r in first) == list(range(len(first)))  # type: ignore[type-var]
    reference = {r.track_id: r.box for r in first}
    for index, _, results in smoothed_frames[1:]:
        ids = [r.track_id for r in results]
        assert len(set(ids)) == len(ids), index
        assert set(ids) == set(reference), index  # same faces, same ids, no new tracks
        for r in results:
            assert box_iou(r.box, reference[r.track_id]) > 0.7, index  # the id stays on the same face


def test_smoothed_probabilities_are_the_ema_of_raw_ones(
    raw_frames: list[VideoFrame], smoothed_frames: list[VideoFrame]
) -> None:
    ema: dict[int, np.ndarray] = {}
    for (_, _, raw), (index, _, smooth) in zip(raw_frames, smoothed_frames, strict=True):
        assert [r.box for r in raw] == [r.box for r in smooth]  # smoothing keeps the detector's order
        for r, s in zip(raw, smooth, strict=True):
            assert s.track_id is not None
            p = np.array([r.probs[k] for k in FER2013_LABELS])
            ema[s.track_id] = p if s.track_id not in ema else 0.6 * ema[s.track_id] + 0.4 * p
            np.testing.assert_allclose([s.probs[k] for k in FER2013_LABELS], ema[s.track_id], atol=1e-5)
            assert s.label == FER2013_LABELS[int(np.argmax(ema[s.track_id]))], index


def test_max_frames_stops_early(pipe: Pipeline, clip: Path) -> None:
    frames = list(pipe.iter_video(clip, max_frames=3))
    assert [f.frame_index for f in frames] == [0, 1, 2]
    assert list(pipe.iter_video(clip, max_frames=0)) == []


def test_missing_file_fails_when_called(pipe: Pipeline, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found") as info:
        pipe.iter_video(tmp_path / "nope.mp4")  # raised at the call, not at the first next()
    assert isinstance(info.value, MobileferError)


@pytest.mark.parametrize("payload", [b"", b"this is not a video\n" * 50, bytes(range(256)) * 8])
def test_non_video_files_raise_data_error(pipe: Pipeline, tmp_path: Path, payload: bytes) -> None:
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(payload)
    with pytest.raises(DataError):
        pipe.iter_video(fake)
    with pytest.raises(DataError):
        pipe.iter_video(tmp_path)  # a folder


@pytest.mark.parametrize(
    "kwargs",
    [
        {"source": None},
        {"source": True},
        {"source": 1.5},
        {"max_frames": -1},
        {"max_frames": 2.0},
        {"smoothing": 1.0},
        {"smoothing": -0.5},
        {"match_iou": 0.0},
        {"max_age": -2},
    ],
)
def test_iter_video_validates_arguments(pipe: Pipeline, clip: Path, kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"source": clip}
    args.update(kwargs)
    source = args.pop("source")
    with pytest.raises(InvalidInputError):
        pipe.iter_video(source, **args)  # type: ignore[arg-type]
