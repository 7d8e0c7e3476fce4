"""Open any trace: a Parquet file, a directory of Parquet parts, or JSON Lines."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from pageref.errors import TraceError
from pageref.trace import jsonl, parquet
from pageref.trace.header import TraceHeader
from pageref.trace.schema import ARROW_SCHEMA

PARQUET_MAGIC = b"PAR1"


def trace_format(path: Path) -> str:
    """'parquet' or 'jsonl', from the content (not the name)."""
    path = Path(path)
    if not path.exists():
        raise TraceError(path, "no such file or directory")
    if path.is_dir():
        return "parquet"
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        raise TraceError(path, "empty file: neither a header nor any event")
    if head == PARQUET_MAGIC:
        return "parquet"
    if head[:1] in (b"{", b"\n", b" ", b"\r", b"\t"):
        return "jsonl"
    if head[:1] in (b"[", b'"') or head[:1].isdigit():
        # JSON, but not an object: the JSON Lines reader names the line.
        return "jsonl"
    raise TraceError(path, "neither a Parquet trace nor JSON Lines; see docs/trace-format.md")


@dataclasses.dataclass
class Trace:
    path: Path
    header: TraceHeader
    events: pd.DataFrame  # columns of schema.COLUMNS, in file order


def read_header(path: Path) -> TraceHeader:
    path = Path(path)
    if trace_format(path) == "parquet":
        return parquet.read_header(path)
    return jsonl.read_header(path)[0]


def iter_batches(path: Path, batch_rows: int = 1_000_000) -> Iterator[pd.DataFrame]:
    """The trace's events in chunks, checked, in file order."""
    path = Path(path)
    if trace_format(path) == "parquet":
        return parquet.iter_batches(path, batch_rows)
    return jsonl.iter_batches(path, batch_rows)


def read_trace(path: Path) -> Trace:
    """The whole trace in memory: header and all events."""
    path = Path(path)
    header = read_header(path)
    frames = list(iter_batches(path))
    if frames:
        events = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    else:
        from pageref.trace.frame import table_to_frame

        events = table_to_frame(ARROW_SCHEMA.empty_table())
    return Trace(path, header, events)
