"""Builders for the test suite's tiny models, data sets and local Hub caches.

Each builder writes into a folder it is given and returns what it wrote, so that `conftest.py` can wrap it in a
session fixture and a test can call it directly when it needs a variant. Heavy libraries are imported inside the
builders: importing this module must not import `huggingface_hub` before `conftest.py` has set the offline
environment.
"""

from __future__ import annotations

import csv
import hashlib
import os
import random
import shutil
import sys
from pathlib import Path

TEXT_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
TINY_BERT_MAX_LENGTH = 128
TINY_IMAGE_SIZE = 32
MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
# What timm's pretrained cfg for `tf_efficientnet_lite0` names as its Hub repo (the default tag, `.in1k`);
# `timm.create_model("tf_efficientnet_lite0", pretrained=True)` and `"hf-hub:timm/tf_efficientnet_lite0.in1k"` both
# read it. There is no `timm/tf_efficientnet_lite0` repo on the Hub, so that id is deliberately not cached.
EFFICIENTNET_HUB_ID = "timm/tf_efficientnet_lite0.in1k"
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

# Files the Hub stores with Git LFS, so that their etag (and blob name in the cache) is a sha256 rather than a git
# blob sha1. The Hub also moves any file over 10 MiB to LFS.
_LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".onnx", ".msgpack", ".model", ".npz")
_LFS_MIN_BYTES = 10 * 1024 * 1024


def read_csv_rows(path: Path, limit: int | None = None) -> list[dict[str, str]]:
    """Rows of a CSV file as dicts, the first `limit` of them if given."""
    with Path(path).open(newline="", encoding="utf-8") as f:
        rows = []
        for row in csv.DictReader(f):
            if limit is not None and len(rows) >= limit:
                break
            rows.append(row)
    return rows


def write_csv_rows(path: Path, rows: list[dict[str, object]], fieldnames: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)
    return path


# --------------------------------------------------------------------------------------------------------------------
# Text: a tiny BERT with a WordPiece tokenizer trained on the spot
# --------------------------------------------------------------------------------------------------------------------


def train_wordpiece_tokenizer(texts: list[str], vocab_size: int = 1000):
    """A BERT-style WordPiece `tokenizers.Tokenizer` trained on `texts` (lower-cased, [CLS] $A [SEP])."""
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors, trainers
    from tokenizers.models import WordPiece

    tokenizer = Tokenizer(WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=list(TEXT_SPECIAL_TOKENS), show_progress=False
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    # The trainer numbers tokens of equal count in hash order, which changes from one process to the next (same
    # tokens, other ids, so another random embedding per word): renumbered in a fixed order, every test session
    # builds the same tiny BERT and the scores trained on it repeat.
    trained = tokenizer.get_vocab()
    specials = list(TEXT_SPECIAL_TOKENS)
    ordered = specials + sorted(token for token in trained if token not in specials)
    tokenizer.model = WordPiece(vocab={token: i for i, token in enumerate(ordered)}, unk_token="[UNK]")
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return tokenizer


def build_tiny_bert(folder: Path, texts: list[str], vocab_size: int = 1000, seed: int = 0) -> Path:
    """Save a randomly initialised 2-layer BERT (hidden 32) and its freshly trained tokenizer into `folder`.

    The folder loads with `AutoTokenizer.from_pretrained` and `AutoModelForSequenceClassification.from_pretrained`
    (the classification head is then newly initialised, as it is for any BERT checkpoint).
    """
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    trained = train_wordpiece_tokenizer(texts, vocab_size=vocab_size)
    # transformers 5's BertTokenizer(Fast) rebuilds the standard BERT pipeline around a vocab; ours was trained with
    # exactly that pipeline, so wrapping the vocab gives the same encodings (test_fixtures checks it).
    tokenizer = BertTokenizerFast(vocab=trained.get_vocab(), model_max_length=TINY_BERT_MAX_LENGTH)
    folder = Path(folder)
    tokenizer.save_pretrained(folder)

    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=TINY_BERT_MAX_LENGTH,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(folder, safe_serialization=True)
    return folder


# --------------------------------------------------------------------------------------------------------------------
# Images: tiny timm models in timm's Hub layout
# --------------------------------------------------------------------------------------------------------------------


def build_tiny_timm(
    folder: Path, architecture: str = "test_efficientnet", num_classes: int = 10, seed: int = 0, **model_kwargs
) -> Path:
    """Save a randomly initialised timm test model with `timm.models.save_for_hf` (config.json + model.safetensors).

    The exported pretrained_cfg asks for 32x32 inputs, so `timm.data.resolve_model_data_config` stays tiny.
    Load it with `timm.create_model("local-dir:" + str(folder), pretrained=True, num_classes=N)`.
    """
    import timm
    import torch
    from timm.models import save_for_hf

    torch.manual_seed(seed)
    model = timm.create_model(architecture, pretrained=False, num_classes=num_classes, **model_kwargs)
    save_for_hf(
        model,
        str(folder),
        # The source tag (e.g. "r160_in1k") would claim ImageNet weights that these random ones are not.
        model_config={"pretrained_cfg": {"tag": "random"}},
        safe_serialization=True,
        data_config={"input_size": (3, TINY_IMAGE_SIZE, TINY_IMAGE_SIZE)},
    )
    return Path(folder)


# --------------------------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------------------------


def sample_csv(src: Path, dst: Path, n: int, seed: int = 0) -> Path:
    """Write `n` rows of `src`, drawn without replacement with a fixed seed, keeping their order in `src`."""
    rows = read_csv_rows(src)
    picked = sorted(random.Random(seed).sample(range(len(rows)), n))
    return write_csv_rows(dst, [rows[i] for i in picked], fieldnames=list(rows[0]))


def build_digits_imagefolder(
    root: Path, classes: tuple[int, ...] = (0, 1, 2), n_train: int = 20, n_test: int = 10
) -> dict[str, list[tuple[Path, str]]]:
    """Write scikit-learn's 8x8 digits as PNGs in the `imagefolder` layout `root/{train,test}/<name>/*.png`.

    Class folders are named "zero", "one", ... Returns, per split, the (png path, label name) pairs written.
    """
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    written: dict[str, list[tuple[Path, str]]] = {"train": [], "test": []}
    for digit in classes:
        name = DIGIT_NAMES[digit]
        indices = np.flatnonzero(digits.target == digit)[: n_train + n_test]
        if len(indices) < n_train + n_test:
            raise ValueError(f"load_digits has only {len(indices)} images of {digit}")
        for position, index in enumerate(indices):
            split = "train" if position < n_train else "test"
            path = Path(root) / split / name / f"{name}_{index:04d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            pixels = np.round(digits.images[index] * (255.0 / 16.0)).astype(np.uint8)
            Image.fromarray(pixels).save(path)
            written[split].append((path, name))
    return written


# --------------------------------------------------------------------------------------------------------------------
# A local Hub cache
# --------------------------------------------------------------------------------------------------------------------


def point_hub_at(monkeypatch, cache_dir: Path) -> Path:
    """Make huggingface_hub (and transformers, timm, datasets through it) read `cache_dir`, offline, for one test.

    Setting the environment is not enough once huggingface_hub is imported: it copied HF_HUB_CACHE and
    HF_HUB_OFFLINE into module constants, and `scan_cache_dir` even bound HF_HUB_CACHE by name.
    """
    from huggingface_hub import constants
    from huggingface_hub.utils import _cache_manager

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache_dir))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache_dir))
    monkeypatch.setattr(_cache_manager, "HF_HUB_CACHE", str(cache_dir))
    datasets_config = sys.modules.get("datasets.config")  # if imported later, it reads the patched constant
    if datasets_config is not None:
        monkeypatch.setattr(datasets_config, "HF_HUB_OFFLINE", True)
    return Path(cache_dir)


def _blob_name(path: Path) -> str:
    """The name huggingface_hub gives a file's blob: its etag, sha256 for LFS files, the git blob sha1 otherwise."""
    size = path.stat().st_size
    if path.suffix in _LFS_SUFFIXES or size >= _LFS_MIN_BYTES:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest()
    digest = hashlib.sha1(f"blob {size}\0".encode())
    digest.update(path.read_bytes())
    return digest.hexdigest()


def _replace_with_symlink(target: str, link: Path) -> None:
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target)


def build_hub_cache(cache_dir: Path, repo_id: str, folder: Path, repo_type: str = "model", copy: bool = False) -> Path:
    """Lay `folder` out in `cache_dir` as huggingface_hub caches `repo_id` at revision "main"; return the snapshot.

    The layout is `<type>s--<org>--<name>/{blobs/<etag>, snapshots/<commit>/<file>, refs/main}`, snapshot files being
    relative symlinks to the blobs. Blobs are absolute symlinks to the files of `folder` (nothing is copied) unless
    `copy=True`. With `HF_HUB_OFFLINE=1` and `HF_HUB_CACHE=cache_dir`, `hf_hub_download(repo_id, ...)`,
    `transformers` and timm's `hf-hub:` loader then find the files by repo id. Calling it again for the same repo
    re-points `refs/main` at the new snapshot.
    """
    folder = Path(folder).resolve()
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    if not files:
        raise FileNotFoundError(f"{folder} has no files to cache")

    repo_dir = Path(cache_dir) / f"{repo_type}s--{repo_id.replace('/', '--')}"
    blobs = {p.relative_to(folder).as_posix(): _blob_name(p) for p in files}
    # A stable stand-in for the commit sha: same repo and content, same "commit".
    manifest = "\n".join([repo_type, repo_id, *(f"{name} {blob}" for name, blob in blobs.items())])
    commit = hashlib.sha1(manifest.encode()).hexdigest()

    (repo_dir / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot = repo_dir / "snapshots" / commit
    for source in files:
        relative = source.relative_to(folder).as_posix()
        blob = repo_dir / "blobs" / blobs[relative]
        if not (blob.exists() or blob.is_symlink()):
            if copy:
                shutil.copyfile(source, blob)
            else:
                blob.symlink_to(source)
        pointer = snapshot / relative
        pointer.parent.mkdir(parents=True, exist_ok=True)
        _replace_with_symlink(os.path.relpath(blob, pointer.parent), pointer)

    (repo_dir / "refs").mkdir(exist_ok=True)
    # huggingface_hub reads the ref without stripping: no trailing newline.
    (repo_dir / "refs" / "main").write_text(commit)
    return snapshot


# --------------------------------------------------------------------------------------------------------------------
# Images: tiny transformers vision models (and CLIP / SigLIP, whose image tower is the backbone)
# --------------------------------------------------------------------------------------------------------------------

TINY_VISION_FAMILIES = ("vit", "dinov2", "convnext", "resnet", "clip", "siglip")


def _tiny_vision_parts(family: str):
    """(model, image processor) of `family`, random, hidden size 32, 2 layers, 32x32 inputs, with the image processor
    class (and its kind of resizing and cropping) that the family's Hub checkpoints ship."""
    import transformers as tf

    # A wider initialisation than the 0.02 of real checkpoints: random tiny encoders then keep images apart.
    transformer = dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, initializer_range=0.2
    )
    vision = dict(transformer, image_size=TINY_IMAGE_SIZE, patch_size=8)
    text = dict(transformer, vocab_size=99, max_position_embeddings=16)
    mean_std = {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}
    square = {"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE}
    if family == "vit":  # like google/vit-base-patch16-224-in21k: an encoder without a classifier
        return tf.ViTModel(tf.ViTConfig(**vision)), tf.ViTImageProcessor(size=square, **mean_std)
    if family == "dinov2":  # resize the shorter side, then a centre crop (BitImageProcessor, as facebook/dinov2-*)
        config = tf.Dinov2Config(**{k: v for k, v in vision.items() if k != "intermediate_size"}, mlp_ratio=2)
        processor = tf.BitImageProcessor(size={"shortest_edge": 36}, crop_size=square, do_convert_rgb=True)
        return tf.Dinov2Model(config), processor
    if family == "convnext":
        config = tf.ConvNextConfig(num_stages=2, hidden_sizes=[16, 32], depths=[1, 1], patch_size=4)
        return tf.ConvNextModel(config), tf.ConvNextImageProcessor(size={"shortest_edge": TINY_IMAGE_SIZE})
    if family == "resnet":  # like microsoft/resnet-50, which ships a ConvNext image processor
        config = tf.ResNetConfig(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1], layer_type="basic")
        return tf.ResNetModel(config), tf.ConvNextImageProcessor(size={"shortest_edge": TINY_IMAGE_SIZE})
    if family == "clip":  # the whole dual encoder, as openai/clip-* checkpoints hold it
        config = tf.CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)
        processor = tf.CLIPImageProcessor(size={"shortest_edge": TINY_IMAGE_SIZE}, crop_size=square)
        return tf.CLIPModel(config), processor
    if family == "siglip":
        config = tf.SiglipConfig(text_config=text, vision_config=vision)
        return tf.SiglipModel(config), tf.SiglipImageProcessor(size=square)
    raise ValueError(f"no tiny vision model for {family!r}; choose one of {TINY_VISION_FAMILIES}")


def build_tiny_vision_model(folder: Path, family: str, seed: int = 0) -> Path:
    """Save a random tiny transformers vision checkpoint of `family` (see `TINY_VISION_FAMILIES`) into `folder`:
    config.json, model.safetensors and preprocessor_config.json, as a Hub checkpoint holds them."""
    import torch

    torch.manual_seed(seed)
    model, processor = _tiny_vision_parts(family)
    folder = Path(folder)
    model.save_pretrained(folder, safe_serialization=True)
    processor.save_pretrained(folder)
    return folder
