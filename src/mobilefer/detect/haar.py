"""OpenCV Haar-cascade face detector (no weights to download; a fast, low-accuracy fallback)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from mobilefer.detect._image import validate_image
from mobilefer.detect.base import Detection
from mobilefer.errors import InvalidInputError, ModelFormatError, WeightsNotFoundError

__all__ = ["HaarDetector", "HAAR_CASCADE_FILE", "default_cascade_path"]

#: The cascade shipped with OpenCV that the detector uses by default.
HAAR_CASCADE_FILE = "haarcascade_frontalface_default.xml"


def default_cascade_path() -> Path:
    """Path of OpenCV's bundled ``haarcascade_frontalface_default.xml`` (``cv2.data.haarcascades``).

    Raises:
        WeightsNotFoundError: If this OpenCV build has no ``cv2.data`` or the file is missing.
    """
    import cv2

    folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
    if not folder:
        raise WeightsNotFoundError(
            "this OpenCV build has no cv2.data.haarcascades; install opencv-python(-headless) from PyPI "
            "or pass cascade=<path to haarcascade_frontalface_default.xml>"
        )
    path = Path(folder) / HAAR_CASCADE_FILE
    if not path.is_file():
        raise WeightsNotFoundError(
            f"OpenCV's Haar cascade {path} is missing; reinstall opencv-python-headless"
        )
    return path


class HaarDetector:
    """Viola-Jones face detector with OpenCV's frontal-face cascade.

    The image is converted to gray and ``cv2.CascadeClassifier.detectMultiScale`` is run with:

    Args:
        scale_factor: ``scaleFactor``: how much the search window grows between scales (> 1). Smaller
            is slower and finds more faces.
        min_neighbors: ``minNeighbors``: overlapping raw hits a face needs to be kept. Higher means
            fewer false positives and more missed faces.
        min_size: ``minSize``: smallest face ``(width, height)`` in pixels searched for.
        equalize: Histogram-equalise the gray image first (helps in poor light).
        cascade: A cascade XML file instead of OpenCV's bundled frontal-face one.

    Every detection has score 1.0 (the cascade gives no confidence); detections are ordered by
    decreasing box area, which is also a valid "score descending" order. Boxes are float
    ``(x, y, x + w, y + h)`` in pixels.

    Raises:
        InvalidInputError: For invalid parameters.
        WeightsNotFoundError: If the cascade file is missing.
        ModelFormatError: If OpenCV cannot load the cascade file.
    """

    name: str

    def __init__(
        self,
        *,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        min_size: tuple[int, int] = (24, 24),
        equalize: bool = False,
        cascade: str | Path | None = None,
    ) -> None:
        import cv2

        if (
            not isinstance(scale_factor, (int, float))
            or not math.isfinite(scale_factor)
            or scale_factor <= 1.0
        ):
            raise InvalidInputError(f"scale_factor must be a number > 1, got {scale_factor!r}")
        if not isinstance(min_neighbors, int) or isinstance(min_neighbors, bool) or min_neighbors < 0:
            raise InvalidInputError(f"min_neighbors must be an int >= 0, got {min_neighbors!r}")
        if len(min_size) != 2 or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in min_size
        ):
            raise InvalidInputError(f"min_size must be (width, height) positive ints, got {min_size!r}")
        path = default_cascade_path() if cascade is None else Path(cascade)
        if not path.is_file():
            raise WeightsNotFoundError(f"Haar cascade file {path} does not exist")
        try:
            classifier = cv2.CascadeClassifier(str(path))
        except (cv2.error, SystemError) as exc:  # OpenCV raises on malformed XML
            raise ModelFormatError(f"OpenCV could not load a cascade from {path}: {exc}") from exc
        if classifier.empty():
            raise ModelFormatError(f"OpenCV could not load a cascade from {path}")
        self.name = "haar"
        self.scale_factor = float(scale_factor)
        self.min_neighbors = min_neighbors
        self.min_size = (int(min_size[0]), int(min_size[1]))
        self.equalize = bool(equalize)
        self.cascade_path = path
        self._classifier = classifier

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Detect frontal faces in a BGR (or gray/BGRA) uint8 image.

        Raises:
            InvalidImageError: If ``image`` is not a uint8 (H, W), (H, W, 3) or (H, W, 4) array.
        """
        import cv2

        image = validate_image(image)
        if image.ndim == 2:
            gray = image
        elif image.shape[2] == 1:
            gray = image[:, :, 0]
        elif image.shape[2] == 4:
            gray = cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
        else:
            gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        gray = np.ascontiguousarray(gray)
        if self.equalize:
            gray = cv2.equalizeHist(gray)
        rects = self._classifier.detectMultiScale(
            gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, minSize=self.min_size
        )
        boxes = [
            (float(x), float(y), float(x + w), float(y + h))
            for x, y, w, h in np.asarray(rects).reshape(-1, 4)
        ]
        boxes.sort(key=lambda b: (-(b[2] - b[0]) * (b[3] - b[1]), b[1], b[0]))
        return [Detection(box=b, score=1.0) for b in boxes]

    def __repr__(self) -> str:
        return (
            f"HaarDetector(scale_factor={self.scale_factor}, min_neighbors={self.min_neighbors}, "
            f"min_size={self.min_size}, equalize={self.equalize})"
        )
