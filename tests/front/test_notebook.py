"""The front and trials as a notebook user meets them (issue #20, item 7).

``repr(front)`` was one 65,621-character line; no ``_repr_html_``, ``len`` or ``to_pandas``;
``load(Path)`` raised a TypeError; ``pick(min_accuracy=89)`` asked for 8900%; ``pick(**request)``
hid its parameters; ``objectives['latency']`` was a ratio with no unit in its name;
``trials_dataframe()`` had no feasible / on_front columns and fp32 bits were NaN.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

import autocompress
from autocompress.front import Front, PickError, accuracy_fraction, build_front
from tests.synthetic import synthetic_study

FLOOR = 0.9
# 0, 1 on the front; 2 fast but below the floor; 3 dominated by 0 (fp32 weights)
TRIALS = [(0.95, 0.9, 9e5, 8), (0.92, 0.5, 5e5, 4), (0.50, 0.1, 1e5, 2), (0.91, 0.95, 9.5e5, None)]


@pytest.fixture
def journal(tmp_path) -> Path:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path = tmp_path / "study.journal"
    synthetic_study(JournalStorage(JournalFileBackend(str(path))), TRIALS, FLOOR)
    return path


def test_front_is_short_to_print_and_renders_as_a_table(journal) -> None:
    front = autocompress.load(journal).front  # a Path, not only a string
    assert len(front) == 2
    text = repr(front)
    assert "\n" not in text and len(text) < 150
    assert text.startswith("Front(2 members of 4 completed trials, hypervolume ")
    assert "accuracy/latency/size" in text
    html = front._repr_html_()
    assert html.count("<tr>") == 3 and "95.00%" in html and "accuracy floor 90.00%" in html
    df = front.to_pandas()
    assert list(df["trial"]) == [0, 1] and df["knee"].sum() == 1
    assert len(repr(front.members[0])) < 120


def test_member_figures_have_named_units(journal) -> None:
    m = build_front(autocompress.load(journal).study).pick(number=1)
    assert (m.accuracy, m.latency_ratio, m.size_bytes) == (0.92, 0.5, 500_000)
    assert m.latency_ms == 0.5 and m.objectives["latency"] == m.latency_ratio


def test_pick_takes_fractions_and_percent_like_the_cli(journal) -> None:
    front = autocompress.load(journal).front
    params = inspect.signature(Front.pick).parameters
    assert not any(p.kind is p.VAR_KEYWORD for p in params.values())
    assert {"number", "max_latency_ms", "min_accuracy", "max_size_bytes", "prefer"} <= set(params)
    assert front.pick(min_accuracy=93).number == 0  # percent, as --min-accuracy 93
    assert front.pick(min_accuracy=0.93).number == 0
    assert front.pick(min_accuracy=91, prefer="size").number == 1
    assert accuracy_fraction(1) == 1.0 and accuracy_fraction(89) == 0.89
    with pytest.raises(PickError, match="closest"):
        front.pick(min_accuracy=1)  # 1 means 100%
    with pytest.raises(PickError, match="not an accuracy"):
        front.pick(min_accuracy=150)


def test_trials_dataframe_has_feasibility_front_and_integer_bits(journal) -> None:
    df = autocompress.load(journal).trials_dataframe()
    assert list(df["on_front"]) == [True, True, False, False]
    assert list(df["feasible"]) == [True, True, False, True]
    assert str(df["bits.fc"].dtype) == "Int64" and list(df["bits.fc"]) == [8, 4, 2, 32]
    assert not any(v is None for column in df.columns for v in df[column])
