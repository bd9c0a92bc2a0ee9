"""Zero-shot classification from label names alone: CLIP / SigLIP for images, text encoders for texts; as a baseline
of a run (`baseline: [zero_shot]`) and as a candidate of `hf-transfer rank --zero-shot`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from fixtures_models import TEXT_SPECIAL_TOKENS, write_csv_rows
from helpers import text_recipe, write_recipe
from hypothesis import given
from hypothesis import strategies as st

import hf_transfer
from hf_transfer.apps.cli import main
from hf_transfer.config.recipe import recipe_from_dict
from hf_transfer.config.sections import DataConfig
from hf_transfer.config.zero_shot import ZeroShotConfig
from hf_transfer.core.errors import HfTransferError, RecipeError
from hf_transfer.strategies.zero_shot import ZeroShotClassifier, label_prompts

COLOURS = {"cat": (200, 30, 30), "dog": (30, 180, 40), "bird": (40, 60, 210)}
TWO_TEMPLATES = ["a photo of a {label}.", "a blurry picture of the {label}"]
TINY_TEXT_POSITIONS = 64


# --------------------------------------------------------------------------------------------------------------------
# Tiny dual encoders whose towers agree by construction
# --------------------------------------------------------------------------------------------------------------------


def byte_level_clip_tokenizer():
    """A CLIPTokenizer with CLIP's byte-level alphabet and no merges: every word is spelt out character by character,
    so every prompt gets its own token sequence without a trained BPE."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    alphabet = list(bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for token in ["<|startoftext|>", "<|endoftext|>", *alphabet, *(c + "</w>" for c in alphabet)]:
        vocab.setdefault(token, len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=TINY_TEXT_POSITIONS)


def colour_image(label: str, size: tuple[int, int] = (24, 24)):
    from PIL import Image

    return Image.new("RGB", size, COLOURS[label])


def build_agreeing_dual_encoder(folder: Path, kind: str, templates: list[str], texts: dict[str, list[str]]) -> Path:
    """A random tiny CLIP or SigLIP (2 layers, width 32, 32x32 images) whose text projection is then refitted so that
    the text embedding of every prompt of label k (each template with each of `texts[k]` in it) equals the image
    embedding of label k's solid-colour image (`COLOURS`).

    The image tower stays random: it maps the three colours to three different directions u_k. The last text layer
    (CLIP's `text_projection`, SigLIP's `text_model.head`) is linear in the pooled text state p; with at most 32
    prompts in general position, least squares finds weights with W p = u_k exactly for every prompt of label k. So
    every image's most similar label is its own, with cosine 1, whatever the towers learnt (nothing)."""
    from transformers import (
        AutoProcessor,
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        SiglipConfig,
        SiglipImageProcessor,
        SiglipModel,
    )

    torch.manual_seed(0)
    tokenizer = byte_level_clip_tokenizer()
    text = dict(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=TINY_TEXT_POSITIONS,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32)
    if kind == "clip":
        model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision | {"patch_size": 8}, projection_dim=16))
        image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
        projection = model.text_projection
    else:
        model = SiglipModel(SiglipConfig(text_config=text, vision_config=vision | {"patch_size": 8}))
        image_processor = SiglipImageProcessor(size={"height": 32, "width": 32})
        projection = model.text_model.head
    model.eval()
    folder.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(folder)  # AutoProcessor reads the model type from it
    tokenizer.save_pretrained(folder)
    image_processor.save_pretrained(folder)
    processor = AutoProcessor.from_pretrained(folder)

    labels = list(COLOURS)
    with torch.no_grad():
        pixels = processor(images=[colour_image(label) for label in labels], return_tensors="pt")["pixel_values"]
        image_embeds = model.get_image_features(pixel_values=pixels).pooler_output
        prompts, targets = [], []
        for k, label in enumerate(labels):
            for description in texts[label]:
                for template in templates:
                    prompts.append(template.replace("{label}", description))
                    targets.append(image_embeds[k])
        padding = "max_length" if kind == "siglip" else True
        tokens = processor.tokenizer(
            prompts, padding=padding, truncation=True, max_length=TINY_TEXT_POSITIONS, return_tensors="pt"
        )
        captured = []
        hook = projection.register_forward_hook(lambda module, args, output: captured.append(args[0]))
        keep = ("input_ids", "attention_mask") if kind == "clip" else ("input_ids",)
        model.get_text_features(**{k: tokens[k] for k in keep})
        hook.remove()
        pooled = captured[0]
        if projection.bias is not None:
            pooled = torch.cat([pooled, torch.ones(len(pooled), 1)], dim=1)
        solution = torch.linalg.lstsq(pooled.double(), torch.stack(targets).double()).solution.float()
        if projection.bias is not None:
            projection.bias.copy_(solution[-1])
            solution = solution[:-1]
        projection.weight.copy_(solution.T)
        check = model.get_text_features(**{k: tokens[k] for k in keep}).pooler_output
        assert torch.allclose(check, torch.stack(targets), atol=1e-3)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory) -> Path:
    """A tiny CLIP that agrees with the colour images for both `TWO_TEMPLATES` around each label's name."""
    names = {label: [label] for label in COLOURS}
    return build_agreeing_dual_encoder(tmp_path_factory.mktemp("zs") / "clip", "clip", TWO_TEMPLATES, names)


@pytest.fixture(scope="module")
def tiny_siglip_dir(tmp_path_factory) -> Path:
    names = {label: [label] for label in COLOURS}
    return build_agreeing_dual_encoder(tmp_path_factory.mktemp("zs") / "siglip", "siglip", TWO_TEMPLATES, names)


@pytest.fixture(scope="module")
def colour_csvs(tmp_path_factory) -> dict[str, Path]:
    """{"train", "test"}: CSVs of PNG paths (column image) of solid-colour images of several sizes, labelled by colour
    (cat red, dog green, bird blue): 8 train and 4 test images per label."""
    root = tmp_path_factory.mktemp("colours")
    out = {}
    for split, n in (("train", 8), ("test", 4)):
        rows = []
        for label in COLOURS:
            for i in range(n):
                path = root / split / f"{label}_{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                colour_image(label, (16 + 4 * i, 40 - 2 * i)).save(path)
                rows.append({"image": str(path), "label": label})
        out[split] = write_csv_rows(root / f"{split}.csv", rows, ["image", "label"])
    return out


def colour_split(csv_path: Path):
    """The CSV as a Dataset with integer `labels` in the order of COLOURS."""
    from datasets import load_dataset

    split = load_dataset("csv", data_files=str(csv_path), split="train")
    return split.map(lambda row: {"labels": list(COLOURS).index(row["label"])})


# --------------------------------------------------------------------------------------------------------------------
# A tiny sentence-embedding text encoder
# --------------------------------------------------------------------------------------------------------------------

POSITIVE = ["good", "great", "wonderful", "best", "fun"]
NEGATIVE = ["bad", "dull", "worst", "boring", "awful"]
FILLER = "the movie film story plot actors was is a an and of it this that with".split()


@pytest.fixture(scope="module")
def keyword_encoder_dir(tmp_path_factory) -> Path:
    """A BERT without transformer layers (its output is LayerNorm(word + position + type embedding)) whose position
    and type embeddings are 0 and whose word embeddings are 0 except for the keywords of `keyword_csvs`: the positive
    ones all (2, -2, 0, ...), the negative ones all (0, 0, 2, -2, 0, ...), vectors that LayerNorm leaves as they are.
    Mean pooling then points every review, and every prompt holding a keyword, at its sentiment's direction; a label
    name such as `pos` is an unknown token, embedded as 0."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("keyword_encoder")
    vocab = [*TEXT_SPECIAL_TOKENS, *FILLER, *POSITIVE, *NEGATIVE, "movie", "review", "positive", "negative"]
    vocab = list(dict.fromkeys(vocab))
    tokenizer = BertTokenizerFast(vocab={word: i for i, word in enumerate(vocab)}, model_max_length=64)
    tokenizer.save_pretrained(folder)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=8, num_hidden_layers=0, num_attention_heads=2, intermediate_size=16
    )
    model = BertModel(config)
    with torch.no_grad():
        embeddings = model.embeddings
        for table in (embeddings.word_embeddings, embeddings.position_embeddings, embeddings.token_type_embeddings):
            table.weight.zero_()
        for words, direction in ((POSITIVE + ["positive"], [2, -2, 0, 0]), (NEGATIVE + ["negative"], [0, 0, 2, -2])):
            for word in words:
                embeddings.word_embeddings.weight[vocab.index(word), :4] = torch.tensor(direction, dtype=torch.float)
        embeddings.LayerNorm.weight.fill_(1.0)
        embeddings.LayerNorm.bias.zero_()
    model.save_pretrained(folder)
    return folder


# --------------------------------------------------------------------------------------------------------------------
# Prompts
# --------------------------------------------------------------------------------------------------------------------


def test_templates_are_rendered_as_documented():
    labels = ["cat", "dog"]
    assert label_prompts(labels, ZeroShotConfig(), "image") == {
        "cat": ["a photo of a cat."],
        "dog": ["a photo of a dog."],
    }
    assert label_prompts(labels, ZeroShotConfig(), "text") == {"cat": ["cat"], "dog": ["dog"]}
    # several templates, and descriptions that replace the name (one text, or several), descriptions first
    config = ZeroShotConfig(
        templates=["a photo of a {label}.", "{label}, {label}! {not a placeholder}"],
        descriptions={"cat": ["tabby", "kitten"], "dog": "good boy"},
    )
    assert label_prompts(labels, config, "image") == {
        "cat": ["a photo of a tabby.", "tabby, tabby! {not a placeholder}", "a photo of a kitten.",
                "kitten, kitten! {not a placeholder}"],
        "dog": ["a photo of a good boy.", "good boy, good boy! {not a placeholder}"],
    }  # fmt: skip


@given(
    labels=st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=4, unique=True),
    templates=st.lists(st.tuples(st.text(max_size=6), st.text(max_size=6)), min_size=1, max_size=3),
    described=st.lists(st.text(min_size=1, max_size=8).filter(str.strip), max_size=3),
)
def test_every_template_meets_every_description_verbatim(labels, templates, described):
    descriptions = {labels[0]: described} if described else {}
    rendered_templates = [f"{before}{{label}}{after}" for before, after in templates]
    config = ZeroShotConfig(templates=rendered_templates, descriptions=descriptions)
    prompts = label_prompts(labels, config, "image")
    assert list(prompts) == labels
    for label, rendered in prompts.items():
        texts = described if label in descriptions else [label]
        # descriptions outer, templates inner; the text around {label} is kept as written (braces too)
        assert rendered == [before + text + after for text in texts for before, after in templates]


def test_descriptions_must_name_labels():
    with pytest.raises(RecipeError, match=r"zero_shot.descriptions names 'kat'.*cat, dog"):
        label_prompts(["cat", "dog"], ZeroShotConfig(descriptions={"kat": "a cat"}), "image")


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"templates": [""]}, r"^zero_shot.templates\[0\] is empty; write a prompt with \{label\}"),
        ({"templates": ["a photo", "  "]}, r"^zero_shot.templates\[0\] 'a photo' has no \{label\}"),
        ({"templates": []}, r"^zero_shot.templates is an empty list"),
        ({"templates": ["a {Label}"]}, r"has no \{label\}"),
        ({"descriptions": {"cat": []}}, r"^zero_shot.descriptions.cat must be a non-empty text"),
        ({"temperature": 0}, r"^zero_shot.temperature must be greater than 0"),
        ({"template": ["{label}"]}, r"unknown recipe key 'zero_shot.template'.*templates"),
    ],
)
def test_zero_shot_section_mistakes_are_one_line_errors(section, message, tmp_path):
    raw = {"model": {"checkpoint": "m"}, "data": {"train_files": ["t.csv"]}, "strategy": "linear_probe"}
    with pytest.raises(RecipeError, match=message) as info:
        recipe_from_dict(raw | {"baseline": ["zero_shot"], "zero_shot": section})
    assert "\n" not in str(info.value)


def test_zero_shot_baseline_is_single_label_only():
    raw = {"model": {"checkpoint": "m"}, "data": {"train_files": ["t.csv"]}, "strategy": "linear_probe"}
    with pytest.raises(RecipeError, match=r"^baseline zero_shot .* not regression; remove zero_shot from baseline"):
        recipe_from_dict(raw | {"baseline": ["zero_shot"], "problem_type": "regression"})


def test_zero_shot_checkpoint_defaults_to_the_model():
    raw = {"model": {"checkpoint": "m"}, "data": {"train_files": ["t.csv"]}, "strategy": "linear_probe"}
    assert recipe_from_dict(raw | {"baseline": ["zero_shot"]}).zero_shot_config.checkpoint == "m"
    recipe = recipe_from_dict(raw | {"baseline": ["zero_shot"], "zero_shot": {"checkpoint": "clip"}})
    assert recipe.zero_shot_config.checkpoint == "clip" and recipe.to_dict()["zero_shot"]["checkpoint"] == "clip"


# --------------------------------------------------------------------------------------------------------------------
# Image zero-shot
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_agreeing_towers_classify_every_image(kind, tiny_clip_dir, tiny_siglip_dir, colour_csvs):
    folder = tiny_clip_dir if kind == "clip" else tiny_siglip_dir
    config = ZeroShotConfig(checkpoint=str(folder), templates=TWO_TEMPLATES)
    classifier = ZeroShotClassifier(config, "image", DataConfig(train_files=[str(colour_csvs["test"])]))
    assert classifier.kind == kind
    split = colour_split(colour_csvs["test"])
    probs = classifier.predict_proba({"test": split}, list(COLOURS), batch_size=5)["test"]
    assert probs.shape == (12, 3) and np.allclose(probs.sum(1), 1.0, atol=1e-5)
    assert (probs.argmax(1) == np.asarray(split["labels"])).mean() == 1.0
    if kind == "clip":  # the learnt logit scale (ln 1/0.07 at initialisation) sharpens cosines 1 vs < 1
        assert probs.max(1).min() > 0.5


def test_several_templates_are_averaged_as_in_clips_paper(tiny_clip_dir):
    config = ZeroShotConfig(checkpoint=str(tiny_clip_dir), templates=TWO_TEMPLATES)
    classifier = ZeroShotClassifier(config, "image", DataConfig(train_files=["unused.csv"]))
    # labels the towers were not fitted to: each template gives its own embedding
    prompts = label_prompts(["fish", "cow"], config, "image")
    averaged = classifier.label_embeddings(prompts)
    with torch.inference_mode():
        for row, texts in zip(averaged, prompts.values(), strict=True):
            unit = [classifier._embed_texts([t])[0] for t in texts]  # each prompt alone
            expected = torch.nn.functional.normalize(torch.stack(unit).mean(0), dim=0)
            assert torch.allclose(row, expected, atol=1e-5) and torch.linalg.norm(row) == pytest.approx(1.0)
            assert not torch.allclose(unit[0], unit[1], atol=1e-3)  # two templates, two different embeddings


def test_descriptions_replace_the_label_names(tmp_path, colour_csvs):
    # towers that agree only on descriptions: prompts with the bare names are fitted to nothing
    texts = {"cat": ["red thing"], "dog": ["green thing"], "bird": ["blue thing"]}
    folder = build_agreeing_dual_encoder(tmp_path / "clip", "clip", ["{label}"], texts)
    split = colour_split(colour_csvs["test"])
    config = ZeroShotConfig(checkpoint=str(folder), templates=["{label}"], descriptions=texts)
    classifier = ZeroShotClassifier(config, "image", DataConfig(train_files=["unused.csv"]))
    probs = classifier.predict_proba({"test": split}, list(COLOURS), 16)["test"]
    assert (probs.argmax(1) == np.asarray(split["labels"])).mean() == 1.0
    assert classifier.describe(list(COLOURS))["prompts"]["dog"] == ["green thing"]


def test_checkpoints_that_cannot_classify_zero_shot(tmp_path, tiny_bert_dir, tiny_timm_dir):
    data = DataConfig(train_files=["unused.csv"])
    cases = [
        (tiny_bert_dir, "image", r"is a bert model, not an image-text one; zero-shot image needs a CLIP or SigLIP"),
        (tiny_timm_dir, "image", r"is a timm_wrapper model, not an image-text one"),
        (tiny_timm_dir, "text", r"zero-shot text needs a CLIP, SigLIP or text encoder"),
        (tmp_path / "nowhere", "text", r"'.*nowhere' does not load as a transformers model"),
    ]
    for folder, modality, message in cases:
        with pytest.raises(HfTransferError, match=message) as info:
            ZeroShotClassifier(ZeroShotConfig(checkpoint=str(folder)), modality, data).check()
        assert str(info.value).startswith("zero_shot.checkpoint '") and "\n" not in str(info.value)


def test_a_vision_only_transformers_model_is_refused(tmp_path):
    from transformers import ViTConfig, ViTModel

    ViTModel(
        ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    ).save_pretrained(tmp_path / "vit")
    with pytest.raises(HfTransferError, match=r"is a vit model without a text encoder"):
        ZeroShotClassifier(ZeroShotConfig(checkpoint=str(tmp_path / "vit")), "text", DataConfig()).check()


# --------------------------------------------------------------------------------------------------------------------
# Text zero-shot
# --------------------------------------------------------------------------------------------------------------------


def test_text_zero_shot_with_a_sentence_encoder(keyword_encoder_dir, keyword_csvs):
    from datasets import load_dataset

    split = load_dataset("csv", data_files=str(keyword_csvs["test"]), split="train")
    split = split.map(lambda row: {"labels": ["neg", "pos"].index(row["label"])})
    labels = np.asarray(split["labels"])
    data = DataConfig(train_files=[str(keyword_csvs["test"])])

    def accuracy(config):
        classifier = ZeroShotClassifier(replace_checkpoint(config, keyword_encoder_dir), "text", data)
        assert classifier.kind == "text"
        probs = classifier.predict_proba({"test": split}, ["neg", "pos"], 16)["test"]
        return (probs.argmax(1) == labels).mean(), probs

    # the names `neg` / `pos` mean nothing to the encoder: every review ties, and argmax takes the first label
    by_name, probs = accuracy(ZeroShotConfig())
    assert by_name == pytest.approx((labels == 0).mean()) and np.allclose(probs, 0.5)
    # descriptions with the words the encoder knows: every review goes to its label
    described, probs = accuracy(ZeroShotConfig(descriptions={"neg": ["bad", "awful"], "pos": "good"}))
    assert described == 1.0
    # the temperature: softmax(cosine / 0.05) of cosines 1 and 0
    assert probs.max(1) == pytest.approx(np.full(len(labels), 1 / (1 + np.exp(-20))), rel=1e-4)
    # a template around the description
    templated, _ = accuracy(ZeroShotConfig(templates=["a {label} movie review"], descriptions={"neg": "negative"}))
    assert templated == pytest.approx((labels == 0).mean())  # `pos` still ties; `negative` now wins every tie


def test_a_clip_checkpoint_serves_text_tasks_with_its_text_tower(tiny_clip_dir, keyword_csvs):
    from datasets import load_dataset

    split = load_dataset("csv", data_files=str(keyword_csvs["test"]), split="train").select(range(10))
    classifier = ZeroShotClassifier(ZeroShotConfig(checkpoint=str(tiny_clip_dir)), "text", DataConfig())
    probs = classifier.predict_proba({"test": split}, ["neg", "pos"], 4)["test"]
    assert classifier.kind == "clip" and probs.shape == (10, 2) and np.allclose(probs.sum(1), 1.0, atol=1e-5)
    assert classifier.describe(["neg", "pos"])["prompts"] == {"neg": ["neg"], "pos": ["pos"]}  # the text default


def replace_checkpoint(config: ZeroShotConfig, folder: Path) -> ZeroShotConfig:
    from dataclasses import replace

    return replace(config, checkpoint=str(folder))


# --------------------------------------------------------------------------------------------------------------------
# As a baseline of a run, and as a candidate of rank
# --------------------------------------------------------------------------------------------------------------------


def test_zero_shot_baseline_end_to_end(tmp_path, tiny_timm_dir, tiny_clip_dir, colour_csvs, capsys):
    recipe = write_recipe(
        tmp_path / "colours.yaml",
        task="image-classification",
        model={"checkpoint": f"local-dir:{tiny_timm_dir}"},
        data={"train_files": [str(colour_csvs["train"])], "test_files": [str(colour_csvs["test"])], "augment": "none"},
        strategy="linear_probe",
        train={"epochs": 1, "batch_size": 8, "learning_rate": 1e-3, "seed": 0},
        output={"dir": str(tmp_path / "run")},
        baseline=["zero_shot", "head_only"],
        zero_shot={"checkpoint": str(tiny_clip_dir), "templates": TWO_TEMPLATES},
    )
    assert main(["run", str(recipe)]) == 0
    printed = capsys.readouterr().out
    run_dir = tmp_path / "run"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    transfer = metrics["transfer"]
    assert transfer["split"] == "test" and transfer["baseline"] == "zero_shot"
    gain = transfer["gains"]["zero_shot"]
    assert transfer["metric"] == "f1_macro" and gain["b"] == 1.0  # perfect: the towers agree by construction
    assert metrics["baselines"]["zero_shot"]["accuracy"] == 1.0
    assert metrics["baselines"]["zero_shot"]["num_samples"] == metrics["test"]["num_samples"] == 12
    assert gain["a"] == pytest.approx(metrics["test"][transfer["metric"]])
    assert gain["ci_low"] <= gain["difference"] <= gain["ci_high"]
    assert set(transfer["gains"]) == {"zero_shot", "head_only"}
    assert "vs 1.0000 zero-shot from the label names, gain" in printed and "with the head only, gain" in printed
    # the run folder says what classified: the checkpoint, the templates and every label's prompts
    record = json.loads((run_dir / "hf_transfer.json").read_text())["zero_shot"]
    assert record["checkpoint"] == str(tiny_clip_dir) and record["kind"] == "clip"
    assert record["templates"] == TWO_TEMPLATES
    assert record["prompts"]["cat"] == ["a photo of a cat.", "a blurry picture of the cat"]
    assert yaml.safe_load((run_dir / "recipe.yaml").read_text())["zero_shot"]["templates"] == TWO_TEMPLATES
    card = (run_dir / "README.md").read_text()
    assert f"zero_shot baseline (`{tiny_clip_dir}`" in card and "head_only baseline" in card and "CI" in card
    assert not any(p.name.startswith("baseline-zero_shot") for p in run_dir.iterdir())  # nothing was trained


def test_zero_shot_baseline_of_a_text_run(tmp_path, keyword_encoder_dir, keyword_csvs):
    recipe = text_recipe(
        tmp_path,
        keyword_encoder_dir,
        keyword_csvs,
        "linear_probe",
        train={"epochs": 1, "report_to": "tensorboard"},
        baseline=["zero_shot"],
        zero_shot={"descriptions": {"neg": "bad", "pos": "good"}},  # the checkpoint: the recipe's model
    )
    run_dir = hf_transfer.run(str(recipe))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["baselines"]["zero_shot"]["accuracy"] == 1.0
    assert metrics["transfer"]["ci_low"] <= metrics["transfer"]["difference"] <= metrics["transfer"]["ci_high"]
    record = json.loads((run_dir / "hf_transfer.json").read_text())["zero_shot"]
    assert record == {
        "checkpoint": str(keyword_encoder_dir),
        "kind": "text",
        "templates": ["{label}"],
        "descriptions": {"neg": "bad", "pos": "good"},
        "prompts": {"neg": ["bad"], "pos": ["good"]},
        "temperature": 0.05,
        "checkpoint_path": str(keyword_encoder_dir.resolve()),
    }
    # the trackers get the baseline's final metrics as they get a trained baseline's
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logged = {}
    for folder in {p.parent for p in (run_dir / "runs").rglob("events.out.tfevents.*")}:
        events = EventAccumulator(str(folder))
        events.Reload()
        logged |= {tag: events.Scalars(tag)[-1].value for tag in events.Tags()["scalars"]}
    assert logged["baseline-zero_shot/final/test/accuracy"] == 1.0
    assert "baseline-zero_shot/final/validation/f1_macro" in logged


def test_a_bad_zero_shot_checkpoint_fails_before_training(tmp_path, tiny_timm_dir, colour_csvs, capsys):
    recipe = write_recipe(
        tmp_path / "bad.yaml",
        task="image-classification",
        model={"checkpoint": f"local-dir:{tiny_timm_dir}"},
        data={"train_files": [str(colour_csvs["train"])]},
        strategy="linear_probe",
        output={"dir": str(tmp_path / "run")},
        baseline=["zero_shot"],
    )
    assert main(["run", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "zero_shot.checkpoint 'local-dir:" in err and "CLIP or SigLIP" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_rank_scores_zero_shot_candidates(tmp_path, monkeypatch, tiny_timm_dir, tiny_clip_dir, colour_csvs, capsys):
    monkeypatch.setenv("HF_TRANSFER_CACHE", str(tmp_path / "cache"))
    args = ["rank", "--task", "image-classification", "--data", str(colour_csvs["train"]), "--folds", "2"]
    zero_shot = ["--zero-shot", str(tiny_clip_dir), *(x for t in TWO_TEMPLATES for x in ("--template", t))]
    assert main([*args, "--checkpoints", f"local-dir:{tiny_timm_dir}", *zero_shot, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    rows = {row["checkpoint"]: row for row in report["candidates"]}
    clip, timm = rows[str(tiny_clip_dir)], rows[f"local-dir:{tiny_timm_dir}"]
    assert clip["zero_shot_accuracy"] == 1.0 and clip["logme"] is None and clip["parameters"] > 0
    assert timm["zero_shot_accuracy"] is None and math.isfinite(timm["logme"])
    assert report["ranked_by"] == "logme" and report["zero_shot"]["templates"] == TWO_TEMPLATES
    # ranked by zero-shot accuracy; alone, that is the default, and the table shows the column
    assert main([*args, *zero_shot, "--by", "zero_shot_accuracy"]) == 0
    table = capsys.readouterr().out
    assert "Ranked by zero_shot_accuracy on 24 rows" in table and "zero-shot acc" in table and "1.0000" in table
    assert main([*args, *zero_shot]) == 0
    assert "Ranked by zero_shot_accuracy" in capsys.readouterr().out


def test_rank_merges_a_text_checkpoint_given_to_both_flags(tmp_path, monkeypatch, keyword_encoder_dir, keyword_csvs):
    from hf_transfer.apps.rank import rank_checkpoints, rank_inputs

    monkeypatch.setenv("HF_TRANSFER_CACHE", str(tmp_path / "cache"))
    recipe = text_recipe(
        tmp_path,
        keyword_encoder_dir,
        keyword_csvs,
        "linear_probe",
        zero_shot={"descriptions": {"neg": "bad", "pos": "good"}},
    )
    inputs = rank_inputs(recipe=str(recipe))
    folder = str(keyword_encoder_dir)
    report = rank_checkpoints([folder], inputs, max_samples=60, folds=3, zero_shot=[folder])
    (row,) = report["candidates"]
    assert row["zero_shot_accuracy"] == 1.0 and row["linear_accuracy"] > 0.9 and row["feature_dim"] == 8
    assert report["zero_shot"]["descriptions"] == {"neg": "bad", "pos": "good"}


def test_rank_zero_shot_mistakes_name_the_flag(tmp_path, tiny_bert_dir, keyword_csvs, capsys):
    data = ["--data", str(keyword_csvs["train"])]
    assert main(["rank", "--zero-shot", str(tmp_path / "nowhere"), *data]) == 2
    assert "--zero-shot '" in capsys.readouterr().err
    assert main(["rank", "--zero-shot", str(tiny_bert_dir), "--template", "no label", *data]) == 2
    assert "--template[0] 'no label' has no {label}" in capsys.readouterr().err
    assert main(["rank", "--checkpoints", str(tiny_bert_dir), "--by", "zero_shot_accuracy", *data]) == 2
    assert "--zero-shot" in capsys.readouterr().err
    assert main(["rank", *data]) == 2
    assert "--checkpoints" in capsys.readouterr().err
