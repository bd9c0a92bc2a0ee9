"""Load a dataset through `datasets` into train / validation / test splits with integer labels and saved names.

Both modalities come through here; `text.py` and `images.py` add what is particular to their columns.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import datasets
import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict

from hf_transfer.core.errors import DataError

if TYPE_CHECKING:  # configs sit above data: the recipe asks data's input kinds for their rules
    from hf_transfer.config.sections import DataConfig

logger = logging.getLogger(__name__)

FILE_BUILDERS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
LABEL = "labels"  # the column every prepared split carries: class ids, multi-hot vectors or targets (see Splits)


@dataclass
class Splits:
    """Train, validation (for model selection) and an optional held-out test split.

    The `labels` column holds, by `problem_type`: single_label_classification, the class id (int); multi_label_
    classification, K floats 0.0/1.0 in the order of `label_names`; regression, T floats (the targets named by
    `label_names`, standardised with `target_scaling` = {"mean": [T], "std": [T]} when data.standardize_targets).
    """

    train: Dataset
    validation: Dataset
    test: Dataset | None
    label_names: list[str]
    validation_carved: bool = False
    problem_type: str = "single_label_classification"
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


def names_of_values(distinct: set) -> list[str]:
    """Class names for the distinct label values train holds: integers in numeric order, else text order."""
    if all(isinstance(v, int) for v in distinct):
        return [str(v) for v in sorted(distinct)]
    # 1 and "1" in one column (JSON) are the same class; numeric strings sort as numbers, "2" before "10"
    texts = {str(v) for v in distinct}
    numeric = all(is_integer_literal(t) for t in texts)
    return sorted(texts, key=lambda t: (int(t), t)) if numeric else sorted(texts)


def encode_labels(raw: DatasetDict, cfg: DataConfig) -> tuple[DatasetDict, list[str]]:
    """Labels as class ids in a `labels` column of every split, all coded by train's classes (`coding_from_train`),
    and the class names in id order. A label in validation/test that train never saw is an error naming the row."""
    column = cfg.label_column
    coding = coding_from_train(raw["train"], cfg, describe_split("train", cfg))
    encoded, seen = {}, set()
    for role, split in raw.items():
        where = describe_split(role, cfg)
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


def carve_validation(train: Dataset, fraction: float, seed: int, label_names: list[str]) -> tuple[Dataset, Dataset]:
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
    problem_type: str = "single_label_classification",
) -> Splits:
    """The recipe's data as Splits: rows checked (`Backbone.check_rows`: images decode), columns checked, labels
    encoded (class ids, multi-hot vectors or targets, by `problem_type`), validation carved, sizes limited."""
    from hf_transfer.data import targets

    raw = load_raw_splits(cfg)
    if check_rows is not None:
        raw = check_rows(raw)
    single = problem_type == "single_label_classification"
    label_columns = [cfg.label_column] if single else targets.label_columns_of(cfg)
    label_field = "data.label_columns" if cfg.label_columns and not single else "data.label_column"
    require_columns(raw, required_columns + label_columns, cfg, field_of | dict.fromkeys(label_columns, label_field))
    if single:
        raw, names = encode_labels(raw, cfg)
    elif problem_type == targets.MULTI_LABEL:
        raw, names = targets.encode_multilabel(raw, cfg)
    else:
        raw, names = targets.encode_regression(raw, cfg)
    train = raw["train"]
    carved = "validation" not in raw
    if carved:
        if len(train) < 4:
            raise DataError(f"train has {len(train)} rows, too few to carve a validation split; add rows.")
        carve = {targets.MULTI_LABEL: targets.carve_multilabel, targets.REGRESSION: targets.carve_regression}
        if single:
            train, validation = carve_validation(train, cfg.validation_fraction, seed, names)
        else:
            train, validation = carve[problem_type](train, cfg.validation_fraction, seed)
    else:
        validation = raw["validation"]
    few_shot = targets.per_label if problem_type == targets.MULTI_LABEL else per_class
    if problem_type == targets.REGRESSION and cfg.train_samples_per_class is not None:
        raise DataError(
            "data.train_samples_per_class keeps rows per class, which regression has none of; use "
            "data.max_train_samples instead."
        )
    train = limit(few_shot(train, cfg.train_samples_per_class, seed), cfg.max_train_samples, seed)
    validation = limit(validation, cfg.max_validation_samples, seed)
    test = limit(raw["test"], cfg.max_test_samples, seed) if "test" in raw else None
    scaling = None
    if problem_type == targets.REGRESSION and cfg.standardize_targets:
        # from the rows that train, so validation and test stay unseen
        scaling = targets.target_scaling_of(train)
        train, validation = targets.standardize(train, scaling), targets.standardize(validation, scaling)
        test = targets.standardize(test, scaling) if test is not None else None
    logger.info(
        "data: %d train, %d validation%s, %d %s",
        len(train),
        len(validation),
        f", {len(test)} test" if test is not None else "",
        len(names),
        {targets.MULTI_LABEL: "labels", targets.REGRESSION: "targets"}.get(problem_type, "classes"),
    )
    return Splits(
        train=train,
        validation=validation,
        test=test,
        label_names=names,
        validation_carved=carved,
        problem_type=problem_type,
        target_scaling=scaling,
    )
