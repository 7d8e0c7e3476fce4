"""From a trace file to the written report: read, analyse, build the model, render."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pageref.analysis.anomalies import anomalies_of_model, columns_of
from pageref.analysis.model import PageModel
from pageref.analysis.model import build as build_model
from pageref.errors import PagerefError
from pageref.report.model import build_report
from pageref.report.page import Limits, Report
from pageref.report.render import render_html
from pageref.trace.io import Trace, read_trace
from pageref.trace.output import write_text


def analyse(trace: Trace, threshold_ns: int) -> tuple[pd.DataFrame, PageModel]:
    """(anomalies, the analysis's page model): the model is built once and serves
    both the anomalies and the report's pins-over-time plot."""
    m = build_model(columns_of(trace), threshold_ns)
    return anomalies_of_model(m), m


def make_report(trace: Trace, threshold_ns: int = 1_000_000_000,
                limits: Limits | None = None) -> tuple[Report, str]:
    """The report model and its HTML for an in-memory trace."""
    anomalies, page_model = analyse(trace, threshold_ns)
    model = build_report(trace, anomalies, threshold_ns=threshold_ns, limits=limits,
                         model=page_model)
    return model, render_html(model)


def write_report(trace_path: Path, output: Path, threshold_ns: int = 1_000_000_000,
                 max_rows: int = 200) -> Report:
    trace = read_trace(Path(trace_path))
    model, html = make_report(trace, threshold_ns, Limits(rows_per_kind=max_rows))
    try:
        write_text(Path(output), html)  # beside it, renamed when whole
    except OSError as e:
        raise PagerefError(f"cannot write {output}: {e.strerror or e}") from None
    return model
