"""Verb implementations the CLI (``cli.py``) dispatches to, kept here so ``cli.py`` stays the
parser and the dispatch. Each returns the exit code."""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from autocompress._api import SearchResult
    from autocompress.front import Front, Member


def validate(items: Sequence[str]) -> int:
    """``autocompress validate FILE... [key.sub=value...]``: check YAML files without running.

    Arguments with ``=`` are overrides applied to every experiment file, as ``search`` takes
    them; an experiment's target is checked against this machine (a CUDA target without a GPU
    is refused here, as ``search`` refuses it before writing anything), and a user's data
    directory (``data.dataset: folder | npy``) must exist.
    """
    from autocompress.config import SearchSpace, load_experiment, read_yaml
    from autocompress.runtimes import check_target_device

    overrides = [item for item in items if "=" in item]
    for path in (Path(item) for item in items if "=" not in item):
        data = read_yaml(path)
        if "layers" in data:
            SearchSpace.from_yaml(path)
            print(f"{path}: search space OK")
        else:
            config = load_experiment(path, overrides)
            SearchSpace.from_yaml(config.space_path)
            check_target_device(config.target)
            _check_data_root(config.data.dataset, config.data.root)
            print(f"{path}: experiment OK (space {config.space_path})")
    return 0


def _check_data_root(dataset: str, root: str | None) -> None:
    """A user's data directory exists (reading it is the search's job; this stays instant)."""
    from autocompress.errors import ConfigError

    if dataset in ("folder", "npy") and root and not Path(root).is_dir():
        raise ConfigError(f"data.root: {root!r} is not a directory; point it at your data")


def status(result: SearchResult, *, as_json: bool = False) -> int:
    """``autocompress status [--json]``: trials by state, what they spent and where their time
    went (per fine-tuning budget), the accuracy floor, the front."""
    from autocompress.front import format_front
    from autocompress.study import (
        budget_clocks,
        finetune_steps,
        timing_summary,
        trial_minutes,
        waiting,
    )

    trials = result.study.get_trials(deepcopy=False)
    clocks = budget_clocks(trials)
    counts = Counter(t.state.name.lower() for t in trials)
    minutes, steps = trial_minutes(trials), finetune_steps(trials)
    plans, promotions = waiting(trials)
    timing = timing_summary(result.study)
    if not as_json:
        states = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        if promotions:  # plans not sampled yet and promotions queued are two different things
            states += f" ({plans} plan(s) to sample, {promotions} promotion(s))"
        print(
            f"study {result.study.study_name!r}: {states}; {minutes:.1f} trial-minutes and "
            f"{steps:,} fine-tuning steps spent"
        )
        if result.front.rungs is not None:
            print(_rungs_line(result.front))
        for budget in clocks:  # what a trial costs and where its time goes, per budget
            print(f"trial time, {budget.describe()}")
        if timing.describe():
            print(timing.describe())
        print(format_front(result.front))
        return 0
    front = result.front
    _print_json(
        {
            "study": result.study.study_name,
            "trials": dict(sorted(counts.items())),
            "trial_minutes": minutes,  # every trial's duration, summed (search.max_trial_minutes)
            "finetune_steps": steps,  # steps the completed trials ran (cf. search.max_steps)
            "trial_clocks": [c.to_dict() for c in clocks],  # mean seconds per stage, per budget
            "timing": timing.to_dict(),  # trials timed unsettled, re-timed after, re-times kept
            "waiting_promotions": promotions,  # of trials["waiting"]; the rest: plans not sampled
            "accuracy_floor": front.accuracy_floor,  # fraction; null: none stored
            "fp32_latency_ms": _fp32_ms(front),
            "hypervolume": front.hypervolume() if front.members else None,
            "front": [_row(m, front) for m in front.members],
            "rungs": None if front.rungs is None else list(front.rungs),
            "rank_fidelity": [f.to_dict() for f in front.fidelity],
        }
    )
    return 0


def _rungs_line(front: Front) -> str:
    """The ladder and how well each rung ranked plans as the next one did."""
    taus = "; ".join(f.describe() for f in front.fidelity) or "no plan promoted yet"
    return f"rungs {list(front.rungs or ())} steps; rank fidelity (Kendall tau): {taus}"


def pick(result: SearchResult, member: Member, *, as_json: bool = False) -> int:
    """``autocompress pick [--json]``: the chosen member's row, plan and deployable's path."""
    from autocompress.deploy import artifact_path
    from autocompress.front import describe_row

    artifact = artifact_path(member, result.run_dir)
    if not as_json:
        print(describe_row(member, result.front))
        print(f"plan: {member.plan.summary()}")
        print(f"artifacts: {artifact.parent}")
        return 0
    row = _row(member, result.front)
    _print_json({**row, "plan_dict": member.plan.to_dict(), "artifact": str(artifact.resolve())})
    return 0


def _row(member: Member, front: Front) -> dict[str, Any]:
    """The row every table shows, as JSON-ready data (floats as JSON numbers, nan as null)."""
    from autocompress.front import front_row

    row = dataclasses.asdict(front_row(member, front))
    row["accuracy_floor"] = front.accuracy_floor
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}


def _fp32_ms(front: Front) -> float | None:
    from autocompress.front import fp32_latency_ms

    ms = fp32_latency_ms(front)
    return None if math.isnan(ms) else ms  # nan: nothing timed yet


def _print_json(data: dict[str, Any]) -> None:
    print(json.dumps(data, indent=2, allow_nan=False))


def refine(args: Any) -> int:
    """``autocompress refine EXPERIMENT --trials N... | --members K [--steps S]``: promote."""
    from autocompress._api import refine as promote
    from autocompress.errors import ConfigError
    from autocompress.front import format_front

    if any(v is not None and v < 1 for v in (args.steps, args.members)):
        raise ConfigError("--steps and --members must be at least 1; e.g. --steps 1000")
    result = promote(
        args.experiment,
        args.trials,
        members=args.members,
        steps=args.steps,
        lr=args.lr,
        overrides=args.overrides,
        progress=not args.quiet,
    )
    print(f"\nPareto front after promotion ({len(result.front.members)} members):")
    print(format_front(result.front))
    return 0
