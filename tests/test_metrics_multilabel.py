"""Multi-label metrics against scikit-learn, threshold tuning against a brute-force scan, the per-label plot and table,
the generic paired bootstrap, metric directions and multi-label folds."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from helpers import assert_single_valid_png
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as sk_metrics

from hf_transfer.core.errors import DataError, RecipeError
from hf_transfer.metrics.bootstrap import bootstrap_difference
from hf_transfer.metrics.multilabel import SCALAR_METRICS, multilabel_metric_fn, multilabel_metrics, tune_thresholds
from hf_transfer.metrics.plots import save_multilabel_plot
from hf_transfer.metrics.scalars import METRIC_DIRECTIONS, greater_is_better
from hf_transfer.metrics.tables import format_metrics_table
from hf_transfer.problems import problem_type


def fold_indices(name: str, labels, n_splits: int, seed: int):
    """The folds the problem type `name` cuts `labels` into."""
    return problem_type(name).fold_indices(labels, n_splits, seed)


NAMES = ["comedy", "drama", "horror"]
# Rows: (comedy, drama), (drama), (), (comedy, horror)
Y_TRUE = np.array([[1, 1, 0], [0, 1, 0], [0, 0, 0], [1, 0, 1]])
SCORES = np.array([[0.9, 0.4, 0.1], [0.2, 0.8, 0.6], [0.1, 0.3, 0.2], [0.7, 0.6, 0.3]])
# At 0.5 the predictions are (comedy), (drama, horror), (), (comedy, drama).


def walk_finite(value, path="metrics"):
    """Every number anywhere in a nested metrics dict is finite (None allowed)."""
    if isinstance(value, dict):
        for key, inner in value.items():
            walk_finite(inner, f"{path}.{key}")
    elif isinstance(value, (list, tuple)):
        for i, inner in enumerate(value):
            walk_finite(inner, f"{path}[{i}]")
    elif value is not None and not isinstance(value, str):
        assert math.isfinite(value), f"{path} is {value}"


def test_hand_computed_example():
    result = multilabel_metrics(Y_TRUE, SCORES, NAMES)
    assert result["num_samples"] == 4 and result["rows_without_labels"] == 1
    # true positives: comedy 2 (rows 0, 3), drama 1 (row 1), horror 0; predicted 2, 2, 1; true 2, 2, 1.
    assert result["precision_micro"] == pytest.approx(3 / 5)
    assert result["recall_micro"] == pytest.approx(3 / 5)
    assert result["f1_micro"] == pytest.approx(3 / 5)
    assert result["per_label"]["comedy"] == {
        "precision": 1.0,
        "recall": 1.0,
        "f1": 1.0,
        "support": 2,
        "average_precision": 1.0,
        "roc_auc": 1.0,
        "threshold": 0.5,
    }
    assert result["per_label"]["drama"]["f1"] == pytest.approx(2 * 1 / (2 + 2))
    assert result["per_label"]["horror"]["f1"] == 0.0
    assert result["f1_macro"] == pytest.approx((1.0 + 0.5 + 0.0) / 3)
    assert result["subset_accuracy"] == pytest.approx(1 / 4)  # only the empty row is exactly right
    assert result["hamming_loss"] == pytest.approx(4 / 12)  # drama rows 0 and 3, horror rows 1 and 3
    # f1 per row: {comedy} vs {comedy, drama} 2/3; {drama, horror} vs {drama} 2/3; empty vs empty 0 (zero_division);
    # {comedy, drama} vs {comedy, horror} 1/2.
    assert result["f1_samples"] == pytest.approx((2 / 3 + 2 / 3 + 0 + 1 / 2) / 4)


def test_per_label_thresholds_change_the_predictions():
    low_horror = multilabel_metrics(Y_TRUE, SCORES, NAMES, thresholds=[0.5, 0.5, 0.25])
    assert low_horror["per_label"]["horror"]["threshold"] == 0.25
    # horror is now predicted on rows 1 and 3 (0.6, 0.3): one true positive of two
    assert low_horror["per_label"]["horror"]["precision"] == pytest.approx(1 / 2)
    assert low_horror["per_label"]["horror"]["recall"] == 1.0
    with pytest.raises(ValueError, match="3 numbers"):
        multilabel_metrics(Y_TRUE, SCORES, NAMES, thresholds=[0.5, 0.5])


def random_case(n: int, k: int, seed: int, empty_label: bool = True, empty_row: bool = True):
    rng = np.random.default_rng(seed)
    y_true = (rng.random((n, k)) < rng.uniform(0.1, 0.6, k)).astype(int)
    if empty_label:
        y_true[:, -1] = 0  # a label that never occurs
    if empty_row:
        y_true[0] = 0
    return y_true, rng.random((n, k))


def sklearn_average(function, y_true, y_pred, average):
    """scikit-learn's multi-label average; with one label, which scikit-learn reads as binary, the same quantity in
    the form it accepts: an all-zero column added to truth and prediction changes no row's or pooled count
    (samples, micro), and the label's own binary score is its macro and weighted mean."""
    if y_true.shape[1] > 1:
        return function(y_true, y_pred, average=average, zero_division=0)
    if average in ("samples", "micro"):
        pad = np.zeros((len(y_true), 1), dtype=int)
        return function(np.hstack([y_true, pad]), np.hstack([y_pred, pad]), average=average, zero_division=0)
    return function(y_true[:, 0], y_pred[:, 0], zero_division=0)


def assert_matches_sklearn(y_true, scores, names, thresholds):
    result = multilabel_metrics(y_true, scores, names, thresholds)
    y_pred = (scores >= np.broadcast_to(thresholds, (y_true.shape[1],))).astype(int)
    for average in ("micro", "macro", "weighted", "samples"):
        expected = sklearn_average(sk_metrics.f1_score, y_true, y_pred, average)
        assert result[f"f1_{average}"] == pytest.approx(expected)
    for average in ("micro", "macro"):
        assert result[f"precision_{average}"] == pytest.approx(
            sklearn_average(sk_metrics.precision_score, y_true, y_pred, average)
        )
        assert result[f"recall_{average}"] == pytest.approx(
            sklearn_average(sk_metrics.recall_score, y_true, y_pred, average)
        )
    assert result["subset_accuracy"] == pytest.approx(sk_metrics.accuracy_score(y_true, y_pred))
    assert result["hamming_loss"] == pytest.approx(sk_metrics.hamming_loss(y_true, y_pred))
    assert result["rows_without_labels"] == int((y_true.sum(axis=1) == 0).sum())
    positives = y_true.sum(axis=0)
    with_positive = np.flatnonzero(positives > 0)
    both = np.flatnonzero((positives > 0) & (positives < len(y_true)))
    if len(with_positive):
        assert result["map_macro"] == pytest.approx(
            sk_metrics.average_precision_score(y_true[:, with_positive], scores[:, with_positive], average="macro")
        )
    else:
        assert result["map_macro"] is None and "undefined" in result["map_note"]
    if len(both):
        assert result["roc_auc_macro"] == pytest.approx(
            sk_metrics.roc_auc_score(y_true[:, both], scores[:, both], average="macro")
        )
    else:
        assert result["roc_auc_macro"] is None and "undefined" in result["roc_auc_note"]
    for k, name in enumerate(names):
        row = result["per_label"][name]
        assert row["support"] == int(positives[k])
        assert row["f1"] == pytest.approx(sk_metrics.f1_score(y_true[:, k], y_pred[:, k], zero_division=0))
        if k not in set(both.tolist()):
            assert row["roc_auc"] is None
    for metric in SCALAR_METRICS:  # the bootstrap's one-metric path gives the same number
        assert multilabel_metric_fn(metric, thresholds)(y_true, scores) == pytest.approx(result[metric])
    walk_finite(result)
    assert json.loads(json.dumps(result, allow_nan=False)) == result
    return result


def test_label_that_never_occurs_and_row_without_labels():
    y_true, scores = random_case(40, 5, seed=0)
    result = assert_matches_sklearn(y_true, scores, list("abcde"), 0.5)
    assert result["per_label"]["e"]["support"] == 0
    assert result["per_label"]["e"]["average_precision"] is None and result["per_label"]["e"]["roc_auc"] is None
    assert "'e'" in result["roc_auc_note"] and "'e'" in result["map_note"]
    assert result["rows_without_labels"] >= 1


def test_all_zero_scores_and_no_labels_at_all_are_defined():
    y_true = np.zeros((6, 3), dtype=int)
    result = assert_matches_sklearn(y_true, np.zeros((6, 3)), NAMES, 0.5)
    assert result["subset_accuracy"] == 1.0 and result["hamming_loss"] == 0.0
    assert result["map_macro"] is None and result["roc_auc_macro"] is None
    # all-zero scores at a zero threshold predict every label
    y_true, _ = random_case(20, 3, seed=1, empty_label=False)
    assert_matches_sklearn(y_true, np.zeros((20, 3)), NAMES, 0.0)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 40),
    k=st.integers(1, 6),
    seed=st.integers(0, 10_000),
    threshold=st.floats(0.0, 1.0),
    per_label=st.booleans(),
    empty_label=st.booleans(),
    zero_scores=st.booleans(),
)
def test_agrees_with_sklearn_on_random_shapes(n, k, seed, threshold, per_label, empty_label, zero_scores):
    y_true, scores = random_case(n, k, seed, empty_label=empty_label)
    if zero_scores:
        scores[:, 0] = 0.0
    thresholds = np.random.default_rng(seed).random(k) if per_label else threshold
    assert_matches_sklearn(y_true, scores, [f"label_{i}" for i in range(k)], thresholds)


def test_bad_inputs_are_named():
    with pytest.raises(DataError, match="0 or 1"):
        multilabel_metrics(Y_TRUE * 2, SCORES, NAMES)
    with pytest.raises(ValueError, match="sigmoid"):
        multilabel_metrics(Y_TRUE, SCORES * 4 - 2, NAMES)
    with pytest.raises(ValueError, match="shape"):
        multilabel_metrics(Y_TRUE, SCORES[:, :2], NAMES)
    with pytest.raises(ValueError, match="label names"):
        multilabel_metrics(Y_TRUE, SCORES, NAMES[:2])
    with pytest.raises(RecipeError, match="did you mean 'f1_macro'"):
        multilabel_metric_fn("f1_marco")


# --------------------------------------------------------------------------------------------------------------------
# tune_thresholds
# --------------------------------------------------------------------------------------------------------------------


def brute_force_best_f1(positive: np.ndarray, scores: np.ndarray) -> float:
    """The best F1 over every cut at a distinct score, each counted from scratch."""
    best = 0.0
    for cut in np.unique(scores):
        predicted = scores >= cut
        true_positive = int((predicted & (positive == 1)).sum())
        best = max(best, 2 * true_positive / (int(positive.sum()) + int(predicted.sum())))
    return best


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 50), k=st.integers(1, 5), seed=st.integers(0, 10_000), coarse=st.booleans())
def test_tuned_thresholds_reach_the_brute_force_f1_maximum(n, k, seed, coarse):
    y_true, scores = random_case(n, k, seed, empty_label=False, empty_row=False)
    if coarse:
        scores = np.round(scores, 1)  # many ties
    cuts = tune_thresholds(y_true, scores)
    assert len(cuts) == k and all(type(cut) is float for cut in cuts)
    for j in range(k):
        positives = int(y_true[:, j].sum())
        if positives in (0, n):
            assert cuts[j] == 0.5
            continue
        achieved = sk_metrics.f1_score(y_true[:, j], (scores[:, j] >= cuts[j]).astype(int), zero_division=0)
        assert achieved == pytest.approx(brute_force_best_f1(y_true[:, j], scores[:, j]))


def test_threshold_falls_back_to_the_default_without_positives_or_negatives():
    y_true = np.array([[0, 1, 1], [0, 1, 0], [0, 1, 1], [0, 1, 0]])
    scores = np.array([[0.9, 0.1, 0.8], [0.2, 0.3, 0.1], [0.4, 0.2, 0.7], [0.1, 0.05, 0.3]])
    cuts = tune_thresholds(y_true, scores, default=0.42)
    assert cuts[0] == 0.42 and cuts[1] == 0.42  # never positive; always positive
    assert 0.3 < cuts[2] <= 0.7  # separates 0.7, 0.8 (positive) from 0.1, 0.3
    assert tune_thresholds(y_true, scores)[:2] == [0.5, 0.5]


def test_threshold_keeps_the_default_when_it_is_already_best_and_moves_off_it_when_not():
    y_true = np.array([[1], [1], [0], [0]])
    assert tune_thresholds(y_true, np.array([[0.9], [0.8], [0.2], [0.1]])) == [0.5]
    # positives score 0.3 and 0.35: only a cut below 0.5 finds them
    cut = tune_thresholds(y_true, np.array([[0.35], [0.3], [0.2], [0.1]]))[0]
    assert 0.2 < cut <= 0.3


# --------------------------------------------------------------------------------------------------------------------
# Table and plot
# --------------------------------------------------------------------------------------------------------------------


def test_table_has_the_per_label_section_and_notes():
    y_true, scores = random_case(30, 4, seed=3)
    result = multilabel_metrics(y_true, scores, ["joy", "anger", "fear", "never_seen"], [0.5, 0.4, 0.3, 0.5])
    table = format_metrics_table(result, title="validation")
    lines = table.splitlines()
    header = next(line for line in lines if line.startswith("label"))
    assert header.split() == ["label", "precision", "recall", "f1", "support", "AP", "roc_auc", "threshold"]
    never_seen = next(line for line in lines if line.startswith("never_seen")).split()
    assert never_seen[4] == "0" and never_seen[5] == "n/a" and never_seen[-1] == "0.5000"
    assert next(line for line in lines if line.startswith("anger")).split()[-1] == "0.4000"
    roc_line = next(line for line in lines if line.startswith("roc_auc_macro"))
    assert "'never_seen'" in roc_line
    assert "f1_samples" in table and "hamming_loss" in table and "confusion" not in table


def test_per_label_plot_is_written_atomically(tmp_path):
    y_true, scores = random_case(30, 4, seed=4)
    target = tmp_path / "plots" / "per_label.png"
    save_multilabel_plot(multilabel_metrics(y_true, scores, list("abcd")), target)
    assert_single_valid_png(target)


def test_per_label_plot_of_many_labels_grows_and_caps(tmp_path):
    small, large = tmp_path / "small" / "p.png", tmp_path / "large" / "p.png"
    save_multilabel_plot(multilabel_metrics(*random_case(30, 3, seed=5), list("abc")), small)
    save_multilabel_plot(multilabel_metrics(*random_case(60, 110, seed=6), [f"l{i}" for i in range(110)]), large)
    assert assert_single_valid_png(large).shape[0] > assert_single_valid_png(small).shape[0]


def test_per_label_plot_needs_per_label_metrics(tmp_path):
    with pytest.raises(ValueError, match="per_label"):
        save_multilabel_plot({"accuracy": 0.5}, tmp_path / "p.png")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------------------------------
# Generic paired bootstrap and metric directions
# --------------------------------------------------------------------------------------------------------------------


def test_bootstrap_difference_of_multilabel_f1_resamples_whole_rows():
    rng = np.random.default_rng(7)
    y_true = (rng.random((120, 4)) < 0.4).astype(int)
    good = np.clip(y_true * 0.6 + rng.random((120, 4)) * 0.5, 0, 1)
    poor = rng.random((120, 4))
    f1 = multilabel_metric_fn("f1_macro")
    result = bootstrap_difference(f1, y_true, good, poor, n_resamples=150, seed=0)
    assert result["metric"] == "f1_macro" and result["undefined_resamples"] == 0
    assert result["a"] == pytest.approx(multilabel_metrics(y_true, good, list("abcd"))["f1_macro"])
    assert result["difference"] == pytest.approx(result["a"] - result["b"])
    assert 0 < result["ci_low"] < result["difference"] < result["ci_high"]
    assert bootstrap_difference(f1, y_true, good, poor, n_resamples=150, seed=0) == result
    same = bootstrap_difference(f1, y_true, good, good.copy(), n_resamples=20, seed=1)
    assert same["difference"] == 0.0 and same["ci_low"] == same["ci_high"] == 0.0


def test_bootstrap_difference_reproduces_the_resampled_rows():
    rng = np.random.default_rng(8)
    y_true, a, b = rng.integers(0, 2, 30), rng.integers(0, 2, 30), rng.integers(0, 2, 30)
    result = bootstrap_difference(sk_metrics.accuracy_score, y_true, a, b, n_resamples=9, seed=4, confidence=0.5)
    draws = np.random.default_rng(4)
    differences = []
    for _ in range(9):
        rows = draws.integers(0, 30, size=30)
        differences.append(
            sk_metrics.accuracy_score(y_true[rows], a[rows]) - sk_metrics.accuracy_score(y_true[rows], b[rows])
        )
    assert (result["ci_low"], result["ci_high"]) == pytest.approx(tuple(np.quantile(differences, [0.25, 0.75])))
    with pytest.raises(ValueError, match="equally long"):
        bootstrap_difference(sk_metrics.accuracy_score, y_true, a[:-1], b)


def test_lower_is_better_for_errors_and_losses():
    for name in (
        "mse",
        "rmse",
        "mae",
        "hamming_loss",
        "log_loss",
        "loss",
        "eval_loss",
        "eval_rmse",
        "train_loss",
        "rmse/price",
        "validation_mae",
        "huber_loss",
        "mean_absolute_error",
    ):
        assert greater_is_better(name) is False, name
    for name in (
        "f1_micro",
        "f1_samples",
        "map_macro",
        "roc_auc_macro",
        "subset_accuracy",
        "r2",
        "pearson",
        "spearman",
        "eval_f1_macro",
        "f1/joy",
        "accuracy",
    ):
        assert greater_is_better(name) is True, name
    assert all(greater_is_better(name) is direction for name, direction in METRIC_DIRECTIONS.items())
    assert set(SCALAR_METRICS) <= set(METRIC_DIRECTIONS)


# --------------------------------------------------------------------------------------------------------------------
# Multi-label folds
# --------------------------------------------------------------------------------------------------------------------


@settings(max_examples=15, deadline=None)
@given(n=st.integers(20, 150), k=st.integers(2, 8), n_splits=st.integers(2, 5), seed=st.integers(0, 1000))
def test_multilabel_folds_cover_every_row_once_and_spread_each_label(n, k, n_splits, seed):
    y_true, _ = random_case(n, k, seed)
    folds = fold_indices("multi_label_classification", y_true, n_splits, seed)
    assert len(folds) == n_splits
    validation = np.concatenate([rows for _, rows in folds])
    assert sorted(validation.tolist()) == list(range(n))
    for train, rows in folds:
        assert not set(train.tolist()) & set(rows.tolist()) and len(train) + len(rows) == n
    for label in range(k):
        positives = int(y_true[:, label].sum())
        per_fold = [int(y_true[rows, label].sum()) for _, rows in folds]
        if positives >= n_splits:
            assert min(per_fold) >= 1, (label, per_fold)
        assert max(per_fold) - min(per_fold) <= max(2, positives // n_splits)  # spread, not piled up


def test_multilabel_folds_beat_plain_kfold_on_a_rare_label():
    # 5 positives of a rare label among 200 rows: iterative stratification puts one in each of 5 folds.
    y_true = np.zeros((200, 3), dtype=int)
    y_true[np.arange(0, 200, 2), 0] = 1
    y_true[np.arange(0, 200, 3), 1] = 1
    y_true[[3, 50, 51, 52, 199], 2] = 1
    for seed in range(5):
        folds = fold_indices("multi_label_classification", y_true, 5, seed)
        assert [int(y_true[rows, 2].sum()) for _, rows in folds] == [1] * 5
