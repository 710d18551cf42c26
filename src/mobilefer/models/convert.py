"""Load torchvision and timm MobileNetV2 weights into :class:`~mobilefer.models.mobilenetv2.MobileNetV2`
and write ours back out in their layouts.

The key mapping is explicit and strict: every key of the source state dict is used exactly once and
every tensor of our model is filled, otherwise :class:`~mobilefer.errors.ModelFormatError` names the
missing and unexpected keys. The one tolerated absence is BatchNorm's ``num_batches_tracked`` step
counter (unused in eval, dropped by some inference-only checkpoints). Width multiplier, number of classes and input channels are read from the
tensor shapes when not given.

Key layouts (``k`` = 1 + index of the block counted over all stages)::

    ours                          torchvision                     timm
    stem.conv / stem.bn           features.0.0 / features.0.1     conv_stem / bn1
    blocks.i.j (expansion t=1)
      conv_dw.conv / .bn          features.k.conv.0.0 / .0.1      blocks.i.j.conv_dw / bn1
      conv_pwl.conv / .bn         features.k.conv.1 / .2          blocks.i.j.conv_pw / bn2
    blocks.i.j (t>1)
      conv_pw.conv / .bn          features.k.conv.0.0 / .0.1      blocks.i.j.conv_pw / bn1
      conv_dw.conv / .bn          features.k.conv.1.0 / .1.1      blocks.i.j.conv_dw / bn2
      conv_pwl.conv / .bn         features.k.conv.2 / .3          blocks.i.j.conv_pwl / bn3
    head.conv / head.bn           features.18.0 / features.18.1   conv_head / bn2
    classifier                    classifier.1                    classifier
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Literal

import torch
from torch import nn

from mobilefer.errors import InvalidInputError, ModelFormatError
from mobilefer.models._layers import make_divisible
from mobilefer.models.mobilenetv2 import MOBILENETV2_SETTING, MobileNetV2

__all__ = [
    "PUBLISHED_WIDTHS",
    "from_timm",
    "from_torchvision",
    "infer_width_mult",
    "timm_key_map",
    "to_timm_state_dict",
    "to_torchvision_state_dict",
    "torchvision_key_map",
]

logger = logging.getLogger(__name__)

Layout = Literal["torchvision", "timm"]
StateDictLike = Mapping[str, torch.Tensor] | nn.Module

#: Widths tried first when inferring ``width_mult`` (the published checkpoints); then 0.01 steps.
PUBLISHED_WIDTHS: tuple[float, ...] = (1.0, 0.75, 0.5, 0.35, 1.4, 1.3, 0.25, 0.1)
_WIDTH_GRID: tuple[float, ...] = tuple(round(i / 100, 2) for i in range(5, 401))
_MAX_NAMED_KEYS = 20


# Per block: our submodule → their submodule, for blocks without (t=1) and with the 1x1 expansion.
_TORCHVISION_BLOCK = {
    1: {"conv_dw.conv": "0.0", "conv_dw.bn": "0.1", "conv_pwl.conv": "1", "conv_pwl.bn": "2"},
    6: {
        "conv_pw.conv": "0.0",
        "conv_pw.bn": "0.1",
        "conv_dw.conv": "1.0",
        "conv_dw.bn": "1.1",
        "conv_pwl.conv": "2",
        "conv_pwl.bn": "3",
    },
}
_TIMM_BLOCK = {
    1: {"conv_dw.conv": "conv_dw", "conv_dw.bn": "bn1", "conv_pwl.conv": "conv_pw", "conv_pwl.bn": "bn2"},
    6: {
        "conv_pw.conv": "conv_pw",
        "conv_pw.bn": "bn1",
        "conv_dw.conv": "conv_dw",
        "conv_dw.bn": "bn2",
        "conv_pwl.conv": "conv_pwl",
        "conv_pwl.bn": "bn3",
    },
}


def _module_map(setting: Iterable[tuple[int, int, int, int]], layout: Layout) -> dict[str, str]:
    """Our module prefix → their module prefix for every conv/norm module (the classifier is separate)."""
    torchvision = layout == "torchvision"
    if torchvision:
        mapping = {"stem.conv": "features.0.0", "stem.bn": "features.0.1"}
    else:
        mapping = {"stem.conv": "conv_stem", "stem.bn": "bn1"}
    k = 0  # block index over all stages, 1-based (torchvision's features.k)
    for i, (t, _c, n, _s) in enumerate(setting):
        names = (_TORCHVISION_BLOCK if torchvision else _TIMM_BLOCK)[1 if t == 1 else 6]
        for j in range(n):
            k += 1
            theirs = f"features.{k}.conv" if torchvision else f"blocks.{i}.{j}"
            for our_name, their_name in names.items():
                mapping[f"blocks.{i}.{j}.{our_name}"] = f"{theirs}.{their_name}"
    if torchvision:
        mapping["head.conv"] = f"features.{k + 1}.0"
        mapping["head.bn"] = f"features.{k + 1}.1"
    else:
        mapping["head.conv"] = "conv_head"
        mapping["head.bn"] = "bn2"
    return mapping


def _classifier_prefix(layout: Layout) -> str:
    return "classifier.1" if layout == "torchvision" else "classifier"


def _key_map(model: MobileNetV2, layout: Layout) -> dict[str, str]:
    """Map every state-dict key of ``model`` to the key of the same tensor in ``layout``."""
    if not isinstance(model, MobileNetV2):
        raise InvalidInputError(f"expected a mobilefer MobileNetV2, got {type(model).__name__}")
    if layout == "timm" and any(t == 1 for i, (t, *_rest) in enumerate(model.setting) if i > 0):
        raise InvalidInputError(
            "timm builds expansion-1 blocks outside the first stage as InvertedResidual with a conv_pw; "
            "this model's setting has no timm equivalent"
        )
    modules = _module_map(model.setting, layout)
    if model.num_classes > 0:
        modules["classifier"] = _classifier_prefix(layout)
    result: dict[str, str] = {}
    unmapped: list[str] = []
    for key in model.state_dict():
        prefix, _, leaf = key.rpartition(".")
        if prefix in modules:
            result[key] = f"{modules[prefix]}.{leaf}"
        else:
            unmapped.append(key)
    if unmapped:
        raise InvalidInputError(
            f"model has tensors with no {layout} counterpart (custom norm layer?): {_name_keys(unmapped)}"
        )
    return result


def torchvision_key_map(model: MobileNetV2) -> dict[str, str]:
    """Our state-dict key → torchvision ``mobilenet_v2`` state-dict key, for every tensor of ``model``.

    Raises:
        InvalidInputError: If ``model`` is not a :class:`MobileNetV2` or has tensors torchvision lacks.
    """
    return _key_map(model, "torchvision")


def timm_key_map(model: MobileNetV2) -> dict[str, str]:
    """Our state-dict key → timm ``mobilenetv2_*`` state-dict key, for every tensor of ``model``.

    Raises:
        InvalidInputError: If ``model`` is not a :class:`MobileNetV2` or has no timm equivalent.
    """
    return _key_map(model, "timm")


def _name_keys(keys: Iterable[str]) -> str:
    ordered = sorted(keys)
    shown = ", ".join(ordered[:_MAX_NAMED_KEYS])
    more = len(ordered) - _MAX_NAMED_KEYS
    return f"[{shown}{f', ... and {more} more' if more > 0 else ''}]"


def _as_state_dict(state_dict: StateDictLike, source: str) -> dict[str, torch.Tensor]:
    if isinstance(state_dict, nn.Module):
        return dict(state_dict.state_dict())
    if not isinstance(state_dict, Mapping):
        raise InvalidInputError(
            f"{source}: expected a state dict (mapping) or nn.Module, got {type(state_dict)!r}"
        )
    result: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise InvalidInputError(
                f"{source}: state dict entries must be str -> torch.Tensor, "
                f"got {key!r}: {type(value).__name__}"
            )
        result[key] = value
    return result


def _expected_channels(width_mult: float) -> tuple[int, ...]:
    """(stem, stage 0..6 outputs, head) channels of the default MobileNetV2 at ``width_mult``."""
    stem = make_divisible(32 * width_mult)
    stages = [make_divisible(c * width_mult) for _t, c, _n, _s in MOBILENETV2_SETTING]
    head = make_divisible(1280 * max(1.0, width_mult))
    return (stem, *stages, head)


def _observed_channels(sd: Mapping[str, torch.Tensor], layout: Layout, source: str) -> tuple[int, ...]:
    modules = _module_map(MOBILENETV2_SETTING, layout)
    wanted = ["stem.conv"]
    wanted += [f"blocks.{i}.{n - 1}.conv_pwl.conv" for i, (_t, _c, n, _s) in enumerate(MOBILENETV2_SETTING)]
    wanted.append("head.conv")
    keys = [f"{modules[m]}.weight" for m in wanted]
    missing = [k for k in keys if k not in sd]
    if missing:
        raise ModelFormatError(
            f"{source}: not a {layout} MobileNetV2 state dict, missing keys {_name_keys(missing)}"
        )
    channels = []
    for key in keys:
        if sd[key].ndim != 4:
            raise ModelFormatError(
                f"{source}: {key} should be a 4-d conv weight, got shape {tuple(sd[key].shape)}"
            )
        channels.append(int(sd[key].shape[0]))
    return tuple(channels)


def infer_width_mult(channels: tuple[int, ...]) -> float:
    """The width multiplier whose default MobileNetV2 has these (stem, 7 stages, head) channels.

    Published widths are tried first, then 0.05 to 4.0 in steps of 0.01.

    Args:
        channels: Output channels of the stem, of each of the 7 stages, and of the head (9 numbers).

    Returns:
        The width multiplier.

    Raises:
        ModelFormatError: If no width in the searched range gives these channels.
    """
    for width in PUBLISHED_WIDTHS + _WIDTH_GRID:
        if _expected_channels(width) == channels:
            return width
    raise ModelFormatError(
        f"no MobileNetV2 width multiplier gives channels (stem, 7 stages, head) = {channels}; "
        "is this the default (t, c, n, s) table?"
    )


def _adapt_stem(weight: torch.Tensor, in_chans: int, key: str, source: str) -> torch.Tensor:
    stored = int(weight.shape[1])
    if stored == in_chans:
        return weight
    if stored == 3 and in_chans == 1:
        # A gray image fed as three equal channels gives the same response as the channel sum.
        return weight.sum(dim=1, keepdim=True)
    if stored == 1 and in_chans == 3:
        return weight.repeat(1, 3, 1, 1) / 3.0
    raise ModelFormatError(
        f"{source}: cannot adapt {key} with {stored} input channels to in_chans={in_chans}"
    )


def _from_layout(
    state_dict: StateDictLike,
    layout: Layout,
    source: str,
    num_classes: int | None,
    width_mult: float | None,
    in_chans: int | None,
    dropout: float,
    stem_stride: int,
) -> MobileNetV2:
    sd = _as_state_dict(state_dict, source)
    observed = _observed_channels(sd, layout, source)
    if width_mult is None:
        width = infer_width_mult(observed)
    else:
        if isinstance(width_mult, bool) or not isinstance(width_mult, (int, float)) or not width_mult > 0:
            raise InvalidInputError(f"width_mult must be a positive number, got {width_mult!r}")
        width = float(width_mult)
        if _expected_channels(width) != observed:
            raise ModelFormatError(
                f"{source}: width_mult={width} expects channels (stem, 7 stages, head) "
                f"{_expected_channels(width)}, the state dict has {observed}"
            )

    stem_key = f"{_module_map((), layout)['stem.conv']}.weight"
    stored_in_chans = int(sd[stem_key].shape[1])
    target_in_chans = stored_in_chans if in_chans is None else in_chans
    if target_in_chans not in (1, 3):
        raise InvalidInputError(f"in_chans must be 1 (grayscale) or 3 (RGB), got {target_in_chans!r}")
    sd[stem_key] = _adapt_stem(sd[stem_key], target_in_chans, stem_key, source)

    cls_prefix = _classifier_prefix(layout)
    cls_weight = sd.get(f"{cls_prefix}.weight")
    stored_classes = 0 if cls_weight is None else int(cls_weight.shape[0])
    target_classes = stored_classes if num_classes is None else num_classes
    if target_classes != stored_classes:
        dropped = [k for k in sd if k.startswith(f"{cls_prefix}.")]
        for key in dropped:
            del sd[key]
        if dropped:
            logger.info(
                "%s: num_classes=%s differs from the checkpoint's %d; classifier weights not loaded",
                source,
                num_classes,
                stored_classes,
            )

    model = MobileNetV2(
        num_classes=target_classes,
        width_mult=width,
        in_chans=target_in_chans,
        dropout=dropout,
        stem_stride=stem_stride,
    )
    key_map = _key_map(model, layout)
    fresh_classifier = target_classes != stored_classes
    if fresh_classifier:
        key_map = {k: v for k, v in key_map.items() if not k.startswith("classifier.")}
    wanted = set(key_map.values())
    # BN step counters change nothing in eval and inference-only checkpoints often omit them.
    missing = {k for k in wanted - sd.keys() if not k.endswith(".num_batches_tracked")}
    unexpected = sd.keys() - wanted
    if missing or unexpected:
        raise ModelFormatError(
            f"{source}: state dict does not match a {layout} MobileNetV2 (width {width}, "
            f"{target_classes} classes): missing keys {_name_keys(missing)}, "
            f"unexpected keys {_name_keys(unexpected)}"
        )
    ours = model.state_dict()
    key_map = {key: theirs for key, theirs in key_map.items() if theirs in sd}
    bad_shapes = [
        f"{theirs} {tuple(sd[theirs].shape)} vs {tuple(ours[key].shape)}"
        for key, theirs in key_map.items()
        if sd[theirs].shape != ours[key].shape
    ]
    if bad_shapes:
        raise ModelFormatError(f"{source}: tensor shapes do not match: {_name_keys(bad_shapes)}")
    # Start from the model's own tensors so that a fresh classifier and absent step counters stay as built.
    loaded = dict(ours)
    loaded.update({key: sd[theirs] for key, theirs in key_map.items()})
    model.load_state_dict(loaded, strict=True)
    return model


def from_torchvision(
    state_dict: StateDictLike,
    *,
    num_classes: int | None = None,
    width_mult: float | None = None,
    in_chans: int | None = None,
    dropout: float = 0.2,
    stem_stride: int = 2,
) -> MobileNetV2:
    """Build our MobileNetV2 carrying the weights of a torchvision ``mobilenet_v2``.

    Args:
        state_dict: A torchvision MobileNetV2 state dict (or the model itself).
        num_classes: Classes of the returned model; default: the checkpoint's. When it differs from the
            checkpoint's, the classifier is freshly initialised and the checkpoint's classifier is ignored
            (fine-tuning); 0 gives a model without classifier.
        width_mult: Width multiplier; default: inferred from the channel counts. When given it must
            agree with them.
        in_chans: Input channels of the returned model; default: the checkpoint's. 3 → 1 sums the stem
            filters over RGB (exact for a gray image replicated into three channels), 1 → 3 spreads them.
        dropout: Dropout of the returned model.
        stem_stride: Stem stride of the returned model (weights are the same for 1 and 2).

    Returns:
        A :class:`MobileNetV2` in training mode whose eval-mode output equals torchvision's.

    Raises:
        ModelFormatError: If keys are missing or unexpected (the message names them), shapes disagree,
            or no width multiplier fits.
        InvalidInputError: If an argument is out of range.
    """
    return _from_layout(
        state_dict, "torchvision", "from_torchvision", num_classes, width_mult, in_chans, dropout, stem_stride
    )


def from_timm(
    state_dict: StateDictLike,
    *,
    num_classes: int | None = None,
    width_mult: float | None = None,
    in_chans: int | None = None,
    dropout: float = 0.2,
    stem_stride: int = 2,
) -> MobileNetV2:
    """Build our MobileNetV2 carrying the weights of a timm ``mobilenetv2_035/050/075/100/140``.

    Arguments, return value and errors are those of :func:`from_torchvision`. timm's ``mobilenetv2_110d``
    and ``mobilenetv2_120d`` have other depths and are rejected (unexpected keys).
    """
    return _from_layout(
        state_dict, "timm", "from_timm", num_classes, width_mult, in_chans, dropout, stem_stride
    )


def to_torchvision_state_dict(model: MobileNetV2) -> dict[str, torch.Tensor]:
    """``model``'s tensors under torchvision ``mobilenet_v2`` keys (loads with ``strict=True``).

    The tensors are detached references to the model's, as with ``state_dict()``.

    Raises:
        InvalidInputError: If ``model`` is not a :class:`MobileNetV2` or has tensors torchvision lacks.
    """
    ours = model.state_dict() if isinstance(model, MobileNetV2) else {}
    return {theirs: ours[key] for key, theirs in _key_map(model, "torchvision").items()}


def to_timm_state_dict(model: MobileNetV2) -> dict[str, torch.Tensor]:
    """``model``'s tensors under timm ``mobilenetv2_*`` keys (loads with ``strict=True``).

    Raises:
        InvalidInputError: If ``model`` is not a :class:`MobileNetV2` or has no timm equivalent.
    """
    ours = model.state_dict() if isinstance(model, MobileNetV2) else {}
    return {theirs: ours[key] for key, theirs in _key_map(model, "timm").items()}
