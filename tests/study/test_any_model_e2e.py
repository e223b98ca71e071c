"""Models the project had never seen (#19): a SqueezeNet-style net with every conv prunable, a
tiny ViT through the CLI, and a text classifier on int64 tokens through the Python API."""

from __future__ import annotations

import torch
import yaml
from optuna.trial import TrialState

import autocompress
from autocompress.cli import main
from autocompress.config import ExperimentConfig
from autocompress.models import build_model
from tests.conftest import FAST_MEASURE, tiny_experiment

EVERY_CONV = """
version: 1
layers:
  - match: ".*"
    bits: [4, 8, none]
    prune: [0.0, 0.25, 0.5]
distill:
  temperature: [1.0, 2.0]
"""


def test_squeezenet_with_every_conv_prunable_completes_without_failures(tmp_path) -> None:
    """Six trials, each conv prunable (concatenations, a grouped conv): none fails, and the
    pruned members stay above the accuracy floor after fine-tuning."""
    (tmp_path / "space.yaml").write_text(EVERY_CONV)
    experiment = tiny_experiment(
        tmp_path,
        name="squeeze",
        space=str(tmp_path / "space.yaml"),
        model={"name": "squeezenet", "kwargs": {"width": 16, "groups": 4}},
        finetune={"steps": 40},
        search={"n_trials": 6, "sampler": "random", "max_accuracy_drop": 5.0},
    )
    result = autocompress.search(ExperimentConfig.from_dict(experiment), progress=False)
    trials = result.study.get_trials(deepcopy=False)
    assert [t.state for t in trials].count(TrialState.COMPLETE) == 6
    assert not [t for t in trials if t.state == TrialState.FAIL]
    pruned = [m for m in result.front.completed if m.plan.pruned_layers]
    assert pruned, "the random sampler drew no pruned plan"
    assert all(m.feasible for m in pruned), [(m.number, m.accuracy) for m in pruned]


VIT_SPACE = r"""
version: 1
layers:
  - match: 'patch'
    bits: [8, none]
  - match: 'encoder\.blocks\.(\d+)\.(attn\.q|attn\.k|attn\.v|attn\.out|fc1|fc2)'
    bits: [4, 8, none]
    prune: [0.0, 0.5]
  - match: 'encoder\.head'
    bits: [8, none]
"""


def test_a_vit_search_through_the_cli_completes(tmp_path) -> None:
    (tmp_path / "space.yaml").write_text(VIT_SPACE)
    experiment = tiny_experiment(
        tmp_path,
        name="vit",
        space=str(tmp_path / "space.yaml"),
        model={"name": "vit", "kwargs": {"dim": 16, "depth": 1, "heads": 2, "patch": 2}},
        search={"n_trials": 4, "sampler": "random"},
    )
    experiment["model"]["train"] = {"epochs": 8, "batch_size": 64, "lr": 0.05}
    path = tmp_path / "vit.yaml"
    path.write_text(yaml.safe_dump(experiment))
    assert main(["search", str(path), "-q"]) == 0
    result = autocompress.load(tmp_path / "run" / "study.journal")
    states = [t.state for t in result.study.get_trials(deepcopy=False)]
    assert states.count(TrialState.COMPLETE) == 4 and TrialState.FAIL not in states
    int8 = next(m for m in result.front.completed if m.baseline == "int8")
    assert set(int8.plan.quantized_layers) >= {"encoder.blocks.0.attn.q", "encoder.blocks.0.fc1"}


def keyword_task(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token sequences (vocab 50, length 16): the class is which keyword (id 1, 2 or 3) occurs."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(4, 50, (n, 16), generator=g)
    labels = torch.randint(0, 3, (n,), generator=g)
    where = torch.randint(0, 16, (n,), generator=g)
    tokens[torch.arange(n), where] = labels + 1
    return tokens, labels


def test_a_text_classifier_searches_through_the_python_api(tmp_path) -> None:
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)
    model = build_model("text_transformer", [16], 3, {"vocab": 50, "dim": 32, "heads": 4})
    train_x, train_y = keyword_task(768, 0)
    opt = torch.optim.Adam(model.parameters(), lr=0.003)
    for _ in range(150):
        idx = torch.randint(0, len(train_x), (64,))
        loss = torch.nn.functional.cross_entropy(model(train_x[idx]), train_y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    train = DataLoader(TensorDataset(train_x, train_y), batch_size=64, shuffle=True)
    val = DataLoader(TensorDataset(*keyword_task(256, 1)), batch_size=64)
    result = autocompress.search(
        model,
        train,
        val,
        space={
            "layers": [
                {"match": r".*\.(q|k|v|out|fc1|fc2)", "bits": [4, 8, "none"], "prune": [0, 0.5]},
                {"match": r"encoder\.head", "bits": [8, "none"]},
            ]
        },
        sections={"target": {"measure": FAST_MEASURE}, "finetune": {"steps": 10}},
        study={"run_dir": tmp_path / "run", "name": "text", "n_trials": 4},
        progress=False,
    )
    assert result.front.reference["val_accuracy"] > 0.9
    completed = result.front.completed
    assert len(completed) == 4
    int8 = next(m for m in completed if m.baseline == "int8")
    assert int8.accuracy > 0.85  # int64 tokens reach the int8 deployable intact
