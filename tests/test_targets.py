"""Multi-label and regression data in the shapes real datasets come in, read from files the tests write, through
`load_splits` (the `Splits` contract: multi-hot or target vectors in `labels`, names in order, scaling saved)."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Sequence, Value
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from hf_transfer.config.recipe import recipe_from_dict
from hf_transfer.config.sections import DataConfig
from hf_transfer.core.errors import DataError, RecipeError
from hf_transfer.data.builtins import BUILTIN_DATASETS, DIGITS_CELL, DIGITS_GRID, paste_digits
from hf_transfer.data.splits import load_splits
from hf_transfer.problems import problem_type as problem_named
from hf_transfer.problems import problem_type_names

MULTI, REGRESSION = "multi_label_classification", "regression"
TEXT_FIELDS = {"text": "data.text_column"}


def write(path: Path, rows: list[dict]) -> str:
    """rows as csv (typed by the reader, as an export would be), jsonl, or parquet (pandas infers list columns)."""
    if path.suffix == ".csv":
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    else:
        pd.DataFrame(rows).to_parquet(path)
    return str(path)


def load(folder: Path, parts: dict[str, list[dict]], suffix: str, problem_type: str = MULTI, seed: int = 0, **data):
    files = {role: [write(folder / f"{role}{suffix}", rows)] for role, rows in parts.items()}
    cfg = DataConfig(
        train_files=files["train"],
        validation_files=files.get("validation", []),
        test_files=files.get("test", []),
        **data,
    )
    return load_splits(cfg, ["text"], TEXT_FIELDS, seed, problem_type=problem_type)


def multi_hot(split, names: list[str]) -> dict[str, set[str]]:
    """text -> the set of label names its multi-hot row switches on."""
    return {
        text: {names[k] for k, v in enumerate(row) if v == 1.0} for text, row in zip(split["text"], split["labels"])
    }


# --------------------------------------------------------------------------------------------------------------------
# Multi-label shapes
# --------------------------------------------------------------------------------------------------------------------

GENRES = [["comedy", "drama"], ["drama"], [], ["horror", "comedy"], ["drama", "horror"], ["comedy"]]


def genre_rows(tag: str, lists=GENRES) -> list[dict]:
    return [{"text": f"{tag} {i}", "label": labels} for i, labels in enumerate(lists)]


def test_a_separated_csv_string_becomes_multi_hot_and_empty_cells_are_counted(tmp_path, caplog):
    def rows(tag):
        return [{"text": r["text"], "label": "|".join(r["label"])} for r in genre_rows(tag)]

    with caplog.at_level(logging.INFO):
        splits = load(tmp_path, {"train": rows("tr"), "validation": rows("va")}, ".csv", label_separator="|")
    assert splits.problem_type == MULTI and splits.target_scaling is None
    assert splits.label_names == ["comedy", "drama", "horror"]
    assert multi_hot(splits.train, splits.label_names) == {f"tr {i}": set(g) for i, g in enumerate(GENRES)}
    assert all(len(row) == 3 and set(row) <= {0.0, 1.0} for row in splits.train["labels"])
    assert sum(not any(row) for row in splits.train["labels"]) == 1
    assert "1 of 6 rows have no label" in caplog.text


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_list_columns_of_strings_are_read_from_jsonl_and_parquet(tmp_path, suffix):
    splits = load(tmp_path, {"train": genre_rows("tr"), "test": genre_rows("te")}, suffix)
    assert splits.label_names == ["comedy", "drama", "horror"]
    for split, tag in ((splits.train, "tr"), (splits.validation, "tr"), (splits.test, "te")):
        expected = {f"{tag} {i}": set(g) for i, g in enumerate(GENRES)}
        assert all(expected[text] == labels for text, labels in multi_hot(split, splits.label_names).items())


def test_integer_labels_are_ordered_as_numbers_and_label_names_make_them_ids(tmp_path):
    lists = [[2, 10], [10], [1, 2], [1]]
    rows = [{"text": f"t {i}", "label": labels} for i, labels in enumerate(lists)]
    splits = load(tmp_path, {"train": rows, "validation": rows}, ".jsonl")
    assert splits.label_names == ["1", "2", "10"]  # "2" before "10", as the single-label coding orders them
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
    named = load(tmp_path, {"train": rows, "validation": rows}, ".jsonl", label_names=names)
    assert named.label_names == names  # given names kept in order, unused ones included
    assert multi_hot(named.train, names)["t 0"] == {"two", "ten"}


def test_a_hub_sequence_of_class_labels_keeps_the_feature_names(tmp_path):
    names = ["joy", "anger", "admiration"]  # GoEmotions-style: not in text order, ids must not be re-sorted
    features = Features({"text": Value("string"), "label": Sequence(ClassLabel(names=names))})
    ids = [[0, 2], [1], [], [2], [0, 1, 2], [0]]
    for role in ("train", "test"):
        Dataset.from_dict(
            {"text": [f"{role} {i}" for i in range(len(ids))], "label": ids}, features=features
        ).to_parquet(tmp_path / f"{role}.parquet")
    cfg = DataConfig(train_files=[str(tmp_path / "train.parquet")], test_files=[str(tmp_path / "test.parquet")])
    splits = load_splits(cfg, ["text"], TEXT_FIELDS, 0, problem_type=MULTI)
    assert splits.label_names == names
    expected = {f"test {i}": {names[k] for k in row} for i, row in enumerate(ids)}
    assert multi_hot(splits.test, names) == expected


def test_zero_one_columns_are_named_after_the_columns(tmp_path):
    rows = [
        {"text": "a", "toxic": 1, "insult": 0, "threat": 0},
        {"text": "b", "toxic": 1, "insult": 1, "threat": 0},
        {"text": "c", "toxic": 0, "insult": 0, "threat": 1},
        {"text": "d", "toxic": 0, "insult": 0, "threat": 0},
    ]
    as_words = [{k: ({1: "true", 0: "false"}[v] if k != "text" else v) for k, v in r.items()} for r in rows]
    splits = load(
        tmp_path,
        {"train": rows, "validation": as_words},
        ".jsonl",
        label_columns=["toxic", "insult", "threat"],
    )
    assert splits.label_names == ["toxic", "insult", "threat"]  # the recipe's order, not sorted
    assert splits.train["labels"] == [[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 0, 0]]
    assert splits.validation["labels"] == splits.train["labels"]  # true/false read as 1/0
    assert not {"toxic", "insult", "threat"} & set(splits.train.column_names)


def test_new_data_is_read_with_a_trained_runs_label_order(tmp_path):
    """What `eval` needs: new rows coded in the run's label order, a label it does not know named with its row."""
    cfg = DataConfig(train_files=["unused.jsonl"])
    split = Dataset.from_dict({"text": ["a", "b"], "label": [["horror"], ["drama", "comedy"]]})
    names = ["drama", "horror", "comedy"]  # the run's order, not the data's
    encoded = problem_named(MULTI).encode_targets_like(split, cfg, names, "new.jsonl")
    assert encoded["labels"] == [[0, 1, 0], [1, 0, 1]]
    unknown = Dataset.from_dict({"text": ["a"], "label": [["western"]]})
    with pytest.raises(DataError, match=r"row 0 of new.jsonl has label 'western' in column 'label', which the run"):
        problem_named(MULTI).encode_targets_like(unknown, cfg, names, "new.jsonl")
    targets = Dataset.from_dict({"text": ["a"], "score": ["2.5"]})
    regression = DataConfig(train_files=["unused.jsonl"], label_column="score", standardize_targets=True)
    assert problem_named(REGRESSION).encode_targets_like(targets, regression, ["score"], "new.csv")["labels"] == [
        [2.5]
    ]


# --------------------------------------------------------------------------------------------------------------------
# Multi-label errors: one line naming the column and the row
# --------------------------------------------------------------------------------------------------------------------


def test_a_label_column_value_that_is_not_zero_or_one_names_column_and_row(tmp_path):
    rows = [{"text": "a", "toxic": 1, "insult": 0}, {"text": "b", "toxic": 0, "insult": "yes"}]
    with pytest.raises(DataError, match=r"row 1 of the train split .* has 'yes' in column 'insult'") as err:
        load(tmp_path, {"train": rows * 3}, ".csv", label_columns=["toxic", "insult"])
    assert "\n" not in str(err.value)


def test_a_label_column_no_train_row_has_is_refused_in_validation(tmp_path):
    train = [{"text": "a", "toxic": 1, "insult": 0}, {"text": "b", "toxic": 0, "insult": 0}]
    validation = [{"text": "c", "toxic": 0, "insult": 0}, {"text": "d", "toxic": 1, "insult": 1}]
    with pytest.raises(DataError, match=r"row 1 of the validation split .* label 'insult' in column 'insult', which"):
        load(tmp_path, {"train": train, "validation": validation}, ".jsonl", label_columns=["toxic", "insult"])


def test_rows_without_a_label_are_an_error_when_the_recipe_forbids_them(tmp_path):
    with pytest.raises(DataError, match=r"row 2 of .*train.csv\) has no label in column 'label'.*allow_empty_labels"):
        load(
            tmp_path,
            {"train": [{"text": r["text"], "label": "|".join(r["label"])} for r in genre_rows("tr")]},
            ".csv",
            label_separator="|",
            allow_empty_labels=False,
        )


def test_a_test_label_train_never_had_names_split_file_column_and_row(tmp_path):
    test_rows = genre_rows("te", [["drama"], ["comedy", "western"]])
    with pytest.raises(DataError) as err:
        load(tmp_path, {"train": genre_rows("tr"), "test": test_rows}, ".jsonl")
    message = str(err.value)
    assert "row 1 of the test split (data.test_files:" in message and "test.jsonl" in message
    assert "'western' in column 'label'" in message and "train never had" in message


def test_a_named_label_no_train_row_has_is_refused_in_test(tmp_path):
    names = ["comedy", "drama", "horror", "western"]
    test_rows = genre_rows("te", [["drama"], ["western"]])
    with pytest.raises(DataError, match=r"row 1 of the test split .* 'western' in column 'label', which no train"):
        load(tmp_path, {"train": genre_rows("tr"), "test": test_rows}, ".jsonl", label_names=names)


def test_a_train_label_outside_label_names_is_an_error(tmp_path):
    with pytest.raises(DataError, match=r"row 0 of the train split .* label 'comedy' in column 'label'.*label_names"):
        load(tmp_path, {"train": genre_rows("tr")}, ".jsonl", label_names=["drama", "horror"])


def test_a_single_string_without_a_separator_asks_for_one(tmp_path):
    rows = [{"text": "a", "label": "comedy|drama"}] * 4
    with pytest.raises(DataError, match=r"row 0 .* column 'label' .*data.label_separator"):
        load(tmp_path, {"train": rows}, ".csv")


# --------------------------------------------------------------------------------------------------------------------
# Property: a multi-hot matrix written as separated strings reads back unchanged
# --------------------------------------------------------------------------------------------------------------------

LABEL_WORDS = ["action", "b", "crime", "doc", "epic", "family", "gore", "heist"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    matrix=st.integers(1, 8).flatmap(
        lambda k: arrays(np.int8, st.tuples(st.integers(2, 12), st.just(k)), elements=st.integers(0, 1))
    ),
    separator=st.sampled_from(["|", ";", ","]),
    given_names=st.booleans(),
)
def test_any_multi_hot_matrix_survives_the_separated_string(tmp_path_factory, matrix, separator, given_names):
    names = LABEL_WORDS[: matrix.shape[1]]
    if not matrix.any():
        matrix[0, 0] = 1  # a train split without a single label is refused
    rows = [
        {"text": f"r {i}", "label": separator.join(n for n, v in zip(names, row) if v)} for i, row in enumerate(matrix)
    ]
    folder = tmp_path_factory.mktemp("sep")
    splits = load(
        folder,
        {"train": rows, "validation": rows},
        ".csv",
        label_separator=separator,
        label_names=names if given_names else None,
    )
    present = names if given_names else [n for n, used in zip(names, matrix.any(axis=0)) if used]
    assert splits.label_names == present
    expected = matrix[:, [names.index(n) for n in present]]
    assert np.array_equal(np.asarray(splits.validation["labels"]), expected)


# --------------------------------------------------------------------------------------------------------------------
# Regression
# --------------------------------------------------------------------------------------------------------------------


def target_rows(tag: str, values: list) -> list[dict]:
    return [{"text": f"{tag} {i}", "score": v, "other": 2 * i} for i, v in enumerate(values)]


def test_one_numeric_column_and_several_give_target_vectors(tmp_path):
    one = load(tmp_path, {"train": target_rows("a", [0.5, 1, 2.5, 4])}, ".csv", REGRESSION, label_column="score")
    assert one.label_names == ["score"] and one.target_scaling is None
    assert sorted(v[0] for split in (one.train, one.validation) for v in split["labels"]) == [0.5, 1, 2.5, 4]
    several = load(
        tmp_path,
        {"train": target_rows("b", [0.5, 1, 2.5, 4]), "validation": target_rows("b", [3, 2])},
        ".jsonl",
        REGRESSION,
        label_columns=["score", "other"],
    )
    assert several.label_names == ["score", "other"]
    assert several.validation["labels"] == [[3.0, 0.0], [2.0, 2.0]]


@pytest.mark.parametrize(
    ("suffix", "bad", "shown"),
    [
        (".csv", "high", "'high'"),
        (".csv", "", "no value"),
        (".jsonl", None, "no value"),
        (".jsonl", "nan", "'nan'"),
        (".jsonl", True, "True"),
    ],
)
def test_a_target_that_is_not_a_number_names_column_and_row(tmp_path, suffix, bad, shown):
    values = [1.0, 2.0, bad, 4.0, 5.0]
    with pytest.raises(DataError) as err:
        load(tmp_path, {"train": target_rows("a", values)}, suffix, REGRESSION, label_column="score")
    assert "row 2 of the train split" in str(err.value)
    assert f"has {shown} in column 'score' (data.label_column)" in str(err.value)


def test_targets_follow_the_rows_that_a_row_check_kept(tmp_path):
    """Rows dropped before coding (an empty text, a bad image) must not shift the targets onto other rows."""
    rows = [{"text": f"t {i}", "score": float(i), "flag": i % 2} for i in range(8)]
    files = {role: [write(tmp_path / f"{role}.jsonl", rows)] for role in ("train", "validation")}

    def drop_first_two(raw):
        return DatasetDict({role: split.select(range(2, len(split))) for role, split in raw.items()})

    for problem_type, data in ((REGRESSION, {"label_column": "score"}), (MULTI, {"label_columns": ["flag"]})):
        cfg = DataConfig(train_files=files["train"], validation_files=files["validation"], **data)
        splits = load_splits(cfg, ["text"], TEXT_FIELDS, 0, check_rows=drop_first_two, problem_type=problem_type)
        for text, value in zip(splits.validation["text"], splits.validation["labels"]):
            i = int(text.split()[1])
            assert value == ([float(i)] if problem_type == REGRESSION else [float(i % 2)])


def test_standardised_targets_use_train_statistics_and_the_scaling_undoes_them(tmp_path):
    train = [[1.0, 10.0], [3.0, 10.0], [5.0, 10.0], [7.0, 10.0]]  # the second target is constant: std 1
    rows = [{"text": f"t {i}", "y1": a, "y2": b} for i, (a, b) in enumerate(train)]
    test = [{"text": "x 0", "y1": 100.0, "y2": -5.0}]
    splits = load(
        tmp_path,
        {"train": rows, "validation": rows[:2], "test": test},
        ".jsonl",
        REGRESSION,
        label_columns=["y1", "y2"],
        standardize_targets=True,
    )
    assert splits.target_scaling["mean"] == pytest.approx([4.0, 10.0])
    assert splits.target_scaling["std"] == pytest.approx([np.std([1, 3, 5, 7]), 1.0])
    scaled = np.asarray(splits.train["labels"])
    assert scaled.mean(axis=0) == pytest.approx([0, 0], abs=1e-6)
    assert scaled[:, 0].std() == pytest.approx(1.0, abs=1e-6)
    in_units = problem_named(REGRESSION).in_target_units
    assert np.allclose(in_units(splits.train["labels"], splits.target_scaling), train, atol=1e-5)
    assert np.allclose(in_units(splits.test["labels"], splits.target_scaling), [[100.0, -5.0]], atol=1e-4)


def test_regression_carving_spans_the_target_range(tmp_path):
    values = list(np.linspace(0, 100, 50))
    splits = load(tmp_path, {"train": target_rows("a", values)}, ".jsonl", REGRESSION, label_column="score")
    held = sorted(v[0] for v in splits.validation["labels"])
    assert len(held) == 5 and held[0] < 25 and held[-1] > 75  # one per quantile bin, not one corner
    assert len(splits.train) + len(held) == 50


def test_train_samples_per_class_is_refused_for_regression(tmp_path):
    with pytest.raises(RecipeError, match="train_samples_per_class.*max_train_samples"):
        recipe_from_dict(
            {
                "problem_type": REGRESSION,
                "model": {"checkpoint": "x"},
                "data": {"train_files": ["a.csv"], "train_samples_per_class": 3},
                "strategy": "linear_probe",
            }
        )


# --------------------------------------------------------------------------------------------------------------------
# Carving and few-shot limits for multi-label
# --------------------------------------------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    matrix=arrays(np.int8, st.tuples(st.integers(6, 40), st.integers(1, 6)), elements=st.integers(0, 1)),
    fraction=st.sampled_from([0.1, 0.2, 0.5]),
    seed=st.integers(0, 5),
)
def test_carving_keeps_every_label_train_had(matrix, fraction, seed):
    data = Dataset.from_dict({"labels": matrix.astype(np.float32).tolist(), "row": list(range(len(matrix)))})
    train, validation = problem_named(MULTI).carve_validation(data, fraction, seed, [])
    assert sorted([*train["row"], *validation["row"]]) == list(range(len(matrix)))
    assert len(validation) >= 1
    assert np.array_equal(np.asarray(train["labels"]).any(axis=0) if len(train) else 0, matrix.any(axis=0))


def test_per_label_keeps_at_most_n_positives_of_each_label():
    rng = np.random.default_rng(0)
    matrix = (rng.random((200, 5)) < [0.6, 0.3, 0.1, 0.05, 0.5]).astype(np.float32)
    kept = problem_named(MULTI).limit_rows(Dataset.from_dict({"labels": matrix.tolist()}), 4, seed=1)
    counts = np.asarray(kept["labels"]).sum(axis=0)
    assert counts.max() <= 4 and (counts > 0).all()
    assert (~np.asarray(kept["labels"]).any(axis=1)).sum() <= 4


# --------------------------------------------------------------------------------------------------------------------
# Recipe keys
# --------------------------------------------------------------------------------------------------------------------


def recipe(problem_type=None, **data):
    raw = {"model": {"checkpoint": "x"}, "data": {"train_files": ["a.csv"], **data}, "strategy": "linear_probe"}
    if problem_type:
        raw["problem_type"] = problem_type
    return recipe_from_dict(raw)


def test_problem_type_defaults_to_single_label_and_survives_the_round_trip():
    assert recipe().problem_type == "single_label_classification"
    assert problem_type_names() == ("single_label_classification", "multi_label_classification", "regression")
    multi = recipe(MULTI, label_separator="|", allow_empty_labels=False)
    again = recipe_from_dict(multi.to_dict())
    assert again.problem_type == MULTI and again.data.label_separator == "|" and not again.data.allow_empty_labels


@pytest.mark.parametrize(
    ("problem_type", "data", "message"),
    [
        ("multi_label", {}, r"problem_type must be one of .*\(did you mean 'multi_label_classification'\?\)"),
        (None, {"label_columns": ["a", "b"]}, "data.label_columns needs problem_type"),
        (REGRESSION, {"label_separator": "|"}, "data.label_separator .* needs problem_type multi_label"),
        (MULTI, {"standardize_targets": True}, "data.standardize_targets .* needs problem_type regression"),
        (None, {"allow_empty_labels": False}, "data.allow_empty_labels .* needs problem_type multi_label"),
        (REGRESSION, {"label_names": ["a"]}, "data.label_names names classes"),
        (MULTI, {"label_columns": ["a"], "label_separator": ";"}, "keep one"),
        (MULTI, {"label_columns": ["a", "a"]}, "names 'a' twice"),
        (MULTI, {"label_columns": []}, "data.label_columns is empty"),
    ],
)
def test_each_key_in_the_wrong_problem_type_is_one_sentence(problem_type, data, message):
    with pytest.raises(RecipeError, match=message) as err:
        recipe(problem_type, **data)
    assert "\n" not in str(err.value)


# --------------------------------------------------------------------------------------------------------------------
# sklearn:digits-multilabel
# --------------------------------------------------------------------------------------------------------------------


def test_pasted_digits_are_labelled_with_exactly_the_digits_in_the_cells():
    from sklearn.datasets import load_digits

    digits = load_digits()
    canvases, cells = paste_digits(digits.images[:300], digits.target[:300], 50, seed=3)
    again, _ = paste_digits(digits.images[:300], digits.target[:300], 50, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(canvases, again))
    sources = {}
    for image, target in zip(digits.images[:300], digits.target[:300]):
        block = np.kron(np.round(image * 255.0 / 16.0).astype(np.uint8), np.ones((2, 2), dtype=np.uint8))
        sources.setdefault(block.tobytes(), set()).add(int(target))
    for canvas, row in zip(canvases, cells):
        assert 2 <= sum(d >= 0 for d in row) <= 4
        for cell, digit in enumerate(row):
            y, x = divmod(cell, DIGITS_GRID)
            block = canvas[y * DIGITS_CELL : (y + 1) * DIGITS_CELL, x * DIGITS_CELL : (x + 1) * DIGITS_CELL]
            if digit < 0:
                assert not block.any()
            else:
                assert digit in sources[block.tobytes()]


def test_the_digits_multilabel_builtin_loads_through_the_recipe_path():
    built = BUILTIN_DATASETS.get("sklearn:digits-multilabel")(None)
    rebuilt = BUILTIN_DATASETS.get("sklearn:digits-multilabel")(None)
    assert (len(built["train"]), len(built["test"])) == (2000, 500)
    assert built["train"]["label"][:50] == rebuilt["train"]["label"][:50]
    assert np.array_equal(np.asarray(built["test"][7]["image"]), np.asarray(rebuilt["test"][7]["image"]))
    cfg = DataConfig(dataset="sklearn:digits-multilabel", test_split="test", max_test_samples=40)
    splits = load_splits(cfg, ["image"], {"image": "data.image_column"}, 0, problem_type=MULTI)
    assert splits.label_names == [str(d) for d in range(10)]
    assert len(splits.train) + len(splits.validation) == 2000 and len(splits.test) == 40
    for row in splits.validation.select(range(20)):
        assert 1 <= sum(row["labels"]) <= 4 and len(row["labels"]) == 10


def test_digits_multilabel_test_images_use_only_held_out_digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    _, test_idx = train_test_split(
        np.arange(len(digits.target)), test_size=0.2, random_state=0, stratify=digits.target
    )
    held_out = {
        np.kron(np.round(digits.images[i] * 255.0 / 16.0).astype(np.uint8), np.ones((2, 2), np.uint8)).tobytes()
        for i in test_idx
    }
    test = BUILTIN_DATASETS.get("sklearn:digits-multilabel")(None)["test"].select(range(100))
    for image in test["image"]:
        canvas = np.asarray(image)
        for cell in range(DIGITS_GRID**2):
            y, x = divmod(cell, DIGITS_GRID)
            block = canvas[y * DIGITS_CELL : (y + 1) * DIGITS_CELL, x * DIGITS_CELL : (x + 1) * DIGITS_CELL]
            assert not block.any() or block.tobytes() in held_out


# --------------------------------------------------------------------------------------------------------------------
# The run records its problem type
# --------------------------------------------------------------------------------------------------------------------


def test_a_run_records_its_problem_type_beside_the_task(tmp_path, tiny_bert_dir, sentiment_csvs):
    from helpers import text_recipe

    from hf_transfer.apps.cli import main
    from hf_transfer.config.loading import load_recipe
    from hf_transfer.runs.folder import METADATA_FILE, RECIPE_FILE

    recipe = text_recipe(
        tmp_path,
        tiny_bert_dir,
        sentiment_csvs,
        "linear_probe",
        problem_type="single_label_classification",
        data={"max_train_samples": 64, "max_validation_samples": 32, "max_test_samples": 32},
        train={"epochs": 1},
    )
    assert main(["run", str(recipe)]) == 0
    run_dir = tmp_path / "outputs" / "run"
    metadata = json.loads((run_dir / METADATA_FILE).read_text())
    assert metadata["task"] == "text-classification"
    assert metadata["problem_type"] == "single_label_classification"
    assert load_recipe(str(run_dir / RECIPE_FILE)).problem_type == "single_label_classification"


def test_resuming_with_another_problem_type_is_refused(tmp_path):
    from hf_transfer.runs.folder import check_resume_recipe, save_work_recipe

    multi = recipe(MULTI, label_separator="|")
    save_work_recipe(tmp_path, multi.to_dict())
    check_resume_recipe(tmp_path, multi.to_dict())  # the same recipe resumes
    with pytest.raises(RecipeError, match="differs from the interrupted run in data.label_separator, problem_type"):
        check_resume_recipe(tmp_path, recipe().to_dict())
