"""`hf-transfer cv`: stratified K-fold cross-validation of a recipe; a linear probe extracts features once; multi-label
folds tune thresholds on their own validation rows and regression folds standardise on their own rows."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fixtures_models import read_csv_rows, write_csv_rows
from helpers import text_recipe
from topics_and_digits import MULTI, REGRESSION, TOPICS, topic_recipe

import hf_transfer.backbones.features as features
import hf_transfer.metrics.multilabel as metrics_multilabel
from hf_transfer.apps.cli import main
from hf_transfer.apps.cross_validation import CV_METRICS_FILE, flat_metrics, summarize_folds

pytestmark = pytest.mark.usefixtures("one_thread")


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


# --------------------------------------------------------------------------------------------------------------------
# Multi-label and regression: each fold's own thresholds and target scaling
# --------------------------------------------------------------------------------------------------------------------


def test_cv_multilabel_tests_every_row_once_with_thresholds_from_each_folds_own_validation(
    tmp_path, monkeypatch, tiny_bert_dir, topic_csvs, capsys
):
    tuned_on = []  # the rows each threshold search saw
    tune = metrics_multilabel.tune_thresholds

    def recording(y_true, scores, *args, **kwargs):
        tuned_on.append(len(y_true))
        return tune(y_true, scores, *args, **kwargs)

    monkeypatch.setattr(metrics_multilabel, "tune_thresholds", recording)
    monkeypatch.setenv("HF_TRANSFER_CACHE", str(tmp_path / "cache"))
    recipe = topic_recipe(
        tmp_path, tiny_bert_dir, topic_csvs, MULTI, data={"validation_fraction": 0.25}, train={"epochs": 10}
    )
    out = tmp_path / "cv"
    assert main(["cv", recipe, "--folds", "3", "--output", str(out)]) == 0
    table = capsys.readouterr().out
    assert "3-fold cross-validation" in table and "held-out test rows" in table and "f1/sport" in table
    assert "lower is better: hamming_loss" in table

    report = json.loads((out / CV_METRICS_FILE).read_text())
    assert report["problem_type"] == MULTI and report["held_out_split"] == "test"
    folds = report["per_fold"]
    # every train row is tested exactly once, by the fold that held it out
    assert sorted(report["fold_of_row"]) == sorted(i for f in folds for i in [f["fold"]] * f["test_rows"])
    assert sum(f["test_rows"] for f in folds) == report["train_rows"] == 120
    for fold in folds:
        assert fold["test"]["num_samples"] == fold["test_rows"] == 40
        # the fold's training part is split into train and its own validation; none of them is a test row
        assert fold["train_rows"] + fold["validation_rows"] == 80
        assert fold["validation"]["num_samples"] == fold["validation_rows"] == 20
        assert set(fold["thresholds"]) == set(TOPICS)
        assert {name: row["threshold"] for name, row in fold["test"]["per_label"].items()} == fold["thresholds"]
    # one threshold search per fold, on that fold's validation rows, never on its 40 test rows
    assert tuned_on == [f["validation_rows"] for f in folds]
    summary = report["summary"]
    with capsys.disabled():  # shown with -s
        print(f"cv multi-label: { {k: round(summary[k]['mean'], 4) for k in ('f1_macro', 'map_macro')} }")
    for key in ("f1_micro", "f1_macro", "f1_samples", "map_macro", "subset_accuracy", "hamming_loss"):
        assert len(summary[key]["values"]) == 3
        assert summary[key]["std"] == pytest.approx(np.std(summary[key]["values"], ddof=1))
    assert {f"{stat}/{name}" for stat in ("f1", "average_precision", "threshold") for name in TOPICS} <= set(summary)
    assert summary["map_macro"]["mean"] > 0.6  # the topics are keywords: the probe finds them in every fold


def test_cv_regression_standardises_each_fold_on_its_own_rows_and_reports_in_the_targets_units(
    tmp_path, monkeypatch, tiny_bert_dir, topic_csvs, capsys
):
    monkeypatch.setenv("HF_TRANSFER_CACHE", str(tmp_path / "cache"))
    recipe = topic_recipe(
        tmp_path, tiny_bert_dir, topic_csvs, REGRESSION, data={"standardize_targets": True}, train={"epochs": 6}
    )
    out = tmp_path / "cv"
    assert main(["cv", recipe, "--folds", "3", "--output", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["held_out_split"] == "validation" and sorted(set(report["fold_of_row"])) == [1, 2, 3]
    counts = np.array([int(r) for r in _column(topic_csvs["train"], "count")])
    fold_of_row = np.array(report["fold_of_row"])
    for fold in report["per_fold"]:
        assert fold["validation"]["num_samples"] == fold["validation_rows"] == (fold_of_row == fold["fold"]).sum()
        # the scaling is the mean / std of the rows the fold trains on, not of all rows
        trained_on = counts[fold_of_row != fold["fold"]]
        assert fold["target_scaling"]["mean"] == pytest.approx([trained_on.mean()])
        assert fold["target_scaling"]["std"] == pytest.approx([trained_on.std()])
        assert "thresholds" not in fold
    summary = report["summary"]
    with capsys.disabled():  # shown with -s
        means = {k: round(summary[k]["mean"], 4) for k in ("rmse", "pearson")}
        print(f"cv regression: {means}, target std {counts.std():.4f}")
    assert {"mse", "rmse", "mae", "r2", "pearson", "spearman", "rmse/count", "r2/count"} <= set(summary)
    # the rmse is in topic words, not in standard deviations: it beats always answering the mean (about 1.5)
    assert summary["rmse"]["mean"] < 0.8 * counts.std()
    assert summary["pearson"]["mean"] > 0.6


def test_cv_summary_keeps_a_metric_some_folds_leave_undefined():
    folds = [
        {"num_samples": 3, "roc_auc_macro": 0.8, "roc_auc_macro_note": None, "per_label": {}},
        {"num_samples": 3, "roc_auc_macro": None, "roc_auc_macro_note": "only one class"},
        {"num_samples": 3, "roc_auc_macro": 0.6},
    ]
    summary = summarize_folds([flat_metrics(f) for f in folds])
    assert summary["num_samples"] == {"mean": 3.0, "std": 0.0, "values": [3, 3, 3]}
    assert summary["roc_auc_macro"]["mean"] == pytest.approx(0.7)
    assert summary["roc_auc_macro"]["values"] == [0.8, None, 0.6] and summary["roc_auc_macro"]["undefined_folds"] == 1
    assert "roc_auc_macro_note" not in summary


def _column(path, name) -> list[str]:
    import csv

    with open(path, newline="") as f:
        return [row[name] for row in csv.DictReader(f)]
