"""busy_page_stall: a page reported `busy` to a task stayed above idle for at
least T after the first report.

Kernel situation: truncate or hole punch blocked behind a reference holder
(a long DMA, a leaked pin): the task sleeps in xfs_break_dax_layouts() /
ext4_break_layouts(). Reported with the holders (see busy_episodes.holders).
Where the page never goes idle in the trace, it is decided only if the trace
goes on for T after the first report.
"""

from __future__ import annotations

import numpy as np

from pageref.analysis.detectors.base import (
    WARNING,
    Anomaly,
    anomaly,
    judged,
    lost_after,
    spans_loss,
    task_label,
)
from pageref.analysis.detectors.busy_episodes import busy_episodes, holders
from pageref.analysis.fmt import fmt_ns
from pageref.analysis.model import PageModel

KIND = "busy_page_stall"


def _holder_text(m: PageModel, rows: list[int]) -> str:
    counts: dict[str, int] = {}
    for j in rows:
        counts[task_label(m, j)] = counts.get(task_label(m, j), 0) + 1
    if not counts:
        return "no grab seen since the page was last idle (taken before the trace began?)"
    return "holders: " + ", ".join(f"{t} ({c} grab{'s' if c > 1 else ''})"
                                   for t, c in sorted(counts.items(), key=lambda x: -x[1]))


def detect(m: PageModel) -> list[Anomaly]:
    b = busy_episodes(m)
    if not len(b):
        return []
    T = m.threshold_ns
    # How long each episode's page stayed above idle, all episodes at once: a
    # Python loop runs only over the stalls reported.
    ts = np.asarray(m.ts)
    start = ts[b.first]
    ended = b.idle_at >= 0
    blocked = np.where(ended, ts[np.maximum(b.idle_at, 0)], m.trace_end) - start
    out = []
    for e in np.flatnonzero(blocked >= T).tolist():
        ep = b.episode(m, e)
        if ep.idle_at >= 0:
            how = f"for {fmt_ns(int(blocked[e]))}"
            # The page may have gone idle earlier, in lost events.
            unsure = spans_loss(m, ep.first, ep.idle_at)
        else:
            how = f"for {fmt_ns(int(blocked[e]))}, to the end of the trace"
            last = int(np.searchsorted(m.pfn, m.pfn[ep.first], side="right")) - 1
            unsure = spans_loss(m, ep.first, last) or lost_after(m, last)
        hold = holders(m, ep.first)
        rc = f" (refcount {m.before[ep.first]}, idle {m.idle[ep.first]})" \
            if m.known[ep.first] else ""
        ev = ep.busy + hold + ([ep.idle_at] if ep.idle_at >= 0 else [])
        out.append(anomaly(
            m, KIND, ep.first,
            f"{task_label(m, ep.first)} found the page busy {len(ep.busy)} time(s){rc}; it "
            f"stayed above idle {how}; {_holder_text(m, hold)}",
            judged(WARNING, unsure), ev,
            decided_ns=int(ts[ep.idle_at]) if ep.idle_at >= 0 else None,
            at_end=ep.idle_at < 0))
    return out
