"""The task: everything a worker needs to run a trial, as plain data.

The driver builds a :class:`Task` from the experiment once; ``task.to_dict()`` crosses to workers
(local or Ray) together with ``plan.to_dict()``. Workers never see the study, the storage or the
experiment file, so they are testable with no Optuna and no Ray.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from autocompress.config import (
    DataConfig,
    ExperimentConfig,
    FinetuneConfig,
    ModelConfig,
    TargetConfig,
    build,
    to_plain,
)


@dataclass(frozen=True)
class Task:
    """One search's fixed inputs to every trial."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    target: TargetConfig = field(default_factory=TargetConfig)
    checkpoint: str | None = None  # resolved fp32 reference checkpoint (None: user objects)
    # resolved checkpoint of finetune.teacher (None: the reference teaches, or user objects)
    teacher_checkpoint: str | None = None
    hopeless_floor: float | None = None  # stop a trial whose early accuracy is below this
    screen_nearest: bool = False  # a 0-step plan below a ladder's top rounds to nearest
    checkpoint_every: int = 0  # fine-tuning steps between early-stop checks (0: BN check only)
    trial_timeout_s: float | None = None
    val_limit: int | None = None  # evaluate on at most this many validation images
    ray_address: str | None = None  # cluster to time remote targets on (None: local / auto)

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)

    @classmethod
    def of_experiment(
        cls, config: ExperimentConfig, checkpoint: str, teacher_checkpoint: str | None = None
    ) -> Task:
        """What an experiment's trials receive, given the reference checkpoint it resolved
        and its teacher's, if it names one (the search, the recipe study and the backend
        check build it the same way)."""
        return cls(
            data=config.data,
            model=config.model,
            finetune=config.finetune,
            target=config.target,
            checkpoint=checkpoint,
            teacher_checkpoint=teacher_checkpoint,
            trial_timeout_s=config.search.trial_timeout_s,
            ray_address=config.search.ray_address,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Task:
        return build(cls, data, "task")
