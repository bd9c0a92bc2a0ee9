"""Class imbalance: weighted loss, balanced and undersampling samplers, and SMOTE on a linear probe's features.

The end-to-end check trains the same tiny-BERT linear probe (same seed, epochs, learning rate and batch size) on a
train split cut to 100 negative and 10 positive rows, once without correction and once with each correction, and
compares the positive (minority) class's recall on the balanced test split.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from fixtures_models import read_csv_rows, write_csv_rows
from helpers import text_recipe

import hf_transfer
from hf_transfer.backbones.features import FeatureDataset
from hf_transfer.config.sections import TrainConfig
from hf_transfer.core.errors import RecipeError
from hf_transfer.strategies.linear_probe import FeatureHead, smote_oversampled
from hf_transfer.train.loading import build_train_sampler
from hf_transfer.train.plan import TrainingPlan


@pytest.fixture(scope="module")
def imbalanced_csvs(tmp_path_factory, keyword_csvs):
    """keyword_csvs' train cut to 100 neg / 10 pos; validation: 20 + 20 other train rows; test: 40 + 40."""
    rows = read_csv_rows(keyword_csvs["train"])
    neg = [r for r in rows if r["label"] == "neg"]
    pos = [r for r in rows if r["label"] == "pos"]
    folder = tmp_path_factory.mktemp("imbalanced")
    return {
        "train": write_csv_rows(folder / "train.csv", neg[:100] + pos[:10], ["text", "label"]),
        "validation": write_csv_rows(folder / "validation.csv", neg[100:120] + pos[10:30], ["text", "label"]),
        "test": keyword_csvs["test"],
    }


CORRECTIONS = {
    "class_weights": ({}, {"class_weights": "auto"}),
    "balanced_sampler": ({}, {"sampler": "balanced"}),
    "undersample": ({}, {"sampler": "undersample"}),
    "smote": ({"smote": True}, {}),
}


@pytest.fixture(scope="module")
def minority_results(tmp_path_factory, tiny_bert_dir, imbalanced_csvs):
    """{variant: test metrics} for no correction and for each correction, every run with the same budget."""
    tmp = tmp_path_factory.mktemp("imbalance_runs")
    results = {}
    for name, (strategy, train) in {"none": ({}, {}), **CORRECTIONS}.items():
        recipe = text_recipe(
            tmp,
            tiny_bert_dir,
            imbalanced_csvs,
            {"name": "linear_probe", **strategy},
            name=name,
            data={"validation_files": [str(imbalanced_csvs["validation"])]},
            train={"epochs": 10, "learning_rate": 1e-2, "batch_size": 16, "seed": 0, **train},
        )
        metrics = json.loads((hf_transfer.run(str(recipe)) / "metrics.json").read_text())
        results[name] = metrics
    recalls = {name: round(m["test"]["per_class"]["pos"]["recall"], 4) for name, m in results.items()}
    print(f"minority (pos) test recall: {recalls}")
    return results


@pytest.mark.parametrize("correction", list(CORRECTIONS))
def test_each_correction_raises_minority_recall(minority_results, correction):
    def recall(name):
        return minority_results[name]["test"]["per_class"]["pos"]["recall"]

    assert minority_results["none"]["data"]["train"] == 110
    assert recall("none") < 0.5  # without correction the probe mostly answers the majority class
    assert recall(correction) > recall("none")
    # balanced accuracy (mean per-class recall) and per-class recall are reported for every run
    test = minority_results[correction]["test"]
    assert test["balanced_accuracy"] == pytest.approx(np.mean([row["recall"] for row in test["per_class"].values()]))


def test_smote_resamples_train_features_only(tmp_path, tiny_bert_dir, imbalanced_csvs, caplog):
    caplog.set_level(logging.INFO, logger="hf_transfer")
    recipe = text_recipe(
        tmp_path,
        tiny_bert_dir,
        imbalanced_csvs,
        {"name": "linear_probe", "smote": True},
        data={"validation_files": [str(imbalanced_csvs["validation"])]},
        train={"epochs": 1},
    )
    metrics = json.loads((hf_transfer.run(str(recipe)) / "metrics.json").read_text())
    assert any("pos +90 synthetic train rows" in r.message for r in caplog.records)  # 10 pos brought up to 100
    assert metrics["validation"]["num_samples"] == 40  # validation and test rows are never resampled
    assert metrics["validation"]["per_class"]["pos"]["support"] == 20
    assert metrics["test"]["num_samples"] == 80


def _features(counts: dict[int, int], dim: int = 4, seed: int = 0) -> FeatureDataset:
    g = torch.Generator().manual_seed(seed)
    labels = torch.cat([torch.full((n,), c) for c, n in counts.items()])
    features = torch.randn(len(labels), dim, generator=g) + 3 * labels[:, None].float()
    return FeatureDataset(features, labels)


def _head_for(train: FeatureDataset) -> FeatureHead:
    head = FeatureHead(train.features.shape[1], int(train.labels.max()) + 1)
    head.fit_scaler(train.features)
    return head


def test_smote_keeps_the_real_rows_and_adapts_k_to_a_tiny_class(caplog):
    caplog.set_level(logging.INFO, logger="hf_transfer")
    train = _features({0: 30, 1: 3, 2: 12})
    out = smote_oversampled(train, _head_for(train), seed=0, label_names=["a", "b", "c"])
    assert torch.equal(out.features[: len(train)], train.features)  # real rows first, untouched
    assert np.bincount(out.labels.numpy()).tolist() == [30, 30, 30]
    assert any("k_neighbors=2" in r.message for r in caplog.records)  # a 3-row class has 2 neighbours to use
    # every synthetic row of class 1 lies between two real rows of class 1: inside their bounding box
    real = train.features[train.labels == 1]
    synthetic = out.features[len(train) :][out.labels[len(train) :] == 1]
    assert (synthetic >= real.min(0).values - 1e-5).all() and (synthetic <= real.max(0).values + 1e-5).all()
    again = smote_oversampled(train, _head_for(train), seed=0, label_names=["a", "b", "c"])
    assert torch.equal(again.features, out.features)  # seeded


def test_smote_with_a_one_row_class_names_the_field():
    train = _features({0: 20, 1: 1})
    with pytest.raises(RecipeError, match=r"strategy\.smote .* 'b' has 1"):
        smote_oversampled(train, _head_for(train), seed=0, label_names=["a", "b"])


def test_undersample_sampler_draws_every_minority_row_and_as_many_of_each_class():
    labels = [0] * 50 + [1] * 5 + [2] * 20
    plan = TrainingPlan(
        model=torch.nn.Identity(), param_groups=[], train=list(range(len(labels))), evals={}, train_labels=labels
    )
    sampler = build_train_sampler(plan, TrainConfig(sampler="undersample", seed=3))
    assert len(sampler) == 15
    epochs = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        rows = list(sampler)
        assert len(rows) == len(set(rows)) == 15
        assert np.bincount(np.asarray(labels)[rows]).tolist() == [5, 5, 5]
        assert set(range(50, 55)) <= set(rows)  # the whole minority class, every epoch
        sampler.set_epoch(epoch)
        assert list(sampler) == rows  # deterministic per epoch
        epochs.append(rows)
    assert epochs[0] != epochs[1]  # the larger classes are drawn afresh


def test_undersample_is_a_valid_sampler_value_and_others_are_not():
    from hf_transfer.config.recipe import recipe_from_dict

    base = {"model": {"checkpoint": "x"}, "data": {"train_files": ["t.csv"]}, "strategy": "linear_probe"}
    assert recipe_from_dict(base | {"train": {"sampler": "undersample"}}).train.sampler == "undersample"
    with pytest.raises(RecipeError, match="train.sampler"):
        recipe_from_dict(base | {"train": {"sampler": "oversample"}})
