"""What every image backbone shares (timm's and transformers'): the image column's rows read, checked, fingerprinted
for the feature cache and collated alike, so that only the library's own transform (`transform(train)`) differs."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from contextlib import contextmanager

import torch
from datasets import Dataset
from datasets import Image as ImageFeature

from hf_transfer.backbones.base import Backbone
from hf_transfer.core.errors import DataError
from hf_transfer.data.images import UnreadableImage, image_dirs, image_files_fingerprint, load_image
from hf_transfer.data.modalities.image import IMAGE
from hf_transfer.problems.base import LABEL, labels_tensor

INPUT = "pixel_values"


@contextmanager
def single_thread():
    """One intra-op thread while transforming single images: their tensor ops are too small to gain from
    threads, and on a busy CPU the thread pool's synchronisation costs far more than the work (figures in
    benchmarks/RESULTS.md)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def collate_pixels(rows: list[dict]) -> dict[str, torch.Tensor]:
    return {INPUT: torch.stack([row[INPUT] for row in rows]), LABEL: labels_tensor([row[LABEL] for row in rows])}


class ImageBackbone(Backbone):
    """A backbone that reads one image column: `TimmImageBackbone`, `TransformersImageBackbone`."""

    modality = IMAGE

    @property
    @abstractmethod
    def data_config(self) -> dict:
        """The resolved preprocessing settings (input size, mean, std, ...)."""

    @abstractmethod
    def transform(self, train: bool) -> Callable:
        """The transform of one PIL image to float CHW pixels: with the training augmentation when `train`."""

    def check_loadable(self) -> None:
        self.data_config  # noqa: B018 - a cached property: reading the checkpoint's preprocessing is the check

    def input_files_signature(self, split: Dataset) -> str | None:
        return image_files_fingerprint(split, self.data_cfg.image_column, image_dirs(self.data_cfg))

    def prepare(self, split: Dataset, train: bool) -> Dataset:
        """Rows decoded and transformed when read (`with_transform`): `pixel_values` (float CHW) + `labels`."""
        column = self.data_cfg.image_column
        if column not in split.column_names:
            raise DataError(f"column '{column}' (data.image_column) is missing; its columns are {split.column_names}.")
        transform = self.transform(train)
        dirs = image_dirs(self.data_cfg)
        split = split.select_columns([column, LABEL])
        if isinstance(split.features[column], ImageFeature):
            split = split.cast_column(column, ImageFeature(decode=False))  # decode here, to name a bad file

        def apply(batch):
            pixels = []
            with single_thread():
                for value in batch[column]:
                    try:
                        pixels.append(transform(load_image(value, dirs)))
                    except UnreadableImage as err:
                        raise DataError(f"{err.source} is not usable as an image: {err.reason}.") from None
                    except TypeError as err:
                        raise DataError(
                            f"column '{column}' (data.image_column) holds no images ({err}); set data.image_column."
                        ) from None
            return {INPUT: pixels, LABEL: batch[LABEL]}

        return split.with_transform(apply)

    def collate_fn(self) -> Callable:
        return collate_pixels
