"""The Pareto front as data (``_pareto`` pure arithmetic, ``_front`` from a study, ``_pick`` one
member by budget, ``_promote`` the plans a multi-fidelity search promotes to its next rung,
``_table`` the rows every table shows)."""

from autocompress.front._front import DIRECTIONS, Front, Member, build_front, members_of
from autocompress.front._pareto import hypervolume, knee_index, non_dominated, to_minimization
from autocompress.front._pick import Budget, PickError, accuracy_fraction, describe, pick
from autocompress.front._promote import (
    Evaluation,
    RankFidelity,
    contributions,
    kendall_tau,
    plan_key,
    rank_fidelity,
    rank_order,
    select_promotions,
)
from autocompress.front._table import (
    FrontRow,
    describe_row,
    floor_line,
    fmt_bytes,
    fmt_ms,
    format_front,
    fp32_latency_ms,
    front_row,
    infeasible_warning,
    int8_note,
    latency_ms,
    to_pandas,
)

__all__ = [
    "DIRECTIONS",
    "Budget",
    "Evaluation",
    "Front",
    "FrontRow",
    "Member",
    "PickError",
    "RankFidelity",
    "accuracy_fraction",
    "build_front",
    "contributions",
    "describe",
    "describe_row",
    "floor_line",
    "fmt_bytes",
    "fmt_ms",
    "format_front",
    "fp32_latency_ms",
    "front_row",
    "hypervolume",
    "infeasible_warning",
    "int8_note",
    "kendall_tau",
    "knee_index",
    "latency_ms",
    "members_of",
    "non_dominated",
    "pick",
    "plan_key",
    "rank_fidelity",
    "rank_order",
    "select_promotions",
    "to_minimization",
    "to_pandas",
]
