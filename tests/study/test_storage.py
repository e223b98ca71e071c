"""One storage helper: journal (default), SQLite, PostgreSQL; clear errors; no leaked passwords."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from autocompress.errors import StorageError
from autocompress.study import open_storage, redact


def _roundtrip(storage) -> None:
    study = optuna.create_study(study_name="s", storage=storage, directions=["minimize"])
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    again = optuna.load_study(study_name="s", storage=storage)
    assert len(again.trials) == 3


def test_default_is_a_journal_in_the_run_dir(tmp_path: Path) -> None:
    storage = open_storage(None, tmp_path / "run")
    _roundtrip(storage)
    assert (tmp_path / "run" / "study.journal").stat().st_size > 0


def test_path_and_sqlite(tmp_path: Path) -> None:
    _roundtrip(open_storage(str(tmp_path / "x.journal"), tmp_path))
    _roundtrip(open_storage(f"sqlite:///{tmp_path}/db/s.db", tmp_path))
    assert (tmp_path / "db" / "s.db").exists()


@pytest.mark.postgres
def test_postgres(postgres_url: str) -> None:
    storage = open_storage(postgres_url, Path("."))
    study = optuna.create_study(
        study_name="pg-roundtrip", storage=storage, directions=["minimize"]
    )
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert len(optuna.load_study(study_name="pg-roundtrip", storage=storage).trials) == 2


def test_not_a_journal_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("hello\n")
    with pytest.raises(StorageError, match="not an Optuna journal"):
        open_storage(str(bad), tmp_path)
    assert bad.read_text() == "hello\n"  # untouched


def test_unknown_scheme(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="unsupported scheme 'mysql'"):
        open_storage("mysql://u:pw@host/db", tmp_path)


def test_unreachable_postgres_hides_the_password(tmp_path: Path) -> None:
    with pytest.raises(StorageError) as info:
        open_storage("postgresql://user:topsecret@127.0.0.1:1/db", tmp_path)
    assert "topsecret" not in str(info.value) and "unreachable" in str(info.value)
    assert "\n" not in str(info.value)


def test_redact() -> None:
    assert redact("postgresql://u:pw@h:5432/d") == "postgresql://u:***@h:5432/d"
    assert redact("sqlite:///x.db") == "sqlite:///x.db"
