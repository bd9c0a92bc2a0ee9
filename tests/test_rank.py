"""LogME and `hf-transfer rank`: scoring candidate checkpoints on a sample of the target data before training."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from hf_transfer.cli import main
from hf_transfer.transferability import knn_accuracy, linear_probe_accuracy, logme, logme_evidences

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
    for c, fit in enumerate(logme_evidences(features, labels)):
        y = (labels == c).astype(float)

        def evidence(alpha, beta, y=y):  # log N(y; 0, F F^T / alpha + I / beta) / N, computed densely
            covariance = features @ features.T / alpha + np.eye(n) / beta
            return multivariate_normal(np.zeros(n), covariance).logpdf(y) / n

        assert fit.log_evidence == pytest.approx(evidence(fit.alpha, fit.beta), abs=1e-8)
        for da, db in ((1.5, 1.0), (1 / 1.5, 1.0), (1.0, 1.5), (1.0, 1 / 1.5)):  # a maximum along both axes
            assert evidence(fit.alpha * da, fit.beta * db) <= fit.log_evidence + 1e-9
    assert math.isfinite(logme(np.zeros((20, 4)), np.arange(20) % 2))  # constant features: finite, no NaN


# --------------------------------------------------------------------------------------------------------------------
# hf-transfer rank
# --------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def blind_bert_dir(tmp_path_factory, tiny_bert_dir):
    """tiny_bert_dir with every token's embedding replaced by one shared vector: its features see how long a text is
    but not which words it holds, which tells nothing about keyword_csvs' labels."""
    import torch
    from transformers import BertModel

    folder = tmp_path_factory.mktemp("blind_bert")
    shutil.copytree(tiny_bert_dir, folder, dirs_exist_ok=True)
    model = BertModel.from_pretrained(folder)
    with torch.no_grad():
        weights = model.embeddings.word_embeddings.weight
        weights.copy_(weights[0].expand_as(weights))
    model.save_pretrained(folder, safe_serialization=True)
    return folder


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
    assert all(math.isfinite(r["logme"]) and 0 <= r["linear_accuracy"] <= 1 for r in report["candidates"])


def test_rank_does_not_import_the_runner():
    # rank scores features; it needs the data helpers, not cross-validation or the training runner behind it.
    code = (
        "import sys, hf_transfer.rank\n"
        "loaded = [m for m in ('hf_transfer.cross_validation', 'hf_transfer.runner', 'hf_transfer.train') "
        "if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
