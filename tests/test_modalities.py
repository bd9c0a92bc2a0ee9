"""The input kinds (`hf_transfer.data.modalities`): one object each, found by name or task in one registry, answering
every question the rest of the package asks of an input kind; and no code outside them dispatching on a kind's name."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
from datasets import Image as ImageFeature
from PIL import Image

from hf_transfer.config.sections import DataConfig
from hf_transfer.core.errors import DataError, HfTransferError, RecipeError
from hf_transfer.data.modalities import DEFAULT, MODALITIES, Modality
from hf_transfer.data.modalities.base import SnippetContext

PACKAGE = Path(__file__).resolve().parent.parent / "hf_transfer"
KINDS = MODALITIES.kinds()
NAMES = {kind.name for kind in KINDS} | {kind.task for kind in KINDS}


def test_every_input_kind_is_found_by_its_name_and_by_its_task():
    assert [kind.name for kind in KINDS] == ["text", "image", "multimodal"]
    for kind in KINDS:
        assert MODALITIES.get(kind.name) is kind
        assert MODALITIES.of_task(kind.task) is kind
        assert MODALITIES.of_record(SimpleNamespace(modality=kind.name)) is kind
    assert MODALITIES.of_record(SimpleNamespace(modality=None)) is DEFAULT
    assert MODALITIES.tasks(with_towers=False) == ("text-classification", "image-classification")
    with pytest.raises(RecipeError, match=r"unknown task 'image-clasification' \(did you mean 'image-classification'"):
        MODALITIES.of_task("image-clasification")


def test_a_kind_of_two_towers_is_made_of_registered_kinds():
    multimodal = MODALITIES.get("multimodal")
    assert multimodal.towers == (MODALITIES.get("image"), MODALITIES.get("text"))
    assert multimodal.tower_names == ("image", "text")
    assert multimodal.baseline_tower("text_only") is MODALITIES.get("text")
    assert multimodal.baseline_tower("scratch") is None
    assert [kind.decodes_images for kind in KINDS] == [False, True, True]


def _rows(kind: Modality) -> DatasetDict:
    """Two train rows a kind reads, one with an empty text where the kind reads text."""
    image = Image.new("RGB", (4, 4), (200, 10, 10))
    columns = {"text": ["fine", "  "], "image": [image, image], "label": [0, 1]}
    features = {"text": Value("string"), "image": ImageFeature(), "label": ClassLabel(names=["a", "b"])}
    wanted, _ = kind.required_columns(DataConfig())
    keep = [*wanted, "label"]
    split = Dataset.from_dict({c: columns[c] for c in keep}, features=Features({c: features[c] for c in keep}))
    return DatasetDict({"train": split})


@pytest.mark.parametrize("kind", KINDS, ids=[kind.name for kind in KINDS])
def test_every_input_kind_answers_every_question(kind, tmp_path):
    data = DataConfig()
    assert kind.task.endswith("-classification") and str(kind) == kind.name
    columns, fields = kind.required_columns(data)
    assert columns and set(columns) == set(fields) and all(field.startswith("data.") for field in fields.values())
    reads_text = "text" in columns
    checked, skipped = kind.check_rows(_rows(kind), data)
    assert len(checked["train"]) == (1 if reads_text else 2) and skipped == ({"train": 1} if reads_text else {})
    kept, dropped = kind.drop_empty_inputs(_rows(kind), data, "--data (new.csv)")
    assert len(kept["train"]) == (1 if reads_text else 2) and bool(dropped) == reads_text
    assert kind.input_column(data) in columns
    inputs = [("a.png", "seven")] if kind.towers else ["a.png"]
    assert set(kind.rows_of_inputs(inputs, data)) <= set(columns)
    assert kind.default_library(lambda: False) in ("transformers", "timm")
    cli_example, python_example = kind.card_example
    assert cli_example and python_example.startswith(('"', "("))
    towers = {name: SimpleNamespace(base=f"{name}-ckpt", library="timm") for name in kind.tower_names}
    summary = kind.card_summary(SimpleNamespace(library="timm", fusion="gated", towers=towers))
    assert summary.startswith(f"A {kind.name}") and all(f"`{name}-ckpt` (timm)" in summary for name in towers)
    pipeline = lambda model_args, example: f"pipeline({model_args})({example})"  # noqa: E731
    context = SnippetContext("transformers", "finetune", "base", ["a"], "me/run", "", lambda e, i: "", pipeline)
    snippet = kind.card_snippet(context)
    assert snippet is None or (snippet[0] == "transformers" and 'model="me/run"' in snippet[1])
    assert isinstance(kind.zero_shot_templates, tuple)


def test_predict_reads_each_kinds_raw_inputs(tmp_path):
    text, image, multimodal = KINDS
    data = DataConfig()
    no_file = {"file": None, "images": [], "texts": [], "data": data, "read_rows": None}
    assert text.read_inputs(["great"], **no_file) == ["great"]
    with pytest.raises(HfTransferError, match="--image and --text are for multimodal runs; this run is a image"):
        image.read_inputs([], None, ["a.png"], ["x"], data, None)
    assert multimodal.read_inputs([], None, ["a.png"], ["seven"], data, None) == [("a.png", "seven")]
    with pytest.raises(HfTransferError, match="got 1 --image and 0 --text"):
        multimodal.read_inputs([], None, ["a.png"], [], data, None)
    lines = tmp_path / "inputs.txt"
    lines.write_text("one\n\ntwo\n")
    assert text.read_inputs([], str(lines), [], [], data, None) == ["one", "two"]
    pairs = DataConfig(text_pair_column="pair")
    assert text.rows_of_inputs([("a", "b")], pairs) == {"text": ["a"], "pair": ["b"]}
    with pytest.raises(DataError, match="reads sentence pairs"):
        text.rows_of_inputs(["a"], pairs)
    with pytest.raises(DataError, match=r"\(image, text\) pairs"):
        multimodal.rows_of_inputs(["a"], data)


def test_recipe_rules_are_the_kinds_own():
    text, _, multimodal = KINDS
    assert text.baseline_tower("image_only") is None
    with pytest.raises(RecipeError, match="baseline image_only is only for task multimodal-classification"):
        multimodal.refuse_own_settings(_RecipeLike(baseline=["image_only"]))
    with pytest.raises(RecipeError, match="model.image is only for task multimodal-classification"):
        MODALITIES.check_recipe(_RecipeLike(image="a", task=text.task))
    text.check_recipe(_RecipeLike())  # a text recipe has no rules of its own beyond the schema's
    with pytest.raises(RecipeError, match="model.text is missing; task multimodal-classification needs"):
        multimodal.check_recipe(_RecipeLike(image="a"))
    with pytest.raises(RecipeError, match="takes baselines image_only and text_only, and no source stage"):
        multimodal.check_recipe(_RecipeLike(image="a", text="b", baseline=["scratch"]))


class _RecipeLike:
    """What an input kind reads of a recipe."""

    def __init__(self, image=None, text=None, baseline=(), task="multimodal-classification"):
        towers = {name: tower for name, tower in (("image", image), ("text", text)) if tower}
        self.model = type("Model", (), {"image": image, "text": text, "checkpoint": None, "towers": towers})()
        self.baseline = list(baseline)
        self.source = None
        self.task = task


def test_the_input_kinds_import_nothing_heavy():
    # In a fresh process: the recipe schema asks them for their rules, and `validate` loads no torch.
    code = (
        "import sys, hf_transfer.data.modalities\n"
        "heavy = ('torch', 'transformers', 'datasets', 'PIL', 'timm', 'sklearn', 'peft')\n"
        "loaded = [m for m in heavy if m in sys.modules]\n"
        "assert not loaded, loaded"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def _named_constants(node: ast.AST) -> list[str]:
    """The strings among `node` (a constant, or a tuple / list / set of them) that name an input kind or task."""
    items = node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else [node]
    return [i.value for i in items if isinstance(i, ast.Constant) and isinstance(i.value, str) and i.value in NAMES]


def test_no_code_outside_the_input_kinds_compares_with_their_names():
    """Outside `data/modalities/`, a value is never compared with `"image"` or `"multimodal-classification"`: the
    code asks the input kind instead, so that a new kind is one module, not edits across the package."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.is_relative_to(PACKAGE / "data" / "modalities"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare):
                names = [n for side in (node.left, *node.comparators) for n in _named_constants(side)]
                if names:
                    found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} compares with {names[0]!r}")
    assert not found, "\n".join(found)
