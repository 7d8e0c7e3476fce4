"""missed_wakeup: a page reported `busy` to a task went back to idle, and that
task made no further `busy` check of the same mapping within T after it.

Kernel bug: the wake-up on the page's refcount (wake_up_var(&page->_refcount)
when an fsdax page drops to idle) was lost, so the truncating task sleeps for
ever. Decided only where the trace goes on for at least T past the idle point.
A check with no mapping recorded counts as a check of any mapping. Not decided
when the task checked again before the idle point (it was not asleep then).
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
from pageref.analysis.detectors.busy_episodes import busy_episodes, task_ids
from pageref.analysis.fmt import fmt_ns
from pageref.analysis.model import PageModel

KIND = "missed_wakeup"


def detect(m: PageModel) -> list[Anomaly]:
    b = busy_episodes(m)
    T = m.threshold_ns
    if not len(b):
        return []
    ts = np.asarray(m.ts)
    t_idle = ts[np.maximum(b.idle_at, 0)]
    eps = np.flatnonzero((b.idle_at >= 0) & (m.trace_end - t_idle >= T))
    if not len(eps):
        return []
    t_idle = t_idle[eps]
    s_idle = m.seq[b.idle_at[eps]].astype(np.int64)
    task, mapping = b.task[eps], b.mapping[eps]
    # Every busy check in the trace (with or without a busy page), by task. A
    # check counts when it comes after the idle point and at most T after it:
    # time order is `seq` order, so that is a range of ranks (s_idle, s_last].
    cols = m.cols
    pos = np.flatnonzero(cols.kind == K["busy"])
    c_seq = m.seq_of[pos].astype(np.int64)
    c_task, c_map = task_ids(m, pos), cols.mapping[pos]
    by_time = cols.ts if m.by_ts is None else cols.ts[m.by_ts]
    s_last = np.searchsorted(by_time, t_idle + T, side="right") - 1
    # Checks of the episode's task of any mapping (the episode's is unknown),
    # else of its mapping or of an unknown one.
    anyone = _checks_in(c_task, c_seq, task, s_idle, s_last)
    same = np.zeros(len(eps), dtype=np.int64)
    for m_ in (mapping, np.zeros_like(mapping)):
        c_key, key = _pair(c_task, c_map, task, m_)
        same += _checks_in(c_key, c_seq, key, s_idle, s_last)
    rechecked = np.where(mapping == 0, anyone, same) > 0
    # A task sleeping on the page makes no check: one between its last report
    # of the page and the idle point means it had stopped waiting (woken when
    # the page went idle unseen; the idle point found is a later one): most
    # likely the one missed_wakeup 5.10's lab reported once, at another
    # workload's unpin of the reused page.
    s_report = m.seq[b.rows[b.offsets[eps + 1] - 1]].astype(np.int64)
    rechecked |= _checks_in(c_task, c_seq, task, s_report, s_idle - 1) > 0
    out = []
    for e in eps[~rechecked].tolist():
        ep = b.episode(m, e)
        t_i, s_i = int(ts[ep.idle_at]), int(m.seq[ep.idle_at])
        # The page may have gone idle earlier than seen, or the task's next
        # check may be among events lost after the idle point.
        lt = m.lost_ts[m.lost_seq > s_i]
        unsure = spans_loss(m, ep.first, ep.idle_at) or bool((lt <= t_i + T).any())
        out.append(anomaly(
            m, KIND, ep.idle_at,
            f"page went idle ({task_label(m, ep.idle_at)}'s {K_NAMES[m.kind[ep.idle_at]]}) "
            f"after being reported busy to task {ep.task} "
            f"({task_label(m, ep.first)}), which made no further busy check of the mapping "
            f"within {fmt_ns(T)}: a lost wake-up leaves truncate asleep",
            judged(ERROR, unsure), ep.busy + [ep.idle_at],
            decided_ns=t_i + T + 1))   # a re-check at t_idle + T still counts
        # Attribute to the sleeping task, dated at the idle point.
        a = out[-1]
        a.pid, a.comm = _task_who(m, ep.first)
    return out


def _pair(c_task: np.ndarray, c_map: np.ndarray, task: np.ndarray,
          mapping: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense codes of (task, mapping) for the checks and for the episodes."""
    _, t = np.unique(np.concatenate([c_task, task]), return_inverse=True)
    _, mp = np.unique(np.concatenate([c_map, mapping]), return_inverse=True)
    code = t.astype(np.int64) * (int(mp.max()) + 1) + mp
    return code[:len(c_task)], code[len(c_task):]


def _checks_in(c_key: np.ndarray, c_seq: np.ndarray, key: np.ndarray, lo: np.ndarray,
               hi: np.ndarray) -> np.ndarray:
    """Per query: how many checks with key `key` have seq in (lo, hi]: one sort,
    two binary searches (keys made dense so key x rank fits in int64)."""
    if not len(c_key):
        return np.zeros(len(key), dtype=np.int64)
    keys, inv = np.unique(c_key, return_inverse=True)
    span = int(max(int(c_seq.max()), int(hi.max()), int(lo.max()))) + 2
    flat = np.sort(inv.astype(np.int64) * span + c_seq)
    q = np.searchsorted(keys, key)
    found = (q < len(keys)) & (keys[np.minimum(q, len(keys) - 1)] == key)
    base = q.astype(np.int64) * span
    n = np.searchsorted(flat, base + hi, side="right") - np.searchsorted(flat, base + lo,
                                                                          side="right")
    return np.where(found & (hi > lo), n, 0)


def _task_who(m: PageModel, j: int):
    i = int(m.idx[j])
    pid = int(m.cols.pid[i])
    return (pid if pid >= 0 else None), m.cols.comm_of(i)


K_NAMES = {v: k for k, v in K.items()}
