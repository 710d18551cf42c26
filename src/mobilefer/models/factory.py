"""Build a classification backbone by name: ours (mobilenet_v2, mobilenet_v1), ``timm:<name>`` and
torchvision's ``googlenet``."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mobilefer.errors import InvalidInputError

__all__ = ["create_model", "ChannelRepeat", "ModelSpec"]


class ChannelRepeat(nn.Module):
    """Feeds a 1-channel image to a 3-channel network by repeating the channel."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> Any:
        return self.net(x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x)


def create_model(
    name: str,
    num_classes: int,
    in_chans: int = 3,
    *,
    width_mult: float = 1.0,
    stem_stride: int = 2,
    dropout: float = 0.2,
) -> nn.Module:
    """Create a randomly initialised classifier.

    Args:
        name: ``mobilenet_v2``, ``mobilenet_v1``, ``googlenet`` or ``timm:<model name>``.
        num_classes: Outputs of the classifier.
        in_chans: 1 (grayscale) or 3.
        width_mult: Width multiplier (ours).
        stem_stride: Stem stride (ours, MobileNetV2).
        dropout: Dropout before the classifier.

    Raises:
        InvalidInputError: For an unknown name.
    """
    if name == "mobilenet_v2":
        from mobilefer.models.mobilenetv2 import MobileNetV2

        return MobileNetV2(
            num_classes=num_classes, width_mult=width_mult, in_chans=in_chans, dropout=dropout, stem_stride=stem_stride
        )
    if name == "mobilenet_v1":
        from mobilefer.models import mobilenetv1

        return mobilenetv1.MobileNetV1(
            num_classes=num_classes, width_mult=width_mult, in_chans=in_chans, dropout=dropout
        )
    if name == "googlenet":
        from torchvision.models import googlenet

        net = googlenet(weights=None, num_classes=num_classes, aux_logits=False, init_weights=True, dropout=dropout)
        return ChannelRepeat(net) if in_chans == 1 else net
    if name.startswith("timm:") and len(name) > 5:
        import timm

        try:
            return timm.create_model(
                name[5:], pretrained=False, num_classes=num_classes, in_chans=in_chans, drop_rate=dropout
            )
        except RuntimeError as exc:
            raise InvalidInputError(f"timm has no model {name[5:]!r} ({exc})") from exc
    raise InvalidInputError(
        f"unknown model {name!r}: use mobilenet_v2, mobilenet_v1, googlenet or timm:<name> (e.g. timm:resnet18)"
    )


class ModelSpec:
    """Everything needed to rebuild a classifier's architecture (stored in checkpoint metadata)."""

    __slots__ = ("name", "num_classes", "in_chans", "width_mult", "stem_stride", "dropout")

    def __init__(
        self,
        name: str,
        num_classes: int,
        in_chans: int,
        width_mult: float = 1.0,
        stem_stride: int = 2,
        dropout: float = 0.2,
    ) -> None:
        self.name = name
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.width_mult = width_mult
        self.stem_stride = stem_stride
        self.dropout = dropout

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        try:
            return cls(
                name=str(data["name"]),
                num_classes=int(data["num_classes"]),
                in_chans=int(data["in_chans"]),
                width_mult=float(data.get("width_mult", 1.0)),
                stem_stride=int(data.get("stem_stride", 2)),
                dropout=float(data.get("dropout", 0.2)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(f"not a valid model spec: {data!r} ({exc})") from exc

    def build(self) -> nn.Module:
        return create_model(
            self.name,
            self.num_classes,
            self.in_chans,
            width_mult=self.width_mult,
            stem_stride=self.stem_stride,
            dropout=self.dropout,
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ModelSpec) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(tuple(self.to_dict().items()))

    def __repr__(self) -> str:
        return f"ModelSpec({self.to_dict()})"
