"""How well a frozen backbone's features suit a labelled task, before any training: LogME, kNN and linear probes.

LogME (You, Liu, Wang and Long, "LogME: Practical Assessment of Pre-trained Models for Transfer Learning", ICML
2021) asks how likely the labels are under a Bayesian linear model on the features, with the prior and noise
precisions set by evidence maximisation rather than by a validation split. Per class c (a 0/1 target y):

    w ~ N(0, 1/alpha I_D),   y | F, w ~ N(F w, 1/beta I_N)
    log p(y | F, alpha, beta) = D/2 log alpha + N/2 log beta - 1/2 log|A| - beta/2 |y - F m|^2 - alpha/2 |m|^2
                                - N/2 log 2 pi,     A = alpha I + beta F^T F,   m = beta A^-1 F^T y

alpha and beta come from MacKay's fixed-point updates, gamma = sum_i beta s_i / (alpha + beta s_i),
alpha <- gamma / |m|^2, beta <- (N - gamma) / |y - F m|^2, all of it in the basis of one SVD of F (s_i: the squared
singular values), so each iteration costs O(min(N, D)). LogME is the mean over classes of the maximised evidence
divided by N: higher is better; it does not change when the features are scaled or rotated, nor when the rows or the
class ids are permuted.

The same evidence scores the other problem types: each label of a multi-label task is one 0/1 target, each
regression target (standardised) is one real-valued target, and LogME is again the mean over targets. Which targets,
folds and scores a problem type uses is its own (`ProblemType.logme_targets`, `knn_score`, `linear_score`); the
numeric pieces are here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hf_transfer.core.errors import DataError

LOGME_MAX_ITERATIONS = 100
LOGME_TOLERANCE = 1e-6  # relative change of alpha / beta between iterations
KNN_NEIGHBORS = 10
LOGISTIC_CS = [1e-3, 1e-2, 1e-1, 1.0]  # inverse L2 strengths the linear probe chooses from
RIDGE_ALPHAS = np.logspace(-2, 4, 13)  # L2 strengths the ridge probe chooses from (features are standardised)


@dataclass
class Evidence:
    """The maximised log evidence of one target (per example), and where it was reached."""

    log_evidence: float  # log p(y | F, alpha, beta) / N
    alpha: float
    beta: float
    iterations: int


def _svd_basis(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(U, s^2) of the thin SVD of the features: the basis every target's fixed point runs in."""
    u, s, _ = np.linalg.svd(features, full_matrices=False)
    return u, s**2


def _evidence(target: np.ndarray, u: np.ndarray, sigma: np.ndarray, n_features: int) -> Evidence:
    n = len(target)
    x = u.T @ target  # the target in the left singular basis
    x2 = x**2
    outside = max(float(target @ target - x2.sum()), 0.0)  # the part of y no feature direction can reach
    alpha, beta, iterations = 1.0, 1.0, 0
    while iterations < LOGME_MAX_ITERATIONS:
        iterations += 1
        shrink = alpha + beta * sigma
        gamma = float((beta * sigma / shrink).sum())  # effective number of well-determined directions
        m2 = float((beta**2 * sigma * x2 / shrink**2).sum())  # |m|^2
        residual = float((x2 * (alpha / shrink) ** 2).sum()) + outside  # |y - F m|^2
        new_alpha = max(gamma, 1e-12) / max(m2, 1e-12)
        new_beta = max(n - gamma, 1e-12) / max(residual, 1e-12)
        converged = abs(new_alpha / new_beta - alpha / beta) <= LOGME_TOLERANCE * (alpha / beta)
        alpha, beta = new_alpha, new_beta
        if converged:
            break
    shrink = alpha + beta * sigma
    m2 = float((beta**2 * sigma * x2 / shrink**2).sum())
    residual = float((x2 * (alpha / shrink) ** 2).sum()) + outside
    # |A| has D eigenvalues: alpha + beta s_i along the k = min(N, D) singular directions, alpha along the rest.
    log_det = float(np.log(shrink).sum()) + (n_features - len(sigma)) * math.log(alpha)
    log_evidence = (
        n_features / 2 * math.log(alpha)
        + n / 2 * math.log(beta)
        - log_det / 2
        - beta / 2 * residual
        - alpha / 2 * m2
        - n / 2 * math.log(2 * math.pi)
    )
    return Evidence(log_evidence / n, alpha, beta, iterations)


def logme_evidences(features, targets: list[np.ndarray]) -> list[Evidence]:
    """The maximised evidence of each real-valued target (N,) on `features` (N, D), all in one SVD basis."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or any(len(features) != len(t) for t in targets):
        raise ValueError(f"features must be (N, D) with N = len(targets); got {features.shape}.")
    u, sigma = _svd_basis(features)
    return [_evidence(np.asarray(t, dtype=np.float64), u, sigma, features.shape[1]) for t in targets]


def logme_of_targets(features, targets: list[np.ndarray]) -> float:
    """LogME: the mean over `targets` of the maximised log evidence per example. Higher means the targets are more
    linearly predictable from the features."""
    return float(np.mean([e.log_evidence for e in logme_evidences(features, targets)]))


def _folds(labels: np.ndarray, folds: int, seed: int):
    from sklearn.model_selection import StratifiedKFold

    return StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)


def knn_accuracy(features, labels, folds: int = 5, seed: int = 0) -> float:
    """Cross-validated accuracy of a k-nearest-neighbour vote by cosine similarity (stratified folds)."""
    from sklearn.model_selection import cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    labels = np.asarray(labels)
    smallest_train_fold = len(labels) - math.ceil(len(labels) / folds)
    knn = KNeighborsClassifier(n_neighbors=max(1, min(KNN_NEIGHBORS, smallest_train_fold)), metric="cosine")
    return float(cross_val_score(knn, features, labels, cv=_folds(labels, folds, seed)).mean())


def linear_probe_accuracy(features, labels, folds: int = 5, seed: int = 0) -> float:
    """Cross-validated accuracy of a logistic regression on standardised features, its L2 strength chosen inside
    each training fold (nested 3-fold search): with few rows per feature a fixed strength under-rates good features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = np.asarray(labels)
    smallest_class = int(np.bincount(labels)[np.unique(labels)].min())
    inner = max(2, min(3, smallest_class - math.ceil(smallest_class / folds)))
    probe = GridSearchCV(LogisticRegression(max_iter=2000), {"C": LOGISTIC_CS}, cv=inner, scoring="accuracy")
    scores = cross_val_score(make_pipeline(StandardScaler(), probe), features, labels, cv=_folds(labels, folds, seed))
    return float(scores.mean())


def knn_predictions(features, targets, fold_rows) -> list[tuple[np.ndarray, np.ndarray]]:
    """(predicted, true) targets of each held-out fold of `fold_rows`: the mean of the k nearest training rows by
    cosine similarity (for 0/1 label columns, the neighbours' label frequencies)."""
    from sklearn.neighbors import KNeighborsRegressor

    features, targets = np.asarray(features, dtype=np.float64), _as_columns(targets)
    out = []
    for train, held_out in fold_rows:
        knn = KNeighborsRegressor(n_neighbors=max(1, min(KNN_NEIGHBORS, len(train))), metric="cosine")
        predicted = knn.fit(features[train], targets[train]).predict(features[held_out])
        out.append((predicted.reshape(len(held_out), -1), targets[held_out]))
    return out


def ridge_predictions(features, targets, fold_rows) -> list[tuple[np.ndarray, np.ndarray]]:
    """(predicted, true) targets of each held-out fold of `fold_rows` from a ridge regression on standardised
    features, its strength chosen inside each training fold by RidgeCV's efficient leave-one-out search, per
    target."""
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features, targets = np.asarray(features, dtype=np.float64), _as_columns(targets)
    out = []
    for train, held_out in fold_rows:
        probe = make_pipeline(StandardScaler(), RidgeCV(alphas=RIDGE_ALPHAS, alpha_per_target=True))
        predicted = probe.fit(features[train], targets[train]).predict(features[held_out])
        out.append((predicted.reshape(len(held_out), -1), targets[held_out]))
    return out


def mean_average_precision(fold_predictions, if_none: str) -> float:
    """The mean over folds of the macro average precision of predicted 0/1 label columns, over the labels with a
    positive row in the held-out fold; `if_none` is the DataError's message when no fold has one."""
    from sklearn.metrics import average_precision_score

    scores = []
    for predicted, truth in fold_predictions:
        with_positives = [k for k in range(truth.shape[1]) if truth[:, k].any()]
        if with_positives:
            scores.append(
                float(np.mean([average_precision_score(truth[:, k], predicted[:, k]) for k in with_positives]))
            )
    if not scores:
        raise DataError(if_none)
    return float(np.mean(scores))


def negative_rmse(fold_predictions) -> float:
    """Minus the RMSE of the predictions, averaged over targets and then over folds."""
    return float(np.mean([-float(np.sqrt(((p - t) ** 2).mean(axis=0)).mean()) for p, t in fold_predictions]))


def r_squared(fold_predictions) -> float:
    """R² of the predictions (averaged over targets), averaged over folds."""
    from sklearn.metrics import r2_score

    return float(np.mean([float(r2_score(t, p)) for p, t in fold_predictions]))


def _as_columns(targets) -> np.ndarray:
    targets = np.asarray(targets, dtype=np.float64)
    return targets[:, None] if targets.ndim == 1 else targets
