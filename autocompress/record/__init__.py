"""What a trial produced and what the study stores about it, typed.

``TrialResult`` is the worker's measured output (``run_trial`` returns it in a ``TrialOutput``
beside the bytes that ship); ``_attrs`` owns every user-attribute key of a study and its trials,
with typed readers (``read_trial``, ``read_study``) and writers. Below the worker, the front and
the driver, which all read and write these records.
"""

from __future__ import annotations

from autocompress.record import _attrs as attrs
from autocompress.record._attrs import (
    DriverStamp,
    StudyRecord,
    StudyStamp,
    TrialRecord,
    read_study,
    read_trial,
)
from autocompress.record._result import (
    SCHEME_LEGEND,
    FinetuneRecord,
    LayerRecord,
    Retime,
    TrialOutput,
    TrialResult,
    objective_values,
)
from autocompress.record._rung import Promotion, Rung

__all__ = [
    "SCHEME_LEGEND",
    "DriverStamp",
    "FinetuneRecord",
    "LayerRecord",
    "Promotion",
    "Retime",
    "Rung",
    "StudyRecord",
    "StudyStamp",
    "TrialOutput",
    "TrialRecord",
    "TrialResult",
    "attrs",
    "objective_values",
    "read_study",
    "read_trial",
]
