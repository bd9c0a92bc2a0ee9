"""The surface every backbone offers, so strategies and the loop never ask which library or modality it is."""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

from datasets import Dataset, DatasetDict
from torch import nn

from hf_transfer.config.sections import DataConfig, ModelConfig
from hf_transfer.core.errors import HfTransferError
from hf_transfer.data.modalities import Modality
from hf_transfer.problems import ProblemType, default_problem_type


def label_config_kwargs(label_names: list[str], problem: ProblemType | None) -> dict:
    """A transformers classifier config's label keys, as `problem` (default: `default_problem_type`) records them."""
    return (problem or default_problem_type()).label_config_kwargs(label_names)


class Backbone(ABC):
    """A pretrained checkpoint and everything that depends on which one it is.

    Subclasses: `TransformersTextBackbone`, `TimmImageBackbone` and `TransformersImageBackbone` (both an
    `ImageBackbone`), `MultimodalBackbone`. A backbone builds the classifier for the user's labels, the frozen feature
    extractor, the dataset preprocessing and collator, and knows the model's layer structure (for unfreezing the last
    N blocks, layer-wise LR decay and LoRA targets). Which columns it reads, and how rows are checked, its input kind
    (`modality`) says.
    """

    modality: Modality  # the input kind it reads (`hf_transfer.data.modalities`)
    library: str
    # The linear probe's `strategy.pooling` values this backbone's feature extractor takes.
    poolings: tuple[str, ...] = ("mean", "cls")

    def __init__(
        self,
        model_cfg: ModelConfig,
        data_cfg: DataConfig | None = None,
        *,
        preprocessing_source: str | None = None,
        new_head: bool = False,
    ):
        self.model_cfg = model_cfg
        self.data_cfg = data_cfg or DataConfig()  # the default columns and preprocessing
        # Where the tokenizer / image preprocessing is read from: the checkpoint, or a run folder that saved it.
        self.preprocessing_source = preprocessing_source
        # A target stage built on a source stage's classifier: its head starts afresh even for as many labels.
        self.new_head = new_head
        # Rows `check_rows` dropped, per split (files that are not images, with data.skip_bad_images).
        self.skipped_rows: dict[str, int] = {}

    # --- identity -------------------------------------------------------------------------------------------
    @property
    def checkpoint(self) -> str:
        return self.model_cfg.checkpoint

    @property
    def base_model_id(self) -> str | None:
        """The checkpoint's Hub id when known (recorded as base_model on the card), else None."""
        return self.model_cfg.hub_id

    def identity(self) -> str:
        """A stable string that changes when the weights change: part of the feature-cache key."""
        path = Path(self.checkpoint.removeprefix("local-dir:"))
        parts = [self.library, self.checkpoint, str(self.model_cfg.revision), str(self.model_cfg.pretrained)]
        if path.is_dir():
            for f in sorted(path.iterdir()):
                if f.is_file():
                    stat = f.stat()
                    parts.append(f"{f.name}:{stat.st_size}:{stat.st_mtime_ns}")
        else:
            parts.append(self._cached_hub_commit())
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]

    def _cached_hub_commit(self) -> str | None:
        """The commit of the Hub snapshot the checkpoint loads from (its folder's name in the Hub cache), so that a
        new download of the same id and revision (tokenizer files included) is another identity; None if unknown."""
        from huggingface_hub import try_to_load_from_cache

        try:
            repo_id = self.base_model_id
            if not repo_id:
                return None
            cached = try_to_load_from_cache(repo_id, "config.json", revision=self.model_cfg.revision)
        except (ValueError, HfTransferError):  # an id huggingface_hub does not accept: nothing cached under it
            return None
        return Path(cached).parent.name if isinstance(cached, str) else None

    @abstractmethod
    def check_loadable(self) -> None:
        """A ModelError now if the checkpoint cannot serve: reads its config and preprocessing (the tokenizer, or the
        image preprocessing), which the run needs anyway, without loading the weights."""

    def input_files_signature(self, split: Dataset) -> str | None:
        """A digest of the files `split`'s rows point to and the model reads (image files), or None where every
        input is in the rows themselves (part of the feature-cache key: the split's fingerprint covers only rows)."""
        return None

    @abstractmethod
    def preprocessing_signature(self) -> dict:
        """The preprocessing settings that change extracted features (part of the feature-cache key)."""

    # --- models ---------------------------------------------------------------------------------------------
    @abstractmethod
    def build_classifier(self, label_names: list[str], problem: ProblemType | None = None) -> nn.Module:
        """The pretrained network with a new head of one output per name of `label_names` (classes, labels or
        regression targets); forward(**batch) gives logits. The problem type (default: `default_problem_type`) is
        recorded where the library has a place for it (a transformers config), so the saved model scores the same
        way outside hf-transfer."""

    @abstractmethod
    def build_feature_extractor(self, pooling: str) -> nn.Module:
        """The frozen network without head; forward(**batch) gives pooled features (batch, dim)."""

    @abstractmethod
    def layer_groups(self, model: nn.Module) -> list[list[str]]:
        """Parameter names from input to output: [stem/embeddings, block 1, ..., block N, head (+ final norm)]."""

    @abstractmethod
    def default_lora_targets(self, model: nn.Module) -> list[str]:
        """Module names LoRA adapts when the recipe names none."""

    peft_task_type: str | None = None  # PEFT's TaskType for this kind of classifier, if it has one

    @abstractmethod
    def default_ia3_targets(self, model: nn.Module) -> dict[str, list[str]]:
        """{"target_modules": [...], "feedforward_modules": [...]} for IA3 when the recipe names none."""

    def checkpoint_for_folder(self, folder: Path) -> str:
        """How `model.checkpoint` names a folder written by `save_classifier` (e.g. timm's `local-dir:` prefix)."""
        return str(folder)

    @abstractmethod
    def save_classifier(self, model: nn.Module, out_dir: Path) -> list[str]:
        """Write a fine-tuned classifier in its library's own format (safetensors); returns the files written."""

    @abstractmethod
    def load_classifier(self, run_dir: Path, label_names: list[str]) -> nn.Module:
        """A fine-tuned classifier written by `save_classifier`."""

    def reset_head(self, model: nn.Module) -> None:
        """Re-initialise the classification layer, so a classifier checkpoint (a source stage's) starts the target
        task with a new head even when both tasks have the same number of labels."""
        head = model.get_submodule(self.head_module_names(model)[0])
        for module in head.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()

    @abstractmethod
    def head_module_names(self, model: nn.Module) -> list[str]:
        """Modules of the classifier that are new for the user's labels (trained and saved with adapters)."""

    # --- data -----------------------------------------------------------------------------------------------
    def check_rows(self, raw: DatasetDict) -> DatasetDict:
        """The raw splits with rows the model cannot read reported (an error naming the row), or dropped and
        counted in `skipped_rows` (empty texts always, images that do not decode with data.skip_bad_images)."""
        checked, self.skipped_rows = self.modality.check_rows(raw, self.data_cfg)
        return checked

    @abstractmethod
    def prepare(self, split: Dataset, train: bool) -> Dataset:
        """`split` turned into model inputs + `labels` (tokenised, or with the image transform attached)."""

    @abstractmethod
    def collate_fn(self) -> Callable:
        """Builds a batch of tensors from prepared rows."""

    def lengths(self, prepared: Dataset) -> list[int] | None:
        """Per-row sequence length for length-grouped batching; None where all rows cost the same."""
        return None

    def required_columns(self) -> tuple[list[str], dict[str, str]]:
        """Columns the raw data must hold, and the recipe field that names each."""
        return self.modality.required_columns(self.data_cfg)

    # --- run folder -----------------------------------------------------------------------------------------
    @abstractmethod
    def save_preprocessing(self, out_dir: Path, label_names: list[str] | None = None) -> None:
        """Tokenizer files or the image preprocessing config, so the run folder predicts on raw inputs.
        `label_names`: the classes of the backbone's own classifier in the run (None: it has none, as in a probe)."""

    def describe(self) -> dict:
        return {
            "library": self.library,
            "modality": self.modality.name,
            "checkpoint": self.checkpoint,
            "hub_id": self.base_model_id,
            "revision": self.model_cfg.revision,
        }
