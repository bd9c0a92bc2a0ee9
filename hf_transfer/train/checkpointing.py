"""Checkpoints: what of a model training changes, accelerate's save/load of it with the optimizer, schedule and
random states, and the `Checkpointer` that writes a run's checkpoints and best weights by atomic swaps, so that a
save killed part-way leaves the previous one for --resume (torchtune's checkpointer component)."""

from __future__ import annotations

import json
import re
import shutil
from contextlib import contextmanager
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import SAFE_MODEL_NAME, DistributedType
from safetensors.torch import load_file, save_file
from torch import nn

from hf_transfer.core.files import atomic_write, write_json
from hf_transfer.train.plan import LoopState

BEST_WEIGHTS = "best.safetensors"
TRAINER_STATE = "trainer_state.json"


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
def checkpoints_of_what_trains(accelerator: Accelerator):
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


class Checkpointer:
    """A run's checkpoints (`work_dir`/checkpoints, for --resume: the latest only) and best weights so far
    (`work_dir`/best.safetensors)."""

    def __init__(self, accelerator: Accelerator, work_dir: Path):
        self.accelerator = accelerator
        self.work_dir = Path(work_dir)

    @property
    def checkpoint_dir(self) -> Path:
        return self.work_dir / "checkpoints"

    @property
    def best_path(self) -> Path:
        return self.work_dir / BEST_WEIGHTS

    def latest(self) -> Path | None:
        """The newest whole checkpoint, or None."""
        if not self.checkpoint_dir.is_dir():
            return None
        done = {}
        for path in self.checkpoint_dir.iterdir():
            match = CHECKPOINT_FOLDER.fullmatch(path.name)
            if match and match[2] != ".partial" and (path / TRAINER_STATE).is_file():
                done[(int(match[1]), match[2] is None)] = path  # at one step, the new one before the .previous
        return done[max(done)] if done else None

    def load(self, checkpoint: Path) -> LoopState:
        """Restores the prepared models, optimizer, schedule and RNG from `checkpoint`; returns the loop's state."""
        with checkpoints_of_what_trains(self.accelerator):
            self.accelerator.load_state(str(checkpoint))
        return LoopState.from_dict(json.loads((checkpoint / TRAINER_STATE).read_text()))

    def save(self, state: LoopState) -> None:
        """accelerate's save_state (what trains of the model, optimizer, scheduler, RNG) + the loop's own state;
        keeps only the latest.

        Written into step-N.partial and renamed to step-N once whole, so that a save that fails or is killed part-way
        leaves the previous checkpoint as the one --resume takes. When step-N exists (the periodic checkpoint of an
        epoch's last step, then the epoch's own), it is renamed step-N.previous first, and still counts until the
        new one is in place."""
        accelerator = self.accelerator
        path = self.checkpoint_dir / f"step-{state.global_step}"
        partial = path.with_name(path.name + ".partial")
        if accelerator.is_main_process:
            shutil.rmtree(partial, ignore_errors=True)  # left by a save killed part-way
        accelerator.wait_for_everyone()
        try:
            with checkpoints_of_what_trains(accelerator):
                accelerator.save_state(str(partial))
            accelerator.wait_for_everyone()  # every process has written its RNG state
            if accelerator.is_main_process:
                write_json(partial / TRAINER_STATE, state.to_dict())
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

    def save_best(self, model: nn.Module) -> None:
        """`trainable_state` of `model` as the best weights, replacing the previous ones only once written whole."""
        if self.accelerator.is_main_process:
            state = trainable_state(self.accelerator.unwrap_model(model))
            atomic_write(self.best_path, lambda tmp: save_file(state, str(tmp)), fsync=True)
        self.accelerator.wait_for_everyone()

    def load_best(self, model: nn.Module) -> None:
        """Puts the best weights into `model` (unwrapped), where some were saved."""
        if self.best_path.is_file():
            load_trainable_state(model, load_file(str(self.best_path)))
