"""Image + text: an image column and a text column read together, by two towers (`model.image`, `model.text`) whose
features are fused; each row passes both towers' checks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from hf_transfer.core.errors import DataError, HfTransferError, RecipeError
from hf_transfer.data.modalities.base import ROW_FILE_SUFFIXES, Modality, check_has_columns, existing_file
from hf_transfer.data.modalities.image import IMAGE
from hf_transfer.data.modalities.text import TEXT

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict

    from hf_transfer.config.recipe import Recipe
    from hf_transfer.config.sections import DataConfig
    from hf_transfer.runs.record import BackboneRecord


class MultimodalModality(Modality):
    name = "multimodal"
    task = "multimodal-classification"
    towers = (IMAGE, TEXT)
    decodes_images = True
    card_example = ('--image image.jpg --text "seven"', '("image.jpg", "seven")')

    def check_recipe(self, recipe: Recipe) -> None:
        """Both towers named (a lone model.checkpoint was made both already: a CLIP or SigLIP), and no baseline
        or source stage but the one-tower probes."""
        model = recipe.model
        missing = [f"model.{name}" for name in self.tower_names if getattr(model, name) is None]
        if missing and model.checkpoint:
            raise RecipeError(
                f"model.checkpoint with only one of {' / '.join(f'model.{n}' for n in self.tower_names)} is "
                f"ambiguous for {self.task}; give model.checkpoint alone (a CLIP or SigLIP) or both towers."
            )
        if missing:
            needed = " and ".join(f"model.{n}" for n in self.tower_names)
            raise RecipeError(f"{missing[0]} is missing; task {self.task} needs {needed}.")
        if recipe.source is not None or any(self.baseline_tower(b) is None for b in recipe.baseline):
            baselines = " and ".join(f"{n}_only" for n in self.tower_names)
            raise RecipeError(f"{self.task} takes baselines {baselines}, and no source stage.")

    def required_columns(self, data: DataConfig) -> tuple[list[str], dict[str, str]]:
        columns, fields = [], {}
        for tower in self.towers:
            more, named = tower.required_columns(data)
            columns += [c for c in more if c not in columns]
            fields |= named
        return columns, fields

    def check_rows(self, raw: DatasetDict, data: DataConfig) -> tuple[DatasetDict, dict[str, int]]:
        """Both towers' checks in turn (images decode, texts are not empty); rows either drops are counted."""
        skipped: dict[str, int] = {}
        for tower in self.towers:
            raw, dropped = tower.check_rows(raw, data)
            for role, n in dropped.items():
                skipped[role] = skipped.get(role, 0) + n
        return raw, skipped

    def drop_empty_inputs(self, raw: DatasetDict, data: DataConfig, where: str) -> tuple[DatasetDict, dict[str, int]]:
        from hf_transfer.data.modalities.text import drop_empty_texts

        return drop_empty_texts(raw, [data.text_column], lambda _: where)

    def input_column(self, data: DataConfig) -> str:
        """The text column: what an input's second part fills (its first, the image, fills data.image_column)."""
        return data.text_column

    def rows_of_inputs(self, inputs: list, data: DataConfig) -> dict[str, list]:
        """(image, text) pairs, or dicts holding both columns."""
        image_column, text_column = data.image_column, data.text_column
        images, texts = [], []
        for x in inputs:
            if isinstance(x, dict):
                x = (x.get(image_column), x.get(text_column))
            if not isinstance(x, (tuple, list)) or len(x) != 2:
                raise DataError(
                    f"a multimodal run predicts on (image, text) pairs or dicts with '{image_column}' and "
                    f"'{text_column}', not {type(x).__name__}; give one pair per example."
                )
            images.append(x[0])
            texts.append(x[1])
        return {image_column: images, text_column: texts}

    def read_inputs(
        self,
        arguments: list[str],
        file: str | None,
        images: list[str],
        texts: list[str],
        data: DataConfig,
        read_rows: Callable[[Path], Dataset],
    ) -> list[tuple]:
        """(image, text) pairs: `--image A --text B`, repeated, and the rows of `--file`."""
        image_column, text_column = data.image_column, data.text_column
        if arguments:
            raise HfTransferError(
                "a multimodal run takes each example as --image PATH --text TEXT (repeat both per example), or "
                f"--file with columns '{image_column}' and '{text_column}'."
            )
        images, texts = images or [], texts or []
        if len(images) != len(texts):
            raise HfTransferError(
                f"predict got {len(images)} --image and {len(texts)} --text; give one of each per example, in order."
            )
        pairs = list(zip(images, texts))
        if file:
            path = existing_file(file)
            if path.suffix.lower() not in ROW_FILE_SUFFIXES:
                raise HfTransferError(
                    f"--file '{path}' must be a csv or jsonl file with columns '{image_column}' and "
                    f"'{text_column}' for a multimodal run."
                )
            rows = read_rows(path)
            check_has_columns(rows, [image_column, text_column], path)
            for image, text in zip(rows[image_column], rows[text_column]):
                # an image path relative to the file is read from the file's folder, as data files' paths are
                if isinstance(image, str) and not Path(image).is_file() and (path.parent / image).is_file():
                    image = str(path.parent / image)
                pairs.append((image, text))
        if not pairs:
            raise HfTransferError("predict needs inputs: give --image PATH --text TEXT, or --file.")
        return pairs

    def card_summary(self, backbone: BackboneRecord) -> str:
        towers = " and ".join(
            f"the {name} tower `{tower.base}` ({tower.library})" for name, tower in backbone.towers.items()
        )
        return f"A multimodal (image + text) classifier, {towers}, features fused by {backbone.fusion},"


MULTIMODAL = MultimodalModality()
