"""The local Hub of `hub_server.py` against the real huggingface_hub client."""

from __future__ import annotations

import types
from pathlib import Path

import hub_server
import huggingface_hub
import pytest
from hub_server import DEFAULT_TOKEN, DEFAULT_USER, LocalHub, git_blob_sha1, running_local_hub
from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    HfApi,
    ModelCard,
    constants,
    hf_hub_download,
    snapshot_download,
)
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError
from huggingface_hub.utils import get_session

README = """---
license: mit
library_name: transformers
tags:
- test
---

# Tiny model

A model card.
"""


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with running_local_hub(monkeypatch, tmp_path) as local:
        yield local


# The module's own fixture, under its own name, to check it as other test modules would use it.
local_hub = hub_server.local_hub


@pytest.fixture
def model_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    (folder / "sub" / "nested").mkdir(parents=True)
    (folder / "config.json").write_text('{"hidden_size": 8, "num_labels": 2}\n')
    (folder / "README.md").write_text(README)
    (folder / "weights.bin").write_bytes(bytes(range(256)) * 16 + b"\x00\xff\r\n\x1a")
    (folder / "sub" / "vocab.txt").write_text("[PAD]\n[UNK]\nhello\n")
    (folder / "sub" / "nested" / "table.bin").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(1000))
    return folder


def _folder_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _kinds(local: LocalHub) -> list[str]:
    return [r.kind for r in local.requests]


def test_fixture_points_huggingface_hub_at_the_server(local_hub: LocalHub, tmp_path: Path):
    assert local_hub.endpoint.startswith("http://127.0.0.1:")
    assert constants.ENDPOINT == local_hub.endpoint
    assert HfApi().endpoint == local_hub.endpoint
    assert huggingface_hub.hf_api.api.endpoint == local_hub.endpoint
    assert constants.HF_HUB_CACHE == str(tmp_path / "hf_cache")
    assert constants.HF_HUB_OFFLINE is False
    HfApi().create_repo("tester/first")
    assert local_hub.requests[-1].kind == "create_repo" and local_hub.requests[-1].has_auth


def test_create_repo_public_private_and_exist_ok(hub: LocalHub):
    api = HfApi()
    url = api.create_repo("tester/public-model")
    assert url.repo_id == "tester/public-model"
    assert url.endpoint == hub.endpoint
    assert hub.repo_exists("tester/public-model") and not hub.is_private("tester/public-model")
    assert list(hub.files("tester/public-model")) == [".gitattributes"]
    assert hub.commits("tester/public-model") == ["initial commit"]

    with pytest.raises(HfHubHTTPError) as excinfo:
        api.create_repo("tester/public-model")
    assert excinfo.value.response.status_code == 409
    assert api.create_repo("tester/public-model", exist_ok=True).repo_id == "tester/public-model"

    # Module-level helpers go through `huggingface_hub.hf_api.api`, whose endpoint is fixed at import.
    assert huggingface_hub.create_repo("org/private-model", private=True).repo_id == "org/private-model"
    assert hub.is_private("org/private-model")
    assert api.create_repo("no-namespace").repo_id == f"{DEFAULT_USER}/no-namespace"

    assert api.repo_exists("tester/public-model")
    assert not api.repo_exists("tester/missing")
    assert api.model_info("org/private-model").private is True


def test_upload_folder_in_one_commit_then_download(hub: LocalHub, model_folder: Path, tmp_path: Path):
    api = HfApi()
    repo_id = api.create_repo("tester/tiny").repo_id
    hub.requests.clear()
    info = api.upload_folder(
        repo_id=repo_id,
        folder_path=model_folder,
        commit_message="Add tiny model",
        commit_description="All the files",
    )
    expected = _folder_files(model_folder)

    # One commit, holding every file, byte for byte.
    assert hub.commits(repo_id) == ["initial commit", "Add tiny model"]
    assert hub.files(repo_id, revision=info.oid) == hub.files(repo_id)
    assert info.commit_url == f"{hub.endpoint}/{repo_id}/commit/{info.oid}"
    files = hub.files(repo_id)
    assert files.pop(".gitattributes")
    assert files == expected
    assert _kinds(hub).count("commit") == 1
    assert "validate_yaml" in _kinds(hub)  # the README's metadata is checked before the upload
    assert all(r.has_auth for r in hub.requests if r.kind in ("preupload", "commit"))

    model = api.model_info(repo_id)
    assert model.id == repo_id and model.sha == info.oid and model.private is False
    assert {s.rfilename for s in model.siblings} == set(expected) | {".gitattributes"}
    detailed = api.model_info(repo_id, files_metadata=True)
    sizes = {s.rfilename: (s.size, s.blob_id) for s in detailed.siblings}
    assert sizes["weights.bin"] == (len(expected["weights.bin"]), git_blob_sha1(expected["weights.bin"]))
    assert api.list_repo_files(repo_id) == sorted(set(expected) | {".gitattributes"})

    # hf_hub_download into the fresh cache of the fixture, then snapshot_download into another fresh cache.
    path = hf_hub_download(repo_id, "sub/nested/table.bin")
    assert Path(path).read_bytes() == expected["sub/nested/table.bin"]
    assert Path(path).is_relative_to(constants.HF_HUB_CACHE)
    assert f"snapshots/{info.oid}/sub/nested/table.bin" in Path(path).as_posix()
    resolves = [r for r in hub.requests if r.kind == "resolve"]
    assert [r.method for r in resolves] == ["HEAD", "GET"] and all(r.has_auth for r in resolves)

    snapshot = Path(snapshot_download(repo_id, cache_dir=tmp_path / "other_cache"))
    assert snapshot.name == info.oid
    downloaded = _folder_files(snapshot)
    assert downloaded.pop(".gitattributes") == hub.files(repo_id)[".gitattributes"]
    assert downloaded == expected

    # The commit sha is a revision as well.
    by_sha = hf_hub_download(repo_id, "config.json", revision=info.oid, cache_dir=tmp_path / "third_cache")
    assert Path(by_sha).read_bytes() == expected["config.json"]


def test_second_download_works_offline_from_the_cache(
    hub: LocalHub, model_folder: Path, monkeypatch: pytest.MonkeyPatch
):
    repo_id = HfApi().create_repo("tester/offline").repo_id
    HfApi().upload_folder(repo_id=repo_id, folder_path=model_folder, commit_message="Upload")
    file_path = hf_hub_download(repo_id, "config.json")
    snapshot = snapshot_download(repo_id)

    hub.stop()  # nothing to answer any more
    nb_requests = len(hub.requests)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # read at import: the variable alone does nothing now
    assert hf_hub_download(repo_id, "config.json") == file_path
    assert snapshot_download(repo_id) == snapshot
    assert Path(snapshot, "weights.bin").read_bytes() == (model_folder / "weights.bin").read_bytes()
    assert len(hub.requests) == nb_requests


def test_unchanged_upload_makes_no_commit_and_old_commits_stay_readable(hub: LocalHub, model_folder: Path):
    api = HfApi()
    repo_id = api.create_repo("tester/history").repo_id
    first = api.upload_folder(repo_id=repo_id, folder_path=model_folder, commit_message="First")
    # preupload answers the remote git blob sha1 of each file: the client sees nothing changed.
    again = api.upload_folder(repo_id=repo_id, folder_path=model_folder, commit_message="Again")
    assert again.oid == first.oid
    assert hub.commits(repo_id) == ["initial commit", "First"]

    second = api.create_commit(
        repo_id,
        operations=[
            CommitOperationAdd("config.json", b'{"hidden_size": 16}'),
            CommitOperationDelete("sub/nested/table.bin"),
        ],
        commit_message="Second",
    )
    assert hub.commits(repo_id) == ["initial commit", "First", "Second"]
    assert "sub/nested/table.bin" not in hub.files(repo_id)
    assert hub.files(repo_id, revision=first.oid)["config.json"] == (model_folder / "config.json").read_bytes()
    assert Path(hf_hub_download(repo_id, "config.json", revision=first.oid)).read_bytes().startswith(b'{"hidden')
    assert Path(hf_hub_download(repo_id, "config.json")).read_bytes() == b'{"hidden_size": 16}'
    assert second.oid != first.oid

    tree = {entry.path: type(entry).__name__ for entry in api.list_repo_tree(repo_id)}
    assert tree == {
        "sub": "RepoFolder",
        ".gitattributes": "RepoFile",
        "README.md": "RepoFile",
        "config.json": "RepoFile",
        "weights.bin": "RepoFile",
    }

    with pytest.raises(RevisionNotFoundError):
        api.model_info(repo_id, revision="no-such-branch")
    with pytest.raises(huggingface_hub.errors.EntryNotFoundError):
        hf_hub_download(repo_id, "missing.txt")


def test_upload_to_a_branch(hub: LocalHub, model_folder: Path):
    api = HfApi()
    repo_id = api.create_repo("tester/branches").repo_id
    api.create_branch(repo_id, branch="dev")
    api.create_branch(repo_id, branch="dev", exist_ok=True)
    info = api.upload_folder(repo_id=repo_id, folder_path=model_folder, revision="dev", commit_message="On dev")

    assert hub.commits(repo_id, revision="dev") == ["initial commit", "On dev"]
    assert hub.commits(repo_id) == ["initial commit"]
    assert set(hub.files(repo_id, revision="dev")) == set(_folder_files(model_folder)) | {".gitattributes"}
    assert api.list_repo_files(repo_id) == [".gitattributes"]
    assert hub.files(repo_id, revision=info.oid) == hub.files(repo_id, revision="dev")
    path = hf_hub_download(repo_id, "sub/vocab.txt", revision="dev")
    assert Path(path).read_bytes() == (model_folder / "sub" / "vocab.txt").read_bytes()


def test_writes_without_a_valid_token_answer_401(hub: LocalHub):
    api = HfApi()
    with pytest.raises(HfHubHTTPError) as excinfo:
        api.create_repo("tester/anonymous", token=False)
    assert excinfo.value.response.status_code == 401
    assert not hub.repo_exists("tester/anonymous")

    api.create_repo("tester/guarded")
    with pytest.raises(HfHubHTTPError) as excinfo:
        api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="tester/guarded", token=False)
    assert excinfo.value.response.status_code == 401
    with pytest.raises(HfHubHTTPError) as excinfo:
        api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="tester/guarded", token="hf_wrong")
    assert excinfo.value.response.status_code == 401
    assert "Invalid credentials" in str(excinfo.value)
    assert hub.commits("tester/guarded") == ["initial commit"]

    failed = [r for r in hub.requests if r.status == 401]
    assert [r.has_auth for r in failed] == [False, False, True]
    assert DEFAULT_TOKEN not in repr(hub.requests) and "hf_wrong" not in repr(hub.requests)


def test_private_repo_is_not_readable_without_a_token(hub: LocalHub, tmp_path: Path):
    hub.create_repo("tester/secret", private=True)
    hub.add_files("tester/secret", {"config.json": b"{}", "sub/a.txt": "a"}, message="Seed")
    api = HfApi()
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("tester/secret", token=False)
    with pytest.raises(RepositoryNotFoundError) as excinfo:
        hf_hub_download("tester/secret", "config.json", token=False)
    assert excinfo.value.response.status_code == 401
    with pytest.raises(RepositoryNotFoundError):
        snapshot_download("tester/secret", token=False, cache_dir=tmp_path / "anonymous_cache")
    assert not api.repo_exists("tester/secret", token=False)

    assert api.model_info("tester/secret").private is True
    assert Path(hf_hub_download("tester/secret", "sub/a.txt")).read_bytes() == b"a"
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("tester/does-not-exist")


def test_failing_preupload_is_retried_by_the_client(
    hub: LocalHub, model_folder: Path, monkeypatch: pytest.MonkeyPatch
):
    # huggingface_hub sends preupload through `http_backoff` (retries 408/429/5xx, sleeping 1 s, 2 s, ...).
    sleeps: list[float] = []
    monkeypatch.setattr(huggingface_hub.utils._http, "time", types.SimpleNamespace(sleep=sleeps.append))
    repo_id = HfApi().create_repo("tester/flaky").repo_id
    hub.requests.clear()
    hub.fail_next(2, 503)
    HfApi().upload_folder(repo_id=repo_id, folder_path=model_folder, commit_message="Despite failures")

    assert [(r.kind, r.status) for r in hub.requests if r.kind in ("preupload", "commit")] == [
        ("preupload", 503),
        ("preupload", 503),
        ("preupload", 200),
        ("commit", 200),
    ]
    assert sleeps == [1, 2]
    assert hub.commits(repo_id) == ["initial commit", "Despite failures"]


def test_failing_commit_is_not_retried(hub: LocalHub, monkeypatch: pytest.MonkeyPatch):
    # The commit POST of `create_commit` goes through `get_session().post`, without retry.
    monkeypatch.setattr(huggingface_hub.utils._http, "time", types.SimpleNamespace(sleep=lambda s: None))
    api = HfApi()
    repo_id = api.create_repo("tester/flaky-commit").repo_id
    hub.fail_next(1, 503, kinds=["commit"])
    with pytest.raises(HfHubHTTPError) as excinfo:
        api.upload_file(path_or_fileobj=b"data", path_in_repo="data.txt", repo_id=repo_id)
    assert excinfo.value.response.status_code == 503
    assert hub.commits(repo_id) == ["initial commit"]

    api.upload_file(path_or_fileobj=b"data", path_in_repo="data.txt", repo_id=repo_id)  # failure consumed
    assert hub.files(repo_id)["data.txt"] == b"data"

    hub.fail_next(1, 500, kinds=None)  # any request
    with pytest.raises(HfHubHTTPError) as excinfo:
        api.model_info(repo_id)
    assert excinfo.value.response.status_code == 500


def test_model_card_push_to_hub_and_yaml_validation(hub: LocalHub):
    repo_id = HfApi().create_repo("tester/carded").repo_id
    card = ModelCard(README)
    card.validate()
    card.push_to_hub(repo_id, commit_message="Add card")
    assert hub.files(repo_id)["README.md"] == README.encode()
    assert hub.commits(repo_id)[-1] == "Add card"
    assert _kinds(hub).count("validate_yaml") >= 2

    bad = "---\nlicense: [mit\n---\n# Card\n"
    response = get_session().post(f"{hub.endpoint}/api/validate-yaml", json={"content": bad, "repoType": "model"})
    assert response.status_code == 400
    with pytest.raises(ValueError, match="Invalid metadata in README.md"):
        HfApi().upload_file(path_or_fileobj=bad.encode(), path_in_repo="README.md", repo_id=repo_id)
    assert hub.commits(repo_id)[-1] == "Add card"
