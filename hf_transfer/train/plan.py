"""What passes through the training loop: the plan a strategy hands it, the state it carries from step to step
(and into every checkpoint, so a resumed run carries on exactly), the result it hands back, and the hooks that
scripts and tests attach to it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields

import torch
from torch import nn


@dataclass
class TrainingPlan:
    """What a strategy hands the loop."""

    model: nn.Module  # forward(**inputs) -> logits (or an output with .logits)
    param_groups: list[dict]  # torch optimizer groups; an "lr_scale" key multiplies the base learning rate
    train: torch.utils.data.Dataset
    evals: dict[str, torch.utils.data.Dataset]  # "validation" (model selection) and maybe "test"
    collate_fn: Callable | None = None
    train_lengths: list[int] | None = None
    eval_lengths: dict[str, list[int]] = field(default_factory=dict)
    train_labels: list | None = None  # class ids, multi-hot rows or targets, as the splits' `labels` hold them


@dataclass
class LoopState:
    """Where the loop stands. A checkpoint's trainer_state.json holds it, so a resumed run carries on exactly."""

    epoch: int = 0  # epochs finished
    step_in_epoch: int = 0  # optimizer steps taken in the epoch under way
    global_step: int = 0
    history: list[dict] = field(default_factory=list)  # one record per finished epoch
    best_value: float | None = None
    best_epoch: int = 0
    bad_epochs: int = 0  # evaluations since the best one, for early stopping
    stopped_early: bool = False
    train_seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> LoopState:
        # Checkpoints of earlier versions lack train_seconds until their first epoch ended: the default fills it.
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class LoopResult:
    history: list[dict]
    best_epoch: int
    best_value: float | None
    final: dict[str, dict]  # split -> metrics of the best checkpoint
    stopped_early: bool
    global_step: int
    # split -> {"labels", "probs"} (numpy): probs are the problem type's scores (sigmoid per label, or the
    # regression values, labels and values both in the targets' own units)
    predictions: dict[str, dict] = field(default_factory=dict)
    train_seconds: float = 0.0  # time in training steps only (no evaluation, loading or extraction)
    thresholds: list[float] | None = None  # multi-label: the per-label cuts tuned on validation for the best epoch


class Callback:
    """Hooks for scripts and tests: called on the main process after every optimizer step and epoch.

    They receive numbers, not the `LoopState`: `hf_transfer.run(callbacks=...)` is public, and callbacks written
    against these signatures keep working."""

    def on_step_end(self, step: int, epoch: int) -> None: ...

    def on_epoch_end(self, epoch: int, record: dict) -> None: ...
