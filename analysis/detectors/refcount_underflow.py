"""refcount_underflow: a `put` (minus refs) or `unpin` (minus refs x w) that takes
the observed refcount below the page's idle refcount.

Kernel bug: a reference dropped twice, or dropped by someone who never took it
(e.g. the unbalanced put_page() after a failed get in the DAX fault path; on
fsdax pages idling at 1, a put to 0 frees a page that is still mapped).
"""

from __future__ import annotations

import numpy as np

from pageref.analysis.columns import K
from pageref.analysis.detectors.base import ERROR, Anomaly, anomaly, judged, spans_loss
from pageref.analysis.detectors.repeats import merged_rows
from pageref.analysis.model import PageModel

KIND = "refcount_underflow"


def detect(m: PageModel) -> list[Anomaly]:
    release = (m.kind == K["put"]) | (m.kind == K["unpin"])
    hit = np.flatnonzero(release & m.observed & (m.before + m.delta < m.idle))
    out = []
    for j in hit.tolist():
        what = "unpin" if m.kind[j] == K["unpin"] else "put"
        weight = f" x {m.w[j]}" if what == "unpin" else ""
        out.append((j, anomaly(
            m, KIND, j,
            f"{what} of {m.refs[j]}{weight} took the refcount from {m.before[j]} to "
            f"{m.before[j] + m.delta[j]}, below idle {m.idle[j]}",
            judged(ERROR, spans_loss(m, j, j)), [j])))
    return merged_rows(m, out)
