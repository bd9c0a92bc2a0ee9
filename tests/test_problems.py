"""The problem-type registry and each registered type's interface, checked unit by unit on tiny labelled data.

Every registered type answers every method of `ProblemType` here, so a fourth type is tested as soon as it is
registered; the problem types' names are defined once, by their classes.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset, DatasetDict
from hypothesis import given, settings
from hypothesis import strategies as st

from hf_transfer.config.sections import DataConfig, TrainConfig
from hf_transfer.config.strategies import LinearProbeConfig
from hf_transfer.core.errors import RecipeError
from hf_transfer.problems import PROBLEM_TYPES, ProblemType, problem_type, problem_type_names
from hf_transfer.problems.base import LABEL, labels_tensor
from hf_transfer.problems.multi_label import POS_WEIGHT_RANGE, pos_weight_of

PACKAGE = Path(__file__).resolve().parent.parent / "hf_transfer"
MULTI = "multi_label_classification"
REGRESSION = "regression"
ROWS = 24


def example(problem: ProblemType) -> tuple[DatasetDict, DataConfig]:
    """train / validation rows of `problem`'s kind of labels, and the data section that reads them."""
    rng = np.random.default_rng(0)
    data = DataConfig(train_files=["unused.csv"])
    if problem.reads_label_separator:  # several labels written in one cell
        cells = ["a|b", "a", "b", "c|a", "c", "b|c"]
        data = replace(data, label_separator="|")
    elif problem.reads_standardize_targets:  # numeric targets
        cells = [float(v) for v in rng.normal(3.0, 2.0, size=6)]
    else:
        cells = ["neg", "pos", "neg", "pos", "mid", "mid"]
    train = [cells[i % len(cells)] for i in range(ROWS)]
    validation = [cells[i % len(cells)] for i in range(6)]
    raw = DatasetDict(
        {
            "train": Dataset.from_dict({"text": [f"row {i}" for i in range(ROWS)], "label": train}),
            "validation": Dataset.from_dict({"text": [f"row {i}" for i in range(6)], "label": validation}),
        }
    )
    return raw, data


@pytest.fixture(params=problem_type_names())
def problem(request) -> ProblemType:
    return problem_type(request.param)


@pytest.fixture
def coded(problem):
    raw, data = example(problem)
    encoded, names = problem.encode_targets(raw, data, {role: f"the {role} split" for role in raw})
    return raw, data, encoded, names


def test_the_registry_lists_the_three_types_single_label_first():
    assert problem_type_names() == ("single_label_classification", MULTI, REGRESSION)
    assert [type(p).__name__ for p in PROBLEM_TYPES.values()] == ["SingleLabel", "MultiLabel", "Regression"]


def test_an_unknown_problem_type_is_named_with_a_did_you_mean():
    with pytest.raises(RecipeError, match="unknown problem_type 'regresion' \\(did you mean 'regression'\\?\\)"):
        problem_type("regresion")


def test_each_type_describes_itself(problem):
    assert problem.default_metric in problem.metric_names
    assert problem.names_word in ("classes", "labels", "targets")
    assert set(problem.source_report_metrics) <= set(problem.metric_names)
    assert problem.greater_is_better(problem.default_metric) == (problem.default_metric != "rmse")
    assert problem.knn_score_name.startswith("knn_") and problem.linear_score_name.startswith("linear_")


def test_each_type_accepts_the_default_settings(problem):
    problem.check_data(DataConfig(train_files=["a.csv"]))
    problem.check_train(TrainConfig())
    problem.check_strategy(LinearProbeConfig())
    problem.check_baselines(["scratch"])


def test_each_type_codes_its_labels_and_new_data_alike(problem, coded):
    raw, data, encoded, names = coded
    assert LABEL in encoded["train"].column_names and "label" not in encoded["train"].column_names
    labels = problem.label_array(encoded["train"])
    assert len(labels) == ROWS and (labels.ndim == 1) == problem.picks_one_label
    again = problem.encode_targets_like(raw["validation"], data, names, "new data")
    assert np.array_equal(problem.label_array(again), problem.label_array(encoded["validation"]))


def test_each_type_carves_limits_and_folds_its_rows(problem, coded):
    _, _, encoded, names = coded
    train, validation = problem.carve_validation(encoded["train"], 0.25, 0, names)
    assert len(train) + len(validation) == ROWS and 0 < len(validation) < ROWS
    assert len(problem.limit_rows(encoded["train"], None, 0)) == ROWS
    labels = problem.label_array(encoded["train"])
    folds = problem.fold_indices(labels, 3, 0)
    held_out = np.sort(np.concatenate([rows for _, rows in folds]))
    assert len(folds) == 3 and np.array_equal(held_out, np.arange(ROWS))
    problem.check_fold_rows(labels, names, 3, "train rows", "lower --folds to {n}")


def test_each_type_scores_trains_and_predicts(problem, coded, tmp_path):
    _, _, encoded, names = coded
    labels = problem.label_array(encoded["validation"])
    batch = problem.labels_tensor(encoded["validation"][LABEL])
    logits = torch.randn(len(labels), len(names), generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(problem.loss(logits, batch, train=TrainConfig()))
    scores = problem.scores(logits).numpy().astype(np.float64)
    assert problem.class_weights(batch, len(names), TrainConfig()) is None
    metrics = problem.metrics(labels, scores, names, problem.decision_thresholds(None, len(names)))
    assert set(problem.card_metrics) <= set(metrics) and problem.default_metric in metrics
    value = problem.scalar_metric_fn(problem.default_metric)(labels, scores)
    assert value is None or value == pytest.approx(metrics[problem.default_metric])
    predictions = problem.predictions(scores, names, problem.decision_thresholds(None, len(names)))
    assert len(predictions) == len(labels) and all(problem.prediction_key in p for p in predictions)
    problem.save_plots(metrics, labels, scores, names, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(file for _, file in problem.card_plots)
    assert np.allclose(problem.in_target_units(scores, None), scores)


def test_each_type_scores_frozen_features(problem, coded):
    _, _, encoded, _ = coded
    labels = problem.label_array(encoded["train"])
    informative = np.random.default_rng(0).normal(size=(ROWS, 4))
    informative[:, : len(problem.logme_targets(labels))] += 3 * np.stack(problem.logme_targets(labels), axis=1)
    assert len(problem.logme_targets(labels)) == (1 if problem.reads_standardize_targets else 3)
    assert np.isfinite(problem.logme(informative, labels))
    assert np.isfinite(problem.knn_score(informative, labels, folds=2))
    assert np.isfinite(problem.linear_score(informative, labels, folds=2))


def test_regression_puts_standardised_values_back_in_the_targets_units():
    regression = problem_type(REGRESSION)
    raw, data = example(regression)
    encoded, _ = regression.encode_targets(raw, data, {role: role for role in raw})
    scaling = regression.target_scaling(encoded["train"], replace(data, standardize_targets=True))
    scaled = regression.label_array(regression.scale_targets(encoded["train"], scaling))
    assert scaled.mean() == pytest.approx(0.0, abs=1e-6) and scaled.std() == pytest.approx(1.0, abs=1e-5)
    assert regression.in_target_units(scaled, scaling) == pytest.approx(regression.label_array(encoded["train"]))
    assert regression.target_scaling(encoded["train"], data) is None  # not asked for


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("single_label_classification", {"label_columns": ["a", "b"]}, "label_columns needs problem_type"),
        ("single_label_classification", {"label_separator": "|"}, f"needs problem_type {MULTI}; remove it"),
        (MULTI, {"standardize_targets": True}, f"needs problem_type regression, not {MULTI}"),
        (REGRESSION, {"allow_empty_labels": False}, f"it needs problem_type {MULTI}."),
        (REGRESSION, {"label_names": ["a"]}, "regression has none of"),
    ],
)
def test_a_key_another_type_reads_is_refused_naming_that_type(name, data, message):
    with pytest.raises(RecipeError, match=message.replace("(", "\\(")):
        problem_type(name).check_data(DataConfig(train_files=["a.csv"], **data))


def test_zero_shot_baselines_need_one_label_per_row():
    problem_type("single_label_classification").check_baselines(["zero_shot"])
    with pytest.raises(RecipeError, match="needs problem_type single_label_classification, not regression"):
        problem_type(REGRESSION).check_baselines(["zero_shot"])


def test_importing_the_problem_types_loads_nothing_heavy():
    code = (
        "import sys, hf_transfer.problems as p; p.problem_type('regression').check_data(p.__name__ and None or "
        "__import__('hf_transfer.config.sections', fromlist=['DataConfig']).DataConfig(train_files=['a.csv']));"
        "print(sorted(m for m in ('torch', 'datasets', 'sklearn', 'pyarrow', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _string_constants_naming_a_problem_type(path: Path) -> list[int]:
    """Lines of `path` with a string constant equal to a registered problem type's name (docstrings aside)."""
    names = set(problem_type_names())
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and node.value in names and id(node) not in docstrings
    ]


def test_problem_type_names_are_defined_once_by_their_classes():
    found = {
        f"{path.relative_to(PACKAGE.parent)}:{line}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if PACKAGE / "problems" not in path.parents
        for line in _string_constants_naming_a_problem_type(path)
    }
    assert not found, "problem type names outside hf_transfer/problems/ (ask the registry):\n" + "\n".join(
        sorted(found)
    )


# The layers that use trained problem types: they ask the registry and name no class. (config and data still name
# single-label's class for their defaults.)
USING_LAYERS = ("backbones", "train", "strategies", "runs", "hub", "apps")


def test_the_layers_that_use_problem_types_import_no_problem_type_class():
    """Code that trains, saves, describes or ranks asks the registry (`problem_type`, `default_problem_type`), so
    that adding a problem type touches none of it."""
    classes = {type(p).__name__ for p in PROBLEM_TYPES.values()}
    found = sorted(
        f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {alias.name}"
        for layer in USING_LAYERS
        for path in (PACKAGE / layer).rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hf_transfer.problems")
        for alias in node.names
        if alias.name in classes
    )
    assert not found, "problem type classes imported where the registry should be asked:\n" + "\n".join(found)


def test_the_names_check_sees_a_name_in_code_but_not_in_a_docstring(tmp_path):
    source = tmp_path / "x.py"
    source.write_text('"""regression"""\nx = "regression"\n', encoding="utf-8")
    assert _string_constants_naming_a_problem_type(source) == [2]


# --------------------------------------------------------------------------------------------------------------------
# Losses, weights and tensors
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
    problem = problem_type(MULTI)
    labels = [[1.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 1.0], [1.0, 0.0]]  # label 0: 2 of 5; label 1: 1 of 5
    weights = problem.class_weights(labels, 2, TrainConfig(class_weights="auto"))
    assert weights.tolist() == pytest.approx([1.5, 4.0])
    logits, target = torch.zeros(1, 2), torch.tensor([[1.0, 1.0]])
    # with every logit 0, each positive costs log 2 times its label's pos_weight
    assert float(problem.loss(logits, target, weights)) == pytest.approx(np.log(2) * (1.5 + 4.0) / 2)
    with pytest.raises(RecipeError, match="3 weights for 2 labels"):
        problem.class_weights(labels, 2, TrainConfig(class_weights=[1.0, 2.0, 3.0]))


def test_regression_losses_and_scores():
    logits, target = torch.tensor([[0.0], [3.0]]), torch.tensor([[0.0], [0.0]])
    regression = problem_type(REGRESSION)
    assert float(regression.loss(logits, target, train=TrainConfig())) == pytest.approx(4.5)
    huber = TrainConfig(regression_loss="huber", huber_delta=1.0)
    assert float(regression.loss(logits, target, train=huber)) == pytest.approx((0 + (3 - 0.5)) / 2)  # linear beyond
    assert torch.equal(regression.scores(logits), logits)  # the raw value, no squashing


def test_label_tensors_are_long_for_classes_and_float_for_rows():
    assert labels_tensor([1, 0]).dtype == torch.long
    assert labels_tensor([[1.0, 0.0], [0.0, 1.0]]).dtype == torch.float32
    assert problem_type(REGRESSION).labels_tensor([[2.5]]).shape == (1, 1)
    assert problem_type("single_label_classification").labels_tensor([1.0, 0.0]).dtype == torch.long


def test_target_scaling_folds_into_the_one_head_layer_only():
    fold_target_scaling = problem_type(REGRESSION).fold_target_scaling
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
