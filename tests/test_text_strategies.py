"""Every strategy end to end on a tiny BERT: it learns, and the run folder loads back and reproduces its metrics."""

from __future__ import annotations

import json
import logging

import pytest
from helpers import assert_reloads_like_the_run, metrics_of, text_recipe
from safetensors import safe_open

import hf_transfer
from hf_transfer.config.loading import load_recipe


def run(tmp_path, tiny_bert_dir, keyword_csvs, strategy, name="run", **overrides):
    recipe_path = text_recipe(tmp_path, tiny_bert_dir, keyword_csvs, strategy, name=name, **overrides)
    return hf_transfer.run(str(recipe_path))


@pytest.mark.parametrize("head", ["linear", "mlp"])
def test_linear_probe_learns_and_reloads(tmp_path, tiny_bert_dir, keyword_csvs, head):
    run_dir = run(
        tmp_path,
        tiny_bert_dir,
        keyword_csvs,
        {"name": "linear_probe", "head": head, "pooling": "mean"},
        train={"epochs": 30, "learning_rate": 1e-2, "batch_size": 32},
    )
    files = {p.name for p in run_dir.iterdir()}
    assert {
        "head.safetensors",
        "hf_transfer.json",
        "recipe.yaml",
        "metrics.json",
        "labels.json",
        "README.md",
        "confusion_matrix.png",
        "training_curves.png",
        "tokenizer.json",
    } <= files
    assert not any(name.endswith(".bin") for name in files)
    metrics = metrics_of(run_dir)
    # a random tiny encoder's mean-pooled features still separate two keyword sets well above chance
    assert metrics["test"]["accuracy"] > 0.7
    head_size = 32 * 2 + 2 if head == "linear" else 32 * 256 + 256 + 256 * 2 + 2  # tiny BERT's hidden size is 32
    assert metrics["parameters"]["trainable"] == head_size  # only the head trained; the backbone stayed frozen
    assert_reloads_like_the_run(run_dir, keyword_csvs["test"])


def test_linear_probe_extracts_features_once_and_reuses_the_cache(
    tmp_path, tiny_bert_dir, keyword_csvs, caplog, monkeypatch
):
    monkeypatch.setenv("HF_TRANSFER_CACHE", str(tmp_path / "cache"))
    caplog.set_level(logging.INFO, logger="hf_transfer")
    run(
        tmp_path,
        tiny_bert_dir,
        keyword_csvs,
        {"name": "linear_probe", "head": "linear"},
        name="first",
        train={"epochs": 2},
    )
    first = [r.message for r in caplog.records if "cache hit" in r.message]
    caplog.clear()
    run(
        tmp_path,
        tiny_bert_dir,
        keyword_csvs,
        {"name": "linear_probe", "head": "mlp", "hidden_size": 16},
        name="second",
        train={"epochs": 2},
    )
    second = [r.message for r in caplog.records if "cache hit" in r.message]
    assert first == []
    assert len(second) == 3  # train, validation and test features all read back
    caplog.clear()
    run(
        tmp_path,
        tiny_bert_dir,
        keyword_csvs,
        {"name": "linear_probe", "pooling": "cls"},
        name="third",
        train={"epochs": 1},
    )
    assert not [r for r in caplog.records if "cache hit" in r.message]  # other pooling, other features


def test_finetune_learns_and_reloads(tmp_path, tiny_bert_dir, keyword_csvs):
    run_dir = run(tmp_path, tiny_bert_dir, keyword_csvs, "finetune", train={"epochs": 10, "learning_rate": 1e-3})
    assert (run_dir / "model.safetensors").is_file()
    config = json.loads((run_dir / "config.json").read_text())
    assert config["id2label"] == {"0": "neg", "1": "pos"}
    assert metrics_of(run_dir)["test"]["accuracy"] > 0.85
    assert_reloads_like_the_run(run_dir, keyword_csvs["test"])


def test_finetune_unfreezes_only_the_last_blocks_with_layer_decay(tmp_path, tiny_bert_dir, keyword_csvs):
    from hf_transfer.backbones import build_backbone
    from hf_transfer.data.splits import load_splits
    from hf_transfer.strategies.factory import build_strategy

    recipe = load_recipe(
        str(
            text_recipe(
                tmp_path, tiny_bert_dir, keyword_csvs, {"name": "finetune", "unfreeze_last_n": 1, "layer_decay": 0.5}
            )
        )
    )
    backbone = build_backbone(recipe.model, recipe.data, recipe.modality)
    splits = load_splits(recipe.data, *backbone.required_columns(), seed=0)
    plan = build_strategy(recipe.strategy, backbone).plan(splits, recipe, accelerator=None)
    trainable = {n for n, p in plan.model.named_parameters() if p.requires_grad}
    assert any(n.startswith("bert.encoder.layer.1.") for n in trainable)
    assert not any(n.startswith(("bert.encoder.layer.0.", "bert.embeddings.")) for n in trainable)
    assert "classifier.weight" in trainable
    scales = sorted({g["lr_scale"] for g in plan.param_groups})
    assert scales == [0.5, 1.0]  # last block at decay^1, head (pooler, classifier) at full rate


def test_lora_trains_adapter_and_head_and_reloads(tmp_path, tiny_bert_dir, keyword_csvs):
    run_dir = run(
        tmp_path,
        tiny_bert_dir,
        keyword_csvs,
        {"name": "lora", "r": 16, "alpha": 32},
        train={"epochs": 30, "learning_rate": 1e-2},
    )
    adapter_config = json.loads((run_dir / "adapter_config.json").read_text())
    assert sorted(adapter_config["target_modules"]) == ["query", "value"]
    assert "classifier" in adapter_config["modules_to_save"]
    with safe_open(str(run_dir / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert any("lora_A" in k for k in keys)
    assert any("classifier" in k for k in keys)  # the new head travels with the adapter
    metrics = metrics_of(run_dir)
    assert metrics["parameters"]["trainable"] < metrics["parameters"]["total"] / 5
    assert metrics["test"]["accuracy"] > 0.8
    assert_reloads_like_the_run(run_dir, keyword_csvs["test"])


def test_dora_and_ia3_run(tmp_path, tiny_bert_dir, keyword_csvs):
    for name, strategy in (("dora", {"name": "lora", "use_dora": True}), ("ia3", "ia3")):
        run_dir = run(tmp_path, tiny_bert_dir, keyword_csvs, strategy, name=name, train={"epochs": 1})
        config = json.loads((run_dir / "adapter_config.json").read_text())
        assert config["peft_type"] == ("LORA" if name == "dora" else "IA3")
        assert config.get("use_dora", False) == (name == "dora")  # DoRA is LoRA with the magnitude vector on
        assert_reloads_like_the_run(run_dir, keyword_csvs["test"])


def test_predictions_have_probabilities_in_label_order(tmp_path, tiny_bert_dir, keyword_csvs):
    run_dir = run(tmp_path, tiny_bert_dir, keyword_csvs, "finetune", train={"epochs": 10, "learning_rate": 1e-3})
    model = hf_transfer.load(run_dir)
    out = model.predict(["the film was wonderful and fun", "the plot was dull and awful"])
    assert [p["label"] for p in out] == ["pos", "neg"]
    for p in out:
        assert list(p["probabilities"]) == ["neg", "pos"]
        assert sum(p["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert p["score"] == max(p["probabilities"].values())
