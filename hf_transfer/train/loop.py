"""The one training loop, on Accelerate, for every strategy and both modalities.

A strategy hands the loop a `TrainingPlan` (which model, which parameters at which learning rate, which
datasets); the loop does the rest: sampling, mixed precision, accumulation, clipping, schedules, evaluation
every epoch, best-checkpoint keeping, early stopping, periodic checkpoints and resume, NaN detection. Where it
stands lives in one `LoopState`, which every checkpoint holds; the parts it uses live beside it (`loading`,
`optim`, `evaluation`, `checkpointing`, `tracking`).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from hf_transfer.config.recipe import Recipe
from hf_transfer.core.accelerator import wants_channels_last
from hf_transfer.core.errors import TrainingDivergedError
from hf_transfer.metrics.scalars import greater_is_better
from hf_transfer.problems import problem_type
from hf_transfer.train.checkpointing import Checkpointer
from hf_transfer.train.evaluation import build_eval_loader, evaluate, evaluation_logits, logits_of, scalar_metrics
from hf_transfer.train.loading import build_train_loader, resolve_num_workers, rows_on_a_device
from hf_transfer.train.optim import base_learning_rate, build_optimizer_and_scheduler
from hf_transfer.train.plan import Callback, LoopResult, LoopState, TrainingPlan
from hf_transfer.train.tracking import TrackerLog

logger = logging.getLogger(__name__)


class RunningLoss:
    """An epoch's training losses, summed on the device (no host sync per step), and those since the last log."""

    def __init__(self, device: torch.device):
        self.total = torch.zeros((), device=device)
        self.window = torch.zeros((), device=device)
        self.batches = 0
        self.window_batches = 0

    def add(self, loss: torch.Tensor) -> None:
        self.total += loss
        self.window += loss
        self.batches += 1
        self.window_batches += 1

    def window_mean(self) -> float:
        """The mean loss since the last call: the one host sync, every log_every_steps."""
        mean = (self.window / self.window_batches).item()
        self.window.zero_()
        self.window_batches = 0
        return mean

    def epoch_mean(self) -> float:
        return (self.total / max(self.batches, 1)).item()


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
        self.checkpointer = Checkpointer(accelerator, work_dir)
        self.label_names = label_names
        self.callbacks = callbacks or []
        self.metric = recipe.eval.metric
        self.greater = greater_is_better(self.metric)
        self.problem = problem_type(recipe.problem_type)
        self.target_scaling = target_scaling  # regression: metrics in the targets' units, not the standardised ones
        self.log = TrackerLog(accelerator, log_prefix, first_step)

    def run(self, plan: TrainingPlan, resume: bool = False) -> LoopResult:
        self._setup(plan)
        state = self._load_state(resume)
        while state.epoch < self.cfg.epochs and not state.stopped_early:
            train_loss = self._train_epoch(state)
            record, value = self._validate(state, train_loss)
            self._end_epoch(state, record, value)
        return self._final(state)

    # --- setup ----------------------------------------------------------------------------------------------
    def _setup(self, plan: TrainingPlan) -> None:
        """Loaders, optimizer, schedule and loss weights, prepared by Accelerate."""
        accelerator = self.accelerator
        # Convolutions in NHWC; `_final` hands the model back in the usual layout (safetensors saves contiguous).
        self.channels_last = wants_channels_last(plan.model, accelerator.device)
        if self.channels_last:
            plan.model.to(memory_format=torch.channels_last)
        train_loader, eval_loaders = self._setup_data(plan)
        optimizer, scheduler = build_optimizer_and_scheduler(
            plan.param_groups, self.cfg, accelerator.device, len(train_loader)
        )
        weights = self.problem.class_weights(plan.train_labels, len(self.label_names), self.cfg)
        self.model, self.optimizer, self.train_loader, self.scheduler = accelerator.prepare(
            plan.model, optimizer, train_loader, scheduler
        )
        names = list(eval_loaders)
        prepared = accelerator.prepare(*eval_loaders.values()) if names else ()
        self.eval_loaders = dict(zip(names, prepared if len(names) > 1 else [prepared]))
        self.loss_weights = weights.to(accelerator.device) if weights is not None else None
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]

    def _setup_data(self, plan: TrainingPlan) -> tuple[DataLoader, dict[str, DataLoader]]:
        """The training loader and one evaluation loader per split of `plan.evals`."""
        cfg = self.cfg
        eval_bs = self.recipe.eval.batch_size or cfg.batch_size * 2
        workers = resolve_num_workers(cfg.num_workers, self.recipe.modality, plan.train)
        # Page-locked batches copy to the GPU asynchronously (the Accelerator's loaders copy with non_blocking).
        pin = self.accelerator.device.type == "cuda" and not rows_on_a_device(plan.train)
        train_loader = build_train_loader(plan, cfg, workers, pin)
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

    def _load_state(self, resume: bool) -> LoopState:
        """A fresh state, or with --resume the latest checkpoint's (weights, optimizer, schedule and RNG restored)."""
        latest = self.checkpointer.latest() if resume else None
        if resume and latest is None:
            logger.warning(
                "--resume: no checkpoint in %s; starting from the beginning", self.checkpointer.checkpoint_dir
            )
        if latest is None:
            return LoopState()
        state = self.checkpointer.load(latest)
        logger.info("resumed from %s (epoch %d, step %d)", latest, state.epoch, state.global_step)
        return state

    # --- an epoch -------------------------------------------------------------------------------------------
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
        losses = RunningLoss(accelerator.device)
        epoch_start = time.perf_counter()
        try:
            for batch in loader:
                losses.add(self._train_step(batch))
                bar.update(1)
                if accelerator.sync_gradients:
                    self._end_optimizer_step(state, losses, bar)
        finally:
            bar.close()  # also when a step raises (NaN loss): no stray bar printed at exit
        train_loss = losses.epoch_mean()
        state.train_seconds += time.perf_counter() - epoch_start
        self._check_finite(train_loss, state.global_step, epoch)
        return train_loss

    def _train_step(self, batch: dict) -> torch.Tensor:
        """Forward and backward on one batch; the optimizer steps once every gradient_accumulation_steps."""
        accelerator = self.accelerator
        with accelerator.accumulate(self.model):
            labels = batch.pop("labels")
            logits = logits_of(self.model(**batch)).float()
            loss = self.problem.loss(logits, labels, self.loss_weights, self.cfg)
            accelerator.backward(loss)
            if accelerator.sync_gradients and self.cfg.max_grad_norm:
                accelerator.clip_grad_norm_(self.trainable, self.cfg.max_grad_norm)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    def _end_optimizer_step(self, state: LoopState, losses: RunningLoss, bar: tqdm) -> None:
        """Count the step; every log_every_steps log the loss (and stop on a diverged one), every save_every_steps
        checkpoint; tell the callbacks."""
        cfg = self.cfg
        state.global_step += 1
        state.step_in_epoch += 1
        step = state.global_step
        checkpoint_due = cfg.save_every_steps and step % cfg.save_every_steps == 0
        if step % cfg.log_every_steps == 0 or checkpoint_due:
            mean = losses.window_mean()
            self._check_finite(mean, step, state.epoch)
            bar.set_postfix(loss=f"{mean:.4f}", lr=f"{self.scheduler.get_last_lr()[0]:.2e}")
            self.log({"train/loss": mean, "train/learning_rate": base_learning_rate(self.optimizer)}, step)
        if checkpoint_due:
            self.checkpointer.save(state)
        if self.accelerator.is_main_process:
            for cb in self.callbacks:
                cb.on_step_end(step, state.epoch)

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
        self.log(
            {"train/epoch": state.epoch + 1, "train/epoch_loss": train_loss}
            | {f"eval/{k}": v for k, v in scalars.items()},
            state.global_step,
        )
        return record, metrics.get(self.metric)

    def _end_epoch(self, state: LoopState, record: dict, value: float | None) -> None:
        """Keep the best weights, decide on early stopping, checkpoint and tell the callbacks."""
        epoch = state.epoch
        self._keep_if_best(state, value)
        logger.info(
            "epoch %d: train_loss %.4f, validation %s %.4f",
            epoch + 1,
            record["train_loss"],
            self.metric,
            value if value is not None else float("nan"),
        )
        state.epoch += 1
        state.step_in_epoch = 0
        self.checkpointer.save(state)
        if self.accelerator.is_main_process:
            for cb in self.callbacks:
                cb.on_epoch_end(epoch + 1, record)

    def _keep_if_best(self, state: LoopState, value: float | None) -> None:
        """Save the weights when `value` beats the best so far; otherwise count towards early stopping."""
        if self._better(value, state.best_value):
            state.best_value, state.best_epoch, state.bad_epochs = value, state.epoch + 1, 0
            self.checkpointer.save_best(self.model)
            return
        state.bad_epochs += 1
        patience = self.cfg.early_stopping_patience
        if patience and state.bad_epochs >= patience:
            state.stopped_early = True
            logger.info(
                "early stopping after epoch %d: %s did not improve for %d epochs",
                state.epoch + 1,
                self.metric,
                patience,
            )

    def _better(self, value: float | None, best: float | None) -> bool:
        if value is None:
            return False
        return best is None or (value > best if self.greater else value < best)

    # --- the end --------------------------------------------------------------------------------------------
    def _final(self, state: LoopState) -> LoopResult:
        """The best checkpoint, by the validation metric, is what the run keeps and reports: evaluate it everywhere."""
        unwrapped = self.accelerator.unwrap_model(self.model)
        self.checkpointer.load_best(unwrapped)
        final, predictions = {}, {}
        thresholds = self._tuned_thresholds() if self.problem.tunes_thresholds else None
        for name, loader in self.eval_loaders.items():
            metrics, labels, probs = self._evaluate(loader, f"Final {name}", thresholds)
            final[name] = metrics
            predictions[name] = {"labels": labels, "probs": probs}
            self.log({f"final/{name}/{k}": v for k, v in scalar_metrics(metrics).items()}, state.global_step)
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
            train=self.cfg,
        )

    def _tuned_thresholds(self) -> list[float] | None:
        """The problem type's decision cuts, tuned on the validation split for the best weights."""
        logits, labels = evaluation_logits(self.model, self.eval_loaders["validation"], self.accelerator, "Thresholds")
        return self.problem.tuned_thresholds(labels.numpy(), self.problem.scores(logits).numpy())

    def _check_finite(self, value: float, step: int, epoch: int) -> None:
        if math.isfinite(value):
            return
        latest = self.checkpointer.latest()
        kept = f"the last good checkpoint is kept in {latest}" if latest else "no checkpoint had been saved yet"
        raise TrainingDivergedError(
            f"the training loss became {value} at step {step} (epoch {epoch + 1}); {kept}. Lower "
            "train.learning_rate, keep train.max_grad_norm on, or use bf16 instead of fp16, then run again "
            "(add --resume to continue from the checkpoint)."
        )
