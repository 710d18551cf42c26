"""Expression classification: presets, crop rules and the classifier."""

from __future__ import annotations

from mobilefer.classify.classifier import (
    DEFAULT_CLASSIFIER,
    FER2013_LABELS,
    ExpressionClassifier,
    default_checkpoint_path,
)
from mobilefer.preset import CropRule, Preset

__all__ = [
    "CropRule",
    "DEFAULT_CLASSIFIER",
    "ExpressionClassifier",
    "FER2013_LABELS",
    "Preset",
    "default_checkpoint_path",
]
