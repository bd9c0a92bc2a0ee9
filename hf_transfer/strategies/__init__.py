"""Transfer strategies, registered by name: `strategy: linear_probe | finetune | lora | ia3`.

A strategy decides which parameters train and how the model is wrapped; it brings no loop of its own. Its settings
dataclass lives in `hf_transfer.config.strategies` (a leaf the schema reads without torch); the strategies here
import torch, PEFT and timm, and are built by `build_strategy` from those settings.
"""

from __future__ import annotations

from hf_transfer.config.strategies import strategy_name
from hf_transfer.strategies.finetune import Finetune
from hf_transfer.strategies.linear_probe import LinearProbe
from hf_transfer.strategies.peft_adapters import IA3, Lora

STRATEGY_CLASSES: dict[str, type] = {cls.name: cls for cls in (LinearProbe, Finetune, Lora, IA3)}


def build_strategy(config, backbone):
    """The strategy that takes `config` (a registered config dataclass), on `backbone`."""
    return STRATEGY_CLASSES[strategy_name(config)](config, backbone)


__all__ = ["STRATEGY_CLASSES", "build_strategy"]
