"""What a scalar metric value is: whether it is a number to report, and whether a larger one is better."""

from __future__ import annotations

import math

import numpy as np

METRIC_DIRECTIONS: dict[str, bool] = {
    # single-label
    "accuracy": True,
    "balanced_accuracy": True,
    "f1_macro": True,
    "precision_macro": True,
    "recall_macro": True,
    "roc_auc": True,
    "log_loss": False,
    # multi-label
    "f1_micro": True,
    "f1_weighted": True,
    "f1_samples": True,
    "precision_micro": True,
    "recall_micro": True,
    "subset_accuracy": True,
    "hamming_loss": False,
    "map_macro": True,
    "roc_auc_macro": True,
    # regression
    "mse": False,
    "rmse": False,
    "mae": False,
    "r2": True,
    "pearson": True,
    "spearman": True,
}
"""Whether a larger value is better, for every metric the metric functions return (True: greater is better)."""

_SPLIT_PREFIXES = ("eval_", "validation_", "test_", "train_")


def greater_is_better(metric: str) -> bool:
    """The direction of `metric`: False for errors and losses (mse, rmse, mae, hamming_loss, log_loss and anything
    ending in "loss" or "error"), True for every other metric.

    A split prefix ("eval_rmse") and a per-label / per-target suffix ("rmse/price", as cross-validation names them)
    do not change the direction.
    """
    name = metric.strip().lower().split("/", 1)[0]
    for candidate in (name, *(name[len(prefix) :] for prefix in _SPLIT_PREFIXES if name.startswith(prefix))):
        if candidate in METRIC_DIRECTIONS:
            return METRIC_DIRECTIONS[candidate]
    return not name.endswith(("loss", "error"))


def is_number(value) -> bool:
    """True for finite ints and floats (numpy included), False for None, bools, NaN and everything else."""
    return (
        isinstance(value, (int, float, np.integer, np.floating))
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )
