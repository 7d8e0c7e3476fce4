"""What the engine (analysis/engine.py) lets go of after a batch: each page's
past up to the latest point from which no verdict still to come can read it.

This is what bounds the engine's memory by what is live rather than by the
trace (docs/analysis.md, "Memory bound"). The batch-invariance tests
(tests/unit/test_analysis_engine.py) hold every rule here to the whole pass.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from pageref.analysis import segments as seg
from pageref.analysis.columns import ARRAYS, Columns, K
from pageref.analysis.detectors.busy_episodes import busy_episodes, idle_points, task_ids
from pageref.analysis.model import PageModel


def compact(m: PageModel, cols: Columns, cutoff: int, settled: int,
            open_rows: np.ndarray) -> Columns | None:
    """The rows of `cols` (the model `m` was built on) still needed, or None
    when all are.

    On each page, the rows before the latest row r where the page starts
    afresh are let go of: nothing counted outstanding and idle just before r,
    the refcount at r observed (or not known either way), r not a busy report,
    and r's page life either holds a grab before r or began at the page's
    first row (so no double_free can span r). r is older than `cutoff` (T
    before the settled time: every verdict that reads the rows before it is
    out), or, on a quiet page, older than `settled` itself: a page with no busy
    report and no long-term pin up to r, while no page-less busy check is held
    from `cutoff` on. Only those kinds have verdicts decided later than the
    rows they read (missed_wakeup T after the idle point, busy_page_stall at
    it, longterm_pin_fsdax T after the pin) or read other pages' past (a busy
    check finds the pages of its mapping held), so a quiet page's past is
    done with as soon as time has settled past it. That keeps a fast trace's
    last T of rows out of memory.

    Kept besides: the page's last `lost` row before r (its later verdicts stay
    uncertain), every CPU-wide `lost` row, the page-less busy checks since
    `cutoff`. On r are written the page's pgmap type and last recorded mapping
    (what the dropped rows decided). A verdict still to come (a finding that
    merges repeats, analysis/detectors/repeats.py) pins its evidence
    (`open_rows`, global row numbers): r is never at or after one of its rows
    on the page, and page-less busy checks are kept from its earliest
    page-less row on (the repeats it will count).
    """
    n = len(m.kind)
    if n < 2:
        return None
    k = m.kind
    flag = idle_points(m)
    ar = np.arange(n, dtype=np.int64)
    ts = np.asarray(m.ts)
    # The page as its previous ordinary row left it (ref rows change nothing
    # counted and are never an idle point; the ones before r go with the past).
    po = _previous_ordinary(k, m.page_starts)
    pc = np.maximum(po, 0)
    prev_ok = (po >= 0) & (m.pins_after[pc] == 0) & (m.gets_after[pc] == 0) & flag[pc]
    grab = ((k == K["get"]) | (k == K["pin"])).view(np.int8)
    grab_before = seg.cumsum(grab, m.life_starts) - grab
    fresh_life = (~m.life_starts & ((grab_before > 0) | m.page_starts[m.life_first])) \
        | (k == K["free"])
    # Or r itself leaves the page so: a release, its refcount observed and left
    # exactly at idle, nothing counted outstanding after it, not a pin's release
    # through put. As the page's first row it then counts the same (P and G
    # clamp at 0, the refcount is its own), so a page whose last row is such a
    # release is held as that one row.
    clean_after = ((k == K["put"]) | (k == K["unpin"])) & m.observed & ~m.mismatch \
        & (m.pins_after == 0) & (m.gets_after == 0) & (m.after == m.idle)
    elig = ~m.page_starts & fresh_life & (k != K["busy"]) & (k != K["lost"]) & (k != K["ref"]) \
        & ((prev_ok & (m.observed | ~m.known)) | clean_after)
    late_checks = (cols.kind == K["busy"]) & ~cols.has_pfn & (cols.ts >= cutoff)
    if settled > cutoff and not late_checks.any():
        loud = (k == K["busy"]) | ((k == K["pin"]) & cols.longterm[m.idx])
        quiet = seg.cumsum(loud.view(np.int8), m.page_starts) == 0
        elig &= (ts < cutoff) | ((ts < settled) & quiet)
    else:
        elig &= ts < cutoff
    in_open = _member(cols.rows(), open_rows)
    if len(open_rows):
        elig &= seg.cumsum(in_open[m.idx].view(np.int8), m.page_starts) == 0
    # A task's first busy check after its last report of a page whose verdict
    # is still to come says it had stopped waiting (missed_wakeup): kept, and
    # no page is cut past it.
    woke = _first_recheck(m, cols, settled)
    if woke.any():
        elig &= seg.cumsum(woke[m.idx].view(np.int8), m.page_starts) == 0
    kept_checks = _kept_checks(cols, in_open)
    if kept_checks.any():
        # Those checks are looked at again (their repeats are counted anew each
        # batch): the pages they found must still show what they found then.
        elig &= ts < int(cols.ts[kept_checks].min())
    if not elig.any():
        return None
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
    keep_pos |= kept_checks | woke
    sel = np.flatnonzero(keep_pos)
    if len(sel) == cols.n:
        return None
    held = dataclasses.replace(cols, row=cols.rows()[sel], comm_names=[], pages=None,
                               **{a: getattr(cols, a)[sel].copy() for a in ARRAYS})
    at = np.searchsorted(sel, m.idx[cut])
    held.pgmap[at] = m.pgmap[cut]
    prior = last_nz[cut - 1]
    patch = (mp[cut] == 0) & (prior >= firsts[cut])
    held.mapping[at[patch]] = mp[prior[patch]]
    return held


def _previous_ordinary(k: np.ndarray, page_starts: np.ndarray) -> np.ndarray:
    """Per per-page row, the page's previous row that is not a ref row (-1: none)."""
    is_ref = k == K["ref"]
    if not is_ref.any():
        ar = np.arange(len(k), dtype=np.int64)
        return np.where(page_starts, -1, ar - 1)
    return seg.shift(seg.last_valid_index(~is_ref, page_starts), page_starts, -1)


def _kept_checks(cols: Columns, in_open: np.ndarray) -> np.ndarray:
    """The page-less busy checks kept for a finding still counting repeats: from
    its earliest page-less evidence row on."""
    free = in_open & ~cols.has_pfn
    if not free.any():
        return np.zeros(cols.n, dtype=bool)
    return (cols.kind == K["busy"]) & ~cols.has_pfn & (cols.rows() >= int(cols.rows()[free].min()))


def _first_recheck(m: PageModel, cols: Columns, settled: int) -> np.ndarray:
    """Per file position: the first busy check (any page or none) by the task of
    a busy episode not decided yet (its page not idle, or idle less than T + 1
    before `settled`) after the episode's last report."""
    out = np.zeros(cols.n, dtype=bool)
    b = busy_episodes(m)
    if not len(b):
        return out
    ts = np.asarray(m.ts[np.maximum(b.idle_at, 0)])
    open_ = (b.idle_at < 0) | (ts + m.threshold_ns + 1 > settled)
    if not open_.any():
        return out
    e = np.flatnonzero(open_)
    s_rep = m.seq[b.rows[b.offsets[e + 1] - 1]].astype(np.int64)
    pos = np.flatnonzero(cols.kind == K["busy"])
    c_task = task_ids(m, pos)
    c_seq = m.seq_of[pos].astype(np.int64)
    o = np.lexsort((c_seq, c_task))                       # by task, then time
    pos, c_task, c_seq = pos[o], c_task[o], c_seq[o]
    # Within each task's run, the first check after s_rep: a search over
    # (task rank, seq) made one sorted int64 key.
    tasks, t_code = np.unique(c_task, return_inverse=True)
    span = int(cols.n) + 1
    key = t_code.astype(np.int64) * span + c_seq
    q = np.searchsorted(tasks, b.task[e])
    known = (q < len(tasks)) & (tasks[np.minimum(q, len(tasks) - 1)] == b.task[e])
    at = np.searchsorted(key, q.astype(np.int64) * span + s_rep, side="right")
    ok = known & (at < len(key))
    ok[ok] = t_code[at[ok]] == q[ok]
    out[pos[at[ok]]] = True
    return out


def _member(x: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """x in sorted_set (sorted, unique), by binary search: no sort of both."""
    if not len(sorted_set):
        return np.zeros(len(x), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_set, x), len(sorted_set) - 1)
    return sorted_set[at] == x
