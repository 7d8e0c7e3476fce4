"""longterm_pin_fsdax: a `pin` with `longterm` true on an fsdax page, kept.

Kernel bug: FOLL_LONGTERM pins on fsdax pages are refused (the filesystem
cannot wait for a long-term pin before truncate). Since 5.17-ish kernels refuse
before any reference is taken (check_vma_flags() / vma_is_fsdax() return
-EOPNOTSUPP); a refused grab (`grab_failed`) is the kernel working: not
reported.

The 5.x kernels refuse *after* the grab: __gup_longterm_locked() pins the
pages, then check_dax_vmas() finds the fsdax vma and unpin_user_pages() drops
every pin before -EOPNOTSUPP returns (mm/gup.c, 5.10). The trace shows a
long-term pin that its own task drops at once. So a pin counts only when it is
kept: its page's next row is not an unpin by the same task within the
threshold T (`after T` is when that is decided). A path that pins long-term and
lets go within T holds nothing long-term either.
"""

from __future__ import annotations

import numpy as np

from pageref.analysis import segments as seg
from pageref.analysis.columns import PGMAP, K
from pageref.analysis.detectors.base import ERROR, Anomaly, anomaly, judged, spans_loss
from pageref.analysis.detectors.repeats import merged_rows
from pageref.analysis.model import PageModel

KIND = "longterm_pin_fsdax"


def undone_at_once(m: PageModel, js: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Per pin row in `js`: the page's next row is an unpin by the same task
    within T (the 5.x refusal after the grab). Ref rows between (the kernel's
    record of the pin and the unpin) are passed over."""
    nxt = seg.next_true_index(m.kind != K["ref"], m.page_starts, at=js)
    ok = nxt >= 0
    if not ok.any():
        return ok
    a, b = js[ok], nxt[ok]
    tid = m.cols.tid[m.idx]
    same = (m.kind[b] == K["unpin"]) & (tid[b] == tid[a]) & (tid[a] >= 0) \
        & (ts[b] - ts[a] <= m.threshold_ns)
    ok[ok] = same
    return ok


def detect(m: PageModel) -> list[Anomaly]:
    longterm = m.cols.longterm[m.idx]
    hit = np.flatnonzero((m.kind == K["pin"]) & longterm & (m.pgmap == PGMAP["fsdax"]))
    ts = np.asarray(m.ts)        # gathered on access: once
    hit = hit[~undone_at_once(m, hit, ts)]
    return merged_rows(m, [
        (j, anomaly(m, KIND, j, "FOLL_LONGTERM pin succeeded on an fsdax page and was "
                    "kept (the kernel must refuse it)", judged(ERROR, spans_loss(m, j, j)), [j],
                    decided_ns=int(ts[j]) + m.threshold_ns))
        for j in hit.tolist()])
