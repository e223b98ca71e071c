"""The over-seeds table is computed from the sittings' files: check it on made-up sittings."""

from __future__ import annotations

import json

import pytest

import seeds  # benchmarks/seeds.py (tests/benchmarks/conftest.py)


def _search(seed, hv, *, rungs=None, cpu=1200.0, refine_cpu=600.0, sampled=None, dominated=()):
    return {
        "arm": f"tpe-{'mf' if rungs else 'n40'}-s{seed}",
        "sampler": "tpe",
        "seed": seed,
        "rungs": rungs,
        "cpu_s": cpu,
        "refine_cpu_s": refine_cpu,
        "hypervolume_verified": hv,
        "plans_per_rung": [40, 10, 4] if rungs else None,
        "rank_fidelity": [{"steps": [0, 60], "plans": 10, "tau": 0.8}] if rungs else [],
        "mf_sampled": sampled,
        "dominated_by_baseline": list(dominated),
    }


def _sitting(tmp_path, seed, default_hv, mf_hv, **mf):
    path = tmp_path / f"s{seed}.json"
    data = {
        "meta": {"default_sampler": "tpe", "device": "Intel Xeon, onnxruntime 1.32.0, batch 1"},
        "searches": [
            _search(seed, default_hv),
            _search(seed, mf_hv, rungs=[0, 60, 1000], cpu=1790.0, refine_cpu=0.0, **mf),
        ],
    }
    path.write_text(json.dumps(data))
    return path


def test_gain_is_taken_inside_each_sitting_and_the_median_is_over_seeds(tmp_path):
    paths = [
        _sitting(tmp_path, 0, 0.66, 0.70),  # +0.04
        _sitting(tmp_path, 1, 0.60, 0.61),  # +0.01
        _sitting(tmp_path, 2, 0.70, 0.75),  # +0.05
    ]
    rows = [r for p in paths for r in seeds.rows_of(p)]
    assert [round(r.gain, 3) for r in rows] == [0.04, 0.01, 0.05]
    assert rows[0].device == "Intel Xeon"
    assert rows[0].default_cpu_min == pytest.approx(30.0)
    assert rows[0].plans_ratio == pytest.approx(10.0)
    text = seeds.markdown(rows)
    assert "verified hypervolume gain **+0.040** (target >= +0.03: **met**)" in text
    assert "rung-0 plans per fully trained 10.00 (target >= 5: **met**)" in text
    assert "no more, within 1%, on 3 of 3 seeds, and less on 3" in text
    assert "on 0 of 3 seeds (**missed** on every seed)" in text
    assert "the median of 3" not in text


def test_the_bar_counts_only_seeds_whose_sampled_plan_passes_both_ratios(tmp_path):
    fast = {"speedup_vs_int8": 2.6, "smaller_vs_int8": 9.0}
    slow = {"speedup_vs_int8": 2.6, "smaller_vs_int8": 7.9}
    rows = [
        *seeds.rows_of(_sitting(tmp_path, 0, 0.6, 0.6, sampled=fast)),
        *seeds.rows_of(_sitting(tmp_path, 1, 0.6, 0.6, sampled=slow, dominated=[["int8", 3]])),
    ]
    assert [r.meets_bar for r in rows] == [True, False]
    text = seeds.markdown(rows)
    assert "on 1 of 2 seeds (**missed** on every seed)" in text
    assert "median over the 2 seed(s) that have one: 2.60x faster, 8.45x smaller" in text
    assert "Members a baseline dominates at the same budget: 1." in text
    assert "Only 2 seed(s): the issue asks for the median of 3." in text


def test_a_seed_given_twice_or_without_its_default_search_is_refused(tmp_path):
    one = _sitting(tmp_path, 0, 0.6, 0.7)
    with pytest.raises(SystemExit, match="seed appears twice"):
        seeds.markdown([*seeds.rows_of(one), *seeds.rows_of(one)])
    lone = tmp_path / "lone.json"
    data = json.loads(one.read_text())
    data["searches"] = data["searches"][1:]
    lone.write_text(json.dumps(data))
    with pytest.raises(SystemExit, match="no default search"):
        seeds.rows_of(lone)
    with pytest.raises(SystemExit, match="no such benchmark JSON"):
        seeds.main([str(tmp_path / "missing.json")])


def test_a_sitting_verified_several_times_gives_the_median_of_its_own_gains(tmp_path):
    path = _sitting(tmp_path, 0, 0.60, 0.70)
    data = json.loads(path.read_text())
    data["searches"][0]["hypervolume_verified_sittings"] = [0.60, 0.62, 0.61]
    data["searches"][1]["hypervolume_verified_sittings"] = [0.70, 0.64, 0.65]
    path.write_text(json.dumps(data))
    (row,) = seeds.rows_of(path)
    assert [round(g, 3) for g in row.sitting_gains] == [0.1, 0.02, 0.04]
    assert row.gain == pytest.approx(0.04)
    assert "| +0.040 (+0.020..+0.100 over 3 sittings) |" in seeds.markdown([row])
