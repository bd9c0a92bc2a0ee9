"""`hub.push` in a recipe: the publisher the runner is handed, which pushes the finished run folder."""

from __future__ import annotations

import logging
from pathlib import Path

from hf_transfer.config.recipe import Recipe
from hf_transfer.core.errors import HfTransferError, HubError
from hf_transfer.hub.push import check_push_ready, push_run

logger = logging.getLogger(__name__)


class HubPublisher:
    """Pushes a run after training, as `hf-transfer push RUN` would with the recipe's hub settings."""

    def check_ready(self, recipe: Recipe) -> None:
        check_push_ready(recipe)

    def publish(self, run_dir: Path, recipe: Recipe) -> None:
        """A failed push leaves the run folder in place and says how to retry."""
        hub = recipe.hub
        try:
            result = push_run(run_dir, hub.repo_id, private=hub.private, revision=hub.revision)
        except HfTransferError as err:
            raise HubError(
                f"{err} The run itself is saved in '{run_dir}'; push it with `hf-transfer push {run_dir}` "
                "(the recipe's hub settings apply)."
            ) from None
        logger.info("pushed to %s", result.commit_url or result.url)
