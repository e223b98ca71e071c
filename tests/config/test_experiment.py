"""Experiment configs: strict validation, one-line errors, overrides, JSON round-trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from autocompress.config import ExperimentConfig, load_experiment
from autocompress.errors import ConfigError


def test_round_trip_through_json(experiment_dict: dict) -> None:
    config = ExperimentConfig.from_dict(experiment_dict)
    again = ExperimentConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config


def test_overrides_parse_yaml_values(tmp_path: Path, experiment_dict: dict) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(experiment_dict))
    config = load_experiment(path, ["search.n_trials=7", "target.cores=[0]", "finetune.lr=0.5"])
    assert config.search.n_trials == 7
    assert config.target.cores == [0]
    assert config.finetune.lr == 0.5
    assert config.base_dir == str(tmp_path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"search": {"n_trials": 0}}, r"search.n_trials: expected a value >= 1, got 0"),
        ({"search": {"sampler": "cmaes"}}, r"search.sampler: 'cmaes' is not allowed"),
        ({"search": {"n_trial": 3}}, r"did you mean 'n_trials'"),
        ({"target": {"threads": "two"}}, r"target.threads: expected an integer"),
        ({"target": {"runtime": "tensorrt"}}, r"target.runtime: 'tensorrt' is not a runtime"),
        ({"target": {"device": "tpu"}}, r"target.device: 'tpu' is not a device"),
        ({"model": {"name": "vgg"}}, r"model.name: 'vgg' is not a model"),
        ({"search": {"n_workers": 2}}, r"needs search.executor: ray"),
        ({"search": {"objectives": ["accuracy", "accuracy"]}}, r"at most once"),
        ({"finetune": {"lr": -1}}, r"finetune.lr: expected a value > 0"),
        ({"finetune": {"teacher": {"name": "vgg"}}}, r"finetune.teacher.name: 'vgg' is not a"),
        ({"finetune": {"teacher": {"builder": "x"}}}, r"finetune.teacher.builder: 'x' is not an"),
        (
            {"finetune": {"teacher": {"kwarg": {}}}},
            r"finetune.teacher.kwarg: unknown key; did you mean .kwargs.",
        ),
    ],
)
def test_bad_values_name_key_value_and_fix(
    experiment_dict: dict, change: dict, message: str
) -> None:
    for section, values in change.items():
        experiment_dict[section] = {**experiment_dict.get(section, {}), **values}
    with pytest.raises(ConfigError, match=message) as info:
        ExperimentConfig.from_dict(experiment_dict)
    assert "\n" not in str(info.value)


def test_a_teacher_is_a_model_section_labelled_like_the_model(experiment_dict: dict) -> None:
    experiment_dict["finetune"] = {
        "teacher": {"builder": "mypkg.nets:wide_net", "train": {"epochs": 12}}
    }
    teacher = ExperimentConfig.from_dict(experiment_dict).finetune.teacher
    assert teacher is not None
    assert (teacher.name, teacher.train.epochs) == ("wide_net", 12.0)
    assert ExperimentConfig.from_dict({**experiment_dict, "finetune": {}}).finetune.teacher is None


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_experiment(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_experiment(bad)


def test_yaml_cannot_construct_python_objects(tmp_path: Path) -> None:
    evil = tmp_path / "evil.yaml"
    evil.write_text("name: !!python/object/apply:os.system ['echo pwned']\nspace: s.yaml\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_experiment(evil)
