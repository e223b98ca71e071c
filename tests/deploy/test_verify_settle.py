"""verify re-times a candidate whose fp32 reference, timed beside it, ran off the others'."""

from __future__ import annotations

import logging
import math

import pytest

from autocompress.deploy._verify import (
    RETIMES,
    Verified,
    format_verified,
    median_reference,
    settle,
)
from autocompress.measure import LatencyStats, Measurement

TOLERANCE = 0.05  # target.measure.reference_tolerance's default


def sitting(candidate_ms: float, reference_ms: float | None) -> tuple[Measurement, dict]:
    def stats(ms: float) -> LatencyStats:
        return LatencyStats(ms, ms, ms, ms, 0.01, 100)

    latency = Measurement(
        candidate=stats(candidate_ms),
        reference=None if reference_ms is None else stats(reference_ms),
        attempts=1,
        stable=True,
        lock_wait_s=0.0,
        cores=[1],
    )
    return latency, {"key": "k"}


def test_a_disturbed_sitting_is_timed_again_and_the_nearest_fp32_kept(caplog) -> None:
    sittings = [sitting(0.2, 0.60), sitting(0.3, 0.58), sitting(0.4, 0.97), sitting(0.1, 0.61)]
    typical = median_reference([s[0] for s in sittings])
    assert typical == pytest.approx(0.605)
    again = {2: [sitting(0.35, 0.80), sitting(0.25, 0.62)]}
    asked: list[int] = []

    def retime(i: int) -> tuple[Measurement, dict]:
        asked.append(i)
        return again[i].pop(0)

    with caplog.at_level(logging.WARNING, logger="autocompress.deploy"):
        assert settle(sittings, typical, TOLERANCE, retime) == [0, 0, 2, 0]
    assert asked == [2, 2] and sittings[2][0].ratio == pytest.approx(0.25 / 0.62)
    assert "re-timed 1 of 4 candidates" in caplog.text and "all settled" in caplog.text


def test_one_still_off_after_every_retime_keeps_its_nearest_sitting_and_is_labelled(
    caplog,
) -> None:
    sittings = [sitting(0.2, 0.6), sitting(0.3, 0.6), sitting(0.4, 1.2)]
    typical = median_reference([s[0] for s in sittings])
    worse = iter([sitting(0.5, 1.0), sitting(0.6, 1.4)])
    with caplog.at_level(logging.WARNING, logger="autocompress.deploy"):
        assert settle(sittings, typical, TOLERANCE, lambda i: next(worse)) == [0, 0, RETIMES]
    assert sittings[2][0].reference is not None
    assert sittings[2][0].reference.median_ms == 1.0  # the nearest of the three
    assert "1 still off, marked 'disturbed'" in caplog.text
    row = Verified(
        2, None, 0.9, 0.9, 0.4, 0.5, 0.6, 0.5, True, "f",
        reference_ms=1.0, reference_off=1.0 / 0.6 - 1, retimes=RETIMES, disturbed=True,
    )  # fmt: skip
    assert row.disturbed and "(fp32 beside it +67%: disturbed)" in format_verified([row], 0.9)


def test_within_tolerance_or_fewer_than_three_references_nothing_is_retimed() -> None:
    from autocompress.config import MeasureConfig

    assert MeasureConfig().reference_tolerance == TOLERANCE

    def never(i: int) -> tuple[Measurement, dict]:
        raise AssertionError(f"retimed {i}")

    edge = 0.6 * (1 + TOLERANCE) * 0.999
    steady = [sitting(0.2, 0.6), sitting(0.3, 0.6), sitting(0.4, edge)]
    assert settle(steady, median_reference([s[0] for s in steady]), TOLERANCE, never) == [0, 0, 0]
    two = [sitting(0.2, 0.6), sitting(0.3, 1.2), sitting(0.1, None)]
    assert median_reference([s[0] for s in two]) is None
    assert settle(two, None, TOLERANCE, never) == [0, 0, 0]
    old = Verified(1, None, 0.9, 0.9, 0.4, 0.4, 0.6, 0.6, True, "f")  # a stored row's fields
    assert math.isnan(old.reference_ms) and not old.disturbed
