"""The UltraFace networks (Ultra-Light-Fast-Generic-Face-Detector-1MB) as plain torch modules.

Two backbones exist: ``"rfb"`` (with one receptive-field block, more accurate) and ``"slim"`` (plain
depthwise-separable convolutions, faster). Both are an SSD with four detection heads at strides 8, 16,
32 and 64 of the input. Module names are chosen so that the official ``version-RFB-320.pth`` and
``version-slim-320.pth`` state dicts load with ``strict=True``:

* ``base_net`` — ``nn.Sequential`` of 13 stages; stage 0 is ``conv, bn, relu``; the other stages are
  depthwise-separable blocks ``(dw conv, bn, relu, pw conv, bn, relu)``, except stage 7 of the RFB
  backbone, which is a :class:`BasicRFB`.
* ``extras`` — one block that halves the stride-64 feature map's resolution again.
* ``classification_headers`` / ``regression_headers`` — four heads each (three separable, the last a
  plain 3x3 convolution).

``forward`` returns what the official ``*_without_postprocessing.onnx`` graphs output (checked by
reading those graphs): ``scores`` (N, A, 2), already soft-maxed over ``(background, face)``, and the
raw box regressions (N, A, 4) *before* prior decoding (``boxes`` in the ONNX). Decoding lives in
:mod:`mobilefer.detect.ultraface`.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from mobilefer.errors import InvalidInputError

__all__ = ["UltraFaceNet", "BasicRFB", "Backbone", "BACKBONES", "ANCHORS_PER_HEAD", "HEAD_CHANNELS"]

Backbone = Literal["rfb", "slim"]
BACKBONES: tuple[Backbone, ...] = ("rfb", "slim")

#: Priors per feature-map cell of each of the four heads (the number of ``min_boxes`` per head).
ANCHORS_PER_HEAD: tuple[int, ...] = (3, 2, 2, 3)
#: Input channels of each of the four heads.
HEAD_CHANNELS: tuple[int, ...] = (64, 128, 256, 256)

_BASE = 16  # channels of the first stage; later stages use multiples of it.
# base_net stage boundaries: heads 0, 1 and 2 read the output of stages 0-7, 8-10 and 11-12.
_HEAD_SPLITS: tuple[tuple[int, int], ...] = ((0, 8), (8, 11), (11, 13))


def _conv_bn_relu(cin: int, cout: int, stride: int) -> nn.Sequential:
    """3x3 convolution, batch norm, ReLU (indices 0, 1, 2)."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def _separable_bn(cin: int, cout: int, stride: int) -> nn.Sequential:
    """Depthwise 3x3 + BN + ReLU followed by pointwise 1x1 + BN + ReLU (indices 0-5)."""
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride=stride, padding=1, groups=cin, bias=False),
        nn.BatchNorm2d(cin),
        nn.ReLU(inplace=True),
        nn.Conv2d(cin, cout, 1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def _separable_head(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """Depthwise 3x3 (with bias) + ReLU + pointwise 1x1 (with bias), no batch norm (indices 0-2)."""
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride=stride, padding=1, groups=cin),
        nn.ReLU(),
        nn.Conv2d(cin, cout, 1),
    )


class _ConvBN(nn.Module):
    """Convolution without bias, batch norm (eps 1e-5), optional ReLU; submodules ``conv`` and ``bn``."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int,
        *,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        relu: bool = True,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            cin, cout, kernel, stride=stride, padding=padding, dilation=dilation, bias=False
        )
        self.bn = nn.BatchNorm2d(cout, eps=1e-5, momentum=0.01)
        self.act: nn.Module = nn.ReLU(inplace=True) if relu else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.act(self.bn(self.conv(x)))
        return out


class BasicRFB(nn.Module):
    """Receptive-field block: three dilated branches, concatenated, projected, plus a 1x1 shortcut.

    Each branch reduces the input to ``cin // reduce`` channels with a 1x1 convolution, then applies
    3x3 convolutions ending in one with dilation 2, 3 or 5 (``vision`` + 1, + 2, + 4). The branch
    outputs are concatenated, projected back by ``ConvLinear``, scaled by ``scale``, added to the
    ``shortcut`` projection of the input and passed through a ReLU.
    """

    def __init__(
        self, cin: int, cout: int, *, stride: int = 1, scale: float = 1.0, reduce: int = 8, vision: int = 1
    ) -> None:
        super().__init__()
        self.scale = scale
        mid = cin // reduce
        wide = 2 * mid
        self.branch0 = nn.Sequential(
            _ConvBN(cin, mid, 1, relu=False),
            _ConvBN(mid, wide, 3, stride=stride, padding=1),
            _ConvBN(wide, wide, 3, padding=vision + 1, dilation=vision + 1, relu=False),
        )
        self.branch1 = nn.Sequential(
            _ConvBN(cin, mid, 1, relu=False),
            _ConvBN(mid, wide, 3, stride=stride, padding=1),
            _ConvBN(wide, wide, 3, padding=vision + 2, dilation=vision + 2, relu=False),
        )
        three_halves = (mid // 2) * 3
        self.branch2 = nn.Sequential(
            _ConvBN(cin, mid, 1, relu=False),
            _ConvBN(mid, three_halves, 3, padding=1),
            _ConvBN(three_halves, wide, 3, stride=stride, padding=1),
            _ConvBN(wide, wide, 3, padding=vision + 4, dilation=vision + 4, relu=False),
        )
        self.ConvLinear = _ConvBN(3 * wide, cout, 1, relu=False)
        self.shortcut = _ConvBN(cin, cout, 1, stride=stride, relu=False)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = torch.cat((self.branch0(x), self.branch1(x), self.branch2(x)), dim=1)
        out: torch.Tensor = self.relu(self.ConvLinear(branches) * self.scale + self.shortcut(x))
        return out


def _backbone(arch: Backbone) -> nn.Sequential:
    c = _BASE
    stage7: nn.Module = BasicRFB(4 * c, 4 * c, scale=1.0) if arch == "rfb" else _separable_bn(4 * c, 4 * c, 1)
    return nn.Sequential(
        _conv_bn_relu(3, c, 2),  # stride 2
        _separable_bn(c, 2 * c, 1),
        _separable_bn(2 * c, 2 * c, 2),  # stride 4
        _separable_bn(2 * c, 2 * c, 1),
        _separable_bn(2 * c, 4 * c, 2),  # stride 8
        _separable_bn(4 * c, 4 * c, 1),
        _separable_bn(4 * c, 4 * c, 1),
        stage7,  # -> head 0
        _separable_bn(4 * c, 8 * c, 2),  # stride 16
        _separable_bn(8 * c, 8 * c, 1),
        _separable_bn(8 * c, 8 * c, 1),  # -> head 1
        _separable_bn(8 * c, 16 * c, 2),  # stride 32
        _separable_bn(16 * c, 16 * c, 1),  # -> head 2
    )


def _head(i: int, per_anchor: int) -> nn.Module:
    cout = ANCHORS_PER_HEAD[i] * per_anchor
    if i == len(ANCHORS_PER_HEAD) - 1:
        return nn.Conv2d(HEAD_CHANNELS[i], cout, 3, padding=1)
    return _separable_head(HEAD_CHANNELS[i], cout)


class UltraFaceNet(nn.Module):
    """UltraFace SSD network (backbone + heads), without prior decoding or NMS.

    Args:
        arch: ``"rfb"`` or ``"slim"``; detector variant names such as ``"ultraface-rfb-320"`` are
            accepted too and map to their backbone.
        num_classes: Classes including background (the official models have 2).

    Input: (N, 3, H, W) float32, RGB, ``(pixel - 127) / 128``. Works for any H, W; each head's feature
    map is ``ceil(size / stride)`` for strides 8, 16, 32, 64, so the output length equals the number
    of priors of :func:`mobilefer.detect.ultraface.generate_priors` for the same size.

    Raises:
        InvalidInputError: If ``arch`` is unknown or ``num_classes < 2``.
    """

    def __init__(self, arch: str = "rfb", num_classes: int = 2) -> None:
        super().__init__()
        self.arch: Backbone = _parse_arch(arch)
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
            raise InvalidInputError(f"num_classes must be an int >= 2, got {num_classes!r}")
        self.num_classes = num_classes
        c = _BASE
        self.base_net = _backbone(self.arch)
        self.extras = nn.ModuleList(
            [
                nn.Sequential(
                    nn.Conv2d(16 * c, 4 * c, 1),
                    nn.ReLU(),
                    _separable_head(4 * c, 16 * c, stride=2),
                    nn.ReLU(),
                )
            ]
        )
        n_heads = len(ANCHORS_PER_HEAD)
        self.classification_headers = nn.ModuleList([_head(i, num_classes) for i in range(n_heads)])
        self.regression_headers = nn.ModuleList([_head(i, 4) for i in range(n_heads)])

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The four feature maps the heads read (strides 8, 16, 32, 64)."""
        maps: list[torch.Tensor] = []
        for start, stop in _HEAD_SPLITS:
            for i in range(start, stop):
                x = self.base_net[i](x)
            maps.append(x)
        for block in self.extras:
            x = block(x)
            maps.append(x)
        return maps

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the network.

        Args:
            x: (N, 3, H, W) normalised RGB batch.

        Returns:
            ``(scores, locations)``: (N, A, num_classes) soft-maxed class probabilities and (N, A, 4)
            raw regressions ``(dx, dy, dw, dh)`` relative to the priors (not yet decoded).
        """
        n = x.shape[0]
        logits: list[torch.Tensor] = []
        locations: list[torch.Tensor] = []
        for i, fmap in enumerate(self.feature_maps(x)):
            conf = self.classification_headers[i](fmap).permute(0, 2, 3, 1)
            loc = self.regression_headers[i](fmap).permute(0, 2, 3, 1)
            logits.append(conf.reshape(n, -1, self.num_classes))
            locations.append(loc.reshape(n, -1, 4))
        scores = torch.softmax(torch.cat(logits, dim=1), dim=2)
        return scores, torch.cat(locations, dim=1)


def _parse_arch(arch: str) -> Backbone:
    key = arch.lower() if isinstance(arch, str) else arch
    for name in BACKBONES:
        if key == name or key == f"ultraface-{name}-320":
            return name
    raise InvalidInputError(
        f"unknown UltraFace backbone {arch!r}; expected one of {list(BACKBONES)} "
        "(or 'ultraface-rfb-320' / 'ultraface-slim-320')"
    )
