"""Training plots (matplotlib, Agg backend): curves and confusion matrix."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mobilefer.checkpoint import atomic_write_bytes
from mobilefer.train.metrics import EvalResult

__all__ = ["plot_curves", "plot_confusion"]


def _figure() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure


def _save(fig: Any, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def plot_curves(history: Sequence[dict[str, Any]], path: str | Path) -> None:
    """Loss and accuracy per epoch, train vs val, side by side."""
    Figure = _figure()
    fig = Figure(figsize=(10, 4))
    ax_loss, ax_acc = fig.subplots(1, 2)
    epochs = [h["epoch"] for h in history]
    ax_loss.plot(epochs, [h["train_loss"] for h in history], "o-", label="train")
    ax_loss.plot(epochs, [h["val_loss"] for h in history], "o-", label="val")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="Loss")
    ax_acc.plot(epochs, [h["train_accuracy"] for h in history], "o-", label="train")
    ax_acc.plot(epochs, [h["val_accuracy"] for h in history], "o-", label="val")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="Accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    _save(fig, Path(path))


def plot_confusion(result: EvalResult, path: str | Path, title: str = "Confusion matrix (val)") -> None:
    """Row-normalised confusion matrix with counts."""
    import numpy as np

    Figure = _figure()
    cm = np.asarray(result.confusion_matrix, dtype=np.float64)
    names = [c.name for c in result.per_class]
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    k = len(names)
    fig = Figure(figsize=(1.0 + 0.8 * k, 0.8 + 0.7 * k))
    ax = fig.subplots()
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), names, rotation=45, ha="right")
    ax.set_yticks(range(k), names)
    ax.set(xlabel="predicted", ylabel="true", title=f"{title}: acc {result.accuracy:.3f}, macro-F1 {result.macro_f1:.3f}")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    _save(fig, Path(path))
