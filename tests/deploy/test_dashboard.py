"""optuna-dashboard tells the truth about a study, read through its own HTTP (JSON) API.

Issue #20: the dashboard showed "Objective 0/1/2", ordinal indices for bits, no feasibility (it
reads the ``constraints`` system attribute, which ``trial.set_constraint`` does not write), and so
a different Pareto front from ours. The study here is written by the same record writers the
driver calls, with one infeasible trial that an unconstrained front would keep.
"""

from __future__ import annotations

import io
import json
from typing import Any
from wsgiref.util import setup_testing_defaults

import optuna
import pytest

from autocompress.front import build_front
from autocompress.record import attrs as A
from tests.synthetic import synthetic_study

pytest.importorskip("optuna_dashboard")

FLOOR = 0.9
# (accuracy, latency ratio, size bytes, fc bits): 0, 1 on our front; 2 fast but below the floor;
# 3 feasible but dominated by 0
TRIALS = [(0.95, 0.9, 9e5, 8), (0.92, 0.5, 5e5, 4), (0.50, 0.1, 1e5, 2), (0.91, 0.95, 9.5e5, None)]


def _study(storage: Any) -> optuna.Study:
    return synthetic_study(storage, TRIALS, FLOOR)  # type: ignore[return-value]


def _get(app: Any, path: str) -> dict[str, Any]:
    environ: dict[str, Any] = {"PATH_INFO": path, "REQUEST_METHOD": "GET"}
    setup_testing_defaults(environ)
    environ["wsgi.input"] = io.BytesIO()
    status: list[str] = []
    body = b"".join(app(environ, lambda s, h, *a: status.append(s)))
    assert status[0].startswith("200"), (status, body[:300])
    return json.loads(body)


def _dashboard_front(detail: dict[str, Any]) -> set[int]:
    """The Pareto front as the dashboard's Pareto-front plot draws it (bundle.js: feasible
    trials by ``constraints.every(c => c <= 0)``, then the non-dominated ones among them)."""
    signs = [-1.0 if d == "maximize" else 1.0 for d in detail["directions"]]
    feasible = [
        t
        for t in detail["trials"]
        if t["state"] == "Complete" and all(c <= 0 for c in t["constraints"])
    ]
    points = {
        t["number"]: [s * v for s, v in zip(signs, t["values"], strict=True)] for t in feasible
    }

    def dominated(p: list[float]) -> bool:
        return any(
            q != p and all(a <= b for a, b in zip(q, p, strict=True)) for q in points.values()
        )

    return {n for n, p in points.items() if not dominated(p)}


def test_the_dashboard_shows_names_real_values_feasibility_and_our_front(tmp_path) -> None:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from optuna_dashboard import wsgi

    storage = JournalStorage(JournalFileBackend(str(tmp_path / "study.journal")))
    ours = {m.number for m in build_front(_study(storage)).members}
    assert ours == {0, 1}

    app = wsgi(storage)
    (summary,) = _get(app, "/api/studies")["study_summaries"]
    detail = _get(app, f"/api/studies/{summary['study_id']}")

    assert detail["objective_names"] == ["accuracy", "latency_ratio", "size_bytes"]
    trials = {t["number"]: t for t in detail["trials"]}
    for number, (accuracy, _, _, bits) in enumerate(TRIALS):
        shown = {a["key"]: a["value"] for a in trials[number]["user_attrs"]}
        assert shown["weight_bits.fc"] == str(32 if bits is None else bits)
        assert shown["prune_ratio.fc"] == "0.25"
        assert shown["feasible"] == str(accuracy >= FLOOR)
        assert trials[number]["constraints"] == [pytest.approx(FLOOR - accuracy)]
    assert _dashboard_front(detail) == ours
    # the JSON's own "best_trials" ignores constraints in optuna-dashboard 0.21 (its _app.py
    # calls get_pareto_front_trials on every COMPLETE trial): the infeasible 2 is listed there
    assert {t["number"] for t in detail["best_trials"]} == ours | {2}


def test_a_duplicate_trial_keeps_the_constraints_where_the_dashboard_reads_them() -> None:
    study = _study(None)
    trial = study.ask()
    A.copy_completed(trial, study.trials[2])
    study.tell(trial, list(study.trials[2].values))
    copy = study.trials[-1]
    assert copy.system_attrs[A.CONSTRAINTS] == [pytest.approx(FLOOR - 0.5)]
    assert copy.user_attrs[A.FEASIBLE] is False
    assert list(copy.constraints.values()) == [pytest.approx(FLOOR - 0.5)]  # counted once
