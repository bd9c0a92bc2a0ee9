"""Single-label classification metrics, computed locally with scikit-learn.

`evaluate.load` is not used on purpose: it downloads metric scripts from the Hub. Every function here returns plain
Python values (no numpy scalars) so results can go straight into `json.dumps`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import sklearn.metrics as sk_metrics

from hf_transfer.core.errors import DataError

PROBABILITY_SUM_TOLERANCE = 1e-3
"""Rows of `probs` may miss 1 by this much (float32 softmax); they are renormalised. More means logits were passed."""


def classification_metrics(y_true, probs, label_names: list[str]) -> dict:
    """All evaluation numbers for one eval set, as a JSON-serialisable dict.

    `y_true` holds int labels (n,), `probs` class probabilities (n, k) with k == len(label_names); predictions are
    `probs.argmax(axis=1)`. Keys: num_samples, accuracy, balanced_accuracy, f1_macro, precision_macro,
    recall_macro, roc_auc (plus roc_auc_note when it is None), log_loss, per_class and confusion_matrix.

    The macro averages follow scikit-learn's default: they average over the labels that occur in `y_true` or in the
    predictions, so a class absent from a small eval set does not count as a 0. `per_class` still lists every label
    name (support 0 allowed, undefined ratios reported as 0) and the confusion matrix covers all k labels in order.
    """
    y_true_array = _validated_labels(y_true, num_classes=len(label_names))
    prob_array = _validated_probabilities(probs, num_samples=len(y_true_array), label_names=label_names)
    y_pred = prob_array.argmax(axis=1)
    labels = list(range(len(label_names)))
    roc_auc, roc_auc_note = roc_auc_with_note(y_true_array, prob_array, label_names)
    metrics: dict = {
        "num_samples": len(y_true_array),
        "accuracy": float(sk_metrics.accuracy_score(y_true_array, y_pred)),
        "balanced_accuracy": balanced_accuracy_from_confusion_matrix(
            sk_metrics.confusion_matrix(y_true_array, y_pred, labels=labels)
        ),
        "f1_macro": float(sk_metrics.f1_score(y_true_array, y_pred, average="macro", zero_division=0)),
        "precision_macro": float(sk_metrics.precision_score(y_true_array, y_pred, average="macro", zero_division=0)),
        "recall_macro": float(sk_metrics.recall_score(y_true_array, y_pred, average="macro", zero_division=0)),
        "roc_auc": roc_auc,
    }
    if roc_auc_note is not None:
        metrics["roc_auc_note"] = roc_auc_note
    metrics["log_loss"] = float(sk_metrics.log_loss(y_true_array, prob_array, labels=labels))
    metrics["per_class"] = per_class_metrics(y_true_array, y_pred, label_names)
    metrics["confusion_matrix"] = sk_metrics.confusion_matrix(y_true_array, y_pred, labels=labels).tolist()
    return metrics


def roc_auc_with_note(
    y_true: np.ndarray, probs: np.ndarray, label_names: Sequence[str]
) -> tuple[float | None, str | None]:
    """`(roc_auc, None)`, or `(None, why)` when ROC AUC is undefined for this eval set.

    Binary: AUC of probs[:, 1]. Multiclass: one-vs-rest macro AUC, which needs every class in `label_names` to occur.
    """
    present = np.unique(y_true)
    if len(present) < 2:
        only = ", ".join(repr(label_names[int(c)]) for c in present) or "none"
        return None, f"ROC AUC is undefined: y_true holds a single class ({only}); it needs at least two."
    if len(label_names) == 2:
        return float(sk_metrics.roc_auc_score(y_true, probs[:, 1])), None
    missing = [label_names[c] for c in range(len(label_names)) if c not in set(present.tolist())]
    if missing:
        return None, (
            f"one-vs-rest ROC AUC is undefined: {len(missing)} class(es) never occur in y_true "
            f"({', '.join(repr(name) for name in missing[:5])}{', ...' if len(missing) > 5 else ''})."
        )
    score = sk_metrics.roc_auc_score(
        y_true, probs, multi_class="ovr", average="macro", labels=list(range(len(label_names)))
    )
    return float(score), None


def balanced_accuracy_from_confusion_matrix(confusion_matrix) -> float:
    """Mean recall over the classes that occur in y_true (rows with a non-zero sum), as scikit-learn computes it."""
    matrix = np.asarray(confusion_matrix, dtype=float)
    support = matrix.sum(axis=1)
    present = support > 0
    if not present.any():
        return 0.0
    return float(np.mean(np.diag(matrix)[present] / support[present]))


def per_class_metrics(y_true: np.ndarray, y_pred: np.ndarray, label_names: Sequence[str]) -> dict[str, dict]:
    """`{label_name: {precision, recall, f1, support}}` for every label name, undefined ratios reported as 0."""
    precision, recall, f1, support = sk_metrics.precision_recall_fscore_support(
        y_true, y_pred, labels=list(range(len(label_names))), average=None, zero_division=0
    )
    return {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(label_names)
    }


def _validated_labels(y_true, num_classes: int) -> np.ndarray:
    """`y_true` as a 1-D int array, after checking every label is one of the `num_classes` classes."""
    array = np.asarray(y_true)
    if array.ndim != 1 or len(array) == 0:
        raise ValueError(f"y_true must be a non-empty 1-D array of int labels, got shape {array.shape}.")
    if not np.issubdtype(array.dtype, np.integer):
        if not np.all(np.isfinite(array)) or not np.all(np.equal(np.mod(array, 1), 0)):
            raise DataError(f"labels must be whole numbers, got values like {array[:3].tolist()}.")
        array = array.astype(np.int64)
    bad = (array < 0) | (array >= num_classes)
    if bad.any():
        raise DataError(
            f"label {int(array[bad][0])} is outside 0..{num_classes - 1} for {num_classes} label names; "
            "check that the dataset's labels match the recipe's label names."
        )
    return array.astype(np.int64, copy=False)


def _validated_probabilities(probs, num_samples: int, label_names: Sequence[str]) -> np.ndarray:
    """`probs` as a float (n, k) array whose rows sum exactly to 1, after checking it really holds probabilities."""
    if len(label_names) < 2:
        raise ValueError(f"classification needs at least two label names, got {list(label_names)}.")
    if len(set(label_names)) != len(label_names):
        raise ValueError(f"label names must be unique, got {list(label_names)}.")
    array = np.asarray(probs, dtype=np.float64)
    if array.shape != (num_samples, len(label_names)):
        raise ValueError(
            f"probs must have shape (num_samples, num_labels) = ({num_samples}, {len(label_names)}), "
            f"got {array.shape}."
        )
    if not np.all(np.isfinite(array)):
        raise ValueError("probs contain NaN or infinite values.")
    row_sums = array.sum(axis=1)
    if (array < 0).any() or not np.allclose(row_sums, 1.0, rtol=0.0, atol=PROBABILITY_SUM_TOLERANCE):
        raise ValueError(
            "probs must be class probabilities (non-negative, rows summing to 1); apply softmax to logits first."
        )
    return array / row_sums[:, None]
