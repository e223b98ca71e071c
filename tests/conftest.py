"""Shared fixtures: tiny deterministic tasks that train in seconds on 2 CPU cores.

The session gets its own checkpoint cache and measurement-lock directory, so tests neither reuse
a user's cache nor wait on a search running on the same machine.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="autocompress-tests-"))
os.environ.setdefault("AUTOCOMPRESS_CACHE", str(_SESSION_DIR / "cache"))
os.environ.setdefault("AUTOCOMPRESS_LOCK_DIR", str(_SESSION_DIR / "locks"))
os.environ.setdefault("OMP_NUM_THREADS", "2")

# retime off: a re-time after the search would move latencies between runs of one test
# (tests/study/test_retime.py turns it on)
FAST_MEASURE = {
    "warmup": 3,
    "repeats": 20,
    "min_time_s": 0.02,
    "max_spread": 1.0,
    "attempts": 1,
    "retime": False,
}


def tiny_experiment(tmp_path: Path, **sections: dict) -> dict:
    """An experiment dict for refnet width 8 on the 8x8 digits (trains in ~2 s)."""
    data = {
        "name": "tiny",
        "space": str(Path(__file__).parent / "data" / "tiny_space.yaml"),
        "data": {"dataset": "digits", "val_size": 300, "calibration_batches": 2, "batch_size": 64},
        "model": {
            "name": "refnet",
            "kwargs": {"width": 8},
            "train": {"epochs": 6, "batch_size": 64, "lr": 0.05},
        },
        "finetune": {"steps": 6, "batch_size": 64, "bn_batches": 2},
        "target": {"measure": FAST_MEASURE},
        "search": {"n_trials": 3, "sampler": "random", "seed": 0},
        "run_dir": str(tmp_path / "run"),
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return data


@pytest.fixture
def experiment_dict(tmp_path: Path) -> dict:
    return tiny_experiment(tmp_path)


@pytest.fixture(scope="session")
def tiny_task():
    """A Task with a trained tiny reference (digits, refnet width 8), cached for the session."""
    from autocompress.config import ExperimentConfig
    from autocompress.models import load_reference
    from autocompress.worker._task import Task

    config = ExperimentConfig.from_dict(tiny_experiment(_SESSION_DIR))
    reference = load_reference(config.model, config.data)
    return Task(
        data=config.data,
        model=config.model,
        finetune=config.finetune,
        target=config.target,
        checkpoint=str(reference.checkpoint),
    )


def fashion_mnist_available() -> bool:
    from autocompress.data._datasets import DEBIAN_FASHION_MNIST

    return DEBIAN_FASHION_MNIST.is_dir() or bool(os.environ.get("AUTOCOMPRESS_DATA"))


@pytest.fixture
def require_fashion_mnist() -> None:
    """Fashion-MNIST must exist in CI (.ci/run installs it); elsewhere the test is skipped."""
    if fashion_mnist_available():
        return
    if os.environ.get("CI"):
        pytest.fail("Fashion-MNIST is missing in CI: apt-get install dataset-fashion-mnist")
    pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory):
    """A real PostgreSQL server on 127.0.0.1 for the session (Debian's postgresql package).

    Runs as the ``postgres`` user when the tests run as root (the server refuses root).
    """
    server = _PostgresServer(tmp_path_factory.mktemp("pg"))
    try:
        server.url = server.start()
    except RuntimeError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL unavailable in CI: {exc}")
        pytest.skip(f"PostgreSQL unavailable: {exc}")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres_server) -> str:
    return postgres_server.url


class _PostgresServer:
    PASSWORD = "s3cret-pw"

    def __init__(self, base: Path) -> None:
        import glob
        import shutil

        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        self.bin = Path(bins[-1]).parent if bins else None
        self.base = base
        self.data = base / "data"
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
        self.port = _free_port()
        self._shutil = shutil

    def _run(self, *args: str) -> None:
        import subprocess

        env = {**os.environ, "PGPASSWORD": self.PASSWORD}
        subprocess.run(
            [*self.as_user, *args],
            check=True,
            capture_output=True,
            timeout=60,
            env=env,
            stdin=subprocess.DEVNULL,
        )

    def start(self) -> str:
        if self.bin is None:
            raise RuntimeError("postgresql is not installed (apt-get install postgresql)")
        if self.as_user:
            self._shutil.chown(self.base, "postgres", "postgres")
            for parent in self.base.parents:  # the server user must reach its directory
                if parent == Path(tempfile.gettempdir()) or parent == Path("/"):
                    break
                parent.chmod(parent.stat().st_mode | 0o011)
        pwfile = self.base / "pw"
        pwfile.write_text(self.PASSWORD)
        if self.as_user:
            self._shutil.chown(pwfile, "postgres", "postgres")
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "autocompress",
            "--pwfile",
            str(pwfile),
            "-A",
            "scram-sha-256",
        )
        self.launch()
        self._run(
            str(self.bin / "createdb"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "autocompress",
            "studies",
        )
        return f"postgresql://autocompress:{self.PASSWORD}@127.0.0.1:{self.port}/studies"

    def launch(self) -> None:
        """Start the server on its data directory (again, after :meth:`stop`)."""
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-w",
            "-l",
            str(self.base / "log"),
            "-o",
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.base}",
            "start",
        )

    def stop(self) -> None:
        import subprocess

        subprocess.run(
            [*self.as_user, str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "stop"],
            capture_output=True,
            timeout=60,
        )


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
