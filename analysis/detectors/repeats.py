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
from collections.abc import Callable, Sequence

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
    a = [o.anomaly for o in occ]
    return merged_arrays(
        m, np.array([o.j for o in occ], dtype=np.int64),
        np.array([o.seq for o in occ], dtype=np.int64),
        np.array([o.row for o in occ], dtype=np.int64),
        np.array([x.ts_ns for x in a], dtype=np.int64),
        np.array([x.severity for x in a], dtype=object),
        [x.decided_ns for x in a], lambda k: dataclasses.replace(a[k]))


def merged_arrays(m: PageModel, js: np.ndarray, seqs: np.ndarray, rows: np.ndarray,
                  ts: np.ndarray, sev: np.ndarray, decided: Sequence[int | None],
                  make: Callable[[int], Anomaly], kind: str | None = None) -> list[Anomaly]:
    """`merged` for occurrences given as arrays (per occurrence: per-page row j,
    seq, global row, time, severity, decision time), the Anomaly of occurrence
    k made by make(k) (a new record, completed in place) only for each
    finding's first occurrence: a detector with
    many repeats (a busy check in a loop) writes one text per finding. Findings
    final at or before `m.emitted_to` (already out, never to change) are left
    out. With `kind`, a first occurrence's record written in an earlier pass
    (`m.made`, kept by the engine) is reused: the same rows give the same text.
    """
    if not len(js):
        return []
    T = m.threshold_ns
    life = m.life_first[js].astype(np.int64)
    order = np.lexsort((seqs, life))
    life, ts_o, js_o, sev_o = life[order], ts[order], js[order], sev[order]
    new = np.ones(len(order), dtype=bool)
    new[1:] = (life[1:] != life[:-1]) | (ts_o[1:] - ts_o[:-1] > T) | (sev_o[1:] != sev_o[:-1])
    # The free that ends each occurrence's page life (-1: none yet).
    nf = seg.next_true_index(m.kind == K["free"], m.page_starts, at=js_o)
    starts = np.flatnonzero(new)
    ends = np.append(starts[1:], len(order))
    at_end = np.array([d is None for d in decided], dtype=bool)[order]
    own = np.array([-1 if d is None else int(d) for d in decided], dtype=np.int64)[order]
    close = ts_o[ends - 1] + T + 1
    free_ts = np.asarray(m.ts[np.maximum(nf[ends - 1], 0)], dtype=np.int64)
    close = np.where(nf[ends - 1] >= 0, np.minimum(close, free_ts), close)
    open_end = np.logical_or.reduceat(at_end, starts)
    final = np.maximum(close, np.maximum.reduceat(own, starts))
    done = m.emitted_to
    out = []
    for g, (s, e) in enumerate(zip(starts.tolist(), ends.tolist())):
        if done is not None and not open_end[g] and final[g] <= done:
            continue
        first = _made(m, kind, int(rows[order[s]]), int(order[s]), make)
        ev = list(first.evidence)
        for x in rows[order[s + 1:e]].tolist():
            if len(ev) >= MAX_EVIDENCE:
                break
            if x not in ev:
                ev.append(x)
        # `first` is make's own record: set in place (a copy per finding cost
        # seconds on a busy trace's 100k findings).
        first.count, first.evidence = e - s, sorted(ev)
        first.final_ns = None if open_end[g] else int(final[g])
        out.append(first)
    return out


def merged_rows(m: PageModel, found: Sequence[tuple[int, Anomaly]]) -> list[Anomaly]:
    """`merged` for findings triggered by per-page row j: [(j, anomaly), ...]."""
    if not found:
        return []
    rows = m.rows_of([j for j, _ in found])
    return merged(m, [Occurrence(j, int(m.seq[j]), r, a) for (j, a), r in zip(found, rows)])


def _made(m: PageModel, kind: str | None, row: int, k: int,
          make: Callable[[int], Anomaly]) -> Anomaly:
    """A fresh record for the finding whose first occurrence (k, global `row`)."""
    if kind is None or m.made is None:
        return make(k)
    rec = m.made.get((kind, row))
    if rec is None:
        rec = m.made[(kind, row)] = make(k)
    # Completed in place by the caller, shared with the engine: once emitted it
    # is the record the engine holds, which takes the new count just as the
    # engine's own update (Engine._grown) would give it.
    return rec
