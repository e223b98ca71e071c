"""Configuration: experiments (what to run) and search spaces (what may vary), as YAML schemas.

Binding a space to a model's layers and sampling it is ``autocompress.study``; nothing here
imports Optuna, torch or a registry.
"""

from autocompress.config._experiment import (
    GENERATED_WARM_STARTS,
    DataConfig,
    ExperimentConfig,
    FinetuneConfig,
    MeasureConfig,
    ModelConfig,
    SearchConfig,
    SearchSections,
    TargetConfig,
    TrainConfig,
    apply_override,
    load_experiment,
    read_yaml,
)
from autocompress.config._schema import build, to_plain
from autocompress.config._space import (
    NONE_BITS,
    SPACE_VERSION,
    DistillSpace,
    LayerRule,
    Range,
    SearchSpace,
    SpaceConfig,
    parse_scheme,
)

__all__ = [
    "GENERATED_WARM_STARTS",
    "NONE_BITS",
    "SPACE_VERSION",
    "DataConfig",
    "DistillSpace",
    "ExperimentConfig",
    "FinetuneConfig",
    "LayerRule",
    "MeasureConfig",
    "ModelConfig",
    "Range",
    "SearchConfig",
    "SearchSections",
    "SearchSpace",
    "SpaceConfig",
    "TargetConfig",
    "TrainConfig",
    "apply_override",
    "build",
    "load_experiment",
    "parse_scheme",
    "read_yaml",
    "to_plain",
]
