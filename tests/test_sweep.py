"""`hf-transfer sweep`: Optuna trials through the same loop, scored on validation only, best recipe written out."""

from __future__ import annotations

import json
import math

import optuna
import pytest
import yaml
from helpers import text_recipe
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from topics_and_digits import MULTI, REGRESSION, problem_recipe, topic_jsonl_files

import hf_transfer.backbones.features as features
import hf_transfer.train.loop as train
from hf_transfer.apps.cli import main
from hf_transfer.apps.sweep import (
    BEST_RECIPE_FILE,
    LORA_RANKS,
    SWEEP_FILE,
    SWEEP_PLOT,
    SpaceContext,
    best_recipe_dict,
    epoch_range,
    search_space_for,
)
from hf_transfer.config.loading import load_recipe
from hf_transfer.config.recipe import recipe_from_dict
from hf_transfer.data import splits as splits_module

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def spies(monkeypatch, tmp_path):
    """A cold feature cache; what the loop evaluated (its progress-bar names), which files were read, and one entry
    per backbone pass over a split."""
    monkeypatch.setenv("HF_TRANSFER_CACHE", str(tmp_path / "cold_cache"))
    seen = {"evaluated": [], "files": [], "passes": []}
    evaluate, load_files, run_extractor = train.evaluate, splits_module.load_files, features._run_extractor

    def spy_evaluate(model, loader, *args, desc="Evaluating", **kwargs):
        seen["evaluated"].append(desc)
        return evaluate(model, loader, *args, desc=desc, **kwargs)

    def spy_load_files(files, *args, **kwargs):
        seen["files"] += list(files)
        return load_files(files, *args, **kwargs)

    def spy_extractor(extractor, split, *args, **kwargs):
        seen["passes"].append(len(split))
        return run_extractor(extractor, split, *args, **kwargs)

    monkeypatch.setattr(train, "evaluate", spy_evaluate)
    monkeypatch.setattr(splits_module, "load_files", spy_load_files)
    monkeypatch.setattr(features, "_run_extractor", spy_extractor)
    return seen


def test_lora_sweep_tunes_on_validation_only_and_its_best_recipe_reruns_to_the_best_value(
    tmp_path, tiny_bert_dir, keyword_csvs, spies, capsys
):
    recipe = text_recipe(
        tmp_path,
        tiny_bert_dir,
        keyword_csvs,
        {"name": "lora", "r": 8, "alpha": 16},
        train={"epochs": 2, "learning_rate": 1e-2},
        eval={"metric": "roc_auc"},
    )
    out = tmp_path / "sweep"
    argv = ["sweep", str(recipe), "train.batch_size=32", "--trials", "3", "--seed", "1", "--output", str(out)]
    assert main(argv) == 0
    table = capsys.readouterr().out

    # The test split is never read, let alone evaluated: every evaluation is on validation.
    assert str(keyword_csvs["test"]) not in spies["files"]
    assert spies["evaluated"] and set(spies["evaluated"]) == {"Validating", "Final validation"}

    report = json.loads((out / SWEEP_FILE).read_text())
    assert report["split"] == "validation" and report["direction"] == "maximize" and len(report["trials"]) == 3
    values = [trial["value"] for trial in report["trials"]]
    lrs = [trial["params"]["learning_rate"] for trial in report["trials"]]
    assert all(1e-3 <= lr <= 1e-1 for lr in lrs) and len(set(lrs)) == 3
    assert {trial["params"]["r"] for trial in report["trials"]} <= set(LORA_RANKS)
    assert len(set(values)) > 1, values  # real trainings: other learning rates, other scores
    assert report["best"]["value"] == max(values)
    best = report["trials"][values.index(max(values))]
    assert (out / SWEEP_PLOT).stat().st_size > 0
    assert not (tmp_path / "sweep.incomplete").exists()  # trial checkpoints are cleaned up
    for trial in report["trials"]:
        assert f"{trial['value']:.4f}" in table
    assert f"*{best['trial']}" in table

    # The best recipe says where it came from, loads, carries the best parameters, keeps the test split...
    best_path = out / BEST_RECIPE_FILE
    header = best_path.read_text().splitlines()[:3]
    assert header[0].startswith("# Best of 3 trials of: hf-transfer sweep ") and "--trials 3 --seed 1" in header[0]
    assert f"validation roc_auc {best['value']:.4f}" in header[1]
    tuned = load_recipe(str(best_path))
    assert tuned.train.learning_rate == best["params"]["learning_rate"]
    assert tuned.strategy.r == best["params"]["r"] and tuned.strategy.alpha == 2 * best["params"]["r"]
    assert tuned.train.epochs == best["params"]["epochs"] and tuned.train.batch_size == 32
    assert tuned.data.test_files == [str(keyword_csvs["test"])]

    # ... and `hf-transfer run` on it, as is, trains to the best trial's validation value and reports on test.
    assert main(["run", str(best_path)]) == 0
    metrics = json.loads((tuned.output_dir / "metrics.json").read_text())
    assert metrics["validation"]["roc_auc"] == pytest.approx(best["value"])
    assert metrics["report_split"] == "test"


def test_probe_sweep_extracts_features_once_and_minimises_a_loss(tmp_path, tiny_bert_dir, keyword_csvs, spies, capsys):
    recipe = text_recipe(
        tmp_path,
        tiny_bert_dir,
        keyword_csvs,
        "linear_probe",
        train={"epochs": 2, "learning_rate": 1e-2},
        eval={"metric": "log_loss"},
    )
    out = tmp_path / "probe-sweep"
    assert main(["sweep", str(recipe), "--trials", "4", "--output", str(out), "--out", str(tmp_path / "b.yaml")]) == 0
    # one backbone pass over the 216 train and the 24 validation rows for the 4 trials; none over the 80 test rows
    assert sorted(spies["passes"]) == [24, 216]
    report = json.loads((out / SWEEP_FILE).read_text())
    values = [trial["value"] for trial in report["trials"]]
    assert report["direction"] == "minimize" and report["best"]["value"] == min(values) and len(set(values)) > 1
    assert {trial["params"]["head"] for trial in report["trials"]} <= {"linear", "mlp"}
    assert report["feature_extraction_seconds"] > 0
    tuned = load_recipe(str(tmp_path / "b.yaml"))
    assert tuned.strategy.head == report["best"]["params"]["head"]
    assert tuned.train.weight_decay == report["best"]["params"]["weight_decay"]
    # an existing --out is not replaced without --force, and nothing runs
    spies["passes"].clear()
    assert main(["sweep", str(recipe), "--trials", "1", "--output", str(out), "--out", str(tmp_path / "b.yaml")]) == 2
    assert spies["passes"] == []
    # --timeout: no trial starts once it is spent; with none done there is no best recipe to write
    argv = ["sweep", str(recipe), "--trials", "100", "--timeout", "1e-6", "--output", str(tmp_path / "quick")]
    assert main(argv) == 2
    assert "no trial started within --timeout 1e-06 seconds" in capsys.readouterr().err
    assert not (tmp_path / "quick").exists()
    assert spies["passes"] == []  # the features came from the cache


def test_finetune_sweep_searches_unfrozen_blocks_of_the_backbone(tmp_path, tiny_bert_dir, keyword_csvs, spies):
    recipe = text_recipe(tmp_path, tiny_bert_dir, keyword_csvs, "finetune", train={"epochs": 1, "learning_rate": 1e-3})
    out = tmp_path / "ft-sweep"
    assert main(["sweep", str(recipe), "data.max_train_samples=64", "--trials", "4", "--output", str(out)]) == 0
    report = json.loads((out / SWEEP_FILE).read_text())
    # the tiny BERT has 2 layers: all of it (null) or its last 1 or 2
    assert {trial["params"]["unfreeze_last_n"] for trial in report["trials"]} <= {None, 1, 2}
    assert all(trial["state"] == "complete" for trial in report["trials"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["sweep", "sentiment/no-such-recipe", "--trials", "2"], "no shipped recipe"),
        (["sweep", "sentiment/minilm-lora-rotten-tomatoes", "--trials", "0"], "--trials must be at least 1"),
    ],
)
def test_user_errors_are_one_sentence_and_exit_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "outputs").exists()


def test_a_strategy_without_a_search_space_is_refused_before_loading(tmp_path, keyword_csvs, capsys):
    recipe = text_recipe(tmp_path, tmp_path / "no-model-needed", keyword_csvs, "ia3")
    assert main(["sweep", str(recipe), "--trials", "2", "--output", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err.strip()
    assert "no search space for strategy ia3" in err and "linear_probe, lora, finetune" in err
    assert not (tmp_path / "s").exists()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    lr=st.floats(min_value=1e-7, max_value=1.0),
    epochs=st.integers(min_value=1, max_value=200),
    strategy=st.sampled_from(["linear_probe", "lora", "finetune"]),
    seed=st.integers(0, 2**16),
)
def test_every_proposal_stays_around_the_recipe_and_makes_a_valid_recipe(lr, epochs, strategy, seed):
    recipe = recipe_from_dict(
        {
            "model": {"checkpoint": "some/model"},
            "data": {"train_files": ["train.csv"]},
            "strategy": strategy,
            "train": {"learning_rate": lr, "epochs": epochs},
        }
    )
    space, context = search_space_for(recipe), SpaceContext(num_blocks=6)
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed)).ask()
    proposed = space(trial, recipe, context)
    low, high = epoch_range(epochs)
    assert 1 <= low <= epochs <= high and low < high
    assert low <= proposed.train.epochs <= high
    assert lr / 10 * (1 - 1e-9) <= proposed.train.learning_rate <= lr * 10 * (1 + 1e-9)
    # what the best recipe is written from loads back as the same recipe
    written = best_recipe_dict(recipe, trial.params, space, context)
    again = recipe_from_dict(yaml.safe_load(yaml.safe_dump(written)))
    assert again.train.learning_rate == proposed.train.learning_rate and again.strategy == proposed.strategy
    assert math.isfinite(again.train.learning_rate)


def test_a_diverged_trial_is_recorded_as_failed_and_the_search_goes_on(
    tmp_path, tiny_bert_dir, keyword_csvs, spies, monkeypatch
):
    from hf_transfer.core.errors import TrainingDivergedError

    run, calls = train.TrainingLoop.run, []

    def diverging_first(self, plan, resume=False):
        calls.append(self.cfg.learning_rate)
        if len(calls) == 1:
            raise TrainingDivergedError("the training loss became nan at step 3 (epoch 1); lower it.")
        return run(self, plan, resume=resume)

    monkeypatch.setattr(train.TrainingLoop, "run", diverging_first)
    recipe = text_recipe(tmp_path, tiny_bert_dir, keyword_csvs, "linear_probe", train={"epochs": 1})
    assert main(["sweep", str(recipe), "--trials", "2", "--output", str(tmp_path / "s")]) == 0
    report = json.loads((tmp_path / "s" / SWEEP_FILE).read_text())
    first, second = report["trials"]
    assert first["state"] == "failed" and first["value"] is None and "nan" in first["error"]
    assert second["state"] == "complete" and report["best"]["trial"] == 2
    assert load_recipe(str(tmp_path / "s" / BEST_RECIPE_FILE)).train.learning_rate == calls[1]


# --------------------------------------------------------------------------------------------------------------------
# Multi-label and regression: the problem type's default metric, in its direction
# --------------------------------------------------------------------------------------------------------------------


DEFAULT_METRIC = {MULTI: ("f1_macro", "maximize"), REGRESSION: ("rmse", "minimize")}


@pytest.mark.parametrize("problem_type", [MULTI, REGRESSION])
def test_sweep_scores_the_problem_types_metric_in_its_direction_and_keeps_the_problem_type(
    tmp_path, tiny_bert_dir, problem_type, capsys
):
    files = topic_jsonl_files(tmp_path, problem_type)
    recipe = problem_recipe(
        tmp_path,
        "text",
        tiny_bert_dir,
        problem_type,
        "linear_probe",
        data={"train_files": [str(files["train"])], "validation_files": [str(files["validation"])]}
        | {"test_files": [str(files["test"])]},
        train={"epochs": 2},
    )
    out = tmp_path / "sweep"
    assert main(["sweep", str(recipe), "--trials", "3", "--seed", "0", "--output", str(out)]) == 0
    report = json.loads((out / SWEEP_FILE).read_text())
    metric, direction = DEFAULT_METRIC[problem_type]
    assert report["metric"] == metric and report["direction"] == direction
    values = [trial["value"] for trial in report["trials"]]
    assert len(set(values)) > 1, values  # other learning rates, other scores: the pick below means something
    assert report["best"]["value"] == (max if direction == "maximize" else min)(values)

    tuned = load_recipe(str(out / BEST_RECIPE_FILE))
    assert tuned.problem_type == problem_type
    # `hf-transfer run` on the best recipe trains the same problem to the best trial's validation figure
    assert main(["run", str(out / BEST_RECIPE_FILE)]) == 0
    metrics = json.loads((tuned.output_dir / "metrics.json").read_text())
    assert metrics["validation"][metric] == pytest.approx(report["best"]["value"], rel=1e-4)
    assert json.loads((tuned.output_dir / "hf_transfer.json").read_text())["problem_type"] == problem_type
