"""Feature-based transfer: the backbone stays frozen, its features are extracted once, a new head learns on them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from safetensors.torch import load_file, save_file

from hf_transfer.backbones import FeatureHead, ProbeClassifier
from hf_transfer.errors import RecipeError
from hf_transfer.features import extract_features
from hf_transfer.strategies.base import Strategy
from hf_transfer.train import TrainingPlan, param_groups_with_decay

HEAD_FILE = "head.safetensors"


@dataclass
class LinearProbeConfig:
    """Args:
    pooling: how token/patch features become one vector: `mean` (sentence-transformers checkpoints such as
        MiniLM have no trained pooler and want it) or `cls` (the first token; for timm, the model's own pooling).
    head: `linear`, or `mlp` (one hidden layer of `hidden_size`).
    """

    pooling: Literal["mean", "cls"] = field(default="mean", metadata={"help": "mean or cls pooling of features."})
    head: Literal["linear", "mlp"] = field(default="linear", metadata={"help": "linear or mlp head."})
    hidden_size: int = field(default=256, metadata={"help": "Hidden units of the mlp head."})
    dropout: float = field(default=0.0, metadata={"help": "Dropout before the head's layers."})
    extract_batch_size: int = field(default=64, metadata={"help": "Batch size of the one feature-extraction pass."})

    def __post_init__(self):
        if not 0.0 <= self.dropout < 1.0:
            raise RecipeError("strategy.dropout must be in [0, 1).")
        if self.hidden_size < 1:
            raise RecipeError("strategy.hidden_size must be at least 1.")


class LinearProbe(Strategy):
    name = "linear_probe"
    config_class = LinearProbeConfig

    def _head(self, in_features: int, num_labels: int) -> FeatureHead:
        hidden = self.config.hidden_size if self.config.head == "mlp" else None
        return FeatureHead(in_features, num_labels, hidden=hidden, dropout=self.config.dropout)

    def plan(self, splits, recipe, accelerator) -> TrainingPlan:
        self.extractor = self.backbone.build_feature_extractor(self.config.pooling)
        features = {
            name: extract_features(
                self.extractor,
                split,
                self.backbone,
                accelerator,
                self.config.pooling,
                self.config.extract_batch_size,
                name,
            )
            for name, split in splits.items()
        }
        train = features.pop("train")
        head = self._head(train.features.shape[1], len(splits.label_names))
        head.fit_scaler(train.features)
        return TrainingPlan(
            model=head,
            param_groups=param_groups_with_decay(head, recipe.train.weight_decay),
            train=train,
            evals=features,
            train_labels=train.labels.tolist(),
        )

    def inference_model(self, trained):
        return ProbeClassifier(self.extractor, trained)

    def metadata(self) -> dict:
        return {"pooling": self.config.pooling}

    def save(self, model, out_dir: Path) -> list[str]:
        head = model.head if isinstance(model, ProbeClassifier) else model
        save_file(
            {k: v.contiguous() for k, v in head.state_dict().items()},
            str(out_dir / HEAD_FILE),
            metadata={k: str(v) for k, v in head.config.items()},
        )
        return [HEAD_FILE]

    def load(self, run_dir: Path, label_names: list[str]):
        state = load_file(str(Path(run_dir) / HEAD_FILE))
        extractor = self.backbone.build_feature_extractor(self.config.pooling)
        first = state["net.1.weight"]
        head = self._head(first.shape[1], len(label_names))
        head.load_state_dict(state)
        return ProbeClassifier(extractor, head).eval()
