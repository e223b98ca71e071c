"""The latency protocol's choice of sitting: spread, and the fp32 reference running slow."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from autocompress.config import MeasureConfig
from autocompress.measure import LatencyStats, Measurement, _latency, measure

CONFIG = MeasureConfig(attempts=3, max_spread=0.10, reference_tolerance=0.10)


def stats(ms: float, spread: float = 0.02) -> LatencyStats:
    return LatencyStats(ms, ms, ms, ms, spread, 100)


def sittings(
    monkeypatch: pytest.MonkeyPatch, *pairs: tuple[LatencyStats, LatencyStats]
) -> list[int]:
    """Make ``measure``'s sittings the given (candidate, reference) pairs, in turn."""
    queue: Iterator[tuple[LatencyStats, LatencyStats]] = iter(pairs)
    taken: list[int] = []

    def fake(*_args: object) -> tuple[LatencyStats, LatencyStats]:
        taken.append(1)
        return next(queue)

    monkeypatch.setattr(_latency, "_sitting", fake)
    return taken


def run(expected: float | None) -> Measurement:
    return measure(lambda: None, lambda: None, CONFIG, [0], expected_reference_ms=expected)


def test_a_sitting_whose_fp32_ran_slower_than_usual_is_retried(monkeypatch) -> None:
    """Steady spreads, but the fp32 beside the first ran 50% slow: a disturbance spanning the
    whole sitting, which spread alone does not see."""
    taken = sittings(monkeypatch, (stats(0.20), stats(0.90)), (stats(0.10), stats(0.62)))
    got = run(expected=0.60)
    assert len(taken) == 2 and got.attempts == 2 and got.stable
    assert got.ratio == pytest.approx(0.10 / 0.62)


def test_when_every_sitting_is_slow_the_fastest_fp32_is_kept_and_marked_unstable(
    monkeypatch,
) -> None:
    sittings(
        monkeypatch,
        (stats(0.20, 0.01), stats(0.90)),
        (stats(0.15, 0.05), stats(0.75)),
        (stats(0.25, 0.01), stats(1.00)),
    )
    got = run(expected=0.60)
    assert got.attempts == 3 and not got.stable
    assert got.reference is not None and got.reference.median_ms == 0.75


def test_faster_than_usual_is_no_disturbance_and_within_tolerance_the_lowest_spread_wins(
    monkeypatch,
) -> None:
    taken = sittings(monkeypatch, (stats(0.2, 0.05), stats(0.40)))
    assert run(expected=0.60).stable and len(taken) == 1  # one-sided: nothing runs too fast
    sittings(monkeypatch, (stats(0.2, 0.30), stats(0.65)), (stats(0.1, 0.05), stats(0.59)))
    got = run(expected=0.60)
    assert got.attempts == 2 and got.stable and got.candidate.median_ms == 0.1
    taken = sittings(monkeypatch, (stats(0.2, 0.05), stats(5.0)))
    assert run(expected=None).stable and len(taken) == 1  # no usual yet: spread only


def test_a_worker_expects_the_lower_quartile_of_its_last_sittings() -> None:
    import numpy as np

    from autocompress.worker._context import RECENT_SITTINGS, TrialContext

    ctx = TrialContext(*([None] * 9))  # type: ignore[arg-type]
    ctx.reference_ms += [0.6, 0.62]
    assert ctx.usual_reference_ms() is None  # fewer than three: nothing to expect yet
    ctx.reference_ms += [0.9]
    assert ctx.usual_reference_ms() == pytest.approx(np.percentile([0.6, 0.62, 0.9], 25))
    ctx.reference_ms[:] = [0.33] * 4 + [0.36] * 8  # a slow spell, the majority: usual stays fast
    assert ctx.usual_reference_ms() == pytest.approx(0.33)
    ctx.reference_ms += [0.3] * RECENT_SITTINGS  # the machine got faster: the usual follows
    assert ctx.usual_reference_ms() == pytest.approx(0.3)
