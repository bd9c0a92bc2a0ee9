"""Tests for hf_transfer.metrics: hand-computed examples, agreement with scikit-learn, tables, plots, bootstrap."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_single_valid_png
from sklearn import metrics as sk_metrics

import hf_transfer.metrics.bootstrap as metrics_bootstrap
from hf_transfer.core.errors import DataError, RecipeError
from hf_transfer.metrics.bootstrap import bootstrap_metric_difference
from hf_transfer.metrics.classification import classification_metrics
from hf_transfer.metrics.folds import mean_std_over_folds
from hf_transfer.metrics.plots import save_confusion_matrix_plot, save_training_curves_plot
from hf_transfer.metrics.scalars import greater_is_better
from hf_transfer.metrics.tables import format_metrics_table
from hf_transfer.problems import all_metric_names, problem_type

REPO_ROOT = Path(__file__).resolve().parents[1]
SINGLE_LABEL_METRICS = problem_type("single_label_classification").metric_names

# y_true and the predictions of the hand-computed 3-class example:
#   confusion matrix  [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
#   precision         cat 1/2, dog 2/3, bird 1/1
#   recall            cat 1/2, dog 2/2, bird 1/2
#   f1                cat 1/2, dog 4/5, bird 2/3
Y_TRUE = np.array([0, 0, 1, 1, 2, 2])
Y_PRED = np.array([0, 1, 1, 1, 2, 0])
NAMES = ["cat", "dog", "bird"]


def probabilities_favouring(predictions: np.ndarray, num_classes: int, top: float = 0.7) -> np.ndarray:
    """Rows summing to 1 whose argmax is `predictions`: `top` on the predicted class, the rest shared equally."""
    probs = np.full((len(predictions), num_classes), (1.0 - top) / (num_classes - 1))
    probs[np.arange(len(predictions)), predictions] = top
    return probs


def random_probabilities(num_samples: int, num_classes: int, seed: int) -> np.ndarray:
    """Softmax of Gaussian logits: a valid, tie-free probability matrix."""
    logits = np.random.default_rng(seed).normal(size=(num_samples, num_classes))
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


@pytest.fixture
def example_metrics() -> dict:
    return classification_metrics(Y_TRUE, probabilities_favouring(Y_PRED, 3), NAMES)


# --------------------------------------------------------------------------------------------------------------------
# classification_metrics
# --------------------------------------------------------------------------------------------------------------------


def test_hand_computed_scalars(example_metrics):
    assert example_metrics["num_samples"] == 6
    assert example_metrics["accuracy"] == pytest.approx(4 / 6)
    assert example_metrics["balanced_accuracy"] == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)
    assert example_metrics["precision_macro"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert example_metrics["recall_macro"] == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)
    assert example_metrics["f1_macro"] == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 3)


def test_hand_computed_confusion_matrix_and_per_class(example_metrics):
    assert example_metrics["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    per_class = example_metrics["per_class"]
    assert list(per_class) == NAMES
    assert per_class["cat"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert per_class["dog"] == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2})
    assert per_class["bird"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})


def test_log_loss_matches_sklearn(example_metrics):
    probs = probabilities_favouring(Y_PRED, 3)
    assert example_metrics["log_loss"] == pytest.approx(sk_metrics.log_loss(Y_TRUE, probs))
    assert example_metrics["log_loss"] == pytest.approx(-np.mean(np.log(probs[np.arange(6), Y_TRUE])))


def test_binary_roc_auc_matches_sklearn_on_positive_column():
    y_true = np.random.default_rng(1).integers(0, 2, 80)
    probs = random_probabilities(80, 2, seed=2)
    result = classification_metrics(y_true, probs, ["neg", "pos"])
    assert result["roc_auc"] == pytest.approx(sk_metrics.roc_auc_score(y_true, probs[:, 1]))
    assert "roc_auc_note" not in result


def test_multiclass_roc_auc_matches_sklearn_one_vs_rest_macro():
    y_true = np.random.default_rng(3).integers(0, 3, 90)
    probs = random_probabilities(90, 3, seed=4)
    result = classification_metrics(y_true, probs, ["a", "b", "c"])
    expected = sk_metrics.roc_auc_score(y_true, probs, multi_class="ovr", average="macro")
    assert result["roc_auc"] == pytest.approx(expected)


def test_scalars_match_sklearn_on_random_data():
    y_true = np.random.default_rng(5).integers(0, 4, 120)
    probs = random_probabilities(120, 4, seed=6)
    y_pred = probs.argmax(axis=1)
    result = classification_metrics(y_true, probs, ["a", "b", "c", "d"])
    assert result["accuracy"] == pytest.approx(sk_metrics.accuracy_score(y_true, y_pred))
    assert result["balanced_accuracy"] == pytest.approx(sk_metrics.balanced_accuracy_score(y_true, y_pred))
    assert result["f1_macro"] == pytest.approx(sk_metrics.f1_score(y_true, y_pred, average="macro"))
    assert result["confusion_matrix"] == sk_metrics.confusion_matrix(y_true, y_pred).tolist()


@pytest.mark.parametrize("names", [["neg", "pos"], ["a", "b", "c"]])
def test_roc_auc_is_none_with_note_when_only_one_class_present(names):
    y_true = np.ones(5, dtype=int)
    probs = probabilities_favouring(np.array([1, 1, 0, 1, 1]), len(names))
    result = classification_metrics(y_true, probs, names)
    assert result["roc_auc"] is None
    assert "single class" in result["roc_auc_note"]
    assert repr(names[1]) in result["roc_auc_note"]
    assert result["accuracy"] == pytest.approx(0.8)


def test_zero_support_label_has_per_class_entry_and_roc_auc_note():
    names = [*NAMES, "fish"]
    result = classification_metrics(Y_TRUE, probabilities_favouring(Y_PRED, 4), names)
    assert result["per_class"]["fish"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert result["confusion_matrix"] == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
    assert result["roc_auc"] is None
    assert "'fish'" in result["roc_auc_note"]
    # Macro averages follow sklearn's default: a label absent from y_true and predictions is not averaged in.
    assert result["f1_macro"] == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 3)


def test_predicted_but_absent_label_counts_in_macro_average():
    y_pred = np.array([0, 3, 1, 1, 2, 0])
    result = classification_metrics(Y_TRUE, probabilities_favouring(y_pred, 4), [*NAMES, "fish"])
    assert result["per_class"]["fish"]["support"] == 0
    assert result["confusion_matrix"][0] == [1, 0, 0, 1]
    assert result["f1_macro"] == pytest.approx(sk_metrics.f1_score(Y_TRUE, y_pred, average="macro", zero_division=0))


def test_result_survives_json_round_trip():
    result = classification_metrics(
        Y_TRUE.astype(np.int32), probabilities_favouring(Y_PRED, 4).astype(np.float32), [*NAMES, "fish"]
    )
    decoded = json.loads(json.dumps(result, allow_nan=False))
    assert decoded == result
    for key in SINGLE_LABEL_METRICS:
        assert key in result
        assert result[key] is None or type(result[key]) is float
    assert type(result["num_samples"]) is int
    assert all(type(count) is int for row in result["confusion_matrix"] for count in row)


def test_float32_probabilities_with_rounding_error_are_accepted():
    probs = random_probabilities(50, 5, seed=7).astype(np.float32) * np.float32(1.0002)
    y_true = np.arange(50) % 5
    result = classification_metrics(y_true, probs, list("abcde"))
    assert math.isfinite(result["log_loss"])


def test_logits_instead_of_probabilities_are_rejected():
    logits = np.random.default_rng(8).normal(size=(6, 3))
    with pytest.raises(ValueError, match="softmax"):
        classification_metrics(Y_TRUE, logits, NAMES)


def test_wrong_number_of_label_names_is_rejected():
    with pytest.raises(ValueError, match="shape"):
        classification_metrics(Y_TRUE, probabilities_favouring(Y_PRED, 3), ["cat", "dog", "bird", "fish"])


def test_label_outside_label_names_is_a_data_error():
    with pytest.raises(DataError, match="label 3"):
        classification_metrics(np.array([0, 3]), probabilities_favouring(np.array([0, 1]), 3), NAMES)


def test_greater_is_better():
    assert greater_is_better("log_loss") is False
    assert greater_is_better("loss") is False
    assert greater_is_better("eval_loss") is False
    for name in all_metric_names():
        assert greater_is_better(name) is (name not in ("log_loss", "hamming_loss", "mse", "rmse", "mae"))


# --------------------------------------------------------------------------------------------------------------------
# format_metrics_table
# --------------------------------------------------------------------------------------------------------------------


def test_table_contains_title_labels_numbers_and_matrix(example_metrics):
    table = format_metrics_table(example_metrics, title="validation")
    assert table.splitlines()[0] == "validation"
    for name in NAMES:
        assert name in table
    assert "0.6667" in table  # accuracy, 4 decimals
    assert "0.6556" in table  # f1_macro
    assert "0.8000" in table  # f1 of dog
    matrix_lines = table.split("confusion matrix")[1].splitlines()[2:]
    assert [line.split() for line in matrix_lines] == [
        ["cat", "1", "1", "0"],
        ["dog", "0", "2", "0"],
        ["bird", "1", "0", "1"],
    ]


def test_table_shows_roc_auc_note_when_undefined():
    result = classification_metrics(
        np.zeros(3, dtype=int), probabilities_favouring(np.array([0, 1, 0]), 2), ["x", "y"]
    )
    table = format_metrics_table(result)
    roc_line = next(line for line in table.splitlines() if line.startswith("roc_auc"))
    assert "n/a" in roc_line
    assert "single class" in roc_line


def test_table_truncates_long_names():
    long_name = "an_extraordinarily_long_label_name_" * 3
    result = classification_metrics(Y_TRUE, probabilities_favouring(Y_PRED, 3), [long_name, "dog", "bird"])
    table = format_metrics_table(result)
    assert long_name not in table
    assert long_name[:10] in table
    assert "..." in table


@pytest.mark.parametrize("num_classes", [15, 100])
def test_table_stays_readable_for_many_classes(num_classes):
    y_true = np.arange(num_classes * 3) % num_classes
    probs = random_probabilities(len(y_true), num_classes, seed=num_classes)
    names = [f"category_number_{i}" for i in range(num_classes)]
    table = format_metrics_table(classification_metrics(y_true, probs, names))
    assert max(len(line) for line in table.splitlines()) <= 150
    assert f"category_number_{num_classes - 1}" in table
    if num_classes > 25:
        assert "Most frequent confusions" in table
    else:
        assert "class indices" in table


def test_table_of_partial_dict_lists_scalars_only():
    table = format_metrics_table({"accuracy": 0.5, "eval_loss": 0.25, "epoch": 3})
    assert "0.5000" in table
    assert "0.2500" in table
    assert "epoch" in table
    assert "confusion" not in table


# --------------------------------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------------------------------


def test_confusion_matrix_plot_is_written_atomically(tmp_path):
    target = tmp_path / "plots" / "confusion.png"
    save_confusion_matrix_plot([[1, 1, 0], [0, 2, 0], [1, 0, 1]], NAMES, target)
    assert_single_valid_png(target)


def test_confusion_matrix_plot_overwrites_and_scales_with_classes(tmp_path):
    target = tmp_path / "confusion.png"
    save_confusion_matrix_plot(np.eye(2, dtype=int) * 5, ["a", "b"], target)
    small = assert_single_valid_png(target)
    names = [f"a_fairly_long_class_name_{i}" for i in range(30)]
    matrix = np.random.default_rng(9).integers(0, 20, size=(30, 30))
    save_confusion_matrix_plot(matrix, names, target)
    large = assert_single_valid_png(target)
    assert large.shape[0] > small.shape[0] and large.shape[1] > small.shape[1]


def test_confusion_matrix_plot_with_empty_row(tmp_path):
    target = tmp_path / "confusion.png"
    save_confusion_matrix_plot([[3, 0], [0, 0]], ["a", "b"], target)
    assert_single_valid_png(target)


def test_confusion_matrix_plot_rejects_mismatched_names(tmp_path):
    with pytest.raises(ValueError, match="does not match"):
        save_confusion_matrix_plot([[1, 0], [0, 1]], NAMES, tmp_path / "x.png")


def test_failed_save_leaves_no_temporary_file(tmp_path):
    with pytest.raises(ValueError):
        save_confusion_matrix_plot([[1, 0], [0, 1]], ["a", "b"], tmp_path / "plot.not_an_image_format")
    assert list(tmp_path.iterdir()) == []


def test_training_curves_plot_is_written(tmp_path):
    history = [
        {"epoch": 1, "train_loss": 0.6, "eval_loss": 0.5, "accuracy": 0.8, "f1_macro": 0.79, "eval_runtime": 1.2},
        {"epoch": 2, "train_loss": 0.4, "eval_loss": 0.45, "accuracy": 0.85, "f1_macro": 0.84, "roc_auc": None},
        {"epoch": 3, "train_loss": 0.3},
    ]
    target = tmp_path / "curves.png"
    save_training_curves_plot(history, target)
    assert_single_valid_png(target)


def test_training_curves_plot_with_losses_only(tmp_path):
    target = tmp_path / "curves.png"
    save_training_curves_plot([{"train_loss": 1.0}, {"train_loss": 0.5}], target)
    assert_single_valid_png(target)


def test_training_curves_plot_rejects_empty_history(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        save_training_curves_plot([], tmp_path / "curves.png")
    assert list(tmp_path.iterdir()) == []


def test_plots_do_not_import_pyplot(tmp_path):
    code = (
        "import sys\n"
        "from hf_transfer.metrics.plots import save_confusion_matrix_plot, save_training_curves_plot\n"
        f"save_confusion_matrix_plot([[1, 0], [0, 1]], ['a', 'b'], {str(tmp_path / 'cm.png')!r})\n"
        f"save_training_curves_plot([{{'epoch': 1, 'train_loss': 1.0}}], {str(tmp_path / 'c.png')!r})\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True)


# --------------------------------------------------------------------------------------------------------------------
# bootstrap_metric_difference
# --------------------------------------------------------------------------------------------------------------------


def predictions_with_accuracy(y_true: np.ndarray, num_classes: int, num_correct: int, seed: int) -> np.ndarray:
    """Predictions equal to y_true on `num_correct` random positions and wrong (shifted by one) elsewhere."""
    wrong = np.random.default_rng(seed).permutation(len(y_true))[num_correct:]
    predictions = y_true.copy()
    predictions[wrong] = (y_true[wrong] + 1) % num_classes
    return predictions


def sklearn_score(metric: str, y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The reference value of a bootstrap metric, straight from scikit-learn (its warnings silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if metric == "accuracy":
            return sk_metrics.accuracy_score(y_true, y_pred)
        if metric == "balanced_accuracy":
            return sk_metrics.balanced_accuracy_score(y_true, y_pred)
        return sk_metrics.f1_score(y_true, y_pred, average="macro", zero_division=0)


@pytest.fixture
def clear_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y_true = np.arange(300) % 3
    return y_true, predictions_with_accuracy(y_true, 3, 270, seed=1), predictions_with_accuracy(y_true, 3, 150, seed=2)


def test_bootstrap_ci_contains_true_difference_in_clear_case(clear_case):
    result = bootstrap_metric_difference(*clear_case, n_resamples=2000, seed=0)
    assert set(result) == {"metric", "a", "b", "difference", "ci_low", "ci_high", "confidence", "n_resamples"}
    assert result["a"] == pytest.approx(0.9)
    assert result["b"] == pytest.approx(0.5)
    assert result["difference"] == pytest.approx(0.4)
    assert result["ci_low"] < 0.4 < result["ci_high"]
    assert result["ci_low"] > 0.25  # clearly better: the interval is far from 0
    assert result["ci_high"] - result["ci_low"] < 0.2
    assert json.loads(json.dumps(result)) == result


def test_bootstrap_is_deterministic_for_a_seed(clear_case):
    first = bootstrap_metric_difference(*clear_case, metric="f1_macro", n_resamples=300, seed=7)
    second = bootstrap_metric_difference(*clear_case, metric="f1_macro", n_resamples=300, seed=7)
    other = bootstrap_metric_difference(*clear_case, metric="f1_macro", n_resamples=300, seed=8)
    assert first == second
    assert (first["ci_low"], first["ci_high"]) != (other["ci_low"], other["ci_high"])


@pytest.mark.parametrize("metric", ["accuracy", "balanced_accuracy", "f1_macro"])
def test_bootstrap_of_identical_predictions_is_zero(clear_case, metric):
    y_true, pred_a, _ = clear_case
    result = bootstrap_metric_difference(y_true, pred_a, pred_a.copy(), metric=metric, n_resamples=200)
    assert result["difference"] == 0.0
    assert result["ci_low"] <= 0.0 <= result["ci_high"]
    assert result["ci_high"] - result["ci_low"] < 1e-12


@pytest.mark.parametrize("metric", ["accuracy", "balanced_accuracy", "f1_macro"])
def test_bootstrap_point_estimates_match_sklearn(metric):
    rng = np.random.default_rng(10)
    y_true = rng.integers(0, 4, 150)
    pred_a = np.where(rng.random(150) < 0.7, y_true, rng.integers(0, 5, 150))  # label 4 only ever predicted
    pred_b = rng.integers(0, 4, 150)
    result = bootstrap_metric_difference(y_true, pred_a, pred_b, metric=metric, n_resamples=10)
    assert result["a"] == pytest.approx(sklearn_score(metric, y_true, pred_a))
    assert result["b"] == pytest.approx(sklearn_score(metric, y_true, pred_b))


@pytest.mark.parametrize("metric", ["accuracy", "balanced_accuracy", "f1_macro"])
def test_bootstrap_resamples_agree_with_sklearn_on_the_same_indices(metric, monkeypatch):
    rng = np.random.default_rng(11)
    y_true = rng.integers(0, 3, 40)
    pred_a = np.where(rng.random(40) < 0.8, y_true, rng.integers(0, 3, 40))
    pred_b = rng.integers(0, 3, 40)
    monkeypatch.setattr(metrics_bootstrap, "MAX_BOOTSTRAP_ELEMENTS", 40 * 3)  # force several chunks
    result = bootstrap_metric_difference(y_true, pred_a, pred_b, metric=metric, n_resamples=7, confidence=0.5, seed=3)

    chunk_rng = np.random.default_rng(3)  # the module draws 7 resamples in chunks of 3 rows: 3 + 3 + 1
    indices = np.concatenate([chunk_rng.integers(0, 40, size=(rows, 40)) for rows in (3, 3, 1)])
    differences = [
        sklearn_score(metric, y_true[i], pred_a[i]) - sklearn_score(metric, y_true[i], pred_b[i]) for i in indices
    ]
    low, high = np.quantile(differences, [0.25, 0.75])
    assert result["ci_low"] == pytest.approx(low)
    assert result["ci_high"] == pytest.approx(high)


def test_bootstrap_rejects_unknown_metric_with_suggestion(clear_case):
    with pytest.raises(RecipeError, match="did you mean 'f1_macro'"):
        bootstrap_metric_difference(*clear_case, metric="f1_marco")


def test_bootstrap_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="equally long"):
        bootstrap_metric_difference([0, 1, 1], [0, 1], [0, 1, 1])


# --------------------------------------------------------------------------------------------------------------------
# mean_std_over_folds
# --------------------------------------------------------------------------------------------------------------------


def test_mean_std_over_folds():
    folds = [
        {"num_samples": 10, "accuracy": 0.8, "roc_auc": None, "log_loss": 0.5, "per_class": {"a": {}}, "note": "x"},
        {"num_samples": 12, "accuracy": 0.9, "roc_auc": 0.95, "log_loss": 0.3, "per_class": {"a": {}}},
        {"num_samples": 11, "accuracy": 0.7, "roc_auc": 0.9, "log_loss": 0.4},
    ]
    summary = mean_std_over_folds(folds)
    assert set(summary) == {"num_samples", "accuracy", "log_loss"}
    assert summary["accuracy"]["mean"] == pytest.approx(0.8)
    assert summary["accuracy"]["std"] == pytest.approx(0.1)  # sample std (ddof=1) of 0.8, 0.9, 0.7
    assert summary["accuracy"]["values"] == [0.8, 0.9, 0.7]
    assert summary["log_loss"]["std"] == pytest.approx(np.std([0.5, 0.3, 0.4], ddof=1))
    assert summary["num_samples"]["mean"] == pytest.approx(11.0)
    assert json.loads(json.dumps(summary)) == summary


def test_mean_std_over_folds_skips_metric_missing_from_a_fold():
    summary = mean_std_over_folds([{"accuracy": 0.5, "f1_macro": 0.4}, {"accuracy": 0.7}])
    assert list(summary) == ["accuracy"]
    assert summary["accuracy"]["mean"] == pytest.approx(0.6)


def test_mean_std_over_a_single_fold_has_no_std():
    summary = mean_std_over_folds([{"accuracy": np.float64(0.5)}])
    assert summary["accuracy"] == {"mean": 0.5, "std": None, "values": [0.5]}
    assert type(summary["accuracy"]["values"][0]) is float


def test_mean_std_over_folds_from_classification_metrics():
    folds = [
        classification_metrics(Y_TRUE, probabilities_favouring(Y_PRED, 3), NAMES),
        classification_metrics(Y_TRUE, probabilities_favouring(Y_TRUE, 3), NAMES),
    ]
    summary = mean_std_over_folds(folds)
    assert set(SINGLE_LABEL_METRICS) <= set(summary)
    assert summary["accuracy"]["values"] == pytest.approx([4 / 6, 1.0])
    assert "per_class" not in summary and "confusion_matrix" not in summary


def test_mean_std_over_no_folds_is_rejected():
    with pytest.raises(ValueError, match="empty"):
        mean_std_over_folds([])
