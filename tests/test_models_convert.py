"""torchvision/timm MobileNetV2 weights → ours and back: numerical parity, inference, strictness."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from mobilefer.errors import InvalidInputError, ModelFormatError
from mobilefer.models import (
    MobileNetV2,
    from_timm,
    from_torchvision,
    to_timm_state_dict,
    to_torchvision_state_dict,
)
from mobilefer.models.convert import infer_width_mult, timm_key_map, torchvision_key_map

timm = pytest.importorskip("timm")
torchvision = pytest.importorskip("torchvision")

WIDTHS = (0.35, 0.5, 0.75, 1.0, 1.4)
TIMM_NAMES = {
    0.35: "mobilenetv2_035",
    0.5: "mobilenetv2_050",
    0.75: "mobilenetv2_075",
    1.0: "mobilenetv2_100",
    1.4: "mobilenetv2_140",
}
TOL = 1e-5


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


def _torchvision(width: float, seed: int = 0, **kwargs: object) -> nn.Module:
    torch.manual_seed(seed)
    model = torchvision.models.mobilenet_v2(width_mult=width, **kwargs).eval()
    _randomize_bn(model, seed + 1)
    return model


def _timm(width: float, seed: int = 0, **kwargs: object) -> nn.Module:
    torch.manual_seed(seed)
    model = timm.create_model(TIMM_NAMES[width], pretrained=False, **kwargs).eval()
    in_chans = kwargs.get("in_chans", 3)
    assert isinstance(in_chans, int)
    _randomize_bn(model, seed + 1, in_chans)
    return model


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return float((a - b).abs().max())


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = model(x)
    assert isinstance(out, torch.Tensor)
    return out


@pytest.mark.parametrize("width", WIDTHS)
def test_from_torchvision_parity(width: float) -> None:
    reference = _torchvision(width)
    model = from_torchvision(reference.state_dict()).eval()
    assert model.width_mult == width and model.num_classes == 1000 and model.in_chans == 3
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref_features = reference.features(x)
        ours_features = model.forward_features(x)
    # The comparison is not between two near-constant, input-independent maps.
    assert ref_features.std() > 0.1 and (ref_features[0] - ref_features[1]).abs().mean() > 0.05
    assert _max_diff(ours_features, ref_features) <= TOL
    assert _max_diff(_logits(model, x), _logits(reference, x)) <= TOL


@pytest.mark.parametrize("width", WIDTHS)
def test_from_timm_parity(width: float) -> None:
    reference = _timm(width)
    model = from_timm(reference.state_dict()).eval()
    assert model.width_mult == width and model.num_classes == 1000
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref_features = reference.forward_features(x)
        ours_features = model.forward_features(x)
    assert ref_features.std() > 0.1 and (ref_features[0] - ref_features[1]).abs().mean() > 0.05
    assert _max_diff(ours_features, ref_features) <= TOL
    assert _max_diff(_logits(model, x), _logits(reference, x)) <= TOL


def test_parity_depends_on_bn_statistics() -> None:
    # Control: the parity check above would notice a running statistic that was not carried over.
    reference = _torchvision(1.0)
    model = from_torchvision(reference).eval()
    x = torch.randn(2, 3, 96, 96)
    assert _max_diff(_logits(model, x), _logits(reference, x)) <= TOL
    with torch.no_grad():
        model.blocks[3][1].conv_dw.bn.running_mean.add_(0.1)
    assert _max_diff(_logits(model, x), _logits(reference, x)) > 1e-3


def test_accepts_module_and_stem_stride() -> None:
    reference = _torchvision(0.5)
    model = from_torchvision(reference, stem_stride=1, dropout=0.1)
    assert model.stem_stride == 1 and model.dropout.p == 0.1
    assert torch.equal(model.stem.conv.weight, reference.features[0][0].weight)


def test_num_classes_change_keeps_backbone() -> None:
    reference = _timm(1.0)
    model = from_timm(reference.state_dict(), num_classes=7).eval()
    assert model.num_classes == 7 and model.classifier.weight.shape == (7, 1280)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert _max_diff(model.forward_features(x), reference.forward_features(x)) <= TOL
    headless = from_timm(reference.state_dict(), num_classes=0)
    assert isinstance(headless.classifier, nn.Identity)


def test_headless_checkpoint_infers_zero_classes() -> None:
    reference = _timm(0.5, num_classes=0)
    model = from_timm(reference.state_dict()).eval()
    assert model.num_classes == 0
    x = torch.randn(2, 3, 64, 64)
    assert _max_diff(_logits(model, x), _logits(reference, x)) <= TOL


def test_timm_grayscale_checkpoint_infers_in_chans() -> None:
    reference = _timm(0.75, in_chans=1, num_classes=7)
    model = from_timm(reference.state_dict()).eval()
    assert model.in_chans == 1 and model.num_classes == 7
    x = torch.randn(2, 1, 64, 64)
    assert _max_diff(_logits(model, x), _logits(reference, x)) <= TOL


def test_rgb_weights_to_grayscale_model() -> None:
    reference = _torchvision(1.0)
    model = from_torchvision(reference.state_dict(), in_chans=1, num_classes=1000).eval()
    assert model.stem.conv.weight.shape == (32, 1, 3, 3)
    gray = torch.randn(2, 1, 96, 96)
    rgb = gray.repeat(1, 3, 1, 1)
    # Equal up to float rounding: the summed stem filters round differently in the first layer, and
    # 50 layers amplify that (measured: 2.5e-4 on features of magnitude up to 6, 1.3e-5 on logits).
    with torch.no_grad():
        assert _max_diff(model.forward_features(gray), reference.features(rgb)) <= 1e-3
    assert _max_diff(_logits(model, gray), _logits(reference, rgb)) <= 1e-4
    # Control: feeding the gray model something else is far off.
    assert _max_diff(_logits(model, gray.flip(-1)), _logits(reference, rgb)) > 1e-2


@pytest.mark.parametrize("width", [0.35, 1.4])
def test_round_trip_to_torchvision_and_timm(width: float) -> None:
    torch.manual_seed(0)
    model = MobileNetV2(width_mult=width).eval()
    _randomize_bn(model, 3)
    x = torch.randn(2, 3, 64, 64)
    tv = torchvision.models.mobilenet_v2(width_mult=width).eval()
    tv.load_state_dict(to_torchvision_state_dict(model), strict=True)
    assert _max_diff(_logits(tv, x), _logits(model, x)) <= TOL
    tm = timm.create_model(TIMM_NAMES[width], pretrained=False).eval()
    tm.load_state_dict(to_timm_state_dict(model), strict=True)
    assert _max_diff(_logits(tm, x), _logits(model, x)) <= TOL
    back = from_timm(to_timm_state_dict(model))
    for key, value in model.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key


def test_key_maps_are_bijections() -> None:
    model = MobileNetV2()
    for key_map, reference in (
        (torchvision_key_map(model), torchvision.models.mobilenet_v2()),
        (timm_key_map(model), timm.create_model("mobilenetv2_100")),
    ):
        assert set(key_map) == set(model.state_dict())
        assert len(set(key_map.values())) == len(key_map) == 314
        assert set(key_map.values()) == set(reference.state_dict())
    tv = torchvision_key_map(model)
    assert tv["blocks.0.0.conv_pwl.conv.weight"] == "features.1.conv.1.weight"
    assert tv["blocks.6.0.conv_pwl.bn.running_var"] == "features.17.conv.3.running_var"
    assert tv["head.bn.weight"] == "features.18.1.weight"
    assert tv["classifier.bias"] == "classifier.1.bias"
    tm = timm_key_map(model)
    assert tm["blocks.0.0.conv_pwl.bn.bias"] == "blocks.0.0.bn2.bias"
    assert tm["blocks.5.2.conv_dw.bn.running_mean"] == "blocks.5.2.bn2.running_mean"
    assert tm["head.conv.weight"] == "conv_head.weight"


def test_infer_width_mult() -> None:
    assert infer_width_mult((32, 16, 24, 32, 64, 96, 160, 320, 1280)) == 1.0
    assert infer_width_mult((16, 8, 8, 16, 24, 32, 56, 112, 1280)) == 0.35
    with pytest.raises(ModelFormatError):
        infer_width_mult((32, 16, 24, 32, 64, 96, 160, 320, 999))


def test_unexpected_key_is_named() -> None:
    sd = _torchvision(1.0).state_dict()
    sd["features.19.0.weight"] = torch.zeros(1)
    with pytest.raises(ModelFormatError, match=r"unexpected keys \[features\.19\.0\.weight\]"):
        from_torchvision(sd)


def test_missing_key_is_named() -> None:
    sd = _timm(0.5).state_dict()
    del sd["blocks.3.2.bn2.running_var"]
    with pytest.raises(ModelFormatError, match=r"missing keys \[blocks\.3\.2\.bn2\.running_var\]"):
        from_timm(sd)


def test_missing_step_counters_are_tolerated() -> None:
    reference = _timm(0.35)
    sd = {k: v for k, v in reference.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert len(sd) == 314 - 52
    model = from_timm(sd).eval()
    x = torch.randn(2, 3, 64, 64)
    assert _max_diff(_logits(model, x), _logits(reference, x)) <= TOL
    assert int(model.stem.bn.num_batches_tracked) == 0


def test_shape_mismatch_is_named() -> None:
    sd = _torchvision(1.0).state_dict()
    sd["features.4.conv.1.1.bias"] = torch.zeros(7)
    with pytest.raises(ModelFormatError, match=r"features\.4\.conv\.1\.1\.bias"):
        from_torchvision(sd)


def test_wrong_layout_and_wrong_width() -> None:
    tv = _torchvision(1.0).state_dict()
    with pytest.raises(ModelFormatError, match="conv_stem.weight"):
        from_timm(tv)
    with pytest.raises(ModelFormatError, match="width_mult=0.5"):
        from_torchvision(tv, width_mult=0.5)
    assert from_torchvision(tv, width_mult=1.0).width_mult == 1.0
    with pytest.raises(ModelFormatError):
        from_timm(timm.create_model("mobilenetv2_110d", pretrained=False).state_dict())


def test_bad_arguments() -> None:
    tv = _torchvision(0.5).state_dict()
    with pytest.raises(InvalidInputError):
        from_torchvision(42)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        from_torchvision({"features.0.0.weight": "not a tensor"})  # type: ignore[dict-item]
    with pytest.raises(InvalidInputError):
        from_torchvision(tv, in_chans=2)
    with pytest.raises(InvalidInputError):
        from_torchvision(tv, width_mult=-1.0)
    with pytest.raises(InvalidInputError):
        from_torchvision(tv, num_classes=-3)
    with pytest.raises(InvalidInputError):
        to_torchvision_state_dict(nn.Linear(2, 2))  # type: ignore[arg-type]


def test_package_import_does_not_import_timm() -> None:
    code = (
        "import sys, mobilefer.models; "
        "bad = [m for m in ('timm', 'torchvision') if m in sys.modules]; "
        "assert not bad, bad"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
