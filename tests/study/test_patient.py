"""The storage waits out a database outage: retries connection failures, nothing else."""

from __future__ import annotations

import optuna
import pytest
from optuna.storages import InMemoryStorage
from optuna.trial import TrialState
from sqlalchemy.exc import IntegrityError, OperationalError

from autocompress.errors import StorageError
from autocompress.study._patient import PatientStorage


class Flaky(InMemoryStorage):
    """An in-memory storage whose named call fails on the connection ``fail`` times."""

    def __init__(self, method: str, fail: int, *, commit_first: bool = False) -> None:
        super().__init__()
        self.method, self.fail, self.commit_first, self.calls = method, fail, commit_first, 0

    def _maybe_fail(self, name: str, run):
        if name != self.method or self.fail <= 0:
            return run()
        self.fail -= 1
        self.calls += 1
        if self.commit_first:  # the server committed; its answer was lost
            run()
        raise OperationalError("SELECT 1", {}, Exception("server closed the connection"))

    def set_trial_state_values(self, trial_id, state, values=None):
        parent = super().set_trial_state_values
        return self._maybe_fail("set_trial_state_values", lambda: parent(trial_id, state, values))

    def set_trial_user_attr(self, trial_id, key, value):
        parent = super().set_trial_user_attr
        return self._maybe_fail("set_trial_user_attr", lambda: parent(trial_id, key, value))


def _study(inner: InMemoryStorage, **kwargs) -> optuna.Study:
    storage = PatientStorage(inner, "test-db", sleep=lambda s: None, **kwargs)
    return optuna.create_study(storage=storage, directions=["maximize", "minimize"])


def test_outage_is_waited_out_and_logged(caplog) -> None:
    inner = Flaky("set_trial_user_attr", fail=3)
    study = _study(inner)
    trial = study.ask()
    with caplog.at_level("WARNING", logger="autocompress"):
        trial.set_user_attr("k", 1)
    assert study.trials[0].user_attrs["k"] == 1 and inner.calls == 3
    assert "storage test-db unavailable (OperationalError); retrying" in caplog.text


def test_a_finish_whose_answer_was_lost_counts_once() -> None:
    inner = Flaky("set_trial_state_values", fail=1, commit_first=True)
    study = _study(inner)
    study.enqueue_trial({})
    inner.fail = 0  # let ask() through; fail the tell
    trial = study.ask()
    inner.fail = 1
    study.tell(trial, [1.0, 2.0])
    [t] = study.get_trials()
    assert t.state == TrialState.COMPLETE and t.values == [1.0, 2.0]


def test_a_long_outage_ends_with_how_to_resume() -> None:
    inner = Flaky("set_trial_user_attr", fail=10**6)
    study = _study(inner, outage_s=0.0)
    trial = study.ask()
    with pytest.raises(StorageError, match=r"unavailable for .* the study is kept: run the same"):
        trial.set_user_attr("k", 1)


def test_statement_errors_are_not_retried() -> None:
    class Broken(InMemoryStorage):
        calls = 0

        def set_study_user_attr(self, study_id, key, value):
            Broken.calls += 1
            raise IntegrityError("INSERT", {}, Exception("duplicate key"))

    study = _study(Broken())
    with pytest.raises(IntegrityError):
        study.set_user_attr("k", 1)
    assert Broken.calls == 1
