"""One finding per fact: the repeats of a kind on one page life merged into one
Anomaly carrying `count` (docs/anomalies.md, "Repeats").

Occurrences of a kind on the same page, in the same page life (no `free` of the
page between them), each within T of the previous one and of the same severity
as it (a repeat across a loss, `uncertain`, is not the same evidence), are one
finding: the
first occurrence's time, task, detail, severity and decision (`decided_ns`: the
engine emits it then), `count` the number of occurrences, evidence the first
occurrence's rows then the trigger rows of the repeats (MAX_EVIDENCE rows at
most). The count is final (`final_ns`) when the trace's time passes T after
the last repeat or reaches the `free` that ends the page life, whichever is
first: no later event can join then. Until then the engine raises the count on
the record it emitted, so a streaming pass ends with the whole pass's counts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from pageref.analysis import segments as seg
from pageref.analysis.columns import K
from pageref.analysis.detectors.base import MAX_EVIDENCE, Anomaly
from pageref.analysis.model import PageModel


@dataclasses.dataclass(frozen=True)
class Occurrence:
    """One raw finding before merging."""

    j: int          # per-page row of the page the finding is on (its life and next free)
    seq: int        # time order of the trigger (model seq)
    row: int        # global row number of the trigger (cited for a repeat)
    anomaly: Anomaly


def merged(m: PageModel, occ: Sequence[Occurrence]) -> list[Anomaly]:
    """The occurrences of one kind merged per page life (see the module doc)."""
    if not occ:
        return []
    T = m.threshold_ns
    js = np.array([o.j for o in occ], dtype=np.int64)
    life = m.life_first[js].astype(np.int64)
    ts = np.array([o.anomaly.ts_ns for o in occ], dtype=np.int64)
    seqs = np.array([o.seq for o in occ], dtype=np.int64)
    order = np.lexsort((seqs, life))
    life, ts, js = life[order], ts[order], js[order]
    new = np.ones(len(order), dtype=bool)
    sev = np.array([o.anomaly.severity for o in occ], dtype=object)[order]
    new[1:] = (life[1:] != life[:-1]) | (ts[1:] - ts[:-1] > T) | (sev[1:] != sev[:-1])
    # The free that ends each occurrence's page life (-1: none yet).
    nf = seg.next_true_index(m.kind == K["free"], m.page_starts, at=js)
    starts = np.flatnonzero(new)
    ends = np.append(starts[1:], len(order))
    out = []
    for s, e in zip(starts.tolist(), ends.tolist()):
        group = [occ[int(x)] for x in order[s:e]]
        first = group[0].anomaly
        last_ts = int(ts[e - 1])
        close = last_ts + T + 1
        if nf[e - 1] >= 0:
            close = min(close, int(m.ts[nf[e - 1]]))
        own = [o.anomaly.decided_ns for o in group]
        final = None if any(d is None for d in own) else \
            max([close] + [int(d) for d in own if d is not None])
        ev = list(first.evidence)
        for o in group[1:]:
            if len(ev) >= MAX_EVIDENCE:
                break
            if o.row not in ev:
                ev.append(o.row)
        out.append(dataclasses.replace(first, count=len(group), evidence=sorted(ev),
                                       final_ns=final))
    return out


def merged_rows(m: PageModel, found: Sequence[tuple[int, Anomaly]]) -> list[Anomaly]:
    """`merged` for findings triggered by per-page row j: [(j, anomaly), ...]."""
    if not found:
        return []
    rows = m.rows_of([j for j, _ in found])
    return merged(m, [Occurrence(j, int(m.seq[j]), r, a) for (j, a), r in zip(found, rows)])
