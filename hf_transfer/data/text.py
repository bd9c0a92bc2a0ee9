"""What is particular to text rows: a row with no text is dropped and counted, never trained or scored on."""

from __future__ import annotations

import logging
from collections.abc import Callable

from datasets import Dataset, DatasetDict

from hf_transfer.core.errors import DataError

logger = logging.getLogger(__name__)


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
