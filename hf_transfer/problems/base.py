"""The three problem types of a recipe's `problem_type`, as transformers names them in a model config.

Each is one small class with what differs between them: the head's size, the loss, how logits become scores, the
default selection metric and the metrics themselves, and what a prediction looks like. The loop, the strategies
and `predict` ask the problem type and never branch on its name. Single-label classification is exactly what
hf-transfer always did (cross-entropy, softmax, `classification_metrics`).
"""

from __future__ import annotations

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


PROBLEM_TYPE_CLASSES: Registry[type[ProblemType]] = Registry("problem_type")


@PROBLEM_TYPE_CLASSES.register(SINGLE_LABEL)
class SingleLabel(ProblemType):
    name = SINGLE_LABEL
    label_dtype = torch.long

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
