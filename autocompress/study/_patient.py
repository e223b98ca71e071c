"""A storage that waits out an outage of its database instead of ending the search.

A PostgreSQL server restarted for maintenance, or a network blip between a driver and it, must not
end a search that has run for hours: every storage call the driver makes goes through
:class:`PatientStorage`, which retries a call that failed on the *connection* (the server is down
or unreachable), with back-off, for up to ``outage_s`` seconds, and then gives up with a
:class:`~autocompress.errors.StorageError` that says the study is kept and how to resume.
Errors that are not about the connection (a constraint, a finished trial) pass through at once.

Each Optuna storage call is one transaction, so a call that failed before its commit is simply
re-run. A call whose commit reached the server but whose answer was lost is handled where it
matters: re-finishing a trial that the lost call already finished is taken as success.
Remaining window (documented in docs/RELIABILITY.md): a lost answer to ``enqueue``/``ask``
can leave one extra waiting trial or one unowned running trial; the latter is recovered as stale.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from autocompress.errors import StorageError

log = logging.getLogger("autocompress")

OUTAGE_S = 600.0  # how long a search waits for its database to come back
FIRST_WAIT_S = 0.5
MAX_WAIT_S = 10.0


def is_connection_error(exc: BaseException) -> bool:
    """True for failures of the link to the database, not of the statement.

    Optuna wraps SQLAlchemy's errors in ``StorageInternalError``; the cause chain is searched.
    """
    try:
        from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
    except ImportError:  # pragma: no cover - sqlalchemy comes with optuna
        return False
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, OperationalError | InterfaceError):
            return True
        if isinstance(seen, DBAPIError) and seen.connection_invalidated:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class PatientStorage(BaseStorage):
    """Delegates every call to ``inner``; retries the ones that fail on the connection."""

    def __init__(
        self,
        inner: BaseStorage,
        label: str,
        outage_s: float = OUTAGE_S,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._inner = inner
        self._label = label
        self._outage_s = outage_s
        self._sleep = sleep

    @property
    def inner(self) -> BaseStorage:
        return self._inner

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        method = getattr(self._inner, name)
        start, wait, failed_before = time.monotonic(), FIRST_WAIT_S, False
        while True:
            try:
                return method(*args, **kwargs)
            except UpdateFinishedTrialError:
                if failed_before and name == "set_trial_state_values":
                    return self._already_finished(*args, **kwargs)
                raise
            except Exception as exc:
                if not is_connection_error(exc):
                    raise
                waited = time.monotonic() - start
                if waited >= self._outage_s:
                    raise StorageError(
                        f"storage {self._label} was unavailable for {waited:.0f} s; the study "
                        "is kept: run the same command again when it is back to resume"
                    ) from None
                if not failed_before:
                    log.warning(
                        "storage %s unavailable (%s); retrying for up to %.0f s",
                        self._label,
                        type(exc).__name__,
                        self._outage_s,
                    )
                failed_before = True
                self._sleep(wait)
                wait = min(wait * 2, MAX_WAIT_S)

    def _already_finished(
        self, trial_id: int, state: TrialState, values: Any = None, **_: Any
    ) -> bool:
        """A retried finish whose first attempt committed: success if it says the same."""
        trial = self._inner.get_trial(trial_id)
        if trial.state == state:
            return True
        raise UpdateFinishedTrialError(f"trial {trial_id} was already finished as {trial.state}")

    def __getattr__(self, name: str) -> Any:  # anything BaseStorage does not declare
        return getattr(self._inner, name)


def _delegate(name: str) -> Callable[..., Any]:
    def method(self: PatientStorage, *args: Any, **kwargs: Any) -> Any:
        return self._call(name, *args, **kwargs)

    method.__name__ = name
    method.__doc__ = getattr(BaseStorage, name).__doc__
    return method


for _name in (n for n in dir(BaseStorage) if not n.startswith("_")):
    setattr(PatientStorage, _name, _delegate(_name))
PatientStorage.__abstractmethods__ = frozenset()
