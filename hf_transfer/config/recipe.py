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

from hf_transfer.config.names import ProblemTypeName
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
from hf_transfer.problems import SingleLabel, problem_type


@dataclass
class Recipe:
    name: str = "recipe"
    description: str = ""
    task: Literal["text-classification", "image-classification", "multimodal-classification"] = "text-classification"
    problem_type: ProblemTypeName = SingleLabel.name
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
        problem_type(self.problem_type).check_data(self.data)
        check_fits_problem_type(self)
        problem_type(self.problem_type).check_baselines(self.baseline)
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
    """Fill in eval.metric for the problem type (its default metric), and refuse the settings that do not apply to
    it: the problem type says which (`ProblemType.metric_names`, `check_train`, `check_data`)."""
    problem = problem_type(recipe.problem_type)
    if recipe.eval.metric is None:
        recipe.eval.metric = problem.default_metric
    elif recipe.eval.metric not in problem.metric_names:
        raise RecipeError(
            f"eval.metric '{recipe.eval.metric}' does not apply to problem_type {problem.name}; choose one of "
            f"{', '.join(problem.metric_names)}."
        )
    problem.check_train(recipe.train)
    if recipe.source is not None:
        source_problem = problem_type(recipe.source_problem_type)
        source_problem.check_data(recipe.source.data, "source.data")
        source_problem.check_train(recipe.source.train, "source.train")


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
    problem_type(recipe.problem_type).check_strategy(recipe.strategy)
    if recipe.source is not None:
        recipe.source.strategy = strategy_config_from(recipe.source.strategy, "source.strategy")
        problem_type(recipe.source_problem_type).check_strategy(recipe.source.strategy, "source.strategy")
        if strategy_name(recipe.source.strategy) in ("linear_probe",):
            raise RecipeError(
                "source.strategy linear_probe leaves the backbone unchanged, so nothing transfers; "
                "use finetune or lora."
            )
    return recipe
