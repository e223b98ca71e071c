"""Run ``autocompress`` CLI processes from one pre-imported fork server (test helper).

The fault-injection tests start ~30 CLI processes that SIGKILL themselves at named points. Each
fresh interpreter spends ~4.5 s importing torch and onnx before it reaches the point under test
(more than half of its life on a 2-core VM). The server imports them once and forks a child per
run; the child is a real, separate process (its own pid, environment, stdout, stderr and exit
status, killed by its own SIGKILL), so what the tests check is unchanged: only the start is
cheaper.

The server computes nothing with torch before forking, so no OpenMP or intra-op thread pool
exists to be copied half-locked into a child.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

# what a search imports lazily; imported (not used) by the server so that children start warm
PRELOAD = (
    "autocompress.cli",
    "autocompress.study",
    "autocompress.worker",
    "autocompress.runtimes",
    "autocompress.backend._prune",
    "autocompress.deploy",
    "torch",
    "onnx",
    "onnxruntime",
    "optuna",
)

_SERVER = r"""
import importlib, json, os, signal, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
replies = os.fdopen(os.dup(1), "w", buffering=1)
print(json.dumps({"ready": True}), file=replies)
for line in sys.stdin:
    job = json.loads(line)
    pid = os.fork()
    if pid == 0:  # the child: a CLI process of its own
        code = 1
        try:
            os.environ.clear()
            os.environ.update(job["env"])
            os.chdir(job["cwd"])
            out = os.open(job["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            err = os.open(job["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(out, 1)
            os.dup2(err, 2)
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            sys.argv = ["autocompress", *job["argv"]]
            from autocompress.cli import main
            code = main(job["argv"])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    print(json.dumps({"pid": pid}), file=replies)
    _, status = os.waitpid(pid, 0)
    code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    print(json.dumps({"returncode": code}), file=replies)
"""


class CliServer:
    """One server process; ``run`` forks a CLI child from it and waits for its exit status."""

    def __init__(self, preload: Sequence[str] = PRELOAD) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _SERVER, *preload],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": _pythonpath()},
        )
        self._folder = Path(tempfile.mkdtemp(prefix="forkcli-"))
        self._buffer = b""
        assert json.loads(self._read(300.0)) == {"ready": True}

    def run(
        self, argv: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 600.0
    ) -> subprocess.CompletedProcess:
        """Like ``subprocess.run([python, -m, autocompress.cli, *argv], capture_output=True)``."""
        out, err = self._folder / "stdout", self._folder / "stderr"
        job = {
            "argv": list(argv),
            "env": dict(os.environ if env is None else env),
            "cwd": os.getcwd(),
            "stdout": str(out),
            "stderr": str(err),
        }
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps(job) + "\n")
        self._proc.stdin.flush()
        pid = json.loads(self._read(30.0))["pid"]
        try:
            code = json.loads(self._read(timeout))["returncode"]
        except TimeoutError:
            os.kill(pid, 9)
            self._read(30.0)
            raise subprocess.TimeoutExpired(argv, timeout) from None
        return subprocess.CompletedProcess(
            list(argv), code, out.read_text(errors="replace"), err.read_text(errors="replace")
        )

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    def _read(self, timeout: float) -> str:
        """The server's next reply line (its pipe read raw: a text reader's buffer would hide
        a second line from ``select``)."""
        assert self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        while b"\n" not in self._buffer:
            ready, _, _ = select.select([fd], [], [], timeout)
            if not ready:
                raise TimeoutError(f"the CLI fork server did not answer within {timeout:.0f} s")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError(f"the CLI fork server exited ({self._proc.wait()})")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()


def _pythonpath() -> str:
    """The repository root first, so the server imports this checkout's package."""
    root = str(Path(__file__).resolve().parents[1])
    return os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])])


_server: CliServer | None = None


def run_cli(
    argv: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 600.0
) -> subprocess.CompletedProcess:
    """Run one CLI process from the session's fork server (started on first use)."""
    global _server
    if _server is None:
        _server = CliServer()
        atexit.register(_server.close)
    return _server.run(argv, env, timeout)
