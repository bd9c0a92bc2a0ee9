"""The shipped image recipes, run as their headers show: the digits ones on the shared EfficientNet-Lite0 (real
ImageNet weights, offline), the ResNet-18 ones through a local Hub cache holding a tiny stand-in for the weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from fixtures_models import build_tiny_timm, build_tiny_vision_model
from helpers import header_command

import hf_transfer
from hf_transfer.apps.cli import main
from hf_transfer.config.loading import load_recipe, shipped_recipes
from hf_transfer.core.paths import is_repo_id
from hf_transfer.data.builtins import load_sklearn_digits
from hf_transfer.data.splits import limit
from hf_transfer.metrics.classification import classification_metrics

IMAGE_RECIPES = sorted(name for name in shipped_recipes() if name.startswith("images/"))
REPO = Path(__file__).resolve().parents[1]
SMALL = ["data.max_train_samples=150", "data.max_validation_samples=60", "data.max_test_samples=60"]


pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_issue_recipes_are_shipped():
    assert IMAGE_RECIPES == [
        "images/clip-vit-b32-linear-probe-zero-shot",  # run on a stand-in in test_clip_multimodal
        "images/dinov2-small-linear-probe",
        "images/efficientnet-lite0-linear-probe-digits",
        "images/efficientnet-lite0-lora-digits",
        "images/efficientnet-lite0-multilabel-digits",
        "images/efficientnet-lite0-regression-digits-sum",
        "images/resnet18-finetune",
        "images/resnet18-linear-probe",
        "images/resnet50-finetune-aid-multilabel",
        "images/vit-base-lora-beans",
        "images/vit-lora-beans",
    ]


@pytest.mark.parametrize("name", IMAGE_RECIPES)
def test_image_recipes_validate_with_hub_ids_by_default(name):
    recipe = load_recipe(name)
    assert recipe.task == "image-classification"
    assert is_repo_id(recipe.model.checkpoint, namespaced=True)  # a Hub id: no local path in a shipped recipe
    assert recipe.model.checkpoint.startswith(("timm/", "google/", "facebook/", "openai/"))
    load_recipe(name, header_command(name, "Override")[2:])


@pytest.mark.slow
def test_efficientnet_linear_probe_on_digits_beats_chance_and_predicts_on_files(tmp_path, shared_dir, monkeypatch):
    monkeypatch.chdir(REPO)  # the header's checkpoint path is relative to the repository
    name = "images/efficientnet-lite0-linear-probe-digits"
    command = header_command(name, "Override")
    assert command[-1] == "model.checkpoint=local-dir:../shared/models/tf_efficientnet_lite0"
    run_dir = tmp_path / "run"
    assert main([*command, *SMALL, f"output.dir={run_dir}"]) == 0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["data"] == {"train": 150, "validation": 60, "test": 60}
    assert metrics["test"]["accuracy"] > 0.6  # ten classes: chance is 0.1; frozen ImageNet features score 0.8

    # the test images as files: the run folder predicts on them what the run scored in-process
    recipe = load_recipe(name)
    test = limit(load_sklearn_digits()["test"], 60, recipe.train.seed)
    paths = []
    for i, row in enumerate(test):
        paths.append(str(tmp_path / f"digit_{i}.png"))
        row["image"].save(paths[-1])
    classifier = hf_transfer.load(run_dir)
    again = classification_metrics(test["label"], classifier.predict_proba(paths), classifier.label_names)
    assert again["accuracy"] == pytest.approx(metrics["test"]["accuracy"])
    assert again["log_loss"] == pytest.approx(metrics["test"]["log_loss"], abs=1e-4)


@pytest.mark.slow
def test_efficientnet_lora_on_digits_adapts_the_pointwise_convs(tmp_path, shared_dir, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    command = header_command("images/efficientnet-lite0-lora-digits", "Override")
    tiny = [
        "data.max_train_samples=32",
        "data.max_validation_samples=16",
        "data.max_test_samples=16",
        "train.epochs=1",
        "train.batch_size=16",
    ]
    run_dir = tmp_path / "run"
    assert main([*command, *tiny, f"output.dir={run_dir}"]) == 0
    adapter = json.loads((run_dir / "adapter_config.json").read_text())
    assert sorted(adapter["target_modules"]) == ["conv_head", "conv_pw", "conv_pwl"]  # not the depthwise convs
    assert adapter["modules_to_save"] == ["classifier"]
    png = tmp_path / "seven.png"
    load_sklearn_digits("7-8")["test"][0]["image"].save(png)
    capsys.readouterr()
    assert main(["predict", str(run_dir), str(png), "--json"]) == 0
    (prediction,) = json.loads(capsys.readouterr().out)
    assert prediction["input"] == str(png) and prediction["label"] in [str(d) for d in range(10)]
    assert sum(prediction["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)


@pytest.fixture(scope="module")
def tiny_resnet18(tmp_path_factory) -> Path:
    """timm's resnet18 architecture, random, at 32x32: a stand-in for timm/resnet18.a1_in1k's weights."""
    return build_tiny_timm(tmp_path_factory.mktemp("resnet18") / "resnet18", "resnet18")


@pytest.mark.parametrize("name", ["images/resnet18-linear-probe", "images/resnet18-finetune"])
def test_resnet18_recipes_run_as_shown_on_a_folder_of_images(
    name, tmp_path, tiny_resnet18, local_hub_cache, digits_imagefolder, monkeypatch
):
    local_hub_cache("timm/resnet18.a1_in1k", tiny_resnet18)
    shutil.copytree(digits_imagefolder / "train", tmp_path / "my_images")  # the recipe's data_dir
    monkeypatch.chdir(tmp_path)
    assert main([*header_command(name, "Run"), "train.epochs=1"]) == 0
    run_dir = tmp_path / "outputs" / name.split("/")[1]
    metadata = json.loads((run_dir / "hf_transfer.json").read_text())
    assert metadata["backbone"]["hub_id"] == "timm/resnet18.a1_in1k"
    assert metadata["label_names"] == ["one", "two", "zero"]
    assert hf_transfer.load(run_dir).predict([str(next((tmp_path / "my_images" / "one").glob("*.png")))])


@pytest.mark.parametrize(
    ("name", "hub_id", "family"),
    [
        ("images/dinov2-small-linear-probe", "facebook/dinov2-small", "dinov2"),
        ("images/vit-lora-beans", "google/vit-base-patch16-224-in21k", "vit"),
    ],
)
def test_transformers_image_recipes_run_as_shown_on_a_folder_of_images(
    name, hub_id, family, tmp_path, local_hub_cache, digits_imagefolder, monkeypatch
):
    """The transformers recipes, on a tiny random stand-in cached under the checkpoint's Hub id: `library: auto` (or
    the recipe's `transformers`) loads it with transformers, and the run folder predicts. The beans recipe's Hub
    dataset is replaced by the local digits folder, the only override."""
    local_hub_cache(hub_id, build_tiny_vision_model(tmp_path / family, family))
    shutil.copytree(digits_imagefolder / "train", tmp_path / "my_images")
    monkeypatch.chdir(tmp_path)
    data = (
        [] if "dinov2" in name else ["data.dataset=imagefolder", "data.data_dir=my_images", "data.image_column=image"]
    )
    data += (
        [] if "dinov2" in name else ["data.label_column=label", "data.validation_split=null", "data.test_split=null"]
    )
    assert main([*header_command(name, "Run"), *data, "train.epochs=1"]) == 0
    run_dir = tmp_path / "outputs" / name.split("/")[1]
    metadata = json.loads((run_dir / "hf_transfer.json").read_text())
    assert metadata["backbone"]["library"] == "transformers" and metadata["backbone"]["hub_id"] == hub_id
    assert metadata["label_names"] == ["one", "two", "zero"]
    assert (run_dir / "preprocessor_config.json").is_file()
    assert hf_transfer.load(run_dir).predict([str(next((tmp_path / "my_images" / "one").glob("*.png")))])
