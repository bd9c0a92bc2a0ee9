"""Atomic writes: a reader sees the old file or the new one, whole, never half of either."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path

import yaml


def atomic_write(path: Path, write: Callable[[Path], object], fsync: bool = False) -> None:
    """Call `write(tmp)` on a temporary file beside `path`, then rename it over `path`: a reader sees the old file
    or the new one, whole. When `write` raises, no temporary file stays behind. `fsync` puts the bytes on disk
    before the name, for large files a power cut must not leave empty under their final name (weights, caches)."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")  # unique: processes may write the same file
    try:
        write(tmp)
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, data) -> None:
    text = json.dumps(data, indent=2, sort_keys=False, default=str) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_yaml(path: Path, data) -> None:
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
