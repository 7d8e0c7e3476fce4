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


def _lengths(firsts: np.ndarray, n: int) -> np.ndarray:
    return np.diff(np.append(firsts, n))


def segment_first_index(starts: np.ndarray) -> np.ndarray:
    """Index of the first row of each row's segment."""
    firsts = np.flatnonzero(starts)
    return np.repeat(firsts, _lengths(firsts, len(starts)))


def segment_last_index(starts: np.ndarray) -> np.ndarray:
    """Index of the last row of each row's segment."""
    firsts = np.flatnonzero(starts)
    lengths = _lengths(firsts, len(starts))
    return np.repeat(firsts + lengths - 1, lengths)


def cumsum(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Inclusive running sum (int64) that restarts at each segment start."""
    v = np.array(values, dtype=np.int64)  # a copy: adjusted in place below
    if not len(v):
        return v
    firsts = np.flatnonzero(starts)
    if len(firsts) > 1:
        # Subtract each segment's total from the first row of the next one: one
        # plain running sum then restarts at every segment.
        totals = np.add.reduceat(v, firsts)
        v[firsts[1:]] -= totals[:-1]
    np.cumsum(v, out=v)
    return v


def cummin(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Running minimum (int64) that restarts at each segment start."""
    v = np.asarray(values, dtype=np.int64)
    if not len(v):
        return v.copy()
    span = int(v.max()) - int(v.min()) + 1
    firsts = np.flatnonzero(starts)
    if span * len(firsts) < (1 << 62):
        # Shift each later segment below every earlier one, so a global running
        # minimum never carries a value across a segment boundary.
        shift = np.repeat(np.arange(len(firsts), dtype=np.int64) * span,
                          _lengths(firsts, len(v)))
        out = v - shift
        np.minimum.accumulate(out, out=out)
        out += shift
        return out
    return pd.Series(v).groupby(segment_ids(starts)).cummin().to_numpy()


def clamped_cumsum(deltas: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """x[i] = max(0, x[i-1] + deltas[i]) with x = 0 before each segment.

    A counter that cannot go below zero (releases of things taken before the
    trace began are ignored). Closed form of the Lindley recursion:
    x = S - min(0, running min of S), S the segment's running sum.
    """
    s = cumsum(deltas, starts)
    if not len(s) or s.min() >= 0:
        return s  # never dipped below zero: nothing to clamp
    s -= np.minimum(cummin(s, starts), 0)
    return s


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


def next_true_index(flag: np.ndarray, starts: np.ndarray, at=None) -> np.ndarray:
    """Index of the first row strictly after each row (or each row in `at`), in
    the same segment, where `flag` is True; -1 where there is none."""
    n = len(flag)
    rows = np.arange(n, dtype=np.int64) if at is None else np.asarray(at, dtype=np.int64)
    trues = np.flatnonzero(flag)
    if not n or not len(rows) or not len(trues):
        return np.full(len(rows), -1, dtype=np.int64)
    k = np.searchsorted(trues, rows, side="right")
    nxt = np.where(k < len(trues), trues[np.minimum(k, len(trues) - 1)], -1)
    firsts = np.flatnonzero(starts)
    seg_end = np.append(firsts[1:], n)[np.searchsorted(firsts, rows, side="right") - 1]
    nxt[nxt >= seg_end] = -1
    return nxt


def any_per_segment(flag: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """For each row, whether any row of its segment has `flag`."""
    counts = np.add.reduceat(flag.astype(np.int64), np.flatnonzero(starts)) if len(flag) else \
        np.zeros(0, dtype=np.int64)
    return (counts > 0)[segment_ids(starts)]
