"""The rules engine: every anomaly rule (analysis/detectors/) run over a trace fed
in time order, in batches of any size, each verdict emitted once it is decided.

One owner for the rules: `pageref analyze`, `history`, `report`, `watch` and
`record`'s live view all get their anomalies from here, so the live view and
the offline answer cannot disagree.

How it decides: after each batch the page model (analysis/model.py, vectorised
per batch, no Python loop per event) is rebuilt over the rows the engine holds,
and each verdict is emitted when the trace's time has reached the moment from
which it cannot change (`Anomaly.decided_ns`): at its own event for the rules
that look only backwards (refcount_underflow, double_free, ...), T after the idle
point for missed_wakeup, at the idle point for busy_page_stall, and at the end
of the trace for pin_leak and for a page still busy at the end. A verdict is
emitted once, by the batch whose settled time first reaches it; at `finish()`
every remaining verdict of the whole pass is emitted, so the union over the
batches is exactly the whole pass's answer, whatever the batch sizes.

A finding that merges repeats (analysis/detectors/repeats.py) is emitted at its
first occurrence's decision; its `count` (and the evidence of its repeats) is
raised on that same record until its `final_ns`, and its evidence rows are kept
meanwhile, so it is never emitted twice and ends with the whole pass's count.

Events may arrive less than `reorder_ns` late (per-CPU buffers interleave): a verdict
is emitted only when the latest time seen minus `reorder_ns` has reached its
decision time. Evidence is global row numbers (row positions in the trace).

Memory: after each batch the engine lets go of every page's past up to the
latest point where the page started afresh (nothing outstanding, idle, refcount
observed) more than T before the settled time (see `_compact`): it holds the
rows of pages with references outstanding or busy, the last T of trace time,
and the `lost` rows. docs/analysis.md states the bound.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import pandas as pd

from pageref.analysis import columns as cols_mod
from pageref.analysis import model as model_mod
from pageref.analysis import segments as seg
from pageref.analysis.columns import Columns, K
from pageref.analysis.detectors import DETECTORS
from pageref.analysis.detectors.base import Anomaly, pin_episode
from pageref.analysis.detectors.busy_episodes import episodes, idle_points
from pageref.trace.header import TraceHeader

DEFAULT_THRESHOLD_NS = 1_000_000_000

_ARRAYS = ("ts", "kind", "pfn", "has_pfn", "refcount", "has_refcount", "refs", "order",
           "pgmap", "longterm", "pid", "tid", "comm", "mapping", "count")


@dataclasses.dataclass(frozen=True)
class Pending:
    """Something not decided yet that an operator wants to see while it happens."""

    what: str          # "pin_held": pins outstanding; "busy": a page reported busy, not idle
    pfn: int
    since_ns: int      # when the oldest outstanding pin was taken / first busy report
    count: int         # pins outstanding / busy reports so far
    pid: int | None
    comm: str | None


# How late an event may arrive after a later one: per-CPU perf buffers are
# drained in turn, and a ring buffer record is stamped before it is reserved, so
# arrival order is not time order. The engine settles verdicts this far behind
# the latest time it has seen. The live view uses it too, so that it settles
# pages no earlier than `pageref analyze` does and tells the same story.
REORDER_NS = 1_000_000_000


class Engine:
    """Feed batches (`feed` Columns, `feed_frame` DataFrames of schema columns);
    each call returns the anomalies decided by it; `finish()` returns the rest."""

    def __init__(self, header: TraceHeader, threshold_ns: int = DEFAULT_THRESHOLD_NS,
                 reorder_ns: int = 0) -> None:
        self.header = header
        self.threshold_ns = int(threshold_ns)
        self.reorder_ns = int(reorder_ns)
        self.rows_seen = 0
        self.max_ts: int | None = None
        self.found: list[Anomaly] = []       # every anomaly emitted so far, in emission order
        self.model: model_mod.PageModel | None = None
        self._parts: list[Columns] = []
        self._comm: dict[str, int] = {}
        self._settled: int | None = None     # verdicts decided up to here are out
        self.dropped = 0                     # rows let go of (settled pages' pasts)
        self.late = 0                        # events older than the settled time when fed
        self._finished = False
        # Emitted findings whose count may still grow (final_ns not reached),
        # by their first occurrence (analysis/detectors/repeats.py).
        self._open: dict[tuple, Anomaly] = {}

    # -- feeding -----------------------------------------------------------
    def feed_frame(self, events: pd.DataFrame) -> list[Anomaly]:
        """A batch of events as a DataFrame of schema columns."""
        if events is None or not len(events):
            return []
        # A frame indexed by row position in the trace (a replay) keeps those
        # numbers as evidence; a fresh 0..n-1 batch is numbered on.
        return self.feed(cols_mod.from_frame(events, self.header))

    def feed(self, batch: Columns) -> list[Anomaly]:
        """A batch of columns; rows are numbered on from the previous batches
        unless the batch carries its own global `row` numbers."""
        if self._finished:
            raise RuntimeError("Engine.feed after finish()")
        n = batch.n
        if not n:
            return []
        row = batch.row if batch.row is not None else \
            np.arange(self.rows_seen, self.rows_seen + n, dtype=np.int64)
        self._parts.append(dataclasses.replace(
            batch, header=self.header, row=row, comm=self._recode(batch), comm_names=[]))
        self.rows_seen = max(self.rows_seen, int(row.max()) + 1)
        if self._settled is not None:
            # Arrived later than `reorder_ns` allows: verdicts already out may
            # have been decided without them. Counted, and said by the caller.
            self.late += int((batch.ts < self._settled).sum())
        hi = int(batch.ts.max())
        self.max_ts = hi if self.max_ts is None else max(self.max_ts, hi)
        return self._decide(final=False)

    def finish(self) -> list[Anomaly]:
        """Every verdict not emitted yet (the end of the trace decides the rest)."""
        out = self._decide(final=True)
        self._finished = True
        return out

    def run(self, batches: Iterable[Columns]) -> list[Anomaly]:
        for b in batches:
            self.feed(b)
        self.finish()
        return self.found

    # -- state -------------------------------------------------------------
    @property
    def held(self) -> int:
        """Rows the engine holds now."""
        return sum(p.n for p in self._parts)

    def columns(self) -> Columns:
        """The rows held, as one Columns (global row numbers in `row`)."""
        names = [""] * len(self._comm)
        for name, code in self._comm.items():
            names[code] = name
        if not self._parts:
            return cols_mod.from_frame(pd.DataFrame({"ts_ns": [], "kind": []}), self.header)
        if len(self._parts) > 1:
            merged: dict[str, Any] = {
                a: np.concatenate([getattr(p, a) for p in self._parts]) for a in _ARRAYS}
            row = np.concatenate([p.row for p in self._parts if p.row is not None])
            self._parts = [dataclasses.replace(self._parts[0], row=row, **merged)]
        one = self._parts[0]
        return dataclasses.replace(one, comm_names=names, pages=None)

    def pending(self) -> list[Pending]:
        """Pins held longer than T so far and pages busy longer than T so far,
        as of the latest time seen (oldest first)."""
        m = self.model
        if m is None or self.max_ts is None or not len(m.kind):
            return []
        now, T = self.max_ts, self.threshold_ns
        out: list[Pending] = []
        n = len(m.kind)
        last = np.append(np.flatnonzero(m.page_starts)[1:] - 1, n - 1)
        for j in last[(m.pins_after[last] > 0) & (m.kind[last] != K["free"])].tolist():
            a = pin_episode(m, j)
            if now - int(m.ts[a]) >= T:
                out.append(self._pending(m, "pin_held", a, int(m.pins_after[j])))
        for ep in episodes(m)[0]:
            if ep.idle_at < 0 and now - int(m.ts[ep.first]) >= T:
                out.append(self._pending(m, "busy", ep.first, len(ep.busy)))
        out.sort(key=lambda p: p.since_ns)
        return out

    # -- inside ------------------------------------------------------------
    def _pending(self, m: model_mod.PageModel, what: str, j: int, count: int) -> Pending:
        i = int(m.idx[j])
        pid = int(m.cols.pid[i])
        return Pending(what, int(m.pfn[j]), int(m.ts[j]), count,
                       pid if pid >= 0 else None, m.cols.comm_of(i))

    def _recode(self, batch: Columns) -> np.ndarray:
        """The batch's comm codes in the engine's vocabulary."""
        if not batch.comm_names:
            return batch.comm
        lut = np.array([self._comm.setdefault(name, len(self._comm))
                        for name in batch.comm_names], dtype=np.int32)
        return np.where(batch.comm >= 0, lut[np.maximum(batch.comm, 0)], -1).astype(np.int32)

    def _decide(self, final: bool) -> list[Anomaly]:
        cols = self.columns()
        m = model_mod.build(cols, self.threshold_ns)
        self.model = m
        found: list[Anomaly] = []
        for det in DETECTORS:
            found.extend(det.detect(m))
        settled = None if final or self.max_ts is None else self.max_ts - self.reorder_ns
        prev = self._settled
        new = []
        for a in found:
            d = a.decided_ns
            if prev is not None and d is not None and d <= prev:
                self._grown(a)                # emitted by an earlier batch
                continue
            if not final and (d is None or settled is None or d > settled):
                continue                      # not decided yet
            new.append(a)
        new.sort(key=lambda a: (a.ts_ns, a.kind))
        self.found.extend(new)
        for a in new:
            self._open[_first_of(a)] = a
        if settled is not None:
            self._settled = settled if prev is None else max(prev, settled)
            done = self._settled
            self._open = {k: a for k, a in self._open.items()
                          if a.final_ns is None or a.final_ns > done}
            # A finding whose count may still grow keeps its evidence (the
            # repeats to come are counted from its first occurrence on).
            open_rows = [r for a in self._open.values() if a.final_ns is not None
                         for r in a.evidence]
            self._compact(m, cols, self._settled - self.threshold_ns - 1,
                          np.unique(np.array(open_rows, dtype=np.int64)))
        return new

    def _grown(self, a: Anomaly) -> None:
        """A finding emitted earlier, seen again with more repeats: the record
        already out takes the count (never a second record)."""
        out = self._open.get(_first_of(a))
        if out is not None:
            out.count, out.evidence, out.final_ns = a.count, a.evidence, a.final_ns

    def _compact(self, m: model_mod.PageModel, cols: Columns, cutoff: int,
                 open_rows: np.ndarray) -> None:
        """Let go of the rows no verdict still to come can depend on: on each page,
        the rows before the latest row r, older than `cutoff` (every verdict
        that reads them is out: T before the settled time), where the page
        starts afresh: nothing counted outstanding and idle just before r, the
        refcount at r observed (or not known either way), r not a busy report,
        and r's page life either holds a grab before r or began at the page's
        first row (so no double_free can span r). Kept besides: the page's last
        `lost` row before r (its later verdicts stay uncertain), every CPU-wide
        `lost` row, the page-less busy checks since `cutoff`. On r are written
        the page's pgmap type and last recorded mapping (what the dropped rows
        decided). A verdict still to come (a finding that merges repeats,
        analysis/detectors/repeats.py) pins its evidence: r is never at or
        after one of its rows on the page, and page-less busy checks are kept
        from its earliest page-less row on (the repeats it will count). The
        batch-invariance test holds this to the whole pass."""
        n = len(m.kind)
        if n < 2:
            return
        k = m.kind
        flag = idle_points(m)
        ar = np.arange(n, dtype=np.int64)
        ts = np.asarray(m.ts)
        prev_ok = np.zeros(n, dtype=bool)
        prev_ok[1:] = (m.pins_after[:-1] == 0) & (m.gets_after[:-1] == 0) & flag[:-1]
        grab = ((k == K["get"]) | (k == K["pin"])).view(np.int8)
        grab_before = seg.cumsum(grab, m.life_starts) - grab
        fresh_life = (~m.life_starts & ((grab_before > 0) | m.page_starts[m.life_first])) \
            | (k == K["free"])
        elig = ~m.page_starts & prev_ok & fresh_life & (ts < cutoff) \
            & (k != K["busy"]) & (k != K["lost"]) & (m.observed | ~m.known)
        in_open = np.isin(cols.rows(), open_rows) if len(open_rows) else \
            np.zeros(cols.n, dtype=bool)
        if len(open_rows):
            elig &= seg.cumsum(in_open[m.idx].view(np.int8), m.page_starts) == 0
        if not elig.any():
            return
        firsts = seg.segment_first_index(m.page_starts)
        r = np.maximum.accumulate(np.where(elig, ar, -1))
        r = np.where(r >= firsts, r, firsts)                  # per row: the page's latest r so far
        lasts = seg.segment_last_index(m.page_starts)
        r_page = r[lasts]                                     # per row: its page's r
        keep = ar >= r_page
        cut = np.flatnonzero(elig & (ar == r_page))           # the rows r
        lost_row = np.maximum.accumulate(np.where(k == K["lost"], ar, -1))
        lr = lost_row[cut - 1]
        keep[lr[lr >= firsts[cut]]] = True
        mp = cols.mapping[m.idx]
        last_nz = np.maximum.accumulate(np.where(mp != 0, ar, -1))
        in_model = np.zeros(cols.n, dtype=bool)
        in_model[m.idx] = True
        keep_pos = np.zeros(cols.n, dtype=bool)
        keep_pos[m.idx[keep]] = True
        keep_pos |= ~in_model & ((cols.kind == K["lost"]) | (cols.ts >= cutoff))
        open_free = in_open & ~in_model
        if open_free.any():
            keep_pos |= ~in_model & (cols.kind == K["busy"]) \
                & (cols.rows() >= int(cols.rows()[open_free].min()))
        sel = np.flatnonzero(keep_pos)
        if len(sel) == cols.n:
            return
        held = dataclasses.replace(cols, row=cols.rows()[sel], comm_names=[], pages=None,
                                   **{a: getattr(cols, a)[sel].copy() for a in _ARRAYS})
        at = np.searchsorted(sel, m.idx[cut])
        held.pgmap[at] = m.pgmap[cut]
        prior = last_nz[cut - 1]
        patch = (mp[cut] == 0) & (prior >= firsts[cut])
        held.mapping[at[patch]] = mp[prior[patch]]
        self.dropped += cols.n - len(sel)
        self._parts = [held]


def _first_of(a: Anomaly) -> tuple:
    """What names a finding across batches: its first occurrence."""
    return (a.kind, a.pfn, a.ts_ns, a.detail)


def column_batches(cols: Columns, sizes: Iterable[int]) -> Iterator[Columns]:
    """`cols` cut into consecutive batches of the given sizes (the last batch
    takes the rest), rows numbered globally: what a streaming reader yields."""
    n, lo = cols.n, 0
    rows = cols.rows()
    for size in sizes:
        if lo >= n:
            return
        hi = min(n, lo + max(1, int(size)))
        yield dataclasses.replace(cols, row=rows[lo:hi], pages=None,
                                  **{a: getattr(cols, a)[lo:hi] for a in _ARRAYS})
        lo = hi
    if lo < n:
        yield dataclasses.replace(cols, row=rows[lo:], pages=None,
                                  **{a: getattr(cols, a)[lo:] for a in _ARRAYS})
