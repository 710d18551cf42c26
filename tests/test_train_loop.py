"""Training loop: outputs, resume (bitwise), SIGKILL recovery, backbones, init from checkpoints."""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from mobilefer.checkpoint import load_classifier, read_metadata
from mobilefer.errors import InvalidConfigError
from mobilefer.train import load_config, resume, train
from mobilefer.train.config import TrainConfig, config_from_dict
from mobilefer.train.evaluate import evaluate_checkpoint, load_checkpoint
from mobilefer.train.trainer import STATE_FORMAT, _Run, init_from_checkpoint

REPO = Path(__file__).resolve().parents[1]


def synthetic_npz(path: Path, n: int, size: int = 24, classes: int = 3, seed: int = 0) -> Path:
    """Learnable toy data: class k is noise plus a bright band at row block k."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    images = rng.integers(0, 90, (n, size, size)).astype(np.uint8)
    band = size // classes
    for i, k in enumerate(labels):
        images[i, k * band : (k + 1) * band] += 140
    names = np.array([f"class{k}" for k in range(classes)])
    np.savez(path, images=images, labels=labels, classes=names)
    return path


def tiny_config(tmp_path: Path, **sections: dict[str, Any]) -> TrainConfig:
    train_npz = tmp_path / "train.npz"
    val_npz = tmp_path / "val.npz"
    if not train_npz.exists():
        synthetic_npz(train_npz, 64)
        synthetic_npz(val_npz, 30, seed=1)
    raw: dict[str, dict[str, Any]] = {
        "data": {"format": "fer2013_npz", "train": str(train_npz), "val": str(val_npz), "image_size": 24},
        "model": {"name": "mobilenet_v2", "width_mult": 0.35},
        "optim": {"lr": 0.01},
        "schedule": {"epochs": 2, "warmup_epochs": 0.5},
        "train": {"name": "tiny", "batch_size": 16, "threads": 1, "progress": False, "plots": False},
    }
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return config_from_dict(raw)


def state_tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def _comparable(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in h.items() if k not in ("epoch_seconds", "images_per_second")} for h in history]


def test_run_writes_all_outputs(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, train={"plots": True, "ema_decay": 0.5})
    result = train(cfg, tmp_path / "runs")
    run = result.run_dir
    assert run.parent == tmp_path / "runs" and run.name.startswith("tiny-")
    for name in ("config.yaml", "metrics.json", "curves.png", "confusion_matrix.png", "best.safetensors",
                 "preset.json", "last.safetensors"):
        assert (run / name).is_file(), name
    for png in ("curves.png", "confusion_matrix.png"):
        image = cv2.imread(str(run / png))
        assert image is not None and image.shape[0] > 100 and image.shape[1] > 100
    # The saved config is the resolved one and loads back to the same config.
    assert config_from_dict(yaml.safe_load((run / "config.yaml").read_text())) == cfg
    metrics = json.loads((run / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1, 2]
    assert metrics["classes"] == ["class0", "class1", "class2"]
    assert metrics["best_epoch"] == result.best_epoch
    assert metrics["best"]["n"] == 30 and sum(map(sum, metrics["best"]["confusion_matrix"])) == 30
    # best.safetensors (+ preset.json) reproduces the recorded best val metrics.
    ckpt = load_classifier(run / "best.safetensors")
    assert ckpt.preset.labels == ("class0", "class1", "class2")
    assert json.loads((run / "preset.json").read_text())["labels"] == list(ckpt.preset.labels)
    assert ckpt.metrics["epoch"] == result.best_epoch
    best_eval = evaluate_checkpoint(ckpt, tmp_path / "val.npz").result
    assert abs(best_eval.accuracy - metrics["best"]["accuracy"]) <= 1 / 30 + 1e-9
    # last.safetensors is a training state; as a checkpoint it gives the last epoch's (EMA) model.
    assert read_metadata(run / "last.safetensors")["format"] == STATE_FORMAT
    last_eval = evaluate_checkpoint(run / "last.safetensors", tmp_path / "val.npz").result
    assert abs(last_eval.accuracy - metrics["history"][-1]["val_accuracy"]) <= 1 / 30 + 1e-9
    assert abs((last_eval.loss or 0) - metrics["history"][-1]["val_loss"]) < 1e-4
    # A second run never reuses the directory.
    again = train(tiny_config(tmp_path, schedule={"epochs": 1}), tmp_path / "runs")
    assert again.run_dir != run and (run / "metrics.json").read_text() == json.dumps(metrics, indent=2)


RESUME_CASES = [
    pytest.param(
        {"augment": {"mixup": 0.4, "cutmix": 1.0, "mix_prob": 0.8}, "train": {"ema_decay": 0.9}},
        id="adamw-mix-ema",
    ),
    pytest.param(
        {"optim": {"name": "sgd", "lr": 0.05, "grad_clip": 1.0},
         "train": {"class_balance": "sampler", "channels_last": False}, "model": {"dropout": 0.5}},
        id="sgd-sampler-clip",
    ),
]


@pytest.mark.parametrize("sections", RESUME_CASES)
def test_resume_reaches_the_same_weights_as_an_uninterrupted_run(tmp_path: Path, sections: dict[str, Any]) -> None:
    cfg = tiny_config(tmp_path, **sections)
    straight = train(cfg, tmp_path / "runs")
    first = train(cfg, tmp_path / "runs", stop_after=1)
    assert first.epochs_run == 1 and first.run_dir != straight.run_dir
    assert read_metadata(first.run_dir / "last.safetensors")["epoch"] == "1"
    resumed = resume(first.run_dir)
    assert resumed.run_dir == first.run_dir and resumed.epochs_run == 2
    a = state_tensors(straight.run_dir / "last.safetensors")
    b = state_tensors(resumed.run_dir / "last.safetensors")
    assert a.keys() == b.keys()
    assert any(k.startswith("optim.") for k in a)
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert different == []  # model, EMA, optimizer and RNG states bitwise equal
    ha = json.loads((straight.run_dir / "metrics.json").read_text())["history"]
    hb = json.loads((resumed.run_dir / "metrics.json").read_text())["history"]
    assert _comparable(ha) == _comparable(hb)
    # Resuming a finished run trains nothing more.
    done = resume(resumed.run_dir)
    assert done.epochs_run == 2
    assert torch.equal(state_tensors(resumed.run_dir / "last.safetensors")["rng.gen"], b["rng.gen"])


def test_resume_rejects_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfigError, match="not a run directory"):
        resume(tmp_path)


def _kill_config(tmp_path: Path) -> Path:
    synthetic_npz(tmp_path / "train.npz", 960, size=32)
    synthetic_npz(tmp_path / "val.npz", 30, size=32, seed=1)
    raw = {
        "data": {"format": "fer2013_npz", "train": "train.npz", "val": "val.npz", "image_size": 32},
        "model": {"name": "mobilenet_v2", "width_mult": 0.35},
        "schedule": {"epochs": 2, "warmup_epochs": 0.5},
        "augment": {"mixup": 0.2},
        "train": {"name": "killed", "batch_size": 16, "threads": 1, "progress": True, "plots": False,
                  "ema_decay": 0.9},
    }
    path = tmp_path / "kill.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_resume_after_sigkill_mid_epoch(tmp_path: Path) -> None:
    config = _kill_config(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mobilefer.train.cli", "train", str(config), "--out", str(tmp_path / "runs")],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    stderr = bytearray()
    reader = threading.Thread(target=lambda: _drain(proc, stderr), daemon=True)
    reader.start()
    # tqdm reports "epoch 2/2: ... | n/60": kill once epoch 2 has taken a few of its 60 steps.
    progress = re.compile(rb"epoch 2/2:[^\r\n]*\|\s*(\d+)/60")
    killed_at = -1
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            steps = [int(m) for m in progress.findall(bytes(stderr))]
            if steps and 2 <= steps[-1] <= 40:
                proc.send_signal(signal.SIGKILL)
                killed_at = steps[-1]
                break
            time.sleep(0.01)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(timeout=10)
    assert killed_at > 0, f"never saw epoch 2 in progress: {bytes(stderr)[-3000:].decode(errors='replace')}"
    assert proc.returncode == -signal.SIGKILL
    (run_dir,) = (tmp_path / "runs").iterdir()
    history = json.loads((run_dir / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1]
    # The state written after epoch 1 is intact and loads, both as a state and as an eval checkpoint.
    assert read_metadata(run_dir / "last.safetensors")["epoch"] == "1"
    assert load_checkpoint(run_dir / "last.safetensors").spec.name == "mobilenet_v2"
    resumed = resume(run_dir)
    assert resumed.epochs_run == 2
    # ... and continuing gives the weights of a run never interrupted.
    reference = train(load_config(config), tmp_path / "reference")
    a = state_tensors(reference.run_dir / "last.safetensors")
    b = state_tensors(run_dir / "last.safetensors")
    assert [k for k in a if not torch.equal(a[k], b[k])] == []


def _drain(proc: subprocess.Popen[bytes], sink: bytearray) -> None:
    assert proc.stderr is not None
    while chunk := proc.stderr.read1(4096):
        sink.extend(chunk)


# ------------------------------------------------------------------------------------------ backbones
MODELS = [
    pytest.param("mobilenet_v2", 24, "gray", id="mobilenet_v2"),
    pytest.param("mobilenet_v1", 24, "gray", id="mobilenet_v1"),
    pytest.param("timm:resnet18", 32, "rgb", id="timm-resnet18"),
    pytest.param("timm:inception_v3", 75, "rgb", id="timm-inception_v3"),
    pytest.param("googlenet", 32, "gray", id="googlenet"),
]


@pytest.mark.parametrize(("name", "size", "color"), MODELS)
def test_each_backbone_builds_and_trains_one_step(tmp_path: Path, name: str, size: int, color: str) -> None:
    cfg = tiny_config(
        tmp_path,
        data={"image_size": size, "color": color},
        model={"name": name, "width_mult": 0.5 if name.startswith("mobilenet") else 1.0},
        schedule={"epochs": 1, "warmup_epochs": 0.0},
        train={"batch_size": 4, "max_steps_per_epoch": 1, "eval_batch_size": 8},
    )
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    run = _Run(cfg, run_dir)
    run.setup()
    before = copy.deepcopy(run.model.state_dict())
    result = run.loop(0, 0, [])
    history = json.loads((run_dir / "metrics.json").read_text())["history"]
    assert len(history) == 1 and np.isfinite(history[0]["train_loss"]) and history[0]["val_n"] == 30
    after = run.model.state_dict()
    changed = [k for k in before if before[k].dtype.is_floating_point and not torch.equal(before[k], after[k])]
    assert changed, "one optimizer step changed no weight"
    # The saved checkpoint rebuilds the same network: identical logits.
    ckpt = load_classifier(run_dir / "best.safetensors")
    assert ckpt.spec.name == name and ckpt.preset.input_size == (size, size) and ckpt.preset.color == color
    x = torch.randn(2, ckpt.preset.channels, size, size)
    run.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(ckpt.model(x), run.model(x.contiguous(memory_format=torch.channels_last)))
    assert result.best.n == 30


# ------------------------------------------------------------------------------------------ init checkpoints
def test_init_from_torchvision_checkpoint(tmp_path: Path) -> None:
    from torchvision.models import mobilenet_v2

    from mobilefer.models.convert import from_torchvision

    torch.manual_seed(123)
    reference = mobilenet_v2(weights=None)  # random weights: we test the transfer, not ImageNet
    torch.save(reference.state_dict(), tmp_path / "tv.pth")
    cfg = tiny_config(tmp_path, model={"width_mult": 1.0, "init_checkpoint": str(tmp_path / "tv.pth")})
    run = _Run(cfg, tmp_path)
    run.setup()
    rng_after_init = torch.get_rng_state()
    converted = from_torchvision(reference.state_dict(), in_chans=1).state_dict()
    ours = run.model.state_dict()
    matching = [k for k in ours if not k.startswith("classifier.")]
    assert len(matching) == len(ours) - 2
    for key in matching:
        assert torch.equal(ours[key], converted[key]), key
    # Gray model: the stem filters are the RGB filters summed.
    torch.testing.assert_close(ours["stem.conv.weight"], reference.features[0][0].weight.sum(1, keepdim=True))
    # The 1000-class classifier does not fit 3 classes: ours keeps its own initialisation.
    assert ours["classifier.weight"].shape == (3, 1280)
    # Initialising from a file leaves the global RNG as a run without it (same dropout/mixup stream).
    plain = _Run(tiny_config(tmp_path, model={"width_mult": 1.0}), tmp_path)
    plain.setup()
    assert torch.equal(torch.get_rng_state(), rng_after_init)
    assert torch.equal(plain.model.state_dict()["classifier.weight"], ours["classifier.weight"])


def test_init_from_timm_checkpoints(tmp_path: Path) -> None:
    import timm
    from safetensors.torch import save_file

    from mobilefer.models.convert import from_timm
    from mobilefer.models.factory import create_model

    torch.manual_seed(5)
    timm_mnv2 = timm.create_model("mobilenetv2_050", pretrained=False)
    save_file(timm_mnv2.state_dict(), str(tmp_path / "mnv2.safetensors"))
    ours = create_model("mobilenet_v2", 7, 3, width_mult=0.5)
    loaded = init_from_checkpoint(ours, tmp_path / "mnv2.safetensors")
    expected = from_timm(timm_mnv2.state_dict()).state_dict()
    state = ours.state_dict()
    assert loaded == len(state) - 2
    assert all(torch.equal(state[k], expected[k]) for k in state if not k.startswith("classifier."))

    # Generic timm models: by name, 3-channel stem summed for gray, mismatched head skipped.
    resnet = timm.create_model("resnet18", pretrained=False)
    torch.save({"state_dict": resnet.state_dict()}, tmp_path / "resnet.pth")  # wrapped, as timm's train script saves
    gray = create_model("timm:resnet18", 7, 1)
    init_from_checkpoint(gray, tmp_path / "resnet.pth")
    gstate = gray.state_dict()
    torch.testing.assert_close(gstate["conv1.weight"], resnet.conv1.weight.sum(1, keepdim=True))
    assert torch.equal(gstate["layer4.1.conv2.weight"], resnet.layer4[1].conv2.weight)
    assert gstate["fc.weight"].shape == (7, 512)

    # Errors name the config key.
    with pytest.raises(InvalidConfigError, match="model.init_checkpoint: .*width"):
        init_from_checkpoint(create_model("mobilenet_v2", 7, 3, width_mult=1.0), tmp_path / "mnv2.safetensors")
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(InvalidConfigError, match="model.init_checkpoint: cannot read"):
        init_from_checkpoint(ours, tmp_path / "junk.pth")
    with pytest.raises(InvalidConfigError, match="model.init_checkpoint: no tensor"):
        init_from_checkpoint(create_model("mobilenet_v1", 7, 3), tmp_path / "resnet.pth")
