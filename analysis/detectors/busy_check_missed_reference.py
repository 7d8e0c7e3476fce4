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
from pageref.analysis.detectors.repeats import merged_arrays
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
    return _findings(m, checks, c, last, start, grab)


def _findings(m: PageModel, checks: np.ndarray, c: np.ndarray, last: np.ndarray,
              start: np.ndarray, grab: np.ndarray) -> list[Anomaly]:
    """One occurrence per check that found pages held: pairs (check c, the
    page's last row before it, where its outstanding run began), sorted by
    check then page. The numbers (references, holders, evidence rows) of every
    occurrence are computed at once; a text is written only for each merged
    finding's first occurrence (a check repeated in a loop is one finding, on
    the lowest page's life)."""
    cols = m.cols
    gs = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])       # each check's first pair
    npages = np.diff(np.append(gs, len(c)))
    G = np.add.reduceat(m.gets_after[last], gs)
    P = np.add.reduceat(m.pins_after[last], gs)
    # Every row of each page's outstanding run, in check then page then row
    # order (so each check's rows come ascending), keeping the grabs.
    lens = last - start + 1
    pair = np.repeat(np.arange(len(last)), lens)
    rows = start[pair] + np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens)
    keep = grab[rows]
    rows, f = rows[keep], np.repeat(np.arange(len(gs)), npages)[pair[keep]]
    f_lo = np.searchsorted(f, np.arange(len(gs) + 1))      # check k's rows: [f_lo[k], f_lo[k+1])
    pos = m.idx[rows]
    # Holders: each check's distinct (pid, comm), in order of first appearance.
    key = cols.pid[pos].astype(np.int64) * (len(cols.comm_names) + 2) + cols.comm[pos] + 1
    o = np.lexsort((np.arange(len(rows)), key, f))
    new = np.r_[True, (f[o][1:] != f[o][:-1]) | (key[o][1:] != key[o][:-1])] if len(o) else \
        np.zeros(0, dtype=bool)
    firsts = np.sort(o[new])
    labels = {int(key[x]): task_label(m, int(rows[x])) for x in
              firsts[np.unique(key[firsts], return_index=True)[1]].tolist()}
    h_lo = np.searchsorted(f[firsts], np.arange(len(gs) + 1))
    h_key = key[firsts].tolist()
    ev_rows = cols.rows()[pos]
    i_all = checks[c[gs]]
    tid = task_ids(m, i_all)
    i_ts = cols.ts[i_all].astype(np.int64)
    i_row = cols.rows()[i_all].astype(np.int64)

    def make(k: int) -> Anomaly:
        i = int(i_all[k])
        M, g, p = int(cols.mapping[i]), int(G[k]), int(P[k])
        pid = int(cols.pid[i])
        first = int(m.pfn[last[gs[k]]])
        what = ", ".join(x for x in (f"{g} get(s)" if g else "", f"{p} pin(s)" if p else "")
                         if x)
        holders = ", ".join(labels[x] for x in h_key[h_lo[k]:h_lo[k + 1]])
        ts = int(i_ts[k])
        ev = ev_rows[f_lo[k]:min(f_lo[k + 1], f_lo[k] + MAX_EVIDENCE - 1)].tolist()
        return Anomaly(
            kind=KIND, pfn=first, ts_ns=ts, pid=pid if pid >= 0 else None,
            comm=cols.comm_of(i),
            detail=f"busy check of mapping {M:#x} by task {int(tid[k])} found nothing busy "
                   f"while {int(npages[k])} page(s) of it (from {page(first)}) held {what} "
                   f"not seen released (holders: {holders}): the blocks go back to the "
                   f"file system with references outstanding",
            severity=ERROR if p else WARNING, decided_ns=ts, final_ns=ts,
            evidence=sorted([int(i_row[k])] + ev))

    sev = np.where(P > 0, ERROR, WARNING).astype(object)
    return merged_arrays(m, last[gs].astype(np.int64), m.seq_of[i_all].astype(np.int64), i_row,
                         i_ts, sev, i_ts.tolist(), make, KIND)
