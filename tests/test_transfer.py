"""Source -> target transfer with a no-transfer baseline: the gain is measured, with a confidence interval."""

from __future__ import annotations

import csv
import json

import pytest
from helpers import text_recipe

import hf_transfer


def few_rows(src, dst, n):
    with open(src) as f:
        rows = list(csv.DictReader(f))[:n]
    with open(dst, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return dst


@pytest.mark.parametrize("target_strategy", ["finetune", "lora"])
def test_source_stage_then_target_with_scratch_baseline(tmp_path, tiny_bert_dir, keyword_csvs, target_strategy):
    # Target: the same kind of task with only 24 labelled rows; source: 240 rows of it under other label names.
    target_train = few_rows(keyword_csvs["train"], tmp_path / "few.csv", 24)
    source_train = tmp_path / "source.csv"
    with open(keyword_csvs["train"]) as f, open(source_train, "w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=["text", "label"])
        writer.writeheader()
        for row in csv.DictReader(f):
            writer.writerow({"text": row["text"], "label": {"pos": "good", "neg": "bad"}[row["label"]]})
    recipe = text_recipe(
        tmp_path,
        tiny_bert_dir,
        {"train": target_train, "test": keyword_csvs["test"]},
        target_strategy,
        train={"epochs": 10, "learning_rate": 3e-3, "batch_size": 8},
        source={
            "data": {"train_files": [str(source_train)]},
            "strategy": "finetune",
            "train": {"epochs": 10, "learning_rate": 1e-3, "batch_size": 16, "seed": 0},
        },
        baseline=["scratch", "head_only"],
    )
    run_dir = hf_transfer.run(str(recipe))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    transfer = metrics["transfer"]
    assert transfer["split"] == "test" and transfer["baseline"] == "scratch"
    assert set(transfer["baselines"]) == {"scratch", "head_only"}
    # what the source stage learnt carries over: the gain over training from scratch is real and its CI excludes 0
    assert transfer["metric"] == "f1_macro"  # the recipe's eval.metric
    assert transfer["a"] == pytest.approx(metrics["test"]["f1_macro"])
    assert transfer["difference"] > 0.2
    assert transfer["ci_low"] > 0
    assert transfer["ci_low"] <= transfer["difference"] <= transfer["ci_high"]
    source = metrics["source"]
    assert source["label_names"] == ["bad", "good"]
    assert source["before"]["accuracy"] > 0.9
    assert source["forgotten"]["accuracy"] == pytest.approx(source["before"]["accuracy"] - source["after"]["accuracy"])
    card = (run_dir / "README.md").read_text()
    assert "scratch baseline" in card
    # the run folder loads back on its own (a LoRA target carries the source-trained weights with it)
    if target_strategy == "lora":
        assert (run_dir / "source_model" / "model.safetensors").is_file()
        pushed = hf_transfer.push(run_dir, "tester/transfer", dry_run=True, base_model="tester/tiny-bert")
        assert "source_model/model.safetensors" in pushed.files  # and they travel to the Hub too
    again = hf_transfer.load(run_dir).evaluate([str(keyword_csvs["test"])])
    assert again["accuracy"] == pytest.approx(metrics["test"]["accuracy"])
