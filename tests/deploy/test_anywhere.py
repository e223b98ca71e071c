"""Issue 20: the verbs from any working directory; export ships what it measures."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from autocompress.cli import main


def _made_elsewhere(finished, base: Path) -> Path:
    """A copy of the finished study as an older search stored it: run directory relative
    (``runs/tiny``, made in ``base / "made"``), artifact directories relative too."""
    result = finished[0]
    run_dir = base / "made" / "runs" / "tiny"
    shutil.copytree(result.run_dir, run_dir)
    text = (run_dir / "study.journal").read_text()
    (run_dir / "study.journal").write_text(text.replace(str(result.run_dir), "runs/tiny"))
    return run_dir / "study.journal"


def test_every_verb_works_from_another_directory(finished, tmp_path, monkeypatch, capsys):
    journal = _made_elsewhere(finished, tmp_path)
    run_dir = journal.parent
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    knee = finished[0].front.knee.number

    assert main(["status", str(journal)]) == 0
    assert "accuracy floor" in capsys.readouterr().out

    assert main(["report", str(journal)]) == 0
    assert capsys.readouterr().out.strip() == f"written {run_dir / 'report.html'}"
    assert (run_dir / "report.html").is_file() and not (elsewhere / "runs").exists()

    assert main(["pick", str(journal), "--trial", str(knee)]) == 0
    artifacts = Path(capsys.readouterr().out.split("artifacts: ")[1].strip())
    assert artifacts.is_absolute() and (artifacts / "model.onnx").is_file()
    assert artifacts == run_dir / "trials" / f"{knee:05d}"

    assert main(["export", str(journal), "out", "--trial", str(knee)]) == 0
    assert {"model.onnx", "model.acpk", "unpack.py"} <= {p.name for p in Path("out").iterdir()}

    assert main(["verify", str(journal), "--trial", str(knee)]) == 0
    assert "largest latency gap" in capsys.readouterr().out

    moved = tmp_path / "moved"  # the run directory moved: one override on every verb
    moved.mkdir()
    shutil.move(str(run_dir / "trials"), str(moved / "trials"))
    assert main(["pick", str(journal), "--trial", str(knee)]) == 2
    assert "--run-dir" in capsys.readouterr().err
    j, k, over = str(journal), str(knee), ["--run-dir", str(moved)]
    for argv in (
        ["status", j],
        ["report", j],
        ["pick", j, "--trial", k],
        ["export", j, "again", "--trial", k],
        ["verify", j, "--trial", k],
    ):
        assert main([*argv, *over]) == 0, capsys.readouterr().err
    assert (moved / "report.html").is_file() and (elsewhere / "again" / "model.acpk").is_file()


UNPACK = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "autocompress":
            raise ImportError("autocompress is blocked in this process")
sys.meta_path.insert(0, Block())
sys.argv = ["unpack.py", *sys.argv[1:]]
exec(compile(open("unpack.py").read(), "unpack.py", "exec"))
"""


def test_export_ships_the_packed_artifact_and_a_standalone_unpacker(finished, tmp_path, capsys):
    from autocompress.backend import read_packed

    result, journal = finished
    member = result.front.pick(prefer="size")
    out = tmp_path / "out"
    assert main(["export", journal, str(out), "--trial", str(member.number)]) == 0
    printed = capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    measured = manifest["measured"]
    assert measured["deploy_bytes"] == (out / "model.onnx").stat().st_size
    assert measured["packed_bytes"] == (out / "model.acpk").stat().st_size
    assert measured["size_bytes"] == member.result.size_bytes < measured["packed_bytes"]
    assert "deploy_bytes" in printed and "packed_bytes" in printed and "model.acpk" in printed
    packed = (out / "model.acpk").read_bytes()
    trial_dir = Path(member.artifact_dir)
    assert packed == (trial_dir / "model.acpk").read_bytes()

    # numpy alone, autocompress unimportable (-I: no user site, no PYTHONPATH, no CWD on path)
    for flags, name in (([], "w.npz"), (["--codes"], "c.npz")):
        proc = subprocess.run(
            [sys.executable, "-I", "-c", UNPACK, "model.acpk", name, *flags],
            cwd=out,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
    ours = read_packed(packed)
    theirs = np.load(out / "w.npz")
    assert sorted(theirs.files) == sorted(ours)
    for key, value in ours.items():
        assert theirs[key].dtype == value.dtype and np.array_equal(theirs[key], value)
    codes = np.load(out / "c.npz")
    quantized = [k[: -len(".codes")] for k in codes.files if k.endswith(".codes")]
    for key in quantized:  # the codes times the scales are the weights, bit for bit
        scale = codes[key + ".scale"].reshape(-1, *([1] * (codes[key + ".codes"].ndim - 1)))
        assert np.array_equal(codes[key + ".codes"].astype(np.float32) * scale, ours[key])
