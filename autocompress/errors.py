"""Errors that reach a user, each with a one-line message and an exit code.

Why a hierarchy of our own: the CLI turns any :class:`AutocompressError` into one line on stderr
and its ``exit_code`` (2 for usage and configuration mistakes, 1 for everything that went wrong
while running), instead of a traceback from deep inside torch or optuna. Messages name the
problem and the fix.
"""

from __future__ import annotations


class AutocompressError(Exception):
    """Base class: a failure we can explain in one line."""

    exit_code: int = 1


class ConfigError(AutocompressError, ValueError):
    """A configuration, search space, plan or command line that cannot be used as written."""

    exit_code = 2


class DataError(AutocompressError):
    """A data set or checkpoint that is missing, unreadable or does not fit the task."""

    exit_code = 2


class StorageError(AutocompressError):
    """A study storage that cannot be opened, or that holds a different search."""

    exit_code = 2


class UnsupportedPlanError(AutocompressError):
    """A runtime or backend cannot realize this plan on this target.

    Raised inside a trial; the driver records it as a failed trial with this message as the reason
    (never a silent fallback to another runtime).
    """


class TrialTimeoutError(AutocompressError):
    """A trial ran past its time budget (``search.trial_timeout_s``)."""


class DivergedError(AutocompressError):
    """Fine-tuning produced a non-finite loss; the trial fails with the step and the fix."""


class HopelessTrialError(AutocompressError):
    """A trial's early accuracy is so far below the floor that fine-tuning cannot rescue it."""

    def __init__(self, message: str, accuracy: float) -> None:
        super().__init__(message)
        self.accuracy = accuracy
