"""The digits set the tests run on: read from scikit-learn's shipped CSV without importing it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np


def test_digits_read_without_sklearn_equal_load_digits() -> None:
    from sklearn.datasets import load_digits

    from autocompress.data._datasets import _digits_arrays

    pixels, target = _digits_arrays()
    digits = load_digits()
    assert np.array_equal(pixels, digits.images) and np.array_equal(target, digits.target)


def test_loading_digits_does_not_import_sklearn() -> None:
    code = (
        "import sys; from autocompress.config import DataConfig; "
        "from autocompress.data import load_splits; "
        "s = load_splits(DataConfig(dataset='digits', val_size=300)); "
        "print(len(s.train_x) + len(s.val_x), 'sklearn' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1497", "False"]
