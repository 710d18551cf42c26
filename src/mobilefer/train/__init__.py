"""Training framework: YAML-configured training of expression (or any image) classifiers.

Heavy pieces are imported lazily; ``from mobilefer.train import train`` pulls in torch.
"""

from __future__ import annotations

from mobilefer.train.config import TrainConfig, load_config
from mobilefer.train.evaluate import Evaluation, evaluate_checkpoint, load_checkpoint
from mobilefer.train.trainer import TrainResult, resume, train

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
