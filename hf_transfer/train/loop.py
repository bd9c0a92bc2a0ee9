"""The one training loop, on Accelerate, for every strategy and both modalities.

A strategy hands the loop a `TrainingPlan` (which model, which parameters at which learning rate, which
datasets); the loop does the rest: sampling, mixed precision, accumulation, clipping, schedules, evaluation
every epoch, best-checkpoint keeping, early stopping, periodic checkpoints and resume, NaN detection.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import re
import shutil
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import SAFE_MODEL_NAME, DistributedType
from datasets import Dataset as HFDataset
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader, RandomSampler, Sampler, WeightedRandomSampler, default_collate
from tqdm.auto import tqdm
from transformers import get_scheduler
from transformers.trainer_pt_utils import LengthGroupedSampler

from hf_transfer.config.recipe import Recipe
from hf_transfer.config.sections import TrainConfig
from hf_transfer.core.accelerator import wants_channels_last
from hf_transfer.core.errors import RecipeError, TrainingDivergedError
from hf_transfer.core.files import atomic_write, write_json
from hf_transfer.core.registry import Registry
from hf_transfer.metrics.scalars import greater_is_better
from hf_transfer.problems.base import ProblemType, build_problem_type, default_problem_type

logger = logging.getLogger(__name__)

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
    """Hooks for scripts and tests: called on the main process after every optimizer step and epoch."""

    def on_step_end(self, step: int, epoch: int) -> None: ...

    def on_epoch_end(self, epoch: int, record: dict) -> None: ...


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


def logits_of(output) -> torch.Tensor:
    return output.logits if hasattr(output, "logits") else output


class EpochSampler(Sampler):
    """Draws each epoch's order from a generator seeded with seed + epoch, eagerly and privately, so the order
    depends on nothing that ran before: a resumed run sees the same batches as an uninterrupted one (and
    Accelerate's generator synchronisation has no shared generator to touch)."""

    def __init__(self, make_sampler: Callable[[torch.Generator], Iterable[int]], length: int, seed: int):
        self.make_sampler, self.length, self.seed, self.epoch = make_sampler, length, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(list(self.make_sampler(generator)))

    def __len__(self):
        return self.length


def build_train_sampler(plan: TrainingPlan, cfg: TrainConfig) -> EpochSampler:
    length = len(plan.train)
    if cfg.sampler == "balanced":
        labels = np.asarray(plan.train_labels)
        weights = (1.0 / np.bincount(labels)[labels]).tolist()

        def make(g):
            return WeightedRandomSampler(weights, num_samples=len(labels), replacement=True, generator=g)

    elif cfg.sampler == "undersample":
        # Each epoch: every row of the smallest class, and as many rows of each larger class, drawn afresh (without
        # replacement): over the epochs the larger classes show many of their rows, not one fixed cut of them.
        labels = np.asarray(plan.train_labels)
        rows_of = [torch.from_numpy(np.flatnonzero(labels == c)) for c in np.unique(labels)]
        per_class = min(len(rows) for rows in rows_of)
        length = per_class * len(rows_of)

        def make(g):
            drawn = torch.cat([rows[torch.randperm(len(rows), generator=g)[:per_class]] for rows in rows_of])
            return drawn[torch.randperm(len(drawn), generator=g)].tolist()

    elif cfg.group_by_length and plan.train_lengths is not None:

        def make(g):
            return LengthGroupedSampler(cfg.batch_size, lengths=plan.train_lengths, generator=g)

    else:

        def make(g):
            return RandomSampler(plan.train, generator=g)

    return EpochSampler(make, length, cfg.seed)


class EpochRows(Sampler):
    """The rows of `sampler` as (epoch, row) keys, read by `SeededRows`; `set_epoch` passes on to `sampler`."""

    def __init__(self, sampler: EpochSampler):
        self.sampler = sampler

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __iter__(self):
        epoch = self.sampler.epoch
        return ((epoch, i) for i in self.sampler)

    def __len__(self):
        return len(self.sampler)


def reads_draw_random(dataset) -> bool:
    """Whether reading a row of `dataset` may draw random numbers, i.e. an augmenting transform runs: a dataset says
    so by a `reads_draw_random` attribute (cached features: no); a `datasets.Dataset` does when a transform is set
    (`set_transform`, as images have), not when its rows are stored (tokenised text); any other may."""
    declared = getattr(dataset, "reads_draw_random", None)
    if declared is not None:
        return bool(declared)
    if isinstance(dataset, HFDataset):
        return dataset.format["type"] == "custom"
    return True


def read_rows(dataset, rows: list[int]) -> list:
    """`dataset`'s rows at `rows`, in one batched read where it offers one (`datasets`, cached features)."""
    getitems = getattr(dataset, "__getitems__", None)
    return getitems(rows) if getitems else [dataset[row] for row in rows]


class SeededRows(torch.utils.data.Dataset):
    """Training rows, each read under a random state seeded from (seed, epoch, row) and restored afterwards.

    Augmentation (timm's transforms draw from `random` and torch) then depends on the row and the epoch only: the
    same in the main process as in any worker, whichever worker reads the row, after a resume as in one run, and
    it leaves the main process's generators (dropout) as they were. Rows that draw nothing (cached features,
    tokenised text) are read as they are, a batch at a time: seeding each read cost ~0.5 ms a row, which made a
    linear probe's head train at 30 steps/s."""

    def __init__(self, dataset, seed: int):
        self.dataset, self.seed = dataset, seed
        self.seeded = reads_draw_random(dataset)

    def __len__(self):
        return len(self.dataset)

    def __getitems__(self, keys: list[tuple[int, int]]) -> list:
        if self.seeded:
            return [self[key] for key in keys]
        return read_rows(self.dataset, [row for _, row in keys])

    def __getitem__(self, key: tuple[int, int]):
        epoch, row = key
        if not self.seeded:
            return self.dataset[row]
        python_seed, numpy_seed = np.random.SeedSequence([self.seed, epoch, row]).generate_state(2)
        python_state, numpy_state = random.getstate(), np.random.get_state()
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(python_seed))
                random.seed(int(python_seed))
                np.random.seed(numpy_seed)
                return self.dataset[row]
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


def workers_can_start(dataset) -> bool:
    """Whether DataLoader worker processes can serve `dataset` here: the platform has process semaphores, and the
    dataset reaches the workers (inherited under fork; pickled under spawn and forkserver, where a transform
    defined inside a function cannot be)."""
    try:
        # Fails where the OS offers no process semaphores (AWS Lambda, some sandboxes).
        import multiprocessing.synchronize
    except ImportError:
        return False
    if multiprocessing.get_start_method(allow_none=True) in (None, "fork") and hasattr(os, "fork"):
        return True
    try:
        from multiprocessing.reduction import ForkingPickler

        ForkingPickler.dumps(dataset)
    except Exception:  # any pickling failure means the same: no workers
        return False
    return True


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def rows_on_a_device(dataset) -> bool:
    """Whether `dataset`'s rows are tensors on an accelerator already (nothing to load, pin or copy)."""
    if len(dataset) == 0:
        return False
    row = SeededRows(dataset, seed=0)[0, 0]  # an augmenting transform draws, but not from the run's generators
    values = row.values() if isinstance(row, dict) else row if isinstance(row, (list, tuple)) else [row]
    return any(isinstance(v, torch.Tensor) and v.device.type != "cpu" for v in values)


def resolve_num_workers(setting: int | str, modality: str, dataset) -> int:
    """`train.num_workers` as a number. auto: half the cores (at most 8) for images, whose decoding and
    augmentation would otherwise take turns with the model; 0 for text, already tokenised in memory, where workers
    add only their start-up; 0 where workers cannot start (see `workers_can_start`) or rows are on a GPU already
    (a forked worker cannot touch CUDA)."""
    if setting != "auto":
        return int(setting)
    if modality not in ("image", "multimodal") or rows_on_a_device(dataset):
        return 0
    workers = min(available_cores() // 2, 8)
    if workers and not workers_can_start(dataset):
        logger.info("train.num_workers auto: the data cannot reach worker processes here; loading in the main one")
        return 0
    return workers


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
) -> tuple:
    """(metrics, labels, scores) over the whole loader, gathered across processes, in the dataset's row order.

    Scores are the problem type's (softmax, sigmoid per label, or the regression values); regression labels and
    values are put back in the targets' units (`target_scaling`) before the metrics, so an rmse is in those units.
    """
    problem = problem or default_problem_type()
    logits, labels = evaluation_logits(model, loader, accelerator, desc)
    scores = problem.in_target_units(problem.scores(logits).numpy(), target_scaling)
    labels_np = problem.in_target_units(labels.numpy(), target_scaling)
    metrics = problem.metrics(labels_np, scores, label_names, thresholds)
    return metrics | problem.evaluation_loss(logits, labels), labels_np, scores


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


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """What training changes: trainable parameters and all buffers (e.g. BatchNorm statistics)."""
    state = {n: p.detach().cpu().clone().contiguous() for n, p in model.named_parameters() if p.requires_grad}
    state.update({f"buffer::{n}": b.detach().cpu().clone().contiguous() for n, b in model.named_buffers()})
    return state


def load_trainable_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    # A trainable parameter left out would keep its initial value without a word: resume would not be exact.
    missing = sorted(n for n, p in params.items() if p.requires_grad and n not in state)
    if missing:
        raise KeyError(f"the saved state has no value for {len(missing)} trainable parameters ({missing[0]}, ...)")
    with torch.no_grad():
        for name, value in state.items():
            if name.startswith("buffer::"):
                buffers[name.removeprefix("buffer::")].copy_(value)
            else:
                params[name].copy_(value)


def _is_trainable_state(model: nn.Module, state: dict) -> bool:
    params = dict(model.named_parameters())
    return all(k.startswith("buffer::") or (k in params and params[k].requires_grad) for k in state)


@contextmanager
def _checkpoints_of_what_trains(accelerator: Accelerator):
    """Within it, accelerate's save_state writes and load_state reads only `trainable_state` of each model, not the
    whole model (92 MB for MiniLM when a LoRA adapter of a few hundred KB trains): the frozen weights are the
    checkpoint's, rebuilt the same on resume. Sharded set-ups (FSDP, DeepSpeed, Megatron) keep their own format."""
    if accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED, DistributedType.MEGATRON_LM):
        yield
        return

    def save_hook(models, weights, output_dir):
        for i, model in enumerate(models[: len(weights)]):
            weights[i] = trainable_state(accelerator.unwrap_model(model))

    def load_hook(models, input_dir):
        for i, model in enumerate(models):
            model = accelerator.unwrap_model(model)
            state = load_file(str(Path(input_dir) / f"{SAFE_MODEL_NAME}{f'_{i}' if i else ''}.safetensors"))
            if _is_trainable_state(model, state):
                load_trainable_state(model, state)
            else:  # a whole model, as checkpoints were written before
                model.load_state_dict(state)
        models.clear()  # loaded: accelerate reads the optimizer, scheduler and RNG states only

    handles = [
        accelerator.register_save_state_pre_hook(save_hook),
        accelerator.register_load_state_pre_hook(load_hook),
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


# Folders of checkpoints/ the loop writes and may delete: step-N (whole), step-N.partial (being written),
# step-N.previous (a whole one being replaced by a new one of the same step). Nothing else there is the loop's.
CHECKPOINT_FOLDER = re.compile(r"step-(\d+)(\.partial|\.previous)?")


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


def scalar_metrics(metrics: dict) -> dict[str, float]:
    """The single-number metrics of `classification_metrics` (no counts, per-class tables or notes)."""
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and k != "num_samples"}


# pip names where they differ from accelerate's tracker names
TRACKER_PACKAGES = {"comet_ml": "comet-ml"}


def check_trackers_installed(names: list[str]) -> None:
    """Fail before any work when a tracker of `train.report_to` cannot run: accelerate would drop it silently."""
    from accelerate.tracking import get_available_trackers

    available = {str(tracker) for tracker in get_available_trackers()}
    for name in names:
        if name not in available:
            package = TRACKER_PACKAGES.get(name, name)
            raise RecipeError(
                f"train.report_to: {name} needs the {package} package; run `pip install {package}`, "
                f"or remove {name} from train.report_to."
            )


def tracker_config(data: dict, prefix: str = "") -> dict[str, str | int | float | bool | None]:
    """A recipe dict as one level of dotted keys holding single values: TensorBoard's hparams take nothing else."""
    flat = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat |= tracker_config(value, f"{name}.")
        elif isinstance(value, (list, tuple)):
            flat[name] = json.dumps(value)
        else:
            flat[name] = value
    return flat


class TrainingLoop:
    """Runs a TrainingPlan. `work_dir` holds checkpoints (for --resume) and the best weights so far.

    `run` reads as torchtune's recipes do: set up, start or resume, then train an epoch, validate and end the
    epoch (best weights, early stopping, checkpoint) until done, then evaluate the best weights. Numbers go to the
    run's trackers (`train.report_to`) under `log_prefix`, at steps counted on from `first_step`.
    """

    def __init__(
        self,
        recipe: Recipe,
        accelerator: Accelerator,
        work_dir: Path,
        label_names: list[str],
        callbacks: list[Callback] | None = None,
        log_prefix: str = "",
        first_step: int = 0,
        target_scaling: dict | None = None,
    ):
        self.recipe = recipe
        self.cfg = recipe.train
        self.accelerator = accelerator
        self.work_dir = Path(work_dir)
        self.label_names = label_names
        self.callbacks = callbacks or []
        self.metric = recipe.eval.metric
        self.greater = greater_is_better(self.metric)
        self.problem = build_problem_type(recipe.problem_type, recipe.train)
        self.target_scaling = target_scaling  # regression: metrics in the targets' units, not the standardised ones
        self.log_prefix = log_prefix
        self.first_step = first_step

    # --- checkpoints ----------------------------------------------------------------------------------------
    @property
    def checkpoint_dir(self) -> Path:
        return self.work_dir / "checkpoints"

    def latest_checkpoint(self) -> Path | None:
        if not self.checkpoint_dir.is_dir():
            return None
        done = {}
        for path in self.checkpoint_dir.iterdir():
            match = CHECKPOINT_FOLDER.fullmatch(path.name)
            if match and match[2] != ".partial" and (path / "trainer_state.json").is_file():
                done[(int(match[1]), match[2] is None)] = path  # at one step, the new one before the .previous
        return done[max(done)] if done else None

    def _save_checkpoint(self, state: dict) -> None:
        """accelerate's save_state (what trains of the model, optimizer, scheduler, RNG) + the loop's own state;
        keeps only the latest.

        Written into step-N.partial and renamed to step-N once whole, so that a save that fails or is killed part-way
        leaves the previous checkpoint as the one --resume takes. When step-N exists (the periodic checkpoint of an
        epoch's last step, then the epoch's own), it is renamed step-N.previous first, and still counts until the
        new one is in place."""
        accelerator = self.accelerator
        path = self.checkpoint_dir / f"step-{state['global_step']}"
        partial = path.with_name(path.name + ".partial")
        if accelerator.is_main_process:
            shutil.rmtree(partial, ignore_errors=True)  # left by a save killed part-way
        accelerator.wait_for_everyone()
        try:
            with _checkpoints_of_what_trains(accelerator):
                accelerator.save_state(str(partial))
            accelerator.wait_for_everyone()  # every process has written its RNG state
            if accelerator.is_main_process:
                write_json(partial / "trainer_state.json", state)
                previous = path.with_name(path.name + ".previous")
                if path.exists():
                    shutil.rmtree(previous, ignore_errors=True)
                    path.rename(previous)
                partial.rename(path)
                for old in self.checkpoint_dir.iterdir():
                    if old != path and CHECKPOINT_FOLDER.fullmatch(old.name):
                        shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            if accelerator.is_main_process:
                shutil.rmtree(partial, ignore_errors=True)
            raise
        accelerator.wait_for_everyone()

    def _save_best(self, model) -> None:
        if self.accelerator.is_main_process:
            state = trainable_state(self.accelerator.unwrap_model(model))
            atomic_write(self.work_dir / "best.safetensors", lambda tmp: save_file(state, str(tmp)), fsync=True)
        self.accelerator.wait_for_everyone()

    def _better(self, value: float, best: float | None) -> bool:
        if value is None:
            return False
        return best is None or (value > best if self.greater else value < best)

    # --- the loop -------------------------------------------------------------------------------------------
    def run(self, plan: TrainingPlan, resume: bool = False) -> LoopResult:
        self._setup(plan)
        state = self._load_state(resume)
        while state.epoch < self.cfg.epochs and not state.stopped_early:
            train_loss = self._train_epoch(state)
            record, value = self._validate(state, train_loss)
            self._end_epoch(state, record, value)
        return self._final(state)

    def _setup(self, plan: TrainingPlan) -> None:
        """Loaders, optimizer, schedule and loss weights, prepared by Accelerate."""
        accelerator = self.accelerator
        # Convolutions in NHWC; `_final` hands the model back in the usual layout (safetensors saves contiguous).
        self.channels_last = wants_channels_last(plan.model, accelerator.device)
        if self.channels_last:
            plan.model.to(memory_format=torch.channels_last)
        train_loader, eval_loaders = self._setup_data(plan)
        optimizer, scheduler = self._setup_optimizer(plan.param_groups, len(train_loader))
        weights = self.problem.class_weights(plan.train_labels, len(self.label_names))
        self.model, self.optimizer, self.train_loader, self.scheduler = accelerator.prepare(
            plan.model, optimizer, train_loader, scheduler
        )
        names = list(eval_loaders)
        prepared = accelerator.prepare(*eval_loaders.values()) if names else ()
        self.eval_loaders = dict(zip(names, prepared if len(names) > 1 else [prepared]))
        self.loss_weights = weights.to(accelerator.device) if weights is not None else None
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]

    def _setup_data(self, plan: TrainingPlan) -> tuple[DataLoader, dict[str, DataLoader]]:
        cfg = self.cfg
        eval_bs = self.recipe.eval.batch_size or cfg.batch_size * 2
        workers = resolve_num_workers(cfg.num_workers, self.recipe.modality, plan.train)
        # Page-locked batches copy to the GPU asynchronously (the Accelerator's loaders copy with non_blocking).
        pin = self.accelerator.device.type == "cuda" and not rows_on_a_device(plan.train)
        # Its own generator: creating an iterator draws a seed from it, and a draw from torch's global RNG here
        # would shift the dropout masks of a resumed run away from those of an uninterrupted one. Rows are read
        # under their own (seed, epoch, row) random state, so any number of workers gives the same batches.
        train_loader = DataLoader(
            SeededRows(plan.train, cfg.seed),
            batch_size=cfg.batch_size,
            sampler=EpochRows(build_train_sampler(plan, cfg)),
            generator=torch.Generator().manual_seed(cfg.seed),
            collate_fn=plan.collate_fn,
            num_workers=workers,
            pin_memory=pin,
            persistent_workers=workers > 0,  # started once, not again every epoch
            drop_last=False,
        )
        eval_loaders = {
            name: build_eval_loader(
                ds,
                plan.eval_lengths.get(name),
                eval_bs,
                plan.collate_fn,
                workers,
                pin_memory=pin,
                persistent_workers=name == "validation",  # read every epoch; the others once, at the end
            )
            for name, ds in plan.evals.items()
        }
        return train_loader, eval_loaders

    def _setup_optimizer(self, param_groups: list[dict], batches_per_epoch: int) -> tuple:
        cfg = self.cfg
        for group in param_groups:
            group["lr"] = cfg.learning_rate * group.get("lr_scale", 1.0)
        optimizer = OPTIMIZERS.get(cfg.optimizer, "train.optimizer")(param_groups, cfg, self.accelerator.device)
        total_steps = math.ceil(batches_per_epoch / cfg.gradient_accumulation_steps) * cfg.epochs
        scheduler = get_scheduler(
            SCHEDULERS.get(cfg.scheduler, "train.scheduler"),
            optimizer,
            num_warmup_steps=int(cfg.warmup_ratio * total_steps),
            num_training_steps=total_steps,
        )
        return optimizer, scheduler

    def _load_state(self, resume: bool) -> LoopState:
        """A fresh state, or with --resume the latest checkpoint's (weights, optimizer, schedule and RNG restored)."""
        state = LoopState()
        latest = self.latest_checkpoint() if resume else None
        if resume and latest is None:
            logger.warning("--resume: no checkpoint in %s; starting from the beginning", self.checkpoint_dir)
        if latest is not None:
            with _checkpoints_of_what_trains(self.accelerator):
                self.accelerator.load_state(str(latest))
            state = LoopState.from_dict(json.loads((latest / "trainer_state.json").read_text()))
            logger.info("resumed from %s (epoch %d, step %d)", latest, state.epoch, state.global_step)
        return state

    def _train_epoch(self, state: LoopState) -> float:
        """One pass over the training data (the rest of it after a resume mid-epoch); returns its mean loss."""
        cfg, accelerator, epoch = self.cfg, self.accelerator, state.epoch
        self.train_loader.set_epoch(epoch)  # accelerate passes it on to the sampler when the loader is iterated
        self.model.train()
        loader = self.train_loader
        skip = state.step_in_epoch * cfg.gradient_accumulation_steps
        if skip:
            loader = accelerator.skip_first_batches(self.train_loader, skip)
        bar = tqdm(
            total=len(self.train_loader),
            initial=skip,
            desc=f"Epoch {epoch + 1}/{cfg.epochs}",
            disable=not accelerator.is_local_main_process,
        )
        loss_sum = torch.zeros((), device=accelerator.device)  # summed on device: no host sync per step
        window = torch.zeros((), device=accelerator.device)
        n_batches = 0
        window_batches = 0
        epoch_start = time.perf_counter()
        try:
            for batch in loader:
                loss = self._train_step(batch)
                loss_sum += loss
                window += loss
                n_batches += 1
                window_batches += 1
                bar.update(1)
                if not accelerator.sync_gradients:
                    continue
                state.global_step += 1
                state.step_in_epoch += 1
                step = state.global_step
                checkpoint_due = cfg.save_every_steps and step % cfg.save_every_steps == 0
                if step % cfg.log_every_steps == 0 or checkpoint_due:
                    mean = (window / window_batches).item()  # the one host sync, every log_every_steps
                    self._check_finite(mean, step, epoch)
                    bar.set_postfix(loss=f"{mean:.4f}", lr=f"{self.scheduler.get_last_lr()[0]:.2e}")
                    self._log({"train/loss": mean, "train/learning_rate": self._base_learning_rate()}, step)
                    window.zero_()
                    window_batches = 0
                if checkpoint_due:
                    self._save_checkpoint(state.to_dict())
                if accelerator.is_main_process:
                    for cb in self.callbacks:
                        cb.on_step_end(step, epoch)
        finally:
            bar.close()  # also when a step raises (NaN loss): no stray bar printed at exit
        train_loss = (loss_sum / max(n_batches, 1)).item()
        state.train_seconds += time.perf_counter() - epoch_start
        self._check_finite(train_loss, state.global_step, epoch)
        return train_loss

    def _train_step(self, batch: dict) -> torch.Tensor:
        """Forward and backward on one batch; the optimizer steps once every gradient_accumulation_steps."""
        accelerator = self.accelerator
        with accelerator.accumulate(self.model):
            labels = batch.pop("labels")
            logits = logits_of(self.model(**batch)).float()
            loss = self.problem.loss(logits, labels, self.loss_weights)
            accelerator.backward(loss)
            if accelerator.sync_gradients and self.cfg.max_grad_norm:
                accelerator.clip_grad_norm_(self.trainable, self.cfg.max_grad_norm)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    def _validate(self, state: LoopState, train_loss: float) -> tuple[dict, float | None]:
        """Evaluate on the validation split; returns the epoch's history record and the selection metric's value."""
        metrics, _, _ = self._evaluate(self.eval_loaders["validation"], "Validating")
        scalars = scalar_metrics(metrics)
        # After a resume mid-epoch, train_loss covers the batches seen since the resume. The validation log_loss
        # (the loss of other problem types) is recorded once, as eval_loss: under both names the training-curves
        # plot drew the same curve twice.
        loss_key = "log_loss" if "log_loss" in metrics else "loss"
        record = {"epoch": state.epoch + 1, "train_loss": train_loss, "eval_loss": metrics[loss_key]}
        record |= {k: v for k, v in scalars.items() if k != loss_key}
        state.history.append(record)
        self._log(
            {"train/epoch": state.epoch + 1, "train/epoch_loss": train_loss}
            | {f"eval/{k}": v for k, v in scalars.items()},
            state.global_step,
        )
        return record, metrics.get(self.metric)

    def _end_epoch(self, state: LoopState, record: dict, value: float | None) -> None:
        """Keep the best weights, decide on early stopping, checkpoint and tell the callbacks."""
        epoch = state.epoch
        if self._better(value, state.best_value):
            state.best_value, state.best_epoch, state.bad_epochs = value, epoch + 1, 0
            self._save_best(self.model)
        else:
            state.bad_epochs += 1
            patience = self.cfg.early_stopping_patience
            if patience and state.bad_epochs >= patience:
                state.stopped_early = True
                logger.info(
                    "early stopping after epoch %d: %s did not improve for %d epochs",
                    epoch + 1,
                    self.metric,
                    patience,
                )
        logger.info(
            "epoch %d: train_loss %.4f, validation %s %.4f",
            epoch + 1,
            record["train_loss"],
            self.metric,
            value if value is not None else float("nan"),
        )
        state.epoch += 1
        state.step_in_epoch = 0
        self._save_checkpoint(state.to_dict())
        if self.accelerator.is_main_process:
            for cb in self.callbacks:
                cb.on_epoch_end(epoch + 1, record)

    def _final(self, state: LoopState) -> LoopResult:
        """The best checkpoint, by the validation metric, is what the run keeps and reports: evaluate it everywhere."""
        unwrapped = self.accelerator.unwrap_model(self.model)
        best_path = self.work_dir / "best.safetensors"
        if best_path.is_file():
            load_trainable_state(unwrapped, load_file(str(best_path)))
        final, predictions = {}, {}
        thresholds = self._tuned_thresholds() if self.problem.uses_thresholds else None
        for name, loader in self.eval_loaders.items():
            metrics, labels, probs = self._evaluate(loader, f"Final {name}", thresholds)
            final[name] = metrics
            predictions[name] = {"labels": labels, "probs": probs}
            self._log({f"final/{name}/{k}": v for k, v in scalar_metrics(metrics).items()}, state.global_step)
        if self.channels_last:
            unwrapped.to(memory_format=torch.contiguous_format)
        return LoopResult(
            history=state.history,
            best_epoch=state.best_epoch,
            best_value=state.best_value,
            final=final,
            stopped_early=state.stopped_early,
            global_step=state.global_step,
            predictions=predictions,
            train_seconds=state.train_seconds,
            thresholds=thresholds,
        )

    def _evaluate(self, loader, desc: str, thresholds: list[float] | None = None) -> tuple:
        return evaluate(
            self.model,
            loader,
            self.accelerator,
            self.label_names,
            desc=desc,
            problem=self.problem,
            target_scaling=self.target_scaling,
            thresholds=thresholds,
        )

    def _tuned_thresholds(self) -> list[float] | None:
        """The problem type's decision cuts tuned on the validation split, for the best weights."""
        logits, labels = evaluation_logits(self.model, self.eval_loaders["validation"], self.accelerator, "Thresholds")
        return self.problem.tuned_thresholds(labels.numpy(), self.problem.scores(logits).numpy())

    # --- tracking -------------------------------------------------------------------------------------------
    def _log(self, values: dict, step: int) -> None:
        """To the run's trackers; a no-op unless train.report_to names some (accelerate logs on the main process)."""
        self.accelerator.log({self.log_prefix + k: v for k, v in values.items()}, step=self.first_step + step)

    def _base_learning_rate(self) -> float:
        """train.learning_rate as the schedule stands now; parameter groups with an lr_scale train at a multiple."""
        group = self.optimizer.param_groups[0]
        return group["lr"] / group.get("lr_scale", 1.0)

    def _check_finite(self, value: float, step: int, epoch: int) -> None:
        if math.isfinite(value):
            return
        latest = self.latest_checkpoint()
        kept = f"the last good checkpoint is kept in {latest}" if latest else "no checkpoint had been saved yet"
        raise TrainingDivergedError(
            f"the training loss became {value} at step {step} (epoch {epoch + 1}); {kept}. Lower "
            "train.learning_rate, keep train.max_grad_norm on, or use bf16 instead of fp16, then run again "
            "(add --resume to continue from the checkpoint)."
        )
