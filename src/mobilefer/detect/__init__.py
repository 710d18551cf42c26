"""Face detectors: UltraFace (RFB / slim, ported from the official networks) and OpenCV Haar.

Every detector has a ``name`` and ``detect(image_bgr_uint8) -> list[Detection]`` sorted by score,
highest first; :func:`create_detector` builds one by name.
"""

from __future__ import annotations

from mobilefer.detect.base import Detection, Detector
from mobilefer.detect.factory import DETECTOR_NAMES, create_detector
from mobilefer.detect.haar import HaarDetector
from mobilefer.detect.ultraface import (
    ULTRAFACE,
    ULTRAFACE_VARIANTS,
    UltraFaceConfig,
    UltraFaceDecoded,
    UltraFaceDetector,
    decode_boxes,
    generate_priors,
    load_ultraface_net,
    select_boxes,
)
from mobilefer.detect.ultraface_net import UltraFaceNet

__all__ = [
    "Detection",
    "Detector",
    "DETECTOR_NAMES",
    "create_detector",
    "HaarDetector",
    "ULTRAFACE",
    "ULTRAFACE_VARIANTS",
    "UltraFaceConfig",
    "UltraFaceDecoded",
    "UltraFaceDetector",
    "UltraFaceNet",
    "decode_boxes",
    "generate_priors",
    "load_ultraface_net",
    "select_boxes",
]
