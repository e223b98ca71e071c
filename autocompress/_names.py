"""Registry keys, owned in one leaf module.

Config checks read these lists to validate ``model.name``, ``target.runtime`` and
``search.sampler`` without importing a registry (and with it torch or a runtime library); the
registries themselves (``models._zoo.MODELS``, ``runtimes._REGISTRY``, ``study._samplers``) are
checked against them by the tests, so the two cannot drift. This module imports nothing.
"""

from __future__ import annotations

MODEL_NAMES = (
    "refnet",
    "resnet18",
    "mobilenet_v2",
    "mlp",
    "squeezenet",
    "vit",
    "text_transformer",
)  # autocompress.models
RUNTIME_NAMES = ("onnxruntime", "eager", "inductor", "cuda")  # autocompress.runtimes
SAMPLER_NAMES = ("tpe", "nsga2", "random", "gp")  # autocompress.study._samplers

__all__ = ["MODEL_NAMES", "RUNTIME_NAMES", "SAMPLER_NAMES"]
