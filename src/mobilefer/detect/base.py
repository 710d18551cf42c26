"""Types shared by every face detector."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["Detection", "Detector"]


@dataclass(frozen=True)
class Detection:
    """One detected face.

    Attributes:
        box: ``(x1, y1, x2, y2)`` in float pixels of the input image.
        score: Confidence in [0, 1] (Haar reports 1.0).
    """

    box: tuple[float, float, float, float]
    score: float


@runtime_checkable
class Detector(Protocol):
    """What the Pipeline needs from a detector.

    ``name`` is the detector's variant string (``"ultraface-rfb-320"``, ``"ultraface-slim-320"``,
    ``"haar"``); ``detect`` takes an (H, W, 3) BGR uint8 image and returns detections sorted by score,
    highest first.
    """

    name: str

    def detect(self, image: np.ndarray) -> list[Detection]: ...
