"""The transfer machinery for multi-label and regression (issue 10): `cv`, source -> target across problem types,
`rank` on the new types, and the settings that cannot apply to them.

The data is written to CSV files and read as a user's would be: topics as "sport|food" strings
(data.label_separator), the number of topic words as a numeric target.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from fixtures_models import write_csv_rows
from helpers import write_recipe

import hf_transfer
import hf_transfer.metrics.multilabel as metrics_multilabel
from hf_transfer.apps.cli import main
from hf_transfer.apps.cross_validation import CV_METRICS_FILE, flat_metrics, summarize_folds
from hf_transfer.config.loading import load_recipe
from hf_transfer.core.errors import RecipeError

MULTI = "multi_label_classification"
REGRESSION = "regression"
SINGLE = "single_label_classification"
TOPICS = {"sport": ["goal", "match", "team"], "music": ["song", "band", "guitar"], "food": ["pizza", "bread", "soup"]}
FILLER = "the a it was is and of this that with story good".split()


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def topic_rows(n: int, seed: int) -> list[dict]:
    """Rows with text, topics ("sport|food", each present with probability 0.4), the number of topic words
    (count), and mood ("up" / "down": which of two words is in the text)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        present = [name for name in TOPICS if rng.random() < 0.4]
        words = [rng.choice(FILLER) for _ in range(rng.randint(3, 6))]
        count = 0
        for name in present:
            for _ in range(rng.randint(1, 3)):
                words.insert(rng.randrange(len(words) + 1), rng.choice(TOPICS[name]))
                count += 1
        mood = "up" if i % 2 else "down"
        words.insert(rng.randrange(len(words) + 1), {"up": "happy", "down": "sad"}[mood])
        rows.append({"text": " ".join(words), "topics": "|".join(present), "count": count, "mood": mood})
    return rows


@pytest.fixture(scope="module")
def topic_csvs(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("topics")
    fields = ["text", "topics", "count", "mood"]
    return {
        split: write_csv_rows(folder / f"{split}.csv", topic_rows(n, seed), fields)
        for split, n, seed in (("train", 120, 0), ("test", 60, 1))
    }


def topic_recipe(tmp_path, checkpoint, csvs, problem_type, strategy="linear_probe", name="run", **sections) -> str:
    data = {"train_files": [str(csvs["train"])], "test_files": [str(csvs["test"])]}
    if problem_type == MULTI:
        data |= {"label_column": "topics", "label_separator": "|"}
    elif problem_type == REGRESSION:
        data |= {"label_column": "count"}
    else:
        data |= {"label_column": "mood"}
    train = {"epochs": 4, "batch_size": 16, "learning_rate": 1e-2, "seed": 0, "log_every_steps": 5}
    return str(
        write_recipe(
            tmp_path / f"{name}.yaml",
            problem_type=problem_type,
            model={"checkpoint": str(checkpoint)},
            data=data | sections.pop("data", {}),
            strategy=strategy,
            train=train | sections.pop("train", {}),
            output={"dir": str(tmp_path / "outputs" / name)},
            **sections,
        )
    )


# --------------------------------------------------------------------------------------------------------------------
# cv
# --------------------------------------------------------------------------------------------------------------------


def test_cv_multilabel_tests_every_row_once_with_thresholds_from_each_folds_own_validation(
    tmp_path, monkeypatch, tiny_bert_dir, topic_csvs, capsys
):
    tuned_on = []  # the rows each threshold search saw
    tune = metrics_multilabel.tune_thresholds

    def recording(y_true, scores, *args, **kwargs):
        tuned_on.append(len(y_true))
        return tune(y_true, scores, *args, **kwargs)

    monkeypatch.setattr(metrics_multilabel, "tune_thresholds", recording)
    monkeypatch.setenv("HF_TRANSFER_CACHE", str(tmp_path / "cache"))
    recipe = topic_recipe(
        tmp_path, tiny_bert_dir, topic_csvs, MULTI, data={"validation_fraction": 0.25}, train={"epochs": 10}
    )
    out = tmp_path / "cv"
    assert main(["cv", recipe, "--folds", "3", "--output", str(out)]) == 0
    table = capsys.readouterr().out
    assert "3-fold cross-validation" in table and "held-out test rows" in table and "f1/sport" in table
    assert "lower is better: hamming_loss" in table

    report = json.loads((out / CV_METRICS_FILE).read_text())
    assert report["problem_type"] == MULTI and report["held_out_split"] == "test"
    folds = report["per_fold"]
    # every train row is tested exactly once, by the fold that held it out
    assert sorted(report["fold_of_row"]) == sorted(i for f in folds for i in [f["fold"]] * f["test_rows"])
    assert sum(f["test_rows"] for f in folds) == report["train_rows"] == 120
    for fold in folds:
        assert fold["test"]["num_samples"] == fold["test_rows"] == 40
        # the fold's training part is split into train and its own validation; none of them is a test row
        assert fold["train_rows"] + fold["validation_rows"] == 80
        assert fold["validation"]["num_samples"] == fold["validation_rows"] == 20
        assert set(fold["thresholds"]) == set(TOPICS)
        assert {name: row["threshold"] for name, row in fold["test"]["per_label"].items()} == fold["thresholds"]
    # one threshold search per fold, on that fold's validation rows, never on its 40 test rows
    assert tuned_on == [f["validation_rows"] for f in folds]
    summary = report["summary"]
    with capsys.disabled():  # shown with -s
        print(f"cv multi-label: { {k: round(summary[k]['mean'], 4) for k in ('f1_macro', 'map_macro')} }")
    for key in ("f1_micro", "f1_macro", "f1_samples", "map_macro", "subset_accuracy", "hamming_loss"):
        assert len(summary[key]["values"]) == 3 and summary[key]["std"] is not None
    assert {f"{stat}/{name}" for stat in ("f1", "average_precision", "threshold") for name in TOPICS} <= set(summary)
    assert summary["map_macro"]["mean"] > 0.6  # the topics are keywords: the probe finds them in every fold


def test_cv_regression_standardises_each_fold_on_its_own_rows_and_reports_in_the_targets_units(
    tmp_path, monkeypatch, tiny_bert_dir, topic_csvs, capsys
):
    monkeypatch.setenv("HF_TRANSFER_CACHE", str(tmp_path / "cache"))
    recipe = topic_recipe(
        tmp_path, tiny_bert_dir, topic_csvs, REGRESSION, data={"standardize_targets": True}, train={"epochs": 6}
    )
    out = tmp_path / "cv"
    assert main(["cv", recipe, "--folds", "3", "--output", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["held_out_split"] == "validation" and sorted(set(report["fold_of_row"])) == [1, 2, 3]
    counts = np.array([int(r) for r in _column(topic_csvs["train"], "count")])
    fold_of_row = np.array(report["fold_of_row"])
    for fold in report["per_fold"]:
        assert fold["validation"]["num_samples"] == fold["validation_rows"] == (fold_of_row == fold["fold"]).sum()
        # the scaling is the mean / std of the rows the fold trains on, not of all rows
        trained_on = counts[fold_of_row != fold["fold"]]
        assert fold["target_scaling"]["mean"] == pytest.approx([trained_on.mean()])
        assert fold["target_scaling"]["std"] == pytest.approx([trained_on.std()])
        assert "thresholds" not in fold
    summary = report["summary"]
    with capsys.disabled():  # shown with -s
        means = {k: round(summary[k]["mean"], 4) for k in ("rmse", "pearson")}
        print(f"cv regression: {means}, target std {counts.std():.4f}")
    assert {"mse", "rmse", "mae", "r2", "pearson", "spearman", "rmse/count", "r2/count"} <= set(summary)
    # the rmse is in topic words, not in standard deviations: it beats always answering the mean (about 1.5)
    assert summary["rmse"]["mean"] < 0.8 * counts.std()
    assert summary["pearson"]["mean"] > 0.6


def test_cv_summary_keeps_a_metric_some_folds_leave_undefined():
    folds = [
        {"num_samples": 3, "roc_auc_macro": 0.8, "roc_auc_macro_note": None, "per_label": {}},
        {"num_samples": 3, "roc_auc_macro": None, "roc_auc_macro_note": "only one class"},
        {"num_samples": 3, "roc_auc_macro": 0.6},
    ]
    summary = summarize_folds([flat_metrics(f) for f in folds])
    assert summary["num_samples"] == {"mean": 3.0, "std": 0.0, "values": [3, 3, 3]}
    assert summary["roc_auc_macro"]["mean"] == pytest.approx(0.7)
    assert summary["roc_auc_macro"]["values"] == [0.8, None, 0.6] and summary["roc_auc_macro"]["undefined_folds"] == 1
    assert "roc_auc_macro_note" not in summary


def _column(path, name) -> list[str]:
    import csv

    with open(path, newline="") as f:
        return [row[name] for row in csv.DictReader(f)]


# --------------------------------------------------------------------------------------------------------------------
# source -> target
# --------------------------------------------------------------------------------------------------------------------


def test_single_label_source_feeds_a_regression_target(tmp_path, tiny_bert_dir, topic_csvs, capsys):
    recipe = topic_recipe(
        tmp_path,
        tiny_bert_dir,
        topic_csvs,
        REGRESSION,
        "finetune",
        train={"epochs": 4, "learning_rate": 2e-3},
        source={
            "problem_type": SINGLE,
            "data": {"train_files": [str(topic_csvs["train"])], "label_column": "mood"},
            "strategy": "finetune",
            "train": {"epochs": 8, "learning_rate": 1e-3, "batch_size": 8, "seed": 0},
        },
    )
    assert load_recipe(recipe).eval.metric == "rmse"
    assert main(["run", recipe]) == 0
    run_dir = tmp_path / "outputs" / "run"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["best_metric"]["name"] == "rmse" and {"rmse", "r2", "per_target"} <= set(metrics["test"])
    source = metrics["source"]
    # the source stage is the mood classifier, scored as one: its own metrics before and after the target stage
    assert source["problem_type"] == SINGLE and source["label_names"] == ["down", "up"]
    assert source["before"]["accuracy"] > 0.8  # "happy" / "sad" is in every text
    assert 0 <= source["after"]["accuracy"] <= 1
    assert source["forgotten"]["accuracy"] == pytest.approx(source["before"]["accuracy"] - source["after"]["accuracy"])
    assert "source task: accuracy" in capsys.readouterr().out
    # the target's head is a regression head: one value per row, loaded back from the run folder
    model = hf_transfer.load(run_dir)
    predictions = model.predict(["the team scored a goal in the match"])
    assert set(predictions[0]["values"]) == {"count"}
    assert model.evaluate([str(topic_csvs["test"])])["rmse"] == pytest.approx(metrics["test"]["rmse"], rel=1e-4)


def test_multilabel_source_feeds_a_multilabel_target_and_its_forgetting_is_scored_as_multilabel(
    tmp_path, tiny_bert_dir, topic_csvs, capsys
):
    few = write_csv_rows(tmp_path / "few.csv", topic_rows(40, seed=5), ["text", "topics", "count", "mood"])
    recipe = topic_recipe(
        tmp_path,
        tiny_bert_dir,
        {"train": few, "test": topic_csvs["test"]},
        MULTI,
        {"name": "lora", "r": 4, "alpha": 8},
        train={"epochs": 3, "learning_rate": 5e-3},
        source={  # problem_type left out: the recipe's
            "data": {"train_files": [str(topic_csvs["train"])], "label_column": "topics", "label_separator": "|"},
            "strategy": "finetune",
            "train": {"epochs": 8, "learning_rate": 2e-3, "batch_size": 8, "seed": 0},
        },
    )
    run_dir = hf_transfer.run(recipe)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    source = metrics["source"]
    assert source["problem_type"] == MULTI and source["metrics"] == ["f1_macro", "map_macro"]
    assert source["label_names"] == sorted(TOPICS)
    with capsys.disabled():  # shown with -s
        print(f"multi-label source: before {source['before']}, after {source['after']}")
    assert source["before"]["map_macro"] > 0.55  # random scores give about the topics' rate, 0.4
    for key in ("f1_macro", "map_macro"):
        assert 0 <= source["after"][key] <= 1
        assert source["forgotten"][key] == pytest.approx(source["before"][key] - source["after"][key])
    assert set(metrics["test"]["per_label"]) == set(TOPICS)
    assert json.loads((run_dir / "thresholds.json").read_text())["tuned_on"] == "validation"


def test_image_regression_source_feeds_a_multilabel_target(tmp_path, tiny_timm_dir, digits_csv):
    """timm: a head for one value (which digit) replaced by one for three yes/no properties of the digit."""
    from fixtures_models import DIGIT_NAMES, read_csv_rows

    properties = {"zero": "even|round", "one": "", "two": "even|large"}
    csvs = {}
    for split in ("train", "test"):
        rows = [
            {"image": r["image"], "digit": DIGIT_NAMES.index(r["label"]), "properties": properties[r["label"]]}
            for r in read_csv_rows(digits_csv[split])
        ]
        csvs[split] = write_csv_rows(tmp_path / f"{split}.csv", rows, ["image", "digit", "properties"])
    data = {"train_files": [str(csvs["train"])], "augment": "none"}
    recipe = write_recipe(
        tmp_path / "image.yaml",
        task="image-classification",
        problem_type=MULTI,
        model={"checkpoint": f"local-dir:{tiny_timm_dir}"},
        data=data | {"test_files": [str(csvs["test"])], "label_column": "properties", "label_separator": "|"},
        strategy="finetune",
        train={"epochs": 2, "batch_size": 16, "learning_rate": 1e-3, "seed": 0},
        source={
            "problem_type": REGRESSION,
            "data": data | {"label_column": "digit", "standardize_targets": True},
            "strategy": "finetune",
            "train": {"epochs": 2, "batch_size": 16, "learning_rate": 1e-3, "seed": 0},
        },
        output={"dir": str(tmp_path / "outputs" / "image")},
    )
    run_dir = hf_transfer.run(str(recipe))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    source = metrics["source"]
    assert source["problem_type"] == REGRESSION and source["label_names"] == ["digit"]
    assert source["metrics"] == ["rmse", "r2"] and source["after"]["rmse"] is not None
    assert source["forgotten"]["rmse"] == pytest.approx(source["after"]["rmse"] - source["before"]["rmse"])
    assert set(metrics["test"]["per_label"]) == {"even", "large", "round"}
    (prediction,) = hf_transfer.load(run_dir).predict([read_csv_rows(csvs["test"])[0]["image"]])
    assert set(prediction["scores"]) == {"even", "large", "round"}


def test_forgetting_counts_a_grown_error_as_forgotten():
    from hf_transfer.problems.base import build_problem_type
    from hf_transfer.runs.transfer import forgetting_report

    report = forgetting_report(build_problem_type(REGRESSION), {"rmse": 1.0, "r2": 0.8}, {"rmse": 1.5, "r2": None})
    assert report["forgotten"] == {"rmse": 0.5, "r2": None}
    multi = build_problem_type(MULTI)
    assert forgetting_report(multi, {"f1_macro": 0.9, "map_macro": 0.9}, None)["forgotten"] is None


# --------------------------------------------------------------------------------------------------------------------
# Settings that cannot apply, refused once in the recipe
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("problem_type", "source", "field"),
    [
        (SINGLE, {"problem_type": REGRESSION, "train": {"sampler": "balanced"}}, "source.train.sampler balanced"),
        (REGRESSION, {"train": {"class_weights": "auto"}}, "source.train.class_weights"),
        (MULTI, {"problem_type": SINGLE, "data": {"label_separator": "|"}}, "source.data.label_separator"),
        (SINGLE, {"problem_type": REGRESSION, "data": {"train_samples_per_class": 4}}, "source.data.train_samples"),
        (SINGLE, {"problem_type": "regresion"}, "source.problem_type"),
    ],
)
def test_source_settings_that_cannot_apply_are_one_line_errors(tmp_path, topic_csvs, problem_type, source, field):
    source = {"data": {"train_files": [str(topic_csvs["train"])]} | source.pop("data", {})} | source
    recipe = topic_recipe(tmp_path, "bert", topic_csvs, problem_type, "finetune", source=source)
    with pytest.raises(RecipeError) as info:
        load_recipe(recipe)
    message = str(info.value)
    assert field in message and "\n" not in message


# --------------------------------------------------------------------------------------------------------------------
# rank
# --------------------------------------------------------------------------------------------------------------------


# Words that tiny_bert_dir's tokenizer keeps whole: every text below is then eight tokens long.
WHOLE_WORD_TOPICS = {"film": ["movie", "plot", "actors"], "mood": ["great", "fun", "love"], "tune": ["music", "funny"]}
WHOLE_WORD_FILLER = "the a it was is and of this that with story".split()


@pytest.fixture(scope="module")
def same_length_csv(tmp_path_factory) -> str:
    """Texts of six whole-token words, topic words in place of filler: the topics and their number of words (count)
    do not follow a text's length, which is all a blind checkpoint sees."""
    rng = random.Random(3)
    rows = []
    for _ in range(150):
        present = [name for name in WHOLE_WORD_TOPICS if rng.random() < 0.4]
        words = [rng.choice(WHOLE_WORD_TOPICS[name]) for name in present for _ in range(rng.randint(1, 2))]
        count = len(words)
        words += [rng.choice(WHOLE_WORD_FILLER) for _ in range(6 - count)]
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "topics": "|".join(present), "count": count})
    folder = tmp_path_factory.mktemp("same_length")
    return str(write_csv_rows(folder / "train.csv", rows, ["text", "topics", "count"]))


@pytest.fixture(scope="module")
def blind_bert_dir(tmp_path_factory, tiny_bert_dir):
    """tiny_bert_dir with one embedding shared by every token: its features cannot tell which words a text holds."""
    import shutil

    from transformers import BertModel

    folder = tmp_path_factory.mktemp("blind_bert")
    shutil.copytree(tiny_bert_dir, folder, dirs_exist_ok=True)
    model = BertModel.from_pretrained(folder)
    with torch.no_grad():
        weights = model.embeddings.word_embeddings.weight
        weights.copy_(weights[0].expand_as(weights))
    model.save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.mark.parametrize(
    ("flags", "linear", "knn", "titles"),
    [
        (
            ["--problem-type", MULTI, "--label-column", "topics", "--label-separator", "|"],
            "linear_map_macro",
            "knn_map_macro",
            ("3 labels", "kNN mAP", "linear mAP"),
        ),
        (["--problem-type", REGRESSION, "--label-column", "count"], "linear_r2", "knn_neg_rmse", ("1 targets", "R²")),
    ],
)
def test_rank_puts_the_checkpoint_that_sees_the_labels_first(
    tmp_path, monkeypatch, tiny_bert_dir, blind_bert_dir, same_length_csv, flags, linear, knn, titles, capsys
):
    monkeypatch.setenv("HF_TRANSFER_CACHE", str(tmp_path / "cache"))
    args = ["rank", "--checkpoints", str(blind_bert_dir), str(tiny_bert_dir), "--data", same_length_csv, *flags]
    assert main([*args, "--folds", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["problem_type"] == flags[1] and report["scores"] == ["logme", linear, knn]
    assert [r["checkpoint"] for r in report["candidates"]] == [str(tiny_bert_dir), str(blind_bert_dir)]
    informative, blind = report["candidates"]
    with capsys.disabled():  # shown with -s
        print(f"rank {flags[1]}: {[{k: round(r[k], 4) for k in report['scores']} for r in report['candidates']]}")
    for key in ("logme", linear, knn):
        assert informative[key] > blind[key], key
    assert "knn_accuracy" not in informative and "linear_accuracy" not in informative

    assert main([*args, "--folds", "3", "--by", linear]) == 0  # the table names the scores of this problem type
    table = capsys.readouterr().out
    assert f"Ranked by {linear}" in table and all(title in table for title in titles)
    assert table.index(str(tiny_bert_dir)) < table.index(str(blind_bert_dir))


def test_rank_reads_the_problem_type_from_the_recipe(tmp_path, monkeypatch, tiny_bert_dir, topic_csvs, capsys):
    monkeypatch.setenv("HF_TRANSFER_CACHE", str(tmp_path / "cache"))
    recipe = topic_recipe(tmp_path, tiny_bert_dir, topic_csvs, MULTI)
    assert main(["rank", "--recipe", recipe, "--checkpoints", str(tiny_bert_dir), "--folds", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["problem_type"] == MULTI and report["label_names"] == sorted(TOPICS)
    assert 0 <= report["candidates"][0]["linear_map_macro"] <= 1


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--problem-type", REGRESSION, "--label-column", "count", "--by", "knn_accuracy"], "by logme, linear_r2"),
        (["--problem-type", MULTI, "--label-column", "topics", "--zero-shot", "x"], "--zero-shot picks one label"),
        (["--label-column", "topics", "--label-separator", "|"], "--label-separator splits several labels"),
        (["--problem-type", REGRESSION, "--label-column", "topics"], "column 'topics'"),
    ],
)
def test_rank_mistakes_on_the_new_problem_types_are_one_line(tiny_bert_dir, topic_csvs, extra, expected, capsys):
    args = ["rank", "--checkpoints", str(tiny_bert_dir), "--data", str(topic_csvs["train"]), *extra]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
