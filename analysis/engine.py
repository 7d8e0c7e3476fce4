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
decision time, or, where the caller reads ahead (`feed(horizon=)`: a Parquet
file's time column), the earliest time still to come. Evidence is global row
numbers (row positions in the trace).

Memory: after each batch the engine lets go of every page's past up to the
latest point where the page started afresh (analysis/compact.py): once the
settled time has passed it on a quiet page, T later on a page with busy
reports or long-term pins; a quiet page is held as its last row. It holds the
rows of pages with references outstanding, of the last T where busy checks
are, and the `lost` rows. docs/analysis.md states the bound.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import pandas as pd

from pageref.analysis import columns as cols_mod
from pageref.analysis import compact as compact_mod
from pageref.analysis import model as model_mod
from pageref.analysis.columns import Columns, K
from pageref.analysis.completeness import Completeness, Tally
from pageref.analysis.detectors import DETECTORS
from pageref.analysis.detectors.base import Anomaly, pin_episode
from pageref.analysis.detectors.busy_episodes import busy_episodes
from pageref.trace.header import TraceHeader

DEFAULT_THRESHOLD_NS = 1_000_000_000

_ARRAYS = cols_mod.ARRAYS


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
        # Records of findings' first occurrences already written, for those
        # still counting repeats (PageModel.made).
        self._made: dict[tuple[str, int], Anomaly] = {}
        # The completeness figure, settled with the verdicts (its own bounded
        # state: analysis/completeness.py), so every reader of the engine
        # tells the same figure.
        self.tally = Tally(header)

    # -- feeding -----------------------------------------------------------
    def feed_frame(self, events: pd.DataFrame) -> list[Anomaly]:
        """A batch of events as a DataFrame of schema columns."""
        if events is None or not len(events):
            return []
        # A frame indexed by row position in the trace (a replay) keeps those
        # numbers as evidence; a fresh 0..n-1 batch is numbered on.
        return self.feed(cols_mod.from_frame(events, self.header))

    def feed(self, batch: Columns, horizon: int | None = None,
             decide: bool = True) -> list[Anomaly]:
        """A batch of columns; rows are numbered on from the previous batches
        unless the batch carries its own global `row` numbers. `horizon`, when
        the caller knows it (a file read ahead: anomalies.stream), is a time no
        event still to come is earlier than: verdicts are settled up to it
        rather than only `reorder_ns` behind the latest event, so the engine
        holds (and re-examines) far fewer rows. With `decide` False the batch
        is only held, to be decided with the next one (a small remainder of a
        file's part is not worth a pass over every row held)."""
        if self._finished:
            raise RuntimeError("Engine.feed after finish()")
        n = batch.n
        if not n:
            return []
        row = batch.row if batch.row is not None else \
            np.arange(self.rows_seen, self.rows_seen + n, dtype=np.int64)
        self.tally.add(dataclasses.replace(batch, row=row))
        self._parts.append(dataclasses.replace(
            batch, header=self.header, row=row, comm=self._recode(batch), comm_names=[]))
        self.rows_seen = max(self.rows_seen, int(row.max()) + 1)
        if self._settled is not None:
            # Arrived later than `reorder_ns` allows: verdicts already out may
            # have been decided without them. Counted, and said by the caller.
            self.late += int((batch.ts < self._settled).sum())
        hi = int(batch.ts.max())
        self.max_ts = hi if self.max_ts is None else max(self.max_ts, hi)
        return self._decide(final=False, horizon=horizon) if decide else []

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

    def completeness(self) -> Completeness:
        """The completeness figure of the rows settled so far (the whole trace's
        after finish())."""
        return self.tally.result()

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
        b = busy_episodes(m)
        if len(b):
            open_long = (b.idle_at < 0) & (now - np.asarray(m.ts[b.first]) >= T)
            for e in np.flatnonzero(open_long).tolist():
                out.append(self._pending(m, "busy", int(b.first[e]), int(b.count[e])))
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

    def _decide(self, final: bool, horizon: int | None = None) -> list[Anomaly]:
        cols = self.columns()
        m = model_mod.build(cols, self.threshold_ns)
        m.emitted_to, m.made = self._settled, self._made
        self.model = m
        found: list[Anomaly] = []
        for det in DETECTORS:
            found.extend(det.detect(m))
        latest = self.max_ts
        settled = None if final or latest is None else latest - self.reorder_ns
        if settled is not None and latest is not None and horizon is not None:
            # Every event before the horizon has been seen (one at it may still
            # come): settled just short of it, never past the latest event seen,
            # never behind the reorder rule.
            settled = max(settled, min(int(horizon) - 1, latest))
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
        if final:
            self.tally.settle(None)
        if settled is not None:
            self._settled = settled if prev is None else max(prev, settled)
            self.tally.settle(self._settled)
            done = self._settled
            self._open = {k: a for k, a in self._open.items()
                          if a.final_ns is None or a.final_ns > done}
            # A finding whose count may still grow keeps its evidence (the
            # repeats to come are counted from its first occurrence on).
            open_rows = [r for a in self._open.values() if a.final_ns is not None
                         for r in a.evidence]
            pinned = np.unique(np.array(open_rows, dtype=np.int64))
            if self._made:
                keys = list(self._made)
                alive = np.isin(np.array([k[1] for k in keys], dtype=np.int64), pinned)
                self._made = {k: self._made[k] for k, ok in zip(keys, alive.tolist()) if ok}
            self._compact(m, cols, self._settled, pinned)
        return new

    def _grown(self, a: Anomaly) -> None:
        """A finding emitted earlier, seen again with more repeats: the record
        already out takes the count (never a second record)."""
        out = self._open.get(_first_of(a))
        if out is not None:
            out.count, out.evidence, out.final_ns = a.count, a.evidence, a.final_ns

    def _compact(self, m: model_mod.PageModel, cols: Columns, settled: int,
                 open_rows: np.ndarray) -> None:
        held = compact_mod.compact(m, cols, settled - self.threshold_ns - 1, settled, open_rows)
        if held is not None:
            self.dropped += cols.n - held.n
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
