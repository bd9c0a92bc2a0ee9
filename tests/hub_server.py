"""A local, offline stand-in for the Hugging Face Hub, for the test suite only.

`LocalHub` is a small HTTP server (stdlib `ThreadingHTTPServer` on 127.0.0.1, a free port, a daemon thread) that
answers the HTTP calls huggingface_hub 2.4 makes to push to and load from the Hub, so that `create_repo`,
`upload_folder`, `upload_file`, `create_commit`, `model_info`, `list_repo_files`, `hf_hub_download`,
`snapshot_download`, `ModelCard.push_to_hub`, transformers' `push_to_hub` / `from_pretrained`, ... run against it
without a network.

Usage, in a test (the `local_hub` fixture does all of this)::

    from hub_server import DEFAULT_TOKEN, LocalHub, use_local_hub

    def test_push(tmp_path, monkeypatch):
        with LocalHub(tmp_path / "hub", tokens={DEFAULT_TOKEN}) as hub:
            use_local_hub(monkeypatch, hub, cache_dir=tmp_path / "hf_cache")
            HfApi().create_repo("tester/tiny")
            ...
            assert hub.files("tester/tiny")["config.json"] == b"..."

or with the fixture, from `conftest.py` (`from hub_server import local_hub  # noqa: F401`, or wrap
`running_local_hub`): a test that takes `local_hub` gets a started `LocalHub` whose huggingface_hub is pointed at it.
`tests/` has no `__init__.py`: with pytest's default import mode the folder of `conftest.py` / of the test module is on
`sys.path`, so the module is imported as `hub_server`, not `tests.hub_server`.

Pointing huggingface_hub at the server from inside one process: huggingface_hub reads its environment variables
once, when `huggingface_hub.constants` is imported (`ENDPOINT`, `HUGGINGFACE_CO_URL_TEMPLATE`, `HF_HUB_CACHE`,
`HF_HUB_OFFLINE`, `HF_HUB_DISABLE_XET`, `HF_TOKEN_PATH`), and the module-level `huggingface_hub.hf_api.api` (behind
`huggingface_hub.create_repo`, `upload_file`, `ModelCard.push_to_hub`, ...) keeps the endpoint it had at import.
Setting `HF_ENDPOINT` once huggingface_hub is imported changes nothing. `use_local_hub(monkeypatch, hub,
cache_dir=...)` therefore sets the environment variables (for modules imported later and subprocesses) and patches
those constants, `huggingface_hub.hf_api.api.endpoint`, transformers' cached `HfApi` and `datasets.config` when they
are already imported; monkeypatch undoes it all after the test. It also sets `HF_TOKEN` to the test token (pass
`token=None` for no implicit token) and points `HF_TOKEN_PATH` at a missing file, so a developer's real token is
never sent. `HF_HUB_OFFLINE` is forced off while the server is in use: to check that a load works from the cache
alone, patch `huggingface_hub.constants.HF_HUB_OFFLINE` to True (the environment variable alone has no effect after
import).

What the server does, and where it differs from the Hub:

* Repos are `namespace/name`; `create_repo("name")` without a namespace lands in the user's namespace, `tester`.
  Model, dataset and space repos are kept apart (`/api/{models,datasets,spaces}/...`, `/datasets/.../resolve/...`).
* A new repo gets an "initial commit" holding a `.gitattributes`, like the Hub (`gitattributes=False` to skip it).
* Every file is stored as a regular git blob: preupload answers `"uploadMode": "regular"` for all files, so no LFS
  or Xet transfer ever happens and each file's etag is its git blob sha1 (the Hub would use LFS, i.e. a sha256 etag,
  for `*.safetensors`, `*.bin`, files over 10 MiB, ...). A commit line `lfsFile` is refused with a 400.
* Every commit is kept: `revision=<commit sha>` resolves, as do branches and `refs/pr/N` of `create_pr=True`.
* Tokens: write endpoints (create/delete repo, settings, preupload, commit, branch) answer 401 without a bearer
  token from `tokens`; any request carrying a token that is not in `tokens` answers 401 "Invalid credentials in
  Authorization header", as the Hub does even for public repos; a private repo read without a valid token answers
  401 with `X-Error-Code: RepoNotFound` (huggingface_hub raises `RepositoryNotFoundError`). Any valid token is user
  `tester` and can read and write every repo. `/api/whoami-v2` answers `{"name": "tester", ...}`.
* `/api/validate-yaml` answers 200 `{"errors": [], "warnings": []}`, or 400 with an error when the card's YAML
  front matter does not parse or is not a mapping.
* `fail_next(n, status=503)` makes the next `n` preupload/commit requests fail with `status` (`kinds=None`: the next
  `n` requests of any kind). What huggingface_hub 2.4 does with that: preupload goes through `http_backoff`, which
  retries 408/429/5xx up to 5 times (sleeping 1 s, 2 s, 4 s, ...); the commit POST of `create_commit` /
  `upload_folder` (Xet disabled) is not retried and raises `HfHubHTTPError`.
* `requests` logs every request as a `RequestRecord(method, path, kind, has_auth, status)`; token values are never
  stored. The path is logged without its query string.

State (repos, commits, refs) lives in memory; blobs are written under `<storage>/blobs/<git sha1>`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import json
import os
import re
import socket
import sys
import threading
import urllib.parse
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "DEFAULT_TOKEN",
    "DEFAULT_USER",
    "LocalHub",
    "RequestRecord",
    "local_hub",
    "running_local_hub",
    "use_local_hub",
]

DEFAULT_TOKEN = "hf_test_token"
DEFAULT_USER = "tester"

# Kinds of requests `fail_next` targets by default.
DEFAULT_FAIL_KINDS = ("preupload", "commit")

_TYPE_FROM_PLURAL = {"models": "model", "datasets": "dataset", "spaces": "space"}
_URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_INVALID_CREDENTIALS = "Invalid credentials in Authorization header"

_GITATTRIBUTES = b"""\
*.7z filter=lfs diff=lfs merge=lfs -text
*.bin filter=lfs diff=lfs merge=lfs -text
*.ckpt filter=lfs diff=lfs merge=lfs -text
*.h5 filter=lfs diff=lfs merge=lfs -text
*.model filter=lfs diff=lfs merge=lfs -text
*.msgpack filter=lfs diff=lfs merge=lfs -text
*.npz filter=lfs diff=lfs merge=lfs -text
*.onnx filter=lfs diff=lfs merge=lfs -text
*.pt filter=lfs diff=lfs merge=lfs -text
*.pth filter=lfs diff=lfs merge=lfs -text
*.safetensors filter=lfs diff=lfs merge=lfs -text
*.zip filter=lfs diff=lfs merge=lfs -text
"""


def git_blob_sha1(data: bytes) -> str:
    """The git blob id of `data` (`git hash-object`), which the Hub uses as the etag of a regular file."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True)
class RequestRecord:
    """One request the server received. `has_auth`: an Authorization header was sent (its value is not kept)."""

    method: str
    path: str
    kind: str
    has_auth: bool
    status: int


@dataclass
class _Commit:
    oid: str
    parent: str | None
    title: str
    description: str
    files: dict[str, str]  # path -> blob id
    date: str


@dataclass
class _Repo:
    repo_type: str
    repo_id: str
    private: bool
    created_at: str
    commits: dict[str, _Commit] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)  # "main", "dev", "refs/pr/1" -> commit oid
    nb_prs: int = 0


class _HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = dict(headers or {})


@dataclass
class _Request:
    method: str
    segments: list[str]
    params: dict[str, list[str]]
    headers: Mapping[str, str]
    body: bytes
    token: str | None  # only kept for the time of the request, never logged

    def json(self) -> Any:
        if not self.body:
            return {}
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise _HubError(400, f"Invalid JSON body: {e}") from e

    def param(self, name: str, default: str | None = None) -> str | None:
        values = self.params.get(name)
        return values[0] if values else default


@dataclass
class _Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


def _json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> _Response:
    return _Response(status=status, body=json.dumps(data).encode(), headers=dict(headers or {}))


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() in {"1", "true", "yes"}


class LocalHub:
    """A local Hub-compatible HTTP server. See the module docstring.

    Args:
        storage: folder for the blobs (created if missing).
        tokens: bearer tokens accepted as user `tester`. Defaults to `{DEFAULT_TOKEN}`.
        gitattributes: give new repos an initial commit holding a `.gitattributes`, as the Hub does.
    """

    def __init__(self, storage: str | os.PathLike, tokens: Iterable[str] | None = None, *, gitattributes: bool = True):
        self.storage = Path(storage)
        self.valid_tokens: set[str] = set(tokens) if tokens is not None else {DEFAULT_TOKEN}
        self.gitattributes = gitattributes
        self.requests: list[RequestRecord] = []
        self._repos: dict[tuple[str, str], _Repo] = {}
        self._lock = threading.RLock()
        self._counter = itertools.count()
        self._fail_left = 0
        self._fail_status = 503
        self._fail_kinds: frozenset[str] | None = frozenset(DEFAULT_FAIL_KINDS)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.endpoint = ""

    # ---------------------------------------------------------------------------------------------------- lifecycle

    def start(self) -> LocalHub:
        if self._server is not None:
            return self
        (self.storage / "blobs").mkdir(parents=True, exist_ok=True)
        server = _Server(("127.0.0.1", 0), _Handler)
        server.hub = self
        self._server = server
        self.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="local-hub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> LocalHub:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------------------------------------------- test helpers

    def fail_next(self, n: int, status: int = 503, *, kinds: Iterable[str] | None = DEFAULT_FAIL_KINDS) -> None:
        """Make the next `n` requests of the given kinds (default preupload and commit; None: any) answer `status`.

        Replaces any failure still pending. Kinds: see `RequestRecord.kind` in `requests` (e.g. "create_repo",
        "repo_info", "tree", "paths_info", "preupload", "commit", "resolve", "whoami", "validate_yaml").
        """
        with self._lock:
            self._fail_left = n
            self._fail_status = status
            self._fail_kinds = frozenset(kinds) if kinds is not None else None

    def repo_exists(self, repo_id: str, repo_type: str = "model") -> bool:
        with self._lock:
            return (repo_type, repo_id) in self._repos

    def is_private(self, repo_id: str, repo_type: str = "model") -> bool:
        with self._lock:
            return self._get_repo(repo_type, repo_id).private

    def files(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> dict[str, bytes]:
        """The files of `repo_id` at `revision` (branch, `refs/pr/N` or commit sha), path -> content."""
        with self._lock:
            commit = self._resolve(self._get_repo(repo_type, repo_id), revision)
            blobs = dict(commit.files)
        return {path: self._read_blob(blob) for path, blob in sorted(blobs.items())}

    def commits(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> list[str]:
        """Commit titles (messages) reachable from `revision`, oldest first ("initial commit" first)."""
        return [c.title for c in self._history(repo_id, repo_type, revision)]

    def commit_shas(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> list[str]:
        """Commit shas reachable from `revision`, oldest first."""
        return [c.oid for c in self._history(repo_id, repo_type, revision)]

    def head(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> str:
        """The commit sha `revision` points to."""
        with self._lock:
            return self._resolve(self._get_repo(repo_type, repo_id), revision).oid

    def branches(self, repo_id: str, repo_type: str = "model") -> dict[str, str]:
        """Refs of the repo (branches and `refs/pr/N`) -> commit sha."""
        with self._lock:
            return dict(self._get_repo(repo_type, repo_id).refs)

    def create_repo(self, repo_id: str, repo_type: str = "model", *, private: bool = False) -> None:
        """Create a repo directly (no HTTP, no token), e.g. to prepare a repo a test then loads from."""
        with self._lock:
            self._create_repo(repo_type, repo_id, private)

    def add_files(
        self,
        repo_id: str,
        files: Mapping[str, bytes | str | os.PathLike] | str | os.PathLike,
        *,
        repo_type: str = "model",
        revision: str = "main",
        message: str = "Add files",
        private: bool = False,
    ) -> str:
        """Commit `files` (path in repo -> bytes, text or local file; or a local folder) directly, creating the repo
        if needed (with `private`); return the commit sha."""
        if isinstance(files, (str, os.PathLike)):
            root = Path(files)
            contents = {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
        else:
            contents = {}
            for path, value in files.items():
                if isinstance(value, bytes):
                    contents[path] = value
                elif isinstance(value, str):
                    contents[path] = value.encode()
                else:
                    contents[path] = Path(value).read_bytes()
        with self._lock:
            if (repo_type, repo_id) not in self._repos:
                self._create_repo(repo_type, repo_id, private)
            repo = self._repos[(repo_type, repo_id)]
            if revision not in repo.refs:
                raise KeyError(f"{repo_type} repo {repo_id} has no branch {revision!r}")
            parent = repo.commits[repo.refs[revision]]
            tree = dict(parent.files)
            for path, data in contents.items():
                tree[_check_path(path)] = self._write_blob(data)
            commit = self._new_commit(repo, parent.oid, message, "", tree)
            repo.refs[revision] = commit.oid
            return commit.oid

    # --------------------------------------------------------------------------------------------------- internals

    def _history(self, repo_id: str, repo_type: str, revision: str) -> list[_Commit]:
        with self._lock:
            repo = self._get_repo(repo_type, repo_id)
            commit: _Commit | None = self._resolve(repo, revision)
            chain = []
            while commit is not None:
                chain.append(commit)
                commit = repo.commits[commit.parent] if commit.parent else None
        return chain[::-1]

    def _get_repo(self, repo_type: str, repo_id: str) -> _Repo:
        try:
            return self._repos[(repo_type, repo_id)]
        except KeyError:
            raise KeyError(f"No {repo_type} repo {repo_id!r} on the local hub") from None

    def _write_blob(self, data: bytes) -> str:
        blob = git_blob_sha1(data)
        path = self.storage / "blobs" / blob
        if not path.exists():
            tmp = path.with_name(f"{blob}.{uuid.uuid4().hex}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return blob

    def _read_blob(self, blob: str) -> bytes:
        return (self.storage / "blobs" / blob).read_bytes()

    def _blob_size(self, blob: str) -> int:
        return (self.storage / "blobs" / blob).stat().st_size

    def _new_commit(self, repo: _Repo, parent: str | None, title: str, description: str, files: dict) -> _Commit:
        seed = json.dumps([repo.repo_type, repo.repo_id, parent, title, description, files, next(self._counter)])
        oid = hashlib.sha1(seed.encode()).hexdigest()
        commit = _Commit(oid=oid, parent=parent, title=title, description=description, files=files, date=_now())
        repo.commits[oid] = commit
        return commit

    def _create_repo(self, repo_type: str, repo_id: str, private: bool) -> _Repo:
        if (repo_type, repo_id) in self._repos:
            raise _HubError(409, f"You already created this {repo_type} repo")
        repo = _Repo(repo_type=repo_type, repo_id=repo_id, private=private, created_at=_now())
        files = {".gitattributes": self._write_blob(_GITATTRIBUTES)} if self.gitattributes else {}
        repo.refs["main"] = self._new_commit(repo, None, "initial commit", "", files).oid
        self._repos[(repo_type, repo_id)] = repo
        return repo

    def _resolve(self, repo: _Repo, revision: str) -> _Commit:
        if revision in repo.refs:
            return repo.commits[repo.refs[revision]]
        if revision in repo.commits:
            return repo.commits[revision]
        raise _HubError(404, f"Invalid rev id: {revision}", code="RevisionNotFound")

    def _repo_url(self, repo: _Repo) -> str:
        return f"{self.endpoint}/{_URL_PREFIX[repo.repo_type]}{repo.repo_id}"

    def _should_fail(self, kind: str) -> int | None:
        with self._lock:
            if self._fail_left > 0 and (self._fail_kinds is None or kind in self._fail_kinds):
                self._fail_left -= 1
                return self._fail_status
        return None

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self.requests.append(record)

    # ------------------------------------------------------------------------------------------------------ routing

    def _route(self, method: str, segs: list[str]) -> tuple[str, Any, tuple]:
        """(kind, handler, args) for a request path split into unquoted segments."""
        if segs[:1] == ["api"]:
            rest = segs[1:]
            if rest == ["whoami-v2"] and method == "GET":
                return "whoami", self._whoami, ()
            if rest == ["repos", "create"] and method == "POST":
                return "create_repo", self._api_create_repo, ()
            if rest == ["repos", "delete"] and method == "DELETE":
                return "delete_repo", self._api_delete_repo, ()
            if rest == ["validate-yaml"] and method == "POST":
                return "validate_yaml", self._validate_yaml, ()
            if rest[:1] == ["telemetry"]:
                return "telemetry", lambda req: _json_response({}), ()
            if len(rest) == 2 and rest[0] in _TYPE_FROM_PLURAL:  # legacy id without namespace ("gpt2")
                return "repo_info", self._repo_info, (_TYPE_FROM_PLURAL[rest[0]], rest[1], "main")
            if len(rest) >= 3 and rest[0] in _TYPE_FROM_PLURAL:
                repo_type, repo_id, sub = _TYPE_FROM_PLURAL[rest[0]], f"{rest[1]}/{rest[2]}", rest[3:]
                args: tuple = (repo_type, repo_id)
                if not sub and method == "GET":
                    return "repo_info", self._repo_info, (*args, "main")
                if len(sub) == 2 and sub[0] == "revision" and method == "GET":
                    return "repo_info", self._repo_info, (*args, sub[1])
                if len(sub) >= 2 and sub[0] == "tree" and method == "GET":
                    return "tree", self._tree, (*args, sub[1], "/".join(sub[2:]))
                if len(sub) == 2 and sub[0] == "paths-info" and method == "POST":
                    return "paths_info", self._paths_info, (*args, sub[1])
                if sub == ["refs"] and method == "GET":
                    return "refs", self._refs, args
                if len(sub) == 2 and sub[0] == "commits" and method == "GET":
                    return "commits", self._list_commits, (*args, sub[1])
                if len(sub) == 2 and sub[0] == "preupload" and method == "POST":
                    return "preupload", self._preupload, (*args, sub[1])
                if len(sub) == 2 and sub[0] == "commit" and method == "POST":
                    return "commit", self._commit, (*args, sub[1])
                if len(sub) == 2 and sub[0] == "branch" and method in ("POST", "DELETE"):
                    return "branch", self._branch, (*args, sub[1])
                if sub == ["settings"] and method == "PUT":
                    return "settings", self._settings, args
            return "unknown", None, ()
        if method in ("GET", "HEAD"):
            repo_type = "model"
            rest = segs
            if segs[:1] in (["datasets"], ["spaces"]) and len(segs) >= 6 and segs[3] == "resolve":
                repo_type, rest = _TYPE_FROM_PLURAL[segs[0]], segs[1:]
            if len(rest) >= 5 and rest[2] == "resolve":
                return "resolve", self._resolve_file, (repo_type, f"{rest[0]}/{rest[1]}", rest[3], "/".join(rest[4:]))
            if len(rest) >= 4 and rest[1] == "resolve":  # legacy id without namespace: never exists here
                return "resolve", self._resolve_file, (repo_type, rest[0], rest[2], "/".join(rest[3:]))
        return "unknown", None, ()

    # ---------------------------------------------------------------------------------------------------- endpoints

    def _require_write(self, req: _Request) -> None:
        if req.token is None:
            raise _HubError(401, "Invalid username or password.")

    def _readable_repo(self, req: _Request, repo_type: str, repo_id: str) -> _Repo:
        repo = self._repos.get((repo_type, repo_id))
        if repo is None or (repo.private and req.token is None):
            # Like the Hub: 401 when anonymous, 404 when authenticated; huggingface_hub reads the error code.
            status = 404 if req.token is not None else 401
            raise _HubError(status, "Repository not found", code="RepoNotFound")
        return repo

    def _whoami(self, req: _Request) -> _Response:
        if req.token is None:
            raise _HubError(401, _INVALID_CREDENTIALS)
        return _json_response(
            {
                "type": "user",
                "id": "000000000000000000000001",
                "name": DEFAULT_USER,
                "fullname": "Local Hub Tester",
                "email": "tester@localhost",
                "emailVerified": True,
                "isPro": False,
                "canPay": False,
                "orgs": [],
                "auth": {"type": "access_token", "accessToken": {"displayName": "local-hub", "role": "write"}},
            }
        )

    def _api_create_repo(self, req: _Request) -> _Response:
        self._require_write(req)
        body = req.json()
        name, namespace = body.get("name"), body.get("organization") or DEFAULT_USER
        repo_type = body.get("type") or "model"
        if repo_type not in _URL_PREFIX:
            raise _HubError(400, f"Invalid repo type {repo_type!r}")
        if not isinstance(name, str) or not _NAME_RE.match(name) or not _NAME_RE.match(namespace):
            raise _HubError(400, f"Invalid repo name {namespace}/{name}")
        private = body.get("visibility") == "private" if "visibility" in body else bool(body.get("private"))
        repo_id = f"{namespace}/{name}"
        existing = self._repos.get((repo_type, repo_id))
        if existing is not None:
            return _json_response(
                {"error": f"You already created this {repo_type} repo", "url": self._repo_url(existing)}, 409
            )
        repo = self._create_repo(repo_type, repo_id, private)
        return _json_response({"url": self._repo_url(repo), "name": repo_id, "id": repo_id})

    def _api_delete_repo(self, req: _Request) -> _Response:
        self._require_write(req)
        body = req.json()
        repo_id = f"{body.get('organization') or DEFAULT_USER}/{body.get('name')}"
        key = (body.get("type") or "model", repo_id)
        if key not in self._repos:
            raise _HubError(404, "Repository not found", code="RepoNotFound")
        del self._repos[key]
        return _Response(status=200, body=b"{}")

    def _settings(self, req: _Request, repo_type: str, repo_id: str) -> _Response:
        self._require_write(req)
        repo = self._readable_repo(req, repo_type, repo_id)
        body = req.json()
        if "visibility" in body:
            repo.private = body["visibility"] == "private"
        elif "private" in body:
            repo.private = bool(body["private"])
        return _json_response({"private": repo.private})

    def _validate_yaml(self, req: _Request) -> _Response:
        import yaml

        content = str(req.json().get("content", ""))
        match = re.match(r"^\s*---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(\r?\n|$)", content, flags=re.DOTALL)
        if match is None:
            return _json_response({"errors": [], "warnings": []})
        try:
            metadata = yaml.safe_load(match.group(1))
        except yaml.YAMLError as e:
            return _json_response({"errors": [{"message": f"Invalid YAML in the card metadata: {e}"}]}, 400)
        if metadata is not None and not isinstance(metadata, dict):
            return _json_response({"errors": [{"message": "The card metadata must be a YAML mapping"}]}, 400)
        return _json_response({"errors": [], "warnings": []})

    def _repo_info(self, req: _Request, repo_type: str, repo_id: str, revision: str) -> _Response:
        repo = self._readable_repo(req, repo_type, repo_id)
        commit = self._resolve(repo, revision)
        blobs = _truthy(req.param("blobs"))
        siblings = []
        for path, blob in sorted(commit.files.items()):
            sibling: dict[str, Any] = {"rfilename": path}
            if blobs:
                sibling.update(size=self._blob_size(blob), blobId=blob)
            siblings.append(sibling)
        namespace = repo_id.split("/")[0]
        info: dict[str, Any] = {
            "_id": hashlib.sha1(f"{repo_type}/{repo_id}".encode()).hexdigest()[:24],
            "id": repo_id,
            "author": namespace,
            "sha": commit.oid,
            "lastModified": commit.date,
            "createdAt": repo.created_at,
            "private": repo.private,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
        }
        if repo_type == "model":
            info["modelId"] = repo_id
        card = self._card_metadata(commit)
        if card is not None:
            info["cardData"] = card
            if isinstance(card.get("tags"), list):
                info["tags"] = [str(t) for t in card["tags"]]
            for key in ("library_name", "pipeline_tag"):
                if isinstance(card.get(key), str):
                    info[key] = card[key]
        return _json_response(info)

    def _card_metadata(self, commit: _Commit) -> dict | None:
        blob = commit.files.get("README.md")
        if blob is None:
            return None
        import yaml

        text = self._read_blob(blob).decode("utf-8", errors="replace")
        match = re.match(r"^\s*---[ \t]*\r?\n(.*?)\r?\n---", text, flags=re.DOTALL)
        if match is None:
            return None
        try:
            data = yaml.safe_load(match.group(1))
        except yaml.YAMLError:
            return None
        return data if isinstance(data, dict) else None

    def _entry(self, commit: _Commit, path: str) -> dict | None:
        """Tree entry of `path` in `commit`: a file, a directory, or None."""
        if path in commit.files:
            blob = commit.files[path]
            return {"type": "file", "oid": blob, "size": self._blob_size(blob), "path": path}
        prefix = path + "/"
        children = sorted((p, b) for p, b in commit.files.items() if p.startswith(prefix))
        if not children:
            return None
        oid = hashlib.sha1(json.dumps(children).encode()).hexdigest()
        return {"type": "directory", "oid": oid, "size": 0, "path": path}

    def _tree(self, req: _Request, repo_type: str, repo_id: str, revision: str, path: str) -> _Response:
        repo = self._readable_repo(req, repo_type, repo_id)
        commit = self._resolve(repo, revision)
        path = path.strip("/")
        if path:
            entry = self._entry(commit, path)
            if entry is None or entry["type"] != "directory":
                raise _HubError(404, f"{path} does not exist on {revision}", code="EntryNotFound")
        recursive = _truthy(req.param("recursive"))
        prefix = path + "/" if path else ""
        names: set[str] = set()
        for file_path in commit.files:
            if not file_path.startswith(prefix):
                continue
            parts = file_path[len(prefix) :].split("/")
            depth = len(parts) if recursive else 1
            for i in range(1, depth + 1):
                names.add(prefix + "/".join(parts[:i]))
        entries = [self._entry(commit, name) for name in sorted(names)]
        entries.sort(key=lambda e: (e["type"] != "directory", e["path"]))
        return _json_response(entries)

    def _paths_info(self, req: _Request, repo_type: str, repo_id: str, revision: str) -> _Response:
        repo = self._readable_repo(req, repo_type, repo_id)
        commit = self._resolve(repo, revision)
        if req.headers.get("Content-Type", "").startswith("application/json"):
            paths = req.json().get("paths", [])
        else:
            paths = urllib.parse.parse_qs(req.body.decode()).get("paths", [])
        if isinstance(paths, str):
            paths = [paths]
        entries = [self._entry(commit, p.strip("/")) for p in paths]
        return _json_response([e for e in entries if e is not None])

    def _refs(self, req: _Request, repo_type: str, repo_id: str) -> _Response:
        repo = self._readable_repo(req, repo_type, repo_id)
        branches, prs = [], []
        for name, oid in sorted(repo.refs.items()):
            if name.startswith("refs/pr/"):
                prs.append({"name": name, "ref": name, "targetCommit": oid})
            else:
                branches.append({"name": name, "ref": f"refs/heads/{name}", "targetCommit": oid})
        data: dict[str, Any] = {"branches": branches, "converts": [], "tags": []}
        if _truthy(req.param("include_prs")):
            data["pullRequests"] = prs
        return _json_response(data)

    def _list_commits(self, req: _Request, repo_type: str, repo_id: str, revision: str) -> _Response:
        repo = self._readable_repo(req, repo_type, repo_id)
        commit: _Commit | None = self._resolve(repo, revision)
        items = []
        while commit is not None:
            message = commit.title + (f"\n\n{commit.description}" if commit.description else "")
            items.append(
                {
                    "id": commit.oid,
                    "title": commit.title,
                    "message": message,
                    "authors": [{"user": DEFAULT_USER}],
                    "date": commit.date,
                }
            )
            commit = repo.commits[commit.parent] if commit.parent else None
        return _json_response(items)

    def _writable_branch(self, req: _Request, repo_type: str, repo_id: str, revision: str) -> tuple[_Repo, _Commit]:
        self._require_write(req)
        repo = self._readable_repo(req, repo_type, repo_id)
        if revision not in repo.refs:
            if revision in repo.commits:
                raise _HubError(400, f"Cannot commit to a commit id ({revision}): give a branch")
            raise _HubError(404, f"Invalid rev id: {revision}", code="RevisionNotFound")
        return repo, repo.commits[repo.refs[revision]]

    def _preupload(self, req: _Request, repo_type: str, repo_id: str, revision: str) -> _Response:
        _, head = self._writable_branch(req, repo_type, repo_id, revision)
        files = req.json().get("files")
        if not isinstance(files, list):
            raise _HubError(400, "Expected a list of files")
        answer = []
        for item in files:
            path = _check_path(item.get("path"))
            answer.append({"path": path, "uploadMode": "regular", "shouldIgnore": False, "oid": head.files.get(path)})
        return _json_response({"files": answer, "commitOid": head.oid})

    def _commit(self, req: _Request, repo_type: str, repo_id: str, revision: str) -> _Response:
        repo, head = self._writable_branch(req, repo_type, repo_id, revision)
        header, operations = _parse_commit_body(req.body)
        title = str(header.get("summary") or "").strip()
        if not title:
            raise _HubError(400, "A commit summary (message) is required")
        parent_commit = header.get("parentCommit")
        if parent_commit and parent_commit != head.oid:
            raise _HubError(412, "A commit has happened since. Please refresh and try again.")
        tree = dict(head.files)
        for key, value in operations:
            path = _check_path(value.get("path", "").rstrip("/") if key == "deletedFolder" else value.get("path"))
            if key == "file":
                encoding = (value.get("encoding") or "base64").lower()
                content = value.get("content", "")
                try:
                    data = base64.b64decode(content, validate=True) if encoding == "base64" else content.encode()
                except ValueError as e:
                    raise _HubError(400, f"Invalid base64 content for {path}: {e}") from e
                tree[path] = self._write_blob(data)
            elif key == "deletedFile":
                if path not in tree:
                    raise _HubError(404, f"A file with this name doesn't exist: {path}", code="EntryNotFound")
                del tree[path]
            elif key == "deletedFolder":
                doomed = [p for p in tree if p.startswith(path + "/")]
                if not doomed:
                    raise _HubError(404, f"A folder with this name doesn't exist: {path}", code="EntryNotFound")
                for p in doomed:
                    del tree[p]
            elif key == "lfsFile":
                raise _HubError(400, f"LocalHub stores every file as a regular git blob, not LFS: {path}")
            else:
                raise _HubError(400, f"Unknown commit operation {key!r}")
        pr_url = None
        target = revision
        if _truthy(req.param("create_pr")):
            repo.nb_prs += 1
            target = f"refs/pr/{repo.nb_prs}"
            pr_url = f"{self._repo_url(repo)}/discussions/{repo.nb_prs}"
        commit = self._new_commit(repo, head.oid, title, str(header.get("description") or ""), tree)
        repo.refs[target] = commit.oid
        return _json_response(
            {
                "success": True,
                "commitOid": commit.oid,
                "commitUrl": f"{self._repo_url(repo)}/commit/{commit.oid}",
                "hookOutput": "",
                "pullRequestUrl": pr_url,
            }
        )

    def _branch(self, req: _Request, repo_type: str, repo_id: str, branch: str) -> _Response:
        self._require_write(req)
        repo = self._readable_repo(req, repo_type, repo_id)
        if req.method == "DELETE":
            if branch == "main":
                raise _HubError(403, "Cannot delete the main branch")
            if branch not in repo.refs:
                raise _HubError(404, f"Invalid rev id: {branch}", code="RevisionNotFound")
            del repo.refs[branch]
            return _json_response({})
        if branch in repo.refs:
            raise _HubError(409, f"Reference already exists: refs/heads/{branch}")
        if not branch or branch.startswith("refs/") or ".." in branch or branch.endswith("/"):
            raise _HubError(400, f"Invalid branch name {branch!r}")
        starting_point = req.json().get("startingPoint") or "main"
        repo.refs[branch] = self._resolve(repo, starting_point).oid
        return _json_response({})

    def _resolve_file(self, req: _Request, repo_type: str, repo_id: str, revision: str, path: str) -> _Response:
        repo = self._readable_repo(req, repo_type, repo_id)
        commit = self._resolve(repo, revision)
        blob = commit.files.get(path)
        if blob is None:
            raise _HubError(404, "Entry not found", code="EntryNotFound", headers={"X-Repo-Commit": commit.oid})
        data = self._read_blob(blob) if req.method == "GET" else b""
        size = self._blob_size(blob)
        headers = {
            "X-Repo-Commit": commit.oid,
            "ETag": f'"{blob}"',
            "Accept-Ranges": "bytes",
            "Content-Disposition": f'inline; filename="{path.rsplit("/", 1)[-1]}"',
        }
        status = 200
        range_header = req.headers.get("Range")
        if req.method == "GET" and range_header:
            match = re.fullmatch(r"bytes=(\d*)-(\d*)", range_header.strip())
            start = int(match.group(1)) if match and match.group(1) else None
            end = int(match.group(2)) if match and match.group(2) else None
            if start is None and end is not None:  # suffix range: last `end` bytes
                start, end = max(size - end, 0), size - 1
            if match is None or start is None or start >= size or (end is not None and end < start):
                return _json_response(
                    {"error": "Range not satisfiable"}, 416, {**headers, "Content-Range": f"bytes */{size}"}
                )
            end = size - 1 if end is None else min(end, size - 1)
            data = data[start : end + 1]
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            status = 206
        response = _Response(status=status, body=data, headers=headers, content_type="application/octet-stream")
        if req.method == "HEAD":
            response.headers["Content-Length"] = str(size)
        return response


def _check_path(path: Any) -> str:
    if not isinstance(path, str) or not path or path.startswith("/") or "\\" in path:
        raise _HubError(400, f"Invalid path in repo: {path!r}")
    if any(part in ("", ".", "..") for part in path.split("/")):
        raise _HubError(400, f"Invalid path in repo: {path!r}")
    if path == ".git" or path.startswith(".git/"):
        raise _HubError(400, f"Invalid path in repo: {path!r}")
    return path


def _parse_commit_body(body: bytes) -> tuple[dict, list[tuple[str, dict]]]:
    """(header, [(key, value), ...]) from an ndjson commit body, or from the older single-JSON form."""
    text = body.decode("utf-8")
    stripped = text.strip()
    try:
        whole = json.loads(stripped) if stripped else None
    except ValueError:
        whole = None
    if isinstance(whole, dict) and "key" not in whole:
        operations = [("file", f) for f in whole.get("files", [])]
        operations += [("lfsFile", f) for f in whole.get("lfsFiles", [])]
        operations += [("deletedFile", f) for f in whole.get("deletedFiles", [])]
        operations += [("deletedFolder", f) for f in whole.get("deletedFolders", [])]
        return {k: whole.get(k) for k in ("summary", "description", "parentCommit")}, operations
    header: dict | None = None
    operations = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as e:
            raise _HubError(400, f"Invalid ndjson line in commit payload: {e}") from e
        if not isinstance(item, dict) or not isinstance(item.get("value"), dict):
            raise _HubError(400, "Each ndjson line must be {'key': ..., 'value': {...}}")
        if item.get("key") == "header":
            header = item["value"]
        else:
            operations.append((str(item.get("key")), item["value"]))
    if header is None:
        raise _HubError(400, "The commit payload has no header line")
    return header, operations


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    hub: LocalHub

    def __init__(self, *args: Any, **kwargs: Any):
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Close kept-alive client connections, so that their handler threads end with the server."""
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body are two writes: without TCP_NODELAY, Nagle + delayed ACK add ~40 ms per request.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # silence the default stderr log
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self, method: str) -> None:
        hub = self.server.hub
        raw_path = self.path.split("?", 1)[0]
        query = self.path.split("?", 1)[1] if "?" in self.path else ""
        segments = [urllib.parse.unquote(s) for s in raw_path.split("/")[1:]]
        if segments and segments[-1] == "" and len(segments) > 1:
            segments = segments[:-1]
        body = self._read_body()
        authorization = self.headers.get("Authorization")
        has_auth = authorization is not None
        token = None
        if authorization and authorization.lower().startswith("bearer "):
            token = authorization[7:].strip() or None

        kind, handler, args = hub._route(method, segments)
        try:
            status = hub._should_fail(kind)
            if status is not None:
                response = _json_response({"error": f"LocalHub: injected failure (HTTP {status})"}, status)
            elif has_auth and token not in hub.valid_tokens and kind not in ("validate_yaml", "telemetry"):
                headers = {"X-Error-Message": _INVALID_CREDENTIALS}
                response = _json_response({"error": _INVALID_CREDENTIALS}, 401, headers)
            elif handler is None:
                response = _json_response({"error": f"LocalHub does not serve {method} {raw_path}"}, 404)
            else:
                request = _Request(
                    method=method,
                    segments=segments,
                    params=urllib.parse.parse_qs(query, keep_blank_values=True),
                    headers=self.headers,
                    body=body,
                    token=token,
                )
                with hub._lock:
                    response = handler(request, *args)
        except _HubError as e:
            headers = dict(e.headers)
            if e.code:
                headers["X-Error-Code"] = e.code
            headers["X-Error-Message"] = e.message
            response = _json_response({"error": e.message}, e.status, headers)
        except Exception as e:  # a bug in the server: answer 500 and say it
            print(f"LocalHub: error on {method} {raw_path}: {e!r}", file=sys.stderr)
            response = _json_response({"error": f"LocalHub internal error: {e!r}"}, 500)
        hub._record(RequestRecord(method=method, path=raw_path, kind=kind, has_auth=has_auth, status=response.status))
        self._send(method, response)

    def _send(self, method: str, response: _Response) -> None:
        self.send_response(response.status)
        headers = {"Content-Type": response.content_type, "X-Request-Id": uuid.uuid4().hex, **response.headers}
        headers.setdefault("Content-Length", str(len(response.body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if method != "HEAD" and response.body:
            self.wfile.write(response.body)


# ------------------------------------------------------------------------------------------------------------------
# Pointing huggingface_hub (and transformers / datasets, if imported) at a LocalHub
# ------------------------------------------------------------------------------------------------------------------


def use_local_hub(
    monkeypatch: pytest.MonkeyPatch,
    hub: LocalHub | str,
    *,
    cache_dir: str | os.PathLike,
    token: str | None = DEFAULT_TOKEN,
) -> None:
    """Point huggingface_hub at `hub` (a LocalHub or an endpoint URL) for the rest of the test.

    Sets `HF_ENDPOINT`, `HF_HUB_CACHE`, `HF_HUB_DISABLE_XET=1`, `HF_HUB_DISABLE_TELEMETRY=1`, `HF_HUB_OFFLINE=0`,
    `HF_TOKEN` (`token`, or unset if None) in the environment, and patches the values huggingface_hub,
    transformers and datasets read from it at import time. Everything is undone by `monkeypatch`.
    """
    endpoint = hub.endpoint if isinstance(hub, LocalHub) else str(hub).rstrip("/")
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    token_path = cache_dir.parent / f"{cache_dir.name}_no_token" / "token"  # never created: no stored token

    env = {
        "HF_ENDPOINT": endpoint,
        "HF_HUB_CACHE": str(cache_dir),
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_OFFLINE": "0",
        "TRANSFORMERS_OFFLINE": "0",
        "HF_DATASETS_OFFLINE": "0",
        "HF_TOKEN_PATH": str(token_path),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in ("HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE", "HF_OIDC_ID_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    if token is None:
        monkeypatch.delenv("HF_TOKEN", raising=False)
    else:
        monkeypatch.setenv("HF_TOKEN", token)

    from huggingface_hub import constants, hf_api

    for name, value in {
        "ENDPOINT": endpoint,
        "HUGGINGFACE_CO_URL_TEMPLATE": endpoint + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_HUB_CACHE": str(cache_dir),
        "HUGGINGFACE_HUB_CACHE": str(cache_dir),
        "HF_HUB_OFFLINE": False,
        "HF_HUB_DISABLE_XET": True,
        "HF_HUB_DISABLE_TELEMETRY": True,
        "HF_TOKEN_PATH": str(token_path),
        "HF_STORED_TOKENS_PATH": str(token_path.parent / "stored_tokens"),
    }.items():
        monkeypatch.setattr(constants, name, value, raising=False)
    # `huggingface_hub.create_repo`, `upload_file`, ..., and `ModelCard.push_to_hub` use this module-level HfApi.
    monkeypatch.setattr(hf_api.api, "endpoint", endpoint)

    transformers_hub = sys.modules.get("transformers.utils.hub")
    if transformers_hub is not None and hasattr(transformers_hub, "_hf_api"):
        monkeypatch.setattr(transformers_hub, "_hf_api", None)  # rebuilt lazily with the patched endpoint
    datasets_config = sys.modules.get("datasets.config")
    if datasets_config is not None:
        monkeypatch.setattr(datasets_config, "HF_ENDPOINT", endpoint, raising=False)
        monkeypatch.setattr(
            datasets_config, "HUB_DATASETS_URL", endpoint + "/datasets/{repo_id}/resolve/{revision}/{path}"
        )
        monkeypatch.setattr(datasets_config, "HF_HUB_OFFLINE", False, raising=False)
        monkeypatch.setattr(datasets_config, "HF_DATASETS_OFFLINE", False, raising=False)


@contextlib.contextmanager
def running_local_hub(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: str | os.PathLike,
    *,
    tokens: Iterable[str] | None = None,
    token: str | None = DEFAULT_TOKEN,
    gitattributes: bool = True,
) -> Iterator[LocalHub]:
    """Start a LocalHub storing under `tmp_path/local_hub`, point huggingface_hub at it with the cache in
    `tmp_path/hf_cache` (see `use_local_hub`), and stop it on exit."""
    tmp_path = Path(tmp_path)
    with LocalHub(tmp_path / "local_hub", tokens=tokens, gitattributes=gitattributes) as hub:
        use_local_hub(monkeypatch, hub, cache_dir=tmp_path / "hf_cache", token=token)
        yield hub


@pytest.fixture
def local_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalHub]:
    """A started LocalHub accepting `DEFAULT_TOKEN`, with huggingface_hub pointed at it, `HF_TOKEN` set to
    `DEFAULT_TOKEN` and `HF_HUB_CACHE` in `tmp_path/hf_cache`."""
    with running_local_hub(monkeypatch, tmp_path) as hub:
        yield hub
