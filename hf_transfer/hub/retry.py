"""Remote calls to the Hub: retried with exponential backoff when the failure is transient, and turned into one
`HubError` sentence (what failed, what to do, never the token) when they fail for good."""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable
from typing import TypeVar

from hf_transfer.core.errors import HubError
from hf_transfer.hub.access import HF_LOGIN

logger = logging.getLogger(__name__)

# Transient failures: retried with exponential backoff. huggingface_hub retries some calls itself (preupload,
# downloads) but not the commit POST when Xet is disabled, so every remote call goes through `retrying`.
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
MAX_ATTEMPTS = 4
BACKOFF_SECONDS = 2.0
MAX_BACKOFF_SECONDS = 30.0


def _scrub(text: str, token: str | None) -> str:
    return text.replace(token, "***") if token else text


def _status(err: BaseException) -> int | None:
    response = getattr(err, "response", None)
    return getattr(response, "status_code", None)


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Connection resets and timeouts of whichever HTTP client this huggingface_hub uses."""
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module, name in (("httpx2", "TransportError"), ("httpx", "TransportError"), ("requests", "ConnectionError")):
        try:
            errors.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def is_transient(err: BaseException) -> bool:
    """Whether a failed call is worth trying again: a 5xx, 408 or 429 answer, or a connection reset or timeout."""
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if isinstance(err, OfflineModeIsEnabled):
        return False
    if isinstance(err, HfHubHTTPError):
        return _status(err) in TRANSIENT_STATUS
    return isinstance(err, _transport_errors())


T = TypeVar("T")


class GaveUp(Exception):
    """A transient failure that lasted through every attempt."""

    def __init__(self, action: str, attempts: int, last: BaseException):
        super().__init__(action)
        self.action, self.attempts, self.last = action, attempts, last


def retrying(call: Callable[[], T], action: str) -> T:
    """`call()`, retried with exponential backoff on transient failures (5xx, 429, connection reset, timeout)."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            return call()
        except Exception as err:
            if not is_transient(err):
                raise
            if attempt == MAX_ATTEMPTS:
                raise GaveUp(action, attempt, err) from None
            delay = min(BACKOFF_SECONDS * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS)
            logger.warning(
                "%s failed (%s); retrying in %.1f s (attempt %d of %d)",
                action,
                _reason(err),
                delay,
                attempt + 1,
                MAX_ATTEMPTS,
            )
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def _reason(err: BaseException) -> str:
    status = _status(err)
    if status is not None:
        return f"HTTP {status}"
    first = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


def _server_says(err: BaseException) -> str:
    message = getattr(err, "server_message", None) or (str(err).strip().splitlines() or [""])[0]
    return message.strip().rstrip(".")


def hub_error(err: BaseException, action: str, repo_id: str, token: str | None, retry_hint: str) -> HubError:
    """One sentence saying what failed and what to do, never holding the token."""
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled, RevisionNotFoundError

    if isinstance(err, GaveUp):
        text = (
            f"{err.action} failed {err.attempts} times ({_reason(err.last)}): the Hub is unavailable or the network "
            f"is down. {retry_hint}"
        )
    elif isinstance(err, OfflineModeIsEnabled):
        text = f"HF_HUB_OFFLINE is set, so {action} cannot reach the Hub; unset it (HF_HUB_OFFLINE=0). {retry_hint}"
    elif isinstance(err, RevisionNotFoundError):
        text = f"{repo_id} has no revision by that name ({_server_says(err)}); check --revision."
    elif isinstance(err, HfHubHTTPError):
        status = _status(err)
        if status == 401:
            text = (
                f"the Hub did not accept your token while {action} (401 Unauthorized): run `{HF_LOGIN}` "
                "again or set HF_TOKEN to a valid token with write access."
            )
        elif status == 403:
            namespace = repo_id.split("/")[0]
            text = (
                f"your token may not write to {repo_id} (403 Forbidden): use a token with write access to "
                f"'{namespace}' (a write or fine-grained token), or push to a repo in your own namespace."
            )
        elif status == 404:
            text = (
                f"{repo_id} was not found while {action} (404): check the namespace and name, and that your token "
                "can see it."
            )
        elif status == 413:
            text = f"the Hub refused the upload to {repo_id} as too large (413); push fewer or smaller files."
        elif status is not None and status < 500:
            text = f"the Hub refused {action} ({status}: {_server_says(err)}); fix that and push again."
        else:
            text = f"{action} failed ({_reason(err)}). {retry_hint}"
    else:
        text = f"{action} failed ({_reason(err)}). {retry_hint}"
    return HubError(_scrub(text, token))


def is_remote_failure(err: BaseException) -> bool:
    """Whether `err` is the Hub's or the network's doing, which `hub_error` turns into one sentence; anything else is
    a bug to raise as is."""
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    return (
        isinstance(err, (GaveUp, HfHubHTTPError, OfflineModeIsEnabled))
        or _status(err) is not None
        or is_transient(err)
    )
