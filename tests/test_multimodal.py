"""Image + text inputs in one recipe (`task: multimodal-classification`): two towers, fused, through the one loop.

The fast tests run on the tiny random towers of the fixtures (timm's test_efficientnet, the tiny BERT) on a task
that each input alone cannot answer: a coloured picture and a text naming a colour, label "yes" when they agree.
Every picture occurs once with each label, and every colour word is named as often by a yes row as by a no row (with
the same phrasing), so an image-only or text-only model is at chance by construction, while the pair decides.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import pytest
import yaml
from datasets import Image as ImageFeature
from helpers import colour_pair_csvs, header_command

import hf_transfer
from hf_transfer.apps.cli import main
from hf_transfer.config.loading import load_recipe
from hf_transfer.config.recipe import recipe_from_dict
from hf_transfer.core.errors import RecipeError
from hf_transfer.data.builtins import DIGIT_WORDS, load_digits_and_words

REPO = Path(__file__).resolve().parents[1]
PHRASES = ("{c}", "it is {c}", "the colour {c}", "a {c} one")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def colour_pairs(tmp_path_factory) -> dict[str, Path]:
    """{"train", "test"}: csv files with columns image (a PNG path), text, label (yes/no); 30 train pictures and 16
    test pictures, each in one yes row and one no row with the same phrase."""
    return colour_pair_csvs(tmp_path_factory.mktemp("colour_pairs"), {"train": 30, "test": 16}, PHRASES, "yes", "no")


def multimodal_recipe(tmp_path, towers, pairs, strategy, name="run", **sections) -> Path:
    image, text = towers
    recipe = {
        "task": "multimodal-classification",
        "model": {"image": {"checkpoint": f"local-dir:{image}"}, "text": {"checkpoint": str(text)}}
        | sections.pop("model", {}),
        "data": {"train_files": [str(pairs["train"])], "test_files": [str(pairs["test"])]} | sections.pop("data", {}),
        "strategy": strategy,
        "train": {"epochs": 12, "batch_size": 16, "learning_rate": 3e-3, "num_workers": 0, "seed": 0}
        | sections.pop("train", {}),
        "eval": {"metric": "accuracy"},
        "output": {"dir": str(tmp_path / "outputs" / name)},
        **sections,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


@pytest.fixture
def towers(tiny_timm_dir, tiny_bert_dir):
    return tiny_timm_dir, tiny_bert_dir


def number_named(text: str) -> int:
    word = text.split()[-1]
    return int(word) if word.isdigit() else DIGIT_WORDS.index(word)


def picture_bytes(split) -> list[bytes]:
    return [value["bytes"] for value in split.cast_column("image", ImageFeature(decode=False))["image"]]


def test_digits_and_words_needs_the_picture_and_the_words():
    data = load_digits_and_words("0-3")
    assert load_digits_and_words("0-3")["train"]["text"] == data["train"]["text"]  # deterministic
    assert data["train"].features["label"].names == ["no", "yes"]
    for split in data.values():
        labels = split["label"]
        assert sum(labels) * 2 == len(labels)  # balanced
        # the picture alone: every picture occurs once with each answer
        by_picture = Counter(zip(picture_bytes(split), labels))
        assert all(by_picture[picture, 1 - label] == n for (picture, label), n in by_picture.items())
        # the words alone: every number is named as often in a yes row as in a no row
        named = Counter((number_named(text), label) for text, label in zip(split["text"], labels))
        assert all(named[number, 1 - label] == n for (number, label), n in named.items())
        assert {number for number, _ in named} == {0, 1, 2, 3}
    assert not set(picture_bytes(data["train"])) & set(picture_bytes(data["test"]))  # disjoint source digits


def test_a_linear_probe_learns_the_pair_that_neither_input_decides(tmp_path, towers, colour_pairs, capsys, caplog):
    strategy = {"name": "linear_probe", "head": "mlp", "hidden_size": 64}
    model = {
        "image": {"checkpoint": f"local-dir:{towers[0]}", "hub_id": "me/tiny-efficientnet"},
        "text": {"checkpoint": str(towers[1]), "hub_id": "me/tiny-bert"},
    }
    recipe = multimodal_recipe(
        tmp_path, towers, colour_pairs, strategy, model=model, baseline=["image_only", "text_only"]
    )
    caplog.set_level(logging.INFO, logger="hf_transfer")
    assert main(["run", str(recipe)]) == 0
    # each tower's features are extracted once: the one-tower baselines read what the fused probe cached
    hits = [m for m in caplog.messages if "cache hit" in m]
    assert len(hits) >= 6, caplog.messages
    out = capsys.readouterr().out
    assert "with the image alone" in out and "with the text alone" in out
    run_dir = tmp_path / "outputs" / "run"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] >= 0.9
    # each test picture is in one yes and one no row: a model of the picture alone gets exactly half right
    assert metrics["baselines"]["image_only"]["accuracy"] == 0.5
    assert metrics["baselines"]["text_only"]["accuracy"] <= 0.75
    assert set(metrics["transfer"]["gains"]) == {"image_only", "text_only"}
    assert metrics["transfer"]["gains"]["image_only"]["ci_low"] > 0

    meta = json.loads((run_dir / "hf_transfer.json").read_text())
    assert meta["backbone"]["image"]["library"] == "timm" and meta["backbone"]["text"]["library"] == "transformers"
    card = (run_dir / "README.md").read_text()
    assert str(towers[0]) in card and str(towers[1]) in card and "--image image.jpg --text" in card

    # the run folder, loaded back, scores the test file as the run did, from Python and from the CLI
    classifier = hf_transfer.load(run_dir)
    again = classifier.evaluate([str(colour_pairs["test"])])
    assert again["accuracy"] == pytest.approx(metrics["test"]["accuracy"])
    assert again["log_loss"] == pytest.approx(metrics["test"]["log_loss"], abs=1e-4)
    rows = list(csv_rows(colour_pairs["test"]))
    pairs = [(str(colour_pairs["test"].parent / row["image"]), row["text"]) for row in rows]
    expected = classifier.predict(pairs)
    capsys.readouterr()
    assert main(["predict", str(run_dir), "--file", str(colour_pairs["test"]), "--json"]) == 0
    from_file = json.loads(capsys.readouterr().out)
    assert [p["label"] for p in from_file] == [p["label"] for p in expected]
    assert [p["score"] for p in from_file] == pytest.approx([p["score"] for p in expected], abs=1e-5)
    assert main(["predict", str(run_dir), "--image", pairs[0][0], "--text", pairs[0][1], "--json"]) == 0
    (one,) = json.loads(capsys.readouterr().out)
    assert one["label"] == expected[0]["label"] and one["score"] == pytest.approx(expected[0]["score"], abs=1e-5)
    assert main(["eval", str(run_dir), "--data", str(colour_pairs["test"]), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == pytest.approx(metrics["test"]["accuracy"])

    # pushed, the repo carries both towers' preprocessing and names each tower by its Hub id
    assert main(["push", str(run_dir), "--repo-id", "me/colour-pairs", "--dry-run"]) == 0
    listed = capsys.readouterr().out
    assert "image/config.json" in listed and "text/tokenizer.json" in listed


def csv_rows(path: Path):
    import csv

    with path.open(newline="", encoding="utf-8") as f:
        yield from csv.DictReader(f)


@pytest.mark.parametrize(
    ("strategy", "model", "train"),
    [
        ({"name": "finetune"}, {"fusion": "gated"}, {"epochs": 10}),
        ({"name": "lora", "r": 4}, {}, {"epochs": 25, "learning_rate": 1e-2}),
    ],
    ids=["finetune-gated", "lora-both-towers"],
)
def test_finetune_and_lora_learn_the_pair_and_load_back(tmp_path, towers, colour_pairs, strategy, model, train):
    recipe = multimodal_recipe(tmp_path, towers, colour_pairs, strategy, model=model, train=train)
    assert main(["run", str(recipe)]) == 0
    run_dir = tmp_path / "outputs" / "run"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] >= 0.8
    if strategy["name"] == "lora":
        targets = json.loads((run_dir / "adapter_config.json").read_text())["target_modules"]
        assert any(t.startswith("image.") for t in targets) and any(t.startswith("text.") for t in targets)
    again = hf_transfer.load(run_dir).evaluate([str(colour_pairs["test"])])
    assert again["accuracy"] == pytest.approx(metrics["test"]["accuracy"])
    assert again["log_loss"] == pytest.approx(metrics["test"]["log_loss"], abs=1e-4)


def test_lora_on_one_tower_adapts_only_that_tower(tmp_path, towers, colour_pairs):
    strategy = {"name": "lora", "r": 2, "towers": "text"}
    recipe = multimodal_recipe(tmp_path, towers, colour_pairs, strategy, train={"epochs": 1})
    assert main(["run", str(recipe)]) == 0
    targets = json.loads((tmp_path / "outputs" / "run" / "adapter_config.json").read_text())["target_modules"]
    assert targets and all(t.startswith("text.") and t.rsplit(".", 1)[-1] in ("query", "value") for t in targets)


def error_lines(capsys) -> list[str]:
    """What the CLI printed as errors (progress bars aside): one line per error."""
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]


def test_mistakes_are_one_line_errors(tmp_path, towers, colour_pairs, capsys, tiny_bert_dir):
    recipe = multimodal_recipe(tmp_path, towers, colour_pairs, "linear_probe", data={"text_column": "caption"})
    assert main(["run", str(recipe)]) == 2
    (err,) = error_lines(capsys)
    assert "'caption' (data.text_column)" in err

    recipe = multimodal_recipe(tmp_path, (tiny_bert_dir, towers[1]), colour_pairs, "linear_probe", name="swap")
    raw = yaml.safe_load(recipe.read_text())
    raw["model"]["image"]["checkpoint"] = str(tiny_bert_dir)  # a text model where the image tower goes
    recipe.write_text(yaml.safe_dump(raw))
    assert main(["run", str(recipe)]) == 2
    (err,) = error_lines(capsys)
    assert "model.image.checkpoint" in err and "timm" in err
    assert not (tmp_path / "outputs" / "swap").exists()

    base = {"task": "multimodal-classification", "data": {"dataset": "sklearn:digits-and-words"}, "strategy": "lora"}
    with pytest.raises(RecipeError, match="model.text is missing"):
        recipe_from_dict(base | {"model": {"image": {"checkpoint": "x"}}})
    with pytest.raises(RecipeError, match="model.image.checkpoint is missing"):
        recipe_from_dict(base | {"model": {"image": {"library": "timm"}, "text": {"checkpoint": "y"}}})
    with pytest.raises(RecipeError, match="baseline image_only is only for task multimodal-classification"):
        recipe_from_dict(
            base | {"task": "text-classification", "model": {"checkpoint": "x"}, "baseline": ["image_only"]}
        )


def test_the_shipped_recipe_names_hub_towers_and_runs_offline_on_the_shared_ones():
    recipe = load_recipe("multimodal/digits-and-words")
    assert recipe.task == "multimodal-classification" and recipe.baseline == ["image_only", "text_only"]
    assert (recipe.model.image.checkpoint, recipe.model.text.checkpoint) == (
        "timm/tf_efficientnet_lite0.in1k",
        "sentence-transformers/all-MiniLM-L6-v2",
    )
    offline = load_recipe("multimodal/digits-and-words", header_command("multimodal/digits-and-words", "Override")[2:])
    assert offline.model.image.checkpoint == "local-dir:../shared/models/tf_efficientnet_lite0"
    assert offline.model.text.checkpoint == "../shared/models/all-MiniLM-L6-v2"


@pytest.mark.slow
def test_digits_and_words_on_the_shared_towers_beats_both_single_inputs(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # the recipe's checkpoint paths are relative to the repository
    run_dir = tmp_path / "run"
    small = ["data.config=0-2", "data.max_train_samples=200", "data.max_test_samples=100", "train.epochs=20"]
    assert main([*header_command("multimodal/digits-and-words", "Override"), *small, f"output.dir={run_dir}"]) == 0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["baselines"]["image_only"]["accuracy"] <= 0.65
    assert metrics["baselines"]["text_only"]["accuracy"] <= 0.65
    assert metrics["test"]["accuracy"] >= 0.75


def test_a_transformers_vision_tower_serves_as_the_image_tower(tmp_path, tiny_bert_dir, colour_pairs):
    from fixtures_models import build_tiny_vision_model

    vit = build_tiny_vision_model(tmp_path / "vit", "vit")
    model = {"image": {"checkpoint": str(vit)}, "text": {"checkpoint": str(tiny_bert_dir)}}
    strategy = {"name": "lora", "r": 2}
    recipe = multimodal_recipe(
        tmp_path, (vit, tiny_bert_dir), colour_pairs, strategy, model=model, train={"epochs": 1}
    )
    assert main(["run", str(recipe)]) == 0
    run_dir = tmp_path / "outputs" / "run"
    meta = json.loads((run_dir / "hf_transfer.json").read_text())
    assert meta["backbone"]["image"]["library"] == "transformers"
    targets = json.loads((run_dir / "adapter_config.json").read_text())["target_modules"]
    assert any(t.startswith("image.") for t in targets) and any(t.startswith("text.") for t in targets)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    again = hf_transfer.load(run_dir).evaluate([str(colour_pairs["test"])])
    assert again["log_loss"] == pytest.approx(metrics["test"]["log_loss"], abs=1e-4)


def test_rank_refuses_a_multimodal_recipe_in_one_line(capsys):
    assert main(["rank", "--recipe", "multimodal/digits-and-words", "--checkpoints", "x"]) == 2
    (err,) = error_lines(capsys)
    assert "multimodal" in err and "rank" in err


# --------------------------------------------------------------------------------------------------------------------
# A regression run on image + text
# --------------------------------------------------------------------------------------------------------------------


@pytest.fixture
def colour_scores(tmp_path):
    """csv files (image, text, score): a coloured picture and a colour word; score 10 when they agree, 0 when not,
    so neither input alone decides it."""
    return colour_pair_csvs(tmp_path, {"train": 24, "test": 8}, ("it is {c}",), 10.0, 0.0, target="score")


@pytest.mark.parametrize(
    ("strategy", "train"),
    [
        ({"name": "linear_probe", "head": "mlp", "hidden_size": 64}, {"epochs": 12}),
        # trains on batches of rows (no cached features): the pair collate carries float targets
        ({"name": "finetune"}, {"epochs": 10}),
    ],
    ids=["linear_probe", "finetune"],
)
def test_multimodal_regression_trains_reloads_and_predicts(
    tmp_path, tiny_timm_dir, tiny_bert_dir, colour_scores, strategy, train, capsys
):
    recipe = {
        "task": "multimodal-classification",
        "problem_type": "regression",
        "model": {"image": {"checkpoint": f"local-dir:{tiny_timm_dir}"}, "text": {"checkpoint": str(tiny_bert_dir)}},
        "data": {
            "train_files": [str(colour_scores["train"])],
            "test_files": [str(colour_scores["test"])],
            "label_column": "score",
            "standardize_targets": True,
        },
        "strategy": strategy,
        "train": {"batch_size": 16, "learning_rate": 3e-3, "num_workers": 0, "seed": 0} | train,
        "output": {"dir": str(tmp_path / "outputs" / "run")},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    assert main(["run", str(path)]) == 0
    run_dir = tmp_path / "outputs" / "run"
    metadata = json.loads((run_dir / "hf_transfer.json").read_text())
    assert metadata["problem_type"] == "regression" and metadata["label_names"] == ["score"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test"]["rmse"] < 4  # in score units; the mean (5) is 5 off every row

    classifier = hf_transfer.load(run_dir)
    again = classifier.evaluate([str(colour_scores["test"])])
    assert again["rmse"] == pytest.approx(metrics["test"]["rmse"], rel=1e-4)
    image = str(tmp_path / "test_0.png")
    (expected,) = classifier.predict([(image, "it is red")])
    capsys.readouterr()
    assert main(["predict", str(run_dir), "--image", image, "--text", "it is red", "--json"]) == 0
    (printed,) = json.loads(capsys.readouterr().out)
    assert printed["values"]["score"] == pytest.approx(expected["values"]["score"], rel=1e-4, abs=1e-4)
    assert -5 < printed["values"]["score"] < 15  # in score units, not standard deviations
