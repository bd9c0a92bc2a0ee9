"""Load a dataset through `datasets` into train / validation / test splits with integer labels and saved names.

Both modalities come through here; `text.py` and `image.py` add what is particular to their columns.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict

from hf_transfer.errors import DataError
from hf_transfer.recipe import DataConfig

logger = logging.getLogger(__name__)

FILE_BUILDERS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
LABEL = "labels"  # the column every prepared split carries: integer class ids


@dataclass
class Splits:
    """Train, validation (for model selection) and an optional held-out test split, labels as integers."""

    train: Dataset
    validation: Dataset
    test: Dataset | None
    label_names: list[str]
    validation_carved: bool = False

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
    if cfg.eval_files:
        data_files["test"] = cfg.eval_files
    for split, files in data_files.items():
        check_files_exist(files, f"data.{'eval' if split == 'test' else split}_files")
    # One load per split: splits may differ in columns, and the column check then names the file at fault.
    return DatasetDict(
        {
            split: load_files(files, f"data.{'eval' if split == 'test' else split}_files")
            for split, files in data_files.items()
        }
    )


def load_files(files: list[str], field: str) -> Dataset:
    """Local csv/tsv/json/jsonl/parquet files as one Dataset."""
    builder = builder_for(files, field)
    kwargs = {"delimiter": "\t"} if all(f.lower().endswith(".tsv") for f in files) else {}
    try:
        return datasets.load_dataset(builder, data_files={"train": files}, split="train", **kwargs)
    except Exception as err:  # the parser's own words name the problem
        cause = err.__cause__ or err
        if "corresponds to no data" in str(cause):
            raise DataError(f"{field}: {', '.join(files)} holds no rows; add some or leave the field out.") from None
        raise DataError(
            f"{field}: {', '.join(files)} could not be read as {builder} ({str(cause).splitlines()[0]})."
        ) from None


def _load_hub_or_builder(cfg: DataConfig, trust_remote_code: bool = False) -> DatasetDict:
    kwargs = {}
    if cfg.data_dir:
        if not Path(cfg.data_dir).is_dir():
            raise DataError(f"data.data_dir: folder '{cfg.data_dir}' does not exist.")
        kwargs["data_dir"] = cfg.data_dir
    if cfg.eval_files or cfg.validation_files:
        raise DataError("data.eval_files and data.validation_files go with data.train_files, not data.dataset.")
    from hf_transfer.data.images import BUILTIN_DATASETS  # built offline by the package: sklearn:digits

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
    if cfg.eval_split:
        wanted["test"] = cfg.eval_split
    out = {}
    for role, split in wanted.items():
        if split not in loaded:
            field = {"train": "train_split", "validation": "validation_split", "test": "eval_split"}[role]
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
        name = {"train": cfg.train_split, "validation": cfg.validation_split, "test": cfg.eval_split}[role]
        return f"split '{name}' of {cfg.dataset}"
    files = {"train": cfg.train_files, "validation": cfg.validation_files, "test": cfg.eval_files}[role]
    return ", ".join(files)


def require_columns(raw: DatasetDict, columns: list[str], cfg: DataConfig, field_of: dict[str, str]) -> None:
    for role, split in raw.items():
        for column in columns:
            if column not in split.column_names:
                raise DataError(
                    f"column '{column}' ({field_of[column]}) is missing from {_split_field(role, cfg)}; "
                    f"its columns are {', '.join(split.column_names)} — set {field_of[column]} to one of them."
                )


def encode_labels(raw: DatasetDict, cfg: DataConfig) -> tuple[DatasetDict, list[str]]:
    """Labels as integer ids in a `labels` column, and the label names in id order.

    A ClassLabel feature keeps its names; string labels are sorted; integers must be 0..K-1 and take names from
    `data.label_names` (or their own digits). A label in validation/test that train never saw is an error.
    """
    column = cfg.label_column
    train = raw["train"]
    feature = train.features.get(column)
    if isinstance(feature, ClassLabel):
        names = list(feature.names)
        if cfg.label_names:
            if len(cfg.label_names) != len(names):
                raise DataError(
                    f"data.label_names has {len(cfg.label_names)} names but the dataset has {len(names)} classes."
                )
            names = list(cfg.label_names)
        seen = set(train[column])
        to_id = None
    else:
        values = train[column]
        if any(v is None for v in values):
            row = next(i for i, v in enumerate(values) if v is None)
            raise DataError(f"row {row} of {_split_field('train', cfg)} has no label in column '{column}'.")
        if all(isinstance(v, bool) for v in values) or not all(isinstance(v, (int, str)) for v in values):
            bad = next(v for v in values if isinstance(v, bool) or not isinstance(v, (int, str)))
            raise DataError(f"column '{column}' holds {bad!r}; labels must be strings or integers.")
        if all(isinstance(v, int) for v in values):
            ids = sorted(set(values))
            k = max(ids) + 1
            if min(ids) < 0:
                raise DataError(f"column '{column}' holds a negative label {min(ids)}; use 0..K-1 or strings.")
            names = list(cfg.label_names) if cfg.label_names else [str(i) for i in range(k)]
            if len(names) < k:
                raise DataError(f"data.label_names has {len(names)} names but train has labels up to {k - 1}.")
            seen = set(ids)
            to_id = None
        else:
            str_values = [str(v) for v in values]
            names = list(cfg.label_names) if cfg.label_names else sorted(set(str_values))
            unknown = sorted(set(str_values) - set(names))
            if unknown:
                raise DataError(f"label '{unknown[0]}' in train is not among data.label_names ({', '.join(names)}).")
            seen = {names.index(v) for v in set(str_values)}
            to_id = {name: i for i, name in enumerate(names)}
    if len(seen) < 2:
        raise DataError(f"train has a single class ({names[next(iter(seen))]}); a classifier needs at least two.")

    encoded = {}
    for role, split in raw.items():
        values = split[column]
        if to_id is None:
            ids = [int(v) if v is not None else -1 for v in values]
            bad_rows = [i for i, v in enumerate(ids) if not 0 <= v < len(names)]
        else:
            ids = [to_id.get(str(v), -1) for v in values]
            bad_rows = [i for i, v in enumerate(ids) if v < 0]
        if not bad_rows and role != "train":
            unseen = sorted(set(ids) - seen)
            bad_rows = [ids.index(unseen[0])] if unseen else []
        if bad_rows:
            row = bad_rows[0]
            raise DataError(
                f"row {row} of {_split_field(role, cfg)} has label {values[row]!r}, which train never saw; "
                f"known labels are {', '.join(names)}."
            )
        if LABEL in split.column_names and column != LABEL:
            split = split.remove_columns(LABEL)
        split = split.add_column(LABEL, ids) if column != LABEL else split.cast_column(LABEL, datasets.Value("int64"))
        if column != LABEL:
            split = split.remove_columns(column)
        encoded[role] = split
    return DatasetDict(encoded), names


def encode_labels_like(split: Dataset, column: str, label_names: list[str], where: str) -> Dataset:
    """`split` with a `labels` column of ids of a trained run's `label_names` (a name, or an integer id)."""
    feature = split.features.get(column)
    values = split[column]
    if isinstance(feature, ClassLabel):
        values = [feature.names[v] for v in values]
    index = {name: i for i, name in enumerate(label_names)}
    ids = []
    for row, value in enumerate(values):
        if str(value) in index:
            ids.append(index[str(value)])
        elif isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(label_names):
            ids.append(value)
        else:
            raise DataError(
                f"row {row} of {where} has label {value!r}, which the run never saw; "
                f"known labels are {', '.join(label_names)}."
            )
    if LABEL in split.column_names:
        split = split.remove_columns(LABEL)
    return split.add_column(LABEL, ids)


def carve_validation(train: Dataset, fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """A stratified validation split from train (plain random when a class is too small to stratify)."""
    try:
        parts = train.class_encode_column(LABEL).train_test_split(
            test_size=fraction, seed=seed, stratify_by_column=LABEL
        )
    except ValueError:
        parts = train.train_test_split(test_size=fraction, seed=seed)
    cast = datasets.Value("int64")
    return parts["train"].cast_column(LABEL, cast), parts["test"].cast_column(LABEL, cast)


def limit(split: Dataset, n: int | None, seed: int) -> Dataset:
    if n is None or n >= len(split):
        return split
    return split.shuffle(seed=seed).select(range(n))


def per_class(split: Dataset, n: int | None, seed: int) -> Dataset:
    """At most `n` rows of each class, drawn at random (a few-shot training set)."""
    if n is None:
        return split
    rng = np.random.default_rng(seed)
    labels = np.asarray(split[LABEL])
    keep = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:n] for c in np.unique(labels)])
    return split.select(np.sort(keep).tolist())


def load_splits(
    cfg: DataConfig,
    required_columns: list[str],
    field_of: dict[str, str],
    seed: int,
    check_rows: Callable[[DatasetDict], DatasetDict] | None = None,
) -> Splits:
    """The recipe's data as Splits: rows checked (`Backbone.check_rows`: images decode), columns checked, labels
    encoded, validation carved, sizes limited."""
    raw = load_raw_splits(cfg)
    if check_rows is not None:
        raw = check_rows(raw)
    require_columns(
        raw, required_columns + [cfg.label_column], cfg, field_of | {cfg.label_column: "data.label_column"}
    )
    raw, names = encode_labels(raw, cfg)
    train = raw["train"]
    carved = "validation" not in raw
    if carved:
        if len(train) < 4:
            raise DataError(f"train has {len(train)} rows, too few to carve a validation split; add rows.")
        train, validation = carve_validation(train, cfg.validation_fraction, seed)
    else:
        validation = raw["validation"]
    train = limit(per_class(train, cfg.train_samples_per_class, seed), cfg.max_train_samples, seed)
    validation = limit(validation, cfg.max_eval_samples, seed)
    test = limit(raw["test"], cfg.max_eval_samples, seed) if "test" in raw else None
    logger.info(
        "data: %d train, %d validation%s, %d classes",
        len(train),
        len(validation),
        f", {len(test)} test" if test is not None else "",
        len(names),
    )
    return Splits(train=train, validation=validation, test=test, label_names=names, validation_carved=carved)
