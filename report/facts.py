"""The page's header section: facts about the recording (kernel, duration,
event counts, pin bias, idle refcounts, lost events) and the warnings they call for."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pageref.analysis.fmt import fmt_ns
from pageref.report import history as hist
from pageref.report.page import Fact
from pageref.report.text import clean_text
from pageref.trace.io import Trace
from pageref.trace.pgmap_names import display_name


def trace_t0(trace: Trace) -> int:
    """The time the page measures from: the header's start, else the first event."""
    if trace.header.start_ns is not None:
        return int(trace.header.start_ns)
    if len(trace.events):
        return int(trace.events["ts_ns"].min())
    return 0


def trace_end(trace: Trace) -> int:
    """The header's end, else the last event."""
    if trace.header.end_ns is not None:
        return int(trace.header.end_ns)
    if len(trace.events):
        return int(trace.events["ts_ns"].max())
    return 0


def lost_counts(trace: Trace) -> tuple[int, int]:
    """(lost events per the header, lost events per the trace's `lost` rows)."""
    ev = trace.events
    lost_ev = 0
    if "count" in ev.columns and len(ev):
        lost_ev = int(pd.to_numeric(ev.loc[hist.kind_is(ev, "lost"), "count"],
                                    errors="coerce").fillna(0).sum())
    return trace.header.lost_total, lost_ev


def df_facts(trace: Trace, threshold_ns: int) -> pd.DataFrame:
    """The facts table, one row per fact, in page order.

    Columns: label (str), value (str, cleaned for display), warn (bool: shown
    as a problem, e.g. lost events).
    """
    h, ev = trace.header, trace.events
    rows: list[tuple[str, str, bool]] = []

    def add(label: str, value: str, warn: bool = False) -> None:
        rows.append((label, value, warn))

    add("Kernel", clean_text(h.kernel) or "unknown (not in the trace header)")
    if h.host:
        add("Host", clean_text(h.host))
    if h.command:
        add("Command", clean_text(" ".join(h.command), 400))
    if h.start_time:
        add("Started", clean_text(h.start_time))
    add("Duration", fmt_ns(max(0, trace_end(trace) - trace_t0(trace))))
    kinds = hist.kind_counts(ev)
    by_kind = ", ".join(f"{k} {int(n):,}" for k, n in kinds.items())
    add("Events", f"{len(ev):,}" + (f" ({by_kind})" if by_kind else ""))
    pfn = ev["pfn"] if "pfn" in ev.columns else pd.Series(dtype="Int64")
    add("Pages", f"{pfn.nunique(dropna=True):,}")
    add("Device pages", f"{pfn[hist.device_mask(ev)].nunique(dropna=True):,}")
    if "pgmap_type" in ev.columns and len(ev):
        # Pages of each kind, by the name a user knows (devdax for the kernel's
        # MEMORY_DEVICE_GENERIC: trace/pgmap_names.py).
        typed = ev.loc[ev["pgmap_type"].notna() & pfn.notna(), ["pgmap_type", "pfn"]]
        per = typed.drop_duplicates().groupby(typed["pgmap_type"].astype(str)).size()
        if len(per):
            add("Pages by kind", ", ".join(
                f"{clean_text(display_name(str(k)))} {int(n):,}" for k, n in per.items()))
    add("Pin bias", str(h.pin_bias))
    add("Page size", str(h.page_size))
    idle = ", ".join(f"{display_name(k)} {v}" for k, v in sorted(h.idle_refcount.items()))
    tracer = h.extra.get("tracer")
    why = tracer.get("idle_refcount_reason") if isinstance(tracer, dict) else None
    idle = idle or "not in the header (0 assumed)"
    if isinstance(why, str) and why:
        idle += f" ({clean_text(why, 300)})"
    add("Idle refcount", idle)
    add("Threshold", fmt_ns(threshold_ns))
    lost_hdr, lost_ev = lost_counts(trace)
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
    add("Lost events", lost_text, lost > 0)
    # How much of the refcount history the events explain (analysis/completeness.py):
    # the same figure and words as `pageref analyze`.
    from pageref.analysis.completeness import describe, tally
    from pageref.analysis.unexplained import by_frame, details

    t = tally(trace)
    c = t.result()
    text = describe(c).removeprefix("history completeness: ")
    if c.source == "page_ref" and c.unexplained:
        rows_un = np.array([r[0] for r in t.unexplained_rows()], dtype=np.int64)
        frames = by_frame(details(trace, rows_un)[1])[:5]
        text += "; from " + ", ".join(f"{clean_text(f['frame'], 80)} {f['count']:,}"
                                      for f in frames)
    add("History completeness", text, bool(c.unexplained))
    return pd.DataFrame(rows, columns=["label", "value", "warn"])


def facts_section(trace: Trace, threshold_ns: int) -> tuple[list[Fact], list[str]]:
    """The facts and the warnings they call for (lost events)."""
    df = df_facts(trace, threshold_ns)
    facts = [Fact(str(r.label), str(r.value), bool(r.warn)) for r in df.itertuples()]
    warnings: list[str] = []
    lost = max(lost_counts(trace))
    if lost > 0:
        warnings.append(
            f"{lost:,} events were lost while recording. The histories of pages active "
            "at those times are incomplete: anomalies near the gaps may be missing or "
            "spurious. Record again with a larger buffer or fewer probes to be sure."
        )
    return facts, warnings
