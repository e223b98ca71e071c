"""Progress output: plain lines off a terminal (unchanged text), a live panel on one, -q / -v.

Trials are made up (``tests.synthetic``) so a search takes well under a second; the reference is
trained once for the module.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import random
import re
import time

import pytest

from autocompress.study import Progress, open_study, optimize
from autocompress.study._executors import LocalExecutor, Outcome
from tests.conftest import tiny_experiment
from tests.synthetic import synthetic_output

N_TRIALS = 4
TRIAL = re.compile(
    r"^  trial +\d+ (fp32 baseline|int8 baseline|uniform start| {8})  acc \d+\.\d\d%  "
    r"lat .+ \(\d+\.\d\dx fp32\)  size .+ +\d+\.\d s  \[.*\]$"
)
STATUS = re.compile(
    r"^  done \d+/4 \| running \d+ \| failed \d+ \| stopped early \d+ \| front \d+ \| "
    r"hypervolume \d+\.\d{4} \| ETA \d+\.\d min$"
)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from autocompress.config import ExperimentConfig
    from autocompress.study._setup import setup_from_experiment

    base = tmp_path_factory.mktemp("progress")
    data = tiny_experiment(base, search={"n_trials": N_TRIALS, "sampler": "random", "seed": 2})
    return setup_from_experiment(ExperimentConfig.from_dict(data))


@pytest.fixture
def level():
    """Sets the ``autocompress`` loggers' level for one test, then puts the old one back."""
    logger = logging.getLogger("autocompress")
    before = logger.level
    yield logger.setLevel
    logger.setLevel(before)


def _fast(seconds: float):
    def work(plan, task, number, objects=None):
        time.sleep(seconds)
        rng = random.Random(json.dumps(plan, sort_keys=True) + str(number))
        return Outcome(number, "ok", output=synthetic_output(rng))

    return work


def _search(setup, name: str, reporter_of, seconds: float = 0.01):
    """A made-up search of a fresh study named ``name``; returns its Progress."""
    setup = dataclasses.replace(setup, name=name)
    reporter = reporter_of(setup)
    optimize(open_study(setup), setup, LocalExecutor(work=_fast(seconds)), on_event=reporter)
    return reporter


def test_plain_lines_off_a_terminal(setup, level, monkeypatch) -> None:
    monkeypatch.setattr("autocompress.runtimes.int8_saturates", lambda: False)
    level(logging.INFO)
    out = io.StringIO()
    _search(setup, "plain", lambda s: Progress(s, out=out))
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("autocompress: study 'plain' in ")
    assert lines[0].endswith("| 4 trials, sampler random, 1 worker(s), runtime onnxruntime")
    assert re.match(
        r"^reference fp32: val accuracy \d+\.\d\d%, size .+, \d+ parameters$", lines[1]
    )
    body = lines[2:]
    assert len(body) == 2 * N_TRIALS  # a trial line, then a status line, per trial
    assert all(TRIAL.match(t) for t in body[0::2]), body
    assert all(STATUS.match(s) for s in body[1::2]), body
    assert body[-1].startswith("  done 4/4 | running 0 | failed 0 | stopped early 0 | front ")
    assert "\x1b" not in out.getvalue()  # no terminal codes in a log


@pytest.mark.parametrize("saturates", [True, False])
def test_a_cpu_whose_int8_saturates_is_named_in_the_opening_lines(
    setup, level, monkeypatch, saturates: bool
) -> None:
    monkeypatch.setattr("autocompress.runtimes.int8_saturates", lambda: saturates)
    level(logging.INFO)
    out = io.StringIO()
    _search(setup, f"vnni-{saturates}", lambda s: Progress(s, out=out))
    notes = [x for x in out.getvalue().splitlines()[:3] if "no VNNI" in x]
    assert len(notes) == int(saturates)
    assert not notes or "train and ship 7-bit weights" in notes[0]


def test_the_saturation_note_says_when_the_user_kept_8_bits(setup, monkeypatch) -> None:
    from autocompress.study._progress import _saturating_int8_note

    monkeypatch.setattr("autocompress.runtimes.int8_saturates", lambda: True)
    target = dataclasses.replace(setup.task.target, max_weight_bits=8)
    assert "target.max_weight_bits=8 keeps 8-bit weights" in str(_saturating_int8_note(target))


def test_trials_whose_timing_never_settled_are_marked_and_explained_once(setup, level) -> None:
    def unsettled(plan, task, number, objects=None):
        rng = random.Random(json.dumps(plan, sort_keys=True) + str(number))
        output = synthetic_output(rng)
        latency = dataclasses.replace(output.result.latency, attempts=3, stable=number % 2 == 0)
        result = dataclasses.replace(output.result, latency=latency)
        return Outcome(number, "ok", output=dataclasses.replace(output, result=result))

    level(logging.INFO)
    out = io.StringIO()
    reporter = Progress(dataclasses.replace(setup, name="noisy"), out=out)
    study = open_study(dataclasses.replace(setup, name="noisy"))
    optimize(study, reporter.setup, LocalExecutor(work=unsettled), on_event=reporter)
    lines = out.getvalue().splitlines()
    marked = [x for x in lines if x.startswith("  trial") and "x fp32, timing unsettled)" in x]
    notes = [x for x in lines if x.startswith("note: trial ")]
    assert len(marked) == reporter.unsettled == N_TRIALS // 2
    assert len(notes) == 1 and "did not settle in 3 sittings" in notes[0]
    spread = f"target.measure.max_spread={setup.task.target.measure.max_spread:g}"
    assert spread in notes[0] and "target.measure.attempts" in notes[0]


def test_debug_adds_a_line_per_started_trial(setup, level) -> None:
    level(logging.DEBUG)
    out = io.StringIO()
    _search(setup, "debug", lambda s: Progress(s, out=out))
    started = [x for x in out.getvalue().splitlines() if " started  [" in x]
    assert [x.split()[1] for x in started] == [str(n) for n in range(N_TRIALS)]


def test_a_terminal_gets_the_live_panel(setup, level, monkeypatch) -> None:
    from rich.console import Console

    from autocompress.study import _progress

    def slow_read(trial, read=_progress.read_trial):
        time.sleep(0.6 if trial.number == 0 else 0)  # a panel tick between end and line
        return read(trial)

    monkeypatch.setattr(_progress, "read_trial", slow_read)
    level(logging.INFO)
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=140)
    reporter = _search(setup, "live", lambda s: Progress(s, console=console), seconds=0.3)
    assert reporter._live is None  # the budget is spent: the panel is down
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())
    assert "\x1b[" in screen.getvalue()  # it was drawn as on a terminal
    assert re.search(r"trial +0 fp32 baseline +running +\d+ s", text)  # a running trial
    assert "━" in text  # the bar
    assert re.search(r"ETA (-|\d+\.\d min)", text)
    finished = [x for x in text.splitlines() if TRIAL.match(x)]
    assert len(finished) == N_TRIALS  # every finished trial stays above the panel
    assert text.rstrip().splitlines()[-1].startswith("  done 4/4 | running 0 | failed 0")
    reporter.close()  # idempotent


def test_quiet_logging_silences_progress(setup, level) -> None:
    level(logging.ERROR)
    out = io.StringIO()
    _search(setup, "quiet", lambda s: Progress(s, out=out))
    assert out.getvalue() == ""


@pytest.mark.parametrize(
    ("argv", "trial_lines", "started_lines"),
    [
        (["search", "x.yaml"], True, False),
        (["search", "x.yaml", "-q"], False, False),
        (["-q", "search", "x.yaml"], False, False),
        (["search", "x.yaml", "--quiet"], False, False),
        (["-v", "search", "x.yaml"], True, True),
        (["search", "x.yaml", "-v"], True, True),
    ],
)
def test_cli_verbosity(setup, monkeypatch, capsys, argv, trial_lines, started_lines) -> None:
    import autocompress._api as api
    from autocompress.cli import main

    def search(experiment, overrides=(), progress=True):
        name = "cli-" + "-".join(argv)
        reporter = _search(setup, name, lambda s: Progress(s, enabled=progress))
        return api.SearchResult(open_study(reporter.setup), reporter.setup.run_dir)

    monkeypatch.setattr(api, "search", search)
    before = logging.getLogger("autocompress").level
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "Pareto front (" in out  # the final front: always
    assert any(TRIAL.match(x) for x in out.splitlines()) == trial_lines
    assert (" started  [" in out) == started_lines
    assert logging.getLogger("autocompress").level == before  # main() put it back


def test_the_live_panel_shows_a_reported_step(setup, level) -> None:
    from rich.console import Console

    from autocompress.worker import CURRENT_TRIAL, _steps, clear_steps

    level(logging.INFO)
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=140)
    reporter = Progress(setup, out=io.StringIO(), console=console)
    reporter.started.update({3: time.monotonic(), 4: time.monotonic()})
    token = CURRENT_TRIAL.set(3)
    try:
        _steps.report(4, 6)
        console.print(reporter._render())
    finally:
        CURRENT_TRIAL.reset(token)
        clear_steps(3)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())
    assert re.search(r"trial +3 +running +\d+ s  step 4/6", text), text
    assert re.search(r"trial +4 +running +\d+ s$", text, re.MULTILINE), text  # none reported
    reporter.close()


def test_parameters_no_plan_covers_open_the_search(setup, level) -> None:
    level(logging.INFO)
    assert setup.uncovered == ()  # the tiny refnet: convs, BatchNorm (folded), a linear head
    left = (("encoder.pos", 512, "free parameter of Encoder"), ("encoder.norm.weight", 32, "n"))
    out = io.StringIO()
    Progress(dataclasses.replace(setup, uncovered=left), out=out)
    line = out.getvalue().splitlines()[2]
    assert line.startswith("left out (stays fp32): 544 parameters (")
    assert "encoder.pos (512, free parameter of Encoder)" in line
