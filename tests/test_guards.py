"""Guards a user meets before anything is trained or written: overwrite only replaces run folders, every numeric
setting has a range, mistakes are one sentence (not a traceback), --resume refuses an edited recipe, and a push
dry run refuses what a real push refuses."""

from __future__ import annotations

import dataclasses
import math
import re
import shutil
import typing
from pathlib import Path

import pytest
import yaml
from crashes import Crash, CrashAtStep
from helpers import text_recipe
from hypothesis import given, settings
from hypothesis import strategies as st

import hf_transfer
import hf_transfer.hub.access as hub_access
import hf_transfer.hub.push as hub_push
from hf_transfer.apps.cli import main
from hf_transfer.config.loading import load_recipe
from hf_transfer.config.recipe import Recipe, recipe_from_dict
from hf_transfer.config.sections import SourceConfig, TowerConfig
from hf_transfer.config.strategies import STRATEGY_CONFIGS
from hf_transfer.core.errors import HfTransferError, HubError, RecipeError
from hf_transfer.runs.folder import METADATA_FILE, check_can_write


def minimal(**sections) -> dict:
    return {"model": {"checkpoint": "x"}, "data": {"train_files": ["a.csv"]}, "strategy": "lora"} | sections


def last_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    return err[-1] if err else ""


# ---------------------------------------------------------------------------------------------------------------
# Item 2: output.overwrite replaces a run folder and nothing else


def test_overwrite_refuses_a_folder_that_is_not_a_run(tmp_path, tiny_bert_dir, keyword_csvs, capsys):
    victim = tmp_path / "victim"
    (victim / "sub").mkdir(parents=True)
    (victim / "important.txt").write_text("keep")
    recipe = text_recipe(tmp_path, tiny_bert_dir, keyword_csvs, "linear_probe", train={"epochs": 1})
    assert main(["run", str(recipe), f"output.dir={victim}", "output.overwrite=true"]) == 2
    err = last_error_line(capsys)
    assert err.startswith("error: ") and str(victim) in err and "not an hf-transfer run folder" in err
    assert (victim / "important.txt").read_text() == "keep" and (victim / "sub").is_dir()
    assert not (tmp_path / "victim.incomplete").exists()


def test_overwrite_refuses_a_file(tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("keep")
    with pytest.raises(HfTransferError, match="not an hf-transfer run folder"):
        check_can_write(target, overwrite=True, resume=False)
    assert target.read_text() == "keep"


def test_overwrite_accepts_a_previous_run_folder_or_an_empty_one(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / METADATA_FILE).write_text("{}")
    check_can_write(run, overwrite=True, resume=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    check_can_write(empty, overwrite=True, resume=False)


@pytest.mark.parametrize("folder", [".", "/", ".."])
def test_output_dir_that_is_the_current_folder_or_above_is_one_sentence(
    folder, tmp_path, monkeypatch, tiny_bert_dir, keyword_csvs, capsys
):
    work = tmp_path / "work"
    work.mkdir()
    (work / "keep.txt").write_text("keep")
    monkeypatch.chdir(work)
    recipe = text_recipe(tmp_path, tiny_bert_dir, keyword_csvs, "linear_probe", train={"epochs": 1})
    assert main(["run", str(recipe), f"output.dir={folder}", "output.overwrite=true"]) == 2
    err = last_error_line(capsys)
    assert err.startswith("error: output.dir") and f"'{folder}'" in err
    assert (work / "keep.txt").read_text() == "keep"


# ---------------------------------------------------------------------------------------------------------------
# Item 3: every numeric field has a range; NaN and inf never pass


def _schema_classes() -> list[type]:
    seen, todo = [], [Recipe, SourceConfig, *(STRATEGY_CONFIGS.get(n) for n in STRATEGY_CONFIGS.names())]
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.append(cls)
        for hint in typing.get_type_hints(cls).values():
            for tp in (hint, *typing.get_args(hint)):
                if dataclasses.is_dataclass(tp):
                    todo.append(tp)
    return seen


def _is_numeric(hint) -> bool:
    if hint in (int, float):
        return True
    return any(_is_numeric(arg) for arg in typing.get_args(hint))


def _numeric_fields() -> list[tuple[type, dataclasses.Field]]:
    out = []
    for cls in _schema_classes():
        hints = typing.get_type_hints(cls)
        out += [(cls, f) for f in dataclasses.fields(cls) if _is_numeric(hints[f.name])]
    return out


def test_every_numeric_field_of_every_schema_dataclass_has_a_range():
    from hf_transfer.config.schema import numeric_range

    fields = _numeric_fields()
    names = {f"{cls.__name__}.{f.name}" for cls, f in fields}
    # The walk reaches the sections, the strategies and the source stage.
    assert {"TrainConfig.max_grad_norm", "EvalConfig.batch_size", "LoraStrategyConfig.r"} <= names
    assert {"FinetuneConfig.layer_decay", "LinearProbeConfig.dropout", "DataConfig.max_length"} <= names
    missing = [f"{cls.__name__}.{f.name}" for cls, f in fields if numeric_range(f) is None]
    assert missing == []
    for cls, f in fields:  # and the defaults sit inside their own range
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            assert numeric_range(f).contains(default), f"{cls.__name__}.{f.name}"


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("train.max_grad_norm=-1", "train.max_grad_norm"),
        ("train.max_grad_norm=0", "train.max_grad_norm"),
        ("train.learning_rate=.nan", "train.learning_rate"),
        ("train.learning_rate=.inf", "train.learning_rate"),
        ("train.learning_rate=nan", "train.learning_rate"),
        ("train.weight_decay=-0.01", "train.weight_decay"),
        ("train.momentum=1.5", "train.momentum"),
        ("train.num_workers=-1", "train.num_workers"),
        ("train.seed=-1", "train.seed"),
        ("train.class_weights=[1.0,-2.0]", "train.class_weights"),
        ("eval.batch_size=0", "eval.batch_size"),
        ("data.max_length=1", "data.max_length"),
        ("strategy.r=0", "strategy.r"),
        ("strategy.alpha=-8", "strategy.alpha"),
        ("strategy.dropout=1.0", "strategy.dropout"),
        ("strategy=finetune strategy.layer_decay=.nan", "strategy.layer_decay"),
        ("strategy=finetune strategy.unfreeze_last_n=-1", "strategy.unfreeze_last_n"),
        ("strategy=linear_probe strategy.hidden_size=0", "strategy.hidden_size"),
        ("strategy=linear_probe strategy.extract_batch_size=0", "strategy.extract_batch_size"),
    ],
)
def test_settings_outside_their_range_name_the_field_and_the_range(override, field):
    from hf_transfer.config.loading import apply_overrides

    with pytest.raises(RecipeError) as info:
        recipe_from_dict(apply_overrides(minimal(), override.split()))
    message = str(info.value)
    assert message.startswith(field + " must be"), message
    assert "\n" not in message


def test_source_stage_settings_are_checked_too():
    with pytest.raises(RecipeError, match=r"^source\.train\.max_grad_norm must be"):
        recipe_from_dict(minimal(source={"data": {"train_files": ["s.csv"]}, "train": {"max_grad_norm": -1}}))


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_nan_and_inf_are_refused_for_every_numeric_field(data):
    # A tower (model.image / model.text) is a ModelConfig: its numeric fields are drawn, and checked, as model's.
    fields_ = [(c, f) for c, f in _numeric_fields() if c not in (SourceConfig, TowerConfig)]
    cls, f = data.draw(st.sampled_from(fields_))
    bad = data.draw(st.sampled_from([math.nan, math.inf, -math.inf]))
    value = [bad] if f.name == "class_weights" else bad
    section = {
        "TrainConfig": "train",
        "EvalConfig": "eval",
        "DataConfig": "data",
        "OutputConfig": "output",
        "HubConfig": "hub",
        "ModelConfig": "model",
        "ZeroShotConfig": "zero_shot",
    }.get(cls.__name__)
    raw = minimal()
    if section:
        raw[section] = dict(raw.get(section) or {}) | {f.name: value}
        where = f"{section}.{f.name}"
    else:
        name = next(n for n in STRATEGY_CONFIGS.names() if STRATEGY_CONFIGS.get(n) is cls)
        raw["strategy"] = {"name": name, f.name: value}
        where = f"strategy.{f.name}"
    with pytest.raises(RecipeError) as info:
        recipe_from_dict(raw)
    assert str(info.value).startswith(where + " must be")


@settings(max_examples=60, deadline=None)
@given(value=st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6))
def test_max_grad_norm_is_accepted_exactly_when_positive(value):
    raw = minimal(train={"max_grad_norm": value})
    if value > 0:
        assert recipe_from_dict(raw).train.max_grad_norm == value
    else:
        with pytest.raises(RecipeError, match="train.max_grad_norm must be"):
            recipe_from_dict(raw)


def test_max_grad_norm_null_still_turns_clipping_off():
    assert recipe_from_dict(minimal(train={"max_grad_norm": None})).train.max_grad_norm is None


# ---------------------------------------------------------------------------------------------------------------
# Item 5: messages instead of tracebacks


def test_a_recipe_that_is_not_utf8_is_one_sentence(tmp_path, capsys):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("description: caf\xe9\nmodel: {checkpoint: x}\n".encode("latin-1"))
    with pytest.raises(RecipeError, match=r"latin1.yaml' is not UTF-8 text \(byte 0xe9 at offset \d+\)"):
        load_recipe(str(path))
    assert main(["validate", str(path)]) == 2
    assert "UTF-8" in last_error_line(capsys)


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_an_empty_recipe_says_it_is_empty(tmp_path, text):
    path = tmp_path / "empty.yaml"
    path.write_text(text)
    with pytest.raises(RecipeError, match=r"empty.yaml' is empty"):
        load_recipe(str(path))


@pytest.mark.parametrize("command", ["predict", "eval"])
@pytest.mark.parametrize("size", ["0", "-3"])
def test_batch_size_below_one_is_one_sentence(command, size, tmp_path, capsys):
    extra = ["some text"] if command == "predict" else ["--data", str(tmp_path / "x.csv")]
    assert main([command, str(tmp_path), *extra, "--batch-size", size]) == 2
    assert last_error_line(capsys) == f"error: --batch-size must be at least 1, not {size}."


def test_validate_reports_a_missing_data_file(tmp_path, tiny_bert_dir, keyword_csvs, capsys):
    recipe = text_recipe(tmp_path, tiny_bert_dir, keyword_csvs, "lora")
    assert main(["validate", str(recipe), "data.test_files=nope.csv"]) == 2
    err = last_error_line(capsys)
    assert "data.test_files" in err and "'nope.csv' does not exist" in err
    assert "valid" not in capsys.readouterr().out


def test_validate_reports_a_missing_local_checkpoint(tmp_path, tiny_bert_dir, keyword_csvs, capsys):
    recipe = text_recipe(tmp_path, tiny_bert_dir, keyword_csvs, "lora")
    missing = tmp_path / "models" / "gone"
    assert main(["validate", str(recipe), f"model.checkpoint={missing}"]) == 2
    err = last_error_line(capsys)
    assert f"model.checkpoint '{missing}'" in err and "does not exist" in err
    assert main(["validate", str(recipe)]) == 0
    assert "valid" in capsys.readouterr().out


@pytest.mark.parametrize("checkpoint", ["../models/nope", "models/minilm/v2", "./nope", "local-dir:nope"])
def test_a_missing_local_checkpoint_is_reported_as_a_path_before_the_data(
    checkpoint, tmp_path, monkeypatch, tiny_bert_dir, keyword_csvs, capsys
):
    import hf_transfer.data.splits as splits

    def no_data(*args, **kwargs):
        raise AssertionError("data loaded before the checkpoint was checked")

    monkeypatch.setattr(splits, "load_raw_splits", no_data)
    monkeypatch.chdir(tmp_path)
    recipe = text_recipe(tmp_path, tiny_bert_dir, keyword_csvs, "finetune", train={"epochs": 1})
    assert main(["run", str(recipe), f"model.checkpoint={checkpoint}"]) == 2
    err = last_error_line(capsys)
    assert f"model.checkpoint '{checkpoint}'" in err and "does not exist" in err
    assert "Repo id" not in err and "repo_id" not in err


def test_a_hub_id_is_not_mistaken_for_a_missing_path():
    from hf_transfer.core.paths import check_local_checkpoint

    check_local_checkpoint("sentence-transformers/all-MiniLM-L6-v2")
    check_local_checkpoint("resnet18.a1_in1k")
    check_local_checkpoint("hf-hub:timm/resnet18.a1_in1k")


@given(
    namespace=st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9_-]{0,9}[A-Za-z0-9])?", fullmatch=True),  # no id ends in - or .
    name=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,10}[A-Za-z0-9]", fullmatch=True),
    prefix=st.sampled_from(["./", "../", "/", "~/"]),
)
@settings(max_examples=50, deadline=None)
def test_one_repo_id_check_for_push_download_and_the_card(namespace, name, prefix):
    from hf_transfer.core.paths import is_repo_id
    from hf_transfer.runs.card import _is_hub_id

    repo_id = f"{namespace}/{name}"
    if ".." in name or "--" in repo_id:
        return  # huggingface_hub refuses these spellings on their own
    assert is_repo_id(repo_id, namespaced=True) and hub_access.is_hub_repo_id(repo_id) and _is_hub_id(repo_id)
    assert is_repo_id(name) and not is_repo_id(name, namespaced=True)  # a canonical dataset, not a push target
    path = prefix + repo_id
    assert not is_repo_id(path) and not hub_access.is_hub_repo_id(path) and not _is_hub_id(path)
    assert hub_push.base_model_of(None, override=repo_id) == repo_id
    with pytest.raises(HubError, match=r"--base-model '.*' is not a Hub repo id"):
        hub_push.base_model_of(None, override=path)


# --- --resume checks the recipe it resumes against the one saved ----------------------------------------------


@pytest.fixture
def crashed_lora_run(tmp_path, tiny_bert_dir, keyword_csvs):
    recipe = text_recipe(tmp_path, tiny_bert_dir, keyword_csvs, {"name": "lora", "r": 8}, train={"epochs": 2})
    with pytest.raises(Crash):
        hf_transfer.run(str(recipe), callbacks=[CrashAtStep(3)])
    work = tmp_path / "outputs" / "run.incomplete"
    assert (work / "recipe.yaml").is_file()
    return recipe, work


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        (["strategy.r=4"], "strategy.r"),  # shapes change: today a traceback from load_state
        (["train.learning_rate=0.01"], "train.learning_rate"),  # shapes fit: today it resumes silently
        (["train.epochs=3", "data.max_length=64"], "data.max_length, train.epochs"),
    ],
)
def test_resume_after_an_edit_that_changes_training_is_refused_naming_the_keys(
    crashed_lora_run, overrides, named, capsys
):
    recipe, work = crashed_lora_run
    before = sorted(p.relative_to(work).as_posix() for p in work.rglob("*"))
    assert main(["run", str(recipe), *overrides, "--resume"]) == 2
    err = last_error_line(capsys)
    assert err.startswith("error: ") and f"differs from the interrupted run in {named}" in err
    assert sorted(p.relative_to(work).as_posix() for p in work.rglob("*")) == before  # nothing touched


def test_resume_ignores_keys_that_cannot_change_the_training(crashed_lora_run):
    recipe, work = crashed_lora_run
    run_dir = hf_transfer.run(
        str(recipe), ["hub.private=true", "train.log_every_steps=1", "output.overwrite=true"], resume=True
    )
    assert (run_dir / METADATA_FILE).is_file() and not work.exists()


def test_resume_accepts_a_run_recorded_before_keys_with_defaults_were_added(crashed_lora_run):
    recipe, work = crashed_lora_run
    saved = yaml.safe_load((work / "recipe.yaml").read_text())
    del saved["problem_type"], saved["strategy"]["towers"]  # what an older hf-transfer recorded
    (work / "recipe.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    run_dir = hf_transfer.run(str(recipe), ["output.overwrite=true"], resume=True)
    assert (run_dir / METADATA_FILE).is_file() and not work.exists()


def test_resume_refuses_a_work_folder_that_no_run_started(tmp_path, tiny_bert_dir, keyword_csvs, capsys):
    recipe = text_recipe(tmp_path, tiny_bert_dir, keyword_csvs, "linear_probe", train={"epochs": 1})
    stranger = tmp_path / "outputs" / "run.incomplete"
    stranger.mkdir(parents=True)
    (stranger / "mine.txt").write_text("keep")
    assert main(["run", str(recipe), "--resume"]) == 2
    assert "no recipe.yaml" in last_error_line(capsys)
    assert (stranger / "mine.txt").read_text() == "keep"


# ---------------------------------------------------------------------------------------------------------------
# Item 6: a dry run refuses what a push refuses; the CLI named in messages exists at the declared floor


SECRET = "hf_" + "QwErTyUiOpAsDfGhJkLzXcVbNmQwErTyUi"


@pytest.mark.parametrize("where", ["notes.txt", "metrics.json"])
def test_dry_run_refuses_a_run_folder_holding_the_token_like_a_push(
    probe_run_dir, tmp_path, monkeypatch, where, capsys
):
    run = tmp_path / "run"
    shutil.copytree(probe_run_dir, run)
    path = run / where
    if where == "metrics.json":
        path.write_text(path.read_text().replace('"report_split"', f'"note": "{SECRET}", "report_split"'))
    else:
        path.write_text(f"my token is {SECRET}\n")
    monkeypatch.setenv("HF_TOKEN", SECRET)
    monkeypatch.setattr(hub_push, "_send", lambda *a, **k: pytest.fail("a refused push must send nothing"))
    errors = []
    for dry_run in (False, True):
        with pytest.raises(HubError) as info:
            hub_push.push_run(run, "tester/leak", dry_run=dry_run)
        errors.append(str(info.value))
    assert errors[0] == errors[1] and where in errors[0] and SECRET not in errors[0]
    assert main(["push", str(run), "--repo-id", "tester/leak", "--dry-run"]) == 2
    assert "refusing to push" in last_error_line(capsys)


def test_dry_run_refuses_any_hugging_face_token_not_only_the_users(probe_run_dir, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(probe_run_dir, run)
    (run / "notes.txt").write_text(f"a colleague's token: {SECRET}\n")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(HubError, match="notes.txt holds a Hugging Face token"):
        hub_push.push_run(run, "tester/leak", dry_run=True)


def _floor(package: str) -> str:
    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    return re.search(rf'"{package}\s*>=\s*([0-9.]+)', text).group(1)


def test_the_declared_huggingface_hub_floor_has_the_cli_that_messages_name():
    from packaging.version import Version

    assert Version(_floor("huggingface_hub")) >= Version(hub_access.HF_CLI_SINCE)
    assert f"`{hub_access.HF_LOGIN}`" in hub_access.no_token_message()
    assert hub_access.HF_LOGIN == "hf auth login" and hub_access.HF_DOWNLOAD == "hf download"
