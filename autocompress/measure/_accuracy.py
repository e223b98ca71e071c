"""Top-1 accuracy: the one loop every accuracy figure goes through.

The deployable (numpy logits from a runtime), a torch model during a trial or while training the
reference, a sensitivity probe: each passes a ``predict`` callable and (x, y) batches. Each batch
runs inside ``busy()``, so no trial on this machine times while another evaluates.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from autocompress.measure._lock import busy


def top1_accuracy(
    predict: Callable[[Any], Any], batches: Iterable[tuple[Any, Any]], *, limit: int | None = None
) -> float:
    """Fraction of samples whose highest logit is the label.

    Args:
        predict: inputs -> logits (numpy array or CPU tensor), shape (batch, classes).
        batches: (inputs, labels) pairs.
        limit: stop after the batch that reaches this many samples (None: all of them).
    """
    correct = total = 0
    for x, y in batches:
        with busy():
            predicted = np.asarray(predict(x)).argmax(1)
        correct += int((predicted == np.asarray(y)).sum())
        total += len(y)
        if limit is not None and total >= limit:
            break
    return correct / max(1, total)
