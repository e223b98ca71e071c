"""``autocompress dashboard``: optuna-dashboard on a study's storage, on 127.0.0.1 by default.

The dashboard has no authentication, so it listens on the loopback interface unless the user
names another host explicitly (``--host 0.0.0.0`` is their decision, and the message says so).
"""

from __future__ import annotations

from pathlib import Path

from autocompress.errors import AutocompressError

DEFAULT_HOST = "127.0.0.1"


def serve(storage: str, host: str = DEFAULT_HOST, port: int = 8080) -> None:
    """Serve optuna-dashboard until interrupted."""
    try:
        from optuna_dashboard import run_server
    except ImportError:
        raise AutocompressError(
            "the dashboard needs optuna-dashboard: pip install optuna-dashboard"
        ) from None
    from autocompress.study import load_stored_study, open_storage, redact

    load_stored_study(storage)  # a clear error for a storage with no study, before a server
    backend = open_storage(storage, Path("."))
    backend = getattr(backend, "inner", backend)  # the dashboard reads; no outage retries
    print(f"dashboard for {redact(storage)} on http://{host}:{port} (Ctrl-C stops)", flush=True)
    if host not in (DEFAULT_HOST, "localhost", "::1"):
        print(f"warning: listening on {host}: anyone who can reach it sees the study", flush=True)
    run_server(backend, host=host, port=port)
