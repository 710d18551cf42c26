"""MobileNetV2 written by hand (Sandler et al., 2018, "MobileNetV2: Inverted Residuals and Linear
Bottlenecks"), weight-compatible with torchvision's and timm's MobileNetV2 through
:mod:`mobilefer.models.convert`.

Layout (stable module names, timm style)::

    stem        ConvNormAct 3x3, stride ``stem_stride`` (2 in the paper), 32*w channels
    blocks      7 stages (nn.Sequential), one per row of the (t, c, n, s) table, of InvertedResidual
    head        ConvNormAct 1x1 to ``make_divisible(1280 * max(1, w))`` channels
    global_pool adaptive average pool + flatten
    dropout
    classifier  nn.Linear
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from mobilefer.errors import InvalidInputError
from mobilefer.models._layers import ActLayer, ConvNormAct, NormLayer, make_divisible

__all__ = [
    "MOBILENETV2_SETTING",
    "FeatureInfo",
    "InvertedResidual",
    "MobileNetV2",
    "validate_setting",
]

#: The paper's Table 2: expansion factor t, output channels c, repeats n, first stride s.
MOBILENETV2_SETTING: tuple[tuple[int, int, int, int], ...] = (
    # t,   c, n, s
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


@dataclass(frozen=True)
class FeatureInfo:
    """One feature map exposed by ``forward_feature_maps``.

    Attributes:
        index: Position in the returned list.
        module: Name of the module whose output it is (e.g. ``"blocks.2"``).
        channels: Number of channels.
        reduction: Total stride relative to the input (2, 4, 8, 16 or 32 with the default stem).
    """

    index: int
    module: str
    channels: int
    reduction: int


def validate_setting(setting: Sequence[Sequence[int]]) -> tuple[tuple[int, int, int, int], ...]:
    """Check an inverted-residual (t, c, n, s) table and return it as a tuple of 4-tuples.

    Raises:
        InvalidInputError: If the table is empty, a row is not four positive integers, or a stride is
            not 1 or 2.
    """
    if len(setting) == 0:
        raise InvalidInputError("inverted_residual_setting must have at least one (t, c, n, s) row")
    rows: list[tuple[int, int, int, int]] = []
    for i, row in enumerate(setting):
        if len(row) != 4 or not all(isinstance(v, int) and not isinstance(v, bool) for v in row):
            raise InvalidInputError(
                f"inverted_residual_setting row {i} must be four integers (t, c, n, s), got {row!r}"
            )
        t, c, n, s = row
        if t < 1 or c < 1 or n < 1:
            raise InvalidInputError(f"inverted_residual_setting row {i}: t, c and n must be >= 1, got {row!r}")
        if s not in (1, 2):
            raise InvalidInputError(f"inverted_residual_setting row {i}: stride must be 1 or 2, got {s}")
        rows.append((t, c, n, s))
    return tuple(rows)


class InvertedResidual(nn.Module):
    """MobileNetV2 inverted residual block.

    1x1 expansion (BN + ReLU6; absent when ``expand_ratio == 1``) → 3x3 depthwise (BN + ReLU6) →
    1x1 *linear* projection (BN, no activation). The input is added back only when ``stride == 1``
    and ``in_channels == out_channels``.

    Submodules: ``conv_pw`` (or ``None``), ``conv_dw``, ``conv_pwl``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        expand_ratio: int,
        norm_layer: NormLayer = nn.BatchNorm2d,
        act_layer: ActLayer = nn.ReLU6,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise InvalidInputError(f"InvertedResidual stride must be 1 or 2, got {stride}")
        hidden = int(round(in_channels * expand_ratio))
        self.use_residual = stride == 1 and in_channels == out_channels
        self.conv_pw: ConvNormAct | None = (
            ConvNormAct(in_channels, hidden, 1, norm_layer=norm_layer, act_layer=act_layer)
            if expand_ratio != 1
            else None
        )
        self.conv_dw = ConvNormAct(
            hidden, hidden, 3, stride=stride, groups=hidden, norm_layer=norm_layer, act_layer=act_layer
        )
        self.conv_pwl = ConvNormAct(hidden, out_channels, 1, norm_layer=norm_layer, act_layer=None)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride
        self.expand_ratio = expand_ratio

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = x if self.conv_pw is None else self.conv_pw(x)
        out = self.conv_pwl(self.conv_dw(out))
        if self.use_residual:
            out = out + x
        return out


BlockFactory = Callable[..., nn.Module]


class MobileNetV2(nn.Module):
    """MobileNetV2 with width multiplier, grayscale input and an optional stride-1 stem.

    Args:
        num_classes: Classifier outputs (1000 for ImageNet, 7 for FER2013). 0 gives no classifier.
        width_mult: Channel multiplier (0.35, 0.5, 0.75, 1.0, 1.4 are the published widths).
        in_chans: Input channels, 1 (grayscale) or 3 (RGB).
        dropout: Dropout probability before the classifier.
        stem_stride: 2 (paper) or 1 (keeps resolution for small 48-64 px faces).
        inverted_residual_setting: The (t, c, n, s) table; defaults to :data:`MOBILENETV2_SETTING`.
        round_nearest: Channel counts are rounded to multiples of this.
        norm_layer: Normalisation factory, called with the channel count.
        block: Block factory with :class:`InvertedResidual`'s signature.
        features_only: If True, ``forward`` returns the list of feature maps of
            :meth:`forward_feature_maps` instead of logits.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        width_mult: float = 1.0,
        in_chans: int = 3,
        dropout: float = 0.2,
        stem_stride: int = 2,
        inverted_residual_setting: Sequence[Sequence[int]] | None = None,
        round_nearest: int = 8,
        norm_layer: NormLayer | None = None,
        block: BlockFactory | None = None,
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
        setting = validate_setting(
            MOBILENETV2_SETTING if inverted_residual_setting is None else inverted_residual_setting
        )
        norm = norm_layer if norm_layer is not None else nn.BatchNorm2d
        block_fn: BlockFactory = block if block is not None else InvertedResidual

        self.num_classes = num_classes
        self.width_mult = float(width_mult)
        self.in_chans = in_chans
        self.stem_stride = stem_stride
        self.features_only = features_only
        self.setting = setting

        stem_channels = make_divisible(32 * width_mult, round_nearest)
        self.num_features = make_divisible(1280 * max(1.0, width_mult), round_nearest)
        self.stem = ConvNormAct(in_chans, stem_channels, 3, stride=stem_stride, norm_layer=norm)

        stages: list[nn.Module] = []
        feature_info: list[FeatureInfo] = []
        channels = stem_channels
        reduction = stem_stride
        for stage_index, (t, c, n, s) in enumerate(setting):
            out_channels = make_divisible(c * width_mult, round_nearest)
            # A feature map is taken just before each stride-2 stage (and at the end).
            if s == 2 and stage_index > 0:
                feature_info.append(
                    FeatureInfo(len(feature_info), f"blocks.{stage_index - 1}", channels, reduction)
                )
            layers = []
            for i in range(n):
                layers.append(block_fn(channels, out_channels, s if i == 0 else 1, t, norm_layer=norm))
                channels = out_channels
            reduction *= s
            stages.append(nn.Sequential(*layers))
        self.blocks = nn.Sequential(*stages)
        self.head = ConvNormAct(channels, self.num_features, 1, norm_layer=norm)
        feature_info.append(FeatureInfo(len(feature_info), "head", self.num_features, reduction))
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
        """Stem → blocks → head; returns the last (N, num_features, H/32, W/32) feature map."""
        out: torch.Tensor = self.head(self.blocks(self.stem(x)))
        return out

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global pooling → dropout → classifier (or the pooled features if ``pre_logits``)."""
        x = self.dropout(self.global_pool(x))
        return x if pre_logits else self.classifier(x)

    def forward_feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps at reductions 2/4/8/16/32 (with the default stride-2 stem), see ``feature_info``."""
        wanted = {info.module for info in self.feature_info}
        maps: list[torch.Tensor] = []
        x = self.stem(x)
        for i, stage in enumerate(self.blocks):
            x = stage(x)
            if f"blocks.{i}" in wanted:
                maps.append(x)
        maps.append(self.head(x))
        return maps

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if self.features_only:
            return self.forward_feature_maps(x)
        return self.forward_head(self.forward_features(x))
