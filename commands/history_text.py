"""Text rendering for `pageref history`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pageref.analysis.fmt import fmt_ns
from pageref.analysis.model import PGMAP_NAMES, PageModel
from pageref.trace.header import TraceHeader
from pageref.trace.pgmap_names import display_name

_REF_KINDS = ("get", "pin", "put", "unpin")


def _who(comm, pid) -> str:
    c = comm if isinstance(comm, str) else "?"
    p = "?" if pid is None or pid is pd.NA else int(pid)
    return f"{c}[{p}]"


def _rc(v, observed: bool) -> str:
    if v is pd.NA or v is None:
        return "?"
    return f"{int(v)}" if observed else f"~{int(v)}"


def render_page(hist: pd.DataFrame, header: TraceHeader, anomalies: pd.DataFrame,
                stacks: bool, limit: int) -> str:
    pfn = int(hist["page"].iloc[0])
    t0 = header.start_ns if header.start_ns is not None else int(hist["ts_ns"].iloc[0])
    last = hist.iloc[-1]
    folio = " (large folio head)" if int(hist["w"].iloc[0]) == 1 else ""
    lines = [
        f"pfn {pfn:#x}{folio}: {len(hist)} events, idle refcount {int(hist['idle'].iloc[0])}, "
        f"pin weight {int(hist['w'].iloc[0])}; at the end {int(last['pins'])} pin(s) and "
        f"{int(last['gets'])} get(s) outstanding, refcount "
        f"{_rc(last['refcount_after'], True)}",
        "",
        f"  {'ROW':>7}  {'TIME':>10}  {'KIND':<11} {'REFS':>4}  {'REFCOUNT':<17} "
        f"{'P':>3} {'G':>3}  {'TASK':<22} PROBE",
    ]
    rows = hist if not limit else hist.iloc[:limit]
    for r in rows.itertuples(index=False):
        if r.gap:
            what = f"{int(r.lost)} events" if r.lost else "events"
            lines.append(f"  {'':>7}  {'':>10}  ~~ {what} lost here: counts below may be off ~~")
        before = _rc(r.refcount_before, bool(r.refcount_observed))
        after = _rc(r.refcount_after, bool(r.refcount_observed))
        kind = str(r.kind)
        rc = f"{before} -> {after}" if kind in _REF_KINDS + ("ref",) else before
        note = "  (pin released by put)" if r.pin_put else ""
        if r.unexplained:   # analysis/completeness.py
            note += ("  ! unattributed: no traced operation made this change" if kind == "ref"
                     else "  ! unexplained: the refcount changed since the previous row "
                          "with no traced operation")
        refs = str(int(r.refs)) if kind in _REF_KINDS + ("grab_failed",) else ""
        if kind == "ref":   # the kernel's own record of one change (page_ref_*)
            after = _rc(r.refcount_after, True)
            rc = f"{before} -> {after}"
            refs = f"{int(r.refs):+d}" if int(r.refs) else "set"
        lines.append(
            f"  {int(r.row):>7}  +{fmt_ns(int(r.ts_ns) - t0):<9}  {str(r.kind):<11} "
            f"{refs:>4}  {rc:<17} {int(r.pins):>3} {int(r.gets):>3}  "
            f"{_who(r.comm, r.pid):<22} {r.probe or ''}{note}")
        if stacks and r.stack is not None and len(r.stack):
            for sym in r.stack:
                lines.append(f"  {'':>7}  {'':>10}      {sym}")
    if len(rows) < len(hist):
        lines.append(f"  ... {len(hist) - len(rows)} more rows (--limit 0 shows all)")
    lines.append("")
    n_un = int(hist["unexplained"].sum()) if "unexplained" in hist.columns else 0
    if n_un:
        lines.append(f"{n_un} unexplained step{'s' if n_un != 1 else ''} on this page (marked !: "
                     f"the refcount changed with no traced operation to say why)")
    if anomalies.empty:
        lines.append("No anomalies on this page.")
    else:
        lines.append(f"Anomalies on this page ({len(anomalies)}):")
        for a in anomalies.itertuples(index=False):
            lines.append(f"  {a.severity:<7} {a.kind:<27} +{fmt_ns(int(a.ts_ns) - t0)}  "
                         f"{a.detail}  [rows {', '.join(map(str, a.evidence[:8]))}]")
    return "\n".join(lines)


def render_pages(m: PageModel, trace: Path, limit: int) -> str:
    """One line per page: events, last refcount, outstanding pins/gets."""
    if not len(m.pfn):
        return f"{trace}: no page events"
    firsts = np.flatnonzero(m.page_starts)
    lasts = np.append(firsts[1:] - 1, len(m.pfn) - 1)
    counts = lasts - firsts + 1
    order = np.argsort(-counts, kind="stable")[:limit]
    lines = [f"{trace}: {len(firsts):,} pages; busiest first", "",
             f"  {'PFN':<10} {'TYPE':<8} {'EVENTS':>8} {'REFCOUNT':>9} {'P':>4} {'G':>4}  "
             f"{'FIRST':>10} {'LAST':>10}"]
    t0 = m.trace_start
    for i in order:
        a, b = firsts[i], lasts[i]
        rc = str(int(m.after[b])) if m.known[b] else "?"
        lines.append(
            f"  {int(m.pfn[a]):<#10x} {display_name(PGMAP_NAMES.get(int(m.pgmap[a]))):<8} "
            f"{int(counts[i]):>8} {rc:>9} {int(m.pins_after[b]):>4} {int(m.gets_after[b]):>4}  "
            f"+{fmt_ns(int(m.ts[a]) - t0):<9} +{fmt_ns(int(m.ts[b]) - t0):<9}")
    if len(order) < len(firsts):
        lines.append(f"  ... {len(firsts) - len(order)} more pages (--limit)")
    lines += ["", f"One page: pageref history {trace} --pfn {int(m.pfn[firsts[order[0]]]):#x}"]
    return "\n".join(lines)
