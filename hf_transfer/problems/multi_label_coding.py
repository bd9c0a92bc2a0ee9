"""Multi-label target coding: multi-hot rows from a list column (json / jsonl / parquet lists, a Hub
`Sequence(ClassLabel)` such as GoEmotions), a separated string (`data.label_separator`: "comedy|drama") or one 0/1
column per label (`data.label_columns`, Jigsaw style); iteratively stratified carving and few-shot rows per label.
The `labels` column of every split becomes K 0.0/1.0 floats in the order of the label names. Imported only where
splits are coded (it loads `datasets`)."""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict

from hf_transfer.core.errors import DataError
from hf_transfer.problems.base import label_columns_of
from hf_transfer.problems.label_coding import (
    MISSING,
    LabelCoding,
    declared_coding,
    is_integer_literal,
    label_matrix,
    label_value,
    list_inner_feature,
    names_of_values,
    numeric_column,
    with_float_vectors,
)

if TYPE_CHECKING:  # the settings sit above problems
    from hf_transfer.config.sections import DataConfig

logger = logging.getLogger(__name__)

# 0/1 columns as users export them: integers, floats, booleans, or their text in a CSV read as strings
TRUE_VALUES, FALSE_VALUES = {"1", "1.0", "true"}, {"0", "0.0", "false"}


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
        numbers = numeric_column(split, column)
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


def encode_multilabel(raw: DatasetDict, cfg: DataConfig, where_of: dict[str, str]) -> tuple[DatasetDict, list[str]]:
    """Every split's labels as multi-hot vectors in train's label order, and the label names. Rows without a label
    are counted (an error when data.allow_empty_labels is false); a label train never had is an error."""
    columns = label_columns_of(cfg)
    train_where = where_of["train"]
    if cfg.label_columns:
        names = list(cfg.label_columns)
        matrices = {role: _indicator_matrix(split, names, where_of[role]) for role, split in raw.items()}
    else:
        lists = {role: _label_lists(split, cfg, where_of[role]) for role, split in raw.items()}
        coding = _multilabel_coding(raw["train"], lists["train"], cfg, train_where)
        names = coding.names
        matrices = {}
        for role, rows in lists.items():
            where = where_of[role]
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
        where = where_of[role]
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


def encode_multilabel_like(split: Dataset, cfg: DataConfig, label_names: list[str], where: str) -> Dataset:
    """New data (`eval`) with a `labels` column of multi-hot rows in a trained run's label order (a label the run
    does not know is an error naming the row). `cfg` is the run's data section (its columns)."""
    columns = label_columns_of(cfg)
    if cfg.label_columns:
        return with_float_vectors(split, _indicator_matrix(split, columns, where), columns)
    lists = _label_lists(split, cfg, where)
    indexed = bool(cfg.label_names) or not all(is_integer_literal(n) for n in label_names)
    coding = LabelCoding(names=list(label_names), keys=list(label_names), indexed=indexed)
    known = f"which the run does not know; its labels are {', '.join(label_names)}."
    return with_float_vectors(split, _multi_hot(lists, coding, cfg.label_column, where, known), columns)


def _label_field(cfg: DataConfig) -> str:
    if cfg.label_columns:
        return f"columns {', '.join(cfg.label_columns)} (data.label_columns)"
    return f"column '{cfg.label_column}' (data.label_column)"


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
