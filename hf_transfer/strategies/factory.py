"""Builds a strategy from its registered settings: the strategies by name, each deciding which parameters train
and how the model is wrapped (none brings a loop of its own)."""

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
