"""double_free: a second `free` of a page with no `get` or `pin` between.

Kernel bug: the page is handed back to its owner twice (e.g. a ZONE_DEVICE
page_free callback run again after a refcount underflow), corrupting the
owner's free list. A refused grab (`grab_failed`) took nothing and does not
count as a grab in between.
"""

from __future__ import annotations

import numpy as np

from pageref.analysis import segments as seg
from pageref.analysis.columns import K
from pageref.analysis.detectors.base import ERROR, Anomaly, anomaly, gap_note, judged, spans_loss
from pageref.analysis.fmt import fmt_ns
from pageref.analysis.model import PageModel

KIND = "double_free"


def detect(m: PageModel) -> list[Anomaly]:
    is_free = m.kind == K["free"]
    if not is_free.any():
        return []
    grabs = (m.kind == K["get"]) | (m.kind == K["pin"])
    life_first = seg.segment_first_index(m.life_starts)
    has_grab = seg.any_per_segment(grabs, m.life_starts)
    second = ~m.page_starts[life_first]  # a free closed the page's previous life
    out = []
    for j in np.flatnonzero(is_free & second & ~has_grab).tolist():
        prev = int(life_first[j]) - 1
        out.append(anomaly(
            m, KIND, j,
            f"freed again {fmt_ns(int(m.ts[j]) - int(m.ts[prev]))} after the previous free "
            f"with no get or pin in between" + gap_note(m, prev, j),
            judged(ERROR, spans_loss(m, prev, j)), [prev, j]))
    return out
