"""Registry of known weight files: typed, frozen :class:`WeightsRecord` entries.

A record says where the official file lives (URL and/or a resource packaged inside mobilefer), how to
recognise it (full SHA-256 and exact byte size), its licence, and how the model wants its input
(a :class:`~mobilefer.preset.Preset`). The registry itself is an immutable mapping built at import
time; nothing is downloaded or read from disk here.

The UltraFace detector preset is defined once, here, as :data:`ULTRAFACE_PRESET`; the detector code
imports it from :mod:`mobilefer.weights`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from mobilefer.errors import InvalidInputError
from mobilefer.preset import FER2013_LABELS, CropRule, Preset

__all__ = ["FER2013_PRESET", "ULTRAFACE_PRESET", "WeightsRecord", "get_record", "list_records"]

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_URL_SCHEMES = ("http", "https")


def _empty_metrics() -> Mapping[str, float]:
    return MappingProxyType({})


def check_url(url: str, what: str = "url") -> str:
    """Validate an http(s) URL and return it unchanged.

    Raises:
        InvalidInputError: If ``url`` is not a string with an ``http``/``https`` scheme and a host.
    """
    if not isinstance(url, str) or not url:
        raise InvalidInputError(f"{what} must be a non-empty http(s) URL string, got {url!r}")
    parts = urlsplit(url)
    if parts.scheme.lower() not in _URL_SCHEMES or not parts.netloc:
        raise InvalidInputError(f"{what} must be an http:// or https:// URL with a host, got {url!r}")
    return url


@dataclass(frozen=True)
class WeightsRecord:
    """One known weights file.

    Attributes:
        name: Registry key, e.g. ``"ultraface-rfb-320"``.
        url: URL of the official file, or ``None`` for a file that is only shipped inside the package.
        sha256: Full SHA-256 of the file, 64 hex digits (stored lower-case).
        size: Exact file size in bytes.
        license: Licence of the weights (SPDX identifier where one exists).
        filename: Bare file name used in the cache and looked for in a directory passed as ``path=``.
        preset: Preprocessing preset of the model, or ``None``.
        labels: Output class names; defaults to ``preset.labels`` when a preset is given.
        input_size: ``(width, height)``; defaults to ``preset.input_size`` when a preset is given.
        metrics: Reported metrics, name → value (an immutable mapping).
        description: One-line human description.
        packaged: Resource path inside the ``mobilefer`` package (``/``-separated, e.g.
            ``"weights/data/fer.safetensors"``); when set it is tried before the cache and the network.
    """

    name: str
    url: str | None
    sha256: str
    size: int
    license: str
    filename: str
    preset: Preset | None = None
    labels: tuple[str, ...] = ()
    input_size: tuple[int, int] | None = None
    metrics: Mapping[str, float] = field(default_factory=_empty_metrics, hash=False)
    description: str = ""
    packaged: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise InvalidInputError(f"WeightsRecord.name must be a non-empty string, got {self.name!r}")
        where = f"WeightsRecord {self.name!r}"
        if self.url is not None:
            check_url(self.url, f"{where}: url")
        if self.url is None and self.packaged is None:
            raise InvalidInputError(f"{where}: needs a url, a packaged resource, or both")
        if not isinstance(self.sha256, str) or not _SHA256_RE.match(self.sha256.lower()):
            raise InvalidInputError(
                f"{where}: sha256 must be the full 64-hex-digit digest, got {self.sha256!r}"
            )
        object.__setattr__(self, "sha256", self.sha256.lower())
        if not isinstance(self.size, int) or isinstance(self.size, bool) or self.size < 0:
            raise InvalidInputError(f"{where}: size must be a non-negative int (bytes), got {self.size!r}")
        if not isinstance(self.license, str) or not self.license:
            raise InvalidInputError(f"{where}: license must be a non-empty string")
        if (
            not isinstance(self.filename, str)
            or self.filename in ("", ".", "..")
            or "/" in self.filename
            or "\\" in self.filename
            or "\x00" in self.filename
        ):
            raise InvalidInputError(f"{where}: filename must be a bare file name, got {self.filename!r}")
        if self.preset is not None and not isinstance(self.preset, Preset):
            raise InvalidInputError(f"{where}: preset must be a mobilefer.preset.Preset or None")
        self._normalise_labels_and_size(where)
        self._normalise_metrics(where)
        if self.packaged is not None:
            parts = self.packaged.split("/") if isinstance(self.packaged, str) else []
            if not parts or any(p in ("", ".", "..") or "\\" in p for p in parts):
                raise InvalidInputError(
                    f"{where}: packaged must be a relative '/'-separated resource path inside mobilefer, "
                    f"got {self.packaged!r}"
                )
        if not isinstance(self.description, str):
            raise InvalidInputError(f"{where}: description must be a string")

    def _normalise_labels_and_size(self, where: str) -> None:
        labels = tuple(self.labels)
        if not all(isinstance(label, str) for label in labels):
            raise InvalidInputError(f"{where}: labels must be strings, got {self.labels!r}")
        size = self.input_size
        if self.preset is not None:
            if not labels:
                labels = self.preset.labels
            elif self.preset.labels and labels != self.preset.labels:
                raise InvalidInputError(
                    f"{where}: labels {labels!r} differ from the preset's labels {self.preset.labels!r}"
                )
            if size is None:
                size = self.preset.input_size
            elif tuple(size) != self.preset.input_size:
                raise InvalidInputError(
                    f"{where}: input_size {tuple(size)!r} differs from the preset's {self.preset.input_size!r}"
                )
        if size is not None:
            if len(size) != 2 or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in size
            ):
                raise InvalidInputError(
                    f"{where}: input_size must be (width, height) positive ints, got {size!r}"
                )
            size = (size[0], size[1])
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "input_size", size)

    def _normalise_metrics(self, where: str) -> None:
        if not isinstance(self.metrics, Mapping):
            raise InvalidInputError(f"{where}: metrics must be a mapping of name to number")
        clean: dict[str, float] = {}
        for key, value in self.metrics.items():
            if not isinstance(key, str) or not key:
                raise InvalidInputError(f"{where}: metric names must be non-empty strings, got {key!r}")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InvalidInputError(f"{where}: metric {key!r} must be a finite number, got {value!r}")
            clean[key] = float(value)
        object.__setattr__(self, "metrics", MappingProxyType(clean))

    def __reduce__(self) -> tuple[Any, ...]:
        # mappingproxy cannot be pickled; rebuild from plain values (``__post_init__`` re-freezes them).
        values = tuple(
            dict(getattr(self, f.name)) if f.name == "metrics" else getattr(self, f.name)
            for f in fields(self)
        )
        return (type(self), values)


ULTRAFACE_PRESET = Preset(
    name="ultraface-320",
    input_size=(320, 240),
    color="rgb",
    mean=(127.0, 127.0, 127.0),
    std=(128.0, 128.0, 128.0),
    labels=("background", "face"),
)
"""Input preset of the UltraFace 320x240 detectors (RFB and slim): RGB, ``(pixel - 127) / 128``."""

FER2013_PRESET = Preset(
    name="fer2013-mnv2",
    input_size=(48, 48),
    color="gray",
    mean=(127.5,),
    std=(127.5,),
    interpolation="linear",
    labels=FER2013_LABELS,
    crop_rules=(
        ("default", CropRule(margin=0.0, square=True, shift_y=0.0)),
        ("haar", CropRule(margin=0.0, square=True, shift_y=0.05)),
        ("ultraface-rfb-320", CropRule(margin=0.0, square=True, shift_y=0.0)),
        ("ultraface-slim-320", CropRule(margin=0.0, square=True, shift_y=0.05)),
    ),
)
"""Input preset of the shipped FER2013 classifier: 48x48 gray, ``(pixel - 127.5) / 127.5``, and the crop
rule per detector fitted with ``benchmarks/e2e_accuracy.py --fit`` (the packaged checkpoint carries the
same preset; a test checks they are equal)."""

#: Figures measured for the shipped classifier (see docs/model-card.md). ``val_*``: FER2013 PublicTest,
#: all 3,589 faces, as ``mobilefer eval default`` computes them. ``e2e_val_accuracy_<detector>``: the
#: end-to-end protocol (mobilefer.calibration) on all val faces; ``e2e_ci_accuracy_<detector>``: the same
#: protocol on the seeded 300-face CI subset (stratified, seed 0), checked in CI within 2 points.
_FER2013_METRICS: Mapping[str, float] = MappingProxyType(
    {
        "val_accuracy": 0.5895792699916411,
        "val_macro_f1": 0.5263812774435243,
        "e2e_val_accuracy_ultraface-rfb-320": 0.5243800501532461,
        "e2e_val_accuracy_ultraface-slim-320": 0.5118417386458624,
        "e2e_val_accuracy_haar": 0.4480356645305099,
        "e2e_ci_accuracy_ultraface-rfb-320": 0.5733333333333334,
        "e2e_ci_accuracy_ultraface-slim-320": 0.57,
        "e2e_ci_accuracy_haar": 0.49333333333333335,
        "parameters": 2_232_263,
        "macs_48px": 16_243_584,
        # Two stages (docs/model-card.md): 25 epochs in 4,575 s on 1 thread (157 img/s), then 15 epochs in
        # 1,547 s on 2 threads (278 img/s); 40 x 28,709 images / 6,122 s = 187.6 img/s overall.
        "train_seconds": 6122.0,
        "train_images_per_second": 187.6,
        "epochs": 40,
    }
)

_ULTRAFACE_BASE = (
    "https://raw.githubusercontent.com/Linzaer/Ultra-Light-Fast-Generic-Face-Detector-1MB/master"
)

_RECORDS: Mapping[str, WeightsRecord] = MappingProxyType(
    {
        record.name: record
        for record in (
            WeightsRecord(
                name="ultraface-rfb-320",
                url=f"{_ULTRAFACE_BASE}/models/pretrained/version-RFB-320.pth",
                sha256="c722b4427cc71642768baef6e15c659931b56f07425e5d2b0ec033ad41b145b3",
                size=1_168_374,
                license="MIT",
                filename="version-RFB-320.pth",
                preset=ULTRAFACE_PRESET,
                description="UltraFace RFB-320 face detector (PyTorch state dict, ~1 MB), official release.",
            ),
            WeightsRecord(
                name="fer2013-mobilenetv2",
                url=None,
                sha256="2ba74440ac5f0f787e04c00c293bdcd00ee2373c7ef9217ac5859f30c1896730",
                size=9_097_172,
                license="MIT (weights); trained on FER2013, which is distributed for research use",
                filename="fer2013_mobilenetv2.safetensors",
                preset=FER2013_PRESET,
                packaged="weights/data/fer2013_mobilenetv2.safetensors",
                metrics=_FER2013_METRICS,
                description=(
                    "mobilefer's FER2013 expression classifier: MobileNetV2 (ours, width 1.0, stride-2 stem, "
                    "gray 48x48, 2.23M parameters), recipe examples/configs/fer2013_mobilenetv2.yaml then "
                    "examples/configs/fer2013_mobilenetv2_ft.yaml"
                ),
            ),
            WeightsRecord(
                name="ultraface-slim-320",
                url=f"{_ULTRAFACE_BASE}/models/pretrained/version-slim-320.pth",
                sha256="cd24abce45da5dbc7cfd8167cd3d5f955382dfc9d9ae9459f0026abd3c2e38a4",
                size=1_091_283,
                license="MIT",
                filename="version-slim-320.pth",
                preset=ULTRAFACE_PRESET,
                description="UltraFace slim-320 face detector (PyTorch state dict, ~1 MB), official release.",
            ),
        )
    }
)


def list_records() -> tuple[WeightsRecord, ...]:
    """All registered records, sorted by name."""
    return tuple(_RECORDS[name] for name in sorted(_RECORDS))


def get_record(name: str) -> WeightsRecord:
    """The registered record called ``name``.

    Raises:
        InvalidInputError: If no record has that name (the message lists the known names).
    """
    if not isinstance(name, str):
        raise InvalidInputError(f"a weights name must be a string, got {type(name).__name__}")
    try:
        return _RECORDS[name]
    except KeyError:
        known = ", ".join(sorted(_RECORDS))
        raise InvalidInputError(f"unknown weights {name!r}; known weights: {known}") from None
