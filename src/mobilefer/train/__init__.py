"""Training framework: YAML-configured training of expression (or any image) classifiers.

The names below are imported lazily (PEP 562): ``import mobilefer.train`` and the config helpers do not
import torch; ``from mobilefer.train import train`` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mobilefer._lazy import lazy_attributes

if TYPE_CHECKING:
    from mobilefer.train.config import TrainConfig, load_config
    from mobilefer.train.evaluate import Evaluation, evaluate_checkpoint, load_checkpoint
    from mobilefer.train.trainer import TrainResult, resume, train

_HOMES = {
    "TrainConfig": "mobilefer.train.config",
    "load_config": "mobilefer.train.config",
    "Evaluation": "mobilefer.train.evaluate",
    "evaluate_checkpoint": "mobilefer.train.evaluate",
    "load_checkpoint": "mobilefer.train.evaluate",
    "TrainResult": "mobilefer.train.trainer",
    "resume": "mobilefer.train.trainer",
    "train": "mobilefer.train.trainer",
}

__all__ = [
    "Evaluation",
    "TrainConfig",
    "TrainResult",
    "evaluate_checkpoint",
    "load_checkpoint",
    "load_config",
    "resume",
    "train",
]


__getattr__, __dir__ = lazy_attributes(globals(), _HOMES, __all__)
