"""pageref convert: Parquet <-> JSON Lines."""

from __future__ import annotations

from pathlib import Path

import click

from pageref.commands.analysis_params import Progress

EPILOG = """\b
Examples:
  pageref convert run.trace run.jsonl          # a recording (parts dir) -> JSON Lines
  pageref convert case.jsonl case.parquet      # hand-written case -> native Parquet
  pageref convert in.jsonl out.pq --to parquet

\b
The output format comes from OUT's suffix (.parquet/.pq -> Parquet, .jsonl/.json/
.ndjson -> JSON Lines) or --to. The header (kernel, pin bias, idle refcounts,
probe plan, lost counts...) is carried over. See docs/trace-format.md.
"""

_SUFFIX = {".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".json": "jsonl",
           ".ndjson": "jsonl"}


@click.command(epilog=EPILOG)
@click.argument("src", metavar="IN", type=click.Path(path_type=Path))
@click.argument("dst", metavar="OUT", type=click.Path(path_type=Path))
@click.option("--to", "fmt", type=click.Choice(["parquet", "jsonl"]), default=None,
              help="Output format (default: from OUT's suffix).")
def convert(src: Path, dst: Path, fmt: str | None) -> None:
    """Convert the trace IN to OUT, either way between Parquet (native) and JSON
    Lines (interchange). Streams: any size of trace fits in memory."""
    from pageref.errors import PagerefError
    from pageref.trace import io as trace_io
    from pageref.trace.jsonl import write_jsonl
    from pageref.trace.output import check_output
    from pageref.trace.parquet import write_parquet

    fmt = fmt or _SUFFIX.get(dst.suffix.lower())
    if fmt is None:
        raise PagerefError(f"{dst}: cannot tell the output format from the name; use a "
                           ".parquet or .jsonl suffix, or --to parquet|jsonl")
    src_fmt = trace_io.trace_format(src)
    # By inode, not name: a hard or symbolic link to the input, or a file inside
    # the input recording, would be read while it is written.
    check_output(dst, src)
    header = trace_io.read_header(src)
    progress = Progress(f"converting {src}")

    def frames():
        n = 0
        for df in trace_io.iter_batches(src):
            n += len(df)
            progress(n)
            yield df

    try:
        # Both writers write beside OUT and rename when complete: a failure
        # leaves an existing OUT as it was and no temporary file.
        writer = write_parquet if fmt == "parquet" else write_jsonl
        n = writer(dst, header, frames())
    except OSError as e:
        raise PagerefError(f"{dst}: cannot write ({e.strerror or e})") from None
    except ValueError as e:  # a value JSON cannot hold (NaN, Infinity)
        raise PagerefError(f"{dst}: cannot write ({e})") from None
    progress.done()
    click.echo(f"converted {n:,} events: {src} ({src_fmt}) -> {dst} ({fmt})", err=True)
