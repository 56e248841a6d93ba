"""Errors a person can act on.

Every failure that comes from the user's input or environment (a bad catalog,
a missing weights file, a corrupt checkpoint, no network) is raised as an
``FtuiError`` whose message says what happened and what to do. The CLI and the
TUI print the message and never a traceback; anything else is a bug.
"""


class FtuiError(Exception):
    """Base class: the message is written for the person at the terminal."""


class CatalogError(FtuiError):
    """experiments.toml could not be read or one of its values is invalid."""


class ModelError(FtuiError):
    """The model name or its configuration is not usable."""


class WeightsError(FtuiError):
    """Pretrained or local weights are missing or do not fit the model."""


class DataError(FtuiError):
    """A dataset is missing, cannot be downloaded, or is malformed."""


class CheckpointError(FtuiError):
    """A checkpoint file is corrupt, truncated, or does not fit."""


class RunError(FtuiError):
    """A run folder is missing, incomplete or cannot be resumed."""
