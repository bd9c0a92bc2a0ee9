"""The recipe schema (model, data, strategy, train, eval, output, hub; source, baseline, zero_shot): YAML + overrides.

A recipe names components (`strategy: lora`, `train.optimizer: adamw`) from the project's registries; no value
is ever imported as a Python path, so a recipe downloaded from anywhere cannot run arbitrary code.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.resources
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

import yaml

from hf_transfer.config.schema import build_dataclass, to_dict
from hf_transfer.config.strategies import STRATEGY_CONFIGS, strategy_name
from hf_transfer.core.errors import RecipeError
from hf_transfer.core.registry import closest

TASKS = ("text-classification", "image-classification", "multimodal-classification")
# transformers' names (a model config's `problem_type`), so a pushed text model scores as its pipeline expects
ProblemType = Literal["single_label_classification", "multi_label_classification", "regression"]
PROBLEM_TYPES: tuple[str, ...] = get_args(ProblemType)
# accelerate's tracker names (LoggerType, less "all": a recipe says which trackers it reports to)
Tracker = Literal["tensorboard", "trackio", "wandb", "mlflow", "comet_ml", "aim", "clearml", "dvclive", "swanlab"]

# Closed sets of names, checked here from the schema alone; `hf_transfer.train.optim` maps the optimizer and scheduler
# names to implementations where the loop builds them (a test keeps both in step).
OptimizerName = Literal["adamw", "sgd"]
SchedulerName = Literal["linear", "cosine", "constant"]
SingleLabelMetric = Literal[
    "accuracy", "balanced_accuracy", "f1_macro", "precision_macro", "recall_macro", "roc_auc", "log_loss"
]
MultiLabelMetric = Literal[
    "f1_micro", "f1_macro", "f1_samples", "map_macro", "subset_accuracy", "hamming_loss", "roc_auc_macro"
]
RegressionMetric = Literal["mse", "rmse", "mae", "r2", "pearson", "spearman"]
MetricName = Literal[SingleLabelMetric, MultiLabelMetric, RegressionMetric]
OPTIMIZER_NAMES: tuple[str, ...] = get_args(OptimizerName)
SCHEDULER_NAMES: tuple[str, ...] = get_args(SchedulerName)
METRIC_NAMES: tuple[str, ...] = tuple(dict.fromkeys(get_args(MetricName)))
"""Scalar metric keys that a recipe may name as the metric for the best checkpoint."""
METRICS_OF_PROBLEM_TYPE: dict[str, tuple[str, ...]] = {
    "single_label_classification": get_args(SingleLabelMetric),
    "multi_label_classification": get_args(MultiLabelMetric),
    "regression": get_args(RegressionMetric),
}
# Single-label keeps the metric it always had; multi-label's macro F1 weighs rare labels like common ones; rmse is in
# the targets' own unit.
DEFAULT_METRIC: dict[str, str] = {
    "single_label_classification": "f1_macro",
    "multi_label_classification": "f1_macro",
    "regression": "rmse",
}


@dataclass
class ModelConfig:
    """Args:
    checkpoint: a Hub id, a local folder, or for timm a model name (`resnet18.a1_in1k`, `hf-hub:...`, `local-dir:...`).
    """

    checkpoint: str = field(default="", metadata={"help": "Hub id, local folder, or timm model name of the backbone."})
    library: Literal["auto", "transformers", "timm"] = field(
        default="auto",
        metadata={
            "help": "Which library loads the checkpoint; auto: transformers for text, and for images when the "
            "checkpoint's config.json has a transformers vision model_type, else timm."
        },
    )
    hub_id: str | None = field(
        default=None,
        metadata={"help": "The checkpoint's Hub id when `checkpoint` is a local folder (recorded as base_model)."},
    )
    revision: str | None = field(default=None, metadata={"help": "Hub revision (branch, tag or commit)."})
    pretrained: bool = field(default=True, metadata={"help": "Load pretrained weights (false: random init)."})
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Run code shipped with the checkpoint. Only for checkpoints you trust."}
    )

    # A multimodal recipe (task: multimodal-classification) gives two towers instead of one checkpoint: an image
    # backbone and a text backbone whose pooled features are fused. A dual-tower checkpoint (CLIP, SigLIP) may be
    # `model.checkpoint` alone, embedding both inputs itself (the recipe then fills in both towers with it).
    image: TowerConfig | None = field(
        default=None, metadata={"help": "Multimodal: the image tower (checkpoint, library, ...), e.g. a timm model."}
    )
    text: TowerConfig | None = field(
        default=None, metadata={"help": "Multimodal: the text tower (checkpoint, library, ...), a transformers model."}
    )
    fusion: Literal["concat", "gated"] = field(
        default="concat",
        metadata={
            "help": "Multimodal: how the towers' pooled features are joined: concat, or gated (a learned gate "
            "weighing each tower's projected features per unit, Arevalo et al.'s gated multimodal unit)."
        },
    )
    head_hidden: int | None = field(
        default=256,
        metadata={
            "range": "[1, inf)",
            "help": "Multimodal finetune / LoRA: hidden units of the head on the fused features (null: linear). A "
            "linear head on concatenated features only adds an image score to a text score, so it cannot tell "
            "whether the two agree.",
        },
    )

    def __post_init__(self):
        if not self.checkpoint and not (self.image or self.text):
            raise RecipeError("model.checkpoint is missing; set it to a Hub id or a local folder.")

    @property
    def towers(self) -> dict[str, ModelConfig]:
        """The multimodal towers that are set, by modality."""
        return {name: tower for name, tower in (("image", self.image), ("text", self.text)) if tower is not None}


# The keys of `model` that name one checkpoint (a tower, or a multimodal run's baseline on one tower).
SINGLE_KEYS = ("checkpoint", "library", "hub_id", "revision", "pretrained", "trust_remote_code")


@dataclass
class TowerConfig(ModelConfig):
    """One tower of a multimodal model (`model.image`, `model.text`): the keys of `model` that name a checkpoint."""

    def __post_init__(self):
        if self.image or self.text:
            raise RecipeError("towers do not nest; give image and text under model, not inside a tower.")
        if not self.checkpoint:
            raise RecipeError("checkpoint is missing; set it to a Hub id or a local folder.")


@dataclass
class DataConfig:
    """Where the examples come from and which columns hold what.

    Two held-out splits, named as in the Hugging Face datasets: `validation` picks the best checkpoint (by
    `eval.metric`), `test` is only reported on.
    """

    # Keys of an older release: `eval` meant the test split here but the validation metric in the eval section.
    RENAMED_KEYS: ClassVar[dict[str, tuple[str, ...]]] = {
        "eval_split": ("test_split",),
        "eval_files": ("test_files",),
        "max_eval_samples": ("max_validation_samples", "max_test_samples"),
    }

    dataset: str | None = field(
        default=None, metadata={"help": "Hub dataset id, or a builder such as imagefolder; omit for local files."}
    )
    config: str | None = field(default=None, metadata={"help": "Dataset configuration name (e.g. sst2 for glue)."})
    data_dir: str | None = field(default=None, metadata={"help": "Folder for builders such as imagefolder."})
    train_split: str = field(default="train", metadata={"help": "Split to train on."})
    validation_split: str | None = field(
        default=None, metadata={"help": "Split that picks the best checkpoint; carved from train when absent."}
    )
    test_split: str | None = field(
        default=None, metadata={"help": "Held-out split that is only reported on, never used to choose."}
    )
    train_files: list[str] = field(default_factory=list, metadata={"help": "Local csv/json/jsonl/parquet files."})
    validation_files: list[str] = field(default_factory=list, metadata={"help": "Local validation files."})
    test_files: list[str] = field(default_factory=list, metadata={"help": "Local held-out test files."})
    text_column: str = field(default="text", metadata={"help": "Column holding the text."})
    text_pair_column: str | None = field(default=None, metadata={"help": "Optional second text column."})
    image_column: str = field(default="image", metadata={"help": "Column holding images or image paths."})
    label_column: str = field(
        default="label",
        metadata={
            "help": "Column holding labels: strings or integers; for multi-label a list per row (or a separated "
            "string, see label_separator); for regression the numeric target."
        },
    )
    label_names: list[str] | None = field(
        default=None,
        metadata={"help": "Names for integer labels 0..K-1, in order (multi-label: every label a row may carry)."},
    )
    label_separator: str | None = field(
        default=None,
        metadata={"help": 'Multi-label: labels written as one string in label_column, e.g. "|" for "comedy|drama".'},
    )
    label_columns: list[str] | None = field(
        default=None,
        metadata={
            "help": "Multi-label: one 0/1 (or true/false) column per label, named after it (Jigsaw style); "
            "regression: several numeric target columns (multi-output). Replaces label_column."
        },
    )
    allow_empty_labels: bool = field(
        default=True,
        metadata={"help": "Multi-label: rows with no label are kept (and counted); false makes them an error."},
    )
    standardize_targets: bool = field(
        default=False,
        metadata={
            "help": "Regression: train on (y - mean) / std of the train split; the scaling is saved with the run "
            "and undone at prediction."
        },
    )
    validation_fraction: float = field(
        default=0.1,
        metadata={
            "range": "(0, 0.9)",
            "help": "Share of train carved (stratified) for validation when none is given.",
        },
    )
    max_train_samples: int | None = field(
        default=None, metadata={"range": "[1, inf)", "help": "Use at most this many train rows."}
    )
    train_samples_per_class: int | None = field(
        default=None,
        metadata={
            "range": "[1, inf)",
            "help": "Keep at most this many train rows per class (few-shot); multi-label: rows are kept while each "
            "of their labels has fewer than this many positives; not for regression, which has no classes.",
        },
    )
    max_validation_samples: int | None = field(
        default=None, metadata={"range": "[1, inf)", "help": "Use at most this many validation rows."}
    )
    max_test_samples: int | None = field(
        default=None, metadata={"range": "[1, inf)", "help": "Use at most this many test rows."}
    )
    max_length: int = field(default=128, metadata={"range": "[2, inf)", "help": "Truncate texts to this many tokens."})
    image_size: int | None = field(
        default=None,
        metadata={
            "range": "[8, inf)",
            "help": "Resize images to this square size instead of the model's pretrained input size.",
        },
    )
    augment: Literal["model", "light", "none"] = field(
        default="model",
        metadata={
            "help": "Image training augmentation: model (timm's: random crops from 8% of the image, flips, colour "
            "jitter), light (crops of 70-100%, no flip or jitter: digits, text, small centred images) or none."
        },
    )
    skip_bad_images: bool = field(
        default=False, metadata={"help": "Skip (and count) files that are not images instead of failing."}
    )

    def __post_init__(self):
        # A DataConfig without a source is valid on its own (a backbone reads only its columns and preprocessing);
        # a recipe's `data` must name one, which Recipe and SourceConfig check.
        if self.dataset and self.train_files:
            # Local files given on top of a shipped recipe's Hub dataset: the files win (and the record says so).
            self.dataset, self.config, self.data_dir = None, None, None
            self.validation_split = self.test_split = None
        if self.label_columns is not None:
            if not self.label_columns:
                raise RecipeError("data.label_columns is empty; name at least one column, or leave it out.")
            repeated = sorted({c for c in self.label_columns if self.label_columns.count(c) > 1})
            if repeated:
                raise RecipeError(f"data.label_columns names '{repeated[0]}' twice; list each column once.")
        if self.label_separator is not None and not self.label_separator:
            raise RecipeError('data.label_separator is empty; give the character between labels, e.g. "|".')


def check_problem_data(data: DataConfig, problem_type: str, where: str = "data") -> None:
    """The data keys that only one problem type reads, refused under another (one sentence each, naming both)."""
    single, multi = problem_type == "single_label_classification", problem_type == "multi_label_classification"
    if data.label_columns is not None and single:
        raise RecipeError(
            f"{where}.label_columns needs problem_type multi_label_classification (0/1 columns) or regression "
            f"(target columns); a single-label task reads one {where}.label_column."
        )
    if data.label_separator is not None and not multi:
        raise RecipeError(
            f"{where}.label_separator splits several labels per row, so it needs problem_type "
            "multi_label_classification; remove it or set problem_type."
        )
    if data.label_separator is not None and data.label_columns is not None:
        raise RecipeError(
            f"{where}.label_separator reads {where}.label_column, which {where}.label_columns replaces; keep one."
        )
    if data.standardize_targets and problem_type != "regression":
        raise RecipeError(
            f"{where}.standardize_targets scales regression targets; it needs problem_type regression, not "
            f"{problem_type}."
        )
    if not data.allow_empty_labels and not multi:
        raise RecipeError(
            f"{where}.allow_empty_labels is about multi-label rows with no label; it needs problem_type "
            "multi_label_classification."
        )
    if problem_type == "regression":
        if data.label_names is not None:
            raise RecipeError(
                f"{where}.label_names names classes, which regression has none of; the targets are named after "
                f"their columns ({where}.label_column or {where}.label_columns), so remove it."
            )
        if data.train_samples_per_class is not None:
            raise RecipeError(
                f"{where}.train_samples_per_class keeps rows per class, which regression has none of; use "
                f"{where}.max_train_samples instead."
            )
    if multi and data.label_columns is not None and data.label_names is not None:
        raise RecipeError(
            f"{where}.label_names is not read with {where}.label_columns: the labels are named after the columns; "
            "remove one of them."
        )


def require_data_source(data: DataConfig, where: str) -> None:
    if not data.dataset and not data.train_files:
        raise RecipeError(f"{where}: give either {where}.dataset (a Hub id or builder) or {where}.train_files.")


@dataclass
class TrainConfig:
    """The one training loop's settings, shared by every strategy."""

    epochs: int = field(default=3, metadata={"range": "[1, inf)", "help": "Passes over the training data."})
    batch_size: int = field(default=32, metadata={"range": "[1, inf)", "help": "Examples per step on each process."})
    learning_rate: float = field(default=5e-5, metadata={"range": "(0, inf)", "help": "Peak learning rate."})
    weight_decay: float = field(
        default=0.01, metadata={"range": "[0, inf)", "help": "Decoupled weight decay (not on biases/norms)."}
    )
    optimizer: OptimizerName = field(default="adamw", metadata={"help": "Registered optimizer: adamw or sgd."})
    momentum: float = field(default=0.9, metadata={"range": "[0, 1)", "help": "Momentum for sgd."})
    scheduler: SchedulerName = field(
        default="linear", metadata={"help": "Registered schedule: linear, cosine or constant."}
    )
    warmup_ratio: float = field(default=0.0, metadata={"range": "[0, 1)", "help": "Share of steps spent warming up."})
    gradient_accumulation_steps: int = field(
        default=1, metadata={"range": "[1, inf)", "help": "Steps to accumulate before an update."}
    )
    max_grad_norm: float | None = field(
        default=1.0, metadata={"range": "(0, inf)", "help": "Clip gradients to this norm (null: off)."}
    )
    mixed_precision: Literal["no", "bf16", "fp16", "auto"] = field(
        default="no",
        metadata={
            "help": "no, bf16, fp16, or auto: bf16 where the device computes it natively (a CUDA GPU with bf16, a CPU "
            "with AVX512-BF16 or AMX), else no."
        },
    )
    seed: int = field(
        default=42, metadata={"range": "[0, 4294967295]", "help": "Seed for data order, initialisation and dropout."}
    )
    early_stopping_patience: int | None = field(
        default=None, metadata={"range": "[1, inf)", "help": "Stop after this many evaluations without improvement."}
    )
    save_every_steps: int | None = field(
        default=None,
        metadata={"range": "[1, inf)", "help": "Also checkpoint every N optimizer steps (always at each epoch end)."},
    )
    group_by_length: bool = field(
        default=True, metadata={"help": "Batch texts of similar length together to pad less (text only)."}
    )
    class_weights: Literal["auto"] | list[float] | None = field(
        default=None,
        metadata={
            "range": "(0, inf)",
            "help": "Weighted loss: auto (inverse class frequency; multi-label: BCE pos_weight = negatives / "
            "positives per label) or one weight per class (multi-label: per label).",
        },
    )
    regression_loss: Literal["mse", "huber"] = field(
        default="mse",
        metadata={
            "help": "Loss of a regression run: mse, or huber (squared below train.huber_delta, linear above: "
            "outlying targets pull less)."
        },
    )
    huber_delta: float = field(
        default=1.0,
        metadata={
            "range": "(0, inf)",
            "help": "Where the huber loss turns linear, in the units the model trains on (standard deviations "
            "with data.standardize_targets).",
        },
    )
    sampler: Literal["random", "balanced", "undersample"] = field(
        default="random",
        metadata={
            "help": "balanced draws classes equally often (with replacement); undersample takes every row of the "
            "smallest class and as many of each other class, drawn afresh each epoch."
        },
    )
    log_every_steps: int = field(
        default=20, metadata={"range": "[1, inf)", "help": "Update the progress bar's loss every N steps."}
    )
    num_workers: int | Literal["auto"] = field(
        default="auto",
        metadata={
            "range": "[0, inf)",
            "help": "DataLoader worker processes. auto: half the cores (at most 8) for images, whose decoding and "
            "augmentation then run beside the model; 0 for text, tokenised in memory already, and wherever worker "
            "processes cannot start.",
        },
    )
    report_to: list[Tracker] = field(
        default_factory=list,
        metadata={
            "help": "Experiment trackers (accelerate's) that get the loss, learning rate, every evaluation metric, "
            "the final metrics and the recipe: tensorboard (event files in the run folder's runs/), trackio, "
            "wandb, mlflow, comet_ml, aim, clearml, dvclive or swanlab. Off when empty; read from the recipe's "
            "train section only, not source.train."
        },
    )


@dataclass
class EvalConfig:
    """Evaluation settings; the splits themselves are data.validation_* and data.test_*."""

    metric: MetricName | None = field(
        default=None,
        metadata={
            "help": "Metric on the validation split (data.validation_*) that picks the best checkpoint; null: "
            "f1_macro for classification (single- or multi-label), rmse for regression."
        },
    )
    batch_size: int | None = field(
        default=None, metadata={"range": "[1, inf)", "help": "Evaluation batch size (default 2x train)."}
    )


@dataclass
class OutputConfig:
    dir: str | None = field(default=None, metadata={"help": "Run folder (default outputs/<recipe name>)."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing run folder."})


@dataclass
class HubConfig:
    push: bool = field(default=False, metadata={"help": "Push the run to the Hub after training."})
    repo_id: str | None = field(default=None, metadata={"help": "Target repo, e.g. me/minilm-rt-lora."})
    private: bool = field(default=False, metadata={"help": "Create the repo as private."})
    revision: str | None = field(default=None, metadata={"help": "Branch to push to."})
    license: str | None = field(default=None, metadata={"help": "License for the model card (e.g. apache-2.0)."})

    def __post_init__(self):
        if self.push and not self.repo_id:
            raise RecipeError("hub.repo_id is missing while hub.push is true; set it, e.g. hub.repo_id=me/my-model.")


@dataclass
class SourceConfig:
    """A source task learnt first; its parameters are carried over to the target task with the head replaced.

    Args:
    data: the source dataset (same keys as the recipe's `data`).
    strategy: how the source task trains (finetune or lora; the backbone must change for transfer to happen).
    train: the source stage's loop settings.
    """

    data: DataConfig = field(default_factory=DataConfig, metadata={"help": "Source dataset."})
    strategy: Any = field(default="finetune", metadata={"help": "Source training strategy (finetune or lora)."})
    train: TrainConfig = field(default_factory=TrainConfig, metadata={"help": "Source stage's loop settings."})
    problem_type: ProblemType | None = field(
        default=None,
        metadata={
            "help": "The source task's problem type; null: the recipe's. The head is replaced, so any source type "
            "feeds any target type (a classification source can start a regression target)."
        },
    )

    def __post_init__(self):
        require_data_source(self.data, "source.data")


DEFAULT_ZERO_SHOT_TEMPLATES = {"image": ["a photo of a {label}."], "text": ["{label}"]}
"""The prompts a zero-shot baseline uses when `zero_shot.templates` is left out, per modality."""
ZERO_SHOT_TEMPERATURE = 0.05


@dataclass
class ZeroShotConfig:
    """The zero-shot classifier behind `baseline: [zero_shot]` and `hf-transfer rank --zero-shot`: no training, each
    label's prompts are embedded and every input goes to the label whose prompts it is most similar to.

    Args:
    checkpoint: a CLIP or SigLIP checkpoint (images or texts), or a sentence-embedding text encoder (texts, mean
        pooled); default the recipe's model.checkpoint.
    templates: prompts in which `{label}` is replaced by the label's name, or by each of its descriptions; nothing
        else in a template is special. Several are averaged (the mean of the normalised embeddings, normalised
        again, as in CLIP's paper). Default `a photo of a {label}.` for images, `{label}` for texts.
    descriptions: label name -> a text, or a list of texts, put in the templates instead of the name.
    temperature: texts only: the scores are softmax(cosine similarity / temperature); CLIP uses its learnt logit
        scale, SigLIP its sigmoid scores normalised to sum to 1.
    """

    checkpoint: str | None = field(
        default=None,
        metadata={"help": "CLIP / SigLIP checkpoint, or a sentence-embedding text encoder; default model.checkpoint."},
    )
    templates: list[str] | None = field(
        default=None,
        metadata={
            "help": "Prompts with {label} in them, averaged when several (default 'a photo of a {label}.' for "
            "images, '{label}' for texts)."
        },
    )
    descriptions: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "Label name -> text or list of texts that replace the name in the templates."},
    )
    temperature: float = field(
        default=ZERO_SHOT_TEMPERATURE,
        metadata={"range": "(0, inf)", "help": "Text encoders: scores are softmax(cosine / temperature)."},
    )

    def __post_init__(self):
        if self.templates is not None:
            if not self.templates:
                raise RecipeError(
                    "zero_shot.templates is an empty list; give at least one prompt such as 'a photo of a {label}.' "
                    "or leave the key out for the default."
                )
            for i, template in enumerate(self.templates):
                if not template.strip():
                    raise RecipeError(
                        f"zero_shot.templates[{i}] is empty; write a prompt with {{label}} in it, "
                        "e.g. 'a photo of a {label}.'."
                    )
                if "{label}" not in template:
                    raise RecipeError(
                        f"zero_shot.templates[{i}] '{template}' has no {{label}}; put {{label}} where the label's "
                        "name (or description) goes."
                    )
        for label, texts in self.descriptions.items():
            texts = [texts] if isinstance(texts, str) else texts
            if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t.strip() for t in texts):
                raise RecipeError(
                    f"zero_shot.descriptions.{label} must be a non-empty text or a list of non-empty texts, "
                    f"not {self.descriptions[label]!r}."
                )

    def templates_for(self, modality: str) -> list[str]:
        return list(self.templates) if self.templates is not None else list(DEFAULT_ZERO_SHOT_TEMPLATES[modality])

    def descriptions_of(self, label: str) -> list[str]:
        """What stands for `label` in the templates: its descriptions, or its name when it has none."""
        texts = self.descriptions.get(label, label)
        return [texts] if isinstance(texts, str) else list(texts)


@dataclass
class Recipe:
    name: str = "recipe"
    description: str = ""
    task: Literal["text-classification", "image-classification", "multimodal-classification"] = "text-classification"
    problem_type: ProblemType = "single_label_classification"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    strategy: Any = None
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    hub: HubConfig = field(default_factory=HubConfig)
    source: SourceConfig | None = None
    baseline: list[Literal["scratch", "head_only", "zero_shot", "image_only", "text_only"]] = field(
        default_factory=list
    )
    zero_shot: ZeroShotConfig | None = None

    def __post_init__(self):
        require_data_source(self.data, "data")
        check_problem_data(self.data, self.problem_type)
        check_fits_problem_type(self)
        if "zero_shot" in self.baseline and self.problem_type != "single_label_classification":
            raise RecipeError(
                f"baseline zero_shot picks one label per row from the label names, so it needs problem_type "
                f"single_label_classification, not {self.problem_type}; remove zero_shot from baseline."
            )
        multimodal = self.task == "multimodal-classification"
        if multimodal and self.model.checkpoint and not self.model.towers:
            # One dual encoder (CLIP, SigLIP): its image tower embeds the image and its text tower the text, so both
            # towers name it, and everything a two-tower run does (baselines, push, load-back) follows unchanged.
            keys = {f.name: getattr(self.model, f.name) for f in fields(TowerConfig) if f.name in SINGLE_KEYS}
            self.model = replace(self.model, image=TowerConfig(**keys), text=TowerConfig(**keys))
        if multimodal and not (self.model.image and self.model.text):
            if self.model.checkpoint:
                raise RecipeError(
                    "model.checkpoint with only one of model.image / model.text is ambiguous for "
                    "multimodal-classification; give model.checkpoint alone (a CLIP or SigLIP) or both towers."
                )
            missing = "model.image" if self.model.image is None else "model.text"
            raise RecipeError(
                f"{missing} is missing; task multimodal-classification needs model.image and model.text."
            )
        if not multimodal and self.model.towers:
            raise RecipeError(
                f"model.{next(iter(self.model.towers))} is only for task multimodal-classification; "
                "use model.checkpoint for a single backbone."
            )
        single = [b for b in self.baseline if b in ("image_only", "text_only")]
        if single and not multimodal:
            raise RecipeError(f"baseline {single[0]} is only for task multimodal-classification.")
        if multimodal and (self.source is not None or {"scratch", "head_only", "zero_shot"} & set(self.baseline)):
            raise RecipeError(
                "multimodal-classification takes baselines image_only and text_only, and no source stage."
            )

    @property
    def zero_shot_config(self) -> ZeroShotConfig:
        """The zero_shot section, its checkpoint defaulting to model.checkpoint."""
        config = self.zero_shot or ZeroShotConfig()
        return replace(config, checkpoint=config.checkpoint or self.model.checkpoint)

    @property
    def modality(self) -> str:
        return {"image-classification": "image", "multimodal-classification": "multimodal"}.get(self.task, "text")

    @property
    def source_problem_type(self) -> str:
        """The source stage's problem type: source.problem_type, else the recipe's."""
        return (self.source.problem_type if self.source else None) or self.problem_type

    @property
    def output_dir(self) -> Path:
        return Path(self.output.dir or Path("outputs") / self.name)

    def to_dict(self) -> dict:
        """The recipe as YAML holds it, every default filled in (strategies by name): loading it repeats the run."""
        data = to_dict(self)
        data["strategy"] = {"name": strategy_name(self.strategy), **data["strategy"]}
        if self.source is not None:
            data["source"]["strategy"] = {"name": strategy_name(self.source.strategy), **data["source"]["strategy"]}
        return data


def check_fits_problem_type(recipe: Recipe) -> None:
    """Fill in eval.metric for the problem type, and refuse the settings that do not apply to it."""
    problem = recipe.problem_type
    allowed = METRICS_OF_PROBLEM_TYPE[problem]
    if recipe.eval.metric is None:
        recipe.eval.metric = DEFAULT_METRIC[problem]
    elif recipe.eval.metric not in allowed:
        raise RecipeError(
            f"eval.metric '{recipe.eval.metric}' does not apply to problem_type {problem}; choose one of "
            f"{', '.join(allowed)}."
        )
    check_train_fits_problem_type(recipe.train, problem)
    if recipe.source is not None:
        source_problem = recipe.source_problem_type
        check_problem_data(recipe.source.data, source_problem, "source.data")
        check_train_fits_problem_type(recipe.source.train, source_problem, "source.train")


def check_train_fits_problem_type(train: TrainConfig, problem: str, where: str = "train") -> None:
    if problem == "single_label_classification":
        return
    if train.sampler != "random":
        kind = "regression targets have no classes" if problem == "regression" else "a row holds several labels"
        instead = f" with {where}.class_weights=auto instead." if problem != "regression" else "."
        raise RecipeError(
            f"{where}.sampler {train.sampler} draws rows by class, and {kind} ({problem}); use "
            f"{where}.sampler=random{instead}"
        )
    if problem == "regression" and train.class_weights is not None:
        raise RecipeError(f"{where}.class_weights weighs classes, and regression has none; leave it out.")


def check_strategy_fits_problem_type(strategy, problem: str, where: str = "strategy") -> None:
    if problem != "single_label_classification" and getattr(strategy, "smote", False):
        raise RecipeError(
            f"{where}.smote interpolates rows of one class, which {problem} does not have; set {where}.smote=false"
            + (" and use train.class_weights=auto instead." if problem != "regression" else ".")
        )


def strategy_config_from(value: Any, where: str = "strategy"):
    """The strategy section: `lora` or `{name: lora, r: 8}` -> the registered strategy's config dataclass."""
    if value is None:
        raise RecipeError(f"{where} is missing; choose one of {', '.join(STRATEGY_CONFIGS.names())}.")
    if dataclasses.is_dataclass(value):
        return value
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict) or "name" not in value:
        raise RecipeError(f"{where} must be a name (e.g. `{where}: lora`) or a mapping with a `name` key.")
    options = dict(value)
    name = options.pop("name")
    return build_dataclass(STRATEGY_CONFIGS.get(name, field=f"{where}.name"), options, where)


def recipe_from_dict(raw: dict, name: str = "recipe") -> Recipe:
    """A validated Recipe from a plain dict, every mistake reported with the field that holds it."""
    if not isinstance(raw, dict):
        raise RecipeError("a recipe must be a YAML mapping with sections model, data, strategy, train, ...")
    raw = copy.deepcopy(raw)
    known = [f.name for f in dataclasses.fields(Recipe)]
    for key in raw:
        if key not in known:
            raise RecipeError(
                f"unknown recipe key '{key}'{closest(key, known)}; valid sections are {', '.join(known)}."
            )
    recipe = build_dataclass(
        Recipe, {k: v for k, v in raw.items() if k not in ("strategy",)} | {"name": raw.get("name", name)}, ""
    )
    recipe.strategy = strategy_config_from(raw.get("strategy"))
    check_strategy_fits_problem_type(recipe.strategy, recipe.problem_type)
    if recipe.source is not None:
        recipe.source.strategy = strategy_config_from(recipe.source.strategy, "source.strategy")
        check_strategy_fits_problem_type(recipe.source.strategy, recipe.source_problem_type, "source.strategy")
        if strategy_name(recipe.source.strategy) in ("linear_probe",):
            raise RecipeError(
                "source.strategy linear_probe leaves the backbone unchanged, so nothing transfers; "
                "use finetune or lora."
            )
    return recipe


# ---------------------------------------------------------------------------------------------------------------
# Files, shipped recipes and command-line overrides


def recipes_root() -> Path:
    """The folder of shipped recipes, in a source checkout or an installed wheel."""
    try:
        packaged = importlib.resources.files("hf_transfer") / "recipes"
        if packaged.is_dir():
            return Path(str(packaged))
    except (ModuleNotFoundError, FileNotFoundError):
        pass
    return Path(__file__).resolve().parents[2] / "recipes"


def shipped_recipes() -> dict[str, Path]:
    root = recipes_root()
    return {str(p.relative_to(root).with_suffix("")): p for p in sorted(root.rglob("*.yaml"))}


def resolve_recipe_path(name_or_path: str) -> Path:
    """A shipped recipe's name (`sentiment/minilm-lora-rotten-tomatoes`) or a path to a YAML file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise RecipeError(f"recipe file '{name_or_path}' does not exist; `hf-transfer ls` lists shipped recipes.")
        return path
    shipped = shipped_recipes()
    if name_or_path in shipped:
        return shipped[name_or_path]
    raise RecipeError(
        f"no shipped recipe or file named '{name_or_path}'{closest(name_or_path, shipped)}; "
        "`hf-transfer ls` lists the shipped recipes."
    )


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise RecipeError(f"override '{text}' must look like section.key=value (e.g. train.epochs=2).")
    key, _, value = text.partition("=")
    path = [part for part in key.strip().split(".") if part]
    if not path:
        raise RecipeError(f"override '{text}' has no key before '='.")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        parsed = value
    return path, parsed


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """`raw` with each `a.b.c=value` applied (values parsed as YAML: 2, 1e-4, true, [a.csv, b.csv], null)."""
    raw = copy.deepcopy(raw)
    for text in overrides:
        path, value = parse_override(text)
        node = raw
        for i, part in enumerate(path[:-1]):
            child = node.get(part)
            if isinstance(child, str) and part == "strategy":  # `strategy: lora` then `strategy.r=16`
                child = {"name": child}
            if child is None:
                child = {}
            if not isinstance(child, dict):
                raise RecipeError(f"override '{text}': '{'.'.join(path[: i + 1])}' is not a section.")
            node[part] = child
            node = child
        node[path[-1]] = value
    return raw


def read_recipe_yaml(path: Path) -> dict:
    try:
        raw = yaml.safe_load(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise RecipeError(
            f"recipe '{path}' is not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset {err.start}); "
            "save it as UTF-8."
        ) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise RecipeError(f"recipe '{path}'{where} is not valid YAML: {getattr(err, 'problem', err)}.") from None
    except OSError as err:
        raise RecipeError(f"recipe '{path}' cannot be read: {err.strerror}.") from None
    if raw is None:
        raise RecipeError(
            f"recipe '{path}' is empty; start from a shipped one with `hf-transfer cp NAME {path}` "
            "(`hf-transfer ls` lists them)."
        )
    return raw


def load_recipe(name_or_path: str, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    path = resolve_recipe_path(name_or_path)
    raw = apply_overrides(read_recipe_yaml(path), list(overrides))
    return recipe_from_dict(raw, name=path.stem)


def recipe_header(path: Path) -> list[str]:
    """The leading comment lines of a recipe file, without '# '."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return lines
