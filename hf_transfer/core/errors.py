"""Errors a user can cause. The CLI prints their one sentence and exits with code 2."""


class HfTransferError(Exception):
    """A mistake in a recipe, a file or an argument: the message names it and says what to do."""

    exit_code = 2


class RecipeError(HfTransferError):
    """A recipe key, value or override is wrong."""


class DataError(HfTransferError):
    """A dataset, file, column, row or label is wrong."""


class ModelError(HfTransferError):
    """A checkpoint cannot be found or does not fit the task."""


class TrainingDivergedError(HfTransferError):
    """The loss became NaN or infinite."""


class HubError(HfTransferError):
    """The Hub refused or failed a request in a way the user must act on."""
