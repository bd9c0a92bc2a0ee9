"""Paired bootstrap confidence intervals of the difference between two sets of predictions on one eval set."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hf_transfer.core.errors import RecipeError
from hf_transfer.core.registry import closest
from hf_transfer.metrics.scalars import is_number

MAX_BOOTSTRAP_ELEMENTS = 20_000_000
"""Largest resample-index array (n_resamples x n) built at once; bigger problems are drawn in chunks of resamples."""


def bootstrap_metric_difference(
    y_true,
    pred_a,
    pred_b,
    metric: str = "accuracy",
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict:
    """Paired bootstrap confidence interval of metric(pred_a) - metric(pred_b) over the eval set.

    Each resample draws n indices with replacement and scores both prediction sets on the same indices (percentile
    interval). `metric` is one of BOOTSTRAP_METRICS, computed as scikit-learn does (balanced accuracy over classes
    present in the resample's y_true, macro F1 over classes in y_true or the predictions). Indices are drawn as
    (chunk, n) arrays of at most 20M entries; the result depends only on the inputs and `seed`.

    Returns {"metric", "a", "b", "difference", "ci_low", "ci_high", "confidence", "n_resamples"}.
    """
    if metric not in BOOTSTRAP_METRICS:
        raise RecipeError(
            f"bootstrap metric '{metric}' is not supported{closest(metric, BOOTSTRAP_METRICS)}; "
            f"choose one of {', '.join(BOOTSTRAP_METRICS)}."
        )
    if int(n_resamples) < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}.")
    if not 0.0 < float(confidence) < 1.0:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}.")
    y_array, a_array, b_array = _validated_paired_predictions(y_true, pred_a, pred_b)
    num_classes = int(max(y_array.max(), a_array.max(), b_array.max())) + 1
    score = _METRICS_FROM_COUNTS[metric]

    whole_set = np.arange(len(y_array))[None, :]
    score_a = float(score(*_resampled_counts(y_array, a_array, whole_set, num_classes))[0])
    score_b = float(score(*_resampled_counts(y_array, b_array, whole_set, num_classes))[0])

    rng = np.random.default_rng(seed)
    chunk_size = max(1, MAX_BOOTSTRAP_ELEMENTS // len(y_array))
    differences = []
    for start in range(0, int(n_resamples), chunk_size):
        indices = rng.integers(0, len(y_array), size=(min(chunk_size, int(n_resamples) - start), len(y_array)))
        resampled_a = score(*_resampled_counts(y_array, a_array, indices, num_classes))
        resampled_b = score(*_resampled_counts(y_array, b_array, indices, num_classes))
        differences.append(resampled_a - resampled_b)
    all_differences = np.concatenate(differences)
    alpha = 1.0 - float(confidence)
    ci_low, ci_high = np.quantile(all_differences, [alpha / 2, 1.0 - alpha / 2])
    return {
        "metric": metric,
        "a": score_a,
        "b": score_b,
        "difference": score_a - score_b,
        "ci_low": float(ci_low),
        "ci_high": float(ci_high),
        "confidence": float(confidence),
        "n_resamples": int(n_resamples),
    }


def bootstrap_difference(
    metric_fn: Callable,
    y_true,
    pred_a,
    pred_b,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict:
    """Paired bootstrap confidence interval of metric_fn(y_true, pred_a) - metric_fn(y_true, pred_b), for any metric.

    The rows (first axis) of `y_true`, `pred_a` and `pred_b` are resampled together, so 2-D multi-hot labels with
    (n, K) scores, or (n, T) regression targets with predictions, resample as whole rows. `metric_fn` returns a
    number, or None where the metric is undefined on a resample (a correlation on a resample with one distinct
    target): those resamples are left out of the interval and counted in `undefined_resamples`. The result depends
    only on the inputs and `seed`.

    Returns {"metric", "a", "b", "difference", "ci_low", "ci_high", "confidence", "n_resamples",
    "undefined_resamples"}; the interval is None when no resample is defined, and the difference when either whole-
    set score is None. "difference" is a gain when the metric is greater-is-better, a loss otherwise.
    """
    if int(n_resamples) < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}.")
    if not 0.0 < float(confidence) < 1.0:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}.")
    y_array, a_array, b_array = (np.asarray(values) for values in (y_true, pred_a, pred_b))
    if len({len(y_array), len(a_array), len(b_array)}) != 1 or len(y_array) == 0:
        raise ValueError(
            f"y_true, pred_a and pred_b must be non-empty and equally long, got lengths "
            f"{sorted({len(y_array), len(a_array), len(b_array)})}."
        )
    score_a, score_b = _defined(metric_fn(y_array, a_array)), _defined(metric_fn(y_array, b_array))
    rng = np.random.default_rng(seed)
    differences = []
    for _ in range(int(n_resamples)):
        rows = rng.integers(0, len(y_array), size=len(y_array))
        resampled_a = _defined(metric_fn(y_array[rows], a_array[rows]))
        resampled_b = _defined(metric_fn(y_array[rows], b_array[rows]))
        if resampled_a is not None and resampled_b is not None:
            differences.append(resampled_a - resampled_b)
    alpha = 1.0 - float(confidence)
    ci_low = ci_high = None
    if differences:
        ci_low, ci_high = (float(q) for q in np.quantile(differences, [alpha / 2, 1.0 - alpha / 2]))
    return {
        "metric": getattr(metric_fn, "__name__", "metric"),
        "a": score_a,
        "b": score_b,
        "difference": None if score_a is None or score_b is None else score_a - score_b,
        "ci_low": ci_low,
        "ci_high": ci_high,
        "confidence": float(confidence),
        "n_resamples": int(n_resamples),
        "undefined_resamples": int(n_resamples) - len(differences),
    }


def _defined(value) -> float | None:
    """`value` as a float, or None when it is None or NaN."""
    return float(value) if is_number(value) else None


def _validated_paired_predictions(y_true, pred_a, pred_b) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three label arrays as 1-D int arrays of one common, non-zero length with non-negative labels."""
    arrays = []
    for name, values in (("y_true", y_true), ("pred_a", pred_a), ("pred_b", pred_b)):
        array = np.asarray(values)
        if array.ndim != 1 or (array.size and not np.issubdtype(array.dtype, np.integer)):
            raise ValueError(f"{name} must be a 1-D array of int labels, got dtype {array.dtype} shape {array.shape}.")
        arrays.append(array.astype(np.int64, copy=False))
    lengths = {len(array) for array in arrays}
    if len(lengths) != 1 or 0 in lengths:
        raise ValueError(
            f"y_true, pred_a and pred_b must be non-empty and equally long, got lengths {sorted(lengths)}."
        )
    if any((array < 0).any() for array in arrays):
        raise ValueError("labels must be non-negative.")
    return arrays[0], arrays[1], arrays[2]


def _resampled_counts(
    y_true: np.ndarray, y_pred: np.ndarray, indices: np.ndarray, num_classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-resample, per-class (true positives, true counts, predicted counts), each (n_resamples, num_classes)."""
    num_resamples = indices.shape[0]
    offsets = (np.arange(num_resamples) * num_classes)[:, None]
    true_bins = (offsets + y_true[indices]).ravel()
    predicted_bins = (offsets + y_pred[indices]).ravel()
    correct = (y_true == y_pred)[indices].ravel().astype(np.float64)
    size = num_resamples * num_classes
    shape = (num_resamples, num_classes)
    true_positives = np.bincount(true_bins, weights=correct, minlength=size).reshape(shape)
    true_counts = np.bincount(true_bins, minlength=size).reshape(shape).astype(np.float64)
    predicted_counts = np.bincount(predicted_bins, minlength=size).reshape(shape).astype(np.float64)
    return true_positives, true_counts, predicted_counts


def _accuracy_from_counts(
    true_positives: np.ndarray, true_counts: np.ndarray, predicted_counts: np.ndarray
) -> np.ndarray:
    """Accuracy per resample: correct predictions over samples."""
    return true_positives.sum(axis=1) / true_counts.sum(axis=1)


def _balanced_accuracy_from_counts(
    true_positives: np.ndarray, true_counts: np.ndarray, predicted_counts: np.ndarray
) -> np.ndarray:
    """Balanced accuracy per resample: mean recall over the classes present in that resample's y_true."""
    present = true_counts > 0
    recall = np.divide(true_positives, true_counts, out=np.zeros_like(true_positives), where=present)
    return recall.sum(axis=1) / present.sum(axis=1)


def _f1_macro_from_counts(
    true_positives: np.ndarray, true_counts: np.ndarray, predicted_counts: np.ndarray
) -> np.ndarray:
    """Macro F1 per resample over classes occurring in y_true or the predictions: mean of 2TP / (true + predicted)."""
    denominator = true_counts + predicted_counts
    occurring = denominator > 0
    f1 = np.divide(2 * true_positives, denominator, out=np.zeros_like(true_positives), where=occurring)
    return f1.sum(axis=1) / occurring.sum(axis=1)


_METRICS_FROM_COUNTS: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]] = {
    "accuracy": _accuracy_from_counts,
    "balanced_accuracy": _balanced_accuracy_from_counts,
    "f1_macro": _f1_macro_from_counts,
}
BOOTSTRAP_METRICS: tuple[str, ...] = tuple(_METRICS_FROM_COUNTS)
"""Metrics `bootstrap_metric_difference` can resample."""
