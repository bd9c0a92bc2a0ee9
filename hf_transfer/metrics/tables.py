"""Plain-text reports of a metrics dict for the terminal: scalars, per-class / per-label / per-target rows and the
confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hf_transfer.metrics.names import SINGLE_LABEL_METRICS

TABLE_LABEL_WIDTH = 24
MATRIX_NAME_HEADER_MAX_CLASSES = 10
MATRIX_TABLE_MAX_CLASSES = 25
TOP_CONFUSIONS_SHOWN = 10

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
    # Multi-label and regression dicts come in their own reading order; single-label ones follow SINGLE_LABEL_METRICS.
    known = [] if {"per_label", "per_target"} & metrics.keys() else ["num_samples", *SINGLE_LABEL_METRICS]
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
