"""Atomic writes: a reader sees the old file or the new one, never half of one.

Every file a user keeps (front.json, report.html, exported models and manifests, a trial's
artifact directory) is written to a temporary name beside its final one, then renamed over it;
rename is atomic on POSIX within one file system. The temporary name carries the process id,
because several drivers can share a run directory.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path


def write_bytes(path: Path, data: bytes) -> None:
    _atomic(path, lambda tmp: tmp.write_bytes(data))


def write_text(path: Path, text: str) -> None:
    _atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_with(path: Path, write: Callable[[Path], object]) -> None:
    """``write(tmp)`` writes the file (e.g. ``torch.save``); it then replaces ``path``."""
    _atomic(path, write)


def write_dir(final: Path, fill: Callable[[Path], object]) -> Path:
    """``fill(tmp)`` fills a fresh directory; it then becomes ``final`` (an old one is replaced).

    A crash inside ``fill`` leaves a ``.tmp<pid>`` orphan, never a half-written ``final``.
    """
    tmp = final.with_name(f"{final.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    fill(tmp)
    if final.exists():  # an orphan of a crash after the rename of an earlier attempt
        shutil.rmtree(final)
    tmp.rename(final)
    return final


def _atomic(path: Path, write: Callable[[Path], object]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
