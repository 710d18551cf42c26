"""End-to-end accuracy protocol and per-detector crop calibration.

FER2013 faces are tightly framed; detector boxes are not, and differ per detector. The protocol puts
each labelled face back into a scene and runs the whole pipeline on it:

1. The 48x48 face is upscaled to ``face_size`` px (default 160, bilinear) and pasted (as gray in all
   three channels) at a random position into a ``canvas_size`` (default 640x480) canvas whose
   background is a heavily blurred real photo (chosen at random from ``backgrounds``).
2. The detector runs on the canvas. The face counts as *found* if a detection overlaps the pasted square
   with IoU >= ``match_iou`` (the best-overlapping one is used).
3. The found face is cropped with a :class:`~mobilefer.preset.CropRule` and classified. The face counts
   as correct only if it was found and its label is right: misses count as wrong.

All randomness comes from one seed, so a run is reproducible. :func:`fit_crop_rule` evaluates a grid of
crop rules on the same detections (detection runs once per canvas) and returns the best.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mobilefer.classify.classifier import ExpressionClassifier
from mobilefer.detect.base import Detector
from mobilefer.errors import DataError, InvalidInputError
from mobilefer.preset import CropRule
from mobilefer.video import box_iou

__all__ = [
    "E2EResult",
    "load_backgrounds",
    "synthesize",
    "detect_faces",
    "evaluate_rules",
    "fit_crop_rule",
    "DEFAULT_MARGINS",
    "DEFAULT_SHIFTS",
]

DEFAULT_MARGINS: tuple[float, ...] = (-0.15, -0.1, -0.05, 0.0, 0.05, 0.1, 0.15, 0.2, 0.3)
DEFAULT_SHIFTS: tuple[float, ...] = (-0.1, -0.05, 0.0, 0.05, 0.1)


@dataclass(frozen=True)
class E2EResult:
    """End-to-end figures of one detector and crop rule.

    Attributes:
        detector: Detector name.
        rule: The crop rule used.
        n: Faces tried.
        found: Faces the detector found.
        correct: Faces found and classified correctly.
    """

    detector: str
    rule: CropRule
    n: int
    found: int
    correct: int

    @property
    def accuracy(self) -> float:
        """End-to-end accuracy (misses count as wrong)."""
        return self.correct / self.n if self.n else 0.0

    @property
    def detection_rate(self) -> float:
        return self.found / self.n if self.n else 0.0

    @property
    def accuracy_found(self) -> float:
        """Accuracy on the faces that were found."""
        return self.correct / self.found if self.found else 0.0


def load_backgrounds(paths: Sequence[str | Path], canvas_size: tuple[int, int] = (640, 480),
                     sigma: float = 15.0) -> list[np.ndarray]:
    """Photos resized to the canvas and blurred with a Gaussian of ``sigma`` px (BGR uint8)."""
    import cv2

    out = []
    for path in paths:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise DataError(f"cannot read background photo {path}")
        image = cv2.resize(image, canvas_size, interpolation=cv2.INTER_AREA)
        out.append(cv2.GaussianBlur(image, (0, 0), sigma))
    if not out:
        raise DataError("need at least one background photo")
    return out


def synthesize(
    faces: np.ndarray,
    backgrounds: Sequence[np.ndarray],
    seed: int,
    face_size: int = 160,
) -> Iterator[tuple[np.ndarray, tuple[float, float, float, float]]]:
    """Yield ``(canvas_bgr, face_box)`` for each (H, W) uint8 face, reproducibly from ``seed``."""
    import cv2

    if faces.ndim != 3 or faces.dtype != np.uint8:
        raise InvalidInputError(f"faces must be (N, H, W) uint8, got {faces.dtype} {faces.shape}")
    rng = np.random.default_rng(seed)
    for face in faces:
        background = backgrounds[int(rng.integers(len(backgrounds)))]
        h, w = background.shape[:2]
        if face_size > min(h, w):
            raise InvalidInputError(f"face_size {face_size} does not fit a {w}x{h} canvas")
        x = int(rng.integers(0, w - face_size + 1))
        y = int(rng.integers(0, h - face_size + 1))
        big = cv2.resize(face, (face_size, face_size), interpolation=cv2.INTER_LINEAR)
        canvas = background.copy()
        canvas[y : y + face_size, x : x + face_size] = big[:, :, None]
        yield canvas, (float(x), float(y), float(x + face_size), float(y + face_size))


def detect_faces(
    detector: Detector,
    faces: np.ndarray,
    backgrounds: Sequence[np.ndarray],
    seed: int,
    face_size: int = 160,
    match_iou: float = 0.3,
) -> list[tuple[np.ndarray, tuple[float, float, float, float]] | None]:
    """Run the detector on each synthesized canvas.

    Returns, per face, ``(canvas, detected_box)`` for the best-overlapping detection with IoU >=
    ``match_iou``, or ``None`` when the face was missed.
    """
    out: list[tuple[np.ndarray, tuple[float, float, float, float]] | None] = []
    for canvas, truth in synthesize(faces, backgrounds, seed, face_size):
        best, best_iou = None, match_iou
        for det in detector.detect(canvas):
            iou = box_iou(det.box, truth)
            if iou >= best_iou:
                best, best_iou = det.box, iou
        out.append(None if best is None else (canvas, best))
    return out


def evaluate_rules(
    classifier: ExpressionClassifier,
    detector_name: str,
    detections: Sequence[tuple[np.ndarray, tuple[float, float, float, float]] | None],
    labels: np.ndarray,
    rules: Sequence[CropRule],
    batch_size: int = 256,
) -> list[E2EResult]:
    """End-to-end results of each crop rule on precomputed detections."""
    if len(detections) != len(labels):
        raise InvalidInputError(f"{len(detections)} detections but {len(labels)} labels")
    found_idx = [i for i, d in enumerate(detections) if d is not None]
    results = []
    for rule in rules:
        correct = 0
        for start in range(0, len(found_idx), batch_size):
            chunk = found_idx[start : start + batch_size]
            crops = [rule.crop(canvas, box) for canvas, box in (d for d in (detections[i] for i in chunk) if d is not None)]
            predicted = classifier.predict_proba(crops).argmax(1)
            correct += int((predicted == labels[chunk]).sum())
        results.append(E2EResult(detector_name, rule, len(labels), len(found_idx), correct))
    return results


def fit_crop_rule(
    classifier: ExpressionClassifier,
    detector_name: str,
    detections: Sequence[tuple[np.ndarray, tuple[float, float, float, float]] | None],
    labels: np.ndarray,
    margins: Sequence[float] = DEFAULT_MARGINS,
    shifts: Sequence[float] = DEFAULT_SHIFTS,
) -> tuple[E2EResult, list[E2EResult]]:
    """Grid-search square crop rules (margin x vertical shift); returns (best, all results)."""
    rules = [CropRule(margin=m, square=True, shift_y=s) for m, s in itertools.product(margins, shifts)]
    results = evaluate_rules(classifier, detector_name, detections, labels, rules)
    best = max(results, key=lambda r: (r.correct, -abs(r.rule.margin), -abs(r.rule.shift_y)))
    return best, results
