"""Image backbones from timm: a timm model name with its weight tag, an `hf-hub:` id, a bare Hub id or a folder.

`model.checkpoint` may be `resnet18.a1_in1k` (timm's registry; the weights come from the Hub repo its pretrained
config names), `hf-hub:timm/vit_base_patch16_224.augreg2_in21k_ft_in1k` or plainly `timm/vit_base_...` (a Hub repo
in timm's format), or `local-dir:path/to/folder` or a path (a folder with timm's config.json + model.safetensors).
The preprocessing is the model's own (`pretrained_cfg` -> `timm.data.resolve_data_config` -> `create_transform`):
the training augmentation for training, the eval transform for evaluation, prediction and feature extraction.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
from collections.abc import Callable
from functools import cached_property
from pathlib import Path

import timm
import torch
from timm.data import create_transform, resolve_data_config
from timm.models import parse_model_name, resolve_model_input_args
from timm.models._hub import load_model_config_from_path
from timm.models._manipulate import group_parameters
from timm.models._pretrained import filter_pretrained_cfg
from timm.models._registry import split_model_name_tag
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from hf_transfer.backbones.image import INPUT, ImageBackbone
from hf_transfer.core.errors import ModelError, RecipeError
from hf_transfer.problems import ProblemType

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"  # timm's Hub format: architecture, num_classes, model_args, pretrained_cfg
WEIGHTS_FILE = "model.safetensors"
# data.augment -> timm create_transform options for training. "model" is timm's ImageNet recipe; its crops from 8%
# of the image, flips and colour jitter destroy small centred images (LoRA on 400 8x8 digits, 3 epochs: 34% test
# accuracy, against 76% with "light" and 88% with "none").
AUGMENTATIONS = {
    "model": {},
    "light": {"scale": (0.7, 1.0), "ratio": (0.9, 1.1), "hflip": 0.0, "color_jitter": None},
}


def timm_model_name(checkpoint: str, revision: str | None = None) -> str:
    """What `timm.create_model` takes for a recipe's `model.checkpoint`.

    `hf-hub:` and `local-dir:` pass through; an existing folder becomes `local-dir:`; `org/name` becomes
    `hf-hub:org/name` (with `@revision` when the recipe sets one); anything else is a timm registry name.
    """
    if checkpoint.startswith("local-dir:"):
        return checkpoint
    if checkpoint.startswith("hf-hub:"):
        repo = checkpoint.removeprefix("hf-hub:")
    elif Path(checkpoint).expanduser().is_dir():
        return "local-dir:" + str(Path(checkpoint).expanduser())
    elif checkpoint.startswith((".", "/", "~")) or "\\" in checkpoint:
        raise ModelError(f"model.checkpoint '{checkpoint}' is not a folder; give a folder with timm's config.json.")
    elif "/" in checkpoint:
        repo = checkpoint
    else:
        return checkpoint
    if revision and "@" not in repo:
        repo = f"{repo}@{revision}"
    return "hf-hub:" + repo


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _load_error(checkpoint: str, err: Exception) -> ModelError:
    return ModelError(
        f"model.checkpoint '{checkpoint}' could not be loaded as a timm model ({_first_line(err)}); give a timm "
        "model name, a `local-dir:` folder with timm's config.json, or a Hub id that exists (and is cached "
        "when offline)."
    )


def unknown_model_error(checkpoint: str, architecture: str) -> ModelError:
    close = difflib.get_close_matches(architecture, timm.list_models(), n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    return ModelError(
        f"model.checkpoint '{checkpoint}' is not a timm model{hint}; `timm.list_models('*{architecture[:4]}*')` "
        "lists the names, or give an `hf-hub:` id or a `local-dir:` folder."
    )


def _pixel_values_as_input(module: nn.Module, args: tuple, kwargs: dict):
    """Forward pre-hook: `model(pixel_values=x)` (the loop's call) becomes timm's `model(x)`.

    A hook rather than a wrapper module, so parameter names, `save_for_hf` files and LoRA adapters stay exactly
    those of the timm model (an adapter loads onto `timm.create_model(...)` without hf-transfer).
    """
    if INPUT not in kwargs:
        return None
    kwargs = dict(kwargs)
    return (kwargs.pop(INPUT), *args), kwargs


def _frozen_norms_keep_their_statistics(module: nn.Module, args: tuple, kwargs: dict) -> None:
    """Forward pre-hook: a BatchNorm whose scale and shift do not train (under LoRA and IA3, or in the frozen
    blocks of a partial fine-tune) keeps its running statistics frozen too, in training as in evaluation.

    Otherwise training normalises with the batch's statistics while evaluation uses the pretraining data's
    (moved only by momentum 0.01 in TF-ported models): LoRA on digits fit the train set and scored chance.
    """
    if not module.training:
        return
    for norm in module.modules():
        if isinstance(norm, _BatchNorm) and norm.training and norm.weight is not None:
            if not norm.weight.requires_grad:
                norm.eval()


def prepared_for_loop(model: nn.Module) -> nn.Module:
    """`model` ready for the loop: called with `pixel_values=`, frozen BatchNorms kept frozen."""
    model.register_forward_pre_hook(_pixel_values_as_input, with_kwargs=True)
    model.register_forward_pre_hook(_frozen_norms_keep_their_statistics, with_kwargs=True)
    return model


class TimmFeatureExtractor(nn.Module):
    """A frozen timm network without its head: `forward(pixel_values)` gives one vector per image.

    pooling `cls` is the model's own pooling, `forward_head(pre_logits=True)`: the class token for ViTs, global
    average for CNNs, and whatever else (attention pooling, a pre-logits layer) the architecture defines. `mean`
    averages `forward_features` over every spatial position or patch token (prefix tokens such as the class
    token left out), whatever the model's own pooling is.
    """

    def __init__(self, model: nn.Module, pooling: str):
        super().__init__()
        self.model = model
        self.pooling = pooling

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        features = self.model.forward_features(pixel_values)
        if self.pooling == "cls":
            return self.model.forward_head(features, pre_logits=True)
        return average_features(features, self.model)


def average_features(features: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """Mean over positions of `forward_features` output: NCHW, NHWC (Swin-like) or (batch, tokens, dim)."""
    if features.ndim == 2:
        return features
    if features.ndim == 3:
        return features[:, getattr(model, "num_prefix_tokens", 0) :].mean(dim=1)
    channels = getattr(model, "num_features", None)
    if features.shape[-1] == channels and features.shape[1] != channels:
        return features.mean(dim=(1, 2))
    return features.mean(dim=(2, 3))


class TimmImageBackbone(ImageBackbone):
    library = "timm"
    peft_task_type = None  # a plain nn.Module to PEFT: adapters + modules_to_save, no task-specific wrapper

    # --- the checkpoint -------------------------------------------------------------------------------------
    @cached_property
    def model_name(self) -> str:
        """`model.checkpoint` as `timm.create_model` takes it."""
        return timm_model_name(self.checkpoint, self.model_cfg.revision)

    @cached_property
    def source(self) -> dict:
        """timm's resolution of the checkpoint, without building it: {"model_name", "pretrained_cfg", ...}."""
        try:
            kind, identifier = parse_model_name(self.model_name)
        except ValueError as err:
            raise _load_error(self.checkpoint, err) from None
        if kind is None:
            architecture, tag = split_model_name_tag(identifier)
            if not timm.is_model(architecture):
                raise unknown_model_error(self.checkpoint, architecture)
            tags = [name.partition(".")[2] for name in timm.list_pretrained(f"{architecture}.*")]
            if tag and tag not in tags:
                raise ModelError(
                    f"model.checkpoint '{self.checkpoint}': timm has no weights tagged '{tag}' for {architecture}; "
                    f"its tags are {', '.join(tags) or 'none (use pretrained: false)'}."
                )
        try:
            resolved = resolve_model_input_args(self.model_name)
        except RuntimeError as err:  # timm's "Unknown model (name)" for a folder or repo naming an unknown one
            raise _load_error(self.checkpoint, err) from None
        except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError) as err:
            if isinstance(err, FileNotFoundError) and kind == "local-dir":
                raise ModelError(
                    f"model.checkpoint '{self.checkpoint}' has no config.json; give a folder saved by "
                    "timm.models.save_for_hf (config.json + model.safetensors)."
                ) from None
            raise _load_error(self.checkpoint, err) from None
        return resolved

    @property
    def base_model_id(self) -> str | None:
        """The Hub id of the weights: `hf-hub:org/name` -> org/name; a timm name -> its pretrained cfg's
        `hf_hub_id` (`resnet18` -> timm/resnet18.a1_in1k); a folder -> `model.hub_id`, else None."""
        if self.model_cfg.hub_id:
            return self.model_cfg.hub_id
        if not self.model_cfg.pretrained:
            return None  # random weights have no base on the Hub
        kind, identifier = parse_model_name(self.model_name)
        if kind == "hf-hub":
            return identifier.split("@")[0]
        if kind == "local-dir":
            return None
        cfg = self.source["pretrained_cfg"]
        # A repo that holds some other library's file (hf_hub_filename, e.g. open_clip) is no timm Hub model.
        if cfg.get("hf_hub_id") and not cfg.get("hf_hub_filename"):
            return cfg["hf_hub_id"].split("@")[0]
        return None

    def identity(self) -> str:
        parts = [super().identity(), self.model_name, timm.__version__]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]

    # --- preprocessing --------------------------------------------------------------------------------------
    def _pretrained_cfg(self) -> dict:
        """The pretrained cfg preprocessing is read from: the run folder's config.json at predict time, else the
        checkpoint's."""
        if self.preprocessing_source:
            folder = Path(self.preprocessing_source)
            if not (folder / CONFIG_FILE).is_file():
                raise ModelError(f"run folder '{folder}' has no {CONFIG_FILE} (the image preprocessing); train again.")
            return load_model_config_from_path(folder)[0]
        return self.source["pretrained_cfg"]

    @cached_property
    def data_config(self) -> dict:
        """timm's resolved data config: input_size, interpolation, mean, std, crop_pct, crop_mode."""
        size = self.data_cfg.image_size  # the recipe's data.image_size replaces the pretrained input size
        args = {"input_size": (3, size, size)} if size else None
        return resolve_data_config(args=args, pretrained_cfg=self._pretrained_cfg())

    def transform(self, train: bool) -> Callable:
        """timm's transform for a PIL image: training augmentation when `train` (as `data.augment` says), else
        resize + center crop."""
        augment = self.data_cfg.augment if train else "none"
        if augment == "none":
            return create_transform(**self.data_config, is_training=False)
        return create_transform(**self.data_config, is_training=True, **AUGMENTATIONS[augment])

    def preprocessing_signature(self) -> dict:
        config = {k: list(v) if isinstance(v, tuple) else v for k, v in self.data_config.items()}
        return {"data_config": config, "eval_transform": repr(self.transform(False))}

    # --- models ---------------------------------------------------------------------------------------------
    def _create(self, num_classes: int) -> nn.Module:
        source = self.source  # unknown names and missing folders get their own message first
        kwargs = {}
        size = self.data_cfg.image_size
        if size and source["pretrained_cfg"].get("fixed_input_size"):
            kwargs["img_size"] = size  # ViT-like: position embeddings resized to the new grid
        try:
            return timm.create_model(
                self.model_name, pretrained=self.model_cfg.pretrained, num_classes=num_classes, **kwargs
            )
        except (OSError, RuntimeError, ValueError, KeyError, TypeError) as err:
            raise _load_error(self.checkpoint, err) from None

    def build_classifier(self, label_names: list[str], problem: ProblemType | None = None) -> nn.Module:
        self._check_run_classes(len(label_names))
        model = self._create(len(label_names))
        if self.new_head:  # a source stage's classifier: its head is for the source's classes, even when as many
            model.reset_classifier(len(label_names))
        return prepared_for_loop(with_label_names(model, label_names))

    def build_feature_extractor(self, pooling: str) -> nn.Module:
        model = self._create(num_classes=0)  # no classifier: its pretrained weights are not even loaded
        return TimmFeatureExtractor(model, pooling).eval().requires_grad_(False)

    def _check_run_classes(self, num_classes: int) -> None:
        """At predict time, a one-line error when the run folder's classifier is for another number of classes."""
        if not self.preprocessing_source:
            return
        path = Path(self.preprocessing_source) / CONFIG_FILE
        saved = json.loads(path.read_text(encoding="utf-8")).get("num_classes") if path.is_file() else None
        if saved and saved != num_classes:
            raise ModelError(
                f"run folder '{self.preprocessing_source}' holds a model for {saved} classes, not {num_classes}; "
                "it is damaged or from another run."
            )

    def head_module_names(self, model: nn.Module) -> list[str]:
        """The classifier's module names (`head`, `fc`, `classifier`, `head.fc`, ...): new for the user's labels."""
        modules = dict(model.named_modules())
        named = model.pretrained_cfg.get("classifier") if hasattr(model, "pretrained_cfg") else None
        names = [named] if isinstance(named, str) else list(named or [])
        names = [n for n in names if n in modules and any(True for _ in modules[n].parameters())]
        if names:
            return names
        classifier = model.get_classifier() if hasattr(model, "get_classifier") else None
        found = [name for name, module in modules.items() if name and module is classifier]
        if not found:
            raise ModelError(f"model.checkpoint '{self.checkpoint}': cannot find its classifier layer.")
        return found[:1]

    def _head_parameters(self, model: nn.Module) -> set[str]:
        heads = self.head_module_names(model)
        return {name for name, _ in model.named_parameters() if any(name.startswith(h + ".") for h in heads)}

    def layer_groups(self, model: nn.Module) -> list[list[str]]:
        """timm's own grouping (`group_matcher(coarse=False)`, as its layer-decay optimizer uses): stem, then each
        block (ViT: each transformer block; ResNet: layerS.B; EfficientNet: blocks.S.B; the final norm goes with
        the last block), then the head."""
        head = self._head_parameters(model)
        groups: list[list[str]] = []
        try:
            matcher = model.group_matcher(coarse=False)
        except (AttributeError, NotImplementedError):
            matcher = None
        if matcher:
            grouped = group_parameters(model, matcher)
            groups = [list(grouped[i]) for i in sorted(grouped)]
        head_group: list[str] = []
        if groups and head & set(groups[-1]):  # timm's last group holds what no pattern matched: the head, neck
            head_group = groups.pop()
        groups = [[n for n in g if n not in head] for g in groups]
        groups = [g for g in groups if g]
        if len(groups) < 2:  # no usable grouping: one body block between an empty stem and the head
            body = [n for n, _ in model.named_parameters() if n not in head and n not in head_group]
            groups = [[], body]
        last = [n for n in head_group if n not in head] + [n for n, _ in model.named_parameters() if n in head]
        return [*groups, last]

    def _adaptable(self, model: nn.Module) -> tuple[dict[str, nn.Module], dict[str, nn.Module]]:
        """(Linear layers, Conv2d layers) that PEFT's LoRA adapts as they are, outside the classifier.

        Left out: grouped/depthwise convs (PEFT needs the rank divisible by the groups, and cannot merge them) and
        convs with dynamic 'same' padding (timm's Conv2dSame: LoRA's own conv would not pad like the base one)
        unless they are 1x1.
        """
        heads = self.head_module_names(model)
        linear, conv = {}, {}
        for name, module in model.named_modules():
            if any(name == h or name.startswith(h + ".") for h in heads):
                continue
            if isinstance(module, nn.Linear):
                linear[name] = module
            elif isinstance(module, nn.Conv2d) and module.groups == 1:
                static = type(module).forward is nn.Conv2d.forward
                if static or tuple(module.kernel_size) == (1, 1):
                    conv[name] = module
        return linear, conv

    def default_lora_targets(self, model: nn.Module) -> list[str]:
        """The Linear layers of transformer-like models (ViT: attn.qkv, attn.proj, mlp.fc1, mlp.fc2; not the patch
        embedding); for CNNs, with no Linear outside the head, their plain convs (ResNet: every conv; EfficientNet:
        the 1x1 expand/project and squeeze-excite convs, not the depthwise ones)."""
        linear, conv = self._adaptable(model)
        chosen = linear or conv
        if not chosen:
            raise RecipeError(
                f"no default LoRA targets for '{self.checkpoint}' (no Linear or plain Conv2d layer outside the "
                "head); set strategy.target_modules."
            )
        return short_module_names(model, set(chosen))

    def default_ia3_targets(self, model: nn.Module) -> dict[str, list[str]]:
        """ViT-like: rescale attn.qkv and the MLP output (mlp.fc2, a feed-forward module, scaled on its input);
        CNNs: the outputs of the same convs LoRA adapts."""
        linear, conv = self._adaptable(model)
        if linear:
            attention = {n for n in linear if n.rsplit(".", 1)[-1] in ("qkv", "q", "k", "v", "query", "key", "value")}
            feedforward = {n for n in linear if n.rsplit(".", 1)[-1] in ("fc2", "proj_out", "w3")}
            targets = (attention | feedforward) or set(linear)
            forward_names = short_module_names(model, feedforward) if feedforward & targets else []
            return {"target_modules": short_module_names(model, targets), "feedforward_modules": forward_names}
        if conv:
            return {"target_modules": short_module_names(model, set(conv)), "feedforward_modules": []}
        raise RecipeError(
            f"no default IA3 targets for '{self.checkpoint}'; set strategy.target_modules and "
            "strategy.feedforward_modules."
        )

    def checkpoint_for_folder(self, folder: Path) -> str:
        return f"local-dir:{folder}"

    def save_classifier(self, model: nn.Module, out_dir: Path) -> list[str]:
        """timm's Hub format (config.json with the preprocessing + model.safetensors): `timm.create_model(
        "local-dir:RUN", pretrained=True)` loads it, and `hf-hub:me/repo` once pushed."""
        from timm.models import save_for_hf

        labels = getattr(model, "pretrained_cfg", {}).get("label_names")
        extra = {"label_names": list(labels)} if labels else {}
        # data_config: the preprocessing this run used (data.image_size included), not the checkpoint's
        save_for_hf(model, str(out_dir), model_config=extra, safe_serialization=True, data_config=self.data_config)
        return [CONFIG_FILE, WEIGHTS_FILE]

    def load_classifier(self, run_dir: Path, label_names: list[str]) -> nn.Module:
        run_dir = Path(run_dir)
        path = run_dir / CONFIG_FILE
        if not path.is_file() or not (run_dir / WEIGHTS_FILE).is_file():
            raise ModelError(f"run folder '{run_dir}' lacks {CONFIG_FILE} or {WEIGHTS_FILE}; train the run again.")
        saved = json.loads(path.read_text(encoding="utf-8")).get("num_classes")
        if saved != len(label_names):
            raise ModelError(
                f"run folder '{run_dir}' holds a model for {saved} classes, not {len(label_names)}; "
                "it is damaged or from another run."
            )
        try:
            model = timm.create_model(f"local-dir:{run_dir}", pretrained=True)
        except (OSError, RuntimeError, ValueError, KeyError) as err:
            raise ModelError(f"run folder '{run_dir}' does not load as a timm model ({_first_line(err)}).") from None
        return prepared_for_loop(with_label_names(model, label_names))

    # --- run folder -----------------------------------------------------------------------------------------
    def save_preprocessing(self, out_dir: Path, label_names: list[str] | None = None) -> None:
        """timm's config.json, so that the run folder predicts without the checkpoint's files. A fine-tuned
        classifier's own config.json (written by `save_classifier`) already holds it; other strategies get one
        describing the base architecture and its resolved preprocessing."""
        path = Path(out_dir) / CONFIG_FILE
        if path.is_file():
            return
        source = self.source
        pretrained_cfg = filter_pretrained_cfg(dict(self._pretrained_cfg()), remove_source=True, remove_null=True)
        pretrained_cfg.update(self.data_config)
        pretrained_cfg.pop("architecture", None)
        labels = list(label_names or [])
        pretrained_cfg["num_classes"] = len(labels)
        model_args = dict(source.get("pretrained_model_args") or {}, num_classes=len(labels))
        if self.data_cfg.image_size and pretrained_cfg.get("fixed_input_size"):
            model_args["img_size"] = self.data_cfg.image_size
        config = {
            "architecture": source["model_name"],
            "num_classes": len(labels),  # 0: the run's timm part is a feature extractor (a linear probe)
            **({"label_names": labels} if labels else {}),
            "model_args": model_args,
            "pretrained_cfg": pretrained_cfg,
        }
        path.write_text(json.dumps(config, indent=2, default=list) + "\n", encoding="utf-8")


def with_label_names(model: nn.Module, label_names: list[str]) -> nn.Module:
    """`model` carrying its classes in its pretrained cfg, as timm's Hub format stores them (`label_names`), so
    saving it needs no one to remember them; a source stage's names are replaced."""
    model.pretrained_cfg = {**getattr(model, "pretrained_cfg", {}), "label_names": list(label_names)}
    return model


def short_module_names(model: nn.Module, chosen: set[str]) -> list[str]:
    """Short, unambiguous names for PEFT's `target_modules` (matched as name suffixes) that cover exactly `chosen`.

    Each module is named by its last part with its parent (`attn.qkv`, `mlp.fc1`, `se.conv_reduce`), or its last
    part alone where the parent is a block index (`conv_pw`, `conv1`), lengthened where that would also match a
    module outside `chosen` (`downsample.0` rather than `0`).
    """
    all_names = [name for name, _ in model.named_modules() if name]
    out: list[str] = []
    for name in sorted(chosen, key=all_names.index):
        parts = name.split(".")
        size = 2 if len(parts) > 1 and not parts[-2].isdigit() else 1
        while True:
            suffix = ".".join(parts[-size:])
            matches = {n for n in all_names if n == suffix or n.endswith("." + suffix)}
            if matches <= chosen or size >= len(parts):
                break
            size += 1
        if suffix not in out:
            out.append(suffix)
    return out
