"""longterm_pin_fsdax: a `pin` with `longterm` true on an fsdax page.

Kernel bug: FOLL_LONGTERM pins on fsdax pages are refused (the filesystem
cannot wait for a long-term pin before truncate; check_vma_flags() /
vma_is_fsdax() return -EOPNOTSUPP). A successful one means a GUP path skipped
the check. A refused one (`grab_failed`) is the kernel working: not reported.
"""

from __future__ import annotations

import numpy as np

from pageref.analysis.columns import PGMAP, K
from pageref.analysis.detectors.base import ERROR, Anomaly, anomaly, judged, spans_loss
from pageref.analysis.detectors.repeats import merged_rows
from pageref.analysis.model import PageModel

KIND = "longterm_pin_fsdax"


def detect(m: PageModel) -> list[Anomaly]:
    longterm = m.cols.longterm[m.idx]
    hit = np.flatnonzero((m.kind == K["pin"]) & longterm & (m.pgmap == PGMAP["fsdax"]))
    return merged_rows(m, [
        (j, anomaly(m, KIND, j, "FOLL_LONGTERM pin succeeded on an fsdax page "
                    "(the kernel must refuse it)", judged(ERROR, spans_loss(m, j, j)), [j]))
        for j in hit.tolist()])
