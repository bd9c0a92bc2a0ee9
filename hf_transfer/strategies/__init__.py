"""Transfer strategies, registered by name: `strategy: linear_probe | finetune | lora | ia3`."""

from __future__ import annotations

from hf_transfer.registry import Registry

STRATEGIES: Registry[type] = Registry("strategy")


def _register_builtin() -> None:
    from hf_transfer.strategies.finetune import Finetune
    from hf_transfer.strategies.linear_probe import LinearProbe
    from hf_transfer.strategies.peft_adapters import IA3, Lora

    for cls in (LinearProbe, Finetune, Lora, IA3):
        STRATEGIES.register(cls.name)(cls)


def strategy_name(config) -> str:
    """The registered name of the strategy that takes `config`."""
    for name in STRATEGIES.names():
        if isinstance(config, STRATEGIES.get(name).config_class):
            return name
    raise TypeError(f"no strategy takes {type(config).__name__}")


def build_strategy(config, backbone):
    """The strategy whose config class `config` is an instance of."""
    for name in STRATEGIES.names():
        cls = STRATEGIES.get(name)
        if isinstance(config, cls.config_class):
            return cls(config, backbone)
    raise TypeError(f"no strategy takes {type(config).__name__}")


_register_builtin()
