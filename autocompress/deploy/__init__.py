"""The deploy wing: what a user does with a finished study. None of it trains.

export (the picked deployable + manifest), verify (test split and re-timed latency), report
(standalone HTML, PNG), dashboard (optuna-dashboard on loopback). Each reads the study and its run
directory only, so a front can be browsed, exported and verified on another machine.
"""

from __future__ import annotations

from autocompress.deploy._dashboard import serve
from autocompress.deploy._export import (
    ExportError,
    artifact_path,
    build_manifest,
    describe_export,
    export,
    read_manifest,
)
from autocompress.deploy._report import write_report
from autocompress.deploy._verify import (
    Candidate,
    Verified,
    candidate_of_export,
    candidates_of_front,
    format_verified,
    read_test_accuracy,
    verify,
    write_verified,
)

__all__ = [
    "Candidate",
    "ExportError",
    "Verified",
    "artifact_path",
    "build_manifest",
    "candidate_of_export",
    "candidates_of_front",
    "describe_export",
    "export",
    "format_verified",
    "read_manifest",
    "read_test_accuracy",
    "serve",
    "verify",
    "write_report",
    "write_verified",
]
