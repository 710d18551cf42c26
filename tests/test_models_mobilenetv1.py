"""MobileNetV1: counts and numerical parity with timm, shapes, gradients, feature maps, validation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mobilefer.errors import InvalidInputError
from mobilefer.models import (
    MOBILENETV1_SETTING,
    DepthwiseSeparable,
    MobileNetV1,
    count_macs,
    count_parameters,
)
from mobilefer.models.mobilenetv1 import validate_v1_setting


def _randomize_bn(model: nn.Module, seed: int, in_chans: int = 3) -> None:
    """Random BN affine parameters and running statistics that still let the input through.

    Running statistics are first set to the batch statistics of a random batch (momentum 1), then
    jittered: plain random statistics make a deep random network's output nearly independent of its
    input, and a parity test on such outputs would prove little.
    """
    generator = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for m in bns:
            m.weight.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
            m.bias.copy_(torch.randn(m.num_features, generator=generator) * 0.2)
            m.momentum = 1.0
        was_training = model.training
        model.train()
        model(torch.randn(4, in_chans, 64, 64, generator=generator))
        model.train(was_training)
        for m in bns:
            m.momentum = 0.1
            n = m.num_features
            m.running_mean.add_(torch.randn(n, generator=generator) * 0.1 * m.running_var.sqrt())
            m.running_var.mul_(torch.rand(n, generator=generator) * 0.7 + 0.7)
            m.num_batches_tracked.fill_(int(torch.randint(1, 1000, (1,), generator=generator)))


def _timm_v1_key(ours: str) -> str:
    """Our MobileNetV1 key → timm ``mobilenetv1_*`` key (the layouts differ only in conv/BN names)."""
    for old, new in (
        ("stem.conv.", "conv_stem."),
        ("stem.bn.", "bn1."),
        ("conv_dw.conv.", "conv_dw."),
        ("conv_dw.bn.", "bn1."),
        ("conv_pw.conv.", "conv_pw."),
        ("conv_pw.bn.", "bn2."),
    ):
        if ours.startswith(old) or f".{old}" in ours:
            return ours.replace(old, new)
    return ours


def test_parameter_count() -> None:
    assert count_parameters(MobileNetV1()) == 4_231_976
    assert count_parameters(MobileNetV1(num_classes=7, in_chans=1)) == 4_231_976 - 1025 * 993 - 576


@pytest.mark.parametrize(
    ("width", "name", "params"), [(1.0, "mobilenetv1_100", 4_231_976), (1.25, "mobilenetv1_125", 6_270_840)]
)
def test_parameter_count_matches_timm(width: float, name: str, params: int) -> None:
    timm = pytest.importorskip("timm")
    assert count_parameters(MobileNetV1(width_mult=width)) == params
    assert count_parameters(timm.create_model(name, pretrained=False)) == params


def test_macs_at_224() -> None:
    macs = count_macs(MobileNetV1())
    assert macs == 568_740_352  # the paper's 569M mult-adds
    assert round(macs / 1e6) == 569


def test_structure() -> None:
    model = MobileNetV1()
    blocks = [block for stage in model.blocks for block in stage]
    assert len(blocks) == 13
    assert all(isinstance(block, DepthwiseSeparable) for block in blocks)
    assert [block.stride for block in blocks] == [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1]
    assert [block.out_channels for block in blocks] == [64, 128, 128, 256, 256] + [512] * 6 + [1024] * 2
    assert model.stem.conv.stride == (2, 2) and model.stem.out_channels == 32
    assert not hasattr(model, "head")
    assert model.num_features == 1024
    top = [name for name, _ in model.named_children()]
    assert top == ["stem", "blocks", "global_pool", "dropout", "classifier"]
    for block in blocks:
        assert block.conv_dw.conv.groups == block.in_channels  # depthwise
        assert block.conv_pw.conv.kernel_size == (1, 1)
        assert isinstance(block.conv_pw.act, nn.ReLU6)  # V1 has no linear bottleneck


@pytest.mark.parametrize("width", [0.25, 0.5, 1.0])
@pytest.mark.parametrize(("in_chans", "stem_stride"), [(1, 1), (3, 2), (1, 2)])
def test_output_shapes_and_finite(width: float, in_chans: int, stem_stride: int) -> None:
    torch.manual_seed(0)
    model = MobileNetV1(num_classes=7, width_mult=width, in_chans=in_chans, stem_stride=stem_stride).eval()
    x = torch.randn(2, in_chans, 64, 64)
    with torch.no_grad():
        features = model.forward_features(x)
        logits = model.forward_head(features)
    side = 64 // (16 * stem_stride)
    assert features.shape == (2, model.num_features, side, side)
    assert logits.shape == (2, 7)
    assert torch.isfinite(logits).all()


def test_gradients_reach_every_parameter() -> None:
    torch.manual_seed(0)
    model = MobileNetV1(num_classes=7, width_mult=0.5, in_chans=1).eval()
    logits = model(torch.randn(2, 1, 64, 64))
    assert isinstance(logits, torch.Tensor)
    (logits * torch.randn_like(logits)).sum().backward()
    params = dict(model.named_parameters())
    assert len(params) == 3 + 13 * 6 + 2
    for name, param in params.items():
        assert param.grad is not None, name
        assert param.grad.abs().sum() > 0, name


@pytest.mark.parametrize("width", [1.0, 1.25])
def test_parity_with_timm(width: float) -> None:
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    name = {1.0: "mobilenetv1_100", 1.25: "mobilenetv1_125"}[width]
    reference = timm.create_model(name, pretrained=False).eval()
    _randomize_bn(reference, seed=1)
    model = MobileNetV1(width_mult=width).eval()
    theirs = reference.state_dict()
    mapped = {key: theirs[_timm_v1_key(key)] for key in model.state_dict()}
    assert len({_timm_v1_key(key) for key in mapped}) == len(theirs)  # every timm key used exactly once
    model.load_state_dict(mapped, strict=True)
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        ref_features = reference.forward_features(x)
        ours_features = model.forward_features(x)
        ref_logits, ours_logits = reference(x), model(x)
    assert isinstance(ours_logits, torch.Tensor)
    # Not a degenerate comparison between near-constant, input-independent maps.
    assert ref_features.std() > 0.1 and (ref_features[0] - ref_features[1]).abs().mean() > 0.05
    assert (ours_features - ref_features).abs().max() <= 1e-5
    assert (ours_logits - ref_logits).abs().max() <= 1e-5


@pytest.mark.parametrize("stem_stride", [1, 2])
def test_feature_maps(stem_stride: int) -> None:
    model = MobileNetV1(width_mult=0.5, stem_stride=stem_stride, features_only=True).eval()
    assert [info.channels for info in model.feature_info] == [32, 64, 128, 256, 512]
    assert [info.reduction for info in model.feature_info] == [
        r // (2 // stem_stride) for r in (2, 4, 8, 16, 32)
    ]
    assert [info.module for info in model.feature_info] == [f"blocks.{i}" for i in range(5)]
    with torch.no_grad():
        maps = model(torch.randn(1, 3, 64, 64))
    assert isinstance(maps, list) and len(maps) == 5
    for fmap, info in zip(maps, model.feature_info, strict=True):
        assert fmap.shape == (1, info.channels, 64 // info.reduction, 64 // info.reduction)
    full = MobileNetV1(width_mult=1.0)
    assert [info.channels for info in full.feature_info] == [64, 128, 256, 512, 1024]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_classes": -1},
        {"num_classes": True},
        {"width_mult": 0},
        {"width_mult": None},
        {"in_chans": 2},
        {"stem_stride": 4},
        {"dropout": 1.5},
        {"round_nearest": 0},
        {"setting": []},
        {"setting": [(64, 1)]},
        {"setting": [(64, 0, 1)]},
        {"setting": [(64, 1, 3)]},
        {"setting": [(64.0, 1, 1)]},
    ],
)
def test_bad_constructor_arguments(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError):
        MobileNetV1(**kwargs)


def test_setting_table_and_block_validation() -> None:
    assert validate_v1_setting([list(row) for row in MOBILENETV1_SETTING]) == MOBILENETV1_SETTING
    assert sum(n for _c, n, _s in MOBILENETV1_SETTING) == 13
    with pytest.raises(InvalidInputError):
        DepthwiseSeparable(8, 8, stride=3)
