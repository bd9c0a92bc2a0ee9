"""Regression target coding: one numeric column (`data.label_column`) or several (`data.label_columns`) as T floats
per row, named after their columns; a cell that is not a finite number is an error naming its column and row
(nothing is cast or dropped silently). Carving stratified on quantile bins; standardising on train. Imported only
where splits are coded (it loads `datasets`)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from datasets import Dataset, DatasetDict

from hf_transfer.core.errors import DataError
from hf_transfer.problems.base import label_columns_of
from hf_transfer.problems.label_coding import label_matrix, numeric_column, with_float_vectors

if TYPE_CHECKING:  # the settings sit above problems
    from hf_transfer.config.sections import DataConfig


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
        numbers = numeric_column(split, column)
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


def encode_regression(raw: DatasetDict, cfg: DataConfig, where_of: dict[str, str]) -> tuple[DatasetDict, list[str]]:
    """Every split's targets as a list of T floats, and the target names (the columns). A cell that is not a finite
    number is an error naming its column and row: nothing is cast or dropped silently."""
    columns = label_columns_of(cfg)
    field = "data.label_columns" if cfg.label_columns else "data.label_column"
    encoded = {
        role: with_float_vectors(split, _target_matrix(split, columns, field, where_of[role]), columns)
        for role, split in raw.items()
    }
    return DatasetDict(encoded), columns


def encode_regression_like(split: Dataset, cfg: DataConfig, where: str) -> Dataset:
    """New data (`eval`) with a `labels` column of the targets in the data's own units (compare them with the
    predictions put back in those units). `cfg` is the run's data section (its columns)."""
    columns = label_columns_of(cfg)
    field = "data.label_columns" if cfg.label_columns else "data.label_column"
    return with_float_vectors(split, _target_matrix(split, columns, field, where), columns)


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
