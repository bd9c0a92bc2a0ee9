"""Each strategy's recipe settings, registered by name (`strategy: linear_probe | finetune | lora | ia3`).

A leaf, as PEFT keeps `config.py` apart from `model.py`: the schema checks a strategy's settings without loading
torch, PEFT or timm; the strategies themselves (in `hf_transfer.strategies`) import these and register beside them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from hf_transfer.core.registry import Registry

STRATEGY_CONFIGS: Registry[type] = Registry("strategy")


@STRATEGY_CONFIGS.register("finetune")
@dataclass
class FinetuneConfig:
    """Args:
    unfreeze_last_n: train only the head and the last N blocks (transformer layers, or timm's stages/blocks);
        null trains everything.
    layer_decay: layer-wise learning-rate decay: the head learns at the full rate, each block below at
        `layer_decay` times the one above it (0.65-0.9 is usual); null turns it off.
    """

    unfreeze_last_n: int | None = field(
        default=None, metadata={"range": "[0, inf)", "help": "Train only the last N blocks + head."}
    )
    layer_decay: float | None = field(
        default=None, metadata={"range": "(0, 1]", "help": "Layer-wise LR decay factor in (0, 1]."}
    )


@STRATEGY_CONFIGS.register("linear_probe")
@dataclass
class LinearProbeConfig:
    """Args:
    pooling: how token/patch features become one vector: `mean` (sentence-transformers checkpoints such as
        MiniLM have no trained pooler and want it) or `cls` (the first token; for timm, the model's own pooling).
        transformers image models also take `pooler` (the model's pooled output: CLIP's and DINOv2's normalised
        class token, SigLIP's attention head, a CNN's global average), `cls+mean` (the class token and the mean
        of the patch tokens concatenated, as DINOv2's linear evaluation does) and `projection` (CLIP's image
        embedding).
    head: `linear`, or `mlp` (one hidden layer of `hidden_size`).
    smote: add synthetic train rows to the smaller classes (SMOTE, from imbalanced-learn) until every class has as
        many as the largest; only the train features are resampled, never validation or test.
    """

    pooling: Literal["mean", "cls", "pooler", "cls+mean", "projection"] = field(
        default="mean", metadata={"help": "Pooling of features: mean, cls, pooler, cls+mean or projection."}
    )
    head: Literal["linear", "mlp"] = field(default="linear", metadata={"help": "linear or mlp head."})
    hidden_size: int = field(default=256, metadata={"range": "[1, inf)", "help": "Hidden units of the mlp head."})
    dropout: float = field(default=0.0, metadata={"range": "[0, 1)", "help": "Dropout before the head's layers."})
    extract_batch_size: int | Literal["auto"] = field(
        default="auto",
        metadata={
            "range": "[1, inf)",
            "help": "Batch size of the one feature-extraction pass. auto: on a GPU the largest that fits, "
            "halving from 1024 on running out of memory; 64 on a CPU.",
        },
    )
    smote: bool = field(default=False, metadata={"help": "Oversample the smaller classes' train features with SMOTE."})


@STRATEGY_CONFIGS.register("lora")
@dataclass
class LoraStrategyConfig:
    """Args:
    r, alpha, dropout: LoRA rank, scaling numerator and dropout (PEFT's `r`, `lora_alpha`, `lora_dropout`).
    target_modules: module names to adapt; null picks the architecture's defaults (BERT: query, value;
        ViT: qkv, attn.proj, mlp.fc1, mlp.fc2).
    use_dora: weight-decomposed LoRA (DoRA).
    towers: for multimodal-classification, adapt the image tower, the text tower or both; target_modules then
        match within the chosen towers only (a name may also be given whole, e.g. `text.encoder.encoder.layer.0.
        attention.self.query`).
    """

    r: int = field(default=8, metadata={"range": "[1, inf)", "help": "LoRA rank."})
    alpha: int = field(default=16, metadata={"range": "[1, inf)", "help": "LoRA alpha (scaling = alpha / r)."})
    dropout: float = field(default=0.1, metadata={"range": "[0, 1)", "help": "Dropout on the LoRA path."})
    target_modules: list[str] | None = field(default=None, metadata={"help": "Modules to adapt (default per arch)."})
    use_dora: bool = field(default=False, metadata={"help": "Use DoRA instead of plain LoRA."})
    towers: Literal["both", "image", "text"] = field(
        default="both", metadata={"help": "Multimodal: which tower's modules get adapters (the head always trains)."}
    )


@STRATEGY_CONFIGS.register("ia3")
@dataclass
class IA3StrategyConfig:
    """Args:
    target_modules / feedforward_modules: PEFT's IA3 settings; null picks defaults per architecture.
    """

    target_modules: list[str] | None = field(default=None, metadata={"help": "Modules IA3 rescales."})
    feedforward_modules: list[str] | None = field(default=None, metadata={"help": "The feed-forward subset."})
    towers: Literal["both", "image", "text"] = field(
        default="both", metadata={"help": "Multimodal: which tower's modules get adapters (the head always trains)."}
    )


def strategy_name(config) -> str:
    """The registered name of the strategy that takes `config`."""
    for name in STRATEGY_CONFIGS.names():
        if isinstance(config, STRATEGY_CONFIGS.get(name)):
            return name
    raise TypeError(f"no strategy takes {type(config).__name__}")
