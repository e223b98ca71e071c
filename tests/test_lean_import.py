"""``import autocompress`` must not import ray or plotly, nor initialise CUDA; loading the
digits set must not import sklearn (3.5 s per process)."""

from __future__ import annotations

import subprocess
import sys


def test_import_is_lean() -> None:
    code = (
        "import sys, autocompress\n"
        "names = ('ray', 'plotly', 'torch', 'optuna', 'onnxruntime')\n"
        "heavy = [m for m in names if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = _python(code)
    assert out.stdout.strip() == ""


def test_search_machinery_does_not_import_ray_or_plotly() -> None:
    code = (
        "import sys, autocompress.study, autocompress.worker._trial, autocompress.deploy\n"
        "import autocompress.cli, autocompress._api\n"
        "import torch\n"
        "print(','.join(m for m in ('ray', 'plotly') if m in sys.modules), "
        "torch.cuda.is_initialized())\n"
    )
    out = _python(code)
    assert out.stdout.split() == ["False"]


def test_loading_digits_does_not_import_sklearn() -> None:
    code = (
        "import sys; from autocompress.config import DataConfig; "
        "from autocompress.data import load_splits; "
        "s = load_splits(DataConfig(dataset='digits', val_size=300)); "
        "print(len(s.train_x) + len(s.val_x), 'sklearn' in sys.modules)"
    )
    out = _python(code)
    assert out.stdout.split() == ["1497", "False"]


def _python(code: str) -> subprocess.CompletedProcess[str]:
    """``code`` run in a fresh interpreter (what a CLI process or worker imports from scratch)."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
