"""Reducing a plotted series to a bounded number of points while keeping its
shape (generic: no domain logic)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def minmax_indices(y: np.ndarray, max_points: int, keep: np.ndarray | None = None) -> np.ndarray:
    """Indices of at most ~max_points points of series y keeping its shape: the
    first, last, min and max of each of max_points/4 buckets, plus `keep`."""
    n = len(y)
    if n <= max_points:
        return np.arange(n)
    kept = np.asarray([] if keep is None else keep, dtype=np.int64)
    kept = kept[(kept >= 0) & (kept < n)][: max_points // 10]
    buckets = max(1, (max_points - len(kept)) // 4)
    edges = np.linspace(0, n, buckets + 1).astype(np.int64)
    idx = [kept]
    starts, ends = edges[:-1], edges[1:]
    ok = ends > starts
    starts, ends = starts[ok], ends[ok]
    idx.append(starts)
    idx.append(ends - 1)
    # argmin/argmax per bucket via reduceat on (value, -index) keys
    yv = np.asarray(y, dtype=np.float64)
    mins = np.minimum.reduceat(yv, starts)
    maxs = np.maximum.reduceat(yv, starts)
    bucket_of = np.repeat(np.arange(len(starts)), ends - starts)
    pos = np.arange(n)
    is_min = yv == mins[bucket_of]
    is_max = yv == maxs[bucket_of]
    # first position in each bucket reaching the min / max
    for mask in (is_min, is_max):
        first = pd.Series(pos[mask]).groupby(bucket_of[mask]).first().to_numpy()
        idx.append(first)
    return np.unique(np.concatenate(idx))


def finite_list(a: np.ndarray) -> list[float | None]:
    """A float series as a list, None where it is not finite (not drawn)."""
    return [None if not np.isfinite(v) else float(v) for v in a]
