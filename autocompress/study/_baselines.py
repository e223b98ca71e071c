"""The baselines a search enqueues first: what each kind is made of (see
``BoundSpace.baseline_params``). A user's alternatives without a search, held against every
front: fp32, uniform int8 (static QDQ or, ``int8-dynamic``, ONNX Runtime's dynamic quantization
of the Linear layers), hand-pruned int8, and the plain pipeline (``plain-prune25/50``)."""

from __future__ import annotations

from collections.abc import Sequence

from autocompress.errors import ConfigError

PRUNED_BASELINES = {"int8-prune50": 0.5, "plain-prune25": 0.25, "plain-prune50": 0.5}


def baseline_scheme(choices: Sequence[str], kind: str, source: str) -> str:
    """The Linear scheme a baseline runs where a rule offers a choice: static QDQ, or dynamic
    int8 for ``int8-dynamic`` (what ``quantize_dynamic`` does to a transformer)."""
    want = "dynamic" if kind == "int8-dynamic" else "static"
    if want not in choices:
        raise ConfigError(
            f"{source}: the {kind} baseline runs scheme {want}, which a rule with scheme "
            f"{list(choices)} does not allow; add {want} to its scheme, or drop {kind} from "
            "search.baselines"
        )
    return want
