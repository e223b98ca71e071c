"""The bad-input catalogue: each mistake gets one line naming it and the fix, exit code 2, and
nothing on disk changes (no run directory, no study, no file touched).

Every case runs the real CLI (``autocompress.cli.main``) in-process on files in a fresh folder;
the folder is hashed before and after.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from autocompress.cli import main
from tests.conftest import tiny_experiment
from tests.synthetic import synthetic_result

Case = Callable[[Path], list[str]]  # builds files in the folder, returns the CLI arguments


def _experiment(folder: Path, space: str | None = None, **changes) -> Path:
    data = tiny_experiment(folder)
    if space is not None:
        (folder / "space.yaml").write_text(space)
        data["space"] = str(folder / "space.yaml")
    for dotted, value in changes.items():
        node = data
        *parents, last = dotted.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    path = folder / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _space(rule: str) -> str:
    return f"version: 1\nlayers:\n  - match: '.*'\n    {rule}\n"


def search_with(space: str | None = None, **changes) -> Case:
    return lambda folder: ["search", str(_experiment(folder, space, **changes)), "--quiet"]


def _journal_not_a_journal(folder: Path) -> list[str]:
    (folder / "notes.txt").write_text("my notes, not a study\n")
    return ["search", str(_experiment(folder, storage=str(folder / "notes.txt"))), "--quiet"]


def _warm_plan_outside_the_space(folder: Path) -> list[str]:
    (folder / "mine.json").write_text('{"layers": {"fc": {"weight_bits": 3}}}')
    return ["search", str(_experiment(folder, search__warm_start=["mine.json"])), "--quiet"]


def _corrupt_checkpoint(folder: Path) -> list[str]:
    (folder / "model.pt").write_bytes(b"\x80\x04garbage that is not a torch file")
    return ["search", str(_experiment(folder, model__checkpoint=str(folder / "model.pt")))]


def _corrupt_dataset(folder: Path) -> list[str]:
    root = folder / "fmnist"
    root.mkdir()
    for name in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        (root / name).write_bytes(b"\x00\x00\x08\x03not really an idx file")
    return [
        "search",
        str(_experiment(folder, data__dataset="fashion_mnist", data__root=str(root))),
    ]


def _study_file(folder: Path, name: str):
    """A journal with one empty autocompress-shaped study in it."""
    import optuna

    from autocompress.study._storage import open_storage

    journal = folder / f"{name}.journal"
    study = optuna.create_study(
        study_name=name,
        storage=open_storage(str(journal), folder),
        directions=["maximize", "minimize", "minimize"],
    )
    study.set_user_attr("objectives", ["accuracy", "latency", "size"])
    return journal, study


def _empty_front(folder: Path) -> list[str]:
    journal, _ = _study_file(folder, "empty")
    return ["pick", str(journal)]


def _unwritable_export(folder: Path) -> list[str]:
    journal, study = _study_file(folder, "one")
    plan = {"version": 1, "layers": {}, "distill": None}
    result = synthetic_result(0.9, 0.2, 0.5, 1000).to_dict()
    study.enqueue_trial(
        {}, user_attrs={"plan": plan, "result": result, "artifact_dir": str(folder)}
    )
    (folder / "model.onnx").write_bytes(b"onnx")
    trial = study.ask()
    study.tell(trial, [0.9, 0.2, 1000])
    (folder / "a-file").write_text("x")
    return ["export", str(journal), str(folder / "a-file" / "out")]


def _finished(folder: Path, **changes) -> Path:
    """A two-trial search run to its end; returns its experiment file (``changes`` as in
    ``_experiment``, on top of the two-trial settings)."""
    path = _experiment(folder, search__n_trials=2, search__baselines=["fp32", "int8"], **changes)
    assert main(["search", str(path), "--quiet"]) == 0
    return path


def _changed_space(folder: Path) -> list[str]:
    # a finished study made with the tiny space, then the same experiment with another space
    _finished(folder)
    return [
        "search",
        str(_experiment(folder, space=_space("bits: [4, 8]"), search__n_trials=2)),
        "--quiet",
    ]


def _changed_finetuning(folder: Path) -> list[str]:
    # a finished study, then the same experiment with another fine-tuning budget
    _finished(folder)
    again = _experiment(
        folder, search__n_trials=2, search__baselines=["fp32", "int8"], finetune__steps=9
    )
    return ["search", str(again), "--quiet"]


def _stored_before_gradual_pruning(folder: Path, **changes) -> list[str]:
    """A finished study whose stamp predates ``finetune.prune_stages`` (it pruned in one shot),
    then the same experiment resumed."""
    import optuna

    from autocompress.record import attrs as A
    from autocompress.study._storage import open_storage

    _finished(folder)
    study = optuna.load_study(study_name="tiny", storage=open_storage(None, folder / "run"))
    task = dict(study.user_attrs[A.TASK])
    task["finetune"] = {k: v for k, v in task["finetune"].items() if k != "prune_stages"}
    study.set_user_attr(A.TASK, task)
    again = _experiment(folder, search__n_trials=2, search__baselines=["fp32", "int8"], **changes)
    return ["search", str(again), "--quiet"]


def test_a_study_from_before_gradual_pruning_resumes_when_told_one_shot(tmp_path: Path) -> None:
    argv = _stored_before_gradual_pruning(tmp_path, finetune__prune_stages=1)
    assert main(argv) == 0  # the refusal's fix works


def _refine_unknown_trial(folder: Path) -> list[str]:
    first = _finished(folder)
    return ["refine", str(first), "--trials", "99", "--steps", "50", "--quiet"]


def _without_gpu(case: Case) -> Case:
    """A case that is bad input only on a machine without a CUDA GPU (skipped on one)."""

    def build(folder: Path) -> list[str]:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has a CUDA GPU: a cuda target is valid here")
        return case(folder)

    return build


def _validate_cuda(folder: Path) -> list[str]:
    exp = str(_experiment(folder))
    return ["validate", exp, "target.runtime=cuda", "target.device=cuda:0"]


CASES: dict[str, tuple[Case, str]] = {
    # issue 20 (5): used to create a study, fail every trial and exit 1
    "cuda target without a GPU": (
        _without_gpu(search_with(target__runtime="cuda", target__device="cuda:0")),
        "needs a CUDA GPU",
    ),
    "validate: cuda target without a GPU": (_without_gpu(_validate_cuda), "needs a CUDA GPU"),
    "validate: override unknown key": (
        lambda f: ["validate", str(_experiment(f)), "search.trials=3"],
        "search.trials",
    ),
    "unknown key": (search_with(search__nn_trials=3), "search.nn_trials"),
    "unknown section": (search_with(trainer={"steps": 3}), "trainer"),
    "wrong type": (search_with(search__n_trials="many"), "search.n_trials"),
    "n_trials zero": (search_with(search__n_trials=0), "search.n_trials"),
    "negative accuracy drop": (search_with(search__max_accuracy_drop=-1), "max_accuracy_drop"),
    "n_workers zero": (search_with(search__n_workers=0), "search.n_workers"),
    "bits 0": (search_with(_space("bits: [0, 8]")), "bits"),
    # issue 20 (12): this one used to fail only after run/study.journal was created
    "int8 baseline without 8 bits": (
        search_with(_space("bits: [4, none]")),
        "the int8 baseline needs bits 8",
    ),
    "bits 33": (search_with(_space("bits: [8, 33]")), "bits"),
    "prune ratio 1.5": (search_with(_space("prune: [0.0, 1.5]")), "prune"),
    "temperature negative": (
        search_with(_space("bits: [8]") + "distill:\n  temperature: [-1.0]\n"),
        "temperature",
    ),
    "regex matches nothing": (
        search_with("version: 1\nlayers:\n  - match: 'encoder\\..*'\n    bits: [4, 8]\n"),
        "encoder",
    ),
    "invalid regex": (
        search_with("version: 1\nlayers:\n  - match: 'layer[1'\n    bits: [8]\n"),
        "layer[1",
    ),
    "space key typo": (search_with(_space("bitz: [8]")), "bitz"),
    "unknown model": (search_with(model__name="resnet9000"), "resnet9000"),
    "unknown runtime": (search_with(target__runtime="tensorrt"), "tensorrt"),
    "unknown sampler": (search_with(search__sampler="cmaes2"), "cmaes2"),
    "unknown dataset": (search_with(data__dataset="imagenet"), "imagenet"),
    "input shape does not fit": (search_with(target__input_shape=[3, 32, 32]), "input_shape"),
    "missing dataset": (
        search_with(data__dataset="fashion_mnist", data__root="/nonexistent/fm"),
        "/nonexistent/fm",
    ),
    "corrupt dataset": (_corrupt_dataset, "fmnist"),
    "missing checkpoint": (
        search_with(model__checkpoint="/nonexistent/model.pt"),
        "/nonexistent/model.pt",
    ),
    "corrupt checkpoint": (_corrupt_checkpoint, "model.pt"),
    "missing experiment file": (lambda f: ["search", str(f / "nope.yaml")], "nope.yaml"),
    "yaml syntax": (
        lambda f: (f / "e.yaml").write_text("name: [unclosed\n") and ["search", str(f / "e.yaml")],
        "e.yaml",
    ),
    "yaml python tag": (
        lambda f: (
            (f / "e.yaml").write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
            and ["search", str(f / "e.yaml")]
        ),
        "e.yaml",
    ),
    "override without =": (
        lambda f: ["search", str(_experiment(f)), "search.n_trials"],
        "search.n_trials",
    ),
    "override unknown key": (
        lambda f: ["search", str(_experiment(f)), "search.trials=3"],
        "search.trials",
    ),
    "journal that is not one": (_journal_not_a_journal, "not an Optuna journal"),
    "unknown storage scheme": (search_with(storage="mysql://u@127.0.0.1/x"), "mysql"),
    "unreachable postgres": (
        search_with(storage="postgresql://me:hunter2@127.0.0.1:9/db"),
        "unreachable",
    ),
    "status of a missing journal": (lambda f: ["status", str(f / "typo.journal")], "typo.journal"),
    "changed search space": (_changed_space, "different search space"),
    "changed fine-tuning budget": (_changed_finetuning, "other fine-tuning settings"),
    "study from before gradual pruning": (_stored_before_gradual_pruning, "prune_stages: 1 -> 4"),
    "ray resource no node has": (
        search_with(target__node_resources={"jetson_orin": 1}),
        "jetson_orin",
    ),
    "empty front for pick": (_empty_front, "the front is empty"),
    "export path not writable": (_unwritable_export, "is not writable"),
    "refine before any search": (
        lambda f: ["refine", str(_experiment(f)), "--members", "2", "--quiet"],
        "run the search first",
    ),
    "refine steps zero": (
        lambda f: ["refine", str(_experiment(f)), "--steps", "0"],
        "--steps and --members",
    ),
    "refine unknown trial": (_refine_unknown_trial, "trial 99 is not a completed trial"),
    "warm start neither kind nor file": (
        search_with(search__warm_start=["uniform", "my-plan"]),
        "'my-plan' is neither",
    ),
    "warm start plan file missing": (
        search_with(search__warm_start=["gone.json"]),
        "gone.json: no such plan file",
    ),
    "warm start plan the space cannot make": (_warm_plan_outside_the_space, "lacks layer"),
    "pick preference unknown": (lambda f: ["pick", "x.journal", "--prefer", "speed"], "speed"),
}


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): (
            hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        )
        for p in sorted(folder.rglob("*"))
    }


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name: str, tmp_path: Path, capsys) -> None:
    build, expected = CASES[name]
    folder = tmp_path / "case"
    folder.mkdir()
    argv = build(folder)
    capsys.readouterr()
    before = _snapshot(folder)
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own usage errors
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert expected in err, err
    ours = [x for x in err.splitlines() if x.startswith("autocompress") and ": error:" in x]
    assert len(ours) == 1, err  # one line (Ray may print its own notice before it)
    assert "Traceback" not in err and "hunter2" not in err
    assert _snapshot(folder) == before, "the failed command changed files"


def test_catalogue_is_large_enough() -> None:
    assert len(CASES) >= 25


def test_validate_takes_overrides(tmp_path: Path, capsys) -> None:
    exp = _experiment(tmp_path)
    assert main(["validate", str(exp), "search.n_trials=5", "search.sampler=tpe"]) == 0
    assert "experiment OK" in capsys.readouterr().out
