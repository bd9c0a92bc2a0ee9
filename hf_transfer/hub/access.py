"""Who may reach which repo: Hub repo ids, the token, and the `hf` CLI commands that messages name."""

from __future__ import annotations

from pathlib import Path

from hf_transfer.core.errors import HubError
from hf_transfer.core.paths import is_repo_id

# The shell commands that messages name: the `hf` CLI, which every huggingface_hub this package accepts has (it
# arrived in 0.34; the declared floor is newer, and a test keeps it so).
HF_CLI_SINCE = "0.34"
HF_LOGIN = "hf auth login"
HF_DOWNLOAD = "hf download"


def no_token_message() -> str:
    """What to do when no token is found (no final full stop, so that callers can go on)."""
    return f"no Hugging Face token: run `{HF_LOGIN}` or set HF_TOKEN"


NO_TOKEN = no_token_message()


def is_hub_repo_id(text: str) -> bool:
    """Whether `text` reads as a `namespace/name` Hub repo id rather than a path on disk."""
    return is_repo_id(text, namespaced=True) and not Path(text).exists()


def check_repo_id(repo_id: str | None, field_name: str = "--repo-id") -> str:
    """`repo_id` when it is a `namespace/name` Hub repo id; otherwise a HubError naming `field_name`."""
    if not is_repo_id(repo_id, namespaced=True):
        raise HubError(
            f"{field_name} '{repo_id}' is not a Hub repo id; give it as namespace/name, e.g. me/minilm-rt-lora."
        )
    return repo_id


def require_token(token: str | None) -> str:
    """`token`, else HF_TOKEN or the stored login; a HubError saying how to log in when there is none."""
    from huggingface_hub import get_token

    token = token or get_token()
    if not token:
        raise HubError(no_token_message() + ".")
    return token
