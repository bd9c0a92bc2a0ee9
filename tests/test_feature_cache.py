"""The linear probe's feature cache: never stale when the pixels change, the same results warm or cold, and a write
that fails part-way leaves nothing a later run reads."""

from __future__ import annotations

import logging
import os
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from datasets import Dataset, Features
from datasets import Image as ImageFeature
from fixtures_models import write_csv_rows
from helpers import metrics_of, text_recipe
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import hf_transfer
from hf_transfer.backbones import build_backbone
from hf_transfer.backbones.features import cache_root, feature_cache_key
from hf_transfer.config.sections import DataConfig, ModelConfig
from hf_transfer.data import images

pytestmark = pytest.mark.usefixtures("one_thread")


def image_recipe(tmp_path, checkpoint, data, name) -> Path:
    recipe = {
        "description": "feature cache test",
        "task": "image-classification",
        "model": {"checkpoint": str(checkpoint)},
        "data": data,
        "strategy": {"name": "linear_probe", "pooling": "cls"},
        "train": {"epochs": 20, "batch_size": 16, "learning_rate": 1e-2, "seed": 0},
        "output": {"dir": str(tmp_path / "outputs" / name)},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def cache_hits(caplog) -> int:
    return sum("cache hit" in r.message for r in caplog.records)


def overwrite_keeping_times(path: Path, data: bytes) -> None:
    """Rewrite a file in place and give it back its mtime, as `cp -p` or `rsync -t` of a new version would."""
    before = path.stat()
    path.write_bytes(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


@pytest.mark.parametrize("layout", ["csv of paths", "imagefolder"])
def test_overwriting_the_images_in_place_is_a_cache_miss(
    tmp_path, tiny_timm_dir, digits_imagefolder, monkeypatch, caplog, layout
):
    root = tmp_path / "images"
    shutil.copytree(digits_imagefolder, root)
    if layout == "imagefolder":
        data = {"dataset": "imagefolder", "data_dir": str(root), "test_split": "test"}
    else:
        data = {}
        for split in ("train", "test"):
            rows = [{"image": str(p), "label": p.parent.name} for p in sorted((root / split).glob("*/*.png"))]
            data[f"{split}_files" if split == "train" else "test_files"] = [
                str(write_csv_rows(tmp_path / f"{split}.csv", rows, ["image", "label"]))
            ]
    monkeypatch.setenv("HF_TRANSFER_CACHE", str(tmp_path / "cache"))
    caplog.set_level(logging.INFO, logger="hf_transfer")
    hf_transfer.run(str(image_recipe(tmp_path, tiny_timm_dir, data, "first")))

    # Every image overwritten with one drawn at random: the labels no longer say anything about the pixels.
    paths = sorted(root.glob("*/*/*.png"))
    contents = [p.read_bytes() for p in paths]
    random.Random(0).shuffle(contents)
    for path, content in zip(paths, contents):
        overwrite_keeping_times(path, content)

    caplog.clear()
    warm = metrics_of(hf_transfer.run(str(image_recipe(tmp_path, tiny_timm_dir, data, "after"))))
    assert cache_hits(caplog) == 0
    monkeypatch.setenv("HF_TRANSFER_CACHE", str(tmp_path / "fresh_cache"))
    cold = metrics_of(hf_transfer.run(str(image_recipe(tmp_path, tiny_timm_dir, data, "fresh"))))
    for split in ("validation", "test"):
        assert warm[split]["accuracy"] == cold[split]["accuracy"]
        assert warm[split]["log_loss"] == pytest.approx(cold[split]["log_loss"], rel=1e-6)


def write_pngs(folder: Path, pixels: list[np.ndarray]) -> list[Path]:
    paths = []
    for i, p in enumerate(pixels):
        paths.append(folder / f"{i}.png")
        Image.fromarray(p).save(paths[-1])
    return paths


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    which=st.integers(0, 4),
    row=st.integers(0, 7),
    col=st.integers(0, 7),
    delta=st.integers(1, 255),
)
def test_any_changed_pixel_changes_the_image_fingerprint(seed, which, row, col, delta):
    rng = np.random.default_rng(seed)
    pixels = [rng.integers(0, 256, (8, 8), dtype=np.uint8) for _ in range(5)]
    with tempfile.TemporaryDirectory() as folder:
        paths = write_pngs(Path(folder), pixels)
        split = Dataset.from_dict({"image": [str(p) for p in paths], "label": [0, 1, 0, 1, 0]})
        before = images.image_files_fingerprint(split, "image")
        changed = pixels[which].copy()
        changed[row, col] = (int(changed[row, col]) + delta) % 256
        stat = paths[which].stat()
        Image.fromarray(changed).save(paths[which])
        os.utime(paths[which], ns=(stat.st_atime_ns, stat.st_mtime_ns))
        assert images.image_files_fingerprint(split, "image") != before
        # the bytes it had, and the time it had: the same fingerprint
        Image.fromarray(pixels[which]).save(paths[which])
        os.utime(paths[which], ns=(stat.st_atime_ns, stat.st_mtime_ns))
        assert images.image_files_fingerprint(split, "image") == before


def test_above_the_content_limit_a_new_mtime_still_changes_the_fingerprint(tmp_path):
    paths = write_pngs(tmp_path, [np.zeros((8, 8), np.uint8), np.ones((8, 8), np.uint8)])
    split = Dataset.from_dict({"image": [str(p) for p in paths], "label": [0, 1]})
    before = images.image_files_fingerprint(split, "image", content_limit=0)
    Image.fromarray(np.full((8, 8), 7, np.uint8)).save(paths[0])
    os.utime(paths[0], ns=(paths[0].stat().st_atime_ns, paths[0].stat().st_mtime_ns + 1_000_000))
    assert images.image_files_fingerprint(split, "image", content_limit=0) != before


def test_embedded_image_bytes_are_covered_by_the_key(tiny_timm_dir):
    backbone = build_backbone(ModelConfig(checkpoint=str(tiny_timm_dir)), DataConfig(train_files=["-"]), "image")

    def split(value: int) -> Dataset:
        images = [Image.fromarray(np.full((8, 8), v, np.uint8)) for v in (0, value)]
        return Dataset.from_dict({"image": images}, features=Features({"image": ImageFeature()}))

    assert images.image_files_fingerprint(split(9), "image") is None  # no file to read: the fingerprint covers them
    assert feature_cache_key(backbone, split(9), "cls") != feature_cache_key(backbone, split(10), "cls")
    assert feature_cache_key(backbone, split(9), "cls") == feature_cache_key(backbone, split(9), "cls")


def test_a_changed_tokenizer_file_changes_the_key(tmp_path, tiny_bert_dir, keyword_csvs):
    checkpoint = tmp_path / "bert"
    shutil.copytree(tiny_bert_dir, checkpoint)
    backbone = build_backbone(ModelConfig(checkpoint=str(checkpoint)), None, "text")
    split = Dataset.from_dict({"text": ["a good film"], "label": [1]})
    before = feature_cache_key(backbone, split, "mean")
    vocab = checkpoint / "tokenizer.json"
    # Same size, rewritten within the same second: the change must still show.
    overwrite_keeping_times(vocab, vocab.read_bytes().replace(b'"good"', b'"goox"', 1))
    stat = vocab.stat()
    os.utime(vocab, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert feature_cache_key(backbone, split, "mean") != before


def probe_recipe(tmp_path, tiny_bert_dir, keyword_csvs, name):
    strategy = {"name": "linear_probe", "head": "mlp", "hidden_size": 16, "dropout": 0.2}
    return str(text_recipe(tmp_path, tiny_bert_dir, keyword_csvs, strategy, name=name, train={"epochs": 3}))


def test_warm_and_cold_cache_give_identical_results(tmp_path, tiny_bert_dir, keyword_csvs, monkeypatch, caplog):
    monkeypatch.setenv("HF_TRANSFER_CACHE", str(tmp_path / "cache"))
    caplog.set_level(logging.INFO, logger="hf_transfer")
    cold = metrics_of(hf_transfer.run(probe_recipe(tmp_path, tiny_bert_dir, keyword_csvs, "cold")))
    caplog.clear()
    warm = metrics_of(hf_transfer.run(probe_recipe(tmp_path, tiny_bert_dir, keyword_csvs, "warm")))
    assert cache_hits(caplog) == 3
    assert [h["eval_loss"] for h in warm["history"]] == [h["eval_loss"] for h in cold["history"]]
    assert [h["train_loss"] for h in warm["history"]] == [h["train_loss"] for h in cold["history"]]
    assert warm["test"]["log_loss"] == cold["test"]["log_loss"]


def test_a_cache_write_that_fails_part_way_leaves_no_file_a_later_run_reads(
    tmp_path, tiny_bert_dir, keyword_csvs, monkeypatch, caplog
):
    import hf_transfer.backbones.features as features

    monkeypatch.setenv("HF_TRANSFER_CACHE", str(tmp_path / "cache"))
    real_save = features.save_file

    def disk_full(tensors, filename, *args, **kwargs):
        real_save(tensors, filename, *args, **kwargs)
        with open(filename, "r+b") as f:  # half of it reached the disk
            f.truncate(os.path.getsize(filename) // 2)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(features, "save_file", disk_full)
    first = metrics_of(hf_transfer.run(probe_recipe(tmp_path, tiny_bert_dir, keyword_csvs, "first")))
    assert not cache_root().exists() or list(cache_root().iterdir()) == []  # nothing half-written is left
    monkeypatch.setattr(features, "save_file", real_save)
    caplog.set_level(logging.INFO, logger="hf_transfer")
    second = metrics_of(hf_transfer.run(probe_recipe(tmp_path, tiny_bert_dir, keyword_csvs, "second")))
    assert cache_hits(caplog) == 0
    assert second["test"]["log_loss"] == first["test"]["log_loss"]
    assert len(list(cache_root().glob("*.safetensors"))) == 3


def test_a_torn_cache_file_is_read_as_a_miss_and_rewritten(tmp_path, tiny_bert_dir, keyword_csvs, monkeypatch, caplog):
    monkeypatch.setenv("HF_TRANSFER_CACHE", str(tmp_path / "cache"))
    first = metrics_of(hf_transfer.run(probe_recipe(tmp_path, tiny_bert_dir, keyword_csvs, "first")))
    files = sorted(cache_root().glob("*.safetensors"))
    whole = {f: f.read_bytes() for f in files}
    files[0].write_bytes(whole[files[0]][: len(whole[files[0]]) // 2])  # torn by a crash or a bad disk
    caplog.set_level(logging.INFO, logger="hf_transfer")
    second = metrics_of(hf_transfer.run(probe_recipe(tmp_path, tiny_bert_dir, keyword_csvs, "second")))
    assert cache_hits(caplog) == 2
    assert any("ignoring unreadable feature cache" in r.message for r in caplog.records)
    assert second["test"]["log_loss"] == first["test"]["log_loss"]
    assert files[0].read_bytes() == whole[files[0]]


def test_a_new_download_of_the_same_hub_id_changes_the_key(tmp_path, tiny_bert_dir, local_hub_cache):
    repo_id = "hf-transfer-tests/tiny-bert"
    local_hub_cache(repo_id, tiny_bert_dir)
    backbone = build_backbone(ModelConfig(checkpoint=repo_id), None, "text")
    split = Dataset.from_dict({"text": ["a good film"], "label": [1]})
    before = feature_cache_key(backbone, split, "mean")
    assert feature_cache_key(build_backbone(ModelConfig(checkpoint=repo_id), None, "text"), split, "mean") == before
    # main moved on upstream: a new tokenizer, downloaded into the same cache under the same id
    updated = tmp_path / "updated"
    shutil.copytree(tiny_bert_dir, updated)
    tokenizer = updated / "tokenizer.json"
    tokenizer.write_bytes(tokenizer.read_bytes().replace(b'"good"', b'"goox"', 1))
    local_hub_cache(repo_id, updated)
    assert feature_cache_key(build_backbone(ModelConfig(checkpoint=repo_id), None, "text"), split, "mean") != before
