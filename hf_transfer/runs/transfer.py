"""Source -> target transfer: carry a source stage's weights over, and measure what the target stage forgot."""

from __future__ import annotations

import copy
import logging

import torch
from accelerate import Accelerator
from peft import PeftModel
from torch import nn

from hf_transfer.metrics.scalars import greater_is_better
from hf_transfer.problems import ProblemType
from hf_transfer.train.evaluation import build_eval_loader, evaluate

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
        # scored as the source stage scored itself: its problem type, target units and tuned thresholds
        metrics, _, _ = evaluate(
            source_model,
            loader,
            accelerator,
            source.splits.label_names,
            desc="Source after transfer",
            problem=source.problem,
            target_scaling=source.splits.target_scaling,
            thresholds=source.result.thresholds,
            train=source.recipe.train,
        )
    return metrics


def forgetting_report(problem: ProblemType, before: dict, after: dict | None) -> dict:
    """The source metrics before and after the target stage, and how much was forgotten: the loss on each metric,
    positive when the source task got worse whichever way the metric points (an rmse that grew is forgotten)."""
    keys = problem.source_report_metrics
    forgotten = None
    if after is not None:
        forgotten = {}
        for key in keys:
            if before.get(key) is None or after.get(key) is None:
                forgotten[key] = None
            else:
                sign = 1.0 if greater_is_better(key) else -1.0
                forgotten[key] = sign * (before[key] - after[key])
    return {
        "problem_type": problem.name,
        "metrics": list(keys),
        "before": {k: before.get(k) for k in keys},
        "after": {k: after.get(k) for k in keys} if after is not None else None,
        "forgotten": forgotten,
    }
