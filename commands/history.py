"""pageref history: one page's reference history as a table, and a plot."""

from __future__ import annotations

from pathlib import Path

import click

from pageref.commands.analysis_params import Duration, Pfn, Progress

EPILOG = """\b
Examples:
  pageref history examples/basic.jsonl                  # which pages are there?
  pageref history examples/basic.jsonl --pfn 0x140400
  pageref history run.trace --pfn 1310744 --stacks
  pageref history run.trace --pfn 0x140018 --plot page.png   # or page.svg

\b
Columns: ROW is the event's row in the trace (what `analyze` cites as evidence);
REFCOUNT is before -> after the event (observed before; "~" marks a value
carried forward from an earlier observation, "?" unknown); P and G are the pins
and gets outstanding after it, counted from the trace. A "lost" line marks a
gap: the tracer lost events there, so the counts after it may be off. "!"
marks an unexplained step: the refcount changed with no traced operation to
say why (on a trace with page_ref rows: a kernel change no row names); ref
rows are the kernel's own record of each change (docs/analysis.md).
"""


@click.command(epilog=EPILOG)
@click.argument("trace", type=click.Path(path_type=Path))
@click.option("--pfn", type=Pfn(), default=None,
              help="The page (hex 0x140018 or decimal). Without it, list the pages.")
@click.option("--plot", "plot", type=click.Path(path_type=Path), default=None,
              help="Also draw refcount over time to this .png or .svg file (needs --pfn).")
@click.option("--stacks", is_flag=True, help="Print each event's kernel stack.")
@click.option("--limit", type=click.IntRange(min=0), default=0,
              help="Show at most this many rows (0: all for a page, 40 pages otherwise).")
@click.option("--threshold", "-t", type=Duration(), default="1s", show_default=True,
              help="T for the anomalies listed under the table (as for analyze).")
def history(trace: Path, pfn: int | None, plot: Path | None, stacks: bool, limit: int,
            threshold: int) -> None:
    """Show the reference history of one page of TRACE: every get, pin, put, unpin,
    free and busy report, with the refcount before and after, pins and gets
    outstanding, and who (task, probe, stack)."""
    from pageref.commands.history_text import render_page, render_pages
    from pageref.errors import PagerefError
    from pageref.trace import output
    from pageref.trace.text import for_terminal

    threshold_ns = threshold
    if plot is not None and pfn is None:
        raise PagerefError("--plot draws one page: add --pfn (see `pageref history TRACE` "
                           "for the pages in the trace)")
    if plot is not None:
        output.check_output(plot, trace)  # never over the input, by inode
    if pfn is None:
        from pageref.analysis.anomalies import columns_of
        from pageref.analysis.model import build

        progress = Progress(f"reading {trace}")
        cols = columns_of(trace, progress=progress)
        progress.done()
        # A trace is untrusted: control characters in its text are shown escaped.
        click.echo(for_terminal(render_pages(build(cols, threshold_ns), trace, limit or 40)))
        return

    from pageref.analysis.anomalies import find_anomalies
    from pageref.analysis.history import df_history, plot_history, read_page_trace

    progress = Progress(f"reading {trace}")
    sub = read_page_trace(trace, pfn, progress=progress)
    progress.done()
    hist = df_history(sub, pfn)
    if hist.empty:
        raise PagerefError(f"{trace}: no events for pfn {pfn:#x}; run `pageref history "
                           f"{trace}` to list the pages it has")
    anomalies = find_anomalies(sub, threshold_ns)
    page = int(hist["page"].iloc[0])  # the folio's head for a page inside a large folio
    anomalies = anomalies[anomalies["pfn"] == page].reset_index(drop=True)
    click.echo(for_terminal(render_page(hist, sub.header, anomalies, stacks, limit)))
    if plot is not None:
        if plot.suffix.lower() not in (".png", ".svg"):
            raise PagerefError(f"{plot}: plot file must end in .png or .svg")
        with output.replacing(plot) as tmp:  # whole or not at all
            plot_history(hist, tmp, anomalies=anomalies,
                         title=f"pfn {page:#x} — {trace.name}")
        click.echo(f"plot written to {plot}", err=True)
