"""`hf-transfer rank`: scoring candidate checkpoints on a sample of the target data before training, for every problem
type (the scores themselves: test_transferability.py)."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys

import pytest
from fixtures_models import write_csv_rows
from topics_and_digits import MULTI, REGRESSION, TOPICS, topic_recipe

from hf_transfer.apps.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

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
