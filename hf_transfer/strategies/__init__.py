"""Transfer strategies, registered by name: `strategy: linear_probe | finetune | lora | ia3`.

Two tables, as PEFT keeps `config.py` apart from `model.py`: `STRATEGY_CONFIGS` maps each name to its settings
dataclass and imports nothing heavy, so the recipe schema checks a strategy without loading torch; the strategies
themselves (torch, PEFT, timm) are imported only in `build_strategy`, where one is built.
"""

from __future__ import annotations

from hf_transfer.registry import Registry
from hf_transfer.strategies.finetune_config import FinetuneConfig
from hf_transfer.strategies.linear_probe_config import LinearProbeConfig
from hf_transfer.strategies.peft_config import IA3StrategyConfig, LoraStrategyConfig

STRATEGY_CONFIGS: Registry[type] = Registry("strategy")
STRATEGY_CONFIGS.register("linear_probe")(LinearProbeConfig)
STRATEGY_CONFIGS.register("finetune")(FinetuneConfig)
STRATEGY_CONFIGS.register("lora")(LoraStrategyConfig)
STRATEGY_CONFIGS.register("ia3")(IA3StrategyConfig)


def strategy_name(config) -> str:
    """The registered name of the strategy that takes `config`."""
    for name in STRATEGY_CONFIGS.names():
        if isinstance(config, STRATEGY_CONFIGS.get(name)):
            return name
    raise TypeError(f"no strategy takes {type(config).__name__}")


def strategy_classes() -> dict[str, type]:
    """Name -> Strategy class. Imports torch and PEFT: call it only where a strategy is built."""
    from hf_transfer.strategies.finetune import Finetune
    from hf_transfer.strategies.linear_probe import LinearProbe
    from hf_transfer.strategies.peft_adapters import IA3, Lora

    return {cls.name: cls for cls in (LinearProbe, Finetune, Lora, IA3)}


def build_strategy(config, backbone):
    """The strategy that takes `config` (a registered config dataclass), on `backbone`."""
    return strategy_classes()[strategy_name(config)](config, backbone)


__all__ = [
    "STRATEGY_CONFIGS",
    "FinetuneConfig",
    "IA3StrategyConfig",
    "LinearProbeConfig",
    "LoraStrategyConfig",
    "build_strategy",
    "strategy_classes",
    "strategy_name",
]
