"""Labels beyond one class per row: multi-label (multi-hot vectors) and regression (numeric targets).

Multi-label data comes as a list column (json / jsonl / parquet lists, a Hub `Sequence(ClassLabel)` such as
GoEmotions), as a separated string (`data.label_separator`: "comedy|drama") or as one 0/1 column per label
(`data.label_columns`, Jigsaw style). Regression reads one numeric column (`data.label_column`) or several
(`data.label_columns`). Either way the `labels` column of every prepared split becomes a list of floats: K 0/1 values
in the order of the label names, or T targets (standardised when `data.standardize_targets`).
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import ClassLabel, Dataset, DatasetDict

from hf_transfer.core.errors import DataError
from hf_transfer.data.splits import (
    LABEL,
    MISSING,
    LabelCoding,
    declared_coding,
    describe_split,
    is_integer_literal,
    label_value,
    names_of_values,
)

if TYPE_CHECKING:  # configs sit above data: the recipe asks data's input kinds for their rules
    from hf_transfer.config.sections import DataConfig

logger = logging.getLogger(__name__)

MULTI_LABEL = "multi_label_classification"
REGRESSION = "regression"
# 0/1 columns as users export them: integers, floats, booleans, or their text in a CSV read as strings
TRUE_VALUES, FALSE_VALUES = {"1", "1.0", "true"}, {"0", "0.0", "false"}


def label_columns_of(cfg: DataConfig) -> list[str]:
    """The columns that hold the labels or targets: data.label_columns, else data.label_column."""
    return list(cfg.label_columns) if cfg.label_columns else [cfg.label_column]


def list_inner_feature(feature):
    """The element feature of a list feature (`Sequence`, `List`, or datasets' `[feature]` form), else None."""
    if isinstance(feature, list) and len(feature) == 1:
        return feature[0]
    list_types = tuple(t for t in (getattr(datasets, "List", None), datasets.Sequence) if isinstance(t, type))
    if isinstance(feature, list_types):
        return feature.feature
    return None


def _numeric_column(split: Dataset, column: str) -> np.ndarray | None:
    """An integer or float column as float64 straight from Arrow (nulls as NaN), None for any other type: a fast
    path for large files, which then only need the row-by-row reading where a cell is wrong."""
    feature = split.features.get(column)
    dtype = getattr(feature, "dtype", "")
    if not (dtype.startswith("int") or dtype.startswith("uint") or dtype.startswith("float")):
        return None
    # through the formatter, not split.data: that would ignore the rows a `select` (dropped empty texts) left
    stored = split.select_columns([column]).with_format("arrow")[column]
    return np.asarray(stored.to_numpy(zero_copy_only=False), dtype=np.float64)


def with_float_vectors(split: Dataset, vectors, drop: list[str]) -> Dataset:
    """`split` without the `drop` columns and with `labels` set to one list of float32 per row."""
    split = split.remove_columns([c for c in {*drop, LABEL} if c in split.column_names])
    matrix = np.asarray(vectors, dtype=np.float32).reshape(len(split), -1) if len(split) else np.zeros((0, 1))
    # Built in Arrow: a list of Python lists per row is what makes a large file slow to code.
    offsets = pa.array(np.arange(0, matrix.size + 1, max(matrix.shape[1], 1), dtype=np.int32)[: len(split) + 1])
    rows = pa.ListArray.from_arrays(offsets, pa.array(matrix.ravel(), type=pa.float32()))
    split = split.add_column(LABEL, rows)
    wanted = datasets.Sequence(datasets.Value("float32"))
    if split.features[LABEL] != wanted:
        split = split.cast_column(LABEL, wanted)
    return split


def label_matrix(split: Dataset) -> np.ndarray:
    """The `labels` column of a multi-label or regression split as an (n, K) float64 array, read from Arrow."""
    if len(split) == 0:
        return np.zeros((0, 0))
    stored = split.select_columns([LABEL]).with_format("arrow")[LABEL]
    flat = pc.list_flatten(stored)
    return np.asarray(flat.to_numpy(zero_copy_only=False), dtype=np.float64).reshape(len(split), -1)


# ---------------------------------------------------------------------------------------------------------------
# Multi-label


def _binary(raw) -> bool | None:
    """A 0/1 cell as a bool; None when it is neither 0/1 nor true/false (blank cells included)."""
    if isinstance(raw, (bool, np.bool_)):
        return bool(raw)
    if isinstance(raw, (int, float, np.integer, np.floating)) and not (isinstance(raw, float) and math.isnan(raw)):
        return {0: False, 1: True}.get(raw)  # 1.0 == 1
    if isinstance(raw, str):
        text = raw.strip().lower()
        return True if text in TRUE_VALUES else False if text in FALSE_VALUES else None
    return None


def _indicator_matrix(split: Dataset, columns: list[str], where: str) -> np.ndarray:
    """The 0/1 label columns as an (n, K) matrix; any other value is an error naming its column and row."""
    matrix = np.zeros((len(split), len(columns)), dtype=np.float32)
    for k, column in enumerate(columns):
        numbers = _numeric_column(split, column)
        if numbers is not None and np.isin(numbers, (0.0, 1.0)).all():
            matrix[:, k] = numbers
            continue
        for row, raw in enumerate(split[column]):
            value = _binary(raw)
            if value is None:
                raise DataError(
                    f"row {row} of {where} has {raw!r} in column '{column}' (data.label_columns); a label column "
                    "holds 0/1 or true/false, so fix the cell or drop the row."
                )
            matrix[row, k] = value
    return matrix


def _label_lists(split: Dataset, cfg: DataConfig, where: str) -> list[list]:
    """Each row's labels as a list of raw values (strings or ints; ClassLabel ids as their names)."""
    column = cfg.label_column
    feature = split.features.get(column)
    inner = list_inner_feature(feature)
    values = split[column]
    if isinstance(inner, ClassLabel):
        return [[inner.names[v] for v in (cell or []) if v is not None and v >= 0] for cell in values]
    lists = []
    for row, cell in enumerate(values):
        if isinstance(cell, (list, tuple, np.ndarray)):
            lists.append(list(cell))
            continue
        value = label_value(cell)
        if value is MISSING:
            lists.append([])
        elif value is None:
            raise DataError(
                f"row {row} of {where} has {cell!r} in column '{column}' (data.label_column); multi-label cells hold "
                "a list of labels or a separated string (data.label_separator)."
            )
        elif cfg.label_separator is None:
            raise DataError(
                f"row {row} of {where} has the single value {cell!r} in column '{column}' (data.label_column), not a "
                f"list of labels; set data.label_separator to the character between labels (e.g. '|') or use lists."
            )
        else:
            lists.append([part.strip() for part in str(value).split(cfg.label_separator) if part.strip()])
    return lists


def _multilabel_coding(train: Dataset, lists: list[list], cfg: DataConfig, where: str) -> LabelCoding:
    """The label names as train defines them (the same rules as single-label: a ClassLabel keeps its names, with
    data.label_names integers are ids into it, else the distinct values, numbers in numeric order)."""
    declared = declared_coding(list_inner_feature(train.features.get(cfg.label_column)), cfg, "label")
    if declared is not None:
        return declared
    distinct = set()
    for row, labels in enumerate(lists):
        for raw in labels:
            value = label_value(raw)
            if value is MISSING or value is None:
                raise DataError(
                    f"row {row} of {where} has label {raw!r} in column '{cfg.label_column}'; labels must be "
                    "strings or integers."
                )
            distinct.add(value)
    if not distinct:
        raise DataError(
            f"no row of {where} has a label in column '{cfg.label_column}'; check the column and data.label_separator."
        )
    names = names_of_values(distinct)
    return LabelCoding(names=names, keys=names, indexed=False)


def _multi_hot(lists: list[list], coding: LabelCoding, column: str, where: str, known: str) -> np.ndarray:
    matrix = np.zeros((len(lists), len(coding.names)), dtype=np.float32)
    for row, labels in enumerate(lists):
        for raw in labels:
            value = label_value(raw)
            label_id = None if value is MISSING or value is None else coding.id_of(value)
            if label_id is None:
                raise DataError(f"row {row} of {where} has label {raw!r} in column '{column}', {known}")
            matrix[row, label_id] = 1.0
    return matrix


def encode_multilabel(raw: DatasetDict, cfg: DataConfig) -> tuple[DatasetDict, list[str]]:
    """Every split's labels as multi-hot vectors in train's label order, and the label names. Rows without a label
    are counted (an error when data.allow_empty_labels is false); a label train never had is an error."""
    columns = label_columns_of(cfg)
    train_where = describe_split("train", cfg)
    if cfg.label_columns:
        names = list(cfg.label_columns)
        matrices = {role: _indicator_matrix(split, names, describe_split(role, cfg)) for role, split in raw.items()}
    else:
        lists = {role: _label_lists(split, cfg, describe_split(role, cfg)) for role, split in raw.items()}
        coding = _multilabel_coding(raw["train"], lists["train"], cfg, train_where)
        names = coding.names
        matrices = {}
        for role, rows in lists.items():
            where = describe_split(role, cfg)
            if role == "train" and coding.indexed:
                known = (
                    f"which is not one of the {len(names)} label names ({', '.join(names)}) nor an id "
                    f"0..{len(names) - 1} into them; fix the row or data.label_names."
                )
            else:
                known = f"which train never had; known labels are {', '.join(names)}."
            matrices[role] = _multi_hot(rows, coding, cfg.label_column, where, known)
    seen = matrices["train"].any(axis=0)
    if not seen.any():
        raise DataError(f"no row of {train_where} has a label; check {_label_field(cfg)}.")
    encoded = {}
    for role, matrix in matrices.items():
        where = describe_split(role, cfg)
        if role != "train":
            unseen = np.flatnonzero(matrix[:, ~seen].any(axis=1))
            if unseen.size:
                label = names[int(np.flatnonzero(matrix[unseen[0]] * ~seen)[0])]
                column = label if cfg.label_columns else cfg.label_column
                fix = "drop the column from data.label_columns" if cfg.label_columns else "drop the row"
                raise DataError(
                    f"row {unseen[0]} of {where} has label '{label}' in column '{column}', which no train row has; "
                    f"a model cannot learn it, so add train rows with it or {fix}."
                )
        empty = np.flatnonzero(~matrix.any(axis=1))
        if empty.size:
            if not cfg.allow_empty_labels:
                raise DataError(
                    f"row {empty[0]} of {where} has no label in {_label_field(cfg)} and data.allow_empty_labels is "
                    "false; give it a label, drop it, or set data.allow_empty_labels=true."
                )
            logger.info("%s: %d of %d rows have no label", where, empty.size, len(matrix))
        encoded[role] = with_float_vectors(raw[role], matrix, columns)
    if not seen.all():
        logger.warning(
            "label(s) %s never occur in %s; the model will rarely predict them",
            ", ".join(n for n, s in zip(names, seen) if not s),
            train_where,
        )
    return DatasetDict(encoded), names


def _label_field(cfg: DataConfig) -> str:
    if cfg.label_columns:
        return f"columns {', '.join(cfg.label_columns)} (data.label_columns)"
    return f"column '{cfg.label_column}' (data.label_column)"


def rows_without_labels(split: Dataset) -> int:
    """How many rows of a multi-label split carry no label at all."""
    return int((~label_matrix(split).any(axis=1)).sum())


# ---------------------------------------------------------------------------------------------------------------
# Regression


def _number(raw) -> float | None:
    """A target cell as a finite float; None for anything else (text, booleans, blanks, NaN, infinity)."""
    if isinstance(raw, (bool, np.bool_)) or raw is None:
        return None
    if isinstance(raw, (int, float, np.integer, np.floating)):
        value = float(raw)
    elif isinstance(raw, str):
        try:
            value = float(raw.strip())
        except ValueError:
            return None
    else:
        return None
    return value if math.isfinite(value) else None


def _target_matrix(split: Dataset, columns: list[str], field: str, where: str) -> np.ndarray:
    matrix = np.zeros((len(split), len(columns)), dtype=np.float64)
    for t, column in enumerate(columns):
        numbers = _numeric_column(split, column)
        if numbers is not None and np.isfinite(numbers).all():
            matrix[:, t] = numbers
            continue
        for row, cell in enumerate(split[column]):
            value = _number(cell)
            if value is None:
                what = "no value" if cell is None or (isinstance(cell, str) and not cell.strip()) else repr(cell)
                raise DataError(
                    f"row {row} of {where} has {what} in column '{column}' ({field}); regression targets must "
                    "be finite numbers, so fix the cell or drop the row."
                )
            matrix[row, t] = value
    return matrix


def encode_regression(raw: DatasetDict, cfg: DataConfig) -> tuple[DatasetDict, list[str]]:
    """Every split's targets as a list of T floats, and the target names (the columns). A cell that is not a finite
    number is an error naming its column and row: nothing is cast or dropped silently."""
    columns = label_columns_of(cfg)
    field = "data.label_columns" if cfg.label_columns else "data.label_column"
    encoded = {
        role: with_float_vectors(split, _target_matrix(split, columns, field, describe_split(role, cfg)), columns)
        for role, split in raw.items()
    }
    return DatasetDict(encoded), columns


def encode_targets_like(
    split: Dataset, cfg: DataConfig, problem_type: str, label_names: list[str], where: str
) -> Dataset:
    """New data (`eval`) with a `labels` column as a trained run reads it: multi-hot in the run's label order (a
    label the run does not know is an error naming the row), or the targets in the data's own units (unscaled:
    compare them with `unscale_targets` of the predictions). `cfg` is the run's data section (its columns)."""
    columns = label_columns_of(cfg)
    if problem_type == REGRESSION:
        field = "data.label_columns" if cfg.label_columns else "data.label_column"
        return with_float_vectors(split, _target_matrix(split, columns, field, where), columns)
    if cfg.label_columns:
        return with_float_vectors(split, _indicator_matrix(split, columns, where), columns)
    lists = _label_lists(split, cfg, where)
    indexed = bool(cfg.label_names) or not all(is_integer_literal(n) for n in label_names)
    coding = LabelCoding(names=list(label_names), keys=list(label_names), indexed=indexed)
    known = f"which the run does not know; its labels are {', '.join(label_names)}."
    return with_float_vectors(split, _multi_hot(lists, coding, cfg.label_column, where, known), columns)


def target_scaling_of(train: Dataset) -> dict:
    """The mean and standard deviation of each target over `train` (a constant target gets std 1)."""
    targets = label_matrix(train)
    mean, std = targets.mean(axis=0), targets.std(axis=0)
    std[std == 0] = 1.0
    return {"mean": mean.tolist(), "std": std.tolist()}


def standardize(split: Dataset, scaling: dict) -> Dataset:
    """`split` with its targets replaced by (y - mean) / std."""
    targets = label_matrix(split)
    scaled = (targets - np.asarray(scaling["mean"])) / np.asarray(scaling["std"])
    return with_float_vectors(split, scaled, [])


def unscale_targets(values, scaling: dict | None) -> np.ndarray:
    """Standardised targets or predictions back in the data's units (unchanged where `scaling` is None)."""
    values = np.asarray(values, dtype=np.float64)
    if scaling is None:
        return values
    return values * np.asarray(scaling["std"]) + np.asarray(scaling["mean"])


# ---------------------------------------------------------------------------------------------------------------
# Carving validation and few-shot limits


def carve_multilabel(train: Dataset, fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """A validation split with each label's share kept (iterative stratification, from the maintained
    `iterative-stratification` package, else a seeded random split); a label whose every positive landed in
    validation gets one of them back, so train keeps every label it had."""
    labels = label_matrix(train) > 0.5
    n = len(train)
    try:
        from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

        if labels.shape[1] < 2:  # it takes an indicator matrix of two labels or more
            raise ImportError
        splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
        train_rows, validation_rows = next(splitter.split(np.zeros(n), labels.astype(int)))
    except ImportError:
        order = np.random.default_rng(seed).permutation(n)
        cut = min(n - 1, max(1, int(round(n * fraction))))
        validation_rows, train_rows = order[:cut], order[cut:]
    train_rows, validation_rows = set(train_rows.tolist()), sorted(validation_rows.tolist())
    for k in np.flatnonzero(labels.any(axis=0)):
        if not any(labels[r, k] for r in train_rows) and len(validation_rows) > 1:
            back = next(r for r in validation_rows if labels[r, k])
            validation_rows.remove(back)
            train_rows.add(back)
    return train.select(sorted(train_rows)), train.select(validation_rows)


def carve_regression(train: Dataset, fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """A validation split stratified on quantile bins of the (first) target, so it spans the range train has
    (plain random where the bins are too small to stratify)."""
    from sklearn.model_selection import train_test_split

    targets = label_matrix(train)[:, 0]
    rows = np.arange(len(train))
    validation_size = max(1, int(round(len(train) * fraction)))
    bins = min(10, validation_size, len(train) - validation_size)
    try:
        edges = np.quantile(targets, np.linspace(0, 1, bins + 1)[1:-1]) if bins > 1 else []
        strata = np.digitize(targets, edges)
        train_rows, validation_rows = train_test_split(
            rows, test_size=validation_size, random_state=seed, stratify=strata if bins > 1 else None
        )
    except ValueError:  # a bin with a single row
        train_rows, validation_rows = train_test_split(rows, test_size=validation_size, random_state=seed)
    return train.select(np.sort(train_rows).tolist()), train.select(np.sort(validation_rows).tolist())


def per_label(split: Dataset, n: int | None, seed: int) -> Dataset:
    """Few-shot multi-label: rows drawn in a seeded random order, each kept only while every label it carries has
    fewer than `n` positives kept (rows without a label count as one more class), so no label passes `n`; a label
    that mostly occurs beside a frequent one may end with fewer."""
    if n is None:
        return split
    labels = label_matrix(split) > 0.5
    counts = np.zeros(labels.shape[1] + 1, dtype=int)  # the last: rows without a label
    keep = []
    for row in np.random.default_rng(seed).permutation(len(split)):
        present = np.flatnonzero(labels[row]) if labels[row].any() else np.array([labels.shape[1]])
        if (counts[present] < n).all():
            counts[present] += 1
            keep.append(int(row))
    return split.select(sorted(keep))
