"""`hf-transfer cv`: stratified K-fold cross-validation of a recipe; a linear probe extracts features once."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fixtures_models import read_csv_rows, write_csv_rows
from helpers import text_recipe

import hf_transfer.backbones.features as features
from hf_transfer.apps.cli import main
from hf_transfer.apps.cross_validation import CV_METRICS_FILE


@pytest.fixture
def extraction_passes(monkeypatch, tmp_path):
    """A cold feature cache, and a list that gets one entry per backbone pass over a split."""
    monkeypatch.setenv("HF_TRANSFER_CACHE", str(tmp_path / "cold_cache"))
    passes = []
    run_extractor = features._run_extractor

    def counting(extractor, split, *args, **kwargs):
        passes.append(len(split))
        return run_extractor(extractor, split, *args, **kwargs)

    monkeypatch.setattr(features, "_run_extractor", counting)
    return passes


def test_cv_linear_probe_extracts_features_once_for_all_folds(
    tmp_path, tiny_bert_dir, keyword_csvs, extraction_passes, capsys
):
    recipe = text_recipe(
        tmp_path, tiny_bert_dir, keyword_csvs, "linear_probe", train={"epochs": 3, "learning_rate": 1e-2}
    )
    out = tmp_path / "cv"
    assert main(["cv", str(recipe), "train.epochs=4", "--folds", "3", "--output", str(out)]) == 0
    assert extraction_passes == [240]  # one pass over the 240 train rows (no test, no per-fold passes)
    table = capsys.readouterr().out
    assert "3-fold cross-validation" in table and "recall/pos" in table

    report = json.loads((out / CV_METRICS_FILE).read_text())
    assert report["folds"] == 3 and report["train_rows"] == 240 and report["strategy"] == "linear_probe"
    assert [f["validation_rows"] for f in report["per_fold"]] == [80, 80, 80]
    assert all(f["train_rows"] == 160 for f in report["per_fold"])
    assert all(f["validation"]["per_class"]["pos"]["support"] == 40 for f in report["per_fold"])  # stratified
    accuracy = report["summary"]["accuracy"]
    assert len(accuracy["values"]) == 3
    assert accuracy["std"] == pytest.approx(np.std(accuracy["values"], ddof=1))
    assert accuracy["mean"] == pytest.approx(sum(accuracy["values"]) / 3)
    assert accuracy["mean"] > 0.6  # the probe learns the keyword task in every fold
    assert {"balanced_accuracy", "f1_macro", "log_loss", "recall/neg", "recall/pos"} <= set(report["summary"])
    assert (out / "recipe.yaml").is_file()
    assert not (tmp_path / "cv.incomplete").exists()  # fold checkpoints are cleaned up

    # --json prints the same report; the features come from the cache now
    assert main(["cv", str(recipe), "train.epochs=4", "--folds", "3", "--output", str(out), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert extraction_passes == [240]
    assert again["summary"]["accuracy"]["values"] == accuracy["values"]  # same seed, same folds, same numbers


def test_cv_finetune_runs_each_fold_through_the_loop(tmp_path, tiny_bert_dir, keyword_csvs, capsys):
    recipe = text_recipe(tmp_path, tiny_bert_dir, keyword_csvs, "finetune", train={"epochs": 1})
    out = tmp_path / "cv-finetune"
    assert main(["cv", str(recipe), "--folds", "2", "--output", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["strategy"] == "finetune" and len(report["per_fold"]) == 2
    assert report["feature_extraction_seconds"] is None
    assert json.loads((out / CV_METRICS_FILE).read_text())["summary"] == report["summary"]


def test_cv_smote_resamples_the_training_folds_only(tmp_path, tiny_bert_dir, keyword_csvs, capsys):
    rows = read_csv_rows(keyword_csvs["train"])
    skewed = [r for r in rows if r["label"] == "neg"][:60] + [r for r in rows if r["label"] == "pos"][:9]
    train = write_csv_rows(tmp_path / "skewed.csv", skewed, ["text", "label"])
    recipe = text_recipe(tmp_path, tiny_bert_dir, {"train": train, "test": keyword_csvs["test"]}, "linear_probe")
    out = tmp_path / "cv-smote"
    assert main(["cv", str(recipe), "strategy.smote=true", "--folds", "3", "--output", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    for fold in report["per_fold"]:
        assert fold["validation"]["num_samples"] == fold["validation_rows"] == 23  # held-out rows, never synthetic
        assert fold["validation"]["per_class"]["pos"]["support"] == 3


def test_cv_mistakes_are_one_sentence_and_exit_2(tmp_path, tiny_bert_dir, keyword_csvs, capsys):
    recipe = text_recipe(tmp_path, tiny_bert_dir, keyword_csvs, "linear_probe", train={"epochs": 1})
    out = tmp_path / "cv"
    assert main(["cv", str(recipe), "--folds", "1", "--output", str(out)]) == 2
    assert "--folds is 1" in capsys.readouterr().err

    rows = read_csv_rows(keyword_csvs["train"])
    few = [r for r in rows if r["label"] == "neg"][:20] + [r for r in rows if r["label"] == "pos"][:3]
    small = write_csv_rows(tmp_path / "few.csv", few, ["text", "label"])
    assert main(["cv", str(recipe), f"data.train_files=[{small}]", "--folds", "5", "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "class 'pos' has 3 train rows, fewer than --folds 5" in err and "Traceback" not in err
    assert not (out / CV_METRICS_FILE).exists()

    recipe_with_source = text_recipe(
        tmp_path,
        tiny_bert_dir,
        keyword_csvs,
        "linear_probe",
        name="two-stage",
        source={"data": {"train_files": [str(small)]}},
    )
    assert main(["cv", str(recipe_with_source), "--output", str(out)]) == 2
    assert "source" in capsys.readouterr().err


def test_cv_resume_continues_an_interrupted_cross_validation(tmp_path, tiny_bert_dir, keyword_csvs, capsys):
    recipe = text_recipe(tmp_path, tiny_bert_dir, keyword_csvs, "linear_probe", train={"epochs": 2})
    out = tmp_path / "cv"
    (tmp_path / "cv.incomplete" / "fold-1").mkdir(parents=True)  # left by a cross-validation that was stopped
    assert main(["cv", str(recipe), "--folds", "2", "--output", str(out)]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["cv", str(recipe), "--folds", "2", "--output", str(out), "--resume"]) == 0
    assert json.loads((out / CV_METRICS_FILE).read_text())["folds"] == 2


def test_cv_help():
    with pytest.raises(SystemExit) as info:
        main(["cv", "--help"])
    assert info.value.code == 0
