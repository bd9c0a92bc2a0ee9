"""Sharing on the Hub against the local Hub server: push a run in one commit, load it back by repo id in a fresh
cache and predict the same; private repos, a failing server, tokens (missing, wrong, never written)."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shlex
import shutil
from pathlib import Path

import huggingface_hub
import pytest
import yaml
from helpers import text_recipe, write_recipe
from hub_server import DEFAULT_TOKEN, local_hub, running_local_hub, use_local_hub  # noqa: F401
from huggingface_hub import ModelCard

import hf_transfer
import hf_transfer.hub.retry as hub_retry
from hf_transfer.apps.cli import main
from hf_transfer.config.loading import load_recipe
from hf_transfer.core.errors import HubError, ModelError
from hf_transfer.hub.access import NO_TOKEN
from hf_transfer.hub.publish import HubPublisher
from hf_transfer.hub.push import push_run

BASE_ID = "tester/tiny-bert"
EXAMPLE = "A small gem of a movie."
TEXTS = ["a good film", "the plot was dull", EXAMPLE]


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch):
    monkeypatch.setattr(hub_retry, "BACKOFF_SECONDS", 0.0)


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_bert_dir, keyword_csvs) -> Path:
    """A LoRA run trained from the local tiny BERT folder whose recipe names its Hub id (transformers #33922)."""
    tmp = tmp_path_factory.mktemp("hub_push")
    recipe = recipe_with_base(
        tmp, tiny_bert_dir, keyword_csvs, {"name": "lora", "r": 4, "alpha": 8}, "lora", train={"epochs": 2}
    )
    return hf_transfer.run(str(recipe))


@pytest.fixture
def hub(local_hub, tiny_bert_dir):  # noqa: F811
    """The local Hub holding the base model, as the public Hub would."""
    local_hub.add_files(BASE_ID, tiny_bert_dir, message="tiny BERT")
    return local_hub


def recipe_with_base(tmp_path: Path, checkpoint: Path, csvs: dict, strategy, name: str, **overrides) -> Path:
    """`helpers.text_recipe`, with `model.hub_id` naming the local checkpoint's Hub id."""
    path = text_recipe(tmp_path, checkpoint, csvs, strategy, name=name, **overrides)
    raw = yaml.safe_load(path.read_text())
    raw["model"]["hub_id"] = BASE_ID
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def folder_digest(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def fresh_cache(monkeypatch, hub, tmp_path: Path, name: str = "fresh_cache") -> Path:
    cache = tmp_path / name
    use_local_hub(monkeypatch, hub, cache_dir=cache)
    return cache


def python_blocks(card: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", card, flags=re.DOTALL)


# ---------------------------------------------------------------------------------------------------------------
# Push, then load back


def test_push_lora_run_in_one_commit_then_load_it_back_by_repo_id(
    hub, lora_run, tmp_path, monkeypatch, capsys, keyword_csvs
):
    before = folder_digest(lora_run)
    result = push_run(lora_run, "tester/run", commit_message="First LoRA run")
    assert folder_digest(lora_run) == before  # the run folder is never touched

    files = hub.files("tester/run")
    assert hub.commits("tester/run") == ["initial commit", "First LoRA run"]
    assert set(files) == {
        ".gitattributes",
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
        "hf_transfer.json",
        "labels.json",
        "recipe.yaml",
        "metrics.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "confusion_matrix.png",
        "training_curves.png",
    }
    assert set(result.files) == set(files) - {".gitattributes"}
    assert not hub.is_private("tester/run")

    # Enough to load back with no other knowledge: the base model's id, the labels, the head.
    assert json.loads(files["adapter_config.json"])["base_model_name_or_path"] == BASE_ID
    assert "classifier" in json.loads(files["adapter_config.json"])["modules_to_save"]
    assert json.loads(files["labels.json"]) == {"id2label": {"0": "neg", "1": "pos"}, "label2id": {"neg": 0, "pos": 1}}
    backbone = json.loads(files["hf_transfer.json"])["backbone"]
    assert backbone["hub_id"] == BASE_ID and backbone["checkpoint"] == BASE_ID and backbone["checkpoint_path"] is None
    recipe = yaml.safe_load(files["recipe.yaml"])
    assert recipe["model"]["checkpoint"] == BASE_ID
    assert recipe["data"]["train_files"] == ["train.csv"] and recipe["output"]["dir"] is None
    # No absolute local path anywhere: not the run folder, the base model folder or the data folder.
    local = [str(lora_run.resolve()), str(Path(recipe_dir(lora_run)).resolve()), str(tmp_path.parents[1])]
    for name, data in files.items():
        for path in local:
            assert path.encode() not in data, (name, path)

    # The card: Hub metadata, validated by the server.
    card = ModelCard(files["README.md"].decode())
    card.validate()
    meta = card.data.to_dict()
    assert meta["base_model"] == BASE_ID and meta["base_model_relation"] == "adapter"
    assert meta["library_name"] == "peft" and meta["pipeline_tag"] == "text-classification"
    assert {"hf-transfer", "lora", "peft", "transformers"} <= set(meta["tags"])
    assert "datasets" not in meta  # local files: no path may go there
    results = meta["model-index"][0]["results"][0]
    assert results["task"]["type"] == "text-classification" and results["dataset"]["split"] == "test"
    assert {m["type"] for m in results["metrics"]} >= {"accuracy", "f1"}
    assert result.card_metadata["base_model"] == BASE_ID

    # Load back in a fresh cache: the run from the repo, the base model by its recorded id.
    local_probs = hf_transfer.load(lora_run).predict_proba(TEXTS)
    cache = fresh_cache(monkeypatch, hub, tmp_path)
    hub.requests.clear()
    remote = hf_transfer.load("tester/run")
    assert remote.label_names == ["neg", "pos"]
    assert remote.predict_proba(TEXTS) == pytest.approx(local_probs, abs=1e-6)
    fetched = {r.path for r in hub.requests if r.kind == "resolve"}
    assert any(f"/{BASE_ID}/" in path for path in fetched) and any("/tester/run/" in path for path in fetched)
    assert (cache / "models--tester--run").is_dir()

    # The same through the CLI, in-process so the patched Hub constants apply.
    capsys.readouterr()
    assert main(["predict", "tester/run", *TEXTS, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    for row, probs in zip(printed, local_probs):
        assert [row["probabilities"]["neg"], row["probabilities"]["pos"]] == pytest.approx(list(probs), abs=1e-6)
    assert main(["eval", "tester/run", "--data", str(keyword_csvs["test"]), "--json"]) == 0
    recorded = json.loads((lora_run / "metrics.json").read_text())["test"]
    assert json.loads(capsys.readouterr().out)["accuracy"] == pytest.approx(recorded["accuracy"])


def recipe_dir(run_dir: Path) -> str:
    return yaml.safe_load((run_dir / "recipe.yaml").read_text())["model"]["checkpoint"]


def test_card_usage_snippets_run_against_the_pushed_repo(hub, lora_run, tmp_path, monkeypatch, capsys):
    push_run(lora_run, "tester/snippets")
    card = hub.files("tester/snippets")["README.md"].decode()
    fresh_cache(monkeypatch, hub, tmp_path)
    expected = hf_transfer.load("tester/snippets").predict([EXAMPLE])[0]["label"]

    blocks = python_blocks(card)
    assert len(blocks) == 2  # hf-transfer, then PEFT + transformers alone
    assert 'hf_transfer.load("tester/snippets")' in blocks[0]
    assert f'"{BASE_ID}"' in blocks[1] and 'PeftModel.from_pretrained(base, "tester/snippets")' in blocks[1]
    for code in blocks:
        capsys.readouterr()
        exec(compile(code, "README.md", "exec"), {"__name__": "__card__"})
        assert capsys.readouterr().out.strip() == expected

    # The CLI line of the card, too.
    line = re.search(r"```bash\n(hf-transfer predict .*?)\n```", card).group(1)
    argv = shlex.split(line)
    assert argv[:3] == ["hf-transfer", "predict", "tester/snippets"]
    capsys.readouterr()
    assert main(argv[1:]) == 0
    assert capsys.readouterr().out.split("\t")[0] == expected


def test_push_replaces_stale_files_and_keeps_foreign_ones_on_a_second_push(hub, lora_run):
    hub.add_files("tester/again", {"model.safetensors": b"old weights", "config.json": b"{}", "NOTES.md": b"mine"})
    push_run(lora_run, "tester/again")
    files = hub.files("tester/again")
    assert "model.safetensors" not in files and "config.json" not in files  # from an earlier, other run
    assert files["NOTES.md"] == b"mine"
    commits = hub.commits("tester/again")
    push_run(lora_run, "tester/again", revision="dev", commit_message="on a branch")
    assert hub.commits("tester/again") == commits  # main is untouched
    assert hub.commits("tester/again", revision="dev")[-1] == "on a branch"
    card = hub.files("tester/again", revision="dev")["README.md"].decode()
    assert "--revision dev" in card and 'revision="dev"' in card


def test_dry_run_lists_files_and_card_metadata_and_sends_nothing(tmp_path, monkeypatch, lora_run, capsys):
    with running_local_hub(monkeypatch, tmp_path, token=None) as hub:  # no token needed to look
        assert main(["push", str(lora_run), "--repo-id", "tester/dry", "--private", "--dry-run"]) == 0
        out = capsys.readouterr().out
        assert hub.requests == []
        assert not hub.repo_exists("tester/dry")
    assert "Dry run, nothing was sent" in out and "tester/dry, private" in out
    for name in ("adapter_model.safetensors", "adapter_config.json", "hf_transfer.json", "labels.json", "README.md"):
        assert name in out
    assert f"base_model: {BASE_ID}" in out and "library_name: peft" in out


# ---------------------------------------------------------------------------------------------------------------
# Private repos and tokens


def test_private_push_then_load_needs_the_token(hub, lora_run, tmp_path, monkeypatch):
    assert main(["push", str(lora_run), "--repo-id", "tester/secret", "--private"]) == 0
    assert hub.is_private("tester/secret")
    fresh_cache(monkeypatch, hub, tmp_path, "with_token")
    local = hf_transfer.load(lora_run).predict_proba(["a good film"])
    assert hf_transfer.load("tester/secret").predict_proba(["a good film"]) == pytest.approx(local, abs=1e-6)

    fresh_cache(monkeypatch, hub, tmp_path, "anonymous")
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(HubError, match="hf auth login"):
        hf_transfer.load("tester/secret")


def test_private_push_to_an_existing_public_repo_is_refused(hub, lora_run):
    hub.create_repo("tester/public")
    with pytest.raises(HubError, match="already exists and is public"):
        push_run(lora_run, "tester/public", private=True)
    assert hub.commits("tester/public") == ["initial commit"]


def test_missing_token_is_one_sentence_and_sends_nothing(tmp_path, monkeypatch, lora_run, capsys):
    with running_local_hub(monkeypatch, tmp_path, token=None) as hub:
        with pytest.raises(HubError) as info:
            push_run(lora_run, "tester/no-token")
        assert str(info.value) == NO_TOKEN + "."
        assert main(["push", str(lora_run), "--repo-id", "tester/no-token"]) == 2
        assert "error: no Hugging Face token: run `hf auth login` or set HF_TOKEN" in capsys.readouterr().err
        assert hub.requests == []


def test_token_never_appears_in_pushed_files_logs_or_errors(tmp_path, monkeypatch, lora_run, capsys, caplog):
    secret = "hf_" + "S3cr3tT0kenNeverWritten" * 2
    caplog.set_level(logging.DEBUG)
    with running_local_hub(monkeypatch, tmp_path, tokens={secret}, token=secret) as hub:
        assert main(["-v", "push", str(lora_run), "--repo-id", "tester/tokens", "--private"]) == 0
        hub.fail_next(10, 401, kinds=("preupload",))
        with pytest.raises(HubError) as info:
            push_run(lora_run, "tester/tokens", token=secret)
        files = hub.files("tester/tokens")
    captured = capsys.readouterr()
    assert len(files) > 5
    for name, data in files.items():
        assert secret.encode() not in data, name
    for text in (captured.out, captured.err, caplog.text, str(info.value)):
        assert secret not in text
    assert any(r.has_auth for r in hub.requests)  # it was sent, as a header only


def test_a_wrong_token_says_to_log_in_again(tmp_path, monkeypatch, lora_run):
    with running_local_hub(monkeypatch, tmp_path, token="hf_not_a_valid_token") as hub:
        with pytest.raises(HubError) as info:
            push_run(lora_run, "tester/wrong")
        assert not hub.repo_exists("tester/wrong")
    message = str(info.value)
    assert "401" in message and "hf auth login" in message and "hf_not_a_valid_token" not in message


@pytest.mark.parametrize(
    ("status", "kind", "words"),
    [(403, "create_repo", "write access"), (404, "commit", "not found"), (400, "commit", "refused")],
)
def test_hub_refusals_become_sentences_that_say_what_to_do(hub, lora_run, status, kind, words):
    hub.fail_next(1, status, kinds=(kind,))
    with pytest.raises(HubError, match=words) as info:
        push_run(lora_run, "tester/refused")
    assert "\n" not in str(info.value) and str(status) in str(info.value)


# ---------------------------------------------------------------------------------------------------------------
# Transient failures


def test_transient_failures_are_retried_with_backoff(hub, lora_run, monkeypatch):
    sleeps = []
    monkeypatch.setattr(hub_retry, "BACKOFF_SECONDS", 0.5)
    monkeypatch.setattr(hub_retry.time, "sleep", sleeps.append)
    hub.fail_next(2, 503, kinds=("commit",))
    push_run(lora_run, "tester/flaky", commit_message="after two 503s")
    assert hub.commits("tester/flaky") == ["initial commit", "after two 503s"]
    statuses = [r.status for r in hub.requests if r.kind == "commit"]
    assert statuses == [503, 503, 200]
    assert sleeps == [0.5, 1.0]  # exponential backoff


def test_a_connection_reset_is_retried(hub, lora_run, monkeypatch):
    import httpx2

    calls = []
    real = huggingface_hub.HfApi.create_commit

    def flaky(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise httpx2.ReadError("[Errno 104] Connection reset by peer")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(huggingface_hub.HfApi, "create_commit", flaky)
    push_run(lora_run, "tester/reset")
    assert len(calls) == 2 and "hf_transfer.json" in hub.files("tester/reset")


def test_a_server_that_keeps_failing_gives_a_clear_error_and_leaves_the_run_folder(hub, lora_run, capsys):
    before = folder_digest(lora_run)
    hub.fail_next(100, 503, kinds=("commit",))
    assert main(["push", str(lora_run), "--repo-id", "tester/down"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1
    err = errors[0]
    assert f"failed {hub_retry.MAX_ATTEMPTS} times (HTTP 503)" in err
    assert f"The run folder '{lora_run}' is unchanged" in err
    assert f"hf-transfer push {lora_run} --repo-id tester/down" in err
    assert [r.status for r in hub.requests if r.kind == "commit"] == [503] * hub_retry.MAX_ATTEMPTS
    assert hub.commits("tester/down") == ["initial commit"]
    assert folder_digest(lora_run) == before


# ---------------------------------------------------------------------------------------------------------------
# Base model ids


def test_a_local_base_without_hub_id_is_refused_until_named(hub, lora_run, tmp_path):
    unnamed = tmp_path / "unnamed"
    shutil.copytree(lora_run, unnamed)
    meta = json.loads((unnamed / "hf_transfer.json").read_text())
    meta["backbone"]["hub_id"] = None
    (unnamed / "hf_transfer.json").write_text(json.dumps(meta))
    with pytest.raises(HubError) as info:
        push_run(unnamed, "tester/unnamed")
    message = str(info.value)
    assert "\n" not in message and "--base-model" in message and "model.hub_id" in message
    assert not hub.repo_exists("tester/unnamed")

    push_run(unnamed, "tester/unnamed", base_model=BASE_ID)
    files = hub.files("tester/unnamed")
    assert json.loads(files["adapter_config.json"])["base_model_name_or_path"] == BASE_ID
    assert ModelCard(files["README.md"].decode()).data.base_model == BASE_ID


def test_unknown_repo_or_offline_cache_miss_is_one_sentence(tmp_path, monkeypatch, hub):
    with pytest.raises(HubError, match="neither a run folder on disk nor a model repo"):
        hf_transfer.load("tester/does-not-exist")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubError, match="HF_HUB_OFFLINE"):
        hf_transfer.load("tester/never-downloaded")


def test_a_repo_cannot_decide_to_run_remote_code(hub, lora_run, tmp_path):
    tampered = tmp_path / "tampered"
    shutil.copytree(lora_run, tampered)
    recipe = yaml.safe_load((tampered / "recipe.yaml").read_text())
    recipe["model"]["trust_remote_code"] = True
    (tampered / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    push_run(tampered, "tester/tampered")
    with pytest.raises(ModelError, match="trust_remote_code"):
        hf_transfer.load("tester/tampered")


# ---------------------------------------------------------------------------------------------------------------
# hub.push in a recipe


def test_recipe_hub_push_pushes_after_training(hub, tmp_path, tiny_bert_dir, keyword_csvs):
    recipe = recipe_with_base(
        tmp_path,
        tiny_bert_dir,
        keyword_csvs,
        "linear_probe",
        "auto",
        train={"epochs": 1},
        hub={"push": True, "repo_id": "tester/auto", "private": True, "license": "apache-2.0"},
    )
    run_dir = hf_transfer.run(str(recipe))
    assert run_dir.is_dir()
    assert hub.is_private("tester/auto")
    files = hub.files("tester/auto")
    assert {"head.safetensors", "hf_transfer.json", "README.md"} <= set(files)
    meta = ModelCard(files["README.md"].decode()).data
    assert meta.license == "apache-2.0" and meta.base_model == BASE_ID and meta.library_name == "transformers"


def test_recipe_hub_push_without_a_token_fails_before_training(tmp_path, monkeypatch, tiny_bert_dir, keyword_csvs):
    recipe = recipe_with_base(
        tmp_path, tiny_bert_dir, keyword_csvs, "finetune", "early", hub={"push": True, "repo_id": "tester/early"}
    )
    with running_local_hub(monkeypatch, tmp_path, token=None):
        with pytest.raises(HubError, match="no Hugging Face token"):
            hf_transfer.run(str(recipe))
    assert not (tmp_path / "outputs" / "early").exists()
    assert not (tmp_path / "outputs" / "early.incomplete").exists()


def test_a_failed_push_after_training_keeps_the_run_and_says_how_to_push_again(hub, lora_run, tmp_path, capsys):
    recipe_path = write_recipe(
        tmp_path / "again.yaml",
        **yaml.safe_load((lora_run / "recipe.yaml").read_text())
        | {"hub": {"push": True, "repo_id": "tester/later", "private": True}},
    )
    recipe = load_recipe(str(recipe_path))
    hub.fail_next(100, 503, kinds=("commit",))
    with pytest.raises(HubError) as info:
        HubPublisher().publish(lora_run, recipe)
    assert f"The run itself is saved in '{lora_run}'" in str(info.value)
    assert f"hf-transfer push {lora_run}`" in str(info.value)
    assert (lora_run / "hf_transfer.json").is_file()

    # As the message says: the recipe's hub settings (repo id, private) apply to a plain `hf-transfer push RUN`.
    hub.fail_next(0)
    copy = tmp_path / "copy"
    shutil.copytree(lora_run, copy)
    (copy / "recipe.yaml").write_text(recipe_path.read_text())
    assert main(["push", str(copy)]) == 0
    assert hub.is_private("tester/later") and "adapter_model.safetensors" in hub.files("tester/later")


# ---------------------------------------------------------------------------------------------------------------
# Images: the same generic push, on a timm run


def test_push_image_run_and_load_it_back(tmp_path, monkeypatch, tiny_timm_dir, digits_csv, capsys):
    pytest.importorskip("hf_transfer.backbones.timm_image")
    recipe = write_recipe(
        tmp_path / "image.yaml",
        task="image-classification",
        model={"checkpoint": str(tiny_timm_dir), "hub_id": "tester/tiny-timm"},
        data={"train_files": [str(digits_csv["train"])], "test_files": [str(digits_csv["test"])]},
        strategy="finetune",
        train={"epochs": 1, "batch_size": 16, "learning_rate": 1e-3, "seed": 0},
        output={"dir": str(tmp_path / "outputs" / "image")},
    )
    run_dir = hf_transfer.run(str(recipe))
    images = [row.split(",")[0] for row in digits_csv["test"].read_text().splitlines()[1:4]]
    local_probs = hf_transfer.load(run_dir).predict_proba(images)

    with running_local_hub(monkeypatch, tmp_path) as hub:
        hub.add_files("tester/tiny-timm", tiny_timm_dir)
        push_run(run_dir, "tester/image-run")
        files = hub.files("tester/image-run")
        assert {"model.safetensors", "config.json", "hf_transfer.json", "labels.json", "README.md"} <= set(files)
        for name, data in files.items():
            assert str(tiny_timm_dir).encode() not in data and str(run_dir).encode() not in data, name
        meta = ModelCard(files["README.md"].decode()).data
        assert meta.base_model == "tester/tiny-timm" and meta.library_name == "timm"
        assert "timm" in meta.tags and meta.pipeline_tag == "image-classification"

        fresh_cache(monkeypatch, hub, tmp_path)
        remote = hf_transfer.load("tester/image-run")
        assert remote.label_names == json.loads(files["hf_transfer.json"])["label_names"]
        assert remote.predict_proba(images) == pytest.approx(local_probs, abs=1e-5)

        # The card's timm snippet, on an image named as it expects.
        monkeypatch.chdir(tmp_path)
        shutil.copyfile(images[0], tmp_path / "image.jpg")
        timm_code = python_blocks(files["README.md"].decode())[-1]
        assert "timm.create_model" in timm_code
        capsys.readouterr()
        exec(compile(timm_code, "README.md", "exec"), {"__name__": "__card__"})
        assert capsys.readouterr().out.strip() == remote.predict([images[0]])[0]["label"]
