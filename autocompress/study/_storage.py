"""One helper for study storage: None, a file path, or a database URL.

- None: a journal file ``<run_dir>/study.journal`` (append-only, survives ``kill -9``; FINDINGS:
  76 writes/s, the fastest single-writer option);
- a path (any file name): a journal file there;
- ``sqlite:///path.db``: SQLite (WAL mode, so readers do not block the writer);
- ``postgresql://user:pass@host/db``: PostgreSQL, for several drivers or machines.

Database storages wait out an outage of their server (``_patient.py``) rather than end the search.

Passwords never reach logs or reports: use :func:`redact` whenever a URL is shown.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalStorage

from autocompress.errors import ConfigError, StorageError
from autocompress.study._patient import PatientStorage

_URL = re.compile(r"^(?P<scheme>[a-z][a-z0-9+]*)://", re.I)


def open_storage(spec: str | None, run_dir: Path) -> BaseStorage:
    """Open (creating if needed) the storage named by ``spec``."""
    if spec is None:
        return _journal(run_dir / "study.journal")
    m = _URL.match(spec)
    if m is None:
        return _journal(Path(spec).expanduser())
    scheme = m["scheme"].lower()
    if scheme == "sqlite":
        return _rdb(spec, {"connect_args": {"timeout": 30}}, sqlite=True)
    if scheme.startswith("postgresql"):
        return _rdb(spec, {"pool_pre_ping": True}, sqlite=False)
    raise StorageError(
        f"storage {redact(spec)!r}: unsupported scheme {scheme!r}; use a journal file path, "
        "sqlite:///file.db or postgresql://user@host/db"
    )


def storage_label(spec: str | None, run_dir: Path) -> str:
    """How to show the storage to a person (password removed)."""
    return str(run_dir / "study.journal") if spec is None else redact(spec)


def redact(url: str) -> str:
    """``postgresql://user:secret@host/db`` -> ``postgresql://user:***@host/db``."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def _journal(path: Path) -> BaseStorage:
    if path.exists() and path.is_dir():
        raise StorageError(f"storage {path} is a directory; give a journal file path")
    if path.exists() and path.stat().st_size and not _looks_like_journal(path):
        raise StorageError(
            f"storage {path} is not an Optuna journal file; give a new path or the right file"
        )
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    except OSError as exc:
        raise StorageError(
            f"storage {path}: cannot open ({exc.strerror}); check the path"
        ) from None


def _looks_like_journal(path: Path) -> bool:
    """A journal is JSON lines that each name an ``op_code``."""
    with open(path, "rb") as f:
        first = f.readline(4096)
    return first.startswith(b"{") and b'"op_code"' in first


def _rdb(url: str, engine_kwargs: dict[str, object], *, sqlite: bool) -> BaseStorage:
    if sqlite:
        db = url.split("///", 1)[-1]
        if db and db != ":memory:":
            Path(db).expanduser().parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        storage = _create_rdb(url, engine_kwargs)
    except ImportError as exc:
        raise StorageError(
            f"storage {redact(url)!r} needs a database driver ({exc.name}); "
            "pip install 'psycopg[binary]'"
        ) from None
    except Exception as exc:  # sqlalchemy wraps connection failures in many types
        raise StorageError(
            f"storage {redact(url)!r} is unreachable or not a study database "
            f"({type(exc).__name__}: {redact(str(exc)).splitlines()[0][:160]})"
        ) from None
    if sqlite:
        _enable_wal(storage)
    # cached (Optuna's own wrapper for RDB studies), then patient through database outages
    # PatientStorage implements BaseStorage's methods by delegation (__getattr__), which mypy
    # cannot see
    return PatientStorage(optuna.storages.get_storage(storage), redact(url))  # type: ignore[abstract]


def _create_rdb(url: str, engine_kwargs: dict[str, object], attempts: int = 5) -> RDBStorage:
    """``RDBStorage`` that survives drivers creating the schema of a new database at once.

    Optuna creates its tables on first use; two processes doing that together on PostgreSQL
    collide on the catalog (``UniqueViolation``); the loser retries and finds the tables made.
    """
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(attempts):
        try:
            return RDBStorage(url, engine_kwargs=engine_kwargs)
        except (IntegrityError, ProgrammingError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def _enable_wal(storage: RDBStorage) -> None:
    with storage.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA journal_mode=WAL")


def load_study_names(storage: BaseStorage) -> list[str]:
    return [s.study_name for s in optuna.get_all_study_summaries(storage)]


def load_stored_study(storage: str, name: str | None = None) -> optuna.Study:
    """Reopen a stored study by storage string, with a clear error for each wrong guess."""
    if "://" not in storage and not Path(storage).expanduser().is_file():
        raise StorageError(
            f"no study storage at {storage}; give the journal file a search wrote "
            "(runs/<name>/study.journal) or a database URL"
        )
    backend = open_storage(storage, Path("."))
    names = [s.study_name for s in optuna.get_all_study_summaries(backend)]
    if not names:
        raise StorageError(f"storage {storage!r} holds no study; check the path")
    if name is None:
        if len(names) > 1:
            raise ConfigError(f"storage holds several studies {names}; name one")
        name = names[0]
    if name not in names:
        raise StorageError(f"study {name!r} not found; the storage holds {names}")
    return optuna.load_study(study_name=name, storage=backend)
