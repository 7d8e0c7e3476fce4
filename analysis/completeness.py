"""How much of a trace's refcount history its events explain: the completeness
figure of `pageref analyze`, `pageref record`'s live view, the report and
`pageref history` (docs/analysis.md, "History completeness").

Two sources, one figure:

- "refcount" (any kernel): consecutive rows of one page (the page model's
  page and time order; `ref` rows aside) whose refcount both recorded form a
  transition. It is explained when the later row's recorded refcount equals
  what the earlier row left as the model counts it (its refcount plus its
  effect), unexplained otherwise: the count changed with no traced operation
  to say why (an inline put, a path no probe covers). Not counted: across a
  `free` (a new page life: the owner sets the count again untraced), across
  lost events (the model's `gap`), and on a page from a `lost` row naming it
  or its range on (`unseen`: a stopped walk's references were not followed).
- "page_ref" (a trace with `ref` rows, CONFIG_DEBUG_PAGE_REF kernels): every
  ref row is one real change; it is attributed when it makes up the effect of
  an ordinary row of the same page and task (analysis/attribution.py, the
  matching rule), unattributed otherwise. Not counted: a page_ref_set or a
  change up from 0 before the page life's first get/pin/put/unpin/refused
  grab (the owner initialising the page), a row after lost events (since the
  page's previous row) and rows of `unseen` pages.

`Tally` computes both in one streaming pass with bounded state (a few values
per page seen, the open matching groups, the rows not settled yet), so that
the engine (analysis/engine.py), fed in batches of any size, and a whole pass
give the same numbers. A trace with any ref row reports "page_ref".
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from pageref.analysis import segments as seg
from pageref.analysis.attribution import MATCH_WINDOW_NS, REF_OPS, Matcher
from pageref.analysis.columns import Columns, K
from pageref.analysis.model import effect
from pageref.trace.header import TraceHeader

# Rows of unexplained steps kept with their details (counts are exact past it).
MAX_DETAIL = 100_000

# What the tally keeps of each row until it is settled.
_FIELDS = ("ts", "kind", "pfn", "has_pfn", "order", "refcount", "has_refcount", "refs",
           "refcount_after", "has_refcount_after", "pid", "tid", "comm", "count")


@dataclasses.dataclass(frozen=True)
class Completeness:
    """The completeness figure of one trace."""

    source: str              # "refcount" (transitions) or "page_ref" (ref rows)
    counted: int             # transitions / refcount changes counted
    explained: int           # explained transitions / attributed changes
    unexplained: int         # unexplained transitions / unattributed changes
    pages: int               # pages with at least one unexplained step
    share: float | None      # explained / counted; None when nothing was counted

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class _Side:
    """The running count of one source."""

    counted: int = 0
    explained: int = 0
    unexplained: int = 0
    pages: set[int] = dataclasses.field(default_factory=set)
    detail: list[tuple] = dataclasses.field(default_factory=list)

    def miss(self, rec: tuple) -> None:
        """One unexplained step: (row, ts, page, kind, tid, pid, comm, before, after, delta)."""
        self.unexplained += 1
        self.pages.add(int(rec[2]))
        if len(self.detail) < MAX_DETAIL:
            self.detail.append(rec)


class Tally:
    """The completeness of a trace fed in time-ordered settlements: `add` a
    batch (rows numbered globally), `settle(t)` once no row at or before t is
    still to come (None: the end of the trace), then `result()`."""

    def __init__(self, header: TraceHeader, window_ns: int = MATCH_WINDOW_NS) -> None:
        self.bias = int(header.pin_bias)
        self.parts: list[dict[str, np.ndarray]] = []
        self.comm: dict[str, int] = {}
        self.lost = 0                         # CPU-wide lost rows settled so far
        self.saw_ref = False
        self.a, self.b = _Side(), _Side()
        self.matcher = Matcher(window_ns)
        self._pending: dict[int, tuple] = {}  # ref rows in open groups: row -> record
        # Ordinary rows of the last window, while no ref row has come to match
        # them (per field: page, tid, ts, target), in time order per page.
        self._recent: dict[str, np.ndarray] = {}
        # Per page (sorted by page): the page's last settled rows' facts.
        self.pg = np.zeros(0, dtype=np.int64)
        self.st: dict[str, np.ndarray] = {name: np.zeros(0, dtype=dt) for name, dt in _STATE}
        self.ranges = np.zeros((0, 2), dtype=np.int64)   # walk-loss ranges [lo, hi)

    # -- feeding -----------------------------------------------------------
    def add(self, batch: Columns) -> None:
        if not batch.n:
            return
        part = {f: getattr(batch, f) for f in _FIELDS}
        if batch.comm_names:
            lut = np.array([self.comm.setdefault(nm, len(self.comm))
                            for nm in batch.comm_names], dtype=np.int32)
            part["comm"] = np.where(batch.comm >= 0, lut[np.maximum(batch.comm, 0)], -1)
        part["row"] = batch.rows()
        self.parts.append(part)

    def settle(self, upto: int | None) -> None:
        """Count every row at or before `upto` (None: all) not counted yet."""
        if self.parts:
            held = {f: np.concatenate([p[f] for p in self.parts]) for f in self.parts[0]}
            now = np.ones(len(held["ts"]), dtype=bool) if upto is None else held["ts"] <= upto
            self.parts = [{f: v[~now] for f, v in held.items()}] if not now.all() else []
            if now.any():
                chunk = {f: v[now] for f, v in held.items()}
                o = np.lexsort((chunk["row"], chunk["ts"]))
                self._chunk({f: v[o] for f, v in chunk.items()})
        self.matcher.expire(upto)
        self._resolved()

    def result(self) -> Completeness:
        side, src = (self.b, "page_ref") if self.saw_ref else (self.a, "refcount")
        return Completeness(src, side.counted, side.explained, side.unexplained,
                            len(side.pages),
                            side.explained / side.counted if side.counted else None)

    def unexplained_rows(self) -> list[tuple]:
        """(row, ts, page, kind, tid, pid, comm, before, after, delta) of the
        reported source's unexplained steps (the first MAX_DETAIL), by row."""
        side = self.b if self.saw_ref else self.a
        return sorted(side.detail)

    def comm_name(self, code: int) -> str | None:
        if code < 0:
            return None
        names = [""] * len(self.comm)
        for nm, c in self.comm.items():
            names[c] = nm
        return names[code]

    # -- one settled chunk, in (time, row) order ------------------------------
    def _chunk(self, c: dict[str, np.ndarray]) -> None:
        kind = c["kind"]
        cpu_lost = (kind == K["lost"]) & ~c["has_pfn"]
        lost_cum = self.lost + np.cumsum(cpu_lost) - cpu_lost     # lost rows before each
        self.lost += int(cpu_lost.sum())
        sel = np.flatnonzero(c["has_pfn"])
        if not len(sel):
            return
        sh = np.clip(c["order"][sel], 0, 62).astype(np.int64)
        head = (c["pfn"][sel] >> sh) << sh
        o = np.lexsort((sel, head))                  # by page, then time
        r, page = sel[o], head[o]
        span = page + (np.int64(1) << sh[o])
        n = len(r)
        k = kind[r]
        starts = np.ones(n, dtype=bool)
        starts[1:] = page[1:] != page[:-1]
        firsts = np.flatnonzero(starts)
        pi = np.repeat(np.arange(len(firsts)), np.diff(np.append(firsts, n)))
        pages = page[firsts]
        at = np.searchsorted(self.pg, pages)
        known = (at < len(self.pg)) & (self.pg[np.minimum(at, max(len(self.pg) - 1, 0))]
                                      == pages) if len(self.pg) else np.zeros(len(pages), bool)
        st = {name: np.where(known, v[np.minimum(at, max(len(v) - 1, 0))], _DEFAULT[name])
              if len(v) else np.full(len(pages), _DEFAULT[name], dtype=v.dtype)
              for name, v in self.st.items()}
        is_ref, is_lost = k == K["ref"], k == K["lost"]
        is_ord = ~is_ref & ~is_lost
        if is_ref.any():
            self.saw_ref = True
        lc = lost_cum[r]

        # unseen: a lost row naming the page (or a range it meets), sticky
        own = seg.cumsum(is_lost.view(np.int8), starts)
        unseen = st["unseen"][pi] | (own > 0) | self._covered(page, span, r, c, k)

        # the previous row of any kind, and the previous ordinary row
        prev_any_lc = np.where(starts, st["any_lost"][pi], np.append(-1, lc[:-1]))
        gap_any = (prev_any_lc >= 0) & (lc > prev_any_lc)
        lo = seg.shift(seg.last_valid_index(is_ord, starts), starts, -1)   # previous ordinary
        cpos = np.maximum(lo, 0)
        rc, obs = c["refcount"][r].astype(np.int64), c["has_refcount"][r]
        large = c["order"][r] > 0
        refs = c["refs"][r].astype(np.int64)
        eff = effect(k, refs, large, self.bias)
        p_obs = np.where(lo >= 0, obs[cpos], st["obs"][pi])
        p_after = np.where(lo >= 0, rc[cpos] + eff[cpos], st["after"][pi])
        p_free = np.where(lo >= 0, k[cpos] == K["free"], st["free"][pi])
        p_lc = np.where(lo >= 0, lc[cpos], st["ord_lost"][pi])
        has_prev = (lo >= 0) | st["has_ord"][pi]
        gap = lc > p_lc

        # (a) transitions between ordinary rows
        tr = is_ord & obs & has_prev & p_obs & ~p_free & ~gap & ~unseen
        self.a.counted += int(tr.sum())
        ok = tr & (rc == p_after)
        self.a.explained += int(ok.sum())
        for j in np.flatnonzero(tr & ~ok).tolist():
            self.a.miss(self._rec(c, int(r[j]), int(page[j]), int(p_after[j]), int(rc[j])))

        # (b) ref rows: counted unless the owner initialising the page
        refop = np.isin(k, REF_OPS)
        life_ops = self._life_ops(refop, k, starts, st["life_ops"][pi])
        change = refs
        init = (change == 0) | (obs & (rc == 0) & ~life_ops)
        counted = is_ref & ~init & ~gap_any & ~unseen
        self._match(c, r, page, k, refop, is_ref, counted, eff, change)

        # the pages' state after the chunk
        last = np.append(firsts[1:] - 1, n - 1)
        lo_last = seg.last_valid_index(is_ord, starts)[last]
        has = lo_last >= 0
        lp = np.maximum(lo_last, 0)
        new = {
            "any_lost": lc[last],
            "obs": np.where(has, obs[lp], st["obs"]),
            "after": np.where(has, rc[lp] + eff[lp], st["after"]),
            "free": np.where(has, k[lp] == K["free"], st["free"]),
            "ord_lost": np.where(has, lc[lp], st["ord_lost"]),
            "has_ord": has | st["has_ord"],
            "unseen": np.logical_or.reduceat(unseen, firsts),
            # a free ends the life: the next one has had no operation yet
            "life_ops": self._life_ops(refop, k, starts, st["life_ops"][pi], after=True)[last]
            & (k[last] != K["free"]),
        }
        self._store(pages, known, at, new)

    def _rec(self, c: dict[str, np.ndarray], i: int, page: int, before: int,
             after: int) -> tuple:
        return (int(c["row"][i]), int(c["ts"][i]), page, int(c["kind"][i]), int(c["tid"][i]),
                int(c["pid"][i]), int(c["comm"][i]), before, after, after - before)

    def _covered(self, page: np.ndarray, span: np.ndarray, r: np.ndarray,
                 c: dict[str, np.ndarray], k: np.ndarray) -> np.ndarray:
        """Rows whose page (or folio) meets a walk-loss range named at or before them."""
        out = np.zeros(len(page), dtype=bool)
        for lo, hi in self.ranges.tolist():                        # earlier chunks
            out |= (page < hi) & (span > lo)
        wide = np.flatnonzero((k == K["lost"]) & (c["count"][r] > 1))
        for j in wide.tolist():
            lo, hi = int(page[j]), int(page[j]) + int(c["count"][r[j]])
            out |= (page < hi) & (span > lo) & (r >= r[j])
            self.ranges = np.vstack([self.ranges, [[lo, hi]]])
        return out

    def _life_ops(self, refop: np.ndarray, k: np.ndarray, starts: np.ndarray,
                  carried: np.ndarray, after: bool = False) -> np.ndarray:
        """Whether a get/pin/put/unpin/refused grab of the page life came before
        each row (`after`: at or before), the page's carried state first."""
        free = k == K["free"]
        life = starts.copy()
        life[1:] |= free[:-1]
        seen = (seg.cumsum(refop.view(np.int8), life) - (0 if after else refop)) > 0
        first_life = seg.cumsum((life & ~starts).view(np.int8), starts) == 0
        return seen | (carried & first_life)

    def _match(self, c, r, page, k, refop, is_ref, counted, eff, change) -> None:
        """Feed the matcher (analysis/attribution.py). Until a trace's first ref
        row, only its last window of ordinary rows is kept (as arrays, no loop
        per row): an older one could not be matched by any ref row to come."""
        tid = np.where(c["tid"][r] >= 0, c["tid"][r], c["pid"][r]).astype(np.int64)
        ops = np.flatnonzero(refop)
        quiet = not is_ref.any() and not self.matcher.busy
        if quiet and len(c["ts"]):   # only the last window can still be matched
            ops = ops[c["ts"][r[ops]] >= int(c["ts"].max()) - self.matcher.window]
        recent = {"page": page[ops], "tid": tid[ops], "ts": c["ts"][r[ops]],
                  "target": eff[ops]}
        if quiet:
            if self._recent:
                recent = {f: np.concatenate([self._recent[f], v]) for f, v in recent.items()}
            if len(recent["ts"]):
                keep = recent["ts"] >= int(c["ts"].max()) - self.matcher.window
                recent = {f: v[keep] for f, v in recent.items()}
            self._recent = recent
            return
        for j in range(len(self._recent.get("ts", ()))):   # earlier chunks' last window
            self.matcher.ordinary((int(self._recent["page"][j]), int(self._recent["tid"][j])),
                                  int(self._recent["ts"][j]), int(self._recent["target"][j]))
        self._recent = {}
        sel = np.flatnonzero(refop | is_ref)
        ts = c["ts"][r[sel]]
        o = sel[np.lexsort((r[sel], is_ref[sel], ts))]     # ordinary first at one time
        for j in o.tolist():
            key = (int(page[j]), int(tid[j]))
            t = int(c["ts"][r[j]])
            if not is_ref[j]:
                self.matcher.ordinary(key, t, int(eff[j]))
                continue
            i = int(r[j])
            rec = self._rec(c, i, int(page[j]), int(c["refcount"][i]),
                            int(c["refcount_after"][i])) if counted[j] else None
            row = int(c["row"][i])
            self._pending[row] = (rec,)
            self.matcher.ref(key, t, int(change[j]), row,
                             to_zero=bool(c["has_refcount_after"][i]) and
                             int(c["refcount_after"][i]) == 0)
        self._resolved()

    def _resolved(self) -> None:
        m = self.matcher
        for row in m.attributed:
            rec = self._pending.pop(row, (None,))[0]
            if rec is not None:
                self.b.counted += 1
                self.b.explained += 1
        for row in m.unattributed:
            rec = self._pending.pop(row, (None,))[0]
            if rec is not None:
                self.b.counted += 1
                self.b.miss(rec)
        m.attributed.clear()
        m.unattributed.clear()

    def _store(self, pages: np.ndarray, known: np.ndarray, at: np.ndarray,
               new: dict[str, np.ndarray]) -> None:
        for name, v in new.items():
            self.st[name][at[known]] = v[known]
        if (~known).any():
            allp = np.concatenate([self.pg, pages[~known]])
            o = np.argsort(allp, kind="stable")
            self.pg = allp[o]
            self.st = {name: np.concatenate([self.st[name], new[name][~known].astype(
                self.st[name].dtype)])[o] for name in self.st}


_STATE = (("any_lost", np.int64), ("obs", bool), ("after", np.int64), ("free", bool),
          ("ord_lost", np.int64), ("has_ord", bool), ("unseen", bool), ("life_ops", bool))
_DEFAULT: dict[str, Any] = {"any_lost": -1, "obs": False, "after": 0, "free": False,
                            "ord_lost": -1, "has_ord": False, "unseen": False,
                            "life_ops": False}



def describe(c: Completeness) -> str:
    """The figure in one line (analyze, the live view, the report):
    "history completeness: 99.2% of transitions explained; 14 unexplained on 3 pages"."""
    what, done, miss = (("refcount changes", "attributed (page_ref tracepoints)",
                         "unattributed") if c.source == "page_ref"
                        else ("transitions", "explained", "unexplained"))
    if c.share is None:
        return f"history completeness: no {what} to check" + (
            "" if c.source == "page_ref" else " (no two consecutive recorded refcounts)")
    if c.counted == 1:
        what = what[:-1]
    pct = c.share * 100
    # rounded down while something is unexplained: never "100.0%" then
    shown = f"{math.floor(pct * 10) / 10:.1f}" if c.unexplained else f"{pct:.1f}"
    tail = f"; {c.unexplained:,} {miss} on {c.pages:,} page{'s' if c.pages != 1 else ''}" \
        if c.unexplained else ""
    return f"history completeness: {shown}% of {c.counted:,} {what} {done}{tail}"


def tally(trace: Any, batch_rows: int = 1_000_000) -> Tally:
    """The completeness tally of a whole trace: a Trace or Columns in one
    settlement, a path streamed in batches as `pageref analyze` reads it (rows
    settled up to the next batch's earliest time for Parquet, 1 s behind the
    latest for JSON Lines: analysis/anomalies.py)."""
    from pathlib import Path

    from pageref.analysis.anomalies import batches, columns_of, horizons
    from pageref.analysis.engine import REORDER_NS
    from pageref.trace import io as trace_io

    if not isinstance(trace, (str, Path)):
        cols = columns_of(trace)
        t = Tally(cols.header)
        t.add(cols)
        t.settle(None)
        return t
    path = Path(trace)
    t = Tally(trace_io.read_header(path))
    ahead = horizons(path, batch_rows)
    latest: int | None = None
    for i, b in enumerate(batches(path, batch_rows)):
        t.add(b)
        if not b.n:
            continue
        hi = int(b.ts.max())
        latest = hi if latest is None else max(latest, hi)
        upto = latest - REORDER_NS
        if i + 1 < len(ahead):
            upto = max(upto, min(int(ahead[i + 1]) - 1, latest))
        t.settle(upto)
    t.settle(None)
    return t


def completeness(trace: Any) -> Completeness:
    """The completeness figure of a trace (a Trace, Columns or a path)."""
    return tally(trace).result()
