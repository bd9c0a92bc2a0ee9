"""Transferability scores of frozen features (`metrics.transferability`) as each problem type asks for them: LogME,
kNN and linear probes, for every problem type."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from hf_transfer.core.errors import DataError
from hf_transfer.metrics.transferability import knn_accuracy, linear_probe_accuracy, logme_evidences
from hf_transfer.problems import PROBLEM_TYPES

SINGLE = "single_label_classification"


def logme(features, labels, problem_type: str = SINGLE) -> float:
    return PROBLEM_TYPES.get(problem_type).logme(features, labels)


def knn_score(features, labels, problem_type: str = SINGLE, folds: int = 5) -> float:
    return PROBLEM_TYPES.get(problem_type).knn_score(features, labels, folds=folds)


def linear_probe_score(features, labels, problem_type: str = SINGLE, folds: int = 5) -> float:
    return PROBLEM_TYPES.get(problem_type).linear_score(features, labels, folds=folds)


# --------------------------------------------------------------------------------------------------------------------
# LogME
# --------------------------------------------------------------------------------------------------------------------


def _task(n=200, d=16, classes=3, seed=0):
    """Labels, features whose first directions encode them, and random features of the same shape."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    informative = rng.normal(size=(n, d))
    informative[:, :classes] += 2.0 * np.eye(classes)[labels]
    return labels, informative, rng.normal(size=(n, d))


def test_logme_prefers_features_that_predict_the_labels():
    labels, informative, noise = _task()
    assert logme(informative, labels) > logme(noise, labels) + 0.1
    # and the feature-based probes agree
    assert knn_accuracy(informative, labels, folds=3) > knn_accuracy(noise, labels, folds=3) + 0.2
    assert linear_probe_accuracy(informative, labels, folds=3) > linear_probe_accuracy(noise, labels, folds=3) + 0.2


def test_logme_is_invariant_to_scale_rotation_and_permutations():
    labels, features, _ = _task(seed=1)
    reference = logme(features, labels)
    rotation, _ = np.linalg.qr(np.random.default_rng(2).normal(size=(16, 16)))
    rows = np.random.default_rng(3).permutation(len(labels))
    assert logme(features * 37.0, labels) == pytest.approx(reference, abs=1e-6)
    assert logme(features @ rotation, labels) == pytest.approx(reference, abs=1e-6)
    assert logme(features[rows], labels[rows]) == pytest.approx(reference, abs=1e-9)
    assert logme(features, np.array([2, 0, 1])[labels]) == pytest.approx(reference, abs=1e-9)  # renamed classes


@pytest.mark.parametrize("n,d", [(60, 5), (30, 50)])  # more rows than features, and fewer
def test_logme_is_the_maximised_gaussian_evidence(n, d):
    labels, features, _ = _task(n=n, d=d, classes=2, seed=4)
    for c, fit in enumerate(logme_evidences(features, PROBLEM_TYPES.get(SINGLE).logme_targets(labels))):
        y = (labels == c).astype(float)

        def evidence(alpha, beta, y=y):  # log N(y; 0, F F^T / alpha + I / beta) / N, computed densely
            covariance = features @ features.T / alpha + np.eye(n) / beta
            return multivariate_normal(np.zeros(n), covariance).logpdf(y) / n

        assert fit.log_evidence == pytest.approx(evidence(fit.alpha, fit.beta), abs=1e-8)
        for da, db in ((1.5, 1.0), (1 / 1.5, 1.0), (1.0, 1.5), (1.0, 1 / 1.5)):  # a maximum along both axes
            assert evidence(fit.alpha * da, fit.beta * db) <= fit.log_evidence + 1e-9
    assert math.isfinite(logme(np.zeros((20, 4)), np.arange(20) % 2))  # constant features: finite, no NaN


def _regression_task(n=200, d=16, targets=2, seed=0):
    """Targets in different units, features whose first directions carry them, and random features."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, targets))
    y = latent * np.array([1.0, 1000.0, 0.01][:targets]) + np.array([5.0, -300.0, 0.0][:targets])
    informative = rng.normal(size=(n, d))
    informative[:, :targets] += 2.0 * latent
    return y, informative, rng.normal(size=(n, d))


def _multilabel_task(n=200, d=16, labels=4, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, labels)) < 0.3).astype(int)
    y[0] = 0  # a row without labels
    informative = rng.normal(size=(n, d))
    informative[:, :labels] += 2.0 * y
    return y, informative, rng.normal(size=(n, d))


def test_regression_logme_and_knn_prefer_the_features_that_carry_the_targets():
    y, informative, noise = _regression_task()
    assert logme(informative, y, problem_type="regression") > logme(noise, y, problem_type="regression") + 0.1
    assert knn_score(informative, y, "regression", folds=3) > knn_score(noise, y, "regression", folds=3) + 0.2
    assert -1.5 < knn_score(noise, y, "regression", folds=3) < -0.8  # about the error of predicting the mean
    assert linear_probe_score(informative, y, "regression", folds=3) > 0.6  # R²
    assert abs(linear_probe_score(noise, y, "regression", folds=3)) < 0.2
    assert PROBLEM_TYPES.get("regression").linear_score_name == "linear_r2"
    one = y[:, 0]
    assert logme(informative, one, problem_type="regression") > logme(noise, one, problem_type="regression") + 0.1
    assert PROBLEM_TYPES.get("regression").knn_score_name == "knn_neg_rmse"


def test_regression_logme_does_not_depend_on_the_targets_units():
    y, features, _ = _regression_task(seed=1)
    reference = logme(features, y, problem_type="regression")
    assert logme(features, y * [3.0, 0.001] + 42.0, problem_type="regression") == pytest.approx(reference, abs=1e-9)
    # the mean over targets: each target's evidence counts once
    per_target = [logme(features, y[:, t], problem_type="regression") for t in range(2)]
    assert reference == pytest.approx(np.mean(per_target))


def test_multilabel_logme_and_knn_prefer_the_features_that_carry_the_labels():
    y, informative, noise = _multilabel_task()
    kind = "multi_label_classification"
    assert logme(informative, y, problem_type=kind) > logme(noise, y, problem_type=kind) + 0.05
    assert knn_score(informative, y, kind, folds=3) > knn_score(noise, y, kind, folds=3) + 0.2
    assert linear_probe_score(informative, y, kind, folds=3) > linear_probe_score(noise, y, kind, folds=3) + 0.3
    assert linear_probe_score(noise, y, kind, folds=3) < 0.45  # about the labels' rate (0.3): chance for mAP
    # one label per target: a single-label task with one-hot rows scores the same through both forms
    classes = np.arange(200) % 3
    assert logme(informative, np.eye(3)[classes], problem_type=kind) == pytest.approx(logme(informative, classes))
    assert knn_score(informative, classes, folds=3) == knn_accuracy(informative, classes, folds=3)


def test_targets_that_never_vary_are_skipped_or_named():
    y, features, _ = _multilabel_task(seed=2)
    y[:, 3] = 0  # a label no row has
    assert logme(features, y, problem_type="multi_label_classification") == pytest.approx(
        logme(features, y[:, :3], problem_type="multi_label_classification")
    )
    with pytest.raises(DataError, match="all 0 or all 1"):
        logme(features, np.zeros((200, 2)), problem_type="multi_label_classification")
    with pytest.raises(DataError, match="constant"):
        logme(features, np.full(200, 3.0), problem_type="regression")
    assert math.isfinite(knn_score(features, np.full(200, 3.0), "regression", folds=3))
