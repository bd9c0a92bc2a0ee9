"""Parameter-efficient transfer through PEFT: LoRA (and DoRA) or IA3 adapters, with the new head trained and saved."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from peft import IA3Config, LoraConfig, PeftModel, get_peft_model

from hf_transfer.config.strategies import IA3StrategyConfig, LoraStrategyConfig
from hf_transfer.core.errors import RecipeError
from hf_transfer.problems import ProblemType, problem_type
from hf_transfer.strategies.base import Strategy
from hf_transfer.strategies.finetune import plan_for_model
from hf_transfer.train.optim import param_groups_with_decay
from hf_transfer.train.plan import TrainingPlan


@contextmanager
def _peft_wrapping() -> Iterator[None]:
    """Around PEFT wrapping a transformers model: PeftModel.__init__ (PEFT <= 0.21.2, peft_model.py) reads
    `model.is_gradient_checkpointing`, which transformers 5 deprecated for `is_activation_checkpointing`, so every
    LoRA run, eval and predict printed transformers' FutureWarning about a call none of our code makes. Only that
    message, only while PEFT builds the wrapper, is ignored; every other warning still shows."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


def adaptable_module_names(model, heads: list[str]) -> list[str]:
    """The distinct last names of the Linear and convolution layers outside the head: what `target_modules` may
    name (PEFT matches a name against the end of each module's dotted path)."""
    from torch import nn

    names: list[str] = []
    for name, module in model.named_modules():
        if any(name == h or name.startswith(h + ".") for h in heads):
            continue
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            leaf = name.rsplit(".", 1)[-1]
            if leaf not in names:
                names.append(leaf)
    return names


def within_towers(model, names: list[str], towers: str, backbone, what: str = "strategy.target_modules") -> list[str]:
    """`names` (PEFT target names: whole module names or dotted suffixes) narrowed to the modules of one tower of a
    multimodal model (`strategy.towers`), as whole names; `names` as they are for `both`."""
    if towers == "both" or not names:
        return names
    if not backbone.modality.towers:
        raise RecipeError("strategy.towers is only for task multimodal-classification; leave it out (both).")
    prefix = towers + "."
    chosen = [
        module
        for module, _ in model.named_modules()
        if module.startswith(prefix) and any(module == n or module.endswith("." + n) for n in names)
    ]
    if not chosen:
        raise RecipeError(
            f"{what} ({', '.join(names)}) match no module of the {towers} tower; name modules of that tower "
            "or set strategy.towers to both."
        )
    return chosen


class _PeftStrategy(Strategy):
    def peft_config(self, model):
        raise NotImplementedError

    def plan(self, splits, recipe, accelerator) -> TrainingPlan:
        model = self.backbone.build_classifier(splits.label_names, problem_type(splits.problem_type))
        config = self.peft_config(model)
        self._check_targets(model, config.target_modules)
        try:
            with _peft_wrapping():
                model = get_peft_model(model, config)
        except ValueError as err:
            raise RecipeError(f"strategy.target_modules: {str(err).splitlines()[0]}") from None
        # PEFT records the folder the base came from; record the id the run folder loads it back by instead.
        # (Two towers have no one base to name: the run folder records each tower's.)
        towers = self.backbone.modality.towers
        config.base_model_name_or_path = None if towers else self.backbone.base_model_id or self.backbone.checkpoint
        return plan_for_model(
            model, self.backbone, splits, recipe, param_groups_with_decay(model, recipe.train.weight_decay)
        )

    def _check_targets(self, model, targets) -> None:
        """A one-line error naming the module names there are when the targets name none of the model's (PEFT
        matches each name against the end of every module's dotted path)."""
        if not targets or isinstance(targets, str):  # a regular expression: PEFT's own check
            return
        modules = [name for name, _ in model.named_modules() if name]
        if any(name == t or name.endswith("." + t) for t in targets for name in modules):
            return
        names = adaptable_module_names(model, self.backbone.head_module_names(model))
        raise RecipeError(
            f"strategy.target_modules {sorted(targets)} match no module of '{self.backbone.checkpoint}'; its "
            f"adaptable modules are named {', '.join(names)}."
        )

    def save(self, model, out_dir: Path) -> list[str]:
        model.save_pretrained(out_dir)
        return ["adapter_config.json", "adapter_model.safetensors"]

    def load(self, run_dir: Path, label_names: list[str], problem: ProblemType | None = None):
        base = self.backbone.build_classifier(label_names, problem)
        with _peft_wrapping():
            return PeftModel.from_pretrained(base, str(run_dir)).eval()


class Lora(_PeftStrategy):
    name = "lora"
    config_class = LoraStrategyConfig

    def peft_config(self, model):
        c = self.config
        return LoraConfig(
            r=c.r,
            lora_alpha=c.alpha,
            lora_dropout=c.dropout,
            target_modules=within_towers(
                model, c.target_modules or self.backbone.default_lora_targets(model), c.towers, self.backbone
            ),
            modules_to_save=self.backbone.head_module_names(model),
            use_dora=c.use_dora,
            bias="none",
            task_type=self.backbone.peft_task_type,
        )


class IA3(_PeftStrategy):
    name = "ia3"
    config_class = IA3StrategyConfig

    def peft_config(self, model):
        c = self.config
        targets = c.target_modules or self.backbone.default_ia3_targets(model)
        modules = targets["target_modules"] if isinstance(targets, dict) else targets
        feedforward = c.feedforward_modules or (targets["feedforward_modules"] if isinstance(targets, dict) else [])
        if c.towers != "both":
            modules = within_towers(model, modules, c.towers, self.backbone)
            feedforward = [m for m in modules if any(m == f or m.endswith("." + f) for f in feedforward)]
        return IA3Config(
            target_modules=modules,
            feedforward_modules=feedforward,
            modules_to_save=self.backbone.head_module_names(model),
            task_type=self.backbone.peft_task_type,
        )
