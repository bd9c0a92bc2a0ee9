"""Evaluation: loaders that read a split in length order and hand results back in row order, and the metrics of
the problem type over a whole split, gathered across processes."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader, default_collate
from tqdm.auto import tqdm

from hf_transfer.problems import default_problem_type
from hf_transfer.problems.base import ProblemType
from hf_transfer.train.loading import read_rows

if TYPE_CHECKING:
    from hf_transfer.config.sections import TrainConfig


def logits_of(output) -> torch.Tensor:
    return output.logits if hasattr(output, "logits") else output


ROW_INDEX = "row_index"  # travels with evaluation batches so predictions come back in dataset order


class _Indexed(torch.utils.data.Dataset):
    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        return i, self.dataset[i]

    def __getitems__(self, rows: list[int]) -> list:
        return list(zip(rows, read_rows(self.dataset, rows)))


def _collate_with_index(collate_fn: Callable | None) -> Callable:
    collate_fn = collate_fn or default_collate

    def collate(items):
        batch = collate_fn([row for _, row in items])
        batch[ROW_INDEX] = torch.tensor([i for i, _ in items])
        return batch

    return collate


def build_eval_loader(
    dataset,
    lengths,
    batch_size: int,
    collate_fn,
    num_workers: int,
    *,
    pin_memory: bool = False,
    persistent_workers: bool = False,
) -> DataLoader:
    # Sorting by length pads least; each batch carries its row indices, so the order of results is restored.
    order = sorted(range(len(dataset)), key=lambda i: lengths[i]) if lengths else None
    return DataLoader(
        _Indexed(dataset),
        batch_size=batch_size,
        sampler=order,
        collate_fn=_collate_with_index(collate_fn),
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=persistent_workers and num_workers > 0,
        generator=torch.Generator(),  # keeps torch's global RNG (dropout) untouched by evaluation
    )


@torch.no_grad()
def evaluate(
    model,
    loader,
    accelerator: Accelerator,
    label_names: list[str],
    desc: str = "Evaluating",
    problem: ProblemType | None = None,
    target_scaling: dict | None = None,
    thresholds: list[float] | None = None,
    train: TrainConfig | None = None,
) -> tuple:
    """(metrics, labels, scores) over the whole loader, gathered across processes, in the dataset's row order.

    Scores are the problem type's (softmax, sigmoid per label, or the regression values); regression labels and
    values are put back in the targets' units (`target_scaling`) before the metrics, so an rmse is in those units.
    `train` holds the loss settings of the evaluation loss (the loss of problem types other than single-label).
    """
    problem = problem or default_problem_type()
    logits, labels = evaluation_logits(model, loader, accelerator, desc)
    scores = problem.scores(logits).numpy()
    labels_np = labels.numpy()
    scores = problem.in_target_units(scores, target_scaling)
    labels_np = problem.in_target_units(labels_np, target_scaling)
    metrics = problem.metrics(labels_np, scores, label_names, thresholds)
    if problem.evaluation_loss:
        # the training loss on these rows (log_loss is single-label's): the curve beside train_loss
        metrics["loss"] = float(problem.loss(logits, labels, train=train))
    return metrics, labels_np, scores


@torch.no_grad()
def evaluation_logits(model, loader, accelerator: Accelerator, desc: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, labels) over the whole loader on the CPU, gathered across processes, in the dataset's row order."""
    model.eval()
    all_logits, all_labels, all_rows = [], [], []
    for batch in tqdm(loader, desc=desc, leave=False, disable=not accelerator.is_local_main_process):
        labels = batch.pop("labels")
        rows = batch.pop(ROW_INDEX)
        logits = logits_of(model(**batch)).float()
        logits, labels, rows = accelerator.gather_for_metrics((logits, labels, rows))
        all_logits.append(logits.cpu())
        all_labels.append(labels.cpu())
        all_rows.append(rows.cpu())
    order = torch.cat(all_rows).argsort()
    return torch.cat(all_logits)[order], torch.cat(all_labels)[order]


def scalar_metrics(metrics: dict) -> dict[str, float]:
    """The single-number metrics of `classification_metrics` (no counts, per-class tables or notes)."""
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and k != "num_samples"}
