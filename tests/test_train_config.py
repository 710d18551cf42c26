"""Training config: strict schema, errors naming the key, overrides, saved-config round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from mobilefer.errors import InvalidConfigError, MobileferError
from mobilefer.train.config import (
    TrainConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    dump_config,
    load_config,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def config_file(tmp_path: Path) -> Path:
    images = np.zeros((4, 8, 8), np.uint8)
    np.savez(tmp_path / "train.npz", images=images, labels=np.array([0, 1, 0, 1]))
    (tmp_path / "folder").mkdir()
    raw = {
        "data": {"format": "fer2013_npz", "train": "train.npz", "image_size": 32},
        "optim": {"lr": 0.01},
        "train": {"name": "unit", "batch_size": 2},
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_valid_config_resolves_paths_relative_to_the_file(config_file: Path) -> None:
    cfg = load_config(config_file)
    assert isinstance(cfg, TrainConfig)
    assert cfg.data.train == str((config_file.parent / "train.npz").resolve())
    assert cfg.optim.lr == 0.01 and isinstance(cfg.optim.lr, float)
    assert cfg.train.batch_size == 2
    # Unset keys keep their defaults.
    assert cfg.schedule == TrainConfig().schedule


def test_overrides_are_parsed_as_yaml_scalars(config_file: Path) -> None:
    cfg = load_config(
        config_file,
        ["optim.lr=1e-3", "train.channels_last=false", "augment.scale=[0.9, 1.1]", "data.color=rgb",
         "train.name=other"],
    )
    assert cfg.optim.lr == pytest.approx(1e-3)
    assert cfg.train.channels_last is False
    assert cfg.augment.scale == (0.9, 1.1)
    assert cfg.data.color == "rgb"
    assert cfg.train.name == "other"


def test_dumped_config_loads_back_identically(config_file: Path, tmp_path: Path) -> None:
    cfg = load_config(config_file, ["augment.mixup=0.2", "data.labels=[a, b]"])
    text = dump_config(cfg)
    again = config_from_dict(yaml.safe_load(text), base_dir=tmp_path / "elsewhere")
    assert again == cfg
    assert config_to_dict(again)["data"]["labels"] == ["a", "b"]


def test_apply_overrides_does_not_mutate_its_input() -> None:
    raw = {"optim": {"lr": 0.1}}
    out = apply_overrides(raw, ["optim.lr=0.5", "train.seed=3"])
    assert raw == {"optim": {"lr": 0.1}}
    assert out == {"optim": {"lr": 0.5}, "train": {"seed": 3}}


# (overrides, text that must appear in the error: the key it names, and the reason)
CONFIG_ERRORS = [
    pytest.param(["bogus.key=1"], ["bogus", "unknown section"], id="unknown-section"),
    pytest.param(["optim.learning_rate=0.1"], ["optim.learning_rate", "unknown key"], id="unknown-key"),
    pytest.param(["train.batch_size=abc"], ["train.batch_size", "integer"], id="wrong-type-int"),
    pytest.param(["train.batch_size=1.5"], ["train.batch_size", "integer"], id="wrong-type-float-for-int"),
    pytest.param(["train.channels_last=3"], ["train.channels_last", "true or false"], id="wrong-type-bool"),
    pytest.param(["augment.scale=0.9"], ["augment.scale", "list"], id="wrong-type-list"),
    pytest.param(["data.color=cmyk"], ["data.color", "one of"], id="wrong-literal"),
    pytest.param(["optim.lr=-0.1"], ["optim.lr", "> 0"], id="impossible-lr"),
    pytest.param(["optim.lr=.nan"], ["optim.lr", "finite"], id="impossible-nan"),
    pytest.param(["schedule.epochs=0"], ["schedule.epochs", ">= 1"], id="impossible-epochs"),
    pytest.param(["schedule.warmup_epochs=50"], ["schedule.warmup_epochs"], id="impossible-warmup"),
    pytest.param(["augment.hflip=1.5"], ["augment.hflip", "probability"], id="impossible-probability"),
    pytest.param(["augment.scale=[1.2, 0.8]"], ["augment.scale", "min <= max"], id="impossible-scale"),
    pytest.param(["model.name=resnet50"], ["model.name", "timm:<name>"], id="impossible-model"),
    pytest.param(["model.stem_stride=3"], ["model.stem_stride"], id="impossible-stride"),
    pytest.param(["train.name=a/b"], ["train.name", "path separators"], id="impossible-name"),
    pytest.param(["data.labels=[a, a]"], ["data.labels", "unique"], id="duplicate-labels"),
    pytest.param(["data.train=missing.npz"], ["data.train", "does not exist", "missing.npz"], id="missing-path"),
    pytest.param(["data.val=nowhere"], ["data.val", "does not exist"], id="missing-val-path"),
    pytest.param(["model.init_checkpoint=nope.pth"], ["model.init_checkpoint", "nope.pth"], id="missing-checkpoint"),
    pytest.param(["data.format=imagefolder"], ["data.train", "folder"], id="file-for-imagefolder"),
    pytest.param(["data.train=folder"], ["data.train", "needs a file"], id="folder-for-npz"),
    pytest.param(["optim.lr"], ["optim.lr", "section.key=value"], id="bad-override-no-equals"),
    pytest.param(["lr=0.1"], ["lr", "section.key"], id="bad-override-no-section"),
    pytest.param(["optim.lr.x=0.1"], ["optim.lr.x", "section.key"], id="bad-override-too-deep"),
]


@pytest.mark.parametrize(("overrides", "expected"), CONFIG_ERRORS)
def test_config_errors_name_the_key(config_file: Path, overrides: list[str], expected: list[str]) -> None:
    with pytest.raises(InvalidConfigError) as info:
        load_config(config_file, overrides)
    message = str(info.value)
    for text in expected:
        assert text in message, message
    assert isinstance(info.value, MobileferError) and isinstance(info.value, ValueError)


def test_yaml_level_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfigError, match="not found"):
        load_config(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(InvalidConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- a\n- b\n")
    with pytest.raises(InvalidConfigError, match="mapping"):
        load_config(bad)
    bad.write_text("data: 3\n")
    with pytest.raises(InvalidConfigError, match="^data: must be a mapping"):
        load_config(bad)
    bad.write_text("optim: {lr: 0.1}\n")
    with pytest.raises(InvalidConfigError, match="data.train: is required"):
        load_config(bad)


def test_check_paths_false_accepts_moved_data(tmp_path: Path) -> None:
    raw = {"data": {"train": str(tmp_path / "gone.npz")}}
    cfg = config_from_dict(raw, check_paths=False)
    assert cfg.data.train == str(tmp_path / "gone.npz")
    with pytest.raises(InvalidConfigError, match="data.train"):
        config_from_dict(raw)


def test_example_configs_are_valid(tmp_path: Path) -> None:
    # The imagefolder example, pointed at a folder that exists.
    (tmp_path / "train" / "apple").mkdir(parents=True)
    (tmp_path / "val" / "apple").mkdir(parents=True)
    cfg = load_config(
        REPO / "examples/configs/imagefolder.yaml",
        [f"data.train={tmp_path / 'train'}", f"data.val={tmp_path / 'val'}"],
    )
    assert cfg.data.format == "imagefolder" and cfg.data.color == "rgb"
    assert cfg.model.name.startswith("timm:") or cfg.model.name == "mobilenet_v2"
    # The shipped recipe parses (its data paths point into ../shared; checked separately when present).
    raw = yaml.safe_load((REPO / "examples/configs/fer2013_mobilenetv2.yaml").read_text())
    recipe = config_from_dict(raw, base_dir=REPO / "examples/configs", check_paths=False)
    assert (recipe.model.name, recipe.data.image_size, recipe.data.color) == ("mobilenet_v2", 48, "gray")
