"""What the problem types share to code a split's `labels` column: raw label values, a class coding, and the Arrow
helpers that write and read the column. Imported only where splits are coded (it loads `datasets` and pyarrow).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import ClassLabel, Dataset

from hf_transfer.core.errors import DataError
from hf_transfer.problems.base import LABEL

if TYPE_CHECKING:  # the settings sit above problems
    from hf_transfer.config.sections import DataConfig

MISSING = object()  # a label cell that holds nothing: None, NaN or a blank string


def label_value(value):
    """A raw label as an int or a string, MISSING, or None where it is neither (a float with a fraction, a bool,
    a list). Integral floats are ints: a CSV integer column with one blank cell is read as floats."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return MISSING
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        if np.isnan(value):
            return MISSING
        return int(value) if float(value).is_integer() else None
    return value if isinstance(value, str) else None


def is_integer_literal(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class LabelCoding:
    """How raw label values become class ids, the same way in every split (and when a trained run evaluates).

    `names` are the class names in id order. A raw value is matched by name (`keys`: a ClassLabel's own names, else
    `names`); where `indexed` (data.label_names given, or a ClassLabel) an integer is also an id into `names`.
    Without `indexed`, integer labels are values like any other: {1, 2} are the classes "1" and "2", never an id.
    """

    names: list[str]
    keys: list[str]
    indexed: bool

    def id_of(self, value) -> int | None:
        """The class id of a `label_value`, or None if no class has it."""
        if isinstance(value, int) and self.indexed:
            return value if 0 <= value < len(self.names) else None
        text = str(value)
        if text in self._index:
            return self._index[text]
        if self.indexed and is_integer_literal(text) and 0 <= int(text) < len(self.names):
            return int(text)  # an id written as text (a quoted JSON number, a CSV column with a stray word)
        return None

    @cached_property
    def _index(self) -> dict[str, int]:
        return {key: i for i, key in enumerate(self.keys)}

    def encode(self, split: Dataset, column: str, where: str, unknown: str | None = None) -> list[int]:
        """The class id of every row of `split`; a row without a label, or with a label no class has, is an error
        naming the row and `where` (the split and its files); `unknown` says what is wrong with such a label."""
        feature = split.features.get(column)
        values = split[column]
        if isinstance(feature, ClassLabel):
            # -1 is datasets' "no label" (the unlabelled test splits of GLUE and others)
            values = [feature.names[v] if v is not None and v >= 0 else None for v in values]
        ids = []
        for row, raw in enumerate(values):
            value = label_value(raw)
            if value is MISSING:
                raise DataError(f"row {row} of {where} has no label in column '{column}'; fill it in or drop the row.")
            class_id = None if value is None else self.id_of(value)
            if class_id is None:
                raise DataError(
                    f"row {row} of {where} has label {raw!r}, "
                    + (unknown or f"which train never saw; known labels are {', '.join(self.names)}.")
                )
            ids.append(class_id)
        return ids


def declared_coding(feature, cfg: DataConfig, unit: str) -> LabelCoding | None:
    """The coding the data or the recipe declares (a ClassLabel keeps its names; with data.label_names integers are
    ids into it), or None when the names must be gathered from the values; `unit` is "class" or "label"."""
    if isinstance(feature, ClassLabel):
        names = list(feature.names)
        if cfg.label_names and len(cfg.label_names) != len(names):
            plural = "classes" if unit == "class" else "labels"
            raise DataError(
                f"data.label_names has {len(cfg.label_names)} names but the dataset has {len(names)} {plural} "
                f"({', '.join(names)}); give one name per {unit}, in that order, or leave data.label_names out."
            )
        return LabelCoding(names=list(cfg.label_names or names), keys=names, indexed=True)
    if cfg.label_names:
        if len(set(cfg.label_names)) != len(cfg.label_names):
            names = ", ".join(cfg.label_names)
            raise DataError(f"data.label_names repeats a name ({names}); give each {unit} its own.")
        return LabelCoding(names=list(cfg.label_names), keys=list(cfg.label_names), indexed=True)
    return None


def names_of_values(distinct: set) -> list[str]:
    """Class names for the distinct label values train holds: integers in numeric order, else text order."""
    if all(isinstance(v, int) for v in distinct):
        return [str(v) for v in sorted(distinct)]
    # 1 and "1" in one column (JSON) are the same class; numeric strings sort as numbers, "2" before "10"
    texts = {str(v) for v in distinct}
    numeric = all(is_integer_literal(t) for t in texts)
    return sorted(texts, key=lambda t: (int(t), t)) if numeric else sorted(texts)


def with_label_ids(split: Dataset, ids: list[int]) -> Dataset:
    """`split` with its `labels` column set to the class ids `ids`, as int64."""
    if LABEL in split.column_names:
        split = split.remove_columns(LABEL)
    # Not add_column(feature=...): that argument is newer than the datasets floor. Python ints arrive as int64;
    # only a column with nothing to infer from needs the cast.
    split = split.add_column(LABEL, ids)
    if split.features[LABEL] != datasets.Value("int64"):
        split = split.cast_column(LABEL, datasets.Value("int64"))
    return split


def list_inner_feature(feature):
    """The element feature of a list feature (`Sequence`, `List`, or datasets' `[feature]` form), else None."""
    if isinstance(feature, list) and len(feature) == 1:
        return feature[0]
    list_types = tuple(t for t in (getattr(datasets, "List", None), datasets.Sequence) if isinstance(t, type))
    if isinstance(feature, list_types):
        return feature.feature
    return None


def numeric_column(split: Dataset, column: str) -> np.ndarray | None:
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


def label_ids(split: Dataset) -> np.ndarray:
    """The class ids of a single-label split's `labels` column, read from Arrow."""
    stored = split.select_columns([LABEL]).with_format("arrow")[LABEL]
    return np.asarray(stored.to_numpy(zero_copy_only=False), dtype=np.int64)
