"""Experiment tracking (`train.report_to`): off by default; TensorBoard's event files read back; clear errors."""

from __future__ import annotations

import json
import typing
from pathlib import Path

import pytest
import yaml
from crashes import Crash, CrashAtStep
from helpers import text_recipe
from hypothesis import given, settings
from hypothesis import strategies as st

import hf_transfer
from hf_transfer.apps.cli import main
from hf_transfer.config.names import Tracker
from hf_transfer.train.plan import LoopState
from hf_transfer.train.tracking import tracker_config

TRACKERS = typing.get_args(Tracker)


def _scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series in the run folder's TensorBoard event files, as (step, value) pairs."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    series = {}
    for folder in {p.parent for p in (run_dir / "runs").rglob("events.out.tfevents.*")}:
        events = EventAccumulator(str(folder))
        events.Reload()
        for tag in events.Tags()["scalars"]:
            series.setdefault(tag, []).extend((e.step, e.value) for e in events.Scalars(tag))
    return series


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory, tiny_bert_dir, keyword_csvs) -> Path:
    pytest.importorskip("tensorboard")
    tmp_path = tmp_path_factory.mktemp("tracked")
    # layer_decay gives the lower layers a fraction of the learning rate: the tracker still logs the recipe's rate.
    recipe = text_recipe(
        tmp_path,
        tiny_bert_dir,
        keyword_csvs,
        {"name": "finetune", "layer_decay": 0.5},
        train={"epochs": 2, "report_to": "tensorboard", "log_every_steps": 5},
        baseline=["head_only"],
    )
    return hf_transfer.run(str(recipe))


def test_tensorboard_gets_the_loss_learning_rate_and_every_evaluation_metric(tracked_run):
    metrics = json.loads((tracked_run / "metrics.json").read_text())
    series = _scalars(tracked_run)
    # 216 train rows / batch 16 = 14 steps an epoch; the loss and learning rate every 5 steps
    assert [step for step, _ in series["train/loss"]] == [5, 10, 15, 20, 25]
    assert all(loss > 0 for _, loss in series["train/loss"])
    # the linear schedule over 28 steps, at the recipe's learning_rate (1e-3), not a decayed layer's
    assert [lr for _, lr in series["train/learning_rate"]] == pytest.approx(
        [1e-3 * (1 - step / 28) for step in (5, 10, 15, 20, 25)], rel=1e-4
    )
    for name in ("accuracy", "f1_macro", "balanced_accuracy", "log_loss"):
        assert [step for step, _ in series[f"eval/{name}"]] == [14, 28]
    assert [v for _, v in series["eval/accuracy"]] == pytest.approx([h["accuracy"] for h in metrics["history"]])
    assert [v for _, v in series["eval/log_loss"]] == pytest.approx([h["eval_loss"] for h in metrics["history"]])
    assert [v for _, v in series["train/epoch_loss"]] == pytest.approx([h["train_loss"] for h in metrics["history"]])


def test_tensorboard_gets_the_final_metrics_of_every_split(tracked_run):
    metrics = json.loads((tracked_run / "metrics.json").read_text())
    series = _scalars(tracked_run)
    for split in ("validation", "test"):
        for name in ("accuracy", "f1_macro", "log_loss"):
            ((step, value),) = series[f"final/{split}/{name}"]
            assert step == 28
            assert value == pytest.approx(metrics[split][name], rel=1e-5)


def test_other_stages_log_under_their_name_after_the_target(tracked_run):
    metrics = json.loads((tracked_run / "metrics.json").read_text())
    series = _scalars(tracked_run)
    baseline = series["baseline-head_only/final/test/accuracy"]
    assert baseline[0][1] == pytest.approx(metrics["baselines"]["head_only"]["accuracy"], rel=1e-5)
    # steps go on from the target's 28: a tracker such as wandb drops a step lower than one it has seen
    assert min(step for step, _ in series["baseline-head_only/eval/accuracy"]) > 28


def test_the_recipe_is_the_runs_config(tracked_run, tiny_bert_dir):
    (hparams,) = (tracked_run / "runs").rglob("hparams.yml")
    config = yaml.safe_load(hparams.read_text())
    assert config["train.learning_rate"] == 1e-3
    assert config["train.report_to"] == '["tensorboard"]'
    assert config["strategy.layer_decay"] == 0.5
    assert config["model.checkpoint"] == str(tiny_bert_dir)
    assert all(isinstance(v, (str, int, float, bool, type(None))) for v in config.values())


def test_a_resumed_run_keeps_what_was_logged_before_the_crash(tmp_path, tiny_bert_dir, keyword_csvs):
    pytest.importorskip("tensorboard")

    train = {"epochs": 2, "report_to": ["tensorboard"], "log_every_steps": 5, "save_every_steps": 5}
    recipe = str(text_recipe(tmp_path, tiny_bert_dir, keyword_csvs, "lora", train=train))
    with pytest.raises(Crash):
        hf_transfer.run(recipe, callbacks=[CrashAtStep(17)])  # after the first epoch's evaluation
    run_dir = hf_transfer.run(recipe, resume=True)
    series = _scalars(run_dir)
    assert [step for step, _ in series["eval/accuracy"]] == [14, 28]  # epoch 1 logged before the crash
    assert {step for step, _ in series["train/loss"]} == {5, 10, 15, 20, 25}
    assert [step for step, _ in series["final/test/accuracy"]] == [28]


def test_tracking_is_off_by_default(probe_run_dir):
    """The shared probe run's recipe leaves train.report_to unset: nothing is logged beside metrics.json."""
    assert (probe_run_dir / "metrics.json").is_file()
    assert not (probe_run_dir / "runs").exists()


def test_an_unknown_tracker_is_a_one_line_error_naming_the_field(tmp_path, tiny_bert_dir, keyword_csvs, capsys):
    recipe = text_recipe(tmp_path, tiny_bert_dir, keyword_csvs, "lora", train={"report_to": ["tensorbord"]})
    assert main(["run", str(recipe)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "train.report_to" in err and "did you mean 'tensorboard'" in err and "wandb" in err
    assert not (tmp_path / "outputs").exists()


def test_a_tracker_without_its_package_says_what_to_install(tmp_path, tiny_bert_dir, keyword_csvs, capsys):
    from accelerate.tracking import get_available_trackers

    available = {str(t) for t in get_available_trackers()}
    missing = next((name for name in TRACKERS if name not in available), None)
    if missing is None:
        pytest.skip("every tracker's package is installed here")
    recipe = text_recipe(tmp_path, tiny_bert_dir, keyword_csvs, "lora", train={"report_to": [missing]})
    assert main(["run", str(recipe)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    package = "comet-ml" if missing == "comet_ml" else missing
    assert "train.report_to" in err and f"pip install {package}" in err
    assert not (tmp_path / "outputs").exists()


def test_every_tracker_name_is_one_accelerate_knows():
    from accelerate.utils import LoggerType

    assert set(TRACKERS) <= {str(t) for t in LoggerType} - {"all"}


SIMPLE = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5)
KEYS = st.text(alphabet="abcxyz_", min_size=1, max_size=4)
RECIPES = st.recursive(
    SIMPLE | st.lists(SIMPLE, max_size=3),
    lambda children: st.dictionaries(KEYS, children, max_size=4),
    max_leaves=12,
)


@settings(deadline=None)  # the suite shares two cores: a slow example is not a wrong one
@given(st.dictionaries(KEYS, RECIPES, max_size=5))
def test_tracker_config_is_flat_and_keeps_every_value(recipe):
    flat = tracker_config(recipe)
    assert all(isinstance(v, (str, int, float, bool, type(None))) for v in flat.values())

    def leaves(node, prefix=""):
        for key, value in node.items():
            if isinstance(value, dict):
                yield from leaves(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", value

    for key, value in leaves(recipe):
        assert flat[key] == (json.dumps(value) if isinstance(value, list) else value)


def test_loop_state_round_trips_and_reads_older_checkpoints():
    state = LoopState(epoch=2, step_in_epoch=3, global_step=31, history=[{"epoch": 1, "train_loss": 0.5}])
    state.best_value, state.train_seconds = 0.75, 1.5
    assert LoopState.from_dict(json.loads(json.dumps(state.to_dict()))) == state
    # saved before the first epoch ended by a version that added train_seconds only then
    older = {k: v for k, v in state.to_dict().items() if k != "train_seconds"}
    assert LoopState.from_dict(older).train_seconds == 0.0
