"""The registry of running trials' fine-tuning steps: per trial, thread-safe, cleared, and fed by
``execute`` while a real trial fine-tunes."""

from __future__ import annotations

import threading

from autocompress.plan import CompressionPlan, DistillPlan
from autocompress.worker import CURRENT_TRIAL, _steps, clear_steps, running_steps


def test_threads_report_under_their_own_trial_and_clear() -> None:
    barrier = threading.Barrier(4)

    def trial(number: int) -> None:
        CURRENT_TRIAL.set(number)  # a fresh thread has its own context
        barrier.wait()
        for done in range(1, 101):
            _steps.report(done, 100 + number)

    threads = [threading.Thread(target=trial, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert running_steps() == {n: (100, 100 + n) for n in range(4)}
    snapshot = running_steps()
    clear_steps(2)
    clear_steps(99)  # unknown: nothing happens
    assert sorted(running_steps()) == [0, 1, 3]
    assert 2 in snapshot  # a copy, not the live dict
    for n in (0, 1, 3):
        clear_steps(n)
    assert running_steps() == {}


def test_no_current_trial_reports_nothing() -> None:
    assert CURRENT_TRIAL.get() is None
    _steps.report(1, 2)
    assert running_steps() == {}


def test_execute_reports_steps_over_the_whole_budget(tiny_task, monkeypatch) -> None:
    from autocompress.study._executors import execute
    from autocompress.worker._context import trial_context

    seen: list[tuple[int | None, int, int]] = []
    report = _steps.report

    def spy(done: int, total: int) -> None:
        seen.append((CURRENT_TRIAL.get(), done, total))
        report(done, total)
        assert running_steps()[7] == (done, total)  # the panel would see it now

    monkeypatch.setattr(_steps, "report", spy)
    names = [layer.name for layer in trial_context(tiny_task).layers]
    plan = CompressionPlan.uniform(names, weight_bits=4)
    plan = CompressionPlan(layers=plan.layers, distill=DistillPlan(qat_fraction=0.5))
    outcome = execute(plan.to_dict(), tiny_task.to_dict(), 7)
    assert outcome.kind == "ok", outcome.reason
    total = tiny_task.finetune.steps
    assert total == 6
    # float phase then QAT phase, counted on one budget: 1..6 of 6
    assert seen == [(7, done, total) for done in range(1, total + 1)]
    assert running_steps() == {}  # cleared when the trial ended
    assert CURRENT_TRIAL.get() is None  # and the trial number reset


def test_execute_clears_a_failed_trial(monkeypatch) -> None:
    from autocompress.study._executors import execute

    def boom(*args: object, **kwargs: object) -> None:
        _steps.report(3, 6)
        raise RuntimeError("boom")

    monkeypatch.setattr("autocompress.worker._trial.run_trial", boom)
    assert execute({}, {}, 5).kind == "failed"
    assert running_steps() == {}
