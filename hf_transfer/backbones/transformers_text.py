"""Text backbones from transformers: any checkpoint AutoModelForSequenceClassification loads (BERT family first), and
the text tower of a CLIP / SigLIP checkpoint (`CLIPTextModel`, `SiglipTextModel`), which transformers gives no
sequence-classification head: there a linear head on the tower's pooled output (or CLIP's text projection) is the
classifier, saved as safetensors in the run folder."""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable
from functools import cached_property
from pathlib import Path

import torch
import transformers
from datasets import Dataset
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
)

from hf_transfer.backbones.base import Backbone, label_config_kwargs
from hf_transfer.core.errors import ModelError, RecipeError
from hf_transfer.data.modalities.text import TEXT
from hf_transfer.problems import ProblemType
from hf_transfer.problems.base import LABEL

logger = logging.getLogger(__name__)

# Attention projections LoRA adapts by default, per architecture (the PEFT defaults for BERT: query and value).
LORA_TARGETS = {
    "bert": ["query", "value"],
    "roberta": ["query", "value"],
    "xlm-roberta": ["query", "value"],
    "electra": ["query", "value"],
    "camembert": ["query", "value"],
    "distilbert": ["q_lin", "v_lin"],
    "deberta": ["in_proj"],
    "deberta-v2": ["query_proj", "value_proj"],
    "albert": ["query", "value"],
    "mpnet": ["q", "v"],
    "modernbert": ["Wqkv"],
    "clip": ["q_proj", "v_proj"],
    "clip_text_model": ["q_proj", "v_proj"],
    "siglip": ["q_proj", "v_proj"],
    "siglip_text_model": ["q_proj", "v_proj"],
}
# Dual encoders (and their text configs) whose text tower serves text tasks: model_type -> (tower, tower with
# projection).
TEXT_TOWERS = {
    "clip": ("CLIPTextModel", "CLIPTextModelWithProjection"),
    "clip_text_model": ("CLIPTextModel", "CLIPTextModelWithProjection"),
    "siglip": ("SiglipTextModel", None),
    "siglip_text_model": ("SiglipTextModel", None),
}
TOWER_WEIGHTS_FILE = "model.safetensors"
TOWER_CONFIG_FILE = "text_tower.json"


def _load_error(checkpoint: str, err: Exception) -> ModelError:
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return ModelError(
        f"model.checkpoint '{checkpoint}' could not be loaded as a transformers model ({first}); "
        "give a local folder with config.json or a Hub id that exists (and is cached when offline)."
    )


class TextFeatureExtractor(nn.Module):
    """Encoder + pooling: `cls` takes the first token, `mean` averages the unpadded tokens."""

    def __init__(self, encoder: nn.Module, pooling: str):
        super().__init__()
        self.encoder = encoder
        self.pooling = pooling

    def forward(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


class TowerFeatureExtractor(TextFeatureExtractor):
    """A CLIP / SigLIP text tower + pooling: `pooler` is the tower's own pooled output (CLIP: the end-of-text token,
    SigLIP: the last position through its head), `projection` CLIP's text embedding, `cls` / `mean` as for any encoder.
    SigLIP reads no attention mask: it was trained on texts padded to full length (see `prepare`)."""

    def forward(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        if self.pooling in ("cls", "mean"):
            return super().forward(input_ids, attention_mask)
        mask = None if "siglip" in self.encoder.config.model_type else attention_mask
        out = self.encoder(input_ids=input_ids, attention_mask=mask)
        return out.text_embeds if self.pooling == "projection" else out.pooler_output


class TowerClassifier(nn.Module):
    """A text tower's pooled features -> a linear `classifier`; `forward(input_ids, attention_mask)` gives logits."""

    def __init__(self, features: TowerFeatureExtractor, width: int, num_labels: int):
        super().__init__()
        self.features = features
        self.classifier = nn.Linear(width, num_labels)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None) -> torch.Tensor:
        return self.classifier(self.features(input_ids, attention_mask))


class TransformersTextBackbone(Backbone):
    modality = TEXT
    library = "transformers"

    @property
    def is_tower(self) -> bool:
        """Whether the checkpoint is a CLIP / SigLIP (text tower) rather than a text encoder of its own."""
        return getattr(self.config, "model_type", "") in TEXT_TOWERS

    @property
    def peft_task_type(self) -> str | None:
        return None if self.is_tower else "SEQ_CLS"  # the tower's classifier is a plain nn.Module to PEFT

    @property
    def poolings(self) -> tuple[str, ...]:
        if not self.is_tower:
            return ("mean", "cls")
        return ("mean", "cls", "pooler") + (("projection",) if TEXT_TOWERS[self.config.model_type][1] else ())

    @property
    def classifier_pooling(self) -> str:
        """How the fine-tuned classifier pools: the tower's own pooled output, which CLIP / SigLIP trained."""
        return "pooler" if self.is_tower else "mean"

    def describe(self) -> dict:
        out = super().describe()
        if self.is_tower:  # its classifier is hf-transfer's own head: the card offers no plain-transformers snippet
            out["text_tower"] = self.config.model_type
        return out

    @property
    def text_config(self):
        """The text tower's own config (a dual encoder nests it)."""
        return getattr(self.config, "text_config", None) or self.config

    def _common_kwargs(self) -> dict:
        return {"revision": self.model_cfg.revision, "trust_remote_code": self.model_cfg.trust_remote_code}

    @cached_property
    def config(self):
        checkpoint = self.checkpoint
        if (checkpoint.startswith((".", "/")) or Path(checkpoint).exists()) and not Path(checkpoint).is_dir():
            raise ModelError(f"model.checkpoint '{checkpoint}' is not a folder; give a folder with config.json.")
        try:
            return AutoConfig.from_pretrained(checkpoint, **self._common_kwargs())
        except (OSError, ValueError, KeyError) as err:
            raise _load_error(checkpoint, err) from None

    def check_loadable(self) -> None:
        """The config must be a text model's (a vision model has no vocabulary), and the tokenizer must load."""
        if not hasattr(self.text_config, "vocab_size"):
            raise ModelError(
                f"model.checkpoint '{self.checkpoint}' is a {self.text_config.model_type} model without a "
                "vocabulary, not a text model; give a text checkpoint (e.g. a BERT or MiniLM folder)."
            )
        self.tokenizer  # noqa: B018 - a cached property: loading it is the check

    @cached_property
    def tokenizer(self):
        self.config  # noqa: B018 - a clear error for a bad checkpoint before the tokenizer's
        try:
            return AutoTokenizer.from_pretrained(self.preprocessing_source or self.checkpoint, **self._common_kwargs())
        except (OSError, ValueError, KeyError) as err:
            raise _load_error(self.checkpoint, err) from None

    @property
    def base_model_id(self) -> str | None:
        if self.model_cfg.hub_id:
            return self.model_cfg.hub_id
        return None if Path(self.checkpoint).exists() else self.checkpoint

    # --- models ---------------------------------------------------------------------------------------------
    def build_classifier(self, label_names: list[str], problem: ProblemType | None = None) -> nn.Module:
        if self.is_tower:
            features = self.build_feature_extractor(self.classifier_pooling).train().requires_grad_(True)
            width = self.text_config.hidden_size
            return TowerClassifier(features, width, len(label_names))
        kwargs = label_config_kwargs(label_names, problem) | self._common_kwargs()
        try:
            if not self.model_cfg.pretrained:
                config = AutoConfig.from_pretrained(self.checkpoint, **kwargs)
                return AutoModelForSequenceClassification.from_config(
                    config, trust_remote_code=self.model_cfg.trust_remote_code
                )
            # A classification checkpoint (e.g. a source stage's) gets its head replaced for these labels.
            model = AutoModelForSequenceClassification.from_pretrained(
                self.checkpoint, use_safetensors=True, ignore_mismatched_sizes=True, **kwargs
            )
        except (OSError, ValueError) as err:
            raise _load_error(self.checkpoint, err) from None
        if self.new_head:
            self.reset_head(model)
        return model

    def _tower_encoder(self, pooling: str) -> nn.Module:
        model_type = self.config.model_type
        plain, projected = TEXT_TOWERS[model_type]
        if pooling not in self.poolings:
            raise RecipeError(
                f"strategy.pooling '{pooling}' is not one that the {model_type} text tower takes; choose one of "
                f"{', '.join(self.poolings)}."
            )
        model_class = getattr(transformers, projected if pooling == "projection" else plain)
        tower = copy.deepcopy(self.text_config)
        if pooling == "projection":  # the projection's width is the dual encoder's, not the tower's
            tower.projection_dim = getattr(self.config, "projection_dim", tower.projection_dim)
        try:
            if self.model_cfg.pretrained:
                return model_class.from_pretrained(
                    self.checkpoint, config=tower, use_safetensors=True, **self._common_kwargs()
                )
            return model_class(tower)
        except (OSError, ValueError) as err:
            raise _load_error(self.checkpoint, err) from None

    def build_feature_extractor(self, pooling: str) -> nn.Module:
        if self.is_tower:
            return TowerFeatureExtractor(self._tower_encoder(pooling), pooling).eval().requires_grad_(False)
        try:
            if self.model_cfg.pretrained:
                encoder = AutoModel.from_pretrained(self.checkpoint, use_safetensors=True, **self._common_kwargs())
            else:
                encoder = AutoModel.from_config(self.config, trust_remote_code=self.model_cfg.trust_remote_code)
        except (OSError, ValueError) as err:
            raise _load_error(self.checkpoint, err) from None
        return TextFeatureExtractor(encoder, pooling).eval().requires_grad_(False)

    def _blocks(self, model: nn.Module) -> tuple[str, int]:
        """The dotted name of the transformer-layer list and its length (the longest ModuleList)."""
        best = ("", 0)
        for name, module in model.named_modules():
            if isinstance(module, nn.ModuleList) and len(module) > best[1]:
                best = (name, len(module))
        if not best[0]:
            raise ModelError(f"model.checkpoint '{self.checkpoint}' has no list of layers to unfreeze or decay.")
        return best

    def layer_groups(self, model: nn.Module) -> list[list[str]]:
        blocks, n = self._blocks(model)
        groups: list[list[str]] = [[] for _ in range(n + 2)]
        seen_blocks = False
        for name, _ in model.named_parameters():
            if name.startswith(blocks + "."):
                index = int(name[len(blocks) + 1 :].split(".")[0])
                groups[index + 1].append(name)
                seen_blocks = True
            elif not seen_blocks:
                groups[0].append(name)  # embeddings
            else:
                groups[-1].append(name)  # pooler, final norm, classifier
        return groups

    def default_lora_targets(self, model: nn.Module) -> list[str]:
        model_type = getattr(self.config, "model_type", "")
        if model_type in LORA_TARGETS:
            return LORA_TARGETS[model_type]
        try:
            from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as peft_defaults
        except ImportError:  # pragma: no cover - older/newer PEFT layouts
            peft_defaults = {}
        if model_type in peft_defaults:
            return list(peft_defaults[model_type])
        raise RecipeError(
            f"no default LoRA targets for model type '{model_type}'; set strategy.target_modules "
            "(e.g. [query, value])."
        )

    def default_ia3_targets(self, model: nn.Module) -> dict[str, list[str]]:
        from peft.utils.constants import (
            TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING as feedforward,
        )
        from peft.utils.constants import TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING as targets

        model_type = getattr(self.config, "model_type", "")
        if self.is_tower:  # as for their image towers: the keys, values and the MLP output (scaled on its input)
            return {"target_modules": ["k_proj", "v_proj", "fc2"], "feedforward_modules": ["fc2"]}
        if model_type not in targets:
            raise RecipeError(
                f"no default IA3 targets for model type '{model_type}'; set strategy.target_modules and "
                "strategy.feedforward_modules."
            )
        return {"target_modules": list(targets[model_type]), "feedforward_modules": list(feedforward[model_type])}

    def save_classifier(self, model: nn.Module, out_dir: Path) -> list[str]:
        if self.is_tower:
            state = {k: v.contiguous() for k, v in model.state_dict().items()}
            save_file(state, str(Path(out_dir) / TOWER_WEIGHTS_FILE))
            (Path(out_dir) / TOWER_CONFIG_FILE).write_text(
                json.dumps({"pooling": self.classifier_pooling}, indent=2) + "\n", encoding="utf-8"
            )
            return [TOWER_WEIGHTS_FILE, TOWER_CONFIG_FILE]
        model.save_pretrained(out_dir, safe_serialization=True)
        return ["config.json", "model.safetensors"]

    def load_classifier(self, run_dir: Path, label_names: list[str]) -> nn.Module:
        if self.is_tower:
            path = Path(run_dir) / TOWER_WEIGHTS_FILE
            if not path.is_file():
                raise ModelError(f"run folder '{run_dir}' lacks {TOWER_WEIGHTS_FILE}; train the run again.")
            model = self.build_classifier(label_names)
            state = load_file(str(path))
            head = state.get("classifier.weight")
            if head is None or head.shape[0] != len(label_names):
                raise ModelError(
                    f"run folder '{run_dir}' holds a model for other labels than its {len(label_names)}; it is "
                    "damaged or from another run."
                )
            model.load_state_dict(state)
            return model
        model = AutoModelForSequenceClassification.from_pretrained(
            run_dir, use_safetensors=True, trust_remote_code=self.model_cfg.trust_remote_code
        )
        if model.config.num_labels != len(label_names):
            raise ModelError(
                f"run folder '{run_dir}' holds a model for {model.config.num_labels} labels, "
                f"not {len(label_names)}; it is damaged or from another run."
            )
        return model

    def head_module_names(self, model: nn.Module) -> list[str]:
        if self.is_tower:
            return ["classifier"]
        prefix = getattr(model, "base_model_prefix", "")
        names = [n for n, _ in model.named_children() if n != prefix and n not in ("dropout",)]
        # The pooler of a sentence-transformers checkpoint was never trained for classification: train it too.
        base = getattr(model, prefix, None)
        if base is not None and getattr(base, "pooler", None) is not None:
            names.append("pooler")
        return names

    def preprocessing_signature(self) -> dict:
        cfg = self.data_cfg
        return {"text": cfg.text_column, "pair": cfg.text_pair_column, "max_length": cfg.max_length}

    # --- data -----------------------------------------------------------------------------------------------
    def prepare(self, split: Dataset, train: bool) -> Dataset:
        tokenizer = self.tokenizer
        text, pair = self.data_cfg.text_column, self.data_cfg.text_pair_column
        max_length = min(self.data_cfg.max_length, getattr(tokenizer, "model_max_length", 10**6) or 10**6)
        padding: bool | str = False
        if self.is_tower:  # no more positions than the tower has; SigLIP pools the last one, so pad to full length
            max_length = min(max_length, self.text_config.max_position_embeddings)
            padding = "max_length" if "siglip" in self.config.model_type else False

        def tokenize(batch):
            first = [t if isinstance(t, str) else "" for t in batch[text]]
            second = [t if isinstance(t, str) else "" for t in batch[pair]] if pair else None
            return tokenizer(first, second, truncation=True, max_length=max_length, padding=padding)

        keep = {LABEL}
        # datasets caches this map on disk by fingerprint: a second run does not tokenise again.
        return split.map(
            tokenize,
            batched=True,
            remove_columns=[c for c in split.column_names if c not in keep],
            desc="Tokenising",
        )

    def collate_fn(self) -> Callable:
        return DataCollatorWithPadding(self.tokenizer, pad_to_multiple_of=None, return_tensors="pt")

    def lengths(self, prepared: Dataset) -> list[int] | None:
        return [len(ids) for ids in prepared["input_ids"]]

    def save_preprocessing(self, out_dir: Path, label_names: list[str] | None = None) -> None:
        self.tokenizer.save_pretrained(out_dir)
