"""Fine-tuning's recipe settings: a leaf the schema imports (the strategy itself is in `finetune.py`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from hf_transfer.errors import RecipeError


@dataclass
class FinetuneConfig:
    """Args:
    unfreeze_last_n: train only the head and the last N blocks (transformer layers, or timm's stages/blocks);
        null trains everything.
    layer_decay: layer-wise learning-rate decay: the head learns at the full rate, each block below at
        `layer_decay` times the one above it (0.65-0.9 is usual); null turns it off.
    """

    unfreeze_last_n: int | None = field(default=None, metadata={"help": "Train only the last N blocks + head."})
    layer_decay: float | None = field(default=None, metadata={"help": "Layer-wise LR decay factor in (0, 1]."})

    def __post_init__(self):
        if self.unfreeze_last_n is not None and self.unfreeze_last_n < 0:
            raise RecipeError("strategy.unfreeze_last_n must be 0 or more (0 trains the head only).")
        if self.layer_decay is not None and not 0.0 < self.layer_decay <= 1.0:
            raise RecipeError("strategy.layer_decay must be in (0, 1].")
