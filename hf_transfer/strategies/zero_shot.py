"""Zero-shot classification from label names alone: what no training at all gets, as a baseline and in `rank`.

Each label's prompts (`zero_shot.templates` with `{label}` replaced by its name or descriptions) are embedded and
averaged into one unit vector per label, as in CLIP's prompt ensembling (Radford et al., 2021, section 3.1.4); each
input is embedded too and scored by its cosine similarity with every label:

- CLIP (`CLIPModel`): softmax of the similarities times the model's learnt logit scale;
- SigLIP (`SiglipModel`): the model's per-label sigmoid probabilities, normalised to sum to 1 so that the
  single-label metrics (log loss, ROC AUC) read them as one distribution;
- a sentence-embedding text encoder (any transformers `AutoModel` with a tokenizer, mean pooled over the unpadded
  tokens as sentence-transformers' MiniLM is): softmax of the similarities divided by `zero_shot.temperature`.

CLIP and SigLIP serve text tasks too (their text tower embeds both the inputs and the prompts).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from datasets import Dataset, DatasetDict
from tqdm.auto import tqdm

from hf_transfer.config.sections import DataConfig
from hf_transfer.config.zero_shot import ZeroShotConfig
from hf_transfer.core.errors import ModelError, RecipeError
from hf_transfer.data.splits import describe_split
from hf_transfer.problems.base import LABEL

logger = logging.getLogger(__name__)

DUAL_ENCODERS = ("clip", "siglip")  # config.model_type of the image-text models zero-shot loads whole
TEXT_ENCODER_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def label_prompts(label_names: list[str], config: ZeroShotConfig, modality: str) -> dict[str, list[str]]:
    """Each label's prompts: every template with `{label}` replaced by each of the label's descriptions (its name when
    it has none), descriptions first, templates second."""
    unknown = [name for name in config.descriptions if name not in label_names]
    if unknown:
        raise RecipeError(
            f"zero_shot.descriptions names '{unknown[0]}', which is not a label of the data; its labels are "
            f"{', '.join(label_names)}."
        )
    templates = config.templates_for(modality)
    return {
        label: [template.replace("{label}", text) for text in config.descriptions_of(label) for template in templates]
        for label in label_names
    }


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _pooled(output) -> torch.Tensor:
    """The projected embedding that `get_text_features` / `get_image_features` return (a tensor in older releases)."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class ZeroShotClassifier:
    """A zero-shot model for one modality and one data layout: loads lazily, scores Datasets of raw rows."""

    def __init__(self, config: ZeroShotConfig, modality: str, data: DataConfig, field: str = "zero_shot.checkpoint"):
        if not config.checkpoint:
            raise RecipeError(f"{field} is missing; name a CLIP or SigLIP checkpoint, or a text encoder.")
        self.config = config
        self.checkpoint = config.checkpoint
        self.modality = modality
        self.data = data
        self.field = field
        self.skipped_rows = 0

    # --- what the checkpoint is ------------------------------------------------------------------------------
    def _not_usable(self, why: str) -> ModelError:
        wanted = "a CLIP or SigLIP checkpoint" if self.modality == "image" else "a CLIP, SigLIP or text encoder"
        return ModelError(f"{self.field} '{self.checkpoint}' {why}; zero-shot {self.modality} needs {wanted}.")

    @cached_property
    def model_config(self):
        from transformers import AutoConfig

        checkpoint = self.checkpoint.removeprefix("local-dir:")
        if Path(checkpoint).exists() and not Path(checkpoint).is_dir():
            raise self._not_usable("is not a folder")
        try:
            return AutoConfig.from_pretrained(checkpoint)
        except (OSError, ValueError, KeyError) as err:
            raise self._not_usable(f"does not load as a transformers model ({_first_line(err)})") from None

    @cached_property
    def kind(self) -> str:
        """clip, siglip, or text (a text encoder, mean pooled)."""
        model_type = getattr(self.model_config, "model_type", None)
        if model_type in DUAL_ENCODERS:
            return model_type
        if self.modality == "image":
            raise self._not_usable(f"is a {model_type} model, not an image-text one")
        if hasattr(self.model_config, "vision_config") or not hasattr(self.model_config, "vocab_size"):
            raise self._not_usable(f"is a {model_type} model without a text encoder of its own")
        return "text"

    @cached_property
    def processor(self):
        """AutoProcessor for CLIP / SigLIP (tokenizer + image processor), AutoTokenizer for a text encoder."""
        from transformers import AutoProcessor, AutoTokenizer

        loader = AutoTokenizer if self.kind == "text" else AutoProcessor
        try:
            processor = loader.from_pretrained(self.checkpoint.removeprefix("local-dir:"))
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise self._not_usable(f"has no usable tokenizer or processor ({_first_line(err)})") from None
        if self.modality == "image" and getattr(processor, "image_processor", None) is None:
            raise self._not_usable("has no image processor (preprocessor_config.json) beside its tokenizer")
        return processor

    @property
    def tokenizer(self):
        # a processor holds its tokenizer; a CLIP folder without an image processor loads as the tokenizer itself
        return getattr(self.processor, "tokenizer", self.processor)

    def check(self) -> None:
        """A ModelError now, before any training, if the checkpoint cannot serve: its config, kind and processor."""
        self.processor  # noqa: B018 - a cached property: loading it is the check

    @cached_property
    def model(self) -> torch.nn.Module:
        from transformers import AutoModel

        self.check()
        try:
            model = AutoModel.from_pretrained(self.checkpoint.removeprefix("local-dir:"))
        except (OSError, ValueError, KeyError, RuntimeError) as err:
            raise self._not_usable(f"has no weights that load ({_first_line(err)})") from None
        if self.kind == "text":
            from hf_transfer.backbones.transformers_text import TextFeatureExtractor

            model = TextFeatureExtractor(model, "mean")
        return model.eval()

    # --- the rows it reads (what `rank` samples by, like a Backbone) -----------------------------------------
    def required_columns(self) -> tuple[list[str], dict[str, str]]:
        if self.modality == "image":
            return [self.data.image_column], {self.data.image_column: "data.image_column"}
        text, pair = self.data.text_column, self.data.text_pair_column
        return [text] + ([pair] if pair else []), {text: "data.text_column", pair: "data.text_pair_column"}

    def check_rows(self, raw: DatasetDict) -> DatasetDict:
        if self.modality == "image":
            from hf_transfer.data.images import check_image_splits

            checked, self.skipped_rows = check_image_splits(raw, self.data)
            return checked
        from hf_transfer.data.text import drop_empty_texts

        columns, _ = self.required_columns()
        checked, self.skipped_rows = drop_empty_texts(raw, columns, lambda role: describe_split(role, self.data))
        return checked

    # --- embeddings ---------------------------------------------------------------------------------------------
    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _max_length(self) -> int:
        limit = getattr(self.tokenizer, "model_max_length", None) or 10**6
        text_config = getattr(self.model_config, "text_config", None)
        if text_config is not None:  # CLIP / SigLIP: no more positions than the text tower has
            limit = min(limit, text_config.max_position_embeddings)
        return min(limit, self.data.max_length) if self.kind == "text" else limit

    def _embed_texts(self, texts: list[str], pairs: list[str] | None = None) -> torch.Tensor:
        # SigLIP was trained on prompts padded to its full length; its text tower pools the last position.
        padding = "max_length" if self.kind == "siglip" else True
        inputs = self.tokenizer(
            texts, pairs, padding=padding, truncation=True, max_length=self._max_length(), return_tensors="pt"
        ).to(self._device())
        if self.kind == "text":
            embedded = self.model(**{k: v for k, v in inputs.items() if k in TEXT_ENCODER_INPUTS})
        else:
            keep = ("input_ids", "attention_mask") if self.kind == "clip" else ("input_ids",)
            embedded = _pooled(self.model.get_text_features(**{k: inputs[k] for k in keep if k in inputs}))
        return F.normalize(embedded.float(), dim=-1)

    def _embed_images(self, values: list) -> torch.Tensor:
        from hf_transfer.data.images import image_dirs, load_image

        dirs = image_dirs(self.data)
        images = [load_image(value, dirs) for value in values]
        pixels = self.processor(images=images, return_tensors="pt")["pixel_values"].to(self._device())
        return F.normalize(_pooled(self.model.get_image_features(pixel_values=pixels)).float(), dim=-1)

    @torch.inference_mode()
    def label_embeddings(self, prompts: dict[str, list[str]]) -> torch.Tensor:
        """(K, D): per label, the mean of its prompts' unit embeddings, normalised again."""
        return torch.stack([F.normalize(self._embed_texts(texts).mean(0), dim=-1) for texts in prompts.values()])

    @torch.inference_mode()
    def input_embeddings(self, split: Dataset, batch_size: int = 64, desc: str = "Zero-shot") -> torch.Tensor:
        """(N, D) unit embeddings of the rows of `split`, in its order."""
        chunks = []
        for start in tqdm(range(0, len(split), batch_size), desc=desc, leave=False):
            batch = split[start : start + batch_size]
            if self.modality == "image":
                chunks.append(self._embed_images(batch[self.data.image_column]))
            else:
                pair = self.data.text_pair_column
                texts = list(batch[self.data.text_column])
                chunks.append(self._embed_texts(texts, list(batch[pair]) if pair else None))
        return torch.cat(chunks).cpu()

    @torch.inference_mode()
    def probabilities(self, inputs: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
        """(N, K) scores of unit input embeddings against unit label embeddings, rows summing to 1."""
        similarity = inputs @ labels.T
        if self.kind == "text":
            return torch.softmax(similarity / self.config.temperature, dim=-1).numpy()
        scale = self.model.logit_scale.detach().float().exp().cpu()
        if self.kind == "clip":
            return torch.softmax(similarity * scale, dim=-1).numpy()
        sigmoid = torch.sigmoid(similarity * scale + self.model.logit_bias.detach().float().cpu())
        return (sigmoid / sigmoid.sum(-1, keepdim=True)).numpy()

    def predict_proba(
        self, splits: dict[str, Dataset], label_names: list[str], batch_size: int
    ) -> dict[str, np.ndarray]:
        """Each split's (N, K) scores, the label embeddings computed once."""
        labels = self.label_embeddings(label_prompts(label_names, self.config, self.modality)).cpu()
        return {
            name: self.probabilities(self.input_embeddings(split, batch_size, f"Zero-shot {name}"), labels)
            for name, split in splits.items()
        }

    def describe(self, label_names: list[str]) -> dict:
        """What the run folder records: the checkpoint, its kind, the templates and every label's prompts."""
        record = {
            "checkpoint": self.checkpoint,
            "kind": self.kind,
            "templates": self.config.templates_for(self.modality),
            "descriptions": dict(self.config.descriptions),
            "prompts": label_prompts(label_names, self.config, self.modality),
        }
        if self.kind == "text":
            record["temperature"] = self.config.temperature
        return record


@dataclass
class ZeroShotStage:
    """The zero-shot baseline's part of a run: what a trained stage reports (its `result`), nothing trained."""

    name: str
    result: object  # hf_transfer.train.plan.LoopResult
    seconds: float
    record: dict


def zero_shot_stage(
    classifier: ZeroShotClassifier, splits: dict[str, Dataset], label_names: list[str], batch_size: int, device
) -> ZeroShotStage:
    """The zero-shot baseline on the target's own evaluation rows (`splits`: validation, test), scored alike."""
    from hf_transfer.metrics.classification import classification_metrics
    from hf_transfer.train.plan import LoopResult

    start = time.perf_counter()
    classifier.model.to(device)
    probs = classifier.predict_proba(splits, label_names, batch_size)
    final, predictions = {}, {}
    for name, split in splits.items():
        labels = np.asarray(split[LABEL])
        final[name] = classification_metrics(labels, probs[name], label_names)
        predictions[name] = {"labels": labels, "probs": probs[name]}
        logger.info("zero-shot %s: accuracy %.4f", name, final[name]["accuracy"])
    result = LoopResult(
        history=[],
        best_epoch=0,
        best_value=None,
        final=final,
        stopped_early=False,
        global_step=0,
        predictions=predictions,
    )
    return ZeroShotStage("baseline-zero_shot", result, time.perf_counter() - start, classifier.describe(label_names))
