"""Single-label target coding: class ids from any label column (ClassLabel, strings, integers), stratified
carving and few-shot rows per class. Imported only where splits are coded (it loads `datasets`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import datasets
import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict

from hf_transfer.core.errors import DataError
from hf_transfer.problems.base import LABEL
from hf_transfer.problems.label_coding import (
    MISSING,
    LabelCoding,
    declared_coding,
    is_integer_literal,
    label_value,
    names_of_values,
    with_label_ids,
)

if TYPE_CHECKING:  # the settings sit above problems
    from hf_transfer.config.sections import DataConfig


def coding_from_train(train: Dataset, cfg: DataConfig, where: str) -> LabelCoding:
    """The classes as train defines them: a ClassLabel keeps its names; with data.label_names integers are ids into
    it; otherwise the classes are the distinct values that occur, in numeric order for integers, else text order,
    each named by its own value."""
    column = cfg.label_column
    declared = declared_coding(train.features.get(column), cfg, "class")
    if declared is not None:
        return declared
    values = []
    for row, raw in enumerate(train[column]):
        value = label_value(raw)
        if value is MISSING:
            raise DataError(f"row {row} of {where} has no label in column '{column}'; fill it in or drop the row.")
        if value is None:
            raise DataError(
                f"row {row} of {where} has label {raw!r} in column '{column}'; labels must be strings or integers."
            )
        values.append(value)
    names = names_of_values(set(values))
    return LabelCoding(names=names, keys=names, indexed=False)


def encode_labels(raw: DatasetDict, cfg: DataConfig, where_of: dict[str, str]) -> tuple[DatasetDict, list[str]]:
    """Labels as class ids in a `labels` column of every split, all coded by train's classes (`coding_from_train`),
    and the class names in id order. A label in validation/test that train never saw is an error naming the row."""
    column = cfg.label_column
    coding = coding_from_train(raw["train"], cfg, where_of["train"])
    encoded, seen = {}, set()
    for role, split in raw.items():
        where = where_of[role]
        unknown = None
        if role == "train" and coding.indexed:
            unknown = (
                f"which is not one of the {len(coding.names)} class names ({', '.join(coding.names)}) nor an id "
                f"0..{len(coding.names) - 1} into them; fix the row or data.label_names."
            )
        ids = coding.encode(split, column, where, unknown)
        if role == "train":
            seen = set(ids)
            if len(seen) < 2:
                raise DataError(f"train has a single class ({coding.names[ids[0]]}); a classifier needs at least two.")
        else:
            unseen = next((row for row, i in enumerate(ids) if i not in seen), None)
            if unseen is not None:
                raise DataError(
                    f"row {unseen} of {where} has label {split[column][unseen]!r}, which train never saw; "
                    f"known labels are {', '.join(coding.names[i] for i in sorted(seen))}."
                )
        split = with_label_ids(split, ids)
        if column != LABEL and column in split.column_names:
            split = split.remove_columns(column)
        encoded[role] = split
    return DatasetDict(encoded), coding.names


def coding_of_run(label_names: list[str], label_names_given: bool) -> LabelCoding:
    """How a trained run reads labels of new data: by name; integers are ids only where the run's names were not
    integer values themselves (data.label_names, a ClassLabel, string classes), so that a run trained on {1, 2}
    never reads 0 as its class "1"."""
    indexed = label_names_given or not all(is_integer_literal(n) for n in label_names)
    return LabelCoding(names=list(label_names), keys=list(label_names), indexed=indexed)


def encode_labels_like(split: Dataset, column: str, coding: LabelCoding, where: str) -> Dataset:
    """`split` with a `labels` column of a trained run's class ids (see `coding_of_run`)."""
    return with_label_ids(split, coding.encode(split, column, where))


def carve_stratified(train: Dataset, fraction: float, seed: int, label_names: list[str]) -> tuple[Dataset, Dataset]:
    """A stratified validation split from train (plain random when a class is too small to stratify).

    Stratifying needs a ClassLabel column; casting to one with the classes' own names keeps every id as it is
    (`class_encode_column` would re-code them by their text order: "10" before "2").
    """
    classes = train.cast_column(LABEL, ClassLabel(names=list(label_names)))
    try:
        parts = classes.train_test_split(test_size=fraction, seed=seed, stratify_by_column=LABEL)
    except ValueError:
        parts = classes.train_test_split(test_size=fraction, seed=seed)
    cast = datasets.Value("int64")
    return parts["train"].cast_column(LABEL, cast), parts["test"].cast_column(LABEL, cast)


def per_class(split: Dataset, n: int | None, seed: int) -> Dataset:
    """At most `n` rows of each class, drawn at random (a few-shot training set)."""
    if n is None:
        return split
    rng = np.random.default_rng(seed)
    labels = np.asarray(split[LABEL])
    keep = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:n] for c in np.unique(labels)])
    return split.select(np.sort(keep).tolist())
