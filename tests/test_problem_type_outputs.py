"""What the run folder, its card, `rank` and the transfer report ask of every registered problem type.

Each test runs over the whole registry, so a new problem type that forgets one of these answers fails here, on tiny
arrays, before any run is trained.
"""

import ast
import json

import numpy as np
import pytest
import torch

from hf_transfer.problems.base import PROBLEM_TYPE_CLASSES, build_problem_type
from hf_transfer.runs.folder import recorded_problem_type

NAMES = ["red", "green", "blue"]
ROWS = 40


def toy_outputs(problem) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """(labels, scores, logits) of ROWS rows over NAMES, scores that mostly agree with the labels."""
    rng = np.random.default_rng(0)
    logits = torch.tensor(rng.normal(size=(ROWS, len(NAMES))), dtype=torch.float32)
    scores = problem.scores(logits).numpy()
    if problem.label_dtype == torch.long:
        labels = np.where(rng.random(ROWS) < 0.8, scores.argmax(1), rng.integers(0, len(NAMES), ROWS))
        labels[: len(NAMES)] = np.arange(len(NAMES))  # every class present
    elif problem.uses_thresholds:
        labels = (scores >= 0.5).astype(np.float64)
        labels[0], labels[1] = 1.0, 0.0  # every label has a positive and a negative row
    else:
        labels = scores + rng.normal(scale=0.3, size=scores.shape)
    return labels, scores, logits


@pytest.fixture(params=PROBLEM_TYPE_CLASSES.names())
def problem(request):
    return build_problem_type(request.param)


def test_card_metrics_and_forgetting_metrics_are_among_the_types_metrics(problem):
    labels, scores, _ = toy_outputs(problem)
    metrics = problem.metrics(labels, scores, NAMES)
    assert set(problem.card_metrics) <= set(metrics)
    assert set(problem.forgetting_metrics) <= set(metrics)


def test_prediction_key_is_the_key_predictions_hold(problem):
    _, scores, _ = toy_outputs(problem)
    assert problem.prediction_key in problem.predictions(scores[:2], NAMES)[0]


def test_save_plots_writes_the_plots_the_card_shows(problem, tmp_path):
    labels, scores, _ = toy_outputs(problem)
    metrics = problem.metrics(labels, scores, NAMES)
    problem.save_plots(metrics, {"labels": labels, "probs": scores}, NAMES, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(file for _, file in problem.plots)


def test_card_decision_code_prints_what_predict_returns(problem, capsys):
    """The card's snippet ends in these lines; run on one row's logits they print `predict`'s main value."""
    _, _, logits = toy_outputs(problem)
    thresholds = [0.3, 0.5, 0.7] if problem.uses_thresholds else None
    code = problem.card_decision_code("row_logits", thresholds)
    exec(code, {"labels": NAMES, "row_logits": logits[:1]})  # the card's own code
    out = capsys.readouterr().out.strip()
    printed = out if out in NAMES else ast.literal_eval(out)  # one label prints bare
    expected = problem.predictions(problem.scores(logits[:1]).numpy(), NAMES, thresholds)[0][problem.prediction_key]
    if isinstance(expected, dict):
        assert printed == pytest.approx(expected)
    else:
        assert printed == expected


def test_pipeline_code_is_python_that_names_the_model(problem):
    thresholds = [0.3, 0.5, 0.7] if problem.uses_thresholds else None
    code = problem.pipeline_code('model="me/run"', '"A small gem."', NAMES, thresholds)
    ast.parse(code)
    assert 'model="me/run"' in code and '"A small gem."' in code


def test_card_summary_names_every_label(problem):
    summary = problem.card_summary(NAMES)
    assert all(f"`{name}`" in summary for name in NAMES)
    assert problem.name_word and problem.rank_measured


def test_label_config_records_the_head_size_names_and_problem_type(problem):
    kwargs = problem.label_config_kwargs(NAMES)
    assert kwargs["num_labels"] == len(NAMES)
    assert kwargs["id2label"] == {0: "red", 1: "green", 2: "blue"}
    assert kwargs["label2id"] == {"red": 0, "green": 1, "blue": 2}
    assert kwargs["problem_type"] == problem.name


def test_paired_bootstrap_of_a_run_against_itself_gains_nothing(problem):
    labels, scores, _ = toy_outputs(problem)
    thresholds = [0.5] * len(NAMES) if problem.uses_thresholds else None
    metric = problem.transfer_metric(problem.default_metric)
    gain = problem.paired_bootstrap(metric, labels, (scores, thresholds), (scores, thresholds), seed=0)
    assert gain["metric"] == metric
    assert gain["difference"] == 0.0 and gain["ci_low"] == 0.0 and gain["ci_high"] == 0.0


def test_evaluation_loss_is_the_training_loss_unless_the_metrics_have_it(problem):
    labels, scores, logits = toy_outputs(problem)
    extra = problem.evaluation_loss(logits, torch.as_tensor(labels).to(problem.label_dtype))
    if extra:
        assert extra == {"loss": pytest.approx(float(problem.loss(logits, torch.as_tensor(labels))))}
    else:  # single-label: its log_loss is that loss
        assert problem.metrics(labels, scores, NAMES)["log_loss"] == pytest.approx(
            float(problem.loss(logits, torch.as_tensor(labels))), rel=1e-4
        )


def test_tuned_thresholds_and_their_record(problem):
    labels, scores, _ = toy_outputs(problem)
    tuned = problem.tuned_thresholds(labels, scores)
    if not problem.uses_thresholds:
        assert tuned is None
        return
    assert len(tuned) == len(NAMES)
    record = problem.thresholds_record(NAMES, tuned)
    assert json.loads(json.dumps(record))["thresholds"] == dict(zip(NAMES, tuned))


def test_values_come_back_in_the_targets_units_only_where_they_were_scaled(problem):
    values = np.array([[0.0, 1.0, -1.0]])
    scaling = {"mean": [10.0, 20.0, 30.0], "std": [2.0, 2.0, 2.0]}
    back = problem.in_target_units(values, scaling)
    if problem.label_dtype == torch.long or problem.uses_thresholds:
        assert back is values
    else:
        assert back.tolist() == [[10.0, 22.0, 28.0]]


def test_run_folders_without_a_problem_type_hold_single_label_classifiers():
    assert recorded_problem_type({}).one_label_per_row
    assert recorded_problem_type({"problem_type": "regression"}).name == "regression"
