"""A user's own model (``model.builder``) and data (``data.dataset: folder | npy``) in YAML:
the config checks the form only and answers bad input in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from autocompress.cli import main
from autocompress.config import ExperimentConfig, load_experiment
from autocompress.errors import ConfigError


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model": {"builder": "mypkg.models.build"}}, r"model.builder: .* not an import path"),
        ({"model": {"builder": "my-pkg:build"}}, r"model.builder: .* not an import path"),
        ({"model": {"builder": "mypkg:"}}, r"model.builder: .* not an import path"),
        ({"data": {"dataset": "folder"}}, r"data.root: dataset 'folder' needs the directory"),
        ({"data": {"dataset": "npy", "root": "x", "channels": 1}}, r"folder only"),
        ({"data": {"dataset": "folder", "root": "x", "image_size": [8]}}, r"\[height, width\]"),
        ({"data": {"dataset": "folder", "root": "x", "channels": 2}}, r"data.channels: 2"),
    ],
)
def test_bad_builder_and_data_in_one_line(
    experiment_dict: dict, change: dict, message: str
) -> None:
    for section, values in change.items():
        experiment_dict[section] = {**experiment_dict[section], **values}
    with pytest.raises(ConfigError, match=message) as info:
        ExperimentConfig.from_dict(experiment_dict)
    assert "\n" not in str(info.value)


def test_builder_is_checked_not_imported_and_labels_the_model(experiment_dict: dict) -> None:
    experiment_dict["model"] = {"builder": "no_such_module_anywhere:make", "kwargs": {"w": 4}}
    config = ExperimentConfig.from_dict(experiment_dict)  # no import at config time
    assert (config.model.builder, config.model.name) == ("no_such_module_anywhere:make", "make")
    named = {**experiment_dict, "model": {**experiment_dict["model"], "name": "mine"}}
    assert ExperimentConfig.from_dict(named).model.name == "mine"


def test_missing_data_folder_is_one_line_and_roots_resolve_beside_the_file(
    tmp_path: Path, experiment_dict: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    experiment_dict["data"] = {"dataset": "folder", "root": "images", "val_size": 10}
    path = tmp_path / "own.yaml"
    path.write_text(yaml.safe_dump(experiment_dict))
    config = load_experiment(path)
    assert config.data.root == str((tmp_path / "images").resolve())  # beside the file
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "data.root:" in err and "images' is not a directory" in err and err.count("\n") == 1
    (tmp_path / "images").mkdir()
    assert main(["validate", str(path)]) == 0
