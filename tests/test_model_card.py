"""The model card: Hub metadata a model page needs, a body that explains the run, snippets that run."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import yaml
from helpers import text_recipe
from hub_server import local_hub, running_local_hub  # noqa: F401
from huggingface_hub import ModelCard
from topics_and_digits import MULTI, REGRESSION, problem_recipe, problem_splits, run_on

import hf_transfer
from hf_transfer.apps.cli import main
from hf_transfer.config.loading import load_recipe
from hf_transfer.config.recipe import recipe_from_dict
from hf_transfer.hub.push import push_run
from hf_transfer.runs.card import build_model_card, hub_dataset_id, write_model_card
from hf_transfer.runs.record import BackboneRecord, RunRecord, read_record

pytestmark = pytest.mark.usefixtures("one_thread")

LABELS = ["negative", "positive"]


def make_recipe(
    dataset=None, strategy="lora", hub_id=None, checkpoint="sentence-transformers/all-MiniLM-L6-v2", **hub
):
    data = {"dataset": dataset} if dataset else {"train_files": ["/home/me/data/train.csv"]}
    raw = {
        "name": "minilm-rt",
        "task": "text-classification",
        "model": {"checkpoint": checkpoint, "hub_id": hub_id},
        "data": data,
        "strategy": strategy,
        "hub": hub,
    }
    return recipe_from_dict(raw)


def make_record(strategy="lora", hub_id="sentence-transformers/all-MiniLM-L6-v2", library="transformers", **extra):
    return RunRecord(
        task="text-classification",
        strategy=strategy,
        backbone=BackboneRecord(library=library, modality="text", checkpoint=hub_id or "/models/x", hub_id=hub_id),
        label_names=LABELS,
        weights=["adapter_model.safetensors"],
        versions={"hf_transfer": "0.1.0", "peft": "0.21.2"},
        **extra,
    )


def make_metrics(test=True, **extra):
    report = {
        "num_samples": 200,
        "accuracy": 0.81,
        "balanced_accuracy": 0.8,
        "f1_macro": 0.8,
        "precision_macro": 0.82,
        "recall_macro": 0.8,
        "roc_auc": 0.9,
        "log_loss": 0.41,
        "per_class": {name: {"precision": 0.8, "recall": 0.8, "f1": 0.8, "support": 100} for name in LABELS},
    }
    return {
        "report_split": "test" if test else "validation",
        "validation": report,
        **({"test": report} if test else {}),
        "best_epoch": 2,
        "parameters": {"total": 22_700_000, "trainable": 150_000},
        "data": {"train": 8530, "validation": 1066, "test": 1066},
        **extra,
    }


@pytest.mark.parametrize(
    ("dataset", "expected"),
    [
        ("cornell-movie-review-data/rotten_tomatoes", "cornell-movie-review-data/rotten_tomatoes"),
        ("imdb", "imdb"),
        ("imagefolder", None),
        ("sklearn:digits", None),
        ("data/train.csv", None),
        ("./reviews", None),
        ("~/reviews", None),
    ],
)
def test_only_hub_dataset_ids_reach_the_card_metadata(dataset, expected):
    assert hub_dataset_id(make_recipe(dataset=dataset)) == expected


def test_lora_card_metadata_for_a_hub_page():
    recipe = make_recipe("cornell-movie-review-data/rotten_tomatoes", license="apache-2.0")
    card = build_model_card(recipe, make_record(), make_metrics(), location="me/minilm-rt-lora", repo_id="me/x")
    meta = card.data.to_dict()
    assert meta["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert meta["base_model_relation"] == "adapter"
    assert meta["library_name"] == "peft" and meta["pipeline_tag"] == "text-classification"
    assert meta["license"] == "apache-2.0"
    assert meta["datasets"] == ["cornell-movie-review-data/rotten_tomatoes"]
    assert {"hf-transfer", "lora", "peft", "transformers", "text"} <= set(meta["tags"])
    assert set(meta["metrics"]) >= {"accuracy", "f1", "precision", "recall", "roc_auc"}
    result = meta["model-index"][0]["results"][0]
    assert meta["model-index"][0]["name"] == "x"
    assert result["task"]["type"] == "text-classification"
    assert result["dataset"] == {
        "name": "cornell-movie-review-data/rotten_tomatoes",
        "type": "cornell-movie-review-data/rotten_tomatoes",
        "split": "test",
    }
    assert {m["name"]: m["value"] for m in result["metrics"]}["accuracy"] == 0.81

    body = card.text
    assert "`negative` (0), `positive` (1)" in body
    assert "150,000 of 22,700,000 (0.66%)" in body
    assert "| accuracy | 0.8100 |" in body
    assert "![Confusion matrix](confusion_matrix.png)" in body and "![Training curves](training_curves.png)" in body
    assert 'hf-transfer predict me/minilm-rt-lora "A small gem of a movie."' in body
    assert 'PeftModel.from_pretrained(base, "me/minilm-rt-lora")' in body
    assert "## Recipe" in body and "strategy:\n  name: lora\n" in body
    assert "- peft 0.21.2" in body
    assert "## Limitations" in body


def test_finetune_probe_and_dora_cards_name_their_relation_and_library():
    finetune = build_model_card(make_recipe(strategy="finetune"), make_record("finetune"), make_metrics(), "me/ft")
    assert finetune.data.base_model_relation == "finetune" and finetune.data.library_name == "transformers"
    assert 'pipeline("text-classification", model="me/ft")' in finetune.text

    probe = make_record("linear_probe", strategy_metadata={"pooling": "mean"})
    card = build_model_card(make_recipe(strategy="linear_probe"), probe, make_metrics(), "me/probe")
    assert card.data.base_model_relation == "adapter"  # the repo holds only the head on the unchanged base
    assert "Without hf-transfer" not in card.text and "load it with hf-transfer" in card.text

    dora = make_record(strategy_config={"use_dora": True})
    assert "dora" in build_model_card(make_recipe(), dora, make_metrics(), "me/dora").data.tags


def test_a_local_base_without_hub_id_names_no_base_model():
    recipe = make_recipe(checkpoint="/models/minilm")
    card = build_model_card(recipe, make_record(hub_id=None), make_metrics(test=False), location="outputs/run")
    meta = card.data.to_dict()
    assert "base_model" not in meta and "base_model_relation" not in meta
    assert "a local checkpoint (no Hub id was recorded)" in card.text
    assert "validation split that also chose the best epoch" in card.text  # no test split: say so
    assert "local files (`train.csv`)" in card.text and "/home/me" not in card.text.split("## Recipe")[0]


def test_baseline_rows_appear_when_the_run_has_them():
    transfer = {
        "metric": "f1_macro",
        "a": 0.8,
        "baselines": {"tf-idf": 0.7},
        "difference": 0.1,
        "confidence": 0.95,
        "ci_low": 0.05,
        "ci_high": 0.15,
    }
    card = build_model_card(make_recipe(), make_record(), make_metrics(transfer=transfer), "me/x")
    assert "| tf-idf baseline | 0.7000 |" in card.text
    assert "| gain | +0.1000 (95% CI +0.0500 to +0.1500) |" in card.text


def test_card_passes_hub_validation(local_hub):  # noqa: F811
    card = build_model_card(make_recipe("imdb", license="mit"), make_record(), make_metrics(), "me/x", repo_id="me/x")
    card.validate()
    ModelCard(str(card)).validate()  # and after a round trip through text


def test_run_folder_card_and_pushed_card_of_a_finetuned_run(
    tmp_path, monkeypatch, tiny_bert_dir, keyword_csvs, capsys
):
    recipe_path = text_recipe(tmp_path, tiny_bert_dir, keyword_csvs, "finetune", name="ft", train={"epochs": 1})
    raw = yaml.safe_load(recipe_path.read_text())
    raw["model"]["hub_id"] = "tester/tiny-bert"
    recipe_path.write_text(yaml.safe_dump(raw))
    run_dir = hf_transfer.run(str(recipe_path))

    local_card = ModelCard.load(run_dir / "README.md")
    assert f"hf-transfer predict {run_dir}" in local_card.text
    assert local_card.data.base_model == "tester/tiny-bert"
    assert "- `model.safetensors`: the trained weights" in local_card.text
    assert "- `labels.json`: `id2label` and `label2id`" in local_card.text

    # Written again as the runner does, from the same run: the same metadata.
    record = read_record(run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    again = tmp_path / "again"
    again.mkdir()
    for name in ("recipe.yaml", "model.safetensors", "labels.json"):
        (again / name).write_bytes((run_dir / name).read_bytes())
    write_model_card(again, load_recipe(str(recipe_path)), record, metrics)
    assert ModelCard.load(again / "README.md").data.to_dict() == local_card.data.to_dict()

    # Pushed: the transformers-only snippet of the card runs against the repo and prints the same label.
    with running_local_hub(monkeypatch, tmp_path) as hub:
        hub.add_files("tester/tiny-bert", tiny_bert_dir)
        push_run(run_dir, "tester/ft")
        text = hub.files("tester/ft")["README.md"].decode()
        code = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)[-1]
        assert 'pipeline("text-classification", model="tester/ft")' in code
        expected = hf_transfer.load("tester/ft").predict(["A small gem of a movie."])[0]["label"]
        capsys.readouterr()
        exec(compile(code, "README.md", "exec"), {"__name__": "__card__"})
        assert capsys.readouterr().out.strip() == expected


# --------------------------------------------------------------------------------------------------------------------
# Multi-label and regression: the snippets for PEFT alone (LoRA, text) and timm alone (image)
# --------------------------------------------------------------------------------------------------------------------


def library_snippet(run_dir) -> tuple[str, str]:
    """(library, code) of the card's "Without hf-transfer" snippet."""
    text = (run_dir / "README.md").read_text()
    found = re.search(r"Without hf-transfer, with (.+?) alone:\n\n```python\n(.*?)```", text, flags=re.DOTALL)
    assert found, text
    return found.group(1), found.group(2)


def predicted_by_cli(run_dir, inputs, capsys) -> dict:
    capsys.readouterr()
    assert main(["predict", str(run_dir), *inputs, "--json"]) == 0
    (prediction,) = json.loads(capsys.readouterr().out)
    return prediction


def assert_snippet_prints(code, prediction, problem_type, capsys):
    capsys.readouterr()
    exec(compile(code, "README.md", "exec"), {"__name__": "__card__"})
    printed = capsys.readouterr().out.strip()
    if problem_type == MULTI:
        assert printed == str(prediction["labels"])
    else:
        values = {k: float(v) for k, v in re.findall(r"'([^']+)': ([-0-9.e]+)", printed)}
        assert values.keys() == prediction["values"].keys(), printed
        for name, value in prediction["values"].items():
            assert values[name] == pytest.approx(value, rel=1e-4, abs=1e-4)


@pytest.mark.parametrize("problem_type", [MULTI, REGRESSION])
def test_lora_text_cards_peft_snippet_prints_what_predict_gives(
    tmp_path, monkeypatch, tiny_bert_dir, text_data, image_data, problem_type, capsys
):
    scaling = {"mean": [3.0], "std": [2.0]} if problem_type == REGRESSION else None  # un-scaling must not be lost
    splits = problem_splits(problem_type, "text", text_data, image_data, scaling)
    recipe = problem_recipe(tmp_path, "text", tiny_bert_dir, problem_type, "lora", train={"epochs": 1})
    run_dir = run_on(monkeypatch, recipe, splits)
    library, code = library_snippet(run_dir)
    assert library == "PEFT and transformers" and "PeftModel.from_pretrained" in code
    prediction = predicted_by_cli(run_dir, ["A small gem of a movie."], capsys)
    assert_snippet_prints(code, prediction, problem_type, capsys)


@pytest.mark.parametrize("problem_type", [MULTI, REGRESSION])
def test_timm_image_cards_timm_snippet_prints_what_predict_gives(
    tmp_path, monkeypatch, tiny_timm_dir, text_data, image_data, problem_type, capsys
):
    scaling = {"mean": [1.0], "std": [0.8]} if problem_type == REGRESSION else None
    splits = problem_splits(problem_type, "image", text_data, image_data, scaling)
    recipe = problem_recipe(tmp_path, "image", tiny_timm_dir, problem_type, "finetune", train={"epochs": 1})
    run_dir = run_on(monkeypatch, recipe, splits)
    library, code = library_snippet(run_dir)
    assert library == "timm" and "timm.create_model" in code
    # the snippet opens image.jpg in the working directory: a test digit stands in for it
    monkeypatch.chdir(tmp_path)
    shutil.copy(splits.test["image"][0], tmp_path / "image.jpg")
    prediction = predicted_by_cli(run_dir, [str(tmp_path / "image.jpg")], capsys)
    assert_snippet_prints(code, prediction, problem_type, capsys)
