"""UltraFace face detector: configuration, priors, box decoding, NMS and the detector wrapper.

Every UltraFace constant lives in :class:`UltraFaceConfig` (one frozen instance, :data:`ULTRAFACE`);
the exporters and the Android bundle read it (and the :class:`~mobilefer.preset.Preset` built from
it) instead of repeating numbers.

Pipeline of :meth:`UltraFaceDetector.detect` (the official Python post-processing, see
``docs/detectors.md``):

1. BGR → RGB, resize to 320x240 (``cv2.INTER_LINEAR``), ``(x - 127) / 128``, NCHW.
2. :class:`~mobilefer.detect.ultraface_net.UltraFaceNet` → soft-maxed scores and raw regressions.
3. :func:`decode_boxes` against :func:`generate_priors` (centre variance 0.1, size variance 0.2) →
   corner-form boxes normalised to [0, 1] (not clipped).
4. :func:`select_boxes`: keep face scores ``> 0.7``, the 200 best, hard NMS at IoU 0.3
   (``torchvision.ops.nms``), no top-k limit; scale to the input image's pixels.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from torch import nn

from mobilefer.detect._image import validate_image
from mobilefer.detect.base import Detection
from mobilefer.detect.ultraface_net import Backbone, UltraFaceNet
from mobilefer.errors import InvalidInputError, ModelFormatError, WeightsNotFoundError
from mobilefer.preset import Preset

__all__ = [
    "UltraFaceConfig",
    "ULTRAFACE",
    "UltraFaceVariant",
    "ULTRAFACE_VARIANTS",
    "generate_priors",
    "decode_boxes",
    "select_boxes",
    "load_ultraface_net",
    "UltraFaceDecoded",
    "UltraFaceDetector",
]


@dataclass(frozen=True)
class UltraFaceConfig:
    """All constants of the official UltraFace models (``vision/ssd/config/fd_config.py``).

    Attributes:
        min_boxes: Prior side lengths in input pixels, one tuple per head.
        strides: Nominal stride of each head; its feature map is ``ceil(size / stride)`` per axis.
        center_variance: Scale of the centre regressions.
        size_variance: Scale of the log-size regressions.
        clamp_priors: Clamp prior coordinates to [0, 1] (the official priors are clamped).
        score_threshold: Face score a box needs (strictly greater) to be kept.
        iou_threshold: Hard-NMS overlap above which the lower-scored box is dropped.
        candidate_size: Boxes (best first) that enter NMS.
        top_k: Maximum detections returned, ``None`` for no limit.
        input_sizes: Supported ``(width, height)`` input sizes.
    """

    min_boxes: tuple[tuple[int, ...], ...] = ((10, 16, 24), (32, 48), (64, 96), (128, 192, 256))
    strides: tuple[int, ...] = (8, 16, 32, 64)
    center_variance: float = 0.1
    size_variance: float = 0.2
    clamp_priors: bool = True
    score_threshold: float = 0.7
    iou_threshold: float = 0.3
    candidate_size: int = 200
    top_k: int | None = None
    input_sizes: tuple[tuple[int, int], ...] = ((128, 96), (160, 120), (320, 240), (480, 360), (640, 480))

    def input_size(self, width: int) -> tuple[int, int]:
        """``(width, height)`` for a supported input width (128, 160, 320, 480, 640).

        Raises:
            InvalidInputError: For any other width.
        """
        for size in self.input_sizes:
            if size[0] == width:
                return size
        raise InvalidInputError(
            f"unsupported UltraFace input width {width!r}; expected one of {[s[0] for s in self.input_sizes]}"
        )

    def feature_map_sizes(self, width: int) -> tuple[tuple[int, int], ...]:
        """``(width, height)`` of each head's feature map for a supported input width."""
        return _feature_maps(self.input_size(width), self.strides)

    def shrinkages(self, width: int) -> tuple[tuple[float, float], ...]:
        """Official per-head ``(input_w / map_w, input_h / map_h)`` (not always equal to the stride)."""
        w, h = self.input_size(width)
        return tuple((w / fw, h / fh) for fw, fh in self.feature_map_sizes(width))

    def num_priors(self, width: int) -> int:
        """Number of priors (= network output length) for a supported input width."""
        return sum(
            fw * fh * len(m)
            for (fw, fh), m in zip(self.feature_map_sizes(width), self.min_boxes, strict=True)
        )

    def priors(self, width: int) -> np.ndarray:
        """Centre-form priors ``(cx, cy, w, h)``, normalised, float32 (A, 4), for a supported width."""
        return generate_priors(self.input_size(width), self.min_boxes, self.strides, clamp=self.clamp_priors)

    def preset(self, width: int = 320) -> Preset:
        """The input :class:`~mobilefer.preset.Preset` at ``width`` (name ``ultraface-<w>``).

        Colour order, mean/std, interpolation and labels come from the weights registry's
        :data:`mobilefer.weights.ULTRAFACE_PRESET`, the single definition of the UltraFace input.
        """
        from mobilefer.weights.registry import ULTRAFACE_PRESET

        return dataclasses.replace(ULTRAFACE_PRESET, name=f"ultraface-{width}", input_size=self.input_size(width))


#: The official configuration; frozen, shared by every UltraFace detector and exporter.
ULTRAFACE = UltraFaceConfig()


@dataclass(frozen=True)
class UltraFaceVariant:
    """A named detector variant: backbone and input width."""

    name: str
    arch: Backbone
    width: int


#: Detector variants by name (read-only).
ULTRAFACE_VARIANTS: Mapping[str, UltraFaceVariant] = MappingProxyType(
    {
        v.name: v
        for v in (
            UltraFaceVariant("ultraface-rfb-320", "rfb", 320),
            UltraFaceVariant("ultraface-slim-320", "slim", 320),
        )
    }
)


def _variant(name: str) -> UltraFaceVariant:
    if isinstance(name, str) and name in ULTRAFACE_VARIANTS:
        return ULTRAFACE_VARIANTS[name]
    raise InvalidInputError(
        f"unknown UltraFace variant {name!r}; expected one of {sorted(ULTRAFACE_VARIANTS)}"
    )


def _feature_maps(size: tuple[int, int], strides: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    # Each stride-2 3x3/pad-1 convolution maps n to ceil(n / 2), so a head at stride s sees ceil(n / s).
    return tuple((math.ceil(size[0] / s), math.ceil(size[1] / s)) for s in strides)


def generate_priors(
    input_size: tuple[int, int],
    min_boxes: tuple[tuple[int, ...], ...] = ULTRAFACE.min_boxes,
    strides: tuple[int, ...] = ULTRAFACE.strides,
    *,
    clamp: bool = True,
) -> np.ndarray:
    """SSD priors of the UltraFace heads for an input of ``(width, height)`` pixels.

    For head ``k`` with feature map ``(fw, fh) = (ceil(W / stride_k), ceil(H / stride_k))``, rows are
    ordered by cell row ``j``, then column ``i``, then ``min_box`` (the order of the network's
    outputs). Each prior is ``((i + 0.5) / fw, (j + 0.5) / fh, min_box / W, min_box / H)``, then
    clamped to [0, 1] if ``clamp``.

    Returns:
        (A, 4) float32 array in centre form, normalised to the input size.

    Raises:
        InvalidInputError: If the size is not two positive ints or ``min_boxes``/``strides`` differ in length.
    """
    if len(input_size) != 2 or not all(isinstance(v, int) and v > 0 for v in input_size):
        raise InvalidInputError(f"input_size must be (width, height) positive ints, got {input_size!r}")
    if len(min_boxes) != len(strides):
        raise InvalidInputError(
            f"need one min_boxes entry per stride, got {len(min_boxes)} and {len(strides)}"
        )
    width, height = input_size
    rows: list[np.ndarray] = []
    for (fw, fh), sides in zip(_feature_maps(input_size, strides), min_boxes, strict=True):
        cx = (np.arange(fw, dtype=np.float64) + 0.5) / fw
        cy = (np.arange(fh, dtype=np.float64) + 0.5) / fh
        side = np.asarray(sides, dtype=np.float64)
        grid = np.empty((fh, fw, len(sides), 4), dtype=np.float64)
        grid[..., 0] = cx[None, :, None]
        grid[..., 1] = cy[:, None, None]
        grid[..., 2] = side[None, None, :] / width
        grid[..., 3] = side[None, None, :] / height
        rows.append(grid.reshape(-1, 4))
    priors = np.concatenate(rows).astype(np.float32)
    if clamp:
        np.clip(priors, 0.0, 1.0, out=priors)
    return priors


def decode_boxes(
    locations: torch.Tensor,
    priors: torch.Tensor,
    center_variance: float = ULTRAFACE.center_variance,
    size_variance: float = ULTRAFACE.size_variance,
) -> torch.Tensor:
    """Turn regressions into corner-form boxes ``(x1, y1, x2, y2)`` normalised to the input size.

    ``centre = loc[:2] * center_variance * prior_wh + prior_centre``;
    ``size = exp(loc[2:] * size_variance) * prior_wh``; corners are ``centre -/+ size / 2``.

    Args:
        locations: (..., A, 4) raw regressions.
        priors: (A, 4) centre-form priors.
    """
    centre = locations[..., :2] * center_variance * priors[..., 2:] + priors[..., :2]
    size = torch.exp(locations[..., 2:] * size_variance) * priors[..., 2:]
    return torch.cat((centre - size / 2, centre + size / 2), dim=-1)


def _decode_numpy(
    locations: np.ndarray, priors: np.ndarray, center_variance: float, size_variance: float
) -> np.ndarray:
    """:func:`decode_boxes` in float32 numpy for (K, 4) regressions and their (K, 4) priors.

    Same formula and the same boxes on the shipped photos (max difference 0.0); kept separate because
    torch ops right after an onnxruntime call cost 0.1-0.2 ms more per frame (measured side by side:
    detect 3.00 vs 3.23 ms on 2 threads)."""
    centre = locations[:, :2] * np.float32(center_variance) * priors[:, 2:] + priors[:, :2]
    size = np.exp(locations[:, 2:] * np.float32(size_variance)) * priors[:, 2:]
    half = size / np.float32(2)
    return np.ascontiguousarray(np.concatenate((centre - half, centre + half), axis=1), dtype=np.float32)


def select_boxes(
    scores: torch.Tensor,
    boxes: torch.Tensor,
    *,
    score_threshold: float = ULTRAFACE.score_threshold,
    iou_threshold: float = ULTRAFACE.iou_threshold,
    candidate_size: int = ULTRAFACE.candidate_size,
    top_k: int | None = ULTRAFACE.top_k,
) -> torch.Tensor:
    """Indices of the boxes that survive the official hard-NMS post-processing, best first.

    Keeps boxes whose ``scores`` is strictly above ``score_threshold``, takes the ``candidate_size``
    highest-scored of them, runs ``torchvision.ops.nms`` (drops a box whose IoU with a better kept
    box exceeds ``iou_threshold``) and truncates to ``top_k`` when given.

    Args:
        scores: (A,) face probabilities.
        boxes: (A, 4) corner-form boxes (any consistent unit).

    Returns:
        (K,) int64 indices into ``scores``/``boxes``, sorted by decreasing score.
    """
    from torchvision.ops import nms

    candidates = torch.nonzero(scores > score_threshold).flatten()
    if candidates.numel() == 0:
        return candidates
    order = torch.argsort(scores[candidates], descending=True, stable=True)[:candidate_size]
    candidates = candidates[order]
    kept = nms(boxes[candidates].float(), scores[candidates].float(), iou_threshold)
    if top_k is not None:
        kept = kept[:top_k]
    return candidates[kept]


def _check_torch_file_size(path: Path, limit: int) -> None:
    """Refuse a torch file that is, or would decompress to, more than ``limit`` bytes, before reading it.

    ``torch.load`` allocates each zip record's declared uncompressed size, so a few-MB file with a
    deflated record can make it allocate gigabytes; the declared sizes are checked here first.
    """
    import zipfile

    from mobilefer._files import declared_zip_size

    size = path.stat().st_size
    if size > limit:
        raise ModelFormatError(f"{path} is {size} bytes; UltraFace weights are at most {limit} bytes")
    try:
        declared = declared_zip_size(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ModelFormatError(f"{path} is a damaged torch zip file ({exc})") from exc
    # None: legacy (non-zip) torch format, whose storages are read from the file itself.
    if declared is not None and declared > limit:
        raise ModelFormatError(
            f"{path} would unpack to {declared} bytes; UltraFace weights are at most {limit} bytes"
        )


def load_ultraface_net(arch: str, path: str | Path) -> UltraFaceNet:
    """Build an :class:`UltraFaceNet` and load official-format weights into it (``strict=True``).

    The file is read with ``torch.load(..., weights_only=True)``; no checksum is verified here (that is
    :func:`mobilefer.weights.resolve`'s job), so fine-tuned weights with the same layout load too.

    Args:
        arch: ``"rfb"``/``"slim"`` or a variant name such as ``"ultraface-rfb-320"``.
        path: A ``.pth`` state dict.

    Returns:
        The network in eval mode.

    Raises:
        WeightsNotFoundError: If ``path`` does not exist.
        ModelFormatError: If the file is not a state dict of this architecture.
    """
    path = Path(path)
    net = UltraFaceNet(arch)
    if not path.is_file():
        raise WeightsNotFoundError(f"UltraFace weights file {path} does not exist")
    # Even float64 weights need 8 bytes per element; anything much larger is not this network.
    _check_torch_file_size(path, 8 * sum(t.numel() for t in net.state_dict().values()) + (1 << 20))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for corrupt files
        raise ModelFormatError(
            f"{path} is not a readable torch state dict ({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelFormatError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape))
    if missing or unexpected or wrong:
        raise ModelFormatError(
            f"{path} does not fit UltraFace {net.arch!r}: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}, wrong shape {wrong[:5]} "
            "(is it the other backbone's file?)"
        )
    net.load_state_dict(state, strict=True)
    return net.eval()


class UltraFaceDecoded(nn.Module):
    """:class:`UltraFaceNet` plus prior decoding: outputs like the official full ``version-*-320.onnx``.

    ``forward`` returns ``(scores, boxes)``: (N, A, 2) soft-maxed scores and (N, A, 4) corner-form
    boxes normalised to [0, 1]. The priors are a non-persistent buffer, so ``state_dict`` stays that
    of the wrapped network (keys prefixed ``net.``).

    Args:
        net: The network.
        width: Input width (128, 160, 320, 480 or 640); the input height follows from the config.
        config: Constants (defaults to the official ones).
    """

    priors: torch.Tensor

    def __init__(self, net: UltraFaceNet, width: int = 320, config: UltraFaceConfig = ULTRAFACE) -> None:
        super().__init__()
        self.net = net
        self.input_size = config.input_size(width)
        self.center_variance = config.center_variance
        self.size_variance = config.size_variance
        self.register_buffer("priors", torch.from_numpy(config.priors(width)), persistent=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores, locations = self.net(x)
        return scores, decode_boxes(locations, self.priors, self.center_variance, self.size_variance)

    def forward_raw(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, A, 2) soft-maxed scores and (N, A, 4) raw regressions (not decoded)."""
        scores, locations = self.net(x)
        return scores, locations


class UltraFaceDetector:
    """Face detector on the UltraFace RFB or slim network (320x240 input).

    Args:
        variant: ``"ultraface-rfb-320"`` or ``"ultraface-slim-320"``.
        weights: A ``.pth`` file in the official format. When ``None`` (and no ``net`` is given) the
            registry's file is used: ``mobilefer.weights.resolve(variant)`` (SHA-256 verified). An
            explicit path is loaded as is (strict key/shape check, no checksum).
        net: An already built network instead of ``weights`` (e.g. freshly trained).
        score_threshold: Minimum face score, exclusive (official 0.7).
        iou_threshold: Hard-NMS IoU threshold (official 0.3).
        candidate_size: Boxes entering NMS (official 200).
        top_k: Maximum number of faces, ``None`` for no limit (official).
        config: Constants (defaults to :data:`ULTRAFACE`).

    Boxes are returned in input-image pixels and are *not* clipped to the image (like the official
    code), so a face at the border can have ``x1 < 0``.

    Raises:
        InvalidInputError: For an unknown variant, bad thresholds, or both ``weights`` and ``net``.
        WeightsNotFoundError, ChecksumMismatchError, ModelFormatError: When weights cannot be loaded.
    """

    def __init__(
        self,
        variant: str = "ultraface-rfb-320",
        *,
        weights: str | Path | None = None,
        net: UltraFaceNet | None = None,
        score_threshold: float = ULTRAFACE.score_threshold,
        iou_threshold: float = ULTRAFACE.iou_threshold,
        candidate_size: int = ULTRAFACE.candidate_size,
        top_k: int | None = ULTRAFACE.top_k,
        config: UltraFaceConfig = ULTRAFACE,
    ) -> None:
        spec = _variant(variant)
        _check_fraction("score_threshold", score_threshold, allow_zero=True)
        _check_fraction("iou_threshold", iou_threshold, allow_zero=False)
        _check_count("candidate_size", candidate_size)
        if top_k is not None:
            _check_count("top_k", top_k)
        self.name: str = spec.name
        self.score_threshold = float(score_threshold)
        self.iou_threshold = float(iou_threshold)
        self.candidate_size = int(candidate_size)
        self.top_k = top_k
        self.config = config
        self._preset = config.preset(spec.width)
        if net is not None and weights is not None:
            raise InvalidInputError("give either weights or net, not both")
        if net is None:
            net = load_ultraface_net(spec.arch, self._default_weights(spec) if weights is None else weights)
        elif not isinstance(net, UltraFaceNet) or net.arch != spec.arch:
            raise InvalidInputError(f"net must be an UltraFaceNet({spec.arch!r}) for {spec.name!r}")
        self.model = UltraFaceDecoded(net.eval(), spec.width, config).eval()

    @classmethod
    def from_file(cls, variant: str, path: str | Path, **kwargs: Any) -> UltraFaceDetector:
        """A detector with the weights in ``path`` (other keyword arguments as in the constructor)."""
        if path is None:
            raise InvalidInputError("from_file() needs a weights path")
        return cls(variant, weights=path, **kwargs)

    @staticmethod
    def _default_weights(spec: UltraFaceVariant) -> Path:
        from mobilefer.weights import resolve

        return resolve(spec.name)

    @property
    def net(self) -> UltraFaceNet:
        """The wrapped network (outputs scores and raw regressions)."""
        net: UltraFaceNet = self.model.net
        return net

    @property
    def preset(self) -> Preset:
        """Input description of the network (size, RGB, mean 127, std 128, labels)."""
        return self._preset

    @property
    def priors(self) -> torch.Tensor:
        """(A, 4) centre-form priors used for decoding."""
        return self.model.priors

    def raw_outputs(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Decoded network outputs for one image: (A, 2) scores and (A, 4) normalised corner boxes."""
        batch = torch.from_numpy(self._preset.preprocess([validate_image(image)]))
        with torch.inference_mode():
            scores, boxes = self.model(batch)
        return scores[0].numpy(), boxes[0].numpy()

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Detect faces in a BGR (or gray/BGRA) uint8 image.

        Returns:
            Detections in input pixels, sorted by decreasing score.

        Raises:
            InvalidImageError: If ``image`` is not a uint8 (H, W), (H, W, 3) or (H, W, 4) array.
        """
        image = validate_image(image)
        height, width = image.shape[:2]
        batch = torch.from_numpy(self._preset.preprocess([image]))
        with torch.inference_mode():
            scores, locations = self.model.forward_raw(batch)
        _, boxes, face_scores = self.postprocess(scores[0, :, 1].numpy(), locations[0].numpy(), width, height)
        return [
            Detection(box=(float(b[0]), float(b[1]), float(b[2]), float(b[3])), score=float(s))
            for b, s in zip(boxes.tolist(), face_scores.tolist(), strict=True)
        ]

    def postprocess(
        self, face_scores: np.ndarray, locations: np.ndarray, width: int, height: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Network outputs of one image → its faces (the selection :meth:`detect` makes).

        The same selection as :func:`select_boxes` on :func:`decode_boxes` of all priors, but only the
        candidates (face score above the threshold: usually a few dozen of the 4,420 priors) are decoded,
        in float32 numpy. On 2 threads this is 0.5-0.9 ms per frame faster (benchmarks/README.md).

        Args:
            face_scores: (A,) face probabilities (column 1 of the soft-maxed scores).
            locations: (A, 4) raw regressions.
            width: Width of the input image in pixels.
            height: Its height.

        Returns:
            ``(indices, boxes, scores)``: (K,) int64 indices of the kept priors, best first; their (K, 4)
            float32 corner boxes in input pixels; their (K,) float32 scores.
        """
        from torchvision.ops import nms

        face_scores = np.asarray(face_scores, dtype=np.float32)
        candidates = np.flatnonzero(face_scores > self.score_threshold)
        if candidates.size == 0:
            return candidates.astype(np.int64), np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)
        candidates = candidates[np.argsort(-face_scores[candidates], kind="stable")[: self.candidate_size]]
        boxes = _decode_numpy(
            np.asarray(locations, dtype=np.float32)[candidates],
            self.model.priors.numpy()[candidates],
            self.model.center_variance,
            self.model.size_variance,
        )
        scores = np.ascontiguousarray(face_scores[candidates])
        kept = nms(torch.from_numpy(boxes), torch.from_numpy(scores), self.iou_threshold).numpy()
        if self.top_k is not None:
            kept = kept[: self.top_k]
        scale = np.array([width, height, width, height], dtype=np.float32)
        return candidates[kept].astype(np.int64), boxes[kept] * scale, scores[kept]

    def __repr__(self) -> str:
        return (
            f"UltraFaceDetector({self.name!r}, score_threshold={self.score_threshold}, "
            f"iou_threshold={self.iou_threshold}, candidate_size={self.candidate_size}, top_k={self.top_k})"
        )


def _check_fraction(name: str, value: float, *, allow_zero: bool) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (0.0 <= value <= 1.0 if allow_zero else 0.0 < value <= 1.0)
    if not ok:
        interval = "[0, 1]" if allow_zero else "(0, 1]"
        raise InvalidInputError(f"{name} must be a number in {interval}, got {value!r}")


def _check_count(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidInputError(f"{name} must be an int >= 1, got {value!r}")
