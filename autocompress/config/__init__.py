"""Configuration: experiments (what to run) and search spaces (what may vary)."""

from autocompress.config._experiment import (
    DataConfig,
    ExperimentConfig,
    FinetuneConfig,
    MeasureConfig,
    ModelConfig,
    SearchConfig,
    TargetConfig,
    TrainConfig,
    apply_override,
    load_experiment,
    read_yaml,
)
from autocompress.config._space import BoundSpace, SearchSpace

__all__ = [
    "BoundSpace",
    "DataConfig",
    "ExperimentConfig",
    "FinetuneConfig",
    "MeasureConfig",
    "ModelConfig",
    "SearchConfig",
    "SearchSpace",
    "TargetConfig",
    "TrainConfig",
    "apply_override",
    "load_experiment",
    "read_yaml",
]
