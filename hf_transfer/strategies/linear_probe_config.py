"""The linear probe's recipe settings: a leaf the schema imports (the probe itself is in `linear_probe.py`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


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
