"""grab_on_free_page: a `get` or `pin` on a page whose observed refcount is 0.

Kernel bug: GUP found a page with a zero refcount in a page table (the
"0-refcount page in a PTE" fsdax/devmap bug): the grab resurrects a free page.
A refused grab (`grab_failed`) is the kernel catching it, not this anomaly.
A negative observed refcount counts as 0 here (the page is already broken).
"""

from __future__ import annotations

import numpy as np

from pageref.analysis.columns import K
from pageref.analysis.detectors.base import ERROR, Anomaly, anomaly, judged, spans_loss
from pageref.analysis.detectors.repeats import merged_rows
from pageref.analysis.model import PageModel

KIND = "grab_on_free_page"


def detect(m: PageModel) -> list[Anomaly]:
    grab = (m.kind == K["get"]) | (m.kind == K["pin"])
    hit = np.flatnonzero(grab & m.observed & (m.before <= 0))
    out = []
    for j in hit.tolist():
        what = "pin" if m.kind[j] == K["pin"] else "get"
        out.append((j, anomaly(
            m, KIND, j,
            f"{what} on a page whose refcount was {m.before[j]}: GUP grabbed a freed page",
            judged(ERROR, spans_loss(m, j, j)), [j])))
    return merged_rows(m, out)
