"""Golden vectors for the Android template's native core (``android-template/``).

:func:`write_golden_vectors` runs mobilefer's own Python code on real photos and writes what the C++
core must reproduce: colour conversions and rotations (OpenCV), resizes (``cv2.resize``), the UltraFace
priors (:func:`~mobilefer.detect.ultraface.generate_priors`), network outputs, decoded boxes
(:func:`~mobilefer.detect.ultraface.decode_boxes`), kept boxes (:func:`~mobilefer.detect.ultraface.select_boxes`),
crop windows and crops (:class:`~mobilefer.preset.CropRule`), preprocessed tensors
(:meth:`~mobilefer.preset.Preset.preprocess`), softmax (:mod:`mobilefer.classify.classifier`) and
temporal smoothing (:class:`~mobilefer.video.SmoothingTracker`).

Format (read by ``android-template/host-tests/golden_io.h`` without a JSON library):

* ``config.txt``: one ``key value [value ...]`` line per setting (values separated by single spaces,
  floats written with ``repr`` so they round-trip exactly; lists of lists as ``a,b,c d,e``).
* ``<name>.bin``: one array each: magic ``MFGV``, then little-endian uint32 version (1), dtype code
  (1 float32, 2 int32, 3 uint8, 4 float64), ndim and the dims, then the raw little-endian data.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mobilefer.errors import InvalidImageError, InvalidInputError
from mobilefer.preset import CropRule, Preset
from mobilefer.video import DEFAULT_SMOOTHING, SmoothingParams

if TYPE_CHECKING:  # pragma: no cover
    from mobilefer.detect.ultraface import UltraFaceDetector

__all__ = ["GoldenSummary", "default_classifier_presets", "read_golden_array", "write_golden_vectors"]

logger = logging.getLogger(__name__)

_MAGIC = b"MFGV"
_VERSION = 1
_DTYPES: dict[str, int] = {"float32": 1, "int32": 2, "uint8": 3, "float64": 4}
_CODES: dict[int, str] = {code: name for name, code in _DTYPES.items()}

#: Target sizes of the resize cases, as (width, height): downscales (non-integer and exactly 2x),
#: upscales, mixed, and a one-pixel-wide source.
_RESIZE_TARGETS: tuple[tuple[int, int], ...] = ((320, 240), (320, 240), (48, 48), (48, 48), (64, 64), (13, 77), (9, 3))
_SMOOTHING_FRAMES = 14
_CONVERSION_IMAGES = 2  # photos whose colour conversions are written (all photos get the RGBA frame)
_ORIENT_SIZE = (150, 101)  # (width, height) of the patch used for the rotation/mirror cases


@dataclass(frozen=True)
class GoldenSummary:
    """What :func:`write_golden_vectors` wrote.

    Attributes:
        out_dir: The folder.
        images: Source names of the photos, in order.
        faces: Faces kept by the detector per photo.
        classifier_presets: Names of the classifier presets exercised (``classifier<k>`` in config.txt).
        resize_cases: Number of resize cases.
        smoothing_frames: Frames of the smoothing sequence.
        files: Number of files written.
    """

    out_dir: Path
    images: tuple[str, ...]
    faces: tuple[int, ...]
    classifier_presets: tuple[str, ...]
    resize_cases: int
    smoothing_frames: int
    files: int


def default_classifier_presets(detector_name: str) -> tuple[Preset, ...]:
    """The classifier presets the golden vectors exercise by default.

    Both are the presets a training run ships (:func:`mobilefer.train.trainer.default_preset`): the
    default gray 48x48 one, with a centred square crop rule (10% margin, slightly lowered centre), and
    an RGB 64x64 one with nearest-neighbour resizing and a non-square, zero-padded crop rule, so every
    branch of the native crop and preprocessing code is compared.
    """
    from mobilefer.classify.classifier import FER2013_LABELS
    from mobilefer.train.config import TrainConfig
    from mobilefer.train.trainer import default_preset

    base = TrainConfig()
    gray = default_preset(base, FER2013_LABELS).with_crop_rule(
        detector_name, CropRule(margin=0.1, square=True, shift_y=0.05)
    )
    rgb_cfg = dataclasses.replace(base, data=dataclasses.replace(base.data, color="rgb", image_size=64))
    rgb = dataclasses.replace(default_preset(rgb_cfg, FER2013_LABELS), name="rgb64-nearest", interpolation="nearest")
    rgb = rgb.with_crop_rule(detector_name, CropRule(margin=0.25, square=False, shift_y=-0.1, border="constant"))
    return gray, rgb


def read_golden_array(path: str | Path) -> np.ndarray:
    """Read one ``.bin`` array written by :func:`write_golden_vectors`.

    Raises:
        InvalidInputError: If the file is not a golden array.
    """
    data = Path(path).read_bytes()
    if len(data) < 16 or data[:4] != _MAGIC:
        raise InvalidInputError(f"{path} is not a mobilefer golden array (bad magic)")
    version, code, ndim = struct.unpack_from("<III", data, 4)
    if version != _VERSION or code not in _CODES:
        raise InvalidInputError(f"{path}: unsupported golden array version {version} or dtype code {code}")
    dims = struct.unpack_from(f"<{ndim}I", data, 16)
    offset = 16 + 4 * ndim
    array = np.frombuffer(data, dtype=np.dtype(_CODES[code]).newbyteorder("<"), offset=offset)
    if array.size != math.prod(dims):
        raise InvalidInputError(f"{path}: {array.size} values for dims {dims}")
    return array.reshape(dims).astype(_CODES[code])


class _Writer:
    """Writes arrays and config lines into one folder."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.lines: list[str] = []
        self.files = 0

    def array(self, name: str, value: np.ndarray) -> None:
        array = np.ascontiguousarray(value)
        dtype = str(array.dtype)
        if dtype not in _DTYPES:
            raise InvalidInputError(f"golden array {name!r}: unsupported dtype {dtype}")
        header = _MAGIC + struct.pack(f"<III{array.ndim}I", _VERSION, _DTYPES[dtype], array.ndim, *array.shape)
        payload = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        (self.out_dir / f"{name}.bin").write_bytes(header + payload)
        self.files += 1

    def config(self, key: str, *values: object) -> None:
        parts = [key]
        for value in values:
            if isinstance(value, bool):
                parts.append("1" if value else "0")
            elif isinstance(value, float):
                parts.append(repr(value))
            else:
                text = str(value)
                if not text or any(ch.isspace() for ch in text):
                    raise InvalidInputError(f"golden config value {text!r} of {key!r} must be a non-empty word")
                parts.append(text)
        self.lines.append(" ".join(parts))

    def input_spec(self, prefix: str, preset: Preset, input_name: str) -> None:
        self.config(f"{prefix}.input.name", input_name)
        self.config(f"{prefix}.input.width", preset.width)
        self.config(f"{prefix}.input.height", preset.height)
        self.config(f"{prefix}.input.color", preset.color)
        self.config(f"{prefix}.input.mean", *(float(v) for v in preset.mean))
        self.config(f"{prefix}.input.std", *(float(v) for v in preset.std))
        self.config(f"{prefix}.input.interpolation", preset.interpolation)

    def finish(self) -> None:
        (self.out_dir / "config.txt").write_text("\n".join(self.lines) + "\n", encoding="utf-8")
        self.files += 1


def _load_bgr(image: str | Path | np.ndarray, index: int) -> tuple[str, np.ndarray]:
    import cv2

    if isinstance(image, np.ndarray):
        name, bgr = f"array{index}", image
    else:
        path = Path(image)
        loaded = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if loaded is None:
            raise InvalidImageError(f"cannot read image {path}")
        name, bgr = path.name, loaded
    if bgr.dtype != np.uint8 or bgr.ndim != 3 or bgr.shape[2] != 3 or min(bgr.shape[:2]) < 64:
        raise InvalidImageError(f"image {name}: expected a BGR uint8 photo of at least 64x64 pixels, got {bgr.shape}")
    if any(ch.isspace() for ch in name):
        name = name.replace(" ", "_")
    return name, np.ascontiguousarray(bgr)


def _nv21_from_bgr(bgr: np.ndarray) -> np.ndarray:
    """An NV21 buffer ((H * 3 / 2, W) uint8) of the even-sized top-left part of ``bgr`` (OpenCV's I420)."""
    import cv2

    h, w = (bgr.shape[0] // 2) * 2, (bgr.shape[1] // 2) * 2
    i420 = cv2.cvtColor(np.ascontiguousarray(bgr[:h, :w]), cv2.COLOR_BGR2YUV_I420)
    flat = i420.reshape(-1)
    quarter = (h // 2) * (w // 2)
    y = flat[: h * w].reshape(h, w)
    u = flat[h * w : h * w + quarter].reshape(h // 2, w // 2)
    v = flat[h * w + quarter :].reshape(h // 2, w // 2)
    vu = np.stack([v, u], axis=-1).reshape(h // 2, w)
    return np.ascontiguousarray(np.concatenate([y, vu], axis=0))


def _rgba_with_alpha(bgr: np.ndarray) -> np.ndarray:
    """The photo as RGBA with a varying alpha channel (which every conversion must ignore)."""
    import cv2

    rgba = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGBA)
    rgba[..., 3] = (np.arange(rgba.shape[1]) % 256).astype(np.uint8)[None, :]
    return rgba


def _write_image_conversions(w: _Writer, prefix: str, bgr: np.ndarray) -> np.ndarray:
    import cv2

    rgba = _rgba_with_alpha(bgr)
    w.array(f"{prefix}_rgba", rgba)
    w.array(f"{prefix}_rgba_gray", cv2.cvtColor(rgba, cv2.COLOR_RGBA2GRAY))
    w.array(f"{prefix}_rgba_rgb", cv2.cvtColor(rgba, cv2.COLOR_RGBA2RGB))
    w.array(f"{prefix}_rgba_bgr", cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGR))
    nv21 = _nv21_from_bgr(bgr)
    w.array(f"{prefix}_nv21", nv21)
    w.array(f"{prefix}_nv21_rgb", cv2.cvtColor(nv21, cv2.COLOR_YUV2RGB_NV21))
    w.array(f"{prefix}_nv21_bgr", cv2.cvtColor(nv21, cv2.COLOR_YUV2BGR_NV21))
    w.array(f"{prefix}_nv21_gray", cv2.cvtColor(nv21, cv2.COLOR_YUV2GRAY_NV21))
    return rgba


def _write_orientation(w: _Writer, bgr: np.ndarray) -> None:
    import cv2

    pw, ph = _ORIENT_SIZE
    top, left = bgr.shape[0] // 4, bgr.shape[1] // 4
    rgb = cv2.cvtColor(np.ascontiguousarray(bgr[top : top + ph, left : left + pw]), cv2.COLOR_BGR2RGB)
    w.array("orient_src", rgb)
    rotations = {0: None, 90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}
    for degrees, code in rotations.items():
        rotated = rgb if code is None else cv2.rotate(rgb, code)
        w.array(f"orient_{degrees}_0", rotated)
        w.array(f"orient_{degrees}_1", cv2.flip(rotated, 1))


def _write_resize_cases(w: _Writer, photos: Sequence[np.ndarray]) -> int:
    import cv2

    first, second = photos[0], photos[min(1, len(photos) - 1)]
    sources = [
        cv2.cvtColor(first, cv2.COLOR_BGR2GRAY),  # full photo, gray, non-integer downscale
        cv2.cvtColor(second, cv2.COLOR_BGR2RGB),  # full photo, 3 channels
        cv2.cvtColor(first[40:120, 60:160], cv2.COLOR_BGR2RGBA),  # 4 channels
        cv2.cvtColor(second[100:125, 200:230], cv2.COLOR_BGR2GRAY),  # upscale
        np.ascontiguousarray(cv2.cvtColor(first, cv2.COLOR_BGR2RGB)[:128, :128]),  # exactly 2x down
        np.ascontiguousarray(first[10:41, 10:107]),  # mixed up/down, 3 channels
        np.ascontiguousarray(cv2.cvtColor(first, cv2.COLOR_BGR2GRAY)[5:10, 7:8]),  # one pixel wide
    ]
    flags = {"linear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST}
    for k, (src, (tw, th)) in enumerate(zip(sources, _RESIZE_TARGETS, strict=True)):
        w.array(f"resize{k}_src", src)
        for name, flag in flags.items():
            w.array(f"resize{k}_{name}", cv2.resize(src, (tw, th), interpolation=flag))
        w.config(f"resize{k}.size", tw, th)
    w.config("resize.cases", len(sources))
    return len(sources)


def _softmax(logits: np.ndarray) -> np.ndarray:
    from mobilefer.classify.classifier import softmax as classifier_softmax

    return classifier_softmax(logits)


def _write_smoothing(
    w: _Writer, boxes: np.ndarray, num_classes: int, params: SmoothingParams, rng: np.random.Generator
) -> int:
    from mobilefer.video import SmoothingTracker

    tracker = SmoothingTracker(params.alpha, params.match_iou, params.max_age)
    base = boxes[: min(len(boxes), 6)].astype(np.float64)
    index = 0
    for f in range(_SMOOTHING_FRAMES):
        # Faces drift a little, some vanish for a frame, strangers appear, the order is shuffled, and
        # once the clock jumps past max_age so every track expires.
        index += params.max_age + 2 if f == _SMOOTHING_FRAMES // 2 else 1
        keep = rng.random(len(base)) > 0.2
        moved = base[keep] + rng.normal(0.0, 2.0, size=(int(keep.sum()), 4))
        extra = []
        if rng.random() < 0.4:
            x, y = rng.uniform(0, 400), rng.uniform(0, 300)
            extra.append([x, y, x + rng.uniform(20, 60), y + rng.uniform(20, 60)])
        frame_boxes = np.concatenate([moved, np.asarray(extra, dtype=np.float64).reshape(-1, 4)])
        frame_boxes = frame_boxes[rng.permutation(len(frame_boxes))]
        probs = _softmax(rng.normal(0.0, 2.0, size=(len(frame_boxes), num_classes)).astype(np.float32))
        out = tracker.update(index, [list(map(float, b)) for b in frame_boxes], probs)
        w.config(f"smooth{f}.index", index)
        w.array(f"smooth{f}_boxes", frame_boxes.reshape(-1, 4))
        w.array(f"smooth{f}_probs", probs.reshape(-1, num_classes))
        w.array(f"smooth{f}_ids", np.asarray([t for t, _ in out], dtype=np.int32))
        w.array(f"smooth{f}_out", np.asarray([p for _, p in out], dtype=np.float32).reshape(-1, num_classes))
    w.config("smoothing.frames", _SMOOTHING_FRAMES)
    return _SMOOTHING_FRAMES


def write_golden_vectors(
    out_dir: str | Path,
    images: Sequence[str | Path | np.ndarray],
    detector: UltraFaceDetector,
    *,
    classifier_presets: Sequence[Preset] | None = None,
    smoothing: SmoothingParams = DEFAULT_SMOOTHING,
    seed: int = 0,
) -> GoldenSummary:
    """Write golden vectors for the native core into ``out_dir`` (created if needed).

    Args:
        out_dir: Output folder.
        images: Photos (paths or BGR uint8 arrays, at least 64x64), ideally with several faces.
        detector: The UltraFace detector whose network produces the raw outputs (its preset, variant
            name and :data:`~mobilefer.detect.ultraface.ULTRAFACE` constants go into config.txt).
        classifier_presets: Classifier presets to exercise (default: :func:`default_classifier_presets`).
            The first one drives the end-to-end case; its crop rule for the detector is used.
        smoothing: Smoothing parameters (default: the ones exported bundles carry).
        seed: Seed of the synthetic classifier logits and of the smoothing sequence.

    Returns:
        A :class:`GoldenSummary`.

    Raises:
        InvalidInputError: For no images or an empty preset list.
        InvalidImageError: For an unreadable or too small image.
    """
    import torch

    from mobilefer.detect.ultraface import decode_boxes, generate_priors, select_boxes
    from mobilefer.export.onnx import export_spec

    if len(images) == 0:
        raise InvalidInputError("write_golden_vectors() needs at least one image")
    presets = tuple(default_classifier_presets(detector.name) if classifier_presets is None else classifier_presets)
    if not presets:
        raise InvalidInputError("write_golden_vectors() needs at least one classifier preset")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    w = _Writer(out)
    rng = np.random.default_rng(seed)

    det_preset = detector.preset
    det_spec = export_spec(detector)
    from mobilefer.export.bundle import GRAY_WEIGHTS

    w.config("schema", "mobilefer-golden", _VERSION)
    w.config("gray_weights", *(int(GRAY_WEIGHTS[key]) for key in ("r", "g", "b", "shift")))
    w.config("detector.name", detector.name)
    w.input_spec("detector", det_preset, det_spec.input_name)
    w.config("detector.outputs.scores", det_spec.output_names[0])
    w.config("detector.outputs.boxes", det_spec.output_names[1])
    cfg = detector.config
    priors = generate_priors(det_preset.input_size, cfg.min_boxes, cfg.strides, clamp=cfg.clamp_priors)
    w.config("detector.priors.strides", *cfg.strides)
    w.config("detector.priors.min_boxes", *(",".join(str(v) for v in sides) for sides in cfg.min_boxes))
    w.config("detector.priors.center_variance", float(cfg.center_variance))
    w.config("detector.priors.size_variance", float(cfg.size_variance))
    w.config("detector.priors.clamp", bool(cfg.clamp_priors))
    w.config("detector.priors.num_priors", len(priors))
    w.config("detector.postprocess.score_threshold", float(detector.score_threshold))
    w.config("detector.postprocess.iou_threshold", float(detector.iou_threshold))
    w.config("detector.postprocess.candidate_size", detector.candidate_size)
    w.config("detector.postprocess.top_k", 0 if detector.top_k is None else detector.top_k)
    w.array("priors", priors)

    from torch import nn

    w.config("classifiers", len(presets))
    for k, preset in enumerate(presets):
        spec = export_spec(nn.Identity(), preset=preset)
        rule = preset.crop_rule(detector.name)
        prefix = f"classifier{k}"
        w.config(f"{prefix}.name", preset.name)
        w.input_spec(prefix, preset, spec.input_name)
        w.config(f"{prefix}.outputs.logits", spec.output_names[0])
        w.config(f"{prefix}.labels", *preset.labels)
        w.config(f"{prefix}.crop.margin", float(rule.margin))
        w.config(f"{prefix}.crop.square", bool(rule.square))
        w.config(f"{prefix}.crop.shift_y", float(rule.shift_y))
        w.config(f"{prefix}.crop.border", rule.border)
        w.config(f"{prefix}.tta", False)
    w.config("smoothing.enabled", True)
    w.config("smoothing.alpha", float(smoothing.alpha))
    w.config("smoothing.match_iou", float(smoothing.match_iou))
    w.config("smoothing.max_age", smoothing.max_age)

    import cv2

    loaded = [_load_bgr(image, i) for i, image in enumerate(images)]
    names: list[str] = []
    face_counts: list[int] = []
    first_boxes = np.zeros((0, 4), np.float32)
    priors_t = torch.from_numpy(priors)
    for i, (name, bgr) in enumerate(loaded):
        prefix = f"img{i}"
        names.append(name)
        if i < _CONVERSION_IMAGES:
            _write_image_conversions(w, prefix, bgr)
        else:
            w.array(f"{prefix}_rgba", _rgba_with_alpha(bgr))
        batch = det_preset.preprocess([bgr])
        w.array(f"{prefix}_det_input", batch)
        with torch.inference_mode():
            scores, locations = detector.net(torch.from_numpy(batch))
            decoded = decode_boxes(locations[0], priors_t, cfg.center_variance, cfg.size_variance)
            face = scores[0, :, 1]
            keep = select_boxes(
                face,
                decoded,
                score_threshold=detector.score_threshold,
                iou_threshold=detector.iou_threshold,
                candidate_size=detector.candidate_size,
                top_k=detector.top_k,
            )
        height, width = bgr.shape[:2]
        # The boxes are the product's (UltraFaceDetector.detect); they keep the same priors as the
        # reference selection on all decoded priors above, which the C++ core is checked against.
        kept, pixel_boxes, face_scores = detector.postprocess(face.numpy(), locations[0].numpy(), width, height)
        if not np.array_equal(kept, keep.numpy()):
            raise RuntimeError(f"{name}: candidate-only selection kept {kept.tolist()}, reference {keep.tolist()}")
        w.array(f"{prefix}_det_scores", scores[0].numpy().astype(np.float32))
        w.array(f"{prefix}_det_locs", locations[0].numpy().astype(np.float32))
        w.array(f"{prefix}_det_decoded", decoded.numpy().astype(np.float32))
        w.array(f"{prefix}_det_keep", keep.numpy().astype(np.int32))
        w.array(f"{prefix}_det_boxes", pixel_boxes.reshape(-1, 4))
        w.array(f"{prefix}_det_face_scores", face_scores)
        w.config(f"{prefix}.source", name)
        w.config(f"{prefix}.size", width, height)
        w.config(f"{prefix}.faces", len(pixel_boxes))
        face_counts.append(len(pixel_boxes))
        if i == 0:
            first_boxes = pixel_boxes
        for k, preset in enumerate(presets):
            rule = preset.crop_rule(detector.name)
            boxes = [tuple(float(v) for v in b) for b in pixel_boxes]
            windows = np.asarray([rule.window(b) for b in boxes], dtype=np.int32).reshape(-1, 4)
            crops = [rule.crop(bgr, b) for b in boxes]
            w.array(f"{prefix}_cls{k}_windows", windows)
            for f, crop in enumerate(crops):
                w.array(f"{prefix}_cls{k}_face{f}_crop", cv2.cvtColor(crop, cv2.COLOR_BGR2RGB))
            inputs = preset.preprocess(crops)
            logits = rng.normal(0.0, 2.5, size=(len(crops), len(preset.labels))).astype(np.float32)
            w.array(f"{prefix}_cls{k}_inputs", inputs)
            w.array(f"{prefix}_cls{k}_logits", logits)
            w.array(f"{prefix}_cls{k}_probs", _softmax(logits) if len(crops) else logits)
    w.config("images", len(loaded))
    w.config("conversion.images", min(_CONVERSION_IMAGES, len(loaded)))
    # Random colours: photos rarely contain the colours on which gray formulas differ.
    _write_image_conversions(w, "colors", rng.integers(0, 256, size=(512, 512, 3), dtype=np.uint8))

    _write_orientation(w, loaded[0][1])
    resize_cases = _write_resize_cases(w, [bgr for _, bgr in loaded])
    num_classes = len(presets[0].labels)
    frames = _write_smoothing(w, first_boxes.astype(np.float64), num_classes, smoothing, rng)
    w.finish()
    logger.info("wrote %d golden files for %d images into %s", w.files, len(loaded), out)
    return GoldenSummary(
        out_dir=out,
        images=tuple(names),
        faces=tuple(face_counts),
        classifier_presets=tuple(p.name for p in presets),
        resize_cases=resize_cases,
        smoothing_frames=frames,
        files=w.files,
    )
