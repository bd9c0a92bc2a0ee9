"""What the speed-ups rely on: they change how fast, never what comes out (issue 12, items 2 and 3)."""

from __future__ import annotations

import copy

import datasets
import numpy as np
import pytest
import timm
import torch
import yaml
from accelerate import Accelerator
from helpers import text_recipe
from hypothesis import given, settings
from hypothesis import strategies as st
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForSequenceClassification

import hf_transfer
from hf_transfer.apps.predict import merged_for_inference
from hf_transfer.backbones import build_backbone
from hf_transfer.backbones.features import FeatureDataset
from hf_transfer.config.loading import load_recipe
from hf_transfer.config.sections import TrainConfig
from hf_transfer.core.accelerator import wants_channels_last
from hf_transfer.data.splits import load_splits
from hf_transfer.strategies import build_strategy
from hf_transfer.train.loop import (
    SeededRows,
    TrainingLoop,
    TrainingPlan,
    build_adamw,
    build_train_sampler,
    resolve_num_workers,
)


# --- batching by length ---------------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 128), min_size=1, max_size=200),
    batch_size=st.integers(1, 32),
    epoch=st.integers(0, 5),
)
def test_batches_grouped_by_length_hold_every_row_once_per_epoch(lengths, batch_size, epoch):
    rows = list(range(len(lengths)))
    plan = TrainingPlan(model=None, param_groups=[], train=rows, evals={}, train_lengths=lengths)
    grouped = build_train_sampler(plan, TrainConfig(batch_size=batch_size, group_by_length=True, seed=1))
    shuffled = build_train_sampler(plan, TrainConfig(batch_size=batch_size, group_by_length=False, seed=1))
    grouped.set_epoch(epoch)
    shuffled.set_epoch(epoch)
    assert sorted(grouped) == sorted(shuffled) == rows
    assert len(grouped) == len(lengths)


def test_predict_batched_by_length_gives_each_text_its_own_probabilities(tmp_path, tiny_bert_dir, keyword_csvs):
    run_dir = hf_transfer.run(str(text_recipe(tmp_path, tiny_bert_dir, keyword_csvs, "finetune", train={"epochs": 1})))
    classifier = hf_transfer.load(run_dir)
    texts = ["good", "a long review that goes on and on about the film " * 4, "bad film", "", "ok " * 30]
    one_by_one = [classifier.predict_proba([t], batch_size=1)[0] for t in texts]
    together = classifier.predict_proba(texts, batch_size=2)  # sorted by length inside, returned in input order
    assert together == pytest.approx(np.stack(one_by_one), abs=1e-5)


# --- LoRA merged for inference --------------------------------------------------------------------------------
def _trained_looking_lora(model, targets, seed=0):
    """A LoRA model whose adapters are not the identity they start as (B = 0), as after training."""
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=targets))
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.normal_(0, 0.2)
    return peft_model.eval()


def test_a_merged_lora_text_model_gives_the_adapter_models_logits(tiny_bert_dir):
    base = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=3)
    adapter = _trained_looking_lora(base, ["query", "value"])
    batch = {"input_ids": torch.randint(5, 900, (4, 17)), "attention_mask": torch.ones(4, 17, dtype=torch.long)}
    batch["attention_mask"][1, 9:] = 0
    with torch.no_grad():
        expected = adapter(**batch).logits
        with adapter.disable_adapter():
            without = adapter(**batch).logits
        merged = merged_for_inference(copy.deepcopy(adapter))
        got = merged(**batch).logits
    assert not isinstance(merged, PeftModel)
    assert not any("lora_" in name for name, _ in merged.named_parameters())
    assert not torch.allclose(expected, without, atol=1e-3)  # the adapters do change the logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_a_merged_lora_conv_model_gives_the_adapter_models_logits():
    adapter = _trained_looking_lora(timm.create_model("test_efficientnet", num_classes=3), ["conv_pw", "conv_pwl"])
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = adapter(pixels)
        got = merged_for_inference(copy.deepcopy(adapter))(pixels)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_a_loaded_lora_run_predicts_through_merged_weights_as_the_adapter_does(tmp_path, tiny_bert_dir, keyword_csvs):
    strategy = {"name": "lora", "r": 4, "alpha": 8, "dropout": 0.0}
    run_dir = hf_transfer.run(str(text_recipe(tmp_path, tiny_bert_dir, keyword_csvs, strategy, train={"epochs": 1})))
    classifier = hf_transfer.load(run_dir)
    assert not isinstance(classifier.model, PeftModel)
    base = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=2)
    adapter = PeftModel.from_pretrained(base, str(run_dir)).eval()
    texts = ["good movie", "bad", "a terrible, boring film with nothing good in it"]
    batch = classifier.backbone.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = adapter(**batch).logits.softmax(-1)
    assert classifier.predict_proba(texts) == pytest.approx(expected.numpy(), abs=1e-5)


# --- data loading in worker processes -------------------------------------------------------------------------
def _image_loop(tmp_path, checkpoint, csvs, workers):
    recipe = {
        "description": "workers",
        "task": "image-classification",
        "model": {"checkpoint": str(checkpoint)},
        "data": {"train_files": [str(csvs["train"])], "test_files": [str(csvs["test"])], "augment": "model"},
        "strategy": "finetune",
        "train": {"epochs": 2, "batch_size": 8, "seed": 3, "num_workers": workers},
        "output": {"dir": str(tmp_path / "out")},
    }
    path = tmp_path / f"workers-{workers}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    recipe = load_recipe(str(path))
    backbone = build_backbone(recipe.model, recipe.data, recipe.modality)
    columns, fields = backbone.required_columns()
    splits = load_splits(recipe.data, columns, fields, recipe.train.seed, check_rows=backbone.check_rows)
    plan = build_strategy(recipe.strategy, backbone).plan(splits, recipe, Accelerator(cpu=True))
    loop = TrainingLoop(recipe, Accelerator(cpu=True), tmp_path / f"work-{workers}", splits.label_names)
    loader, _ = loop._setup_data(plan)
    return loader


def _epoch_batches(loader, epoch):
    loader.sampler.set_epoch(epoch)
    return [(b["pixel_values"].clone(), b["labels"].clone()) for b in loader]


def test_workers_give_the_same_augmented_batches_as_the_main_process(tmp_path, tiny_timm_dir, digits_csv):
    main = _image_loop(tmp_path, tiny_timm_dir, digits_csv, 0)
    workers = _image_loop(tmp_path, tiny_timm_dir, digits_csv, 2)
    assert workers.num_workers == 2 and workers.persistent_workers
    for epoch in (0, 1, 0):  # and an epoch read again (a resume) is read the same
        expected, got = _epoch_batches(main, epoch), _epoch_batches(workers, epoch)
        assert len(got) == len(expected)
        for (pixels, labels), (want_pixels, want_labels) in zip(got, expected):
            assert torch.equal(labels, want_labels)
            assert torch.equal(pixels, want_pixels)
    # not vacuous: augmentation does draw, differently for each epoch (the order differs too, so sort by content)
    first, second = _epoch_batches(main, 0), _epoch_batches(main, 1)
    sums = [sorted(torch.cat([p for p, _ in batches]).sum(dim=(1, 2, 3)).tolist()) for batches in (first, second)]
    assert sums[0] != pytest.approx(sums[1])


def test_reading_rows_leaves_the_main_process_random_state_alone(tmp_path, tiny_timm_dir, digits_csv):
    loader = _image_loop(tmp_path, tiny_timm_dir, digits_csv, 0)
    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    _epoch_batches(loader, 0)
    assert torch.equal(torch.rand(3), expected)  # dropout masks do not depend on how rows were augmented


def test_num_workers_auto_uses_half_the_cores_for_images_and_none_for_text(monkeypatch):
    monkeypatch.setattr("hf_transfer.train.loop.available_cores", lambda: 6)
    assert resolve_num_workers("auto", "image", [0, 1]) == 3
    assert resolve_num_workers("auto", "text", [0, 1]) == 0
    monkeypatch.setattr("hf_transfer.train.loop.available_cores", lambda: 64)
    assert resolve_num_workers("auto", "image", [0, 1]) == 8
    assert resolve_num_workers(5, "text", [0, 1]) == 5  # a number is taken as given
    on_gpu = torch.zeros(1, device="meta")  # stands for a CUDA tensor: rows already on a device, nothing to load
    assert resolve_num_workers("auto", "image", [{"pixel_values": on_gpu}]) == 0


def test_num_workers_auto_is_zero_where_workers_cannot_get_the_data(monkeypatch):
    monkeypatch.setattr("hf_transfer.train.loop.available_cores", lambda: 8)
    monkeypatch.setattr("multiprocessing.get_start_method", lambda allow_none=False: "spawn")
    unpicklable = [lambda: None]  # a transform defined inside a function: spawned workers cannot receive it
    assert resolve_num_workers("auto", "image", unpicklable) == 0
    assert resolve_num_workers("auto", "image", [0, 1]) == 4


# --- channels-last, fused AdamW -------------------------------------------------------------------------------
def test_channels_last_gives_the_same_outputs_and_the_layout_goes_back():
    model = timm.create_model("test_efficientnet", num_classes=3).eval()
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(pixels)
        model.to(memory_format=torch.channels_last)
        assert model.conv_stem.weight.is_contiguous(memory_format=torch.channels_last)
        got = model(pixels.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    model.to(memory_format=torch.contiguous_format)
    assert all(p.is_contiguous() for p in model.parameters())  # what safetensors needs to save it


def test_channels_last_is_chosen_for_convolutions_on_cuda_only(tiny_bert_dir):
    cnn = timm.create_model("test_efficientnet", num_classes=3)
    vit_like = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=2)
    assert wants_channels_last(cnn, "cuda")
    assert not wants_channels_last(cnn, "cpu")
    assert not wants_channels_last(vit_like, "cuda")


def test_adamw_is_fused_on_cuda_and_cpu_and_steps_like_the_loop_over_tensors():
    params = [{"params": [torch.nn.Parameter(torch.zeros(2))]}]
    assert build_adamw(params, TrainConfig(), torch.device("cuda")).defaults["fused"] is True
    assert build_adamw(params, TrainConfig(), torch.device("cpu")).defaults["fused"] is True
    assert not build_adamw(params, TrainConfig(), torch.device("mps")).defaults["fused"]
    torch.manual_seed(0)
    weights = [torch.randn(5, 3), torch.randn(3)]
    grads = [[torch.randn_like(w) for w in weights] for _ in range(4)]
    finals = []
    for fused in (True, False):
        trained = [torch.nn.Parameter(w.clone()) for w in weights]
        groups = [{"params": trained[:1], "weight_decay": 0.01}, {"params": trained[1:], "weight_decay": 0.0}]
        # "meta" stands for any device the fused kernel does not serve: the loop over tensors
        optimizer = build_adamw(groups, TrainConfig(), torch.device("cpu" if fused else "meta"))
        for step in grads:
            for p, g in zip(trained, step, strict=True):
                p.grad = g.clone()
            optimizer.step()
        finals.append(trained)
    for a, b in zip(*finals, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_attention_runs_through_sdpa_where_the_model_offers_it(tiny_bert_dir):
    from hf_transfer.config.sections import ModelConfig

    text = build_backbone(ModelConfig(checkpoint=str(tiny_bert_dir)), None, "text").build_classifier(["a", "b"])
    assert text.config._attn_implementation == "sdpa"
    vit = timm.create_model("test_vit", num_classes=2)
    assert all(block.attn.fused_attn for block in vit.blocks)  # F.scaled_dot_product_attention


@settings(max_examples=25, deadline=None)
@given(rows=st.lists(st.integers(0, 29), min_size=1, max_size=40), epoch=st.integers(0, 5))
def test_rows_that_draw_nothing_are_read_a_batch_at_a_time_and_equal_row_reads(rows, epoch):
    features = FeatureDataset(torch.randn(30, 4), torch.arange(30) % 3)
    text = datasets.Dataset.from_dict({"input_ids": [[i, i + 1] for i in range(30)], "labels": list(range(30))})
    for dataset in (features, text):
        seeded = SeededRows(dataset, seed=0)
        assert not seeded.seeded  # no augmentation: the per-row random state would cost ~0.5 ms a row for nothing
        keys = [(epoch, row) for row in rows]
        batch = seeded.__getitems__(keys)
        for got, row in zip(batch, rows, strict=True):
            expected = dataset[row]
            assert set(got) == set(expected)
            for key in expected:
                assert torch.equal(torch.as_tensor(got[key]), torch.as_tensor(expected[key]))


def test_rows_read_through_a_transform_keep_their_seeded_random_state():
    images = datasets.Dataset.from_dict({"x": list(range(8))})
    images.set_transform(lambda batch: {"x": [torch.rand(()) + v for v in batch["x"]]})  # an augmentation's draw
    seeded = SeededRows(images, seed=3)
    assert seeded.seeded
    first, again = seeded.__getitems__([(1, 5), (2, 5)]), seeded.__getitems__([(1, 5), (2, 5)])
    assert torch.equal(first[0]["x"], again[0]["x"]) and not torch.equal(first[0]["x"], first[1]["x"])
