"""The Pareto front as data (``_pareto`` pure arithmetic, ``_front`` from a study, ``_pick`` one
member by budget, ``_refine`` the members worth a longer fine-tuning, ``_table`` the rows every
table shows)."""

from autocompress.front._front import DIRECTIONS, Front, Member, build_front, members_of
from autocompress.front._pareto import hypervolume, knee_index, non_dominated, to_minimization
from autocompress.front._pick import Budget, PickError, describe, pick
from autocompress.front._refine import refine_candidates
from autocompress.front._table import (
    FrontRow,
    fmt_bytes,
    fmt_ms,
    format_front,
    front_row,
    to_pandas,
)

__all__ = [
    "DIRECTIONS",
    "Budget",
    "Front",
    "FrontRow",
    "Member",
    "PickError",
    "build_front",
    "describe",
    "fmt_bytes",
    "fmt_ms",
    "format_front",
    "front_row",
    "hypervolume",
    "knee_index",
    "members_of",
    "non_dominated",
    "pick",
    "refine_candidates",
    "to_minimization",
    "to_pandas",
]
