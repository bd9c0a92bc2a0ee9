"""What the run folder, its card, `rank` and the transfer report ask of every registered problem type.

Each test runs over the whole registry, so a new problem type that forgets one of these answers fails here, on tiny
arrays, before any run is trained.
"""

import ast
import json

import numpy as np
import pytest
import torch

from hf_transfer.problems import PROBLEM_TYPES, default_problem_type

NAMES = ["red", "green", "blue"]
ROWS = 40


def toy_outputs(problem) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """(labels, scores, logits) of ROWS rows over NAMES, scores that mostly agree with the labels."""
    rng = np.random.default_rng(0)
    logits = torch.tensor(rng.normal(size=(ROWS, len(NAMES))), dtype=torch.float32)
    scores = problem.scores(logits).numpy()
    if problem.picks_one_label:
        labels = np.where(rng.random(ROWS) < 0.8, scores.argmax(1), rng.integers(0, len(NAMES), ROWS))
        labels[: len(NAMES)] = np.arange(len(NAMES))  # every class present
    elif problem.tunes_thresholds:
        labels = (scores >= 0.5).astype(np.float64)
        labels[0], labels[1] = 1.0, 0.0  # every label has a positive and a negative row
    else:
        labels = scores + rng.normal(scale=0.3, size=scores.shape)
    return labels, scores, logits


@pytest.fixture(params=PROBLEM_TYPES.values(), ids=lambda p: p.name)
def problem(request):
    return request.param


def test_card_decision_code_prints_what_predict_returns(problem, capsys):
    """The card's snippet ends in these lines; run on one row's logits they print `predict`'s main value."""
    _, _, logits = toy_outputs(problem)
    thresholds = [0.3, 0.5, 0.7] if problem.tunes_thresholds else None
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
    thresholds = [0.3, 0.5, 0.7] if problem.tunes_thresholds else None
    code = problem.pipeline_code('model="me/run"', '"A small gem."', NAMES, thresholds)
    ast.parse(code)
    assert 'model="me/run"' in code and '"A small gem."' in code


def test_card_summary_names_every_label(problem):
    summary = problem.card_summary(NAMES)
    assert all(f"`{name}`" in summary for name in NAMES)
    assert problem.name_word


def test_label_config_records_the_head_size_names_and_problem_type(problem):
    kwargs = problem.label_config_kwargs(NAMES)
    assert kwargs["num_labels"] == len(NAMES)
    assert kwargs["id2label"] == {0: "red", 1: "green", 2: "blue"}
    assert kwargs["label2id"] == {"red": 0, "green": 1, "blue": 2}
    assert kwargs["problem_type"] == problem.name


def test_paired_bootstrap_of_a_run_against_itself_gains_nothing(problem):
    labels, scores, _ = toy_outputs(problem)
    thresholds = [0.5] * len(NAMES) if problem.tunes_thresholds else None
    metric = problem.transfer_metric(problem.default_metric)
    gain = problem.paired_bootstrap(metric, labels, (scores, thresholds), (scores, thresholds), seed=0)
    assert gain["metric"] == metric
    assert gain["difference"] == 0.0 and gain["ci_low"] == 0.0 and gain["ci_high"] == 0.0


def test_tuned_thresholds_and_their_record(problem):
    labels, scores, _ = toy_outputs(problem)
    tuned = problem.tuned_thresholds(labels, scores)
    if not problem.tunes_thresholds:
        assert tuned is None
        return
    assert len(tuned) == len(NAMES)
    record = problem.thresholds_record(NAMES, tuned)
    assert json.loads(json.dumps(record))["thresholds"] == dict(zip(NAMES, tuned))


def test_the_default_problem_type_picks_one_label_per_row():
    """Recipes that name no problem type, and run folders from before problem types, are single-label."""
    assert default_problem_type().picks_one_label
