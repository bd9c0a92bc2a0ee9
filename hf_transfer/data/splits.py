"""Load a dataset through `datasets` into train / validation / test splits with integer labels and saved names.

Both modalities come through here; `text.py` and `images.py` add what is particular to their columns.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import datasets
from datasets import Dataset, DatasetDict

from hf_transfer.core.errors import DataError
from hf_transfer.problems import SingleLabel
from hf_transfer.problems import problem_type as problem_type_named

if TYPE_CHECKING:  # configs sit above data: the recipe asks data's input kinds for their rules
    from hf_transfer.config.sections import DataConfig

logger = logging.getLogger(__name__)

FILE_BUILDERS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


@dataclass
class Splits:
    """Train, validation (for model selection) and an optional held-out test split.

    The `labels` column holds what the problem type `problem_type` codes: single-label, the class id (int);
    multi-label, K floats 0.0/1.0 in the order of `label_names`; regression, T floats (the targets named by
    `label_names`, standardised with `target_scaling` = {"mean": [T], "std": [T]} when data.standardize_targets).
    """

    train: Dataset
    validation: Dataset
    test: Dataset | None
    label_names: list[str]
    validation_carved: bool = False
    problem_type: str = SingleLabel.name
    target_scaling: dict | None = None

    def items(self):
        yield "train", self.train
        yield "validation", self.validation
        if self.test is not None:
            yield "test", self.test


def builder_for(files: list[str], field: str) -> str:
    suffixes = {Path(f).suffix.lower() for f in files}
    builders = {FILE_BUILDERS.get(s) for s in suffixes}
    if None in builders:
        bad = next(f for f in files if Path(f).suffix.lower() not in FILE_BUILDERS)
        raise DataError(f"{field}: '{bad}' is not a csv, tsv, json, jsonl or parquet file; convert it or rename it.")
    if len(builders) > 1:
        raise DataError(f"{field}: files mix formats ({', '.join(sorted(suffixes))}); use one format per split.")
    return builders.pop()


def check_files_exist(files: list[str], field: str) -> None:
    for f in files:
        if not Path(f).is_file():
            raise DataError(f"{field}: file '{f}' does not exist; check the path (relative to where you run).")


def _load_local_files(cfg: DataConfig) -> DatasetDict:
    data_files = {"train": cfg.train_files}
    if cfg.validation_files:
        data_files["validation"] = cfg.validation_files
    if cfg.test_files:
        data_files["test"] = cfg.test_files
    for split, files in data_files.items():
        check_files_exist(files, f"data.{'eval' if split == 'test' else split}_files")
    # One load per split: splits may differ in columns, and the column check then names the file at fault.
    return DatasetDict(
        {
            split: load_files(files, f"data.{'eval' if split == 'test' else split}_files")
            for split, files in data_files.items()
        }
    )


def load_files(files: list[str], field: str, if_empty: str = "add some or leave the field out") -> Dataset:
    """Local csv/tsv/json/jsonl/parquet files as one Dataset; `if_empty` says what to do when they hold no rows."""
    builder = builder_for(files, field)
    kwargs = {"delimiter": "\t"} if all(f.lower().endswith(".tsv") for f in files) else {}
    try:
        return datasets.load_dataset(builder, data_files={"train": files}, split="train", **kwargs)
    except Exception as err:  # the parser's own words name the problem
        cause = err.__cause__ or err
        if "corresponds to no data" in str(cause):
            raise DataError(f"{field}: {', '.join(files)} holds no rows; {if_empty}.") from None
        raise DataError(
            f"{field}: {', '.join(files)} could not be read as {builder} ({str(cause).splitlines()[0]})."
        ) from None


def _load_hub_or_builder(cfg: DataConfig, trust_remote_code: bool = False) -> DatasetDict:
    kwargs = {}
    if cfg.data_dir:
        if not Path(cfg.data_dir).is_dir():
            raise DataError(f"data.data_dir: folder '{cfg.data_dir}' does not exist.")
        kwargs["data_dir"] = cfg.data_dir
    if cfg.test_files or cfg.validation_files:
        raise DataError("data.test_files and data.validation_files go with data.train_files, not data.dataset.")
    from hf_transfer.data.builtins import BUILTIN_DATASETS

    try:
        if cfg.dataset in BUILTIN_DATASETS:
            loaded = BUILTIN_DATASETS.get(cfg.dataset)(cfg.config)
        else:
            loaded = datasets.load_dataset(cfg.dataset, cfg.config, **kwargs)
    except FileNotFoundError as err:
        raise DataError(
            f"data.dataset '{cfg.dataset}' was not found locally or on the Hub ({str(err).splitlines()[0]}); "
            "check the id, or use data.train_files for local files."
        ) from None
    except ValueError as err:
        raise DataError(f"data.dataset '{cfg.dataset}': {str(err).splitlines()[0]}") from None
    except ConnectionError as err:
        raise DataError(
            f"data.dataset '{cfg.dataset}' needs the Hub, which cannot be reached ({err}); "
            "download it first or point data.train_files at local files."
        ) from None
    if not isinstance(loaded, DatasetDict):
        loaded = DatasetDict({"train": loaded})
    wanted = {"train": cfg.train_split}
    if cfg.validation_split:
        wanted["validation"] = cfg.validation_split
    if cfg.test_split:
        wanted["test"] = cfg.test_split
    out = {}
    for role, split in wanted.items():
        if split not in loaded:
            field = {"train": "train_split", "validation": "validation_split", "test": "test_split"}[role]
            raise DataError(
                f"data.{field}: split '{split}' is not in dataset '{cfg.dataset}'; it has {', '.join(loaded)}."
            )
        out[role] = loaded[split]
    return DatasetDict(out)


def load_raw_splits(cfg: DataConfig) -> DatasetDict:
    """train / validation? / test? as they are in the files or on the Hub."""
    raw = _load_hub_or_builder(cfg) if cfg.dataset else _load_local_files(cfg)
    for role, split in raw.items():
        if len(split) == 0:
            raise DataError(f"the {role} split ({_split_field(role, cfg)}) is empty; give it at least one row.")
    return raw


def _split_field(role: str, cfg: DataConfig) -> str:
    if cfg.dataset:
        name = {"train": cfg.train_split, "validation": cfg.validation_split, "test": cfg.test_split}[role]
        return f"split '{name}' of {cfg.dataset}"
    files = {"train": cfg.train_files, "validation": cfg.validation_files, "test": cfg.test_files}[role]
    return ", ".join(files)


def require_columns(raw: DatasetDict, columns: list[str], cfg: DataConfig, field_of: dict[str, str]) -> None:
    for role, split in raw.items():
        for column in columns:
            if column not in split.column_names:
                raise DataError(
                    f"column '{column}' ({field_of[column]}) is missing from {_split_field(role, cfg)}; "
                    f"its columns are {', '.join(split.column_names)} — set {field_of[column]} to one of them."
                )


def describe_split(role: str, cfg: DataConfig) -> str:
    """'the test split (data.test_files: a.csv)': where a row is, for messages."""
    if cfg.dataset:
        return f"the {role} split ({_split_field(role, cfg)})"
    field = {"train": "data.train_files", "validation": "data.validation_files", "test": "data.test_files"}[role]
    return f"the {role} split ({field}: {_split_field(role, cfg)})"


def limit(split: Dataset, n: int | None, seed: int) -> Dataset:
    if n is None or n >= len(split):
        return split
    return split.shuffle(seed=seed).select(range(n))


def load_splits(
    cfg: DataConfig,
    required_columns: list[str],
    field_of: dict[str, str],
    seed: int,
    check_rows: Callable[[DatasetDict], DatasetDict] | None = None,
    problem_type: str = SingleLabel.name,
) -> Splits:
    """The recipe's data as Splits: rows checked (`Backbone.check_rows`: images decode), columns checked, labels
    encoded, validation carved and few-shot rows kept as the problem type does it (class ids, multi-hot vectors or
    targets), sizes limited."""
    problem = problem_type_named(problem_type)
    raw = load_raw_splits(cfg)
    if check_rows is not None:
        raw = check_rows(raw)
    label_columns = problem.label_columns(cfg)
    label_field = problem.label_field(cfg)
    require_columns(raw, required_columns + label_columns, cfg, field_of | dict.fromkeys(label_columns, label_field))
    raw, names = problem.encode_targets(raw, cfg, {role: describe_split(role, cfg) for role in raw})
    train = raw["train"]
    carved = "validation" not in raw
    if carved:
        if len(train) < 4:
            raise DataError(f"train has {len(train)} rows, too few to carve a validation split; add rows.")
        train, validation = problem.carve_validation(train, cfg.validation_fraction, seed, names)
    else:
        validation = raw["validation"]
    train = limit(problem.limit_rows(train, cfg.train_samples_per_class, seed), cfg.max_train_samples, seed)
    validation = limit(validation, cfg.max_validation_samples, seed)
    test = limit(raw["test"], cfg.max_test_samples, seed) if "test" in raw else None
    # from the rows that train, so validation and test stay unseen
    scaling = problem.target_scaling(train, cfg)
    train, validation = problem.scale_targets(train, scaling), problem.scale_targets(validation, scaling)
    test = problem.scale_targets(test, scaling) if test is not None else None
    logger.info(
        "data: %d train, %d validation%s, %d %s",
        len(train),
        len(validation),
        f", {len(test)} test" if test is not None else "",
        len(names),
        problem.names_word,
    )
    return Splits(
        train=train,
        validation=validation,
        test=test,
        label_names=names,
        validation_carved=carved,
        problem_type=problem.name,
        target_scaling=scaling,
    )
