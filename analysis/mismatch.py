"""The one sequential rule of the page model (analysis/model.py): a `put` on a
pinned page that leaves the refcount below idle + P x w is a pin released
through put_page (pin_put_mismatch) and counts as that pin's release.

The model's first pass ignores the rule; only the page lives holding a
candidate put are replayed here, event by event (true mismatches are a subset
of the first pass's candidates, since the rule can only lower P).
"""

from __future__ import annotations

import numpy as np

from pageref.analysis.columns import K


def replay_mismatches(cand: np.ndarray, life_starts: np.ndarray, k: np.ndarray, refs: np.ndarray,
            w: np.ndarray, idle: np.ndarray, before: np.ndarray, observed: np.ndarray,
            pins_after: np.ndarray, mismatch: np.ndarray) -> None:
    """Apply the mismatch rule to the page lives that hold a candidate put
    `cand` (sorted rows), event by event from each life's first candidate (the
    rows before it are as the first pass counted them). One pass over those
    rows: linear in their number, whatever the number of mismatches."""
    lifes = np.flatnonzero(life_starts)
    life_end = np.append(lifes[1:], len(k))
    which = np.searchsorted(lifes, cand, side="right") - 1
    first_cand = cand[np.r_[True, which[1:] != which[:-1]]]
    ends = life_end[np.unique(which)]
    pin, put, unpin = K["pin"], K["put"], K["unpin"]
    for a, b in zip(first_cand.tolist(), ends.tolist()):
        P = 0 if life_starts[a] else int(pins_after[a - 1])
        kk, rr, ww = k[a:b].tolist(), np.asarray(refs[a:b]).tolist(), \
            np.asarray(w[a:b]).tolist()
        slack = (before[a:b] - np.asarray(refs[a:b]) - np.asarray(idle[a:b])).tolist()
        ob = observed[a:b].tolist()
        out = [0] * (b - a)
        hit = []
        for j, kj in enumerate(kk):
            if kj == pin:
                P += rr[j]
            elif kj == unpin:
                P = max(0, P - rr[j])
            elif kj == put and P > 0 and ob[j] and slack[j] < P * ww[j]:
                hit.append(j)
                P = max(0, P - rr[j])
            out[j] = P
        pins_after[a:b] = out
        if hit:
            mismatch[a + np.asarray(hit)] = True
