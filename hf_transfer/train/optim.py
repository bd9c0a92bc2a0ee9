"""Optimizers and learning-rate schedules, by the names recipes use (`train.optimizer`, `train.scheduler`), and
the parameter groups strategies hand the loop."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from transformers import get_scheduler

from hf_transfer.config.sections import TrainConfig
from hf_transfer.core.errors import RecipeError
from hf_transfer.core.registry import Registry

OPTIMIZERS: Registry[Callable] = Registry("optimizer")
SCHEDULERS: Registry[str] = Registry("scheduler")


@OPTIMIZERS.register("adamw")
def build_adamw(
    param_groups: list[dict], cfg: TrainConfig, device: torch.device | None = None
) -> torch.optim.Optimizer:
    """AdamW, fused on CUDA and CPU: one kernel for every parameter instead of several per tensor (on CPU torch's
    default is a Python loop over the tensors, which made a full MiniLM fine-tune 16% slower than the Trainer's
    fused default, benchmarks/RESULTS.md). `device` is where the parameters train: the loop builds the optimizer
    before Accelerate moves the model there."""
    fused = device is not None and torch.device(device).type in ("cuda", "cpu")
    return torch.optim.AdamW(
        param_groups, lr=cfg.learning_rate, weight_decay=cfg.weight_decay, fused=True if fused else None
    )


@OPTIMIZERS.register("sgd")
def build_sgd(param_groups: list[dict], cfg: TrainConfig, device: torch.device | None = None) -> torch.optim.Optimizer:
    return torch.optim.SGD(param_groups, lr=cfg.learning_rate, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


# transformers' schedule names, by the names recipes use
SCHEDULERS.register("linear")("linear")
SCHEDULERS.register("cosine")("cosine")
SCHEDULERS.register("constant")("constant_with_warmup")


def param_groups_with_decay(
    model: nn.Module, weight_decay: float, lr_scale_of: Callable[[str], float] | None = None
) -> list[dict]:
    """Trainable parameters grouped by (lr scale, decay): no weight decay on biases and norm weights."""
    groups: dict[tuple[float, bool], list] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        scale = lr_scale_of(name) if lr_scale_of else 1.0
        decay = param.ndim > 1
        groups.setdefault((scale, decay), []).append(param)
    if not groups:
        raise RecipeError("the strategy left no parameter to train; check strategy.unfreeze_last_n.")
    return [
        {"params": params, "weight_decay": weight_decay if decay else 0.0, "lr_scale": scale}
        for (scale, decay), params in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1]))
    ]


def build_optimizer_and_scheduler(
    param_groups: list[dict], cfg: TrainConfig, device: torch.device, batches_per_epoch: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """The recipe's optimizer over `param_groups` (each at train.learning_rate times its lr_scale) and its schedule,
    warmed up over train.warmup_ratio of the run's optimizer steps."""
    for group in param_groups:
        group["lr"] = cfg.learning_rate * group.get("lr_scale", 1.0)
    optimizer = OPTIMIZERS.get(cfg.optimizer, "train.optimizer")(param_groups, cfg, device)
    total_steps = math.ceil(batches_per_epoch / cfg.gradient_accumulation_steps) * cfg.epochs
    scheduler = get_scheduler(
        SCHEDULERS.get(cfg.scheduler, "train.scheduler"),
        optimizer,
        num_warmup_steps=int(cfg.warmup_ratio * total_steps),
        num_training_steps=total_steps,
    )
    return optimizer, scheduler


def base_learning_rate(optimizer: torch.optim.Optimizer) -> float:
    """train.learning_rate as the schedule stands now; parameter groups with an lr_scale train at a multiple."""
    group = optimizer.param_groups[0]
    return group["lr"] / group.get("lr_scale", 1.0)
