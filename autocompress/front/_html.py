"""The front as a small HTML table: what a notebook shows for ``front`` (``_repr_html_``)."""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # _front imports this module: Front._repr_html_ is front_html()
    from autocompress.front._front import Front

COLUMNS = (
    "trial",
    "",
    "accuracy",
    "latency",
    "latency vs fp32",
    "size (packed)",
    "plan",
)


def front_html(front: Front) -> str:
    """A caption (members, hypervolume, floor), then a row per member; knee, baselines marked."""
    knee = front.knee
    floor = "" if front.accuracy_floor is None else f", accuracy floor {front.accuracy_floor:.2%}"
    caption = (
        f"{len(front.members)} front members of {len(front.completed)} completed trials, "
        f"hypervolume {front.hypervolume():.4f}{floor}"
    )
    head = "".join(f"<th>{escape(c)}</th>" for c in COLUMNS)
    body = []
    for m in front.members:
        tag = m.baseline or ("knee" if knee is not None and m.number == knee.number else "")
        ratio = m.latency_ratio
        cells = (
            str(m.number),
            tag,
            f"{m.accuracy:.2%}",
            f"{m.latency_ms:.3f} ms",
            "" if not ratio else f"{ratio:.3f}x ({1 / ratio:.2f}x faster)",
            f"{m.size_bytes / 1e3:.1f} kB",
            m.plan.summary(),
        )
        body.append("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>")
    return (
        f"<table><caption>{escape(caption)}</caption><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
    )
