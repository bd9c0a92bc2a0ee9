"""Hyper-parameter search on the validation split: `hf-transfer sweep RECIPE [overrides] --trials N`.

Optuna's TPE sampler (seeded, in-memory study) proposes the learning rate and the strategy's main knobs; each trial
is one stage of the one loop (`TransferRun.run_stage`), scored by the recipe's `eval.metric` on the validation split
in the metric's own direction. The test split is dropped from the data before anything loads, so no trial can see
it: the best recipe is then run once, as usual, to report on test.

Data are loaded once for all trials; a linear probe extracts its features once too, so N trials cost one backbone
pass plus N trainings of a small head. Trials publish no run folder: a trial's weights are not what a user keeps
(the best recipe retrains in one `hf-transfer run`, test split included), and N published folders of weights and
cards would cost disk and time for nothing. Each trial's checkpoints are deleted when it ends.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from hf_transfer.config.recipe import Recipe
from hf_transfer.config.strategies import FinetuneConfig, LinearProbeConfig, LoraStrategyConfig, strategy_name
from hf_transfer.core.errors import HfTransferError, RecipeError
from hf_transfer.core.files import atomic_write, write_json

if TYPE_CHECKING:
    from hf_transfer.data.splits import Splits
    from hf_transfer.runs.runner import TransferRun

logger = logging.getLogger(__name__)

SWEEP_FILE = "sweep.json"
SWEEP_PLOT = "sweep.png"
BEST_RECIPE_FILE = "best.yaml"
LORA_RANKS = (4, 8, 16, 32)
LR_SPAN = 10.0  # the learning rate is searched from the recipe's / 10 to its x 10
WEIGHT_DECAY_RANGE = (1e-6, 1e-1)


def sweep_output_dir(recipe: Recipe) -> Path:
    """Where `hf-transfer sweep` writes by default: beside the run folder (`outputs/<recipe>-sweep`)."""
    run_dir = recipe.output_dir
    return run_dir.with_name(run_dir.name + "-sweep")


def check_trials(trials: int) -> None:
    if trials < 1:
        raise HfTransferError(f"--trials must be at least 1, not {trials}.")


# --- search spaces ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpaceContext:
    """What a search space may need beyond the recipe: the backbone's number of blocks (for unfreeze_last_n)."""

    num_blocks: int | None = None


def epoch_range(epochs: int) -> tuple[int, int]:
    """A small range around the recipe's epochs: half of them to half again as many (at least 1 and 2)."""
    low = max(1, epochs // 2)
    return low, max(low + 1, epochs + max(1, epochs // 2))


def suggest_train(trial, recipe: Recipe) -> Recipe:
    """The loop's knobs every strategy shares: the learning rate (log-uniform) and the epochs."""
    lr = recipe.train.learning_rate
    low, high = epoch_range(recipe.train.epochs)
    train = replace(
        recipe.train,
        learning_rate=trial.suggest_float("learning_rate", lr / LR_SPAN, lr * LR_SPAN, log=True),
        epochs=trial.suggest_int("epochs", low, high),
    )
    return replace(recipe, train=train)


def linear_probe_space(trial, recipe: Recipe, context: SpaceContext) -> Recipe:
    recipe = suggest_train(trial, recipe)
    weight_decay = trial.suggest_float("weight_decay", *WEIGHT_DECAY_RANGE, log=True)
    head = trial.suggest_categorical("head", ["linear", "mlp"])
    return replace(
        recipe, train=replace(recipe.train, weight_decay=weight_decay), strategy=replace(recipe.strategy, head=head)
    )


def lora_space(trial, recipe: Recipe, context: SpaceContext) -> Recipe:
    recipe = suggest_train(trial, recipe)
    r = trial.suggest_categorical("r", list(LORA_RANKS))
    return replace(recipe, strategy=replace(recipe.strategy, r=r, alpha=2 * r))  # alpha = 2r, as users scale it


def finetune_space(trial, recipe: Recipe, context: SpaceContext) -> Recipe:
    recipe = suggest_train(trial, recipe)
    # None trains every block; 1..N only the last ones (and the head).
    choices = [None, *range(1, (context.num_blocks or 0) + 1)]
    return replace(
        recipe,
        strategy=replace(recipe.strategy, unfreeze_last_n=trial.suggest_categorical("unfreeze_last_n", choices)),
    )


SEARCH_SPACES: dict[type, Callable] = {
    LinearProbeConfig: linear_probe_space,
    LoraStrategyConfig: lora_space,
    FinetuneConfig: finetune_space,
}


def search_space_for(recipe: Recipe) -> Callable:
    space = SEARCH_SPACES.get(type(recipe.strategy))
    if space is None:
        names = ", ".join(strategy_name(config()) for config in SEARCH_SPACES)
        raise RecipeError(
            f"sweep has no search space for strategy {strategy_name(recipe.strategy)}; it tunes {names} "
            "(tune other strategies with `hf-transfer run` overrides such as train.learning_rate=...)."
        )
    return space


# --- the recipes a sweep runs and writes ----------------------------------------------------------------------------


def without_test_split(recipe: Recipe) -> Recipe:
    """The recipe with its held-out test split removed, so that nothing a trial does can read it."""
    return replace(recipe, data=replace(recipe.data, test_files=[], test_split=None))


def check_sweepable(recipe: Recipe) -> None:
    if recipe.source is not None:
        raise RecipeError(
            "sweep tunes one strategy on one dataset, and this recipe has a source section; remove it "
            "(source=null) to tune the target stage alone."
        )
    search_space_for(recipe)


def best_recipe_dict(recipe: Recipe, params: dict, space: Callable, context: SpaceContext) -> dict:
    """The user's recipe (test split and all) with the best trial's parameters: what `hf-transfer run` runs."""
    import optuna

    tuned = space(optuna.trial.FixedTrial(params), recipe, context)
    tuned = replace(tuned, name=f"{recipe.name}-tuned")
    return tuned.to_dict()


def write_best_recipe(path: Path, data: dict, header: list[str]) -> None:
    body = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=1000)  # one line per value
    text = "".join(f"# {line}\n" for line in header) + body
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


# --- the sweep ------------------------------------------------------------------------------------------------------


def count_blocks(backbone, label_names: list[str]) -> int:
    """How many blocks `strategy.unfreeze_last_n` may unfreeze (the Backbone's [stem, blocks..., head] groups)."""
    model = backbone.build_classifier(label_names)
    return len(backbone.layer_groups(model)) - 2


@dataclass(frozen=True)
class TrialSetup:
    """What every trial of a sweep shares: the run whose stages the trials are (its accelerator and backbone), the
    recipe they vary, the data loaded once (a linear probe's features), and the search space's context."""

    run: TransferRun
    base: Recipe
    splits: Splits
    context: SpaceContext
    extraction_seconds: float | None


def sweep(
    recipe: Recipe,
    trials: int,
    seed: int = 0,
    timeout: float | None = None,
    output_dir: str | Path | None = None,
    out: str | Path | None = None,
    command: str | None = None,
    force: bool = False,
) -> dict:
    """Search `recipe`'s hyper-parameters on its validation split; write `sweep.json`, `sweep.png` and the best recipe
    (`out`, default `<output_dir>/best.yaml`) and return the report `sweep.json` holds."""
    from hf_transfer.metrics.plots import save_sweep_plot
    from hf_transfer.metrics.scalars import greater_is_better

    check_trials(trials)
    if timeout is not None and timeout <= 0:
        raise HfTransferError(f"--timeout must be a positive number of seconds, not {timeout}.")
    check_sweepable(recipe)
    space = search_space_for(recipe)
    sweep_dir = Path(output_dir) if output_dir else sweep_output_dir(recipe)
    best_path = Path(out) if out else sweep_dir / BEST_RECIPE_FILE
    if out and best_path.exists() and not force:  # the default one, inside the sweep folder, is the sweep's own
        raise HfTransferError(
            f"--out '{best_path}' already exists; pass --force to replace it or choose another name."
        )
    if recipe.baseline:
        logger.info(
            "sweep trains the recipe's strategy only; the baselines (%s) are left out", ", ".join(recipe.baseline)
        )
    metric = recipe.eval.metric
    direction = "maximize" if greater_is_better(metric) else "minimize"

    base = trials_recipe(recipe, sweep_dir)
    start = time.perf_counter()
    setup = setup_trials(base)
    records = run_trials(setup, space, metric, direction, trials, seed, timeout)
    best = best_trial(records, metric, direction, timeout)
    seconds = round(time.perf_counter() - start, 2)
    report = sweep_report(recipe, setup, records, best, best_path, direction, trials, seed, timeout, seconds, command)
    if setup.run.accelerator.is_main_process:
        header = best_recipe_header(recipe, records, best, best_path, metric, trials, command)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        write_best_recipe(best_path, best_recipe_dict(recipe, best["params"], space, setup.context), header)
        write_json(sweep_dir / SWEEP_FILE, report)
        save_sweep_plot(report, sweep_dir / SWEEP_PLOT)
        logger.info("sweep report: %s; best recipe: %s", sweep_dir / SWEEP_FILE, best_path)
    report["output_dir"] = str(sweep_dir)
    return report


def trials_recipe(recipe: Recipe, sweep_dir: Path) -> Recipe:
    """The recipe each trial varies: no test split, no baselines, trackers or push, its work written in `sweep_dir`."""
    return replace(
        without_test_split(recipe),
        baseline=[],
        # The trials' tracker logs would go with the work folder they are written in; the best recipe keeps them.
        train=replace(recipe.train, report_to=[]),
        hub=replace(recipe.hub, push=False),
        output=replace(recipe.output, dir=str(sweep_dir), overwrite=True),
    )


def setup_trials(base: Recipe) -> TrialSetup:
    """The run the trials are stages of, set up once, with the data every trial trains and scores on: the train and
    validation splits (never a test split), a linear probe's as features extracted once for all trials."""
    from hf_transfer.data.splits import Splits, load_splits
    from hf_transfer.runs.runner import TransferRun
    from hf_transfer.strategies.factory import build_strategy

    run = TransferRun(base)
    run.setup()
    accelerator, backbone, data_seed = run.accelerator, run.target_backbone, base.train.seed
    columns, fields = backbone.required_columns()
    with accelerator.main_process_first():
        splits = load_splits(
            base.data, columns, fields, data_seed, check_rows=backbone.check_rows, problem_type=base.problem_type
        )
    if splits.test is not None:  # without_test_split guarantees it; a trial must never score on test rows
        raise RuntimeError("the sweep's data still hold a test split")

    extraction_seconds = None
    if isinstance(base.strategy, LinearProbeConfig):  # one backbone pass per split for all trials
        extraction_start = time.perf_counter()
        probe = build_strategy(base.strategy, backbone)
        splits = Splits(
            train=probe.split_features(splits.train, accelerator, "train"),
            validation=probe.split_features(splits.validation, accelerator, "validation"),
            test=None,
            label_names=splits.label_names,
            validation_carved=splits.validation_carved,
            problem_type=splits.problem_type,
            target_scaling=splits.target_scaling,
        )
        extraction_seconds = round(time.perf_counter() - extraction_start, 2)
        del probe  # its frozen extractor: every trial trains on the features alone
    context = SpaceContext(
        num_blocks=count_blocks(backbone, splits.label_names) if isinstance(base.strategy, FinetuneConfig) else None
    )
    return TrialSetup(run, base, splits, context, extraction_seconds)


def run_trials(
    setup: TrialSetup, space: Callable, metric: str, direction: str, trials: int, seed: int, timeout: float | None
) -> list[dict]:
    """The record of each trial optuna's seeded TPE sampler ran (its parameters, state, validation value and
    seconds), in order; a trial that diverged or scored no number is recorded as failed and the search goes on."""
    import optuna

    from hf_transfer.core.errors import TrainingDivergedError

    records: list[dict] = []
    objective = trial_objective(setup, space, metric, records)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial is ours
    study = optuna.create_study(direction=direction, sampler=optuna.samplers.TPESampler(seed=seed))
    try:
        study.optimize(objective, n_trials=trials, timeout=timeout, catch=(TrainingDivergedError,))
    finally:
        setup.run.cleanup()  # trials' checkpoints resume nothing: a new sweep starts afresh
    return records


def trial_objective(setup: TrialSetup, space: Callable, metric: str, records: list[dict]) -> Callable:
    """Optuna's objective: one trial trains one stage of the run on the shared data and returns its validation
    `metric` (NaN, a failed trial, when it is not a number); each trial appends its record to `records`."""
    from hf_transfer.core.errors import TrainingDivergedError

    run, base, splits, context = setup.run, setup.base, setup.splits, setup.context
    accelerator, backbone = run.accelerator, run.target_backbone

    def objective(trial) -> float:
        number = trial.number + 1
        trial_recipe = space(trial, base, context)
        name = f"trial-{number:03d}"
        trial_start = time.perf_counter()
        record = {"trial": number, "params": dict(trial.params), "value": None, "state": "failed"}
        records.append(record)
        try:
            stage = run.run_stage(name, trial_recipe, backbone, splits=splits)
            # The best weights' final validation, not the epoch's figure: for multi-label that is at the thresholds
            # tuned on validation, the model `hf-transfer run` on the best recipe ships and reports.
            value = stage.result.final["validation"].get(metric, stage.result.best_value)
            best_epoch = stage.result.best_epoch
            evaluated = sorted(stage.result.final)
            del stage
        except TrainingDivergedError as err:
            record["error"] = str(err)
            logger.warning("%s diverged (%s); the search goes on", name, _params_text(trial.params))
            raise
        finally:
            record["seconds"] = round(time.perf_counter() - trial_start, 2)
            # Each trial's model and optimizer state go; only its score stays.
            accelerator.free_memory()
            if accelerator.is_main_process:
                shutil.rmtree(run.work_dir / name, ignore_errors=True)
        if evaluated != ["validation"]:  # the loop evaluates every split it is given: test must not be one
            raise RuntimeError(f"{name} evaluated {evaluated}, not the validation split alone")
        if value is None or not math.isfinite(value):
            record["error"] = f"validation {metric} is {value}"
            logger.warning("%s: validation %s is %s; the trial counts as failed", name, metric, value)
            return float("nan")  # optuna records a NaN as a failed trial
        record |= {"value": value, "state": "complete", "best_epoch": best_epoch}
        logger.info(
            "%s: validation %s %.4f (%s) in %.1f s", name, metric, value, _params_text(trial.params), record["seconds"]
        )
        return value

    return objective


def best_trial(records: list[dict], metric: str, direction: str, timeout: float | None) -> dict:
    """The complete trial with the best validation `metric` in its direction; an error when none completed."""
    complete = [r for r in records if r["state"] == "complete"]
    if not records:
        raise HfTransferError(f"no trial started within --timeout {timeout:g} seconds; give the search more time.")
    if not complete:
        raise HfTransferError(
            f"none of the {len(records)} trials finished with a validation {metric}; see the warnings above, "
            "and lower train.learning_rate or check the data."
        )
    return (max if direction == "maximize" else min)(complete, key=lambda r: r["value"])


def best_recipe_header(
    recipe: Recipe, records: list[dict], best: dict, best_path: Path, metric: str, trials: int, command: str | None
) -> list[str]:
    """The comment lines atop the best recipe: the command that found it, its validation figure and how to run it."""
    return [
        f"Best of {len(records)} trials of: {command or f'hf-transfer sweep {recipe.name} --trials {trials}'}",
        f"validation {metric} {best['value']:.4f} (trial {best['trial']}: {_params_text(best['params'])})",
        f"Run:      hf-transfer run {best_path}",
    ]


def sweep_report(
    recipe: Recipe,
    setup: TrialSetup,
    records: list[dict],
    best: dict,
    best_path: Path,
    direction: str,
    trials: int,
    seed: int,
    timeout: float | None,
    seconds: float,
    command: str | None,
) -> dict:
    """What `sweep.json` holds: the search's settings, every trial's record, the best one and its recipe's path."""
    splits = setup.splits
    return {
        "recipe": recipe.name,
        "strategy": strategy_name(recipe.strategy),
        "checkpoint": recipe.model.checkpoint,
        "metric": recipe.eval.metric,
        "direction": direction,
        "split": "validation",
        "validation_rows": len(splits.validation),
        "train_rows": len(splits.train),
        "sampler": {"name": "TPESampler", "seed": seed},
        "trials_requested": trials,
        "timeout": timeout,
        "trials": records,
        "best": {k: best[k] for k in ("trial", "params", "value")},
        "best_recipe": str(best_path),
        "feature_extraction_seconds": setup.extraction_seconds,
        "seconds": seconds,
        "command": command,
    }


def _params_text(params: dict) -> str:
    return ", ".join(f"{k}={_value_text(v)}" for k, v in params.items())


def _value_text(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return "null" if value is None else str(value)


# --- report ---------------------------------------------------------------------------------------------------------


def format_sweep_table(report: dict) -> str:
    """One row per trial (its parameters, validation value and seconds), the best marked with '*'."""
    names = list(dict.fromkeys(k for trial in report["trials"] for k in trial["params"]))
    rows = [
        [
            ("*" if trial["trial"] == report["best"]["trial"] else "") + str(trial["trial"]),
            *(_value_text(trial["params"].get(k, "")) for k in names),
            f"{trial['value']:.4f}" if trial["value"] is not None else trial["state"],
            f"{trial['seconds']:.1f}",
        ]
        for trial in report["trials"]
    ]
    heads = ["trial", *names, f"validation {report['metric']}", "seconds"]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(heads)]
    title = (
        f"{report['recipe']} — sweep of {len(report['trials'])} trials ({report['strategy']}, "
        f"{report['direction']} validation {report['metric']} on {report['validation_rows']} rows)"
    )
    lines = [title, "=" * len(title), "  ".join(h.rjust(w) for h, w in zip(heads, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in rows]
    best = report["best"]
    lines.append(f"\nbest: trial {best['trial']}, validation {report['metric']} {best['value']:.4f}")
    return "\n".join(lines)
