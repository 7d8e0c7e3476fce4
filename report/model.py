"""What goes on the report page for a trace, as plain data.

`build_report(trace, anomalies)` turns a trace and its anomalies (the DataFrame
of pageref.analysis.anomalies.find_anomalies) into a `Report`: strings and
numbers for the template, and `PlotSpec`s holding the (already downsampled)
series each plot draws. Nothing here draws or escapes: report/plots.py draws the
PlotSpecs, the Jinja2 template (autoescaping on) escapes every string, which is
what makes untrusted text (process names, stacks) safe.

Large traces: tables are capped (`Limits`) with a count of what is not shown,
and every plot series is reduced to at most `Limits.plot_points` points.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import numpy as np
import pandas as pd

from pageref.report import history as hist
from pageref.report.catalog import kind_text, severity_class, severity_rank
from pageref.trace.io import Trace
from pageref.trace.text import escape_controls

DROP_KINDS = ("put", "unpin", "free")
ROLE_WORDS = ("get", "pin", "put", "unpin", "free", "busy", "grab_failed", "lost")


@dataclasses.dataclass
class Limits:
    rows_per_kind: int = 200      # table rows shown per anomaly kind
    worst_per_kind: int = 3       # occurrences plotted per kind
    evidence_rows: int = 25       # evidence events listed per plotted occurrence
    stack_frames: int = 24        # frames shown per stack
    text_chars: int = 200         # untrusted strings are cut to this length
    plot_points: int = 2000       # points per plotted series
    top_tasks: int = 15
    probes_plotted: int = 8       # the rest are summed as "other"
    rate_bins: int = 300


@dataclasses.dataclass
class Fact:
    label: str
    value: str
    warn: bool = False


@dataclasses.dataclass
class ProbeRow:
    probe: str
    symbol: str
    method: str
    role: str          # the event kinds this probe produces, e.g. "put" or "get, pin"
    events: int        # events in the trace from this symbol
    notes: str         # other keys of the plan entry


@dataclasses.dataclass
class DropPath:
    kind: str          # put / unpin / free
    covered: bool | None  # None: unknown (no probe plan and no such events)
    by: list[str]      # probe symbols covering it
    events: int        # events of this kind in the trace


@dataclasses.dataclass
class MissingProbe:
    probe: str
    symbol: str
    why: str


@dataclasses.dataclass
class RecorderNotes:
    """What the recorder wrote about its own coverage (header extra "tracer")."""

    covered: list[str]
    uncovered: list[str]
    missing: list[MissingProbe]
    notes: list[str]


@dataclasses.dataclass
class VerdictRow:
    kind: str
    count: int
    severity: str
    severity_class: str
    text: str


@dataclasses.dataclass
class EventRow:
    pos: int           # row position in trace.events
    time: str          # seconds since the trace start
    kind: str
    pfn: str
    refcount: str
    refs: str
    task: str
    probe: str
    stack: list[str]
    stack_hidden: int  # frames not shown


@dataclasses.dataclass
class AnomalyRow:
    anchor: str
    kind: str
    pfn: str
    time: str
    ts_ns: int
    task: str
    detail: str
    severity: str
    severity_class: str


@dataclasses.dataclass
class PlotSpec:
    id: str
    title: str
    type: str          # page_history, rate, refcount_hist, pins, tasks
    data: dict[str, Any]
    note: str = ""     # e.g. "downsampled from 1,234,567 points"
    alt: str = ""

    @property
    def points(self) -> int:
        """Largest number of points in any one series of this plot."""
        return int(self.data.get("_points", 0))


@dataclasses.dataclass
class Case:
    row: AnomalyRow
    plot: PlotSpec | None
    evidence: list[EventRow]
    evidence_hidden: int


@dataclasses.dataclass
class KindSection:
    kind: str
    text: str
    severity: str
    severity_class: str
    count: int
    rows: list[AnomalyRow]
    hidden: int
    cases: list[Case]


@dataclasses.dataclass
class Report:
    title: str
    trace_name: str
    generated: str
    threshold: str
    facts: list[Fact]
    warnings: list[str]
    probes: list[ProbeRow]
    drop_paths: list[DropPath]
    verdict: list[VerdictRow]
    total_anomalies: int
    sections: list[KindSection]
    overview: list[PlotSpec]
    notes: list[str]
    recorder: RecorderNotes | None = None

    @property
    def plots(self) -> list[PlotSpec]:
        out = list(self.overview)
        for s in self.sections:
            out.extend(c.plot for c in s.cases if c.plot is not None)
        return out


# ---------------------------------------------------------------------------
# small helpers


def clean_text(v: Any, limit: int = 200) -> str:
    """Untrusted text for display: str, control characters as \\xNN, length capped.

    (HTML escaping is the template's job; this only keeps the page readable.)"""
    if v is None or (not isinstance(v, (list, tuple, np.ndarray)) and pd.isna(v)):
        return ""
    s = escape_controls(str(v))  # the one owner: pageref.trace.text
    return s if len(s) <= limit else s[: limit - 1] + "…"


def fmt_pfn(v: Any) -> str:
    if v is None or pd.isna(v):
        return "-"
    return hex(int(v))


def fmt_int(v: Any) -> str:
    if v is None or pd.isna(v):
        return ""
    return str(int(v))


def fmt_duration(ns: float) -> str:
    s = ns / 1e9
    if s < 1e-3:
        return f"{ns / 1e3:.1f} µs"
    if s < 1:
        return f"{s * 1e3:.1f} ms"
    if s < 120:
        return f"{s:.2f} s"
    return f"{s / 60:.1f} min"


def task(comm: Any, pid: Any, limit: int = 200) -> str:
    c = clean_text(comm, limit) or "?"
    return f"{c}[{fmt_int(pid) or '?'}]"


def trace_t0(trace: Trace) -> int:
    if trace.header.start_ns is not None:
        return int(trace.header.start_ns)
    if len(trace.events):
        return int(trace.events["ts_ns"].min())
    return 0


def trace_end(trace: Trace) -> int:
    if trace.header.end_ns is not None:
        return int(trace.header.end_ns)
    if len(trace.events):
        return int(trace.events["ts_ns"].max())
    return 0


def _ev_col(df: pd.DataFrame, name: str) -> pd.Series:
    if name in df.columns:
        return df[name]
    return pd.Series([None] * len(df), index=df.index, dtype=object)


def minmax_indices(y: np.ndarray, max_points: int, keep: np.ndarray | None = None) -> np.ndarray:
    """Indices of at most ~max_points points of series y keeping its shape: the
    first, last, min and max of each of max_points/4 buckets, plus `keep`."""
    n = len(y)
    if n <= max_points:
        return np.arange(n)
    keep = np.asarray([] if keep is None else keep, dtype=np.int64)
    keep = keep[(keep >= 0) & (keep < n)][: max_points // 10]
    buckets = max(1, (max_points - len(keep)) // 4)
    edges = np.linspace(0, n, buckets + 1).astype(np.int64)
    idx = [keep]
    starts, ends = edges[:-1], edges[1:]
    ok = ends > starts
    starts, ends = starts[ok], ends[ok]
    idx.append(starts)
    idx.append(ends - 1)
    # argmin/argmax per bucket via reduceat on (value, -index) keys
    yv = np.asarray(y, dtype=np.float64)
    mins = np.minimum.reduceat(yv, starts)
    maxs = np.maximum.reduceat(yv, starts)
    bucket_of = np.repeat(np.arange(len(starts)), ends - starts)
    pos = np.arange(n)
    is_min = yv == mins[bucket_of]
    is_max = yv == maxs[bucket_of]
    # first position in each bucket reaching the min / max
    for mask in (is_min, is_max):
        first = pd.Series(pos[mask]).groupby(bucket_of[mask]).first().to_numpy()
        idx.append(first)
    return np.unique(np.concatenate(idx))


# ---------------------------------------------------------------------------
# facts


def _facts(trace: Trace, threshold_ns: int) -> tuple[list[Fact], list[str]]:
    h, ev = trace.header, trace.events
    facts: list[Fact] = []
    warnings: list[str] = []
    facts.append(Fact("Kernel", clean_text(h.kernel) or "unknown (not in the trace header)"))
    if h.host:
        facts.append(Fact("Host", clean_text(h.host)))
    if h.command:
        facts.append(Fact("Command", clean_text(" ".join(h.command), 400)))
    if h.start_time:
        facts.append(Fact("Started", clean_text(h.start_time)))
    if len(ev):
        first, last = int(ev["ts_ns"].min()), int(ev["ts_ns"].max())
    else:
        first = last = 0
    start = h.start_ns if h.start_ns is not None else first
    end = h.end_ns if h.end_ns is not None else last
    facts.append(Fact("Duration", fmt_duration(max(0, end - start))))
    kinds = hist.kind_counts(ev)
    by_kind = ", ".join(f"{k} {int(n):,}" for k, n in kinds.items())
    facts.append(Fact("Events", f"{len(ev):,}" + (f" ({by_kind})" if by_kind else "")))
    pfn = ev["pfn"] if "pfn" in ev.columns else pd.Series(dtype="Int64")
    facts.append(Fact("Pages", f"{pfn.nunique(dropna=True):,}"))
    dev = hist.device_mask(ev)
    facts.append(Fact("Device pages", f"{pfn[dev].nunique(dropna=True):,}"))
    facts.append(Fact("Pin bias", str(h.pin_bias)))
    facts.append(Fact("Page size", str(h.page_size)))
    idle = ", ".join(f"{k} {v}" for k, v in sorted(h.idle_refcount.items()))
    tracer = h.extra.get("tracer") if isinstance(h.extra.get("tracer"), dict) else {}
    why = tracer.get("idle_refcount_reason")
    idle = idle or "not in the header (0 assumed)"
    if isinstance(why, str) and why:
        idle += f" ({clean_text(why, 300)})"
    facts.append(Fact("Idle refcount", idle))
    facts.append(Fact("Threshold", fmt_duration(threshold_ns)))
    lost_hdr = h.lost_total
    lost_ev = 0
    if "count" in ev.columns and len(ev):
        lost_ev = int(pd.to_numeric(ev.loc[hist.kind_is(ev, "lost"), "count"],
                                    errors="coerce").fillna(0).sum())
    lost = max(lost_hdr, lost_ev)
    if lost_hdr and lost_ev and lost_hdr != lost_ev:
        lost_text = f"{lost_hdr:,} (header) / {lost_ev:,} (lost records in the events)"
    else:
        lost_text = f"{lost:,}"
    if h.lost:
        cpus = ", ".join(f"cpu{k}: {v:,}" for k, v in sorted(h.lost.items(),
                                                             key=lambda kv: str(kv[0])) if v)
        if cpus:
            lost_text += f" ({cpus})"
    facts.append(Fact("Lost events", lost_text, warn=lost > 0))
    if lost > 0:
        warnings.append(
            f"{lost:,} events were lost while recording. The histories of pages active "
            "at those times are incomplete: anomalies near the gaps may be missing or "
            "spurious. Record again with a larger buffer or fewer probes to be sure."
        )
    return facts, warnings


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


def _probes(trace: Trace) -> tuple[list[ProbeRow], list[DropPath], list[str]]:
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


def _strings(v: Any, limit: int = 400) -> list[str]:
    if isinstance(v, str):
        return [clean_text(v, limit)]
    if isinstance(v, (list, tuple)):
        return [clean_text(x, limit) for x in v if isinstance(x, (str, int, float))]
    return []


def _recorder_notes(trace: Trace) -> RecorderNotes | None:
    t = trace.header.extra.get("tracer")
    if not isinstance(t, dict):
        return None
    missing = []
    for m in t.get("probes_missing") or []:
        if isinstance(m, dict):
            missing.append(MissingProbe(clean_text(m.get("probe")), clean_text(m.get("symbol")),
                                        clean_text(m.get("why"), 400)))
    return RecorderNotes(covered=_strings(t.get("drop_paths_covered")),
                         uncovered=_strings(t.get("drop_paths_uncovered")),
                         missing=missing, notes=_strings(t.get("notes")))


# ---------------------------------------------------------------------------
# anomalies


def _event_rows(trace: Trace, positions: list[int], t0: int, limits: Limits) -> list[EventRow]:
    ev = trace.events
    positions = [p for p in positions if 0 <= p < len(ev)]
    if not positions:
        return []
    sub = ev.iloc[positions]
    out = []
    stack = _ev_col(sub, "stack")
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


def _sorted_anomalies(anomalies: pd.DataFrame) -> pd.DataFrame:
    a = anomalies.reset_index(drop=True).copy()
    a["_rank"] = [severity_rank(s) for s in _ev_col(a, "severity")]
    a["_ts"] = pd.to_numeric(_ev_col(a, "ts_ns"), errors="coerce").fillna(0)
    return a.sort_values(["_rank", "_ts"], ascending=[False, True], kind="stable")


ZOOM_CONTEXT = 5      # events shown either side of the evidence in the zoom panel
ZOOM_FRACTION = 0.25  # zoom when that window is narrower than this share of the plot


def _lst(a: np.ndarray) -> list[float | None]:
    return [None if not np.isfinite(v) else float(v) for v in a]


def _history_series(x: np.ndarray, rc: np.ndarray, pins: np.ndarray, kinds: np.ndarray,
                    idx: np.ndarray) -> dict[str, Any]:
    markers: dict[str, dict[str, list]] = {}
    for k in sorted(set(kinds[idx])):
        sel = idx[kinds[idx] == k]
        # y None where the refcount is unknown (after lost events): not drawn
        markers[k] = {"x": _lst(x[sel]), "y": _lst(rc[sel])}
    return {"x": _lst(x[idx]), "refcount": _lst(rc[idx]), "pins": _lst(pins[idx]),
            "markers": markers}


def _page_plot(trace: Trace, pfn: int, anomaly_ts: int, evidence: list[int], t0: int,
               pid: str, limits: Limits) -> PlotSpec | None:
    h = hist.page_history(trace, pfn)
    if h is None or not len(h):
        return None
    n = len(h)
    x = (h["ts_ns"].to_numpy(dtype=np.int64) - t0) / 1e9
    rc = h["refcount_after"].to_numpy(dtype=np.float64)
    pins = h["pins_decoded"].to_numpy(dtype=np.float64)
    pos = h["pos"].to_numpy(dtype=np.int64)
    keep = np.flatnonzero(np.isin(pos, evidence))
    rc_fill = np.nan_to_num(rc, nan=0.0)
    idx = minmax_indices(rc_fill, limits.plot_points, keep)
    kinds = hist.values(h["kind"]).astype(str)
    anomaly_x = (anomaly_ts - t0) / 1e9
    end_x = (max(trace_end(trace), int(h["ts_ns"].max())) - t0) / 1e9
    data = _history_series(x, rc, pins, kinds, idx)
    data.update({
        "evidence_x": _lst(x[keep]),
        "evidence_y": _lst(rc_fill[keep]),
        "anomaly_x": anomaly_x,
        # where the history has a hole (events lost just before this one)
        "gaps_x": _lst(x[h["gap"].to_numpy(dtype=bool)][: 50]),
        # the last value holds until the trace ends (a leaked pin shows as held)
        "end_x": end_x,
        "pin_bias": trace.header.pin_bias,
        "zoom": None,
        "_points": int(len(idx)),
    })
    # A second panel around the anomaly when the page's story is a blip on the
    # full time axis: the evidence and a few events either side, full resolution.
    at = np.searchsorted(x, anomaly_x)
    anchors = np.concatenate([keep, [min(at, n - 1)]])
    a_lo = max(0, int(anchors.min()) - ZOOM_CONTEXT)
    a_hi = min(n - 1, int(anchors.max()) + ZOOM_CONTEXT)
    lo = min(float(x[a_lo]), anomaly_x)
    hi = max(float(x[a_hi]), anomaly_x)
    full = max(end_x, float(x.max())) - min(float(x.min()), anomaly_x)
    if full > 0 and hi - lo < ZOOM_FRACTION * full:
        pad = (hi - lo) * 0.08 if hi > lo else min(1e-3, full * 0.01)
        lo, hi = lo - pad, hi + pad
        inside = np.flatnonzero((x >= lo) & (x <= hi))
        zkeep = np.flatnonzero(np.isin(inside, keep))
        zidx = inside[minmax_indices(rc_fill[inside], limits.plot_points, zkeep)]
        zoom = _history_series(x, rc, pins, kinds, zidx)
        zoom.update({"lo": lo, "hi": hi})
        data["zoom"] = zoom
        data["_points"] = max(data["_points"], int(len(zidx)))
    note = (f"downsampled from {n:,} events" if len(idx) < n
            else f"{n:,} event" + ("" if n == 1 else "s"))
    if data["zoom"] is not None:
        note += "; lower panel: around the anomaly"
    return PlotSpec(id=f"page-{pfn:x}-{pid}", title=f"pfn {pfn:#x}: refcount and pins",
                    type="page_history", data=data, note=note,
                    alt=f"Refcount history of pfn {pfn:#x}")


def _sections(trace: Trace, anomalies: pd.DataFrame, t0: int,
              limits: Limits) -> tuple[list[VerdictRow], list[KindSection]]:
    if anomalies is None or not len(anomalies):
        return [], []
    a = _sorted_anomalies(anomalies)
    verdict: list[VerdictRow] = []
    sections: list[KindSection] = []
    groups = []
    for kind, g in a.groupby(a["kind"].astype(str), sort=False):
        worst = g.iloc[0]
        groups.append((-float(worst["_rank"]), -len(g), kind, g))
    groups.sort(key=lambda t: (t[0], t[1], t[2]))
    for _, _, kind, g in groups:
        sev = clean_text(g.iloc[0].get("severity")) or "unknown"
        verdict.append(VerdictRow(kind=clean_text(kind), count=len(g), severity=sev,
                                  severity_class=severity_class(g.iloc[0].get("severity")),
                                  text=kind_text(kind)))
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
            ev = r.get("evidence")
            ev = [] if ev is None or (np.ndim(ev) == 0 and pd.isna(ev)) else \
                [int(p) for p in list(ev)]
            plot = None
            if pfn_i is not None:
                plot = _page_plot(trace, pfn_i, int(r["_ts"]), ev, t0,
                                  f"{clean_text(kind, 60)}-{i}", limits)
            cases.append(Case(
                row=rows[i],
                plot=plot,
                evidence=_event_rows(trace, ev[: limits.evidence_rows], t0, limits),
                evidence_hidden=max(0, len(ev) - limits.evidence_rows),
            ))
        sections.append(KindSection(
            kind=clean_text(kind), text=kind_text(kind), severity=sev,
            severity_class=severity_class(g.iloc[0].get("severity")), count=len(g),
            rows=rows, hidden=max(0, len(g) - len(rows)), cases=cases))
    return verdict, sections


# ---------------------------------------------------------------------------
# overview plots


def _rate_plot(trace: Trace, t0: int, limits: Limits) -> PlotSpec | None:
    ev = trace.events
    if not len(ev):
        return None
    ev = ev[~hist.kind_is(ev, "lost")]  # lost records are not probe hits
    if not len(ev):
        return None
    ts = ev["ts_ns"].to_numpy(dtype=np.int64)
    lo, hi = int(ts.min()), int(ts.max())
    span = max(hi - lo, 1)
    width = max(span / limits.rate_bins, 1e6)  # at least 1 ms per bin
    nbins = max(1, int(np.ceil(span / width)))
    b = np.minimum(((ts - lo) / width).astype(np.int64), nbins - 1)
    # label codes: the probe symbol, or the kind for events without one
    pc, pnames = hist.codes(_ev_col(ev, "probe"))
    kc, knames = hist.codes(ev["kind"])
    label = np.where(pc >= 0, pc, len(pnames) + kc)
    names = [str(p) for p in pnames] + [str(k) for k in knames]
    per_label = np.bincount(label, minlength=len(names))
    ranked = [i for i in np.argsort(-per_label, kind="stable") if per_label[i] > 0]
    top = ranked[: limits.probes_plotted]
    grid = np.bincount(b * len(names) + label, minlength=nbins * len(names)) \
        .reshape(nbins, len(names))
    cols = {names[i]: grid[:, i] for i in top}
    if len(ranked) > len(top):
        cols["other"] = grid[:, ranked[len(top):]].sum(axis=1)
    x = ((np.arange(nbins) + 0.5) * width + lo - t0) / 1e9
    series = {clean_text(p, 60): (c / (width / 1e9)).tolist() for p, c in cols.items()}
    return PlotSpec(id="rate", title="Events per second by probe", type="rate",
                    data={"x": x.tolist(), "series": series, "bin_s": width / 1e9,
                          "_points": nbins},
                    note=f"{nbins:,} bins of {fmt_duration(width)}",
                    alt="Events per second by probe over time")


def _refcount_hist(trace: Trace, limits: Limits) -> PlotSpec | None:
    last = hist.last_refcount_per_page(trace, device_only=True)
    if last is None or not len(last):
        return None
    vals = last.to_numpy(dtype=np.int64)
    uniq, cnt = np.unique(vals, return_counts=True)
    if len(uniq) <= 40:
        data = {"labels": [str(int(u)) for u in uniq], "counts": cnt.tolist(), "binned": False}
    else:
        counts, edges = np.histogram(vals, bins=40)
        data = {"labels": [f"{int(edges[i])}–{int(edges[i + 1])}" for i in range(40)],
                "counts": counts.tolist(), "binned": True}
    data["_points"] = len(data["counts"])
    bias = trace.header.pin_bias
    pinned = int((vals >= bias).sum())
    return PlotSpec(id="refcount-hist", title="Refcount of device pages after their last event",
                    type="refcount_hist", data=data,
                    note=f"{len(vals):,} device pages; {pinned:,} at or above the pin bias "
                         f"({bias})",
                    alt="Distribution of device page refcounts")


def _pins_plot(trace: Trace, t0: int, limits: Limits, model: object = None) -> PlotSpec | None:
    s = hist.pins_over_time_from_model(model) if model is not None else None
    source = "the analysis's count"
    if s is None:
        s = hist.pins_over_time(trace)
        source = "counted from pin/unpin events"
    if s is None or not len(s[0]):
        return None
    ts, held = s
    n = len(ts)
    idx = minmax_indices(held.astype(np.float64), limits.plot_points)
    return PlotSpec(id="pins", title="Pins held over time (all pages)",
                    type="pins",
                    data={"x": ((ts[idx] - t0) / 1e9).tolist(), "y": held[idx].tolist(),
                          "_points": int(len(idx))},
                    note=(f"{source}; " + (f"downsampled from {n:,} changes" if len(idx) < n
                                           else f"{n:,} changes")),
                    alt="Pins outstanding over time")


def _tasks_plot(trace: Trace, limits: Limits) -> PlotSpec | None:
    t = hist.references_by_task(trace)
    if t is None or not len(t):
        return None
    top = t.head(limits.top_tasks)
    return PlotSpec(
        id="tasks", title="Top tasks by references held at the end of the trace",
        type="tasks",
        data={"tasks": [task(c, p, 40) for c, p in zip(top["comm"], top["pid"])],
              "held_gets": top["held_gets"].tolist(), "held_pins": top["held_pins"].tolist(),
              "taken": top["taken"].tolist(), "_points": len(top)},
        note=(f"top {len(top)} of {len(t):,} tasks; held = taken minus dropped by the same "
              "task, per page"),
        alt="Top tasks by references held")


# ---------------------------------------------------------------------------


def build_report(
    trace: Trace,
    anomalies: pd.DataFrame | None,
    *,
    threshold_ns: int = 1_000_000_000,
    limits: Limits | None = None,
    title: str | None = None,
    now: datetime.datetime | None = None,
    model: object = None,
) -> Report:
    """The report for `trace` with its `anomalies` (find_anomalies' DataFrame).

    `model`, the analysis's PageModel of the same trace when the caller has it,
    gives the pins-over-time plot the analysis's own pin counts."""
    limits = limits or Limits()
    t0 = trace_t0(trace)
    facts, warnings = _facts(trace, threshold_ns)
    probes, drops, notes = _probes(trace)
    for d in drops:
        if d.covered is False:
            warnings.append(
                f"The probe plan has no live probe on the {d.kind} path and the trace has no "
                f"{d.kind} events: anomalies that depend on it cannot be seen in this trace.")
    verdict, sections = _sections(trace, anomalies if anomalies is not None
                                  else pd.DataFrame(), t0, limits)
    overview = [p for p in (_rate_plot(trace, t0, limits), _refcount_hist(trace, limits),
                            _pins_plot(trace, t0, limits, model), _tasks_plot(trace, limits))
                if p is not None]
    name = clean_text(getattr(trace.path, "name", str(trace.path)))
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return Report(
        title=title or f"pageref report: {name}",
        trace_name=name,
        generated=now.strftime("%Y-%m-%d %H:%M:%S UTC"),
        threshold=fmt_duration(threshold_ns),
        facts=facts,
        warnings=warnings,
        probes=probes,
        drop_paths=drops,
        verdict=verdict,
        total_anomalies=sum(v.count for v in verdict),
        sections=sections,
        overview=overview,
        notes=notes,
        recorder=_recorder_notes(trace),
    )
