"""Regression metrics (scikit-learn / SciPy), one set per target and their mean, and the scatter / residual plots.

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
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy import stats

from hf_transfer.core.errors import DataError, RecipeError
from hf_transfer.core.registry import closest
from hf_transfer.metrics.classification import PLOT_LABEL_WIDTH, _save_figure_atomically, truncated

logger = logging.getLogger(__name__)

TARGET_METRICS: tuple[str, ...] = ("mse", "rmse", "mae", "r2", "pearson", "spearman")
"""The per-target keys of `regression_metrics`; the top-level keys of the same names are their means over targets."""
PLOT_MAX_TARGETS = 12  # more targets than this: the plots show the first 12
PLOT_MAX_POINTS = 20_000  # scatter points drawn per target (a seeded sample beyond that)
PLOT_COLUMNS = 3


def regression_metrics(y_true, y_pred, target_names: Sequence[str]) -> dict:
    """All evaluation numbers of one regression eval set, as a JSON-serialisable dict.

    Keys: num_samples, mse, rmse, mae, r2, pearson, spearman (each the mean over targets of the per-target value,
    as scikit-learn's multioutput="uniform_average" averages) and per_target {name: {the same six keys}}.

    R² follows scikit-learn (force_finite: a constant target scores 1.0 when predicted exactly, else 0.0). Pearson
    and Spearman correlations are None, with a `pearson_note` / `spearman_note`, where a target or its predictions
    are constant (or there are fewer than two rows); their means run over the targets where they are defined.
    """
    true_array, pred_array, names = _validated(y_true, y_pred, target_names)
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
# Plots
# --------------------------------------------------------------------------------------------------------------------


def save_regression_plots(y_true, y_pred, target_names: Sequence[str], scatter_path, residuals_path) -> None:
    """Write two images, one panel per target (the first 12 when there are more): predicted against true values with
    the y = x line (`scatter_path`), and the histogram of residuals, prediction - truth (`residuals_path`).

    Beyond 20,000 rows the scatter draws a fixed sample of them. Each file is written atomically (temporary file,
    then rename) in the format of its suffix.
    """
    true_array, pred_array, names = _validated(y_true, y_pred, target_names)
    shown = names[:PLOT_MAX_TARGETS]
    rows = np.arange(len(true_array))
    if len(rows) > PLOT_MAX_POINTS:
        rows = np.sort(np.random.default_rng(0).choice(len(rows), PLOT_MAX_POINTS, replace=False))

    scatter, scatter_axes = _panel_figure(len(shown), len(names))
    for t, (name, axes) in enumerate(zip(shown, scatter_axes)):
        truth, prediction = true_array[rows, t], pred_array[rows, t]
        axes.scatter(truth, prediction, s=10, alpha=max(0.1, min(0.8, 300 / len(rows))), edgecolors="none")
        low = float(min(truth.min(), prediction.min()))
        high = float(max(truth.max(), prediction.max()))
        margin = (high - low) * 0.02 or 1.0
        axes.plot([low - margin, high + margin], [low - margin, high + margin], color="tab:red", lw=1, label="y = x")
        axes.set_xlabel(f"true {truncated(name, PLOT_LABEL_WIDTH)}")
        axes.set_ylabel("predicted")
        axes.set_title(_panel_title(name, true_array[:, t], pred_array[:, t]), fontsize="medium")
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize="small", loc="upper left")
    scatter.suptitle(f"Predicted vs true ({len(true_array)} rows)")
    _save_figure_atomically(scatter, scatter_path)

    residuals, residual_axes = _panel_figure(len(shown), len(names))
    for t, (name, axes) in enumerate(zip(shown, residual_axes)):
        residual = pred_array[:, t] - true_array[:, t]
        axes.hist(residual, bins=min(50, max(5, len(residual) // 5)), color="tab:blue", alpha=0.8)
        axes.axvline(0.0, color="tab:red", lw=1)
        axes.set_xlabel(f"predicted - true ({truncated(name, PLOT_LABEL_WIDTH)})")
        axes.set_ylabel("rows")
        axes.set_title(f"mean {float(residual.mean()):.3g}, std {float(residual.std()):.3g}", fontsize="medium")
        axes.grid(True, alpha=0.3)
    residuals.suptitle(f"Residuals ({len(true_array)} rows)")
    _save_figure_atomically(residuals, residuals_path)


def _panel_figure(num_panels: int, num_targets: int):
    columns = min(PLOT_COLUMNS, num_panels)
    rows = math.ceil(num_panels / columns)
    figure = Figure(figsize=(4.5 * columns, 4.0 * rows + 0.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for extra in axes[num_panels:]:
        extra.set_visible(False)
    if num_targets > num_panels:
        figure.text(0.5, 0.0, f"first {num_panels} of {num_targets} targets", ha="center", fontsize="small")
    return figure, axes[:num_panels]


def _panel_title(name: str, y_true: np.ndarray, y_pred: np.ndarray) -> str:
    r2, _ = _r2(y_true, y_pred)
    r2_text = "n/a" if r2 is None else f"{r2:.3f}"
    return f"{truncated(name, PLOT_LABEL_WIDTH)}: R² {r2_text}, RMSE {_rmse(y_true, y_pred):.3g}"


# --------------------------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------------------------


def _as_columns(values) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    return array[:, None] if array.ndim == 1 else array


def _validated(y_true, y_pred, target_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
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
