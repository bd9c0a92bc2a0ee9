"""Device-side choices that make a step faster without changing its outputs: channels-last memory for
convolutions on CUDA, attention through scaled_dot_product_attention."""

from __future__ import annotations

import timm
import torch
from transformers import AutoModelForSequenceClassification

from hf_transfer.backbones import build_backbone
from hf_transfer.core.accelerator import wants_channels_last


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


def test_attention_runs_through_sdpa_where_the_model_offers_it(tiny_bert_dir):
    from hf_transfer.config.sections import ModelConfig

    text = build_backbone(ModelConfig(checkpoint=str(tiny_bert_dir)), None, "text").build_classifier(["a", "b"])
    assert text.config._attn_implementation == "sdpa"
    vit = timm.create_model("test_vit", num_classes=2)
    assert all(block.attn.fused_attn for block in vit.blocks)  # F.scaled_dot_product_attention
