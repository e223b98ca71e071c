"""``import autocompress`` must not import ray or plotly, nor initialise CUDA."""

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
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_search_machinery_does_not_import_ray_or_plotly() -> None:
    code = (
        "import sys, autocompress.study, autocompress.worker._trial, autocompress.deploy\n"
        "import autocompress.cli, autocompress._api\n"
        "import torch\n"
        "print(','.join(m for m in ('ray', 'plotly') if m in sys.modules), "
        "torch.cuda.is_initialized())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False"]
