"""Fixtures shared by the whole test suite: tiny models, small data sets, and a local Hub cache.

Everything built here is tiny (a 2-layer BERT with hidden size 32, timm's ~0.4M-parameter test models at 32x32,
a few hundred CSV rows, 90 8x8 PNGs) so the full set builds in a few seconds on 2 CPU cores. No test ever reaches
the network: the environment below is set before anything imports huggingface_hub, which reads it at import time.
"""

import os
import shutil
import sys
import tempfile
from pathlib import Path

# Hub and cache settings, set at import time because huggingface_hub, datasets and transformers read them into
# module constants when first imported. Every cache points into a per-session folder so that tests never read or
# write the developer's ~/.cache/huggingface (nor pick up a token stored there).
_SESSION_HOME = Path(tempfile.mkdtemp(prefix="hf_transfer-tests-"))
os.environ.update(
    {
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_UPDATE_CHECK": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "MPLBACKEND": "Agg",
        "HF_HOME": str(_SESSION_HOME / "hf_home"),
        "HF_HUB_CACHE": str(_SESSION_HOME / "hf_home" / "hub"),
        "HF_ASSETS_CACHE": str(_SESSION_HOME / "hf_home" / "assets"),
        "HF_XET_CACHE": str(_SESSION_HOME / "hf_home" / "xet"),
        "HF_DATASETS_CACHE": str(_SESSION_HOME / "hf_home" / "datasets"),
        "HF_MODULES_CACHE": str(_SESSION_HOME / "hf_home" / "modules"),
        "HF_TRANSFER_CACHE": str(_SESSION_HOME / "hf_transfer"),
        "TORCH_HOME": str(_SESSION_HOME / "torch"),
    }
)
# Variables that would override the ones above, or hand tests a real token.
for _name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE"):
    os.environ.pop(_name, None)

# The builders live next to this file; put it on sys.path whatever pytest's import mode, so that tests can also
# `from fixtures_models import build_hub_cache`.
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

import pytest
from fixtures_models import (
    EFFICIENTNET_HUB_ID,
    MINILM_HUB_ID,
    build_digits_imagefolder,
    build_hub_cache,
    build_tiny_bert,
    build_tiny_timm,
    point_hub_at,
    read_csv_rows,
    sample_csv,
    write_csv_rows,
)


def pytest_unconfigure(config):
    shutil.rmtree(_SESSION_HOME, ignore_errors=True)


@pytest.fixture
def one_thread():
    """One intra-op torch thread for a test (a module opts in: `pytestmark = pytest.mark.usefixtures("one_thread")`):
    the models here are tiny, and on a busy 2-core machine two threads only fight (a timm LoRA run took 38 s with
    two, 8 s with one)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------------------------------------------------
# Shared assets
# --------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The read-only `../shared` folder beside the repository (models and data sets); skips the test if absent."""
    path = Path(__file__).resolve().parents[1].parent / "shared"
    if not path.is_dir():
        pytest.skip(f"shared assets not found at {path}")
    return path


# --------------------------------------------------------------------------------------------------------------------
# Tiny models
# --------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory, shared_dir) -> Path:
    """A folder with a random 2-layer BERT (hidden 32, 128 positions) and a 1000-token WordPiece tokenizer trained on
    the first 2000 Rotten Tomatoes reviews; loads with `AutoTokenizer` / `AutoModelForSequenceClassification`."""
    texts = [row["text"] for row in read_csv_rows(shared_dir / "data" / "rotten_tomatoes" / "train.csv", limit=2000)]
    return build_tiny_bert(tmp_path_factory.mktemp("tiny_bert"), texts)


@pytest.fixture(scope="session")
def tiny_timm_dir(tmp_path_factory) -> Path:
    """timm's `test_efficientnet` (random, 10 classes, 32x32 input) saved with `save_for_hf`; load it with
    `timm.create_model("local-dir:" + str(path), pretrained=True, num_classes=N)`."""
    return build_tiny_timm(tmp_path_factory.mktemp("tiny_timm") / "test_efficientnet", "test_efficientnet")


@pytest.fixture(scope="session")
def tiny_vit_dir(tmp_path_factory) -> Path:
    """timm's `test_vit` (random, 10 classes, img_size 32, so 4 patches) saved like `tiny_timm_dir`; its blocks have
    `attn.qkv`, `attn.proj`, `mlp.fc1`, `mlp.fc2` linears for LoRA targets."""
    return build_tiny_timm(tmp_path_factory.mktemp("tiny_vit") / "test_vit", "test_vit", img_size=32)


@pytest.fixture(scope="session")
def blind_bert_dir(tmp_path_factory, tiny_bert_dir) -> Path:
    """tiny_bert_dir with every token's embedding replaced by one shared vector: its features see how long a text is
    but not which words it holds, so they tell nothing about a label that a word decides."""
    import torch
    from transformers import BertModel

    folder = tmp_path_factory.mktemp("blind_bert")
    shutil.copytree(tiny_bert_dir, folder, dirs_exist_ok=True)
    model = BertModel.from_pretrained(folder)
    with torch.no_grad():
        weights = model.embeddings.word_embeddings.weight
        weights.copy_(weights[0].expand_as(weights))
    model.save_pretrained(folder, safe_serialization=True)
    return folder


# --------------------------------------------------------------------------------------------------------------------
# Small data sets
# --------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sentiment_csvs(tmp_path_factory, shared_dir) -> dict[str, Path]:
    """{"train": 400 rows, "test": 200 rows} drawn with a fixed seed from the shared Rotten Tomatoes CSVs
    (columns text,label; label 1 = positive)."""
    source, out = shared_dir / "data" / "rotten_tomatoes", tmp_path_factory.mktemp("sentiment")
    return {
        "train": sample_csv(source / "train.csv", out / "train.csv", n=400),
        "test": sample_csv(source / "test.csv", out / "test.csv", n=200),
    }


@pytest.fixture(scope="session")
def _digits_written(tmp_path_factory) -> tuple[Path, dict[str, list[tuple[Path, str]]]]:
    root = tmp_path_factory.mktemp("digits")
    return root, build_digits_imagefolder(root, classes=(0, 1, 2), n_train=20, n_test=10)


@pytest.fixture(scope="session")
def digits_imagefolder(_digits_written) -> Path:
    """A folder `{train,test}/{zero,one,two}/*.png` of scikit-learn's 8x8 digits (grayscale, 0-255), 20 train and
    10 test images per class; `datasets.load_dataset("imagefolder", data_dir=path)` labels them by folder name."""
    return _digits_written[0]


@pytest.fixture(scope="session")
def digits_csv(_digits_written) -> dict[str, Path]:
    """{"train": Path, "test": Path}: CSVs with columns `image` (absolute path of a PNG of `digits_imagefolder`) and
    `label` ("zero", "one", "two")."""
    root, written = _digits_written
    return {
        split: write_csv_rows(
            root / f"{split}.csv",
            [{"image": str(path), "label": label} for path, label in pairs],
            fieldnames=["image", "label"],
        )
        for split, pairs in written.items()
    }


@pytest.fixture(scope="session")
def text_data():
    """(texts, multi-hot over TOPICS, [topic-word count]) of (train 96, validation 48, test 48) rows."""
    from topics_and_digits import topic_rows

    parts = [topic_rows(n, seed) for n, seed in ((96, 0), (48, 1), (48, 2))]
    texts = [[t for t, _, _ in part] for part in parts]
    multi = [[y for _, y, _ in part] for part in parts]
    counts = [[[c] for _, _, c in part] for part in parts]
    return texts, multi, counts


@pytest.fixture(scope="session")
def image_data(_digits_written):
    """(PNG paths, multi-hot over DIGIT_PROPERTIES, [digit value]) of (train, validation, test) digit pictures."""
    from topics_and_digits import digit_targets

    _, written = _digits_written  # 20 train and 10 test PNGs of each of zero, one, two
    train = written["train"]
    parts = [train[i::2] for i in range(2)] + [written["test"]]  # train, validation, test
    paths = [[str(p) for p, _ in part] for part in parts]
    multi = [[digit_targets(label)[0] for _, label in part] for part in parts]
    values = [[[digit_targets(label)[1]] for _, label in part] for part in parts]
    return paths, multi, values


@pytest.fixture(scope="session")
def topic_csvs(tmp_path_factory) -> dict:
    """{"train": 120 rows, "test": 60 rows} of topics_and_digits.topic_csv_rows (text, topics, count, mood)."""
    from topics_and_digits import topic_csv_rows

    folder = tmp_path_factory.mktemp("topics")
    fields = ["text", "topics", "count", "mood"]
    return {
        split: write_csv_rows(folder / f"{split}.csv", topic_csv_rows(n, seed), fields)
        for split, n, seed in (("train", 120, 0), ("test", 60, 1))
    }


# --------------------------------------------------------------------------------------------------------------------
# Local Hub caches
# --------------------------------------------------------------------------------------------------------------------


@pytest.fixture
def local_hub_cache(tmp_path, monkeypatch):
    """A function `add(repo_id, folder, repo_type="model") -> cache_dir` that caches `folder` under `repo_id` in a
    fresh per-test Hub cache and points huggingface_hub at that cache (offline) for the test."""
    cache_dir = tmp_path / "hub_cache"
    cache_dir.mkdir()
    point_hub_at(monkeypatch, cache_dir)

    def add(repo_id: str, folder: Path, repo_type: str = "model") -> Path:
        build_hub_cache(cache_dir, repo_id, folder, repo_type=repo_type)
        return cache_dir

    return add


@pytest.fixture(scope="session")
def shared_hub_cache(tmp_path_factory, shared_dir) -> Path:
    """A Hub cache folder holding `sentence-transformers/all-MiniLM-L6-v2` and `timm/tf_efficientnet_lite0.in1k`,
    whose blobs are symlinks to the shared files. Use it through `offline_hub`."""
    cache_dir = tmp_path_factory.mktemp("shared_hub_cache")
    build_hub_cache(cache_dir, MINILM_HUB_ID, shared_dir / "models" / "all-MiniLM-L6-v2")
    build_hub_cache(cache_dir, EFFICIENTNET_HUB_ID, shared_dir / "models" / "tf_efficientnet_lite0")
    return cache_dir


@pytest.fixture
def offline_hub(monkeypatch, shared_hub_cache) -> Path:
    """Points huggingface_hub, offline, at `shared_hub_cache` for one test, so that
    `AutoModel.from_pretrained("sentence-transformers/all-MiniLM-L6-v2")` and
    `timm.create_model("hf-hub:timm/tf_efficientnet_lite0.in1k", pretrained=True)` load by Hub id."""
    return point_hub_at(monkeypatch, shared_hub_cache)


@pytest.fixture(scope="session")
def keyword_csvs(tmp_path_factory) -> dict[str, Path]:
    """An easy sentiment task (the label follows one keyword among filler words) that a tiny BERT learns in
    a few epochs: string labels `neg` / `pos`, 240 train and 80 test rows."""
    import random

    rng = random.Random(0)
    filler = "the movie film story plot actors was is a an and of it this that with".split()
    words = {"pos": ["good", "great", "wonderful", "best", "fun"], "neg": ["bad", "dull", "worst", "boring", "awful"]}
    folder = tmp_path_factory.mktemp("keyword")
    out = {}
    for split, n in (("train", 240), ("test", 80)):
        rows = []
        for i in range(n):
            label = "pos" if i % 2 else "neg"
            text = [rng.choice(filler) for _ in range(rng.randint(4, 14))]
            text.insert(rng.randrange(len(text)), rng.choice(words[label]))
            rows.append({"text": " ".join(text), "label": label})
        out[split] = write_csv_rows(folder / f"{split}.csv", rows, ["text", "label"])
    return out


@pytest.fixture(scope="session")
def probe_run_dir(tmp_path_factory, tiny_bert_dir, keyword_csvs) -> Path:
    """The run folder of a one-epoch linear probe of tiny_bert_dir on keyword_csvs whose recipe names a Hub base
    model (`tester/tiny-bert`), as a push needs. Shared: copy it before changing anything in it."""
    import yaml
    from helpers import text_recipe

    import hf_transfer

    tmp = tmp_path_factory.mktemp("probe_run")
    path = text_recipe(tmp, tiny_bert_dir, keyword_csvs, "linear_probe", train={"epochs": 1})
    raw = yaml.safe_load(path.read_text())
    raw["model"]["hub_id"] = "tester/tiny-bert"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return hf_transfer.run(str(path))
