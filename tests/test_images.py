"""Images end to end on timm's tiny test models: every strategy through the same loop, run folders that load back,
and every mistake a user can make with image data as one sentence."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
import timm
import torch
import yaml
from datasets import Dataset
from helpers import assert_reloads_like_the_run, metrics_of
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

import hf_transfer
from hf_transfer.apps.cli import main
from hf_transfer.backbones import BACKBONES, build_backbone
from hf_transfer.config.sections import DataConfig, ModelConfig
from hf_transfer.core.errors import DataError, HfTransferError, ModelError
from hf_transfer.data.builtins import load_sklearn_digits
from hf_transfer.data.images import load_image, to_rgb
from hf_transfer.data.modalities.image import IMAGE


def image_recipe(tmp_path, checkpoint, strategy, name="run", data=None, train=None, model=None):
    """A recipe file for an image run; `data` defaults to the digits imagefolder given as `data_dir`."""
    recipe = {
        "description": "test image recipe",
        "task": "image-classification",
        "model": {"checkpoint": str(checkpoint)} | (model or {}),
        "data": data,
        "strategy": strategy,
        "train": {"epochs": 2, "batch_size": 16, "learning_rate": 1e-3, "seed": 0} | (train or {}),
        "output": {"dir": str(tmp_path / "outputs" / name)},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def folder_data(root) -> dict:
    return {"dataset": "imagefolder", "data_dir": str(root), "test_split": "test"}


def csv_data(csvs) -> dict:
    return {"train_files": [str(csvs["train"])], "test_files": [str(csvs["test"])]}


def png_paths_and_labels(digits_csv) -> tuple[list[str], list[str]]:
    rows = [line.split(",") for line in digits_csv["test"].read_text().splitlines()[1:]]
    return [path for path, _ in rows], [label for _, label in rows]


@pytest.fixture
def broken_imagefolder(tmp_path, digits_imagefolder):
    """A copy of the digits imagefolder with one train 'image' that is a text file."""
    root = tmp_path / "images"
    shutil.copytree(digits_imagefolder, root)
    (root / "train" / "one" / "broken.png").write_text("this is not a png")
    return root


# --------------------------------------------------------------------------------------------------------------------
# Strategies


def test_timm_backbone_is_registered():
    assert "timm:image" in BACKBONES  # an import error in the module would silently unregister it


def test_linear_probe_on_imagefolder_extracts_once_and_reloads(
    tmp_path, tiny_timm_dir, digits_imagefolder, digits_csv, caplog
):
    caplog.set_level(logging.INFO, logger="hf_transfer")
    strategy = {"name": "linear_probe", "pooling": "cls"}
    data = folder_data(digits_imagefolder)
    run_dir = hf_transfer.run(str(image_recipe(tmp_path, tiny_timm_dir, strategy, data=data, train={"epochs": 5})))
    assert not any("cache hit" in r.message for r in caplog.records)
    caplog.clear()
    strategy |= {"head": "mlp"}  # another head on the same features: the backbone does not run again
    hf_transfer.run(str(image_recipe(tmp_path, tiny_timm_dir, strategy, name="again", data=data)))
    assert sum("cache hit" in r.message for r in caplog.records) == 3  # train, validation, test
    files = {p.name for p in run_dir.iterdir()}
    assert {"head.safetensors", "config.json", "hf_transfer.json", "metrics.json", "README.md"} <= files
    metrics = metrics_of(run_dir)
    assert metrics["data"] == {"train": 54, "validation": 6, "test": 30}
    assert metrics["parameters"]["trainable"] == metrics["parameters"]["total"] - sum(
        p.numel() for p in timm.create_model("test_efficientnet", num_classes=0).parameters()
    )
    # the run folder's config.json holds timm's preprocessing, so it predicts without the checkpoint's files
    config = json.loads((run_dir / "config.json").read_text())
    assert config["architecture"] == "test_efficientnet"
    assert config["pretrained_cfg"]["input_size"] == [3, 32, 32]
    assert_reloads_like_the_run(run_dir, digits_csv["test"], *png_paths_and_labels(digits_csv))


def test_mean_and_cls_pooling_give_one_vector_per_image(tiny_vit_dir):
    backbone = build_backbone(ModelConfig(checkpoint=str(tiny_vit_dir)), None, IMAGE)
    pixels = torch.randn(2, 3, 32, 32)
    cls = backbone.build_feature_extractor("cls")(pixel_values=pixels)
    mean = backbone.build_feature_extractor("mean")(pixel_values=pixels)
    assert cls.shape == mean.shape == (2, 64)
    assert not torch.allclose(cls, mean)  # cls is the class token, mean the average of the patch tokens


def test_lora_on_vit_targets_attention_and_mlp_and_saves_the_head(tmp_path, tiny_vit_dir, digits_csv):
    run_dir = hf_transfer.run(str(image_recipe(tmp_path, tiny_vit_dir, "lora", data=csv_data(digits_csv))))
    adapter = json.loads((run_dir / "adapter_config.json").read_text())
    assert sorted(adapter["target_modules"]) == ["attn.proj", "attn.qkv", "mlp.fc1", "mlp.fc2"]
    assert adapter["modules_to_save"] == ["head"]
    with safe_open(str(run_dir / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert any(k.endswith("head.weight") for k in keys)  # the new head is trained and saved with the adapter
    assert any("blocks.0.attn.qkv.lora_A" in k for k in keys)
    assert not any("patch_embed" in k for k in keys)
    # timm's own parameter names: the adapter applies to `timm.create_model(...)` without hf-transfer
    assert all(k.startswith("base_model.model.") and ".model.model." not in k for k in keys)
    assert_reloads_like_the_run(run_dir, digits_csv["test"], *png_paths_and_labels(digits_csv))


def test_lora_records_the_hub_id_it_loads_back_on(tmp_path, tiny_vit_dir, digits_csv, local_hub_cache):
    local_hub_cache("me/tiny-vit", tiny_vit_dir)
    run_dir = hf_transfer.run(
        str(image_recipe(tmp_path, "hf-hub:me/tiny-vit", "lora", data=csv_data(digits_csv), train={"epochs": 1}))
    )
    assert json.loads((run_dir / "adapter_config.json").read_text())["base_model_name_or_path"] == "me/tiny-vit"
    assert json.loads((run_dir / "hf_transfer.json").read_text())["backbone"]["hub_id"] == "me/tiny-vit"
    assert_reloads_like_the_run(run_dir, digits_csv["test"], *png_paths_and_labels(digits_csv))


def test_ia3_runs_on_cnn_convs(tmp_path, tiny_timm_dir, digits_csv):
    run_dir = hf_transfer.run(
        str(image_recipe(tmp_path, tiny_timm_dir, "ia3", data=csv_data(digits_csv), train={"epochs": 1}))
    )
    adapter = json.loads((run_dir / "adapter_config.json").read_text())
    assert "conv_pw" in adapter["target_modules"] and "conv_dw" not in adapter["target_modules"]
    assert_reloads_like_the_run(run_dir, digits_csv["test"], *png_paths_and_labels(digits_csv))


def test_finetune_last_block_freezes_the_stem_and_saves_timm_format(tmp_path, tiny_timm_dir, digits_csv):
    # a copy of the checkpoint, deleted after training: the run folder must predict without it
    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(tiny_timm_dir, checkpoint)
    strategy = {"name": "finetune", "unfreeze_last_n": 1, "layer_decay": 0.8}
    data, train = csv_data(digits_csv), {"epochs": 3}
    run_dir = hf_transfer.run(str(image_recipe(tmp_path, f"local-dir:{checkpoint}", strategy, data=data, train=train)))
    before, after = load_file(str(checkpoint / "model.safetensors")), load_file(str(run_dir / "model.safetensors"))
    assert torch.equal(before["conv_stem.weight"], after["conv_stem.weight"])  # the stem stayed frozen,
    assert torch.equal(before["bn1.running_mean"], after["bn1.running_mean"])  # its BatchNorm statistics too
    assert torch.equal(before["blocks.0.0.conv.weight"], after["blocks.0.0.conv.weight"])
    assert not torch.equal(before["blocks.4.0.conv_pwl.weight"], after["blocks.4.0.conv_pwl.weight"])  # last block
    assert after["classifier.weight"].shape == (3, before["classifier.weight"].shape[1])
    trainable = metrics_of(run_dir)["parameters"]["trainable"]
    assert trainable < metrics_of(run_dir)["parameters"]["total"] / 2

    shutil.rmtree(checkpoint)
    assert_reloads_like_the_run(run_dir, digits_csv["test"], *png_paths_and_labels(digits_csv))
    # timm's own format: timm loads the run folder, and names the user's classes
    model = timm.create_model(f"local-dir:{run_dir}", pretrained=True).eval()
    assert model.pretrained_cfg["label_names"] == ["one", "two", "zero"]
    image = hf_transfer.load(run_dir).backbone.transform(False)(load_image(png_paths_and_labels(digits_csv)[0][0]))
    with torch.no_grad():
        ours = hf_transfer.load(run_dir).model(pixel_values=image[None])
        assert torch.allclose(model(image[None]), ours, atol=1e-5)


@pytest.mark.parametrize("model", ["tiny_timm_dir", "tiny_vit_dir"])
def test_image_size_replaces_the_pretrained_input_size_and_is_saved(tmp_path, digits_csv, model, request):
    checkpoint = request.getfixturevalue(model)  # a CNN, and a ViT whose position embeddings get resized
    data = csv_data(digits_csv) | {"image_size": 48}
    run_dir = hf_transfer.run(str(image_recipe(tmp_path, checkpoint, "finetune", data=data, train={"epochs": 1})))
    assert json.loads((run_dir / "config.json").read_text())["pretrained_cfg"]["input_size"] == [3, 48, 48]
    classifier = hf_transfer.load(run_dir)
    assert classifier.backbone.data_config["input_size"] == (3, 48, 48)
    assert_reloads_like_the_run(run_dir, digits_csv["test"], *png_paths_and_labels(digits_csv))


def test_transforms_are_the_models_own_with_the_augmentation_the_recipe_asks_for(tiny_timm_dir):
    def transforms(augment: str, train: bool) -> str:
        data = DataConfig(augment=augment)
        return repr(build_backbone(ModelConfig(checkpoint=str(tiny_timm_dir)), data, IMAGE).transform(train))

    evaluation = transforms("model", train=False)
    assert "CenterCrop(size=(32, 32))" in evaluation and "Random" not in evaluation
    assert "RandomHorizontalFlip" in transforms("model", train=True) and "ColorJitter" in transforms("model", True)
    light = transforms("light", train=True)
    assert "scale=(0.7, 1.0)" in light and "Flip" not in light and "ColorJitter" not in light
    assert transforms("none", train=True) == evaluation


def test_layer_groups_follow_timms_grouping(tiny_timm_dir, tiny_vit_dir):
    vit = build_backbone(ModelConfig(checkpoint=str(tiny_vit_dir)), None, IMAGE)
    model = vit.build_classifier(["a", "b"])
    groups = vit.layer_groups(model)
    assert groups[0] == ["cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias"]
    assert groups[-1] == ["head.weight", "head.bias"]
    assert len(groups) == 2 + len(model.blocks)
    assert sorted(n for g in groups for n in g) == sorted(n for n, _ in model.named_parameters())
    cnn = build_backbone(ModelConfig(checkpoint=str(tiny_timm_dir)), None, IMAGE)
    groups = cnn.layer_groups(cnn.build_classifier(["a", "b"]))
    assert groups[0][0] == "conv_stem.weight" and groups[-1] == ["classifier.weight", "classifier.bias"]


# --------------------------------------------------------------------------------------------------------------------
# Image data


def test_grayscale_palette_rgba_and_16_bit_become_rgb(tmp_path):
    gray = Image.fromarray(np.full((8, 8), 200, dtype=np.uint8))
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 0))  # fully transparent red: white once flattened
    sixteen = Image.fromarray(np.full((8, 8), 65535, dtype=np.uint16))
    for image in (gray, gray.convert("P"), gray.convert("LA"), rgba, sixteen, gray.convert("1")):
        assert to_rgb(image).mode == "RGB"
    assert to_rgb(rgba).getpixel((0, 0)) == (255, 255, 255)
    assert to_rgb(sixteen).getpixel((0, 0)) == (255, 255, 255)
    rgba.save(tmp_path / "rgba.png")
    assert load_image(str(tmp_path / "rgba.png")).size == (8, 8)


def test_predict_on_rgba_and_grayscale_files(tmp_path, tiny_vit_dir, digits_csv):
    run_dir = hf_transfer.run(
        str(image_recipe(tmp_path, tiny_vit_dir, "finetune", data=csv_data(digits_csv), train={"epochs": 1}))
    )
    path = png_paths_and_labels(digits_csv)[0][0]
    Image.open(path).convert("RGBA").save(tmp_path / "rgba.png")
    classifier = hf_transfer.load(run_dir)
    from_files = classifier.predict([path, str(tmp_path / "rgba.png")])
    from_pil = classifier.predict([Image.open(path)])  # PIL images, as the Python API takes them
    assert from_files[0]["label"] == from_files[1]["label"] == from_pil[0]["label"]
    assert from_files[0]["score"] == pytest.approx(from_pil[0]["score"], abs=1e-5)


def test_sklearn_digits_offline_with_class_subsets():
    digits = load_sklearn_digits()
    assert digits["train"].features["label"].names == [str(d) for d in range(10)]
    assert len(digits["train"]) + len(digits["test"]) == 1797
    assert digits["train"][0]["image"].size == (8, 8)
    low, high = load_sklearn_digits("0-4"), load_sklearn_digits("5,6,7,8,9")
    assert low["train"].features["label"].names == ["0", "1", "2", "3", "4"]
    assert high["test"].features["label"].names == ["5", "6", "7", "8", "9"]
    assert len(low["test"]) + len(high["test"]) == len(digits["test"])  # one fixed split, whatever the subset
    with pytest.raises(DataError, match="data.config '11-12'"):
        load_sklearn_digits("11-12")


def test_bad_file_is_an_error_naming_it_and_nothing_is_written(tmp_path, tiny_timm_dir, broken_imagefolder, capsys):
    recipe = image_recipe(tmp_path, tiny_timm_dir, "linear_probe", data=folder_data(broken_imagefolder))
    assert main(["run", str(recipe)]) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # after any progress bars
    assert last.startswith("error: ") and "broken.png" in last and "data.skip_bad_images" in last
    assert "Traceback" not in err
    assert not (tmp_path / "outputs").exists()


def test_skip_bad_images_skips_and_counts(tmp_path, tiny_timm_dir, broken_imagefolder, caplog):
    data = folder_data(broken_imagefolder) | {"skip_bad_images": True}
    run_dir = hf_transfer.run(str(image_recipe(tmp_path, tiny_timm_dir, "linear_probe", data=data)))
    metrics = metrics_of(run_dir)
    assert metrics["skipped_rows"] == {"train": 1}
    assert metrics["data"]["train"] + metrics["data"]["validation"] == 60  # 61 files, one skipped
    assert any("skipped 1 bad image" in r.message for r in caplog.records)


def test_missing_file_in_csv_names_it(tmp_path, tiny_timm_dir, digits_csv):
    lines = digits_csv["train"].read_text().splitlines()
    broken = tmp_path / "train.csv"
    broken.write_text("\n".join([*lines, f"{tmp_path / 'gone.png'},one"]) + "\n")
    data = {"train_files": [str(broken)], "test_files": [str(digits_csv["test"])]}
    with pytest.raises(DataError, match="gone.png.*does not exist"):
        hf_transfer.run(str(image_recipe(tmp_path, tiny_timm_dir, "linear_probe", data=data)))


def test_relative_paths_are_read_from_the_csv_folder(tmp_path, tiny_timm_dir, digits_imagefolder):
    rows = ["image,label"]
    for label in ("zero", "one"):
        for png in sorted((digits_imagefolder / "train" / label).glob("*.png"))[:6]:
            shutil.copy(png, tmp_path / png.name)
            rows.append(f"{png.name},{label}")
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    data = {"train_files": [str(tmp_path / "list.csv")]}
    run_dir = hf_transfer.run(str(image_recipe(tmp_path, tiny_timm_dir, "linear_probe", data=data)))
    assert metrics_of(run_dir)["data"]["train"] + metrics_of(run_dir)["data"]["validation"] == 12


def test_a_column_without_images_is_an_error(tmp_path, tiny_timm_dir, digits_csv):
    data = csv_data(digits_csv) | {"image_column": "label"}
    with pytest.raises(DataError, match=r"column 'label' \(data.image_column\).*holds no image files"):
        hf_transfer.run(str(image_recipe(tmp_path, tiny_timm_dir, "linear_probe", data=data)))
    numbers = tmp_path / "numbers.jsonl"
    numbers.write_text("".join(json.dumps({"image": i, "label": i % 2}) + "\n" for i in range(8)))
    with pytest.raises(DataError, match=r"holds int64 values, not images"):
        hf_transfer.run(
            str(image_recipe(tmp_path, tiny_timm_dir, "linear_probe", data={"train_files": [str(numbers)]}))
        )


def test_a_folder_with_one_class_is_an_error(tmp_path, tiny_timm_dir, digits_imagefolder):
    root = tmp_path / "one_class"
    shutil.copytree(digits_imagefolder / "train" / "one", root / "train" / "one")
    with pytest.raises(DataError, match="fewer than two class folders"):
        data = {"dataset": "imagefolder", "data_dir": str(root)}
        hf_transfer.run(str(image_recipe(tmp_path, tiny_timm_dir, "linear_probe", data=data)))


def test_prepare_names_a_bad_file_at_predict_time(tiny_timm_dir, tmp_path):
    backbone = build_backbone(ModelConfig(checkpoint=str(tiny_timm_dir)), DataConfig(), IMAGE)
    (tmp_path / "notes.jpg").write_text("hello")
    rows = Dataset.from_dict({"image": [str(tmp_path / "notes.jpg")], "labels": [0]})
    with pytest.raises(DataError, match="notes.jpg.*not an image"):
        backbone.prepare(rows, train=False)[0]


# --------------------------------------------------------------------------------------------------------------------
# Checkpoints


@pytest.mark.parametrize(
    "checkpoint, expected",
    [("resnet18", "timm/resnet18.a1_in1k"), ("hf-hub:timm/vit_base_patch16_224.augreg2_in21k_ft_in1k", None)],
)
def test_base_model_id_of_timm_names_and_hub_ids(checkpoint, expected):
    backbone = build_backbone(ModelConfig(checkpoint=checkpoint), None, IMAGE)
    assert backbone.base_model_id == (expected or checkpoint.removeprefix("hf-hub:"))


def test_unknown_timm_name_suggests_close_names(tmp_path, digits_csv, capsys):
    with pytest.raises(ModelError, match="did you mean 'resnet18'"):
        build_backbone(ModelConfig(checkpoint="resnt18"), None, IMAGE).build_classifier(["a", "b"])
    with pytest.raises(ModelError, match="no weights tagged 'nope'.*a1_in1k"):
        build_backbone(ModelConfig(checkpoint="resnet18.nope"), None, IMAGE).build_classifier(["a", "b"])
    recipe = image_recipe(tmp_path, "vit_bse_patch16_224", "finetune", data=csv_data(digits_csv))
    assert main(["run", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("error: ") and "vit_base_patch16_224" in err
    assert "Traceback" not in err
    assert not (tmp_path / "outputs").exists()


def test_missing_folder_or_config_is_a_one_line_error(tmp_path):
    with pytest.raises(ModelError, match="is not a folder"):
        build_backbone(ModelConfig(checkpoint="./no/such/folder"), None, IMAGE).build_classifier(["a", "b"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="has no config.json"):
        build_backbone(ModelConfig(checkpoint=str(tmp_path / "empty")), None, IMAGE).build_classifier(["a", "b"])


def test_loading_a_run_with_mismatched_classes_is_an_error(tmp_path, tiny_timm_dir, digits_csv):
    run_dir = hf_transfer.run(
        str(image_recipe(tmp_path, tiny_timm_dir, "finetune", data=csv_data(digits_csv), train={"epochs": 1}))
    )
    metadata = json.loads((run_dir / "hf_transfer.json").read_text())
    metadata["label_names"].append("three")
    (run_dir / "hf_transfer.json").write_text(json.dumps(metadata))
    with pytest.raises(HfTransferError, match="holds a model for 3 classes, not 4"):
        hf_transfer.load(run_dir)


def test_a_backbone_built_on_a_run_folder_reads_its_preprocessing_and_classes(tmp_path, tiny_timm_dir):
    # What `hf_transfer.load` does: the run folder is given when the backbone is built, not set on it afterwards.
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    trained = build_backbone(ModelConfig(checkpoint=str(tiny_timm_dir)), DataConfig(image_size=48), IMAGE)
    trained.save_preprocessing(run_dir, ["cat", "dog"])
    config = json.loads((run_dir / "config.json").read_text())
    assert config["num_classes"] == 2 and config["label_names"] == ["cat", "dog"]

    loaded = build_backbone(ModelConfig(checkpoint=str(tiny_timm_dir)), None, IMAGE, preprocessing_source=str(run_dir))
    assert loaded.data_config["input_size"] == (3, 48, 48)  # the run's, not the checkpoint's 32
    assert build_backbone(ModelConfig(checkpoint=str(tiny_timm_dir)), None, IMAGE).data_config["input_size"] == (
        3,
        32,
        32,
    )
    with pytest.raises(ModelError, match="holds a model for 2 classes, not 3"):
        loaded.build_classifier(["a", "b", "c"])

    probe_dir = tmp_path / "probe"
    probe_dir.mkdir()
    trained.save_preprocessing(probe_dir)  # a probe's head is its own: the timm part has no classes
    config = json.loads((probe_dir / "config.json").read_text())
    assert config["num_classes"] == 0 and "label_names" not in config


def test_a_classifier_carries_its_label_names_into_timm_format(tmp_path, tiny_timm_dir):
    backbone = build_backbone(ModelConfig(checkpoint=str(tiny_timm_dir)), None, IMAGE)
    model = backbone.build_classifier(["b", "a"])
    backbone.save_classifier(model, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["label_names"] == ["b", "a"]
    again = build_backbone(ModelConfig(checkpoint=f"local-dir:{tmp_path}"), None, IMAGE, new_head=True)
    target = again.build_classifier(["x", "y", "z"])  # a target stage on a source classifier: new names, new head
    assert target.pretrained_cfg["label_names"] == ["x", "y", "z"]
