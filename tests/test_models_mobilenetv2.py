"""MobileNetV2: shapes, gradients, block semantics, validation, parameter and MAC counts, feature maps."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mobilefer.errors import InvalidInputError
from mobilefer.models import (
    MOBILENETV2_SETTING,
    InvertedResidual,
    MobileNetV2,
    count_macs,
    count_parameters,
    make_divisible,
    validate_setting,
)

WIDTHS = (0.35, 0.5, 0.75, 1.0, 1.4)
TIMM_NAMES = {
    0.35: "mobilenetv2_035",
    0.5: "mobilenetv2_050",
    0.75: "mobilenetv2_075",
    1.0: "mobilenetv2_100",
    1.4: "mobilenetv2_140",
}
# Measured, and equal to torchvision's and timm's (checked below against the live libraries).
PARAMS_1000 = {0.35: 1_677_128, 0.5: 1_968_680, 0.75: 2_636_424, 1.0: 3_504_872, 1.4: 6_108_776}


def _blocks(model: MobileNetV2) -> list[InvertedResidual]:
    blocks = [block for stage in model.blocks for block in stage]
    assert all(isinstance(block, InvertedResidual) for block in blocks)
    return blocks


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("in_chans", [1, 3])
@pytest.mark.parametrize("stem_stride", [1, 2])
def test_output_shapes_and_finite(width: float, in_chans: int, stem_stride: int) -> None:
    torch.manual_seed(0)
    model = MobileNetV2(num_classes=7, width_mult=width, in_chans=in_chans, stem_stride=stem_stride).eval()
    x = torch.randn(2, in_chans, 64, 64)
    with torch.no_grad():
        features = model.forward_features(x)
        logits = model(x)
        pooled = model.forward_head(features, pre_logits=True)
    side = 64 // (16 * stem_stride)
    assert features.shape == (2, model.num_features, side, side)
    assert model.num_features == make_divisible(1280 * max(1.0, width))
    assert isinstance(logits, torch.Tensor) and logits.shape == (2, 7)
    assert pooled.shape == (2, model.num_features)
    assert torch.isfinite(features).all() and torch.isfinite(logits).all()


def test_num_classes_zero_returns_pooled_features() -> None:
    model = MobileNetV2(num_classes=0, width_mult=0.5).eval()
    out = model(torch.randn(1, 3, 64, 64))
    assert isinstance(out, torch.Tensor) and out.shape == (1, 1280)


def test_gradients_reach_every_parameter() -> None:
    # Eval mode: in train mode a BN bias feeding straight into another BN gets an (almost) zero gradient
    # by construction, which would make "every gradient non-zero" a statement about float noise.
    torch.manual_seed(0)
    model = MobileNetV2(num_classes=7, width_mult=0.5, in_chans=1, stem_stride=1).eval()
    logits = model(torch.randn(2, 1, 48, 48))
    assert isinstance(logits, torch.Tensor)
    (logits * torch.randn_like(logits)).sum().backward()
    params = dict(model.named_parameters())
    assert len(params) == 158
    for name, param in params.items():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def test_residual_iff_stride_one_and_same_channels() -> None:
    model = MobileNetV2()
    blocks = _blocks(model)
    assert len(blocks) == 17
    for block in blocks:
        assert block.use_residual == (block.stride == 1 and block.in_channels == block.out_channels)
    # Repeats after the first block of each stage: 0 + 1 + 2 + 3 + 2 + 2 + 0.
    assert sum(block.use_residual for block in blocks) == 10
    assert [block.stride for block in blocks] == [1, 2, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1]


def test_residual_is_functional() -> None:
    torch.manual_seed(0)
    block = InvertedResidual(24, 24, stride=1, expand_ratio=6).eval()
    assert block.use_residual
    x = torch.randn(2, 24, 8, 8)
    # With the projection's BN zeroed, the block's branch is zero and only the shortcut remains.
    with torch.no_grad():
        block.conv_pwl.bn.weight.zero_()
        block.conv_pwl.bn.bias.zero_()
        assert torch.equal(block(x), x)
    plain = InvertedResidual(24, 32, stride=1, expand_ratio=6).eval()
    assert not plain.use_residual
    with torch.no_grad():
        plain.conv_pwl.bn.weight.zero_()
        plain.conv_pwl.bn.bias.zero_()
        assert torch.equal(plain(x), torch.zeros(2, 32, 8, 8))
    strided = InvertedResidual(24, 24, stride=2, expand_ratio=6)
    assert not strided.use_residual


def test_expansion_one_has_no_pointwise_expansion() -> None:
    model = MobileNetV2()
    blocks = _blocks(model)
    assert blocks[0].expand_ratio == 1 and blocks[0].conv_pw is None
    assert all(block.conv_pw is not None for block in blocks[1:])
    lone = InvertedResidual(16, 16, stride=1, expand_ratio=1)
    assert lone.conv_pw is None
    assert not any(name.startswith("conv_pw.") for name, _ in lone.named_parameters())
    assert lone.conv_dw.conv.in_channels == 16  # depthwise runs directly on the input


def test_projection_is_linear() -> None:
    torch.manual_seed(0)
    model = MobileNetV2().eval()
    for block in _blocks(model):
        assert isinstance(block.conv_pwl.act, nn.Identity)
        assert isinstance(block.conv_dw.act, nn.ReLU6)
        if block.conv_pw is not None:
            assert isinstance(block.conv_pw.act, nn.ReLU6)
    # A non-residual block's output is the projection alone: it must take negative values.
    block = _blocks(model)[1]
    assert not block.use_residual
    with torch.no_grad():
        out = block(torch.randn(2, 16, 16, 16))
    assert (out < 0).any() and (out > 0).any()
    # Whereas the depthwise stage's output is clipped to [0, 6].
    with torch.no_grad():
        hidden = block.conv_dw(block.conv_pw(torch.randn(2, 16, 16, 16)))
    assert hidden.min() >= 0 and hidden.max() <= 6


def test_state_dict_keys_are_frozen() -> None:
    keys = list(MobileNetV2().state_dict())
    assert len(keys) == 314
    assert keys[:2] == ["stem.conv.weight", "stem.bn.weight"]
    assert keys[-2:] == ["classifier.weight", "classifier.bias"]
    for key in (
        "blocks.0.0.conv_dw.conv.weight",
        "blocks.0.0.conv_pwl.bn.running_var",
        "blocks.1.0.conv_pw.conv.weight",
        "blocks.6.0.conv_pwl.bn.num_batches_tracked",
        "head.conv.weight",
        "head.bn.running_mean",
    ):
        assert key in keys
    assert not any(key.startswith("blocks.0.0.conv_pw.") for key in keys)


@pytest.mark.parametrize(
    "setting",
    [
        [],
        [(1, 16, 1)],
        [(1, 16, 1, 1, 1)],
        [(0, 16, 1, 1)],
        [(1, 0, 1, 1)],
        [(1, 16, 0, 1)],
        [(1, 16, 1, 3)],
        [(1, 16, 1, 0)],
        [(1, 16, 1.5, 1)],
        [(True, 16, 1, 1)],
        [(1, 16, 1, 1), (6, 24, 2, -2)],
    ],
)
def test_validate_setting_rejects(setting: list[tuple[float, ...]]) -> None:
    with pytest.raises(InvalidInputError):
        validate_setting(setting)
    with pytest.raises(InvalidInputError):
        MobileNetV2(inverted_residual_setting=setting)


def test_validate_setting_accepts_lists() -> None:
    assert validate_setting([list(row) for row in MOBILENETV2_SETTING]) == MOBILENETV2_SETTING
    small = MobileNetV2(num_classes=3, inverted_residual_setting=[[1, 16, 1, 1], [6, 24, 2, 2]])
    assert len(small.blocks) == 2 and small.feature_info[-1].reduction == 4


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_classes": -1},
        {"num_classes": 2.0},
        {"num_classes": True},
        {"width_mult": 0},
        {"width_mult": -0.5},
        {"width_mult": "1.0"},
        {"in_chans": 2},
        {"in_chans": 4},
        {"stem_stride": 3},
        {"stem_stride": 0},
        {"dropout": 1.0},
        {"dropout": -0.1},
    ],
)
def test_bad_constructor_arguments(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError):
        MobileNetV2(**kwargs)


def test_bad_block_stride() -> None:
    with pytest.raises(InvalidInputError):
        InvertedResidual(16, 16, stride=3, expand_ratio=6)


@pytest.mark.parametrize("width", WIDTHS)
def test_parameter_count_matches_torchvision_and_timm(width: float) -> None:
    timm = pytest.importorskip("timm")
    torchvision = pytest.importorskip("torchvision")
    ours = count_parameters(MobileNetV2(width_mult=width))
    assert ours == PARAMS_1000[width]
    assert ours == count_parameters(torchvision.models.mobilenet_v2(width_mult=width))
    assert ours == count_parameters(timm.create_model(TIMM_NAMES[width], pretrained=False))


def test_parameter_count_fer_head() -> None:
    # Only the classifier changes with the number of classes: 1280 * (1000 - 7) + (1000 - 7) fewer.
    assert count_parameters(MobileNetV2(num_classes=7)) == 3_504_872 - 1281 * 993
    # Grayscale stem: 32 * 3 * 3 * (3 - 1) fewer weights.
    assert count_parameters(MobileNetV2(in_chans=1)) == 3_504_872 - 576


def test_macs_at_224() -> None:
    torchvision = pytest.importorskip("torchvision")
    macs = count_macs(MobileNetV2())
    assert macs == 300_774_272
    assert round(macs / 1e6, 1) == 300.8
    assert macs == count_macs(torchvision.models.mobilenet_v2())


def test_macs_of_other_widths() -> None:
    # Exact integers measured with FlopCounterMode (conv and linear multiply-accumulates).
    assert count_macs(MobileNetV2(width_mult=0.35)) == 59_285_808
    assert count_macs(MobileNetV2(width_mult=0.5)) == 97_131_840


@pytest.mark.parametrize(
    ("width", "channels"),
    [(1.0, [16, 24, 32, 96, 1280]), (0.5, [8, 16, 16, 48, 1280]), (1.4, [24, 32, 48, 136, 1792])],
)
@pytest.mark.parametrize("stem_stride", [1, 2])
def test_feature_maps(width: float, channels: list[int], stem_stride: int) -> None:
    model = MobileNetV2(width_mult=width, stem_stride=stem_stride, features_only=True).eval()
    reductions = [r // (2 // stem_stride) for r in (2, 4, 8, 16, 32)]
    assert [info.channels for info in model.feature_info] == channels
    assert [info.reduction for info in model.feature_info] == reductions
    assert [info.module for info in model.feature_info] == [
        "blocks.0",
        "blocks.1",
        "blocks.2",
        "blocks.4",
        "head",
    ]
    assert [info.index for info in model.feature_info] == [0, 1, 2, 3, 4]
    with torch.no_grad():
        maps = model(torch.randn(1, 3, 64, 64))
    assert isinstance(maps, list) and len(maps) == 5
    for fmap, info in zip(maps, model.feature_info, strict=True):
        assert fmap.shape == (1, info.channels, 64 // info.reduction, 64 // info.reduction)
    # The last map is what forward_features returns.
    with torch.no_grad():
        x = torch.randn(1, 3, 64, 64)
        assert torch.equal(model.forward_feature_maps(x)[-1], model.forward_features(x))


def test_activations_run_in_place_and_custom_factories_still_work() -> None:
    block = InvertedResidual(16, 16, 1, 6)
    acts = [m for m in block.modules() if isinstance(m, nn.ReLU6)]
    assert len(acts) == 2 and all(a.inplace for a in acts)
    # In-place activations must not touch the residual input or break autograd.
    x = torch.randn(2, 16, 8, 8, requires_grad=True)
    before = x.detach().clone()
    block.train()(x).sum().backward()
    assert torch.equal(x.detach(), before) and x.grad is not None and torch.isfinite(x.grad).all()
    # A factory that is not a class (here one that takes no inplace argument) is called as given.
    gelu = InvertedResidual(16, 24, 2, 6, act_layer=lambda: nn.GELU())
    assert sum(isinstance(m, nn.GELU) for m in gelu.modules()) == 2
    assert gelu(torch.randn(1, 16, 8, 8)).shape == (1, 24, 4, 4)
