"""The Android bundle: detector and classifier as TNN and ONNX files, described by ``mobilefer.json``.

:func:`android_bundle` writes everything ``android-template/`` needs into one folder::

    detector.tnnproto  detector.tnnmodel  detector.onnx        UltraFace RFB-320 or slim-320, raw outputs
    classifier.tnnproto  classifier.tnnmodel  classifier.onnx  the expression classifier (logits)
    LICENSE-ultraface.txt                                       MIT notice of the UltraFace weights
    NOTICE-classifier.txt                                       data terms of the classifier (FER2013)
    mobilefer.json                                              the manifest (written last)

The manifest (schema ``mobilefer-bundle``, version :data:`SCHEMA_VERSION`; reference in
``docs/export.md``) is generated from the objects the :class:`~mobilefer.pipeline.Pipeline` uses —
the classifier's :class:`~mobilefer.preset.Preset` and its crop rule for the chosen detector, the
detector's preset, :data:`~mobilefer.detect.ultraface.ULTRAFACE` and
:data:`~mobilefer.video.DEFAULT_SMOOTHING` — and records the SHA-256 of every file.

:class:`BundleRunner` is the executable reference of the manifest: it runs a bundle in Python from
``mobilefer.json`` alone (onnxruntime on the ONNX files, or the numpy TNN executor on the TNN files),
doing every pre- and post-processing step from the manifest's values. The tests check that it
reproduces ``Pipeline.predict``; an Android port that follows the same steps gets the same answers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from mobilefer.errors import (
    ChecksumMismatchError,
    DownloadError,
    InvalidImageError,
    InvalidInputError,
    ModelFormatError,
    OutputExistsError,
    WeightsNotFoundError,
)

if TYPE_CHECKING:  # pragma: no cover
    from mobilefer.classify.classifier import ExpressionClassifier
    from mobilefer.detect.base import Detection
    from mobilefer.detect.ultraface import UltraFaceDetector
    from mobilefer.export.onnx import ExportSpec
    from mobilefer.pipeline import FaceResult
    from mobilefer.preset import Preset

__all__ = [
    "BUNDLE_DETECTORS",
    "Bundle",
    "BundleRunner",
    "FER2013_NOTICE",
    "MANIFEST_NAME",
    "SCHEMA",
    "SCHEMA_VERSION",
    "GRAY_WEIGHTS",
    "ULTRAFACE_LICENSE",
    "android_bundle",
    "bundle_file_names",
    "read_manifest",
]

logger = logging.getLogger(__name__)

#: ``schema`` value of every manifest.
SCHEMA = "mobilefer-bundle"
#: Version of the manifest layout; readers refuse other versions.
SCHEMA_VERSION = 1
#: File name of the manifest inside a bundle.
MANIFEST_NAME = "mobilefer.json"
#: Detectors that can be bundled (the Haar cascade is not a TNN network).
BUNDLE_DETECTORS: tuple[str, ...] = ("ultraface-rfb-320", "ultraface-slim-320")

_DETECTOR_STEM = "detector"
_CLASSIFIER_STEM = "classifier"
_LICENSE_FILE = "LICENSE-ultraface.txt"
_NOTICE_FILE = "NOTICE-classifier.txt"

#: The licence of the UltraFace weights (Linzaer/Ultra-Light-Fast-Generic-Face-Detector-1MB, MIT),
#: written into every bundle as ``LICENSE-ultraface.txt``.
ULTRAFACE_LICENSE = """\
MIT License

Copyright (c) 2019 linzai

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""

#: The data terms note written as ``NOTICE-classifier.txt`` for classifiers with the FER2013 labels.
FER2013_NOTICE = """\
The expression classifier in this bundle (classifier.tnnproto, classifier.tnnmodel, classifier.onnx)
predicts the seven FER2013 classes: angry, disgust, fear, happy, sad, surprise, neutral.

FER2013 is the data set of the Kaggle "Challenges in Representation Learning: Facial Expression
Recognition Challenge" (ICML 2013 workshop; I. Goodfellow et al., "Challenges in Representation
Learning: A report on three machine learning contests", 2013). Its 48x48 grayscale face images were
collected automatically from the web. The data set was released for research; it comes with no
licence that grants rights to the images for other uses. Weights trained on it may be subject to the
same restriction: check the data set's terms, and the law where you ship, before any commercial use.

mobilefer's code is MIT-licensed. This notice grants no rights to FER2013 itself. Expression labels
are a coarse proxy for emotion; FER2013 is imbalanced (very few "disgust" images) and not balanced
across age, skin tone or pose, so accuracy differs between groups of people.
"""

_CUSTOM_NOTICE = """\
The expression classifier in this bundle (classifier.tnnproto, classifier.tnnmodel, classifier.onnx)
was exported by mobilefer from the checkpoint {name!r}. Its use is governed by the terms of the data
it was trained on; mobilefer's MIT licence covers the code only.
"""

_CENTER_RULE = (
    "cx = (i + 0.5) / feature_map_w, cy = (j + 0.5) / feature_map_h, w = min_box / input_w, "
    "h = min_box / input_h; order: level, row j, column i, min_box; clamp each value to [0, 1] if clamp"
)
_OUTPUTS_NOTE = (
    "scores (1, A, 2) soft-maxed [background, face]; boxes (1, A, 4) raw regressions (dx, dy, dw, dh): "
    "cx = dx * center_variance * prior_w + prior_cx, cy likewise, w = exp(dw * size_variance) * prior_w, "
    "h likewise; corners cx -/+ w/2, cy -/+ h/2 (normalised; multiply by the image width/height, no clipping)"
)
_SCORE_RULE = "keep score > threshold (strict)"
_NMS_RULE = (
    "hard NMS, greedy by score: keep the candidate_size best, drop a box whose IoU with a kept box exceeds "
    "iou_threshold (IoU without +1 pixel); top_k null = no limit"
)
_CROP_RULE = (
    "see mobilefer.preset.CropRule: w = x2 - x1, h = y2 - y1, cx = (x1 + x2) / 2, "
    "cy = (y1 + y2) / 2 + shift_y * h; if square w = h = max(w, h); side = w * (1 + 2 * margin) "
    "(likewise h); left = floor(cx - side_w / 2 + 0.5), top likewise, right = left + max(1, floor(side_w + 0.5)), "
    "bottom likewise (exclusive); outside pixels: replicate = nearest edge pixel, constant = 0; crop the "
    "original BGR frame, then convert colour and resize"
)
#: OpenCV's fixed-point ``cvtColor(BGR2GRAY)`` for uint8 (OpenCV 4.x, all 2**24 colours checked by the
#: tests): ``gray = (R * r + G * g + B * b + (1 << (shift - 1))) >> shift``.
GRAY_WEIGHTS: Mapping[str, int] = MappingProxyType({"r": 9798, "g": 19235, "b": 3735, "shift": 15})
_COLOR_CONVERSION = (
    "gray = OpenCV cvtColor BGR2GRAY on uint8 = (R*gray_weights.r + G*gray_weights.g + B*gray_weights.b "
    "+ (1 << (gray_weights.shift - 1))) >> gray_weights.shift (0.299 R + 0.587 G + 0.114 B in 15-bit "
    "fixed point); rgb/bgr = channel order of the network input"
)
_SOFTMAX_NOTE = "probabilities = softmax(logits); label = labels[argmax]; tta true = average the logits of the crop and its mirror"


def bundle_file_names() -> tuple[str, ...]:
    """Every file :func:`android_bundle` writes, manifest last."""
    models = tuple(
        f"{stem}.{ext}" for stem in (_DETECTOR_STEM, _CLASSIFIER_STEM) for ext in ("tnnproto", "tnnmodel", "onnx")
    )
    return (*models, _LICENSE_FILE, _NOTICE_FILE, MANIFEST_NAME)


@dataclass(frozen=True)
class Bundle:
    """What :func:`android_bundle` wrote.

    Attributes:
        out_dir: The bundle folder.
        manifest: Path of ``mobilefer.json``.
        files: Every written file (manifest last).
        detector: Detector name (``"ultraface-rfb-320"`` or ``"ultraface-slim-320"``).
        classifier: Classifier name as recorded in the manifest.
        half: Whether the TNN files store convolution / inner-product weights as float16.
        max_diffs: Verification figures: ``"detector.onnx"`` / ``"classifier.onnx"`` = largest
            |onnxruntime - torch|, ``"detector.tnn"`` / ``"classifier.tnn"`` = largest |TNN executor -
            onnxruntime| (against fp16-rounded weights when ``half``).
    """

    out_dir: Path
    manifest: Path
    files: tuple[Path, ...]
    detector: str
    classifier: str
    half: bool
    max_diffs: Mapping[str, float] = field(default_factory=dict, hash=False)


# ============================================================================ writing


def _check_out_dir(out_dir: object) -> Path:
    if not isinstance(out_dir, (str, os.PathLike)) or str(out_dir) == "":
        raise InvalidInputError(f"out_dir must be a folder path, got {out_dir!r}")
    path = Path(out_dir)
    if path.exists() and not path.is_dir():
        raise InvalidInputError(f"{path} exists and is not a folder; the Android bundle is a folder of files")
    return path


def _check_detector(detector: object) -> str:
    if detector == "haar":
        raise InvalidInputError(
            "the Haar cascade detector cannot be bundled: android-template runs TNN networks, and the Haar "
            f"cascade is an OpenCV classifier, not a network; choose one of {', '.join(BUNDLE_DETECTORS)}"
        )
    if not isinstance(detector, str) or detector not in BUNDLE_DETECTORS:
        raise InvalidInputError(f"detector must be one of {', '.join(BUNDLE_DETECTORS)}, got {detector!r}")
    return detector


def _load_classifier(classifier: object) -> tuple[ExpressionClassifier, bool]:
    """The classifier and whether it is the shipped default."""
    from mobilefer.classify.classifier import ExpressionClassifier

    if classifier is None:
        return ExpressionClassifier.default(), True
    if isinstance(classifier, ExpressionClassifier):
        return classifier, False
    if isinstance(classifier, (str, os.PathLike)):
        path = Path(classifier)
        if not path.is_file():
            raise InvalidInputError(f"classifier checkpoint {path} does not exist (give a .safetensors file)")
        return ExpressionClassifier.from_checkpoint(path), False
    raise InvalidInputError(
        "classifier must be None (the shipped model), a checkpoint path or an ExpressionClassifier, "
        f"got {type(classifier).__name__}"
    )


def _load_detector(name: str, weights: object, *, purpose: str = "the Android bundle") -> UltraFaceDetector:
    from mobilefer.detect.ultraface import UltraFaceDetector
    from mobilefer.weights import get_record

    if weights is not None and not isinstance(weights, (str, os.PathLike)):
        raise InvalidInputError(f"detector_weights must be a .pth file path or None, got {type(weights).__name__}")
    try:
        return UltraFaceDetector(name, weights=None if weights is None else Path(weights))
    except (WeightsNotFoundError, DownloadError) as exc:
        record = get_record(name)
        raise type(exc)(
            f"{purpose} needs the {name} detector weights {record.filename}: {exc}. On the command line pass "
            "--detector-weights PATH (Python: detector_weights=PATH)"
        ) from exc


def _input_entry(preset: Preset, input_name: str) -> dict[str, Any]:
    return {
        "name": input_name,
        "width": preset.width,
        "height": preset.height,
        "channels": preset.channels,
        "color": preset.color,
        "layout": "NCHW",
        "mean": [float(v) for v in preset.mean],
        "std": [float(v) for v in preset.std],
        "scale": [float(v) for v in preset.scale],
        "bias": [float(v) for v in preset.bias],
        "interpolation": preset.interpolation,
    }


def _files_entry(stem: str) -> dict[str, str]:
    return {"tnnproto": f"{stem}.tnnproto", "tnnmodel": f"{stem}.tnnmodel", "onnx": f"{stem}.onnx"}


def _detector_entry(detector: UltraFaceDetector, spec: ExportSpec) -> dict[str, Any]:
    cfg = detector.config
    preset = detector.preset
    width = preset.width
    scores_name, boxes_name = spec.output_names
    return {
        "name": detector.name,
        "kind": "ultraface",
        "files": _files_entry(_DETECTOR_STEM),
        "input": _input_entry(preset, spec.input_name),
        "outputs": {"scores": scores_name, "boxes": boxes_name},
        "outputs_note": _OUTPUTS_NOTE,
        "priors": {
            "min_boxes": [list(m) for m in cfg.min_boxes],
            "strides": list(cfg.strides),
            "center_variance": float(cfg.center_variance),
            "size_variance": float(cfg.size_variance),
            "clamp": bool(cfg.clamp_priors),
            "num_priors": cfg.num_priors(width),
            "feature_maps": [list(f) for f in cfg.feature_map_sizes(width)],
            "center_rule": _CENTER_RULE,
        },
        "postprocess": {
            "score_threshold": float(detector.score_threshold),
            "iou_threshold": float(detector.iou_threshold),
            "candidate_size": int(detector.candidate_size),
            "top_k": detector.top_k,
            "score_rule": _SCORE_RULE,
            "nms": _NMS_RULE,
        },
        "license": f"MIT (Linzaer/Ultra-Light-Fast-Generic-Face-Detector-1MB), full text in {_LICENSE_FILE}",
    }


def _is_fer2013(classifier: ExpressionClassifier) -> bool:
    from mobilefer.classify.classifier import FER2013_LABELS

    return tuple(classifier.labels) == FER2013_LABELS


def _classifier_entry(classifier: ExpressionClassifier, name: str, detector: str, spec: ExportSpec,
                      shipped: bool) -> dict[str, Any]:
    preset = classifier.preset
    rule = preset.crop_rule(detector)
    if shipped:
        licence = f"trained on FER2013 (research use); model weights under the project licence (MIT); see {_NOTICE_FILE}"
    elif _is_fer2013(classifier):
        licence = f"custom checkpoint with the FER2013 labels; the terms of its training data apply; see {_NOTICE_FILE}"
    else:
        licence = f"custom checkpoint; the terms of its training data apply; see {_NOTICE_FILE}"
    return {
        "name": name,
        "files": _files_entry(_CLASSIFIER_STEM),
        "input": _input_entry(preset, spec.input_name),
        "outputs": {"logits": spec.output_names[0]},
        "labels": list(preset.labels),
        "crop": {
            "margin": float(rule.margin),
            "square": bool(rule.square),
            "shift_y": float(rule.shift_y),
            "border": rule.border,
            "rule": _CROP_RULE,
        },
        "tta": bool(classifier.tta),
        "softmax_note": _SOFTMAX_NOTE,
        "license": licence,
    }


def _export_pair(model: Any, stem: str, half: bool) -> tuple[ExportSpec, dict[str, bytes], dict[str, float]]:
    """ONNX (verified against torch) and TNN (verified against onnxruntime) bytes of one model."""
    import onnx

    from mobilefer.export.onnx import export_onnx_bytes, export_spec, verify_onnx
    from mobilefer.export.tnn import format_model, format_proto, onnx_to_tnn_model, verify_tnn

    spec = export_spec(model)
    data = export_onnx_bytes(spec, dynamic_batch=False)
    onnx_diff = verify_onnx(data, spec)
    proto = onnx.load_from_string(data)
    tnn_model = onnx_to_tnn_model(proto, half=half)
    tnn_diff = verify_tnn(proto, tnn_model, half=half)
    files = {
        f"{stem}.onnx": data,
        f"{stem}.tnnproto": format_proto(tnn_model).encode("ascii"),
        f"{stem}.tnnmodel": format_model(tnn_model),
    }
    logger.info("%s: max |onnxruntime - torch| %.2e, max |TNN - onnxruntime| %.2e", stem, onnx_diff, tnn_diff)
    return spec, files, {f"{stem}.onnx": onnx_diff, f"{stem}.tnn": tnn_diff}


def _dumps(value: Any, level: int = 0) -> str:
    """JSON with two-space indentation, lists of numbers/strings (and of such lists) on one line."""
    pad, inner = "  " * level, "  " * (level + 1)
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(str(k))}: {_dumps(v, level + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, list) and any(isinstance(v, dict) for v in value):
        return "[\n" + ",\n".join(inner + _dumps(v, level + 1) for v in value) + "\n" + pad + "]"
    return json.dumps(value)


def _write_all(out: Path, files: Sequence[tuple[str, bytes]]) -> list[Path]:
    """Write every file through a temp file in ``out``, then move them into place in order.

    If a move fails, the files already moved are rolled back (previous versions are kept as hard links
    or copies until every move succeeded), so a failure never leaves a mixed bundle.
    """
    import shutil

    out.mkdir(parents=True, exist_ok=True)
    temps: list[tuple[str, Path]] = []
    backups: list[tuple[Path, str | None]] = []
    try:
        for name, data in files:
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=out)
            temps.append((tmp, out / name))
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o644)  # mkstemp creates 0600; bundle files are meant to be shared
        try:
            for tmp, target in temps:
                backup: str | None = None
                if target.exists():
                    backup = f"{tmp}.old"
                    try:
                        os.link(target, backup)
                    except OSError:
                        shutil.copy2(target, backup)
                backups.append((target, backup))
                os.replace(tmp, target)
        except BaseException:
            for target, backup in backups:
                if backup is not None:
                    os.replace(backup, target)
                else:
                    target.unlink(missing_ok=True)
            raise
    finally:
        for tmp, _ in temps:
            if os.path.exists(tmp):
                os.unlink(tmp)
        for _, backup in backups:
            if backup is not None and os.path.exists(backup):
                os.unlink(backup)
    return [target for _, target in temps]


def android_bundle(
    out_dir: str | os.PathLike[str],
    *,
    classifier: ExpressionClassifier | str | os.PathLike[str] | None = None,
    detector: str = "ultraface-rfb-320",
    detector_weights: str | os.PathLike[str] | None = None,
    half: bool = False,
    force: bool = False,
) -> Bundle:
    """Write the Android bundle (TNN + ONNX files of detector and classifier, licences, manifest).

    Every model is exported to ONNX (static batch 1) and checked against torch, converted to TNN from
    those exact ONNX bytes and checked with the numpy TNN executor, before anything is written. All
    targets are checked first: nothing existing is replaced unless ``force``. Files are written to
    temporary files in ``out_dir`` and moved into place, the manifest last.

    Args:
        out_dir: Bundle folder (created if missing).
        classifier: ``None`` for the shipped model (:meth:`ExpressionClassifier.default`), a checkpoint
            path, or an :class:`~mobilefer.classify.ExpressionClassifier`.
        detector: ``"ultraface-rfb-320"`` or ``"ultraface-slim-320"``.
        detector_weights: UltraFace ``.pth`` file; default: the weights registry (cache or download).
        half: Store TNN convolution / inner-product weights as float16 (the ONNX files stay float32).
        force: Replace existing bundle files.

    Returns:
        The :class:`Bundle` written.

    Raises:
        InvalidInputError: Bad arguments, e.g. ``detector="haar"`` (the Haar cascade cannot be bundled).
        OutputExistsError: A bundle file exists and ``force`` is false (nothing is written).
        NoShippedModelError: ``classifier=None`` and this build ships no classifier.
        WeightsNotFoundError / DownloadError: The UltraFace weights are not available; the message names
            the file and how to provide it.
        ExportError / ExportVerificationError / UnsupportedOpError: A model cannot be exported faithfully.
    """
    from mobilefer import __version__
    from mobilefer.classify.classifier import DEFAULT_CLASSIFIER
    from mobilefer.video import DEFAULT_SMOOTHING

    out = _check_out_dir(out_dir)
    name = _check_detector(detector)
    for flag, value in (("half", half), ("force", force)):
        if not isinstance(value, bool):
            raise InvalidInputError(f"{flag} must be True or False, got {value!r}")
    names = bundle_file_names()
    if not force:
        existing = [str(out / n) for n in names if (out / n).exists()]
        if existing:
            raise OutputExistsError(
                f"{', '.join(existing)} already exist{'s' if len(existing) == 1 else ''}; pass force=True "
                "(--force) to replace the bundle"
            )
    for n in names:
        if (out / n).is_dir():
            raise InvalidInputError(f"{out / n} is a folder; remove it first")
    clf, shipped = _load_classifier(classifier)
    det = _load_detector(name, detector_weights)
    classifier_name = DEFAULT_CLASSIFIER if shipped else clf.name

    det_spec, det_files, det_diffs = _export_pair(det, _DETECTOR_STEM, half)
    clf_spec, clf_files, clf_diffs = _export_pair(clf, _CLASSIFIER_STEM, half)
    notice = FER2013_NOTICE if shipped or _is_fer2013(clf) else _CUSTOM_NOTICE.format(name=classifier_name)
    payload: dict[str, bytes] = {
        **det_files,
        **clf_files,
        _LICENSE_FILE: ULTRAFACE_LICENSE.encode("utf-8"),
        _NOTICE_FILE: notice.encode("utf-8"),
    }
    manifest: dict[str, Any] = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "mobilefer_version": __version__,
        "detector": _detector_entry(det, det_spec),
        "classifier": _classifier_entry(clf, classifier_name, name, clf_spec, shipped),
        "smoothing": {k: v for k, v in asdict(DEFAULT_SMOOTHING).items()},
        "color_conversion": _COLOR_CONVERSION,
        "gray_weights": dict(GRAY_WEIGHTS),
        "tnn": {"weights": "float16" if half else "float32", "format": "TNN v2 (magic 0xFABC0004)"},
        "files_sha256": {n: hashlib.sha256(payload[n]).hexdigest() for n in sorted(payload)},
    }
    payload[MANIFEST_NAME] = (_dumps(manifest) + "\n").encode("utf-8")
    ordered = [(n, payload[n]) for n in names]
    written = _write_all(out, ordered)
    diffs = {**det_diffs, **clf_diffs}
    logger.info("wrote the Android bundle %s (%s + %s)", out, name, classifier_name)
    return Bundle(
        out_dir=out,
        manifest=out / MANIFEST_NAME,
        files=tuple(written),
        detector=name,
        classifier=classifier_name,
        half=half,
        max_diffs=MappingProxyType(diffs),
    )


# ============================================================================ reading and replay


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(out_dir: str | os.PathLike[str], *, verify: bool = True) -> dict[str, Any]:
    """Load and check ``mobilefer.json`` of a bundle.

    Args:
        out_dir: The bundle folder.
        verify: Also check every listed file's SHA-256.

    Raises:
        InvalidInputError: If the folder or manifest does not exist.
        ModelFormatError: If the manifest is not valid JSON or has another schema / version.
        ChecksumMismatchError: If a file is missing or its SHA-256 differs from the manifest.
    """
    folder = Path(out_dir)
    path = folder / MANIFEST_NAME
    if not path.is_file():
        raise InvalidInputError(f"{path} does not exist; is {folder} a bundle written by android_bundle()?")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFormatError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ModelFormatError(f"{path} is not a mobilefer bundle manifest (schema must be {SCHEMA!r})")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ModelFormatError(
            f"{path} has schema_version {data.get('schema_version')!r}; this mobilefer reads version {SCHEMA_VERSION}"
        )
    for key in ("detector", "classifier", "files_sha256"):
        if not isinstance(data.get(key), dict):
            raise ModelFormatError(f"{path}: {key!r} must be an object")
    if verify:
        for name, expected in data["files_sha256"].items():
            file = folder / str(name)
            if "/" in str(name) or "\\" in str(name) or not file.is_file():
                raise ChecksumMismatchError(f"bundle file {file} listed in {path} is missing")
            actual = _sha256(file)
            if actual != expected:
                raise ChecksumMismatchError(
                    f"{file} has SHA-256 {actual} but {path} records {expected} (modified or damaged)"
                )
    return data


def _gray(bgr: np.ndarray, weights: Mapping[str, Any]) -> np.ndarray:
    """Fixed-point gray conversion of a (H, W, 3+) BGR[A] uint8 image with the manifest's weights."""
    b, g, r = (bgr[:, :, i].astype(np.int64) for i in range(3))
    shift = int(weights["shift"])
    total = r * int(weights["r"]) + g * int(weights["g"]) + b * int(weights["b"]) + (1 << (shift - 1))
    return np.asarray(total >> shift, dtype=np.uint8)


def _to_color(image: np.ndarray, color: str, gray_weights: Mapping[str, Any]) -> np.ndarray:
    """Convert a BGR / BGRA / gray uint8 image to the network's colour order, from manifest values only."""
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        return image if color == "gray" else np.repeat(image[:, :, None], 3, axis=2)
    if color == "gray":
        return _gray(image, gray_weights)
    if color == "rgb":
        return np.ascontiguousarray(image[:, :, 2::-1])
    if color == "bgr":
        return np.ascontiguousarray(image[:, :, :3])
    raise ModelFormatError(f"manifest: unknown colour order {color!r}")


def _network_input(image: np.ndarray, spec: Mapping[str, Any], gray_weights: Mapping[str, Any]) -> np.ndarray:
    """Colour conversion, resize and ``pixel * scale + bias`` exactly as the manifest says: (1, C, H, W)."""
    import cv2

    converted = _to_color(image, str(spec["color"]), gray_weights)
    width, height = int(spec["width"]), int(spec["height"])
    if converted.shape[1] != width or converted.shape[0] != height:
        flags = {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA, "nearest": cv2.INTER_NEAREST}
        interpolation = str(spec["interpolation"])
        if interpolation not in flags:
            raise ModelFormatError(f"manifest input {spec['name']!r}: unknown interpolation {interpolation!r}")
        converted = cv2.resize(converted, (width, height), interpolation=flags[interpolation])
    x = converted.astype(np.float32)
    if x.ndim == 2:
        x = x[:, :, None]
    scale = np.asarray(spec["scale"], dtype=np.float32)
    bias = np.asarray(spec["bias"], dtype=np.float32)
    if x.shape[2] != int(spec["channels"]) or scale.shape != (x.shape[2],) or bias.shape != (x.shape[2],):
        raise ModelFormatError(f"manifest input {spec['name']!r}: channels/scale/bias do not fit colour {spec['color']!r}")
    x = x * scale + bias
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)


def _priors_from_manifest(priors: Mapping[str, Any], width: int, height: int) -> np.ndarray:
    """(A, 4) float32 centre-form priors from the manifest's ``priors`` settings."""
    rows: list[np.ndarray] = []
    maps = [tuple(int(v) for v in fm) for fm in priors["feature_maps"]]
    strides = [int(s) for s in priors["strides"]]
    if len(maps) != len(strides) or len(maps) != len(priors["min_boxes"]):
        raise ModelFormatError("manifest priors: feature_maps, strides and min_boxes differ in length")
    for (fw, fh), stride, sides in zip(maps, strides, priors["min_boxes"], strict=True):
        if (fw, fh) != (math.ceil(width / stride), math.ceil(height / stride)):
            raise ModelFormatError(f"manifest priors: feature map {(fw, fh)} does not fit stride {stride}")
        side = np.asarray(sides, dtype=np.float64)
        grid = np.empty((fh, fw, len(side), 4), dtype=np.float64)
        grid[..., 0] = ((np.arange(fw) + 0.5) / fw)[None, :, None]
        grid[..., 1] = ((np.arange(fh) + 0.5) / fh)[:, None, None]
        grid[..., 2] = side / width
        grid[..., 3] = side / height
        rows.append(grid.reshape(-1, 4))
    out = np.concatenate(rows).astype(np.float32)
    if priors["clamp"]:
        out = np.clip(out, 0.0, 1.0)
    if out.shape[0] != int(priors["num_priors"]):
        raise ModelFormatError(f"manifest priors: {out.shape[0]} priors generated, num_priors says {priors['num_priors']}")
    return out


def _hard_nms(boxes: np.ndarray, iou_threshold: float) -> list[int]:
    """Greedy hard NMS over boxes already sorted best first; returns kept positions."""
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = (x2 - x1) * (y2 - y1)
    suppressed = np.zeros(len(boxes), dtype=bool)
    keep: list[int] = []
    for i in range(len(boxes)):
        if suppressed[i]:
            continue
        keep.append(i)
        rest = np.arange(i + 1, len(boxes))
        w = np.maximum(np.float32(0), np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        h = np.maximum(np.float32(0), np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = w * h
        iou = inter / (areas[i] + areas[rest] - inter)
        suppressed[rest[iou > iou_threshold]] = True
    return keep


def _crop_window(box: Sequence[float], crop: Mapping[str, Any]) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = x2 - x1, y2 - y1
    cx = (x1 + x2) / 2.0
    cy = (y1 + y2) / 2.0 + float(crop["shift_y"]) * h
    if crop["square"]:
        w = h = max(w, h)
    factor = 1.0 + 2.0 * float(crop["margin"])
    side_w, side_h = w * factor, h * factor
    left = math.floor(cx - side_w / 2.0 + 0.5)
    top = math.floor(cy - side_h / 2.0 + 0.5)
    return left, top, left + max(1, math.floor(side_w + 0.5)), top + max(1, math.floor(side_h + 0.5))


def _crop(image: np.ndarray, box: Sequence[float], crop: Mapping[str, Any]) -> np.ndarray:
    left, top, right, bottom = _crop_window(box, crop)
    h, w = image.shape[:2]
    if crop["border"] == "replicate":
        rows = np.clip(np.arange(top, bottom), 0, h - 1)
        cols = np.clip(np.arange(left, right), 0, w - 1)
        return np.ascontiguousarray(image[rows[:, None], cols[None, :]])
    out = np.zeros((bottom - top, right - left, *image.shape[2:]), dtype=image.dtype)
    ix1, iy1, ix2, iy2 = max(left, 0), max(top, 0), min(right, w), min(bottom, h)
    if ix1 < ix2 and iy1 < iy2:
        out[iy1 - top : iy2 - top, ix1 - left : ix2 - left] = image[iy1:iy2, ix1:ix2]
    return out


class _Engine:
    """One bundle network run by onnxruntime (``.onnx``) or the numpy TNN executor (``.tnnproto``)."""

    def __init__(self, folder: Path, entry: Mapping[str, Any], engine: str, output_names: Sequence[str]) -> None:
        self.input_name = str(entry["input"]["name"])
        self.output_names = [str(n) for n in output_names]
        files = entry["files"]
        self._session: Any = None
        self._tnn: Any = None
        if engine == "onnxruntime":
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.log_severity_level = 3
            self._session = ort.InferenceSession(
                str(folder / files["onnx"]), options, providers=["CPUExecutionProvider"]
            )
        else:
            from mobilefer.export.tnn import read_tnn

            self._tnn = read_tnn((folder / files["tnnproto"], folder / files["tnnmodel"]))

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        if self._session is not None:
            out = self._session.run(self.output_names, {self.input_name: x})
            return [np.asarray(o, dtype=np.float32) for o in out]
        from mobilefer.export.tnn import run_tnn

        result = run_tnn(self._tnn, {self.input_name: x})
        return [np.asarray(result[name], dtype=np.float32) for name in self.output_names]


class BundleRunner:
    """Runs an Android bundle in Python from ``mobilefer.json`` alone: the manifest's executable reference.

    Every step uses only manifest values: colour conversion (channel order; gray from the manifest's
    fixed-point ``gray_weights``), resize (``cv2.resize`` with the manifest's interpolation), ``pixel * scale + bias``, priors generated from the ``priors`` settings,
    box decoding, strict score threshold, candidate limit, hard NMS, the classifier's crop rule,
    softmax. It does not import mobilefer's presets, detector or classifier code.

    Args:
        out_dir: The bundle folder.
        engine: ``"onnxruntime"`` (the ``.onnx`` files) or ``"tnn"`` (the ``.tnnproto``/``.tnnmodel``
            files in :func:`~mobilefer.export.tnn.run_tnn`, the files the Android app loads).
        verify: Check every file's SHA-256 against the manifest first.

    Raises:
        InvalidInputError, ModelFormatError, ChecksumMismatchError: See :func:`read_manifest`.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike[str],
        *,
        engine: Literal["onnxruntime", "tnn"] = "onnxruntime",
        verify: bool = True,
    ) -> None:
        if engine not in ("onnxruntime", "tnn"):
            raise InvalidInputError(f"engine must be 'onnxruntime' or 'tnn', got {engine!r}")
        self.out_dir = Path(out_dir)
        self.engine = engine
        self.manifest: dict[str, Any] = read_manifest(self.out_dir, verify=verify)
        det = self.manifest["detector"]
        clf = self.manifest["classifier"]
        try:
            for entry in (det, clf):
                for name in entry["files"].values():
                    if not isinstance(name, str) or "/" in name or "\\" in name or name not in self.manifest["files_sha256"]:
                        raise ModelFormatError(
                            f"{self.out_dir / MANIFEST_NAME}: model file {name!r} must be a bare file name listed "
                            "in files_sha256"
                        )
            self._det = _Engine(self.out_dir, det, engine, [det["outputs"]["scores"], det["outputs"]["boxes"]])
            self._clf = _Engine(self.out_dir, clf, engine, [clf["outputs"]["logits"]])
            self._priors = _priors_from_manifest(det["priors"], int(det["input"]["width"]), int(det["input"]["height"]))
            self.labels: tuple[str, ...] = tuple(str(v) for v in clf["labels"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFormatError(f"{self.out_dir / MANIFEST_NAME}: missing or invalid entry ({exc!r})") from exc

    # ------------------------------------------------------------------ detector
    def detector_input(self, image: np.ndarray) -> np.ndarray:
        """The (1, C, H, W) detector input of a BGR (or gray/BGRA) uint8 image."""
        return _network_input(_check_image(image), self.manifest["detector"]["input"], self.manifest["gray_weights"])

    def run_detector(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw detector outputs for one input: (A, 2) scores and (A, 4) regressions."""
        scores, boxes = self._det(x)
        return scores[0], boxes[0]

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in a BGR uint8 image (input pixels, not clipped), best first."""
        from mobilefer.detect.base import Detection

        image = _check_image(image)
        det = self.manifest["detector"]
        priors, post = det["priors"], det["postprocess"]
        scores, loc = self.run_detector(self.detector_input(image))
        pri = self._priors
        centre = loc[:, :2] * np.float32(priors["center_variance"]) * pri[:, 2:] + pri[:, :2]
        size = np.exp(loc[:, 2:] * np.float32(priors["size_variance"])) * pri[:, 2:]
        corners = np.concatenate([centre - size / 2, centre + size / 2], axis=1).astype(np.float32)
        face = scores[:, 1]
        candidates = np.flatnonzero(face > np.float32(post["score_threshold"]))
        order = np.argsort(-face[candidates], kind="stable")[: int(post["candidate_size"])]
        candidates = candidates[order]
        kept = candidates[_hard_nms(corners[candidates], float(post["iou_threshold"]))]
        if post["top_k"] is not None:
            kept = kept[: int(post["top_k"])]
        h, w = image.shape[:2]
        scale = np.asarray([w, h, w, h], dtype=np.float32)
        boxes = corners[kept] * scale
        return [
            Detection(box=(float(b[0]), float(b[1]), float(b[2]), float(b[3])), score=float(face[i]))
            for b, i in zip(boxes, kept, strict=True)
        ]

    # ------------------------------------------------------------------ classifier
    def crop(self, image: np.ndarray, box: Sequence[float]) -> np.ndarray:
        """The classifier crop of ``box`` (manifest crop rule, on the original image)."""
        return _crop(_check_image(image), box, self.manifest["classifier"]["crop"])

    def classifier_input(self, crop: np.ndarray) -> np.ndarray:
        """The (1, C, H, W) classifier input of a crop."""
        return _network_input(_check_image(crop), self.manifest["classifier"]["input"], self.manifest["gray_weights"])

    def run_classifier(self, x: np.ndarray) -> np.ndarray:
        """(num_classes,) logits for one classifier input (mirror-averaged when the manifest says tta)."""
        logits: np.ndarray = self._clf(x)[0][0]
        if self.manifest["classifier"]["tta"]:
            logits = (logits + self._clf(np.ascontiguousarray(x[:, :, :, ::-1]))[0][0]) / 2
        return logits

    def predict(self, image: np.ndarray) -> list[FaceResult]:
        """Detect, crop and classify, like :meth:`mobilefer.Pipeline.predict`."""
        from mobilefer.pipeline import FaceResult

        image = _check_image(image)
        results = []
        for d in self.detect(image):
            logits = self.run_classifier(self.classifier_input(self.crop(image, d.box))).astype(np.float64)
            e = np.exp(logits - logits.max())
            probs = e / e.sum()
            results.append(
                FaceResult(
                    box=d.box,
                    score=d.score,
                    label=self.labels[int(np.argmax(probs))],
                    probs={label: float(p) for label, p in zip(self.labels, probs, strict=True)},
                )
            )
        return results

    def __repr__(self) -> str:
        return f"BundleRunner({str(self.out_dir)!r}, engine={self.engine!r})"


def _check_image(image: Any) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise InvalidImageError("expected a numpy uint8 image (H, W, 3) BGR, (H, W) gray or (H, W, 4) BGRA")
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3, 4))) or 0 in image.shape[:2]:
        raise InvalidImageError(f"expected an (H, W), (H, W, 3) BGR or (H, W, 4) BGRA image, got shape {image.shape}")
    return image
