"""Multi-label metrics (scikit-learn) and per-label decision thresholds (the per-label plot is in `plots`).

A multi-label eval set is `y_true` (n, K) of 0/1 and `scores` (n, K) of per-label probabilities (sigmoid outputs); a
label is predicted when its score reaches its threshold (`score >= threshold`). Every function returns plain Python
values with no NaN: what is undefined on an eval set (ROC-AUC of a label that never occurs) is None with a note.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import sklearn.metrics as sk_metrics

from hf_transfer.core.errors import DataError, RecipeError
from hf_transfer.core.registry import closest

logger = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.5
NAMES_IN_NOTES = 5

SCALAR_METRICS: tuple[str, ...] = (
    "f1_micro",
    "f1_macro",
    "f1_weighted",
    "f1_samples",
    "precision_micro",
    "precision_macro",
    "recall_micro",
    "recall_macro",
    "subset_accuracy",
    "hamming_loss",
    "map_macro",
    "roc_auc_macro",
)
"""The scalar keys of `multilabel_metrics` that `multilabel_metric_fn` computes alone (for bootstraps)."""


# --------------------------------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------------------------------


def multilabel_metrics(y_true, scores, label_names: Sequence[str], thresholds=DEFAULT_THRESHOLD) -> dict:
    """All evaluation numbers of one multi-label eval set, as a JSON-serialisable dict.

    Keys: num_samples, rows_without_labels, f1_micro, f1_macro, f1_weighted, f1_samples, precision_micro,
    precision_macro, recall_micro, recall_macro, subset_accuracy, hamming_loss, map_macro, roc_auc_macro and
    per_label {name: {precision, recall, f1, support, average_precision, roc_auc, threshold}}.

    F1 / precision / recall follow scikit-learn with zero_division=0 (a label never true nor predicted scores 0 and
    counts in the macro mean, as scikit-learn counts it; a row without labels and without predictions likewise
    scores 0 in f1_samples, which is why rows_without_labels is reported beside it). Average precision needs a
    positive row and ROC-AUC a positive and a negative row: the macro means run over the labels where they are
    defined, and `map_note` / `roc_auc_note` name the labels left out (the mean is None, with its note, when no label
    qualifies).
    """
    y_array, score_array, names = _validated(y_true, scores, label_names)
    cuts = _validated_thresholds(thresholds, len(names))
    y_pred = (score_array >= cuts).astype(np.int64)
    metrics: dict = {
        "num_samples": len(y_array),
        "rows_without_labels": int((y_array.sum(axis=1) == 0).sum()),
    }
    for average in ("micro", "macro", "weighted", "samples"):
        metrics[f"f1_{average}"] = _averaged(sk_metrics.f1_score, y_array, y_pred, average)
    for name, function in (("precision", sk_metrics.precision_score), ("recall", sk_metrics.recall_score)):
        for average in ("micro", "macro"):
            metrics[f"{name}_{average}"] = _averaged(function, y_array, y_pred, average)
    metrics["subset_accuracy"] = float(sk_metrics.accuracy_score(y_array, y_pred))
    metrics["hamming_loss"] = float(sk_metrics.hamming_loss(y_array, y_pred))

    average_precision = _per_label_average_precision(y_array, score_array)
    roc_auc = _per_label_roc_auc(y_array, score_array)
    metrics["map_macro"], map_note = _mean_where_defined(average_precision, names, "mAP", "no positive row")
    if map_note:
        metrics["map_note"] = map_note
    metrics["roc_auc_macro"], roc_auc_note = _mean_where_defined(
        roc_auc, names, "ROC-AUC", "no positive or no negative row"
    )
    if roc_auc_note:
        metrics["roc_auc_note"] = roc_auc_note

    if y_array.shape[1] > 1:
        per_label = sk_metrics.precision_recall_fscore_support(y_array, y_pred, average=None, zero_division=0)
    else:  # one label reads as binary to scikit-learn: ask for the positive class alone
        per_label = sk_metrics.precision_recall_fscore_support(
            y_array[:, 0], y_pred[:, 0], labels=[1], average=None, zero_division=0
        )
    precision, recall, f1, support = per_label
    metrics["per_label"] = {
        name: {
            "precision": float(precision[k]),
            "recall": float(recall[k]),
            "f1": float(f1[k]),
            "support": int(support[k]),
            "average_precision": average_precision[k],
            "roc_auc": roc_auc[k],
            "threshold": float(cuts[k]),
        }
        for k, name in enumerate(names)
    }
    return metrics


def multilabel_metric_fn(metric: str, thresholds=DEFAULT_THRESHOLD) -> Callable[[np.ndarray, np.ndarray], float]:
    """`f(y_true, scores) -> value` of one scalar of `multilabel_metrics`, without the rest: what a bootstrap over
    thousands of resamples calls. The value equals `multilabel_metrics(...)[metric]` (None where that is None)."""
    if metric not in SCALAR_METRICS:
        raise RecipeError(
            f"multi-label metric '{metric}' is not known{closest(metric, SCALAR_METRICS)}; "
            f"choose one of {', '.join(SCALAR_METRICS)}."
        )

    def value(y_true, scores):
        y_array = np.asarray(y_true)
        score_array = np.asarray(scores, dtype=np.float64)
        if metric == "map_macro":
            return _mean_where_defined(_per_label_average_precision(y_array, score_array), [], "", "")[0]
        if metric == "roc_auc_macro":
            return _mean_where_defined(_per_label_roc_auc(y_array, score_array), [], "", "")[0]
        y_pred = (score_array >= _validated_thresholds(thresholds, y_array.shape[1])).astype(np.int64)
        if metric == "subset_accuracy":
            return float(sk_metrics.accuracy_score(y_array, y_pred))
        if metric == "hamming_loss":
            return float(sk_metrics.hamming_loss(y_array, y_pred))
        name, average = metric.split("_")
        function = {"f1": sk_metrics.f1_score, "precision": sk_metrics.precision_score}.get(
            name, sk_metrics.recall_score
        )
        return _averaged(function, y_array, y_pred, average)

    value.__name__ = metric
    return value


def _averaged(function, y_true: np.ndarray, y_pred: np.ndarray, average: str) -> float:
    """scikit-learn's multi-label average of `function` (zero_division=0), also for a single label, which
    scikit-learn reads as a binary task whose "macro" would average in the negative class."""
    if y_true.shape[1] > 1:
        return float(function(y_true, y_pred, average=average, zero_division=0))
    if average == "samples":
        # With one label a row's F1, precision and recall are all 1 when it is true and predicted, else 0.
        return float(np.mean(y_true[:, 0] & y_pred[:, 0]))
    return float(function(y_true[:, 0], y_pred[:, 0], labels=[1], average=average, zero_division=0))


def _per_label_average_precision(y_true: np.ndarray, scores: np.ndarray) -> list[float | None]:
    """Average precision of each label, None for a label without a positive row (it has no precision-recall curve)."""
    return [
        float(sk_metrics.average_precision_score(y_true[:, k], scores[:, k])) if y_true[:, k].any() else None
        for k in range(y_true.shape[1])
    ]


def _per_label_roc_auc(y_true: np.ndarray, scores: np.ndarray) -> list[float | None]:
    """ROC-AUC of each label, None for a label whose rows are all positive or all negative."""
    return [
        float(sk_metrics.roc_auc_score(y_true[:, k], scores[:, k])) if 0 < y_true[:, k].sum() < len(y_true) else None
        for k in range(y_true.shape[1])
    ]


def _mean_where_defined(
    values: list[float | None], names: Sequence[str], what: str, why: str
) -> tuple[float | None, str | None]:
    """(mean of the values that are not None, a note naming the labels left out, or None when none was)."""
    defined = [value for value in values if value is not None]
    left_out = [name for name, value in zip(names, values) if value is None]
    mean = float(np.mean(defined)) if defined else None
    if not left_out:
        return mean, None
    shown = ", ".join(repr(name) for name in left_out[:NAMES_IN_NOTES])
    more = ", ..." if len(left_out) > NAMES_IN_NOTES else ""
    if mean is None:
        return None, f"{what} is undefined: every label has {why} in this eval set."
    return mean, f"{what} averages {len(defined)} of {len(values)} labels; left out ({why}): {shown}{more}."


# --------------------------------------------------------------------------------------------------------------------
# Thresholds
# --------------------------------------------------------------------------------------------------------------------


def tune_thresholds(y_true, scores, default: float = DEFAULT_THRESHOLD) -> list[float]:
    """The F1-maximising cut of each label on these rows (predict a label when `score >= cut`).

    Every distinct score of a label is a candidate cut; the cut returned lies midway between the chosen score and the
    next lower one, so new scores near the boundary are not decided by float noise. Among equally good cuts the one
    nearest `default` wins (`default` itself when it is among them). A label with no positive or no negative row
    keeps `default`: F1 cannot be traded off there.
    """
    y_array, score_array, _ = _validated(y_true, scores, None)
    return [_best_cut(y_array[:, k], score_array[:, k], float(default)) for k in range(y_array.shape[1])]


def _best_cut(positive: np.ndarray, scores: np.ndarray, default: float) -> float:
    total_positive = int(positive.sum())
    if total_positive == 0 or total_positive == len(positive):
        return default
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_positive = scores[order], positive[order]
    # The last row of each run of equal scores: cutting at that score predicts every row up to and including it.
    ends = np.flatnonzero(np.r_[sorted_scores[1:] != sorted_scores[:-1], True])
    true_positive = np.cumsum(sorted_positive)[ends]
    predicted = ends + 1
    f1 = 2 * true_positive / (total_positive + predicted)
    best = np.flatnonzero(np.isclose(f1, f1.max(), rtol=0, atol=1e-12))
    # Cut j predicts the same rows for any threshold in (next lower score, score j].
    upper = sorted_scores[ends]
    lower = np.r_[sorted_scores[ends[1:]], -np.inf]
    for j in best:
        if lower[j] < default <= upper[j]:
            return default
    distance = np.minimum(np.abs(upper[best] - default), np.abs(lower[best] - default))
    j = int(best[np.argmin(distance)])
    if not np.isfinite(lower[j]):
        return float(upper[j])
    midpoint = (upper[j] + lower[j]) / 2
    return float(midpoint if lower[j] < midpoint <= upper[j] else upper[j])


# --------------------------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------------------------


def _validated(y_true, scores, label_names: Sequence[str] | None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(y_true as an (n, K) 0/1 int array, scores as an (n, K) float array in [0, 1], the K label names)."""
    y_array = np.asarray(y_true)
    if y_array.ndim != 2 or y_array.shape[0] == 0 or y_array.shape[1] == 0:
        raise ValueError(f"y_true must be a non-empty (num_samples, num_labels) 0/1 array, got shape {y_array.shape}.")
    if not np.isin(y_array, (0, 1)).all():
        bad = y_array[~np.isin(y_array, (0, 1))]
        raise DataError(f"multi-label targets must be 0 or 1, got values like {bad[:3].tolist()}.")
    score_array = np.asarray(scores, dtype=np.float64)
    if score_array.shape != y_array.shape:
        raise ValueError(f"scores have shape {score_array.shape}; y_true has shape {y_array.shape}.")
    if not np.isfinite(score_array).all():
        raise ValueError("scores contain NaN or infinite values.")
    if (score_array < 0).any() or (score_array > 1).any():
        raise ValueError("scores must be per-label probabilities in [0, 1]; apply a sigmoid to logits first.")
    names = [str(k) for k in range(y_array.shape[1])] if label_names is None else list(label_names)
    if len(names) != y_array.shape[1]:
        raise ValueError(f"{len(names)} label names for {y_array.shape[1]} label columns.")
    if len(set(names)) != len(names):
        raise ValueError(f"label names must be unique, got {names}.")
    return y_array.astype(np.int64), score_array, names


def _validated_thresholds(thresholds, num_labels: int) -> np.ndarray:
    """One cut per label, from one float or `num_labels` floats."""
    cuts = np.asarray(thresholds, dtype=np.float64)
    if cuts.ndim == 0:
        cuts = np.full(num_labels, float(cuts))
    if cuts.shape != (num_labels,) or not np.isfinite(cuts).all():
        raise ValueError(f"thresholds must be one number or {num_labels} numbers, got {thresholds!r}.")
    return cuts
