"""K-fold splits that respect labels, for `cv` and for the scores `rank` cross-validates; each problem type picks
the one that fits its labels (`ProblemType.fold_indices`):

- class ids: scikit-learn's StratifiedKFold (each class in every fold in proportion);
- multi-hot rows: iterative stratification (Sechidis, Tsoumakas and Vlahavas, ECML 2011) through the maintained
  `iterative-stratification` package, which keeps each label's positives spread over the folds, rare labels first;
- numeric targets: StratifiedKFold over quantile bins of the target (`quantile_bins`), so every fold sees low,
  middle and high values.

Kept apart from `cross_validation` so that `rank` can fold its data without importing the training runner. Also
here: the mean and spread of each metric over the folds.
"""

from __future__ import annotations

import numpy as np

from hf_transfer.core.errors import DataError, RecipeError
from hf_transfer.metrics.scalars import is_number

REGRESSION_BINS = 10  # quantile bins of a regression target (fewer when the rows cannot fill them)


def check_fold_count(num_rows: int, n_splits: int) -> None:
    """Refuse fewer than 2 folds, or more folds than rows."""
    if int(n_splits) < 2:
        raise RecipeError(f"--folds is {n_splits}; cross-validation needs at least 2 folds (5 or 10 are usual).")
    if num_rows < n_splits:
        raise DataError(f"{num_rows} rows cannot fill {n_splits} folds; lower --folds to {max(num_rows, 2)}.")


def stratified_fold_indices(strata, n_splits: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train rows, held-out rows) of each of `n_splits` folds with every stratum (a class id, a bin) spread over
    them in proportion, shuffled with `seed`."""
    from sklearn.model_selection import StratifiedKFold

    strata = np.asarray(strata)
    splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros((len(strata), 1)), strata))


def multilabel_fold_indices(labels, n_splits: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train rows, held-out rows) of each of `n_splits` folds of multi-hot `labels` (n, K), iteratively stratified
    and shuffled with `seed`."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"multi-label folds need multi-hot labels (n, K), got shape {labels.shape}.")
    splitter = MultilabelStratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    placeholder = np.zeros((len(labels), 1))
    return [(train, held_out) for train, held_out in splitter.split(placeholder, labels.astype(np.int64))]


def quantile_bins(targets, n_splits: int) -> np.ndarray:
    """Equal-count bins of the targets' order (up to REGRESSION_BINS, each holding at least `n_splits` rows, so
    StratifiedKFold can put one of each bin in every fold); ties are ordered by row, so a constant target still
    splits. Several targets (n, T) are binned on the mean of their within-target ranks, so a fold is balanced on all
    of them at once rather than on the first."""
    targets = np.asarray(targets, dtype=np.float64)
    if targets.ndim == 2:
        ranks = np.argsort(np.argsort(targets, axis=0, kind="stable"), axis=0, kind="stable")
        order_key = ranks.mean(axis=1)
    else:
        order_key = targets
    num_bins = max(1, min(REGRESSION_BINS, len(order_key) // n_splits))
    position = np.empty(len(order_key), dtype=np.int64)
    position[np.argsort(order_key, kind="stable")] = np.arange(len(order_key))
    return position * num_bins // len(order_key)


def mean_std_over_folds(fold_metrics: list[dict]) -> dict:
    """`{metric: {"mean", "std", "values"}}` for every scalar metric that has a number in all folds.

    Metrics that are None (or NaN) in any fold, non-scalars (per_class, confusion_matrix) and strings are skipped.
    `std` is the sample standard deviation (ddof=1), the usual spread reported for k-fold results; with a single
    fold it is None. Keys follow the order of the first fold.
    """
    if not fold_metrics:
        raise ValueError("fold_metrics is empty: there are no folds to summarise.")
    summary = {}
    for key in fold_metrics[0]:
        values = [fold.get(key) for fold in fold_metrics]
        if not all(is_number(value) for value in values):
            continue
        floats = np.asarray(values, dtype=np.float64)
        summary[key] = {
            "mean": float(floats.mean()),
            "std": float(floats.std(ddof=1)) if len(floats) > 1 else None,
            "values": [value.item() if isinstance(value, np.generic) else value for value in values],
        }
    return summary
