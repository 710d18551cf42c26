"""Classification metrics: accuracy, macro-F1, per-class precision/recall/F1, confusion matrix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ClassMetrics", "EvalResult", "confusion_matrix", "classification_report"]


@dataclass(frozen=True)
class ClassMetrics:
    name: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class EvalResult:
    """Evaluation of a classifier on a labelled set.

    Attributes:
        accuracy: Fraction correct.
        macro_f1: Unweighted mean of the per-class F1 scores.
        per_class: One :class:`ClassMetrics` per class.
        confusion_matrix: ``[true][predicted]`` counts.
        n: Number of samples.
        loss: Mean cross-entropy, when computed.
    """

    accuracy: float
    macro_f1: float
    per_class: tuple[ClassMetrics, ...]
    confusion_matrix: tuple[tuple[int, ...], ...]
    n: int
    loss: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "n": self.n,
            "loss": self.loss,
            "per_class": {
                c.name: {"precision": c.precision, "recall": c.recall, "f1": c.f1, "support": c.support}
                for c in self.per_class
            },
            "confusion_matrix": [list(row) for row in self.confusion_matrix],
        }


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(num_classes, num_classes) int64 counts, rows = true class, columns = prediction."""
    idx = y_true.astype(np.int64) * num_classes + y_pred.astype(np.int64)
    return np.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def classification_report(
    y_true: np.ndarray, y_pred: np.ndarray, classes: tuple[str, ...], loss: float | None = None
) -> EvalResult:
    """Compute an :class:`EvalResult` (F1 of a class with no support and no predictions counts as 0)."""
    k = len(classes)
    cm = confusion_matrix(y_true, y_pred, k)
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    actual = cm.sum(axis=1).astype(np.float64)
    precision = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros(k), where=actual > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(k), where=denom > 0)
    n = int(cm.sum())
    per_class = tuple(
        ClassMetrics(classes[i], float(precision[i]), float(recall[i]), float(f1[i]), int(actual[i])) for i in range(k)
    )
    return EvalResult(
        accuracy=float(tp.sum() / n) if n else 0.0,
        macro_f1=float(f1.mean()) if k else 0.0,
        per_class=per_class,
        confusion_matrix=tuple(tuple(int(v) for v in row) for row in cm),
        n=n,
        loss=loss,
    )
