"""The closed sets of names a recipe may use (tasks, problem types, optimizers, schedules, metrics, trackers),
checked from the schema alone."""

from __future__ import annotations

from typing import Literal, get_args

TASKS = ("text-classification", "image-classification", "multimodal-classification")
# transformers' names (a model config's `problem_type`), so a pushed text model scores as its pipeline expects
ProblemType = Literal["single_label_classification", "multi_label_classification", "regression"]
PROBLEM_TYPES: tuple[str, ...] = get_args(ProblemType)
# accelerate's tracker names (LoggerType, less "all": a recipe says which trackers it reports to)
Tracker = Literal["tensorboard", "trackio", "wandb", "mlflow", "comet_ml", "aim", "clearml", "dvclive", "swanlab"]

# Closed sets of names, checked here from the schema alone; `hf_transfer.train.loop` maps the optimizer and scheduler
# names to implementations where the loop builds them (a test keeps both in step).
OptimizerName = Literal["adamw", "sgd"]
SchedulerName = Literal["linear", "cosine", "constant"]
SingleLabelMetric = Literal[
    "accuracy", "balanced_accuracy", "f1_macro", "precision_macro", "recall_macro", "roc_auc", "log_loss"
]
MultiLabelMetric = Literal[
    "f1_micro", "f1_macro", "f1_samples", "map_macro", "subset_accuracy", "hamming_loss", "roc_auc_macro"
]
RegressionMetric = Literal["mse", "rmse", "mae", "r2", "pearson", "spearman"]
MetricName = Literal[SingleLabelMetric, MultiLabelMetric, RegressionMetric]
OPTIMIZER_NAMES: tuple[str, ...] = get_args(OptimizerName)
SCHEDULER_NAMES: tuple[str, ...] = get_args(SchedulerName)
METRIC_NAMES: tuple[str, ...] = tuple(dict.fromkeys(get_args(MetricName)))
"""Scalar metric keys that a recipe may name as the metric for the best checkpoint."""
METRICS_OF_PROBLEM_TYPE: dict[str, tuple[str, ...]] = {
    "single_label_classification": get_args(SingleLabelMetric),
    "multi_label_classification": get_args(MultiLabelMetric),
    "regression": get_args(RegressionMetric),
}
# Single-label keeps the metric it always had; multi-label's macro F1 weighs rare labels like common ones; rmse is in
# the targets' own unit.
DEFAULT_METRIC: dict[str, str] = {
    "single_label_classification": "f1_macro",
    "multi_label_classification": "f1_macro",
    "regression": "rmse",
}
