"""transformers vision backbones (ViT, DINOv2, ConvNeXt, HF ResNet, and the image towers of CLIP and SigLIP) on
tiny random checkpoints: every strategy learns through the one loop, run folders predict as the run scored, a
fine-tuned run is a plain transformers repo that `pipeline("image-classification")` loads and agrees with."""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from fixtures_models import build_tiny_vision_model, write_csv_rows
from helpers import assert_reloads_like_the_run, metrics_of
from hub_server import running_local_hub, use_local_hub
from PIL import Image

import hf_transfer
from hf_transfer.apps.cli import main
from hf_transfer.backbones import BACKBONES, build_backbone
from hf_transfer.config.sections import DataConfig, ModelConfig
from hf_transfer.config.strategies import LinearProbeConfig
from hf_transfer.core.errors import ModelError, RecipeError
from hf_transfer.hub.push import push_run
from hf_transfer.strategies.factory import build_strategy

COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (40, 70, 220)}
HIDDEN = 32  # the tiny models' width (ConvNeXt's and ResNet's last stage too)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def vision_dir(tmp_path_factory):
    """`vision_dir(family)`: the tiny checkpoint folder of that family, built once per module."""
    root = tmp_path_factory.mktemp("tiny_vision")
    built: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in built:
            built[family] = build_tiny_vision_model(root / family, family)
        return built[family]

    return get


@pytest.fixture(scope="module")
def squares(tmp_path_factory) -> dict:
    """An imagefolder `{train,test}/{red,green,blue}/*.png` of 24x24 noisy grey images, each with a square of its
    class's colour somewhere in it (16 train and 6 test per class), and `test.csv` (image, label) of its test
    split: separable by colour, so that even random tiny encoders carry the label."""
    root = tmp_path_factory.mktemp("squares")
    rng = random.Random(0)
    noise = np.random.default_rng(0)
    rows = []
    for split, n in (("train", 16), ("test", 6)):
        for name, colour in COLOURS.items():
            for i in range(n):
                pixels = noise.integers(90, 160, size=(24, 24, 3)).astype(np.uint8)
                side = rng.randint(12, 18)
                top, left = rng.randint(0, 24 - side), rng.randint(0, 24 - side)
                pixels[top : top + side, left : left + side] = colour
                path = root / split / name / f"{name}_{i:02d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels).save(path)
                if split == "test":
                    rows.append({"image": str(path), "label": name})
    csv = write_csv_rows(root / "test.csv", rows, ["image", "label"])
    return {
        "root": root,
        "test_csv": csv,
        "test_images": [r["image"] for r in rows],
        "test_labels": [r["label"] for r in rows],
    }


def vision_recipe(tmp_path, checkpoint, strategy, squares, name="run", train=None, model=None, data=None) -> Path:
    recipe = {
        "description": "test transformers vision recipe",
        "task": "image-classification",
        "model": {"checkpoint": str(checkpoint)} | (model or {}),
        "data": {"dataset": "imagefolder", "data_dir": str(squares["root"]), "test_split": "test", "augment": "light"}
        | (data or {}),
        "strategy": strategy,
        "train": {"epochs": 4, "batch_size": 16, "learning_rate": 3e-3, "seed": 0} | (train or {}),
        "output": {"dir": str(tmp_path / "outputs" / name)},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def test_the_backbone_is_registered_and_auto_picks_it_for_transformers_checkpoints_only(
    vision_dir, tiny_timm_dir, tiny_bert_dir, local_hub_cache
):
    assert "transformers:image" in BACKBONES
    vit = build_backbone(ModelConfig(checkpoint=str(vision_dir("vit"))), None, "image")
    assert (vit.library, vit.modality) == ("transformers", "image")
    assert build_backbone(ModelConfig(checkpoint=str(tiny_timm_dir)), None, "image").library == "timm"
    assert build_backbone(ModelConfig(checkpoint="resnet18"), None, "image").library == "timm"
    local_hub_cache("tester/tiny-dinov2", vision_dir("dinov2"))
    by_id = build_backbone(ModelConfig(checkpoint="tester/tiny-dinov2"), None, "image")
    assert by_id.library == "transformers" and by_id.base_model_id == "tester/tiny-dinov2"
    # a text checkpoint given for an image task is named, not loaded as something else
    forced = build_backbone(ModelConfig(checkpoint=str(tiny_bert_dir), library="transformers"), None, "image")
    with pytest.raises(ModelError, match="is a .bert. model, not an image model"):
        forced.config  # noqa: B018


@pytest.mark.parametrize(
    ("family", "pooling"),
    [
        ("vit", "cls"),
        ("dinov2", "cls+mean"),
        ("convnext", "mean"),
        ("resnet", "pooler"),
        ("clip", "pooler"),
        ("siglip", "pooler"),
    ],
)
def test_linear_probe_learns_with_each_familys_pooling_and_reloads(tmp_path, vision_dir, squares, family, pooling):
    strategy = {"name": "linear_probe", "pooling": pooling}
    recipe = vision_recipe(
        tmp_path, vision_dir(family), strategy, squares, train={"epochs": 10, "learning_rate": 3e-2}
    )
    run_dir = hf_transfer.run(str(recipe))
    assert metrics_of(run_dir)["test"]["accuracy"] >= 0.8  # chance is 1/3
    # the run folder holds the image processor, so it predicts without the checkpoint's preprocessing files
    assert json.loads((run_dir / "preprocessor_config.json").read_text())["image_processor_type"]
    assert_reloads_like_the_run(run_dir, squares["test_csv"], squares["test_images"], squares["test_labels"])


def test_pooling_options_give_the_documented_shapes_and_wrong_ones_name_the_valid(vision_dir, tiny_timm_dir):
    pixels = torch.randn(2, 3, 32, 32)

    def features(family: str, pooling: str) -> torch.Tensor:
        backbone = build_backbone(ModelConfig(checkpoint=str(vision_dir(family))), None, "image")
        return backbone.build_feature_extractor(pooling)(pixel_values=pixels)

    for pooling in ("mean", "cls", "pooler"):
        assert features("vit", pooling).shape == (2, HIDDEN)
    assert features("dinov2", "cls+mean").shape == (2, 2 * HIDDEN)
    assert torch.equal(features("dinov2", "cls+mean")[:, :HIDDEN], features("dinov2", "cls"))
    assert features("clip", "projection").shape == (2, 16)  # the tiny CLIP's projection_dim
    assert features("convnext", "mean").shape == features("convnext", "pooler").shape == (2, HIDDEN)
    assert features("siglip", "mean").shape == (2, HIDDEN)
    with pytest.raises(RecipeError, match="needs a class token .* choose mean or pooler"):
        features("convnext", "cls")
    with pytest.raises(RecipeError, match="CLIP's image embedding"):
        features("vit", "projection")
    timm_backbone = build_backbone(ModelConfig(checkpoint=str(tiny_timm_dir)), None, "image")
    probe = build_strategy(LinearProbeConfig(pooling="cls+mean"), timm_backbone)
    with pytest.raises(RecipeError, match=r"^strategy.pooling 'cls\+mean' .* choose one of mean, cls\.$"):
        probe.extractor  # noqa: B018


def test_layer_groups_run_from_the_embeddings_through_each_block_to_the_classifier(vision_dir):
    for family, blocks in (("vit", 2), ("convnext", 2), ("resnet", 2), ("clip", 2)):
        backbone = build_backbone(ModelConfig(checkpoint=str(vision_dir(family))), None, "image")
        model = backbone.build_classifier(["a", "b"])
        groups = backbone.layer_groups(model)
        assert len(groups) == blocks + 2, family
        assert sorted(n for g in groups for n in g) == sorted(n for n, _ in model.named_parameters())
        assert any("embed" in n for n in groups[0]) and not any(".0." in n for n in groups[0]), family
        assert {n for n in groups[-1] if n.startswith("classifier")}, family


def test_finetune_last_block_with_layer_decay_is_a_plain_transformers_repo_that_pipeline_agrees_with(
    tmp_path, vision_dir, squares
):
    from transformers import pipeline

    strategy = {"name": "finetune", "unfreeze_last_n": 1, "layer_decay": 0.7}
    recipe = vision_recipe(tmp_path, vision_dir("vit"), strategy, squares, train={"epochs": 6})
    run_dir = hf_transfer.run(str(recipe))
    metrics = metrics_of(run_dir)
    assert metrics["test"]["accuracy"] >= 0.8
    backbone = build_backbone(ModelConfig(checkpoint=str(vision_dir("vit"))), None, "image")
    model = backbone.build_classifier(list(COLOURS))
    sizes = {name: p.numel() for name, p in model.named_parameters()}
    frozen = sum(sizes[name] for group in backbone.layer_groups(model)[:-2] for name in group)
    assert metrics["parameters"]["trainable"] == metrics["parameters"]["total"] - frozen
    config = json.loads((run_dir / "config.json").read_text())
    assert set(config["id2label"].values()) == set(COLOURS) and config["label2id"]["red"] in (0, 1, 2)
    classifier = assert_reloads_like_the_run(
        run_dir, squares["test_csv"], squares["test_images"], squares["test_labels"]
    )
    ours = classifier.predict(squares["test_images"])
    theirs = pipeline("image-classification", model=str(run_dir), device="cpu")(squares["test_images"], top_k=3)
    for mine, scored in zip(ours, theirs):
        assert scored[0]["label"] == mine["label"]
        assert {s["label"]: s["score"] for s in scored} == pytest.approx(mine["probabilities"], abs=1e-4)


def test_image_size_resizes_the_processor_and_the_position_grid_and_the_run_folder_records_both(
    tmp_path, vision_dir, squares
):
    from transformers import pipeline

    recipe = vision_recipe(
        tmp_path, vision_dir("vit"), "finetune", squares, data={"image_size": 48}, train={"epochs": 1}
    )
    run_dir = hf_transfer.run(str(recipe))
    saved = json.loads((run_dir / "preprocessor_config.json").read_text())
    assert saved["size"] == {"height": 48, "width": 48}
    # a ViT's fixed grid of position embeddings is resampled, and the saved config says the new size
    assert json.loads((run_dir / "config.json").read_text())["image_size"] == 48
    classifier = hf_transfer.load(run_dir)
    assert classifier.backbone.data_config["input_size"] == (3, 48, 48)
    ours = classifier.predict_proba(squares["test_images"][:3])
    theirs = pipeline("image-classification", model=str(run_dir), device="cpu")(squares["test_images"][:3], top_k=3)
    names = classifier.label_names
    for row, scored in zip(ours, theirs):
        assert [s["score"] for s in sorted(scored, key=lambda s: names.index(s["label"]))] == pytest.approx(
            row.tolist(), abs=1e-4
        )
    native = build_backbone(ModelConfig(checkpoint=str(vision_dir("vit"))), None, "image").build_classifier(["a"])
    resized = build_backbone(ModelConfig(checkpoint=str(vision_dir("vit"))), DataConfig(image_size=48), "image")
    assert torch.equal(resized.build_classifier(["a"]).vit.embeddings.cls_token, native.vit.embeddings.cls_token)
    # resize-then-crop processors keep their ratio; CLIP's tower takes the new grid too
    dinov2 = build_backbone(ModelConfig(checkpoint=str(vision_dir("dinov2"))), DataConfig(image_size=64), "image")
    assert dinov2.image_processor.size.shortest_edge == 72 and dinov2.data_config["input_size"] == (3, 64, 64)
    clip = build_backbone(ModelConfig(checkpoint=str(vision_dir("clip"))), DataConfig(image_size=48), "image")
    assert clip.build_feature_extractor("pooler")(pixel_values=torch.randn(2, 3, 48, 48)).shape == (2, HIDDEN)


@pytest.mark.parametrize(
    ("family", "strategy", "targets", "learning_rate"),
    [
        ("clip", {"name": "lora", "r": 4}, {"q_proj", "v_proj"}, 1e-2),
        ("convnext", {"name": "lora", "r": 4, "use_dora": True}, {"pwconv1", "pwconv2"}, 1e-2),
        ("resnet", "ia3", {"convolution"}, 5e-2),  # IA3 trains only scales and the head: a larger step
    ],
)
def test_adapters_use_each_familys_default_targets_learn_and_reload(
    tmp_path, vision_dir, squares, family, strategy, targets, learning_rate
):
    train = {"epochs": 6, "learning_rate": learning_rate}
    recipe = vision_recipe(tmp_path, vision_dir(family), strategy, squares, train=train)
    run_dir = hf_transfer.run(str(recipe))
    assert metrics_of(run_dir)["test"]["accuracy"] >= 0.8
    adapter = json.loads((run_dir / "adapter_config.json").read_text())
    assert set(adapter["target_modules"]) == targets
    assert adapter["modules_to_save"] == ["classifier"]
    assert (run_dir / "preprocessor_config.json").is_file() and not (run_dir / "model.safetensors").exists()
    assert_reloads_like_the_run(run_dir, squares["test_csv"], squares["test_images"], squares["test_labels"])


def test_lora_on_a_siglip_tower_by_hub_id_pushes_with_a_card_snippet_that_runs(
    tmp_path, vision_dir, squares, monkeypatch, capsys
):
    hub_id = "tester/tiny-siglip"
    with running_local_hub(monkeypatch, tmp_path) as hub:
        hub.add_files(hub_id, vision_dir("siglip"))
        recipe = vision_recipe(tmp_path, hub_id, {"name": "lora", "r": 4}, squares, train={"epochs": 2})
        run_dir = hf_transfer.run(str(recipe))
        metadata = json.loads((run_dir / "hf_transfer.json").read_text())
        assert metadata["backbone"]["library"] == "transformers" and metadata["backbone"]["hub_id"] == hub_id
        local = hf_transfer.load(run_dir).predict(squares["test_images"][:1])[0]
        push_run(run_dir, "tester/siglip-lora")
        use_local_hub(monkeypatch, hub, cache_dir=tmp_path / "fresh_cache")
        assert hf_transfer.load("tester/siglip-lora").predict(squares["test_images"][:1])[0]["label"] == local["label"]
        card = hub.files("tester/siglip-lora")["README.md"].decode()
        code = re.findall(r"```python\n(.*?)```", card, flags=re.DOTALL)[-1]
        assert "AutoModelForImageClassification" in code and "PeftModel.from_pretrained" in code
        monkeypatch.chdir(tmp_path)
        shutil.copyfile(squares["test_images"][0], tmp_path / "image.jpg")
        capsys.readouterr()
        exec(compile(code, "README.md", "exec"), {"__name__": "__card__"})
        assert capsys.readouterr().out.strip() == local["label"]


def test_a_pushed_finetuned_repo_loads_through_pipeline_by_repo_id(tmp_path, vision_dir, squares, monkeypatch, capsys):
    from transformers import pipeline

    recipe = vision_recipe(
        tmp_path,
        vision_dir("resnet"),
        "finetune",
        squares,
        model={"hub_id": "tester/tiny-resnet"},
        train={"epochs": 1},
    )
    run_dir = hf_transfer.run(str(recipe))
    ours = hf_transfer.load(run_dir).predict(squares["test_images"][:4])
    with running_local_hub(monkeypatch, tmp_path) as hub:
        hub.add_files("tester/tiny-resnet", vision_dir("resnet"))
        push_run(run_dir, "tester/resnet-squares")
        assert {"config.json", "model.safetensors", "preprocessor_config.json"} <= set(
            hub.files("tester/resnet-squares")
        )
        use_local_hub(monkeypatch, hub, cache_dir=tmp_path / "fresh_cache")
        theirs = pipeline("image-classification", model="tester/resnet-squares", device="cpu")(
            squares["test_images"][:4], top_k=3
        )
        # the card's snippet is that same pipeline call, on an image named as it expects
        card = hub.files("tester/resnet-squares")["README.md"].decode()
        code = re.findall(r"```python\n(.*?)```", card, flags=re.DOTALL)[-1]
        assert 'pipeline("image-classification", model="tester/resnet-squares")' in code
        monkeypatch.chdir(tmp_path)
        shutil.copyfile(squares["test_images"][0], tmp_path / "image.jpg")
        capsys.readouterr()
        exec(compile(code, "README.md", "exec"), {"__name__": "__card__"})
        assert capsys.readouterr().out.strip() == ours[0]["label"]
    for mine, scored in zip(ours, theirs):
        assert scored[0]["label"] == mine["label"]
        assert {s["label"]: s["score"] for s in scored} == pytest.approx(mine["probabilities"], abs=1e-4)


def test_lora_targets_that_match_nothing_are_one_line_naming_the_modules_there_are(
    tmp_path, vision_dir, squares, capsys
):
    strategy = {"name": "lora", "target_modules": ["attn.qkv"]}  # timm's name, not transformers'
    recipe = vision_recipe(tmp_path, vision_dir("vit"), strategy, squares, name="wrong")
    assert main(["run", str(recipe)]) == 2
    err = capsys.readouterr().err
    line = err.strip().splitlines()[-1]  # the lines before are progress bars
    assert line.startswith("error: strategy.target_modules ['attn.qkv'] match no module") and "Traceback" not in err
    assert "q_proj" in line and "v_proj" in line and "classifier" not in line
    assert not (tmp_path / "outputs" / "wrong").exists()


def test_augment_levels_map_onto_torchvision_with_the_processors_numbers(vision_dir):
    def transform(augment: str):
        backbone = build_backbone(
            ModelConfig(checkpoint=str(vision_dir("clip"))), DataConfig(augment=augment), "image"
        )
        return backbone, backbone.transform(train=True)

    backbone, model = transform("model")
    names = [type(t).__name__ for t in model.transforms]
    assert names == ["RandomResizedCrop", "RandomHorizontalFlip", "ToTensor", "Normalize"]
    processor = backbone.image_processor
    assert list(model.transforms[-1].mean) == pytest.approx(list(processor.image_mean))
    assert model.transforms[0].size == (32, 32)
    _, light = transform("light")
    assert [type(t).__name__ for t in light.transforms] == ["RandomResizedCrop", "ToTensor", "Normalize"]
    assert light.transforms[0].scale == (0.7, 1.0)
    none_backbone, none = transform("none")
    image = Image.new("RGB", (40, 30), (200, 10, 10))
    expected = processor(images=image, return_tensors="pt")["pixel_values"][0]
    assert torch.equal(none(image), expected)  # the processor itself: what a pipeline feeds the model


def test_default_adapter_targets_per_family(vision_dir):
    expected_lora = {
        "vit": ["q_proj", "v_proj"],
        "dinov2": ["q_proj", "v_proj"],
        "clip": ["q_proj", "v_proj"],
        "siglip": ["q_proj", "v_proj"],
        "convnext": ["pwconv1", "pwconv2"],
        "resnet": ["convolution"],
    }
    for family, targets in expected_lora.items():
        backbone = build_backbone(ModelConfig(checkpoint=str(vision_dir(family))), None, "image")
        model = backbone.build_classifier(["a", "b"])
        assert backbone.default_lora_targets(model) == targets, family
        assert backbone.head_module_names(model) == ["classifier"], family
    vit = build_backbone(ModelConfig(checkpoint=str(vision_dir("vit"))), None, "image")
    assert vit.default_ia3_targets(vit.build_classifier(["a", "b"])) == {
        "target_modules": ["k_proj", "v_proj", "fc2"],
        "feedforward_modules": ["fc2"],
    }


def test_the_feature_cache_key_follows_the_processor_and_pooling(vision_dir, squares):
    from datasets import Dataset

    from hf_transfer.backbones.features import feature_cache_key

    rows = Dataset.from_dict({"image": squares["test_images"][:2], "labels": [0, 1]})

    def key(pooling="mean", **data) -> str:
        backbone = build_backbone(ModelConfig(checkpoint=str(vision_dir("dinov2"))), DataConfig(**data), "image")
        return feature_cache_key(backbone, rows, pooling)

    assert key() == key()  # a second run reads the first one's features
    assert len({key(), key(image_size=64), key("cls+mean"), key(augment="none")}) == 3  # augmenting is not extracting
