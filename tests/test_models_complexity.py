"""count_macs / count_parameters on layers whose counts are known by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mobilefer.errors import InvalidInputError
from mobilefer.models import MobileNetV2, count_macs, count_parameters


def test_macs_of_single_layers() -> None:
    # Conv 3->8, 3x3, 10x10 output: 8 * 3 * 9 MACs per pixel.
    assert count_macs(nn.Conv2d(3, 8, 3, padding=1), (10, 10)) == 8 * 3 * 9 * 100
    # Depthwise: one 3x3 filter per channel.
    assert count_macs(nn.Conv2d(3, 3, 3, padding=1, groups=3), (10, 10)) == 3 * 9 * 100
    # Stride 2 halves both output sides.
    assert count_macs(nn.Conv2d(3, 8, 3, stride=2, padding=1), (10, 10)) == 8 * 3 * 9 * 25
    assert count_macs(nn.Sequential(nn.Flatten(), nn.Linear(300, 5)), (10, 10)) == 1500
    # in_chans overrides the default of 3.
    assert count_macs(nn.Conv2d(1, 8, 1), (4, 4), in_chans=1) == 8 * 16


def test_macs_use_model_in_chans_and_restore_mode() -> None:
    model = MobileNetV2(num_classes=7, in_chans=1, width_mult=0.35)
    model.train()
    macs = count_macs(model, (48, 48))
    assert model.training
    # Stem at 48x48 gray with stride 2: 16 filters * 9 taps * 24 * 24 positions.
    stem = 16 * 9 * 24 * 24
    rgb = MobileNetV2(num_classes=7, in_chans=3, width_mult=0.35)
    assert count_macs(rgb, (48, 48)) - macs == 2 * stem
    model.eval()
    count_macs(model, (48, 48))
    assert not model.training


def test_macs_scale_with_resolution() -> None:
    # Every layer is convolutional except the classifier: 4x the pixels, 4x the conv MACs.
    model = MobileNetV2(num_classes=0, width_mult=0.5)
    assert count_macs(model, (128, 128)) == 4 * count_macs(model, (64, 64))


def test_parameter_counts() -> None:
    layer = nn.Linear(10, 4)
    assert count_parameters(layer) == 44
    layer.bias.requires_grad_(False)
    assert count_parameters(layer, trainable_only=True) == 40
    assert count_parameters(nn.BatchNorm2d(8)) == 16  # running stats are buffers


@pytest.mark.parametrize("size", [(224,), (0, 224), (224, -1), (2.0, 2), (224, 224, 3)])
def test_bad_input_size(size: tuple[float, ...]) -> None:
    with pytest.raises(InvalidInputError):
        count_macs(nn.Conv2d(3, 8, 1), size)  # type: ignore[arg-type]


def test_bad_in_chans() -> None:
    with pytest.raises(InvalidInputError):
        count_macs(nn.Conv2d(3, 8, 1), (4, 4), in_chans=0)
    assert torch.is_grad_enabled()
