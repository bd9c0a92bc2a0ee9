"""Image backbones from transformers: any checkpoint `AutoModelForImageClassification` loads (ViT, DeiT, BEiT, Swin,
ConvNeXt(V2), DINOv2, HF ResNet, EfficientNet, MobileViT, ...), and the image tower of CLIP / SigLIP checkpoints.

The preprocessing is the checkpoint's own `AutoImageProcessor`: evaluation, prediction and feature extraction call
it as it is (so a fine-tuned run folder predicts exactly as `pipeline("image-classification")` does on it), and
training augmentation is built with torchvision from its numbers (size, crop, mean, std, resampling). A fine-tuned
classifier is saved as a plain transformers repo: config.json (id2label, label2id), model.safetensors and
preprocessor_config.json.

Just over 500 lines, with one owner: the `Backbone` surface for one library family (loading, poolings, layer
groups, adapter targets, saving), like its timm and text siblings; the image data path it shares with timm is in
`backbones.image`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
from collections.abc import Callable
from functools import cached_property
from pathlib import Path

import torch
import transformers
from torch import nn
from torchvision import transforms
from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageClassification

from hf_transfer.backbones.base import label_config_kwargs
from hf_transfer.backbones.image import ImageBackbone
from hf_transfer.backbones.timm_image import _frozen_norms_keep_their_statistics, short_module_names
from hf_transfer.core.errors import ModelError, RecipeError
from hf_transfer.problems import ProblemType

logger = logging.getLogger(__name__)

PREPROCESSOR_FILE = "preprocessor_config.json"
# Dual encoders whose image tower is the backbone (its weights are the `vision_model.*` of the full checkpoint).
VISION_TOWERS = {"clip": "CLIPVisionModel", "siglip": "SiglipVisionModel", "siglip2": "Siglip2VisionModel"}
PROJECTED_TOWERS = {"clip": "CLIPVisionModelWithProjection"}
# Tokens before the patch tokens in `last_hidden_state`: the class token (DeiT adds a distillation token). Families
# not listed have none (Swin, SigLIP, the CNNs); DINOv2 with registers adds its register tokens (see `_prefix_tokens`).
PREFIX_TOKENS = {
    "vit": 1,
    "vit_msn": 1,
    "vit_mae": 1,
    "deit": 2,
    "beit": 1,
    "data2vec-vision": 1,
    "dinov2": 1,
    "dinov2_with_registers": 1,
    "clip": 1,
    "clip_vision_model": 1,
}
# LoRA's default targets, the first pair a model has: the attention query and value projections (transformers 5
# names them q_proj / v_proj in ViT-likes, CLIP and SigLIP; older and other families query / value).
ATTENTION_TARGETS = (("q_proj", "v_proj"), ("query", "value"), ("q", "v"))
# Convolutional families: their pointwise layers (ConvNeXt's Linear pwconv1/2, ResNet's convolution, EfficientNet's
# expand/project convs); the depthwise convs are left out (PEFT cannot merge grouped convs).
CONV_TARGETS = {
    "convnext": ["pwconv1", "pwconv2"],
    "convnextv2": ["pwconv1", "pwconv2"],
    "resnet": ["convolution"],
    "efficientnet": ["expand_conv", "project_conv"],
}
# Families whose position embeddings are a fixed grid their models do not resize on their own (DINOv2 interpolates,
# Swin and the CNNs take any size): `data.image_size` resamples it (see `_at_image_size`).
FIXED_GRID = {"vit", "deit", "beit", "data2vec-vision", "vit_msn", "clip", "siglip", "siglip2"}
POOLINGS = ("mean", "cls", "pooler", "cls+mean", "projection")
# data.augment -> torchvision training transforms. "model" is the transformers image-classification example's
# (RandomResizedCrop + horizontal flip); "light" crops from 70-100% without flips, for digits, text and small
# centred images (see timm_image.AUGMENTATIONS); "none" is the evaluation preprocessing.
LIGHT_CROP = {"scale": (0.7, 1.0), "ratio": (0.9, 1.1)}


def vision_model_types() -> set[str]:
    """The config `model_type`s this backbone serves: every image-classification architecture and the towers."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES

    return set(MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES) | set(VISION_TOWERS) | {"clip_vision_model"}


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _load_error(checkpoint: str, err: Exception) -> ModelError:
    return ModelError(
        f"model.checkpoint '{checkpoint}' could not be loaded as a transformers vision model ({_first_line(err)}); "
        "give a local folder with config.json and model.safetensors or a Hub id that exists (and is cached when "
        "offline)."
    )


class VisionFeatureExtractor(nn.Module):
    """A frozen vision encoder: `forward(pixel_values)` gives one vector per image.

    pooling `pooler`: the model's own pooled output (CLIP/DINOv2: the normalised class token, SigLIP: its attention
    head, CNNs and Swin: global average); `cls`: the class token of `last_hidden_state`; `mean`: the average of the
    patch tokens (or of every position of a CNN's feature map); `cls+mean`: both concatenated, as DINOv2's linear
    evaluation does; `projection`: CLIP's image embedding (the pooled output through its visual projection).
    """

    def __init__(self, encoder: nn.Module, pooling: str, prefix_tokens: int):
        super().__init__()
        self.encoder = encoder
        self.pooling = pooling
        self.prefix_tokens = prefix_tokens

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self.encoder(pixel_values=pixel_values)
        if self.pooling == "projection":
            return out.image_embeds
        if self.pooling == "pooler":
            return out.pooler_output.flatten(1)
        hidden = out.last_hidden_state
        if hidden.ndim == 4:  # a CNN's feature map (batch, channels, height, width)
            return hidden.mean(dim=(2, 3))
        mean = hidden[:, self.prefix_tokens :].mean(dim=1)
        if self.pooling == "mean":
            return mean
        if self.pooling == "cls":
            return hidden[:, 0]
        return torch.cat([hidden[:, 0], mean], dim=1)


class ProcessorTransform:
    """The image processor applied to one PIL image: float CHW pixels, exactly as a pipeline would feed the model."""

    def __init__(self, processor):
        self.processor = processor

    def __call__(self, image) -> torch.Tensor:
        return self.processor(images=image, return_tensors="pt")["pixel_values"][0]

    def __repr__(self) -> str:
        return f"ProcessorTransform({type(self.processor).__name__})"


def _size_value(size, key: str):
    return size.get(key) if isinstance(size, dict) else getattr(size, key, None)


class TransformersImageBackbone(ImageBackbone):
    library = "transformers"
    poolings = POOLINGS
    peft_task_type = None  # a plain nn.Module to PEFT: adapters + the classifier in modules_to_save

    def _common_kwargs(self) -> dict:
        return {"revision": self.model_cfg.revision, "trust_remote_code": self.model_cfg.trust_remote_code}

    # --- the checkpoint -------------------------------------------------------------------------------------
    @cached_property
    def config(self):
        checkpoint = self.checkpoint
        if (checkpoint.startswith((".", "/")) or Path(checkpoint).exists()) and not Path(checkpoint).is_dir():
            raise ModelError(f"model.checkpoint '{checkpoint}' is not a folder; give a folder with config.json.")
        try:
            config = AutoConfig.from_pretrained(checkpoint, **self._common_kwargs())
        except (OSError, ValueError, KeyError) as err:
            raise _load_error(checkpoint, err) from None
        if config.model_type not in vision_model_types() and not self.model_cfg.trust_remote_code:
            raise ModelError(
                f"model.checkpoint '{checkpoint}' is a '{config.model_type}' model, not an image model transformers "
                "classifies images with; give a vision checkpoint (ViT, DINOv2, ConvNeXt, CLIP, ...) or a timm one."
            )
        return config

    @property
    def model_type(self) -> str:
        return self.config.model_type

    @property
    def base_model_id(self) -> str | None:
        if self.model_cfg.hub_id:
            return self.model_cfg.hub_id
        return None if Path(self.checkpoint).exists() else self.checkpoint

    def identity(self) -> str:
        parts = [super().identity(), transformers.__version__]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]

    # --- preprocessing --------------------------------------------------------------------------------------
    @cached_property
    def image_processor(self):
        """The checkpoint's `AutoImageProcessor` (the run folder's at predict time), resized to `data.image_size`
        when the recipe sets it, so that the saved preprocessor_config.json says what the run used."""
        self.config  # noqa: B018 - a clear error for a bad checkpoint before the processor's
        source = self.preprocessing_source or self.checkpoint
        try:
            processor = AutoImageProcessor.from_pretrained(source, **self._common_kwargs())
        except (OSError, ValueError, KeyError) as err:
            raise ModelError(
                f"'{source}' has no image processor ({_first_line(err)}); give a checkpoint with {PREPROCESSOR_FILE}."
            ) from None
        size = self.data_cfg.image_size
        if size and not self.preprocessing_source:
            processor = AutoImageProcessor.from_pretrained(source, **self._common_kwargs(), **self._resized(processor))
        return processor

    def _resized(self, processor) -> dict:
        """The processor settings that make its output `data.image_size` square, its resize-then-crop ratio kept."""
        size = self.data_cfg.image_size
        out = {}
        crop = getattr(processor, "crop_size", None)
        if getattr(processor, "do_center_crop", False) and crop and _size_value(crop, "height"):
            shortest = _size_value(processor.size, "shortest_edge")
            ratio = shortest / _size_value(crop, "height") if shortest else 1.0
            out["crop_size"] = {"height": size, "width": size}
            out["size"] = {"shortest_edge": round(size * ratio)} if shortest else {"height": size, "width": size}
        elif _size_value(processor.size, "shortest_edge"):
            out["size"] = {"shortest_edge": size}
        else:
            out["size"] = {"height": size, "width": size}
        return out

    @cached_property
    def data_config(self) -> dict:
        """The processor's numbers: the (height, width) the model sees, mean, std and resampling."""
        processor = self.image_processor
        crop = getattr(processor, "crop_size", None)
        if getattr(processor, "do_center_crop", False) and crop and _size_value(crop, "height"):
            height, width = _size_value(crop, "height"), _size_value(crop, "width")
        elif _size_value(processor.size, "height"):
            height, width = _size_value(processor.size, "height"), _size_value(processor.size, "width")
        else:
            height = width = _size_value(processor.size, "shortest_edge")
        normalize = getattr(processor, "do_normalize", True)
        return {
            "input_size": (3, int(height), int(width)),
            "mean": tuple(processor.image_mean) if normalize else (0.0, 0.0, 0.0),
            "std": tuple(processor.image_std) if normalize else (1.0, 1.0, 1.0),
            "interpolation": 3 if getattr(processor, "resample", None) is None else int(processor.resample),
        }

    def transform(self, train: bool) -> Callable:
        """The processor itself for evaluation (and with data.augment none); else torchvision's random resized crop
        (and, for `model`, horizontal flips) to the processor's size, normalised with its mean and std."""
        augment = self.data_cfg.augment if train else "none"
        if augment == "none":
            return ProcessorTransform(self.image_processor)
        config = self.data_config
        interpolation = transforms.InterpolationMode(
            {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}[config["interpolation"]]
        )
        crop = config["input_size"][1:]
        steps = [
            transforms.RandomResizedCrop(
                crop, interpolation=interpolation, **(LIGHT_CROP if augment == "light" else {})
            )
        ]
        if augment == "model":
            steps.append(transforms.RandomHorizontalFlip())
        steps += [transforms.ToTensor(), transforms.Normalize(config["mean"], config["std"])]
        return transforms.Compose(steps)

    def preprocessing_signature(self) -> dict:
        return {"processor": json.loads(self.image_processor.to_json_string()), "eval": repr(self.transform(False))}

    # --- models ---------------------------------------------------------------------------------------------
    def _prefix_tokens(self) -> int:
        config = self.config
        tokens = PREFIX_TOKENS.get(config.model_type, 0)
        return tokens + int(getattr(config, "num_register_tokens", 0) or 0)

    def build_classifier(self, label_names: list[str], problem: ProblemType | None = None) -> nn.Module:
        kwargs = label_config_kwargs(label_names, problem) | self._common_kwargs()
        try:
            if not self.model_cfg.pretrained:
                config = AutoConfig.from_pretrained(self.checkpoint, **kwargs)
                model = AutoModelForImageClassification.from_config(
                    config, trust_remote_code=self.model_cfg.trust_remote_code
                )
            else:
                # A classifier checkpoint (ImageNet's, a source stage's) gets its head replaced for these labels.
                model = AutoModelForImageClassification.from_pretrained(
                    self.checkpoint, use_safetensors=True, ignore_mismatched_sizes=True, **kwargs
                )
        except (OSError, ValueError) as err:
            raise _load_error(self.checkpoint, err) from None
        model = self._at_image_size(model)
        if self.new_head:
            self.reset_head(model)
        return with_frozen_norms_kept(model)

    def _new_grid(self) -> int | None:
        """`data.image_size` where it differs from the fixed size a ViT-like's position embeddings were trained at
        (DINOv2 interpolates them itself; Swin and the CNNs take any size), else None."""
        size, config = self.data_cfg.image_size, self.config
        native = getattr(getattr(config, "vision_config", config), "image_size", None)
        if size and config.model_type in FIXED_GRID and native and size != native:
            return size
        return None

    def _at_image_size(self, model: nn.Module) -> nn.Module:
        """`model` rebuilt for `data.image_size` images with its position embeddings resampled to the new grid
        (bicubic, the class token kept), as timm does, so that the saved config.json says the new size and a
        pipeline loads it as is. A model with other position-dependent weights (BEiT's relative position tables)
        cannot be: a one-line error then."""
        size = self._new_grid()
        if size is None:
            return model
        config = copy.deepcopy(model.config)
        vision = getattr(config, "vision_config", None)
        if hasattr(config, "image_size") and not hasattr(config, "vision_config"):
            config.image_size = size
        if vision is not None:
            vision.image_size = size
        resized = type(model)(config)
        target = resized.state_dict()
        state = {}
        for name, tensor in model.state_dict().items():
            wanted = target.get(name)
            if wanted is None or wanted.shape == tensor.shape:
                state[name] = tensor
            elif name.endswith("position_ids"):
                state[name] = wanted
            else:
                state[name] = resampled_positions(tensor, wanted.shape)
                if state[name] is None:
                    raise RecipeError(
                        f"data.image_size is {size} but '{self.checkpoint}' ({self.config.model_type}) has weights "
                        f"for its {getattr(vision or config, 'image_size', '?')}-pixel inputs that cannot be "
                        f"resampled ({name}); remove data.image_size."
                    )
        resized.load_state_dict(state)
        return resized

    def build_feature_extractor(self, pooling: str) -> nn.Module:
        config = self.config
        prefix = self._prefix_tokens()
        if pooling not in POOLINGS:
            raise RecipeError(f"strategy.pooling '{pooling}' is not a pooling; choose one of {', '.join(POOLINGS)}.")
        if pooling in ("cls", "cls+mean") and not prefix:
            raise RecipeError(
                f"strategy.pooling '{pooling}' needs a class token and '{self.checkpoint}' ({config.model_type}) has "
                "none; choose mean or pooler."
            )
        if pooling == "projection" and config.model_type not in PROJECTED_TOWERS:
            raise RecipeError(
                f"strategy.pooling 'projection' is CLIP's image embedding and '{self.checkpoint}' is a "
                f"{config.model_type} model; choose mean, pooler or cls."
            )
        kwargs = self._common_kwargs()
        try:
            if pooling == "projection":
                model_class = getattr(transformers, PROJECTED_TOWERS[config.model_type])
            elif config.model_type in VISION_TOWERS:
                model_class = getattr(transformers, VISION_TOWERS[config.model_type])
            else:
                model_class = AutoModel
            tower = config
            if model_class is not AutoModel:  # the image tower's own config, as the full checkpoint nests it
                tower = copy.deepcopy(config.vision_config)
                if pooling == "projection":  # the projection's width is the dual encoder's, not the tower's
                    tower.projection_dim = config.projection_dim
            if self.model_cfg.pretrained:
                encoder = model_class.from_pretrained(self.checkpoint, config=tower, use_safetensors=True, **kwargs)
            elif model_class is AutoModel:
                encoder = AutoModel.from_config(tower, trust_remote_code=self.model_cfg.trust_remote_code)
            else:
                encoder = model_class(tower)
        except (OSError, ValueError) as err:
            raise _load_error(self.checkpoint, err) from None
        encoder = self._at_image_size(encoder)
        return VisionFeatureExtractor(encoder, pooling, prefix).eval().requires_grad_(False)

    def head_module_names(self, model: nn.Module) -> list[str]:
        if isinstance(getattr(model, "classifier", None), nn.Module):
            return ["classifier"]
        raise ModelError(f"model.checkpoint '{self.checkpoint}': its classifier has no `classifier` layer to replace.")

    def _blocks(self, model: nn.Module) -> tuple[str, list[str]]:
        """(the encoder's name, its blocks' dotted names from input to output): the transformer layers, or each block
        of each stage for staged models (ConvNeXt, ResNet, Swin)."""
        lists = [
            (name, module) for name, module in model.named_modules() if isinstance(module, nn.ModuleList) and name
        ]
        heads = self.head_module_names(model)
        lists = [(n, m) for n, m in lists if not any(n.startswith(h) for h in heads) and len(m)]
        if not lists:
            raise ModelError(f"model.checkpoint '{self.checkpoint}' has no list of layers to unfreeze or decay.")
        outer_name, outer = lists[0]  # the first list is the encoder's: its layers, or its stages
        blocks = []
        for i, stage in enumerate(outer):
            inner = next(
                (
                    (name, child)
                    for name, child in stage.named_children()
                    if isinstance(child, (nn.ModuleList, nn.Sequential)) and name in ("layers", "blocks", "layer")
                ),
                None,
            )
            if inner is None:
                blocks.append(f"{outer_name}.{i}")
            else:
                blocks += [f"{outer_name}.{i}.{inner[0]}.{j}" for j in range(len(inner[1]))]
        return outer_name.rpartition(".")[0], blocks

    def layer_groups(self, model: nn.Module) -> list[list[str]]:
        """[embeddings, block 1, ..., block N, what follows the encoder (pooler, classifier)]; parameters inside the
        encoder but outside any block (a stage's downsampling, the final norm) go with the block before them, as in
        timm's grouping."""
        encoder, blocks = self._blocks(model)
        groups: list[list[str]] = [[] for _ in range(len(blocks) + 2)]
        current, seen = 0, False
        for name, _ in model.named_parameters():
            index = next((i for i, b in enumerate(blocks) if name.startswith(b + ".")), None)
            if index is not None:
                current, seen = index + 1, True
                groups[current].append(name)
            elif not seen or (encoder and name.startswith(encoder + ".")):
                groups[current].append(name)
            else:
                groups[-1].append(name)
        return groups

    def _adaptable(self, model: nn.Module) -> tuple[list[str], list[str]]:
        """(Linear, plain Conv2d) module names outside the classifier, as PEFT can adapt and merge them."""
        heads = self.head_module_names(model)
        linear, conv = [], []
        for name, module in model.named_modules():
            if any(name == h or name.startswith(h + ".") for h in heads):
                continue
            if isinstance(module, nn.Linear):
                linear.append(name)
            elif isinstance(module, nn.Conv2d) and module.groups == 1:
                conv.append(name)
        return linear, conv

    def _leaf_names(self, model: nn.Module) -> set[str]:
        return {name.rsplit(".", 1)[-1] for name, _ in model.named_modules() if name}

    def default_lora_targets(self, model: nn.Module) -> list[str]:
        """ViT-likes, CLIP, SigLIP: the attention's query and value projections; ConvNeXt: its pointwise Linear
        layers; ResNet: its convolutions; others: every Linear (else every plain conv) outside the classifier."""
        leaves = self._leaf_names(model)
        if self.model_type in CONV_TARGETS and set(CONV_TARGETS[self.model_type]) <= leaves:
            return list(CONV_TARGETS[self.model_type])
        for pair in ATTENTION_TARGETS:
            if set(pair) <= leaves:
                return list(pair)
        linear, conv = self._adaptable(model)
        if not (linear or conv):
            raise RecipeError(
                f"no default LoRA targets for '{self.checkpoint}' (no Linear or plain Conv2d layer outside the "
                "classifier); set strategy.target_modules."
            )
        return short_module_names(model, set(linear or conv))

    def default_ia3_targets(self, model: nn.Module) -> dict[str, list[str]]:
        """Transformers: rescale the keys, values and the MLP output (a feed-forward module, scaled on its input);
        CNNs: the outputs of the layers LoRA adapts."""
        leaves = self._leaf_names(model)
        for query, value in ATTENTION_TARGETS:
            key = {"q_proj": "k_proj", "query": "key", "q": "k"}[query]
            if {key, value} <= leaves:
                feedforward = [f for f in ("fc2",) if f in leaves]
                return {"target_modules": [key, value, *feedforward], "feedforward_modules": feedforward}
        return {"target_modules": self.default_lora_targets(model), "feedforward_modules": []}

    def save_classifier(self, model: nn.Module, out_dir: Path) -> list[str]:
        """A plain transformers repo: `pipeline("image-classification", model=RUN)` loads it (with the
        preprocessor_config.json that `save_preprocessing` writes beside it)."""
        model.save_pretrained(out_dir, safe_serialization=True)
        return ["config.json", "model.safetensors"]

    def load_classifier(self, run_dir: Path, label_names: list[str]) -> nn.Module:
        try:
            model = AutoModelForImageClassification.from_pretrained(
                run_dir, use_safetensors=True, trust_remote_code=self.model_cfg.trust_remote_code
            )
        except (OSError, ValueError) as err:
            raise ModelError(
                f"run folder '{run_dir}' does not load as a transformers model ({_first_line(err)})."
            ) from None
        if model.config.num_labels != len(label_names):
            raise ModelError(
                f"run folder '{run_dir}' holds a model for {model.config.num_labels} labels, "
                f"not {len(label_names)}; it is damaged or from another run."
            )
        return with_frozen_norms_kept(model)

    # --- run folder -----------------------------------------------------------------------------------------
    def save_preprocessing(self, out_dir: Path, label_names: list[str] | None = None) -> None:
        """preprocessor_config.json: the image processor the run used (data.image_size included)."""
        self.image_processor.save_pretrained(out_dir)


def with_frozen_norms_kept(model: nn.Module) -> nn.Module:
    """`model` whose BatchNorms (HF ResNet, EfficientNet, MobileViT) keep their running statistics while their scale
    and shift do not train (LoRA, IA3, frozen blocks), as timm's backbone does and for the same reason."""
    model.register_forward_pre_hook(_frozen_norms_keep_their_statistics, with_kwargs=True)
    return model


def resampled_positions(table: torch.Tensor, shape: torch.Size) -> torch.Tensor | None:
    """A position-embedding table (`(1, tokens, dim)` or `(tokens, dim)`) resampled to `shape`: its leading 0-2
    prefix tokens (class, distillation) kept, the square grid after them interpolated bicubically; None where the
    table is not such a grid (a weight that is not a position embedding)."""
    old, new = table.shape[-2], shape[-2]
    if table.ndim != len(shape) or table.shape[-1] != shape[-1] or table.ndim not in (2, 3):
        return None
    for prefix in (0, 1, 2):
        old_side, new_side = math.isqrt(old - prefix), math.isqrt(new - prefix)
        if old_side**2 == old - prefix and new_side**2 == new - prefix:
            rows = table.reshape(old, -1)
            grid = rows[prefix:].reshape(1, old_side, old_side, -1).permute(0, 3, 1, 2).float()
            grid = torch.nn.functional.interpolate(
                grid, size=(new_side, new_side), mode="bicubic", align_corners=False
            )
            grid = grid.permute(0, 2, 3, 1).reshape(new_side * new_side, -1).to(table.dtype)
            return torch.cat([rows[:prefix], grid]).reshape(shape)
    return None
