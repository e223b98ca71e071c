"""Models to compress: a registry of builders and the cached fp32 reference.

``available_models()`` is light (no torch import) so configs can be validated cheaply.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from autocompress._names import MODEL_NAMES  # the registry's keys (``_zoo.MODELS``, a test)

if TYPE_CHECKING:
    from autocompress.models._reference import Reference, load_reference
    from autocompress.models._zoo import MODELS, build_model


def available_models() -> tuple[str, ...]:
    return MODEL_NAMES


def __getattr__(name: str) -> Any:
    if name in ("build_model", "MODELS", "RefNet"):
        from autocompress.models import _zoo

        return getattr(_zoo, name)
    if name in (
        "Reference",
        "load_reference",
        "checkpoint_path",
        "accuracy",
        "read_checkpoint",
        "cache_dir",
    ):
        from autocompress.models import _reference

        return getattr(_reference, name)
    raise AttributeError(name)


__all__ = [
    "MODELS",
    "MODEL_NAMES",
    "Reference",
    "available_models",
    "build_model",
    "load_reference",
]
