"""Checks of an experiment that span several fields (the schema checks each field alone), and
the labels a builder gives a model: kept apart from the sections' definitions they check.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from autocompress._names import MODEL_NAMES, RUNTIME_NAMES
from autocompress.errors import ConfigError

if TYPE_CHECKING:
    from autocompress.config._experiment import DataConfig, ExperimentConfig, ModelConfig

OBJECTIVES: tuple[Literal["accuracy", "latency", "size"], ...] = ("accuracy", "latency", "size")


def check_semantics(config: ExperimentConfig) -> None:
    """Checks that span several fields (the schema checks each field alone)."""
    objectives = config.search.objectives
    if not objectives or len(set(objectives)) != len(objectives):
        raise ConfigError(
            f"search.objectives: {objectives} must name each of {list(OBJECTIVES)} at most once"
        )
    if config.search.executor == "local" and config.search.n_workers > 1:
        raise ConfigError(
            "search.n_workers > 1 needs search.executor: ray (the local executor runs one trial "
            "at a time)"
        )
    if config.search.hopeless_margin is not None and config.search.max_accuracy_drop is None:
        raise ConfigError(
            "search.hopeless_margin needs search.max_accuracy_drop (the floor it is measured from)"
        )
    if config.target.device != "cpu" and not config.target.device.startswith("cuda"):
        raise ConfigError(
            f"target.device: {config.target.device!r} is not a device; use cpu or cuda:N"
        )
    if config.target.runtime not in RUNTIME_NAMES:
        raise ConfigError(
            f"target.runtime: {config.target.runtime!r} is not a runtime; use one of "
            f"{sorted(RUNTIME_NAMES)}"
        )
    _check_model(config.model, "model")
    if config.finetune.teacher is not None:
        _check_model(config.finetune.teacher, "finetune.teacher")
    _check_data(config.data)


def name_builder(data: dict[str, Any]) -> dict[str, Any]:
    """With a builder and no name, the callable's name labels the model (files, logs); the
    same for a teacher."""
    finetune = data.get("finetune")
    if isinstance(finetune, dict) and isinstance(finetune.get("teacher"), dict):
        data = {**data, "finetune": {**finetune, "teacher": _labelled(finetune["teacher"])}}
    if isinstance(data.get("model"), dict):
        data = {**data, "model": _labelled(data["model"])}
    return data


def _labelled(model: dict[str, Any]) -> dict[str, Any]:
    if "name" in model or not isinstance(model.get("builder"), str):
        return model
    label = model["builder"].rpartition(":")[2].rpartition(".")[2] or "builder"
    return {**model, "name": label}


def _check_model(model: ModelConfig, where: str) -> None:
    if model.builder is not None:
        _check_builder(model.builder, where)
    elif model.name not in MODEL_NAMES:
        raise ConfigError(
            f"{where}.name: {model.name!r} is not a model; use one of "
            f"{sorted(MODEL_NAMES)} (or {where}.builder: 'module:callable' for your own model)"
        )


def _check_builder(builder: str, where: str) -> None:
    """The ``module:callable`` form only: the models layer imports it, at search time."""
    module, sep, attr = builder.partition(":")
    parts = module.split(".") + attr.split(".")
    if not sep or not all(p.isidentifier() for p in parts):
        raise ConfigError(
            f"{where}.builder: {builder!r} is not an import path; use 'module:callable' "
            "(e.g. 'mypkg.models:build')"
        )


def _check_data(data: DataConfig) -> None:
    if data.dataset in ("folder", "npy") and not data.root:
        raise ConfigError(f"data.root: dataset {data.dataset!r} needs the directory to read")
    if data.dataset != "folder" and (data.channels is not None or data.image_size is not None):
        raise ConfigError("data.channels and data.image_size apply to dataset: folder only")
    size = data.image_size
    if size is not None and (len(size) != 2 or min(size) < 1):
        raise ConfigError(f"data.image_size: {size} is not [height, width] in pixels")
