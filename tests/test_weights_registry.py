"""Registry records: content, immutability, validation, and the real UltraFace files in ../shared."""

from __future__ import annotations

import dataclasses
import hashlib
import pickle
from pathlib import Path

import pytest

from conftest import shared_file
from mobilefer.errors import ChecksumMismatchError, InvalidInputError, WeightsNotFoundError
from mobilefer.preset import Preset
from mobilefer.weights import (
    ULTRAFACE_PRESET,
    WeightsRecord,
    get_record,
    list_records,
    resolve,
    sha256_file,
    verify_file,
)

RAW = "https://raw.githubusercontent.com/Linzaer/Ultra-Light-Fast-Generic-Face-Detector-1MB/master/models/pretrained"


def _record(**overrides: object) -> WeightsRecord:
    values: dict[str, object] = {
        "name": "toy",
        "url": "https://example.org/toy.bin",
        "sha256": "ab" * 32,
        "size": 10,
        "license": "MIT",
        "filename": "toy.bin",
    }
    values.update(overrides)
    return WeightsRecord(**values)  # type: ignore[arg-type]


def test_registered_records_are_the_ultraface_pair_and_the_shipped_classifier() -> None:
    records = list_records()
    assert [r.name for r in records] == ["fer2013-mobilenetv2", "ultraface-rfb-320", "ultraface-slim-320"]
    fer, rfb, slim = records
    assert fer.url is None and fer.packaged == "weights/data/fer2013_mobilenetv2.safetensors"
    assert rfb.url == f"{RAW}/version-RFB-320.pth"
    assert slim.url == f"{RAW}/version-slim-320.pth"
    assert rfb.filename == "version-RFB-320.pth" and slim.filename == "version-slim-320.pth"
    assert rfb.sha256 == "c722b4427cc71642768baef6e15c659931b56f07425e5d2b0ec033ad41b145b3"
    assert slim.sha256 == "cd24abce45da5dbc7cfd8167cd3d5f955382dfc9d9ae9459f0026abd3c2e38a4"
    assert (rfb.size, slim.size) == (1_168_374, 1_091_283)
    assert fer.license.startswith("MIT") and "FER2013" in fer.license
    assert fer.labels == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    assert fer.input_size == (48, 48)
    assert get_record(fer.name) is fer
    for record in (rfb, slim):
        assert record.license == "MIT"
        assert record.preset is ULTRAFACE_PRESET
        assert record.labels == ("background", "face")
        assert record.input_size == (320, 240)
        assert record.packaged is None
        assert get_record(record.name) is record


def test_ultraface_preset_constants() -> None:
    p = ULTRAFACE_PRESET
    assert (p.name, p.input_size, p.color) == ("ultraface-320", (320, 240), "rgb")
    assert p.mean == (127.0, 127.0, 127.0) and p.std == (128.0, 128.0, 128.0)
    assert p.labels == ("background", "face")
    assert p.scale == pytest.approx((1 / 128,) * 3) and p.bias == pytest.approx((-127 / 128,) * 3)


def test_unknown_name_lists_known_names() -> None:
    with pytest.raises(InvalidInputError) as info:
        get_record("ultraface-rfb-640")
    assert "ultraface-rfb-320" in str(info.value) and "ultraface-slim-320" in str(info.value)
    assert isinstance(info.value, ValueError)
    with pytest.raises(InvalidInputError):
        get_record(3)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="WeightsRecord"):
        resolve(3.5)  # type: ignore[arg-type]


def test_records_are_immutable_and_copy_their_metrics() -> None:
    source = {"top1": 0.5}
    record = _record(metrics=source)
    source["top1"] = 0.9
    source["extra"] = 1.0
    assert dict(record.metrics) == {"top1": 0.5}
    with pytest.raises(TypeError):
        record.metrics["top1"] = 1.0  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.size = 11  # type: ignore[misc]
    assert isinstance(record.metrics["top1"], float)


def test_records_pickle_and_hash() -> None:
    record = _record(metrics={"acc": 1}, preset=ULTRAFACE_PRESET)
    clone = pickle.loads(pickle.dumps(record))
    assert clone == record and clone is not record
    assert dict(clone.metrics) == {"acc": 1.0}
    assert len({record, clone, get_record("ultraface-rfb-320")}) == 2


def test_sha256_is_normalised_to_lower_case() -> None:
    assert _record(sha256="AB" * 32).sha256 == "ab" * 32


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"sha256": "ab" * 16}, "64-hex"),
        ({"sha256": "zz" * 32}, "64-hex"),
        ({"size": -1}, "size"),
        ({"size": True}, "size"),
        ({"filename": "dir/toy.bin"}, "filename"),
        ({"filename": ".."}, "filename"),
        ({"url": "ftp://example.org/toy.bin"}, "http"),
        ({"url": None}, "url"),
        ({"url": None, "packaged": "../escape.bin"}, "packaged"),
        ({"name": ""}, "name"),
        ({"license": ""}, "license"),
        ({"metrics": {"acc": float("nan")}}, "finite"),
        ({"metrics": {"acc": True}}, "finite"),
        ({"input_size": (320,)}, "input_size"),
        ({"preset": ULTRAFACE_PRESET, "labels": ("face",)}, "labels"),
        ({"preset": ULTRAFACE_PRESET, "input_size": (640, 480)}, "input_size"),
        ({"preset": {"name": "x"}}, "Preset"),
    ],
)
def test_invalid_records_are_rejected(overrides: dict[str, object], fragment: str) -> None:
    with pytest.raises(InvalidInputError, match=fragment):
        _record(**overrides)


def test_labels_and_size_come_from_the_preset() -> None:
    preset = Preset(name="g", input_size=(64, 64), color="gray", mean=(0.0,), std=(255.0,), labels=("a", "b"))
    record = _record(preset=preset)
    assert record.labels == ("a", "b") and record.input_size == (64, 64)
    plain = _record(labels=["x", "y"], input_size=[8, 4])
    assert plain.labels == ("x", "y") and plain.input_size == (8, 4)


def test_sha256_file_and_verify_file(tmp_path: Path) -> None:
    data = bytes(range(256)) * 1000
    file = tmp_path / "blob.bin"
    file.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    assert sha256_file(file) == digest
    record = _record(sha256=digest, size=len(data))
    verify_file(file, record)  # passes
    file.write_bytes(data[:-1])
    with pytest.raises(ChecksumMismatchError, match="truncated"):
        verify_file(file, record)
    file.write_bytes(data[:-1] + b"\x00")
    with pytest.raises(ChecksumMismatchError, match=digest):
        verify_file(file, record)
    with pytest.raises(WeightsNotFoundError):
        verify_file(tmp_path / "missing.bin", record)


# --------------------------------------------------------------------------- real files in ../shared
@pytest.mark.realdata
def test_real_rfb_file_matches_record_and_resolves(rfb_weights: Path) -> None:
    record = get_record("ultraface-rfb-320")
    assert rfb_weights.stat().st_size == record.size
    assert resolve("ultraface-rfb-320", path=rfb_weights.parent, offline=True) == rfb_weights
    assert resolve(record, path=rfb_weights, offline=True) == rfb_weights
    with pytest.raises(ChecksumMismatchError, match="version-slim-320.pth"):
        resolve("ultraface-slim-320", path=rfb_weights, offline=True)


@pytest.mark.realdata
def test_real_slim_file_matches_record() -> None:
    slim = shared_file("weights/ultraface/version-slim-320.pth")
    record = get_record("ultraface-slim-320")
    assert slim.stat().st_size == record.size
    assert sha256_file(slim) == record.sha256
    assert resolve(record, path=slim.parent, offline=True) == slim
