"""Text: one text column (and an optional second one, for sentence pairs); a row with no text is dropped and counted,
never trained or scored on."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from hf_transfer.core.errors import DataError
from hf_transfer.data.modalities.base import Modality, SnippetContext

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict

    from hf_transfer.config.sections import DataConfig

logger = logging.getLogger(__name__)

EXAMPLE = "A small gem of a movie."


def is_empty_text(value) -> bool:
    """A cell with nothing to read: missing (a blank CSV cell), not a string, or only whitespace."""
    return not isinstance(value, str) or not value.strip()


def empty_text_rows(split: Dataset, columns: list[str]) -> list[int]:
    """Rows of `split` where any of the text `columns` (present in it) is empty."""
    rows = set()
    for column in columns:
        if column in split.column_names:
            rows.update(row for row, value in enumerate(split[column]) if is_empty_text(value))
    return sorted(rows)


def drop_empty_texts(
    raw: DatasetDict, columns: list[str], where: Callable[[str], str]
) -> tuple[DatasetDict, dict[str, int]]:
    """The splits without their empty-text rows, and how many each lost (logged as a warning).

    Dropped rather than refused: a few blank cells are common in exported data, and a run should not fail for
    them; trained on, an empty input would only teach the model its class prior, and scored, it would blur the
    metrics. The counts go into the run's metrics (`skipped_rows`) so that nothing is lost silently. A split
    with no text at all is an error: that is a wrong column or file, not a few blank cells.
    """
    from datasets import DatasetDict

    kept, skipped = {}, {}
    for role, split in raw.items():
        rows = empty_text_rows(split, columns)
        if not rows:
            kept[role] = split
            continue
        if len(rows) == len(split):
            raise DataError(
                f"every row of {where(role)} has an empty text in column {', '.join(repr(c) for c in columns)}; "
                "check the file and data.text_column."
            )
        logger.warning(
            "%s: dropped %d of %d rows with an empty text (first: row %d); they are counted in skipped_rows",
            where(role),
            len(rows),
            len(split),
            rows[0],
        )
        drop = set(rows)
        kept[role] = split.select([row for row in range(len(split)) if row not in drop])
        skipped[role] = len(rows)
    return DatasetDict(kept), skipped


class TextModality(Modality):
    name = "text"
    task = "text-classification"
    zero_shot_templates = ("{label}",)
    card_example = (f'"{EXAMPLE}"', f'"{EXAMPLE}"')

    def required_columns(self, data: DataConfig) -> tuple[list[str], dict[str, str]]:
        columns, fields = [data.text_column], {data.text_column: "data.text_column"}
        if data.text_pair_column:
            columns.append(data.text_pair_column)
            fields[data.text_pair_column] = "data.text_pair_column"
        return columns, fields

    def check_rows(self, raw: DatasetDict, data: DataConfig) -> tuple[DatasetDict, dict[str, int]]:
        """The raw splits without their empty-text rows, counted in `skipped_rows` (see `drop_empty_texts`)."""
        from hf_transfer.data.splits import describe_split

        columns, _ = self.required_columns(data)
        return drop_empty_texts(raw, columns, lambda role: describe_split(role, data))

    def drop_empty_inputs(self, raw: DatasetDict, data: DataConfig, where: str) -> tuple[DatasetDict, dict[str, int]]:
        columns, _ = self.required_columns(data)
        return drop_empty_texts(raw, columns, lambda _: where)

    def input_column(self, data: DataConfig) -> str:
        return data.text_column

    def rows_of_inputs(self, inputs: list, data: DataConfig) -> dict[str, list]:
        """Texts; a sentence-pair run (data.text_pair_column, GLUE STS-B) takes each input as a (text, pair) tuple,
        as transformers' pipeline takes {"text", "text_pair"}."""
        pair = data.text_pair_column
        if not pair:
            return super().rows_of_inputs(inputs, data)
        if not all(isinstance(x, (tuple, list)) and len(x) == 2 for x in inputs):
            raise DataError(
                f"this run reads sentence pairs ({data.text_column}, {pair}); give each input as a (text, pair) "
                "tuple, or evaluate a file with both columns through `eval --data`."
            )
        return {data.text_column: [str(x[0]) for x in inputs], pair: [str(x[1]) for x in inputs]}

    def card_snippet(self, context: SnippetContext) -> tuple[str, str] | None:
        c = context
        if c.library != "transformers":
            return None
        if c.strategy in ("lora", "ia3"):
            code = (
                "from peft import PeftModel\n"
                "from transformers import AutoModelForSequenceClassification, AutoTokenizer\n\n"
                f"labels = {json.dumps(c.label_names)}\n"
                "base = AutoModelForSequenceClassification.from_pretrained(\n"
                f'    "{c.base}", num_labels=len(labels),\n'
                "    id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)},\n"
                ")\n"
                f'model = PeftModel.from_pretrained(base, "{c.location}"{c.at}).eval()\n'
                f'tokenizer = AutoTokenizer.from_pretrained("{c.location}"{c.at})\n'
                f'inputs = tokenizer(["{EXAMPLE}"], return_tensors="pt", padding=True)\n'
                + c.decision("model(**inputs).logits.detach()", "")
            )
            return "PEFT and transformers", code
        if c.strategy != "finetune":
            return None
        # the config's problem_type makes the pipeline score as the run did
        code = "from transformers import pipeline\n\n" + c.pipeline(f'model="{c.location}"{c.at}', f'"{EXAMPLE}"')
        return "transformers", code


TEXT = TextModality()
