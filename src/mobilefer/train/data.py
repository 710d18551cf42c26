"""Datasets for training and evaluation: FER2013 (npz, Kaggle CSV, class folders) and any ImageFolder.

Every form is loaded into an :class:`ImageSet`: uint8 images already at the network's input size and
colour (N, H, W) for gray or (N, H, W, 3) RGB, int64 labels, and the class names. Images are resized
once at load time (``cv2.INTER_AREA`` when shrinking, linear when enlarging).
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from mobilefer.errors import DataError
from mobilefer.preset import FER2013_LABELS

__all__ = [
    "FER2013_CLASSES",
    "IMAGE_EXTENSIONS",
    "ImageSet",
    "load_fer2013_npz",
    "load_fer2013_csv",
    "load_image_folder",
    "stratified_split",
    "stratified_subset",
    "load_split",
    "ImageSize",
    "infer_format",
    "load_data",
    "align_classes",
]

logger = logging.getLogger(__name__)

FER2013_CLASSES: tuple[str, ...] = FER2013_LABELS
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm")


@dataclass(frozen=True)
class ImageSet:
    """Images, labels and class names of one split.

    Attributes:
        images: uint8 (N, H, W) gray or (N, H, W, 3) RGB.
        labels: int64 (N,) class indices.
        classes: Class names; ``labels`` index into it.
        sources: One identifier per image (npz id, csv row, or file path).
    """

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    sources: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, indices: np.ndarray) -> ImageSet:
        return ImageSet(
            self.images[indices], self.labels[indices], self.classes, tuple(self.sources[int(i)] for i in indices)
        )

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=len(self.classes))


ImageSize = int | tuple[int, int]


def _wh(size: ImageSize) -> tuple[int, int]:
    """(width, height) of a square side or a (width, height) pair."""
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _fit(image: np.ndarray, size: ImageSize, color: str) -> np.ndarray:
    """Convert a decoded image (gray, BGR or BGRA) to ``color`` (gray, rgb or bgr) and resize it to ``size``
    (a square side or ``(width, height)``)."""
    import cv2

    width, height = _wh(size)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if color == "gray":
        if image.ndim == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    elif color == "bgr":
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    else:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if image.shape[0] != height or image.shape[1] != width:
        shrink = image.shape[0] > height or image.shape[1] > width
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return np.ascontiguousarray(image)


def _fit_all(gray48: np.ndarray, size: ImageSize, color: str) -> np.ndarray:
    width, height = _wh(size)
    if gray48.shape[1] == height and gray48.shape[2] == width and color == "gray":
        return np.ascontiguousarray(gray48)
    return np.stack([_fit(img, size, color) for img in gray48])


def load_fer2013_npz(path: str | Path, image_size: ImageSize = 48, color: str = "gray") -> ImageSet:
    """Load a FER2013 split stored as ``.npz`` with keys ``images`` (N, 48, 48) uint8, ``labels``, and
    optionally ``ids`` and ``classes``.

    Raises:
        DataError: If the file is missing, not an npz, or lacks/mismatches keys.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"FER2013 npz file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            if "images" not in z or "labels" not in z:
                raise DataError(f"{path}: an FER2013 npz needs keys 'images' and 'labels', found {sorted(z.files)}")
            images = np.asarray(z["images"])
            labels = np.asarray(z["labels"]).astype(np.int64)
            ids = tuple(str(v) for v in z["ids"]) if "ids" in z else tuple(f"{path.name}:{i}" for i in range(len(labels)))
            classes = tuple(str(v) for v in z["classes"]) if "classes" in z else FER2013_CLASSES
    except DataError:
        raise
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read as npz ({exc})") from exc
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[0] != labels.shape[0]:
        raise DataError(f"{path}: 'images' must be uint8 (N, H, W) matching 'labels', got {images.dtype} {images.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= len(classes)):
        raise DataError(f"{path}: labels must be in [0, {len(classes)}), got [{labels.min()}, {labels.max()}]")
    return ImageSet(_fit_all(images, image_size, color), labels, classes, ids)


def load_fer2013_csv(path: str | Path, usage: str, image_size: ImageSize = 48, color: str = "gray") -> ImageSet:
    """Load the rows of the Kaggle ``fer2013.csv`` (``emotion,pixels,Usage``) whose Usage is ``usage``.

    Raises:
        DataError: If the file is missing, has the wrong header, or a row is malformed (row number named).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"FER2013 csv file not found: {path}")
    images: list[np.ndarray] = []
    labels: list[int] = []
    sources: list[str] = []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields = set(reader.fieldnames or ())
        if not {"emotion", "pixels"} <= fields:
            raise DataError(f"{path}: expected columns emotion,pixels[,Usage], got {reader.fieldnames}")
        for row_number, row in enumerate(reader, start=2):
            if "Usage" in fields and row.get("Usage") != usage:
                continue
            try:
                pixels = np.array(row["pixels"].split(), dtype=np.int64)
                label = int(row["emotion"])
            except (ValueError, AttributeError) as exc:
                raise DataError(f"{path}:{row_number}: malformed row ({exc})") from exc
            side = int(round(pixels.size**0.5))
            if side * side != pixels.size or pixels.min(initial=0) < 0 or pixels.max(initial=0) > 255:
                raise DataError(f"{path}:{row_number}: 'pixels' must be a square image of 0-255 values")
            if not 0 <= label < len(FER2013_CLASSES):
                raise DataError(f"{path}:{row_number}: emotion must be 0-6, got {label}")
            images.append(pixels.astype(np.uint8).reshape(side, side))
            labels.append(label)
            sources.append(f"{path.name}:{row_number}")
    if not images:
        raise DataError(f"{path}: no rows with Usage == {usage!r}")
    stacked = np.stack(images)
    return ImageSet(_fit_all(stacked, image_size, color), np.asarray(labels, np.int64), FER2013_CLASSES, tuple(sources))


def load_image_folder(
    root: str | Path,
    image_size: ImageSize,
    color: str = "rgb",
    classes: Sequence[str] = (),
    skip_unreadable: bool = False,
) -> ImageSet:
    """Load ``root/<class>/<image>`` into memory. Classes are the sorted sub-folder names unless given.

    Raises:
        DataError: If the root is missing, has no class folders/images, or an image is unreadable and
            ``skip_unreadable`` is False (its path is named).
    """
    import cv2

    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder not found: {root}")
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    names = tuple(classes) if classes else tuple(found)
    if not names:
        raise DataError(f"{root}: no class sub-folders (expected root/<class>/<image>)")
    missing = [c for c in names if not (root / c).is_dir()]
    if missing:
        raise DataError(f"{root}: class folder(s) missing: {missing}")
    images: list[np.ndarray] = []
    labels: list[int] = []
    sources: list[str] = []
    skipped = 0
    for index, name in enumerate(names):
        for file in sorted((root / name).iterdir()):
            if file.suffix.lower() not in IMAGE_EXTENSIONS or not file.is_file():
                continue
            data = np.fromfile(str(file), dtype=np.uint8)
            decoded = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
            if decoded is None or decoded.size == 0 or decoded.dtype != np.uint8:
                if skip_unreadable:
                    logger.warning("skipping unreadable image %s", file)
                    skipped += 1
                    continue
                raise DataError(f"unreadable image: {file} (set data.skip_unreadable: true to skip such files)")
            images.append(_fit(decoded, image_size, color))
            labels.append(index)
            sources.append(str(file))
    if not images:
        raise DataError(f"{root}: no readable images with extensions {IMAGE_EXTENSIONS}")
    if skipped:
        logger.warning("%s: skipped %d unreadable image(s)", root, skipped)
    return ImageSet(np.stack(images), np.asarray(labels, np.int64), names, tuple(sources))


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified split: returns (keep_indices, held_out_indices), each sorted."""
    rng = np.random.default_rng(seed)
    held: list[np.ndarray] = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        n = int(round(len(idx) * fraction))
        if len(idx) > 1:
            n = min(max(n, 1), len(idx) - 1)
        held.append(idx[:n])
    held_idx = np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64)
    keep = np.setdiff1d(np.arange(len(labels)), held_idx)
    return keep, held_idx


def stratified_subset(labels: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Seeded stratified subset of exactly ``count`` sorted indices (all when count is 0 or >= len).

    Each class gets its share of ``count`` rounded by largest remainder, and at least one image when
    ``count`` allows it.
    """
    n = len(labels)
    if count <= 0 or count >= n:
        return np.arange(n)
    classes, sizes = np.unique(labels, return_counts=True)
    exact = sizes * (count / n)
    take = np.floor(exact).astype(np.int64)
    by_remainder = np.argsort(-(exact - take), kind="stable")
    take[by_remainder[: count - int(take.sum())]] += 1
    if count >= len(classes):
        take = np.maximum(take, 1)
        while int(take.sum()) > count:
            take[int(np.argmax(take))] -= 1
    rng = np.random.default_rng(seed)
    chosen: list[np.ndarray] = []
    for c, k in zip(classes, take, strict=True):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        chosen.append(idx[: int(k)])
    return np.sort(np.concatenate(chosen))


def load_split(
    fmt: str,
    train: str,
    val: str,
    *,
    image_size: int,
    color: str,
    labels: Sequence[str] = (),
    train_usage: str = "Training",
    val_usage: str = "PublicTest",
    val_fraction: float = 0.1,
    seed: int = 0,
    skip_unreadable: bool = False,
) -> tuple[ImageSet, ImageSet]:
    """Load (train, val) for a data config (see :class:`mobilefer.train.config.DataConfig`)."""

    def one(source: str, usage: str) -> ImageSet:
        if fmt == "fer2013_npz":
            return load_fer2013_npz(source, image_size, color)
        if fmt == "fer2013_csv":
            return load_fer2013_csv(source, usage, image_size, color)
        if fmt == "imagefolder":
            return load_image_folder(source, image_size, color, labels, skip_unreadable)
        raise DataError(f"unknown data format {fmt!r}")

    train_set = one(train, train_usage)
    if val:
        val_set = one(val, val_usage)
    elif fmt == "fer2013_csv":
        val_set = one(train, val_usage)
    else:
        keep, held = stratified_split(train_set.labels, val_fraction, seed)
        return train_set.subset(keep), train_set.subset(held)
    if val_set.classes != train_set.classes:
        raise DataError(f"train and val classes differ: {train_set.classes} vs {val_set.classes}")
    return train_set, val_set


DataForm = Literal["fer2013_npz", "fer2013_csv", "imagefolder"]


def infer_format(path: str | Path) -> DataForm:
    """The data form of ``path``: ``.npz`` file, ``.csv`` file, or a directory of class folders.

    Raises:
        DataError: If the path does not exist or is a file of another kind.
    """
    path = Path(path)
    if path.is_dir():
        return "imagefolder"
    if not path.exists():
        raise DataError(f"data not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return "fer2013_npz"
    if suffix == ".csv":
        return "fer2013_csv"
    raise DataError(
        f"{path}: cannot tell the data form (expected a .npz file, a .csv file or a folder of class folders)"
    )


def load_data(
    path: str | Path,
    fmt: str | None = None,
    *,
    image_size: ImageSize,
    color: str,
    usage: str = "PublicTest",
    classes: Sequence[str] = (),
    skip_unreadable: bool = False,
) -> ImageSet:
    """Load one labelled split in any supported form (inferred from ``path`` when ``fmt`` is None).

    Args:
        path: ``.npz`` file, Kaggle ``.csv`` file, or ``root/<class>/<image>`` folder.
        fmt: ``fer2013_npz``, ``fer2013_csv``, ``imagefolder`` or None (infer).
        image_size: Square side or ``(width, height)`` the images are resized to.
        color: ``gray``, ``rgb`` or ``bgr``.
        usage: csv ``Usage`` value of the rows to read.
        classes: For folders: the class folders to read, in label order (default: all, sorted).
        skip_unreadable: For folders: skip undecodable images (logged with their path) instead of failing.

    Raises:
        DataError: If the data is missing, malformed or of an unknown form.
    """
    form = infer_format(path) if fmt is None else fmt
    if form == "fer2013_npz":
        return load_fer2013_npz(path, image_size, color)
    if form == "fer2013_csv":
        return load_fer2013_csv(path, usage, image_size, color)
    if form == "imagefolder":
        return load_image_folder(path, image_size, color, classes, skip_unreadable)
    raise DataError(f"unknown data format {form!r} (use fer2013_npz, fer2013_csv or imagefolder)")


def align_classes(data: ImageSet, labels: Sequence[str]) -> ImageSet:
    """Re-index ``data``'s labels to the class order ``labels`` (e.g. a model's output order).

    Classes are matched by name; the data may lack some of ``labels``. When no name matches but the
    number of classes is the same (a model trained with renamed classes), the labels are kept by position
    and a warning is logged.

    Raises:
        DataError: If the data has classes that ``labels`` does not know.
    """
    target = tuple(labels)
    if data.classes == target:
        return data
    unknown = [c for c in data.classes if c not in target]
    if unknown:
        if len(data.classes) == len(target) and len(unknown) == len(data.classes):
            logger.warning("data classes %s differ from the model's %s: matching by position", data.classes, target)
            return ImageSet(data.images, data.labels, target, data.sources)
        raise DataError(f"the data has classes the model does not know: {unknown} (model classes: {list(target)})")
    mapping = np.asarray([target.index(c) for c in data.classes], dtype=np.int64)
    return ImageSet(data.images, mapping[data.labels], target, data.sources)
