"""LogME and `hf-transfer rank`: scoring candidate checkpoints on a sample of the target data before training, for
every problem type."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys

import numpy as np
import pytest
from fixtures_models import write_csv_rows
from scipy.stats import multivariate_normal
from topics_and_digits import MULTI, REGRESSION, TOPICS, topic_recipe

from hf_transfer.apps.cli import main
from hf_transfer.core.errors import DataError
from hf_transfer.metrics.transferability import knn_accuracy, linear_probe_accuracy, logme_evidences
from hf_transfer.problems import PROBLEM_TYPES

SINGLE = "single_label_classification"


def logme(features, labels, problem_type: str = SINGLE) -> float:
    return PROBLEM_TYPES.get(problem_type).logme(features, labels)


def knn_score(features, labels, problem_type: str = SINGLE, folds: int = 5) -> float:
    return PROBLEM_TYPES.get(problem_type).knn_score(features, labels, folds=folds)


def linear_probe_score(features, labels, problem_type: str = SINGLE, folds: int = 5) -> float:
    return PROBLEM_TYPES.get(problem_type).linear_score(features, labels, folds=folds)


pytestmark = pytest.mark.usefixtures("one_thread")

# --------------------------------------------------------------------------------------------------------------------
# LogME
# --------------------------------------------------------------------------------------------------------------------


def _task(n=200, d=16, classes=3, seed=0):
    """Labels, features whose first directions encode them, and random features of the same shape."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    informative = rng.normal(size=(n, d))
    informative[:, :classes] += 2.0 * np.eye(classes)[labels]
    return labels, informative, rng.normal(size=(n, d))


def test_logme_prefers_features_that_predict_the_labels():
    labels, informative, noise = _task()
    assert logme(informative, labels) > logme(noise, labels) + 0.1
    # and the feature-based probes agree
    assert knn_accuracy(informative, labels, folds=3) > knn_accuracy(noise, labels, folds=3) + 0.2
    assert linear_probe_accuracy(informative, labels, folds=3) > linear_probe_accuracy(noise, labels, folds=3) + 0.2


def test_logme_is_invariant_to_scale_rotation_and_permutations():
    labels, features, _ = _task(seed=1)
    reference = logme(features, labels)
    rotation, _ = np.linalg.qr(np.random.default_rng(2).normal(size=(16, 16)))
    rows = np.random.default_rng(3).permutation(len(labels))
    assert logme(features * 37.0, labels) == pytest.approx(reference, abs=1e-6)
    assert logme(features @ rotation, labels) == pytest.approx(reference, abs=1e-6)
    assert logme(features[rows], labels[rows]) == pytest.approx(reference, abs=1e-9)
    assert logme(features, np.array([2, 0, 1])[labels]) == pytest.approx(reference, abs=1e-9)  # renamed classes


@pytest.mark.parametrize("n,d", [(60, 5), (30, 50)])  # more rows than features, and fewer
def test_logme_is_the_maximised_gaussian_evidence(n, d):
    labels, features, _ = _task(n=n, d=d, classes=2, seed=4)
    for c, fit in enumerate(logme_evidences(features, PROBLEM_TYPES.get(SINGLE).logme_targets(labels))):
        y = (labels == c).astype(float)

        def evidence(alpha, beta, y=y):  # log N(y; 0, F F^T / alpha + I / beta) / N, computed densely
            covariance = features @ features.T / alpha + np.eye(n) / beta
            return multivariate_normal(np.zeros(n), covariance).logpdf(y) / n

        assert fit.log_evidence == pytest.approx(evidence(fit.alpha, fit.beta), abs=1e-8)
        for da, db in ((1.5, 1.0), (1 / 1.5, 1.0), (1.0, 1.5), (1.0, 1 / 1.5)):  # a maximum along both axes
            assert evidence(fit.alpha * da, fit.beta * db) <= fit.log_evidence + 1e-9
    assert math.isfinite(logme(np.zeros((20, 4)), np.arange(20) % 2))  # constant features: finite, no NaN


def _regression_task(n=200, d=16, targets=2, seed=0):
    """Targets in different units, features whose first directions carry them, and random features."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, targets))
    y = latent * np.array([1.0, 1000.0, 0.01][:targets]) + np.array([5.0, -300.0, 0.0][:targets])
    informative = rng.normal(size=(n, d))
    informative[:, :targets] += 2.0 * latent
    return y, informative, rng.normal(size=(n, d))


def _multilabel_task(n=200, d=16, labels=4, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, labels)) < 0.3).astype(int)
    y[0] = 0  # a row without labels
    informative = rng.normal(size=(n, d))
    informative[:, :labels] += 2.0 * y
    return y, informative, rng.normal(size=(n, d))


def test_regression_logme_and_knn_prefer_the_features_that_carry_the_targets():
    y, informative, noise = _regression_task()
    assert logme(informative, y, problem_type="regression") > logme(noise, y, problem_type="regression") + 0.1
    assert knn_score(informative, y, "regression", folds=3) > knn_score(noise, y, "regression", folds=3) + 0.2
    assert -1.5 < knn_score(noise, y, "regression", folds=3) < -0.8  # about the error of predicting the mean
    assert linear_probe_score(informative, y, "regression", folds=3) > 0.6  # R²
    assert abs(linear_probe_score(noise, y, "regression", folds=3)) < 0.2
    assert PROBLEM_TYPES.get("regression").linear_score_name == "linear_r2"
    one = y[:, 0]
    assert logme(informative, one, problem_type="regression") > logme(noise, one, problem_type="regression") + 0.1
    assert PROBLEM_TYPES.get("regression").knn_score_name == "knn_neg_rmse"


def test_regression_logme_does_not_depend_on_the_targets_units():
    y, features, _ = _regression_task(seed=1)
    reference = logme(features, y, problem_type="regression")
    assert logme(features, y * [3.0, 0.001] + 42.0, problem_type="regression") == pytest.approx(reference, abs=1e-9)
    # the mean over targets: each target's evidence counts once
    per_target = [logme(features, y[:, t], problem_type="regression") for t in range(2)]
    assert reference == pytest.approx(np.mean(per_target))


def test_multilabel_logme_and_knn_prefer_the_features_that_carry_the_labels():
    y, informative, noise = _multilabel_task()
    kind = "multi_label_classification"
    assert logme(informative, y, problem_type=kind) > logme(noise, y, problem_type=kind) + 0.05
    assert knn_score(informative, y, kind, folds=3) > knn_score(noise, y, kind, folds=3) + 0.2
    assert linear_probe_score(informative, y, kind, folds=3) > linear_probe_score(noise, y, kind, folds=3) + 0.3
    assert linear_probe_score(noise, y, kind, folds=3) < 0.45  # about the labels' rate (0.3): chance for mAP
    # one label per target: a single-label task with one-hot rows scores the same through both forms
    classes = np.arange(200) % 3
    assert logme(informative, np.eye(3)[classes], problem_type=kind) == pytest.approx(logme(informative, classes))
    assert knn_score(informative, classes, folds=3) == knn_accuracy(informative, classes, folds=3)


def test_targets_that_never_vary_are_skipped_or_named():
    y, features, _ = _multilabel_task(seed=2)
    y[:, 3] = 0  # a label no row has
    assert logme(features, y, problem_type="multi_label_classification") == pytest.approx(
        logme(features, y[:, :3], problem_type="multi_label_classification")
    )
    with pytest.raises(DataError, match="all 0 or all 1"):
        logme(features, np.zeros((200, 2)), problem_type="multi_label_classification")
    with pytest.raises(DataError, match="constant"):
        logme(features, np.full(200, 3.0), problem_type="regression")
    assert math.isfinite(knn_score(features, np.full(200, 3.0), "regression", folds=3))


# --------------------------------------------------------------------------------------------------------------------
# hf-transfer rank
# --------------------------------------------------------------------------------------------------------------------


def test_rank_puts_the_informative_checkpoint_first(
    tmp_path, monkeypatch, tiny_bert_dir, blind_bert_dir, keyword_csvs, capsys
):
    monkeypatch.setenv("HF_TRANSFER_CACHE", str(tmp_path / "cache"))
    args = ["rank", "--checkpoints", str(blind_bert_dir), str(tiny_bert_dir), "--data", str(keyword_csvs["train"])]
    assert main([*args, "--folds", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    blind, informative = (
        next(r for r in report["candidates"] if r["checkpoint"] == str(c)) for c in (blind_bert_dir, tiny_bert_dir)
    )
    scores = {
        name: {k: round(r[k], 4) for k in ("logme", "knn_accuracy", "linear_accuracy")}
        for name, r in (("informative", informative), ("blind", blind))
    }
    with capsys.disabled():  # shown with -s
        print(f"rank scores: {scores}")
    assert [r["checkpoint"] for r in report["candidates"]] == [str(tiny_bert_dir), str(blind_bert_dir)]
    assert report["ranked_by"] == "logme" and report["samples"] == 240
    assert informative["logme"] > blind["logme"]
    assert informative["knn_accuracy"] > blind["knn_accuracy"]
    assert informative["linear_accuracy"] > 0.7 > blind["linear_accuracy"]  # the blind one is near chance (0.5)
    assert informative["parameters"] == blind["parameters"] > 0
    assert informative["feature_dim"] == 32 and not informative["features_cached"]

    # the table, ranked by linear accuracy this time; the features now come from the cache
    assert main([*args, "--folds", "3", "--by", "linear_accuracy", "--max-samples", "200"]) == 0
    table = capsys.readouterr().out
    assert "Ranked by linear_accuracy on 200 rows" in table
    assert table.index(str(tiny_bert_dir)) < table.index(str(blind_bert_dir))


def test_rank_takes_data_settings_from_a_recipe(
    tmp_path, monkeypatch, tiny_bert_dir, blind_bert_dir, keyword_csvs, capsys
):
    from helpers import text_recipe

    monkeypatch.setenv("HF_TRANSFER_CACHE", str(tmp_path / "cache"))
    recipe = text_recipe(tmp_path, tiny_bert_dir, keyword_csvs, {"name": "linear_probe", "pooling": "cls"})
    assert (
        main(["rank", "--recipe", str(recipe), "--checkpoints", str(tiny_bert_dir), "--max-samples", "100", "--json"])
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["pooling"] == "cls" and report["samples"] == 100 and report["label_names"] == ["neg", "pos"]


def test_rank_mistakes_name_the_flag(tmp_path, tiny_bert_dir, keyword_csvs, capsys):
    data = ["--data", str(keyword_csvs["train"])]
    assert main(["rank", "--checkpoints", str(tiny_bert_dir), str(tmp_path / "nowhere"), *data]) == 2
    err = capsys.readouterr().err
    assert "--checkpoints" in err and "nowhere" in err and "Traceback" not in err
    assert main(["rank", "--checkpoints", "no-such-org/no-such-model", *data]) == 2
    assert "--checkpoints 'no-such-org/no-such-model'" in capsys.readouterr().err
    assert main(["rank", "--checkpoints", str(tiny_bert_dir)]) == 2
    assert "--data" in capsys.readouterr().err
    assert main(["rank", "--checkpoints", str(tiny_bert_dir), "--data", str(tmp_path / "missing.csv")]) == 2
    assert "--data: file" in capsys.readouterr().err
    assert main(["rank", "--checkpoints", str(tiny_bert_dir), *data, "--text-column", "review"]) == 2
    assert "--text-column" in capsys.readouterr().err
    assert main(["rank", "--checkpoints", str(tiny_bert_dir), *data, "--max-samples", "4"]) == 2
    assert "--max-samples 4" in capsys.readouterr().err


def test_rank_help():
    with pytest.raises(SystemExit) as info:
        main(["rank", "--help"])
    assert info.value.code == 0


def test_rank_scores_image_checkpoints(tmp_path, monkeypatch, tiny_timm_dir, tiny_vit_dir, digits_csv, capsys):
    monkeypatch.setenv("HF_TRANSFER_CACHE", str(tmp_path / "cache"))
    checkpoints = [f"local-dir:{tiny_timm_dir}", f"local-dir:{tiny_vit_dir}"]
    args = [
        "rank",
        "--task",
        "image-classification",
        "--checkpoints",
        *checkpoints,
        "--data",
        str(digits_csv["train"]),
    ]
    assert main([*args, "--folds", "3", "--pooling", "cls", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert sorted(r["checkpoint"] for r in report["candidates"]) == sorted(checkpoints)
    assert report["samples"] == 60 and report["label_names"] == ["one", "two", "zero"]
    for candidate in report["candidates"]:  # an accuracy over the 60 rows, 20 in each fold
        assert math.isfinite(candidate["logme"])
        assert candidate["linear_accuracy"] * 60 == pytest.approx(round(candidate["linear_accuracy"] * 60))


def test_rank_does_not_import_the_runner():
    # rank scores features; it needs the data helpers, not cross-validation or the training runner behind it.
    code = (
        "import sys, hf_transfer.apps.rank\n"
        "loaded = [m for m in ('hf_transfer.apps.cross_validation', 'hf_transfer.runs.runner', "
        "'hf_transfer.train.loop') "
        "if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


# --------------------------------------------------------------------------------------------------------------------
# Multi-label and regression
# --------------------------------------------------------------------------------------------------------------------


# Words that tiny_bert_dir's tokenizer keeps whole: every text below is then eight tokens long.
WHOLE_WORD_TOPICS = {"film": ["movie", "plot", "actors"], "mood": ["great", "fun", "love"], "tune": ["music", "funny"]}
WHOLE_WORD_FILLER = "the a it was is and of this that with story".split()


@pytest.fixture(scope="module")
def same_length_csv(tmp_path_factory) -> str:
    """Texts of six whole-token words, topic words in place of filler: the topics and their number of words (count)
    do not follow a text's length, which is all a blind checkpoint sees."""
    rng = random.Random(3)
    rows = []
    for _ in range(150):
        present = [name for name in WHOLE_WORD_TOPICS if rng.random() < 0.4]
        words = [rng.choice(WHOLE_WORD_TOPICS[name]) for name in present for _ in range(rng.randint(1, 2))]
        count = len(words)
        words += [rng.choice(WHOLE_WORD_FILLER) for _ in range(6 - count)]
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "topics": "|".join(present), "count": count})
    folder = tmp_path_factory.mktemp("same_length")
    return str(write_csv_rows(folder / "train.csv", rows, ["text", "topics", "count"]))


@pytest.mark.parametrize(
    ("flags", "linear", "knn", "titles"),
    [
        (
            ["--problem-type", MULTI, "--label-column", "topics", "--label-separator", "|"],
            "linear_map_macro",
            "knn_map_macro",
            ("3 labels", "kNN mAP", "linear mAP"),
        ),
        (["--problem-type", REGRESSION, "--label-column", "count"], "linear_r2", "knn_neg_rmse", ("1 targets", "R²")),
    ],
)
def test_rank_puts_the_checkpoint_that_sees_the_labels_first(
    tmp_path, monkeypatch, tiny_bert_dir, blind_bert_dir, same_length_csv, flags, linear, knn, titles, capsys
):
    monkeypatch.setenv("HF_TRANSFER_CACHE", str(tmp_path / "cache"))
    args = ["rank", "--checkpoints", str(blind_bert_dir), str(tiny_bert_dir), "--data", same_length_csv, *flags]
    assert main([*args, "--folds", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["problem_type"] == flags[1] and report["scores"] == ["logme", linear, knn]
    assert [r["checkpoint"] for r in report["candidates"]] == [str(tiny_bert_dir), str(blind_bert_dir)]
    informative, blind = report["candidates"]
    with capsys.disabled():  # shown with -s
        print(f"rank {flags[1]}: {[{k: round(r[k], 4) for k in report['scores']} for r in report['candidates']]}")
    for key in ("logme", linear, knn):
        assert informative[key] > blind[key], key
    assert "knn_accuracy" not in informative and "linear_accuracy" not in informative

    assert main([*args, "--folds", "3", "--by", linear]) == 0  # the table names the scores of this problem type
    table = capsys.readouterr().out
    assert f"Ranked by {linear}" in table and all(title in table for title in titles)
    assert table.index(str(tiny_bert_dir)) < table.index(str(blind_bert_dir))


def test_rank_reads_the_problem_type_from_the_recipe(tmp_path, monkeypatch, tiny_bert_dir, topic_csvs, capsys):
    monkeypatch.setenv("HF_TRANSFER_CACHE", str(tmp_path / "cache"))
    recipe = topic_recipe(tmp_path, tiny_bert_dir, topic_csvs, MULTI)
    assert main(["rank", "--recipe", recipe, "--checkpoints", str(tiny_bert_dir), "--folds", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["problem_type"] == MULTI and report["label_names"] == sorted(TOPICS)
    assert report["scores"][1] == "linear_map_macro" and "linear_map_macro" in report["candidates"][0]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--problem-type", REGRESSION, "--label-column", "count", "--by", "knn_accuracy"], "by logme, linear_r2"),
        (["--problem-type", MULTI, "--label-column", "topics", "--zero-shot", "x"], "--zero-shot picks one label"),
        (["--label-column", "topics", "--label-separator", "|"], "--label-separator splits several labels"),
        (["--problem-type", REGRESSION, "--label-column", "topics"], "column 'topics'"),
    ],
)
def test_rank_mistakes_on_the_new_problem_types_are_one_line(tiny_bert_dir, topic_csvs, extra, expected, capsys):
    args = ["rank", "--checkpoints", str(tiny_bert_dir), "--data", str(topic_csvs["train"]), *extra]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
