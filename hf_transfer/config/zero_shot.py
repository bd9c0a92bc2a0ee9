"""The `zero_shot` section: the classifier behind `baseline: [zero_shot]` and `hf-transfer rank --zero-shot`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hf_transfer.core.errors import RecipeError

DEFAULT_ZERO_SHOT_TEMPLATES = {"image": ["a photo of a {label}."], "text": ["{label}"]}
"""The prompts a zero-shot baseline uses when `zero_shot.templates` is left out, per modality."""
ZERO_SHOT_TEMPERATURE = 0.05


@dataclass
class ZeroShotConfig:
    """The zero-shot classifier behind `baseline: [zero_shot]` and `hf-transfer rank --zero-shot`: no training, each
    label's prompts are embedded and every input goes to the label whose prompts it is most similar to.

    Args:
    checkpoint: a CLIP or SigLIP checkpoint (images or texts), or a sentence-embedding text encoder (texts, mean
        pooled); default the recipe's model.checkpoint.
    templates: prompts in which `{label}` is replaced by the label's name, or by each of its descriptions; nothing
        else in a template is special. Several are averaged (the mean of the normalised embeddings, normalised
        again, as in CLIP's paper). Default `a photo of a {label}.` for images, `{label}` for texts.
    descriptions: label name -> a text, or a list of texts, put in the templates instead of the name.
    temperature: texts only: the scores are softmax(cosine similarity / temperature); CLIP uses its learnt logit
        scale, SigLIP its sigmoid scores normalised to sum to 1.
    """

    checkpoint: str | None = field(
        default=None,
        metadata={"help": "CLIP / SigLIP checkpoint, or a sentence-embedding text encoder; default model.checkpoint."},
    )
    templates: list[str] | None = field(
        default=None,
        metadata={
            "help": "Prompts with {label} in them, averaged when several (default 'a photo of a {label}.' for "
            "images, '{label}' for texts)."
        },
    )
    descriptions: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "Label name -> text or list of texts that replace the name in the templates."},
    )
    temperature: float = field(
        default=ZERO_SHOT_TEMPERATURE,
        metadata={"range": "(0, inf)", "help": "Text encoders: scores are softmax(cosine / temperature)."},
    )

    def __post_init__(self):
        if self.templates is not None:
            if not self.templates:
                raise RecipeError(
                    "zero_shot.templates is an empty list; give at least one prompt such as 'a photo of a {label}.' "
                    "or leave the key out for the default."
                )
            for i, template in enumerate(self.templates):
                if not template.strip():
                    raise RecipeError(
                        f"zero_shot.templates[{i}] is empty; write a prompt with {{label}} in it, "
                        "e.g. 'a photo of a {label}.'."
                    )
                if "{label}" not in template:
                    raise RecipeError(
                        f"zero_shot.templates[{i}] '{template}' has no {{label}}; put {{label}} where the label's "
                        "name (or description) goes."
                    )
        for label, texts in self.descriptions.items():
            texts = [texts] if isinstance(texts, str) else texts
            if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t.strip() for t in texts):
                raise RecipeError(
                    f"zero_shot.descriptions.{label} must be a non-empty text or a list of non-empty texts, "
                    f"not {self.descriptions[label]!r}."
                )

    def templates_for(self, modality: str) -> list[str]:
        return list(self.templates) if self.templates is not None else list(DEFAULT_ZERO_SHOT_TEMPLATES[modality])

    def descriptions_of(self, label: str) -> list[str]:
        """What stands for `label` in the templates: its descriptions, or its name when it has none."""
        texts = self.descriptions.get(label, label)
        return [texts] if isinstance(texts, str) else list(texts)
