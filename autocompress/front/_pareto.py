"""Pure Pareto arithmetic on plain arrays: dominance, hypervolume, knee. No Optuna, no plotting.

All functions take points as rows and ``directions`` ("maximize"/"minimize") per column, and
internally turn every objective into one to minimise.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def to_minimization(
    points: np.ndarray | Sequence[Sequence[float]], directions: Sequence[str]
) -> np.ndarray:
    """Negate maximised columns so that smaller is better everywhere."""
    arr = np.asarray(points, dtype=np.float64).reshape(-1, len(directions))
    signs = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    return arr * signs


def dominates(a: np.ndarray, b: np.ndarray) -> bool:
    """``a`` dominates ``b`` (both minimised): no worse anywhere, better somewhere."""
    return bool(np.all(a <= b) and np.any(a < b))


def non_dominated(
    points: np.ndarray | Sequence[Sequence[float]], directions: Sequence[str]
) -> list[int]:
    """Indices of the points that no other point dominates (duplicates are all kept)."""
    arr = to_minimization(points, directions)
    keep = []
    for i, p in enumerate(arr):
        if not any(dominates(q, p) for j, q in enumerate(arr) if j != i):
            keep.append(i)
    return keep


def hypervolume(points_min: np.ndarray, reference: Sequence[float]) -> float:
    """Exact hypervolume dominated by minimised ``points`` and bounded by ``reference``.

    Slicing on the last objective, recursively (HSO); exact and fast enough for the few hundred
    points and two or three objectives a search produces.
    """
    ref = np.asarray(reference, dtype=np.float64)
    pts = np.asarray(points_min, dtype=np.float64).reshape(-1, len(ref))
    pts = pts[np.all(pts < ref, axis=1)]
    if len(pts) == 0:
        return 0.0
    return _hv(pts, ref)


def _hv(pts: np.ndarray, ref: np.ndarray) -> float:
    if pts.shape[1] == 1:
        return float(ref[0] - pts[:, 0].min())
    order = np.argsort(pts[:, -1])
    pts = pts[order]
    volume = 0.0
    for i in range(len(pts)):
        upper = pts[i + 1, -1] if i + 1 < len(pts) else ref[-1]
        depth = upper - pts[i, -1]
        if depth > 0:
            volume += depth * _hv(pts[: i + 1, :-1], ref[:-1])
    return float(volume)


def knee_index(
    points: np.ndarray | Sequence[Sequence[float]], directions: Sequence[str]
) -> int | None:
    """The front point closest to the ideal point after scaling each objective to [0, 1].

    A simple, scale-free notion of "the balanced choice": the point with the smallest Euclidean
    distance to the per-objective best once every objective spans [0, 1] over the front.
    """
    arr = to_minimization(points, directions)
    if len(arr) == 0:
        return None
    lo, hi = arr.min(axis=0), arr.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    scaled = (arr - lo) / span
    return int(np.argmin(np.linalg.norm(scaled, axis=1)))
