"""Driver behaviour: budgets, early stop, warm start, duplicate plans, changed spaces."""

from __future__ import annotations

import json

import pytest
from optuna.trial import TrialState

from autocompress import search
from autocompress.config import ExperimentConfig
from autocompress.errors import StorageError
from autocompress.study import open_study, optimize
from autocompress.study._executors import LocalExecutor, Outcome
from autocompress.study._samplers import resumed_seed
from autocompress.study._setup import setup_from_experiment
from tests.conftest import tiny_experiment


def _shared_space(tmp_path, bits: str, prune: str):
    space = tmp_path / "shared.yaml"
    space.write_text(
        f"version: 1\nlayers:\n  - match: '.*'\n    share: rule\n    bits: {bits}\n"
        f"    prune: {prune}\ndistill: null\n"
    )
    return str(space)


def test_hopeless_trials_stop_early_and_are_replaced(tmp_path) -> None:
    # pruning 90% of every layer of the width-8 net leaves it guessing: hopeless after BN recal
    space = _shared_space(tmp_path, "[8, none]", "[0.0, 0.9]")
    config = ExperimentConfig.from_dict(
        tiny_experiment(
            tmp_path,
            space=space,
            search={
                "n_trials": 4,
                "max_accuracy_drop": 5.0,
                "hopeless_margin": 0.0,
                "sampler": "random",
                "baselines": ["fp32"],
                "seed": 1,
            },
        )
    )
    result = search(config, progress=False)
    states = [t.state for t in result.study.trials]
    assert states.count(TrialState.COMPLETE) == 4
    pruned = [t for t in result.study.trials if t.state == TrialState.PRUNED]
    assert pruned and all("early-stop floor" in t.user_attrs["failure"] for t in pruned)
    ratios = [
        {lp["prune_ratio"] for lp in t.user_attrs["plan"]["layers"].values()} for t in pruned
    ]
    assert all(0.9 in r for r in ratios), ratios
    assert all(t.user_attrs["early_accuracy"] < 0.5 for t in pruned)
    for m in result.front.members:  # the front holds feasible trials only
        assert m.result.accuracy >= result.front.reference["val_accuracy"] - 0.05


def test_an_unreachable_floor_stops_the_search_with_the_front_kept(tmp_path, monkeypatch) -> None:
    from autocompress.study import _driver

    monkeypatch.setattr(_driver, "MAX_HOPELESS_STREAK", 3)
    space = _shared_space(tmp_path, "[8]", "[0.9]")
    config = ExperimentConfig.from_dict(
        tiny_experiment(
            tmp_path,
            space=space,
            search={
                "n_trials": 4,
                "max_accuracy_drop": 1.0,
                "hopeless_margin": 0.0,
                "baselines": [],
            },
        )
    )
    with pytest.raises(Exception, match="3 trials in a row fell below the early-stop floor"):
        search(config, progress=False)
    assert (tmp_path / "run" / "front.json").exists()
    study = open_study(setup_from_experiment(config))
    assert [t.state for t in study.trials].count(TrialState.PRUNED) == 3


def test_sensitivity_warm_start_enqueues_guided_plans(tmp_path) -> None:
    config = ExperimentConfig.from_dict(
        tiny_experiment(tmp_path, search={"n_trials": 6, "warm_start": ["sensitivity"]})
    )
    result = search(config, progress=False)
    sensitivity = result.study.user_attrs["sensitivity"]
    assert set(sensitivity) >= {"bits.layer1.0.conv1", "bits.fc"}
    warm = [t for t in result.study.trials if t.user_attrs.get("warm_start")]
    assert len(warm) == 1 and warm[0].user_attrs["warm_start"] == "sensitivity"
    assert warm[0].state == TrialState.COMPLETE


def test_uniform_warm_start_runs_the_uniform_plans_first_within_a_quarter_of_the_budget(
    tmp_path,
) -> None:
    # (10 trials - 2 baselines) // 4 = 2 warm starts: the first two distinct ladder plans
    config = ExperimentConfig.from_dict(tiny_experiment(tmp_path, search={"n_trials": 10}))
    setup = setup_from_experiment(config)
    study = open_study(setup)
    waiting = [t for t in study.trials if t.state == TrialState.WAITING]
    kinds = [t.user_attrs.get("baseline") or t.user_attrs.get("warm_start") for t in waiting]
    assert kinds == ["fp32", "int8", "uniform", "uniform"] + [None] * 6
    study = optimize(study, setup, LocalExecutor())
    warm = [t for t in study.trials if t.user_attrs.get("warm_start")]
    assert all(t.state == TrialState.COMPLETE for t in warm)
    layers = [
        {
            n: (p["weight_bits"], p["prune_ratio"])
            for n, p in t.user_attrs["plan"]["layers"].items()
        }
        for t in warm
    ]
    # tiny space: layers 1-3 allow 2/4/8 bits and 0/50% pruned; stem and head 8 or fp32, unpruned.
    # (8 bits, 25%) is int8 there (no ratio in (0, 25%]): a baseline, skipped; (4, 25%) is
    # (4, unpruned); the ladder's own (4, unpruned) repeats it, skipped; then (8, 50%).
    # 8 is 7 where this CPU's int8 saturates (runtimes.widest_exact_bits)
    body, wide = [n for n in layers[0] if n.startswith("layer")], setup.space.widest_bits
    assert {layers[0][n] for n in body} == {(4, 0.0)}
    assert {layers[1][n] for n in body} == {(wide, 0.5)}
    assert layers[0]["stem.0"] == layers[0]["fc"] == layers[1]["fc"] == (wide, 0.0)


def test_a_users_plan_file_is_measured_first_and_beside_the_uniform_ladder(tmp_path) -> None:
    """``search.warm_start: [uniform, mine.json]``: the file's plan comes first, outside the
    ladder's quarter of the budget, and runs exactly as written."""
    from autocompress.plan import CompressionPlan, LayerPlan

    probe = setup_from_experiment(ExperimentConfig.from_dict(tiny_experiment(tmp_path)))
    layers = {
        s.layer: LayerPlan(2 if s.layer.startswith("layer") else 8, 0.5 if s.prune_param else 0)
        for s in probe.space.slots
    }
    (tmp_path / "mine.json").write_text(json.dumps(CompressionPlan(layers).to_dict()))
    search = {"n_trials": 10, "warm_start": ["uniform", str(tmp_path / "mine.json")]}
    config = ExperimentConfig.from_dict(tiny_experiment(tmp_path, search=search))
    setup = setup_from_experiment(config)
    study = open_study(setup)
    waiting = [t for t in study.trials if t.state == TrialState.WAITING]
    kinds = [t.user_attrs.get("baseline") or t.user_attrs.get("warm_start") for t in waiting]
    assert kinds == ["fp32", "int8", "plan", "uniform", "uniform"] + [None] * 5
    trials = [study.ask() for _ in range(3)]  # waiting trials run in order: the third is ours
    assert trials[2].number == waiting[2].number
    assert setup.space.sample(trials[2]).layers == layers


@pytest.mark.parametrize("saturates", [False, True])
def test_plain_baseline_is_fine_tuned_the_plain_way_at_the_search_budget(
    tmp_path, monkeypatch, saturates: bool
) -> None:
    """...and on a CPU whose int8 saturates its "int8" is 7-bit, stored, trained and shipped."""
    monkeypatch.setattr("autocompress.runtimes.int8_saturates", lambda: saturates)
    search = {"n_trials": 2, "warm_start": [], "baselines": ["fp32", "plain-prune50"]}
    config = ExperimentConfig.from_dict(tiny_experiment(tmp_path, search=search))
    setup = setup_from_experiment(config)
    study = optimize(open_study(setup), setup, LocalExecutor())
    plain = next(t for t in study.trials if t.user_attrs.get("baseline") == "plain-prune50")
    assert plain.state == TrialState.COMPLETE
    plan, bits = plain.user_attrs["plan"], 7 if saturates else 8
    assert {p["weight_bits"] for p in plan["layers"].values()} == {bits}
    layers = plain.user_attrs["result"]["layers"].values()
    assert {r["bits"] for r in layers if r["bits"] is not None} == {bits}
    assert {p["prune_ratio"] for n, p in plan["layers"].items() if n.startswith("layer")} == {0.5}
    assert plan["distill"]["alpha"] == 0.0 and plan["distill"]["qat_fraction"] == 0.0
    assert plain.user_attrs["result"]["finetune_steps"] == setup.task.finetune.steps


def test_warm_start_can_be_turned_off(tmp_path) -> None:
    config = ExperimentConfig.from_dict(
        tiny_experiment(tmp_path, search={"n_trials": 10, "warm_start": []})
    )
    study = open_study(setup_from_experiment(config))
    assert not any(t.user_attrs.get("warm_start") for t in study.trials)


def test_duplicate_plans_reuse_measurements(tmp_path) -> None:
    space = tmp_path / "one.yaml"
    space.write_text(
        "version: 1\nlayers:\n  - match: '.*'\n    share: rule\n    bits: [8, none]\n"
        "distill: null\n"
    )
    config = ExperimentConfig.from_dict(
        tiny_experiment(tmp_path, space=str(space), search={"n_trials": 5})
    )
    calls = []

    def work(plan, task, number, objects=None):
        from autocompress.study._executors import execute

        calls.append(number)
        return execute(plan, task, number, objects)

    setup = setup_from_experiment(config)
    study = optimize(open_study(setup), setup, LocalExecutor(work=work))
    completed = [t for t in study.trials if t.state == TrialState.COMPLETE]
    plans = {json.dumps(t.user_attrs["plan"], sort_keys=True) for t in completed}
    assert len(completed) == 5 and len(calls) == len(plans) < 5  # each distinct plan ran once
    copies = [t for t in completed if "duplicate_of" in t.user_attrs]
    for t in copies:
        earlier = study.trials[t.user_attrs["duplicate_of"]]
        assert earlier.user_attrs["plan"] == t.user_attrs["plan"] and earlier.values == t.values


def test_failures_in_a_row_stop_the_search_but_keep_the_study(tmp_path) -> None:
    config = ExperimentConfig.from_dict(tiny_experiment(tmp_path))
    setup = setup_from_experiment(config)
    study = open_study(setup)

    def broken(plan, task, number, objects=None):
        return Outcome(number, "failed", reason="disk on fire")

    with pytest.raises(Exception, match="trials in a row failed; last reason: disk on fire"):
        optimize(study, setup, LocalExecutor(work=broken))
    assert all(
        t.user_attrs.get("failure") == "disk on fire"
        for t in study.trials
        if t.state == TrialState.FAIL
    )


def test_resuming_with_a_changed_space_is_refused(tmp_path) -> None:
    search(ExperimentConfig.from_dict(tiny_experiment(tmp_path)), progress=False)
    other = tmp_path / "other.yaml"
    other.write_text("version: 1\nlayers:\n  - match: '.*'\n    bits: [4, 8, none]\n")
    changed = ExperimentConfig.from_dict(tiny_experiment(tmp_path, space=str(other)))
    with pytest.raises(StorageError, match=r"different search space.*fork with a new name"):
        search(changed, progress=False)


def test_a_resumed_seeded_sampler_does_not_replay_its_first_draws(tmp_path) -> None:
    # a seeded sampler restarted with its first seed asks for the plans it already measured
    config = ExperimentConfig.from_dict(
        tiny_experiment(tmp_path, search={"sampler": "random", "seed": 3, "baselines": []})
    )
    setup = setup_from_experiment(config)
    first = open_study(setup)
    drawn = []
    for _ in range(3):
        trial = first.ask()
        drawn.append(trial.suggest_int("x", 0, 10**9))
        first.tell(trial, [0.5] * len(first.directions))
    resumed = open_study(setup)
    again = resumed.ask().suggest_int("x", 0, 10**9)
    assert again not in drawn
    assert resumed_seed(3, 4) == resumed_seed(3, 4) != resumed_seed(3, 5)  # reproducible
    assert resumed_seed(3, 0) == 3 and resumed_seed(None, 4) is None  # new studies: as given


def test_rung0_gptq_false_makes_a_ladders_rung_0_trials_screen_with_nearest_rounding(
    tmp_path,
) -> None:
    """The setting reaches the workers only where a ladder has a rung below its top."""

    def task(**search):
        config = ExperimentConfig.from_dict(tiny_experiment(tmp_path, search=search))
        return setup_from_experiment(config).task

    assert task(rungs=[0, 4], rung0_gptq=False).screen_nearest
    assert not task(rungs=[0, 4]).screen_nearest  # the default: GPTQ at rung 0 too
    assert not task(rung0_gptq=False).screen_nearest  # no ladder: every trial is final
