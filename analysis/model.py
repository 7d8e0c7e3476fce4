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
- `unseen`: a `lost` row naming the page (references a bounded walk could not
  follow) came at or before this row: the page's verdicts from there on are
  uncertain;
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
import functools
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from pageref.analysis import segments as seg
from pageref.analysis.columns import PGMAP, Columns, K
from pageref.analysis.mismatch import replay_mismatches
from pageref.analysis.page_losses import page_losses
from pageref.analysis.ref_rows import exact_view, set_ref_values
from pageref.trace.header import TraceHeader
from pageref.trace.schema import PGMAP_TYPES

if TYPE_CHECKING:
    from pageref.analysis.detectors.busy_episodes import BusyEpisodes


I64 = npt.NDArray[np.int64]
I8 = npt.NDArray[np.int8]
Bool = npt.NDArray[np.bool_]


class Gather:
    """A per-page view of a file-order array, gathered on access (arr[idx[key]]):
    full gathers of 10M-row arrays in page order are the expensive part of the
    model, and most columns are only needed for a few rows."""

    def __init__(self, base: np.ndarray, idx: np.ndarray) -> None:
        self.base, self.idx = base, idx

    def __getitem__(self, key: Any) -> Any:
        return self.base[self.idx[key]]

    def __len__(self) -> int:
        return len(self.idx)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self.base[self.idx]
        return out if dtype is None else out.astype(dtype)


def _const(value: int, n: int, dtype: Any = np.int64) -> np.ndarray:
    """A read-only array of n copies of value, without the memory."""
    return np.broadcast_to(np.asarray(value, dtype=dtype), (n,))


@dataclasses.dataclass(eq=False)
class PageModel:
    """The per-page view: one value per per-page row j, rows sorted by (pfn, time).

    The fields are everything a detector may read; the derived arrays below
    (after, pins_before, gets_*, life_first, seq_of) are computed on first use,
    since many traces need only some of them.
    """

    cols: Columns                # the trace's columns, file order
    by_ts: I64 | None            # file positions in time order (None: file order is)
    trace_start: int             # ns, first event or header start, whichever is earlier
    trace_end: int               # ns, last event or header end, whichever is later
    threshold_ns: int            # T of the threshold detectors
    idx: I64                     # file position of row j
    seq: I64                     # rank of row j in time order
    pfn: I64                     # page (a large folio's head pfn)
    kind: I8                     # kind code (columns.K)
    ts: Gather                   # event time, gathered on access
    refs: I64                    # references taken or dropped (may be a broadcast)
    w: I64                       # pin weight: pin bias, 1 for a large folio
    idle: I64                    # idle refcount of the page's pgmap type
    pgmap: I8                    # pgmap type code of the page (-1 unknown)
    delta: I64                   # the row's effect on the refcount (a ref row: the change
                                 # the kernel reported, which the model does not count)
    page_starts: Bool            # first row of a page
    life_starts: Bool            # first row of a page life (after a free)
    observed: Bool               # the refcount before the row was recorded (by the row)
    known: Bool                  # `before` is known (observed or inferred)
    before: I64                  # refcount before the row (0 where not known)
    pins_after: I64              # P after the row (0 after a free)
    mismatch: Bool               # a put counted as a pin's release
    gap: Bool                    # events were lost between this and the page's previous row
                                 # (previous ordinary row; False on a ref row: ref_rows.py)
    lost_between: I64            # how many (0 unknown); on a page's own lost row, its refs
    unseen: Bool                 # at or after a `lost` row naming this page
    any_free: bool               # some row is a free
    pages: int                   # distinct pages
    lost_seq: I64                # time-order ranks of the CPU-wide `lost` rows, sorted
    lost_ts: I64                 # their times
    any_ref: bool = False        # some row is a `ref` row (analysis/ref_rows.py)
    gap_any: Bool | None = None  # events were lost since the page's previous row of any
                                 # kind (None: the same as gap, a trace without ref rows)
    # Busy episodes (detectors/busy_episodes.py), computed once when a detector asks.
    busy: BusyEpisodes | None = None
    # Set by the engine: verdicts final at or before this time are already out
    # and cannot change, so a detector may leave them out (repeats.merged does);
    # and the records its detectors wrote for findings' first occurrences in
    # earlier passes, by (kind, global row), so a finding still counting
    # repeats is not written again each batch (repeats.merged_arrays).
    emitted_to: int | None = None
    made: dict[tuple[str, int], Any] | None = None

    @property
    def header(self) -> TraceHeader:
        return self.cols.header

    @functools.cached_property
    def after(self) -> I64:
        return self.before + self.delta

    @functools.cached_property
    def exact(self) -> tuple[I64, Bool]:
        """(before, exact): the refcount before each row as the kernel had it,
        where known exactly (recorded, or carried from a ref row), else the
        inference `before` (analysis/ref_rows.py exact_view)."""
        return exact_view(self)

    @functools.cached_property
    def pins_before(self) -> I64:
        """P just before each row (0 at the start of a page life). pins_after is 0
        on a free (the life ends) but P before it is what the previous row left."""
        return seg.shift(self.pins_after, self.life_starts, 0)

    @functools.cached_property
    def gets_after(self) -> I64:
        """G after each row: gets minus puts per page life, never below 0; a put
        counted as a pin's release (mismatch) does not release a get; 0 after a
        free."""
        k = self.kind
        d = (k == K["get"]).view(np.int8) - ((k == K["put"]) & ~self.mismatch).view(np.int8)
        if self.refs.strides != (0,):
            d = d * self.refs
        g = seg.clamped_cumsum(d, self.life_starts)
        if self.any_free:
            g[k == K["free"]] = 0
        return g

    @functools.cached_property
    def gets_before(self) -> I64:
        return seg.shift(self.gets_after, self.life_starts, 0)

    @functools.cached_property
    def life_first(self) -> I64:
        return seg.segment_first_index(self.life_starts)

    @functools.cached_property
    def seq_of(self) -> I64:
        """file position -> rank in (ts_ns, file position) order."""
        n = self.cols.n
        if self.by_ts is None:
            return np.arange(n, dtype=np.int64)
        out = np.empty(n, dtype=np.int64)
        out[self.by_ts] = np.arange(n, dtype=np.int64)
        return out

    @property
    def npages(self) -> int:
        return int(self.page_starts.sum())

    def page_range(self, pfn: int) -> tuple[int, int]:
        """[lo, hi) of the page's rows in the per-page view; for a pfn inside a
        large folio, the folio's rows (keyed by its head pfn)."""
        lo = int(np.searchsorted(self.pfn, pfn, side="left"))
        hi = int(np.searchsorted(self.pfn, pfn, side="right"))
        if lo == hi:
            for order in range(1, 21):
                head = (pfn >> order) << order
                a = int(np.searchsorted(self.pfn, head, side="left"))
                b = int(np.searchsorted(self.pfn, head, side="right"))
                if a < b and head != pfn and int(self.w[a]) == 1:
                    own = self.cols.order[self.idx[a:b]]
                    if (pfn - head) < (1 << int(own.max())):
                        return a, b
        return lo, hi

    def rows_of(self, js: Iterable[int]) -> list[int]:
        """File row positions (trace.events positions) of per-page rows js."""
        r = self.cols.row
        return [int(self.idx[j]) if r is None else int(r[self.idx[j]]) for j in js]


def _group_sort(codes: np.ndarray, ngroups: int) -> np.ndarray:
    """Stable order of `codes` (0..ngroups-1): a counting sort, O(n)."""
    try:
        from pandas._libs import algos

        return algos.groupsort_indexer(codes.astype(np.intp, copy=False), ngroups)[0]
    except (ImportError, AttributeError, TypeError):  # pandas internals moved
        return np.argsort(codes, kind="stable")


# Packed per-event flags, so the page-order gather moves one small array:
# bits 0-3 kind, 4 large folio (order > 0), 5 refcount observed, 6-9 pgmap + 1.
def _pack(cols: Columns) -> np.ndarray:
    p = cols.kind.astype(np.int16)
    p |= (cols.order > 0).astype(np.int16) << 4
    p |= cols.has_refcount.astype(np.int16) << 5
    p |= (cols.pgmap.astype(np.int16) + 1) << 6
    return p


def _effect_luts(bias: int) -> tuple[np.ndarray, np.ndarray]:
    small, large = np.zeros(16, dtype=np.int64), np.zeros(16, dtype=np.int64)
    for name, sign in (("get", 1), ("put", -1)):
        small[K[name]] = large[K[name]] = sign
    for name, sign in (("pin", 1), ("unpin", -1)):
        small[K[name]] = sign * bias
        large[K[name]] = sign
    return small, large


def effect(kind: np.ndarray, refs: np.ndarray | None, large: np.ndarray, bias: int) -> I64:
    """Each row's effect on the refcount as the model counts it: get +refs,
    pin +refs x w (w: `bias` for a small page, 1 for a large folio), put -refs,
    unpin -refs x w, every other kind 0 (a ref row too: the model counts no
    reference from it). `refs` None: all 1."""
    lut_small, lut_large = _effect_luts(int(bias))
    delta = np.where(large, lut_large[kind], lut_small[kind]) if large.any() \
        else lut_small[kind]
    if refs is not None:
        delta = delta * refs
    return delta


def build(cols: Columns, threshold_ns: int) -> PageModel:
    h = cols.header
    n = cols.n
    ts = cols.ts
    # Events from several CPUs' buffers can be slightly out of order: rank them
    # by time, stably, so equal timestamps keep file order.
    by_ts = None
    if n > 1 and not bool(np.all(ts[1:] >= ts[:-1])):
        by_ts = np.argsort(ts, kind="stable")
    kind_ts = cols.kind if by_ts is None else cols.kind[by_ts]
    page_ev = cols.has_pfn if by_ts is None else cols.has_pfn[by_ts]
    # A `lost` row without a pfn: events lost on a CPU, any page's. With a pfn:
    # references on that page the tracer saw happen but could not walk (a
    # bounded BPF walk); it is one of the page's rows (kind lost, no effect).
    lost_ranks = np.flatnonzero((kind_ts == K["lost"]) & ~page_ev)
    del kind_ts
    sel = None if page_ev.all() else np.flatnonzero(page_ev)
    del page_ev
    pos_ts = by_ts if sel is None else (sel if by_ts is None else by_ts[sel])
    pfn_ts = cols.pfn if pos_ts is None else cols.pfn[pos_ts]
    if cols.order.any():
        # A large folio is one page to the analysis: its refcount and pins live
        # in the head page, and the tracer names the page it was handed (maybe
        # a tail). Folios are naturally aligned: head = pfn rounded down.
        order_ts = cols.order if pos_ts is None else cols.order[pos_ts]
        sh = np.clip(order_ts, 0, 62).astype(np.int64)
        pfn_ts = (pfn_ts >> sh) << sh
        del order_ts, sh

    # Group by page: dense codes, then a stable counting sort over time order.
    if len(pfn_ts):
        lo, hi = int(pfn_ts.min()), int(pfn_ts.max())
        if hi - lo < max(4 * len(pfn_ts), 1 << 20):
            codes, ngroups, values = pfn_ts - lo, hi - lo + 1, None
        else:
            values, codes = np.unique(pfn_ts, return_inverse=True)
            ngroups = len(values)
        order = _group_sort(codes, ngroups)
        counts = np.bincount(codes, minlength=ngroups)
        del codes
        page_vals = (np.arange(ngroups, dtype=np.int64) + lo) if values is None else values
        pfn = np.repeat(page_vals, counts)
        npages = int((counts > 0).sum())
        del counts, page_vals
    else:
        order = np.zeros(0, dtype=np.int64)
        pfn = np.zeros(0, dtype=np.int64)
        npages = 0
    del pfn_ts
    seq = order if sel is None else sel[order]       # rank in time order
    idx = seq if by_ts is None else by_ts[seq]       # file position
    del order, sel, pos_ts
    m = len(idx)

    packed = _pack(cols)[idx]
    k = (packed & 0xF).astype(np.int8)
    large = (packed & 0x10) != 0
    observed = (packed & 0x20) != 0
    pg = ((packed >> 6) & 0xF).astype(np.int8) - 1
    del packed
    refs_all_one = bool(np.all(cols.refs == 1)) if n else True
    refs = _const(1, m) if refs_all_one else cols.refs[idx]

    page_starts = np.zeros(m, dtype=bool)
    if m:
        page_starts[0] = True
        page_starts[1:] = pfn[1:] != pfn[:-1]
    is_free = k == K["free"]
    any_free = bool(is_free.any())
    life_starts = page_starts.copy()
    if any_free:
        life_starts[1:] |= is_free[:-1]

    # The page's pgmap type: the first event that names it decides for all its
    # events (puts from generic paths often do not know it).
    lo_pg, hi_pg = (int(pg.min()), int(pg.max())) if m else (-1, -1)
    if lo_pg == hi_pg:  # one type (or none) throughout: the usual recording
        pgmap = _const(lo_pg, m, np.int8)
    else:
        firsts = np.flatnonzero(page_starts)
        has_pg = np.where(pg >= 0, np.arange(m), m)
        first_pg = np.minimum.reduceat(has_pg, firsts)
        pg_page = np.where(first_pg < m, pg[np.minimum(first_pg, m - 1)], -1)
        pgmap = np.repeat(pg_page, np.diff(np.append(firsts, m))).astype(np.int8)
        del has_pg, first_pg, firsts
    del pg
    idle_lut = np.array([h.idle_for(t) for t in PGMAP_TYPES] + [0], dtype=np.int64)
    idle = _const(idle_lut[pgmap[0]], m) if (m and pgmap.strides == (0,)) else idle_lut[pgmap]

    bias = int(h.pin_bias)
    is_pin = k == K["pin"]
    w = np.where(large, 1, bias) if large.any() else _const(bias, m)
    delta = effect(k, None if refs_all_one else refs, large, bias)
    del large
    # P: pins outstanding, counted per page life, never below 0 (int8 deltas
    # summed in int64: no 80 MB temporaries per kind).
    d_pins = is_pin.view(np.int8) - (k == K["unpin"]).view(np.int8)
    if not refs_all_one:
        d_pins = d_pins * refs
    pins_after = seg.clamped_cumsum(d_pins, life_starts)
    del d_pins

    # Where the page's history has holes (analysis/page_losses.py).
    is_ref = k == K["ref"]
    any_ref = bool(is_ref.any())
    holes = page_losses(cols, idx, pfn, seq, page_starts, k, refs, lost_ranks, by_ts, is_ref)
    gap, gap_any, lost_between, unseen = holes.gap, holes.gap_any, holes.lost_between, \
        holes.unseen
    lost_pos = holes.lost_pos
    del holes

    # Refcount before each event: observed, else inferred from the last
    # observation in the same run (a run restarts at an observation or a gap).
    # Ref rows are passed by (their delta is 0 here), then given their own.
    rc = cols.refcount[idx] if observed.any() else np.zeros(m, np.int32)
    if observed.all():
        before, known = rc.astype(np.int64, copy=False), observed.copy()
    else:
        seen = observed & ~is_ref if any_ref else observed
        run = page_starts | seen | gap
        first = seg.segment_first_index(run)
        known = seen[first]
        excl = seg.cumsum(delta, run) - delta
        before = np.where(known, rc[first].astype(np.int64) + excl, 0)
        del first, excl, run, seen
    del rc
    if any_ref:
        set_ref_values(cols, idx, is_ref, observed, before, known, delta)

    # pin_put_mismatch candidates (first pass); see the module docstring.
    mismatch = np.zeros(m, dtype=bool)
    ci = np.flatnonzero((k == K["put"]) & observed)
    if len(ci):
        p_before = np.where(life_starts[ci], 0, pins_after[ci - 1])
        keep = p_before > 0
        ci, p_before = ci[keep], p_before[keep]
        ci = ci[before[ci] - refs[ci] < idle[ci] + p_before * w[ci]]
    if len(ci):
        replay_mismatches(ci, life_starts, k, refs, w, idle, before, observed, pins_after,
                          mismatch)
    del ci
    # A free ends the page's life: nothing is outstanding after it.
    if any_free:
        pins_after[is_free] = 0

    cols.pages = npages
    end = int(ts.max()) if n else 0
    start = int(ts.min()) if n else 0
    if h.end_ns is not None:
        end = max(end, int(h.end_ns))
    if h.start_ns is not None and n:
        start = min(start, int(h.start_ns))
    return PageModel(
        cols=cols, by_ts=by_ts, trace_start=start, trace_end=end,
        threshold_ns=int(threshold_ns), idx=idx, seq=seq, pfn=pfn, kind=k,
        ts=Gather(ts, idx), refs=refs, w=w, idle=idle, pgmap=pgmap, delta=delta,
        page_starts=page_starts, life_starts=life_starts, observed=observed, known=known,
        before=before, pins_after=pins_after, mismatch=mismatch, gap=gap, any_free=any_free,
        lost_between=lost_between, unseen=unseen, pages=npages,
        lost_seq=seq_of_lost(lost_ranks), lost_ts=ts[lost_pos],
        any_ref=any_ref, gap_any=gap_any,
    )


def seq_of_lost(lost_ranks: np.ndarray) -> I64:
    """Time-order ranks of the CPU-wide `lost` rows (already sorted)."""
    return lost_ranks.astype(np.int64, copy=False)


PGMAP_NAMES = {code: name for name, code in PGMAP.items()}
