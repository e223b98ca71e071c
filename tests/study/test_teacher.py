"""A separate distillation teacher: resolved before the first trial, checked, reported."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
import torch

import autocompress
from autocompress.config import ExperimentConfig
from autocompress.errors import ConfigError, StorageError
from autocompress.study import Progress, setup_from_experiment
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
    out = io.StringIO()
    Progress(setup, out=out)  # the search's opening lines name what the plans distil from
    assert re.search(
        r"^teacher \(distilled from\): val accuracy \d+\.\d\d%, \d+ parameters$",
        out.getvalue(),
        re.MULTILINE,
    ), out.getvalue()


def test_a_study_distilled_from_a_teacher_resumes_and_refuses_another_teacher(
    tmp_path: Path,
) -> None:
    teacher = {"name": "refnet", "kwargs": {"width": 4}, "train": {"epochs": 2, "lr": 0.05}}

    def search(width: int) -> None:
        experiment = tiny_experiment(
            tmp_path,
            finetune={"teacher": {**teacher, "kwargs": {"width": width}}},
            search={"n_trials": 2, "baselines": ["fp32", "int8"]},
        )
        autocompress.search(ExperimentConfig.from_dict(experiment), progress=False)

    search(4)
    search(4)  # the same teacher: resumes (the stored settings are compared as plain data)
    with pytest.raises(StorageError, match=r"settings \(teacher\.kwargs\.width: 4 -> 6\)"):
        search(6)


def test_a_teacher_that_scores_other_classes_is_rejected_before_anything_is_written(
    tmp_path: Path,
) -> None:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    x, y = torch.randn(32, 1, 8, 8), torch.randint(0, 10, (32,))
    loader = [(x, y)]
    space = {"layers": [{"match": ".*"}]}

    def search(teacher: object) -> None:
        study = {"run_dir": tmp_path / "run", "storage": str(tmp_path / "s.journal")}
        autocompress.search(
            model, loader, loader, space=space, study={**study, "teacher": teacher}
        )

    norm = torch.nn.BatchNorm1d(64)  # in train mode, as a user may hand it over
    wrong = torch.nn.Sequential(torch.nn.Flatten(), norm, torch.nn.Linear(64, 3))
    with pytest.raises(ConfigError, match=r"teacher outputs shape \[2, 3\], the model \[2, 10\]"):
        search(wrong)
    assert norm.num_batches_tracked == 0  # the check's forward left the user's statistics alone
    with pytest.raises(ConfigError, match="the teacher does not take the model's inputs"):
        search(torch.nn.Linear(5, 10))
    with pytest.raises(ConfigError, match=r"the teacher must be a torch.nn.Module, got str"):
        search("big.pt")
    assert not (tmp_path / "run").exists() and not (tmp_path / "s.journal").exists()


def test_an_experiment_takes_its_teacher_from_its_finetune_section(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"an experiment's is finetune\.teacher"):
        autocompress.search(
            ExperimentConfig.from_dict(tiny_experiment(tmp_path)),
            study={"teacher": torch.nn.Linear(2, 2)},
        )
