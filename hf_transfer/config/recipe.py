"""The recipe: its sections put together (model, data, strategy, train, eval, output, hub; source, baseline,
zero_shot), and the rules that join them.

A recipe names components (`strategy: lora`, `train.optimizer: adamw`) from the project's registries; no value
is ever imported as a Python path, so a recipe downloaded from anywhere cannot run arbitrary code.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from hf_transfer.config.names import DEFAULT_METRIC, METRICS_OF_PROBLEM_TYPE, ProblemType
from hf_transfer.config.schema import build_dataclass, to_dict
from hf_transfer.config.sections import (
    SINGLE_KEYS,
    DataConfig,
    EvalConfig,
    HubConfig,
    ModelConfig,
    OutputConfig,
    SourceConfig,
    TowerConfig,
    TrainConfig,
    require_data_source,
)
from hf_transfer.config.strategies import STRATEGY_CONFIGS, strategy_name
from hf_transfer.config.zero_shot import ZeroShotConfig
from hf_transfer.core.errors import RecipeError
from hf_transfer.core.registry import closest


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
