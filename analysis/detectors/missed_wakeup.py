"""missed_wakeup: a page reported `busy` to a task went back to idle, and that
task made no further `busy` check of the same mapping within T after it.

Kernel bug: the wake-up on the page's refcount (wake_up_var(&page->_refcount)
when an fsdax page drops to idle) was lost, so the truncating task sleeps for
ever. Decided only where the trace goes on for at least T past the idle point.
A check with no mapping recorded counts as a check of any mapping.
"""

from __future__ import annotations

import numpy as np

from pageref.analysis.columns import K
from pageref.analysis.detectors.base import (
    ERROR,
    Anomaly,
    anomaly,
    judged,
    spans_loss,
    task_label,
)
from pageref.analysis.detectors.busy_episodes import episodes, task_ids
from pageref.analysis.fmt import fmt_ns
from pageref.analysis.model import PageModel

KIND = "missed_wakeup"


def detect(m: PageModel) -> list[Anomaly]:
    eps, _ = episodes(m)
    T = m.threshold_ns
    eps = [e for e in eps if e.idle_at >= 0 and m.trace_end - int(m.ts[e.idle_at]) >= T]
    if not eps:
        return []
    # Every busy check in the trace (with or without a busy page), by task.
    cols = m.cols
    pos = np.flatnonzero(cols.kind == K["busy"])
    task = task_ids(m, pos)
    order = np.lexsort((m.seq_of[pos], task))
    pos, task = pos[order], task[order]
    seq, ts, mapping = m.seq_of[pos], cols.ts[pos], cols.mapping[pos]
    out = []
    for ep in eps:
        lo, hi = np.searchsorted(task, ep.task, "left"), np.searchsorted(task, ep.task, "right")
        t_idle, s_idle = int(m.ts[ep.idle_at]), int(m.seq[ep.idle_at])
        s, t, mp = seq[lo:hi], ts[lo:hi], mapping[lo:hi]
        same = (mp == ep.mapping) | (mp == 0) | (ep.mapping == 0)
        if ((s > s_idle) & (t <= t_idle + T) & same).any():
            continue
        # The page may have gone idle earlier than seen, or the task's next
        # check may be among events lost after the idle point.
        lt = m.lost_ts[m.lost_seq > s_idle]
        unsure = spans_loss(m, ep.first, ep.idle_at) or bool((lt <= t_idle + T).any())
        out.append(anomaly(
            m, KIND, ep.idle_at,
            f"page went idle ({task_label(m, ep.idle_at)}'s {K_NAMES[m.kind[ep.idle_at]]}) "
            f"after being reported busy to task {ep.task} "
            f"({task_label(m, ep.first)}), which made no further busy check of the mapping "
            f"within {fmt_ns(T)}: a lost wake-up leaves truncate asleep",
            judged(ERROR, unsure), ep.busy + [ep.idle_at],
            decided_ns=t_idle + T + 1))   # a re-check at t_idle + T still counts
        # Attribute to the sleeping task, dated at the idle point.
        a = out[-1]
        a.pid, a.comm = _task_who(m, ep.first)
    return out


def _task_who(m: PageModel, j: int):
    i = int(m.idx[j])
    pid = int(m.cols.pid[i])
    return (pid if pid >= 0 else None), m.cols.comm_of(i)


K_NAMES = {v: k for k, v in K.items()}
