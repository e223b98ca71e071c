"""The benchmarks are scripts run from the repository root (``python benchmarks/fmnist.py``),
which puts ``benchmarks/`` first on ``sys.path``; their tests import them the same way, so a
script and the modules beside it (``_fmnist_verdicts`` and the rest) resolve as they do when run.
"""

from __future__ import annotations

import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))
