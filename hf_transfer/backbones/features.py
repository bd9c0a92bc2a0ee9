"""Extract pooled features from a frozen backbone once, and cache them on disk.

The cache key covers the checkpoint (its files' sizes and times), the data (the split's `datasets`
fingerprint, and the image files its rows name: their sizes, times and, where cheap, bytes), the preprocessing
and the pooling, so a second run with other head settings, another fold or another seed reads features instead
of running the backbone again, and a run after the images changed does not. Reading the cache or not leaves
torch's random state as it was: a warm run gives what a cold one gives.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import find_executable_batch_size
from datasets import Dataset
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from hf_transfer.backbones import Backbone
from hf_transfer.core.accelerator import wants_channels_last
from hf_transfer.core.files import atomic_write

logger = logging.getLogger(__name__)

# extract_batch_size auto: on a GPU, the first that fits of 1024, 512, ... (a frozen forward keeps no activations);
# on a CPU, larger batches gain nothing once the cores are busy and only hold more memory.
GPU_EXTRACT_BATCH = 1024
CPU_EXTRACT_BATCH = 64

FEATURE_FORMAT = 1  # bump when extraction changes meaning, so old caches are not read


def cache_root() -> Path:
    if os.environ.get("HF_TRANSFER_CACHE"):
        return Path(os.environ["HF_TRANSFER_CACHE"]) / "features"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hf_transfer" / "features"


def feature_cache_key(backbone: Backbone, split: Dataset, pooling: str) -> str:
    parts = {
        "format": FEATURE_FORMAT,
        "backbone": backbone.identity(),
        "preprocessing": backbone.preprocessing_signature(),
        "data": split._fingerprint,
        "files": backbone.input_files_signature(split),
        "rows": len(split),
        "pooling": pooling,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


class FeatureDataset(torch.utils.data.Dataset):
    """Cached features and labels, served as {"features", "labels"} rows."""

    reads_draw_random = False  # the training loop reads these rows a batch at a time, unseeded

    def __init__(self, features: torch.Tensor, labels: torch.Tensor):
        self.features, self.labels = features, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return {"features": self.features[i], "labels": self.labels[i]}

    def __getitems__(self, rows: list[int]) -> list[dict]:
        index = torch.as_tensor(rows)
        return [{"features": f, "labels": y} for f, y in zip(self.features[index], self.labels[index])]


def _run_extractor(
    extractor, split: Dataset, backbone: Backbone, accelerator: Accelerator, batch_size: int | str, desc: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features and labels in `split`'s row order; batch_size auto as `GPU_EXTRACT_BATCH` says."""
    if batch_size != "auto":
        return _extract_in_batches(extractor, split, backbone, accelerator, int(batch_size), desc)
    if accelerator.device.type != "cuda":
        return _extract_in_batches(extractor, split, backbone, accelerator, CPU_EXTRACT_BATCH, desc)

    @find_executable_batch_size(starting_batch_size=GPU_EXTRACT_BATCH)
    def largest_that_fits(size: int):
        return _extract_in_batches(extractor, split, backbone, accelerator, size, desc)

    return largest_that_fits()


@torch.no_grad()
def _extract_in_batches(
    extractor, split: Dataset, backbone: Backbone, accelerator: Accelerator, batch_size: int, desc: str
) -> tuple[torch.Tensor, torch.Tensor]:
    prepared = backbone.prepare(split, train=False)
    lengths = backbone.lengths(prepared)
    order = sorted(range(len(prepared)), key=lambda i: lengths[i]) if lengths else list(range(len(prepared)))
    # Its own generator: an iterator over a loader without one draws a seed from torch's global RNG, and a run
    # that reads the cache instead would then initialise and shuffle differently.
    loader = DataLoader(
        prepared, batch_size=batch_size, sampler=order, collate_fn=backbone.collate_fn(), generator=torch.Generator()
    )
    extractor = extractor.to(accelerator.device).eval()
    if wants_channels_last(extractor, accelerator.device):
        extractor.to(memory_format=torch.channels_last)
    chunks, labels = [], []
    for batch in tqdm(loader, desc=desc, disable=not accelerator.is_local_main_process):
        labels.append(batch.pop("labels"))
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        with accelerator.autocast():
            chunks.append(extractor(**batch).float().cpu())
    features = torch.empty((len(order), chunks[0].shape[1]), dtype=torch.float32)
    index = torch.tensor(order)
    features[index] = torch.cat(chunks)
    # class ids stay int64; multi-hot rows and regression targets (float, one row per example) keep their dtype
    all_labels = torch.cat(labels)
    out_labels = torch.empty((len(order), *all_labels.shape[1:]), dtype=all_labels.dtype)
    out_labels[index] = all_labels
    return features, out_labels


def _read_cache(path: Path, rows: int) -> FeatureDataset | None:
    """The cached features at `path`, or None when there are none or the file is not whole (read as a miss)."""
    if not path.is_file():
        return None
    try:
        tensors = load_file(str(path))
        features, labels = tensors["features"], tensors["labels"]
    except (OSError, SafetensorError, KeyError) as err:
        logger.warning("ignoring unreadable feature cache %s (%s); extracting again", path, err)
        return None
    if features.ndim != 2 or len(features) != rows or len(labels) != rows:
        logger.warning("ignoring feature cache %s (%d rows, not %d); extracting again", path, len(labels), rows)
        return None
    return FeatureDataset(features, labels)


def _write_cache(path: Path, features: torch.Tensor, labels: torch.Tensor) -> None:
    """Write through a temporary file renamed into place, so that a reader sees a whole file or none; a failed
    write (disk full) leaves nothing behind and costs only the cache, not the run."""
    tensors = {"features": features.contiguous(), "labels": labels}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: save_file(tensors, str(tmp)), fsync=True)
    except OSError as err:
        logger.warning("could not write the feature cache %s (%s); the next run extracts again", path, err)


def extract_features(
    extractor,
    split: Dataset,
    backbone: Backbone,
    accelerator: Accelerator,
    pooling: str,
    batch_size: int | str,
    name: str,
) -> FeatureDataset:
    """Features of every row of `split` (one backbone pass, or none when cached)."""
    key = feature_cache_key(backbone, split, pooling)
    path = cache_root() / f"{key}.safetensors"
    with accelerator.main_process_first():  # the main process extracts and writes; the others then read
        cached = _read_cache(path, len(split))
        if cached is not None:
            logger.info("features for %s: cache hit %s", name, path)
            return cached
        features, labels = _run_extractor(
            extractor, split, backbone, accelerator, batch_size, desc=f"Extracting {name} features"
        )
        if accelerator.is_main_process:
            _write_cache(path, features, labels)
        return FeatureDataset(features, labels)
