"""Progress of a running search: a live display on a terminal, plain lines elsewhere.

Every line is a :mod:`logging` record of ``autocompress.progress`` (the CLI's ``-q`` sets the
``autocompress`` loggers to ERROR: no per-trial lines; ``-v`` to DEBUG: a line per started trial
too). Not on a terminal (CI logs, pipes, tests): one line per finished trial and a status line
(trials done / running / failed / stopped early, the front's size and hypervolume, an ETA from the
mean wall time of the trials finished in this session). On a terminal the finished trials scroll
above a live panel (``rich``) with the same status, a bar, and each running trial's elapsed time
and fine-tuning step (``step 40/60``, over the trial's whole budget, float and QAT phases).

Steps come from ``autocompress.worker.running_steps``, a registry in this process that the
fine-tuning loop writes after each step: it is filled for trials of the ``LocalExecutor`` (worker
threads of the driver's process). A trial on the Ray executor runs in another process and writes
that process's registry, which the driver cannot read (the worker tells the driver nothing until
it returns), so its line shows the elapsed time alone; so does a trial not fine-tuning yet.
"""

from __future__ import annotations

import logging
import sys
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TextIO

from optuna.trial import TrialState

from autocompress.front import build_front, fmt_bytes, fmt_ms
from autocompress.record import read_trial
from autocompress.study._setup import SearchSetup
from autocompress.study._storage import storage_label
from autocompress.worker import running_steps

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.live import Live

LOGGER = logging.getLogger("autocompress.progress")
REFRESH_PER_S = 2  # the live panel's redraws: elapsed seconds and steps tick without any event


@dataclass
class _Status:
    """The figures of the status line, as of the last event."""

    done: int = 0
    running: int = 0
    failed: int = 0
    stopped_early: int = 0
    front: int = 0
    hypervolume: float = 0.0
    eta_s: float | None = None  # None: no trial finished in this session yet
    at: float = 0.0  # time.monotonic() of the event

    def line(self, n_trials: int, eta_s: float | None) -> str:
        """The status as one line; ``eta_s`` None: not known yet."""
        return (
            f"done {self.done}/{n_trials} | running {self.running} | failed {self.failed} | "
            f"stopped early {self.stopped_early} | front {self.front} | "
            f"hypervolume {self.hypervolume:.4f} | "
            + ("ETA -" if eta_s is None else f"ETA {eta_s / 60:.1f} min")
        )


class _Lines(logging.Handler):
    """Each record's message as a bare line: on a stream, or above the live panel."""

    def __init__(self, out: TextIO, console: Console | None) -> None:
        super().__init__(logging.DEBUG)
        self.out, self.console = out, console

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if self.console is not None:
            self.console.print(text, markup=False, highlight=False, emoji=False, soft_wrap=True)
        else:
            print(text, file=self.out, flush=True)


def _attach(handler: _Lines) -> None:
    """One progress output at a time: a newer :class:`Progress` replaces the older's handler."""
    for old in [h for h in LOGGER.handlers if isinstance(h, _Lines)]:
        LOGGER.removeHandler(old)
    LOGGER.addHandler(handler)
    LOGGER.propagate = False  # the handler is the output: no second copy through the root
    parent = logging.getLogger("autocompress")
    if parent.level == logging.NOTSET:  # nobody chose a level (the Python API): lines show
        parent.setLevel(logging.INFO)


def _terminal(out: TextIO, console: Console | None) -> Console | None:
    """The console of the live panel, or None for plain lines (not a terminal, TERM=dumb)."""
    if console is None:
        if not getattr(out, "isatty", lambda: False)():
            return None
        from rich.console import Console

        console = Console(file=out)
    return console if console.is_terminal and not console.is_dumb_terminal else None


class Progress:
    """An ``on_event`` callback for :func:`autocompress.study._driver.optimize`.

    ``console``: a ``rich`` console for the live panel (default: one on ``out`` when ``out`` is
    a terminal; plain lines otherwise).
    """

    def __init__(
        self,
        setup: SearchSetup,
        *,
        enabled: bool = True,
        out: TextIO | None = None,
        console: Console | None = None,
    ) -> None:
        self.setup = setup
        self.enabled = enabled
        self.out = out or sys.stdout
        self.started: dict[int, float] = {}
        self.tags: dict[int, str] = {}
        self.durations: list[float] = []
        self.unsettled = 0  # trials whose timing never settled (their best sitting is kept)
        self.status = _Status()
        self.console = _terminal(self.out, console) if enabled else None
        self._live: Live | None = None
        if enabled:
            _attach(_Lines(self.out, self.console))
        self._say(
            f"autocompress: study {setup.name!r} in {storage_label(setup.storage, setup.run_dir)}"
            f" | {setup.search.n_trials} trials{_time_cap(setup.search.max_trial_minutes)}, "
            f"sampler {setup.search.sampler}, "
            f"{setup.search.n_workers} worker(s), runtime {setup.task.target.runtime}"
        )
        ref = setup.reference
        self._say(
            f"reference fp32: val accuracy {ref['val_accuracy']:.2%}, "
            f"size {fmt_bytes(ref['size_bytes'])}, {int(ref['params'])} parameters"
        )
        if "teacher_val_accuracy" in ref:
            self._say(
                f"teacher (distilled from): val accuracy {ref['teacher_val_accuracy']:.2%}, "
                f"{int(ref['teacher_params'])} parameters"
            )
        if setup.uncovered:
            self._say(_left_out(setup.uncovered, int(ref["params"])))
        note = _saturating_int8_note(setup.task.target)
        if note:
            self._say(note)

    def __call__(self, kind: str, info: dict[str, Any]) -> None:
        if kind == "started":
            self._started(info)
        elif kind == "recovered":
            self._say(
                f"resumed: trials {info['trials']} were left running by a stopped driver; "
                "marked failed and re-queued"
            )
        elif kind == "promoting":
            self._say(
                f"promoting trials {info['trials']}: the same plans fine-tuned for "
                f"{info['steps']} steps (new trials of this study)"
            )
        elif kind == "finished":
            self._finished(info)
        elif kind == "retimed":
            for line in _retimed_lines(info["pass"]):
                self._say(line)
        elif kind == "budget_spent":
            self.close()
            self._say(info["reason"])
        elif kind == "duplicate":
            self._say(
                f"  trial {info['trial']:3d} same plan as trial {info['of']}: its "
                "measurements are reused (no retraining)"
            )
            self._status(info["study"])

    def close(self) -> None:
        """Take the live panel down (the search is over); plain output has nothing to close."""
        if self._live is not None:
            self._live.stop()
            self._live = None

    def _started(self, info: dict[str, Any]) -> None:
        number, baseline = info["trial"], info.get("baseline")
        self.started[number] = time.monotonic()
        self.tags[number] = f"{baseline} baseline" if baseline else ""
        plan = info.get("plan")
        summary = "" if plan is None else plan.summary()
        self._say(f"  trial {number:3d} started  [{summary}]", logging.DEBUG)
        self._show_live()

    def _finished(self, info: dict[str, Any]) -> None:
        number, outcome, study = info["trial"], info["outcome"], info["study"]
        seconds = time.monotonic() - self.started.pop(number, time.monotonic())
        self.tags.pop(number, None)
        self.durations.append(seconds)
        trial = read_trial(study.trials[number])
        tag = f"{trial.baseline} baseline" if trial.baseline else "        "
        if trial.warm_start:
            tag = f"{trial.warm_start} start"
        if trial.rung is not None and trial.rung.parent is not None:
            tag = f"rung {trial.rung.level} of {trial.rung.parent:3d}"
        if outcome.kind == "ok" and outcome.result is not None:
            r = outcome.result
            ratio = r.latency_ratio or float("nan")
            plan = "" if trial.plan is None else trial.plan.summary()
            noisy = "" if r.latency.stable else ", timing unsettled"
            self._say(
                f"  trial {number:3d} {tag}  acc {r.accuracy:.2%}  "
                f"lat {fmt_ms(r.latency_ms)} ({ratio:.2f}x fp32{noisy})  "
                f"size {fmt_bytes(r.size_bytes)}  {seconds:5.1f} s  [{plan}]"
            )
            if noisy and not self.unsettled:
                self._say(_unsettled_note(number, r.latency.attempts, self.setup.task.target))
            self.unsettled += bool(noisy)
        else:
            self._say(f"  trial {number:3d} {tag}  {outcome.kind}: {outcome.reason}")
        self._status(study)

    def _status(self, study: Any) -> None:
        counts = {s: 0 for s in TrialState}
        for t in study.get_trials(deepcopy=False):
            counts[t.state] += 1
        done, n = counts[TrialState.COMPLETE], self.setup.search.n_trials
        per_trial = sum(self.durations) / len(self.durations) if self.durations else None
        front = build_front(study)
        self.status = _Status(
            done=done,
            running=counts[TrialState.RUNNING],
            failed=counts[TrialState.FAIL],
            stopped_early=counts[TrialState.PRUNED],
            front=len(front.members),
            hypervolume=front.hypervolume(),
            eta_s=None
            if per_trial is None
            else max(0, n - done) * per_trial / max(1, self.setup.search.n_workers),
            at=time.monotonic(),
        )
        if self.console is None:
            self._say("  " + self.status.line(n, self.status.eta_s or 0.0))
            return
        self._show_live()
        if not self.started and done >= n:  # the budget is spent: the panel becomes a line
            self.close()
            self._say("  " + self.status.line(n, 0.0))

    def _show_live(self) -> None:
        """Start the live panel (on a terminal, at INFO) or redraw it now: an event happened."""
        if self._live is not None:
            self._live.refresh()
            return
        if self.console is None or not LOGGER.isEnabledFor(logging.INFO):
            return
        from rich.live import Live

        me = weakref.ref(self)  # the refresh thread must not keep this object alive

        def render() -> RenderableType:
            progress = me()
            return "" if progress is None else progress._render()

        self._live = Live(
            get_renderable=render,
            console=self.console,
            refresh_per_second=REFRESH_PER_S,
            transient=True,
        )
        self._live.start(refresh=True)  # drawn now, not a refresh period later (0.5 s)
        weakref.finalize(self, self._live.stop)  # a search that raised: the cursor comes back

    def _render(self) -> RenderableType:
        """The live panel: bar and status line, then one line per running trial."""
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        now, status, n = time.monotonic(), self.status, self.setup.search.n_trials
        running = sorted(list(self.started.items()))  # a copy: events change it meanwhile
        eta = None if status.eta_s is None else max(0.0, status.eta_s - (now - status.at))
        status = replace(status, running=max(status.running, len(running)))
        head = Table.grid(padding=(0, 1))
        head.add_row(ProgressBar(total=n, completed=min(status.done, n), width=24))
        head.add_row(Text(status.line(n, eta)))
        steps = running_steps()
        lines = [
            Text(
                f"  trial {k:3d} {self.tags.get(k, ''):<22} running {now - since:5.0f} s"
                + (f"  step {steps[k][0]}/{steps[k][1]}" if k in steps else "")
            )
            for k, since in running
        ]
        return Group(head, *lines)

    def _say(self, text: str, level: int = logging.INFO) -> None:
        if self.enabled:
            LOGGER.log(level, text)


def _time_cap(minutes: float | None) -> str:
    return "" if minutes is None else f" within {minutes:g} trial-minutes"


def _saturating_int8_note(target: Any) -> str | None:
    """The opening line on a CPU whose int8 kernels saturate, and what the search does there."""
    from autocompress.runtimes import saturating_int8, widest_exact_bits

    if not saturating_int8(target):
        return None
    widest = widest_exact_bits(target)
    done = (
        f"int8 layers sampled wider train and ship {widest}-bit weights, exact and as fast "
        "(refnet int8 PTQ here: 93.82% val at 7 bits, 92.30% at 8, fp32 93.80%)"
        if widest < 8
        else "target.max_weight_bits=8 keeps 8-bit weights: accuracy is measured on the "
        "deployable, but 8-bit layers score lower here (refnet int8 PTQ: 1.5 pt under fp32)"
    )
    return (
        "note: this CPU has no VNNI, so ONNX Runtime's int8 kernels add pairs of 8-bit "
        f"products in 16 bits and saturate on full-range 8-bit weights; {done}"
    )


def _unsettled_note(number: int, attempts: int, target: Any) -> str:
    """Said once, at the first trial whose timing stayed unsettled in every sitting."""
    return (
        f"note: trial {number}'s timing did not settle in {attempts} sittings (spread above "
        f"target.measure.max_spread={target.measure.max_spread:g}, or the fp32 model timed "
        "beside it more than target.measure.reference_tolerance="
        f"{target.measure.reference_tolerance:g} slower than usual): this machine is noisy, so "
        "each such trial keeps its best sitting, is marked 'timing unsettled' and is timed "
        "again once the trials are done (target.measure.retime); quiet the machine (no other "
        "heavy jobs) or raise target.measure.attempts"
    )


def _retimed_lines(done: Any) -> list[str]:
    """The closing lines of a re-time pass (``_retime.RetimePass``): each trial's latency as
    first timed and again, and which sitting the front shows."""
    if not done.rows and not done.other_device and not done.failed:
        return []
    lines = [
        f"re-timed {len(done.rows)} trial(s) whose timing had not settled, the trials done: "
        "the front shows the steadier sitting"
    ]
    for r in done.rows:
        before, after = r.before, r.after
        lines.append(
            f"  trial {r.number:3d}  {fmt_ms(before.candidate.median_ms)} ({_x(before)}) -> "
            f"{fmt_ms(after.candidate.median_ms)} ({_x(after)}"
            f"{'' if after.stable else ', unsettled again'})  "
            + ("kept the new sitting" if r.kept else "kept its own sitting")
        )
    if done.failed:
        lines.append(f"  {done.left} left as timed: the re-time failed ({done.failed})")
    if done.other_device:
        lines.append(
            f"  {done.left} left as timed: this machine is not the one that timed the study "
            "(its fingerprint differs); resume the search on that machine to re-time them"
        )
    return lines


def _x(m: Any) -> str:
    return "no fp32 beside it" if m.ratio is None else f"{m.ratio:.2f}x fp32"


def _left_out(uncovered: Sequence[tuple[str, int, str]], params: int) -> str:
    """The opening line on parameters no plan covers (they ship in fp32, at full size)."""
    total = sum(n for _, n, _ in uncovered)
    shown = ", ".join(f"{name} ({n}, {why})" for name, n, why in uncovered[:4])
    more = f", and {len(uncovered) - 4} more" if len(uncovered) > 4 else ""
    share = total / params if params else 0.0
    return f"left out (stays fp32): {total} parameters ({share:.0%}): {shown}{more}"
