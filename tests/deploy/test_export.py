"""Export a picked model, load it where autocompress cannot be imported, verify it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from autocompress.cli import main

# Runs in a fresh interpreter: autocompress is made unimportable first, then the exported file is
# loaded with its runtime alone and run on the batch the test saved.
LOADER = """
import importlib.abc, json, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "autocompress":
            raise ImportError("autocompress is blocked in this process")
sys.meta_path.insert(0, Block())
try:
    import autocompress  # noqa
    sys.exit("autocompress was importable")
except ImportError:
    pass
import numpy as np
folder = sys.argv[1]
manifest = json.load(open(folder + "/manifest.json"))
x = np.load(sys.argv[2])
if manifest["model_file"].endswith(".onnx"):
    import onnxruntime as ort
    s = ort.InferenceSession(folder + "/" + manifest["model_file"])
    logits = s.run(None, {manifest["input"]["name"]: x})[0]
else:
    import torch
    m = torch.export.load(folder + "/" + manifest["model_file"]).module()
    logits = m(torch.from_numpy(x)).detach().numpy()
np.save(sys.argv[3], logits)
"""


def test_exported_model_runs_without_autocompress(finished, tmp_path) -> None:
    from autocompress.deploy._export import export, read_manifest
    from autocompress.runtimes import get_runtime

    result, _ = finished
    front = result.front
    member = front.pick(prefer="size")
    manifest_path = export(result.study, member, tmp_path / "out")
    manifest = read_manifest(manifest_path.parent)
    assert manifest["trial"] == member.number
    assert manifest["measured"]["latency_ms"] == member.result.latency_ms
    assert manifest["fingerprint"]["key"] == member.fingerprint_key
    assert manifest["reference_fp32"]["val_accuracy"] == front.reference["val_accuracy"]
    assert manifest["input"]["shape"][1:] == [1, 8, 8] and "mean" in manifest["input"]

    from autocompress.config import DataConfig
    from autocompress.data import load_splits

    batch = load_splits(DataConfig(dataset="digits", val_size=300)).test_x[:16].numpy()
    np.save(tmp_path / "x.npy", batch)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            LOADER,
            str(manifest_path.parent),
            str(tmp_path / "x.npy"),
            str(tmp_path / "y.npy"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    theirs = np.load(tmp_path / "y.npy")

    task = result.study.user_attrs["task"]
    from autocompress.config import TargetConfig
    from autocompress.config._schema import build

    target = build(TargetConfig, task["target"], "target")
    artifact = next(Path(member.artifact_dir).glob("model.*[xt2]"))
    ours = get_runtime(target.runtime).load(artifact.read_bytes(), target).predict(batch)
    assert np.array_equal(theirs.argmax(1), ours.argmax(1))
    assert np.allclose(theirs, ours, atol=1e-5)


def test_export_refuses_to_overwrite_and_unwritable_paths(finished, tmp_path, capsys) -> None:
    _, journal = finished
    out = tmp_path / "exp"
    assert main(["export", journal, str(out), "--prefer", "knee"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(["export", journal, str(out)]) == 2
    assert "already holds an export" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing changed
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root ignores permissions: use a path under a file
            target = str(tmp_path / "exp" / "manifest.json" / "sub")
        else:
            target = str(locked / "sub")
        assert main(["export", journal, target]) == 2
        err = capsys.readouterr().err
        assert "is not writable" in err and err.count("\n") == 1
    finally:
        locked.chmod(0o700)


def test_pick_cli_names_the_closest_points(finished, capsys) -> None:
    _, journal = finished
    assert main(["pick", journal, "--max-latency-ms", "0.000001"]) == 2
    err = capsys.readouterr().err
    assert "no front member meets latency <= 1e-06 ms; closest: trial" in err
    assert main(["pick", journal, "--prefer", "latency"]) == 0
    assert capsys.readouterr().out.startswith("trial ")


def test_verify_reports_test_accuracy_and_remeasured_latency(finished, tmp_path, capsys) -> None:
    result, journal = finished
    out = tmp_path / "rows.json"
    assert main(["verify", journal, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    rows = json.loads(out.read_text())["rows"]
    assert [r["trial"] for r in rows] == [m.number for m in result.front.members]
    for r in rows:
        assert 0.5 < r["test_accuracy"] <= 1.0 and r["verified_latency_ms"] > 0
        assert r["same_device"] and r["reference_ms"] > 0 and r["retimes"] >= 0
    assert "largest latency gap" in printed

    export_dir = tmp_path / "one"
    assert main(["export", journal, str(export_dir), "--prefer", "latency"]) == 0
    assert main(["verify", str(export_dir)]) == 0
    assert "test acc" in capsys.readouterr().out
