"""pin_put_mismatch: a `put` on a page with P > 0 pins outstanding that leaves the
refcount below idle + P x w.

Kernel bug: a FOLL_PIN pin released with put_page() instead of
unpin_user_page(): the pin bias (w) stays in the refcount, so the page never
looks DMA-idle again. The put counts as the pin's release (the model lowers P),
so the same pin is not also reported as a pin_leak.
"""

from __future__ import annotations

import numpy as np

from pageref.analysis.detectors.base import (
    ERROR,
    Anomaly,
    anomaly,
    judged,
    pin_episode,
    pin_rows,
    spans_loss,
)
from pageref.analysis.detectors.repeats import merged_rows
from pageref.analysis.model import PageModel

KIND = "pin_put_mismatch"


def detect(m: PageModel) -> list[Anomaly]:
    out = []
    for j in np.flatnonzero(m.mismatch).tolist():
        P = int(m.pins_before[j])
        a = pin_episode(m, j)
        ev = [j] + [x for x in pin_rows(m, a, j - 1)][-8:]
        out.append((j, anomaly(
            m, KIND, j,
            f"put of {m.refs[j]} with {P} pin(s) outstanding left the refcount at "
            f"{m.before[j] - m.refs[j]}, below idle {m.idle[j]} + {P} x {m.w[j]}: "
            f"a pin released through put_page instead of unpin_user_page",
            judged(ERROR, spans_loss(m, a, j)), ev)))
    return merged_rows(m, out)
