"""One CLIP / SigLIP checkpoint as the whole multimodal model (`model.checkpoint` alone): its image tower embeds the
image, its text tower the text, the fused features feed the head; and a CLIP / SigLIP text tower as the backbone of a
text task.

The checkpoints are random tiny dual encoders (2 layers, width 32, 32x32 images) with CLIP's byte-level tokenizer
(no merges: every word is spelt out), so a tower learns only what the strategy trains on the tiny tasks below: a
coloured picture with a colour word ("yes" when they agree, which neither input decides alone), and short texts whose
label follows one keyword.
"""

from __future__ import annotations

import csv
import json
import random
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from fixtures_models import write_csv_rows
from helpers import colour_pair_csvs, header_command
from hub_server import running_local_hub

import hf_transfer
from hf_transfer.apps.cli import main
from hf_transfer.config.loading import load_recipe
from hf_transfer.config.recipe import recipe_from_dict
from hf_transfer.core.errors import RecipeError
from hf_transfer.hub.push import push_run

PHRASES = ("{c}", "it is {c}", "a {c} one")
POSITIONS = 32
HUB_ID = {"clip": "tester/tiny-clip", "siglip": "tester/tiny-siglip"}


pytestmark = pytest.mark.usefixtures("one_thread")


def build_tiny_dual_encoder(folder: Path, kind: str) -> Path:
    """A random tiny CLIP or SigLIP saved as the Hub holds one: weights, config, tokenizer, image processor."""
    import transformers as tf
    from test_zero_shot import byte_level_clip_tokenizer

    torch.manual_seed(0)
    tokenizer = byte_level_clip_tokenizer()
    tokenizer.model_max_length = POSITIONS
    # A wider initialisation than real checkpoints: random tiny towers then keep their inputs apart.
    shape = dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, initializer_factor=5.0
    )
    text = shape | dict(
        vocab_size=len(tokenizer), max_position_embeddings=POSITIONS, bos_token_id=0, eos_token_id=1, pad_token_id=1
    )
    vision = shape | dict(image_size=32, patch_size=8)
    square = {"height": 32, "width": 32}
    if kind == "clip":
        model = tf.CLIPModel(tf.CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
        processor = tf.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size=square)
    else:
        model = tf.SiglipModel(tf.SiglipConfig(text_config=text, vision_config=vision))
        processor = tf.SiglipImageProcessor(size=square)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def dual(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("dual")
    return {kind: build_tiny_dual_encoder(root / kind, kind) for kind in ("clip", "siglip")}


@pytest.fixture(scope="module")
def colour_pairs(tmp_path_factory) -> dict[str, Path]:
    """{"train", "test"}: csv files with columns image (a PNG path), text, label (yes/no); every picture is in one yes
    row and one no row with the same phrase, so neither input alone beats chance."""
    return colour_pair_csvs(tmp_path_factory.mktemp("colour_pairs"), {"train": 40, "test": 12}, PHRASES, "yes", "no")


@pytest.fixture(scope="module")
def keyword_texts(tmp_path_factory) -> dict[str, Path]:
    """{"train", "test"}: short texts (within the tiny towers' 32 positions) labelled by the one keyword they hold."""
    rng = random.Random(1)
    words = {"pos": ["good", "fun", "great"], "neg": ["bad", "dull", "awful"]}
    filler = ["so", "a"]  # little around the keyword: a frozen random char-level tower hears the length loudest
    folder = tmp_path_factory.mktemp("keyword_texts")
    out = {}
    for split, n in (("train", 96), ("test", 32)):
        rows = []
        for i in range(n):
            label = "pos" if i % 2 else "neg"
            text = [rng.choice(filler) for _ in range(rng.randint(0, 1))]
            text.insert(rng.randrange(len(text) + 1), rng.choice(words[label]))
            rows.append({"text": " ".join(text), "label": label})
        out[split] = write_csv_rows(folder / f"{split}.csv", rows, ["text", "label"])
    return out


def write(tmp_path: Path, recipe: dict, name: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def dual_recipe(tmp_path, checkpoint, pairs, strategy, name="run", model=None, train=None, **sections) -> Path:
    recipe = {
        "task": "multimodal-classification",
        "model": {"checkpoint": str(checkpoint)} | (model or {}),
        "data": {"train_files": [str(pairs["train"])], "test_files": [str(pairs["test"])]},
        "strategy": strategy,
        "train": {"epochs": 12, "batch_size": 16, "learning_rate": 3e-3, "num_workers": 0, "seed": 0} | (train or {}),
        "eval": {"metric": "accuracy"},
        "output": {"dir": str(tmp_path / "outputs" / name)},
        **sections,
    }
    return write(tmp_path, recipe, name)


def csv_pairs(path: Path) -> list[tuple[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return [(str(path.parent / row["image"]), row["text"]) for row in csv.DictReader(f)]


def predicted_by_cli(capsys, args: list[str]) -> list[dict]:
    capsys.readouterr()
    assert main(["predict", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


# --------------------------------------------------------------------------------------------------------------------
# One dual encoder as the multimodal model
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "strategy", "model", "train"),
    [
        (
            "clip",
            {"name": "linear_probe", "head": "mlp", "hidden_size": 64, "pooling": "projection"},
            {},
            {"epochs": 30},
        ),
        ("clip", {"name": "lora", "r": 4}, {"fusion": "gated"}, {"epochs": 20, "learning_rate": 1e-2}),
        ("siglip", {"name": "finetune"}, {}, {"epochs": 15, "learning_rate": 1e-3}),
    ],
    ids=["clip-linear-probe", "clip-lora-gated", "siglip-finetune"],
)
def test_one_dual_encoder_learns_the_pair_and_loads_back(
    tmp_path, dual, colour_pairs, capsys, kind, strategy, model, train
):
    recipe = dual_recipe(tmp_path, dual[kind], colour_pairs, strategy, model=model, train=train)
    assert main(["run", str(recipe)]) == 0
    run_dir = tmp_path / "outputs" / "run"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] >= 0.8, metrics["test"]
    meta = json.loads((run_dir / "hf_transfer.json").read_text())
    for tower in ("image", "text"):  # both towers are the one checkpoint, each read by its own model class
        assert meta["backbone"][tower]["checkpoint"] == str(dual[kind])
        assert meta["backbone"][tower]["library"] == "transformers"
    if strategy["name"] == "lora":
        targets = json.loads((run_dir / "adapter_config.json").read_text())["target_modules"]
        for tower in ("image", "text"):
            mine = [t for t in targets if t.startswith(f"{tower}.")]
            assert mine and {t.rsplit(".", 1)[-1] for t in mine} == {"q_proj", "v_proj"}

    classifier = hf_transfer.load(run_dir)
    again = classifier.evaluate([str(colour_pairs["test"])])
    assert again["accuracy"] == pytest.approx(metrics["test"]["accuracy"])
    assert again["log_loss"] == pytest.approx(metrics["test"]["log_loss"], abs=1e-4)
    pairs = csv_pairs(colour_pairs["test"])
    expected = classifier.predict(pairs)
    from_file = predicted_by_cli(capsys, [str(run_dir), "--file", str(colour_pairs["test"])])
    assert [p["label"] for p in from_file] == [p["label"] for p in expected]
    assert [p["score"] for p in from_file] == pytest.approx([p["score"] for p in expected], abs=1e-5)
    (one,) = predicted_by_cli(capsys, [str(run_dir), "--image", pairs[0][0], "--text", pairs[0][1]])
    assert one["label"] == expected[0]["label"] and one["score"] == pytest.approx(expected[0]["score"], abs=1e-5)


@pytest.mark.parametrize(("name", "leaves"), [("lora", ("q_proj", "v_proj")), ("ia3", ("k_proj", "v_proj", "fc2"))])
def test_adapters_on_the_text_tower_alone(tmp_path, dual, colour_pairs, name, leaves):
    strategy = {"name": name, "towers": "text"}
    recipe = dual_recipe(tmp_path, dual["clip"], colour_pairs, strategy, train={"epochs": 1})
    assert main(["run", str(recipe)]) == 0
    targets = json.loads((tmp_path / "outputs" / "run" / "adapter_config.json").read_text())["target_modules"]
    assert targets and all(t.startswith("text.") for t in targets)
    assert {t.rsplit(".", 1)[-1] for t in targets} == set(leaves)


def test_the_one_tower_baselines_of_a_dual_encoder_probe_its_projections(tmp_path, dual, colour_pairs):
    strategy = {"name": "linear_probe", "pooling": "projection"}
    recipe = dual_recipe(
        tmp_path, dual["clip"], colour_pairs, strategy, train={"epochs": 2}, baseline=["image_only", "text_only"]
    )
    assert main(["run", str(recipe)]) == 0
    metrics = json.loads((tmp_path / "outputs" / "run" / "metrics.json").read_text())
    # every test picture is in one yes and one no row: the picture alone gets exactly half right
    assert metrics["baselines"]["image_only"]["accuracy"] == 0.5
    assert set(metrics["transfer"]["gains"]) == {"image_only", "text_only"}


def test_a_pushed_dual_encoder_run_reloads_by_repo_id_with_the_same_predictions(
    tmp_path, monkeypatch, dual, colour_pairs
):
    strategy = {"name": "lora", "r": 2}
    model = {"hub_id": HUB_ID["clip"]}
    recipe = dual_recipe(tmp_path, dual["clip"], colour_pairs, strategy, model=model, train={"epochs": 2})
    run_dir = hf_transfer.run(str(recipe))
    pairs = csv_pairs(colour_pairs["test"])[:6]
    local = hf_transfer.load(run_dir).predict_proba(pairs)
    with running_local_hub(monkeypatch, tmp_path) as hub:
        hub.add_files(HUB_ID["clip"], dual["clip"])
        push_run(run_dir, "tester/clip-pairs")
        files = hub.files("tester/clip-pairs")
        assert {"adapter_model.safetensors", "image/preprocessor_config.json", "text/tokenizer_config.json"} <= set(
            files
        )
        for name, data in files.items():
            assert str(dual["clip"]).encode() not in data, name
        pushed = yaml.safe_load(files["recipe.yaml"])["model"]
        assert pushed["checkpoint"] == pushed["image"]["checkpoint"] == pushed["text"]["checkpoint"] == HUB_ID["clip"]
        remote = hf_transfer.load("tester/clip-pairs")
        assert remote.predict_proba(pairs) == pytest.approx(local, abs=1e-5)


def test_a_lone_checkpoint_must_be_a_dual_encoder(tmp_path, tiny_bert_dir, colour_pairs, capsys):
    recipe = dual_recipe(tmp_path, tiny_bert_dir, colour_pairs, "linear_probe", name="bert")
    assert main(["run", str(recipe)]) == 2
    (err,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert "bert" in err and "CLIP" in err and "model.image" in err
    assert not (tmp_path / "outputs" / "bert").exists()
    base = {"task": "multimodal-classification", "data": {"dataset": "sklearn:digits-and-words"}, "strategy": "lora"}
    with pytest.raises(RecipeError, match="model.checkpoint with only one of"):
        recipe_from_dict(base | {"model": {"checkpoint": "x", "image": {"checkpoint": "y"}}})
    # the lone checkpoint names both towers, so a recorded recipe loads back as the same run
    loaded = recipe_from_dict(base | {"model": {"checkpoint": "org/clip", "hub_id": None}})
    assert loaded.model.image.checkpoint == loaded.model.text.checkpoint == "org/clip"
    assert recipe_from_dict(loaded.to_dict()).to_dict() == loaded.to_dict()


# --------------------------------------------------------------------------------------------------------------------
# A CLIP / SigLIP text tower as a text backbone
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "strategy", "train"),
    [
        ("clip", {"name": "linear_probe", "pooling": "projection"}, {"epochs": 30, "learning_rate": 1e-2}),
        ("clip", {"name": "lora", "r": 4}, {"epochs": 8, "learning_rate": 1e-2}),
        ("siglip", {"name": "finetune"}, {"epochs": 5}),
        ("siglip", {"name": "linear_probe", "pooling": "pooler"}, {"epochs": 30, "learning_rate": 1e-2}),
    ],
    ids=["clip-probe-projection", "clip-lora", "siglip-finetune", "siglip-probe-pooler"],
)
def test_a_dual_encoders_text_tower_learns_a_text_task(tmp_path, dual, keyword_texts, capsys, kind, strategy, train):
    recipe = {
        "task": "text-classification",
        "model": {"checkpoint": str(dual[kind])},
        "data": {"train_files": [str(keyword_texts["train"])], "test_files": [str(keyword_texts["test"])]},
        "strategy": strategy,
        "train": {"batch_size": 16, "learning_rate": 3e-3, "num_workers": 0, "seed": 0} | train,
        "eval": {"metric": "accuracy"},
        "output": {"dir": str(tmp_path / "run")},
    }
    assert main(["run", str(write(tmp_path, recipe, "text"))]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] >= 0.85, metrics["test"]
    classifier = hf_transfer.load(tmp_path / "run")
    again = classifier.evaluate([str(keyword_texts["test"])])
    assert again["log_loss"] == pytest.approx(metrics["test"]["log_loss"], abs=1e-4)
    # the card offers no transformers snippet: no transformers class holds a text tower under a classifier
    card = (tmp_path / "run" / "README.md").read_text()
    assert "AutoModelForSequenceClassification" not in card and 'pipeline("text-classification"' not in card
    texts = ["so good", "a dull"]
    cli = predicted_by_cli(capsys, [str(tmp_path / "run"), *texts])
    assert [p["label"] for p in cli] == [p["label"] for p in classifier.predict(texts)]


def test_a_text_tower_pooling_it_lacks_is_one_line(tmp_path, dual, keyword_texts, capsys):
    recipe = {
        "task": "text-classification",
        "model": {"checkpoint": str(dual["siglip"])},
        "data": {"train_files": [str(keyword_texts["train"])], "test_files": [str(keyword_texts["test"])]},
        "strategy": {"name": "linear_probe", "pooling": "projection"},
        "output": {"dir": str(tmp_path / "run")},
    }
    assert main(["run", str(write(tmp_path, recipe, "text"))]) == 2
    (err,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert "strategy.pooling 'projection'" in err and "pooler" in err


# --------------------------------------------------------------------------------------------------------------------
# The shipped recipes, run as their headers show on tiny stand-ins cached under their Hub ids
# --------------------------------------------------------------------------------------------------------------------


def test_the_clip_probe_recipe_runs_as_shown_with_its_zero_shot_baseline(
    tmp_path, local_hub_cache, digits_imagefolder, monkeypatch
):
    name = "images/clip-vit-b32-linear-probe-zero-shot"
    recipe = load_recipe(name)
    assert recipe.model.checkpoint == "openai/clip-vit-base-patch32" and recipe.baseline == ["zero_shot"]
    assert recipe.data.dataset == "uoft-cs/cifar10" and recipe.strategy.pooling == "projection"
    local_hub_cache("openai/clip-vit-base-patch32", build_tiny_dual_encoder(tmp_path / "clip", "clip"))
    shutil.copytree(digits_imagefolder, tmp_path / "digits")
    monkeypatch.chdir(tmp_path)
    # the Hub dataset replaced by the local digits folder, the only override
    data = ["data.dataset=imagefolder", "data.data_dir=digits", "data.image_column=image", "data.label_column=label"]
    assert main([*header_command(name), *data, "train.epochs=1"]) == 0
    run_dir = tmp_path / "outputs" / "clip-vit-b32-linear-probe-zero-shot"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["transfer"]["baseline"] == "zero_shot" and "zero_shot" in metrics["baselines"]
    record = json.loads((run_dir / "hf_transfer.json").read_text())
    assert record["backbone"]["hub_id"] == "openai/clip-vit-base-patch32"
    assert record["zero_shot"]["prompts"]["one"][0] == "a photo of a one."
    assert hf_transfer.load(run_dir).predict([str(next((tmp_path / "digits" / "test" / "one").glob("*.png")))])


def test_the_siglip_fusion_recipe_runs_as_shown(tmp_path, local_hub_cache, colour_pairs, monkeypatch, capsys):
    name = "multimodal/siglip-fusion-fashion-products"
    recipe = load_recipe(name)
    assert recipe.model.checkpoint == "google/siglip-base-patch16-224"
    assert (recipe.data.dataset, recipe.data.image_column, recipe.data.text_column, recipe.data.label_column) == (
        "ashraq/fashion-product-images-small",
        "image",
        "productDisplayName",
        "gender",
    )
    local_hub_cache("google/siglip-base-patch16-224", build_tiny_dual_encoder(tmp_path / "siglip", "siglip"))
    monkeypatch.chdir(tmp_path)
    data = [
        f"data.train_files={colour_pairs['train']}",
        f"data.test_files={colour_pairs['test']}",
        "data.text_column=text",
        "data.label_column=label",
    ]
    assert main([*header_command(name), *data, "train.epochs=2"]) == 0
    run_dir = tmp_path / "outputs" / "siglip-fusion-fashion-products"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["baselines"]) == {"image_only", "text_only"}
    meta = json.loads((run_dir / "hf_transfer.json").read_text())
    assert meta["backbone"]["image"]["checkpoint"] == meta["backbone"]["text"]["checkpoint"] == recipe.model.checkpoint
    image, text = csv_pairs(colour_pairs["test"])[0]
    (one,) = predicted_by_cli(capsys, [str(run_dir), "--image", image, "--text", text])
    assert one["label"] in ("yes", "no")
