"""PNG export: kaleido's log records (and its asyncio loop's) go to our debug log, not stderr.

Issue #20: one of four ``report --png`` runs printed a kaleido traceback on stderr and exited 0.
It did not reproduce here (12 runs in a row, 4 at once); these made-up figures log what such a
run logs, through the loggers kaleido, choreographer, the browser's stderr and asyncio use.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest

from autocompress.deploy._report import write_pngs
from autocompress.errors import AutocompressError


class NoisyFigure:
    layout = SimpleNamespace(height=None)

    def __init__(self, error: str | None = None) -> None:
        self.error = error

    def write_image(self, path: str, width: int, height: int) -> None:
        try:
            raise RuntimeError("Task exception was never retrieved")
        except RuntimeError:
            logging.getLogger("asyncio").exception("Task exception was never retrieved")
        logging.getLogger("choreographer.browser_async").warning("Browser closed early")
        logging.getLogger("browser_proc").error("[ERROR:gpu_init.cc] Passthrough is not supported")
        if self.error:
            raise ValueError(self.error)
        Path(path).write_bytes(b"\x89PNG")


@pytest.fixture(autouse=True)
def browser(monkeypatch) -> None:
    monkeypatch.setenv("BROWSER_PATH", "/bin/true")  # the figures above draw nothing


def test_kaleido_records_go_to_the_debug_log(tmp_path, capfd, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="autocompress.deploy.png")
    written = write_pngs({"a": NoisyFigure(), "b": NoisyFigure()}, tmp_path / "r")
    assert [p.name for p in written] == ["r-a.png", "r-b.png"]
    assert capfd.readouterr().err == ""
    ours = [r for r in caplog.records if r.name == "autocompress.deploy.png"]
    assert len(ours) == 6 and all(r.levelno == logging.DEBUG for r in ours)
    assert not [r for r in caplog.records if r.name.split(".")[0] in ("asyncio", "browser_proc")]
    # and they are left as they were found
    assert logging.getLogger("asyncio").propagate and not logging.getLogger("asyncio").handlers


def test_a_png_that_fails_is_one_line(tmp_path, capfd) -> None:
    error = "Failed to start Kaleido subprocess. Error stream:\n[0308:FATAL] Check failed\n..."
    with pytest.raises(AutocompressError) as raised:
        write_pngs({"a": NoisyFigure(error)}, tmp_path / "r")
    assert (
        str(raised.value)
        == "PNG r-a.png failed: Failed to start Kaleido subprocess. Error stream:"
    )
    assert capfd.readouterr().err == ""
