"""DDP: the unchanged trainer under ``torch.distributed.run`` with 2 gloo processes on CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import yaml
from safetensors.torch import load_file

from mobilefer.train.evaluate import load_checkpoint

REPO = Path(__file__).resolve().parents[1]

# Each rank runs the normal trainer; the wrapper only dumps that rank's final weights for the test.
RANK_SCRIPT = """
import logging
import sys
from pathlib import Path

from safetensors.torch import save_file

import mobilefer.train.trainer as trainer
from mobilefer.train.config import load_config

original_loop = trainer._Run.loop


def loop(self, *args, **kwargs):
    result = original_loop(self, *args, **kwargs)
    state = {k: v.detach().contiguous() for k, v in self.model.state_dict().items()}
    state.update({f"ema.{k}": v.detach().contiguous() for k, v in self.ema.state_dict().items()})
    save_file(state, str(Path(sys.argv[3]) / f"rank{self.rank}.safetensors"), {"world": str(self.world)})
    return result


trainer._Run.loop = loop
logging.basicConfig(level=logging.INFO)
trainer.train(load_config(sys.argv[1]), sys.argv[2])
"""


def test_two_gloo_processes_stay_in_sync(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = np.arange(96) % 3
    images = rng.integers(0, 255, (96, 24, 24)).astype(np.uint8)
    np.savez(tmp_path / "train.npz", images=images, labels=labels, classes=np.array(["a", "b", "c"]))
    np.savez(tmp_path / "val.npz", images=images[:20], labels=labels[:20], classes=np.array(["a", "b", "c"]))
    config = {
        "data": {"format": "fer2013_npz", "train": "train.npz", "val": "val.npz", "image_size": 24},
        "model": {"name": "mobilenet_v2", "width_mult": 0.35, "dropout": 0.3},
        "schedule": {"epochs": 2, "warmup_epochs": 0.5},
        "augment": {"mixup": 0.2},
        "train": {"name": "ddp", "batch_size": 8, "threads": 1, "progress": False, "plots": False,
                  "ema_decay": 0.9, "max_steps_per_epoch": 3},
    }
    (tmp_path / "ddp.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "rank.py").write_text(RANK_SCRIPT)
    dumps = tmp_path / "dumps"
    dumps.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(tmp_path / "rank.py"), str(tmp_path / "ddp.yaml"), str(tmp_path / "runs"), str(dumps),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]

    rank0 = load_file(str(dumps / "rank0.safetensors"))
    rank1 = load_file(str(dumps / "rank1.safetensors"))
    assert rank0.keys() == rank1.keys()
    assert [k for k in rank0 if not torch.equal(rank0[k], rank1[k])] == []  # parameters, buffers and EMA

    # One run directory, written by rank 0 only; its checkpoint loads and holds rank 0's weights.
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1
    run = runs[0]
    metrics = json.loads((run / "metrics.json").read_text())
    assert [h["step"] for h in metrics["history"]] == [3, 6]
    last = load_file(str(run / "last.safetensors"))
    for key, value in rank0.items():
        stored = last[key if key.startswith("ema.") else f"model.{key}"]
        assert torch.equal(stored, value), key
    ckpt = load_checkpoint(run / "best.safetensors")
    assert ckpt.preset.labels == ("a", "b", "c")
    # Logging is rank 0's only: each epoch is reported once.
    assert proc.stderr.count("epoch 2/2 train_loss") == 1, proc.stderr[-2000:]

