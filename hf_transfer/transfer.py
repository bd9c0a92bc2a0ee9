"""Source -> target transfer: carry a source stage's weights over, and measure what the target stage forgot."""

from __future__ import annotations

import copy
import logging

import torch
from accelerate import Accelerator
from peft import PeftModel
from torch import nn

from hf_transfer.train import build_eval_loader, evaluate

logger = logging.getLogger(__name__)


def merged(model: nn.Module) -> nn.Module:
    """The plain network behind a PEFT model (adapters merged into a copy), or the model itself."""
    if isinstance(model, PeftModel):
        return copy.deepcopy(model).merge_and_unload()
    return model


def forgetting_metrics(source, target, accelerator: Accelerator) -> dict | None:
    """The source task's validation metrics with the target stage's backbone under the source head.

    The source classifier is rebuilt from the source stage and every non-head tensor whose name and shape match is
    taken from the (merged) target model. Frozen-backbone targets (a linear probe) forget nothing by construction:
    None is returned and the card says so.
    """
    if target.strategy.name == "linear_probe":
        return None
    source_model = copy.deepcopy(merged(source.trained_model(accelerator)))
    target_model = merged(target.trained_model(accelerator))
    heads = tuple(source.backbone.head_module_names(source_model))
    target_state = target_model.state_dict()
    state = source_model.state_dict()
    carried = 0
    for name, tensor in state.items():
        if any(name == h or name.startswith(h + ".") or f".{h}." in name for h in heads):
            continue
        if name in target_state and target_state[name].shape == tensor.shape:
            state[name] = target_state[name]
            carried += 1
    source_model.load_state_dict(state)
    logger.debug("forgetting: %d tensors carried from the target model", carried)
    plan = source.plan
    loader = build_eval_loader(
        plan.evals["validation"],
        plan.eval_lengths.get("validation"),
        source.recipe.train.batch_size * 2,
        plan.collate_fn,
        0,
    )
    source_model = source_model.to(accelerator.device)
    loader = accelerator.prepare(loader)
    with torch.no_grad():
        metrics, _, _ = evaluate(
            source_model, loader, accelerator, source.splits.label_names, desc="Source after transfer"
        )
    return metrics
