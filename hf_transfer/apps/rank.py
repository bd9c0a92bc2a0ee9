"""Which checkpoint to start from: `hf-transfer rank --checkpoints A B C --data train.csv`.

Every candidate backbone reads the same sample of the target data once (features cached on disk, as a linear probe
caches them), and three scores say how well its frozen features suit the labels, before any training:
cross-validated kNN accuracy, cross-validated linear-probe (logistic regression) accuracy, and LogME
(`hf_transfer.metrics.transferability`). The table ranks the candidates by one of them and shows what each costs: its
parameters and the seconds its feature pass took.

`--zero-shot A B` adds zero-shot candidates (CLIP / SigLIP, or text encoders; `strategies.zero_shot`): their score is
the accuracy of classifying the same rows from the label names alone (no folds: nothing is fitted), with the
templates and descriptions of the recipe's `zero_shot` section or `--template`. A checkpoint given to both flags is
one row with every score.

Multi-label and regression data (`--problem-type`, or the recipe's `problem_type`, with its label keys) are scored by
the same three, in their forms for that problem type (`metrics.transferability`): LogME over every label's 0/1
column or every standardised target, the kNN and ridge-probe macro mAP for multi-label, minus the kNN RMSE (in
standard deviations) and the ridge probe's R² for regression. The score keys and the table's columns say which.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from hf_transfer.backbones import Backbone, build_backbone
from hf_transfer.backbones.features import cache_root, extract_features, feature_cache_key
from hf_transfer.config.loading import load_recipe
from hf_transfer.config.sections import DataConfig, ModelConfig
from hf_transfer.config.strategies import LinearProbeConfig
from hf_transfer.config.zero_shot import ZeroShotConfig
from hf_transfer.core.accelerator import fresh_accelerator
from hf_transfer.core.errors import DataError, HfTransferError, ModelError
from hf_transfer.data.modalities import DEFAULT, MODALITIES, Modality
from hf_transfer.data.splits import check_files_exist
from hf_transfer.data.train_rows import load_train_split
from hf_transfer.problems import PROBLEM_TYPES, default_problem_type, problem_type_names
from hf_transfer.strategies.base import count_parameters
from hf_transfer.strategies.zero_shot import ZeroShotClassifier

if TYPE_CHECKING:
    from datasets import Dataset

logger = logging.getLogger(__name__)

SCORES = ("logme", "linear_accuracy", "knn_accuracy", "zero_shot_accuracy")
FEATURE_SCORES = SCORES[:3]
ALL_SCORES = tuple(
    dict.fromkeys((*SCORES, *(n for p in PROBLEM_TYPES.values() for n in (p.linear_score_name, p.knn_score_name))))
)
"""Every name `--by` takes; each problem type scores a subset (`scores_of`)."""
# The table's column titles of each score.
SCORE_TITLES = {
    "logme": "LogME",
    "knn_accuracy": "kNN acc",
    "linear_accuracy": "linear acc",
    "knn_map_macro": "kNN mAP",
    "linear_map_macro": "linear mAP",
    "knn_neg_rmse": "kNN -RMSE",
    "linear_r2": "linear R²",
}
# Below this many rows per feature dimension LogME's evidence is dominated by its prior (with 384-dimensional MiniLM
# features, 200 Rotten Tomatoes rows ranked a random-weight copy above the pretrained model; 400 rows did not).
LOGME_ROWS_PER_DIMENSION = 2
# The flags of `hf-transfer rank` that stand for recipe fields, so that an error names what the user typed.
FLAG_OF_FIELD = {
    "model.checkpoint": "--checkpoints",
    "data.train_files": "--data",
    "data.text_column": "--text-column",
    "data.label_columns": "--label-columns",
    "data.label_separator": "--label-separator",
    "data.label_column": "--label-column",
    "data.image_column": "--image-column",
    "data.max_train_samples": "--max-samples",
    "zero_shot.templates": "--template",
}


@dataclass
class RankInputs:
    """What rank scores on: the data, the task and the backbone library, from flags or from a recipe."""

    data: DataConfig
    task: str = DEFAULT.task
    library: str = "auto"
    pooling: str = "mean"
    from_recipe: bool = False
    zero_shot: ZeroShotConfig = field(default_factory=ZeroShotConfig)
    problem_type: str = field(default_factory=lambda: default_problem_type().name)

    @property
    def modality(self) -> Modality:
        return MODALITIES.of_task(self.task, "--task")


def rank_inputs(
    recipe: str | None = None,
    data: list[str] | None = None,
    task: str | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    image_column: str | None = None,
    pooling: str | None = None,
    templates: list[str] | None = None,
    problem_type: str | None = None,
    label_columns: list[str] | None = None,
    label_separator: str | None = None,
) -> RankInputs:
    """The data settings of `hf-transfer rank`: a recipe's (its data, task, problem type and label keys, library,
    probe pooling and zero_shot section), or files; flags given on top replace the recipe's values."""
    if problem_type is not None and problem_type not in PROBLEM_TYPES:
        names = ", ".join(problem_type_names())
        raise HfTransferError(f"--problem-type '{problem_type}' is not a problem type; choose one of {names}.")
    inputs = _rank_inputs(recipe, data, task, text_column, label_column, image_column, pooling)
    labels = {"label_columns": label_columns, "label_separator": label_separator}
    labels = {k: v for k, v in labels.items() if v is not None}
    inputs.data = replace(inputs.data, **labels)
    inputs.problem_type = problem_type or inputs.problem_type
    try:
        PROBLEM_TYPES.get(inputs.problem_type).check_data(inputs.data)
    except HfTransferError as err:
        raise _in_flag_terms(err, inputs) from None
    if templates:
        try:
            inputs.zero_shot = replace(inputs.zero_shot, templates=list(templates))
        except HfTransferError as err:
            raise _in_flag_terms(err, inputs) from None
    return inputs


def _rank_inputs(recipe, data, task, text_column, label_column, image_column, pooling) -> RankInputs:
    columns = {"text_column": text_column, "label_column": label_column, "image_column": image_column}
    columns = {k: v for k, v in columns.items() if v}
    tasks = MODALITIES.tasks(with_towers=False)  # rank scores single checkpoints; a multimodal task has two
    if task is not None and task not in tasks:
        raise HfTransferError(f"--task '{task}' is not a task rank scores; choose one of {', '.join(tasks)}.")
    if recipe:
        loaded = load_recipe(recipe)
        if loaded.modality.towers:
            raise HfTransferError(
                f"rank scores single checkpoints and recipe '{recipe}' is multimodal; rank each tower's candidates "
                "with a one-modality recipe or --data and --task."
            )
        config = loaded.data
        if data:
            check_files_exist(data, "--data")
            config = replace(config, train_files=list(data))  # files given on top of a Hub dataset replace it
        strategy_pooling = loaded.strategy.pooling if isinstance(loaded.strategy, LinearProbeConfig) else "mean"
        return RankInputs(
            data=replace(config, **columns),
            task=task or loaded.task,
            library=loaded.model.library,
            pooling=pooling or strategy_pooling,
            from_recipe=True,
            zero_shot=loaded.zero_shot or ZeroShotConfig(),
            problem_type=loaded.problem_type,
        )
    if not data:
        raise HfTransferError("rank needs data: give --data FILE... (csv/json/jsonl/parquet) or --recipe RECIPE.")
    check_files_exist(data, "--data")
    return RankInputs(
        data=DataConfig(train_files=list(data), **columns),
        task=task or DEFAULT.task,
        pooling=pooling or "mean",
    )


def _in_flag_terms(err: HfTransferError, inputs: RankInputs) -> HfTransferError:
    """`err` with recipe fields named by the flags that set them (when the settings came from flags)."""
    message = str(err)
    for field_name, flag in FLAG_OF_FIELD.items():
        if field_name in ("model.checkpoint", "zero_shot.templates") or not inputs.from_recipe:
            message = message.replace(field_name, flag)
    if not inputs.from_recipe:
        message = message.replace("problem_type", "--problem-type")
    return type(err)(message)


def scores_of(problem_type: str) -> tuple[str, ...]:
    """The feature scores of a problem type, as the report names them: LogME, then the linear probe's and kNN's."""
    problem = PROBLEM_TYPES.get(problem_type)
    return ("logme", problem.linear_score_name, problem.knn_score_name)


def check_ranked_by(by: str, problem_type: str, checkpoints: list[str], zero_shot: list[str]) -> None:
    """`--by` must name a score this problem type has, of the candidates given."""
    if by not in ALL_SCORES:
        raise HfTransferError(f"--by '{by}' is not a score; choose one of {', '.join(ALL_SCORES)}.")
    if by == "zero_shot_accuracy" and not zero_shot:
        raise HfTransferError("--by zero_shot_accuracy needs zero-shot candidates; name them with --zero-shot.")
    if by == "zero_shot_accuracy":
        return
    if by not in scores_of(problem_type):
        names = ", ".join(scores_of(problem_type))
        raise HfTransferError(f"--by {by} does not score {problem_type}; rank by {names}.")
    if not checkpoints:
        raise HfTransferError(f"--by {by} scores --checkpoints, and none were given; add them or rank by zero-shot.")


def check_rank_request(
    checkpoints: list[str], zero_shot: list[str], problem_type: str, by: str | None, folds: int, max_samples: int
) -> str:
    """The score to rank by (`by`, or logme, or zero_shot_accuracy when only zero-shot candidates), once the
    candidates, the score and the folds are checked against the data's problem type."""
    if not checkpoints and not zero_shot:
        raise HfTransferError(
            "--checkpoints needs at least one checkpoint (a local folder or a cached Hub id), or give --zero-shot."
        )
    if zero_shot and not PROBLEM_TYPES.get(problem_type).picks_one_label:
        raise HfTransferError(
            f"--zero-shot picks one label per row from the label names, so it needs single-label data, not "
            f"{problem_type}; rank these checkpoints with --checkpoints instead."
        )
    by = by or ("logme" if checkpoints else "zero_shot_accuracy")
    check_ranked_by(by, problem_type, checkpoints, zero_shot)
    if folds < 2:
        raise HfTransferError(f"--folds is {folds}; the kNN and linear scores need at least 2 folds.")
    if max_samples < 2 * folds:
        raise HfTransferError(
            f"--max-samples {max_samples} is too few for --folds {folds}; give at least {2 * folds}."
        )
    return by


def load_candidates(
    checkpoints: list[str], zero_shot: list[str], inputs: RankInputs, max_samples: int, seed: int
) -> tuple[list[Backbone], list[ZeroShotClassifier], Dataset, list[str]]:
    """The candidates' backbones and zero-shot classifiers, each checked loadable before any extraction, and the
    sample of at most `max_samples` rows they are all scored on, with its label names."""
    problem_type = inputs.problem_type
    cap = min(max_samples, inputs.data.max_train_samples or max_samples)
    data_cfg = replace(inputs.data, max_train_samples=cap)
    try:
        backbones = [
            build_backbone(ModelConfig(checkpoint=c, library=inputs.library), data_cfg, inputs.modality)
            for c in checkpoints
        ]
        zero_shot_models = [
            ZeroShotClassifier(replace(inputs.zero_shot, checkpoint=c), inputs.modality, data_cfg, field="--zero-shot")
            for c in zero_shot
        ]
        for backbone in backbones:  # a bad candidate fails before any extraction
            backbone.check_loadable()
        for classifier in zero_shot_models:
            classifier.check()
        sample, label_names = load_train_split(data_cfg, (backbones or zero_shot_models)[0], seed, problem_type)
    except (DataError, ModelError) as err:
        raise _in_flag_terms(err, inputs) from None
    return backbones, zero_shot_models, sample, label_names


def rank_checkpoints(
    checkpoints: list[str],
    inputs: RankInputs,
    max_samples: int = 1000,
    folds: int = 5,
    seed: int = 0,
    batch_size: int = 64,
    by: str | None = None,
    zero_shot: list[str] | None = None,
) -> dict:
    """Scores of each checkpoint's frozen features (and of each `zero_shot` checkpoint's zero-shot accuracy) on one
    sample of the data, best first by `by` (default logme, or zero_shot_accuracy when only zero-shot candidates)."""
    checkpoints, zero_shot = list(checkpoints or []), list(zero_shot or [])
    by = check_rank_request(checkpoints, zero_shot, inputs.problem_type, by, folds, max_samples)
    problem_type = inputs.problem_type
    backbones, zero_shot_models, sample, label_names = load_candidates(
        checkpoints, zero_shot, inputs, max_samples, seed
    )
    labels = np.asarray(sample["labels"])
    problem = PROBLEM_TYPES.get(problem_type)
    if backbones:
        problem.check_fold_rows(
            labels, label_names, folds, f"rows in the sample of {len(sample)}", "raise --max-samples or lower --folds"
        )
    logger.info(
        "rank: %d candidates on %d rows, %d %s",
        len({*checkpoints, *zero_shot}),
        len(sample),
        len(label_names),
        problem.names_word,
    )

    accelerator = fresh_accelerator()
    rows = feature_rows(backbones, sample, inputs, accelerator, batch_size, folds, seed)
    add_zero_shot_scores(rows, zero_shot_models, sample, label_names, accelerator, batch_size, scores_of(problem_type))
    candidates = ranked_candidates(rows, by)
    notes = rank_notes(candidates, backbones, sample)
    return rank_report(inputs, sample, label_names, folds, seed, by, candidates, notes, zero_shot_models)


def feature_rows(
    backbones: list[Backbone], sample: Dataset, inputs: RankInputs, accelerator, batch_size: int, folds: int, seed: int
) -> dict[str, dict]:
    """Each backbone's row of the report, by checkpoint: its feature scores on `sample` and what they cost."""
    problem = PROBLEM_TYPES.get(inputs.problem_type)
    rows: dict[str, dict] = {}
    for backbone in backbones:
        cached = (cache_root() / f"{feature_cache_key(backbone, sample, inputs.pooling)}.safetensors").is_file()
        start = time.perf_counter()
        try:
            extractor = backbone.build_feature_extractor(inputs.pooling)
        except ModelError as err:  # a folder with a config but no weights
            raise _in_flag_terms(err, inputs) from None
        features = extract_features(
            extractor, sample, backbone, accelerator, inputs.pooling, batch_size, f"rank {backbone.checkpoint}"
        )
        seconds = time.perf_counter() - start
        parameters = count_parameters(extractor)["total"]
        del extractor
        x = features.features.double().numpy()
        y = features.labels.numpy()
        try:
            scores = {
                "logme": problem.logme(x, y),
                problem.linear_score_name: problem.linear_score(x, y, folds, seed),
                problem.knn_score_name: problem.knn_score(x, y, folds, seed),
            }
        except DataError as err:  # labels that never vary on the sample
            raise _in_flag_terms(err, inputs) from None
        rows[backbone.checkpoint] = {
            "checkpoint": backbone.checkpoint,
            **scores,
            "zero_shot_accuracy": None,
            "parameters": parameters,
            "feature_dim": int(x.shape[1]),
            "extraction_seconds": round(seconds, 2),
            "features_cached": cached,
        }
    return rows


def add_zero_shot_scores(
    rows: dict[str, dict],
    zero_shot_models: list[ZeroShotClassifier],
    sample: Dataset,
    label_names: list[str],
    accelerator,
    batch_size: int,
    feature_scores: tuple[str, ...],
) -> None:
    """Adds each zero-shot candidate's accuracy on `sample` to `rows`: to its checkpoint's row when its features were
    scored too, else to a row of its own without feature scores."""
    labels = np.asarray(sample["labels"])
    for classifier in zero_shot_models:
        start = time.perf_counter()
        model = classifier.model.to(accelerator.device)
        probs = classifier.predict_proba({"sample": sample}, label_names, batch_size)["sample"]
        row = rows.setdefault(
            classifier.checkpoint,
            {
                "checkpoint": classifier.checkpoint,
                **dict.fromkeys(feature_scores),
                "parameters": count_parameters(model)["total"],
                "feature_dim": None,
                "extraction_seconds": 0.0,
                "features_cached": False,
            },
        )
        row["zero_shot_accuracy"] = float((probs.argmax(1) == labels).mean())
        row["zero_shot_seconds"] = round(time.perf_counter() - start, 2)
        del model, classifier.model


def ranked_candidates(rows: dict[str, dict], by: str) -> list[dict]:
    """The rows best first by `by` (those without that score last), each given its `rank`."""
    candidates = sorted(rows.values(), key=lambda row: (row[by] is not None, row[by] or 0.0), reverse=True)
    for place, row in enumerate(candidates, start=1):
        row["rank"] = place
    return candidates


def rank_notes(candidates: list[dict], backbones: list[Backbone], sample: Dataset) -> list[str]:
    """Warnings for the report (each logged too): too few rows for LogME to compare the widest features reliably."""
    notes = []
    widest = max((row["feature_dim"] for row in candidates if row["feature_dim"]), default=0)
    if backbones and len(sample) < LOGME_ROWS_PER_DIMENSION * widest:
        notes.append(
            f"LogME compares candidates reliably with at least {LOGME_ROWS_PER_DIMENSION}x more rows than feature "
            f"dimensions ({widest}); raise --max-samples above {len(sample)} if the data has more rows."
        )
        logger.warning(notes[-1])
    return notes


def rank_report(
    inputs: RankInputs,
    sample: Dataset,
    label_names: list[str],
    folds: int,
    seed: int,
    by: str,
    candidates: list[dict],
    notes: list[str],
    zero_shot_models: list[ZeroShotClassifier],
) -> dict:
    """What `rank` prints (as a table, or as JSON): the settings of the scoring and the candidates best first."""
    problem_type = inputs.problem_type
    feature_scores = scores_of(problem_type)
    report = {
        "task": inputs.task,
        "problem_type": problem_type,
        "scores": list(feature_scores),  # the feature scores of each candidate, named for the problem type
        "samples": len(sample),
        "label_names": label_names,
        "folds": folds,
        "seed": seed,
        "pooling": inputs.pooling,
        "ranked_by": by,
        "candidates": candidates,
        "notes": notes,
    }
    if zero_shot_models:
        report["zero_shot"] = {
            "templates": inputs.zero_shot.templates_for(inputs.modality),
            "descriptions": dict(inputs.zero_shot.descriptions),
        }
    return report


def _score(value, width: int) -> str:
    return f"{value:>{width}.4f}" if value is not None else f"{'-':>{width}}"


def format_rank_table(report: dict) -> str:
    """The candidates best first: scores, then cost (parameters, feature dimension, seconds of the feature pass)."""
    rows = report["candidates"]
    zero_shot = "zero_shot" in report
    problem = PROBLEM_TYPES.get(report.get("problem_type") or default_problem_type().name)
    logme_key, linear_key, knn_key = report.get("scores", FEATURE_SCORES)
    linear_width, knn_width = max(10, len(SCORE_TITLES[linear_key])), max(7, len(SCORE_TITLES[knn_key]))
    width = max(len("checkpoint"), *(len(r["checkpoint"]) for r in rows))
    measured = problem.transfer_scores_description
    title = (
        f"Ranked by {report['ranked_by']} on {report['samples']} rows ({len(report['label_names'])} "
        f"{problem.names_word}, {report['folds']}-fold {measured}, {report['pooling']} pooling)"
    )
    header = (
        f"{'#':>2}  {'checkpoint':<{width}}  {'LogME':>8}  {SCORE_TITLES[knn_key]:>{knn_width}}  "
        f"{SCORE_TITLES[linear_key]:>{linear_width}}  "
        + (f"{'zero-shot acc':>13}  " if zero_shot else "")
        + f"{'params':>8}  {'dim':>5}  {'extract s':>9}"
    )
    lines = [title, "=" * len(title), header]
    for r in rows:
        seconds = f"{r['extraction_seconds']:.2f}" + ("*" if r["features_cached"] else " ")
        if r["feature_dim"] is None:
            seconds = "-"
        lines.append(
            f"{r['rank']:>2}  {r['checkpoint']:<{width}}  {_score(r[logme_key], 8)}  "
            f"{_score(r[knn_key], knn_width)}  {_score(r[linear_key], linear_width)}  "
            + (f"{_score(r['zero_shot_accuracy'], 13)}  " if zero_shot else "")
            + f"{r['parameters'] / 1e6:>7.2f}M  {r['feature_dim'] or '-':>5}  {seconds:>9}"
        )
    if any(r["features_cached"] for r in rows):
        lines.append("* features read from the cache: the seconds are not those of a backbone pass")
    if zero_shot:
        templates = " | ".join(report["zero_shot"]["templates"])
        lines.append(f"zero-shot: accuracy on all {report['samples']} rows from the label names; prompts: {templates}")
    lines += [f"note: {note}" for note in report.get("notes", [])]
    return "\n".join(lines)
