"""The page's probe section: which kernel functions the recording probed and
the event kinds each emits, the drop paths covered and not covered (the same
text `pageref probes` prints), and the targets the plan left out, with why.

Everything comes from the trace header's plan record
(pageref.trace.plan_record.coverage_of, which also reads older traces); nothing
is guessed from symbol names or from the events seen.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from pageref.report import history as hist
from pageref.report.page import DropPath, MissingProbe, ProbeRow, RecorderNotes
from pageref.report.text import clean_text
from pageref.trace.io import Trace
from pageref.trace.plan_record import Coverage, PlanEntry, coverage_of
from pageref.tracer.plan import AttachMethod

DROP_KINDS = ("put", "unpin", "free")
_METHODS = frozenset(m.value for m in AttachMethod)


def _events_by_symbol(ev: pd.DataFrame) -> dict[str, pd.Series]:
    """Per probe symbol: its events counted by kind (kinds with none left out)."""
    out: dict[str, pd.Series] = {}
    if not len(ev) or "probe" not in ev.columns:
        return out
    pc, pnames = hist.codes(ev["probe"])
    kc, knames = hist.codes(ev["kind"])
    ok = pc >= 0
    if ok.any() and knames:
        n = np.bincount(pc[ok] * len(knames) + kc[ok],
                        minlength=len(pnames) * len(knames)).reshape(len(pnames), -1)
        for i, sym in enumerate(pnames):
            row = pd.Series(n[i], index=[str(k) for k in knames])
            if row.sum():
                out[str(sym)] = row[row > 0]
    return out


def attached(entry: PlanEntry) -> bool:
    """An entry whose method is one the tracer attaches with (tracer/plan.py
    AttachMethod); a hand-written header may claim anything else."""
    return entry.method in _METHODS


def _notes(entry: PlanEntry) -> str:
    parts = []
    if entry.signature:
        parts.append(f"signature={entry.signature}")
    if entry.returns:
        parts.append(f"returns={entry.returns}")
    if not attached(entry):
        parts.append(f"not attached (method {entry.method!r} is not an attach method)")
    return ", ".join(parts)


class _Probe(NamedTuple):
    probe: str
    symbol: str
    method: str
    kinds: tuple[str, ...]
    attached: bool
    events: int
    notes: str


class _DropKind(NamedTuple):
    kind: str
    by: list[str]
    events: int
    covered: bool | None


def _probes(trace: Trace, cov: Coverage) -> list[_Probe]:
    by_symbol = _events_by_symbol(trace.events)
    return [_Probe(e.probe, e.symbol, e.method, e.kinds, attached(e),
                   int(by_symbol[e.symbol].sum()) if e.symbol in by_symbol else 0, _notes(e))
            for e in cov.entries]


def _drop_kinds(trace: Trace, cov: Coverage) -> list[_DropKind]:
    kinds = hist.kind_counts(trace.events)
    rows = []
    for k in DROP_KINDS:
        by = [e.symbol or e.probe for e in cov.entries if k in e.kinds and attached(e)]
        n = int(kinds.get(k, 0))
        covered: bool | None = True if by or n > 0 else (False if cov.entries else None)
        rows.append(_DropKind(k, by, n, covered))
    return rows


def df_probes(trace: Trace) -> pd.DataFrame:
    """One row per probe plan entry, in plan order.

    Columns: probe (logical probe), symbol, method, kinds (tuple of event kinds
    the plan says it emits), attached (bool), events (int: events in the trace
    from this symbol), notes (signature, returns, why not attached)."""
    return pd.DataFrame(_probes(trace, coverage_of(trace.header)), columns=list(_Probe._fields))


def df_drop_kinds(trace: Trace) -> pd.DataFrame:
    """The reference-drop event kinds (put, unpin, free), one row each.

    Columns: kind, by (list of the attached probes' symbols that emit it),
    events (int: events of that kind in the trace), covered (True: a probe emits
    it or the trace has such events; False: the plan has none and there are
    none; None: no probe plan in the header and no such events)."""
    return pd.DataFrame(_drop_kinds(trace, coverage_of(trace.header)),
                        columns=list(_DropKind._fields))


def probes_section(trace: Trace) -> tuple[list[ProbeRow], list[DropPath], list[str]]:
    """The probe plan table, the drop kinds table, and notes about them."""
    cov = coverage_of(trace.header)
    rows = [ProbeRow(probe=clean_text(r.probe), symbol=clean_text(r.symbol),
                     method=clean_text(r.method), role=", ".join(r.kinds),
                     events=r.events, notes=clean_text(r.notes, 300))
            for r in _probes(trace, cov)]
    drops = [DropPath(kind=r.kind, covered=r.covered, by=[clean_text(s) for s in r.by],
                      events=r.events)
             for r in _drop_kinds(trace, cov)]
    notes = []
    if not cov.entries:
        notes.append("The trace header has no probe plan (a converted or hand-written trace): "
                      "drop-path coverage is judged from the events alone.")
    return rows, drops, notes


# A coverage line is untrusted header text: shown up to this many characters.
# The plan's own lines name the kernel paths they cover (up to ~500 characters).
COVERAGE_TEXT_LIMIT = 1000


def recorder_notes(trace: Trace) -> RecorderNotes | None:
    """The drop paths covered and not covered, as `pageref probes` words them, the
    targets left out and why, and notes; None when the header says none of it."""
    cov = coverage_of(trace.header)
    if not (cov.covered or cov.uncovered or cov.left_out or cov.notes):
        return None
    return RecorderNotes(
        covered=[clean_text(c, COVERAGE_TEXT_LIMIT) for c in cov.covered],
        uncovered=[clean_text(c, COVERAGE_TEXT_LIMIT) for c in cov.uncovered],
        missing=[MissingProbe(clean_text(m.probe), clean_text(m.symbol),
                              clean_text(m.why, COVERAGE_TEXT_LIMIT)) for m in cov.left_out],
        notes=[clean_text(n, COVERAGE_TEXT_LIMIT) for n in cov.notes])
