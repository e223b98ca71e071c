"""The digits set the tests run on: read from scikit-learn's shipped CSV without importing it."""

from __future__ import annotations

import numpy as np


def test_digits_read_without_sklearn_equal_load_digits() -> None:
    from sklearn.datasets import load_digits

    from autocompress.data._datasets import _digits_arrays

    pixels, target = _digits_arrays()
    digits = load_digits()
    assert np.array_equal(pixels, digits.images) and np.array_equal(target, digits.target)
