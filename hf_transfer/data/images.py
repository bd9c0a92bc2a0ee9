"""Images for the image backbones: decoding any form a `datasets` column holds, RGB conversion, bad-file checks.

An image column may hold a `datasets.Image` feature (imagefolder, Hub datasets), file paths (csv/jsonl files that
list images; relative paths are read from the current folder, then from each data file's folder), raw bytes or PIL
images (`hf_transfer.load(run).predict([...])`). Every image becomes RGB: grayscale, palette, 16-bit and RGBA inputs
included (transparent pixels go on white). The data sets the package builds offline are in `data.builtins`.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow.compute as pc
from datasets import ClassLabel, Dataset, DatasetDict
from datasets import Image as ImageFeature
from PIL import Image, ImageOps, UnidentifiedImageError

from hf_transfer.core.errors import DataError

if TYPE_CHECKING:  # configs sit above data: the recipe asks data's input kinds for their rules
    from hf_transfer.config.sections import DataConfig

logger = logging.getLogger(__name__)

SKIP_HINT = "delete or fix it, or set data.skip_bad_images=true to skip such files"


class UnreadableImage(Exception):
    """An image that cannot be decoded: `source` names it (a file path, or a description), `reason` says why."""

    def __init__(self, source: str, reason: str):
        super().__init__(f"{source}: {reason}")
        self.source, self.reason = source, reason


# ---------------------------------------------------------------------------------------------------------------
# Decoding


def image_dirs(cfg: DataConfig) -> list[Path]:
    """Folders relative image paths are looked up in, after the current folder: those of the data files."""
    dirs: list[Path] = []
    for f in [*cfg.train_files, *cfg.validation_files, *cfg.test_files]:
        parent = Path(f).parent
        if parent not in dirs:
            dirs.append(parent)
    return dirs


def resolve_image_path(value: str | os.PathLike, dirs: list[Path] = ()) -> Path:
    """The file a path in a data file names: as given (absolute, or relative to the current folder), or relative
    to one of `dirs`; raises UnreadableImage when none exists."""
    path = Path(value).expanduser()
    if path.is_file() or path.is_absolute():
        if not path.is_file():
            raise UnreadableImage(f"'{value}'", "the file does not exist")
        return path
    for folder in dirs:
        if (folder / path).is_file():
            return folder / path
    raise UnreadableImage(f"'{value}'", "the file does not exist")


def to_rgb(image: Image.Image) -> Image.Image:
    """`image` as 8-bit RGB: EXIF rotation applied, transparency flattened on white, 16/32-bit gray rescaled."""
    image = ImageOps.exif_transpose(image) or image
    if image.mode == "RGB":
        return image
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        pixels = np.asarray(image, dtype=np.float32)
        top = float(pixels.max()) if pixels.size else 0.0
        scale = 255.0 / 65535.0 if top > 255.0 else 1.0  # 16-bit scans and PNGs
        image = Image.fromarray(np.clip(pixels * scale, 0, 255).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _decode(opener: Callable[[], Image.Image], source: str) -> Image.Image:
    try:
        image = opener()
        image.load()  # decode now: a truncated file fails here, not inside a transform
    except FileNotFoundError:
        raise UnreadableImage(source, "the file does not exist") from None
    except UnidentifiedImageError:
        raise UnreadableImage(source, "it is not an image file PIL can read") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UnreadableImage(source, f"it does not decode ({first})") from None
    return image


def image_source(value) -> str:
    """How an error message names an image: its file path when it has one."""
    if isinstance(value, dict) and value.get("path"):
        return f"'{value['path']}'"
    if isinstance(value, (str, os.PathLike)):
        return f"'{value}'"
    if isinstance(value, Image.Image) and getattr(value, "filename", None):
        return f"'{value.filename}'"
    return "an image without a file name"


def load_image(value, dirs: list[Path] = ()) -> Image.Image:
    """The RGB image that a column value holds: a PIL image, `datasets.Image` (decode=False) dict, path or bytes.

    Raises UnreadableImage naming the file; `TypeError` when the value is no kind of image at all.
    """
    if isinstance(value, Image.Image):
        return to_rgb(value)
    if isinstance(value, dict) and ("bytes" in value or "path" in value):
        if value.get("bytes") is not None:
            data = value["bytes"]
            return to_rgb(_decode(lambda: Image.open(io.BytesIO(data)), image_source(value)))
        if value.get("path"):
            return load_image(value["path"], dirs)
        raise UnreadableImage(image_source(value), "the row holds neither image bytes nor a path")
    if isinstance(value, (str, os.PathLike)):
        if isinstance(value, str) and not value.strip():
            raise UnreadableImage("an empty path", "the row names no file")
        path = resolve_image_path(value, dirs)
        return to_rgb(_decode(lambda: Image.open(path), f"'{value}'"))
    if isinstance(value, (bytes, bytearray)):
        data = bytes(value)
        return to_rgb(_decode(lambda: Image.open(io.BytesIO(data)), image_source(value)))
    if isinstance(value, np.ndarray) and value.ndim in (2, 3) and value.dtype == np.uint8:
        return to_rgb(Image.fromarray(value))
    if value is None:
        raise UnreadableImage("an empty cell", "the row holds no image")
    raise TypeError(f"{type(value).__name__} is not an image")


# ---------------------------------------------------------------------------------------------------------------
# What the pixels are, for caches keyed on them

CONTENT_HASH_LIMIT = 512 * 2**20  # bytes of image files a fingerprint reads; above it, size and mtime only


def _image_file_of(value, dirs: list[Path]) -> Path | None:
    """The file a column value reads its pixels from, or None where the row holds the bytes itself."""
    if isinstance(value, dict):
        if value.get("bytes") is not None:
            return None
        value = value.get("path")
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        return None
    try:
        return resolve_image_path(value, dirs)
    except UnreadableImage:
        return None


def image_files_fingerprint(
    split: Dataset, column: str, dirs: list[Path] = (), content_limit: int = CONTENT_HASH_LIMIT
) -> str | None:
    """A digest of the image files `split`'s rows name (file paths, or `datasets.Image` rows that hold a path and no
    bytes): each file's path, size and mtime, and its bytes while the files total at most `content_limit`.

    A split's `datasets` fingerprint covers a csv of paths or imagefolder's file list, not the pixels behind them:
    an image overwritten in place must change this digest. None when no row names a file (bytes embedded in the
    rows are covered by the fingerprint)."""
    if column not in split.column_names:
        return None
    feature = split.features[column]
    if isinstance(feature, ImageFeature):
        # In Arrow, never as Python objects: rows that embed their bytes (Hub datasets) may hold gigabytes.
        stored = split.select_columns([column]).with_format("arrow")[column]
        embedded = pc.is_valid(pc.struct_field(stored, "bytes")).to_pylist()
        paths = pc.struct_field(stored, "path").to_pylist()
        values = [None if inline else path for inline, path in zip(embedded, paths)]
    elif _is_path_column(feature):
        values = split[column]
    else:
        return None
    files = [_image_file_of(value, dirs) for value in values]
    stats = {f: f.stat() for f in set(files) if f is not None}
    if not stats:
        return None
    content = {}
    if sum(st.st_size for st in stats.values()) <= content_limit:
        content = {f: hashlib.blake2b(f.read_bytes(), digest_size=16).hexdigest() for f in stats}
    digest = hashlib.blake2b(digest_size=16)
    for f in files:
        if f is None:
            digest.update(b"-\n")
            continue
        st = stats[f]
        digest.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\0{content.get(f, '')}\n".encode())
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------------------------
# Checking a column before training


def _describe_feature(feature) -> str:
    if isinstance(feature, ClassLabel):
        return "class labels"
    dtype = getattr(feature, "dtype", None)
    return f"{dtype} values" if dtype else f"{type(feature).__name__} values"


def _where(role: str, cfg: DataConfig) -> str:
    if cfg.dataset:
        name = {"train": cfg.train_split, "validation": cfg.validation_split, "test": cfg.test_split}.get(role, role)
        return f"split '{name}' of {cfg.dataset}"
    files = {"train": cfg.train_files, "validation": cfg.validation_files, "test": cfg.test_files}.get(role, [])
    return ", ".join(files) or f"the {role} split"


def _is_path_column(feature) -> bool:
    return getattr(feature, "dtype", None) in ("string", "large_string")


def check_image_column(split: Dataset, column: str, role: str, cfg: DataConfig) -> tuple[Dataset, int]:
    """`split` without the rows whose image does not decode, and how many were dropped.

    Every image is decoded once (datasets caches the result for file-backed data, so a second run reads it). A bad
    row is a DataError naming its file unless `data.skip_bad_images` is set; a column that holds no images at all
    is always an error.
    """
    feature = split.features[column]
    where = _where(role, cfg)
    field_hint = "set data.image_column to the column with images or image paths"
    if isinstance(feature, ImageFeature):
        undecoded = split.cast_column(column, ImageFeature(decode=False))
    elif _is_path_column(feature):
        undecoded = split
    else:
        raise DataError(
            f"column '{column}' (data.image_column) of {where} holds {_describe_feature(feature)}, not images; "
            f"{field_hint} (columns: {', '.join(split.column_names)})."
        )
    dirs = image_dirs(cfg)
    if _is_path_column(feature):
        head = [v for v in split[column][:20] if isinstance(v, str) and v.strip()]
        exists = [v for v in head if _exists(v, dirs)]
        if head and not exists:
            raise DataError(
                f"column '{column}' (data.image_column) of {where} holds no image files: '{head[0]}' (row 0) does "
                "not exist (relative paths are read from the current folder or the data file's folder); "
                f"{field_hint}."
            )

    def check(batch):
        errors = []
        for value in batch[column]:
            try:
                load_image(value, dirs)
                errors.append("")
            except UnreadableImage as err:
                errors.append(f"{err.source} is not usable: {err.reason}")
            except TypeError as err:
                errors.append(f"column '{column}' holds a {str(err).split(' is ')[0]}, not an image")
        return {"error": errors}

    errors = undecoded.select_columns([column]).map(
        check, batched=True, batch_size=64, remove_columns=[column], desc=f"Checking {role} images"
    )["error"]
    bad = [i for i, e in enumerate(errors) if e]
    if not bad:
        return split, 0
    if not cfg.skip_bad_images:
        raise DataError(f"row {bad[0]} of {where}: {errors[bad[0]]}; {SKIP_HINT}.")
    if len(bad) == len(split):
        raise DataError(f"no image of {where} decodes ({errors[bad[0]]}); {field_hint}.")
    logger.warning(
        "skipped %d bad image(s) in %s (data.skip_bad_images); the first: %s", len(bad), where, errors[bad[0]]
    )
    bad_set = set(bad)
    return split.select([i for i in range(len(split)) if i not in bad_set]), len(bad)


def _exists(value: str, dirs: list[Path]) -> bool:
    try:
        resolve_image_path(value, dirs)
    except UnreadableImage:
        return False
    return True


def check_image_splits(raw: DatasetDict, cfg: DataConfig) -> tuple[DatasetDict, dict[str, int]]:
    """Every split's image column checked (see `check_image_column`): the splits kept, and rows skipped per split.

    Also turns imagefolder's silence about a single class folder into an error that says what to do.
    """
    column = cfg.image_column
    if cfg.dataset == "imagefolder" and all(cfg.label_column not in s.column_names for s in raw.values()):
        raise DataError(
            f"imagefolder found fewer than two class folders in data.data_dir '{cfg.data_dir}' (it takes labels "
            "from sub-folder names); put each class's images in its own sub-folder, at least two classes."
        )
    checked, skipped = {}, {}
    for role, split in raw.items():
        if column not in split.column_names:
            checked[role] = split  # require_columns names the missing column and the columns there are
            continue
        checked[role], dropped = check_image_column(split, column, role, cfg)
        if dropped:
            skipped[role] = dropped
    return DatasetDict(checked), skipped


# ---------------------------------------------------------------------------------------------------------------
# Data sets built in, offline
