"""Reliability at run time: long video runs do not leak memory; one Pipeline is safe to share by threads.

* Soak: thousands of frames through ``Pipeline.iter_video`` (Haar detector, classifier, IoU tracker with
  smoothing) with the resident set size (RSS, ``/proc/self/statm``) sampled after a warm-up. The slow
  run pushes 10,000 frames; CI runs 300.
* Threads: one Pipeline used from 4 threads at once gives exactly (bit for bit) the serial results, on
  both backends (torch and onnxruntime, UltraFace RFB-320 detector) and with the Haar detector; two
  threads iterating the same video at once get the serial per-frame results.
"""

from __future__ import annotations

import gc
import os
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from _core_helpers import isolated_home, make_classifier, read_bgr, write_video
from mobilefer.classify import ExpressionClassifier
from mobilefer.detect import create_detector
from mobilefer.pipeline import Pipeline

THREADS = 4


@pytest.fixture(scope="module", autouse=True)
def _home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with isolated_home(tmp_path_factory.mktemp("mobilefer-home")) as home:
        yield home


@pytest.fixture(scope="module")
def clf() -> ExpressionClassifier:
    return make_classifier(0)


@pytest.fixture(scope="module")
def face_frames(shared_images: list[Path], rfb_weights: Path, clf: ExpressionClassifier) -> Callable[[int, int], list[np.ndarray]]:
    """``make(width, height)``: 20 frames around one face of a group photo, panning left and right."""
    photo = read_bgr(shared_images[0])
    detector = Pipeline("ultraface-rfb-320", clf, backend="torch", detector_weights=rfb_weights).detector
    faces = detector.detect(photo)
    assert faces
    x1, y1, x2, y2 = faces[0].box
    cx, cy, side = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1

    def make(width: int, height: int) -> list[np.ndarray]:
        window_w = side * 3.0
        window_h = window_w * height / width
        frames = []
        for i in range(20):
            dx = (abs(i - 10) - 5) * side * 0.06
            left, top = int(max(0, cx - window_w / 2 + dx)), int(max(0, cy - window_h / 2))
            crop = photo[top : top + int(window_h), left : left + int(window_w)]
            frames.append(cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA))
        return frames

    return make


def rss_mb() -> float:
    """Current resident set size of this process in MiB."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def soak(pipeline: Pipeline, video: Path, frames: int, warmup: int, every: int) -> dict[str, float]:
    """Run ``frames`` frames of ``video``; RSS growth from the end of the warm-up to the largest later sample."""
    samples: list[float] = []
    seen = faces = 0
    start = time.perf_counter()
    baseline = 0.0
    for index, _, results in pipeline.iter_video(video):
        assert index == seen
        seen += 1
        faces += len(results)
        assert all(r.track_id is not None for r in results)
        if seen == warmup:
            gc.collect()
            baseline = rss_mb()
        elif seen > warmup and seen % every == 0:
            samples.append(rss_mb())
    gc.collect()
    samples.append(rss_mb())
    return {
        "frames": seen,
        "faces": faces,
        "baseline_mb": baseline,
        "growth_mb": max(samples) - baseline,
        "end_growth_mb": samples[-1] - baseline,
        "seconds": time.perf_counter() - start,
    }


def _soak_pipeline(clf: ExpressionClassifier) -> Pipeline:
    # Haar with a coarser scale pyramid: the per-frame cost is dominated by the classifier, not the search.
    return Pipeline(create_detector("haar", scale_factor=1.2, min_size=(32, 32)), clf, backend="torch")


def test_soak_300_frames(clf: ExpressionClassifier, face_frames: Callable[[int, int], list[np.ndarray]],
                         tmp_path: Path) -> None:
    video = write_video(tmp_path, "soak", face_frames(320, 240) * 15)  # 300 frames, 320x240
    stats = soak(_soak_pipeline(clf), video, 300, warmup=100, every=20)
    assert stats["frames"] == 300 and stats["faces"] >= 250, stats
    # 200 measured frames cannot tell a slow leak from allocator warm-up, so this bound is looser than the
    # 10 MB of the 10,000-frame run; it still catches keeping any per-frame array alive: one 320x240 BGR
    # frame per iteration would add 200 * 230 KB = 46 MB.
    assert stats["growth_mb"] < 20, stats


@pytest.mark.slow
def test_soak_10000_frames(clf: ExpressionClassifier, face_frames: Callable[[int, int], list[np.ndarray]],
                           tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 160x120 keeps 10,000 frames within a few minutes on a shared CPU (the classifier still runs on
    # every frame); keeping one such frame alive per iteration would still add 9,500 * 57.6 KB = 547 MB.
    video = write_video(tmp_path, "soak", face_frames(160, 120) * 500)  # 10,000 frames
    stats = soak(_soak_pipeline(clf), video, 10_000, warmup=500, every=250)
    with capsys.disabled():
        sys.stdout.write(f"\nreliability soak: {stats}\n")
    assert stats["frames"] == 10_000 and stats["faces"] >= 9000, stats
    assert stats["growth_mb"] < 10, stats


# ----------------------------------------------------------------------------------------------- threads


def _frames_for_threads(face_frames: Callable[[int, int], list[np.ndarray]], shared_images: list[Path]) -> list[np.ndarray]:
    """Frames with 0, 1 and many faces, gray, BGR and BGRA."""
    photos = [cv2.resize(read_bgr(p), (320, 240), interpolation=cv2.INTER_AREA) for p in shared_images]
    close = face_frames(160, 120)[:4]
    return [*photos, *close, cv2.cvtColor(photos[0], cv2.COLOR_BGR2GRAY), cv2.cvtColor(photos[1], cv2.COLOR_BGR2BGRA),
            np.zeros((50, 70, 3), np.uint8)]


def _as_plain(results: list[Any]) -> list[dict[str, Any]]:
    return [r.to_dict() for r in results]


def run_in_threads(work: Callable[[int], Any], count: int = THREADS) -> list[Any]:
    """Run ``work(i)`` in ``count`` threads released together; re-raise the first error."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def target(i: int) -> None:
        try:
            barrier.wait(timeout=60)
            results[i] = work(i)
        except BaseException as exc:  # reported to the test thread below
            errors.append(exc)

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    if errors:
        raise errors[0]
    return results


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_pipeline_shared_by_four_threads_gives_the_serial_results(
    backend: str, clf: ExpressionClassifier, rfb_weights: Path, shared_images: list[Path],
    face_frames: Callable[[int, int], list[np.ndarray]],
) -> None:
    pipeline = Pipeline("ultraface-rfb-320", clf, backend=backend, detector_weights=rfb_weights)  # type: ignore[arg-type]
    frames = _frames_for_threads(face_frames, shared_images)
    serial = [_as_plain(pipeline.predict(f)) for f in frames]
    assert sum(len(r) for r in serial) >= 10  # real faces, so the classifier runs in every thread too

    def work(i: int) -> list[tuple[int, list[dict[str, Any]]]]:
        order = list(range(len(frames)))
        random.Random(i).shuffle(order)  # the threads are at different frames at any moment
        out = [(k, _as_plain(pipeline.predict(frames[k]))) for k in order]
        batch = pipeline.predict_batch(frames[i::2])
        out += [(k, _as_plain(r)) for k, r in zip(range(i, len(frames), 2), batch, strict=True)]
        return out

    for per_thread in run_in_threads(work):
        for k, results in per_thread[: len(frames)]:
            assert results == serial[k], f"frame {k} differs from the serial run"
        for k, results in per_thread[len(frames) :]:  # batched: same faces, probabilities to float rounding
            assert [r["box"] for r in results] == [r["box"] for r in serial[k]]
            for got, want in zip(results, serial[k], strict=True):
                assert got["label"] == want["label"]
                np.testing.assert_allclose(list(got["probs"].values()), list(want["probs"].values()), atol=1e-5)


def test_haar_pipeline_shared_by_four_threads(clf: ExpressionClassifier, shared_images: list[Path],
                                              face_frames: Callable[[int, int], list[np.ndarray]]) -> None:
    pipeline = Pipeline("haar", clf, backend="torch")
    frames = _frames_for_threads(face_frames, shared_images)
    serial = [_as_plain(pipeline.predict(f)) for f in frames]
    assert sum(len(r) for r in serial) >= 5
    n = len(frames)
    # Thread i starts at frame i, so different threads run different frames at the same time.
    got = run_in_threads(lambda i: [(k % n, _as_plain(pipeline.predict(frames[k % n]))) for k in range(i, i + n)])
    for per_thread in got:
        assert all(results == serial[k] for k, results in per_thread)


def test_two_threads_iterating_one_video(clf: ExpressionClassifier, face_frames: Callable[[int, int], list[np.ndarray]],
                                         tmp_path: Path) -> None:
    pipeline = _soak_pipeline(clf)
    video = write_video(tmp_path, "clip", face_frames(160, 120)[:12])

    def frames_of(_: int) -> list[tuple[int, list[dict[str, Any]]]]:
        return [(index, _as_plain(results)) for index, _, results in pipeline.iter_video(video)]

    serial = frames_of(0)
    assert len(serial) == 12 and any(r for _, r in serial)
    assert run_in_threads(frames_of, 2) == [serial, serial]  # each iterator has its own tracker
