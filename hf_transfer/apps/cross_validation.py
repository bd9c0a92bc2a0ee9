"""K-fold cross-validation of a recipe: `hf-transfer cv RECIPE [overrides] --folds K`.

The recipe's train rows (all of them: no validation is carved) are cut into K folds that respect the labels
(`fold_indices`: stratified for single-label, iterative stratification for multi-label, quantile
bins for regression); each fold is one stage of the one loop (`TransferRun.run_stage`) that trains the recipe's
strategy on the other K - 1 folds and is scored on its held-out rows. The report is the mean and standard deviation
over folds of every metric of the held-out rows (per class, per label or per target too), written to
`cv_metrics.json`; every train row is held out exactly once (`fold_of_row` says where).

Single-label and regression folds validate on their held-out rows: each keeps its best epoch by `eval.metric` there,
so the estimate leans optimistic by as much as picking an epoch can add. Multi-label runs also tune a threshold per
label on their validation rows, which would lean far more, so each multi-label fold carves its own validation rows
from its training part (data.validation_fraction, iteratively stratified) for the epoch and the thresholds, and its
held-out rows are a test split that nothing is chosen on. A regression recipe with data.standardize_targets
standardises each fold on its own training rows; its metrics stay in the targets' units.

A linear probe's features are extracted once, for all the train rows, and each fold indexes them: K folds cost one
backbone pass plus K trainings of a small head.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset

from hf_transfer.backbones.features import FeatureDataset
from hf_transfer.config.recipe import Recipe
from hf_transfer.config.strategies import LinearProbeConfig, strategy_name
from hf_transfer.core.errors import RecipeError
from hf_transfer.core.files import write_json, write_yaml
from hf_transfer.data.splits import Splits
from hf_transfer.data.train_rows import load_train_split
from hf_transfer.metrics.folds import mean_std_over_folds
from hf_transfer.metrics.scalars import greater_is_better
from hf_transfer.problems import PROBLEM_TYPES, all_metric_names
from hf_transfer.problems.base import LABEL, ProblemType
from hf_transfer.runs.folder import CV_METRICS_FILE, RECIPE_FILE
from hf_transfer.runs.runner import TransferRun
from hf_transfer.strategies.factory import build_strategy

logger = logging.getLogger(__name__)

# The per-class / per-label / per-target figures a fold's summary carries as `<stat>/<name>`.
PER_NAME_KEYS = {
    "per_class": ("precision", "recall", "f1"),
    "per_label": ("precision", "recall", "f1", "average_precision", "roc_auc", "threshold"),
    "per_target": ("mse", "rmse", "mae", "r2", "pearson", "spearman"),
}
ROW = "row"  # the train row a carved validation row came from


def cv_output_dir(recipe: Recipe) -> Path:
    """Where `hf-transfer cv` writes by default: beside the run folder, named after it (`outputs/<recipe>-cv`)."""
    run_dir = recipe.output_dir
    return run_dir.with_name(run_dir.name + "-cv")


def check_folds(folds: int) -> None:
    if folds < 2:
        raise RecipeError(f"--folds is {folds}; cross-validation needs at least 2 folds (5 or 10 are usual).")


def cv_folds(
    problem_type: str, labels, folds: int, seed: int, label_names: list[str]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train rows, held-out rows) of each fold, by the problem type's `fold_indices`; labels too few for the folds
    are refused or warned about as the problem type says (`check_fold_rows`: a class with fewer rows than folds is
    an error, a label with fewer positive rows than folds a warning)."""
    check_folds(folds)
    problem = PROBLEM_TYPES.get(problem_type)
    labels = np.asarray(labels)
    problem.check_fold_rows(labels, label_names, folds, "train rows", "lower --folds to {n} or add rows of that class")
    return problem.fold_indices(labels, folds, seed)


def inner_validation(
    problem: ProblemType, labels: np.ndarray, train_rows: np.ndarray, fraction: float, seed: int, names: list[str]
):
    """A fold's (train rows, validation rows), the validation carved from its training part as a run carves it from
    train (multi-label: iterative stratification, every label kept in train)."""
    rows = Dataset.from_dict({LABEL: labels[train_rows].tolist(), ROW: train_rows.tolist()})
    train, validation = problem.carve_validation(rows, fraction, seed, names)
    return np.asarray(train[ROW], dtype=np.int64), np.asarray(validation[ROW], dtype=np.int64)


def rows_of(data, indices: np.ndarray, scaling: dict | None = None, problem: ProblemType | None = None):
    """The rows `indices` of a Dataset or of extracted features, regression targets standardised with `scaling`."""
    if isinstance(data, FeatureDataset):
        labels = data.labels[indices]
        if scaling:
            mean = torch.tensor(scaling["mean"], dtype=labels.dtype)
            labels = (labels.reshape(len(indices), -1) - mean) / torch.tensor(scaling["std"], dtype=labels.dtype)
        return FeatureDataset(data.features[indices], labels)
    rows = data.select(indices.tolist())
    return problem.scale_targets(rows, scaling) if scaling else rows


def flat_metrics(metrics: dict) -> dict:
    """The scalar metrics of one evaluation plus `<stat>/<name>` for each class's, label's or target's figures."""
    flat = {k: v for k, v in metrics.items() if k not in (*PER_NAME_KEYS, "confusion_matrix")}
    for section, keys in PER_NAME_KEYS.items():
        for name, row in metrics.get(section, {}).items():
            flat |= {f"{key}/{name}": row.get(key) for key in keys}
    return flat


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and math.isfinite(value)


def summarize_folds(fold_metrics: list[dict]) -> dict:
    """`mean_std_over_folds` of the flat metrics, plus the metrics defined in some folds only (a label that one
    fold tests no positive of): their mean and std over the folds that define them, None in `values` elsewhere and
    `undefined_folds` counting them. Strings (notes) are left out."""
    complete = mean_std_over_folds(fold_metrics)
    summary = {}
    for key in dict.fromkeys(k for fold in fold_metrics for k in fold):
        if key in complete:
            summary[key] = complete[key]
            continue
        values = [fold.get(key) for fold in fold_metrics]
        numbers = [float(v) for v in values if _is_number(v)]
        if not numbers or not all(v is None or _is_number(v) for v in values):
            continue
        summary[key] = {
            "mean": float(np.mean(numbers)),
            "std": float(np.std(numbers, ddof=1)) if len(numbers) > 1 else None,
            "values": [float(v) if _is_number(v) else None for v in values],
            "undefined_folds": len(values) - len(numbers),
        }
    return summary


def cross_validate(recipe: Recipe, folds: int = 5, output_dir: str | Path | None = None, resume: bool = False) -> dict:
    """Run the recipe's strategy on each of `folds` stratified folds of its train data; returns the report that
    `cv_metrics.json` (written atomically in `output_dir`, default `cv_output_dir(recipe)`) holds."""
    check_folds(folds)  # before any loading
    if recipe.source is not None:
        raise RecipeError(
            "cv cross-validates one strategy on one dataset, and this recipe has a source section; remove it "
            "(source=null) to cross-validate the target stage alone."
        )
    if recipe.baseline:
        logger.info("cv runs the recipe's strategy only; the baselines (%s) are left out", ", ".join(recipe.baseline))
    out = Path(output_dir) if output_dir else cv_output_dir(recipe)
    # The folds' checkpoints live in <out>.incomplete/fold-i/ (kept for --resume when cv stops early); the report
    # is one file that a new cv replaces.
    recipe = replace(
        recipe,
        baseline=[],
        hub=replace(recipe.hub, push=False),
        output=replace(recipe.output, dir=str(out), overwrite=True),
    )
    start = time.perf_counter()
    run = TransferRun(recipe, resume=resume)
    run.setup()
    cv = cv_data(run, recipe, folds)
    per_fold, fold_of_row = run_folds(run, recipe, cv, folds)
    report = cv_report(recipe, cv, folds, per_fold, fold_of_row, start)
    write_cv_report(run, recipe, report, out)
    run.cleanup()
    report["output_dir"] = str(out)
    return report


@dataclass(frozen=True)
class CvData:
    """The train rows cross-validation cuts, loaded once: their labels (a matrix for multi-label and regression),
    each fold's (train rows, held-out rows), what the folds index (the rows, or a linear probe's features of them),
    whether each fold standardises its targets, and the seconds the feature pass took."""

    rows: Dataset
    labels: np.ndarray
    label_names: list[str]
    fold_rows: list[tuple[np.ndarray, np.ndarray]]
    data: Dataset | FeatureDataset
    standardized: bool
    extraction_seconds: float | None


def cv_data(run: TransferRun, recipe: Recipe, folds: int) -> CvData:
    """The recipe's train rows (targets unstandardised), cut into `folds` folds; a linear probe's features extracted
    once for all folds."""
    accelerator, backbone, seed = run.accelerator, run.target_backbone, recipe.train.seed
    problem = recipe.problem_type
    standardized = recipe.data.standardize_targets  # only regression reads it (the recipe checked)
    with accelerator.main_process_first():
        # targets as they are: each fold standardises on its own training rows
        rows, label_names = load_train_split(replace(recipe.data, standardize_targets=False), backbone, seed, problem)
    labels = PROBLEM_TYPES.get(problem).label_array(rows)
    fold_rows = cv_folds(problem, labels, folds, seed, label_names)

    data, extraction_seconds = rows, None
    if isinstance(recipe.strategy, LinearProbeConfig):  # one backbone pass for all folds; each fold indexes it
        extraction_start = time.perf_counter()
        data = build_strategy(recipe.strategy, backbone).split_features(rows, accelerator, "train")
        extraction_seconds = round(time.perf_counter() - extraction_start, 2)

    return CvData(rows, labels, label_names, fold_rows, data, standardized, extraction_seconds)


def run_folds(run: TransferRun, recipe: Recipe, cv: CvData, folds: int) -> tuple[list[dict], np.ndarray]:
    """Each fold's summary (its rows, best epoch, seconds and the metrics of its validation and held-out rows), and
    the fold that holds out each train row; each fold is one stage of `run`."""
    backbone, seed, problem = run.target_backbone, recipe.train.seed, recipe.problem_type
    rows, labels, label_names, data, standardized = cv.rows, cv.labels, cv.label_names, cv.data, cv.standardized
    kind = PROBLEM_TYPES.get(problem)
    per_fold, fold_of_row = [], np.zeros(len(labels), dtype=np.int64)
    for i, (train_rows, held_out) in enumerate(cv.fold_rows, start=1):
        fold_of_row[held_out] = i
        validation_rows, test = held_out, None
        if kind.tunes_thresholds:  # held-out rows are a test split; the epoch and thresholds are chosen on a carve
            train_rows, validation_rows = inner_validation(
                kind, labels, train_rows, recipe.data.validation_fraction, seed, label_names
            )
        scaling = kind.target_scaling(rows.select(train_rows.tolist()), recipe.data) if standardized else None
        if kind.tunes_thresholds:
            test = rows_of(data, held_out)
        logger.info(
            "fold %d/%d: %d train, %d validation%s rows",
            i,
            folds,
            len(train_rows),
            len(validation_rows),
            f", {len(held_out)} test" if test is not None else "",
        )
        splits = Splits(
            train=rows_of(data, train_rows, scaling, kind),
            validation=rows_of(data, validation_rows, scaling, kind),
            test=test,
            label_names=label_names,
            problem_type=problem,
            target_scaling=scaling,
        )
        stage = run.run_stage(f"fold-{i}", recipe, backbone, splits=splits)
        result = stage.result
        fold = {
            "fold": i,
            "train_rows": len(train_rows),
            "validation_rows": len(validation_rows),
            **({"test_rows": len(held_out)} if test is not None else {}),
            "best_epoch": result.best_epoch,
            "train_seconds": round(stage.seconds, 2),
            "validation": result.final["validation"],
            **({"test": result.final["test"]} if test is not None else {}),
        }
        if result.thresholds is not None:  # tuned on this fold's validation rows, applied to its test rows
            fold["thresholds"] = dict(zip(label_names, result.thresholds))
        if scaling:
            fold["target_scaling"] = scaling
        per_fold.append(fold)
        del stage  # the fold's model

    return per_fold, fold_of_row


def cv_report(
    recipe: Recipe, cv: CvData, folds: int, per_fold: list[dict], fold_of_row: np.ndarray, start: float
) -> dict:
    """What `cv_metrics.json` holds: the settings, the mean and std of every held-out metric, and each fold's."""
    seed, problem = recipe.train.seed, recipe.problem_type
    labels, label_names, extraction_seconds = cv.labels, cv.label_names, cv.extraction_seconds
    # multi-label: held-out rows are a test split, the epoch and thresholds chosen on the fold's own validation
    held_out_split = "test" if PROBLEM_TYPES.get(problem).tunes_thresholds else "validation"
    report = {
        "recipe": recipe.name,
        "task": recipe.task,
        "problem_type": problem,
        "strategy": strategy_name(recipe.strategy),
        "checkpoint": recipe.model.checkpoint,
        "folds": folds,
        "seed": seed,
        "train_rows": len(labels),
        "label_names": label_names,
        "selection_metric": recipe.eval.metric,
        "held_out_split": held_out_split,
        "summary": summarize_folds([flat_metrics(fold[held_out_split]) for fold in per_fold]),
        "per_fold": per_fold,
        "fold_of_row": fold_of_row.tolist(),
        "feature_extraction_seconds": extraction_seconds,
        "seconds": round(time.perf_counter() - start, 2),
    }
    return report


def write_cv_report(run: TransferRun, recipe: Recipe, report: dict, out: Path) -> None:
    """The recipe the folds ran and `cv_metrics.json`, written in `out` by the main process."""
    accelerator = run.accelerator
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        write_yaml(out / RECIPE_FILE, recipe.to_dict())
        write_json(out / CV_METRICS_FILE, report)
        logger.info("cross-validation report: %s", out / CV_METRICS_FILE)


def format_cv_table(report: dict) -> str:
    """mean, std and the per-fold values of every metric, known metrics first, then the per-class / per-label /
    per-target ones; n/a where a fold leaves a metric undefined."""
    summary = report["summary"]
    known = [k for k in ("num_samples", *all_metric_names()) if k in summary]
    keys = known + [k for k in summary if k not in known]
    width = max(len("metric"), *(len(k) for k in keys))
    held_out = "" if report.get("held_out_split", "validation") == "validation" else ", scored on held-out test rows"
    title = (
        f"{report['recipe']} — {report['folds']}-fold cross-validation "
        f"({report['strategy']}, {report['train_rows']} train rows{held_out})"
    )
    lines = [title, "=" * len(title), f"{'metric':<{width}}  {'mean':>8}  {'std':>8}  per fold"]
    for key in keys:
        row = summary[key]
        std = "n/a" if row["std"] is None else f"{row['std']:.4f}"
        values = " ".join(
            "n/a" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v) for v in row["values"]
        )
        lines.append(f"{key:<{width}}  {row['mean']:>8.4f}  {std:>8}  {values}")
    lower = [k for k in keys if k != "num_samples" and "/" not in k and not greater_is_better(k)]
    if lower:
        lines.append(f"lower is better: {', '.join(lower)}")
    return "\n".join(lines)
