"""One finished tiny search (digits, refnet width 8) shared by the deploy tests."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest

from tests.conftest import tiny_experiment


@pytest.fixture(scope="session")
def finished(tmp_path_factory):
    """A completed 6-trial search: its SearchResult and its journal path."""
    from autocompress import search
    from autocompress.config import ExperimentConfig

    base = tmp_path_factory.mktemp("finished")
    config = ExperimentConfig.from_dict(
        tiny_experiment(base, search={"n_trials": 6, "sampler": "random", "seed": 3})
    )
    result = search(config, progress=False)
    return result, str(result.run_dir / "study.journal")


@pytest.fixture(scope="session")
def clean_python(tmp_path_factory) -> tuple[str, bool]:
    """A fresh venv with numpy alone (pip, ~10 s): the interpreter a user ships unpack.py to,
    and True; where pip cannot install, our own interpreter (run isolated, autocompress blocked)
    and False."""
    venv = tmp_path_factory.mktemp("unpack-venv")
    python = venv / "bin" / "python"
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "numpy"],
            check=True,
            capture_output=True,
            timeout=300,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        warnings.warn(f"no clean venv ({exc}): unpack.py runs isolated in ours", stacklevel=1)
        return sys.executable, False
    return str(python), True
