"""Input validation shared by the detectors."""

from __future__ import annotations

from typing import Any

import numpy as np

from mobilefer.errors import InvalidImageError

__all__ = ["validate_image"]


def validate_image(image: Any) -> np.ndarray:
    """Check that ``image`` is a uint8 gray (H, W), (H, W, 1), BGR (H, W, 3) or BGRA (H, W, 4) array.

    Returns:
        The same array (not copied, not converted).

    Raises:
        InvalidImageError: For anything else (type, dtype, shape, empty image).
    """
    if not isinstance(image, np.ndarray):
        raise InvalidImageError(f"detect() needs a numpy uint8 image array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise InvalidImageError(
            f"detect() needs a uint8 image (BGR, 0-255), got dtype {image.dtype}; convert with "
            "np.clip(x, 0, 255).astype(np.uint8) if it is a float image in pixel units"
        )
    shape_ok = image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3, 4))
    if not shape_ok:
        raise InvalidImageError(
            f"detect() needs an (H, W) gray, (H, W, 3) BGR or (H, W, 4) BGRA image, got shape {image.shape}"
        )
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise InvalidImageError(f"detect() got an empty image of shape {image.shape}")
    return image
