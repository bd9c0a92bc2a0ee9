"""What every transfer strategy provides: which parameters train, how the model is wrapped, what is saved.

A strategy never brings its own loop: it returns a `TrainingPlan` for `hf_transfer.train.loop.TrainingLoop`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from torch import nn

if TYPE_CHECKING:  # annotations only: `rank` counts parameters without importing the training loop
    from accelerate import Accelerator

    from hf_transfer.backbones import Backbone
    from hf_transfer.config.recipe import Recipe
    from hf_transfer.data.splits import Splits
    from hf_transfer.problems import ProblemType
    from hf_transfer.train.plan import TrainingPlan


class Strategy(ABC):
    name: ClassVar[str]
    config_class: ClassVar[type]
    # Whether the trained model is the backbone's own classifier (with a new head for the user's labels), whose
    # classes the run folder's preprocessing config records; a linear probe trains a separate head instead.
    trains_backbone_classifier: ClassVar[bool] = True

    def __init__(self, config, backbone: Backbone):
        self.config = config
        self.backbone = backbone

    @abstractmethod
    def plan(self, splits: Splits, recipe: Recipe, accelerator: Accelerator) -> TrainingPlan:
        """The model to train, its parameter groups and the datasets the loop iterates."""

    @abstractmethod
    def save(self, model: nn.Module, out_dir: Path) -> list[str]:
        """Write the trained weights (safetensors) into out_dir; returns the file names written."""

    @abstractmethod
    def load(self, run_dir: Path, label_names: list[str], problem: ProblemType | None = None) -> nn.Module:
        """The trained classifier from a run folder, in eval mode; forward(**inputs) gives logits. `problem`: the
        run's problem type, for a head whose library config records it."""

    def inference_model(self, trained: nn.Module) -> nn.Module:
        """The model that predicts on raw inputs, from the one the loop trained (identity for most strategies)."""
        return trained

    def metadata(self) -> dict:
        """Extra facts a run folder records to load this strategy back (e.g. the probe's pooling)."""
        return {}


def count_parameters(model: nn.Module) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable}
