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
regression target (standardised) is one real-valued target, and LogME is again the mean over targets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hf_transfer.core.errors import DataError
from hf_transfer.metrics.folds import FOLD_PROBLEM_TYPES, MULTI_LABEL, REGRESSION, SINGLE_LABEL, fold_indices

LOGME_MAX_ITERATIONS = 100
LOGME_TOLERANCE = 1e-6  # relative change of alpha / beta between iterations
KNN_NEIGHBORS = 10
LOGISTIC_CS = [1e-3, 1e-2, 1e-1, 1.0]  # inverse L2 strengths the linear probe chooses from
KNN_SCORE_NAMES = {
    SINGLE_LABEL: "knn_accuracy",
    MULTI_LABEL: "knn_map_macro",
    REGRESSION: "knn_neg_rmse",
}
"""What `knn_score` measures for each problem type, as a report would name it."""
LINEAR_SCORE_NAMES = {
    SINGLE_LABEL: "linear_accuracy",
    MULTI_LABEL: "linear_map_macro",
    REGRESSION: "linear_r2",
}
"""What `linear_probe_score` measures for each problem type, as a report would name it."""
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


def logme_evidences(
    features, labels, num_classes: int | None = None, problem_type: str = SINGLE_LABEL
) -> list[Evidence]:
    """The maximised evidence of each target the labels make:

    - single-label: each class's one-vs-rest 0/1 target (classes absent from `labels` are skipped);
    - multi-label: each label's 0/1 column of the multi-hot `labels` (N, K) (a label that is all 0 or all 1 on these
      rows is skipped: it tells nothing about the features);
    - regression: each target column of `labels` (N,) or (N, T), standardised first (constant targets skipped), so
      that targets in different units weigh the same in the mean and the model needs no intercept.
    """
    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    if features.ndim != 2 or len(features) != len(labels):
        raise ValueError(f"features must be (N, D) with N = len(labels); got {features.shape} and {len(labels)}.")
    targets = _logme_targets(labels, num_classes, problem_type)
    u, sigma = _svd_basis(features)
    return [_evidence(target, u, sigma, features.shape[1]) for target in targets]


def _logme_targets(labels: np.ndarray, num_classes: int | None, problem_type: str) -> list[np.ndarray]:
    if problem_type == SINGLE_LABEL:
        classes = np.unique(labels) if num_classes is None else [c for c in range(num_classes) if (labels == c).any()]
        return [(labels == c).astype(np.float64) for c in classes]
    columns = labels.astype(np.float64)
    columns = columns[:, None] if columns.ndim == 1 else columns
    varying = [columns[:, t] for t in range(columns.shape[1]) if np.ptp(columns[:, t]) > 0]
    if problem_type == MULTI_LABEL:
        if not varying:
            raise DataError("LogME needs a label that some rows have and others lack; every label is all 0 or all 1.")
        return varying
    if problem_type == REGRESSION:
        if not varying:
            raise DataError("LogME needs a regression target that varies; every target is constant on these rows.")
        return [(column - column.mean()) / column.std() for column in varying]
    raise ValueError(f"problem_type must be one of {', '.join(FOLD_PROBLEM_TYPES)}, got {problem_type!r}.")


def logme(features, labels, problem_type: str = SINGLE_LABEL) -> float:
    """LogME of `features` (N, D) for `labels`: the mean over targets (classes, labels or regression targets; see
    `logme_evidences`) of the maximised log evidence per example. Higher means the labels are more linearly
    predictable from the features."""
    return float(np.mean([e.log_evidence for e in logme_evidences(features, labels, problem_type=problem_type)]))


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


def knn_score(features, labels, problem_type: str = SINGLE_LABEL, folds: int = 5, seed: int = 0) -> float:
    """Cross-validated score of k nearest neighbours by cosine similarity, in the form the problem type needs
    (`KNN_SCORE_NAMES` names it; higher is better for all three):

    - single-label: accuracy of the neighbours' vote (`knn_accuracy`);
    - multi-label: macro mean average precision of the neighbours' label frequencies, over the labels with a
      positive row in the validation fold (iteratively stratified folds);
    - regression: minus the RMSE of the neighbours' mean, on targets standardised over all rows (so 0 is perfect and
      -1 is about what predicting the mean gives; several targets are averaged), over quantile-binned folds.
    """
    if problem_type == SINGLE_LABEL:
        return knn_accuracy(features, labels, folds=folds, seed=seed)
    from sklearn.metrics import average_precision_score
    from sklearn.neighbors import KNeighborsRegressor

    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    if problem_type == MULTI_LABEL:
        targets = labels
    elif problem_type == REGRESSION:
        targets = labels[:, None] if labels.ndim == 1 else labels
        spread = targets.std(axis=0)
        targets = (targets - targets.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
    else:
        raise ValueError(f"problem_type must be one of {', '.join(FOLD_PROBLEM_TYPES)}, got {problem_type!r}.")
    scores = []
    for train, validation in fold_indices(problem_type, labels, folds, seed):
        knn = KNeighborsRegressor(n_neighbors=max(1, min(KNN_NEIGHBORS, len(train))), metric="cosine")
        predicted = knn.fit(features[train], targets[train]).predict(features[validation])
        predicted = predicted.reshape(len(validation), -1)
        truth = targets[validation]
        if problem_type == REGRESSION:
            scores.append(-float(np.sqrt(((predicted - truth) ** 2).mean(axis=0)).mean()))
            continue
        with_positives = [k for k in range(truth.shape[1]) if truth[:, k].any()]
        if with_positives:
            scores.append(
                float(np.mean([average_precision_score(truth[:, k], predicted[:, k]) for k in with_positives]))
            )
    if not scores:
        raise DataError("kNN mAP needs a validation fold with a positive label; every label is all 0 on these rows.")
    return float(np.mean(scores))


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


def linear_probe_score(features, labels, problem_type: str = SINGLE_LABEL, folds: int = 5, seed: int = 0) -> float:
    """Cross-validated score of a linear probe on standardised features, in the form the problem type needs
    (`LINEAR_SCORE_NAMES` names it; higher is better for all three):

    - single-label: accuracy of a logistic regression (`linear_probe_accuracy`);
    - multi-label: macro mean average precision of a ridge regression on the 0/1 label columns, over the labels with
      a positive row in the validation fold (least squares rather than one logistic search per label, which would
      cost labels x strengths x inner folds fits);
    - regression: R² of a ridge regression, averaged over targets.

    The ridge strength is chosen inside each training fold by RidgeCV's efficient leave-one-out search, per target.
    """
    if problem_type == SINGLE_LABEL:
        return linear_probe_accuracy(features, labels, folds=folds, seed=seed)
    if problem_type not in (MULTI_LABEL, REGRESSION):
        raise ValueError(f"problem_type must be one of {', '.join(FOLD_PROBLEM_TYPES)}, got {problem_type!r}.")
    from sklearn.linear_model import RidgeCV
    from sklearn.metrics import average_precision_score, r2_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    targets = labels[:, None] if labels.ndim == 1 else labels
    scores = []
    for train, validation in fold_indices(problem_type, labels, folds, seed):
        probe = make_pipeline(StandardScaler(), RidgeCV(alphas=RIDGE_ALPHAS, alpha_per_target=True))
        predicted = probe.fit(features[train], targets[train]).predict(features[validation])
        predicted, truth = predicted.reshape(len(validation), -1), targets[validation]
        if problem_type == REGRESSION:
            scores.append(float(r2_score(truth, predicted)))
            continue
        with_positives = [k for k in range(truth.shape[1]) if truth[:, k].any()]
        if with_positives:
            scores.append(
                float(np.mean([average_precision_score(truth[:, k], predicted[:, k]) for k in with_positives]))
            )
    if not scores:
        raise DataError("linear mAP needs a validation fold with a positive label; every label is all 0 here.")
    return float(np.mean(scores))
