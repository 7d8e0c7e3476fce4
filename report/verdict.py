"""The page's verdict and one section per anomaly kind: the table of
occurrences (worst first, capped), and for the worst few on distinct pages the
page's history plot and the evidence events."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pageref.analysis.severity import severity_rank
from pageref.report.catalog import kind_text, severity_class
from pageref.report.page import AnomalyRow, Case, EventRow, KindSection, Limits, VerdictRow
from pageref.report.page_history import page_history_spec
from pageref.report.text import clean_text, column, fmt_int, fmt_pfn, task
from pageref.trace.io import Trace


def df_ranked(anomalies: pd.DataFrame) -> pd.DataFrame:
    """The anomalies (find_anomalies' columns), worst severity first, then by time.

    Adds two columns: _rank (pageref.analysis.severity rank, 0 for a word not
    in the vocabulary) and _ts (ts_ns as a number, 0 where missing)."""
    a = anomalies.reset_index(drop=True).copy()
    a["_rank"] = [severity_rank(s) for s in column(a, "severity")]
    a["_ts"] = pd.to_numeric(column(a, "ts_ns"), errors="coerce").fillna(0)
    return a.sort_values(["_rank", "_ts"], ascending=[False, True], kind="stable")


def event_rows(trace: Trace, positions: list[int], t0: int, limits: Limits) -> list[EventRow]:
    """The trace's events at `positions` (rows of trace.events), for the evidence table."""
    ev = trace.events
    positions = [p for p in positions if 0 <= p < len(ev)]
    if not positions:
        return []
    sub = ev.iloc[positions]
    out = []
    stack = column(sub, "stack")
    for i, p in enumerate(positions):
        r = sub.iloc[i]
        frames = stack.iloc[i]
        frames = [] if frames is None or (np.ndim(frames) == 0 and pd.isna(frames)) \
            else list(frames)
        out.append(EventRow(
            pos=int(p),
            time=f"{(int(r['ts_ns']) - t0) / 1e9:.6f}",
            kind=clean_text(r["kind"]),
            pfn=fmt_pfn(r.get("pfn")),
            refcount=fmt_int(r.get("refcount")),
            refs=fmt_int(r.get("refs")) or "1",
            task=task(r.get("comm"), r.get("pid"), limits.text_chars),
            probe=clean_text(r.get("probe"), limits.text_chars),
            stack=[clean_text(f, limits.text_chars) for f in frames[: limits.stack_frames]],
            stack_hidden=max(0, len(frames) - limits.stack_frames),
        ))
    return out


def _evidence(r: pd.Series) -> list[int]:
    ev = r.get("evidence")
    if ev is None or (np.ndim(ev) == 0 and pd.isna(ev)):
        return []
    return [int(p) for p in list(ev)]


def _seen(r: pd.Series) -> int:
    """The anomaly's `count` (1 where an older frame has none)."""
    c = r.get("count")
    return 1 if c is None or pd.isna(c) else int(c)


def _kind_section(trace: Trace, kind: str, g: pd.DataFrame, t0: int,
                  limits: Limits) -> KindSection:
    sev = clean_text(g.iloc[0].get("severity")) or "unknown"
    rows = []
    shown = g.iloc[: limits.rows_per_kind]
    for i, (_, r) in enumerate(shown.iterrows()):
        ts = int(r["_ts"])
        rows.append(AnomalyRow(
            anchor=f"{clean_text(kind, 60)}-{i}",
            kind=clean_text(kind),
            pfn=fmt_pfn(r.get("pfn")),
            time=f"{(ts - t0) / 1e9:.6f}",
            ts_ns=ts,
            task=task(r.get("comm"), r.get("pid"), limits.text_chars),
            detail=clean_text(r.get("detail"), 500),
            severity=clean_text(r.get("severity")),
            severity_class=severity_class(r.get("severity")),
            seen=_seen(r),
        ))
    cases: list[Case] = []
    seen_pfns: set[int] = set()
    for i, (_, r) in enumerate(shown.iterrows()):
        if len(cases) >= limits.worst_per_kind:
            break
        pfn = r.get("pfn")
        pfn_i = None if pfn is None or pd.isna(pfn) else int(pfn)
        if pfn_i is not None and pfn_i in seen_pfns:
            continue  # the worst few, on distinct pages
        if pfn_i is not None:
            seen_pfns.add(pfn_i)
        ev = _evidence(r)
        plot = None
        if pfn_i is not None:
            plot = page_history_spec(trace, pfn_i, int(r["_ts"]), ev, t0,
                                     f"{clean_text(kind, 60)}-{i}", limits)
        cases.append(Case(
            row=rows[i],
            plot=plot,
            evidence=event_rows(trace, ev[: limits.evidence_rows], t0, limits),
            evidence_hidden=max(0, len(ev) - limits.evidence_rows),
        ))
    return KindSection(
        kind=clean_text(kind), text=kind_text(kind), severity=sev,
        severity_class=severity_class(g.iloc[0].get("severity")), count=len(g),
        rows=rows, hidden=max(0, len(g) - len(rows)), cases=cases)


def verdict_sections(trace: Trace, anomalies: pd.DataFrame, t0: int,
                     limits: Limits) -> tuple[list[VerdictRow], list[KindSection]]:
    """The verdict table and the kind sections, the worst kind first (by its
    worst severity, then by count, then by name)."""
    if anomalies is None or not len(anomalies):
        return [], []
    a = df_ranked(anomalies)
    groups = []
    for kind, g in a.groupby(a["kind"].astype(str), sort=False):
        groups.append((-float(g.iloc[0]["_rank"]), -len(g), str(kind), g))
    groups.sort(key=lambda t: (t[0], t[1], t[2]))
    verdict: list[VerdictRow] = []
    sections: list[KindSection] = []
    for _, _, kind, g in groups:
        s = _kind_section(trace, kind, g, t0, limits)
        verdict.append(VerdictRow(kind=s.kind, count=s.count, severity=s.severity,
                                  severity_class=s.severity_class, text=s.text))
        sections.append(s)
    return verdict, sections
