"""The value of a trial's ``rung`` attribute and of a study's promotion decisions, typed.

Plain frozen data; the attribute names themselves live in ``_attrs`` with their readers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Rung:
    """Where a trial sits on the fine-tuning ladder of a multi-fidelity search.

    ``level`` is the rung (0: where every plan enters), ``steps`` its fine-tuning budget,
    ``parent`` the trial it was promoted from (None for an entry), ``lr`` the SGD rate of a
    manual promotion (None: the experiment's). A refinement of a study made before rungs reads
    as a promotion to level 1 of its trial (``{"of", "steps", "lr"}``).
    """

    level: int
    steps: int
    parent: int | None = None
    lr: float | None = None

    @property
    def promoted(self) -> bool:
        return self.parent is not None

    def to_dict(self) -> dict[str, Any]:
        return {"level": self.level, "steps": self.steps, "parent": self.parent, "lr": self.lr}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Rung:
        if "of" in data:  # a refinement (studies made before rungs)
            return cls(1, int(data["steps"]), int(data["of"]), data.get("lr"))
        parent = data.get("parent")
        return cls(
            int(data["level"]),
            int(data["steps"]),
            None if parent is None else int(parent),
            data.get("lr"),
        )


@dataclass(frozen=True)
class Promotion:
    """A promotion decided: trial ``parent``'s plan to rung ``level`` with ``steps``."""

    parent: int
    level: int
    steps: int
