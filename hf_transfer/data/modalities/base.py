"""The surface of an input kind (text, image, image + text): what differs between them, asked of one object.

An input kind names the task it serves (`text-classification`), the columns a recipe's data must hold for it and the
recipe rules about them, the checks its rows pass before training, how raw inputs become rows for `predict`, the
examples and code its model card shows, and which backbone library serves it by default. Nothing here imports a
heavy library at module level: the recipe schema asks an input kind for its rules, and `hf-transfer validate`
loads no torch or datasets. The checks that need `datasets` or PIL import them where they run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from hf_transfer.core.errors import HfTransferError, RecipeError

if TYPE_CHECKING:  # configs sit above data: the recipe asks its input kind for its rules
    from datasets import Dataset, DatasetDict

    from hf_transfer.config.recipe import Recipe
    from hf_transfer.config.sections import DataConfig
    from hf_transfer.runs.record import BackboneRecord

ROW_FILE_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".parquet")
"""Files `predict --file` reads as rows with columns; any other file is one input per non-empty line."""


@dataclass(frozen=True)
class SnippetContext:
    """What a card's loading snippet is written from: the run's base model, labels and where it is loaded from.

    `decision(expression, indent)` is the code that prints what `predict` gives for the model's outputs
    `expression` (one label, the labels above their thresholds, or the values): the problem type's part.
    `pipeline(model_args, example)` is the same through transformers' text-classification pipeline, built with
    `model_args`, for the Python literal `example`.
    """

    library: str
    strategy: str
    base: str | None
    label_names: list[str]
    location: str
    at: str  # `, revision="..."` or ""
    decision: Callable[[str, str], str]
    pipeline: Callable[[str, str], str]


class Modality:
    """One input kind. Subclasses set the class attributes and answer every method; `MODALITIES` holds one of each.

    `towers`: the input kinds composed by this one, in order (image + text: the image and the text kind), each
    read by a backbone of its own; empty for a kind one backbone reads.
    """

    name: ClassVar[str]
    task: ClassVar[str]
    towers: ClassVar[tuple[Modality, ...]] = ()
    decodes_images: ClassVar[bool] = False
    """Whether reading a row decodes an image file (loader workers pay off; zero-shot needs an image processor)."""
    zero_shot_templates: ClassVar[tuple[str, ...]] = ()
    """The prompts a zero-shot baseline uses when `zero_shot.templates` is left out."""
    card_example: ClassVar[tuple[str, str]] = ("", "")
    """An input as the card's `hf-transfer predict` command line and its Python call write it."""

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<input kind {self.name}>"

    @property
    def tower_names(self) -> tuple[str, ...]:
        """The towers' names, as `model.<name>` and a run record's backbone name them."""
        return tuple(tower.name for tower in self.towers)

    # --- the recipe -----------------------------------------------------------------------------------------
    def default_library(self, is_transformers_vision: Callable[[], bool]) -> str:
        """The backbone library `model.library: auto` picks (`is_transformers_vision` reads the checkpoint)."""
        return "transformers"

    def check_recipe(self, recipe: Recipe) -> None:
        """A RecipeError for settings of a recipe of this kind that do not fit it (its towers, baselines, source);
        the settings that belong to another kind (its towers) that kind refuses (see `refuse_own_settings`)."""

    def refuse_own_settings(self, recipe: Recipe) -> None:
        """A RecipeError for what only this kind takes (`model.image`, baseline `image_only`) in a recipe of
        another input kind."""
        if self.towers and recipe.model.towers:
            raise RecipeError(
                f"model.{next(iter(recipe.model.towers))} is only for task {self.task}; use model.checkpoint for a "
                "single backbone."
            )
        single = [b for b in recipe.baseline if self.baseline_tower(b) is not None]
        if single:
            raise RecipeError(f"baseline {single[0]} is only for task {self.task}.")

    def baseline_tower(self, baseline: str) -> Modality | None:
        """The tower that a one-tower baseline (`image_only`) probes alone, or None where `baseline` is no such."""
        return next((tower for tower in self.towers if baseline == f"{tower.name}_only"), None)

    # --- rows -----------------------------------------------------------------------------------------------
    def required_columns(self, data: DataConfig) -> tuple[list[str], dict[str, str]]:
        """Columns the raw data must hold, and the recipe field that names each."""
        raise NotImplementedError

    def check_rows(self, raw: DatasetDict, data: DataConfig) -> tuple[DatasetDict, dict[str, int]]:
        """The raw splits with rows a model cannot read reported (an error naming the row) or dropped, and how many
        each split lost (counted in the run's `skipped_rows`)."""
        raise NotImplementedError

    def drop_empty_inputs(self, raw: DatasetDict, data: DataConfig, where: str) -> tuple[DatasetDict, dict[str, int]]:
        """New labelled rows (`hf-transfer eval --data`) without those with nothing to read, and how many each
        split lost; images are read when they are predicted on."""
        return raw, {}

    # --- raw inputs for predict -----------------------------------------------------------------------------
    def input_column(self, data: DataConfig) -> str:
        """The column one raw input fills (and `predict --file` reads)."""
        raise NotImplementedError

    def rows_of_inputs(self, inputs: list, data: DataConfig) -> dict[str, list]:
        """`predict`'s raw inputs (texts, image paths or PIL images, (image, text) pairs) as columns of rows."""
        return {self.input_column(data): list(inputs)}

    def read_inputs(
        self,
        arguments: list[str],
        file: str | None,
        images: list[str],
        texts: list[str],
        data: DataConfig,
        read_rows: Callable[[Path], Dataset],
    ) -> list:
        """`hf-transfer predict`'s inputs: its arguments and the lines or rows of `--file` (read by `read_rows`);
        `--image` / `--text` are for image + text runs."""
        if images or texts:
            raise HfTransferError(
                f"--image and --text are for multimodal runs; this run is a {self.name} classifier, so give its "
                "inputs as arguments."
            )
        inputs = list(arguments)
        if file:
            path = existing_file(file)
            if path.suffix.lower() in ROW_FILE_SUFFIXES:
                rows = read_rows(path)
                column = self.input_column(data)
                check_has_columns(rows, [column], path)
                inputs += list(rows[column])
            else:
                inputs += [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not inputs:
            raise HfTransferError("predict needs inputs: give them as arguments or with --file.")
        return inputs

    # --- the model card -------------------------------------------------------------------------------------
    def card_summary(self, backbone: BackboneRecord) -> str:
        """The card's first words about the model (`backbone`: what the run record says of its backbone)."""
        return f"A {self.name} classifier"

    def card_snippet(self, context: SnippetContext) -> tuple[str, str] | None:
        """(library, code) that loads the run without hf-transfer where its library can; None where none can."""
        return None


def existing_file(file: str) -> Path:
    """`predict --file` as a path; an HfTransferError when there is no such file."""
    path = Path(file)
    if not path.is_file():
        raise HfTransferError(f"--file '{path}' does not exist.")
    return path


def check_has_columns(rows: Dataset, columns: list[str], path: Path) -> None:
    """An HfTransferError naming the first of `columns` that the rows of `--file` lack."""
    for column in columns:
        if column not in rows.column_names:
            raise HfTransferError(
                f"--file '{path}' has no column '{column}'; its columns are {', '.join(rows.column_names)}."
            )
