"""Samplers by short key (``search.sampler``): nsga2 (default), tpe, random, gp.

All read constraints from ``trial.set_constraint`` (Optuna 5 style; ``constraints_func`` is
deprecated there). Seeds make runs reproducible with one driver and one worker.
"""

from __future__ import annotations

import optuna

from autocompress.config import SearchConfig


def make_sampler(search: SearchConfig) -> optuna.samplers.BaseSampler:
    seed = search.seed
    if search.sampler == "nsga2":
        population = search.population_size or _default_population(search.n_trials)
        return optuna.samplers.NSGAIISampler(population_size=population, seed=seed)
    if search.sampler == "tpe":
        # multivariate: per-layer bits interact; constant_liar: several trials in flight
        return optuna.samplers.TPESampler(
            multivariate=True,
            group=True,
            constant_liar=True,
            seed=seed,
            n_startup_trials=min(10, max(2, search.n_trials // 4)),
        )
    if search.sampler == "gp":
        return optuna.samplers.GPSampler(
            seed=seed, n_startup_trials=min(10, max(2, search.n_trials // 4))
        )
    return optuna.samplers.RandomSampler(seed=seed)


def _default_population(n_trials: int) -> int:
    """Small budgets need small generations, or NSGA-II never leaves its random first one."""
    return max(4, min(50, n_trials // 4))
