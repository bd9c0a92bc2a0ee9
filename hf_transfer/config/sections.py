"""The recipe's sections (model, data, train, eval, output, hub, source): typed dataclasses whose fields carry
their help text and ranges, checked by the generic schema."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from hf_transfer.config.names import MetricName, OptimizerName, ProblemTypeName, SchedulerName, Tracker
from hf_transfer.core.errors import RecipeError


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
    problem_type: ProblemTypeName | None = field(
        default=None,
        metadata={
            "help": "The source task's problem type; null: the recipe's. The head is replaced, so any source type "
            "feeds any target type (a classification source can start a regression target)."
        },
    )

    def __post_init__(self):
        require_data_source(self.data, "source.data")
