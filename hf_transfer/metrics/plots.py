"""Every plot a run, a cross-validation or a sweep writes, and the one atomic save they all go through.

matplotlib `Figure` objects on the Agg canvas, never pyplot (no global state, no display needed). Each file is
written atomically (temporary file in the same folder, then rename) in the format of its suffix, PNG when it has none.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from hf_transfer.core.files import atomic_write
from hf_transfer.metrics.regression import regression_arrays, regression_metric_fn
from hf_transfer.metrics.scalars import greater_is_better, is_number
from hf_transfer.metrics.tables import truncated

logger = logging.getLogger(__name__)

PLOT_LABEL_WIDTH = 20
PLOT_ANNOTATE_MAX_CLASSES = 30
PLOT_MAX_LABELS = 100  # beyond this the per-label plot shows the most frequent labels only
PLOT_MAX_TARGETS = 12  # more targets than this: the regression plots show the first 12
PLOT_MAX_POINTS = 20_000  # scatter points drawn per target (a seeded sample beyond that)
PLOT_COLUMNS = 3

_NON_METRIC_HISTORY_KEYS = frozenset({"epoch", "step", "num_samples", "learning_rate", "grad_norm", "total_flos"})


def save_figure_atomically(figure: Figure, path) -> None:
    """Save `figure` to a temporary file next to `path`, then rename it over `path`, so readers never see half a file.

    The parent folder is created if needed; the temporary file is removed if saving fails.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    file_format = target.suffix.lstrip(".").lower() or "png"
    atomic_write(target, lambda tmp: figure.savefig(tmp, format=file_format))
    logger.debug("wrote %s", target)


# --------------------------------------------------------------------------------------------------------------------
# Single-label: confusion matrix; every run: training curves
# --------------------------------------------------------------------------------------------------------------------


def save_confusion_matrix_plot(confusion_matrix, label_names: list[str], path) -> None:
    """Write a confusion-matrix image: row-normalised colours, counts in the cells, label names on the axes.

    The figure grows with the number of classes; beyond 30 classes the per-cell counts are left out. The file is
    written atomically (temporary file in the same folder, then `os.replace`); the format follows the suffix of
    `path` (PNG when it has none).
    """
    matrix = np.asarray(confusion_matrix, dtype=np.int64)
    num_classes = len(label_names)
    if matrix.shape != (num_classes, num_classes):
        raise ValueError(f"confusion matrix shape {matrix.shape} does not match {num_classes} label names.")
    row_totals = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, row_totals, out=np.zeros(matrix.shape, dtype=float), where=row_totals > 0)

    side = min(max(4.5, 0.45 * num_classes + 2.5), 40.0)
    font_size = max(5.0, 10.0 - max(0, num_classes - 10) / 4)
    figure = Figure(figsize=(side + 1.0, side), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    colorbar = figure.colorbar(image, ax=axes, shrink=0.8)
    colorbar.set_label("fraction of the true label's samples")

    tick_labels = [truncated(name, PLOT_LABEL_WIDTH) for name in label_names]
    axes.set_xticks(
        range(num_classes), tick_labels, rotation=45, ha="right", rotation_mode="anchor", fontsize=font_size
    )
    axes.set_yticks(range(num_classes), tick_labels, fontsize=font_size)
    axes.set_xlabel("predicted label")
    axes.set_ylabel("true label")
    axes.set_title(f"Confusion matrix ({int(matrix.sum())} samples; colour = row-normalised)")
    if num_classes <= PLOT_ANNOTATE_MAX_CLASSES:
        for i in range(num_classes):
            for j in range(num_classes):
                colour = "white" if normalised[i, j] > 0.5 else "black"
                axes.text(j, i, str(int(matrix[i, j])), ha="center", va="center", color=colour, fontsize=font_size)
    save_figure_atomically(figure, path)


def save_training_curves_plot(history: list[dict], path) -> None:
    """Write training curves: losses (keys ending in "loss") on the left, other metrics on the right, x = epoch.

    Entries without "epoch" use their position (1, 2, ...). Missing or None values are skipped, so metrics logged on
    only some epochs still plot. Bookkeeping keys (step, learning_rate, runtimes, throughputs) are not plotted.
    Written atomically like `save_confusion_matrix_plot`.
    """
    if not history:
        raise ValueError("history is empty: there is no epoch to plot.")
    epochs = [float(entry.get("epoch", position + 1)) for position, entry in enumerate(history)]
    keys = _plottable_history_keys(history)
    loss_keys = [key for key in keys if not greater_is_better(key)]
    metric_keys = [key for key in keys if greater_is_better(key)]

    panels = [("loss", loss_keys)] + ([("metric", metric_keys)] if metric_keys else [])
    figure = Figure(figsize=(6.0 * len(panels), 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    for index, (y_label, panel_keys) in enumerate(panels, start=1):
        axes = figure.add_subplot(1, len(panels), index)
        for key in panel_keys:
            points = [(x, float(entry[key])) for x, entry in zip(epochs, history) if is_number(entry.get(key))]
            axes.plot([x for x, _ in points], [y for _, y in points], marker="o", label=key)
        axes.set_xlabel("epoch")
        if all(epoch.is_integer() for epoch in epochs):
            axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_ylabel(y_label)
        axes.set_title("Losses" if y_label == "loss" else "Evaluation metrics")
        axes.grid(True, alpha=0.3)
        if panel_keys:
            axes.legend(fontsize="small")
        else:
            axes.text(0.5, 0.5, "no losses logged", ha="center", va="center", transform=axes.transAxes)
    save_figure_atomically(figure, path)


def _plottable_history_keys(history: list[dict]) -> list[str]:
    """Numeric keys of the history entries, in first-seen order, without epoch/step/runtime bookkeeping."""
    keys: dict[str, None] = {}
    for entry in history:
        for key, value in entry.items():
            lowered = key.lower()
            if (
                lowered in _NON_METRIC_HISTORY_KEYS
                or lowered.endswith(("runtime", "per_second", "num_samples"))
                or not is_number(value)
            ):
                continue
            keys.setdefault(key, None)
    return list(keys)


# --------------------------------------------------------------------------------------------------------------------
# Multi-label
# --------------------------------------------------------------------------------------------------------------------


def save_multilabel_plot(metrics: dict, path) -> None:
    """Write a per-label chart of `multilabel_metrics(...)`: F1 bars on the left and support (positive rows) bars on
    the right, one row per label, so a rare label's poor F1 shows next to how few examples it had.

    Labels keep their order; beyond 100 labels the most frequent 100 are shown. Written atomically (temporary file,
    then rename) in the format of the suffix of `path`.
    """
    per_label = metrics.get("per_label")
    if not per_label:
        raise ValueError("metrics has no per_label section: pass the dict multilabel_metrics returns.")
    names = list(per_label)
    if len(names) > PLOT_MAX_LABELS:
        frequent = sorted(names, key=lambda name: -per_label[name]["support"])[:PLOT_MAX_LABELS]
        kept = set(frequent)
        names = [name for name in names if name in kept]
    f1 = [per_label[name]["f1"] for name in names]
    support = [per_label[name]["support"] for name in names]
    positions = np.arange(len(names))

    height = min(max(3.0, 0.28 * len(names) + 1.5), 40.0)
    font_size = max(5.0, 10.0 - max(0, len(names) - 20) / 8)
    figure = Figure(figsize=(10.0, height), layout="constrained")
    FigureCanvasAgg(figure)
    f1_axes, support_axes = figure.subplots(1, 2, sharey=True, width_ratios=[3, 2])
    f1_axes.barh(positions, f1, color="tab:blue")
    f1_axes.set_xlim(0.0, 1.0)
    f1_axes.set_xlabel("F1 at the label's threshold")
    f1_axes.set_yticks(positions, [truncated(name, PLOT_LABEL_WIDTH) for name in names], fontsize=font_size)
    f1_axes.invert_yaxis()
    f1_axes.grid(True, axis="x", alpha=0.3)
    for position, value in zip(positions, f1):
        f1_axes.text(min(value + 0.01, 0.9), position, f"{value:.2f}", va="center", fontsize=font_size)
    support_axes.barh(positions, support, color="tab:gray")
    support_axes.set_xlabel("support (rows with the label)")
    support_axes.grid(True, axis="x", alpha=0.3)
    title = f"Per-label F1 ({metrics.get('num_samples', '?')} rows"
    if metrics.get("f1_macro") is not None:
        title += f", macro F1 {metrics['f1_macro']:.3f}"
    if len(names) < len(per_label):
        title += f"; {len(names)} most frequent of {len(per_label)} labels"
    figure.suptitle(title + ")")
    save_figure_atomically(figure, path)


# --------------------------------------------------------------------------------------------------------------------
# Regression
# --------------------------------------------------------------------------------------------------------------------


def save_regression_plots(y_true, y_pred, target_names: Sequence[str], scatter_path, residuals_path) -> None:
    """Write two images, one panel per target (the first 12 when there are more): predicted against true values with
    the y = x line (`scatter_path`), and the histogram of residuals, prediction - truth (`residuals_path`).

    Beyond 20,000 rows the scatter draws a fixed sample of them. Each file is written atomically (temporary file,
    then rename) in the format of its suffix.
    """
    true_array, pred_array, names = regression_arrays(y_true, y_pred, target_names)
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
    save_figure_atomically(scatter, scatter_path)

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
    save_figure_atomically(residuals, residuals_path)


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
    r2 = regression_metric_fn("r2")(y_true, y_pred)
    r2_text = "n/a" if r2 is None else f"{r2:.3f}"
    rmse = regression_metric_fn("rmse")(y_true, y_pred)
    return f"{truncated(name, PLOT_LABEL_WIDTH)}: R² {r2_text}, RMSE {rmse:.3g}"


# --------------------------------------------------------------------------------------------------------------------
# Sweep
# --------------------------------------------------------------------------------------------------------------------


def save_sweep_plot(report: dict, path: Path) -> None:
    """Each trial's validation value and the best so far, against the trial number."""
    done = [t for t in report["trials"] if t["value"] is not None]
    pick = max if report["direction"] == "maximize" else min
    best_so_far, current = [], None
    for trial in done:
        current = trial["value"] if current is None else pick(current, trial["value"])
        best_so_far.append(current)
    figure = Figure(figsize=(7.0, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    xs = [t["trial"] for t in done]
    axes.plot(xs, [t["value"] for t in done], "o", label="trial")
    axes.step(xs, best_so_far, where="post", label="best so far")
    axes.set_xlabel("trial")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylabel(f"validation {report['metric']}")
    axes.set_title(f"{report['recipe']}: {report['direction']} validation {report['metric']}")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small")
    save_figure_atomically(figure, path)
