"""grab_refused_on_free_page (pageref's own): a refused grab (`grab_failed`) on a
page whose observed refcount is 0 (or below) although its pgmap type idles at 1
or more.

Such a page should never sit at 0 while mapped: the kernel's check in
try_grab_page()/try_grab_folio() caught a freed (or underflowed) page still in a
page table and refused it (it WARNs on old kernels). The refusal itself is
correct, so this is a warning: the bug is whatever left the page there. Refused
grabs on types that idle at 0 are the normal GUP-fast race with a free, and
refused FOLL_LONGTERM pins on fsdax are the kernel working: neither is reported.
"""

from __future__ import annotations

import numpy as np

from pageref.analysis.columns import K
from pageref.analysis.detectors.base import WARNING, Anomaly, anomaly, judged, spans_loss
from pageref.analysis.detectors.repeats import merged_rows
from pageref.analysis.model import PageModel

KIND = "grab_refused_on_free_page"


def detect(m: PageModel) -> list[Anomaly]:
    hit = np.flatnonzero((m.kind == K["grab_failed"]) & m.observed & (m.before <= 0)
                         & (m.idle >= 1))
    return merged_rows(m, [
        (j, anomaly(m, KIND, j, f"grab refused on a page at refcount {m.before[j]} although "
                    f"its type idles at {m.idle[j]}: a freed page is still mapped",
                    judged(WARNING, spans_loss(m, j, j)), [j])) for j in hit.tolist()])
