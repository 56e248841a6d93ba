"""Errors a person can act on.

Every failure that comes from the user's input or environment (a bad catalog,
a missing weights file, a corrupt checkpoint, no network) is raised as an
``FtuiError`` whose message says what happened and what to do. The CLI and the
TUI print the message and never a traceback; anything else is a bug.

Also how the ``ftui`` command exits: the codes below, one per kind of ending.
"""

import signal


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


# Exit codes of the `ftui` command (the README's table lists them).
EXIT_OK = 0
EXIT_FAILED = 1  # a run started and failed (NaN loss, disk full, an error while training)
EXIT_USAGE = 2  # bad input, configuration or environment: nothing was started (FtuiError)
EXIT_INTERNAL = 70  # a bug in ftui (EX_SOFTWARE): the details are in a crash log
SIGNAL_BASE = 128  # interrupted by signal N: 128 + N (130 SIGINT, 143 SIGTERM, 129 SIGHUP)


def exit_code_for_signal(signum: int) -> int:
    return SIGNAL_BASE + int(signum)


# What stopped a run, as its status says it: "stopped: by SIGTERM after 2 of 20 epochs".
SIGNAL_REASONS = {
    signal.SIGINT: "by SIGINT (Ctrl-C)",
    signal.SIGTERM: "by SIGTERM",
    signal.SIGHUP: "because the terminal closed (SIGHUP)",
}
