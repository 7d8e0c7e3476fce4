"""`ref` rows in the page model (analysis/model.py): one change of a page's
refcount as the kernel's own page_ref tracepoints reported it (trace format
version 2, docs/trace-format.md).

A ref row is the record of a change that an ordinary row (get, pin, put,
unpin) may also name, so the model never counts it as a reference taken or
dropped, and the detectors read the ordinary rows exactly as they would
without it: the refcount inferred for an ordinary row is carried over ref rows
as if they were not there, and a loss is placed between an ordinary row and
the page's previous ordinary row. What the ref rows add is the kernel's count
itself: their own before and after (`refcount`, `refcount_after`), and, for
an ordinary row that recorded none, the count the page's latest ref row left
(`exact_view`): every change of the page fires one, so that is the count at
the row's time, not an inference.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from pageref.analysis import segments as seg
from pageref.analysis.columns import Columns, K

if TYPE_CHECKING:
    from pageref.analysis.model import PageModel

I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]


def previous_rows(is_ref: Bool, page_starts: Bool) -> I64:
    """Per per-page row, the earlier row of the page it is compared with for
    losses: the previous ordinary row for an ordinary row, the previous row for
    a ref row; -1 where there is none."""
    n = len(is_ref)
    ar = np.arange(n, dtype=np.int64)
    prev_any = np.where(page_starts, -1, ar - 1)
    if not is_ref.any():
        return prev_any
    last_ord = seg.last_valid_index(~is_ref, page_starts)   # at or before
    prev_ord = seg.shift(last_ord, page_starts, -1)
    return np.where(is_ref, prev_any, prev_ord)


def set_ref_values(cols: Columns, idx: I64, is_ref: Bool, observed: Bool, before: I64,
                   known: Bool, delta: I64) -> None:
    """Ref rows' own before and after, in place: before = their `refcount`
    (known where recorded: not on a page_ref_set), after = `refcount_after`,
    so delta is the change the kernel reported. The ordinary rows' inference
    passed them by (their delta was 0 to it)."""
    j = np.flatnonzero(is_ref)
    pos = idx[j]
    rc = cols.refcount[pos].astype(np.int64)
    own = observed[j]
    before[j] = np.where(own, rc, 0)
    known[j] = own
    after = cols.refcount_after[pos].astype(np.int64)
    delta[j] = np.where(cols.has_refcount_after[pos], after - before[j], 0)


def exact_view(m: PageModel) -> tuple[I64, Bool]:
    """(before, exact) per per-page row: the refcount before the row as the
    kernel had it where that is known exactly, else the model's inference.

    Exact: the row recorded it; or, on a page with ref rows, the page's latest
    ref row's `refcount_after` with no events lost since (every change fires a
    ref row, so nothing changed the count between); a page_ref_set's before
    the same way. Elsewhere (`exact` False) the value is `m.before`, inferred
    (or unknown where `m.known` is False)."""
    if not m.any_ref:
        return m.before, m.observed
    is_ref = m.kind == K["ref"]
    has_after = m.cols.has_refcount_after[m.idx]
    src = is_ref & has_after
    starts = m.page_starts | (m.gap if m.gap_any is None else m.gap_any)
    # the latest source strictly before each row, in the same loss-free run
    last = seg.last_valid_index(src, starts)
    prev = seg.shift(last, starts, -1)
    carried = ~m.observed & (prev >= 0)
    after_src = m.cols.refcount_after[m.idx[np.maximum(prev, 0)]].astype(np.int64)
    before = np.where(carried, after_src, m.before)
    return before, m.observed | carried
