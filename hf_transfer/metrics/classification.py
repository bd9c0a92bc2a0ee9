"""Evaluation metrics, terminal tables, plots and significance tests, all computed locally with scikit-learn.

`evaluate.load` is not used on purpose: it downloads metric scripts from the Hub. Every function here returns plain
Python values (no numpy scalars) so results can go straight into `json.dumps`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import sklearn.metrics as sk_metrics
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from hf_transfer.config.names import METRIC_NAMES
from hf_transfer.core.errors import DataError, RecipeError
from hf_transfer.core.files import atomic_write
from hf_transfer.core.registry import closest

logger = logging.getLogger(__name__)

PROBABILITY_SUM_TOLERANCE = 1e-3
"""Rows of `probs` may miss 1 by this much (float32 softmax); they are renormalised. More means logits were passed."""

MAX_BOOTSTRAP_ELEMENTS = 20_000_000
"""Largest resample-index array (n_resamples x n) built at once; bigger problems are drawn in chunks of resamples."""

TABLE_LABEL_WIDTH = 24
MATRIX_NAME_HEADER_MAX_CLASSES = 10
MATRIX_TABLE_MAX_CLASSES = 25
TOP_CONFUSIONS_SHOWN = 10
PLOT_LABEL_WIDTH = 20
PLOT_ANNOTATE_MAX_CLASSES = 30

PER_LABEL_COLUMNS = (
    ("precision", "precision"),
    ("recall", "recall"),
    ("f1", "f1"),
    ("support", "support"),
    ("average_precision", "AP"),
    ("roc_auc", "roc_auc"),
    ("threshold", "threshold"),
)
PER_TARGET_COLUMNS = (
    ("mse", "mse"),
    ("rmse", "rmse"),
    ("mae", "mae"),
    ("r2", "r2"),
    ("pearson", "pearson"),
    ("spearman", "spearman"),
)

_NON_METRIC_HISTORY_KEYS = frozenset({"epoch", "step", "num_samples", "learning_rate", "grad_norm", "total_flos"})


# --------------------------------------------------------------------------------------------------------------------
# Classification metrics
# --------------------------------------------------------------------------------------------------------------------


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


METRIC_DIRECTIONS: dict[str, bool] = {
    # single-label
    "accuracy": True,
    "balanced_accuracy": True,
    "f1_macro": True,
    "precision_macro": True,
    "recall_macro": True,
    "roc_auc": True,
    "log_loss": False,
    # multi-label
    "f1_micro": True,
    "f1_weighted": True,
    "f1_samples": True,
    "precision_micro": True,
    "recall_micro": True,
    "subset_accuracy": True,
    "hamming_loss": False,
    "map_macro": True,
    "roc_auc_macro": True,
    # regression
    "mse": False,
    "rmse": False,
    "mae": False,
    "r2": True,
    "pearson": True,
    "spearman": True,
}
"""Whether a larger value is better, for every metric the metric functions return (True: greater is better)."""

_SPLIT_PREFIXES = ("eval_", "validation_", "test_", "train_")


def greater_is_better(metric: str) -> bool:
    """The direction of `metric`: False for errors and losses (mse, rmse, mae, hamming_loss, log_loss and anything
    ending in "loss" or "error"), True for every other metric.

    A split prefix ("eval_rmse") and a per-label / per-target suffix ("rmse/price", as cross-validation names them)
    do not change the direction.
    """
    name = metric.strip().lower().split("/", 1)[0]
    for candidate in (name, *(name[len(prefix) :] for prefix in _SPLIT_PREFIXES if name.startswith(prefix))):
        if candidate in METRIC_DIRECTIONS:
            return METRIC_DIRECTIONS[candidate]
    return not name.endswith(("loss", "error"))


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


# --------------------------------------------------------------------------------------------------------------------
# Terminal table
# --------------------------------------------------------------------------------------------------------------------


def format_metrics_table(metrics: dict, title: str | None = None) -> str:
    """A plain-text report: scalar metrics (4 decimals), a per-class, per-label (multi-label) or per-target
    (regression) table, then the confusion matrix (single-label).

    Up to 10 classes the matrix has (truncated) label names as column headers, up to 25 it uses class indices,
    beyond that it lists the most frequent confusions instead of the full matrix. Sections whose keys are missing
    from `metrics` are left out, so fold summaries and partial dicts format too.
    """
    sections = [_scalar_metrics_section(metrics)]
    label_names = list(metrics.get("per_class", {}))
    if metrics.get("per_class"):
        sections.append(_per_class_section(metrics["per_class"]))
    if metrics.get("per_label"):
        sections.append(_rows_section("label", metrics["per_label"], PER_LABEL_COLUMNS))
    if metrics.get("per_target"):
        sections.append(_rows_section("target", metrics["per_target"], PER_TARGET_COLUMNS))
    if metrics.get("confusion_matrix"):
        matrix = np.asarray(metrics["confusion_matrix"], dtype=np.int64)
        if len(label_names) != len(matrix):
            label_names = [str(i) for i in range(len(matrix))]
        sections.append(_confusion_matrix_section(matrix, label_names))
    body = "\n\n".join(section for section in sections if section)
    if title:
        return f"{title}\n{'=' * len(title)}\n{body}"
    return body


def truncated(text: str, width: int) -> str:
    """`text` cut to at most `width` characters, ending in "..." when it was cut."""
    text = str(text)
    if len(text) <= width:
        return text
    if width <= 3:
        return text[:width]
    return text[: width - 3] + "..."


def _formatted_value(value) -> str:
    """A scalar for the table: ints as is, floats with 4 decimals, None as "n/a"."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return f"{float(value):.4f}"


def _scalar_metrics_section(metrics: dict) -> str:
    """The scalar metrics, known ones first in a fixed order, then any other scalar keys, one per line."""
    # Multi-label and regression dicts come in their own reading order; single-label ones follow METRIC_NAMES.
    known = [] if {"per_label", "per_target"} & metrics.keys() else ["num_samples", *METRIC_NAMES]
    scalar_keys = [key for key in known if key in metrics]
    scalar_keys += [
        key
        for key, value in metrics.items()
        if key not in known and (value is None or isinstance(value, (int, float, np.integer, np.floating)))
    ]
    if not scalar_keys:
        return ""
    width = max(len("metric"), *(len(key) for key in scalar_keys))
    lines = [f"{'metric':<{width}}  value"]
    for key in scalar_keys:
        line = f"{key:<{width}}  {_formatted_value(metrics[key])}"
        note = metrics.get(f"{key}_note") or metrics.get(f"{key.removesuffix('_macro')}_note")
        if isinstance(note, str):
            line += f"  ({note})"
        lines.append(line)
    return "\n".join(lines)


def _rows_section(kind: str, rows: dict[str, dict], columns: Sequence[tuple[str, str]]) -> str:
    """One line per label or target with the given (key, header) columns: ints as is, floats with 4 decimals, None
    as n/a; a column no row has is left out."""
    columns = [(key, header) for key, header in columns if any(key in row for row in rows.values())]
    cells = {name: [_formatted_value(row.get(key)) for key, _ in columns] for name, row in rows.items()}
    widths = [
        max(len(header), *(len(values[i]) for values in cells.values())) for i, (_, header) in enumerate(columns)
    ]
    name_width = max(len(kind), *(len(truncated(name, TABLE_LABEL_WIDTH)) for name in rows))
    lines = [f"{kind:<{name_width}}  " + "  ".join(f"{h:>{w}}" for (_, h), w in zip(columns, widths))]
    for name, values in cells.items():
        lines.append(
            f"{truncated(name, TABLE_LABEL_WIDTH):<{name_width}}  "
            + "  ".join(f"{v:>{w}}" for v, w in zip(values, widths))
        )
    return "\n".join(lines)


def _per_class_section(per_class: dict[str, dict]) -> str:
    """One row per label: precision, recall and f1 with 4 decimals, and support."""
    width = max(len("label"), *(len(truncated(name, TABLE_LABEL_WIDTH)) for name in per_class))
    lines = [f"{'label':<{width}}  {'precision':>9}  {'recall':>9}  {'f1':>9}  {'support':>7}"]
    for name, row in per_class.items():
        lines.append(
            f"{truncated(name, TABLE_LABEL_WIDTH):<{width}}  {row['precision']:>9.4f}  {row['recall']:>9.4f}  "
            f"{row['f1']:>9.4f}  {int(row['support']):>7d}"
        )
    return "\n".join(lines)


def _confusion_matrix_section(matrix: np.ndarray, label_names: Sequence[str]) -> str:
    """The confusion matrix as a grid (few classes) or as a list of the most frequent confusions (many classes)."""
    heading = "confusion matrix (rows = true label, columns = predicted label)"
    num_classes = len(matrix)
    if num_classes > MATRIX_TABLE_MAX_CLASSES:
        return f"{heading}\n{_top_confusions_text(matrix, label_names)}"
    count_width = max(len(str(int(matrix.max(initial=0)))), 1)
    if num_classes <= MATRIX_NAME_HEADER_MAX_CLASSES:
        column_width = max(count_width, min(max(len(name) for name in label_names), 8))
        column_headers = [truncated(name, column_width) for name in label_names]
        row_headers = [truncated(name, TABLE_LABEL_WIDTH) for name in label_names]
    else:
        column_width = max(count_width, len(str(num_classes - 1)))
        column_headers = [str(i) for i in range(num_classes)]
        index_width = len(str(num_classes - 1))
        row_headers = [
            f"{i:>{index_width}} {truncated(name, TABLE_LABEL_WIDTH)}" for i, name in enumerate(label_names)
        ]
        heading += "; columns are class indices"
    corner = "true \\ pred"
    row_width = max(len(corner), *(len(header) for header in row_headers))
    lines = [heading, f"{corner:<{row_width}}  " + " ".join(f"{h:>{column_width}}" for h in column_headers)]
    for header, row in zip(row_headers, matrix):
        lines.append(f"{header:<{row_width}}  " + " ".join(f"{int(c):>{column_width}d}" for c in row))
    return "\n".join(lines)


def _top_confusions_text(matrix: np.ndarray, label_names: Sequence[str]) -> str:
    """The most frequent off-diagonal cells as "true -> predicted: count" lines, for matrices too wide to print."""
    off_diagonal = matrix.copy()
    np.fill_diagonal(off_diagonal, 0)
    flat_order = np.argsort(-off_diagonal, axis=None, kind="stable")[:TOP_CONFUSIONS_SHOWN]
    cells = [(int(i), int(j)) for i, j in zip(*np.unravel_index(flat_order, off_diagonal.shape)) if off_diagonal[i, j]]
    intro = f"{len(matrix)} classes, too many to print; correct: {int(np.trace(matrix))} of {int(matrix.sum())}."
    if not cells:
        return f"{intro} No confusions."
    lines = [f"{intro} Most frequent confusions (true -> predicted: count):"]
    lines += [
        f"  {truncated(label_names[i], TABLE_LABEL_WIDTH)} -> {truncated(label_names[j], TABLE_LABEL_WIDTH)}: "
        f"{int(matrix[i, j])}"
        for i, j in cells
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------------------------
# Plots (matplotlib Figure objects with the Agg canvas; no pyplot global state)
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
    _save_figure_atomically(figure, path)


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
            points = [(x, float(entry[key])) for x, entry in zip(epochs, history) if _is_number(entry.get(key))]
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
    _save_figure_atomically(figure, path)


def _plottable_history_keys(history: list[dict]) -> list[str]:
    """Numeric keys of the history entries, in first-seen order, without epoch/step/runtime bookkeeping."""
    keys: dict[str, None] = {}
    for entry in history:
        for key, value in entry.items():
            lowered = key.lower()
            if (
                lowered in _NON_METRIC_HISTORY_KEYS
                or lowered.endswith(("runtime", "per_second", "num_samples"))
                or not _is_number(value)
            ):
                continue
            keys.setdefault(key, None)
    return list(keys)


def _is_number(value) -> bool:
    """True for finite ints and floats (numpy included), False for None, bools, NaN and everything else."""
    return (
        isinstance(value, (int, float, np.integer, np.floating))
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def _save_figure_atomically(figure: Figure, path) -> None:
    """Save `figure` to a temporary file next to `path`, then rename it over `path`, so readers never see half a file.

    The parent folder is created if needed; the temporary file is removed if saving fails.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    file_format = target.suffix.lstrip(".").lower() or "png"
    atomic_write(target, lambda tmp: figure.savefig(tmp, format=file_format))
    logger.debug("wrote %s", target)


# --------------------------------------------------------------------------------------------------------------------
# Significance and cross-validation summaries
# --------------------------------------------------------------------------------------------------------------------


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
    return float(value) if _is_number(value) else None


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


def mean_std_over_folds(fold_metrics: list[dict]) -> dict:
    """`{metric: {"mean", "std", "values"}}` for every scalar metric that has a number in all folds.

    Metrics that are None (or NaN) in any fold, non-scalars (per_class, confusion_matrix) and strings are skipped.
    `std` is the sample standard deviation (ddof=1), the usual spread reported for k-fold results; with a single
    fold it is None. Keys follow the order of the first fold.
    """
    if not fold_metrics:
        raise ValueError("fold_metrics is empty: there are no folds to summarise.")
    summary = {}
    for key in fold_metrics[0]:
        values = [fold.get(key) for fold in fold_metrics]
        if not all(_is_number(value) for value in values):
            continue
        floats = np.asarray(values, dtype=np.float64)
        summary[key] = {
            "mean": float(floats.mean()),
            "std": float(floats.std(ddof=1)) if len(floats) > 1 else None,
            "values": [value.item() if isinstance(value, np.generic) else value for value in values],
        }
    return summary
