"""`pageref report TRACE -o report.html`: the anomaly dashboard as one HTML file."""

from __future__ import annotations

import webbrowser
from pathlib import Path

import click

from pageref.commands.analysis_params import Duration
from pageref.errors import PagerefError


@click.command()
@click.argument("trace", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False),
              help="HTML file to write (default: the trace's name with .html).")
@click.option("--threshold", type=Duration(), default="1s", show_default=True,
              help="How long a busy page may stay referenced (stall / missed wake-up).")
@click.option("--open", "open_browser", is_flag=True,
              help="Open the report in the default browser.")
@click.option("--max-rows", type=click.IntRange(1), default=200, show_default=True,
              help="Table rows shown per anomaly kind (the rest are counted).")
def report(trace: Path, output: Path | None, threshold: int, open_browser: bool,
           max_rows: int) -> None:
    """Write a self-contained HTML report: verdict, anomalies with their page
    histories and evidence, and overview plots."""
    from pageref.report.build import write_report
    from pageref.trace.output import check_output, default_name

    if output is None:
        output = default_name(trace, ".html")
    check_output(output, trace)  # never over the input, by inode
    result = write_report(trace, output, threshold_ns=threshold, max_rows=max_rows)
    click.echo(f"pageref: wrote {output} ({result.total_anomalies} anomalies, "
               f"{len(result.plots)} plots)")
    if open_browser:
        url = output.resolve().as_uri()
        if not webbrowser.open(url):
            raise PagerefError(f"could not start a browser; open {url} yourself")

