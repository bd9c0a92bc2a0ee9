"""The train rows that cross-validation folds and `rank` samples are cut from."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from datasets import Dataset

from hf_transfer.data.splits import load_splits
from hf_transfer.problems import SingleLabel

if TYPE_CHECKING:
    from hf_transfer.backbones import Backbone
    from hf_transfer.config.sections import DataConfig


def load_train_split(
    data: DataConfig, backbone: Backbone, seed: int, problem_type: str = SingleLabel.name
) -> tuple[Dataset, list[str]]:
    """The recipe's train rows with their labels (see `Splits`) and the label names, every row kept for the caller's
    own held-out parts (no validation carved); data.train_samples_per_class and data.max_train_samples still apply."""
    # Naming the train data as the validation source too makes load_splits carve nothing; that copy goes unused.
    if data.dataset:
        data = replace(data, validation_split=data.train_split, test_split=None)
    else:
        data = replace(data, validation_files=list(data.train_files), test_files=[])
    columns, fields = backbone.required_columns()
    splits = load_splits(data, columns, fields, seed, check_rows=backbone.check_rows, problem_type=problem_type)
    return splits.train, splits.label_names
