"""The closed sets of names a recipe may use (tasks, problem types, optimizers, schedules, metrics, trackers),
checked from the schema alone."""

from __future__ import annotations

from typing import Literal, get_args

from hf_transfer.problems import all_metric_names, problem_type_names

TASKS = ("text-classification", "image-classification", "multimodal-classification")
# The registered problem types (transformers' names, a model config's `problem_type`) and the metrics they compute,
# as choices the schema checks (an unknown one is named with a did-you-mean); each problem type defines its own.
ProblemTypeName = Literal[problem_type_names()]
MetricName = Literal[all_metric_names()]
# accelerate's tracker names (LoggerType, less "all": a recipe says which trackers it reports to)
Tracker = Literal["tensorboard", "trackio", "wandb", "mlflow", "comet_ml", "aim", "clearml", "dvclive", "swanlab"]

# Closed sets of names, checked here from the schema alone; `hf_transfer.train.optim` maps the optimizer and scheduler
# names to implementations where the loop builds them (a test keeps both in step).
OptimizerName = Literal["adamw", "sgd"]
SchedulerName = Literal["linear", "cosine", "constant"]
OPTIMIZER_NAMES: tuple[str, ...] = get_args(OptimizerName)
SCHEDULER_NAMES: tuple[str, ...] = get_args(SchedulerName)
