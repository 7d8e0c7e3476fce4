"""Busy episodes: the shared groundwork of busy_page_stall and missed_wakeup.

dax_layout_busy_page() reports a page still referenced to a task about to
truncate or punch a hole (`busy` with that pfn); the task sleeps until the page
is idle, then checks again, so a blocked truncate shows as repeated `busy`
reports of the same page. An episode is the reports of one page to one task
before the page's next idle point; the idle point is the first later event of
the page after which the refcount is at or below idle (or a `free`; where the
refcount is unknown, a release that leaves no counted pin or get).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt

from pageref.analysis import segments as seg
from pageref.analysis.columns import K
from pageref.analysis.model import PageModel


@dataclasses.dataclass
class Episode:
    pfn: int
    task: int
    busy: list[int]     # per-page rows of the busy reports
    idle_at: int        # per-page row of the idle point, -1 if none in the trace
    mapping: int        # address_space the task checked (0 unknown)

    @property
    def first(self) -> int:
        return self.busy[0]


def task_ids(m: PageModel, file_pos: np.ndarray) -> np.ndarray:
    """tid where recorded, else pid (-1 unknown)."""
    tid = m.cols.tid[file_pos].astype(np.int64)
    return np.where(tid >= 0, tid, m.cols.pid[file_pos].astype(np.int64))


def idle_points(m: PageModel) -> np.ndarray:
    """Rows after which the page is idle: a `free`; any event whose observed
    refcount leaves it at or below idle; a release whose refcount was not
    observed and that leaves it at or below idle by inference, or with no pin or
    get counted outstanding (inference is off when references move through paths
    no probe sees, so either witness will do). A `ref` row (the kernel's own
    record of a change) is never one: ref rows change no verdict."""
    release = (m.kind == K["put"]) | (m.kind == K["unpin"])
    at_idle = m.after <= m.idle
    counted_idle = (m.pins_after == 0) & (m.gets_after == 0)
    flag = (m.kind == K["free"]) | (m.observed & at_idle) \
        | (release & ~m.observed & ((m.known & at_idle) | counted_idle))
    return flag & (m.kind != K["busy"]) & (m.kind != K["ref"])


@dataclasses.dataclass
class BusyEpisodes:
    """The episodes of a model, computed once for the detectors that share them:
    one entry per episode in each array, episodes in time order (of their first
    report)."""

    first: npt.NDArray[np.int64]     # per-page row of the episode's first report
    task: npt.NDArray[np.int64]      # the task reported to (tid, else pid)
    idle_at: npt.NDArray[np.int64]   # per-page row of the idle point, -1 if none yet
    mapping: npt.NDArray[np.uint64]  # address_space the task checked (0 unknown)
    count: npt.NDArray[np.int64]     # busy reports in the episode
    rows: npt.NDArray[np.int64]      # every report's per-page row, by episode, ascending
    offsets: npt.NDArray[np.int64]   # episode e's reports: rows[offsets[e]:offsets[e + 1]]
    idle_flag: np.ndarray            # per-page rows after which the page is idle
    idle_rows: np.ndarray            # flatnonzero(idle_flag)

    def __len__(self) -> int:
        return len(self.first)

    def episode(self, m: PageModel, e: int) -> Episode:
        """Episode e as one record (for the few that become anomalies)."""
        busy = self.rows[self.offsets[e]:self.offsets[e + 1]].tolist()
        return Episode(int(m.pfn[busy[0]]), int(self.task[e]), busy, int(self.idle_at[e]),
                       int(self.mapping[e]))


def busy_episodes(m: PageModel) -> BusyEpisodes:
    if m.busy is None:
        m.busy = _compute(m)
    return m.busy


def _compute(m: PageModel) -> BusyEpisodes:
    """Busy reports grouped by (page, task, next idle point), all at once: a
    sort and run boundaries, no Python loop per report or per episode."""
    busy = np.flatnonzero(m.kind == K["busy"])
    flag = idle_points(m) if len(busy) else np.zeros(len(m.kind), dtype=bool)
    nxt = seg.next_true_index(flag, m.page_starts, at=busy)
    fpos = m.idx[busy]
    task = task_ids(m, fpos)
    mp = m.cols.mapping[fpos]
    o = np.lexsort((busy, task, nxt, m.pfn[busy]))   # by page, idle point, task, row
    b, t, nx, mp = busy[o], task[o], nxt[o], mp[o]
    starts = np.flatnonzero(seg.run_starts(m.pfn[b], nx, t)) if len(b) else \
        np.zeros(0, dtype=np.int64)
    count = np.diff(np.append(starts, len(b))).astype(np.int64)
    # The mapping the task checked: the first report that recorded one.
    at = np.where(mp != 0, np.arange(len(b)), len(b))
    first_nz = np.minimum.reduceat(at, starts) if len(starts) else at[:0]
    mapping = np.where(first_nz < starts + count, mp[np.minimum(first_nz, max(len(b) - 1, 0))],
                       0).astype(np.uint64)
    # Episodes in time order of their first report; reports regrouped to match.
    eo = np.argsort(m.seq[b[starts]], kind="stable")
    rank = np.empty(len(eo), dtype=np.int64)
    rank[eo] = np.arange(len(eo), dtype=np.int64)
    rows = b[np.lexsort((b, np.repeat(rank, count)))]
    count = count[eo]
    return BusyEpisodes(first=b[starts][eo], task=t[starts][eo], idle_at=nx[starts][eo],
                        mapping=mapping[eo], count=count, rows=rows,
                        offsets=np.concatenate([[0], np.cumsum(count)]).astype(np.int64),
                        idle_flag=flag, idle_rows=np.flatnonzero(flag))


def holders(m: PageModel, first: int) -> list[int]:
    """Per-page rows of the grabs that may block the episode whose first report
    is row `first`: taken since the page was last idle (within its life), by
    tasks that did not drop as many as they took in that span; all of that
    span's grabs if no task is left (the releases ran in other contexts, e.g.
    I/O completion)."""
    trues = busy_episodes(m).idle_rows
    k = int(np.searchsorted(trues, first, side="left")) - 1
    last_idle = int(trues[k]) if k >= 0 else -1
    a = max(last_idle + 1, int(m.life_first[first]))
    span = np.arange(a, first)
    ks = m.kind[span]
    grab = (ks == K["get"]) | (ks == K["pin"])
    if not grab.any():
        return []
    rel = (ks == K["put"]) | (ks == K["unpin"])
    pid = m.cols.pid[m.idx[span]]
    refs = np.asarray(m.refs[span], dtype=np.int64)
    net = np.where(grab, refs, 0) - np.where(rel, refs, 0)
    pids, inv = np.unique(pid, return_inverse=True)
    left = np.bincount(inv, weights=net, minlength=len(pids)) > 0
    sel = grab & left[inv] if left.any() else grab
    return [int(x) for x in span[sel]]
