"""Pages a stopped walk's `lost` row covers besides its own (model.py's
`unseen`): the row names a range of page frames in one row on its first page.
"""

from __future__ import annotations

import numpy as np

from pageref.analysis.columns import Columns


def covered_by_lost_ranges(cols: Columns, idx: np.ndarray, pfn: np.ndarray,
                            seq: np.ndarray, page_starts: np.ndarray,
                            page_lost: np.ndarray) -> np.ndarray | None:
    """Rows of other pages that a stopped walk's `lost` row covers: it names
    pfn .. pfn + count - 1 (its own row is on the first page only, order 0),
    so every page, or large folio, meeting that range is uncertain from the
    row's time on. None when no lost row names more than its own page."""
    rows = np.flatnonzero(page_lost)
    first = pfn[rows]
    end = first + np.maximum(cols.count[idx[rows]], 1)       # exclusive
    wide = end > first + 1
    if not wide.any():
        return None
    first, end, at = first[wide], end[wide], seq[rows[wide]]
    starts = np.flatnonzero(page_starts)
    heads = pfn[starts]
    # a group's span: its head and its largest order (a folio is aligned)
    order = np.maximum.reduceat(np.clip(cols.order[idx], 0, 30).astype(np.int64), starts)
    span_end = heads + (np.int64(1) << order)
    since = np.full(len(starts), np.iinfo(np.int64).max, dtype=np.int64)
    widest = int((span_end - heads).max())
    for f, e, t in zip(first.tolist(), end.tolist(), at.tolist()):
        # groups whose span meets [f, e): heads in (f - widest, e), then exact
        lo = int(np.searchsorted(heads, f - widest + 1, "left"))
        hi = int(np.searchsorted(heads, e, "left"))
        meet = lo + np.flatnonzero(span_end[lo:hi] > f)
        since[meet] = np.minimum(since[meet], t)
    if not (since < np.iinfo(np.int64).max).any():
        return None
    group = np.cumsum(page_starts) - 1
    return seq >= since[group]
