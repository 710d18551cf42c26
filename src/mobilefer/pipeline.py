"""Detect-then-classify pipeline: ``Pipeline().predict(frame_bgr)``.

A face detector (UltraFace RFB-320 by default, OpenCV Haar as the zero-download fallback) finds faces;
each face is cropped with the classifier preset's rule for that detector and all faces of a frame (or
of a batch of frames) are classified in one batch.

Thread safety: a Pipeline may be shared between threads. The torch and onnxruntime backends are
re-entrant for inference; the Haar detector (OpenCV ``CascadeClassifier``) is serialised with a lock.
Across processes, build one Pipeline per process (sessions and modules are not shared memory).
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, cast

import numpy as np
import torch

from mobilefer.classify.classifier import BACKENDS, Backend, ExpressionClassifier
from mobilefer.detect.base import Detection, Detector
from mobilefer.errors import InvalidImageError, InvalidInputError, WeightsError
from mobilefer.video import DEFAULT_SMOOTHING

if TYPE_CHECKING:  # pragma: no cover
    from mobilefer.video import SmoothingTracker

__all__ = ["FaceResult", "Pipeline", "VideoFrame", "validate_frame", "MAX_PIXELS"]

logger = logging.getLogger(__name__)

#: Largest frame accepted (pixels): 64 megapixels. Larger frames are refused with InvalidImageError.
MAX_PIXELS = 64_000_000


@dataclass(frozen=True)
class FaceResult:
    """One face found and classified.

    Attributes:
        box: ``(x1, y1, x2, y2)`` float pixels in the input frame.
        score: Detector confidence in [0, 1].
        label: The most probable expression.
        probs: Label → probability (sums to 1).
        track_id: Track identity in video with smoothing, else ``None``.
    """

    box: tuple[float, float, float, float]
    score: float
    label: str
    probs: Mapping[str, float] = field(hash=False)
    track_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "box": [float(v) for v in self.box],
            "score": float(self.score),
            "label": self.label,
            "probs": {k: float(v) for k, v in self.probs.items()},
        }
        if self.track_id is not None:
            out["track_id"] = self.track_id
        return out


class VideoFrame(NamedTuple):
    """One item of :meth:`Pipeline.iter_video`: ``(frame_index, frame, results)``."""

    frame_index: int
    frame: np.ndarray
    results: list[FaceResult]


def validate_frame(frame: Any, what: str = "frame") -> np.ndarray:
    """Check a frame: uint8 (H, W) gray, (H, W, 3) BGR or (H, W, 4) BGRA, at most :data:`MAX_PIXELS`.

    Returns a C-contiguous view/copy (input never modified).

    Raises:
        InvalidImageError: For anything else, saying what was expected.
    """
    if not isinstance(frame, np.ndarray):
        raise InvalidImageError(
            f"{what} must be a numpy uint8 array (H, W, 3) BGR, (H, W) gray or (H, W, 4) BGRA, "
            f"got {type(frame).__name__} (convert PIL images with np.asarray(img)[:, :, ::-1])"
        )
    if frame.dtype != np.uint8:
        raise InvalidImageError(
            f"{what} must have dtype uint8 (0-255), got {frame.dtype}; convert with "
            "np.clip(x, 0, 255).astype(np.uint8) if it holds pixel values"
        )
    if not (frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] in (3, 4))):
        raise InvalidImageError(
            f"{what} must have shape (H, W, 3) BGR, (H, W) gray or (H, W, 4) BGRA, got {frame.shape}"
        )
    h, w = frame.shape[:2]
    if h < 1 or w < 1:
        raise InvalidImageError(f"{what} is empty (shape {frame.shape})")
    if h * w > MAX_PIXELS:
        raise InvalidImageError(
            f"{what} has {h}x{w} = {h * w} pixels, over the limit of {MAX_PIXELS}; downscale it first "
            "(e.g. cv2.resize(frame, None, fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA))"
        )
    return np.ascontiguousarray(frame)


class _OrtUltraFace:
    """Runs an UltraFace network exported by mobilefer in onnxruntime and decodes the boxes."""

    def __init__(self, detector: Any, threads: int | None) -> None:
        from mobilefer.runtime import cached_export, make_session

        self.session = make_session(cached_export(detector), threads)
        self.net = detector.net  # keeps UltraFaceDetector.net (and exporting the detector) working
        self.priors = detector.model.priors
        self.center_variance = detector.model.center_variance
        self.size_variance = detector.model.size_variance

    def forward_raw(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Soft-maxed scores and raw (undecoded) regressions, as ``UltraFaceDecoded.forward_raw``."""
        scores, locations = self.session.run(["scores", "boxes"], {"input": batch.numpy()})
        return torch.from_numpy(scores), torch.from_numpy(locations)

    def __call__(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from mobilefer.detect.ultraface import decode_boxes

        scores, locations = self.forward_raw(batch)
        return scores, decode_boxes(locations, self.priors, self.center_variance, self.size_variance)


def _build_detector(detector: str | Detector, weights: str | Path | None, backend: Backend, threads: int | None) -> Detector:
    from mobilefer.detect import UltraFaceDetector, create_detector

    built: Detector
    if isinstance(detector, str):
        if detector == "auto" and weights is not None:
            # An explicit weights file is a request for UltraFace: a wrong path must not silently become Haar.
            built = create_detector("ultraface-rfb-320", weights=weights)
        elif detector == "auto":
            try:
                built = create_detector("ultraface-rfb-320", weights=weights)
                logger.info("detector 'auto': using ultraface-rfb-320")
            except WeightsError as exc:
                logger.warning("detector 'auto': UltraFace weights unavailable (%s); falling back to 'haar'", exc)
                built = create_detector("haar")
        else:
            built = create_detector(detector, weights=weights)
    elif isinstance(detector, Detector):
        built = detector
    else:
        raise InvalidInputError(
            f"detector must be 'auto', a detector name or a Detector object, got {type(detector).__name__}"
        )
    if backend == "onnxruntime" and isinstance(built, UltraFaceDetector):
        runtime = copy.copy(built)
        runtime.model = cast(Any, _OrtUltraFace(built, threads))
        return runtime
    return built


def _build_classifier(classifier: ExpressionClassifier | str | Path | None, backend: Backend,
                      threads: int | None, tta: bool | None) -> ExpressionClassifier:
    if classifier is None:
        clf = ExpressionClassifier.default()
    elif isinstance(classifier, (str, Path)):
        clf = ExpressionClassifier.from_checkpoint(classifier)
    elif isinstance(classifier, ExpressionClassifier):
        clf = classifier
    else:
        raise InvalidInputError(
            f"classifier must be None (the shipped model), a checkpoint path or an ExpressionClassifier, "
            f"got {type(classifier).__name__}"
        )
    if clf.backend != backend or (tta is not None and tta != clf.tta) or (threads is not None and threads != clf.threads):
        clf = ExpressionClassifier(
            clf.model, clf.preset, backend=backend, tta=clf.tta if tta is None else tta, threads=threads, name=clf.name
        )
    return clf


class Pipeline:
    """Face detection + expression classification.

    Args:
        detector: ``"auto"`` (UltraFace RFB-320 when its weights resolve — packaged, cache or
            download — else Haar, logged; with ``detector_weights`` it is RFB-320 with that file, and a
            bad file raises instead of falling back), ``"ultraface-rfb-320"``, ``"ultraface-slim-320"``,
            ``"haar"`` or a detector object.
        classifier: ``None`` (the shipped FER2013 model), a checkpoint path, or an ExpressionClassifier.
        backend: ``"onnxruntime"`` (mobilefer's verified ONNX exports) or ``"torch"``.
        detector_weights: Explicit UltraFace weights file (checked against the registry hash when the
            registry resolves it; an explicit path is loaded as given).
        threads: onnxruntime intra-op threads (``None``: its default).
        tta: Override the classifier's mirror test-time augmentation.

    Raises:
        InvalidInputError: Bad arguments. WeightsError subclasses: a named detector's weights are missing.
    """

    def __init__(
        self,
        detector: str | Detector = "auto",
        classifier: ExpressionClassifier | str | Path | None = None,
        backend: Literal["onnxruntime", "torch"] = "onnxruntime",
        *,
        detector_weights: str | Path | None = None,
        threads: int | None = None,
        tta: bool | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise InvalidInputError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.backend: Backend = backend
        self.classifier = _build_classifier(classifier, backend, threads, tta)
        self.detector: Detector = _build_detector(detector, detector_weights, backend, threads)
        self._detect_lock = threading.Lock() if self.detector.name == "haar" else None

    def __repr__(self) -> str:
        return f"Pipeline(detector={self.detector.name!r}, classifier={self.classifier!r}, backend={self.backend!r})"

    # ------------------------------------------------------------------ core
    def _detect(self, frame: np.ndarray) -> list[Detection]:
        if self._detect_lock is not None:
            with self._detect_lock:
                return self.detector.detect(frame)
        return self.detector.detect(frame)

    def _classify(self, frames: Sequence[np.ndarray], detections: Sequence[list[Detection]]) -> list[list[FaceResult]]:
        name = self.detector.name
        crops = [self.classifier.crop(f, d.box, name) for f, dets in zip(frames, detections, strict=True) for d in dets]
        probs = self.classifier.predict_proba(crops) if crops else np.zeros((0, self.classifier.num_classes), np.float32)
        labels = self.classifier.labels
        out: list[list[FaceResult]] = []
        row = 0
        for dets in detections:
            faces = []
            for d in dets:
                p = probs[row]
                row += 1
                faces.append(
                    FaceResult(
                        box=d.box,
                        score=float(d.score),
                        label=labels[int(np.argmax(p))],
                        probs={label: float(v) for label, v in zip(labels, p, strict=True)},
                    )
                )
            out.append(faces)
        return out

    def predict(self, frame: np.ndarray) -> list[FaceResult]:
        """Faces in one frame, sorted by detector score (highest first).

        Args:
            frame: (H, W, 3) BGR uint8 (also (H, W) gray and (H, W, 4) BGRA).

        Raises:
            InvalidImageError: For any other input.
        """
        return self.predict_batch([frame])[0]

    def predict_batch(self, frames: Sequence[np.ndarray]) -> list[list[FaceResult]]:
        """:meth:`predict` for several frames; all their faces are classified in one batch."""
        if isinstance(frames, np.ndarray) or not isinstance(frames, (list, tuple)):
            raise InvalidImageError(
                f"predict_batch() takes a list of frames, got {type(frames).__name__}; use predict() for one frame"
            )
        checked = [validate_frame(f, f"frames[{i}]") for i, f in enumerate(frames)]
        detections = [self._detect(f) for f in checked]
        return self._classify(checked, detections)

    # ------------------------------------------------------------------ drawing
    def annotate(self, frame: np.ndarray, results: Sequence[FaceResult]) -> np.ndarray:
        """A BGR copy of ``frame`` with each face's box, label and probability drawn on it."""
        import cv2

        frame = validate_frame(frame)
        if frame.ndim == 2:
            canvas = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        elif frame.shape[2] == 4:
            canvas = cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
        else:
            canvas = frame.copy()
        thickness = max(1, round(max(canvas.shape[:2]) / 400))
        for r in results:
            x1, y1, x2, y2 = (int(round(v)) for v in r.box)
            cv2.rectangle(canvas, (x1, y1), (x2, y2), (0, 200, 0), thickness)
            text = f"{r.label} {r.probs.get(r.label, 0.0):.2f}"
            scale = max(0.4, (x2 - x1) / 160)
            (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
            ty = max(th + base, y1)
            cv2.rectangle(canvas, (x1, ty - th - base), (x1 + tw, ty), (0, 200, 0), -1)
            cv2.putText(canvas, text, (x1, ty - base), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness,
                        cv2.LINE_AA)
        return canvas

    # ------------------------------------------------------------------ video
    def iter_video(
        self,
        source: str | Path | int,
        *,
        smoothing: float | None = DEFAULT_SMOOTHING.alpha,
        match_iou: float = DEFAULT_SMOOTHING.match_iou,
        max_age: int = DEFAULT_SMOOTHING.max_age,
        max_frames: int | None = None,
    ) -> Iterator[VideoFrame]:
        """Run on a video file or camera index, yielding ``(frame_index, frame, results)``.

        Arguments are checked and the source is opened when this method is called (not on the first
        ``next()``), so a missing or unreadable file fails immediately.

        Args:
            source: Video file path or camera index (``0 <= index < 2**31``).
            smoothing: EMA weight of the past for each tracked face's probabilities, in [0, 1)
                (0 or ``None``: off, and results carry no ``track_id``). Faces are matched across
                frames by IoU (see :mod:`mobilefer.video`).
            match_iou: Minimum IoU to continue a track.
            max_age: Frames a track survives unseen.
            max_frames: Stop after this many frames.

        Raises:
            InvalidInputError: Bad arguments (including a negative camera index).
            DataError: If the file does not exist or OpenCV cannot open it as a video (or no such camera).
        """
        import cv2

        from mobilefer.errors import DataError
        from mobilefer.video import SmoothingTracker

        if max_frames is not None and (
            isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 0
        ):
            raise InvalidInputError(f"max_frames must be an int >= 0 or None, got {max_frames!r}")
        tracker = SmoothingTracker(smoothing, match_iou, max_age) if smoothing else None
        if isinstance(source, bool) or not isinstance(source, (str, Path, int)):
            raise InvalidInputError(f"source must be a video path or a camera index, got {type(source).__name__}")
        if not isinstance(source, int):
            path = Path(source)
            if not path.is_file():
                raise DataError(f"video file not found: {path}")
            capture = cv2.VideoCapture(str(path))
        else:
            # OpenCV crashes the process (SIGSEGV) on negative indexes and raises cv2.error above int32.
            if not 0 <= source < 2**31:
                raise InvalidInputError(f"camera index must be in [0, 2**31), got {source}")
            capture = cv2.VideoCapture(source)
        if not capture.isOpened():
            capture.release()
            raise DataError(f"cannot open video {str(source)!r} (not a video file OpenCV can decode, or no such camera)")
        return self._video_frames(capture, tracker, max_frames)

    def _video_frames(
        self, capture: Any, tracker: SmoothingTracker | None, max_frames: int | None
    ) -> Iterator[VideoFrame]:
        labels = self.classifier.labels
        try:
            index = 0
            while max_frames is None or index < max_frames:
                ok, frame = capture.read()
                if not ok or frame is None:
                    break
                results = self.predict(frame)
                if tracker is not None:
                    probs = np.array([[r.probs[label] for label in labels] for r in results], np.float32).reshape(
                        len(results), len(labels)
                    )
                    smoothed = tracker.update(index, [r.box for r in results], probs)
                    results = [
                        FaceResult(
                            box=r.box,
                            score=r.score,
                            label=labels[int(np.argmax(p))],
                            probs={label: float(v) for label, v in zip(labels, p, strict=True)},
                            track_id=track_id,
                        )
                        for r, (track_id, p) in zip(results, smoothed, strict=True)
                    ]
                yield VideoFrame(index, frame, results)
                index += 1
        finally:
            capture.release()
