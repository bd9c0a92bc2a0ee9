"""Two backbones as one: an image tower and a text tower whose pooled features are fused (`multimodal-classification`).

`model.image` and `model.text` each name a checkpoint as `model` does for one modality; each is built by
`build_backbone`, so any image backbone (timm, or transformers vision) and any text backbone serve as a tower, and
this class only composes their `Backbone` surfaces:

- rows: both towers' columns are required and checked (images decode, texts are not empty); a prepared row holds
  both towers' inputs, and a batch carries them under `image_*` / `text_*` names (`image_pixel_values`,
  `text_input_ids`, ...) so that neither tower's input names can collide with the other's;
- the feature extractor concatenates both towers' pooled features, so a linear probe extracts (and caches) both once;
- the classifier (finetune, LoRA, IA3) is both towers' encoders, a fusion (`model.fusion`: concat or gated) and a
  head (`model.head_hidden`), trained through the one loop;
- layer groups and adapter targets are the towers' own, prefixed `image.` / `text.`: `strategy.towers` (LoRA, IA3)
  chooses which tower gets adapters;
- the run folder keeps each tower's preprocessing in its own sub-folder (`image/`, `text/`).

A lone `model.checkpoint` naming a CLIP / SigLIP is the same composition: the recipe fills in both towers with it, so
the image tower is its vision model and the text tower its text model (each loaded from the one checkpoint).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import replace
from functools import cached_property
from pathlib import Path

import torch
from datasets import Dataset
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from hf_transfer.backbones.base import Backbone
from hf_transfer.backbones.checkpoint_config import checkpoint_config
from hf_transfer.config.sections import DataConfig, ModelConfig
from hf_transfer.core.errors import ModelError, RecipeError
from hf_transfer.core.paths import absolute_checkpoint
from hf_transfer.data.modalities.multimodal import MULTIMODAL
from hf_transfer.problems import ProblemType
from hf_transfer.problems.base import LABEL, labels_tensor

TOWERS = MULTIMODAL.tower_names  # ("image", "text"): each tower's modules, inputs and files go by its name
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "multimodal.json"
# The pooling of the classifier's towers: the mean over tokens (sentence-transformers checkpoints want it) and over
# positions (global average pooling, what CNNs use anyway); a tower may say otherwise (`classifier_pooling`: a CLIP
# text tower pools its end-of-text token, as it was trained).
CLASSIFIER_POOLING = "mean"
DUAL_ENCODERS = ("clip", "siglip", "siglip2")


def split_inputs(inputs: dict) -> dict[str, dict]:
    """A batch's `image_*` / `text_*` keys as each tower's own inputs."""
    out: dict[str, dict] = {tower: {} for tower in TOWERS}
    for key, value in inputs.items():
        tower, _, name = key.partition("_")
        if tower not in out:
            raise TypeError(f"unexpected multimodal input '{key}'")
        out[tower][name] = value
    return out


def feature_dim(extractor: nn.Module) -> int:
    """The width of a tower's pooled features, read from the network it wraps (timm's `num_features`, a
    transformers config's `hidden_size`, or the last of its `hidden_sizes`)."""
    for module in extractor.modules():
        config = getattr(module, "config", None)
        for value in (
            getattr(extractor, "output_dim", None),
            getattr(module, "num_features", None) if module is not extractor else None,
            getattr(config, "hidden_size", None),
            (getattr(config, "hidden_sizes", None) or [None])[-1],
        ):
            if isinstance(value, int) and value > 0:
                return value
    raise ModelError(f"cannot tell the feature width of the {type(extractor).__name__} tower.")


class MultimodalFeatureExtractor(nn.Module):
    """Both towers' pooled features, concatenated (image first): what the linear probe caches."""

    def __init__(self, image: nn.Module, text: nn.Module):
        super().__init__()
        self.image, self.text = image, text

    def forward(self, **inputs) -> torch.Tensor:
        parts = split_inputs(inputs)
        return torch.cat([self.image(**parts["image"]), self.text(**parts["text"])], dim=-1)


def _standardised(norm: nn.BatchNorm1d, features: torch.Tensor) -> torch.Tensor:
    """`norm(features)`; a training batch of one row (a last, short batch) has no statistics of its own and is
    standardised with the running ones."""
    if norm.training and features.shape[0] == 1:
        return nn.functional.batch_norm(
            features, norm.running_mean, norm.running_var, norm.weight, norm.bias, training=False, eps=norm.eps
        )
    return norm(features)


class Fusion(nn.Module):
    """Joins the towers' features: `concat` keeps both (each standardised per feature with batch statistics, as the
    linear probe standardises its cached features, so that neither tower's scale dominates); `gated` projects each
    to `hidden` units and mixes them per unit with a gate computed from both (the gated multimodal unit of Arevalo
    et al., 2017)."""

    def __init__(self, kind: str, image_dim: int, text_dim: int, hidden: int):
        super().__init__()
        self.kind = kind
        self.image_norm, self.text_norm = nn.BatchNorm1d(image_dim), nn.BatchNorm1d(text_dim)
        if kind == "gated":
            self.image_proj = nn.Linear(image_dim, hidden)
            self.text_proj = nn.Linear(text_dim, hidden)
            self.gate = nn.Linear(image_dim + text_dim, hidden)
            self.out_dim = hidden
        else:
            self.out_dim = image_dim + text_dim

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        image, text = _standardised(self.image_norm, image), _standardised(self.text_norm, text)
        if self.kind != "gated":
            return torch.cat([image, text], dim=-1)
        gate = torch.sigmoid(self.gate(torch.cat([image, text], dim=-1)))
        return gate * torch.tanh(self.image_proj(image)) + (1 - gate) * torch.tanh(self.text_proj(text))


def _frozen_norms_keep_their_statistics(module: nn.Module, args: tuple, kwargs: dict) -> None:
    """Forward pre-hook: a BatchNorm whose scale and shift do not train (under LoRA) keeps its running statistics
    frozen too, as the timm backbone does for its own classifier (see `timm_image`)."""
    if not module.training:
        return
    for norm in module.modules():
        if isinstance(norm, _BatchNorm) and norm.training and norm.weight is not None:
            if not norm.weight.requires_grad:
                norm.eval()


class MultimodalClassifier(nn.Module):
    """Image tower + text tower -> fusion -> head; `forward(image_*=..., text_*=...)` gives logits."""

    def __init__(self, image: nn.Module, text: nn.Module, fusion: str, head_hidden: int | None, num_labels: int):
        super().__init__()
        self.image, self.text = image, text
        self.fusion = Fusion(fusion, feature_dim(image), feature_dim(text), head_hidden or 256)
        width = self.fusion.out_dim
        if head_hidden:
            head = nn.Sequential(nn.Linear(width, head_hidden), nn.GELU(), nn.Linear(head_hidden, num_labels))
        else:
            head = nn.Sequential(nn.Linear(width, num_labels))
        # Not `head`: PEFT finds modules_to_save by a plain name suffix, and timm's `conv_head` ends in "head".
        self.fused_head = head
        self.register_forward_pre_hook(_frozen_norms_keep_their_statistics, with_kwargs=True)

    def forward(self, **inputs) -> torch.Tensor:
        parts = split_inputs(inputs)
        return self.fused_head(self.fusion(self.image(**parts["image"]), self.text(**parts["text"])))


class PairedRows(torch.utils.data.Dataset):
    """Row i of both towers' prepared splits: {"image": ..., "text": ..., "labels": ...}."""

    def __init__(self, image, text):
        self.image, self.text = image, text

    def __len__(self) -> int:
        return len(self.text)

    def __getitem__(self, i):
        text = self.text[i]
        return {"image": self.image[i], "text": text, LABEL: text[LABEL]}


def _by_suffix(groups: list[list[str]], names: list[str]) -> list[int | None]:
    """For each of `names`, the group whose member shares its longest unambiguous dotted suffix (a tower's
    classifier names `bert.encoder.layer.3.output.dense.weight` what its feature extractor names
    `encoder.encoder.layer.3.output.dense.weight`)."""
    index: dict[str, int | None] = {}
    for g, members in enumerate(groups):
        for name in members:
            parts = name.split(".")
            for k in range(1, len(parts) + 1):
                key = ".".join(parts[-k:])
                index[key] = g if index.get(key, g) == g else None
    out = []
    for name in names:
        parts = name.split(".")
        found = None
        for k in range(len(parts), 0, -1):
            g = index.get(".".join(parts[-k:]))
            if g is not None:
                found = g
                break
        out.append(found)
    return out


class MultimodalBackbone(Backbone):
    modality = MULTIMODAL
    library = "multimodal"
    peft_task_type = None  # a plain nn.Module to PEFT

    def __init__(
        self,
        model_cfg: ModelConfig,
        data_cfg: DataConfig | None = None,
        *,
        preprocessing_source: str | None = None,
        new_head: bool = False,
        build_tower: Callable[..., Backbone],
    ):
        super().__init__(model_cfg, data_cfg, preprocessing_source=preprocessing_source, new_head=new_head)
        # The factory hands itself in: a tower is any backbone it builds, and it builds this one.
        self._build_tower = build_tower
        if model_cfg.image is None or model_cfg.text is None:
            raise RecipeError("model.image and model.text are both needed for task multimodal-classification.")
        if model_cfg.checkpoint:
            self._check_dual_encoder(model_cfg)
        self.towers: dict[str, Backbone] = {}
        for kind in MULTIMODAL.towers:
            name = kind.name
            source = str(Path(preprocessing_source) / name) if preprocessing_source else None
            tower = build_tower(getattr(model_cfg, name), self.data_cfg, kind, preprocessing_source=source)
            if tower.modality is not kind:
                raise RecipeError(f"model.{name} must be a {name} backbone, not a {tower.modality} one.")
            self.towers[name] = tower
        self.check_loadable()

    @staticmethod
    def _check_dual_encoder(model_cfg: ModelConfig) -> None:
        """A lone model.checkpoint must hold both towers: a text or vision model alone fails in one line."""
        config = checkpoint_config(model_cfg)
        if config is not None and config.get("model_type") not in DUAL_ENCODERS:
            raise RecipeError(
                f"model.checkpoint '{model_cfg.checkpoint}' is a {config.get('model_type', 'non-transformers')} "
                "model, not an image-text dual encoder (CLIP, SigLIP); name one, or give model.image and "
                "model.text, one checkpoint each."
            )

    @property
    def poolings(self) -> tuple[str, ...]:
        """The linear probe's poolings both towers take (the probe pools each tower alike)."""
        image, text = (self.towers[name].poolings for name in TOWERS)
        return tuple(p for p in image if p in text)

    def check_loadable(self) -> None:
        """A checkpoint its tower cannot read (a text model under model.image, or the reverse) fails here, in one
        line naming the tower, before any data loads."""
        for name in TOWERS:
            try:
                self.towers[name].check_loadable()
            except ModelError as err:
                raise ModelError(str(err).replace("model.checkpoint", f"model.{name}.checkpoint", 1)) from None

    # --- identity -------------------------------------------------------------------------------------------
    @property
    def checkpoint(self) -> str:
        return " + ".join(self.towers[name].checkpoint for name in TOWERS)

    @property
    def base_model_id(self) -> str | None:
        return None  # two base models: each tower records its own

    def identity(self) -> str:
        parts = [self.towers[name].identity() for name in TOWERS]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]

    def input_files_signature(self, split: Dataset) -> str | None:
        return self.towers["image"].input_files_signature(split)

    def preprocessing_signature(self) -> dict:
        return {name: self.towers[name].preprocessing_signature() for name in TOWERS}

    def describe(self) -> dict:
        towers = {}
        for name in TOWERS:
            towers[name] = self.towers[name].describe()
            towers[name]["checkpoint_path"] = absolute_checkpoint(self.towers[name].checkpoint)
        return {
            "library": self.library,
            "modality": self.modality.name,
            "checkpoint": self.checkpoint,
            "hub_id": None,
            "revision": None,
            "checkpoint_path": None,
            "fusion": self.model_cfg.fusion,
            **towers,
        }

    # --- models ---------------------------------------------------------------------------------------------
    def build_feature_extractor(self, pooling: str) -> nn.Module:
        parts = {name: self.towers[name].build_feature_extractor(pooling) for name in TOWERS}
        return MultimodalFeatureExtractor(**parts).eval().requires_grad_(False)

    def build_classifier(self, label_names: list[str], problem: ProblemType | None = None) -> nn.Module:
        # one output per name whatever the problem type: the loop picks the loss, and nothing outside hf-transfer
        # loads this model, so there is no config to record it in
        parts = {}
        for name in TOWERS:
            tower = self.towers[name]
            encoder = tower.build_feature_extractor(getattr(tower, "classifier_pooling", CLASSIFIER_POOLING))
            parts[name] = encoder.train().requires_grad_(True)
        cfg = self.model_cfg
        return MultimodalClassifier(parts["image"], parts["text"], cfg.fusion, cfg.head_hidden, len(label_names))

    def head_module_names(self, model: nn.Module) -> list[str]:
        return ["fusion", "fused_head"]

    @cached_property
    def _skeletons(self) -> dict[str, nn.Module]:
        """Each tower's own classifier with random weights: what its layer groups and adapter targets are read from
        (they are defined on the tower's classifier, whose modules the extractor shares under other prefixes)."""
        out = {}
        for name in TOWERS:
            tower = self.towers[name]
            cfg = replace(tower.model_cfg, pretrained=False)
            skeleton = self._build_tower(
                cfg, self.data_cfg, tower.modality, preprocessing_source=tower.preprocessing_source
            )
            out[name] = skeleton.build_classifier(["a", "b"])
        return out

    def layer_groups(self, model: nn.Module) -> list[list[str]]:
        """[both stems, block groups aligned from the top (the last blocks of each tower together), both towers'
        final layers + fusion + head]: `unfreeze_last_n` and layer-wise decay then count blocks from the output of
        each tower alike."""
        per_tower = []
        for name in TOWERS:
            groups = self.towers[name].layer_groups(self._skeletons[name])
            params = [n for n, _ in getattr(model, name).named_parameters()]
            placed = _by_suffix(groups, params)
            mine: list[list[str]] = [[] for _ in groups]
            for param, g in zip(params, placed):
                mine[g if g is not None else 0].append(f"{name}.{param}")
            per_tower.append(mine)
        image, text = per_tower
        depth = max(len(image), len(text)) - 2
        blocks = []
        for i in range(depth):
            row = []
            for tower in (image, text):
                offset = depth - (len(tower) - 2)
                if i >= offset:
                    row += tower[1 + i - offset]
            blocks.append(row)
        towers_params = {n for tower in per_tower for group in tower for n in group}
        rest = [n for n, _ in model.named_parameters() if n not in towers_params]
        return [image[0] + text[0], *blocks, image[-1] + text[-1] + rest]

    def _tower_targets(self, model: nn.Module, name: str, short: list[str]) -> list[str]:
        """The full names, in `model`, of the tower's modules that `short` names (as PEFT matches: equal, or a
        dotted suffix)."""
        tower = getattr(model, name)
        return [
            f"{name}.{module}"
            for module, _ in tower.named_modules()
            if module and any(module == s or module.endswith("." + s) for s in short)
        ]

    def default_lora_targets(self, model: nn.Module) -> list[str]:
        out = []
        for name in TOWERS:
            out += self._tower_targets(model, name, self.towers[name].default_lora_targets(self._skeletons[name]))
        return out

    def default_ia3_targets(self, model: nn.Module) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {"target_modules": [], "feedforward_modules": []}
        for name in TOWERS:
            targets = self.towers[name].default_ia3_targets(self._skeletons[name])
            for key in out:
                out[key] += self._tower_targets(model, name, targets[key])
        return out

    def save_classifier(self, model: nn.Module, out_dir: Path) -> list[str]:
        """The fused classifier's weights (both towers, fusion, head) in one safetensors file, with its shape."""
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(Path(out_dir) / WEIGHTS_FILE))
        config = {"fusion": self.model_cfg.fusion, "head_hidden": self.model_cfg.head_hidden}
        (Path(out_dir) / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        return [WEIGHTS_FILE, CONFIG_FILE]

    def load_classifier(self, run_dir: Path, label_names: list[str]) -> nn.Module:
        path = Path(run_dir) / WEIGHTS_FILE
        if not path.is_file():
            raise ModelError(f"run folder '{run_dir}' lacks {WEIGHTS_FILE}; train the run again.")
        model = self.build_classifier(label_names)
        state = load_file(str(path))
        head = state.get(f"fused_head.{len(model.fused_head) - 1}.weight")
        if head is None or head.shape[0] != len(label_names):
            raise ModelError(
                f"run folder '{run_dir}' holds a model for other labels than its {len(label_names)}; it is damaged "
                "or from another run."
            )
        model.load_state_dict(state)
        return model

    # --- data -----------------------------------------------------------------------------------------------
    def prepare(self, split: Dataset, train: bool) -> PairedRows:
        prepared = {}
        for name in TOWERS:
            columns, _ = self.towers[name].required_columns()
            own = split.select_columns([c for c in split.column_names if c in columns or c == LABEL])
            prepared[name] = self.towers[name].prepare(own, train)
        return PairedRows(prepared["image"], prepared["text"])

    def collate_fn(self) -> Callable:
        collates = {name: self.towers[name].collate_fn() for name in TOWERS}

        def collate(rows: list[dict]) -> dict[str, torch.Tensor]:
            batch = {}
            for name in TOWERS:
                part = dict(collates[name]([row[name] for row in rows]))
                part.pop(LABEL, None)
                part.pop("label", None)
                batch |= {f"{name}_{key}": value for key, value in part.items()}
            # class ids, or the multi-hot / target rows of a multi-label or regression problem
            batch[LABEL] = labels_tensor([row[LABEL] for row in rows])
            return batch

        return collate

    def lengths(self, prepared: PairedRows) -> list[int] | None:
        return self.towers["text"].lengths(prepared.text)

    # --- run folder -----------------------------------------------------------------------------------------
    def save_preprocessing(self, out_dir: Path, label_names: list[str] | None = None) -> None:
        """Each tower's preprocessing (image config, tokenizer) in its own sub-folder of the run folder; neither
        tower holds a classifier of its own."""
        for name in TOWERS:
            folder = Path(out_dir) / name
            folder.mkdir(parents=True, exist_ok=True)
            self.towers[name].save_preprocessing(folder, None)
