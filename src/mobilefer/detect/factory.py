"""Build a detector from its name."""

from __future__ import annotations

from pathlib import Path

from mobilefer.detect.base import Detector
from mobilefer.detect.haar import HaarDetector
from mobilefer.detect.ultraface import ULTRAFACE, ULTRAFACE_VARIANTS, UltraFaceDetector
from mobilefer.errors import InvalidInputError

__all__ = ["DETECTOR_NAMES", "create_detector"]

#: Names accepted by :func:`create_detector`.
DETECTOR_NAMES: tuple[str, ...] = (*ULTRAFACE_VARIANTS, "haar")


def create_detector(
    name: str,
    *,
    weights: str | Path | None = None,
    score_threshold: float = ULTRAFACE.score_threshold,
    iou_threshold: float = ULTRAFACE.iou_threshold,
    candidate_size: int = ULTRAFACE.candidate_size,
    top_k: int | None = ULTRAFACE.top_k,
    scale_factor: float = 1.1,
    min_neighbors: int = 5,
    min_size: tuple[int, int] = (24, 24),
) -> Detector:
    """Create the detector called ``name``.

    Args:
        name: ``"ultraface-rfb-320"``, ``"ultraface-slim-320"`` or ``"haar"``.
        weights: UltraFace: a ``.pth`` file (``None``: the registry's verified file via
            ``mobilefer.weights.resolve``). Haar: a cascade XML file (``None``: OpenCV's bundled one).
        score_threshold: UltraFace minimum face score (exclusive).
        iou_threshold: UltraFace hard-NMS IoU threshold.
        candidate_size: UltraFace boxes entering NMS.
        top_k: UltraFace maximum number of faces (``None``: no limit).
        scale_factor: Haar ``scaleFactor``.
        min_neighbors: Haar ``minNeighbors``.
        min_size: Haar ``minSize`` ``(width, height)``.

    Options of the other detector family are ignored.

    Raises:
        InvalidInputError: For an unknown name (the message lists the valid ones) or invalid options.
        WeightsNotFoundError, ChecksumMismatchError, ModelFormatError: When weights cannot be loaded.
    """
    if name in ULTRAFACE_VARIANTS:
        return UltraFaceDetector(
            name,
            weights=weights,
            score_threshold=score_threshold,
            iou_threshold=iou_threshold,
            candidate_size=candidate_size,
            top_k=top_k,
        )
    if name == "haar":
        return HaarDetector(
            scale_factor=scale_factor, min_neighbors=min_neighbors, min_size=min_size, cascade=weights
        )
    raise InvalidInputError(f"unknown detector {name!r}; valid names: {', '.join(DETECTOR_NAMES)}")
