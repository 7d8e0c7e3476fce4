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
    ar = np.arange(len(mp), dtype=np.int64)
    last_nz = np.maximum.accumulate(np.where(mp != 0, ar, -1))
    first_row = seg.segment_first_index(m.page_starts)
    last_map = np.where(last_nz >= first_row, mp[np.maximum(last_nz, 0)], 0)
    held = m.gets_after + m.pins_after
    zero_rows = np.flatnonzero(held == 0)
    page_no = np.cumsum(m.page_starts) - 1
    N = int(cols.n) + 1
    key = page_no * N + m.seq                 # increasing: pages by pfn, rows by time
    grab = (m.kind == K["get"]) | (m.kind == K["pin"])
    # Rows that recorded a mapping, by (mapping, time): a check's candidate
    # pages are one slice, whatever the number of checks. (Any row: what makes
    # a page the mapping's is the last mapping recorded on it, below.)
    gr = np.flatnonzero(mp != 0)
    gr = gr[np.lexsort((m.seq[gr], mp[gr]))]
    gr_map, gr_seq = mp[gr], m.seq[gr]
    lost_seq = m.lost_seq
    out = []
    for i in checks[np.argsort(m.seq_of[checks], kind="stable")]:
        s, M = int(m.seq_of[i]), np.uint64(cols.mapping[i])
        lo, hi = np.searchsorted(gr_map, M, "left"), np.searchsorted(gr_map, M, "right")
        g = gr[lo:lo + int(np.searchsorted(gr_seq[lo:hi], s, "left"))]
        if not len(g):
            continue
        pages = np.unique(page_no[g])
        last = np.searchsorted(key, pages * N + s, side="left") - 1   # last row before s
        ok = (last >= 0) & (page_no[np.maximum(last, 0)] == pages)
        last = last[ok]
        last = last[(held[last] > 0) & (last_map[last] == M)]
        if not len(last):
            continue
        # Where each page's outstanding run began (after it last held nothing).
        z = np.searchsorted(zero_rows, last, side="right") - 1
        start = np.where(z >= 0, zero_rows[np.maximum(z, 0)] + 1, 0) if len(zero_rows) \
            else np.zeros(len(last), dtype=np.int64)   # the pages never held nothing yet
        start = np.maximum(start, first_row[last])
        # No decision across lost events between the run's start and the check.
        lost_in = (np.searchsorted(lost_seq, s) - np.searchsorted(lost_seq, m.seq[start])) > 0
        lost_in |= m.unseen[last]          # references on the page were not followed
        last, start = last[~lost_in], start[~lost_in]
        if not len(last):
            continue
        rows = np.concatenate([np.arange(a, b + 1) for a, b in zip(start, last)])
        rows = rows[grab[rows]]
        G, P = int(m.gets_after[last].sum()), int(m.pins_after[last].sum())
        holders = list(dict.fromkeys(task_label(m, int(j)) for j in rows))
        pid = int(cols.pid[i])
        tid = int(task_ids(m, np.array([i]))[0])
        first = int(m.pfn[last[0]])
        what = ", ".join(x for x in (f"{G} get(s)" if G else "", f"{P} pin(s)" if P else "") if x)
        row_i = int(i if cols.row is None else cols.row[i])
        out.append(Occurrence(int(last[0]), s, row_i, Anomaly(
            kind=KIND, pfn=first, ts_ns=int(cols.ts[i]), pid=pid if pid >= 0 else None,
            comm=cols.comm_of(i),
            detail=f"busy check of mapping {int(M):#x} by task {tid} found nothing busy while "
                   f"{len(last)} page(s) of it (from {page(first)}) held {what} not seen "
                   f"released (holders: {', '.join(holders)}): the blocks go back to the "
                   f"file system with references outstanding",
            severity=ERROR if P else WARNING, decided_ns=int(cols.ts[i]), final_ns=int(cols.ts[i]),
            evidence=sorted([row_i]
                            + m.rows_of(sorted(int(j) for j in rows)[:MAX_EVIDENCE - 1])))))
    # A check repeated in a loop is one finding, on the lowest page's life.
    return merged(m, out)
