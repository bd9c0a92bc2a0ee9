"""Data sets the package builds offline, by name (`data.dataset: sklearn:digits`):

`sklearn:digits`, scikit-learn's 8x8 handwritten digits as a `datasets` dataset with an Image feature
(`data.config: "0-4"` for a subset of the classes); `sklearn:digits-multilabel`, several of those digits pasted into
one image ("which digits are in it?"); `sklearn:digits-sum`, the same images with the sum of their digits as a
regression target; `sklearn:digits-and-words`, the same digits paired with texts naming numbers, for multimodal
classification.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
from datasets import Image as ImageFeature
from PIL import Image

from hf_transfer.core.errors import DataError
from hf_transfer.core.registry import Registry

if TYPE_CHECKING:  # configs sit above data: the recipe asks data's input kinds for their rules
    pass


logger = logging.getLogger(__name__)

BUILTIN_DATASETS: Registry[Callable[[str | None], DatasetDict]] = Registry("built-in dataset")
DIGITS_TEST_FRACTION = 0.2


def parse_digit_classes(config: str | None) -> list[int]:
    """`data.config` of sklearn:digits: None / "all" (0-9), a range "0-4", or a list "1,3,5"."""
    if config is None or str(config).strip().lower() in ("", "all", "default"):
        return list(range(10))
    text = str(config).replace(" ", "")
    try:
        if "-" in text and "," not in text:
            low, high = (int(part) for part in text.split("-"))
            classes = list(range(low, high + 1))
        else:
            classes = sorted({int(part) for part in text.split(",")})
    except ValueError:
        classes = []
    if len(classes) < 2 or not all(0 <= c <= 9 for c in classes):
        raise DataError(
            f"data.config '{config}' does not select at least two digits of sklearn:digits; use a range such as "
            "0-4, a list such as 1,3,5, or leave it out for all ten."
        )
    return classes


@BUILTIN_DATASETS.register("sklearn:digits")
def load_sklearn_digits(config: str | None = None) -> DatasetDict:
    """scikit-learn's 1,797 handwritten digits (8x8 grayscale) as train/test splits (80/20, stratified, fixed).

    Columns `image` (an Image feature, mode L, 0-255) and `label` (ClassLabel named "0".."9", or the selected
    digits). The model's own transform upscales them.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    classes = parse_digit_classes(config)
    digits = load_digits()
    keep = np.flatnonzero(np.isin(digits.target, classes))
    # Split all ten classes first, then select: digit 7 is in the same split whatever subset a run picks, so a
    # source model trained on "0-4" never saw a test image of a target run on "0-9".
    train_idx, test_idx = train_test_split(
        np.arange(len(digits.target)), test_size=DIGITS_TEST_FRACTION, random_state=0, stratify=digits.target
    )
    to_id = {digit: i for i, digit in enumerate(classes)}
    features = Features({"image": ImageFeature(), "label": ClassLabel(names=[str(c) for c in classes])})
    splits = {}
    for name, indices in (("train", train_idx), ("test", test_idx)):
        indices = np.sort(np.intersect1d(indices, keep))
        images = [Image.fromarray(np.round(digits.images[i] * (255.0 / 16.0)).astype(np.uint8)) for i in indices]
        labels = [to_id[int(digits.target[i])] for i in indices]
        splits[name] = Dataset.from_dict({"image": images, "label": labels}, features=features, split=name)
    logger.info("sklearn:digits: classes %s, %d train, %d test", classes, len(splits["train"]), len(splits["test"]))
    return DatasetDict(splits)


DIGITS_MULTILABEL_SIZES = {"train": 2000, "test": 500}
DIGITS_GRID = 2  # cells per side of the canvas
DIGITS_CELL = 16  # pixels per cell side: each 8x8 digit upscaled twice, so a canvas is 32x32


def paste_digits(
    images: np.ndarray, targets: np.ndarray, count: int, seed: int
) -> tuple[list[np.ndarray], list[list[int]]]:
    """`count` canvases of a 2x2 grid, each with 2-4 of the source digits (`images` 8x8 in 0-16, `targets` their
    digits) pasted into random cells (the others left blank), and for each canvas its cells' digits (-1: blank)."""
    rng = np.random.default_rng(seed)
    canvases, cells = [], []
    side = DIGITS_GRID * DIGITS_CELL
    for _ in range(count):
        canvas = np.zeros((side, side), dtype=np.uint8)
        filled = rng.choice(DIGITS_GRID**2, size=int(rng.integers(2, DIGITS_GRID**2 + 1)), replace=False)
        digits = [-1] * DIGITS_GRID**2
        for cell, source in zip(filled, rng.choice(len(images), size=len(filled), replace=False)):
            pixels = np.round(images[source] * (255.0 / 16.0)).astype(np.uint8)
            scale = DIGITS_CELL // pixels.shape[0]
            y, x = divmod(int(cell), DIGITS_GRID)
            block = np.kron(pixels, np.ones((scale, scale), dtype=np.uint8))
            canvas[y * DIGITS_CELL : (y + 1) * DIGITS_CELL, x * DIGITS_CELL : (x + 1) * DIGITS_CELL] = block
            digits[int(cell)] = int(targets[source])
        canvases.append(canvas)
        cells.append(digits)
    return canvases, cells


def digit_grids(dataset: str, config: str | None, seed: int) -> dict[str, tuple[list[Image.Image], list[list[int]]]]:
    """The 2x2 grids of the digit-grid builtins, per split: (images, each grid's cells' digits, -1 for blank).
    The source digits are split first (sklearn:digits's own 80/20 split), so no test grid reuses a digit drawn in
    train; the same `seed` gives the same grids to every builtin built on them."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if config is not None and str(config).strip().lower() not in ("", "default", "all"):
        raise DataError(f"data.config '{config}' is not a configuration of {dataset}; leave it out.")
    digits = load_digits()
    train_idx, test_idx = train_test_split(
        np.arange(len(digits.target)), test_size=DIGITS_TEST_FRACTION, random_state=0, stratify=digits.target
    )
    grids = {}
    for offset, (name, indices) in enumerate((("train", np.sort(train_idx)), ("test", np.sort(test_idx)))):
        canvases, cells = paste_digits(
            digits.images[indices], digits.target[indices], DIGITS_MULTILABEL_SIZES[name], seed + offset
        )
        grids[name] = ([Image.fromarray(canvas) for canvas in canvases], cells)
    return grids


@BUILTIN_DATASETS.register("sklearn:digits-multilabel")
def load_sklearn_digits_multilabel(config: str | None = None, seed: int = 0) -> DatasetDict:
    """ "Which digits are in it?": 2,000 train and 500 test 32x32 grayscale images, each a 2x2 grid with 2-4 of
    scikit-learn's digits pasted into its cells (blank cells allowed), labelled with the distinct digits present.

    Columns `image` (an Image feature, mode L) and `label` (a list of ClassLabel "0".."9": a Hub-style
    Sequence(ClassLabel), read with problem_type multi_label_classification). Built offline and deterministically
    from `seed` (see `digit_grids`). `data.config` selects no subset here: leave it out.
    """
    names = [str(d) for d in range(10)]
    features = Features({"image": ImageFeature(), "label": [ClassLabel(names=names)]})
    splits = {}
    for name, (images, cells) in digit_grids("sklearn:digits-multilabel", config, seed).items():
        labels = [sorted({d for d in row if d >= 0}) for row in cells]
        splits[name] = Dataset.from_dict({"image": images, "label": labels}, features=features, split=name)
    logger.info("sklearn:digits-multilabel: %d train, %d test", len(splits["train"]), len(splits["test"]))
    return DatasetDict(splits)


@BUILTIN_DATASETS.register("sklearn:digits-sum")
def load_sklearn_digits_sum(config: str | None = None, seed: int = 0) -> DatasetDict:
    """ "What do the digits add up to?": the grids of sklearn:digits-multilabel (the same images for the same
    `seed`), each with the sum of the 2-4 digits pasted into it (a digit drawn twice counts twice), 0 to 36.

    Columns `image` (an Image feature, mode L) and `sum` (float): a numeric target for problem_type regression
    (`data.label_column: sum`), a quantity a person reads off the image rather than a class id cast to a number.
    """

    features = Features({"image": ImageFeature(), "sum": Value("float32")})
    splits = {}
    for name, (images, cells) in digit_grids("sklearn:digits-sum", config, seed).items():
        sums = [float(sum(d for d in row if d >= 0)) for row in cells]
        splits[name] = Dataset.from_dict({"image": images, "sum": sums}, features=features, split=name)
    logger.info("sklearn:digits-sum: %d train, %d test", len(splits["train"]), len(splits["test"]))
    return DatasetDict(splits)


DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# How a row's text names its number: the word or the numeral, alone or in a short phrase. Drawn for every row
# independently of its label, so the phrasing says nothing about the answer.
NUMBER_TEMPLATES = ("{word}", "{digit}", "the number {word}", "the number {digit}", "a {word}", "number {digit}")
MATCH_LABELS = ["no", "yes"]


def _mismatched_digits(digits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Another digit for every row, each digit given out exactly as often as it occurs in `digits`.

    Rows sorted by digit take the digit of the row `m` places further on (m: the largest class's count), so no row
    gets its own digit while the multiset of digits is kept: the "no" texts then name each number exactly as often
    as the "yes" texts do.
    """
    order = np.argsort(digits + rng.random(len(digits)) * 0.5, kind="stable")  # by digit, shuffled within
    shift = int(np.bincount(digits).max())
    if shift * 2 > len(digits):
        raise DataError("data.config selects one digit for most rows; sklearn:digits-and-words needs two or more.")
    other = np.empty_like(digits)
    other[order] = digits[np.roll(order, -shift)]
    return other


@BUILTIN_DATASETS.register("sklearn:digits-and-words")
def load_digits_and_words(config: str | None = None) -> DatasetDict:
    """scikit-learn's handwritten digits, each paired with a short text that names a number ("seven", "the number
    3"): label `yes` when the picture shows the number the text names, else `no`. For `multimodal-classification`
    (columns `image`, `text`, `label`).

    Every digit image gives two rows, one whose text names its own number (yes) and one whose text names another
    (no), with the same phrasing templates drawn for both. So the answer needs both inputs: each image occurs once
    with each label (an image-only model is at 50% by construction), and each number is named by as many yes texts as
    no texts (see `_mismatched_digits`: a text-only model is at 50% too). Train and test come from disjoint digit
    images (the split of `sklearn:digits`); `data.config` selects digits as there. Deterministic: fixed seeds.
    """
    digits = load_sklearn_digits(config)
    features = Features({"image": ImageFeature(), "text": Value("string"), "label": ClassLabel(names=MATCH_LABELS)})
    out = {}
    for seed, name in enumerate(("train", "test")):
        split = digits[name]
        rng = np.random.default_rng(seed)
        names = split.features["label"].names
        true = np.array([int(names[i]) for i in split["label"]])
        wrong = _mismatched_digits(true, rng)
        images = split["image"]
        rows = []
        for i in range(len(split)):
            for digit, answer in ((true[i], 1), (wrong[i], 0)):
                template = NUMBER_TEMPLATES[rng.integers(len(NUMBER_TEMPLATES))]
                rows.append((i, template.format(word=DIGIT_WORDS[digit], digit=digit), answer))
        order = rng.permutation(len(rows))
        rows = [rows[j] for j in order]
        out[name] = Dataset.from_dict(
            {
                "image": [images[i] for i, _, _ in rows],
                "text": [text for _, text, _ in rows],
                "label": [answer for _, _, answer in rows],
            },
            features=features,
            split=name,
        )
    logger.info("sklearn:digits-and-words: %d train, %d test pairs", len(out["train"]), len(out["test"]))
    return DatasetDict(out)
