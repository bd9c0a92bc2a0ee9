"""A recipe run, start to finish: setup -> train -> save -> cleanup (the torchtune recipe shape)."""

from __future__ import annotations

import logging
import platform
import shutil
import time
from dataclasses import replace
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from accelerate.utils import set_seed

from hf_transfer import __version__
from hf_transfer.backbones import build_backbone
from hf_transfer.data.splits import load_splits
from hf_transfer.errors import HfTransferError, HubError, RecipeError
from hf_transfer.metrics import save_confusion_matrix_plot, save_training_curves_plot
from hf_transfer.model_card import write_model_card
from hf_transfer.recipe import Recipe
from hf_transfer.run_folder import (
    FORMAT_VERSION,
    LABELS_FILE,
    METADATA_FILE,
    METRICS_FILE,
    RECIPE_FILE,
    check_can_write,
    incomplete_dir,
    publish,
    write_json,
    write_yaml,
)
from hf_transfer.strategies import build_strategy
from hf_transfer.strategies.base import count_parameters
from hf_transfer.train import Callback, LoopResult, TrainingLoop

logger = logging.getLogger(__name__)


def library_versions() -> dict[str, str]:
    import accelerate
    import datasets
    import huggingface_hub
    import peft
    import transformers

    versions = {
        "hf_transfer": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "datasets": datasets.__version__,
        "accelerate": accelerate.__version__,
        "peft": peft.__version__,
        "huggingface_hub": huggingface_hub.__version__,
        "python": platform.python_version(),
    }
    try:
        import timm

        versions["timm"] = timm.__version__
    except ImportError:  # pragma: no cover
        pass
    return versions


def absolute_checkpoint(checkpoint: str) -> str | None:
    """The absolute path of a local checkpoint folder (so the run loads from anywhere), else None."""
    path = Path(checkpoint.removeprefix("local-dir:"))
    if path.exists():
        prefix = "local-dir:" if checkpoint.startswith("local-dir:") else ""
        return prefix + str(path.resolve())
    return None


def resolved_recipe_dict(recipe: Recipe, strategy_name: str) -> dict:
    """The recipe as it ran, every default filled in: `hf-transfer run` on this file repeats the run."""
    data = recipe.to_dict()
    data["strategy"] = {"name": strategy_name, **data["strategy"]}
    return data


class TransferRun:
    """One run of a recipe. `run()` returns the published run folder."""

    def __init__(self, recipe: Recipe, resume: bool = False, callbacks: list[Callback] | None = None):
        self.recipe = recipe
        self.resume = resume
        self.callbacks = callbacks or []
        self.run_dir = recipe.output_dir
        self.work_dir = incomplete_dir(self.run_dir)

    def setup(self) -> None:
        recipe = self.recipe
        check_can_write(self.run_dir, recipe.output.overwrite, self.resume)
        if recipe.hub.push:
            from hf_transfer.hub import check_push_ready

            check_push_ready(recipe)  # no token or an unnamed local base: say so now, not after training
        # Accelerate keeps one global state per process; several runs in one process (the Python API, cv,
        # baselines) each bring their own precision and accumulation, so clear what the last run set.
        # The distributed part (PartialState) stays: `accelerate launch` set it up for this process.
        AcceleratorState._reset_state()
        GradientState._reset_state()
        self.accelerator = Accelerator(
            mixed_precision=recipe.train.mixed_precision,
            gradient_accumulation_steps=recipe.train.gradient_accumulation_steps,
        )
        if recipe.train.mixed_precision == "fp16" and self.accelerator.device.type == "cpu":
            raise RecipeError("train.mixed_precision: fp16 needs a GPU; use bf16 or no on a CPU.")
        set_seed(recipe.train.seed)
        self.backbone = build_backbone(recipe.model, recipe.data, recipe.modality)
        columns, fields = self.backbone.required_columns()
        with self.accelerator.main_process_first():
            self.splits = load_splits(
                recipe.data, columns, fields, recipe.train.seed, check_rows=self.backbone.check_rows
            )
            self.strategy = build_strategy(recipe.strategy, self.backbone)
            set_seed(recipe.train.seed)
            self.plan = self.strategy.plan(self.splits, recipe, self.accelerator)

    def train(self) -> LoopResult:
        if self.accelerator.is_main_process:
            self.work_dir.mkdir(parents=True, exist_ok=True)
        self.accelerator.wait_for_everyone()
        loop = TrainingLoop(self.recipe, self.accelerator, self.work_dir, self.splits.label_names, self.callbacks)
        start = time.perf_counter()
        self.result = loop.run(self.plan, resume=self.resume)
        self.train_seconds = time.perf_counter() - start
        return self.result

    def save(self) -> Path:
        """Assemble the run folder in the work dir, then publish it in one rename."""
        accelerator = self.accelerator
        accelerator.wait_for_everyone()
        if not accelerator.is_main_process:
            return self.run_dir
        recipe, result = self.recipe, self.result
        staging = self.work_dir / "final"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        trained = accelerator.unwrap_model(self.plan.model)
        model = self.strategy.inference_model(trained)
        weight_files = self.strategy.save(trained, staging)
        self.backbone.save_preprocessing(staging)
        names = self.splits.label_names
        report_split = "test" if "test" in result.final else "validation"
        params = count_parameters(model)
        metrics = {
            "report_split": report_split,
            "validation": result.final["validation"],
            **({"test": result.final["test"]} if "test" in result.final else {}),
            "best_epoch": result.best_epoch,
            "best_metric": {"name": recipe.eval.metric, "value": result.best_value},
            "stopped_early": result.stopped_early,
            "history": result.history,
            "parameters": params,
            "data": {name: len(split) for name, split in self.splits.items()},
            **({"skipped_rows": self.backbone.skipped_rows} if self.backbone.skipped_rows else {}),
            "validation_carved_from_train": self.splits.validation_carved,
            "train_seconds": round(self.train_seconds, 2),
        }
        description = self.backbone.describe()
        description["checkpoint_path"] = absolute_checkpoint(recipe.model.checkpoint)
        metadata = {
            "format": FORMAT_VERSION,
            "task": recipe.task,
            "strategy": self.strategy.name,
            "strategy_config": recipe.to_dict()["strategy"],
            "strategy_metadata": self.strategy.metadata(),
            "backbone": description,
            "label_names": names,
            "weights": weight_files,
            "versions": library_versions(),
        }
        write_json(staging / METADATA_FILE, metadata)
        write_json(
            staging / LABELS_FILE,
            {"id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}},
        )
        write_yaml(staging / RECIPE_FILE, resolved_recipe_dict(recipe, self.strategy.name))
        write_json(staging / METRICS_FILE, metrics)
        save_confusion_matrix_plot(
            result.final[report_split]["confusion_matrix"], names, staging / "confusion_matrix.png"
        )
        save_training_curves_plot(result.history, staging / "training_curves.png")
        write_model_card(staging, recipe, metadata, metrics)
        publish(staging, self.run_dir)
        logger.info("run folder: %s", self.run_dir)
        return self.run_dir

    def cleanup(self) -> None:
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            shutil.rmtree(self.work_dir, ignore_errors=True)
        self.accelerator.end_training()

    def run(self) -> Path:
        self.setup()
        self.train()
        run_dir = self.save()
        main_process = self.accelerator.is_main_process
        self.cleanup()
        if self.recipe.hub.push and main_process:
            self.push(run_dir)
        return run_dir

    def push(self, run_dir: Path) -> None:
        """`hub.push`: share the published run folder. A failed push leaves it in place and says how to retry."""
        from hf_transfer.hub import push_run

        hub = self.recipe.hub
        try:
            result = push_run(run_dir, hub.repo_id, private=hub.private, revision=hub.revision)
        except HfTransferError as err:
            raise HubError(
                f"{err} The run itself is saved in '{run_dir}'; push it with `hf-transfer push {run_dir}` "
                "(the recipe's hub settings apply)."
            ) from None
        logger.info("pushed to %s", result.commit_url or result.url)


def run_recipe(recipe: Recipe, resume: bool = False, callbacks: list[Callback] | None = None) -> Path:
    return TransferRun(recipe, resume=resume, callbacks=callbacks).run()


def with_output(recipe: Recipe, output_dir: str | Path) -> Recipe:
    return replace(recipe, output=replace(recipe.output, dir=str(output_dir)))
