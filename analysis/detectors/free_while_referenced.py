"""free_while_referenced: a `free` of a page while P > 0 pins the trace saw taken
are not seen released.

Kernel bug: the page goes back to its owner (the filesystem's free pool, the
device driver) while DMA may still target it: use-after-free by the device.
Outstanding gets (G) only add a hint to the detail: some kernels drop ordinary
references through paths no probe sees (7.2 unmaps fsdax pages through inline
puts), so G alone decides nothing.
"""

from __future__ import annotations

import numpy as np

from pageref.analysis.columns import K
from pageref.analysis.detectors.base import (
    ERROR,
    Anomaly,
    anomaly,
    gap_note,
    judged,
    pin_episode,
    pin_rows,
    spans_loss,
    task_label,
)
from pageref.analysis.model import PageModel

KIND = "free_while_referenced"


def detect(m: PageModel) -> list[Anomaly]:
    out = []
    for j in np.flatnonzero((m.kind == K["free"]) & (m.pins_before > 0)).tolist():
        a = pin_episode(m, j)
        G = int(m.gets_before[j])
        hint = f" (and {G} get(s) not seen dropped)" if G else ""
        out.append(anomaly(
            m, KIND, j,
            f"page freed with {m.pins_before[j]} pin(s) outstanding{hint}; the oldest "
            f"taken by {task_label(m, a)}" + gap_note(m, a, j),
            judged(ERROR, spans_loss(m, a, j)), [j] + pin_rows(m, a, j - 1)))
    return out
