"""A separate distillation teacher: resolved before the first trial, checked, reported."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import autocompress
from autocompress.config import ExperimentConfig
from autocompress.errors import ConfigError
from autocompress.study import setup_from_experiment
from tests.conftest import tiny_experiment


def test_an_experiments_teacher_trains_or_is_reused_like_the_reference(tmp_path: Path) -> None:
    teacher = {"name": "refnet", "kwargs": {"width": 4}, "train": {"epochs": 2, "lr": 0.05}}
    config = ExperimentConfig.from_dict(tiny_experiment(tmp_path, finetune={"teacher": teacher}))
    setup = setup_from_experiment(config)
    task = setup.task
    assert task.teacher_checkpoint and Path(task.teacher_checkpoint).is_file()
    assert task.teacher_checkpoint != task.checkpoint  # its own cache slot
    assert 0.3 < setup.reference["teacher_val_accuracy"] <= 1.0
    assert setup.reference["teacher_params"] < setup.reference["params"]  # width 4 vs 8
    again = setup_from_experiment(config)  # reused, not retrained
    assert again.task.teacher_checkpoint == task.teacher_checkpoint


def test_a_teacher_that_scores_other_classes_is_rejected_before_anything_is_written(
    tmp_path: Path,
) -> None:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    x, y = torch.randn(32, 1, 8, 8), torch.randint(0, 10, (32,))
    loader = [(x, y)]
    study = {"run_dir": tmp_path / "run", "storage": str(tmp_path / "s.journal")}
    space = {"layers": [{"match": ".*"}]}
    wrong = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
    with pytest.raises(ConfigError, match=r"teacher outputs shape \[2, 3\], the model \[2, 10\]"):
        autocompress.search(model, loader, loader, space=space, study=study, teacher=wrong)
    other_input = torch.nn.Linear(5, 10)
    with pytest.raises(ConfigError, match="the teacher does not take the model's inputs"):
        autocompress.search(model, loader, loader, space=space, study=study, teacher=other_input)
    with pytest.raises(ConfigError, match=r"teacher= takes a torch.nn.Module"):
        autocompress.search(model, loader, loader, space=space, study=study, teacher="big.pt")
    assert not (tmp_path / "run").exists() and not (tmp_path / "s.journal").exists()


def test_an_experiment_takes_its_teacher_from_its_finetune_section(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"an experiment names its teacher in finetune\.teacher"):
        autocompress.search(
            ExperimentConfig.from_dict(tiny_experiment(tmp_path)), teacher=torch.nn.Linear(2, 2)
        )
