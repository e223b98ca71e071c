"""``$RAY_ADDRESS`` names the cluster when ``search.ray_address`` is unset (issue #20, item 11)."""

from __future__ import annotations

import pytest

from autocompress import _ray

ray = pytest.importorskip("ray")


@pytest.mark.parametrize(
    ("configured", "env", "expected"),
    [(None, "ray://head:10001", "ray://head:10001"), ("10.0.0.1:6379", "x:1", "10.0.0.1:6379")],
)
def test_ray_address_honours_the_environment(monkeypatch, configured, env, expected) -> None:
    calls: list[str] = []
    monkeypatch.setenv("RAY_ADDRESS", env)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda address=None, **kwargs: calls.append(address))
    _ray.ensure_ray(configured)
    assert calls == [expected]


def test_without_either_a_local_ray_starts(monkeypatch) -> None:
    calls: list[str] = []
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda address=None, **kwargs: calls.append(address))
    _ray.ensure_ray(None)
    assert calls == ["local"]
