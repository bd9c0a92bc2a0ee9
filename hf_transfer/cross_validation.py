"""K-fold cross-validation of a recipe: `hf-transfer cv RECIPE [overrides] --folds K`.

The recipe's train rows (all of them: no validation is carved) are cut into K stratified folds; each fold is one
stage of the one loop (`TransferRun.run_stage`) that trains the recipe's strategy on the other K - 1 folds and
validates on it. The report is the mean and standard deviation over folds of every validation metric (per-class
precision, recall and f1 included), written to `cv_metrics.json`.

A linear probe's features are extracted once, for all the train rows, and each fold indexes them: K folds cost one
backbone pass plus K trainings of a small head. As in a run, each fold keeps its best epoch by `eval.metric` on its
validation fold, so the estimate leans optimistic by as much as picking an epoch can add.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from hf_transfer.data.splits import LABEL, Splits
from hf_transfer.data.train_rows import load_train_split, require_rows_per_class
from hf_transfer.errors import RecipeError
from hf_transfer.features import FeatureDataset
from hf_transfer.metrics import mean_std_over_folds
from hf_transfer.recipe import METRIC_NAMES, Recipe
from hf_transfer.run_folder import CV_METRICS_FILE, RECIPE_FILE, write_json, write_yaml
from hf_transfer.runner import TransferRun
from hf_transfer.strategies import LinearProbeConfig, build_strategy, strategy_name

logger = logging.getLogger(__name__)

PER_CLASS_KEYS = ("precision", "recall", "f1")


def cv_output_dir(recipe: Recipe) -> Path:
    """Where `hf-transfer cv` writes by default: beside the run folder, named after it (`outputs/<recipe>-cv`)."""
    run_dir = recipe.output_dir
    return run_dir.with_name(run_dir.name + "-cv")


def check_folds(folds: int) -> None:
    if folds < 2:
        raise RecipeError(f"--folds is {folds}; cross-validation needs at least 2 folds (5 or 10 are usual).")


def stratified_folds(labels, folds: int, seed: int, label_names: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train rows, validation rows) of each of `folds` stratified folds (scikit-learn's StratifiedKFold, shuffled
    with `seed`)."""
    from sklearn.model_selection import StratifiedKFold

    check_folds(folds)
    labels = np.asarray(labels)
    require_rows_per_class(labels, label_names, folds, "train rows", "lower --folds to {n} or add rows of that class")
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(labels)), labels))


def rows_of(data, indices: np.ndarray):
    """The rows `indices` of a Dataset or of extracted features."""
    if isinstance(data, FeatureDataset):
        return FeatureDataset(data.features[indices], data.labels[indices])
    return data.select(indices.tolist())


def flat_metrics(metrics: dict) -> dict:
    """The scalar metrics of one evaluation plus `<stat>/<label>` for each class's precision, recall and f1."""
    flat = {k: v for k, v in metrics.items() if k not in ("per_class", "confusion_matrix")}
    for name, row in metrics.get("per_class", {}).items():
        flat |= {f"{key}/{name}": row[key] for key in PER_CLASS_KEYS}
    return flat


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
    accelerator, backbone, seed = run.accelerator, run.target_backbone, recipe.train.seed
    with accelerator.main_process_first():
        data, label_names = load_train_split(recipe.data, backbone, seed, recipe.problem_type)
    if recipe.problem_type == "single_label_classification":
        fold_rows = stratified_folds(data[LABEL], folds, seed, label_names)
    else:  # iterative stratification of the label sets, or folds that cover the targets' quantiles alike
        from hf_transfer.folds import fold_indices

        check_folds(folds)
        fold_rows = fold_indices(recipe.problem_type, np.asarray(data[LABEL]), folds, seed)

    extraction_seconds = None
    if isinstance(recipe.strategy, LinearProbeConfig):  # one backbone pass for all folds; each fold indexes it
        extraction_start = time.perf_counter()
        data = build_strategy(recipe.strategy, backbone).split_features(data, accelerator, "train")
        extraction_seconds = round(time.perf_counter() - extraction_start, 2)

    per_fold = []
    for i, (train_rows, validation_rows) in enumerate(fold_rows, start=1):
        logger.info("fold %d/%d: %d train, %d validation rows", i, folds, len(train_rows), len(validation_rows))
        splits = Splits(
            train=rows_of(data, train_rows),
            validation=rows_of(data, validation_rows),
            test=None,
            label_names=label_names,
            problem_type=recipe.problem_type,
        )
        stage = run.run_stage(f"fold-{i}", recipe, backbone, splits=splits)
        per_fold.append(
            {
                "fold": i,
                "train_rows": len(train_rows),
                "validation_rows": len(validation_rows),
                "best_epoch": stage.result.best_epoch,
                "train_seconds": round(stage.seconds, 2),
                "validation": stage.result.final["validation"],
            }
        )
        del stage  # the fold's model

    report = {
        "recipe": recipe.name,
        "task": recipe.task,
        "problem_type": recipe.problem_type,
        "strategy": strategy_name(recipe.strategy),
        "checkpoint": recipe.model.checkpoint,
        "folds": folds,
        "seed": seed,
        "train_rows": len(data),
        "label_names": label_names,
        "selection_metric": recipe.eval.metric,
        "summary": mean_std_over_folds([flat_metrics(fold["validation"]) for fold in per_fold]),
        "per_fold": per_fold,
        "feature_extraction_seconds": extraction_seconds,
        "seconds": round(time.perf_counter() - start, 2),
    }
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        write_yaml(out / RECIPE_FILE, recipe.to_dict())
        write_json(out / CV_METRICS_FILE, report)
        logger.info("cross-validation report: %s", out / CV_METRICS_FILE)
    run.cleanup()
    report["output_dir"] = str(out)
    return report


def format_cv_table(report: dict) -> str:
    """mean, std and the per-fold values of every metric, known metrics first, then the per-class ones."""
    summary = report["summary"]
    known = [k for k in ("num_samples", *METRIC_NAMES) if k in summary]
    keys = known + [k for k in summary if k not in known]
    width = max(len("metric"), *(len(k) for k in keys))
    title = (
        f"{report['recipe']} — {report['folds']}-fold cross-validation "
        f"({report['strategy']}, {report['train_rows']} train rows)"
    )
    lines = [title, "=" * len(title), f"{'metric':<{width}}  {'mean':>8}  {'std':>8}  per fold"]
    for key in keys:
        row = summary[key]
        std = "n/a" if row["std"] is None else f"{row['std']:.4f}"
        values = " ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row["values"])
        lines.append(f"{key:<{width}}  {row['mean']:>8.4f}  {std:>8}  {values}")
    return "\n".join(lines)
