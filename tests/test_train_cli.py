"""``mobilefer train`` / ``mobilefer eval`` sub-commands (through :func:`mobilefer.train.cli.main`)."""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
import types
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml

from mobilefer.train.cli import add_eval_parser, add_train_parser, main
from mobilefer.train.data import FER2013_CLASSES, ImageSet, load_fer2013_npz


def _write_config(path: Path, raw: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(raw))
    return path


def _fer_subset(npz: Path, per_class: int, offset: int = 0) -> ImageSet:
    full = load_fer2013_npz(npz)
    picks = np.concatenate([np.flatnonzero(full.labels == c)[offset : offset + per_class] for c in range(7)])
    return full.subset(picks)


def _write_folders(data: ImageSet, root: Path) -> Path:
    for i, (image, label) in enumerate(zip(data.images, data.labels, strict=True)):
        folder = root / data.classes[int(label)]
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{i:04d}.png"), image)
    return root


def _write_csv(data: ImageSet, path: Path) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["emotion", "pixels", "Usage"])
        for image, label in zip(data.images, data.labels, strict=True):
            writer.writerow([int(label), " ".join(map(str, image.ravel().tolist())), "PublicTest"])
    return path


@pytest.fixture(scope="module")
def fer_run(tmp_path_factory: pytest.TempPathFactory, fer_val_npz: Path) -> dict[str, Path]:
    """A tiny FER2013 run trained from class folders (ImageFolder training), with the val set in every form."""
    root = tmp_path_factory.mktemp("fer")
    train = _fer_subset(fer_val_npz, 12)
    val = _fer_subset(fer_val_npz, 5, offset=12)
    _write_folders(train, root / "fer" / "train")
    _write_folders(val, root / "fer" / "test")
    np.savez(root / "val.npz", images=val.images, labels=val.labels)
    _write_csv(val, root / "val.csv")
    mirrored = root / "mirrored"
    _write_folders(ImageSet(val.images[:, :, ::-1].copy(), val.labels, val.classes, val.sources), mirrored)
    config = _write_config(root / "fer.yaml", {
        "data": {"format": "imagefolder", "train": "fer/train", "val": "fer/test", "image_size": 48, "color": "gray",
                 "labels": list(FER2013_CLASSES)},
        "model": {"name": "mobilenet_v2", "width_mult": 0.35},
        "schedule": {"epochs": 2, "warmup_epochs": 0.0},
        "train": {"name": "fer-folders", "batch_size": 16, "threads": 1, "progress": False, "plots": False,
                  "max_steps_per_epoch": 2, "ema_decay": 0.5},
    })
    assert main(["train", str(config), "--out", str(root / "runs")]) == 0
    (run,) = (root / "runs").iterdir()
    return {"run": run, "root": root, "config": config}


@pytest.fixture(scope="module")
def random_ckpt(tmp_path_factory: pytest.TempPathFactory, fer_val_npz: Path) -> Path:
    """An untrained classifier whose predictions depend on the input (unlike a model trained for 4 steps):
    random features, classifier centred on the mean feature of some FER2013 faces."""
    import torch

    from mobilefer.checkpoint import save_classifier
    from mobilefer.models.factory import ModelSpec
    from mobilefer.preset import Preset

    torch.manual_seed(0)
    spec = ModelSpec("mobilenet_v2", 7, 1, width_mult=0.35)
    model = spec.build().eval()
    preset = Preset("random", (48, 48), "gray", (127.5,), (127.5,), labels=FER2013_CLASSES)
    faces = torch.from_numpy(preset.normalize(_fer_subset(fer_val_npz, 10, offset=20).images))
    with torch.no_grad():
        features = model.forward_head(model.forward_features(faces), pre_logits=True)  # type: ignore[operator]
        weight = torch.randn(7, features.shape[1]) / features.std(0).clamp_min(1e-6)
        model.classifier.weight.copy_(weight)  # type: ignore[union-attr, operator]
        model.classifier.bias.copy_(-weight @ features.mean(0))  # type: ignore[union-attr, operator]
    path = tmp_path_factory.mktemp("random") / "random.safetensors"
    save_classifier(path, model.eval(), spec, preset)
    return path


def _eval_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    capsys.readouterr()
    assert main(["eval", *argv, "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1  # one JSON line
    result: dict[str, Any] = json.loads(out)
    return result


def test_parsers_wire_their_handlers() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    add_train_parser(sub)
    add_eval_parser(sub)
    args = parser.parse_args(["train", "c.yaml", "--set", "optim.lr=1", "--set", "train.seed=2"])
    assert args.overrides == ["optim.lr=1", "train.seed=2"] and args.out == "runs" and args.resume is None
    assert args.func.__name__ == "run_train"
    args = parser.parse_args(["eval", "default", "d.npz", "--tta", "--json", "--format", "fer2013_csv"])
    assert (args.tta, args.json, args.format, args.usage) == (True, True, "fer2013_csv", "PublicTest")
    assert args.func.__name__ == "run_eval"


def test_imagefolder_training_outputs(fer_run: dict[str, Path]) -> None:
    run = fer_run["run"]
    for name in ("config.yaml", "metrics.json", "best.safetensors", "preset.json", "last.safetensors"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["classes"] == list(FER2013_CLASSES)
    assert [h["val_n"] for h in metrics["history"]] == [35, 35]  # 5 val images per class
    assert sum(map(sum, metrics["best"]["confusion_matrix"])) == 35
    assert [h["step"] for h in metrics["history"]] == [2, 4]


def test_eval_gives_the_same_metrics_on_every_data_form(
    fer_run: dict[str, Path], random_ckpt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, root = fer_run["run"], fer_run["root"]
    best = str(random_ckpt)
    by_form = {
        "npz": _eval_json(capsys, best, str(root / "val.npz")),
        "csv": _eval_json(capsys, best, str(root / "val.csv")),
        "folder": _eval_json(capsys, best, str(root / "fer" / "test")),
    }
    assert [r["format"] for r in by_form.values()] == ["fer2013_npz", "fer2013_csv", "imagefolder"]
    reference = by_form["npz"]
    assert reference["n"] == 35 and 0.0 <= reference["accuracy"] <= 1.0
    assert set(reference["per_class"]) == set(FER2013_CLASSES)
    assert {"precision", "recall", "f1", "support"} <= set(reference["per_class"]["happy"])
    predicted = np.asarray(reference["confusion_matrix"]).sum(axis=0)
    assert (predicted > 0).sum() >= 2  # the model's answers depend on the image, so the comparison means something
    for result in by_form.values():
        for key in ("accuracy", "macro_f1", "n", "per_class", "confusion_matrix", "loss"):
            assert result[key] == reference[key], key
    # The folder's class names (sorted on disk) were matched to the model's label order.
    assert sorted(FER2013_CLASSES) != list(FER2013_CLASSES)
    assert [reference["per_class"][c]["support"] for c in FER2013_CLASSES] == [5] * 7
    # The run's best checkpoint reproduces the val metrics recorded during training on the same 35 images.
    trained = _eval_json(capsys, str(run / "best.safetensors"), str(root / "fer" / "test"))
    recorded = json.loads((run / "metrics.json").read_text())["best"]
    assert abs(trained["accuracy"] - recorded["accuracy"]) <= 1 / 35 + 1e-9
    assert trained["loss"] == pytest.approx(recorded["loss"], abs=1e-4)


def test_eval_tta_is_mirror_invariant(
    fer_run: dict[str, Path], random_ckpt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = fer_run["root"]
    best = str(random_ckpt)
    plain = _eval_json(capsys, best, str(root / "fer" / "test"))
    plain_mirrored = _eval_json(capsys, best, str(root / "mirrored"))
    tta = _eval_json(capsys, best, str(root / "fer" / "test"), "--tta")
    tta_mirrored = _eval_json(capsys, best, str(root / "mirrored"), "--tta")
    assert tta["tta"] is True and plain["tta"] is False
    # Averaging an image with its mirror makes the prediction independent of mirroring.
    assert tta["confusion_matrix"] == tta_mirrored["confusion_matrix"]
    assert tta["loss"] == pytest.approx(tta_mirrored["loss"], abs=1e-6)
    assert plain["loss"] != pytest.approx(plain_mirrored["loss"], abs=1e-4)  # without TTA mirroring matters
    assert tta["loss"] != pytest.approx(plain["loss"], abs=1e-4)


def test_eval_last_state_and_run_directory(fer_run: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    run, root = fer_run["run"], fer_run["root"]
    history = json.loads((run / "metrics.json").read_text())["history"]
    last = _eval_json(capsys, str(run / "last.safetensors"), str(root / "val.npz"))
    assert last["n"] == 35
    assert last["loss"] == pytest.approx(history[-1]["val_loss"], abs=1e-4)
    from_dir = _eval_json(capsys, str(run), str(root / "val.npz"))
    assert from_dir["checkpoint"] == str(run / "best.safetensors")


def test_eval_csv_usage_and_table_output(fer_run: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    run, root = fer_run["run"], fer_run["root"]
    capsys.readouterr()
    assert main(["eval", str(run / "best.safetensors"), str(root / "val.csv"), "--usage", "Training"]) == 1
    assert main(["eval", str(run / "best.safetensors"), str(root / "val.csv")]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "macro-F1" in out and "confusion matrix" in out
    for name in FER2013_CLASSES:
        assert f"\n{name} " in out
    assert "35 images" in out


def test_eval_default_model(
    fer_run: dict[str, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    run, root = fer_run["run"], fer_run["root"]
    fake = types.ModuleType("mobilefer.classify")
    monkeypatch.setitem(sys.modules, "mobilefer.classify", fake)
    with caplog.at_level(logging.ERROR):
        assert main(["eval", "default", str(root / "val.npz")]) == 1
    assert "default" in caplog.text and "ships no default" in caplog.text
    fake.default_checkpoint_path = lambda: run / "best.safetensors"  # type: ignore[attr-defined]
    result = _eval_json(capsys, "default", str(root / "val.npz"))
    assert result["checkpoint"] == str(run / "best.safetensors") and result["n"] == 35


def test_eval_errors(tmp_path: Path, fer_run: dict[str, Path], caplog: pytest.LogCaptureFixture) -> None:
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)
    with caplog.at_level(logging.ERROR):
        assert main(["eval", str(junk), str(fer_run["root"] / "val.npz")]) == 1
        assert main(["eval", str(tmp_path / "absent.safetensors"), str(fer_run["root"] / "val.npz")]) == 1
        assert main(["eval", str(fer_run["run"]), str(tmp_path / "absent.npz")]) == 1
    assert "junk.safetensors" in caplog.text and "absent.safetensors" in caplog.text and "absent.npz" in caplog.text


def test_train_config_errors_exit_2_naming_the_key(
    fer_run: dict[str, Path], caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    config = str(fer_run["config"])
    with caplog.at_level(logging.ERROR):
        assert main(["train", config, "--out", str(tmp_path), "--set", "optim.lr=-1"]) == 2
    assert "optim.lr" in caplog.text
    assert not any(tmp_path.iterdir())  # no run directory for an invalid config
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        assert main(["train", "--out", str(tmp_path)]) == 2
    assert "CONFIG" in caplog.text


def test_train_setup_errors_leave_no_run_directory(
    fer_run: dict[str, Path], caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    config = str(fer_run["config"])
    with caplog.at_level(logging.ERROR):
        assert main(["train", config, "--out", str(tmp_path / "a"), "--set", "model.name=timm:no_such_net"]) == 2
    assert "model.name" in caplog.text and "no_such_net" in caplog.text
    broken = fer_run["root"] / "broken"
    (broken / "happy").mkdir(parents=True)
    (broken / "happy" / "bad.png").write_bytes(b"not an image")
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        code = main(["train", config, "--out", str(tmp_path / "b"), "--set", f"data.train={broken}",
                     "--set", "data.labels=[]"])
    assert code == 1 and "bad.png" in caplog.text
    assert not (tmp_path / "a").exists() or not any((tmp_path / "a").iterdir())
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").iterdir())


def test_train_resume_checks_the_given_config(
    fer_run: dict[str, Path], caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    run, config = fer_run["run"], str(fer_run["config"])
    with caplog.at_level(logging.ERROR):
        assert main(["train", config, "--resume", str(run), "--set", "optim.lr=0.5"]) == 2
    assert "optim.lr: differs from the saved config" in caplog.text
    capsys.readouterr()
    # The same config is accepted; the run is finished so nothing more is trained.
    assert main(["train", config, "--resume", str(run)]) == 0
    out = capsys.readouterr().out
    assert f"run {run}" in out and "epochs 2" in out
