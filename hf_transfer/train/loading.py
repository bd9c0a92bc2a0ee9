"""Reading the training rows: each epoch's order drawn from (seed, epoch), each row read under a random state
seeded by (seed, epoch, row), so a resumed run, or one with any number of worker processes, sees the same batches
as one uninterrupted run in the main process; and how many worker processes read them."""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable, Iterable

import numpy as np
import torch
from datasets import Dataset as HFDataset
from torch.utils.data import DataLoader, RandomSampler, Sampler, WeightedRandomSampler
from transformers.trainer_pt_utils import LengthGroupedSampler

from hf_transfer.config.sections import TrainConfig
from hf_transfer.train.plan import TrainingPlan

logger = logging.getLogger(__name__)


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


def build_train_loader(plan: TrainingPlan, cfg: TrainConfig, num_workers: int, pin_memory: bool) -> DataLoader:
    """The training rows in batches of train.batch_size, in the epoch's order (`set_epoch` picks the epoch)."""
    # Its own generator: creating an iterator draws a seed from it, and a draw from torch's global RNG here
    # would shift the dropout masks of a resumed run away from those of an uninterrupted one. Rows are read
    # under their own (seed, epoch, row) random state, so any number of workers gives the same batches.
    return DataLoader(
        SeededRows(plan.train, cfg.seed),
        batch_size=cfg.batch_size,
        sampler=EpochRows(build_train_sampler(plan, cfg)),
        generator=torch.Generator().manual_seed(cfg.seed),
        collate_fn=plan.collate_fn,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,  # started once, not again every epoch
        drop_last=False,
    )
