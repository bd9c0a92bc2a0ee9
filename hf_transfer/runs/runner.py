"""A recipe run, start to finish: setup -> train -> save -> cleanup (the torchtune recipe shape)."""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Protocol

import numpy as np
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed

from hf_transfer.backbones import Backbone, build_backbone
from hf_transfer.config.recipe import Recipe
from hf_transfer.config.sections import SINGLE_KEYS, ModelConfig
from hf_transfer.config.strategies import FinetuneConfig, LinearProbeConfig
from hf_transfer.core.accelerator import fresh_accelerator, resolve_mixed_precision
from hf_transfer.core.errors import RecipeError
from hf_transfer.core.paths import absolute_checkpoint, check_local_checkpoint
from hf_transfer.core.version import library_versions
from hf_transfer.data.splits import Splits, load_splits
from hf_transfer.metrics.plots import save_training_curves_plot
from hf_transfer.problems import ProblemType, problem_type
from hf_transfer.runs.card import write_model_card
from hf_transfer.runs.folder import (
    LABELS_FILE,
    METRICS_FILE,
    RECIPE_FILE,
    THRESHOLDS_FILE,
    check_can_write,
    check_resume_recipe,
    incomplete_dir,
    publish,
    save_work_recipe,
    write_json,
    write_yaml,
)
from hf_transfer.runs.record import (
    RunRecord,
    TargetScaling,
    ZeroShotRecord,
    backbone_from_json,
    write_record,
    zero_shot_from_json,
)
from hf_transfer.runs.transfer import forgetting_metrics, forgetting_report, merged
from hf_transfer.strategies.base import Strategy, count_parameters
from hf_transfer.strategies.factory import build_strategy
from hf_transfer.strategies.zero_shot import ZeroShotClassifier, ZeroShotStage, zero_shot_stage
from hf_transfer.train.evaluation import scalar_metrics
from hf_transfer.train.loop import TrainingLoop
from hf_transfer.train.plan import Callback, LoopResult, TrainingPlan
from hf_transfer.train.tracking import check_trackers_installed, tracker_config

logger = logging.getLogger(__name__)


SOURCE_MODEL_DIR = "source_model"  # inside the run folder when the target strategy keeps using the source's weights
RUNS_DIR = "runs"  # the trackers' local files (TensorBoard's event files), where the Trainer keeps them


@dataclass
class Stage:
    """One pass of the loop: a (derived) recipe, what it was trained with, and what came out."""

    name: str
    recipe: Recipe
    backbone: Backbone
    strategy: Strategy
    splits: Splits
    plan: TrainingPlan
    result: LoopResult
    seconds: float

    def trained_model(self, accelerator: Accelerator):
        return accelerator.unwrap_model(self.plan.model)

    @property
    def problem(self) -> ProblemType:
        """The stage's problem type (its recipe's)."""
        return problem_type(self.recipe.problem_type)


def source_recipe(recipe: Recipe) -> Recipe:
    """The source stage as a recipe of its own: its data, strategy, loop settings and problem type; the best epoch
    is picked by the recipe's eval.metric where the source's problem type has it, else by that type's default."""
    source = recipe.source
    problem = recipe.source_problem_type
    metric = recipe.eval.metric if problem == recipe.problem_type else problem_type(problem).default_metric
    return replace(
        recipe,
        problem_type=problem,
        data=source.data,
        strategy=source.strategy,
        train=source.train,
        eval=replace(recipe.eval, metric=metric),
        source=None,
        baseline=[],
    )


def baseline_recipe(recipe: Recipe, name: str) -> Recipe:
    """The no-transfer comparison: `scratch` is the same network from random weights, fine-tuned with the same
    budget; `head_only` trains only a new head on the frozen starting backbone. For a multimodal recipe,
    `image_only` and `text_only` probe one tower alone."""
    kind = recipe.modality.baseline_tower(name)
    if kind is not None:
        # One tower of a multimodal recipe, probed alone on its own features (with the recipe's probe head when
        # it has one): what the fused model gains over either input by itself.
        tower = getattr(recipe.model, kind.name)
        probe = recipe.strategy if isinstance(recipe.strategy, LinearProbeConfig) else LinearProbeConfig()
        return replace(
            recipe,
            task=kind.task,
            model=ModelConfig(**{f.name: getattr(tower, f.name) for f in fields(tower) if f.name in SINGLE_KEYS}),
            strategy=probe,
            source=None,
            baseline=[],
        )
    if name == "scratch":
        return replace(
            recipe, model=replace(recipe.model, pretrained=False), strategy=FinetuneConfig(), source=None, baseline=[]
        )
    return replace(recipe, strategy=LinearProbeConfig(), source=None, baseline=[])


class Publisher(Protocol):
    """Where a finished run goes when its recipe says `hub.push` (the Hub's `HubPublisher` sits above the run layer
    and is handed in, so the runner knows nothing of the Hub)."""

    def check_ready(self, recipe: Recipe) -> None:
        """Raise before training when publishing would fail (no token, nothing to name the base model by)."""

    def publish(self, run_dir: Path, recipe: Recipe) -> None:
        """Share the published run folder."""


class TransferRun:
    """One run of a recipe: [source stage ->] target stage [-> baselines], then one published run folder."""

    def __init__(
        self,
        recipe: Recipe,
        resume: bool = False,
        callbacks: list[Callback] | None = None,
        publisher: Publisher | None = None,
    ):
        if recipe.hub.push and publisher is None:
            raise ValueError("a recipe with hub.push needs a publisher (hf_transfer.hub.publish.HubPublisher)")
        self.recipe = recipe
        self.resume = resume
        self.callbacks = callbacks or []
        self.publisher = publisher
        self.run_dir = recipe.output_dir
        self.work_dir = incomplete_dir(self.run_dir)
        self.tracking = False  # trackers start with the first stage
        self.steps_logged = 0  # by the stages before: a tracker's steps only go up (wandb drops lower ones)

    def setup(self) -> None:
        recipe = self.recipe
        check_can_write(self.run_dir, recipe.output.overwrite, self.resume)
        if self.resume and self.work_dir.exists():
            # Checkpoints of another recipe either fail to load (shapes) or, worse, load and train on silently.
            check_resume_recipe(self.work_dir, recipe.to_dict())
        check_trackers_installed(recipe.train.report_to)
        if recipe.hub.push:
            self.publisher.check_ready(recipe)  # no token or an unnamed local base: say so now, not after training
        self.accelerator = fresh_accelerator(
            mixed_precision=resolve_mixed_precision(recipe.train.mixed_precision),
            gradient_accumulation_steps=recipe.train.gradient_accumulation_steps,
            # Batches come from pinned memory on CUDA (train.py): their copies to the GPU need not wait.
            dataloader_config=DataLoaderConfiguration(non_blocking=True),
            log_with=recipe.train.report_to or None,
            # Written in the work folder (a resumed run adds to them), published with the run folder.
            project_config=ProjectConfiguration(
                project_dir=str(self.work_dir), logging_dir=str(self.work_dir / RUNS_DIR)
            ),
        )
        if recipe.train.mixed_precision == "fp16" and self.accelerator.device.type == "cpu":
            raise RecipeError("train.mixed_precision: fp16 needs a GPU; use bf16 or no on a CPU.")
        # Fail on a bad target before spending time on the source stage (a missing folder before loading any data).
        for model in recipe.model.towers.values() or [recipe.model]:
            check_local_checkpoint(model.checkpoint)
        self.target_backbone = build_backbone(recipe.model, recipe.data, recipe.modality)
        self.zero_shot = None
        if "zero_shot" in recipe.baseline:
            self.zero_shot = ZeroShotClassifier(recipe.zero_shot_config, recipe.modality, recipe.data)
            self.zero_shot.check()  # a checkpoint that cannot classify zero-shot fails before any training

    def run_stage(
        self, name: str, recipe: Recipe, backbone: Backbone | None = None, splits: Splits | None = None
    ) -> Stage:
        """Load data (unless `splits` are given: a cross-validation fold), plan the strategy and run the loop for
        one stage (checkpoints in work/<name>/)."""
        accelerator = self.accelerator
        accelerator.gradient_accumulation_steps = recipe.train.gradient_accumulation_steps
        set_seed(recipe.train.seed)
        backbone = backbone or build_backbone(recipe.model, recipe.data, recipe.modality)
        columns, fields = backbone.required_columns()
        with accelerator.main_process_first():
            if splits is None:
                splits = load_splits(
                    recipe.data,
                    columns,
                    fields,
                    recipe.train.seed,
                    check_rows=backbone.check_rows,
                    problem_type=recipe.problem_type,
                )
            strategy = build_strategy(recipe.strategy, backbone)
            set_seed(recipe.train.seed)
            plan = strategy.plan(splits, recipe, accelerator)
        stage_dir = self.work_dir / name
        if accelerator.is_main_process:
            save_work_recipe(self.work_dir, self.recipe.to_dict())  # what --resume compares against
            stage_dir.mkdir(parents=True, exist_ok=True)
        accelerator.wait_for_everyone()
        if len(self.stage_names) > 1:
            logger.info("stage %s: %s on %s", name, strategy.name, backbone.checkpoint)
        self.start_tracking()
        loop = TrainingLoop(
            recipe,
            accelerator,
            stage_dir,
            splits.label_names,
            self.callbacks,
            log_prefix="" if name == "target" else f"{name}/",
            first_step=self.steps_logged,
            target_scaling=splits.target_scaling,
        )
        start = time.perf_counter()
        result = loop.run(plan, resume=self.resume)
        self.steps_logged += result.global_step
        return Stage(name, recipe, backbone, strategy, splits, plan, result, time.perf_counter() - start)

    def start_tracking(self) -> None:
        """Start `train.report_to`'s trackers, with the recipe as the run's config. Not in setup: a recipe whose
        data fails to load leaves no work folder behind."""
        if self.recipe.train.report_to and not self.tracking:
            self.accelerator.init_trackers(self.recipe.name, config=tracker_config(self.recipe.to_dict()))
            self.tracking = True

    def finish_tracking(self, staging: Path) -> None:
        """Close the trackers, so TensorBoard's event files are whole, and put their files in the run folder."""
        trackers, self.accelerator.trackers = self.accelerator.trackers, []  # cleanup's end_training: not twice
        for tracker in trackers:
            tracker.finish()
        if (self.work_dir / RUNS_DIR).is_dir():
            shutil.copytree(self.work_dir / RUNS_DIR, staging / RUNS_DIR)

    @property
    def stage_names(self) -> list[str]:
        return (
            (["source"] if self.recipe.source else []) + ["target"] + [f"baseline-{b}" for b in self.recipe.baseline]
        )

    def train(self) -> Stage:
        recipe = self.recipe
        self.source: Stage | None = None
        target_recipe, target_backbone = recipe, self.target_backbone
        if recipe.source is not None:
            self.source = self.run_stage("source", source_recipe(recipe))
            folder = self.work_dir / SOURCE_MODEL_DIR
            if self.accelerator.is_main_process:
                shutil.rmtree(folder, ignore_errors=True)
                folder.mkdir(parents=True)
                self.source.backbone.save_classifier(merged(self.source.trained_model(self.accelerator)), folder)
                self.source.backbone.save_preprocessing(folder, self.source.splits.label_names)
            self.accelerator.wait_for_everyone()
            # The target starts from the source's weights, its head replaced for the target's labels.
            target_model = replace(
                recipe.model,
                checkpoint=self.source.backbone.checkpoint_for_folder(folder),
                pretrained=True,
                hub_id=recipe.model.hub_id or self.target_backbone.base_model_id,
            )
            target_recipe = replace(recipe, model=target_model)
            target_backbone = build_backbone(target_model, recipe.data, recipe.modality, new_head=True)
        self.target = self.run_stage("target", target_recipe, target_backbone)
        self.baselines = {
            # scratch: the recipe's own architecture from random weights; head_only: on the target's start;
            # zero_shot: no training, on the target's own evaluation rows
            name: self.run_zero_shot()
            if name == "zero_shot"
            else self.run_stage(
                f"baseline-{name}",
                baseline_recipe(recipe if name == "scratch" else target_recipe, name),
                # one tower alone: on the very rows the fused model saw (both towers' checks applied)
                splits=self.target.splits if name in ("image_only", "text_only") else None,
            )
            for name in recipe.baseline
        }
        return self.target

    def run_zero_shot(self) -> ZeroShotStage:
        """The zero-shot baseline, scored on exactly the rows the target was evaluated on."""
        splits = self.target.splits
        evaluated = {name: split for name, split in splits.items() if name in self.target.result.final}
        batch_size = self.recipe.eval.batch_size or 2 * self.recipe.train.batch_size
        stage = zero_shot_stage(self.zero_shot, evaluated, splits.label_names, batch_size, self.accelerator.device)
        # the trackers see it as they see a trained baseline's final evaluation (a no-op without train.report_to)
        final = {
            f"{stage.name}/final/{split}/{key}": value
            for split, metrics in stage.result.final.items()
            for key, value in scalar_metrics(metrics).items()
        }
        self.accelerator.log(final, step=self.steps_logged)
        return stage

    # --- what the run measured ------------------------------------------------------------------------------
    def transfer_report(self, split: str) -> dict | None:
        """The target metric with and without transfer, and the paired-bootstrap CI of the gain; each stage decides
        as its run folder would predict (with its own tuned thresholds, where the problem type has them)."""
        if not self.baselines:
            return None
        problem = self.target.problem
        metric = problem.transfer_metric(self.recipe.eval.metric)
        target = self.target.result
        labels = target.predictions[split]["labels"]
        report = {"metric": metric, "split": split, "baselines": {}, "gains": {}}
        for name, stage in self.baselines.items():
            theirs = stage.result.predictions[split]
            if not np.array_equal(theirs["labels"], labels):  # both are sorted the same way; a mismatch is a bug
                raise RuntimeError("baseline and target were evaluated on different rows")
            gain = problem.paired_bootstrap(
                metric,
                labels,
                (target.predictions[split]["probs"], target.thresholds),
                (theirs["probs"], stage.result.thresholds),
                seed=self.recipe.train.seed,
            )
            report["baselines"][name] = gain["b"]
            report["gains"][name] = gain
        first = next(iter(report["gains"].values()))  # the first baseline is the headline comparison
        report |= {k: first[k] for k in ("a", "difference", "ci_low", "ci_high", "confidence")}
        report["baseline"] = next(iter(report["gains"]))
        return report

    def source_report(self) -> dict | None:
        """The source task's validation metrics before and after the target stage (what was forgotten)."""
        if self.source is None:
            return None
        before = self.source.result.final["validation"]
        after = forgetting_metrics(self.source, self.target, self.accelerator)
        return forgetting_report(self.source.problem, before, after)

    # --- the run folder -------------------------------------------------------------------------------------
    def save(self) -> Path:
        """Assemble the run folder in the work dir, then publish it in one rename."""
        accelerator = self.accelerator
        accelerator.wait_for_everyone()
        source = self.source_report()  # every process takes part: it evaluates
        if not accelerator.is_main_process:
            return self.run_dir
        recipe, stage = self.recipe, self.target
        result, problem = stage.result, stage.problem
        staging = self.work_dir / "final"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        trained = stage.trained_model(accelerator)
        scaling = stage.splits.target_scaling
        # Metrics are measured already; the saved weights then predict in the targets' units outside hf-transfer too.
        folded = bool(scaling) and problem.fold_target_scaling(trained, scaling, len(stage.splits.label_names))
        weight_files = stage.strategy.save(trained, staging)
        classes = stage.splits.label_names if stage.strategy.trains_backbone_classifier else None
        stage.backbone.save_preprocessing(staging, classes)
        backbone = backbone_from_json(self.target_backbone.describe())
        if not recipe.modality.towers:  # a multimodal backbone records each tower's own
            backbone = replace(backbone, checkpoint_path=absolute_checkpoint(recipe.model.checkpoint))
        if self.source is not None and stage.strategy.name != "finetune":
            # The adapter / head sits on the source-trained weights: they travel with the run.
            shutil.copytree(self.work_dir / SOURCE_MODEL_DIR, staging / SOURCE_MODEL_DIR)
            backbone = replace(backbone, bundled=SOURCE_MODEL_DIR, checkpoint_path=None)
        names = stage.splits.label_names
        report_split = "test" if "test" in result.final else "validation"
        metrics = {
            "report_split": report_split,
            "validation": result.final["validation"],
            **({"test": result.final["test"]} if "test" in result.final else {}),
            "best_epoch": result.best_epoch,
            "best_metric": {"name": recipe.eval.metric, "value": result.best_value},
            "stopped_early": result.stopped_early,
            "history": result.history,
            "parameters": count_parameters(stage.strategy.inference_model(trained)),
            "data": {name: len(split) for name, split in stage.splits.items()},
            **({"skipped_rows": stage.backbone.skipped_rows} if stage.backbone.skipped_rows else {}),
            "validation_carved_from_train": stage.splits.validation_carved,
            "train_seconds": round(result.train_seconds, 2),  # training steps only
            "mixed_precision": self.accelerator.mixed_precision,  # what `auto` became on this device
            "stage_seconds": round(stage.seconds, 2),  # with evaluation every epoch and the final evaluation
        }
        transfer = self.transfer_report(report_split)
        if transfer:
            metrics["transfer"] = transfer
            metrics["baselines"] = {name: b.result.final[report_split] for name, b in self.baselines.items()}
        if source:
            metrics["source"] = source | {
                "label_names": self.source.splits.label_names,
                "train_seconds": round(self.source.seconds, 2),
            }
        record = RunRecord(
            task=recipe.task,
            problem_type=recipe.problem_type,
            strategy=stage.strategy.name,
            strategy_config=recipe.to_dict()["strategy"],
            strategy_metadata=stage.strategy.metadata(),
            backbone=backbone,
            label_names=names,
            # regression trained on standardised targets: predict puts its values back in the targets' units
            target_scaling=TargetScaling(**scaling) if scaling else None,
            target_scaling_in_weights=folded,  # else predict applies it to the model's outputs
            weights=weight_files,
            versions=library_versions(),
            zero_shot=self.zero_shot_record(),
        )
        write_record(staging, record)
        write_json(
            staging / LABELS_FILE,
            {"id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}},
        )
        write_yaml(staging / RECIPE_FILE, recipe.to_dict())
        if result.thresholds is not None:
            write_json(staging / THRESHOLDS_FILE, problem.thresholds_record(names, result.thresholds))
        write_json(staging / METRICS_FILE, metrics)
        predictions = result.predictions[report_split]
        problem.save_plots(result.final[report_split], predictions["labels"], predictions["probs"], names, staging)
        save_training_curves_plot(result.history, staging / "training_curves.png")
        write_model_card(staging, recipe, record, metrics)
        self.finish_tracking(staging)
        publish(staging, self.run_dir)
        logger.info("run folder: %s", self.run_dir)
        return self.run_dir

    def zero_shot_record(self) -> ZeroShotRecord | None:
        """The checkpoint and prompts the zero-shot baseline used, if the run had one."""
        if "zero_shot" not in self.baselines:
            return None
        described = zero_shot_from_json(self.baselines["zero_shot"].record)
        return replace(described, checkpoint_path=absolute_checkpoint(described.checkpoint))

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
            self.publisher.publish(run_dir, self.recipe)
        return run_dir


def run_recipe(
    recipe: Recipe,
    resume: bool = False,
    callbacks: list[Callback] | None = None,
    publisher: Publisher | None = None,
) -> Path:
    return TransferRun(recipe, resume=resume, callbacks=callbacks, publisher=publisher).run()
