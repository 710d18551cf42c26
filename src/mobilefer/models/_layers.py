"""Small building blocks shared by the hand-written networks."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import torch
from torch import nn

__all__ = ["make_divisible", "ConvNormAct", "NormLayer", "ActLayer"]

NormLayer = Callable[[int], nn.Module]
ActLayer = Callable[[], nn.Module]

#: Activations built in place (they follow a BatchNorm whose output nobody else reads): saves one
#: allocation and one memory pass per layer, as torchvision and timm do (nn.ReLU6 is an nn.Hardtanh).
_INPLACE_ACTS = (nn.ReLU, nn.Hardtanh, nn.SiLU, nn.Hardswish, nn.LeakyReLU, nn.ELU)


def _make_act(act_layer: ActLayer) -> nn.Module:
    inplace = isinstance(act_layer, type) and issubclass(act_layer, _INPLACE_ACTS)
    module: nn.Module = cast(Callable[..., nn.Module], act_layer)(inplace=True) if inplace else act_layer()
    return module


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None, round_limit: float = 0.9) -> int:
    """Round ``value`` to the nearest multiple of ``divisor`` without going below ``round_limit * value``.

    This is the channel-rounding rule of the MobileNet papers' reference code (and of torchvision
    and timm), so width-multiplied networks have the same channel counts as theirs.

    Args:
        value: The unrounded channel count (e.g. ``32 * width_mult``).
        divisor: Channels are made a multiple of this.
        min_value: Lower bound of the result; defaults to ``divisor``.
        round_limit: Rounding down may not lose more than ``1 - round_limit`` of ``value``.

    Returns:
        The rounded channel count.
    """
    min_value = divisor if min_value is None else min_value
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < round_limit * value:
        new_value += divisor
    return new_value


class ConvNormAct(nn.Module):
    """``Conv2d`` (no bias) → norm → optional activation, with stable submodule names.

    Submodules are ``conv``, ``bn`` and ``act`` (``nn.Identity`` when ``act_layer`` is ``None``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        stride: int = 1,
        groups: int = 1,
        norm_layer: NormLayer = nn.BatchNorm2d,
        act_layer: ActLayer | None = nn.ReLU6,
    ) -> None:
        super().__init__()
        padding = (kernel_size - 1) // 2
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, groups=groups, bias=False
        )
        self.bn = norm_layer(out_channels)
        self.act: nn.Module = _make_act(act_layer) if act_layer is not None else nn.Identity()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.act(self.bn(self.conv(x)))
        return out
