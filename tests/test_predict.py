"""Prediction from a run folder: texts batched by length, LoRA merged into the weights; both give what the
unbatched, unmerged model gives (issue 12)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import timm
import torch
from helpers import text_recipe
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForSequenceClassification

import hf_transfer
from hf_transfer.apps.predict import merged_for_inference


def test_predict_batched_by_length_gives_each_text_its_own_probabilities(tmp_path, tiny_bert_dir, keyword_csvs):
    run_dir = hf_transfer.run(str(text_recipe(tmp_path, tiny_bert_dir, keyword_csvs, "finetune", train={"epochs": 1})))
    classifier = hf_transfer.load(run_dir)
    texts = ["good", "a long review that goes on and on about the film " * 4, "bad film", "", "ok " * 30]
    one_by_one = [classifier.predict_proba([t], batch_size=1)[0] for t in texts]
    together = classifier.predict_proba(texts, batch_size=2)  # sorted by length inside, returned in input order
    assert together == pytest.approx(np.stack(one_by_one), abs=1e-5)


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
