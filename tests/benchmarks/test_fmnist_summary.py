"""The benchmark's verdicts are computed from its figures: check them on made-up figures."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

import _fmnist_arms as arm_runs
import _fmnist_figures as figures
import _fmnist_report as report
import _fmnist_verdicts as verdicts
import fmnist as bench  # benchmarks/fmnist.py and its modules (tests/benchmarks/conftest.py)

INT8 = {"latency_ms": 0.6, "size_bytes": 300_000}


def _point(trial, acc, ms, size, refines=None):
    return {
        "trial": trial,
        "test_accuracy": acc,
        "latency_ms": ms,
        "size_bytes": size,
        "refines": refines,
    }


def _search(sampler, seed, hv, aim=None, wall=1200.0, dominated=()):
    close = verdicts.versus_int8(INT8, _point(7, 0.904, 0.5, 200_000))
    return {
        "arm": f"{sampler}-n40-s{seed}",
        "sampler": sampler,
        "seed": seed,
        "n_trials": 40,
        "hypervolume": hv,
        "wall_s": wall,
        "refine_s": 600.0,
        "meets_aim": None if aim is None else verdicts.versus_int8(INT8, aim),
        "within_0.5pt": close,
        "smallest_within_0.5pt": close,
        "dominated_by_baseline": list(dominated),
    }


def test_aim_needs_both_speed_and_size():
    assert verdicts.meets_aim(INT8, _point(1, 0.9, 0.39, 100_000))
    assert not verdicts.meets_aim(INT8, _point(1, 0.9, 0.41, 100_000))  # 1.46x faster
    assert not verdicts.meets_aim(INT8, _point(1, 0.9, 0.3, 100_001))  # 2.99x smaller


def test_targets_are_judged_from_the_figures():
    summary = {
        "searches": [
            _search("tpe", 0, 0.50, aim=_point(42, 0.905, 0.35, 90_000, refines=3)),
            _search("random", 0, 0.45),
            _search("tpe", 1, 0.40, wall=50 * 60.0, dominated=[("int8", 9)]),
            _search("random", 1, 0.48),
        ],
        "median_hypervolume": {"tpe": 0.45, "random": 0.465},
        "median_hypervolume_at_n": {"tpe": 0.45, "random": 0.41},
        "n": 40,
    }
    text = "\n".join(report.targets(summary, {"default_sampler": "tpe"}))
    bar = ">= 1.5x faster and >= 3.0x smaller than int8 within 0.5 pt"
    met = "**met** by trial 42, refines 3 (90.50% test, 1.71x faster, 3.33x smaller)"
    assert f"tpe-n40-s0: {bar}: {met}" in text
    assert f"tpe-n40-s1: {bar}: **missed**; fastest in the band trial 7" in text
    hv = (
        "0.4500 vs 0.4650 (per seed tpe/random: s0 0.5000/0.4500, s1 0.4000/0.4800; "
        "at the same 40 trials: 0.4500 vs 0.4100)"
    )
    assert f"**missed**, {hv}" in text
    assert "40-trial search within 45 min: **missed** (20.0, 50.0 min" in text
    assert "same fine-tuning budget: **missed** on tpe-n40-s1" in text


def test_a_reused_study_without_recorded_cost_reports_its_span_and_no_cpu(tmp_path):

    study, _ = _study_with(
        [(0, 40, {}), (30, 95, {}), (100, 900, {"refine": {"of": 1, "steps": 1000}})]
    )
    arm = figures.Arm("baselines", "random", 0, 3, reused=True)
    arm.result = SimpleNamespace(study=study)
    path = tmp_path / "timings.json"
    previous = {"baselines": [0.0, 0.0, 550.0]}  # a sitting that died before writing its cost
    arm_runs.record_cost(path, arm, previous)
    assert previous["baselines"] == [95.0, None, 0.0, 0.0]  # refinements: not the search's wall
    previous = {"baselines": [70.0, 130.0, 0.0]}
    arm_runs.record_cost(path, arm, previous)
    assert previous["baselines"][:2] == [70.0, 130.0]  # a recorded cost is kept


def _arm_of(completed):
    """An arm whose front holds ``completed`` (fp32: 1000 bytes, 90% val) on machine "k"."""

    front = SimpleNamespace(
        completed=completed,
        fingerprint_key="k",
        objectives=["accuracy", "latency", "size"],
        reference={"size_bytes": 1000, "val_accuracy": 0.9},
    )
    return SimpleNamespace(result=SimpleNamespace(front=front))


def test_hypervolume_at_k_counts_the_first_k_own_trials_infeasible_included():

    def member(number, acc, ratio, feasible=True, refines=None):
        result = SimpleNamespace(accuracy=acc, latency_ratio=ratio, size_bytes=500)
        return SimpleNamespace(
            number=number, result=result, feasible=feasible, parent=refines, fingerprint_key="k"
        )

    completed = [
        member(0, 0.9, 0.5),
        member(1, 0.1, 0.1, feasible=False),  # counts against the budget, adds nothing
        member(2, 0.95, 0.2),
        member(3, 0.99, 0.1, refines=2),  # refinements are not the search's trials
    ]
    arm = _arm_of(completed)
    assert figures.hypervolume_at(arm, 2) == pytest.approx(0.9 * (1 - 0.5) * 0.5)  # size: half
    assert figures.hypervolume_at(arm, 3) == pytest.approx(0.95 * 0.8 * 0.5)  # 2 dominates 0
    assert figures.hypervolume_at(arm, 10) == figures.hypervolume_at(arm, 3)


def test_warm_start_hypervolume_counts_baselines_and_warm_starts_alone():

    def member(number, acc, ratio, baseline=None, warm_start=None, feasible=True, key="k"):
        result = SimpleNamespace(accuracy=acc, latency_ratio=ratio, size_bytes=500)
        return SimpleNamespace(
            number=number, result=result, feasible=feasible, baseline=baseline,
            warm_start=warm_start, parent=None, fingerprint_key=key,
        )  # fmt: skip

    completed = [
        member(0, 0.9, 1.0, baseline="fp32"),
        member(1, 0.9, 0.5, baseline="int8"),
        member(2, 0.9, 0.3, warm_start="uniform"),
        member(3, 0.5, 0.1, warm_start="uniform", feasible=False),  # under the floor: nothing
        member(4, 0.9, 0.2, warm_start="uniform", key="other"),  # another machine: nothing
        member(5, 0.95, 0.1),  # the sampler's own find: not counted
    ]
    arm = _arm_of(completed)
    assert figures.warm_start_hypervolume(arm) == pytest.approx(0.9 * (1 - 0.3) * 0.5)


def test_render_rewrites_the_markdown_from_the_json_alone(tmp_path, monkeypatch):
    import json

    int8 = {**_point(1, 0.908, 0.6, 300_000), "val_accuracy": 0.91, "plan": "bits 8x10"}
    fp32 = {**_point(0, 0.908, 1.6, 1_200_000), "val_accuracy": 0.91, "plan": "bits fp32x10"}
    search = _search("tpe", 0, 0.5, aim=_point(42, 0.905, 0.35, 90_000, refines=3))
    search["within_0.5pt"] = {**search["meets_aim"], "val_accuracy": 0.91, "plan": "bits 4x9 | p"}
    search.update(
        front_size=3, trial_wall_median_s=40.0, cpu_s=None, refined=[42],
        hypervolume_at_n=0.5, hypervolume_warm_starts=0.45, dominated_across_budgets=[],
    )  # fmt: skip
    data = {
        "meta": {"experiment": "x.yaml", "batch": 1, "command": "c", "device": "d", "date": "t",
                 "default_sampler": "tpe"},
        "baselines": {"fp32": fp32, "int8": int8},
        "searches": [search],
        "median_hypervolume": {"tpe": 0.5},
        "n": 40,
    }  # fmt: skip
    path = tmp_path / "fmnist-b1.json"
    path.write_text(json.dumps(data))
    monkeypatch.setattr(report, "plot", lambda summary, stem: stem.with_suffix(".png"))
    report.render(path)
    text = (tmp_path / "fmnist-b1.md").read_text()
    assert "| bits 4x9 \\| p |" in text  # a plan's '|' does not split the table's cell
    assert "| 0.5000 | 0.5000 | 0.4500 | 3 |" in text  # search, first n, warm starts alone
    assert "**met** by trial 42, refines 3" in text and "![Pareto fronts](fmnist-b1.png)" in text


def test_timing_noise_between_a_member_and_a_baseline_with_the_same_plan_is_a_tie():
    baseline = _point(3, 0.9031, 0.1023, 79_840)
    same_plan = _point(41, 0.9031, 0.1026, 79_840)  # 0.3% slower: the other timing of the model
    assert not verdicts.dominates(baseline, same_plan) and not verdicts.dominates(
        same_plan, baseline
    )
    slower = _point(41, 0.9031, 0.1023 * 1.05, 79_840)  # 5% slower: measured, not noise
    assert verdicts.dominates(baseline, slower)
    bigger = _point(41, 0.9031, 0.1026, 79_841)  # one byte more, latency tied
    assert verdicts.dominates(baseline, bigger)
    assert not verdicts.dominates(_point(3, 0.9030, 0.09, 70_000), same_plan)  # less accurate


def test_dominance_uses_the_ratios_timed_beside_fp32_when_both_points_have_them():
    # milliseconds from two turns minutes apart say the baseline is 10% faster; the ratios
    # timed beside fp32 in the same rounds say they tie: the ratios decide
    baseline = {**_point(3, 0.9031, 0.100, 79_840), "latency_ratio": 0.300}
    member = {**_point(41, 0.9031, 0.110, 79_840), "latency_ratio": 0.301}
    assert not verdicts.dominates(baseline, member) and not verdicts.dominates(member, baseline)
    member["latency_ratio"] = 0.330  # 10% slower beside fp32 too: measured, not noise
    assert verdicts.dominates(baseline, member)
    old = _point(41, 0.9031, 0.110, 79_840)  # an older sitting: no ratio, so milliseconds
    assert verdicts.dominates(baseline, old)


def _study_with(spans):
    """A study with COMPLETE trials at (start s, end s, user attrs) after 2026-01-01 12:00."""
    import datetime as dt

    import optuna
    from optuna.distributions import IntDistribution
    from optuna.trial import FrozenTrial, TrialState

    study = optuna.create_study()
    t0 = dt.datetime(2026, 1, 1, 12, 0, 0)
    for i, (start, end, attrs) in enumerate(spans):
        study.add_trial(
            FrozenTrial(
                number=i, trial_id=i, state=TrialState.COMPLETE, value=1.0, values=None,
                datetime_start=t0 + dt.timedelta(seconds=start),
                datetime_complete=t0 + dt.timedelta(seconds=end),
                params={"x": 1}, distributions={"x": IntDistribution(0, 2)},
                user_attrs=attrs, system_attrs={}, intermediate_values={},
            )
        )  # fmt: skip
    return study, t0


def test_a_study_whose_only_new_trial_is_a_refinement_counts_as_reused():
    import datetime as dt

    study, t0 = _study_with(
        [(0, 40, {}), (30, 95, {}), (5000, 5400, {"refine": {"of": 1, "steps": 1000}})]
    )
    arm = SimpleNamespace(result=SimpleNamespace(study=study), multi_fidelity=False)
    resumed = t0 + dt.timedelta(seconds=4990)  # a later sitting re-ran the refinement alone
    assert not arm_runs.ran_trials_since(arm, resumed)
    assert arm_runs.ran_trials_since(arm, resumed, refinements=True)  # its time is refinement's
    assert arm_runs.ran_trials_since(arm, t0 + dt.timedelta(seconds=50))  # trial 1 ran then


def test_a_resumed_study_costs_its_earlier_sittings_plus_this_one(monkeypatch):
    """A capped multi-fidelity study resumed under a larger cap ran 2 trials now: its cost is
    the earlier sitting's plus these (it read 0.9 CPU min, this sitting's alone, on Dec 7)."""
    import datetime as dt

    from optuna.distributions import IntDistribution
    from optuna.trial import FrozenTrial, TrialState

    def search_adding_one(study):
        def run(*_a, **_k):
            now = dt.datetime.now()
            study.add_trial(
                FrozenTrial(
                    number=9, trial_id=9, state=TrialState.COMPLETE, value=1.0, values=None,
                    datetime_start=now, datetime_complete=now, params={"x": 1},
                    distributions={"x": IntDistribution(0, 2)}, user_attrs={},
                    system_attrs={}, intermediate_values={},
                )
            )  # fmt: skip
            return SimpleNamespace(study=study)

        return run

    sitting = arm_runs.Sitting("x.yaml", 1, ())
    for before, cost in (([(0, 40, {}), (30, 95, {})], (1687.0, 3233.0)), ([], (0.0, 0.0))):
        study, _ = _study_with(before)
        monkeypatch.setattr(arm_runs, "_cpu_s", iter([100.0, 154.0]).__next__)
        monkeypatch.setattr(arm_runs, "search", search_adding_one(study))
        arm = figures.Arm("tpe-mf-s0", "tpe", 0, 80, rungs=(0, 60, 1000))
        arm_runs.run_arm(arm, sitting, ("fp32",), (1687.0, 3233.0))
        assert not arm.reused
        assert arm.cpu_s == cost[1] + 54.0  # a fresh study ignores what an old file says
        assert cost[0] <= arm.wall_s < cost[0] + 5.0


def test_the_anytime_cut_counts_busy_time_not_the_gap_between_sittings():
    import datetime as dt

    t0 = dt.datetime(2026, 1, 1, 12, 0, 0)

    def at(s):
        return t0 + dt.timedelta(seconds=s)

    # sitting 1: two overlapping trials, busy 0-150 s; sitting 2, hours later: 50 s more
    spans = [(at(0), at(100)), (at(50), at(150)), (at(10_000), at(10_050))]
    assert figures.busy_cutoff(spans, 0.5) == at(100)  # half of 200 busy seconds
    assert figures.busy_cutoff(spans, 0.9) == at(10_030)  # 150 s, then 30 s into sitting 2
    assert figures.busy_cutoff(spans, 1.0) == at(10_050)


def test_the_aim_line_tells_a_warm_start_from_a_plan_the_sampler_chose():
    warm = {**_point(40, 0.904, 0.25, 41_000, refines=6), "origin": "warm start"}
    found = {**_point(42, 0.908, 0.33, 62_000, refines=28), "origin": "sampler"}
    s = _search("tpe", 2, 0.65, aim=warm)
    s["meets_aim_sampled"] = verdicts.versus_int8(INT8, found)
    line = report._aim_line(s)
    assert "**met** by trial 40, refines 6, a warm start (90.40% test, 2.40x faster" in line
    assert "among plans the sampler chose: trial 42, refines 28 (90.80% test, 1.82x" in line
    s["meets_aim_sampled"] = None
    assert "no plan the sampler chose meets it (only warm starts)" in report._aim_line(s)


def test_multi_fidelity_verdicts_come_from_the_figures():
    """#21's criteria for a multi-fidelity arm beside its seed's default search + refinement."""
    default = {
        **_search("tpe", 0, 0.6),
        "cpu_s": 1000.0,
        "refine_cpu_s": 800.0,
        "hypervolume_refined": 0.63,
        "hypervolume_verified": 0.62,
    }
    sampled = verdicts.versus_int8(INT8, _point(9, 0.91, 0.2, 30_000, refines=5))
    mf = {
        **_search("tpe", 0, 0.6),
        "arm": "tpe-mf-s0",
        "rungs": [0, 60, 1000],
        "cpu_s": 1700.0,
        "refine_cpu_s": 0.0,
        "hypervolume_refined": 0.70,
        "hypervolume_verified": 0.66,
        "plans_per_rung": [50, 12, 4],
        "rank_fidelity": [{"steps": [0, 60], "plans": 12, "tau": 0.8}],
        "mf_sampled": sampled,
        "finetune_steps": 4720,
        "steps_continuation_saves": 240,
    }
    text = "\n".join(
        report.multi_fidelity({"searches": [default, mf]}, {"default_sampler": "tpe"})
    )
    assert ">= 8x smaller than int8: **met** (trial 9, refines 5 (91.00% test, 3.00x" in text
    assert (
        "verified hypervolume +0.0400 against tpe-n40-s0 + refinement (target >= +0.03: **met**)"
        in text
    )
    assert "at 28.3 vs 30.0 CPU min (**no more** CPU)" in text
    assert "50 plans at rung 0, 4 fully trained: 12.50x (target >= 5x" in text
    assert "would have saved 240 (5.1%)" in text
    none_trained = {**mf, "plans_per_rung": [50, 3, 0], "cpu_s": 2000.0}
    text = "\n".join(
        report.multi_fidelity({"searches": [default, none_trained]}, {"default_sampler": "tpe"})
    )
    assert (
        "0 fully trained: n/ax (target >= 5x with at least one fully trained: **missed**)" in text
    )
    assert "(**more** CPU)" in text


def test_the_multi_fidelity_time_cap_is_the_default_arms_trial_minutes() -> None:
    """mf_minutes=default: the seed's default search + refinement, as the budget counts it
    (refined members present: nothing is refined again); a number is taken as given."""

    from optuna.trial import TrialState

    from tests.study.test_budget import _trial

    trials = [_trial(i, TrialState.COMPLETE, 30 * i, 30 * i + 24) for i in range(5)]  # 2 min
    refined = [SimpleNamespace(parent=1)] * 3
    result = SimpleNamespace(
        study=SimpleNamespace(get_trials=lambda deepcopy=False: trials),
        front=SimpleNamespace(completed=refined),
    )
    baselines = figures.Arm("baselines", "tpe", 0, 5, result=result)  # seed 0 too: not it
    base = figures.Arm("tpe-n40-s0", "tpe", 0, 40, result=result)
    other = figures.Arm("tpe-n40-s1", "tpe", 1, 40)
    mf = figures.Arm("tpe-mf-s0", "tpe", 0, 60, rungs=(0, 60, 1000))
    trials_b = [_trial(i, TrialState.COMPLETE, 0, 6) for i in range(5)]
    baselines.result = SimpleNamespace(
        study=SimpleNamespace(get_trials=lambda deepcopy=False: trials_b),
        front=SimpleNamespace(completed=[]),
    )
    assert arm_runs.time_cap(mf, [baselines, other, base, mf], "default", None, 3, 1000) == 2.0
    assert arm_runs.time_cap(mf, [base, mf], "12.5", None, 3, 1000) == 12.5
    with pytest.raises(SystemExit, match="must run first"):
        arm_runs.time_cap(
            mf, [other, figures.Arm("tpe-n40-s0", "tpe", 0, 40), mf], "default", None, 3, 1
        )


def test_a_refinement_rate_beside_a_multi_fidelity_arm_is_refused_before_anything_runs(
    monkeypatch,
) -> None:
    """The rungs train at the experiment's finetune.lr; refining the default search at another
    rate handicapped one arm of every multi-fidelity sitting published before Dec 7."""
    monkeypatch.setattr(bench, "run_arm", lambda *a, **k: pytest.fail("a study ran"))
    with pytest.raises(SystemExit, match="refine_lr with mf="):
        bench.main(["n=2", "seeds=0", "refine_lr=0.01", "mf=0,60", "random=0"])


def test_more_sittings_keep_each_sittings_hypervolume_and_the_first_sittings_figures(
    monkeypatch,
):
    """sittings=N: every search gets one verified hypervolume per sitting, the first first,
    and the members' verified rows (what the rest of the summary reports) stay the first's."""
    arms = [SimpleNamespace(verified={1: "first"}), SimpleNamespace(verified={2: "first"})]
    hvs = iter([0.61, 0.70, 0.63, 0.69])  # (default, mf) in each extra sitting

    def fake_verify(arms_, batches=()):
        for arm in arms_:
            arm.verified = {k: "again" for k in arm.verified}
        return 0.93

    def fake_summarise(arms_, reference_test):
        assert all(v == "again" for a in arms_ for v in a.verified.values())
        return {"searches": [{"arm": a, "hypervolume_verified": next(hvs)} for a in ("d", "m")]}

    monkeypatch.setattr(bench, "verify_all", fake_verify)
    monkeypatch.setattr(bench, "summarise", fake_summarise)
    summary = {
        "searches": [
            {"arm": "d", "hypervolume_verified": 0.62},
            {"arm": "m", "hypervolume_verified": 0.68},
        ]
    }
    bench.more_sittings(arms, summary, 2)
    assert [s["hypervolume_verified_sittings"] for s in summary["searches"]] == [
        [0.62, 0.61, 0.63],
        [0.68, 0.70, 0.69],
    ]
    assert [a.verified for a in arms] == [{1: "first"}, {2: "first"}]
    default, mf = summary["searches"]
    mf = {**mf, "arm": "tpe-mf-s0"}
    default = {**default, "arm": "tpe-n40-s0"}
    (line,) = report._sitting_gains(mf, default)
    assert "in each of 3 verification sittings: +0.0600, +0.0900, +0.0600" in line
    assert "(median +0.0600, spread 0.0300)" in line
    bench.more_sittings(arms, {"searches": []}, 0)  # one sitting: nothing re-timed
    assert report._sitting_gains({"hypervolume_verified_sittings": [0.7]}, default) == []


def test_verified_hypervolume_uses_the_ratio_timed_beside_fp32_not_milliseconds_apart():
    """fp32 re-timed slow in its own turn must not move every point: the interleaved ratio
    decides; a sitting stored before ratios were kept falls back to milliseconds."""
    fp32 = {"test_accuracy": 0.93, "latency_ms": 0.8, "size_bytes": 1000, "latency_ratio": 1.0}
    member = {"test_accuracy": 0.92, "latency_ms": 0.2, "size_bytes": 250, "latency_ratio": 0.5}
    by_ratio = verdicts.verified_hypervolume([fp32, member], fp32)
    assert by_ratio == pytest.approx(verdicts.verified_hypervolume([fp32, member], {**fp32}))
    # (1 - 0.08) x (1 - 0.5) x (1 - 0.25) plus fp32's slab, which adds nothing (latency 1)
    assert by_ratio == pytest.approx(0.92 * 0.5 * 0.75)
    old = [{k: v for k, v in p.items() if k != "latency_ratio"} for p in (fp32, member)]
    assert verdicts.verified_hypervolume(old, old[0]) == pytest.approx(0.92 * 0.75 * 0.75)
    no_reference = [fp32, {**member, "latency_ratio": float("nan")}]
    assert verdicts.verified_hypervolume(no_reference, fp32) == pytest.approx(0.92 * 0.75 * 0.75)


def test_speedups_are_ratios_of_the_ratios_timed_beside_fp32():
    int8 = {"latency_ms": 0.30, "latency_ratio": 0.40, "size_bytes": 300_000}
    member = {"latency_ms": 0.30, "latency_ratio": 0.16, "size_bytes": 30_000}
    assert verdicts.speedup_of(int8, member) == pytest.approx(2.5)  # not 1.0 from milliseconds
    assert verdicts.meets_aim(int8, member, 2.5, 10.0)
    assert verdicts.versus_int8(int8, member)["speedup_vs_int8"] == pytest.approx(2.5)
    slow = {**member, "latency_ms": 0.01, "latency_ratio": 0.2}
    assert verdicts.latency_key(member) < verdicts.latency_key(slow)
    old = {"latency_ms": 0.12, "size_bytes": 30_000}
    assert verdicts.speedup_of(int8, old) == pytest.approx(2.5)
    assert verdicts.latency_key(old) == pytest.approx(0.12)


def test_the_report_counts_points_retimed_for_a_disturbed_fp32() -> None:
    summary = {
        "baselines": {"fp32": {"retimes": 0, "disturbed": False}},
        "searches": [{"front": [{"retimes": 2, "disturbed": True}, {"retimes": 1}], "n": 3}],
    }
    assert report._retimed(summary).endswith(": 2 of 3 rows, 1 still off (marked disturbed).")
    assert report._retimed({"baselines": {"fp32": {}}, "searches": []}) == ""  # stored before
