"""busy_check_missed_reference: a truncate or hole punch's busy check (`busy`
with no page) reported nothing busy while pages of the mapping it checked still
had references the trace saw taken and not released (G + P > 0).

Kernel bug: the blocks go back to the file system while someone (a pipe that
vmspliced the pages, a DMA) still holds the pages. On 6.1 to 6.14
dax_layout_busy_page_range() returns NULL at once when !mapping_mapped(mapping),
so after munmap a truncate skips the scan; 6.15+ waits. A page belongs to the
checked mapping when the last non-zero `mapping` recorded on it before the
check is the check's (page->mapping is cleared when truncate disassociates the
entry, so later events do not say). Severity: error when pins are outstanding
(a device may DMA into blocks the file system reallocates), warning when only
gets are (a reader of reallocated blocks; and a get can be over-counted where
its put runs through a path no probe sees). Not decided across lost events:
a page whose outstanding references were taken before a `lost` row that comes
before the check is left out, and so is a page a `lost` row names (references
a bounded walk could not follow) before the check.
"""

from __future__ import annotations

import numpy as np

from pageref.analysis import segments as seg
from pageref.analysis.columns import K
from pageref.analysis.detectors.base import (
    ERROR,
    MAX_EVIDENCE,
    WARNING,
    Anomaly,
    page,
    task_label,
)
from pageref.analysis.detectors.busy_episodes import task_ids
from pageref.analysis.detectors.repeats import Occurrence, merged
from pageref.analysis.model import PageModel

KIND = "busy_check_missed_reference"


def detect(m: PageModel) -> list[Anomaly]:
    cols = m.cols
    checks = np.flatnonzero((cols.kind == K["busy"]) & ~cols.has_pfn & (cols.mapping != 0))
    if not len(checks) or not len(m.kind):
        return []
    # Per-page rows: the mapping last recorded on the page (0 none yet), the
    # references counted outstanding after each row, where that run began.
    mp = cols.mapping[m.idx]
    n = len(mp)
    ar = np.arange(n, dtype=np.int64)
    last_nz = np.maximum.accumulate(np.where(mp != 0, ar, -1))
    first_row = seg.segment_first_index(m.page_starts)
    last_map = np.where(last_nz >= first_row, mp[np.maximum(last_nz, 0)], 0)
    held = m.gets_after + m.pins_after
    zero_rows = np.flatnonzero(held == 0)
    grab = (m.kind == K["get"]) | (m.kind == K["pin"])
    N = int(cols.n) + 1                      # above every seq
    seq = m.seq.astype(np.int64)
    # Each per-page row j holding references of a mapping is a state that lasts
    # from j to the page's next row: a check of that mapping at a time in
    # between finds the page held. Checks and states are joined by mapping
    # (dense codes) and time, all at once: no Python loop per check.
    cs = m.seq_of[checks].astype(np.int64)
    o = np.argsort(cs, kind="stable")
    checks, cs = checks[o], cs[o]
    maps, ccode = np.unique(cols.mapping[checks], return_inverse=True)
    st = np.flatnonzero((held > 0) & (last_map != 0))
    k = np.searchsorted(maps, last_map[st])
    k = np.minimum(k, len(maps) - 1)
    st, k = st[maps[k] == last_map[st]], k[maps[k] == last_map[st]]
    if not len(st):
        return []
    nxt = np.full(n, N, dtype=np.int64)
    nxt[:-1] = np.where(m.page_starts[1:], N, seq[1:])
    ck_order = np.lexsort((cs, ccode))
    ck = ccode[ck_order].astype(np.int64) * N + cs[ck_order]
    lo = np.searchsorted(ck, k * N + seq[st], "right")
    hi = np.searchsorted(ck, k * N + nxt[st], "left")
    cnt = np.maximum(hi - lo, 0)
    if not cnt.sum():
        return []
    last = np.repeat(st, cnt)
    off = np.arange(int(cnt.sum()), dtype=np.int64) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    c = ck_order[np.repeat(lo, cnt) + off]          # index into checks (time order)
    s_c = cs[c]
    # Where each page's outstanding run began (after it last held nothing).
    z = np.searchsorted(zero_rows, last, side="right") - 1
    start = np.where(z >= 0, zero_rows[np.maximum(z, 0)] + 1, 0) if len(zero_rows) \
        else np.zeros(len(last), dtype=np.int64)   # the pages never held nothing yet
    start = np.maximum(start, first_row[last])
    # No decision across lost events between the run's start and the check.
    lost_seq = m.lost_seq
    lost_in = (np.searchsorted(lost_seq, s_c) - np.searchsorted(lost_seq, seq[start])) > 0
    lost_in |= m.unseen[last]          # references on the page were not followed
    keep = ~lost_in
    last, start, c = last[keep], start[keep], c[keep]
    if not len(last):
        return []
    o = np.lexsort((last, c))                        # by check, then by page
    last, start, c = last[o], start[o], c[o]
    bounds = np.flatnonzero(np.r_[True, c[1:] != c[:-1], True])
    out = []
    for a_, b_ in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        out.append(_finding(m, int(checks[c[a_]]), last[a_:b_], start[a_:b_], grab))
    # A check repeated in a loop is one finding, on the lowest page's life.
    return merged(m, out)


def _finding(m: PageModel, i: int, last: np.ndarray, start: np.ndarray,
             grab: np.ndarray) -> Occurrence:
    """Check i (file position) found pages (their last rows before it, and where
    their outstanding runs began) held."""
    cols = m.cols
    M = int(cols.mapping[i])
    rows = np.concatenate([np.arange(a, b + 1) for a, b in zip(start, last)])
    rows = rows[grab[rows]]
    G, P = int(m.gets_after[last].sum()), int(m.pins_after[last].sum())
    holders = list(dict.fromkeys(task_label(m, int(j)) for j in rows))
    pid = int(cols.pid[i])
    tid = int(task_ids(m, np.array([i]))[0])
    first = int(m.pfn[last[0]])
    what = ", ".join(x for x in (f"{G} get(s)" if G else "", f"{P} pin(s)" if P else "") if x)
    row_i = int(i if cols.row is None else cols.row[i])
    ts = int(cols.ts[i])
    return Occurrence(int(last[0]), int(m.seq_of[i]), row_i, Anomaly(
        kind=KIND, pfn=first, ts_ns=ts, pid=pid if pid >= 0 else None,
        comm=cols.comm_of(i),
        detail=f"busy check of mapping {M:#x} by task {tid} found nothing busy while "
               f"{len(last)} page(s) of it (from {page(first)}) held {what} not seen "
               f"released (holders: {', '.join(holders)}): the blocks go back to the "
               f"file system with references outstanding",
        severity=ERROR if P else WARNING, decided_ns=ts, final_ns=ts,
        evidence=sorted([row_i] + m.rows_of(sorted(int(j) for j in rows)[:MAX_EVIDENCE - 1]))))
