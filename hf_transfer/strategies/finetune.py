"""Model-based transfer: fine-tune the whole network, or only its last N blocks, with optional layer-wise LR decay."""

from __future__ import annotations

from pathlib import Path

from hf_transfer.config.strategies import FinetuneConfig
from hf_transfer.core.errors import RecipeError
from hf_transfer.problems import ProblemType, problem_type
from hf_transfer.strategies.base import Strategy
from hf_transfer.train.optim import param_groups_with_decay
from hf_transfer.train.plan import TrainingPlan


def prepared_splits(backbone, splits) -> tuple[dict, dict]:
    """Each split prepared for the model (train with augmentation), and its lengths for batching."""
    prepared = {name: backbone.prepare(split, train=(name == "train")) for name, split in splits.items()}
    lengths = {name: backbone.lengths(ds) for name, ds in prepared.items()}
    return prepared, lengths


def plan_for_model(model, backbone, splits, recipe, param_groups) -> TrainingPlan:
    prepared, lengths = prepared_splits(backbone, splits)
    train = prepared.pop("train")
    return TrainingPlan(
        model=model,
        param_groups=param_groups,
        train=train,
        evals=prepared,
        collate_fn=backbone.collate_fn(),
        train_lengths=lengths.pop("train"),
        eval_lengths=lengths,
        train_labels=list(splits.train["labels"]),
    )


class Finetune(Strategy):
    name = "finetune"
    config_class = FinetuneConfig

    def plan(self, splits, recipe, accelerator) -> TrainingPlan:
        model = self.backbone.build_classifier(splits.label_names, problem_type(splits.problem_type))
        groups = self.backbone.layer_groups(model)  # [stem, block 1..N, head]
        n_blocks = len(groups) - 2
        n = self.config.unfreeze_last_n
        if n is not None and n > n_blocks:
            raise RecipeError(f"strategy.unfreeze_last_n is {n} but the model has {n_blocks} blocks.")
        first_trained = 0 if n is None else len(groups) - 1 - n
        depth = {name: i for i, names in enumerate(groups) for name in names}
        for name, param in model.named_parameters():
            param.requires_grad_(depth.get(name, len(groups) - 1) >= first_trained)
        decay = self.config.layer_decay

        def lr_scale(name: str) -> float:
            if decay is None:
                return 1.0
            return decay ** (len(groups) - 1 - depth.get(name, len(groups) - 1))

        return plan_for_model(
            model, self.backbone, splits, recipe, param_groups_with_decay(model, recipe.train.weight_decay, lr_scale)
        )

    def save(self, model, out_dir: Path) -> list[str]:
        return self.backbone.save_classifier(model, out_dir)

    def load(self, run_dir: Path, label_names: list[str], problem: ProblemType | None = None):
        return self.backbone.load_classifier(run_dir, label_names).eval()
