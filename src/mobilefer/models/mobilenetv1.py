"""MobileNetV1 written by hand (Howard et al., 2017, "MobileNets: Efficient Convolutional Neural Networks
for Mobile Vision Applications").

Layout (stable module names, same conventions as :class:`~mobilefer.models.mobilenetv2.MobileNetV2`;
MobileNetV1 has no 1x1 head convolution)::

    stem        ConvNormAct 3x3, stride ``stem_stride`` (2 in the paper), 32*w channels
    blocks      5 stages (nn.Sequential), one per row of the (c, n, s) table, of DepthwiseSeparable
    global_pool adaptive average pool + flatten
    dropout
    classifier  nn.Linear

The 13 depthwise-separable blocks are grouped into stages by output resolution, as timm groups them,
so ``blocks.i.j`` names the same layer as timm's ``mobilenetv1_100`` (``conv_dw``/``conv_pw`` with
``ConvNormAct`` instead of timm's separate ``bn1``/``bn2``). Activations are ReLU6, as in timm and the
TF-slim reference, which keeps activations bounded for 8-bit inference.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mobilefer.errors import InvalidInputError
from mobilefer.models._layers import ActLayer, ConvNormAct, NormLayer, make_divisible
from mobilefer.models.mobilenetv2 import FeatureInfo

__all__ = ["MOBILENETV1_SETTING", "DepthwiseSeparable", "MobileNetV1", "validate_v1_setting"]

#: The paper's Table 1 as stages: output channels c, repeats n, first stride s (13 blocks in all).
MOBILENETV1_SETTING: tuple[tuple[int, int, int], ...] = (
    # c, n, s
    (64, 1, 1),
    (128, 2, 2),
    (256, 2, 2),
    (512, 6, 2),
    (1024, 2, 2),
)


def validate_v1_setting(setting: Sequence[Sequence[int]]) -> tuple[tuple[int, int, int], ...]:
    """Check a depthwise-separable (c, n, s) table and return it as a tuple of 3-tuples.

    Args:
        setting: Rows of (output channels, repeats, first stride).

    Returns:
        The table as a tuple of ``(c, n, s)`` tuples.

    Raises:
        InvalidInputError: If the table is empty, a row is not three positive integers, or a stride is
            not 1 or 2.
    """
    if len(setting) == 0:
        raise InvalidInputError("MobileNetV1 setting must have at least one (c, n, s) row")
    rows: list[tuple[int, int, int]] = []
    for i, row in enumerate(setting):
        if len(row) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) for v in row):
            raise InvalidInputError(
                f"MobileNetV1 setting row {i} must be three integers (c, n, s), got {row!r}"
            )
        c, n, s = row
        if c < 1 or n < 1:
            raise InvalidInputError(f"MobileNetV1 setting row {i}: c and n must be >= 1, got {row!r}")
        if s not in (1, 2):
            raise InvalidInputError(f"MobileNetV1 setting row {i}: stride must be 1 or 2, got {s}")
        rows.append((c, n, s))
    return tuple(rows)


class DepthwiseSeparable(nn.Module):
    """MobileNetV1 block: 3x3 depthwise conv (BN + act) → 1x1 pointwise conv (BN + act).

    Submodules: ``conv_dw``, ``conv_pw`` (both :class:`~mobilefer.models._layers.ConvNormAct`).
    There is no residual connection.

    Args:
        in_channels: Input channels.
        out_channels: Output channels of the pointwise conv.
        stride: Stride of the depthwise conv, 1 or 2.
        norm_layer: Normalisation factory, called with the channel count.
        act_layer: Activation factory.

    Raises:
        InvalidInputError: If ``stride`` is not 1 or 2.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        norm_layer: NormLayer = nn.BatchNorm2d,
        act_layer: ActLayer = nn.ReLU6,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise InvalidInputError(f"DepthwiseSeparable stride must be 1 or 2, got {stride}")
        self.conv_dw = ConvNormAct(
            in_channels,
            in_channels,
            3,
            stride=stride,
            groups=in_channels,
            norm_layer=norm_layer,
            act_layer=act_layer,
        )
        self.conv_pw = ConvNormAct(in_channels, out_channels, 1, norm_layer=norm_layer, act_layer=act_layer)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.conv_pw(self.conv_dw(x))
        return out


class MobileNetV1(nn.Module):
    """MobileNetV1 with width multiplier, grayscale input and an optional stride-1 stem.

    With the defaults (1000 classes, ``width_mult=1``) it has 4,231,976 parameters, the same as
    timm's ``mobilenetv1_100``.

    Args:
        num_classes: Classifier outputs (1000 for ImageNet, 7 for FER2013). 0 gives no classifier.
        width_mult: Channel multiplier; channels are ``make_divisible(c * width_mult, round_nearest)``.
        in_chans: Input channels, 1 (grayscale) or 3 (RGB).
        dropout: Dropout probability before the classifier.
        stem_stride: 2 (paper) or 1 (keeps resolution for small 48-64 px faces).
        setting: The (c, n, s) table; defaults to :data:`MOBILENETV1_SETTING`.
        round_nearest: Channel counts are rounded to multiples of this.
        norm_layer: Normalisation factory, called with the channel count.
        act_layer: Activation factory (ReLU6 by default).
        features_only: If True, ``forward`` returns the list of feature maps of
            :meth:`forward_feature_maps` instead of logits.

    Raises:
        InvalidInputError: If an argument is out of range.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        width_mult: float = 1.0,
        in_chans: int = 3,
        dropout: float = 0.2,
        stem_stride: int = 2,
        setting: Sequence[Sequence[int]] | None = None,
        round_nearest: int = 8,
        norm_layer: NormLayer | None = None,
        act_layer: ActLayer | None = None,
        features_only: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise InvalidInputError(f"num_classes must be an integer >= 0, got {num_classes!r}")
        if isinstance(width_mult, bool) or not isinstance(width_mult, (int, float)) or not width_mult > 0:
            raise InvalidInputError(f"width_mult must be a positive number, got {width_mult!r}")
        if in_chans not in (1, 3):
            raise InvalidInputError(f"in_chans must be 1 (grayscale) or 3 (RGB), got {in_chans!r}")
        if stem_stride not in (1, 2):
            raise InvalidInputError(f"stem_stride must be 1 or 2, got {stem_stride!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise InvalidInputError(f"dropout must be in [0, 1), got {dropout!r}")
        if isinstance(round_nearest, bool) or not isinstance(round_nearest, int) or round_nearest < 1:
            raise InvalidInputError(f"round_nearest must be a positive integer, got {round_nearest!r}")
        rows = validate_v1_setting(MOBILENETV1_SETTING if setting is None else setting)
        norm = norm_layer if norm_layer is not None else nn.BatchNorm2d
        act = act_layer if act_layer is not None else nn.ReLU6

        self.num_classes = num_classes
        self.width_mult = float(width_mult)
        self.in_chans = in_chans
        self.stem_stride = stem_stride
        self.features_only = features_only
        self.setting = rows

        stem_channels = make_divisible(32 * width_mult, round_nearest)
        self.stem = ConvNormAct(
            in_chans, stem_channels, 3, stride=stem_stride, norm_layer=norm, act_layer=act
        )

        stages: list[nn.Module] = []
        feature_info: list[FeatureInfo] = []
        channels = stem_channels
        reduction = stem_stride
        for stage_index, (c, n, s) in enumerate(rows):
            out_channels = make_divisible(c * width_mult, round_nearest)
            # A feature map is taken just before each stride-2 stage (and at the end).
            if s == 2 and stage_index > 0:
                feature_info.append(
                    FeatureInfo(len(feature_info), f"blocks.{stage_index - 1}", channels, reduction)
                )
            layers: list[nn.Module] = []
            for i in range(n):
                layers.append(
                    DepthwiseSeparable(
                        channels, out_channels, s if i == 0 else 1, norm_layer=norm, act_layer=act
                    )
                )
                channels = out_channels
            reduction *= s
            stages.append(nn.Sequential(*layers))
        self.blocks = nn.Sequential(*stages)
        self.num_features = channels
        feature_info.append(FeatureInfo(len(feature_info), f"blocks.{len(rows) - 1}", channels, reduction))
        self.feature_info: tuple[FeatureInfo, ...] = tuple(feature_info)

        self.global_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self.dropout = nn.Dropout(p=float(dropout))
        self.classifier: nn.Module = (
            nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        )
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Stem → blocks; returns the last (N, num_features, H/32, W/32) feature map."""
        out: torch.Tensor = self.blocks(self.stem(x))
        return out

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global pooling → dropout → classifier (or the pooled features if ``pre_logits``)."""
        pooled: torch.Tensor = self.dropout(self.global_pool(x))
        if pre_logits:
            return pooled
        logits: torch.Tensor = self.classifier(pooled)
        return logits

    def forward_feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps at reductions 2/4/8/16/32 (with the default stride-2 stem), see ``feature_info``."""
        wanted = {info.module for info in self.feature_info}
        maps: list[torch.Tensor] = []
        x = self.stem(x)
        for i, stage in enumerate(self.blocks):
            x = stage(x)
            if f"blocks.{i}" in wanted:
                maps.append(x)
        return maps

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if self.features_only:
            return self.forward_feature_maps(x)
        return self.forward_head(self.forward_features(x))
