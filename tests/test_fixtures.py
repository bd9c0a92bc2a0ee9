"""The fixtures in conftest.py build what they promise, offline and small."""

import csv
import os
from pathlib import Path

import pytest
from fixtures_models import (
    EFFICIENTNET_HUB_ID,
    MINILM_HUB_ID,
    TINY_IMAGE_SIZE,
    build_hub_cache,
    build_tiny_timm,
    point_hub_at,
)


def test_session_never_touches_the_network_nor_the_home_cache():
    from huggingface_hub import constants

    assert constants.HF_HUB_OFFLINE is True
    assert constants.is_offline_mode()
    assert constants.HF_HUB_DISABLE_TELEMETRY
    home_cache = Path.home() / ".cache" / "huggingface"
    for name in ("HF_HOME", "HF_HUB_CACHE", "HF_DATASETS_CACHE", "HF_TRANSFER_CACHE"):
        assert home_cache not in Path(os.environ[name]).parents
    assert not Path(constants.HF_HUB_CACHE).is_relative_to(home_cache)
    assert os.environ["TOKENIZERS_PARALLELISM"] == "false"


def test_shared_dir_holds_the_documented_assets(shared_dir):
    assert (shared_dir / "models" / "all-MiniLM-L6-v2" / "model.safetensors").is_file()
    assert (shared_dir / "data" / "rotten_tomatoes" / "train.csv").is_file()


def test_tiny_bert_tokenises_reviews_and_classifies(tiny_bert_dir, shared_dir):
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    assert 500 <= len(tokenizer) <= 1000
    assert tokenizer.convert_tokens_to_ids(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]) == [0, 1, 2, 3, 4]

    review = "A knowing sense of humor and a lot of warmth ignite Son of the Bride."
    encoded = tokenizer(review)["input_ids"]
    assert encoded[0] == tokenizer.cls_token_id and encoded[-1] == tokenizer.sep_token_id
    # The transformers wrapper encodes exactly like the tokenizer trained with `tokenizers`.
    assert Tokenizer.from_file(str(tiny_bert_dir / "tokenizer.json")).encode(review).ids == encoded
    # Trained on these reviews, it knows their common words (few [UNK]) and lower-cases.
    assert tokenizer.unk_token_id not in encoded
    assert tokenizer.tokenize("The FILM") == ["the", "film"]

    batch = tokenizer([review, "Dull.", "word " * 500], padding=True, truncation=True, return_tensors="pt")
    assert batch["input_ids"].shape == (3, 128)
    assert batch["attention_mask"][1].sum() == len(tokenizer.tokenize("Dull.")) + 2  # padded after [CLS] ... [SEP]
    assert batch["input_ids"][1, -1] == tokenizer.pad_token_id

    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=2)
    assert (model.config.num_hidden_layers, model.config.hidden_size) == (2, 32)
    assert (tiny_bert_dir / "model.safetensors").is_file()
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (3, 2)
    assert torch.isfinite(logits).all()


def test_tiny_timm_loads_from_local_dir_with_new_head_and_small_input(tiny_timm_dir):
    import timm
    import torch

    assert {p.name for p in tiny_timm_dir.iterdir()} == {"config.json", "model.safetensors"}
    model = timm.create_model(f"local-dir:{tiny_timm_dir}", pretrained=True, num_classes=3).eval()
    data_config = timm.data.resolve_model_data_config(model)
    assert data_config["input_size"] == (3, TINY_IMAGE_SIZE, TINY_IMAGE_SIZE)
    assert len(data_config["mean"]) == len(data_config["std"]) == 3
    assert model.group_matcher()

    x = torch.randn(2, *data_config["input_size"])
    with torch.no_grad():
        features = model.forward_features(x)
        assert model.forward_head(features).shape == (2, 3)
        assert model.forward_head(features, pre_logits=True).shape == (2, model.num_features)
    # Pretrained weights were loaded: the backbone equals the saved one, only the head is new.
    saved = timm.create_model(f"local-dir:{tiny_timm_dir}", pretrained=True)
    assert torch.equal(model.conv_stem.weight, saved.conv_stem.weight)
    assert saved.num_classes == 10


def test_tiny_vit_has_lora_target_linears(tiny_vit_dir):
    import timm
    import torch

    model = timm.create_model(f"local-dir:{tiny_vit_dir}", pretrained=True, num_classes=3).eval()
    assert timm.data.resolve_model_data_config(model)["input_size"] == (3, TINY_IMAGE_SIZE, TINY_IMAGE_SIZE)
    linears = {name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
    assert {"blocks.0.attn.qkv", "blocks.0.attn.proj", "blocks.0.mlp.fc1", "blocks.0.mlp.fc2", "head"} <= linears
    with torch.no_grad():
        assert model(torch.randn(1, 3, TINY_IMAGE_SIZE, TINY_IMAGE_SIZE)).shape == (1, 3)


def test_build_tiny_timm_is_deterministic(tmp_path, tiny_timm_dir):
    rebuilt = build_tiny_timm(tmp_path / "again", "test_efficientnet")
    assert (rebuilt / "model.safetensors").read_bytes() == (tiny_timm_dir / "model.safetensors").read_bytes()


def test_sentiment_csvs_are_small_samples_of_rotten_tomatoes(sentiment_csvs):
    for split, n in (("train", 400), ("test", 200)):
        with sentiment_csvs[split].open(newline="") as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == n
        assert set(rows[0]) == {"text", "label"}
        assert {row["label"] for row in rows} == {"0", "1"}
        assert all(row["text"].strip() for row in rows)


def test_digits_imagefolder_loads_with_datasets(digits_imagefolder):
    import numpy as np
    from datasets import load_dataset

    dataset = load_dataset("imagefolder", data_dir=str(digits_imagefolder))
    assert dataset["train"].num_rows == 60 and dataset["test"].num_rows == 30
    names = dataset["train"].features["label"].names
    assert sorted(names) == ["one", "two", "zero"]
    example = dataset["test"][0]
    assert example["image"].size == (8, 8)
    assert np.asarray(example["image"]).max() > 16  # scaled from 0-16 to 0-255
    counts = {name: 0 for name in names}
    for label in dataset["train"]["label"]:
        counts[names[label]] += 1
    assert counts == {"zero": 20, "one": 20, "two": 20}


def test_digits_csv_points_at_the_pngs(digits_csv, digits_imagefolder):
    from PIL import Image

    with digits_csv["train"].open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 60 and set(rows[0]) == {"image", "label"}
    for row in rows:
        path = Path(row["image"])
        assert path.is_file() and path.parent.name == row["label"]
        assert digits_imagefolder in path.parents
    assert Image.open(rows[0]["image"]).mode == "L"


def test_hub_cache_loads_minilm_and_efficientnet_by_hub_id(offline_hub):
    import timm
    import torch
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(MINILM_HUB_ID)
    tokenizer = AutoTokenizer.from_pretrained(MINILM_HUB_ID)
    assert model.config.hidden_size == 384
    assert str(offline_hub) in str(model.name_or_path) or model.name_or_path == MINILM_HUB_ID
    with torch.no_grad():
        hidden = model(**tokenizer(["a fine film"], return_tensors="pt")).last_hidden_state
    assert hidden.shape[-1] == 384

    assert timm.models.get_pretrained_cfg("tf_efficientnet_lite0").hf_hub_id == EFFICIENTNET_HUB_ID
    by_id = timm.create_model(f"hf-hub:{EFFICIENTNET_HUB_ID}", pretrained=True, num_classes=3)
    by_name = timm.create_model("tf_efficientnet_lite0", pretrained=True)
    assert torch.equal(by_id.conv_stem.weight, by_name.conv_stem.weight)
    assert by_name.num_classes == 1000


def test_hub_cache_layout_is_what_huggingface_hub_scans(offline_hub):
    from huggingface_hub import scan_cache_dir, try_to_load_from_cache

    repos = {repo.repo_id: repo for repo in scan_cache_dir(offline_hub).repos}
    assert set(repos) == {MINILM_HUB_ID, EFFICIENTNET_HUB_ID}
    revision = next(iter(repos[MINILM_HUB_ID].revisions))
    assert len(revision.commit_hash) == 40 and "main" in revision.refs
    assert "1_Pooling/config.json" in {
        f.file_path.relative_to(revision.snapshot_path).as_posix() for f in revision.files
    }
    # Blobs link to the shared files instead of copying them.
    weights = try_to_load_from_cache(MINILM_HUB_ID, "model.safetensors")
    assert Path(weights).is_symlink() and os.path.realpath(weights).endswith("all-MiniLM-L6-v2/model.safetensors")


def test_local_hub_cache_serves_a_tiny_model_by_repo_id(local_hub_cache, tiny_bert_dir):
    from transformers import AutoConfig

    cache_dir = local_hub_cache("hf-transfer-tests/tiny-bert", tiny_bert_dir)
    assert (cache_dir / "models--hf-transfer-tests--tiny-bert" / "refs" / "main").is_file()
    assert AutoConfig.from_pretrained("hf-transfer-tests/tiny-bert").hidden_size == 32
    with pytest.raises(OSError):
        AutoConfig.from_pretrained(MINILM_HUB_ID)  # not in this test's cache, and the Hub is out of reach


def test_build_hub_cache_can_copy_blobs(tmp_path, monkeypatch, tiny_timm_dir):
    import timm

    cache_dir = point_hub_at(monkeypatch, tmp_path / "hub")
    snapshot = build_hub_cache(cache_dir, "hf-transfer-tests/tiny-effnet", tiny_timm_dir, copy=True)
    blobs = list((cache_dir / "models--hf-transfer-tests--tiny-effnet" / "blobs").iterdir())
    assert len(blobs) == 2 and not any(blob.is_symlink() for blob in blobs)
    assert (snapshot / "config.json").is_symlink()
    model = timm.create_model("hf-hub:hf-transfer-tests/tiny-effnet", pretrained=True, num_classes=3)
    assert timm.data.resolve_model_data_config(model)["input_size"] == (3, TINY_IMAGE_SIZE, TINY_IMAGE_SIZE)
