"""A local, offline stand-in for the Hugging Face Hub, for the test suite only.

`LocalHub` is a small HTTP server (stdlib `ThreadingHTTPServer` on 127.0.0.1, a free port, a daemon thread) that
answers only what the project calls: `hf-transfer push` (create_repo, repo_info, create_branch, upload_folder with
delete patterns), downloads (`snapshot_download`, transformers / peft / timm `from_pretrained`, i.e. `predict
REPO_ID`) and the tests' `ModelCard.validate`. Model repos only. A test takes the `local_hub` fixture (or wraps
`running_local_hub`): a started `LocalHub` with huggingface_hub pointed at it. `tests/` has no `__init__.py`, so
the module is imported as `hub_server`.

huggingface_hub reads its environment once, when `huggingface_hub.constants` is imported, and the module-level
`huggingface_hub.hf_api.api` keeps the endpoint it had then; `use_local_hub` therefore sets the environment (for
later imports and subprocesses) and patches those constants, `hf_api.api.endpoint`, transformers' cached `HfApi`
and `datasets.config`; monkeypatch undoes it all. It sets `HF_TOKEN` to the test token (`token=None`: none) and
points `HF_TOKEN_PATH` at a missing file, so a developer's real token is never sent. To check a load from the cache
alone, patch `huggingface_hub.constants.HF_HUB_OFFLINE` to True.

Where it differs from the Hub, and what the retry and error tests rely on:

* A new repo gets an "initial commit" holding a `.gitattributes`, like the Hub; `create_repo("name")` without a
  namespace lands in `tester`'s.
* Every file is a regular git blob (preupload answers "regular"), so no LFS or Xet transfer happens; each file's
  etag is its git blob sha1. Every commit is kept: `revision=<sha>` resolves, as do branches.
* Writes answer 401 without a bearer token; any request carrying a token not in `tokens` answers 401 "Invalid
  credentials in Authorization header", as the Hub does; a private repo read without a token answers 401 with
  `X-Error-Code: RepoNotFound`.
* `fail_next(n, status=503)` makes the next `n` preupload/commit requests (or the `kinds` given; None: any) fail
  with `status`. huggingface_hub retries preupload (408/429/5xx, with backoff) but not the commit POST.
* `requests` logs each request as a `RequestRecord(method, path, kind, has_auth, status)`, without the query
  string; token values are never stored.

State lives in memory; blobs are written under `<storage>/blobs/<git sha1>`.
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
from datetime import UTC, datetime
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
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


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
    files: dict[str, str]  # path -> blob id
    date: str


@dataclass
class _Repo:
    repo_id: str
    private: bool
    created_at: str
    commits: dict[str, _Commit] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)  # branch -> commit oid


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
    """A local Hub-compatible HTTP server for model repos. See the module docstring.

    Args:
        storage: folder for the blobs (created if missing).
        tokens: bearer tokens accepted as user `tester`. Defaults to `{DEFAULT_TOKEN}`.
    """

    def __init__(self, storage: str | os.PathLike, tokens: Iterable[str] | None = None):
        self.storage = Path(storage)
        self.valid_tokens: set[str] = set(tokens) if tokens is not None else {DEFAULT_TOKEN}
        self.requests: list[RequestRecord] = []
        self._repos: dict[str, _Repo] = {}
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

        Replaces any failure still pending. Kinds: see `RequestRecord.kind` in `requests` ("create_repo",
        "repo_info", "tree", "branch", "preupload", "commit", "resolve", "validate_yaml").
        """
        with self._lock:
            self._fail_left = n
            self._fail_status = status
            self._fail_kinds = frozenset(kinds) if kinds is not None else None

    def repo_exists(self, repo_id: str) -> bool:
        with self._lock:
            return repo_id in self._repos

    def is_private(self, repo_id: str) -> bool:
        with self._lock:
            return self._get_repo(repo_id).private

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """The files of `repo_id` at `revision` (branch or commit sha), path -> content."""
        with self._lock:
            blobs = dict(self._resolve(self._get_repo(repo_id), revision).files)
        return {path: self._read_blob(blob) for path, blob in sorted(blobs.items())}

    def commits(self, repo_id: str, revision: str = "main") -> list[str]:
        """Commit titles (messages) reachable from `revision`, oldest first ("initial commit" first)."""
        with self._lock:
            repo = self._get_repo(repo_id)
            commit: _Commit | None = self._resolve(repo, revision)
            titles = []
            while commit is not None:
                titles.append(commit.title)
                commit = repo.commits[commit.parent] if commit.parent else None
        return titles[::-1]

    def create_repo(self, repo_id: str, *, private: bool = False) -> None:
        """Create a repo directly (no HTTP, no token), e.g. to prepare a repo a test then pushes to."""
        with self._lock:
            self._create_repo(repo_id, private)

    def add_files(
        self, repo_id: str, files: Mapping[str, bytes | str] | str | os.PathLike, *, message: str = "Add files"
    ) -> str:
        """Commit `files` (path in repo -> bytes or text; or a local folder) to main directly, creating the repo if
        needed; return the commit sha."""
        if isinstance(files, (str, os.PathLike)):
            root = Path(files)
            contents = {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
        else:
            contents = {path: value if isinstance(value, bytes) else value.encode() for path, value in files.items()}
        with self._lock:
            repo = self._repos.get(repo_id) or self._create_repo(repo_id, False)
            parent = repo.commits[repo.refs["main"]]
            tree = dict(parent.files)
            for path, data in contents.items():
                tree[_check_path(path)] = self._write_blob(data)
            commit = self._new_commit(repo, parent.oid, message, tree)
            repo.refs["main"] = commit.oid
            return commit.oid

    # --------------------------------------------------------------------------------------------------- internals

    def _get_repo(self, repo_id: str) -> _Repo:
        try:
            return self._repos[repo_id]
        except KeyError:
            raise KeyError(f"No repo {repo_id!r} on the local hub") from None

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

    def _new_commit(self, repo: _Repo, parent: str | None, title: str, files: dict) -> _Commit:
        seed = json.dumps([repo.repo_id, parent, title, files, next(self._counter)])
        oid = hashlib.sha1(seed.encode()).hexdigest()
        commit = _Commit(oid=oid, parent=parent, title=title, files=files, date=_now())
        repo.commits[oid] = commit
        return commit

    def _create_repo(self, repo_id: str, private: bool) -> _Repo:
        if repo_id in self._repos:
            raise _HubError(409, "You already created this model repo")
        repo = _Repo(repo_id=repo_id, private=private, created_at=_now())
        files = {".gitattributes": self._write_blob(_GITATTRIBUTES)}
        repo.refs["main"] = self._new_commit(repo, None, "initial commit", files).oid
        self._repos[repo_id] = repo
        return repo

    def _resolve(self, repo: _Repo, revision: str) -> _Commit:
        if revision in repo.refs:
            return repo.commits[repo.refs[revision]]
        if revision in repo.commits:
            return repo.commits[revision]
        raise _HubError(404, f"Invalid rev id: {revision}", code="RevisionNotFound")

    def _repo_url(self, repo: _Repo) -> str:
        return f"{self.endpoint}/{repo.repo_id}"

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
            if rest == ["repos", "create"] and method == "POST":
                return "create_repo", self._api_create_repo, ()
            if rest == ["validate-yaml"] and method == "POST":
                return "validate_yaml", self._validate_yaml, ()
            if len(rest) >= 3 and rest[0] == "models":
                repo_id, sub = f"{rest[1]}/{rest[2]}", rest[3:]
                if not sub and method == "GET":
                    return "repo_info", self._repo_info, (repo_id, "main")
                if len(sub) == 2 and sub[0] == "revision" and method == "GET":
                    return "repo_info", self._repo_info, (repo_id, sub[1])
                if len(sub) >= 2 and sub[0] == "tree" and method == "GET":
                    return "tree", self._tree, (repo_id, sub[1], "/".join(sub[2:]))
                if len(sub) == 2 and sub[0] in ("preupload", "commit", "branch") and method == "POST":
                    handler = {"preupload": self._preupload, "commit": self._commit, "branch": self._branch}[sub[0]]
                    return sub[0], handler, (repo_id, sub[1])
        elif method in ("GET", "HEAD") and len(segs) >= 5 and segs[2] == "resolve":
            return "resolve", self._resolve_file, (f"{segs[0]}/{segs[1]}", segs[3], "/".join(segs[4:]))
        return "unknown", None, ()

    # ---------------------------------------------------------------------------------------------------- endpoints

    def _require_write(self, req: _Request) -> None:
        if req.token is None:
            raise _HubError(401, "Invalid username or password.")

    def _readable_repo(self, req: _Request, repo_id: str) -> _Repo:
        repo = self._repos.get(repo_id)
        if repo is None or (repo.private and req.token is None):
            # Like the Hub: 401 when anonymous, 404 when authenticated; huggingface_hub reads the error code.
            status = 404 if req.token is not None else 401
            raise _HubError(status, "Repository not found", code="RepoNotFound")
        return repo

    def _api_create_repo(self, req: _Request) -> _Response:
        self._require_write(req)
        body = req.json()
        name, namespace = body.get("name"), body.get("organization") or DEFAULT_USER
        if (body.get("type") or "model") != "model":
            raise _HubError(400, "LocalHub serves model repos only")
        if not isinstance(name, str) or not _NAME_RE.match(name) or not _NAME_RE.match(namespace):
            raise _HubError(400, f"Invalid repo name {namespace}/{name}")
        private = body.get("visibility") == "private" if "visibility" in body else bool(body.get("private"))
        repo_id = f"{namespace}/{name}"
        existing = self._repos.get(repo_id)
        if existing is not None:
            return _json_response(
                {"error": "You already created this model repo", "url": self._repo_url(existing)}, 409
            )
        repo = self._create_repo(repo_id, private)
        return _json_response({"url": self._repo_url(repo), "name": repo_id, "id": repo_id})

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

    def _repo_info(self, req: _Request, repo_id: str, revision: str) -> _Response:
        repo = self._readable_repo(req, repo_id)
        commit = self._resolve(repo, revision)
        blobs = _truthy(req.param("blobs"))
        siblings = []
        for path, blob in sorted(commit.files.items()):
            sibling: dict[str, Any] = {"rfilename": path}
            if blobs:
                sibling.update(size=self._blob_size(blob), blobId=blob)
            siblings.append(sibling)
        info = {
            "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24],
            "id": repo_id,
            "modelId": repo_id,
            "author": repo_id.split("/")[0],
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
        return _json_response(info)

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

    def _tree(self, req: _Request, repo_id: str, revision: str, path: str) -> _Response:
        commit = self._resolve(self._readable_repo(req, repo_id), revision)
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
            for i in range(1, (len(parts) if recursive else 1) + 1):
                names.add(prefix + "/".join(parts[:i]))
        entries = [self._entry(commit, name) for name in sorted(names)]
        entries.sort(key=lambda e: (e["type"] != "directory", e["path"]))
        return _json_response(entries)

    def _writable_branch(self, req: _Request, repo_id: str, revision: str) -> tuple[_Repo, _Commit]:
        self._require_write(req)
        repo = self._readable_repo(req, repo_id)
        if revision not in repo.refs:
            raise _HubError(404, f"Invalid rev id: {revision}", code="RevisionNotFound")
        return repo, repo.commits[repo.refs[revision]]

    def _preupload(self, req: _Request, repo_id: str, revision: str) -> _Response:
        _, head = self._writable_branch(req, repo_id, revision)
        files = req.json().get("files")
        if not isinstance(files, list):
            raise _HubError(400, "Expected a list of files")
        answer = []
        for item in files:
            path = _check_path(item.get("path"))
            answer.append({"path": path, "uploadMode": "regular", "shouldIgnore": False, "oid": head.files.get(path)})
        return _json_response({"files": answer, "commitOid": head.oid})

    def _commit(self, req: _Request, repo_id: str, revision: str) -> _Response:
        repo, head = self._writable_branch(req, repo_id, revision)
        header, operations = _parse_commit_body(req.body)
        title = str(header.get("summary") or "").strip()
        if not title:
            raise _HubError(400, "A commit summary (message) is required")
        tree = dict(head.files)
        for key, value in operations:
            path = _check_path(value.get("path"))
            if key == "file":
                try:
                    tree[path] = self._write_blob(base64.b64decode(value.get("content", ""), validate=True))
                except ValueError as e:
                    raise _HubError(400, f"Invalid base64 content for {path}: {e}") from e
            elif key == "deletedFile" and path in tree:
                del tree[path]
            else:  # lfsFile, deletedFolder, a missing file: nothing the project sends
                raise _HubError(400, f"LocalHub does not handle {key!r} for {path}")
        commit = self._new_commit(repo, head.oid, title, tree)
        repo.refs[revision] = commit.oid
        url = f"{self._repo_url(repo)}/commit/{commit.oid}"
        return _json_response({"success": True, "commitOid": commit.oid, "commitUrl": url, "pullRequestUrl": None})

    def _branch(self, req: _Request, repo_id: str, branch: str) -> _Response:
        self._require_write(req)
        repo = self._readable_repo(req, repo_id)
        if branch in repo.refs:
            raise _HubError(409, f"Reference already exists: refs/heads/{branch}")
        repo.refs[branch] = self._resolve(repo, req.json().get("startingPoint") or "main").oid
        return _json_response({})

    def _resolve_file(self, req: _Request, repo_id: str, revision: str, path: str) -> _Response:
        commit = self._resolve(self._readable_repo(req, repo_id), revision)
        blob = commit.files.get(path)
        if blob is None:
            raise _HubError(404, "Entry not found", code="EntryNotFound", headers={"X-Repo-Commit": commit.oid})
        headers = {
            "X-Repo-Commit": commit.oid,
            "ETag": f'"{blob}"',
            "Content-Disposition": f'inline; filename="{path.rsplit("/", 1)[-1]}"',
        }
        if req.method == "HEAD":
            headers["Content-Length"] = str(self._blob_size(blob))
            return _Response(headers=headers, content_type="application/octet-stream")
        return _Response(body=self._read_blob(blob), headers=headers, content_type="application/octet-stream")


def _check_path(path: Any) -> str:
    if not isinstance(path, str) or not path or path.startswith("/") or "\\" in path:
        raise _HubError(400, f"Invalid path in repo: {path!r}")
    if any(part in ("", ".", "..") for part in path.split("/")):
        raise _HubError(400, f"Invalid path in repo: {path!r}")
    if path == ".git" or path.startswith(".git/"):
        raise _HubError(400, f"Invalid path in repo: {path!r}")
    return path


def _parse_commit_body(body: bytes) -> tuple[dict, list[tuple[str, dict]]]:
    """(header, [(key, value), ...]) from huggingface_hub's ndjson commit body."""
    header: dict | None = None
    operations = []
    for line in body.decode("utf-8").splitlines():
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
            elif has_auth and token not in hub.valid_tokens and kind != "validate_yaml":
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
) -> Iterator[LocalHub]:
    """Start a LocalHub storing under `tmp_path/local_hub`, point huggingface_hub at it with the cache in
    `tmp_path/hf_cache` (see `use_local_hub`), and stop it on exit."""
    tmp_path = Path(tmp_path)
    with LocalHub(tmp_path / "local_hub", tokens=tokens) as hub:
        use_local_hub(monkeypatch, hub, cache_dir=tmp_path / "hf_cache", token=token)
        yield hub


@pytest.fixture
def local_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalHub]:
    """A started LocalHub accepting `DEFAULT_TOKEN`, with huggingface_hub pointed at it, `HF_TOKEN` set to
    `DEFAULT_TOKEN` and `HF_HUB_CACHE` in `tmp_path/hf_cache`."""
    with running_local_hub(monkeypatch, tmp_path) as hub:
        yield hub
