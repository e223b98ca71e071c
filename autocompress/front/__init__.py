"""The Pareto front as data (``_pareto`` pure arithmetic, ``_front`` from a study)."""

from autocompress.front._front import DIRECTIONS, Front, Member, build_front, members_of
from autocompress.front._pareto import hypervolume, knee_index, non_dominated, to_minimization
from autocompress.front._pick import Budget, PickError, pick

__all__ = [
    "DIRECTIONS",
    "Budget",
    "Front",
    "Member",
    "PickError",
    "build_front",
    "hypervolume",
    "knee_index",
    "members_of",
    "non_dominated",
    "pick",
    "to_minimization",
]
