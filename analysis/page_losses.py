"""Where a page's history has holes (the page model's `gap`, `lost_between`,
`unseen`; analysis/model.py): events lost between two of its rows, and the
`lost` rows of a stopped walk that name it or a range it lies in.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt

from pageref.analysis import segments as seg
from pageref.analysis.columns import Columns, K
from pageref.analysis.lost_ranges import covered_by_lost_ranges
from pageref.analysis.ref_rows import previous_rows

Bool = npt.NDArray[np.bool_]
I64 = npt.NDArray[np.int64]


@dataclasses.dataclass
class Holes:
    gap: Bool             # lost events since the page's previous ordinary row (False
                          # on a ref row: ref rows move no gap, ref_rows.py)
    gap_any: Bool | None  # since the previous row of any kind (None: no ref rows)
    lost_between: I64     # how many (0 unknown); on a page's own lost row, its refs
    unseen: Bool          # at or after a `lost` row naming the page (or its range)
    lost_pos: I64         # file positions of the CPU-wide `lost` rows, time order


def page_losses(cols: Columns, idx: I64, pfn: I64, seq: I64, page_starts: Bool,
                k: np.ndarray, refs: np.ndarray, lost_ranks: I64, by_ts: I64 | None,
                is_ref: Bool) -> Holes:
    """The holes of every per-page row (rows in (page, time) order: file
    positions `idx`, time ranks `seq`); `lost_ranks` are the time ranks of the
    CPU-wide lost rows."""
    m = len(idx)
    any_ref = bool(is_ref.any())
    prev = previous_rows(is_ref, page_starts)
    lost_pos = lost_ranks if by_ts is None else by_ts[lost_ranks]
    gap_any = None
    if len(lost_ranks):
        lr = np.searchsorted(lost_ranks, seq)          # lost rows before each event
        prev_lr = np.where(prev >= 0, lr[np.maximum(prev, 0)], -1)
        gap = (prev >= 0) & (lr > prev_lr)
        lc_cum = np.concatenate([[0], np.cumsum(cols.count[lost_pos])])
        lc = lc_cum[lr]
        lost_between = np.where(gap, lc - lc[np.maximum(prev, 0)], 0)
        if any_ref:
            prev_any = seg.shift(lr, page_starts, -1)
            gap_any = (prev_any >= 0) & (lr > prev_any)
        del lr, prev_lr, lc
    else:
        gap = np.zeros(m, dtype=bool)
        lost_between = np.broadcast_to(np.int64(0), (m,))
        if any_ref:
            gap_any = gap.copy()
    # The page's own losses: a gap at the row itself (the refcount is not
    # carried across it), and every later row of the page is `unseen`.
    page_lost = k == K["lost"]
    if page_lost.any():
        gap = gap | page_lost
        lost_between = np.where(page_lost, refs, lost_between)
        unseen = seg.cumsum(page_lost.view(np.int8), page_starts) > 0
        covered = covered_by_lost_ranges(cols, idx, pfn, seq, page_starts, page_lost)
        if covered is not None:
            # the first row after the range's loss breaks inference as a gap does
            gap = gap | (covered & ~np.where(prev >= 0, covered[np.maximum(prev, 0)], False))
            unseen = unseen | covered
            if gap_any is not None:
                gap_any |= covered & ~seg.shift(covered, page_starts, False)
        if gap_any is not None:
            gap_any |= page_lost
    else:
        unseen = np.broadcast_to(np.False_, (m,))
    if any_ref:
        # The detectors see a ref row as a row with no hole before it (the
        # hole shows on the next ordinary row); gap_any has the ref rows' own.
        gap = gap & ~is_ref
        lost_between = np.where(is_ref, 0, lost_between)
    return Holes(gap, gap_any, lost_between, unseen, lost_pos)
