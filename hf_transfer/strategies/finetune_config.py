"""Fine-tuning's recipe settings: a leaf the schema imports (the strategy itself is in `finetune.py`)."""

from __future__ import annotations

from dataclasses import dataclass, field


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
