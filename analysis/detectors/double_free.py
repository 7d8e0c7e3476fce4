"""double_free: a second `free` of a page with no `get` or `pin` between, and
nothing between that saw it referenced.

Kernel bug: the page is handed back to its owner twice (e.g. a ZONE_DEVICE
page_free callback run again after a refcount underflow), corrupting the
owner's free list. A refused grab (`grab_failed`) took nothing and does not
count as a grab in between.

The owner's allocation is not a traced grab: a device-private page is handed
out again by its driver (zone_device_page_init() sets the refcount to 1, e.g.
test_hmm's dmirror_devmem_alloc_page) and its last put frees it, so a page
reused by its owner shows free, put, free with no get or pin. What tells an
allocation from a double free is the refcount: an event between the frees that
observed the page above its idle refcount saw it referenced again, so the
second free ended a new life (the hmm-tests selftest on the lab's 6.12-debug
kernel frees thousands of pages this way).
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
    # referenced in between: a grab, or any other event (the free itself
    # excluded) whose observed refcount is above the page's idle refcount
    held = m.observed & ~is_free & (np.asarray(m.before) > np.asarray(m.idle))
    grabs = (m.kind == K["get"]) | (m.kind == K["pin"]) | held
    life_first = seg.segment_first_index(m.life_starts)
    has_grab = seg.any_per_segment(grabs, m.life_starts)
    second = ~m.page_starts[life_first]  # a free closed the page's previous life
    out = []
    for j in np.flatnonzero(is_free & second & ~has_grab).tolist():
        prev = int(life_first[j]) - 1
        out.append(anomaly(
            m, KIND, j,
            f"freed again {fmt_ns(int(m.ts[j]) - int(m.ts[prev]))} after the previous free "
            f"with no get or pin in between and nothing seeing it referenced"
            + gap_note(m, prev, j),
            judged(ERROR, spans_loss(m, prev, j)), [prev, j]))
    return out
