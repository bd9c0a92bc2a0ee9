"""Source -> target transfer: the gain over a no-transfer baseline is measured with a confidence interval, sources and
targets of any problem type feed each other, forgetting is scored as the source scored itself, and settings that
cannot apply to a source are refused in the recipe."""

from __future__ import annotations

import csv
import json

import pytest
from fixtures_models import write_csv_rows
from helpers import text_recipe, write_recipe
from topics_and_digits import MULTI, REGRESSION, SINGLE, TOPICS, topic_csv_rows, topic_recipe

import hf_transfer
from hf_transfer.apps.cli import main
from hf_transfer.config.loading import load_recipe
from hf_transfer.core.errors import RecipeError

pytestmark = pytest.mark.usefixtures("one_thread")


def few_rows(src, dst, n):
    with open(src) as f:
        rows = list(csv.DictReader(f))[:n]
    with open(dst, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return dst


@pytest.mark.parametrize("target_strategy", ["finetune", "lora"])
def test_source_stage_then_target_with_scratch_baseline(tmp_path, tiny_bert_dir, keyword_csvs, target_strategy):
    # Target: the same kind of task with only 24 labelled rows; source: 240 rows of it under other label names.
    target_train = few_rows(keyword_csvs["train"], tmp_path / "few.csv", 24)
    source_train = tmp_path / "source.csv"
    with open(keyword_csvs["train"]) as f, open(source_train, "w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=["text", "label"])
        writer.writeheader()
        for row in csv.DictReader(f):
            writer.writerow({"text": row["text"], "label": {"pos": "good", "neg": "bad"}[row["label"]]})
    recipe = text_recipe(
        tmp_path,
        tiny_bert_dir,
        {"train": target_train, "test": keyword_csvs["test"]},
        target_strategy,
        train={"epochs": 10, "learning_rate": 3e-3, "batch_size": 8},
        source={
            "data": {"train_files": [str(source_train)]},
            "strategy": "finetune",
            "train": {"epochs": 10, "learning_rate": 1e-3, "batch_size": 16, "seed": 0},
        },
        baseline=["scratch", "head_only"],
    )
    run_dir = hf_transfer.run(str(recipe))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    transfer = metrics["transfer"]
    assert transfer["split"] == "test" and transfer["baseline"] == "scratch"
    assert set(transfer["baselines"]) == {"scratch", "head_only"}
    # what the source stage learnt carries over: the gain over training from scratch is real and its CI excludes 0
    assert transfer["metric"] == "f1_macro"  # the recipe's eval.metric
    assert transfer["a"] == pytest.approx(metrics["test"]["f1_macro"])
    assert transfer["difference"] > 0.2
    assert transfer["ci_low"] > 0
    assert transfer["ci_low"] <= transfer["difference"] <= transfer["ci_high"]
    source = metrics["source"]
    assert source["label_names"] == ["bad", "good"]
    assert source["before"]["accuracy"] > 0.9
    assert source["forgotten"]["accuracy"] == pytest.approx(source["before"]["accuracy"] - source["after"]["accuracy"])
    card = (run_dir / "README.md").read_text()
    assert "scratch baseline" in card
    # the run folder loads back on its own (a LoRA target carries the source-trained weights with it)
    if target_strategy == "lora":
        assert (run_dir / "source_model" / "model.safetensors").is_file()
        pushed = hf_transfer.push(run_dir, "tester/transfer", dry_run=True, base_model="tester/tiny-bert")
        assert "source_model/model.safetensors" in pushed.files  # and they travel to the Hub too
    again = hf_transfer.load(run_dir).evaluate([str(keyword_csvs["test"])])
    assert again["accuracy"] == pytest.approx(metrics["test"]["accuracy"])


# --------------------------------------------------------------------------------------------------------------------
# Across problem types: single-label, multi-label and regression sources and targets
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
    few = write_csv_rows(tmp_path / "few.csv", topic_csv_rows(40, seed=5), ["text", "topics", "count", "mood"])
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
    assert source["metrics"] == ["rmse", "r2"]
    assert source["forgotten"]["rmse"] == pytest.approx(source["after"]["rmse"] - source["before"]["rmse"])
    assert set(metrics["test"]["per_label"]) == {"even", "large", "round"}
    (prediction,) = hf_transfer.load(run_dir).predict([read_csv_rows(csvs["test"])[0]["image"]])
    assert set(prediction["scores"]) == {"even", "large", "round"}


def test_forgetting_counts_a_grown_error_as_forgotten():
    from hf_transfer.problems import problem_type
    from hf_transfer.runs.transfer import forgetting_report

    report = forgetting_report(problem_type(REGRESSION), {"rmse": 1.0, "r2": 0.8}, {"rmse": 1.5, "r2": None})
    assert report["forgotten"] == {"rmse": 0.5, "r2": None}
    multi = problem_type(MULTI)
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
