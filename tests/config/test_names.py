"""Registry keys live in one leaf module (autocompress._names); the registries match it."""

from __future__ import annotations

import subprocess
import sys
import typing

from autocompress._names import RUNTIME_NAMES, SAMPLER_NAMES
from autocompress.config import SearchConfig


def test_runtime_registry_keys_are_the_names() -> None:
    from autocompress.runtimes import available_runtimes

    assert available_runtimes() == RUNTIME_NAMES


def test_sampler_registry_and_schema_are_the_names() -> None:
    from autocompress.study._samplers import SAMPLERS, make_sampler

    assert tuple(SAMPLERS) == SAMPLER_NAMES
    assert typing.get_args(typing.get_type_hints(SearchConfig)["sampler"]) == SAMPLER_NAMES
    kinds = {type(make_sampler(SearchConfig(sampler=name))).__name__ for name in SAMPLER_NAMES}
    assert len(kinds) == len(SAMPLER_NAMES)


def test_config_imports_no_optuna_torch_or_registry() -> None:
    code = (
        "import sys, autocompress.config\n"
        "from autocompress.config import ExperimentConfig, SearchSpace\n"
        "names = ('optuna', 'torch', 'autocompress.models', 'autocompress.runtimes',"
        " 'autocompress.study')\n"
        "print(','.join(m for m in names if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
