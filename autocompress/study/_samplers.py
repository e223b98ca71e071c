"""Samplers by short key (``search.sampler``): tpe (default), nsga2, random, gp.

All read the trials' constraints as ``record.set_constraints`` writes them (the list Optuna
stores for ``constraints_func``, deprecated in Optuna 5; no sampler needs the function itself).
Seeds make runs reproducible with one driver and one worker.

A resumed study gets a seed derived from its seed and the trials it already holds: a seeded
sampler restarted with the seed it began with replays its first draws, and a resumed random
search (or TPE's random start-up) would then ask for plans it has already measured, spending
budget on copies (seen on a benchmark arm resumed after a restart: ten copies in a row).

Why TPE by default: searches here are a few dozen trials of a minute each over ~20 ordinal
parameters. Multi-objective TPE models what the trials so far say (constraint-violating trials
count as bad) from its 11th trial on; NSGA-II needs generations, and with 40 trials gets four of
ten. GP (log constrained EHVI) models best but its asks took 12 s each on average over 40
trials of the default space on the 2-core reference machine (a training job beside it), CPU the
trials themselves need. Figures: docs/benchmarks.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import optuna

from autocompress.config import SearchConfig

Builder = Callable[[SearchConfig, int | None], optuna.samplers.BaseSampler]


def make_sampler(search: SearchConfig, n_existing: int = 0) -> optuna.samplers.BaseSampler:
    """The sampler of ``search``, for a study that already holds ``n_existing`` trials."""
    return SAMPLERS[search.sampler](search, resumed_seed(search.seed, n_existing))


def resumed_seed(seed: int | None, n_existing: int) -> int | None:
    """``seed`` for a new study; for a resumed one, a seed of its own (same resume, same seed)."""
    if seed is None or n_existing == 0:
        return seed
    return int(np.random.SeedSequence([seed, n_existing]).generate_state(1)[0])


def _tpe(search: SearchConfig, seed: int | None) -> optuna.samplers.BaseSampler:
    # multivariate: per-layer bits interact; constant_liar: several trials in flight. Optuna
    # marks ``multivariate``/``group``/``constant_liar`` experimental and warns on every search
    # (issue #20); we chose them knowingly, so those warnings (that class only) stay quiet here.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            multivariate=True,
            group=True,
            constant_liar=True,
            seed=seed,
            n_startup_trials=min(10, max(2, search.n_trials // 4)),
        )


def _nsga2(search: SearchConfig, seed: int | None) -> optuna.samplers.BaseSampler:
    population = search.population_size or _default_population(search.n_trials)
    return optuna.samplers.NSGAIISampler(population_size=population, seed=seed)


def _random(search: SearchConfig, seed: int | None) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed)


def _gp(search: SearchConfig, seed: int | None) -> optuna.samplers.BaseSampler:
    return optuna.samplers.GPSampler(
        seed=seed, n_startup_trials=min(10, max(2, search.n_trials // 4))
    )


# keyed by autocompress._names.SAMPLER_NAMES, in its order (tests/config checks they are equal)
SAMPLERS: dict[str, Builder] = {"tpe": _tpe, "nsga2": _nsga2, "random": _random, "gp": _gp}


def _default_population(n_trials: int) -> int:
    """Small budgets need small generations, or NSGA-II never leaves its random first one."""
    return max(4, min(50, n_trials // 4))
