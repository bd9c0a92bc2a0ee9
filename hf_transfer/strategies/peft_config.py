"""LoRA's and IA3's recipe settings: a leaf the schema imports; PEFT itself is imported by `peft_adapters.py` only."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


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
