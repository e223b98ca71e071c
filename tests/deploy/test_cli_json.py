"""``status --json`` and ``pick --json``: machine-readable output, the same figures as the text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autocompress.cli import main
from autocompress.front import front_row
from autocompress.record import read_trial
from tests.conftest import tiny_experiment


def test_status_json_has_counts_floor_and_front_rows(finished, capsys) -> None:
    result, journal = finished
    capsys.readouterr()
    assert main(["status", journal, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    front = result.front
    assert data["study"] == result.study.study_name
    assert data["trials"]["complete"] == len(front.completed)
    assert data["accuracy_floor"] == front.accuracy_floor
    assert [row["number"] for row in data["front"]] == [m.number for m in front.members]
    first = front_row(front.members[0], front)
    assert data["front"][0]["accuracy"] == first.accuracy
    assert data["front"][0]["size_bytes"] == first.size_bytes
    assert data["fp32_latency_ms"] > 0 and data["hypervolume"] == result.front.hypervolume()
    durations = [
        (t.datetime_complete - t.datetime_start).total_seconds()
        for t in result.study.get_trials(deepcopy=False)
        if t.datetime_complete is not None and t.datetime_start is not None
    ]
    assert data["trial_minutes"] == pytest.approx(sum(durations) / 60)  # what the budget counts
    assert data["trial_minutes"] > 0
    steps = tiny_experiment(Path("."))["finetune"]["steps"]
    tuned = [  # completed trials that fine-tuned (not post-training, not a copied duplicate)
        r
        for r in map(read_trial, result.study.get_trials(deepcopy=False))
        if r.result and r.plan and r.plan.distill is not None and r.duplicate_of is None
    ]
    assert tuned and data["finetune_steps"] == len(tuned) * steps
    clocks = {c["steps"]: c for c in data["trial_clocks"]}  # where the trials' time went
    assert clocks[steps]["trials"] == len(tuned) and "finetune" in clocks[steps]["stages_s"]
    assert 0 < clocks[steps]["stages_s"]["finetune"] < clocks[steps]["wall_s"]
    unsettled = sum(
        not r.result.latency.stable for r in map(read_trial, result.study.trials) if r.result
    )
    assert data["timing"]["unsettled"] == unsettled  # the re-time is off in tests (FAST_MEASURE)
    assert data["timing"]["retimed"] == 0 and data["timing"]["completed"] == counted_results(
        result
    )


def test_pick_json_has_the_row_plan_and_an_existing_artifact(finished, capsys) -> None:
    result, journal = finished
    knee = result.front.knee.number
    capsys.readouterr()
    assert main(["pick", journal, "--trial", str(knee), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["number"] == knee and data["on_front"] is True
    assert data["plan_dict"] == result.front.knee.plan.to_dict()
    artifact = Path(data["artifact"])
    assert artifact.is_absolute() and artifact.is_file()
    assert artifact.name in ("model.onnx", "model.pt2")


def test_status_tells_queued_promotions_from_plans_not_sampled(finished, tmp_path, capsys) -> None:
    """A time budget can end a search with both waiting: status counts them apart."""
    import shutil

    import optuna

    from autocompress.record import Rung, attrs

    result, journal = finished
    copy = tmp_path / "study.journal"
    shutil.copy(journal, copy)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(copy)))
    study = optuna.load_study(study_name=result.study.study_name, storage=storage)
    parent = next(t for t in study.trials if t.params)
    study.enqueue_trial(
        dict(parent.params), user_attrs=attrs.slot_attrs(rung=Rung(1, 1000, parent.number))
    )
    study.enqueue_trial(dict(parent.params), user_attrs=attrs.slot_attrs())  # a plan's slot
    capsys.readouterr()
    assert main(["status", str(copy)]) == 0
    assert "2 waiting (1 plan(s) to sample, 1 promotion(s))" in capsys.readouterr().out
    assert main(["status", str(copy), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["trials"]["waiting"] == 2 and data["waiting_promotions"] == 1


def counted_results(result) -> int:
    return sum(read_trial(t).result is not None for t in result.study.trials)
