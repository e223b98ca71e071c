"""Data sets with a fixed train / validation / test split (see ``_datasets`` for the rules)."""

from autocompress.data._datasets import (
    Splits,
    batches,
    endless_batches,
    endless_rows,
    load_splits,
)
from autocompress.data._inputs import model_input

__all__ = ["Splits", "batches", "endless_batches", "endless_rows", "load_splits", "model_input"]
