"""The run folder's README.md, rendered from a template in `model_cards/` through `huggingface_hub.ModelCard`."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from hf_transfer.config.recipe import Recipe
from hf_transfer.core.paths import is_repo_id
from hf_transfer.data.modalities import MODALITIES
from hf_transfer.data.modalities.base import SnippetContext
from hf_transfer.problems import ProblemType, all_metric_names, problem_type
from hf_transfer.runs.folder import RECIPE_FILE
from hf_transfer.runs.record import RunRecord

DEFAULT_TEMPLATE = "hf_transfer.md"
DATASET_BUILDERS = {"imagefolder", "audiofolder", "csv", "json", "parquet", "text", "arrow", "webdataset"}

STRATEGY_TEXT = {
    "linear_probe": "the backbone stayed frozen; its pooled features were extracted once and a new head was "
    "trained on them.",
    "finetune": "the pretrained network was fine-tuned with a new classification head.",
    "lora": "LoRA adapters (PEFT) were trained on the frozen backbone together with a new classification head.",
    "ia3": "IA3 adapters (PEFT) were trained on the frozen backbone together with a new classification head.",
}
HUB_METRIC = {
    "accuracy": "accuracy",
    "f1_macro": "f1",
    "precision_macro": "precision",
    "recall_macro": "recall",
    "roc_auc": "roc_auc",
    "balanced_accuracy": "accuracy",
    # multi-label and regression, by the names of the Hub's metrics
    "f1_micro": "f1",
    "f1_samples": "f1",
    "subset_accuracy": "accuracy",
    "hamming_loss": "hamming_loss",
    "map_macro": "map",
    "roc_auc_macro": "roc_auc",
    "mse": "mse",
    "rmse": "rmse",
    "mae": "mae",
    "r2": "r_squared",
    "pearson": "pearsonr",
    "spearman": "spearmanr",
}
# What each file of a run folder (and of a pushed repo) is for, in the card's "Files" section.
FILE_ROLES = {
    "adapter_model.safetensors": "the adapter weights and the trained classification head (PEFT)",
    "adapter_config.json": "the PEFT config, naming the base model by its Hub id",
    "model.safetensors": "the trained weights",
    "config.json": "the model config (with the label names)",
    "head.safetensors": "the trained head that reads the frozen base model's features",
    "labels.json": "`id2label` and `label2id`",
    "thresholds.json": "each label's decision threshold on its sigmoid score, tuned on the validation split",
    "hf_transfer.json": "what hf-transfer needs to load the model: base model id, strategy, labels, versions",
    "recipe.yaml": "the resolved recipe, every default filled in",
    "metrics.json": "every metric, per class and per epoch",
    "tokenizer.json": "the tokenizer",
    "tokenizer_config.json": "the tokenizer's settings",
    "special_tokens_map.json": "the tokenizer's special tokens",
    "vocab.txt": "the tokenizer's vocabulary",
    "preprocessor_config.json": "the image preprocessing",
}


def template_path(name: str = DEFAULT_TEMPLATE) -> Path:
    try:
        packaged = importlib.resources.files("hf_transfer") / "model_cards" / name
        if packaged.is_file():
            return Path(str(packaged))
    except (ModuleNotFoundError, FileNotFoundError):
        pass
    return Path(__file__).resolve().parents[2] / "model_cards" / name


def hub_dataset_id(recipe: Recipe) -> str | None:
    """The dataset's Hub id, or None for local files and builders (a local path in `datasets:` fails a push)."""
    dataset = recipe.data.dataset
    if not dataset or dataset in DATASET_BUILDERS or ":" in dataset or Path(dataset).exists():  # sklearn:digits
        return None
    return dataset if _is_hub_id(dataset) else None


def _is_hub_id(text: str) -> bool:
    """Whether `text` is spelled like a Hub repo id (a relative path such as `data/train.csv` is not)."""
    return is_repo_id(text) and Path(text).suffix.lower() not in (".csv", ".json", ".jsonl", ".parquet")


def _dataset_text(recipe: Recipe, metrics: dict) -> str:
    sizes = metrics.get("data", {})
    if recipe.data.dataset:
        source = f"`{recipe.data.dataset}`"
    else:
        data = recipe.data
        names = [Path(f).name for f in data.train_files + data.validation_files + data.test_files]
        source = "local files (" + ", ".join(f"`{name}`" for name in names) + ")" if names else "local files"
    if recipe.data.config:
        source += f" (config `{recipe.data.config}`)"
    counts = ", ".join(f"{n:,} {name}" for name, n in sizes.items())
    carved = " (validation carved from train, stratified)" if metrics.get("validation_carved_from_train") else ""
    return f"{source}: {counts}{carved}"


def _snippet(
    record: RunRecord, location: str, revision: str | None = None, thresholds: list[float] | None = None
) -> tuple[str, str] | None:
    """(library, code) that loads the model without hf-transfer, where its library can (the input kind writes it;
    the problem type, its last lines). The code prints what `predict` gives: one label, the labels above their
    thresholds, or the values (a test runs it against the pushed repo)."""
    problem = problem_type(record.problem_type)
    backbone, names = record.backbone, record.label_names
    if backbone.text_tower:  # a CLIP / SigLIP text tower under hf-transfer's head: no transformers class
        return None
    context = SnippetContext(
        library=backbone.library,
        strategy=record.strategy,
        base=backbone.base,
        label_names=names,
        location=location,
        at=f', revision="{revision}"' if revision else "",
        decision=lambda logits, indent: problem.card_decision_code(logits, thresholds, indent),
        pipeline=lambda model_args, example: problem.pipeline_code(model_args, example, names, thresholds),
    )
    return MODALITIES.of_record(backbone).card_snippet(context)


def build_model_card(
    recipe: Recipe,
    record: RunRecord,
    metrics: dict,
    location: str,
    base_model: str | None = None,
    repo_id: str | None = None,
    revision: str | None = None,
    run_dir: Path | None = None,
) -> ModelCard:
    """The card for a run folder (`location` is what users load it by: a folder or a Hub repo id, on `revision`).
    `run_dir`: the folder the card describes, whose recipe and files it shows (None: the recipe as given)."""
    strategy = record.strategy
    base_model = base_model or record.backbone.hub_id
    report_split = metrics["report_split"]
    report = metrics[report_split]
    problem = problem_type(record.problem_type)
    per_label = report.get("per_label") or {}
    dataset_id = hub_dataset_id(recipe)
    model_name = repo_id.split("/")[-1] if repo_id else recipe.name
    snippet = _snippet(record, location, revision, thresholds=_tuned_thresholds(report))
    example_cli, example_py = _usage_examples(recipe)
    baseline = metrics.get("transfer", {})
    return ModelCard.from_template(
        _card_data(recipe, record, report, report_split, base_model, dataset_id, model_name),
        template_path=str(template_path()),
        model_name=model_name,
        summary=f"{_summary(recipe, record)} trained with "
        "[hf-transfer](https://pypi.org/project/hf-transfer-kit/) "
        f"by transfer learning ({strategy.replace('_', ' ')}).",
        label_names=record.label_names,
        base_model=base_model,
        library=record.backbone.library,
        strategy=strategy,
        strategy_text=STRATEGY_TEXT.get(strategy, ""),
        parameters=metrics["parameters"],
        data_text=_dataset_text(recipe, metrics),
        best_epoch=metrics["best_epoch"],
        epochs=recipe.train.epochs,
        best_metric=recipe.eval.metric,
        report_split=report_split,
        report_rows=report["num_samples"],
        results=[(k, f"{report[k]:.4f}") for k in all_metric_names() if report.get(k) is not None],
        baseline_metric=baseline.get("metric", ""),
        baseline_rows=_baseline_rows(baseline, record),
        per_class=list((report.get("per_class") or per_label).items()),
        predicts=problem.card_summary(record.label_names),
        name_word=problem.name_word,
        plots=list(problem.card_plots),
        prediction_key=problem.prediction_key,
        location=location,
        revision=revision,
        files=_listed_files(run_dir),
        example_cli=example_cli,
        example_py=example_py,
        library_snippet=snippet[1] if snippet else None,
        snippet_library=snippet[0] if snippet else None,
        recipe_yaml=yaml.safe_dump(_shown_recipe(recipe, record, run_dir), sort_keys=False),
        versions=record.versions,
        limitations=_limitations(recipe, record, metrics, dataset_id, base_model),
    )


def _tuned_thresholds(report: dict) -> list[float] | None:
    """A multi-label run's per-label thresholds, in label order, as its report records them; None for others."""
    per_label = report.get("per_label") or {}
    return [row["threshold"] for row in per_label.values()] if per_label else None


def _eval_results(
    recipe: Recipe, problem: ProblemType, report: dict, report_split: str, dataset_id: str | None
) -> list[EvalResult]:
    """The card's model-index entries: the problem type's headline metrics on the report split."""
    return [
        EvalResult(
            task_type=recipe.task,
            dataset_type=dataset_id or "custom",
            dataset_name=dataset_id or "local data",
            dataset_config=recipe.data.config,
            dataset_split=report_split,
            metric_type=HUB_METRIC.get(key, key),
            metric_name=key,
            metric_value=round(float(report[key]), 4),
        )
        for key in problem.card_metrics
        if report.get(key) is not None
    ]


def _card_data(
    recipe: Recipe,
    record: RunRecord,
    report: dict,
    report_split: str,
    base_model: str | None,
    dataset_id: str | None,
    model_name: str,
) -> ModelCardData:
    """The card's YAML header, what the Hub indexes: base model and its relation, library, tags, metrics."""
    strategy = record.strategy
    library = "peft" if strategy in ("lora", "ia3") else record.backbone.library
    eval_results = _eval_results(recipe, problem_type(record.problem_type), report, report_split, dataset_id)
    return ModelCardData(
        base_model=base_model,
        # A linear probe's repo, like an adapter's, holds only what is added to the unchanged base model.
        base_model_relation=("finetune" if strategy == "finetune" else "adapter") if base_model else None,
        library_name=library,
        pipeline_tag=recipe.task,
        tags=sorted(
            {
                "hf-transfer",
                strategy.replace("_", "-"),
                record.backbone.library,
                recipe.modality.name,
                *(["lora"] if strategy == "lora" else []),
                *(["dora"] if record.strategy_config.get("use_dora") else []),
                *(["peft"] if library == "peft" else []),
            }
        ),
        license=recipe.hub.license,
        datasets=[dataset_id] if dataset_id else None,
        metrics=sorted({HUB_METRIC[k] for k in HUB_METRIC if report.get(k) is not None}),
        model_name=model_name,
        eval_results=eval_results or None,
    )


def _baseline_rows(transfer: dict, record: RunRecord) -> list[tuple[str, str]]:
    """The transfer table: the run's metric, each baseline's, and the gain with its confidence interval."""
    if not transfer:
        return []
    rows = [("with transfer", f"{transfer['a']:.4f}")]
    rows += [(_baseline_name(name, record), f"{value:.4f}") for name, value in transfer.get("baselines", {}).items()]
    rows.append(
        (
            "gain",
            f"{transfer['difference']:+.4f} ({int(transfer['confidence'] * 100)}% CI "
            f"{transfer['ci_low']:+.4f} to {transfer['ci_high']:+.4f})",
        )
    )
    return rows


def _usage_examples(recipe: Recipe) -> tuple[str, str]:
    """(CLI arguments, Python input) of the card's `predict` examples, for the run's input kind."""
    return recipe.modality.card_example


def _summary(recipe: Recipe, record: RunRecord) -> str:
    """The card's first words: what kind of classifier (for a multimodal one, its two towers)."""
    return recipe.modality.card_summary(record.backbone)


def _limitations(
    recipe: Recipe, record: RunRecord, metrics: dict, dataset_id: str | None, base_model: str | None
) -> list[str]:
    limitations = []
    if not metrics.get("test"):
        limitations.append(
            "No held-out test split was given: the results are on the validation split that also "
            "chose the best epoch, so they are optimistic."
        )
    if record.strategy == "linear_probe":
        limitations.append(
            "The head expects the base model's features with the recorded pooling; load it with hf-transfer."
        )
    if not dataset_id:
        limitations.append("It was trained on local files that are not published with it.")
    if base_model:
        limitations.append(f"The license, biases and limitations of the base model `{base_model}` apply too.")
    return limitations


def _shown_recipe(recipe: Recipe, record: RunRecord, run_dir: Path | None) -> dict:
    """The recipe the card shows: the run folder's own, else the given one with its strategy's name, so that the
    shown recipe runs."""
    if run_dir is not None:
        return yaml.safe_load((Path(run_dir) / RECIPE_FILE).read_text())
    recipe_dict = recipe.to_dict()
    recipe_dict["strategy"] = {"name": record.strategy, **recipe_dict["strategy"]}
    return recipe_dict


def _listed_files(run_dir: Path | None) -> list[tuple[str, str]]:
    """(file, what it is for) of the run folder's files that the card's "Files" section explains."""
    if run_dir is None:
        return []
    return [
        (name, FILE_ROLES[name]) for name in sorted(p.name for p in Path(run_dir).iterdir() if p.name in FILE_ROLES)
    ]


def _baseline_name(name: str, record: RunRecord) -> str:
    """A baseline's row in the card; the zero-shot one says which checkpoint classified from the label names."""
    if name == "zero_shot" and record.zero_shot:
        return f"zero_shot baseline (`{record.zero_shot.checkpoint}` from label names, no training)"
    return f"{name} baseline"


def write_model_card(out_dir: Path, recipe: Recipe, record: RunRecord, metrics: dict) -> None:
    card = build_model_card(recipe, record, metrics, location=str(recipe.output_dir), run_dir=Path(out_dir))
    card.save(str(Path(out_dir) / "README.md"))
