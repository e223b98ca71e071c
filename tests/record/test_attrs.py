"""One module spells the study's attribute names; readers and writers round-trip through Optuna."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import optuna
from optuna.trial import TrialState

from autocompress.plan import CompressionPlan
from autocompress.record import Promotion, Rung, attrs, read_study, read_trial
from tests.record.test_result import _result

PACKAGE = Path(__file__).resolve().parents[2] / "autocompress"
OWNER = PACKAGE / "record" / "_attrs.py"
# Reading a trial result or a user attribute by string key, anywhere but the owning module.
BY_KEY = re.compile(r"user_attrs\s*(\[|\.get\()|set_user_attr\(\s*[\"']|\.result\s*(\[|\.get\()")


def test_only_the_attrs_module_reads_attributes_or_results_by_key() -> None:
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path == OWNER:
            continue
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if BY_KEY.search(line):
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{lineno}: {line.strip()}")
    assert not offenders, "read through autocompress.record instead:\n" + "\n".join(offenders)


def test_attribute_names_are_spelled_once() -> None:
    """Every attribute key is a module constant of _attrs, each value distinct."""
    tree = ast.parse(OWNER.read_text())
    names = [
        n.value.value
        for n in tree.body
        if isinstance(n, ast.Assign)
        and isinstance(n.value, ast.Constant)
        and isinstance(n.value.value, str)
        and all(isinstance(t, ast.Name) and t.id.isupper() for t in n.targets)
    ]
    assert len(names) == len(set(names)) >= 25


def test_trial_writers_and_reader_round_trip() -> None:
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    rung = Rung(level=2, steps=1000, parent=3, lr=0.03)
    study.enqueue_trial({}, user_attrs=attrs.slot_attrs(rung=rung, baseline="int8"))
    trial = study.ask()
    plan = CompressionPlan.uniform(["fc"], weight_bits=4)
    attrs.stamp_driver(trial, attrs.DriverStamp("host", 42, "abcd"))
    attrs.set_plan(trial, plan)
    attrs.set_completed(trial, _result(), "/runs/x/trials/00000")
    study.tell(trial, [0.9, 0.4, 41234.0])
    record = read_trial(study.trials[0])
    assert record.slot and record.baseline == "int8" and record.rung == rung
    assert record.driver == attrs.DriverStamp("host", 42, "abcd") and record.heartbeat
    assert record.plan == plan and record.result == _result()
    assert record.artifact_dir == "/runs/x/trials/00000" and record.outcome == "ok"
    assert attrs.is_promotion(study.trials[0])


def test_a_refinement_of_an_old_study_reads_as_a_promotion() -> None:
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    study.enqueue_trial({}, user_attrs={"slot": True, "refine": {"of": 3, "steps": 1000}})
    study.enqueue_trial({}, user_attrs=attrs.slot_attrs(rung=Rung(0, 0)))  # an entry
    old, entry = study.trials
    assert read_trial(old).rung == Rung(level=1, steps=1000, parent=3, lr=None)
    assert attrs.is_promotion(old) and not attrs.is_promotion(entry)
    assert attrs.retry_attrs(old)["refine"] == {"of": 3, "steps": 1000}  # a retry keeps it


def test_failed_trial_and_study_record() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    trial = study.ask()
    attrs.set_failed(trial, "hopeless", "below the floor", early_accuracy=0.12)
    study.tell(trial, state=TrialState.PRUNED)
    record = read_trial(study.trials[0])
    assert (record.outcome, record.failure, record.early_accuracy) == (
        "hopeless",
        "below the floor",
        0.12,
    )
    assert record.result is None and not record.slot
    empty = read_study(study)
    assert (
        not empty.has_any
        and empty.signature is None
        and empty.promotions == ()
        and empty.rungs is None
    )
    attrs.add_promotions(study, [Promotion(4, 1, 60)])
    attrs.add_promotions(study, [Promotion(7, 2, 250)])
    attrs.set_fingerprint_key(study, "k1")
    attrs.set_fingerprint_key(study, "k2")  # the first measurement's device stays
    info = read_study(study)
    assert (
        info.promotions == (Promotion(4, 1, 60), Promotion(7, 2, 250))
        and info.fingerprint_key == "k1"
        and info.has_any
    )
