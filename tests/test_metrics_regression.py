"""Regression metrics against scikit-learn and SciPy (constant targets included), the scatter / residual plots, the
per-target table, the bootstrap on a regression metric and quantile-binned folds."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from helpers import assert_single_valid_png
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from sklearn import metrics as sk_metrics

import hf_transfer.metrics.plots as metrics_plots
from hf_transfer.core.errors import DataError, RecipeError
from hf_transfer.metrics.bootstrap import bootstrap_difference
from hf_transfer.metrics.plots import save_regression_plots
from hf_transfer.metrics.regression import TARGET_METRICS, regression_metric_fn, regression_metrics
from hf_transfer.metrics.scalars import greater_is_better
from hf_transfer.metrics.tables import format_metrics_table
from hf_transfer.problems import problem_type


def fold_indices(name: str, labels, n_splits: int, seed: int):
    """The folds the problem type `name` cuts `labels` into."""
    return problem_type(name).fold_indices(labels, n_splits, seed)


def assert_finite_everywhere(value, path="metrics"):
    if isinstance(value, dict):
        for key, inner in value.items():
            assert_finite_everywhere(inner, f"{path}.{key}")
    elif value is not None and not isinstance(value, str):
        assert math.isfinite(value), f"{path} is {value}"


def test_hand_computed_single_target():
    y_true = np.array([1.0, 2.0, 3.0, 4.0])
    y_pred = np.array([1.5, 2.0, 2.0, 5.0])  # errors 0.5, 0, -1, 1
    result = regression_metrics(y_true, y_pred, ["score"])
    assert result["num_samples"] == 4
    assert result["mse"] == pytest.approx((0.25 + 0 + 1 + 1) / 4)
    assert result["rmse"] == pytest.approx(math.sqrt(2.25 / 4))
    assert result["mae"] == pytest.approx(2.5 / 4)
    assert result["r2"] == pytest.approx(1 - 2.25 / 5.0)  # total sum of squares about the mean 2.5: 5
    assert result["spearman"] == pytest.approx(stats.spearmanr(y_true, y_pred).statistic)
    assert set(result["per_target"]) == {"score"}
    assert {k: result["per_target"]["score"][k] for k in TARGET_METRICS} == {k: result[k] for k in TARGET_METRICS}
    assert greater_is_better("rmse") is False and greater_is_better("r2") is True


def assert_matches_sklearn(y_true, y_pred, names):
    result = regression_metrics(y_true, y_pred, names)
    true_2d = y_true.reshape(len(y_true), -1)
    pred_2d = y_pred.reshape(len(y_pred), -1)
    assert result["mse"] == pytest.approx(sk_metrics.mean_squared_error(true_2d, pred_2d))
    assert result["mae"] == pytest.approx(sk_metrics.mean_absolute_error(true_2d, pred_2d))
    for t, name in enumerate(names):
        row = result["per_target"][name]
        truth, prediction = true_2d[:, t], pred_2d[:, t]
        assert row["mse"] == pytest.approx(sk_metrics.mean_squared_error(truth, prediction))
        assert row["rmse"] == pytest.approx(math.sqrt(sk_metrics.mean_squared_error(truth, prediction)))
        assert row["mae"] == pytest.approx(sk_metrics.mean_absolute_error(truth, prediction))
        if len(truth) >= 2:
            assert row["r2"] == pytest.approx(sk_metrics.r2_score(truth, prediction))
        else:
            assert row["r2"] is None and "two rows" in row["r2_note"]
        if len(truth) >= 2 and np.ptp(truth) > 0 and np.ptp(prediction) > 0:
            assert row["pearson"] == pytest.approx(stats.pearsonr(truth, prediction).statistic, abs=1e-9)
            assert row["spearman"] == pytest.approx(stats.spearmanr(truth, prediction).statistic, abs=1e-9)
        else:
            assert row["pearson"] is None and row["pearson_note"]
            assert row["spearman"] is None and row["spearman_note"]
    for key in TARGET_METRICS:  # means over the targets where defined
        defined = [row[key] for row in result["per_target"].values() if row[key] is not None]
        assert result[key] == (pytest.approx(np.mean(defined)) if defined else None)
        assert regression_metric_fn(key)(y_true, y_pred) == result[key]
    if len(true_2d) >= 2:
        assert result["r2"] == pytest.approx(sk_metrics.r2_score(true_2d, pred_2d))
    assert_finite_everywhere(result)
    assert json.loads(json.dumps(result, allow_nan=False)) == result
    return result


def test_several_targets_are_scored_each_and_averaged():
    rng = np.random.default_rng(0)
    y_true = rng.normal(size=(50, 3)) * [1.0, 10.0, 100.0]
    y_pred = y_true + rng.normal(size=(50, 3))
    result = assert_matches_sklearn(y_true, y_pred, ["valence", "arousal", "price"])
    assert result["per_target"]["price"]["r2"] > result["per_target"]["valence"]["r2"]
    assert "pearson_note" not in result


def test_constant_target_is_defined_and_noted():
    rng = np.random.default_rng(1)
    y_true = np.column_stack([rng.normal(size=30), np.full(30, 3.0)])
    y_pred = y_true + rng.normal(size=(30, 2)) * 0.3
    result = assert_matches_sklearn(y_true, y_pred, ["varies", "constant"])
    constant = result["per_target"]["constant"]
    assert constant["r2"] == 0.0  # scikit-learn's force_finite: an imperfect fit of a constant target
    assert constant["pearson"] is None and "constant" in constant["pearson_note"]
    assert result["pearson"] == pytest.approx(result["per_target"]["varies"]["pearson"])
    assert "'constant'" in result["pearson_note"]
    perfect = regression_metrics(np.full(5, 2.0), np.full(5, 2.0), ["y"])
    assert perfect["mse"] == 0.0 and perfect["r2"] == 1.0 and perfect["pearson"] is None
    assert "constant" in perfect["pearson_note"]
    table = format_metrics_table(result)
    assert "n/a" in next(line for line in table.splitlines() if line.startswith("constant"))


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 40),
    t=st.integers(1, 4),
    seed=st.integers(0, 10_000),
    constant_target=st.booleans(),
    constant_prediction=st.booleans(),
    one_dimensional=st.booleans(),
)
def test_agrees_with_sklearn_on_random_shapes(n, t, seed, constant_target, constant_prediction, one_dimensional):
    rng = np.random.default_rng(seed)
    y_true = rng.normal(size=(n, t)) * rng.uniform(0.1, 100, t)
    y_pred = y_true + rng.normal(size=(n, t))
    if constant_target:
        y_true[:, 0] = 7.0
    if constant_prediction:
        y_pred[:, -1] = 0.0
    if one_dimensional and t == 1:
        y_true, y_pred = y_true[:, 0], y_pred[:, 0]
    assert_matches_sklearn(y_true, y_pred, [f"target_{i}" for i in range(t)])


def test_bad_inputs_are_named():
    with pytest.raises(DataError, match="NaN"):
        regression_metrics([1.0, float("nan")], [1.0, 2.0], ["y"])
    with pytest.raises(DataError, match="numbers"):
        regression_metrics(["a", "b"], [1.0, 2.0], ["y"])
    with pytest.raises(ValueError, match="shape"):
        regression_metrics(np.zeros((4, 2)), np.zeros((4, 3)), ["a", "b"])
    with pytest.raises(ValueError, match="target names"):
        regression_metrics(np.zeros((4, 2)), np.zeros((4, 2)), ["a"])
    with pytest.raises(RecipeError, match="did you mean 'rmse'"):
        regression_metric_fn("rmes")


def test_table_has_the_per_target_section():
    rng = np.random.default_rng(2)
    y_true = rng.normal(size=(20, 2))
    table = format_metrics_table(regression_metrics(y_true, y_true * 0.5, ["valence", "arousal"]), title="test")
    lines = table.splitlines()
    assert lines[0] == "test"
    header = next(line for line in lines if line.startswith("target"))
    assert header.split() == ["target", "mse", "rmse", "mae", "r2", "pearson", "spearman"]
    assert next(line for line in lines if line.startswith("valence")).split()[5] == "1.0000"  # pearson of y, y/2
    assert "confusion" not in table


def test_scatter_and_residual_plots_are_written_atomically(tmp_path):
    rng = np.random.default_rng(3)
    y_true = rng.normal(size=(200, 2))
    save_regression_plots(
        y_true,
        y_true + rng.normal(size=(200, 2)) * 0.2,
        ["a", "b"],
        tmp_path / "s" / "scatter.png",
        tmp_path / "r" / "residuals.png",
    )
    assert_single_valid_png(tmp_path / "s" / "scatter.png")
    assert_single_valid_png(tmp_path / "r" / "residuals.png")


def test_plots_of_one_constant_target_and_of_many_targets(tmp_path, monkeypatch):
    save_regression_plots(
        np.full(10, 4.0), np.full(10, 4.0), ["flat"], tmp_path / "a" / "s.png", tmp_path / "b" / "r.png"
    )
    assert_single_valid_png(tmp_path / "a" / "s.png")
    rng = np.random.default_rng(4)
    monkeypatch.setattr(metrics_plots, "PLOT_MAX_TARGETS", 4)  # drawing 12 panels twice is slow
    y_true = rng.normal(size=(30, 6))
    names = [f"t{i}" for i in range(6)]
    save_regression_plots(y_true, y_true, names, tmp_path / "c" / "s.png", tmp_path / "d" / "r.png")
    assert assert_single_valid_png(tmp_path / "c" / "s.png").shape[0] > 2 * 300  # two rows of panels
    with pytest.raises(ValueError, match="shape"):
        save_regression_plots(y_true, y_true[:, :2], names, tmp_path / "e" / "s.png", tmp_path / "e" / "r.png")
    assert not (tmp_path / "e").exists()


def test_bootstrap_difference_on_rmse_is_a_loss_and_skips_undefined_resamples():
    rng = np.random.default_rng(5)
    y_true = rng.normal(size=(150, 2))
    close, far = y_true + rng.normal(size=(150, 2)) * 0.1, y_true + rng.normal(size=(150, 2))
    result = bootstrap_difference(regression_metric_fn("rmse"), y_true, close, far, n_resamples=200, seed=0)
    assert result["metric"] == "rmse" and result["ci_high"] < 0  # close has the lower error
    assert result["a"] == pytest.approx(regression_metrics(y_true, close, ["x", "y"])["rmse"])
    # four rows, two of them the same constant: some resamples hold one distinct target value and no correlation
    tiny = bootstrap_difference(
        regression_metric_fn("pearson"),
        np.array([1.0, 1.0, 2.0, 3.0]),
        np.array([1.1, 0.9, 2.2, 2.9]),
        np.array([3.0, 2.0, 1.0, 0.0]),
        n_resamples=100,
        seed=1,
    )
    assert 0 < tiny["undefined_resamples"] < 100
    assert tiny["ci_low"] is not None and math.isfinite(tiny["ci_low"])


# --------------------------------------------------------------------------------------------------------------------
# Regression folds
# --------------------------------------------------------------------------------------------------------------------


@settings(max_examples=20, deadline=None)
@given(n=st.integers(10, 200), n_splits=st.integers(2, 5), seed=st.integers(0, 1000), targets=st.integers(1, 3))
def test_regression_folds_cover_every_row_once_and_balance_the_quantiles(n, n_splits, seed, targets):
    y = np.random.default_rng(seed).lognormal(size=(n, targets))
    folds = fold_indices("regression", y[:, 0] if targets == 1 else y, n_splits, seed)
    validation = np.concatenate([rows for _, rows in folds])
    assert sorted(validation.tolist()) == list(range(n))
    assert max(len(rows) for _, rows in folds) - min(len(rows) for _, rows in folds) <= 1
    # every fold holds rows from the bottom and the top fifth of the first target (when there are enough rows)
    order = np.argsort(y[:, 0])
    if n // 5 >= n_splits and targets == 1:
        bottom, top = set(order[: n // 5].tolist()), set(order[-(n // 5) :].tolist())
        for _, rows in folds:
            assert bottom & set(rows.tolist()) and top & set(rows.tolist())


def test_regression_folds_are_balanced_where_plain_shuffling_is_not():
    y = np.arange(100, dtype=float)
    for seed in range(5):
        means = [y[rows].mean() for _, rows in fold_indices("regression", y, 5, seed)]
        assert max(means) - min(means) < 5  # each fold holds two rows of every tenth of the range
    constant = fold_indices("regression", np.full(12, 1.0), 3, 0)
    assert sorted(np.concatenate([rows for _, rows in constant]).tolist()) == list(range(12))


def test_single_label_folds_are_stratified_and_mistakes_are_named():
    labels = np.array([0] * 30 + [1] * 10)
    for _, rows in fold_indices("single_label_classification", labels, 5, 0):
        assert np.bincount(labels[rows]).tolist() == [6, 2]
    with pytest.raises(RecipeError, match="at least 2 folds"):
        fold_indices("regression", np.arange(10.0), 1, 0)
    with pytest.raises(RecipeError, match="did you mean 'regression'"):
        fold_indices("regresion", np.arange(10.0), 2, 0)
    with pytest.raises(DataError, match="3 rows"):
        fold_indices("regression", np.arange(3.0), 5, 0)
