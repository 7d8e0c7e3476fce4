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
import pandas as pd

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
    no probe sees, so either witness will do)."""
    release = (m.kind == K["put"]) | (m.kind == K["unpin"])
    at_idle = m.after <= m.idle
    counted_idle = (m.pins_after == 0) & (m.gets_after == 0)
    flag = (m.kind == K["free"]) | (m.observed & at_idle) \
        | (release & ~m.observed & ((m.known & at_idle) | counted_idle))
    return flag & (m.kind != K["busy"])


@dataclasses.dataclass
class BusyEpisodes:
    """The episodes of a model, computed once for the detectors that share them."""

    episodes: list[Episode]   # in time order
    idle_flag: np.ndarray     # per-page rows after which the page is idle
    idle_rows: np.ndarray     # flatnonzero(idle_flag)


def episodes(m: PageModel) -> tuple[list[Episode], np.ndarray]:
    """(episodes in time order, idle-point flags over the per-page rows)."""
    b = busy_episodes(m)
    return b.episodes, b.idle_flag


def busy_episodes(m: PageModel) -> BusyEpisodes:
    if m.busy is None:
        m.busy = _compute(m)
    return m.busy


def _compute(m: PageModel) -> BusyEpisodes:
    busy = np.flatnonzero(m.kind == K["busy"])
    flag = idle_points(m) if len(busy) else np.zeros(len(m.kind), dtype=bool)
    eps: list[Episode] = []
    if len(busy):
        nxt = seg.next_true_index(flag, m.page_starts, at=busy)
        fpos = m.idx[busy]
        df = pd.DataFrame({"j": busy, "pfn": m.pfn[busy], "task": task_ids(m, fpos),
                           "nxt": nxt, "mapping": m.cols.mapping[fpos]})
        for (pfn, task, nx), g in df.groupby(["pfn", "task", "nxt"], sort=False):
            js = sorted(int(x) for x in g["j"])
            maps = g["mapping"].to_numpy()
            maps = maps[maps != 0]
            eps.append(Episode(int(pfn), int(task), js, int(nx), int(maps[0]) if len(maps) else 0))
        eps.sort(key=lambda e: int(m.seq[e.first]))
    return BusyEpisodes(eps, flag, np.flatnonzero(flag))


def holders(m: PageModel, ep: Episode, flag: np.ndarray) -> list[int]:
    """Per-page rows of the grabs that may block the episode: taken since the
    page was last idle (within its life), by tasks that did not drop as many
    as they took in that span; all of that span's grabs if no task is left
    (the releases ran in other contexts, e.g. I/O completion)."""
    first = ep.first
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
    net = pd.Series(np.where(grab, m.refs[span], 0) - np.where(rel, m.refs[span], 0))
    left = net.groupby(pid).sum()
    keep = set(left[left > 0].index)
    sel = grab & np.isin(pid, list(keep)) if keep else grab
    return [int(x) for x in span[sel]]
