"""Per-page reference state rebuilt from a trace: the model every detector and
`df_history` read.

Events that name a page are put in (pfn, time) order; for each we compute, with
vectorised numpy over contiguous per-page runs (analysis/segments.py):

- `w`, the pin weight: the header's pin bias for a small page (order 0/absent),
  1 for a large folio (its pins add `refs` to the refcount and go to _pincount);
- `idle`, the idle refcount of the page's pgmap type (header; 0 where unknown);
- the refcount before each event (observed where the event carries `refcount`,
  otherwise carried forward from the last observation plus the deltas seen
  since, never across a gap of lost events) and after it;
- P and G, the pins and gets outstanding as counted from the trace's own
  events, never below zero (releases of references taken before the trace
  began are ignored) and reset when the page is freed (a `free` ends a page's
  life: what was outstanding then is reported by free_while_referenced);
- `gap`: events were lost (a `lost` row) between this event and the previous
  event of the same page.

One rule is sequential: a `put` on a pinned page that leaves the refcount below
`idle + P*w` is a pin released through put_page (pin_put_mismatch) and counts
as that pin's release. A first pass ignores the rule; only the page lives with a
candidate put are replayed event by event (true mismatches are a subset of the
first pass's candidates, since the rule can only lower P).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from pageref.analysis import segments as seg
from pageref.analysis.columns import PGMAP, Columns, K
from pageref.trace.schema import PGMAP_TYPES


@dataclasses.dataclass
class PageModel:
    cols: Columns
    seq_of: np.ndarray  # file position -> rank in (ts_ns, file position) order
    lost_rows_before: np.ndarray  # by rank: `lost` rows strictly before it
    lost_count_before: np.ndarray  # by rank: events those rows say were lost
    trace_start: int
    trace_end: int
    threshold_ns: int
    # Per-page view, sorted by (pfn, rank). `idx` maps back to file positions.
    idx: np.ndarray
    seq: np.ndarray
    pfn: np.ndarray
    kind: np.ndarray
    ts: np.ndarray
    refs: np.ndarray
    w: np.ndarray
    idle: np.ndarray
    pgmap: np.ndarray
    delta: np.ndarray
    page_starts: np.ndarray
    life_starts: np.ndarray
    life_first: np.ndarray  # first per-page row of each row's page life
    observed: np.ndarray
    known: np.ndarray
    before: np.ndarray
    after: np.ndarray
    pins_before: np.ndarray
    pins_after: np.ndarray
    gets_before: np.ndarray
    gets_after: np.ndarray
    mismatch: np.ndarray
    gap: np.ndarray
    lost_between: np.ndarray

    @property
    def header(self):
        return self.cols.header

    def page_range(self, pfn: int) -> tuple[int, int]:
        """[lo, hi) of the page's rows in the per-page view."""
        lo = int(np.searchsorted(self.pfn, pfn, side="left"))
        hi = int(np.searchsorted(self.pfn, pfn, side="right"))
        return lo, hi

    def row(self, j: int) -> int:
        """File row position of per-page row j."""
        return int(self.cols.rows()[self.idx[j]])

    def rows_of(self, js) -> list[int]:
        r = self.cols.rows()
        return [int(r[self.idx[j]]) for j in js]


def _sort_pages(pfn: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """Order of the per-page rows by (pfn, rank), as indices into pfn/rank."""
    if not len(pfn):
        return np.zeros(0, dtype=np.int64)
    lo, hi = int(pfn.min()), int(pfn.max())
    nbits = max(int(rank.max()).bit_length(), 1)
    if (hi - lo).bit_length() + nbits <= 62:
        # One packed int64 key sorts much faster than a two-key lexsort, and the
        # keys are unique so stability does not matter.
        key = ((pfn - lo) << nbits) | rank
        return np.argsort(key)
    return np.lexsort((rank, pfn))


def build(cols: Columns, threshold_ns: int) -> PageModel:
    h = cols.header
    n = cols.n
    kind = cols.kind
    # Events from several CPUs' buffers can be slightly out of order: sort by
    # time, stably, so equal timestamps keep file order.
    by_ts = np.argsort(cols.ts, kind="stable")
    seq_of = np.empty(n, dtype=np.int64)
    seq_of[by_ts] = np.arange(n, dtype=np.int64)

    is_lost = kind[by_ts] == K["lost"]
    lost_rows_before = np.cumsum(is_lost, dtype=np.int64) - is_lost
    lost_counts = np.where(is_lost, cols.count[by_ts], 0)
    lost_count_before = np.cumsum(lost_counts, dtype=np.int64) - lost_counts
    del is_lost, lost_counts

    sel = np.flatnonzero(cols.has_pfn & (kind != K["lost"]))
    order = _sort_pages(cols.pfn[sel], seq_of[sel])
    idx = sel[order]
    del sel, order
    seq = seq_of[idx]
    pfn = cols.pfn[idx]
    k = kind[idx]
    refs = cols.refs[idx].astype(np.int64)
    ts = cols.ts[idx]

    page_starts = seg.run_starts(pfn)
    is_free = k == K["free"]
    life_starts = page_starts.copy()
    if len(k):
        life_starts[1:] |= is_free[:-1]

    # The page's pgmap type: the first event that names it decides for all its
    # events (puts from generic paths often do not know it).
    pg = cols.pgmap[idx]
    firsts = np.flatnonzero(page_starts)
    has_pg = np.where(pg >= 0, np.arange(len(pg)), len(pg))
    first_pg = np.minimum.reduceat(has_pg, firsts) if len(pg) else has_pg
    pg_page = np.where(first_pg < len(pg), pg[np.minimum(first_pg, max(len(pg) - 1, 0))], -1)
    pgmap = pg_page[seg.segment_ids(page_starts)].astype(np.int8)
    idle_lut = np.array([h.idle_for(t) for t in PGMAP_TYPES] + [0], dtype=np.int64)
    idle = idle_lut[pgmap]  # -1 indexes the trailing 0: unknown type idles at 0

    order_col = cols.order[idx]
    w = np.where(order_col > 0, 1, h.pin_bias).astype(np.int64)
    is_get, is_pin = k == K["get"], k == K["pin"]
    is_put, is_unpin = k == K["put"], k == K["unpin"]
    delta = np.zeros(len(k), dtype=np.int64)
    delta = np.where(is_get, refs, delta)
    delta = np.where(is_pin, refs * w, delta)
    delta = np.where(is_put, -refs, delta)
    delta = np.where(is_unpin, -refs * w, delta)
    d_pins = np.where(is_pin, refs, 0) - np.where(is_unpin, refs, 0)
    d_gets = np.where(is_get, refs, 0) - np.where(is_put, refs, 0)

    pins_after = seg.clamped_cumsum(d_pins, life_starts)
    pins_before = seg.shift(pins_after, life_starts, 0)
    gets_after = seg.clamped_cumsum(d_gets, life_starts)
    gets_before = seg.shift(gets_after, life_starts, 0)
    del d_pins, d_gets

    # Lost events between this event and the page's previous one.
    lr = lost_rows_before[seq]
    prev_lr = seg.shift(lr, page_starts, -1)
    gap = (prev_lr >= 0) & (lr > prev_lr)
    lc = lost_count_before[seq]
    lost_between = np.where(gap, lc - seg.shift(lc, page_starts, 0), 0)
    del lr, prev_lr, lc

    # Refcount before each event: observed, else inferred from the last
    # observation in the same run (a run restarts at an observation or a gap).
    observed = cols.has_refcount[idx]
    run = page_starts | observed | gap
    first = seg.segment_first_index(run)
    known = observed[first]
    excl = seg.cumsum(delta, run) - delta
    before = np.where(known, cols.refcount[idx][first].astype(np.int64) + excl, 0)
    del first, excl, run
    after = before + delta

    # pin_put_mismatch candidates (first pass); see the module docstring.
    mismatch = np.zeros(len(k), dtype=bool)
    cand = is_put & observed & (pins_before > 0) & (before - refs < idle + pins_before * w)
    if cand.any():
        life_id = seg.segment_ids(life_starts)
        life_first = np.flatnonzero(life_starts)
        life_end = np.append(life_first[1:], len(k))
        for life in np.unique(life_id[cand]):
            a, b = int(life_first[life]), int(life_end[life])
            _replay_life(a, b, k, refs, w, idle, before, observed, pins_before, pins_after,
                         gets_before, gets_after, mismatch)
    # A free ends the page's life: nothing is outstanding after it.
    pins_after[is_free] = 0
    gets_after[is_free] = 0

    ts_all = cols.ts
    end = int(ts_all.max()) if n else 0
    start = int(ts_all.min()) if n else 0
    if h.end_ns is not None:
        end = max(end, int(h.end_ns))
    if h.start_ns is not None and n:
        start = min(start, int(h.start_ns))
    return PageModel(
        cols=cols, seq_of=seq_of, lost_rows_before=lost_rows_before,
        lost_count_before=lost_count_before, trace_start=start, trace_end=end,
        threshold_ns=int(threshold_ns), idx=idx, seq=seq, pfn=pfn, kind=k, ts=ts, refs=refs,
        w=w, idle=idle, pgmap=pgmap, delta=delta, page_starts=page_starts,
        life_starts=life_starts, life_first=seg.segment_first_index(life_starts),
        observed=observed, known=known, before=before, after=after,
        pins_before=pins_before, pins_after=pins_after, gets_before=gets_before,
        gets_after=gets_after, mismatch=mismatch, gap=gap, lost_between=lost_between,
    )


def _replay_life(a, b, k, refs, w, idle, before, observed, pins_before, pins_after,
                 gets_before, gets_after, mismatch) -> None:
    """Recount P and G over one page life [a, b) applying the mismatch rule."""
    P = G = 0
    get, pin, put, unpin = K["get"], K["pin"], K["put"], K["unpin"]
    for j in range(a, b):
        kj, r = k[j], int(refs[j])
        pins_before[j], gets_before[j] = P, G
        if kj == pin:
            P += r
        elif kj == unpin:
            P = max(0, P - r)
        elif kj == get:
            G += r
        elif kj == put:
            if P > 0 and observed[j] and before[j] - r < idle[j] + P * w[j]:
                mismatch[j] = True
                P = max(0, P - r)
            else:
                G = max(0, G - r)
        pins_after[j], gets_after[j] = P, G


PGMAP_NAMES = {code: name for name, code in PGMAP.items()}
