"""The page's probe section: which kernel functions the recording probed, the
event kinds each emits, the drop paths (put, unpin, free) covered, and what the
recorder said it left out."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pageref.report import history as hist
from pageref.report.page import DropPath, MissingProbe, ProbeRow, RecorderNotes
from pageref.report.text import clean_strings, clean_text
from pageref.trace.io import Trace

DROP_KINDS = ("put", "unpin", "free")
ROLE_WORDS = ("get", "pin", "put", "unpin", "free", "busy", "grab_failed", "lost")

# The recorder's logical probes (tracer/plan.py) and the event kinds each yields.
# "put" is every drop function: the unpin_* ones yield unpins, gup_put_folio
# both (its flags say which), the rest puts.
_LOGICAL = {"grab": {"get", "pin"}, "free": {"free"}, "busy": {"busy"}}
_PUT_AND_UNPIN = {"gup_put_folio"}


def _role_of(entry: dict[str, Any], kinds_seen: set[str]) -> set[str]:
    """The event kinds a probe plan entry produces."""
    for key in ("kinds", "kind", "produces"):
        v = entry.get(key)
        if isinstance(v, str):
            return {v}
        if isinstance(v, list):
            return {str(x) for x in v}
    roles = set(kinds_seen)
    name = str(entry.get("probe", "")).lower()
    sym = str(entry.get("symbol", "")).lower()
    if name in _LOGICAL:
        roles |= _LOGICAL[name]
    elif name == "put":
        if sym in _PUT_AND_UNPIN:
            roles |= {"put", "unpin"}
        elif "unpin" in sym:
            roles.add("unpin")
        else:
            roles.add("put")
    elif name in ROLE_WORDS:
        roles.add(name)
    elif not roles:
        for word in ("unpin", "free", "busy", "put", "pin", "get"):
            if word in name or word in sym:
                roles.add(word)
                break
    return roles


_DEAD_METHODS = {"none", "missing", "unavailable", "skipped", "failed"}


def probes_section(trace: Trace) -> tuple[list[ProbeRow], list[DropPath], list[str]]:
    ev = trace.events
    notes: list[str] = []
    by_symbol: dict[str, pd.Series] = {}
    if len(ev) and "probe" in ev.columns:
        pc, pnames = hist.codes(ev["probe"])
        kc, knames = hist.codes(ev["kind"])
        ok = pc >= 0
        if ok.any() and knames:
            n = np.bincount(pc[ok] * len(knames) + kc[ok],
                            minlength=len(pnames) * len(knames)).reshape(len(pnames), -1)
            for i, sym in enumerate(pnames):
                row = pd.Series(n[i], index=[str(k) for k in knames])
                if row.sum():
                    by_symbol[str(sym)] = row[row > 0]
    rows: list[ProbeRow] = []
    covered: dict[str, list[str]] = {k: [] for k in DROP_KINDS}
    for entry in trace.header.probe_plan:
        sym = str(entry.get("symbol", ""))
        counts = by_symbol.get(sym, pd.Series(dtype=int))
        roles = _role_of(entry, set(counts.index))
        method = str(entry.get("method", ""))
        alive = method.lower() not in _DEAD_METHODS and entry.get("attached", True) is not False
        # (id, return, ret_conv: the recorder's internal numbers, not for people)
        others = {k: v for k, v in entry.items()
                  if k not in ("probe", "symbol", "method", "kinds", "kind", "produces", "id",
                               "return", "ret_conv")}
        rows.append(ProbeRow(
            probe=clean_text(entry.get("probe", "")),
            symbol=clean_text(sym),
            method=clean_text(method),
            role=", ".join(sorted(roles)),
            events=int(counts.sum()),
            notes=clean_text(", ".join(f"{k}={v}" for k, v in others.items()), 300),
        ))
        for k in DROP_KINDS:
            if k in roles and alive:
                covered[k].append(sym or str(entry.get("probe", "")))
    kinds = hist.kind_counts(ev)
    drops = []
    for k in DROP_KINDS:
        n = int(kinds.get(k, 0))
        if covered[k] or n > 0:
            state: bool | None = True
        else:
            state = False if trace.header.probe_plan else None
        drops.append(DropPath(kind=k, covered=state, by=[clean_text(s) for s in covered[k]],
                              events=n))
    if not trace.header.probe_plan:
        notes.append("The trace header has no probe plan (a converted or hand-written trace): "
                     "drop-path coverage is judged from the events alone.")
    return rows, drops, notes


def recorder_notes(trace: Trace) -> RecorderNotes | None:
    t = trace.header.extra.get("tracer")
    if not isinstance(t, dict):
        return None
    missing = []
    for m in t.get("probes_missing") or []:
        if isinstance(m, dict):
            missing.append(MissingProbe(clean_text(m.get("probe")), clean_text(m.get("symbol")),
                                        clean_text(m.get("why"), 400)))
    return RecorderNotes(covered=clean_strings(t.get("drop_paths_covered")),
                         uncovered=clean_strings(t.get("drop_paths_uncovered")),
                         missing=missing, notes=clean_strings(t.get("notes")))
