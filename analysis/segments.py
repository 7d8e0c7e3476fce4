"""Generic vectorised helpers over *segments*: runs of consecutive rows of a sorted
array that belong together (one page, one page life, ...).

Every function takes `starts`, a boolean array that is True on the first row of
each segment (row 0 must be a start), and works in O(n) numpy operations: no
Python loop per row. Nothing here knows about pages or refcounts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def run_starts(*keys: np.ndarray) -> np.ndarray:
    """True where any of `keys` differs from the previous row (and on row 0)."""
    n = len(keys[0])
    starts = np.zeros(n, dtype=bool)
    if n:
        starts[0] = True
        for k in keys:
            starts[1:] |= k[1:] != k[:-1]
    return starts


def segment_ids(starts: np.ndarray) -> np.ndarray:
    """0-based segment number of each row."""
    return np.cumsum(starts, dtype=np.int64) - 1


def segment_first_index(starts: np.ndarray) -> np.ndarray:
    """Index of the first row of each row's segment."""
    idx = np.where(starts, np.arange(len(starts), dtype=np.int64), 0)
    return np.maximum.accumulate(idx) if len(idx) else idx


def segment_last_index(starts: np.ndarray) -> np.ndarray:
    """Index of the last row of each row's segment."""
    n = len(starts)
    if not n:
        return np.zeros(0, dtype=np.int64)
    ends = np.zeros(n, dtype=bool)
    ends[:-1] = starts[1:]
    ends[-1] = True
    idx = np.where(ends, np.arange(n, dtype=np.int64), n)
    return np.minimum.accumulate(idx[::-1])[::-1]


def cumsum(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Inclusive running sum that restarts at each segment start."""
    v = np.asarray(values, dtype=np.int64)
    cs = np.cumsum(v)
    if not len(v):
        return cs
    before = cs - v  # exclusive sum at each row
    return cs - before[segment_first_index(starts)]


def cummin(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Running minimum that restarts at each segment start (int64)."""
    v = np.asarray(values, dtype=np.int64)
    if not len(v):
        return v.copy()
    span = int(v.max()) - int(v.min()) + 1
    nseg = int(starts.sum())
    if span * nseg < (1 << 62):
        # Shift each later segment below every earlier one, so a global running
        # minimum never carries a value across a segment boundary.
        shift = segment_ids(starts) * span
        return np.minimum.accumulate(v - shift) + shift
    return pd.Series(v).groupby(segment_ids(starts)).cummin().to_numpy()


def clamped_cumsum(deltas: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """x[i] = max(0, x[i-1] + deltas[i]) with x = 0 before each segment.

    A counter that cannot go below zero (releases of things taken before the
    trace began are ignored). Closed form of the Lindley recursion:
    x = S - min(0, running min of S), S the segment's running sum.
    """
    s = cumsum(deltas, starts)
    return s - np.minimum(cummin(s, starts), 0)


def shift(values: np.ndarray, starts: np.ndarray, fill) -> np.ndarray:
    """The previous row's value within the segment; `fill` on segment starts."""
    out = np.empty_like(values)
    if len(values):
        out[1:] = values[:-1]
        out[starts] = fill
    return out


def last_valid_index(valid: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Index of the latest row at or before each row, in the same segment, where
    `valid` is True; -1 where there is none."""
    n = len(valid)
    if not n:
        return np.zeros(0, dtype=np.int64)
    idx = np.where(valid, np.arange(n, dtype=np.int64), -1)
    idx = np.maximum.accumulate(idx)
    idx[idx < segment_first_index(starts)] = -1
    return idx


def next_true_index(flag: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Index of the first row strictly after each row, in the same segment, where
    `flag` is True; -1 where there is none."""
    n = len(flag)
    if not n:
        return np.zeros(0, dtype=np.int64)
    idx = np.where(flag, np.arange(n, dtype=np.int64), n)
    nxt = np.empty(n, dtype=np.int64)
    nxt[:-1] = np.minimum.accumulate(idx[::-1])[::-1][1:]
    nxt[-1] = n
    nxt[nxt > segment_last_index(starts)] = -1
    return nxt


def any_per_segment(flag: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """For each row, whether any row of its segment has `flag`."""
    counts = np.add.reduceat(flag.astype(np.int64), np.flatnonzero(starts)) if len(flag) else \
        np.zeros(0, dtype=np.int64)
    return (counts > 0)[segment_ids(starts)]
