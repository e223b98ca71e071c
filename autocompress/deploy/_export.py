"""Export a picked model as a self-contained deployable plus a JSON manifest.

    out/model.onnx       (ONNX Runtime targets)  or  out/model.pt2 (torch.export program)
    out/model.acpk       the packed k-bit weights (the size objective's representation)
    out/model.skeleton.onnx  model.onnx without the int8 weights model.acpk rebuilds exactly
    out/unpack.py        numpy-only unpacker: model.acpk -> weights, or skeleton + acpk -> the
                         exact model.onnx (no autocompress, no onnx needed)
    out/manifest.json    plan, measured figures, device fingerprint, fp32 reference, input spec

Sizes are labelled by what they measure: ``deploy_bytes`` is the model file (what the runtime
loads), ``packed_bytes`` the ``model.acpk`` file (k-bit codes, scales, fp32 rest and a small
header), ``size_bytes`` the search's size objective (the same payload without the header),
``shipped_bytes`` what the packed route ships: skeleton + ``model.acpk`` + ``unpack.py`` (plus the
manifest, which every route ships). The skeleton is made and its rebuild checked byte for byte
here, at export: an initializer whose int8 values the packed codes do not equal stays in it
(``skeleton_kept`` says why).

The model file is the exact artifact the search measured (copied byte for byte from the trial's
run directory, checked by SHA-256), so the figures in the manifest are the figures of that file;
nothing is re-trained or re-converted. It loads with its runtime alone (``onnxruntime`` or
``torch``); the manifest says how.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import optuna

from autocompress import _files
from autocompress.errors import ConfigError, DataError
from autocompress.front import Member
from autocompress.record import read_study

FORMAT = "autocompress-export/1"
MANIFEST = "manifest.json"
PACKED = "model.acpk"
SKELETON = "model.skeleton.onnx"
UNPACKER = "unpack.py"
HOW_TO_LOAD = {
    ".onnx": "import onnxruntime as ort; s = ort.InferenceSession('model.onnx'); "
    "logits = s.run(None, {s.get_inputs()[0].name: x})[0]",
    ".pt2": "import torch; m = torch.export.load('model.pt2').module(); logits = m(x)",
}


class ExportError(ConfigError):
    """The export cannot be written where asked (exit code 2: choose another place)."""


def export(
    study: optuna.Study,
    member: Member,
    out_dir: str | Path,
    *,
    overwrite: bool = False,
    run_dir: str | Path | None = None,
) -> Path:
    """Write ``member``'s deployable and manifest into ``out_dir``; returns the manifest path.

    ``run_dir``: where the study's run directory is now, if it moved since the search.
    """
    out = Path(out_dir).expanduser()
    artifact = artifact_path(member, run_dir)
    _prepare(out, overwrite)
    data = artifact.read_bytes()
    model_file = out / f"model{artifact.suffix}"
    _files.write_bytes(model_file, data)
    manifest = build_manifest(study, member, model_file.name, data)
    packed = artifact.with_name(PACKED)
    if packed.exists():  # trials written before the packed artifact was kept lack it
        _ship_packed(out, packed.read_bytes(), data, manifest)
    path = out / MANIFEST
    _files.write_text(path, json.dumps(manifest, indent=2, sort_keys=True, default=str))
    return path


def _ship_packed(out: Path, blob: bytes, model: bytes, manifest: dict[str, Any]) -> None:
    """``model.acpk`` and ``unpack.py``; for an ONNX model, the skeleton they rebuild it from."""
    _files.write_bytes(out / PACKED, blob)
    unpacker = Path(__file__).with_name(UNPACKER).read_bytes()
    _files.write_bytes(out / UNPACKER, unpacker)
    manifest["packed_file"] = PACKED
    manifest["packed_sha256"] = hashlib.sha256(blob).hexdigest()
    manifest["measured"]["packed_bytes"] = len(blob)
    manifest["how_to_unpack"] = f"python {UNPACKER} {PACKED} weights.npz  (numpy only)"
    if manifest["model_file"].endswith(".onnx"):
        skeleton, why_not = _skeleton(blob, model)
        if skeleton is None:
            manifest["rebuild"] = f"unavailable: {why_not}; ship {manifest['model_file']}"
            return
        _files.write_bytes(out / SKELETON, skeleton.artifact)
        manifest.update(
            skeleton_file=SKELETON,
            skeleton_sha256=hashlib.sha256(skeleton.artifact).hexdigest(),
            packed_to_onnx=skeleton.packed_to_onnx,
            skeleton_kept=skeleton.kept,
            rebuild="byte-identical (checked at export)",
            how_to_rebuild=f"python {UNPACKER}  (in this directory: writes "
            f"{manifest['model_file']} from {SKELETON} + {PACKED}, sha256 checked; numpy only)",
        )
        shipped = len(skeleton.artifact) + len(blob) + len(unpacker)
        manifest["measured"]["shipped_bytes"] = shipped


def _skeleton(blob: bytes, model: bytes) -> tuple[Any, str]:
    """The skeleton of ``model`` if unpack.py rebuilds ``model`` from it byte for byte, else
    None and why."""
    from autocompress.backend import read_packed_codes
    from autocompress.deploy.unpack import rebuild_onnx
    from autocompress.runtimes import onnx_skeleton

    skeleton = onnx_skeleton(model, read_packed_codes(blob))
    try:
        rebuilt = rebuild_onnx(skeleton.artifact, blob, skeleton.packed_to_onnx)
    except ValueError as exc:
        return None, f"the skeleton does not rebuild ({exc})"
    if rebuilt != model:
        return None, "the rebuilt model differs from the exported one"
    if not skeleton.packed_to_onnx:
        return None, "no int8 weight of the model is in the packed file"
    return skeleton, ""


def artifact_path(member: Member, run_dir: str | Path | None = None) -> Path:
    """The deployable the search measured for ``member`` (looked up in ``run_dir`` too)."""
    folders = []
    if run_dir is not None and member.artifact_dir:  # first: a relative path means the CWD's
        folders.append(Path(run_dir) / "trials" / Path(member.artifact_dir).name)
    if member.artifact_dir:
        folders.append(Path(member.artifact_dir))
    for folder in folders:
        found = sorted(folder.glob("model.onnx")) + sorted(folder.glob("model.pt2"))
        if found:
            return found[0]
    raise DataError(
        f"trial {member.number}: its deployable is missing from "
        f"{folders[-1] if folders else 'the run directory'} (was the run directory moved or "
        "deleted?); pass --run-dir with the run directory where it now lives"
    )


def build_manifest(
    study: optuna.Study, member: Member, model_file: str, data: bytes
) -> dict[str, Any]:
    from autocompress import __version__

    r = member.result
    info = read_study(study)
    task = dict(info.task)
    suffix = Path(model_file).suffix
    return {
        "format": FORMAT,
        "model_file": model_file,
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "runtime": r.runtime or (task.get("target") or {}).get("runtime"),
        "how_to_load": HOW_TO_LOAD.get(suffix, ""),
        "input": input_spec(task, data, suffix),
        "trial": member.number,
        "baseline": member.baseline,
        "plan": member.plan.to_dict(),
        "plan_summary": member.plan.summary(),
        "objectives": member.objectives,
        "measured": {
            "val_accuracy": r.accuracy,
            "latency_ms": r.latency_ms,
            "latency_ratio_vs_fp32": r.latency_ratio,
            "size_bytes": r.size_bytes,  # the size objective: packed payload, no header
            "deploy_bytes": len(data),  # the model file
            "params": r.params,
        },
        "fingerprint": dict(r.fingerprint),
        "reference_fp32": dict(info.reference),
        "task": task,
        "study": {"name": study.study_name, "objectives": list(info.objectives)},
        "autocompress_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def input_spec(task: dict[str, Any], data: bytes, suffix: str) -> dict[str, Any]:
    """Shape, dtype and preprocessing the model expects."""
    spec: dict[str, Any] = {"dtype": "float32", "layout": "NCHW", "batch": "any"}
    if suffix == ".onnx":
        from autocompress.runtimes import onnx_graph_input

        spec["name"], spec["shape"] = onnx_graph_input(data)
    data_cfg = task.get("data") or {}
    if task.get("checkpoint") and data_cfg.get("dataset"):
        spec["preprocessing"] = (
            f"{data_cfg['dataset']} images scaled to [0, 1], then (x - mean) / std with the "
            "training split's mean and std (recorded as input.mean / input.std)"
        )
        spec.update(_normalisation(task))
    else:
        spec["preprocessing"] = "as your data loaders yielded them during the search"
    return spec


def _normalisation(task: dict[str, Any]) -> dict[str, Any]:
    from autocompress.config import DataConfig, build
    from autocompress.data import load_splits

    try:
        splits = load_splits(build(DataConfig, task["data"], "data"))
    except Exception:  # the data set is not on this machine: the manifest just lacks the numbers
        return {}
    return {"mean": float(splits.mean), "std": float(splits.std), "shape_chw": splits.input_shape}


def _prepare(out: Path, overwrite: bool) -> None:
    if (out / MANIFEST).exists() and not overwrite:
        raise ExportError(
            f"{out} already holds an export; choose a new directory or pass --overwrite"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ExportError(
            f"export path {out} is not writable ({exc.strerror}); choose another directory"
        ) from None


def describe_export(manifest_path: Path) -> str:
    """What an export wrote, each size labelled by what it measures."""
    from autocompress.front import fmt_bytes

    manifest = json.loads(manifest_path.read_text())
    measured = manifest["measured"]
    lines = [
        f"-> {manifest_path.parent}",
        f"   {manifest['model_file']}: {fmt_bytes(measured['deploy_bytes'])} "
        "(deploy_bytes: the deployable file the runtime loads)",
    ]
    if "packed_bytes" in measured:
        lines.append(
            f"   {manifest['packed_file']}: {fmt_bytes(measured['packed_bytes'])} "
            "(packed_bytes: k-bit weights + scales; unpack with unpack.py, numpy only)"
        )
    if "shipped_bytes" in measured:
        n_kept = len(manifest["skeleton_kept"])
        kept = f"; {n_kept} int8 weights stay in the skeleton" if n_kept else ""
        lines.append(
            f"   {manifest['skeleton_file']} + {manifest['packed_file']} + {UNPACKER}: "
            f"{fmt_bytes(measured['shipped_bytes'])} (shipped_bytes: the packed route; "
            f"`python {UNPACKER}` there rebuilds {manifest['model_file']} byte for byte{kept})"
        )
    lines.append(f"   {MANIFEST}: figures, plan, fingerprint, input spec, sha256 of each file")
    return "\n".join(lines)


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of an export directory (or a manifest file)."""
    p = Path(path)
    p = p / MANIFEST if p.is_dir() else p
    try:
        manifest = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{p} is not an autocompress export manifest ({exc})") from None
    if manifest.get("format") != FORMAT:
        raise DataError(f"{p} is not an autocompress export manifest (format {FORMAT} expected)")
    return manifest
