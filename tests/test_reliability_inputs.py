"""Reliability of ``Pipeline.predict`` / ``predict_batch`` on arbitrary input (property-based).

Every generated input has an outcome fixed by the documented contract, decided here independently of
mobilefer's own validation: a uint8 array of shape (H, W), (H, W, 3) or (H, W, 4) with H, W >= 1 and
H * W <= MAX_PIXELS must give a valid result list (finite boxes, score in [0, 1], probabilities summing
to 1, label = argmax, faces sorted by score, the input untouched); anything else must raise
:class:`~mobilefer.errors.InvalidImageError` whose message says what was expected. Any other
exception (from numpy, torch or OpenCV) fails the test.

The CI run draws 200 derandomized cases per pipeline; the ``slow`` run draws 10,000 random cases
shared by the two pipelines (UltraFace RFB-320 and Haar, both on the torch backend).
"""

from __future__ import annotations

import math
import re
import sys
import tracemalloc
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _core_helpers import make_classifier, read_bgr
from mobilefer.classify import FER2013_LABELS, ExpressionClassifier
from mobilefer.errors import InvalidImageError, MobileferError
from mobilefer.pipeline import MAX_PIXELS, FaceResult, Pipeline, validate_frame

# ----------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def clf() -> ExpressionClassifier:
    return make_classifier(0)  # random MobileNetV2 w=0.35, gray 48x48, FER2013 labels


@pytest.fixture(scope="module")
def rfb_pipeline(clf: ExpressionClassifier, rfb_weights: Path) -> Pipeline:
    return Pipeline("ultraface-rfb-320", clf, backend="torch", detector_weights=rfb_weights)


@pytest.fixture(scope="module")
def haar_pipeline(clf: ExpressionClassifier) -> Pipeline:
    return Pipeline("haar", clf, backend="torch")


@pytest.fixture(scope="module")
def photos(shared_images: list[Path], rfb_pipeline: Pipeline) -> list[tuple[np.ndarray, list[Any]]]:
    """The shared photos with their face boxes, so that generated crops can be centred on faces."""
    out = []
    for path in shared_images:
        image = read_bgr(path)
        out.append((image, [d.box for d in rfb_pipeline.detector.detect(image)]))
    return out


# ----------------------------------------------------------------------------------------------- oracle


def contract_accepts(frame: Any) -> bool:
    """The documented input contract, written independently of ``validate_frame``."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
        return False
    if frame.ndim == 2:
        h, w = frame.shape
    elif frame.ndim == 3 and frame.shape[2] in (3, 4):
        h, w = frame.shape[:2]
    else:
        return False
    return h >= 1 and w >= 1 and h * w <= MAX_PIXELS


_EXPECTATION = re.compile(r"must|expected|over the limit|is empty|takes a list")


def check_faces(faces: Any) -> None:
    """Invariants of one frame's results."""
    assert isinstance(faces, list)
    scores = []
    for face in faces:
        assert isinstance(face, FaceResult)
        assert len(face.box) == 4 and all(isinstance(v, float) and math.isfinite(v) for v in face.box)
        x1, y1, x2, y2 = face.box
        assert x2 > x1 and y2 > y1, face.box
        assert isinstance(face.score, float) and 0.0 <= face.score <= 1.0
        assert tuple(face.probs) == FER2013_LABELS
        probs = np.array(list(face.probs.values()), dtype=np.float64)
        assert np.all(np.isfinite(probs)) and np.all(probs >= 0) and np.all(probs <= 1)
        assert abs(probs.sum() - 1.0) < 1e-4
        assert face.label == FER2013_LABELS[int(np.argmax(probs))]
        assert face.track_id is None
        scores.append(face.score)
    assert scores == sorted(scores, reverse=True)


def run_case(call: Callable[[], Any], frames: list[Any], stats: Counter[str]) -> None:
    """Run ``call`` and check that its outcome is the one the contract prescribes for ``frames``."""
    before = [f.copy() if isinstance(f, np.ndarray) and f.dtype != object and f.size < 10**6 else None for f in frames]
    valid = all(contract_accepts(f) for f in frames)
    stats["cases"] += 1
    try:
        result = call()
    except MobileferError as exc:
        assert not valid, f"a valid input was refused: {exc!r}"
        assert isinstance(exc, InvalidImageError), repr(exc)
        assert _EXPECTATION.search(str(exc)), f"message does not say what was expected: {exc}"
        stats["refused"] += 1
        return
    assert valid, "an invalid input was accepted"
    assert isinstance(result, list) and len(result) == len(frames)
    for faces in result:
        check_faces(faces)
        stats["faces"] += len(faces)
    for frame, copy in zip(frames, before, strict=True):
        if copy is not None:
            np.testing.assert_array_equal(frame, copy)  # the input is never modified
    stats["accepted"] += 1


# ----------------------------------------------------------------------------------------------- strategies

_BAD_DTYPES = [
    np.uint16, np.int8, np.int16, np.int32, np.int64, np.uint32, np.float16, np.float32, np.float64,
    np.complex64, np.bool_, object, "U1", "S1", "datetime64[s]", ">u2",
]


@st.composite
def photo_crops(draw: st.DrawFn, photos: list[tuple[np.ndarray, list[Any]]]) -> np.ndarray:
    """A window of a real group photo, mostly around a known face, resized, in any valid layout/memory order."""
    import cv2

    photo, faces = photos[draw(st.integers(0, len(photos) - 1))]
    h, w = photo.shape[:2]
    if faces and draw(st.integers(0, 3)) > 0:  # around a face, with 10% to 150% margin each side
        x1, y1, x2, y2 = faces[draw(st.integers(0, len(faces) - 1))]
        grow = draw(st.sampled_from([0.1, 0.3, 0.6, 1.0, 1.5]))
        mx, my = (x2 - x1) * grow, (y2 - y1) * grow
        left, top = max(0, int(x1 - mx)), max(0, int(y1 - my))
        right, bottom = min(w, int(x2 + mx) + 1), min(h, int(y2 + my) + 1)
    else:
        side = draw(st.integers(8, 200))
        ch, cw = min(h, side), min(w, int(side * draw(st.sampled_from([0.5, 0.75, 1.0, 1.33, 2.0]))) or 1)
        top, left = draw(st.integers(0, h - ch)), draw(st.integers(0, w - cw))
        bottom, right = top + ch, left + cw
    crop = photo[top:bottom, left:right]
    ch, cw = crop.shape[:2]
    scale = draw(st.sampled_from([0.5, 1.0, 1.0, 1.5, 2.0]))
    if scale != 1.0 or max(ch, cw) > 240:
        scale = min(scale, 240 / max(ch, cw))
        size = (max(1, round(cw * scale)), max(1, round(ch * scale)))
        crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
    layout = draw(st.sampled_from(["bgr", "bgr", "gray", "bgra"]))
    if layout == "gray":
        crop = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    elif layout == "bgra":
        crop = cv2.cvtColor(crop, cv2.COLOR_BGR2BGRA)
    return with_memory_layout(draw, crop)


def with_memory_layout(draw: st.DrawFn, image: np.ndarray) -> np.ndarray:
    kind = draw(st.sampled_from(["contiguous", "fortran", "reversed", "strided", "readonly", "channel-view"]))
    if kind == "fortran":
        return np.asfortranarray(image)
    if kind == "reversed":
        return image[::-1, ::-1]
    if kind == "strided":  # a non-contiguous view: every other column of a twice-as-wide array
        wide = np.repeat(image, 2, axis=1)
        return wide[:, ::2]
    if kind == "readonly":
        frozen = image.copy()
        frozen.flags.writeable = False
        return frozen
    if kind == "channel-view" and image.ndim == 3 and image.shape[2] == 3:
        padded = np.concatenate([image, image[:, :, :1]], axis=2)
        return padded[:, :, :3]  # strides of a 4-channel image
    return np.ascontiguousarray(image)


@st.composite
def synthetic_frames(draw: st.DrawFn) -> np.ndarray:
    """Random pixels: any small size including 1x1, gray/BGR/BGRA, any memory layout."""
    h, w = draw(st.integers(1, 64)), draw(st.integers(1, 64))
    channels = draw(st.sampled_from([None, 3, 4]))
    shape = (h, w) if channels is None else (h, w, channels)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    image = rng.integers(0, 256, shape, dtype=np.uint8) if draw(st.booleans()) else np.full(shape, draw(st.integers(0, 255)), np.uint8)
    return with_memory_layout(draw, image)


@st.composite
def wrong_dtype_frames(draw: st.DrawFn) -> np.ndarray:
    h, w = draw(st.integers(0, 16)), draw(st.integers(0, 16))
    shape = draw(st.sampled_from([(h, w), (h, w, 3), (h, w, 4), (h, w, 1)]))
    dtype = np.dtype(draw(st.sampled_from(_BAD_DTYPES)))
    array = np.zeros(shape, dtype=dtype)
    if dtype.kind == "f" and array.size:
        special = draw(st.sampled_from([np.nan, np.inf, -np.inf, 0.5, 1e30, -1.0]))
        with np.errstate(over="ignore"):  # 1e30 is inf in float16
            array.flat[draw(st.integers(0, array.size - 1))] = special
    return array


@st.composite
def wrong_shape_frames(draw: st.DrawFn) -> np.ndarray:
    """uint8 arrays with channel counts 0-5 (only 3 and 4 are valid), other ranks, and empty sides."""
    h, w = draw(st.integers(0, 12)), draw(st.integers(0, 12))
    shape = draw(
        st.sampled_from(
            [(h, w, c) for c in range(6)] + [(), (w,), (1, h, w, 3), (h, w, 3, 1), (h, w, 1, 1, 1)]
        )
    )
    return np.zeros(shape, np.uint8)


@st.composite
def huge_frames(draw: st.DrawFn) -> np.ndarray:
    """Frames over MAX_PIXELS (and some just under) as zero-stride views: no memory is allocated."""
    h, w = draw(st.integers(1, 200_000)), draw(st.integers(1, 200_000))
    channels = draw(st.sampled_from([None, 3, 4, 5]))
    if h * w <= MAX_PIXELS:  # the smallest height over the limit (in-limit giants are tested separately)
        h = MAX_PIXELS // w + 1
    shape = (h, w) if channels is None else (h, w, channels)
    return np.broadcast_to(np.zeros((1,) * len(shape), np.uint8), shape)


def non_arrays() -> st.SearchStrategy[Any]:
    from PIL import Image

    return st.one_of(
        st.none(),
        st.integers(),
        st.floats(allow_nan=True),
        st.text(max_size=5),
        st.binary(max_size=5),
        st.lists(st.lists(st.integers(0, 255), max_size=4), max_size=4),
        st.lists(st.lists(st.lists(st.integers(0, 255), min_size=3, max_size=3), min_size=1, max_size=3), min_size=1, max_size=3),
        st.builds(lambda s: Image.new("RGB", (s, s)), st.integers(1, 8)),
        st.builds(lambda s: torch.zeros((s, s, 3), dtype=torch.uint8), st.integers(1, 8)),
        st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    )


def _pick(*strategies: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """One of ``strategies`` with equal probability (``st.one_of`` flattens nested choices instead)."""
    return st.integers(0, len(strategies) - 1).flatmap(lambda i: strategies[i])


def any_frame(photos: list[tuple[np.ndarray, list[Any]]]) -> st.SearchStrategy[Any]:
    """Half valid frames (three in four real photo crops), half every kind of invalid input."""
    crops = photo_crops(photos)
    valid = _pick(crops, crops, crops, synthetic_frames())
    invalid = _pick(wrong_dtype_frames(), wrong_shape_frames(), huge_frames(), non_arrays())
    return _pick(valid, invalid)


def fuzz(pipelines: list[Pipeline], photos: list[tuple[np.ndarray, list[Any]]], examples: int, *, derandomize: bool) -> Counter[str]:
    """Run ``examples`` generated cases over the pipelines; returns outcome counts."""
    stats: Counter[str] = Counter()

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=derandomize,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )
    @given(
        which=st.integers(0, len(pipelines) - 1),
        batch=st.one_of(st.none(), st.none(), st.none(), st.integers(1, 3)),
        data=st.data(),
    )
    def case(which: int, batch: int | None, data: st.DataObject) -> None:
        pipeline = pipelines[which]
        if batch is None:
            frame = data.draw(any_frame(photos))
            run_case(lambda: [pipeline.predict(frame)], [frame], stats)
        else:
            frames = [data.draw(any_frame(photos)) for _ in range(batch)]
            container = data.draw(st.sampled_from([list, tuple]))
            run_case(lambda: pipeline.predict_batch(container(frames)), frames, stats)

    case()
    return stats


# ----------------------------------------------------------------------------------------------- tests


def test_predict_fuzz(rfb_pipeline: Pipeline, haar_pipeline: Pipeline, photos: list[tuple[np.ndarray, list[Any]]]) -> None:
    stats = fuzz([rfb_pipeline, haar_pipeline], photos, 200, derandomize=True)
    assert stats["cases"] >= 200 and stats["accepted"] + stats["refused"] == stats["cases"]
    # The strategies really reach both outcomes, and real faces are classified.
    assert stats["accepted"] >= 40 and stats["refused"] >= 40, stats
    assert stats["faces"] >= 5, stats


@pytest.mark.slow
def test_predict_fuzz_10000_cases(
    rfb_pipeline: Pipeline,
    haar_pipeline: Pipeline,
    photos: list[tuple[np.ndarray, list[Any]]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    # RFB runs its 320x240 network on every frame (~40 ms of CPU), Haar is cheap on small crops: one case
    # in four goes to RFB so that 10,000 cases fit in a few minutes.
    stats = fuzz([rfb_pipeline, haar_pipeline, haar_pipeline, haar_pipeline], photos, 10_000, derandomize=False)
    with capsys.disabled():
        sys.stdout.write(f"\nreliability fuzz: {dict(stats)}\n")
    assert stats["cases"] >= 10_000 and stats["accepted"] + stats["refused"] == stats["cases"]
    assert stats["accepted"] >= 2000 and stats["refused"] >= 2000 and stats["faces"] >= 500, stats


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(None, id="None"),
        pytest.param([[0, 1], [2, 3]], id="list"),
        pytest.param(np.zeros((4, 4, 3), np.float32), id="float32"),
        pytest.param(np.full((4, 4, 3), np.nan), id="nan"),
        pytest.param(np.zeros((4, 4, 3), bool), id="bool"),
        pytest.param(np.zeros((4, 4, 3), object), id="object"),
        pytest.param(np.zeros((4, 4, 3), np.uint16), id="uint16"),
        pytest.param(np.zeros((4, 4, 0), np.uint8), id="0-channels"),
        pytest.param(np.zeros((4, 4, 1), np.uint8), id="1-channel"),
        pytest.param(np.zeros((4, 4, 2), np.uint8), id="2-channels"),
        pytest.param(np.zeros((4, 4, 5), np.uint8), id="5-channels"),
        pytest.param(np.zeros((0, 4, 3), np.uint8), id="empty"),
    ],
)
def test_named_bad_inputs_are_refused_by_both_pipelines(
    frame: Any, rfb_pipeline: Pipeline, haar_pipeline: Pipeline
) -> None:
    for pipeline in (rfb_pipeline, haar_pipeline):
        with pytest.raises(InvalidImageError, match=_EXPECTATION):
            pipeline.predict(frame)
        with pytest.raises(InvalidImageError, match=r"frames\[1\]"):  # the message names the bad frame
            pipeline.predict_batch([np.zeros((8, 8, 3), np.uint8), frame])


def test_pil_image_is_refused_with_conversion_advice(rfb_pipeline: Pipeline) -> None:
    from PIL import Image

    with pytest.raises(InvalidImageError, match=r"np\.asarray\(img\)\[:, :, ::-1\]"):
        rfb_pipeline.predict(Image.new("RGB", (32, 32)))


@pytest.mark.parametrize("shape", [(10_000, 10_000, 3), (10_000, 10_000), (MAX_PIXELS + 1, 1, 4), (1, 10**12, 3)])
def test_huge_frames_are_refused_without_allocating(rfb_pipeline: Pipeline, haar_pipeline: Pipeline,
                                                    shape: tuple[int, ...]) -> None:
    frame = np.broadcast_to(np.zeros((1,) * len(shape), np.uint8), shape)  # zero-stride: ~no memory
    tracemalloc.start()
    try:
        for pipeline in (rfb_pipeline, haar_pipeline):
            with pytest.raises(InvalidImageError, match=f"over the limit of {MAX_PIXELS}"):
                pipeline.predict(frame)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"refusing a huge frame allocated {peak} bytes"


def test_frame_at_the_pixel_limit_is_accepted() -> None:
    frame = np.broadcast_to(np.zeros((1, 1), np.uint8), (8000, 8000))  # exactly MAX_PIXELS
    assert 8000 * 8000 == MAX_PIXELS
    checked = validate_frame(frame)
    assert checked.shape == (8000, 8000) and checked.flags.c_contiguous
    with pytest.raises(InvalidImageError):
        validate_frame(np.broadcast_to(np.zeros((1, 1), np.uint8), (8000, 8001)))


def test_memory_layouts_give_the_same_results(rfb_pipeline: Pipeline, photos: list[tuple[np.ndarray, list[Any]]]) -> None:
    """Fortran-ordered, reversed-stride, strided and read-only views give the results of a contiguous copy."""
    image = np.ascontiguousarray(photos[0][0][:240, :320])
    reference = [r.to_dict() for r in rfb_pipeline.predict(image)]
    assert reference, "the crop of a group photo has faces"
    readonly = image.copy()
    readonly.flags.writeable = False
    views = {
        "fortran": np.asfortranarray(image),
        "strided": np.repeat(image, 2, axis=1)[:, ::2],
        "readonly": readonly,
        "flipped twice": image[::-1][::-1],
    }
    for name, view in views.items():
        assert [r.to_dict() for r in rfb_pipeline.predict(view)] == reference, name
