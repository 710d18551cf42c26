"""Data forms: FER2013 npz, Kaggle csv and class folders load the same images and labels."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from mobilefer.errors import DataError
from mobilefer.train.data import (
    FER2013_CLASSES,
    ImageSet,
    align_classes,
    infer_format,
    load_data,
    load_fer2013_csv,
    load_fer2013_npz,
    load_image_folder,
    load_split,
    stratified_split,
    stratified_subset,
)


@pytest.fixture(scope="module")
def fer_subset(fer_val_npz: Path) -> ImageSet:
    """70 real FER2013 images, 10 per class."""
    full = load_fer2013_npz(fer_val_npz)
    picks = np.concatenate([np.flatnonzero(full.labels == c)[:10] for c in range(7)])
    return full.subset(picks)


def _write_npz(data: ImageSet, path: Path) -> Path:
    np.savez(path, images=data.images, labels=data.labels, classes=np.array(data.classes))
    return path


def _write_csv(data: ImageSet, path: Path, usage: str = "PublicTest") -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["emotion", "pixels", "Usage"])
        for i, (image, label) in enumerate(zip(data.images, data.labels, strict=True)):
            writer.writerow([int(label), " ".join(str(int(v)) for v in image.ravel()), usage])
            if i % 10 == 0:  # decoys of another split that must not be read
                writer.writerow([int((label + 1) % 7), " ".join("0" for _ in image.ravel()), "Training"])
    return path


def _write_folders(data: ImageSet, root: Path, ext: str = ".png") -> Path:
    for i, (image, label) in enumerate(zip(data.images, data.labels, strict=True)):
        folder = root / data.classes[int(label)]
        folder.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(folder / f"{i:04d}{ext}"), image)
    return root


def _by_source_index(data: ImageSet) -> ImageSet:
    """Reorder a folder-loaded set by the index in its file names (the original order)."""
    order = np.argsort([int(Path(s).stem) for s in data.sources])
    return data.subset(order)


@pytest.mark.parametrize(("size", "color"), [(48, "gray"), (64, "rgb"), (40, "bgr")])
def test_all_forms_load_the_same_images_and_labels(
    fer_subset: ImageSet, tmp_path: Path, size: int, color: str
) -> None:
    npz = load_fer2013_npz(_write_npz(fer_subset, tmp_path / "s.npz"), size, color)
    from_csv = load_fer2013_csv(_write_csv(fer_subset, tmp_path / "s.csv"), "PublicTest", size, color)
    root = _write_folders(fer_subset, tmp_path / "folders")
    folders = _by_source_index(load_image_folder(root, size, color, classes=FER2013_CLASSES))

    assert len(npz) == len(from_csv) == len(folders) == 70
    expected_shape = (70, size, size) if color == "gray" else (70, size, size, 3)
    assert npz.images.shape == expected_shape and npz.images.dtype == np.uint8
    np.testing.assert_array_equal(from_csv.images, npz.images)
    np.testing.assert_array_equal(folders.images, npz.images)
    np.testing.assert_array_equal(from_csv.labels, fer_subset.labels)
    np.testing.assert_array_equal(folders.labels, fer_subset.labels)
    assert npz.classes == from_csv.classes == folders.classes == FER2013_CLASSES
    if color == "gray" and size == 48:
        np.testing.assert_array_equal(npz.images, fer_subset.images)


def test_folder_classes_default_to_sorted_names_and_align_by_name(fer_subset: ImageSet, tmp_path: Path) -> None:
    root = _write_folders(fer_subset, tmp_path / "folders")
    sorted_set = load_image_folder(root, 48, "gray")
    assert sorted_set.classes == tuple(sorted(FER2013_CLASSES))
    aligned = _by_source_index(align_classes(sorted_set, FER2013_CLASSES))
    np.testing.assert_array_equal(aligned.labels, fer_subset.labels)
    np.testing.assert_array_equal(aligned.images, fer_subset.images)


def test_jpeg_class_folders(fer_subset: ImageSet, tmp_path: Path) -> None:
    root = _write_folders(fer_subset, tmp_path / "train", ext=".jpg")
    data = _by_source_index(load_data(root, image_size=48, color="gray", classes=FER2013_CLASSES))
    np.testing.assert_array_equal(data.labels, fer_subset.labels)
    # JPEG is lossy: close, not equal.
    diff = np.abs(data.images.astype(np.int16) - fer_subset.images.astype(np.int16))
    assert diff.mean() < 4.0


def test_csv_reads_only_the_requested_usage(fer_subset: ImageSet, tmp_path: Path) -> None:
    path = _write_csv(fer_subset, tmp_path / "s.csv")
    training = load_fer2013_csv(path, "Training")
    assert len(training) == 7  # the decoys
    assert int(training.images.max()) == 0
    with pytest.raises(DataError, match="no rows with Usage == 'PrivateTest'"):
        load_fer2013_csv(path, "PrivateTest")


def test_malformed_csv_names_the_row(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("emotion,pixels,Usage\n0,1 2 3 4,Training\n9,1 2 3 4,Training\n")
    with pytest.raises(DataError, match=r"bad.csv:3: emotion must be 0-6"):
        load_fer2013_csv(path, "Training")
    path.write_text("emotion,pixels,Usage\n0,1 2 3,Training\n")
    with pytest.raises(DataError, match=r"bad.csv:2: 'pixels' must be a square"):
        load_fer2013_csv(path, "Training")
    path.write_text("label,image\n0,1\n")
    with pytest.raises(DataError, match="expected columns"):
        load_fer2013_csv(path, "Training")


def _tiny_folders(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        for i in range(3):
            cv2.imwrite(str(root / name / f"{i}.png"), rng.integers(0, 255, (20, 30, 3), dtype=np.uint8))
    return root


def test_unreadable_images_fail_with_their_path(tmp_path: Path) -> None:
    root = _tiny_folders(tmp_path / "imgs")
    broken = root / "dog" / "broken.png"
    broken.write_bytes(b"this is not a png")
    with pytest.raises(DataError, match="unreadable image: .*broken.png.*skip_unreadable"):
        load_image_folder(root, 16, "rgb")
    with pytest.raises(DataError, match="broken.png"):
        load_split("imagefolder", str(root), "", image_size=16, color="rgb")


def test_unreadable_images_skipped_only_when_asked(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = _tiny_folders(tmp_path / "imgs")
    (root / "dog" / "broken.png").write_bytes(b"this is not a png")
    (root / "cat" / "empty.jpg").write_bytes(b"")
    (root / "cat" / "notes.txt").write_text("ignored: not an image extension")
    with caplog.at_level(logging.WARNING, logger="mobilefer.train.data"):
        data = load_image_folder(root, 16, "rgb", skip_unreadable=True)
    assert len(data) == 6
    np.testing.assert_array_equal(data.class_counts(), [3, 3])
    assert data.images.shape == (6, 16, 16, 3)
    assert not any("broken" in s or "empty" in s for s in data.sources)
    logged = caplog.text
    assert "broken.png" in logged and "empty.jpg" in logged and "skipped 2" in logged


def test_infer_format_and_load_data(fer_subset: ImageSet, tmp_path: Path) -> None:
    npz = _write_npz(fer_subset, tmp_path / "a.npz")
    csv_path = _write_csv(fer_subset, tmp_path / "a.csv")
    root = _write_folders(fer_subset, tmp_path / "f")
    assert infer_format(npz) == "fer2013_npz"
    assert infer_format(csv_path) == "fer2013_csv"
    assert infer_format(root) == "imagefolder"
    with pytest.raises(DataError, match="not found"):
        infer_format(tmp_path / "missing.npz")
    (tmp_path / "x.txt").write_text("?")
    with pytest.raises(DataError, match="cannot tell"):
        infer_format(tmp_path / "x.txt")
    a = load_data(npz, image_size=(40, 30), color="gray")
    assert a.images.shape == (70, 30, 40)  # (width, height) = (40, 30)
    b = load_data(csv_path, image_size=(40, 30), color="gray", usage="PublicTest")
    np.testing.assert_array_equal(a.images, b.images)


def test_align_classes(fer_subset: ImageSet) -> None:
    reordered = tuple(reversed(FER2013_CLASSES))
    aligned = align_classes(fer_subset, reordered)
    assert aligned.classes == reordered
    np.testing.assert_array_equal(aligned.labels, 6 - fer_subset.labels)
    renamed = align_classes(fer_subset, tuple(f"c{i}" for i in range(7)))  # same count, other names: by position
    np.testing.assert_array_equal(renamed.labels, fer_subset.labels)
    with pytest.raises(DataError, match="does not know"):
        align_classes(fer_subset, ("happy", "sad"))


def test_stratified_split_and_subset() -> None:
    labels = np.repeat(np.arange(4), [50, 30, 15, 5])
    keep, held = stratified_split(labels, 0.2, seed=3)
    assert len(np.intersect1d(keep, held)) == 0 and len(keep) + len(held) == len(labels)
    np.testing.assert_array_equal(np.bincount(labels[held], minlength=4), [10, 6, 3, 1])
    keep2, held2 = stratified_split(labels, 0.2, seed=3)
    np.testing.assert_array_equal(held, held2)
    assert not np.array_equal(held, stratified_split(labels, 0.2, seed=4)[1])
    sub = stratified_subset(labels, 20, seed=0)
    assert len(sub) == 20 and set(labels[sub]) == {0, 1, 2, 3}
    for count in (1, 3, 4, 7, 33, 50, 99):
        picked = stratified_subset(labels, count, seed=1)
        assert len(picked) == count and len(np.unique(picked)) == count  # exactly count distinct images
        if count >= 4:
            assert set(labels[picked]) == {0, 1, 2, 3}  # every class kept
    # shares 25, 15, 7.5, 2.5: the tied remainder goes to the first class
    np.testing.assert_array_equal(np.bincount(labels[stratified_subset(labels, 50, seed=2)]), [25, 15, 8, 2])
    np.testing.assert_array_equal(stratified_subset(labels, 50, seed=2), stratified_subset(labels, 50, seed=2))
    np.testing.assert_array_equal(stratified_subset(labels, 0, seed=0), np.arange(len(labels)))


def test_load_split_holds_out_a_stratified_val_fraction(fer_subset: ImageSet, tmp_path: Path) -> None:
    root = _write_folders(fer_subset, tmp_path / "f")
    train, val = load_split("imagefolder", str(root), "", image_size=48, color="gray", val_fraction=0.2, seed=0)
    assert len(train) == 56 and len(val) == 14
    np.testing.assert_array_equal(val.class_counts(), [2] * 7)
    assert not set(train.sources) & set(val.sources)


def test_training_from_each_form_gives_the_same_weights(fer_subset: ImageSet, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    from mobilefer.train import train
    from mobilefer.train.config import config_from_dict

    train_part = fer_subset.subset(np.flatnonzero(np.arange(70) % 5 != 0))
    val_part = fer_subset.subset(np.flatnonzero(np.arange(70) % 5 == 0))
    sources = {
        "fer2013_npz": (_write_npz(train_part, tmp_path / "t.npz"), _write_npz(val_part, tmp_path / "v.npz")),
        "fer2013_csv": (_write_csv(train_part, tmp_path / "t.csv"), _write_csv(val_part, tmp_path / "v.csv")),
        "imagefolder": (_write_folders(train_part, tmp_path / "t"), _write_folders(val_part, tmp_path / "v")),
    }
    weights = {}
    for form, (train_path, val_path) in sources.items():
        raw = {
            "data": {"format": form, "train": str(train_path), "val": str(val_path), "val_usage": "PublicTest",
                     "train_usage": "PublicTest", "labels": list(FER2013_CLASSES)},
            "model": {"width_mult": 0.35},
            "schedule": {"epochs": 1, "warmup_epochs": 0.0},
            "train": {"batch_size": 16, "max_steps_per_epoch": 2, "threads": 1, "progress": False, "plots": False},
        }
        result = train(config_from_dict(raw), tmp_path / "runs" / form)
        assert result.best.n == 14
        weights[form] = load_file(str(result.run_dir / "last.safetensors"))
    reference = weights["fer2013_npz"]
    for form, state in weights.items():
        assert [k for k in reference if k.startswith("model.") and not torch.equal(reference[k], state[k])] == [], form
