"""The recipe schema: every shipped recipe validates, overrides apply, and every mistake names its field."""

from __future__ import annotations

import contextlib
import copy
import logging
import subprocess
import sys
import typing

import pytest
import yaml
from helpers import recipe_header
from hypothesis import given, settings
from hypothesis import strategies as st

from hf_transfer.config.loading import apply_overrides, load_recipe, shipped_recipes
from hf_transfer.config.recipe import recipe_from_dict
from hf_transfer.config.strategies import STRATEGY_CONFIGS, LinearProbeConfig, LoraStrategyConfig
from hf_transfer.core.errors import RecipeError
from hf_transfer.strategies.factory import STRATEGY_CLASSES

HEAVY_MODULES = ("torch", "transformers", "peft", "timm", "accelerate", "datasets", "sklearn", "matplotlib")

SHIPPED = shipped_recipes()


def minimal(**changes) -> dict:
    raw = {
        "model": {"checkpoint": "some/model"},
        "data": {"train_files": ["train.csv"]},
        "strategy": "lora",
    }
    for key, value in changes.items():
        raw[key] = value
    return raw


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_shipped_recipe_validates_and_shows_how_to_run_it(name):
    path = SHIPPED[name]
    recipe = load_recipe(name)
    assert recipe.name == path.stem
    assert recipe.description, f"{name} needs a one-line description for `hf-transfer ls`"
    header = recipe_header(path)
    runs = [line for line in header if line.startswith("Run:")]
    assert runs and runs[0] == f"Run:      hf-transfer run {name}"
    overrides = [line for line in header if line.startswith("Override:")]
    assert overrides, f"{name} should show one override example"
    # the override example parses into a valid recipe as well
    command = overrides[0].removeprefix("Override:").split()
    assert command[:3] == ["hf-transfer", "run", name]
    load_recipe(name, command[3:])


def test_there_are_shipped_recipes_for_the_core_strategies():
    assert {
        "sentiment/minilm-linear-probe-rotten-tomatoes",
        "sentiment/minilm-finetune-rotten-tomatoes",
        "sentiment/minilm-lora-rotten-tomatoes",
        "sentiment/bert-base-lora-sst2",
    } <= set(SHIPPED)


def test_strategy_shorthand_and_overrides():
    raw = apply_overrides(minimal(), ["strategy.r=16", "train.learning_rate=1e-4", "data.train_files=[a.csv, b.csv]"])
    recipe = recipe_from_dict(raw)
    assert isinstance(recipe.strategy, LoraStrategyConfig)
    assert recipe.strategy.r == 16
    assert recipe.train.learning_rate == pytest.approx(1e-4)  # YAML 1.1 reads 1e-4 as a string; the schema fixes it
    assert recipe.data.train_files == ["a.csv", "b.csv"]
    probe = recipe_from_dict(apply_overrides(minimal(), ["strategy=linear_probe", "strategy.pooling=cls"]))
    assert isinstance(probe.strategy, LinearProbeConfig) and probe.strategy.pooling == "cls"


def test_local_files_override_a_hub_dataset():
    raw = minimal(data={"dataset": "org/data", "test_split": "test"})
    recipe = recipe_from_dict(apply_overrides(raw, ["data.train_files=train.csv"]))
    assert recipe.data.dataset is None and recipe.data.test_split is None
    assert recipe.data.train_files == ["train.csv"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.epoch=2"], "unknown recipe key 'train.epoch' (did you mean 'epochs'?)"),
        (["trian.epochs=2"], "unknown recipe key 'trian' (did you mean 'train'?)"),
        (["train.epochs=two"], "train.epochs must be an integer, not 'two'"),
        (["train.learning_rate=fast"], "train.learning_rate must be a number, not 'fast'"),
        (["train.mixed_precision=fp8"], "train.mixed_precision must be one of 'no', 'bf16', 'fp16'"),
        (["strategy=lorra"], "strategy.name: unknown strategy 'lorra' (did you mean 'lora'?)"),
        (["strategy.rank=4"], "unknown recipe key 'strategy.rank'"),
        (["strategy.r=0"], "strategy.r must be at least 1"),
        (
            ["train.optimizer=adam"],
            "train.optimizer must be one of 'adamw', 'sgd', not 'adam' (did you mean 'adamw'?)",
        ),
        (
            ["train.scheduler=cosin"],
            "train.scheduler must be one of 'linear', 'cosine', 'constant', not 'cosin' (did you mean 'cosine'?)",
        ),
        (["eval.metric=f1"], "eval.metric must be one of 'accuracy',"),
        (["eval.metric=f1_macr"], "not 'f1_macr' (did you mean 'f1_macro'?)"),
        (["model.checkpoint="], "model.checkpoint must be a string, not None"),
        (["model={}"], "model.checkpoint is missing"),
        (["hub.push=true"], "hub.repo_id is missing"),
        (["data.validation_fraction=0.95"], "data.validation_fraction must be between 0 and 0.9"),
        (["train.epochs"], "override 'train.epochs' must look like section.key=value"),
    ],
)
def test_mistakes_name_the_field(overrides, message):
    with pytest.raises(RecipeError) as info:
        recipe_from_dict(apply_overrides(minimal(), overrides))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_sections_and_unknown_shipped_names():
    with pytest.raises(RecipeError, match="data: give either data.dataset"):
        recipe_from_dict({"model": {"checkpoint": "x"}, "strategy": "lora"})
    with pytest.raises(RecipeError, match=r"source.data: give either source.data.dataset .* or source.data.train_"):
        recipe_from_dict(minimal(source={"data": {"text_column": "t"}}))
    with pytest.raises(RecipeError, match="strategy is missing"):
        recipe_from_dict({"model": {"checkpoint": "x"}, "data": {"train_files": ["a.csv"]}})
    with pytest.raises(RecipeError, match="did you mean 'sentiment/minilm-lora-rotten-tomatoes'"):
        load_recipe("sentiment/minilm-lora-rotten-tomatoe")
    with pytest.raises(RecipeError, match="recipe file 'nope.yaml' does not exist"):
        load_recipe("nope.yaml")


def test_invalid_yaml_names_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  checkpoint: [unclosed\n")
    with pytest.raises(RecipeError, match=r"bad.yaml' line \d+ is not valid YAML"):
        load_recipe(str(path))


@pytest.mark.parametrize(
    "module",
    ["hf_transfer.config.loading", "hf_transfer.config.strategies"],
)
def test_the_schema_and_strategy_configs_import_nothing_heavy(module):
    # In a fresh process: this one has long since imported torch through other tests.
    code = (
        f"import sys, {module}\n"
        f"from hf_transfer.config.loading import load_recipe\n"
        f"for name in {sorted(SHIPPED)!r}: load_recipe(name)\n"
        f"loaded = [m for m in {HEAVY_MODULES!r} if m in sys.modules]\n"
        f"assert not loaded, loaded"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_every_strategy_config_has_its_strategy_and_back():
    classes = STRATEGY_CLASSES
    assert sorted(classes) == STRATEGY_CONFIGS.names()
    for name, cls in classes.items():
        assert cls.name == name and cls.config_class is STRATEGY_CONFIGS.get(name)
        recipe = recipe_from_dict(minimal(strategy=name))
        assert recipe.to_dict()["strategy"]["name"] == name
        assert recipe_from_dict(recipe.to_dict()).strategy == recipe.strategy


def test_schema_names_are_the_ones_the_loop_builds():
    from hf_transfer.config.names import OPTIMIZER_NAMES, SCHEDULER_NAMES
    from hf_transfer.config.sections import EvalConfig, TrainConfig
    from hf_transfer.metrics.classification import classification_metrics
    from hf_transfer.problems import PROBLEM_TYPES, all_metric_names, problem_type
    from hf_transfer.train.optim import OPTIMIZERS, SCHEDULERS

    hints = typing.get_type_hints(TrainConfig)
    assert typing.get_args(hints["optimizer"]) == OPTIMIZER_NAMES
    metric, _none = typing.get_args(typing.get_type_hints(EvalConfig)["metric"])
    assert typing.get_args(metric) == all_metric_names()
    assert set(all_metric_names()) == {name for p in PROBLEM_TYPES.values() for name in p.metric_names}
    assert OPTIMIZERS.names() == sorted(OPTIMIZER_NAMES)
    assert SCHEDULERS.names() == sorted(SCHEDULER_NAMES)
    metrics = classification_metrics([0, 1, 1], [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], ["a", "b"])
    single_label = problem_type("single_label_classification")
    assert all(isinstance(metrics[name], float) for name in single_label.metric_names)


# ---------------------------------------------------------------------------------------------------------------
# Renamed keys: the old names load for one release, each with a warning that names the new key


@given(
    split=st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12),
    files=st.lists(st.from_regex(r"[a-z]{1,8}\.csv", fullmatch=True), min_size=1, max_size=3),
    cap=st.integers(1, 10**6),
)
@settings(max_examples=25, deadline=None)
def test_old_data_keys_load_under_their_new_names_with_a_warning_naming_them(split, files, cap):
    dataset = {"dataset": "org/data", "eval_split": split, "max_eval_samples": cap}
    local = {"train_files": ["train.csv"], "eval_files": files}
    with capture_warnings() as records:
        on_hub = recipe_from_dict(minimal(data=dataset)).data
        on_disk = recipe_from_dict(minimal(data=local)).data
    assert on_hub.test_split == split
    assert on_hub.max_validation_samples == on_hub.max_test_samples == cap
    assert on_disk.test_files == files
    messages = [r.getMessage() for r in records]
    assert any("data.eval_split is deprecated" in m and "use data.test_split" in m for m in messages)
    assert any("data.eval_files is deprecated" in m and "use data.test_files" in m for m in messages)
    assert any("use data.max_validation_samples and data.max_test_samples" in m for m in messages)


def test_the_renamed_keys_of_a_source_section_load_too():
    source = {"data": {"train_files": ["s.csv"], "eval_files": ["t.csv"]}, "strategy": "finetune"}
    assert recipe_from_dict(minimal(source=source)).source.data.test_files == ["t.csv"]


@pytest.mark.parametrize(
    ("in_file", "override", "expected"),
    [
        ({"eval_split": "old"}, "data.test_split=new", "new"),
        ({"test_split": "new"}, "data.eval_split=old", "old"),
    ],
)
def test_a_command_line_override_wins_over_the_file_whichever_name_either_uses(in_file, override, expected):
    raw = apply_overrides(minimal(data={"dataset": "org/data", **in_file}), [override])
    assert recipe_from_dict(raw).data.test_split == expected


def test_a_recipe_records_only_the_new_names():
    data = recipe_from_dict(minimal(data={"train_files": ["a.csv"], "eval_files": ["b.csv"]})).to_dict()["data"]
    assert data["test_files"] == ["b.csv"]
    assert not {"eval_split", "eval_files", "max_eval_samples"} & set(data)


@contextlib.contextmanager
def capture_warnings():
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    schema_logger = logging.getLogger("hf_transfer.config.schema")
    schema_logger.addHandler(handler)
    try:
        yield records
    finally:
        schema_logger.removeHandler(handler)


def test_resume_accepts_a_work_folder_recipe_recorded_with_the_old_names_and_still_sees_changes(tmp_path):
    from hf_transfer.runs.folder import RECIPE_FILE, check_resume_recipe

    current = recipe_from_dict(minimal(data={"train_files": ["a.csv"], "test_files": ["b.csv"]})).to_dict()
    saved = copy.deepcopy(current)
    saved["data"]["eval_files"] = saved["data"].pop("test_files")
    saved["data"]["eval_split"] = saved["data"].pop("test_split")
    saved["data"].pop("max_test_samples")
    saved["data"]["max_eval_samples"] = saved["data"].pop("max_validation_samples")
    (tmp_path / RECIPE_FILE).write_text(yaml.safe_dump(saved, sort_keys=False))
    check_resume_recipe(tmp_path, current)

    changed = copy.deepcopy(current)
    changed["data"]["test_files"] = ["c.csv"]
    with pytest.raises(RecipeError, match=r"differs from the interrupted run in data\.test_files"):
        check_resume_recipe(tmp_path, changed)


@pytest.mark.parametrize("written", ["train.mixed_precision=no", "train.mixed_precision=off"])
def test_yaml_booleans_read_as_the_word_a_choice_field_offers(written, tmp_path):
    # YAML 1.1 turns an unquoted `no` into false: `mixed_precision: no` (Accelerate's own word) must stay "no".
    assert recipe_from_dict(apply_overrides(minimal(), [written])).train.mixed_precision == "no"
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(minimal()) + "train:\n  mixed_precision: no\n")
    assert load_recipe(str(path)).train.mixed_precision == "no"
    with pytest.raises(RecipeError, match="train.mixed_precision must be one of"):
        recipe_from_dict(apply_overrides(minimal(), ["train.mixed_precision=yes"]))
