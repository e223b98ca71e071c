"""One finished tiny search (digits, refnet width 8) shared by the deploy tests."""

from __future__ import annotations

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
