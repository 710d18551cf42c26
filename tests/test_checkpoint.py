"""Classifier checkpoints: safetensors round trip and typed errors for foreign or damaged files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from _core_helpers import GRAY48, SPEC, make_model
from mobilefer.checkpoint import FORMAT, atomic_save_file, load_classifier, read_metadata, save_classifier
from mobilefer.classify import ExpressionClassifier
from mobilefer.errors import MobileferError, ModelFormatError, WeightsNotFoundError

METRICS = {"val_accuracy": 0.625, "val_loss": 1.25}


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return make_model(3)


@pytest.fixture()
def ckpt(tmp_path: Path, model: torch.nn.Module) -> Path:
    path = tmp_path / "clf.safetensors"
    save_classifier(path, model, SPEC, GRAY48, METRICS)
    return path


def _rewrite(
    src: Path,
    dst: Path,
    meta: Callable[[dict[str, str]], None] | None = None,
    tensors: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None,
) -> Path:
    state = load_file(str(src))
    with safe_open(str(src), framework="pt") as fh:
        metadata = dict(fh.metadata())
    if meta is not None:
        meta(metadata)
    if tensors is not None:
        state = tensors(state)
    save_file(state, str(dst), metadata=metadata)
    return dst


def test_round_trip_gives_identical_outputs(ckpt: Path, model: torch.nn.Module) -> None:
    loaded = load_classifier(ckpt)
    assert loaded.preset == GRAY48
    assert loaded.spec.to_dict() == SPEC.to_dict()
    assert loaded.metrics == METRICS
    assert loaded.path == ckpt
    assert not loaded.model.training
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((4, 1, 48, 48)).astype(np.float32))
    with torch.no_grad():
        expected, got = model(x), loaded.model(x)
    assert torch.equal(expected, got)
    assert float(expected.std()) > 0.1  # the model's outputs really depend on its weights
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.model.state_dict()[key]), key


def test_from_checkpoint_predicts_like_the_source_classifier(ckpt: Path, model: torch.nn.Module) -> None:
    crops = list(np.random.default_rng(1).integers(0, 256, (3, 40, 40, 3), dtype=np.uint8))
    original = ExpressionClassifier(model, GRAY48).predict_proba(crops)
    restored = ExpressionClassifier.from_checkpoint(ckpt)
    assert restored.name == "clf"
    np.testing.assert_array_equal(restored.predict_proba(crops), original)


def test_metadata_is_plain_json(ckpt: Path) -> None:
    meta = read_metadata(ckpt)
    assert meta["format"] == FORMAT
    assert json.loads(meta["model"])["name"] == "mobilenet_v2"
    assert json.loads(meta["preset"])["labels"] == list(GRAY48.labels)
    assert json.loads(meta["metrics"]) == METRICS


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path: Path, model: torch.nn.Module) -> None:
    path = tmp_path / "a.safetensors"
    save_classifier(path, model, SPEC, GRAY48)
    save_classifier(path, model, SPEC, GRAY48)  # overwrite in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.safetensors"]
    assert load_classifier(path).metrics == {}


def test_training_checkpoint_prefixes_prefer_ema(tmp_path: Path, model: torch.nn.Module) -> None:
    state = model.state_dict()
    other = make_model(4).state_dict()
    tensors = {f"model.{k}": v for k, v in other.items()} | {f"ema.{k}": v for k, v in state.items()}
    meta = {"format": FORMAT, "model": json.dumps(SPEC.to_dict()), "preset": GRAY48.to_json(), "metrics": "{}"}
    atomic_save_file(tensors, tmp_path / "run.safetensors", meta)
    loaded = load_classifier(tmp_path / "run.safetensors")
    for key, value in state.items():
        assert torch.equal(loaded.model.state_dict()[key], value), key


def test_wrong_format_metadata_raises_model_format_error(ckpt: Path, tmp_path: Path) -> None:
    other = _rewrite(ckpt, tmp_path / "other.safetensors", meta=lambda m: m.update(format="something-else"))
    with pytest.raises(ModelFormatError, match="not a mobilefer classifier"):
        load_classifier(other)
    bare = tmp_path / "bare.safetensors"
    save_file({"w": torch.zeros(3)}, str(bare))  # no metadata at all
    with pytest.raises(ModelFormatError):
        load_classifier(bare)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda m: m.update(preset="{broken json"),
        lambda m: m.update(preset=json.dumps({"name": "x"})),
        lambda m: m.pop("model"),
        lambda m: m.update(model=json.dumps({"name": "no-such-net", "num_classes": 7, "in_chans": 1})),
        lambda m: m.update(model=json.dumps({"name": "mobilenet_v2", "num_classes": "seven", "in_chans": 1})),
        lambda m: m.update(metrics='{"acc": "high"}'),
        lambda m: m.update(metrics="[1, 2]"),
    ],
)
def test_damaged_metadata_raises_model_format_error(
    ckpt: Path, tmp_path: Path, mutate: Callable[[dict[str, str]], None]
) -> None:
    bad = _rewrite(ckpt, tmp_path / "bad.safetensors", meta=mutate)
    with pytest.raises(ModelFormatError):
        load_classifier(bad)


def test_weights_that_do_not_fit_the_spec_raise(ckpt: Path, tmp_path: Path) -> None:
    wider = _rewrite(
        ckpt, tmp_path / "w.safetensors", meta=lambda m: m.update(model=json.dumps(SPEC.to_dict() | {"width_mult": 0.5}))
    )
    with pytest.raises(ModelFormatError, match="do not match"):
        load_classifier(wider)
    missing = _rewrite(
        ckpt, tmp_path / "m.safetensors", tensors=lambda s: {k: v for k, v in s.items() if "classifier" not in k}
    )
    with pytest.raises(ModelFormatError):
        load_classifier(missing)


@pytest.mark.parametrize("fraction", [0.0, 0.001, 0.5, 0.999])
def test_truncated_file_raises_model_format_error(ckpt: Path, tmp_path: Path, fraction: float) -> None:
    data = ckpt.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(ModelFormatError):
        load_classifier(cut)


def test_random_bytes_raise_model_format_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ModelFormatError):
        load_classifier(junk)


def test_missing_file_raises_a_typed_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(WeightsNotFoundError) as info:
        load_classifier(tmp_path / "nope.safetensors")
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, MobileferError)
    assert "nope.safetensors" in str(info.value)
    with pytest.raises(WeightsNotFoundError):
        ExpressionClassifier.from_checkpoint(tmp_path / "nope.safetensors")
