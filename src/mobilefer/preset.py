"""Preprocessing presets: the single source of every input constant of a model.

A :class:`Preset` says how a model wants its input: size, colour order, mean/std (and the equivalent
per-channel scale/bias mobile runtimes expect), resize interpolation, label names, and for face
classifiers the crop rule applied to each detector's boxes. The Pipeline, the exporters (into model
metadata) and the Android bundle all read presets; no other module repeats these constants.

This module imports only numpy and OpenCV.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from mobilefer.errors import InvalidImageError, InvalidInputError

__all__ = ["CropRule", "Preset", "ColorOrder", "Interpolation", "FER2013_LABELS"]

#: FER2013 class names in label order (0 angry ... 6 neutral).
FER2013_LABELS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

ColorOrder = Literal["gray", "rgb", "bgr"]
Interpolation = Literal["linear", "area", "nearest"]

_INTERPOLATIONS = ("linear", "area", "nearest")
_COLORS = ("gray", "rgb", "bgr")


@dataclass(frozen=True)
class CropRule:
    """How a detector box becomes a classifier crop.

    Given a box ``(x1, y1, x2, y2)`` in pixels: ``w = x2 - x1``, ``h = y2 - y1``; the centre is
    ``cx = (x1 + x2) / 2``, ``cy = (y1 + y2) / 2 + shift_y * h``. The crop side is
    ``max(w, h)`` if ``square`` (else ``w`` and ``h`` separately) times ``1 + 2 * margin``. The integer
    crop window is ``left = floor(cx - side_w / 2 + 0.5)``, ``top = floor(cy - side_h / 2 + 0.5)``,
    ``right = left + max(1, floor(side_w + 0.5))``, likewise bottom (round half up). Pixels outside the
    image are filled by repeating the border pixels (``border="replicate"``) or with zeros
    (``border="constant"``), never by stretching.

    Attributes:
        margin: Fraction of the box side added on each side (0.1 = 10% each side).
        square: Make the crop square around the box centre.
        shift_y: Vertical shift of the centre as a fraction of the box height (positive = down).
        border: ``"replicate"`` or ``"constant"``.
    """

    margin: float = 0.0
    square: bool = True
    shift_y: float = 0.0
    border: Literal["replicate", "constant"] = "replicate"

    def __post_init__(self) -> None:
        if not isinstance(self.margin, (int, float)) or not math.isfinite(self.margin) or self.margin <= -0.5:
            raise InvalidInputError(f"CropRule.margin must be a finite number > -0.5, got {self.margin!r}")
        if not isinstance(self.shift_y, (int, float)) or not math.isfinite(self.shift_y):
            raise InvalidInputError(f"CropRule.shift_y must be a finite number, got {self.shift_y!r}")
        if self.border not in ("replicate", "constant"):
            raise InvalidInputError(f"CropRule.border must be 'replicate' or 'constant', got {self.border!r}")

    def window(self, box: Sequence[float]) -> tuple[int, int, int, int]:
        """The integer crop window ``(left, top, right, bottom)`` (right/bottom exclusive) for ``box``.

        Raises:
            InvalidInputError: If the box is not four finite numbers with ``x2 > x1`` and ``y2 > y1``.
        """
        try:
            if len(box) != 4:
                raise InvalidInputError(f"a box must be (x1, y1, x2, y2), got {box!r}")
            x1, y1, x2, y2 = (float(v) for v in box)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, InvalidInputError):
                raise
            raise InvalidInputError(f"a box must be four numbers (x1, y1, x2, y2), got {box!r}") from exc
        if not all(math.isfinite(v) for v in (x1, y1, x2, y2)) or x2 <= x1 or y2 <= y1:
            raise InvalidInputError(f"a box must be finite with x2 > x1 and y2 > y1, got {tuple(box)!r}")
        w, h = x2 - x1, y2 - y1
        cx = (x1 + x2) / 2.0
        cy = (y1 + y2) / 2.0 + self.shift_y * h
        if self.square:
            w = h = max(w, h)
        scale = 1.0 + 2.0 * self.margin
        side_w, side_h = w * scale, h * scale
        left = math.floor(cx - side_w / 2.0 + 0.5)
        top = math.floor(cy - side_h / 2.0 + 0.5)
        right = left + max(1, math.floor(side_w + 0.5))
        bottom = top + max(1, math.floor(side_h + 0.5))
        return left, top, right, bottom

    def crop(self, image: np.ndarray, box: Sequence[float]) -> np.ndarray:
        """Cut the crop window for ``box`` out of ``image`` (H x W or H x W x C), padding as configured."""
        if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.shape[0] < 1 or image.shape[1] < 1:
            raise InvalidImageError("crop() needs an image array of shape (H, W) or (H, W, C) with H, W >= 1")
        left, top, right, bottom = self.window(box)
        h, w = image.shape[:2]
        ix1, iy1 = max(left, 0), max(top, 0)
        ix2, iy2 = min(right, w), min(bottom, h)
        if left >= 0 and top >= 0 and right <= w and bottom <= h:
            return np.ascontiguousarray(image[top:bottom, left:right])
        if self.border == "replicate":
            # Every output pixel takes the value of the nearest image pixel (clamped coordinates); this
            # also covers windows lying entirely outside the image.
            rows = np.clip(np.arange(top, bottom), 0, h - 1)
            cols = np.clip(np.arange(left, right), 0, w - 1)
            return np.ascontiguousarray(image[rows[:, None], cols[None, :]])
        out = np.zeros((bottom - top, right - left, *image.shape[2:]), dtype=image.dtype)
        if ix1 < ix2 and iy1 < iy2:
            out[iy1 - top : iy2 - top, ix1 - left : ix2 - left] = image[iy1:iy2, ix1:ix2]
        return out


@dataclass(frozen=True)
class Preset:
    """Input description of one model.

    Attributes:
        name: Identifier, e.g. ``"fer2013-gray64"``.
        input_size: ``(width, height)`` in pixels.
        color: Channel order the network expects: ``"gray"``, ``"rgb"`` or ``"bgr"``.
        mean: Per-channel mean in pixel units (0-255), one value per network input channel.
        std: Per-channel standard deviation in pixel units; the network sees ``(pixel - mean) / std``.
        interpolation: Resize interpolation (OpenCV's ``INTER_LINEAR``/``INTER_AREA``/``INTER_NEAREST``).
        labels: Class names in output order.
        crop_rules: Detector name → :class:`CropRule`; ``"default"`` is used for detectors not listed.
    """

    name: str
    input_size: tuple[int, int]
    color: ColorOrder
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: Interpolation = "linear"
    labels: tuple[str, ...] = ()
    crop_rules: tuple[tuple[str, CropRule], ...] = field(default_factory=lambda: (("default", CropRule()),))

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InvalidInputError("Preset.name must be a non-empty string")
        # Normalise sequences to tuples (hashable, equal after a to_dict/from_dict round trip) and keep
        # crop_rules sorted by detector name so equality does not depend on their order.
        for key in ("input_size", "mean", "std", "labels", "crop_rules"):
            value = getattr(self, key)
            if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
                raise InvalidInputError(f"Preset.{key} must be a sequence, got {value!r}")
            object.__setattr__(self, key, tuple(value))
        if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in (*self.mean, *self.std)):
            raise InvalidInputError(f"Preset {self.name!r}: mean and std must be numbers, got {self.mean!r}, {self.std!r}")
        if not all(math.isfinite(v) for v in self.mean):
            raise InvalidInputError(f"Preset {self.name!r}: mean values must be finite, got {self.mean!r}")
        if not all(
            isinstance(entry, (tuple, list)) and len(entry) == 2 and isinstance(entry[0], str)
            and isinstance(entry[1], CropRule)
            for entry in self.crop_rules
        ):
            raise InvalidInputError(
                f"Preset {self.name!r}: crop_rules must be (detector name, CropRule) pairs, got {self.crop_rules!r}"
            )
        rules = sorted(((str(n), r) for n, r in self.crop_rules), key=lambda item: item[0])
        object.__setattr__(self, "crop_rules", tuple(rules))
        if (
            len(self.input_size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in self.input_size)
        ):
            raise InvalidInputError(f"Preset.input_size must be (width, height) positive ints, got {self.input_size!r}")
        if self.color not in _COLORS:
            raise InvalidInputError(f"Preset.color must be one of {_COLORS}, got {self.color!r}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise InvalidInputError(
                f"Preset {self.name!r}: mean and std need {self.channels} value(s) for color {self.color!r}, "
                f"got mean={self.mean!r} std={self.std!r}"
            )
        if not all(math.isfinite(float(s)) and float(s) > 0 for s in self.std):
            raise InvalidInputError(f"Preset {self.name!r}: std values must be finite and > 0, got {self.std!r}")
        if self.interpolation not in _INTERPOLATIONS:
            raise InvalidInputError(f"Preset.interpolation must be one of {_INTERPOLATIONS}, got {self.interpolation!r}")
        names = [n for n, _ in self.crop_rules]
        if len(set(names)) != len(names):
            raise InvalidInputError(f"Preset {self.name!r}: duplicate detector names in crop_rules: {names}")

    @property
    def channels(self) -> int:
        """Number of network input channels (1 for gray, else 3)."""
        return 1 if self.color == "gray" else 3

    @property
    def width(self) -> int:
        return self.input_size[0]

    @property
    def height(self) -> int:
        return self.input_size[1]

    @property
    def scale(self) -> tuple[float, ...]:
        """Per-channel multiplier: the network input is ``pixel * scale + bias`` (TNN's MatConvertParam)."""
        return tuple(1.0 / float(s) for s in self.std)

    @property
    def bias(self) -> tuple[float, ...]:
        """Per-channel offset: ``-mean / std``."""
        return tuple(-float(m) / float(s) for m, s in zip(self.mean, self.std, strict=True))

    def crop_rule(self, detector: str) -> CropRule:
        """The crop rule for ``detector`` (falls back to ``"default"``, then to a plain box crop)."""
        rules = dict(self.crop_rules)
        return rules.get(detector, rules.get("default", CropRule()))

    def with_crop_rule(self, detector: str, rule: CropRule) -> Preset:
        """A copy of this preset with ``rule`` set for ``detector``."""
        rules = dict(self.crop_rules)
        rules[detector] = rule
        return Preset(**{**self._fields(), "crop_rules": tuple(sorted(rules.items()))})

    def _fields(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "input_size": self.input_size,
            "color": self.color,
            "mean": self.mean,
            "std": self.std,
            "interpolation": self.interpolation,
            "labels": self.labels,
            "crop_rules": self.crop_rules,
        }

    # ----------------------------------------------------------------- conversion helpers
    def to_gray_or_color(self, image: np.ndarray) -> np.ndarray:
        """Convert a BGR (H, W, 3), BGRA (H, W, 4) or gray (H, W) uint8 image to this preset's colour order.

        Returns (H, W) for gray presets and (H, W, 3) otherwise.
        """
        import cv2

        if image.ndim == 2:
            if self.color == "gray":
                return image
            return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)  # gray→3 channels: order does not matter
        if image.ndim == 3 and image.shape[2] == 1:
            return self.to_gray_or_color(image[:, :, 0])
        if image.ndim == 3 and image.shape[2] == 4:
            code = {"gray": cv2.COLOR_BGRA2GRAY, "rgb": cv2.COLOR_BGRA2RGB, "bgr": cv2.COLOR_BGRA2BGR}[self.color]
            return cv2.cvtColor(image, code)
        if image.ndim == 3 and image.shape[2] == 3:
            if self.color == "bgr":
                return image
            code = cv2.COLOR_BGR2GRAY if self.color == "gray" else cv2.COLOR_BGR2RGB
            return cv2.cvtColor(image, code)
        raise InvalidImageError(f"expected an (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) image, got shape {image.shape}")

    def resize(self, image: np.ndarray) -> np.ndarray:
        """Resize to ``input_size`` with this preset's interpolation (no-op when already that size)."""
        import cv2

        if image.shape[1] == self.width and image.shape[0] == self.height:
            return image
        flag = {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA, "nearest": cv2.INTER_NEAREST}[self.interpolation]
        return cv2.resize(image, (self.width, self.height), interpolation=flag)

    def normalize(self, images: np.ndarray) -> np.ndarray:
        """(N, H, W[, C]) uint8 already in this preset's colour order and size → (N, C, H, W) float32."""
        # Reorder the uint8 pixels to NCHW first, then convert and normalise in place: numpy's broadcast
        # over an NHWC-strided float view is several times slower than these contiguous passes, and the
        # float32 arithmetic ((x - mean) / std) is the same, so the result is bit-identical.
        if images.ndim == 3:
            x = images.astype(np.float32)[:, None, :, :]
        else:
            x = np.ascontiguousarray(images.transpose(0, 3, 1, 2)).astype(np.float32)
        mean = np.asarray(self.mean, dtype=np.float32).reshape(1, -1, 1, 1)
        std = np.asarray(self.std, dtype=np.float32).reshape(1, -1, 1, 1)
        np.subtract(x, mean, out=x)
        np.divide(x, std, out=x)
        return np.ascontiguousarray(x, dtype=np.float32)

    def _fill(self, out: np.ndarray, image: np.ndarray) -> None:
        """Write one image, resized and in this preset's colour order, into ``out`` (C, H, W) float32."""
        import cv2

        if self.color != "gray" and image.ndim == 3 and image.shape[2] == 3:
            # BGR→RGB/BGR only permutes channels, which commutes exactly with OpenCV's per-channel
            # resize: resize first, then write the planes in the wanted order (no conversion pass, no
            # interleaved-to-planar copy).
            planes = cv2.split(self.resize(image))
            for channel, source in enumerate((2, 1, 0) if self.color == "rgb" else (0, 1, 2)):
                out[channel] = planes[source]
            return
        prepared = self.resize(self.to_gray_or_color(image))
        if prepared.ndim == 2:
            out[0] = prepared
        else:
            out[...] = prepared.transpose(2, 0, 1)

    def preprocess(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """BGR/BGRA/gray uint8 images of any size → one (N, C, H, W) float32 network batch.

        Same result as :meth:`normalize` of the stacked, converted and resized images, computed in one
        output buffer (float32 ``(pixel - mean) / std``).
        """
        x = np.empty((len(images), self.channels, self.height, self.width), dtype=np.float32)
        for index, image in enumerate(images):
            self._fill(x[index], image)
        np.subtract(x, np.asarray(self.mean, dtype=np.float32).reshape(1, -1, 1, 1), out=x)
        np.divide(x, np.asarray(self.std, dtype=np.float32).reshape(1, -1, 1, 1), out=x)
        return x

    # ----------------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (also carries the derived ``scale``/``bias`` for mobile runtimes)."""
        return {
            "name": self.name,
            "input_size": list(self.input_size),
            "color": self.color,
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
            "scale": list(self.scale),
            "bias": list(self.bias),
            "interpolation": self.interpolation,
            "layout": "NCHW",
            "labels": list(self.labels),
            "crop_rules": {name: asdict(rule) for name, rule in self.crop_rules},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Preset:
        """Inverse of :meth:`to_dict` (derived keys are ignored).

        Raises:
            InvalidInputError: If a key is missing or has the wrong type.
        """
        try:
            rules_raw = data.get("crop_rules", {"default": {}})
            if not isinstance(rules_raw, Mapping):
                raise InvalidInputError("preset 'crop_rules' must be a mapping of detector name to rule")
            rules = tuple(sorted((str(k), CropRule(**dict(v))) for k, v in rules_raw.items()))
            return cls(
                name=str(data["name"]),
                input_size=(int(data["input_size"][0]), int(data["input_size"][1])),
                color=data["color"],
                mean=tuple(float(v) for v in data["mean"]),
                std=tuple(float(v) for v in data["std"]),
                interpolation=data.get("interpolation", "linear"),
                labels=tuple(str(v) for v in data.get("labels", ())),
                crop_rules=rules,
            )
        except InvalidInputError:
            raise
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise InvalidInputError(f"not a valid preset description ({type(exc).__name__}: {exc})") from exc

    @classmethod
    def from_json(cls, text: str) -> Preset:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"preset JSON does not parse: {exc}") from exc
        if not isinstance(data, Mapping):
            raise InvalidInputError("preset JSON must be an object")
        return cls.from_dict(data)
