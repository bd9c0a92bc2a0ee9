"""Multi-label classification and regression through every strategy, both backbones, the loop, predict and eval.

The data here is built as `Splits` (what the data loader hands the runner), so these tests exercise the model side
alone: heads, losses, scores, thresholds, target scaling, the run folder and loading it back.
"""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import torch
from helpers import metrics_of
from topics_and_digits import (
    MULTI,
    REGRESSION,
    TOPICS,
    problem_recipe,
    problem_splits,
    raw_rows,
    run_on,
    splits_of,
    topic_jsonl_files,
    topic_rows,
)

import hf_transfer
from hf_transfer.apps.cli import main
from hf_transfer.config.loading import load_recipe
from hf_transfer.core.errors import RecipeError

pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------------------------------------------------
# Every strategy x both problem types x both modalities
# --------------------------------------------------------------------------------------------------------------------

GRID = [
    (modality, problem, strategy)
    for modality in ("text", "image")
    for problem in (MULTI, REGRESSION)
    for strategy in ("linear_probe", "finetune", "lora", "ia3")
] + [
    ("text", MULTI, "dora"),
    ("image", REGRESSION, "dora"),
    ("hf_image", MULTI, "lora"),  # the transformers vision backbone (a tiny ViT) too
    ("hf_image", REGRESSION, "finetune"),
]


@pytest.fixture(scope="module")
def tiny_hf_vit_dir(tmp_path_factory):
    from fixtures_models import build_tiny_vision_model

    return build_tiny_vision_model(tmp_path_factory.mktemp("tiny_hf_vit"), "vit")


@pytest.mark.parametrize(("modality", "problem_type", "strategy"), GRID)
def test_every_strategy_learns_and_reloads(
    request,
    tmp_path,
    monkeypatch,
    tiny_bert_dir,
    tiny_timm_dir,
    text_data,
    image_data,
    modality,
    problem_type,
    strategy,
):
    library = {"hf_image": "transformers"}.get(modality, "auto")
    checkpoint = {"text": tiny_bert_dir, "image": tiny_timm_dir}.get(modality) or request.getfixturevalue(
        "tiny_hf_vit_dir"
    )
    modality = "image" if modality == "hf_image" else modality
    scaling = {"mean": [2.0], "std": [1.5]} if problem_type == REGRESSION else None
    splits = problem_splits(problem_type, modality, text_data, image_data, scaling)
    recipe = problem_recipe(tmp_path, modality, checkpoint, problem_type, strategy, library=library)
    run_dir = run_on(monkeypatch, recipe, splits)
    metrics = metrics_of(run_dir)
    names = splits.label_names

    # The loss falls: measured on validation with each epoch's final weights (the mean train loss of an epoch also
    # moves with dropout and the schedule).
    losses = [h["eval_loss"] for h in metrics["history"]]
    assert losses[-1] < losses[0], losses
    best = metrics["best_metric"]
    assert best["name"] == ("f1_macro" if problem_type == MULTI else "rmse")  # the default per problem type

    classifier = hf_transfer.load(run_dir)
    test_rows = raw_rows(splits)
    inputs = test_rows[splits.test.column_names[0]]
    scores = classifier.predict_proba(inputs[:5])
    assert scores.shape == (5, len(names))
    predictions = classifier.predict(inputs[:5])
    if problem_type == MULTI:
        assert ((scores >= 0) & (scores <= 1)).all()
        assert set(predictions[0]) == {"labels", "scores"} and list(predictions[0]["scores"]) == names
        assert (run_dir / "thresholds.json").is_file()
    else:
        assert list(predictions[0]["values"]) == names
        assert "mse" in metrics["test"] and "accuracy" not in metrics["test"]

    if modality == "image" and library == "auto" and strategy == "finetune":  # a timm repo: one output per label
        config = json.loads((run_dir / "config.json").read_text())
        assert config["num_classes"] == len(names) and config["label_names"] == names

    # The folder loads back and reproduces metrics.json on the same rows.
    again = classifier.evaluate_rows(test_rows)
    recorded = metrics["test"]
    keys = ("f1_micro", "f1_macro", "hamming_loss") if problem_type == MULTI else ("mse", "rmse", "mae")
    for key in keys:
        assert again[key] == pytest.approx(recorded[key], rel=1e-4, abs=1e-5), key


# --------------------------------------------------------------------------------------------------------------------
# The recipe: metrics, defaults and options that do not fit a problem type
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("problem_type", "overrides", "message"),
    [
        (REGRESSION, ["eval.metric=accuracy"], "eval.metric 'accuracy' does not apply to problem_type regression"),
        (MULTI, ["eval.metric=rmse"], "does not apply to problem_type multi_label_classification"),
        ("single_label_classification", ["eval.metric=hamming_loss"], "does not apply"),
        (REGRESSION, ["train.sampler=balanced"], "regression targets have no classes"),
        (MULTI, ["train.sampler=undersample"], "several labels"),
        (REGRESSION, ["train.class_weights=auto"], "regression has none"),
        (REGRESSION, ["strategy.smote=true"], "strategy.smote"),
        (MULTI, ["strategy.smote=true"], "strategy.smote"),
    ],
)
def test_options_that_do_not_fit_the_problem_type_are_one_line_errors(
    tmp_path, tiny_bert_dir, problem_type, overrides, message, capsys
):
    recipe = problem_recipe(tmp_path, "text", tiny_bert_dir, problem_type, "linear_probe")
    with pytest.raises(RecipeError, match=message) as err:
        load_recipe(str(recipe), overrides)
    assert "\n" not in str(err.value)
    assert main(["validate", str(recipe), *overrides]) == 2
    assert message.split("'")[0] in capsys.readouterr().err


@pytest.mark.parametrize(
    ("problem_type", "metric"),
    [("single_label_classification", "f1_macro"), (MULTI, "f1_macro"), (REGRESSION, "rmse")],
)
def test_eval_metric_defaults_per_problem_type(tmp_path, tiny_bert_dir, problem_type, metric):
    recipe = load_recipe(str(problem_recipe(tmp_path, "text", tiny_bert_dir, problem_type, "finetune")))
    assert recipe.eval.metric == metric
    assert recipe.to_dict()["eval"]["metric"] == metric  # recorded resolved, so the run folder says what chose


def test_regression_keeps_the_epoch_with_the_lowest_error(tmp_path, monkeypatch, tiny_bert_dir, text_data, image_data):
    splits = problem_splits(REGRESSION, "text", text_data, image_data)
    recipe = problem_recipe(
        tmp_path, "text", tiny_bert_dir, REGRESSION, "linear_probe", eval={"metric": "mae"}, train={"epochs": 4}
    )
    metrics = metrics_of(run_on(monkeypatch, recipe, splits))
    maes = [h["mae"] for h in metrics["history"]]
    assert metrics["best_metric"]["value"] == pytest.approx(min(maes))
    assert metrics["best_epoch"] == 1 + maes.index(min(maes))
    assert metrics["validation"]["mae"] == pytest.approx(min(maes), rel=1e-5)  # the kept weights are that epoch's


# --------------------------------------------------------------------------------------------------------------------
# Thresholds (multi-label) and target scaling (regression) in the run folder, predict and eval
# --------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def multi_label_run(tmp_path_factory, tiny_bert_dir, text_data, image_data):
    tmp_path = tmp_path_factory.mktemp("multi_label_run")
    splits = problem_splits(MULTI, "text", text_data, image_data)
    recipe = problem_recipe(tmp_path, "text", tiny_bert_dir, MULTI, "finetune", train={"epochs": 4})
    with pytest.MonkeyPatch.context() as monkeypatch:
        return run_on(monkeypatch, recipe, splits), splits


def test_thresholds_are_tuned_on_validation_saved_and_used(multi_label_run):
    from hf_transfer.metrics.multilabel import tune_thresholds

    run_dir, splits = multi_label_run
    saved = json.loads((run_dir / "thresholds.json").read_text())
    assert list(saved["thresholds"]) == splits.label_names
    classifier = hf_transfer.load(run_dir)
    validation = splits.validation
    scores = classifier.predict_proba(validation["text"])
    expected = tune_thresholds(np.asarray(validation["labels"]), scores)
    assert list(saved["thresholds"].values()) == pytest.approx(expected, abs=1e-5)
    assert classifier.thresholds == pytest.approx(expected, abs=1e-5)

    texts = splits.test["text"][:20]
    test_scores = classifier.predict_proba(texts)
    for prediction, row in zip(classifier.predict(texts), test_scores):
        wanted = [n for n, p, t in zip(splits.label_names, row, expected) if p >= t]
        assert prediction["labels"] == wanted
    metrics = json.loads((run_dir / "metrics.json").read_text())
    per_label = metrics["test"]["per_label"]
    assert [per_label[n]["threshold"] for n in splits.label_names] == pytest.approx(expected, abs=1e-5)


def test_threshold_overrides_every_label_in_predict_and_eval(multi_label_run, capsys):
    run_dir, splits = multi_label_run
    texts = splits.test["text"][:3]
    assert main(["predict", str(run_dir), *texts, "--threshold", "0", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [p["labels"] for p in printed] == [splits.label_names] * 3  # every score is at least 0
    assert all(set(p["scores"]) == set(splits.label_names) for p in printed)
    assert main(["predict", str(run_dir), texts[0], "--threshold", "1"]) == 0
    label_field, scores, text = capsys.readouterr().out.strip().split("\t")
    assert label_field == "-" and text == texts[0] and scores.count(":") == len(splits.label_names)

    classifier = hf_transfer.load(run_dir)
    everything = classifier.evaluate_rows(splits.test, threshold=0.0)
    assert everything["hamming_loss"] == pytest.approx(1 - np.asarray(splits.test["labels"]).mean())
    assert main(["predict", str(run_dir), texts[0], "--threshold", "1.5"]) == 2
    assert "--threshold must be between 0 and 1" in capsys.readouterr().err


@pytest.fixture(scope="module")
def regression_run(tmp_path_factory, tiny_bert_dir, text_data, image_data):
    tmp_path = tmp_path_factory.mktemp("regression_run")
    scaling = {"mean": [100.0], "std": [10.0]}  # far from 0 and 1: a forgotten un-scaling cannot hide
    texts, _, counts = text_data
    targets = [[[100.0 + 10.0 * c[0]] for c in part] for part in counts]
    splits = splits_of(REGRESSION, texts, "text", targets, ["score"], scaling)
    recipe = problem_recipe(tmp_path, "text", tiny_bert_dir, REGRESSION, "finetune", train={"epochs": 4})
    with pytest.MonkeyPatch.context() as monkeypatch:
        return run_on(monkeypatch, recipe, splits), splits


def test_regression_is_unstandardised_in_metrics_and_at_predict(regression_run, tmp_path, capsys):
    run_dir, splits = regression_run
    metadata = json.loads((run_dir / "hf_transfer.json").read_text())
    assert metadata["problem_type"] == REGRESSION
    assert metadata["target_scaling"] == {"mean": [100.0], "std": [10.0]}
    assert metadata["target_scaling_in_weights"] is True  # folded into the head: the saved model speaks in units
    classifier = hf_transfer.load(run_dir)
    texts = splits.test["text"][:8]
    values = classifier.predict_proba(texts)[:, 0]
    with torch.no_grad():
        batch = classifier.backbone.tokenizer(texts, padding=True, return_tensors="pt")
        outputs = classifier.model(**batch).logits[:, 0].numpy()
    assert values == pytest.approx(outputs, rel=1e-5)
    assert 80 < values.mean() < 160  # in the targets' units, not standard deviations
    recorded = metrics_of(run_dir)["test"]
    truth = np.asarray(raw_rows(splits)["labels"])[:, 0]
    all_values = classifier.predict_proba(splits.test["text"])[:, 0]
    assert recorded["rmse"] == pytest.approx(float(np.sqrt(((all_values - truth) ** 2).mean())), rel=1e-4)

    # A run whose scaling is not in the weights (no single head layer to fold it into): predict applies it.
    unfolded = tmp_path / "unfolded"
    shutil.copytree(run_dir, unfolded)
    metadata["target_scaling_in_weights"] = False
    (unfolded / "hf_transfer.json").write_text(json.dumps(metadata))
    assert hf_transfer.load(unfolded).predict_proba(texts)[:, 0] == pytest.approx(outputs * 10 + 100, rel=1e-5)

    assert main(["predict", str(run_dir), texts[0], "--json"]) == 0
    (printed,) = json.loads(capsys.readouterr().out)
    assert printed["values"]["score"] == pytest.approx(values[0], rel=1e-4)
    assert main(["predict", str(run_dir), texts[0]]) == 0
    assert capsys.readouterr().out.startswith(f"score={values[0]:.4f}\t")
    assert main(["predict", str(run_dir), texts[0], "--threshold", "0.3"]) == 2
    assert "multi-label" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------------------------
# The saved models outside hf-transfer
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["multi_label_run", "regression_run"])
def test_transformers_pipeline_scores_like_the_run(request, which):
    from transformers import pipeline

    run_dir, splits = request.getfixturevalue(which)
    config = json.loads((run_dir / "config.json").read_text())
    assert config["problem_type"] == splits.problem_type
    assert list(config["id2label"].values()) == splits.label_names
    texts = splits.test["text"][:4]
    classify = pipeline("text-classification", model=str(run_dir), top_k=None, device="cpu")
    ours = hf_transfer.load(run_dir, device="cpu").predict_proba(texts)
    for row, theirs in zip(ours, classify(texts)):
        by_name = {item["label"]: item["score"] for item in theirs}
        # sigmoid per label, or the value in the targets' units (the scaling is in the head's weights)
        assert [by_name[name] for name in splits.label_names] == pytest.approx(row, rel=1e-4, abs=1e-4)


@pytest.mark.parametrize("problem_type", [MULTI, REGRESSION])
def test_baselines_report_the_gain_on_the_problem_types_metric(
    tmp_path, monkeypatch, tiny_bert_dir, text_data, image_data, problem_type, capsys
):
    from hf_transfer.apps.commands import transfer_lines

    splits = problem_splits(problem_type, "text", text_data, image_data)
    recipe = problem_recipe(
        tmp_path, "text", tiny_bert_dir, problem_type, "finetune", baseline=["head_only"], train={"epochs": 1}
    )
    metrics = metrics_of(run_on(monkeypatch, recipe, splits))
    transfer = metrics["transfer"]
    metric = "f1_macro" if problem_type == MULTI else "rmse"
    assert transfer["metric"] == metric and transfer["baseline"] == "head_only"
    assert transfer["a"] == pytest.approx(metrics["test"][metric])  # the run's own figure, at its tuned thresholds
    assert transfer["baselines"]["head_only"] == pytest.approx(metrics["baselines"]["head_only"][metric])
    assert transfer["ci_low"] <= transfer["difference"] <= transfer["ci_high"]
    (line,) = transfer_lines(metrics)
    assert line.startswith(f"transfer: {metric} ") and ("lower is better" in line) == (problem_type == REGRESSION)


@pytest.mark.parametrize("which", ["multi_label_run", "regression_run"])
def test_card_names_the_problem_types_metrics_plots_and_outputs(request, which, capsys):
    from huggingface_hub import ModelCard

    run_dir, splits = request.getfixturevalue(which)
    card = ModelCard.load(run_dir / "README.md")
    metric_types = {r.metric_type for r in card.data.eval_results}
    text = card.text
    if which == "multi_label_run":
        assert {"f1", "accuracy"} <= metric_types and "It predicts any of 3 labels" in text
        assert "(per_label.png)" in text and "thresholds.json" in text
        assert (run_dir / "per_label.png").is_file()
    else:
        assert {"rmse", "mae", "r_squared"} <= metric_types and "It predicts 1 value(s): `score`" in text
        assert "(predictions.png)" in text and "(residuals.png)" in text
        assert (run_dir / "predictions.png").is_file() and (run_dir / "residuals.png").is_file()
    assert "confusion_matrix.png" not in text

    # The transformers-only snippet prints what hf-transfer predicts, run here against the run folder.
    code = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)[-1]
    assert "pipeline(" in code
    expected = hf_transfer.load(run_dir).predict(["A small gem of a movie."])[0]
    capsys.readouterr()
    exec(compile(code, "README.md", "exec"), {"__name__": "__card__"})
    printed = capsys.readouterr().out.strip()
    if which == "multi_label_run":
        assert printed == str(expected["labels"])
    else:
        assert float(printed.split(": ")[1].rstrip("}")) == pytest.approx(expected["values"]["score"], rel=1e-4)


# --------------------------------------------------------------------------------------------------------------------
# End to end from files: `hf-transfer run`, then `eval` on the test file reproduces metrics.json
# --------------------------------------------------------------------------------------------------------------------


def test_multi_label_from_a_list_column_runs_and_evals_from_files(tmp_path, tiny_bert_dir, capsys):
    files = topic_jsonl_files(tmp_path, MULTI)
    recipe = problem_recipe(
        tmp_path,
        "text",
        tiny_bert_dir,
        MULTI,
        "finetune",
        data={"train_files": [str(files["train"])], "validation_files": [str(files["validation"])]}
        | {"test_files": [str(files["test"])]},
        train={"epochs": 3, "class_weights": "auto"},
    )
    assert main(["run", str(recipe)]) == 0
    run_dir = tmp_path / "outputs" / "run"
    recorded = metrics_of(run_dir)["test"]
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--data", str(files["test"]), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    for key in ("f1_micro", "f1_macro", "subset_accuracy", "hamming_loss", "map_macro"):
        assert again[key] == pytest.approx(recorded[key], rel=1e-4, abs=1e-6), key
    assert main(["eval", str(run_dir), "--data", str(files["test"]), "--json", "--threshold", "0"]) == 0
    everything = json.loads(capsys.readouterr().out)
    assert everything["recall_micro"] == pytest.approx(1.0)  # every label predicted for every row
    assert all(row["threshold"] == 0.0 for row in everything["per_label"].values())


def test_regression_from_csv_with_standardised_targets_runs_and_evals_from_files(tmp_path, tiny_bert_dir, capsys):
    from fixtures_models import write_csv_rows

    files = {
        split: write_csv_rows(
            tmp_path / f"{split}.csv",
            [{"text": t, "score": 50.0 + 5.0 * c} for t, _, c in topic_rows(n, seed)],
            ["text", "score"],
        )
        for split, (n, seed) in {"train": (96, 0), "test": (48, 2)}.items()
    }
    recipe = problem_recipe(
        tmp_path,
        "text",
        tiny_bert_dir,
        REGRESSION,
        "lora",
        data={
            "train_files": [str(files["train"])],
            "test_files": [str(files["test"])],
            "label_column": "score",
            "standardize_targets": True,
        },
        train={"epochs": 3, "regression_loss": "huber"},
    )
    assert main(["run", str(recipe)]) == 0
    run_dir = tmp_path / "outputs" / "run"
    metadata = json.loads((run_dir / "hf_transfer.json").read_text())
    scaling = metadata["target_scaling"]  # of the train rows left after carving validation
    assert 55 < scaling["mean"][0] < 65 and 3 < scaling["std"][0] < 10
    recorded = metrics_of(run_dir)["test"]
    assert recorded["rmse"] < 15  # in score units: a model that ignored the scaling would be ~50 off
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--data", str(files["test"]), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    for key in ("mse", "rmse", "mae", "r2"):
        assert again[key] == pytest.approx(recorded[key], rel=1e-4), key
    assert main(["predict", str(run_dir), "the band played a song", "--json"]) == 0
    (prediction,) = json.loads(capsys.readouterr().out)
    assert 30 < prediction["values"]["score"] < 90


@pytest.mark.parametrize("problem_type", [MULTI, REGRESSION])
def test_cross_validation_runs_the_problem_types_folds(tmp_path, tiny_bert_dir, problem_type, capsys):
    names = list(TOPICS)
    rows = [
        {"text": t, "label": [k for k, on in zip(names, y) if on] if problem_type == MULTI else c}
        for t, y, c in topic_rows(60, 0)
    ]
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(row) + "\n" for row in rows))
    recipe = problem_recipe(
        tmp_path, "text", tiny_bert_dir, problem_type, "linear_probe", data={"train_files": [str(train)]}
    )
    out = tmp_path / "cv"
    assert main(["cv", str(recipe), "train.epochs=2", "--folds", "3", "--output", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    # the rows each fold holds out (multi-label folds validate on rows of their own and test on these)
    assert [f.get("test_rows", f["validation_rows"]) for f in report["per_fold"]] == [20, 20, 20]
    metric = "f1_macro" if problem_type == MULTI else "rmse"
    assert len(report["summary"][metric]["values"]) == 3
