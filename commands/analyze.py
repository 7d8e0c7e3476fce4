"""pageref analyze: find refcount anomalies in a trace."""

from __future__ import annotations

import json
from pathlib import Path

import click

from pageref.commands.analysis_params import Duration, Progress

EPILOG = """\b
Examples:
  pageref analyze examples/basic.jsonl
  pageref analyze run.trace --threshold 250ms
  pageref analyze run.trace --json | jq '.anomalies[] | select(.kind=="pin_leak")'

\b
TRACE is a Parquet trace (a file or a recording's directory of parts) or JSON
Lines (docs/trace-format.md). The catalog of anomalies and what each means for
the kernel is in docs/anomalies.md. Exit status is 0 whether or not anomalies
are found; 2 when the trace cannot be read.
"""


@click.command(epilog=EPILOG)
@click.argument("trace", type=click.Path(path_type=Path))
@click.option("--threshold", "-t", type=Duration(), default="1s", show_default=True,
              help="T: how long a busy page may stay referenced, or a woken truncate may "
                   "take to check again, before it is an anomaly (1s, 500ms, 250us; a "
                   "plain number is seconds).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the result as one JSON document on stdout.")
@click.option("--limit", type=click.IntRange(min=0), default=50, show_default=True,
              help="Show at most this many anomalies in the table (0: all; --json shows all).")
def analyze(trace: Path, threshold: int, as_json: bool, limit: int) -> None:
    """Find refcount anomalies in TRACE: underflows, grabs on freed pages, pins
    released with put_page, leaked pins, frees while pinned, double frees,
    truncates stalled on busy pages, lost wake-ups, long-term pins on fsdax."""
    from pageref.analysis.anomalies import stream
    from pageref.analysis.summary import document
    from pageref.trace.io import warnings_for
    from pageref.trace.text import for_terminal

    # The engine streams the trace: memory is bounded by what is live, not by
    # the trace's length (docs/analysis.md).
    progress = Progress(f"analysing {trace}")
    st = stream(trace, threshold, progress=progress)
    progress.done()
    doc = document(st.header, trace, st.counts, st.anomalies, st.completeness, st.by_frame)
    if st.late:
        click.echo(f"pageref: warning: {st.late:,} events came more than 1 s out of time "
                   f"order; verdicts near them may differ from a sorted trace's", err=True)
    # What the reader could not read (a recording's damaged last part): the
    # results are on the rest, and say so.
    warnings = warnings_for(trace)
    if as_json:
        doc["threshold_ns"] = threshold
        doc["warnings"] = warnings
        click.echo(json.dumps(doc, indent=1))
        return
    from pageref.commands.analyze_text import render

    # A trace is untrusted: its text (comm, kernel, header keys...) reaches the
    # terminal with control characters escaped.
    click.echo(for_terminal(render(doc, threshold, limit, st.header.start_ns
                                   if st.header.start_ns is not None else st.first_ts,
                                   warnings)))
    n = st.counts["events"]
    if progress.enabled and progress.elapsed >= 1:
        rate = n / progress.elapsed if progress.elapsed else 0
        click.echo(f"analysed {n:,} events in {progress.elapsed:.1f} s "
                   f"({rate:,.0f} events/s)", err=True)
