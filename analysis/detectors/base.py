"""What a detector returns, and helpers to build it from the page model."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import numpy as np

from pageref.analysis.columns import K
from pageref.analysis.fmt import fmt_pfn
from pageref.analysis.model import PageModel
from pageref.analysis.severity import Severity

# Evidence lists are capped so one pathological page cannot produce a huge row.
MAX_EVIDENCE = 64

ERROR, WARNING, UNCERTAIN = Severity.ERROR.value, Severity.WARNING.value, \
    Severity.UNCERTAIN.value


@dataclasses.dataclass
class Anomaly:
    kind: str
    pfn: int | None
    ts_ns: int
    pid: int | None
    comm: str | None
    detail: str
    severity: str       # a Severity value
    evidence: list[int]  # row positions in trace.events (file order)
    # The trace time from which the verdict cannot change: once an event at or
    # after it has been seen (None: only at the end of the trace). The engine
    # emits an anomaly then (analysis/engine.py).
    decided_ns: int | None = None
    # How many times the finding was seen: repeats of one fact on one page life
    # are one Anomaly (analysis/detectors/repeats.py). The engine emits it at
    # `decided_ns` (its first occurrence's decision) and raises `count` (and
    # the evidence of the repeats) on that same record until `final_ns`, the
    # trace time from which no repeat can join (None: the end of the trace).
    count: int = 1
    final_ns: int | None = None


def who(m: PageModel, j: int) -> tuple[int | None, str | None]:
    """(pid, comm) of per-page row j."""
    i = int(m.idx[j])
    pid = int(m.cols.pid[i])
    return (pid if pid >= 0 else None), m.cols.comm_of(i)


def task_label(m: PageModel, j: int) -> str:
    pid, comm = who(m, j)
    return f"{comm or '?'}[{pid if pid is not None else '?'}]"


def anomaly(m: PageModel, kind: str, j: int, detail: str, severity: str,
            evidence_js: Iterable[int], decided_ns: int | None = None,
            at_end: bool = False) -> Anomaly:
    """An anomaly dated and attributed by per-page row j; decided when row j is
    seen unless `decided_ns` says later, or `at_end`."""
    pid, comm = who(m, j)
    js = sorted(set(int(x) for x in evidence_js))[:MAX_EVIDENCE]
    ts = int(m.ts[j])
    decided = None if at_end else (ts if decided_ns is None else decided_ns)
    return Anomaly(kind=kind, pfn=int(m.pfn[j]), ts_ns=ts, pid=pid, comm=comm,
                   detail=detail, severity=severity, evidence=m.rows_of(js),
                   decided_ns=decided, final_ns=decided)


def life_bounds(m: PageModel, j: int) -> tuple[int, int]:
    """[a, j] start of j's page life (rows after the last free before j)."""
    return int(m.life_first[j]), j


def pin_episode(m: PageModel, j: int) -> int:
    """First row of the run of rows ending at j during which pins were
    continuously outstanding: where the oldest pin still counted was taken."""
    a, _ = life_bounds(m, j)
    pb = m.pins_before[a:j + 1]
    zero = np.flatnonzero(pb == 0)
    return a + int(zero[-1]) if len(zero) else a


def pin_rows(m: PageModel, a: int, b: int) -> list[int]:
    """Pins, unpins and pins-released-by-put among per-page rows [a, b]."""
    k = m.kind[a:b + 1]
    sel = (k == K["pin"]) | (k == K["unpin"]) | m.mismatch[a:b + 1]
    return [a + int(x) for x in np.flatnonzero(sel)]


def gap_note(m: PageModel, a: int, b: int) -> str:
    lost = int(m.lost_between[a + 1:b + 1].sum()) if b > a else 0
    if m.gap[a + 1:b + 1].any():
        what = f"{lost} events" if lost else "events"
        return f"; {what} were lost in this span, a release may be among them"
    return ""


def page(pfn: int) -> str:
    return fmt_pfn(pfn)


def spans_loss(m: PageModel, a: int, b: int) -> bool:
    """Whether evidence over per-page rows [a, b] (one page) spans a loss: events
    lost (CPU-wide) between a and b, or a `lost` row naming the page at or before
    b (references a bounded walk could not follow)."""
    return bool(m.gap[a + 1:b + 1].any()) or bool(m.unseen[b])


def lost_after(m: PageModel, j: int) -> bool:
    """Events were lost (CPU-wide) after per-page row j: a verdict that holds "to
    the end of the trace" from j may have missed its release there."""
    return bool(len(m.lost_seq)) and int(m.lost_seq[-1]) > int(m.seq[j])


def judged(severity: str, uncertain: bool) -> str:
    """The severity a detector would give, or `uncertain` when its evidence spans
    lost events: a verdict across a loss is never an accusation."""
    return UNCERTAIN if uncertain else severity
