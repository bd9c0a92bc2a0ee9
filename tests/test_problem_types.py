"""Multi-label classification and regression through every strategy, both backbones, the loop, predict and eval.

The data here is built as `Splits` (what the data loader hands the runner), so these tests exercise the model side
alone: heads, losses, scores, thresholds, target scaling, the run folder and loading it back.
"""

from __future__ import annotations

import json
import random
import re
import shutil

import numpy as np
import pytest
import torch
from datasets import Dataset
from helpers import write_recipe
from hypothesis import given, settings
from hypothesis import strategies as st

import hf_transfer
from hf_transfer.apps.cli import main
from hf_transfer.config.loading import load_recipe
from hf_transfer.core.errors import RecipeError
from hf_transfer.data.splits import Splits
from hf_transfer.problems.base import (
    POS_WEIGHT_RANGE,
    build_problem_type,
    labels_tensor,
    pos_weight_of,
)

MULTI = "multi_label_classification"
REGRESSION = "regression"
TOPICS = {"sport": ["goal", "match", "team"], "music": ["song", "band", "guitar"], "food": ["pizza", "bread", "soup"]}
FILLER = "the a it was is and of this that with story film good bad".split()


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------------------------------------------------
# Data: texts with several topics, digits with several properties; a count or a digit's value as the target
# --------------------------------------------------------------------------------------------------------------------


def topic_rows(n: int, seed: int) -> list[tuple[str, list[float], float]]:
    """(text, multi-hot over TOPICS, how many topic words) rows: each topic appears with probability 0.4."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        present = [rng.random() < 0.4 for _ in TOPICS]
        words = [rng.choice(FILLER) for _ in range(rng.randint(3, 8))]
        count = 0
        for on, keywords in zip(present, TOPICS.values()):
            for _ in range(rng.randint(1, 2) if on else 0):
                words.insert(rng.randrange(len(words) + 1), rng.choice(keywords))
                count += 1
        rows.append((" ".join(words), [float(p) for p in present], float(count)))
    return rows


DIGIT_PROPERTIES = ("even", "round", "large")  # round: 0, 6, 8, 9 have a loop


def digit_targets(label: str) -> tuple[list[float], float]:
    from fixtures_models import DIGIT_NAMES

    digit = DIGIT_NAMES.index(label)
    return [float(digit % 2 == 0), float(digit in (0, 6, 8, 9)), float(digit > 1)], float(digit)


def splits_of(problem_type, inputs, column, labels, names, scaling=None) -> Splits:
    """Splits of (train, validation, test) row lists; regression labels standardised with `scaling` as the data
    loader does with data.standardize_targets."""

    def dataset(part):
        xs, ys = part
        if scaling:
            ys = [[(v - m) / s for v, m, s in zip(y, scaling["mean"], scaling["std"])] for y in ys]
        return Dataset.from_dict({column: xs, "labels": ys})

    train, validation, test = (dataset((inputs[i], labels[i])) for i in range(3))
    return Splits(train, validation, test, names, problem_type=problem_type, target_scaling=scaling)


@pytest.fixture(scope="module")
def text_data():
    parts = [topic_rows(n, seed) for n, seed in ((96, 0), (48, 1), (48, 2))]
    texts = [[t for t, _, _ in part] for part in parts]
    multi = [[y for _, y, _ in part] for part in parts]
    counts = [[[c] for _, _, c in part] for part in parts]
    return texts, multi, counts


@pytest.fixture(scope="module")
def image_data(_digits_written):
    _, written = _digits_written  # 20 train and 10 test PNGs of each of zero, one, two
    train = written["train"]
    parts = [train[i::2] for i in range(2)] + [written["test"]]  # train, validation, test
    paths = [[str(p) for p, _ in part] for part in parts]
    multi = [[digit_targets(label)[0] for _, label in part] for part in parts]
    values = [[[digit_targets(label)[1]] for _, label in part] for part in parts]
    return paths, multi, values


def problem_splits(problem_type, modality, text_data, image_data, scaling=None) -> Splits:
    inputs, multi, values = text_data if modality == "text" else image_data
    column = "text" if modality == "text" else "image"
    if problem_type == MULTI:
        names = list(TOPICS) if modality == "text" else list(DIGIT_PROPERTIES)
        return splits_of(MULTI, inputs, column, multi, names)
    return splits_of(REGRESSION, inputs, column, values, ["count" if modality == "text" else "digit"], scaling)


def raw_rows(splits: Splits, split: str = "test") -> Dataset:
    """A split's rows with regression labels back in the targets' units (what `hf-transfer eval` reads)."""
    rows = getattr(splits, split)
    if not splits.target_scaling:
        return rows
    mean, std = splits.target_scaling["mean"], splits.target_scaling["std"]
    return rows.map(lambda row: {"labels": [v * s + m for v, m, s in zip(row["labels"], mean, std)]})


STRATEGY_SETTINGS = {
    "linear_probe": ({"name": "linear_probe", "pooling": "mean"}, 1e-2),
    "finetune": ("finetune", 2e-3),
    "lora": ({"name": "lora", "r": 4, "alpha": 8}, 5e-3),
    "dora": ({"name": "lora", "r": 4, "alpha": 8, "use_dora": True}, 5e-3),
    "ia3": ("ia3", 2e-2),
}


def problem_recipe(tmp_path, modality, checkpoint, problem_type, strategy, name="run", library="auto", **sections):
    strategy_section, lr = STRATEGY_SETTINGS[strategy]
    train = {"epochs": 3, "batch_size": 16, "learning_rate": lr, "seed": 0, "log_every_steps": 2}
    train |= sections.pop("train", {})
    data = {"train_files": ["unused.csv"]}
    if modality == "image":
        data |= {"augment": "none"}
    return write_recipe(
        tmp_path / f"{name}.yaml",
        task="text-classification" if modality == "text" else "image-classification",
        problem_type=problem_type,
        model={"checkpoint": str(checkpoint), "library": library},
        data=data | sections.pop("data", {}),
        strategy=strategy_section,
        train=train,
        output={"dir": str(tmp_path / "outputs" / name)},
        **sections,
    )


def run_on(monkeypatch, recipe_path, splits: Splits):
    """Run a recipe on `splits` (standing in for what the data loader reads from the recipe's files)."""
    monkeypatch.setattr("hf_transfer.runs.runner.load_splits", lambda *args, **kwargs: splits)
    return hf_transfer.run(str(recipe_path))


def metrics_of(run_dir) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


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

    # The folder loads back and reproduces metrics.json on the same rows.
    again = classifier.evaluate_rows(test_rows)
    recorded = metrics["test"]
    keys = ("f1_micro", "f1_macro", "hamming_loss") if problem_type == MULTI else ("mse", "rmse", "mae")
    for key in keys:
        assert again[key] == pytest.approx(recorded[key], rel=1e-4, abs=1e-5), key


# --------------------------------------------------------------------------------------------------------------------
# Losses, scores, class weights
# --------------------------------------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.sampled_from([0.0, 1.0]), min_size=3, max_size=3), min_size=1, max_size=40))
def test_pos_weight_is_negatives_over_positives_within_bounds(rows):
    weights = pos_weight_of(rows).numpy()
    matrix = np.asarray(rows)
    low, high = POS_WEIGHT_RANGE
    for k in range(3):
        positives = matrix[:, k].sum()
        expected = high if positives == 0 else np.clip((len(matrix) - positives) / positives, low, high)
        assert weights[k] == pytest.approx(expected)


def test_class_weights_auto_weighs_the_rare_labels_positives_in_the_bce():
    problem = build_problem_type(MULTI, load_train(class_weights="auto"))
    labels = [[1.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 1.0], [1.0, 0.0]]  # label 0: 2 of 5; label 1: 1 of 5
    weights = problem.class_weights(labels, 2)
    assert weights.tolist() == pytest.approx([1.5, 4.0])
    logits, target = torch.zeros(1, 2), torch.tensor([[1.0, 1.0]])
    # with every logit 0, each positive costs log 2 times its label's pos_weight
    assert float(problem.loss(logits, target, weights)) == pytest.approx(np.log(2) * (1.5 + 4.0) / 2)
    with pytest.raises(RecipeError, match="3 weights for 2 labels"):
        build_problem_type(MULTI, load_train(class_weights=[1.0, 2.0, 3.0])).class_weights(labels, 2)


def load_train(**train):
    from hf_transfer.config.sections import TrainConfig

    return TrainConfig(**train)


def test_regression_losses_and_scores():
    logits, target = torch.tensor([[0.0], [3.0]]), torch.tensor([[0.0], [0.0]])
    assert float(build_problem_type(REGRESSION, load_train()).loss(logits, target)) == pytest.approx(4.5)
    huber = build_problem_type(REGRESSION, load_train(regression_loss="huber", huber_delta=1.0))
    assert float(huber.loss(logits, target)) == pytest.approx((0 + (3 - 0.5)) / 2)  # linear beyond delta
    assert torch.equal(huber.scores(logits), logits)  # the raw value, no squashing


def test_label_tensors_are_long_for_classes_and_float_for_rows():
    assert labels_tensor([1, 0]).dtype == torch.long
    assert labels_tensor([[1.0, 0.0], [0.0, 1.0]]).dtype == torch.float32
    assert labels_tensor([[2.5]], REGRESSION).shape == (1, 1)


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


def test_target_scaling_folds_into_the_one_head_layer_only():
    from hf_transfer.problems.base import fold_target_scaling

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    x = torch.randn(5, 4)
    before = model(x).detach()
    scaling = {"mean": [100.0, -3.0], "std": [10.0, 0.5]}
    assert fold_target_scaling(model, scaling, 2)
    assert model(x).detach() == pytest.approx(before * torch.tensor([10.0, 0.5]) + torch.tensor([100.0, -3.0]))
    ambiguous = torch.nn.Sequential(torch.nn.Linear(4, 2), torch.nn.Linear(2, 2))
    weights = [p.detach().clone() for p in ambiguous.parameters()]
    assert not fold_target_scaling(ambiguous, scaling, 2)  # two candidates: left alone, predict scales instead
    assert all(torch.equal(a, b) for a, b in zip(weights, ambiguous.parameters()))


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


def test_timm_head_has_one_output_per_label(tmp_path, monkeypatch, tiny_timm_dir, text_data, image_data):
    splits = problem_splits(MULTI, "image", text_data, image_data)
    recipe = problem_recipe(tmp_path, "image", tiny_timm_dir, MULTI, "finetune", train={"epochs": 1})
    run_dir = run_on(monkeypatch, recipe, splits)
    config = json.loads((run_dir / "config.json").read_text())
    assert config["num_classes"] == len(DIGIT_PROPERTIES)
    assert config["label_names"] == list(DIGIT_PROPERTIES)


@pytest.mark.parametrize("problem_type", [MULTI, REGRESSION])
def test_baselines_report_the_gain_on_the_problem_types_metric(
    tmp_path, monkeypatch, tiny_bert_dir, text_data, image_data, problem_type, capsys
):
    from hf_transfer.apps.cli import transfer_lines

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
    names = list(TOPICS)
    files = {}
    for split, (n, seed) in {"train": (96, 0), "validation": (48, 1), "test": (48, 2)}.items():
        rows = [{"text": t, "label": [k for k, on in zip(names, y) if on]} for t, y, _ in topic_rows(n, seed)]
        files[split] = tmp_path / f"{split}.jsonl"
        files[split].write_text("".join(json.dumps(row) + "\n" for row in rows))
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
