"""Images: one column of images or image paths, every one decoded once before training (`hf_transfer.data.images`
holds the decoding, which needs PIL and datasets, so it is imported where a check runs)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from hf_transfer.data.modalities.base import Modality, SnippetContext

if TYPE_CHECKING:
    from datasets import DatasetDict

    from hf_transfer.config.sections import DataConfig

EXAMPLE = "image.jpg"


def timm_source(location: str) -> str:
    """What `timm.create_model` loads `location` by: a run folder on disk (a path is no Hub repo id), a Hub repo."""
    path = Path(location)
    if path.is_absolute() or location.startswith(".") or location.count("/") > 1 or path.is_dir():
        return f"local-dir:{location}"
    return f"hf-hub:{location}" if "/" in location else location


class ImageModality(Modality):
    name = "image"
    task = "image-classification"
    decodes_images = True
    zero_shot_templates = ("a photo of a {label}.",)
    card_example = (EXAMPLE, f'"{EXAMPLE}"')

    def default_library(self, is_transformers_vision: Callable[[], bool]) -> str:
        """transformers for a checkpoint whose config names a vision model type, else timm."""
        return "transformers" if is_transformers_vision() else "timm"

    def required_columns(self, data: DataConfig) -> tuple[list[str], dict[str, str]]:
        return [data.image_column], {data.image_column: "data.image_column"}

    def check_rows(self, raw: DatasetDict, data: DataConfig) -> tuple[DatasetDict, dict[str, int]]:
        """Every image decoded once before training: a bad file is an error naming it, or with
        `data.skip_bad_images` dropped and counted in `skipped_rows` (logged, and in the run's metrics)."""
        from hf_transfer.data.images import check_image_splits

        return check_image_splits(raw, data)

    def input_column(self, data: DataConfig) -> str:
        return data.image_column

    def card_snippet(self, context: SnippetContext) -> tuple[str, str] | None:
        """A fine-tuned transformers image model is a plain repo for `pipeline`; an adapter loads on its base model
        with the image processor the run saved; a fine-tuned timm model loads by `timm.create_model`."""
        c = context
        if c.library == "timm" and c.strategy == "finetune":
            code = (
                "import timm\nimport torch\nfrom PIL import Image\n\n"
                f"labels = {json.dumps(c.label_names)}\n"
                f'model = timm.create_model("{timm_source(c.location)}", pretrained=True)'
                ".eval()\n"
                "config = timm.data.resolve_model_data_config(model)\n"
                "transform = timm.data.create_transform(**config, is_training=False)\n"
                f'image = Image.open("{EXAMPLE}").convert("RGB")\n'
                "with torch.no_grad():\n" + c.decision("model(transform(image).unsqueeze(0))", "    ")
            )
            return "timm", code
        if c.library != "transformers":
            return None
        if c.strategy == "finetune":
            code = (
                "from transformers import pipeline\n\n"
                f'classifier = pipeline("{self.task}", model="{c.location}"{c.at})\n'
                f'print(classifier("{EXAMPLE}")[0]["label"])'
            )
            return "transformers", code
        if c.strategy in ("lora", "ia3"):
            code = (
                "import torch\n"
                "from peft import PeftModel\n"
                "from PIL import Image\n"
                "from transformers import AutoImageProcessor, AutoModelForImageClassification\n\n"
                f"labels = {json.dumps(c.label_names)}\n"
                "base = AutoModelForImageClassification.from_pretrained(\n"
                f'    "{c.base}", num_labels=len(labels), ignore_mismatched_sizes=True,\n'
                "    id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)},\n"
                ")\n"
                f'model = PeftModel.from_pretrained(base, "{c.location}"{c.at}).eval()\n'
                f'processor = AutoImageProcessor.from_pretrained("{c.location}"{c.at})\n'
                f'inputs = processor(Image.open("{EXAMPLE}").convert("RGB"), return_tensors="pt")\n'
                "with torch.no_grad():\n"
                "    print(labels[model(**inputs).logits.argmax(-1).item()])"
            )
            return "PEFT and transformers", code
        return None


IMAGE = ImageModality()
