"""What goes on the report page for a trace, as plain data.

`build_report(trace, anomalies)` turns a trace and its anomalies (the DataFrame
of pageref.analysis.anomalies.find_anomalies) into a `Report` (report/page.py):
strings and numbers for the template, and `PlotSpec`s holding the (already
downsampled) series each plot draws. One module per section of the page builds
its part: report/facts.py (the recording), report/coverage.py (probes and drop
paths), report/verdict.py (verdict and a section per anomaly kind, with
report/page_history.py's plots), report/overview.py (overview plots). Nothing
here draws or escapes: report/plots.py draws the PlotSpecs, the Jinja2 template
(autoescaping on) escapes every string, which is what makes untrusted text
(process names, stacks) safe.
"""

from __future__ import annotations

import datetime

import pandas as pd

from pageref.analysis.fmt import fmt_ns
from pageref.analysis.model import PageModel
from pageref.report.coverage import probes_section, recorder_notes
from pageref.report.facts import facts_section, trace_t0
from pageref.report.overview import overview_specs
from pageref.report.page import Limits, Report
from pageref.report.text import clean_text
from pageref.report.verdict import verdict_sections
from pageref.trace.io import Trace

__all__ = ["Limits", "Report", "build_report"]


def build_report(
    trace: Trace,
    anomalies: pd.DataFrame | None,
    *,
    threshold_ns: int = 1_000_000_000,
    limits: Limits | None = None,
    title: str | None = None,
    now: datetime.datetime | None = None,
    model: PageModel | None = None,
) -> Report:
    """The report for `trace` with its `anomalies` (find_anomalies' DataFrame).

    `model`, the analysis's PageModel of the same trace when the caller has it,
    gives the pins-over-time plot the analysis's own pin counts."""
    limits = limits or Limits()
    t0 = trace_t0(trace)
    facts, warnings = facts_section(trace, threshold_ns)
    probes, drops, notes = probes_section(trace)
    for d in drops:
        if d.covered is False:
            warnings.append(
                f"The probe plan has no live probe on the {d.kind} path and the trace has no "
                f"{d.kind} events: anomalies that depend on it cannot be seen in this trace.")
    verdict, sections = verdict_sections(trace, anomalies if anomalies is not None
                                         else pd.DataFrame(), t0, limits)
    name = clean_text(getattr(trace.path, "name", str(trace.path)))
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return Report(
        title=title or f"pageref report: {name}",
        trace_name=name,
        generated=now.strftime("%Y-%m-%d %H:%M:%S UTC"),
        threshold=fmt_ns(threshold_ns),
        facts=facts,
        warnings=warnings,
        probes=probes,
        drop_paths=drops,
        verdict=verdict,
        total_anomalies=sum(v.count for v in verdict),
        sections=sections,
        overview=overview_specs(trace, t0, limits, model),
        notes=notes,
        recorder=recorder_notes(trace),
    )
