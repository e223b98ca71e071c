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
        if name.split(".")[0] in ("autocompress", "onnx", "onnxruntime", "torch"):
            raise ImportError(name + " is blocked in this process")
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


def test_the_packed_route_rebuilds_the_exact_model_in_a_clean_venv(
    finished, clean_python, tmp_path, capsys
):
    """Ship skeleton + model.acpk + unpack.py + manifest, nothing else; `python unpack.py` in a
    venv holding numpy alone writes model.onnx byte for byte."""
    import onnxruntime as ort

    result, journal = finished
    member = result.front.pick(prefer="size")
    out = tmp_path / "out"
    assert main(["export", journal, str(out), "--trial", str(member.number)]) == 0
    printed = capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    shipped = ("model.skeleton.onnx", "model.acpk", "unpack.py")
    assert manifest["measured"]["shipped_bytes"] == sum((out / f).stat().st_size for f in shipped)
    assert "shipped_bytes" in printed and "model.skeleton.onnx" in printed
    assert manifest["packed_to_onnx"] and manifest["skeleton_kept"] == {}
    assert manifest["rebuild"].startswith("byte-identical")
    quantized = {f"{n}.weight" for n, lp in member.plan.layers.items() if lp.weight_bits}
    assert set(manifest["packed_to_onnx"]) == quantized
    assert (out / "model.skeleton.onnx").stat().st_size < manifest["measured"]["deploy_bytes"]

    ship = tmp_path / "ship"
    ship.mkdir()
    for name in (*shipped, "manifest.json"):
        shutil.copy(out / name, ship / name)
    python, clean = clean_python
    proc = subprocess.run(
        [python, "-I", "-c", UNPACK], cwd=ship, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "byte for byte" in proc.stdout
    model = (out / "model.onnx").read_bytes()
    assert (ship / "model.onnx").read_bytes() == model
    if clean:  # the venv really holds numpy alone
        probe = subprocess.run([python, "-c", "import onnx"], capture_output=True, timeout=60)
        assert probe.returncode != 0

    from autocompress.config import DataConfig
    from autocompress.data import load_splits

    x = load_splits(DataConfig(dataset="digits", val_size=300)).test_x[:16].numpy()
    logits = [
        ort.InferenceSession(str(d / "model.onnx"), providers=["CPUExecutionProvider"]).run(
            None, {manifest["input"]["name"]: x}
        )[0]
        for d in (out, ship)
    ]
    assert np.array_equal(logits[0], logits[1])

    manifest["sha256"] = "0" * 64  # what the rebuild must match: a mismatch writes nothing
    (ship / "manifest.json").write_text(json.dumps(manifest))
    (ship / "model.onnx").unlink()
    proc = subprocess.run(
        [python, "-I", "-c", UNPACK], cwd=ship, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 1 and not (ship / "model.onnx").exists()
    assert "is not the manifest's" in proc.stdout


def test_a_weight_the_codes_do_not_equal_stays_in_the_skeleton(finished):
    from autocompress.backend import read_packed_codes
    from autocompress.deploy.unpack import rebuild_onnx
    from autocompress.runtimes import onnx_skeleton

    member = finished[0].front.pick(prefer="size")
    folder = Path(member.artifact_dir)
    model, blob = (folder / "model.onnx").read_bytes(), (folder / "model.acpk").read_bytes()
    codes = read_packed_codes(blob)
    whole = onnx_skeleton(model, codes)
    name = sorted(whole.packed_to_onnx)[0]
    codes[name] = codes[name].copy()
    codes[name].flat[0] += 1 if codes[name].flat[0] < 0 else -1
    partial = onnx_skeleton(model, codes)
    assert name not in partial.packed_to_onnx
    assert "differ" in partial.kept[whole.packed_to_onnx[name]]
    assert len(partial.artifact) > len(whole.artifact)
    assert rebuild_onnx(partial.artifact, blob, partial.packed_to_onnx) == model
