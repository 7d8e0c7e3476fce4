"""pin_leak: P > 0 pins outstanding on a page at the end of the trace.

Kernel bug: a FOLL_PIN pin never released (a missing unpin_user_page() on an
error path); the page stays "maybe DMA pinned" for ever and truncate waits on
it. Reported with the task that took the oldest pin still outstanding and how
long it has been held. Severity is `warning` when held less than the threshold
(the trace may simply have ended during the I/O), `error` otherwise.
"""

from __future__ import annotations

import numpy as np

from pageref.analysis import segments as seg
from pageref.analysis.columns import K
from pageref.analysis.detectors.base import (
    ERROR,
    WARNING,
    Anomaly,
    anomaly,
    gap_note,
    judged,
    lost_after,
    pin_episode,
    pin_rows,
    spans_loss,
    task_label,
)
from pageref.analysis.fmt import fmt_ns
from pageref.analysis.model import PageModel

KIND = "pin_leak"


def detect(m: PageModel) -> list[Anomaly]:
    n = len(m.kind)
    if not n:
        return []
    last = np.append(np.flatnonzero(m.page_starts)[1:] - 1, n - 1)
    if m.any_ref:   # the page's last ordinary row: a ref row after it decides nothing
        last = seg.last_valid_index(m.kind != K["ref"], m.page_starts)[last]
        last = last[last >= 0]
    out = []
    for j in last[(m.pins_after[last] > 0) & (m.kind[last] != K["free"])].tolist():
        a = pin_episode(m, j)
        held = m.trace_end - int(m.ts[a])
        P = int(m.pins_after[j])
        sev = ERROR if held >= m.threshold_ns else WARNING
        out.append(anomaly(
            m, KIND, a,
            f"{P} pin(s) still outstanding at the end of the trace; the oldest, taken by "
            f"{task_label(m, a)}, held for {fmt_ns(held)}" + gap_note(m, a, j),
            judged(sev, spans_loss(m, a, j) or lost_after(m, j)), pin_rows(m, a, j), at_end=True))
    return out
