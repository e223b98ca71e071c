"""Search spaces as YAML schema: checks, and the round trip through plain data."""

from __future__ import annotations

import pytest

from autocompress.config import SearchSpace
from autocompress.errors import ConfigError


def space(**rule) -> SearchSpace:
    base = {"match": "layer.*", "bits": [4, 8, "none"], "prune": [0.0, 0.5]}
    return SearchSpace.from_dict(
        {"layers": [{**base, **rule}, {"match": "fc", "bits": [8, "none"]}]}
    )


def test_negative_temperature_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"-2\.0 is out of range"):
        SearchSpace.from_dict({"layers": [{"match": ".*"}], "distill": {"temperature": [-2.0]}})


def test_space_round_trips_through_dict() -> None:
    s = space(prune={"low": 0.0, "high": 0.75, "step": 0.25})
    assert SearchSpace.from_dict(s.to_dict()).to_dict() == s.to_dict()
