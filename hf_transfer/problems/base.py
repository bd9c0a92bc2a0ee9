"""The three problem types of a recipe's `problem_type`, as transformers names them in a model config.

Each is one small class with what differs between them: the head's size, the loss, how logits become scores, the
default selection metric and the metrics themselves, and what a prediction looks like. The loop, the strategies
and `predict` ask the problem type and never branch on its name. Single-label classification is exactly what
hf-transfer always did (cross-entropy, softmax, `classification_metrics`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hf_transfer.config.names import DEFAULT_METRIC
from hf_transfer.config.sections import TrainConfig
from hf_transfer.core.errors import RecipeError
from hf_transfer.core.registry import Registry

SINGLE_LABEL = "single_label_classification"
MULTI_LABEL = "multi_label_classification"
REGRESSION = "regression"

DEFAULT_THRESHOLD = 0.5
# pos_weight = negatives / positives of a label, kept within these bounds: a label seen once in 10,000 rows would
# otherwise weigh its one positive 10,000 times and its gradient would swamp every other label's.
POS_WEIGHT_RANGE = (0.01, 100.0)


class ProblemType:
    """What a problem type decides; subclasses are registered in `PROBLEM_TYPE_CLASSES` by their transformers name."""

    name: ClassVar[str]
    label_dtype: ClassVar[torch.dtype]

    def __init__(self, train: TrainConfig | None = None):
        self.train = train or TrainConfig()

    @property
    def default_metric(self) -> str:
        return DEFAULT_METRIC[self.name]

    def head_outputs(self, num_names: int) -> int:
        """Outputs of the head: one per class, label or target."""
        return num_names

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, class_weights: torch.Tensor | None = None):
        raise NotImplementedError

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def metrics(self, y_true: np.ndarray, scores: np.ndarray, names: list[str], thresholds=None) -> dict:
        raise NotImplementedError

    def class_weights(self, labels, num_names: int) -> torch.Tensor | None:
        """The loss weights `train.class_weights` asks for, from the train labels."""
        return None

    def predictions(self, scores: np.ndarray, names: list[str], thresholds=None) -> list[dict]:
        """One dict per row of `scores`, as `predict` returns them."""
        raise NotImplementedError

    # --- what the layers above ask of a problem type (the run folder, its card, rank, transfer) ---------------------
    # What one prediction of `predictions` holds under its main key (the card's example reads it).
    prediction_key: ClassVar[str]
    # The metrics of the card's model-index, in order.
    card_metrics: ClassVar[tuple[str, ...]]
    # The plots `save_plots` writes into a run folder, as (title, file name), shown on the card.
    plots: ClassVar[tuple[tuple[str, str], ...]]
    # The source metrics `metrics.json` reports before and after a target stage (what was forgotten).
    forgetting_metrics: ClassVar[tuple[str, ...]]
    # What a row of per-name figures is called in the card ("Per class:").
    name_word: ClassVar[str]
    # What rank's kNN and linear scores measure, in its table's title.
    rank_measured: ClassVar[str]
    # Whether each row has exactly one of the names: zero-shot classification from the label names needs that.
    one_label_per_row: ClassVar[bool] = False
    # Whether decisions cut each score at a threshold tuned on validation (`tuned_thresholds`, thresholds.json).
    uses_thresholds: ClassVar[bool] = False

    def label_config_kwargs(self, label_names: list[str]) -> dict:
        """A transformers classifier config's label keys: with problem_type recorded, pipeline() scores as the run
        trained (softmax, sigmoid per label, or the raw value per target; id2label then names the targets)."""
        id2label = dict(enumerate(label_names))
        return {
            "num_labels": self.head_outputs(len(label_names)),
            "id2label": id2label,
            "label2id": {name: i for i, name in id2label.items()},
            "problem_type": self.name,
        }

    def in_target_units(self, values: np.ndarray, target_scaling: dict | None) -> np.ndarray:
        """Labels or scores in the targets' own units (regression trained on standardised targets); else as given."""
        return values

    def evaluation_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> dict:
        """The training loss on evaluated rows, as metrics keys beside the problem type's own: the curve next to
        train_loss."""
        return {"loss": float(self.loss(logits, labels))}

    def tuned_thresholds(self, labels: np.ndarray, scores: np.ndarray) -> list[float] | None:
        """Each name's decision cut tuned on these (validation) rows, or None where decisions take no threshold."""
        return None

    def thresholds_record(self, label_names: list[str], thresholds: list[float]) -> dict:
        """thresholds.json: each name's tuned cut (only types that `uses_thresholds` write it)."""
        raise NotImplementedError(f"{self.name} decides without thresholds")

    def save_plots(self, metrics: dict, predictions: dict, label_names: list[str], folder) -> None:
        """Write `plots` into `folder`, from one split's metrics and its {"labels", "probs"} predictions."""
        raise NotImplementedError

    def transfer_metric(self, metric: str) -> str:
        """The metric the paired bootstrap compares a run with its baselines on, from eval.metric."""
        return metric

    def paired_bootstrap(self, metric: str, labels: np.ndarray, ours: tuple, theirs: tuple, seed: int) -> dict:
        """The paired-bootstrap CI of metric(ours) - metric(theirs) on `labels` (see `bootstrap_difference`); `ours`
        and `theirs` are each stage's (scores, thresholds), so each decides as its run folder would predict."""
        from hf_transfer.metrics.bootstrap import bootstrap_difference

        return bootstrap_difference(self.scalar_metric_fn(metric), labels, ours[0], theirs[0], seed=seed)

    def scalar_metric_fn(self, metric: str):
        """`f(y_true, scores) -> value` of one scalar metric, without the rest: what a bootstrap calls."""
        raise NotImplementedError

    def card_summary(self, label_names: list[str]) -> str:
        """The card's sentence on what the model predicts (markdown)."""
        raise NotImplementedError

    def card_decision_code(self, logits: str, thresholds: list[float] | None, indent: str = "") -> str:
        """The last line(s) of the card's code snippet: from the expression `logits` (one row) to what `predict`
        returns."""
        raise NotImplementedError

    def pipeline_code(self, model_args: str, example: str, label_names: list[str], thresholds) -> str:
        """The card's snippet through transformers' text-classification pipeline (loaded with `model_args`), printing
        for the Python literal `example` what `predict` gives."""
        return (
            f'classifier = pipeline("text-classification", {model_args}, top_k=None)\n'
            f'scores = {{r["label"]: r["score"] for r in classifier([{example}])[0]}}\n'
        )


PROBLEM_TYPE_CLASSES: Registry[type[ProblemType]] = Registry("problem_type")


@PROBLEM_TYPE_CLASSES.register(SINGLE_LABEL)
class SingleLabel(ProblemType):
    name = SINGLE_LABEL
    label_dtype = torch.long

    prediction_key = "label"
    card_metrics = ("accuracy", "f1_macro", "precision_macro", "recall_macro", "roc_auc")
    plots = (("Confusion matrix", "confusion_matrix.png"),)
    forgetting_metrics = ("accuracy", "f1_macro")
    name_word = "class"
    rank_measured = "kNN / linear accuracy"
    one_label_per_row = True

    def evaluation_loss(self, logits, labels):
        return {}  # the metrics' log_loss is this loss already

    def save_plots(self, metrics, predictions, label_names, folder):
        from hf_transfer.metrics.plots import save_confusion_matrix_plot

        save_confusion_matrix_plot(metrics["confusion_matrix"], label_names, Path(folder) / self.plots[0][1])

    def transfer_metric(self, metric):
        """eval.metric where the count-based bootstrap has it, else accuracy."""
        from hf_transfer.metrics.bootstrap import BOOTSTRAP_METRICS

        return metric if metric in BOOTSTRAP_METRICS else "accuracy"

    def paired_bootstrap(self, metric, labels, ours, theirs, seed):
        """On the argmax predictions, through the count-based bootstrap (`bootstrap_metric_difference`)."""
        from hf_transfer.metrics.bootstrap import bootstrap_metric_difference

        return bootstrap_metric_difference(labels, ours[0].argmax(1), theirs[0].argmax(1), metric=metric, seed=seed)

    def card_summary(self, label_names):
        names = ", ".join(f"`{name}` ({i})" for i, name in enumerate(label_names))
        return f"It predicts one of {len(label_names)} labels (class id in brackets): {names}."

    def card_decision_code(self, logits, thresholds, indent=""):
        return f"{indent}print(labels[{logits}.argmax(-1).item()])"

    def pipeline_code(self, model_args, example, label_names, thresholds):
        return f'classifier = pipeline("text-classification", {model_args})\nprint(classifier({example})[0]["label"])'

    def loss(self, logits, labels, class_weights=None):
        return F.cross_entropy(logits, labels, weight=class_weights)

    def scores(self, logits):
        return torch.softmax(logits, dim=-1)

    def metrics(self, y_true, scores, names, thresholds=None):
        from hf_transfer.metrics.classification import classification_metrics

        return classification_metrics(y_true, scores, names)

    def class_weights(self, labels, num_names):
        weights = self.train.class_weights
        if weights is None:
            return None
        if weights == "auto":
            counts = np.bincount(np.asarray(labels), minlength=num_names).astype(np.float64)
            return torch.tensor(len(labels) / (num_names * np.maximum(counts, 1.0)), dtype=torch.float32)
        if len(weights) != num_names:
            raise RecipeError(f"train.class_weights has {len(weights)} weights for {num_names} classes.")
        return torch.tensor(weights, dtype=torch.float32)

    def predictions(self, scores, names, thresholds=None):
        out = []
        for row in scores:
            best = int(row.argmax())
            out.append(
                {
                    "label": names[best],
                    "score": float(row[best]),
                    "probabilities": {name: float(p) for name, p in zip(names, row)},
                }
            )
        return out


@PROBLEM_TYPE_CLASSES.register(MULTI_LABEL)
class MultiLabel(ProblemType):
    """Independent yes/no per label: BCE-with-logits, sigmoid scores, a threshold per label."""

    name = MULTI_LABEL
    label_dtype = torch.float32

    prediction_key = "labels"
    card_metrics = ("f1_micro", "f1_macro", "f1_samples", "subset_accuracy", "map_macro")
    plots = (("Per-label F1 and support", "per_label.png"),)
    forgetting_metrics = ("f1_macro", "map_macro")
    name_word = "label"
    rank_measured = "kNN / ridge macro mAP"
    uses_thresholds = True
    # The metrics that rank scores as they are, without cutting them at a threshold.
    threshold_free_metrics = ("map_macro", "roc_auc_macro")

    def tuned_thresholds(self, labels, scores):
        """The F1-maximising cut of each label (`tune_thresholds`; a label without positive or without negative rows
        keeps the default)."""
        from hf_transfer.metrics.multilabel import tune_thresholds

        return [float(t) for t in tune_thresholds(labels, scores)]

    def thresholds_record(self, label_names, thresholds):
        return {
            "default": DEFAULT_THRESHOLD,
            "tuned_on": "validation",
            "thresholds": {name: float(t) for name, t in zip(label_names, thresholds)},
        }

    def save_plots(self, metrics, predictions, label_names, folder):
        from hf_transfer.metrics.plots import save_multilabel_plot

        save_multilabel_plot(metrics, Path(folder) / self.plots[0][1])

    def paired_bootstrap(self, metric, labels, ours, theirs, seed):
        """Each stage decides at its own cuts (the metric then cuts those 0/1 at 0.5), unless the metric ranks the
        scores themselves."""
        if metric not in self.threshold_free_metrics:
            ours = ((ours[0] >= np.asarray(ours[1])).astype(np.float64), ours[1])
            theirs = ((theirs[0] >= np.asarray(theirs[1])).astype(np.float64), theirs[1])
        return super().paired_bootstrap(metric, labels, ours, theirs, seed)

    def scalar_metric_fn(self, metric):
        from hf_transfer.metrics.multilabel import multilabel_metric_fn

        return multilabel_metric_fn(metric)

    def card_summary(self, label_names):
        names = ", ".join(f"`{name}`" for name in label_names)
        return (
            f"It predicts any of {len(label_names)} labels at once (each label's own threshold on its sigmoid "
            f"score): {names}."
        )

    def card_decision_code(self, logits, thresholds, indent=""):
        return (
            f"{indent}thresholds = {json.dumps([round(t, 6) for t in thresholds or []])}  # tuned on validation\n"
            f"{indent}scores = {logits}.sigmoid()[0].tolist()\n"
            f"{indent}print([n for n, s, t in zip(labels, scores, thresholds) if s >= t])"
        )

    def pipeline_code(self, model_args, example, label_names, thresholds):
        """The config's problem_type makes the pipeline apply a sigmoid per label."""
        cuts = {name: round(t, 6) for name, t in zip(label_names, thresholds or [])}
        return super().pipeline_code(model_args, example, label_names, thresholds) + (
            f"thresholds = {json.dumps(cuts)}  # tuned on validation\n"
            "print([n for n in thresholds if scores[n] >= thresholds[n]])"
        )

    def loss(self, logits, labels, class_weights=None):
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), pos_weight=class_weights)

    def scores(self, logits):
        return torch.sigmoid(logits)

    def metrics(self, y_true, scores, names, thresholds=None):
        from hf_transfer.metrics.multilabel import multilabel_metrics

        return multilabel_metrics(y_true, scores, names, DEFAULT_THRESHOLD if thresholds is None else thresholds)

    def class_weights(self, labels, num_names):
        """BCE's pos_weight: with auto, negatives / positives of each label in train (clipped to
        `POS_WEIGHT_RANGE`), so that a rare label's few positives count as much as its many negatives."""
        weights = self.train.class_weights
        if weights is None:
            return None
        if weights == "auto":
            return pos_weight_of(labels)
        if len(weights) != num_names:
            raise RecipeError(
                f"train.class_weights has {len(weights)} weights for {num_names} labels; give one pos_weight per "
                "label, or auto."
            )
        return torch.tensor(weights, dtype=torch.float32)

    def predictions(self, scores, names, thresholds=None):
        cuts = thresholds_per_label(thresholds, len(names))
        return [
            {
                "labels": [name for name, p, t in zip(names, row, cuts) if p >= t],
                "scores": {name: float(p) for name, p in zip(names, row)},
            }
            for row in scores
        ]


@PROBLEM_TYPE_CLASSES.register(REGRESSION)
class Regression(ProblemType):
    """One value per target: MSE or Huber on the (optionally standardised) targets, identity scores."""

    name = REGRESSION
    label_dtype = torch.float32

    prediction_key = "values"
    card_metrics = ("rmse", "mae", "r2", "pearson", "spearman")
    plots = (("Predicted against true values", "predictions.png"), ("Residuals", "residuals.png"))
    forgetting_metrics = ("rmse", "r2")
    name_word = "target"
    rank_measured = "kNN -RMSE in standard deviations / ridge R²"

    def in_target_units(self, values, target_scaling):
        return unscaled(values, target_scaling)

    def save_plots(self, metrics, predictions, label_names, folder):
        from hf_transfer.metrics.plots import save_regression_plots

        paths = [Path(folder) / file for _, file in self.plots]
        save_regression_plots(predictions["labels"], predictions["probs"], label_names, *paths)

    def scalar_metric_fn(self, metric):
        from hf_transfer.metrics.regression import regression_metric_fn

        return regression_metric_fn(metric)

    def card_summary(self, label_names):
        names = ", ".join(f"`{name}`" for name in label_names)
        return f"It predicts {len(label_names)} value(s): {names}."

    def card_decision_code(self, logits, thresholds, indent=""):
        return f"{indent}print(dict(zip(labels, {logits}[0].tolist())))"

    def pipeline_code(self, model_args, example, label_names, thresholds):
        """The config's problem_type makes the pipeline return each target's raw value."""
        return super().pipeline_code(model_args, example, label_names, thresholds) + "print(scores)"

    def loss(self, logits, labels, class_weights=None):
        labels = labels.to(logits.dtype).reshape(logits.shape)
        if self.train.regression_loss == "huber":
            return F.huber_loss(logits, labels, delta=self.train.huber_delta)
        return F.mse_loss(logits, labels)

    def scores(self, logits):
        return logits

    def metrics(self, y_true, scores, names, thresholds=None):
        from hf_transfer.metrics.regression import regression_metrics

        return regression_metrics(y_true, scores, names)

    def predictions(self, scores, names, thresholds=None):
        return [{"values": {name: float(v) for name, v in zip(names, row)}} for row in scores]


def build_problem_type(name: str, train: TrainConfig | None = None) -> ProblemType:
    """The problem type a recipe names, with its loss settings from `train`."""
    return PROBLEM_TYPE_CLASSES.get(name, "problem_type")(train)


def default_problem_type(train: TrainConfig | None = None) -> ProblemType:
    """The problem type of a recipe that names none, and of run folders from before problem types: single-label."""
    return build_problem_type(SINGLE_LABEL, train)


def pos_weight_of(labels) -> torch.Tensor:
    """negatives / positives per label of a (rows, labels) 0/1 matrix, clipped to `POS_WEIGHT_RANGE`."""
    matrix = np.asarray(labels, dtype=np.float64)
    positives = matrix.sum(axis=0)
    negatives = len(matrix) - positives
    low, high = POS_WEIGHT_RANGE
    ratio = np.divide(negatives, positives, out=np.full_like(positives, high), where=positives > 0)
    return torch.tensor(np.clip(ratio, low, high), dtype=torch.float32)


def thresholds_per_label(thresholds, num_labels: int) -> list[float]:
    """One threshold per label from None (the default), one number, or a list of `num_labels`."""
    if thresholds is None:
        return [DEFAULT_THRESHOLD] * num_labels
    if isinstance(thresholds, (int, float)):
        return [float(thresholds)] * num_labels
    if len(thresholds) != num_labels:
        raise ValueError(f"{len(thresholds)} thresholds for {num_labels} labels")
    return [float(t) for t in thresholds]


def unscaled(values: np.ndarray, target_scaling: dict | None) -> np.ndarray:
    """Regression values in the targets' own units: standardised ones times the train std plus the train mean."""
    values = np.asarray(values, dtype=np.float64)
    if not target_scaling:
        return values
    mean = np.asarray(target_scaling["mean"], dtype=np.float64)
    std = np.asarray(target_scaling["std"], dtype=np.float64)
    return values.reshape(len(values), -1) * std + mean


def fold_target_scaling(model: nn.Module, target_scaling: dict, num_targets: int) -> bool:
    """Put the target scaling into the head: its last Linear (the one trainable Linear with one output per target)
    then gives values in the targets' units, `W std, b std + mean`, so the saved model predicts them with
    transformers, PEFT or timm alone. False (nothing changed) where no such single layer is found."""
    heads = [
        module
        for module in model.modules()
        if isinstance(module, nn.Linear) and module.out_features == num_targets and module.weight.requires_grad
    ]
    if len(heads) != 1 or heads[0].bias is None:
        return False
    head = heads[0]
    std = torch.as_tensor(target_scaling["std"], dtype=head.weight.dtype, device=head.weight.device)
    mean = torch.as_tensor(target_scaling["mean"], dtype=head.bias.dtype, device=head.bias.device)
    with torch.no_grad():
        head.weight.mul_(std[:, None])
        head.bias.mul_(std).add_(mean)
    return True


def labels_tensor(values: list, problem_type: str | None = None) -> torch.Tensor:
    """A batch of `labels`: class ids as int64; multi-hot rows and regression targets (lists) as float32."""
    if problem_type is not None:
        dtype = PROBLEM_TYPE_CLASSES.get(problem_type).label_dtype
    else:
        dtype = torch.float32 if values and isinstance(values[0], (list, tuple, np.ndarray)) else torch.long
    if dtype == torch.long:
        return torch.tensor([int(v) for v in values], dtype=torch.long)
    return torch.tensor(np.asarray(values, dtype=np.float32))
