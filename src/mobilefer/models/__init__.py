"""Hand-written mobile networks (MobileNetV1, MobileNetV2), converters from torchvision/timm weights
and complexity counters.

Importing this package imports torch but not timm or torchvision.
"""

from __future__ import annotations

from mobilefer.models._layers import ConvNormAct, make_divisible
from mobilefer.models.complexity import count_macs, count_parameters
from mobilefer.models.convert import (
    from_timm,
    from_torchvision,
    to_timm_state_dict,
    to_torchvision_state_dict,
)
from mobilefer.models.mobilenetv1 import MOBILENETV1_SETTING, DepthwiseSeparable, MobileNetV1
from mobilefer.models.mobilenetv2 import (
    MOBILENETV2_SETTING,
    FeatureInfo,
    InvertedResidual,
    MobileNetV2,
    validate_setting,
)

__all__ = [
    "MOBILENETV1_SETTING",
    "MOBILENETV2_SETTING",
    "ConvNormAct",
    "DepthwiseSeparable",
    "FeatureInfo",
    "InvertedResidual",
    "MobileNetV1",
    "MobileNetV2",
    "count_macs",
    "count_parameters",
    "from_timm",
    "from_torchvision",
    "make_divisible",
    "to_timm_state_dict",
    "to_torchvision_state_dict",
    "validate_setting",
]
