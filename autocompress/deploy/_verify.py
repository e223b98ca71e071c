"""Verify deployables after the search: held-out test accuracy and re-measured latency.

The search scores candidates on the validation split and times them while other trials may train
(under the machine-wide lock). ``verify`` loads each deployable again from its file, computes its
accuracy on the *test* split the search never saw, and times it again beside the fp32 reference
with the same protocol, so the user sees search-time and verified figures side by side. The
fingerprint of the verifying machine is compared with the search's: figures from another device
are labelled, never silently compared.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from autocompress.errors import ConfigError

log = logging.getLogger("autocompress.deploy")


@dataclass(frozen=True)
class Verified:
    """Search-time and verified figures of one deployable."""

    trial: int
    baseline: str | None
    val_accuracy: float  # search time (validation split)
    test_accuracy: float  # verified (held-out test split)
    search_latency_ms: float
    verified_latency_ms: float
    search_ratio: float  # latency / fp32 latency at search time
    verified_ratio: float
    same_device: bool  # the verifying fingerprint key equals the search's
    file: str

    @property
    def latency_gap(self) -> float:
        """verified / search-time latency - 1 (0.05 = verified 5% slower)."""
        return self.verified_latency_ms / self.search_latency_ms - 1.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "latency_gap": self.latency_gap}


@dataclass(frozen=True)
class Candidate:
    """What verify needs of one deployable: its file and the figures the search recorded."""

    trial: int
    baseline: str | None
    file: Path
    val_accuracy: float
    latency_ms: float
    latency_ratio: float | None
    fingerprint_key: str | None


def verify(
    task_data: dict[str, Any],
    candidates: Sequence[Candidate],
    *,
    test_loader: Iterable[Any] | None = None,
) -> tuple[list[Verified], float]:
    """Verify each candidate; returns the rows and the fp32 reference's test accuracy.

    ``task_data`` is the study's task (``read_study(study).task`` or an export manifest's
    ``task``). A study made from a user's own model and loaders has no test split we can
    rebuild: pass ``test_loader``.
    """
    from autocompress.measure import top1_accuracy
    from autocompress.runtimes import get_runtime
    from autocompress.worker import Task, time_deployable, trial_context

    task = Task.from_dict(task_data)
    if task.checkpoint is None and test_loader is None:
        raise ConfigError(
            "this study was made from a model and loaders in Python; verify needs the held-out "
            "data: result.verify(test_loader=...) on the SearchResult of autocompress.load(...)"
        )
    ctx = trial_context(task)
    test = (lambda: iter(test_loader)) if test_loader is not None else ctx.data.test
    if test is None:
        raise ConfigError("the task has no test split; pass test_loader=")
    runtime = get_runtime(task.target.runtime)
    reference_test = top1_accuracy(ctx.reference.predict, test())
    rows = []
    for c in candidates:
        deployable = runtime.load(c.file.read_bytes(), task.target)
        latency, where = time_deployable(deployable, ctx, task)
        rows.append(
            Verified(
                trial=c.trial,
                baseline=c.baseline,
                val_accuracy=c.val_accuracy,
                test_accuracy=top1_accuracy(deployable.predict, test()),
                search_latency_ms=c.latency_ms,
                verified_latency_ms=latency.candidate.median_ms,
                search_ratio=_nan_if_none(c.latency_ratio),
                verified_ratio=_nan_if_none(latency.ratio),
                same_device=c.fingerprint_key == where.get("key"),
                file=str(c.file),
            )
        )
        v = rows[-1]  # one line per candidate as it goes: verifying a front takes minutes
        log.info(
            "verified trial %d: test %.2f%% (val %.2f%%), %.4f ms (search %.4f ms)",
            v.trial, 100 * v.test_accuracy, 100 * v.val_accuracy,
            v.verified_latency_ms, v.search_latency_ms,
        )  # fmt: skip
    return rows, reference_test


def candidates_of_front(
    front: Any, numbers: Sequence[int] | None = None, run_dir: str | Path | None = None
) -> list[Candidate]:
    """The front's members (or the named trials) as candidates."""
    from autocompress.deploy._export import artifact_path

    members = front.members if numbers is None else [front.pick(number=n) for n in numbers]
    return [
        Candidate(
            m.number,
            m.baseline,
            artifact_path(m, run_dir),
            val_accuracy=m.result.accuracy,
            latency_ms=m.result.latency_ms,
            latency_ratio=m.result.latency_ratio,
            fingerprint_key=m.result.fingerprint_key,
        )
        for m in members
    ]


def candidate_of_export(manifest_path: str | Path) -> tuple[dict[str, Any], Candidate]:
    """An export directory's task and candidate (its file checked against the manifest)."""
    import hashlib

    from autocompress.deploy._export import read_manifest
    from autocompress.errors import DataError

    folder = Path(manifest_path)
    folder = folder if folder.is_dir() else folder.parent
    manifest = read_manifest(folder)
    file = folder / manifest["model_file"]
    if not file.exists() or hashlib.sha256(file.read_bytes()).hexdigest() != manifest["sha256"]:
        raise DataError(f"{file} is missing or differs from the one its manifest describes")
    measured = manifest["measured"]
    candidate = Candidate(
        manifest["trial"],
        manifest.get("baseline"),
        file,
        val_accuracy=float(measured["val_accuracy"]),
        latency_ms=float(measured["latency_ms"]),
        latency_ratio=measured["latency_ratio_vs_fp32"],
        fingerprint_key=(manifest.get("fingerprint") or {}).get("key"),
    )
    return manifest["task"], candidate


VERIFIED = "verified.json"  # in the run directory: the report's test-accuracy column


def write_verified(path: str | Path, rows: Sequence[Verified], reference_test: float) -> None:
    """The rows as JSON (``verify --json``, and ``<run_dir>/verified.json`` for the report)."""
    import json

    from autocompress import _files

    data = {"reference_test_accuracy": reference_test, "rows": [r.to_dict() for r in rows]}
    _files.write_text(Path(path), json.dumps(data, indent=2))


def read_test_accuracy(run_dir: str | Path) -> dict[int, float]:
    """Trial number -> verified test accuracy, from ``<run_dir>/verified.json`` (or empty)."""
    import json

    try:
        data = json.loads((Path(run_dir) / VERIFIED).read_text())
    except (OSError, ValueError):
        return {}
    return {int(r["trial"]): float(r["test_accuracy"]) for r in data.get("rows", [])}


def _nan_if_none(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def format_verified(rows: Sequence[Verified], reference_test: float) -> str:
    """Search-time and verified figures side by side, and the largest gaps."""
    header = (
        f"{'trial':>5}  {'':8}{'val acc':>8}  {'test acc':>8}  {'search ms':>9}  "
        f"{'verified ms':>11}  {'gap':>6}  {'x fp32 search':>13}  {'x fp32 verified':>15}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r.trial:>5}  {(r.baseline or '').ljust(8)}{r.val_accuracy:>8.2%}  "
            f"{r.test_accuracy:>8.2%}  {r.search_latency_ms:>9.4f}  "
            f"{r.verified_latency_ms:>11.4f}  {r.latency_gap:>+6.1%}  "
            f"{1 / r.search_ratio:>12.2f}x  {1 / r.verified_ratio:>14.2f}x"
            + ("" if r.same_device else "  (other device)")
        )
    if rows:
        worst = max(rows, key=lambda r: abs(r.latency_gap))
        worst_ratio = max(rows, key=lambda r: abs(r.verified_ratio / r.search_ratio - 1))
        lines.append(
            f"fp32 reference test accuracy {reference_test:.2%}; largest latency gap "
            f"{worst.latency_gap:+.1%} (trial {worst.trial}); largest speedup gap "
            f"{worst_ratio.search_ratio / worst_ratio.verified_ratio - 1:+.1%} "
            f"(trial {worst_ratio.trial})"
        )
    return "\n".join(lines)
