"""Regression metrics (scikit-learn / SciPy), one set per target and their mean (the plots are in `plots`).

`y_true` and `y_pred` are (n,) for one target or (n, T) for several (multi-output), in the targets' own units (a
standardised run undoes its scaling before scoring). Every function returns plain Python values with no NaN: what
is undefined (the correlation with a constant target) is None with a note.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import sklearn.metrics as sk_metrics
from scipy import stats

from hf_transfer.core.errors import DataError, RecipeError
from hf_transfer.core.registry import closest

logger = logging.getLogger(__name__)

TARGET_METRICS: tuple[str, ...] = ("mse", "rmse", "mae", "r2", "pearson", "spearman")
"""The per-target keys of `regression_metrics`; the top-level keys of the same names are their means over targets."""


def regression_metrics(y_true, y_pred, target_names: Sequence[str]) -> dict:
    """All evaluation numbers of one regression eval set, as a JSON-serialisable dict.

    Keys: num_samples, mse, rmse, mae, r2, pearson, spearman (each the mean over targets of the per-target value,
    as scikit-learn's multioutput="uniform_average" averages) and per_target {name: {the same six keys}}.

    R² follows scikit-learn (force_finite: a constant target scores 1.0 when predicted exactly, else 0.0). Pearson
    and Spearman correlations are None, with a `pearson_note` / `spearman_note`, where a target or its predictions
    are constant (or there are fewer than two rows); their means run over the targets where they are defined.
    """
    true_array, pred_array, names = regression_arrays(y_true, y_pred, target_names)
    per_target = {name: _target_metrics(true_array[:, t], pred_array[:, t]) for t, name in enumerate(names)}
    metrics: dict = {"num_samples": len(true_array)}
    for key in TARGET_METRICS:
        values = [row[key] for row in per_target.values()]
        defined = [value for value in values if value is not None]
        metrics[key] = float(np.mean(defined)) if defined else None
        undefined = [name for name, value in zip(names, values) if value is None]
        if undefined:
            why = per_target[undefined[0]].get(f"{key}_note", "undefined")
            if len(names) == 1:
                metrics[f"{key}_note"] = why
            else:
                metrics[f"{key}_note"] = (
                    f"{key} averages {len(defined)} of {len(names)} targets; undefined for "
                    f"{', '.join(repr(name) for name in undefined[:5])}{', ...' if len(undefined) > 5 else ''}."
                )
    metrics["per_target"] = per_target
    return metrics


def regression_metric_fn(metric: str) -> Callable[[np.ndarray, np.ndarray], float | None]:
    """`f(y_true, y_pred) -> value` of one scalar of `regression_metrics` (its mean over targets), None where that is
    None: what a bootstrap over thousands of resamples calls."""
    if metric not in TARGET_METRICS:
        raise RecipeError(
            f"regression metric '{metric}' is not known{closest(metric, TARGET_METRICS)}; "
            f"choose one of {', '.join(TARGET_METRICS)}."
        )

    def value(y_true, y_pred):
        true_array, pred_array = _as_columns(y_true), _as_columns(y_pred)
        values = [
            _TARGET_METRIC_FUNCTIONS[metric](true_array[:, t], pred_array[:, t]) for t in range(true_array.shape[1])
        ]
        defined = [v[0] if isinstance(v, tuple) else v for v in values]
        defined = [v for v in defined if v is not None]
        return float(np.mean(defined)) if defined else None

    value.__name__ = metric
    return value


def _target_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    row: dict = {}
    for key in TARGET_METRICS:
        result = _TARGET_METRIC_FUNCTIONS[key](y_true, y_pred)
        if isinstance(result, tuple):
            row[key], note = result
            if note:
                row[f"{key}_note"] = note
        else:
            row[key] = result
    return row


def _mse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(sk_metrics.mean_squared_error(y_true, y_pred))


def _rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    # sqrt of scikit-learn's MSE rather than root_mean_squared_error, which older releases in our range lack.
    return math.sqrt(_mse(y_true, y_pred))


def _mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(sk_metrics.mean_absolute_error(y_true, y_pred))


def _r2(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float | None, str | None]:
    if len(y_true) < 2:
        return None, "R² is undefined with fewer than two rows."
    return float(sk_metrics.r2_score(y_true, y_pred, force_finite=True)), None


def _correlation(function, name: str):
    def correlation(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float | None, str | None]:
        if len(y_true) < 2:
            return None, f"{name} correlation is undefined with fewer than two rows."
        if np.ptp(y_true) == 0:
            return None, f"{name} correlation is undefined: the target is constant ({float(y_true[0]):g})."
        if np.ptp(y_pred) == 0:
            return None, f"{name} correlation is undefined: every prediction is {float(y_pred[0]):g}."
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # nearly constant inputs warn; a NaN result is caught below
            value = float(function(y_true, y_pred)[0])
        if not math.isfinite(value):
            return None, f"{name} correlation is undefined on these rows."
        return value, None

    return correlation


_TARGET_METRIC_FUNCTIONS = {
    "mse": _mse,
    "rmse": _rmse,
    "mae": _mae,
    "r2": _r2,
    "pearson": _correlation(stats.pearsonr, "Pearson"),
    "spearman": _correlation(stats.spearmanr, "Spearman"),
}


# --------------------------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------------------------


def _as_columns(values) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    return array[:, None] if array.ndim == 1 else array


def regression_arrays(y_true, y_pred, target_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(y_true, y_pred) as finite (n, T) float arrays of one shape, and the T target names."""
    names = [target_names] if isinstance(target_names, str) else list(target_names)
    try:
        true_array, pred_array = _as_columns(y_true), _as_columns(y_pred)
    except (TypeError, ValueError) as error:
        raise DataError(f"regression targets and predictions must be numbers: {error}.") from None
    if true_array.ndim != 2 or len(true_array) == 0:
        raise ValueError(
            f"y_true must be a non-empty (num_samples,) or (num_samples, num_targets) array, got shape "
            f"{np.shape(y_true)}."
        )
    if pred_array.shape != true_array.shape:
        raise ValueError(f"y_pred has shape {np.shape(y_pred)}; y_true has shape {np.shape(y_true)}.")
    if len(names) != true_array.shape[1]:
        raise ValueError(f"{len(names)} target names for {true_array.shape[1]} target columns.")
    if len(set(names)) != len(names):
        raise ValueError(f"target names must be unique, got {names}.")
    if not np.isfinite(true_array).all():
        raise DataError("regression targets contain NaN or infinite values; drop or fill those rows.")
    if not np.isfinite(pred_array).all():
        raise ValueError("predictions contain NaN or infinite values.")
    return true_array, pred_array, names
