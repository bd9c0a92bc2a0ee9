"""The label path codes every split one way and never re-codes labels behind the user's back.

Data-level properties run on `load_splits` directly (cheap, many examples); the end-to-end ones train a linear probe
on a tiny BERT and read the labels back through `predict` and `eval`.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import pytest
from datasets import ClassLabel, Dataset, Features, Value
from helpers import text_recipe
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hf_transfer
from hf_transfer.apps.cli import main
from hf_transfer.backbones import build_backbone
from hf_transfer.config.sections import DataConfig, ModelConfig
from hf_transfer.core.errors import DataError
from hf_transfer.data.splits import load_splits
from hf_transfer.problems.single_label_coding import coding_of_run

TEXT_FIELDS = {"text": "data.text_column"}


def write_rows(path: Path, rows: list[dict]) -> Path:
    """rows as csv (pandas types the columns, as a user's export would be) or jsonl (types kept exactly)."""
    if path.suffix == ".csv":
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=["text", "label"])
            writer.writeheader()
            writer.writerows(rows)
    else:
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def splits_of(folder: Path, parts: dict[str, list[dict]], suffix: str = ".jsonl", **data) -> DataConfig:
    files = {role: [str(write_rows(folder / f"{role}{suffix}", rows))] for role, rows in parts.items() if rows}
    return DataConfig(
        train_files=files["train"],
        validation_files=files.get("validation", []),
        test_files=files.get("test", []),
        **data,
    )


def load(cfg: DataConfig, seed: int = 0):
    return load_splits(cfg, ["text"], TEXT_FIELDS, seed)


def rows_for(labels: list, per_class: int, tag: str, label_of=lambda v: v) -> list[dict]:
    """`per_class` rows of each label, each text naming its row so a test can find the label it was given."""
    return [
        {"text": f"{tag} {i} {j}", "label": label_of(value)}
        for i, value in enumerate(labels)
        for j in range(per_class)
    ]


def original_of(parts: dict[str, list[dict]]) -> dict[str, object]:
    return {row["text"]: row["label"] for rows in parts.values() for row in rows}


# --------------------------------------------------------------------------------------------------------------------
# Label sets a user might have
# --------------------------------------------------------------------------------------------------------------------

integer_labels = st.lists(st.integers(-3, 60), min_size=2, max_size=14, unique=True)
word = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Z")), min_size=1, max_size=8)
string_labels = st.one_of(
    st.lists(word, min_size=2, max_size=14, unique=True),  # unicode
    st.lists(st.integers(0, 40).map(str), min_size=2, max_size=14, unique=True),  # numeric-looking strings
    st.lists(st.sampled_from(["a", "A", "b", "B", "Pos", "pos", "POS", "neg"]), min_size=2, max_size=8, unique=True),
)
label_sets = st.one_of(integer_labels, string_labels)
split_shapes = st.sampled_from(["train", "train+test", "train+validation", "train+validation+test"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(labels=label_sets, shape=split_shapes, per_class=st.integers(2, 4), seed=st.integers(0, 3))
def test_every_split_uses_one_coding_and_names_the_rows_it_codes(tmp_path_factory, labels, shape, per_class, seed):
    folder = tmp_path_factory.mktemp("labels")
    parts = {role: rows_for(labels, per_class, role) if role in shape else [] for role in ("validation", "test")}
    parts["train"] = rows_for(labels, per_class, "train")
    splits = load(splits_of(folder, parts), seed)

    # the classes that occur, named by their own values: nothing invented, nothing merged
    assert sorted(splits.label_names) == sorted(str(v) for v in labels)
    if all(isinstance(v, int) for v in labels) or all(str(v).isdigit() for v in labels):
        assert splits.label_names == [str(v) for v in sorted(labels, key=int)]  # "2" before "10"
    original = original_of(parts)
    for role, split in splits.items():
        for text, label_id in zip(split["text"], split["labels"]):
            assert splits.label_names[label_id] == str(original[text]), (role, text)
    assert splits.validation_carved == ("validation" not in shape)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(labels=integer_labels, suffix=st.sampled_from([".csv", ".jsonl"]))
def test_integer_labels_written_as_text_in_another_split_are_the_same_classes(tmp_path_factory, labels, suffix):
    """A test file whose label column arrives as strings ("7", quoted JSON) matches train's integers by name."""
    folder = tmp_path_factory.mktemp("labels")
    parts = {"train": rows_for(labels, 3, "train"), "test": rows_for(labels, 1, "test", label_of=str)}
    splits = load(splits_of(folder, parts, suffix=suffix))
    original = original_of(parts)
    for text, label_id in zip(splits.test["text"], splits.test["labels"]):
        assert splits.label_names[label_id] == str(original[text])


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(word, min_size=2, max_size=12, unique=True), data=st.data())
def test_with_label_names_integers_are_ids_into_them(tmp_path_factory, names, data):
    used = data.draw(st.lists(st.integers(0, len(names) - 1), min_size=2, unique=True), label="used ids")
    folder = tmp_path_factory.mktemp("labels")
    parts = {"train": rows_for(used, 3, "train"), "test": rows_for(used, 1, "test")}
    splits = load(splits_of(folder, parts, label_names=names))
    assert splits.label_names == names  # given names keep their order, classes that do not occur included
    for role, split in splits.items():
        for text, label_id in zip(split["text"], split["labels"]):
            assert label_id == original_of(parts)[text], role


def test_a_class_label_feature_keeps_its_names_and_ids(tmp_path):
    names = ["zebra", "apple", "mango"]  # not in text order: ids must not be re-sorted
    features = Features({"text": Value("string"), "label": ClassLabel(names=names)})
    ids = [0, 1, 2] * 4
    for role in ("train", "test"):
        Dataset.from_dict({"text": [f"{role} {i}" for i in range(12)], "label": ids}, features=features).to_parquet(
            tmp_path / f"{role}.parquet"
        )
    splits = load(
        DataConfig(train_files=[str(tmp_path / "train.parquet")], test_files=[str(tmp_path / "test.parquet")])
    )
    assert splits.label_names == names
    for split in (splits.train, splits.validation, splits.test):
        assert all(label == ids[int(text.split()[1])] for text, label in zip(split["text"], split["labels"]))


# --------------------------------------------------------------------------------------------------------------------
# The repro, and the errors on the label path
# --------------------------------------------------------------------------------------------------------------------


def test_twelve_classes_carved_validation_keeps_the_original_coding(tmp_path):
    """Issue 8's repro: 240 rows `t{i}, i % 12`; label 2 arrived as id 4 while label_names[4] was "4"."""
    rows = [{"text": f"t{i}", "label": i % 12} for i in range(240)]
    splits = load(DataConfig(train_files=[str(write_rows(tmp_path / "train.csv", rows))]))
    assert splits.label_names == [str(i) for i in range(12)]
    for split in (splits.train, splits.validation):
        assert all(label == int(text[1:]) % 12 for text, label in zip(split["text"], split["labels"]))


def test_labels_one_and_two_are_two_classes_named_one_and_two(tmp_path):
    rows = [{"text": f"t{i}", "label": 1 + i % 2} for i in range(40)]
    splits = load(DataConfig(train_files=[str(write_rows(tmp_path / "train.csv", rows))]))
    assert splits.label_names == ["1", "2"]
    assert sorted(set(splits.train["labels"])) == [0, 1]


def one_line_error(cfg: DataConfig) -> str:
    with pytest.raises(DataError) as info:
        load(cfg)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_string_label_in_test_against_integer_train_names_the_split_file_and_row(tmp_path):
    train = rows_for([1, 2], 4, "train")
    test = [{"text": "a", "label": "1"}, {"text": "b", "label": "pos"}]
    message = one_line_error(splits_of(tmp_path, {"train": train, "test": test}))
    assert "row 1 of the test split (data.test_files:" in message and "test.jsonl" in message
    assert "'pos', which train never saw; known labels are 1, 2" in message


def test_a_row_without_a_label_is_named(tmp_path):
    (tmp_path / "train.csv").write_text("text,label\na,1\nb,2\nc,\nd,1\ne,2\n")
    message = one_line_error(DataConfig(train_files=[str(tmp_path / "train.csv")]))
    assert message.startswith("row 2 of the train split (data.train_files:") and "has no label" in message


@pytest.mark.parametrize(
    ("labels", "phrase"),
    [
        ([1.5, 2.0, 1.5, 2.0], "has label 1.5 in column 'label'; labels must be strings or integers"),
        ([True, False, True, False], "has label True"),
    ],
)
def test_labels_that_are_neither_strings_nor_integers_are_named(tmp_path, labels, phrase):
    train = [{"text": f"t{i}", "label": v} for i, v in enumerate(labels)]
    assert phrase in one_line_error(splits_of(tmp_path, {"train": train}))


def test_an_integer_outside_label_names_is_named_in_train(tmp_path):
    train = rows_for([0, 1, 5], 2, "train")
    message = one_line_error(splits_of(tmp_path, {"train": train}, label_names=["neg", "pos"]))
    assert "row 4 of the train split" in message and "nor an id 0..1 into them" in message


def test_integer_labels_parsed_as_floats_keep_integer_names(tmp_path):
    """An integer column with a blank cell in validation is read as floats (1.0): it names the blank row, and
    without it the floats are the integer classes."""
    (tmp_path / "train.csv").write_text("text,label\n" + "".join(f"t{i},{1 + i % 2}\n" for i in range(8)))
    (tmp_path / "test.csv").write_text("text,label\nx,1.0\ny,2.0\n")
    splits = load(DataConfig(train_files=[str(tmp_path / "train.csv")], test_files=[str(tmp_path / "test.csv")]))
    assert splits.label_names == ["1", "2"] and splits.test["labels"] == [0, 1]


# --------------------------------------------------------------------------------------------------------------------
# End to end: a linear probe on the tiny BERT memorises easy rows and gives each one its own label back
# --------------------------------------------------------------------------------------------------------------------

# Words common in the Rotten Tomatoes reviews the tiny tokenizer was trained on, so each is one token or two.
CLASS_WORDS = "good bad funny love life story music war family action world time drama comedy man night".split()
PROBE = {"name": "linear_probe", "head": "linear", "pooling": "mean"}


def keyword_rows(labels: list, per_class: int = 8) -> list[dict]:
    """Rows a random encoder's mean-pooled features separate: each class's text is its own word, repeated."""
    return [
        {"text": " ".join([CLASS_WORDS[i]] * (3 + j % 3)), "label": value}
        for i, value in enumerate(labels)
        for j in range(per_class)
    ]


def probe_run(folder: Path, tiny_bert_dir: Path, train_rows: list[dict], suffix: str = ".csv") -> Path:
    """A linear probe trained on `train_rows` only (validation carved from them, no test split); its run folder."""
    train = write_rows(folder / f"train{suffix}", train_rows)
    recipe = text_recipe(
        folder,
        tiny_bert_dir,
        {"train": train, "test": train},
        PROBE,
        data={"test_files": []},
        train={"epochs": 20, "learning_rate": 1e-1, "batch_size": 32},
    )
    assert main(["run", str(recipe)]) == 0
    return folder / "outputs" / "run"


def assert_predicts_each_row_back(run_dir: Path, rows: list[dict]) -> None:
    predicted = [p["label"] for p in hf_transfer.load(run_dir).predict([row["text"] for row in rows])]
    assert predicted == [str(row["label"]) for row in rows]


@pytest.fixture(scope="module")
def twelve_class_run(tmp_path_factory, tiny_bert_dir):
    """Issue 8's end-to-end repro: 12 classes labelled 1..12, no validation split given."""
    folder = tmp_path_factory.mktemp("twelve")
    rows = keyword_rows(list(range(1, 13)))
    return probe_run(folder, tiny_bert_dir, rows), folder / "train.csv", rows


def test_twelve_classes_labelled_one_to_twelve_score_well_on_their_own_train_rows(twelve_class_run, capsys):
    run_dir, train_csv, rows = twelve_class_run
    metadata = json.loads((run_dir / "hf_transfer.json").read_text())
    assert metadata["label_names"] == [str(i) for i in range(1, 13)]  # no invented class "0"
    assert main(["eval", str(run_dir), "--data", str(train_csv), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["accuracy"] == 1.0 and metrics["num_samples"] == len(rows)
    assert_predicts_each_row_back(run_dir, rows)


def test_labels_one_and_two_train_a_two_class_model_named_one_and_two(tmp_path, tiny_bert_dir):
    rows = keyword_rows([1, 2], per_class=12)
    run_dir = probe_run(tmp_path, tiny_bert_dir, rows)
    metrics = json.loads((run_dir / "metrics.json").read_text())["validation"]
    assert list(metrics["per_class"]) == ["1", "2"]
    matrix = metrics["confusion_matrix"]
    assert len(matrix) == 2 and sum(map(sum, matrix)) == metrics["num_samples"]
    assert all(matrix[i][i] > 0 for i in range(2))  # true rows sit under their own names, not under "0"
    assert_predicts_each_row_back(run_dir, rows)


memorised_labels = st.one_of(
    st.lists(st.integers(-2, 30), min_size=2, max_size=len(CLASS_WORDS), unique=True),
    st.lists(word, min_size=2, max_size=len(CLASS_WORDS), unique=True),
    st.lists(st.integers(0, 30).map(str), min_size=11, max_size=len(CLASS_WORDS), unique=True),
)


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(labels=memorised_labels)
def test_a_memorising_model_predicts_each_train_row_its_own_label(tmp_path_factory, tiny_bert_dir, labels):
    rows = keyword_rows(labels, per_class=6)
    run_dir = probe_run(tmp_path_factory.mktemp("memorise"), tiny_bert_dir, rows, suffix=".jsonl")
    assert sorted(json.loads((run_dir / "hf_transfer.json").read_text())["label_names"]) == sorted(map(str, labels))
    assert_predicts_each_row_back(run_dir, rows)


# --------------------------------------------------------------------------------------------------------------------
# eval on new files, and rows with no text
# --------------------------------------------------------------------------------------------------------------------


def test_eval_reads_integers_as_the_run_read_them(twelve_class_run, tmp_path):
    """Label 0 was never a class of a run trained on 1..12: it is named, not read as the id of class "1"."""
    run_dir, _, rows = twelve_class_run
    data = write_rows(tmp_path / "new.csv", [{"text": rows[0]["text"], "label": 1}, {"text": "x", "label": 0}])
    with pytest.raises(DataError, match=r"row 1 of --data \(.*new.csv\) has label 0, which train never saw"):
        hf_transfer.load(run_dir).evaluate([str(data)])


def test_eval_on_a_header_only_file_names_the_data_option(twelve_class_run, tmp_path, capsys):
    empty = tmp_path / "empty.csv"
    empty.write_text("text,label\n")
    assert main(["eval", str(twelve_class_run[0]), "--data", str(empty)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: --data:") and "holds no rows" in err and "data.train_files" not in err


def test_eval_drops_and_counts_rows_without_text(twelve_class_run, tmp_path):
    run_dir, _, rows = twelve_class_run
    (tmp_path / "new.csv").write_text(f'text,label\n{rows[0]["text"]},1\n,2\n"  ",3\n')
    metrics = hf_transfer.load(run_dir).evaluate([str(tmp_path / "new.csv")])
    assert metrics["num_samples"] == 1 and metrics["skipped_rows"] == 2


def test_empty_text_rows_are_dropped_counted_and_logged_not_trained_on(tmp_path, tiny_bert_dir, caplog):
    """The text backbone's row check on the splits a run loads (the runner records its counts in metrics.json as
    `skipped_rows`, as test_images checks for undecodable images)."""
    rows = keyword_rows(["neg", "pos"], per_class=10)
    rows[3]["text"] = ""  # a blank CSV cell
    rows[15]["text"] = "   "
    train = write_rows(tmp_path / "train.csv", rows)
    test = write_rows(
        tmp_path / "test.csv", keyword_rows(["neg", "pos"], per_class=3) + [{"text": "", "label": "neg"}]
    )
    cfg = DataConfig(train_files=[str(train)], test_files=[str(test)])
    backbone = build_backbone(ModelConfig(checkpoint=str(tiny_bert_dir)), cfg, "text")
    with caplog.at_level(logging.WARNING, logger="hf_transfer"):
        splits = load_splits(cfg, *backbone.required_columns(), 0, check_rows=backbone.check_rows)
    assert backbone.skipped_rows == {"train": 2, "test": 1}
    assert len(splits.train) + len(splits.validation) == 18 and len(splits.test) == 6
    kept = [*splits.train["text"], *splits.validation["text"], *splits.test["text"]]
    assert all(text.strip() for text in kept)
    assert any("dropped 2 of 20 rows with an empty text (first: row 3)" in r.message for r in caplog.records)


def test_a_split_with_no_text_at_all_is_an_error(tmp_path, tiny_bert_dir, capsys):
    train = write_rows(tmp_path / "train.csv", keyword_rows(["neg", "pos"]))
    test = write_rows(tmp_path / "test.csv", [{"text": "", "label": "neg"}, {"text": "", "label": "pos"}])
    recipe = text_recipe(tmp_path, tiny_bert_dir, {"train": train, "test": test}, PROBE, train={"epochs": 1})
    assert main(["run", str(recipe)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "every row of the test split (data.test_files:" in err and "empty text" in err


@pytest.mark.parametrize(
    ("names", "given", "values", "expected"),
    [
        (["negative", "positive"], True, [1, 0], [1, 0]),  # data.label_names: integers are ids into them
        (["negative", "positive"], True, ["positive", "0"], [1, 0]),  # by name, or an id written as text
        (["neg", "pos"], False, ["pos", "neg"], [1, 0]),
        (["1", "2", "10"], False, [10, 2, 1], [2, 1, 0]),  # integer classes are matched by value, not by id
        (["1", "2", "10"], False, ["10", "2"], [2, 1]),
    ],
)
def test_a_trained_run_reads_new_labels_as_it_read_its_own(names, given, values, expected):
    coding = coding_of_run(names, label_names_given=given)
    assert coding.encode(Dataset.from_dict({"label": values}), "label", "--data (new.csv)") == expected
