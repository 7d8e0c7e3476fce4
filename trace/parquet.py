"""Native trace: Parquet, a single file or a directory of parts.

A recording is a directory of parts (`part-000000.parquet`, ...), each a complete
Parquet file written under a temporary name and renamed when closed, so a crash
loses at most the part being written. Every part carries the header in its
key-value metadata; the last part's header is the most complete (end time, lost
counts). `pandas.read_parquet(path)` reads a file or a directory alike.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pageref.errors import TraceError
from pageref.trace.frame import conform, first_bad_row, table_to_frame
from pageref.trace.header import TraceHeader
from pageref.trace.schema import ARROW_SCHEMA, METADATA_KEY, PARQUET_FORMAT

PART_GLOB = "part-*.parquet"


def part_files(path: Path) -> list[Path]:
    """The Parquet files making up the trace at `path`, in recording order."""
    if path.is_dir():
        parts = sorted(path.glob(PART_GLOB))
        if not parts:
            raise TraceError(path, "directory holds no trace parts (part-*.parquet)")
        return parts
    return [path]


def _open(path: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise TraceError(path, f"not a readable Parquet file ({_short(e)})") from None


def _short(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def header_of_file(path: Path, pf: pq.ParquetFile | None = None) -> TraceHeader:
    meta = (pf or _open(path)).schema_arrow.metadata or {}
    raw = meta.get(METADATA_KEY)
    if raw is None:
        return TraceHeader()  # a Parquet file from elsewhere: defaults
    try:
        obj = json.loads(raw)
    except ValueError:
        raise TraceError(path, "trace metadata is not valid JSON") from None
    if not isinstance(obj, dict):
        raise TraceError(path, "trace metadata is not a JSON object")
    if obj.get("format") != PARQUET_FORMAT:
        raise TraceError(path, f"unknown format {obj.get('format')!r} in trace metadata")
    try:
        return TraceHeader.from_dict(obj)
    except (TypeError, ValueError) as e:
        raise TraceError(path, str(e)) from None


def read_header(path: Path) -> TraceHeader:
    return header_of_file(part_files(path)[-1])


def read_row_group(pf: pq.ParquetFile, rg: int, columns: list[str] | None = None) -> pa.Table:
    """One row group, fully validated: a flipped byte can leave the file readable
    but its strings invalid UTF-8, which would only fail (with a traceback) when
    a string is decoded later. Raises pa.ArrowInvalid instead."""
    table = pf.read_row_group(rg, columns=columns, use_threads=True)
    table.validate(full=True)
    return table


def iter_batches(path: Path, batch_rows: int = 1_000_000) -> Iterator[pd.DataFrame]:
    """Checked events as DataFrames of at most `batch_rows` rows, in file order.

    Reads whole row groups (multi-threaded, much faster than pyarrow's
    streaming batch reader) and slices them."""
    row_base = 0
    for part in part_files(path):
        pf = _open(part)
        for rg in range(pf.metadata.num_row_groups):
            try:
                group = read_row_group(pf, rg)
            except (pa.ArrowException, OSError, ValueError) as e:
                raise TraceError(part, f"corrupt Parquet data ({_short(e)})",
                                 f"row {row_base}") from None
            for off in range(0, max(group.num_rows, 1), batch_rows):
                table = group.slice(off, batch_rows)
                if not table.num_rows:
                    continue
                try:
                    table = conform(table)
                except ValueError as e:
                    last = row_base + table.num_rows - 1
                    raise TraceError(part, str(e), f"rows {row_base}-{last}") from None
                bad = first_bad_row(table)
                if bad is not None:
                    raise TraceError(part, bad[1], f"row {row_base + bad[0]}")
                row_base += table.num_rows
                yield table_to_frame(table)


def _table(df: pd.DataFrame, header: TraceHeader) -> pa.Table:
    table = conform(pa.Table.from_pandas(df, preserve_index=False))
    return table.replace_schema_metadata({METADATA_KEY: header.to_json(PARQUET_FORMAT)})


def write_parquet(path: Path, header: TraceHeader, frames: Iterator[pd.DataFrame]) -> int:
    """Write a single-file trace; returns the number of events."""
    schema = ARROW_SCHEMA.with_metadata({METADATA_KEY: header.to_json(PARQUET_FORMAT)})
    n = 0
    tmp = path.with_name(f".{path.name}.tmp")
    with pq.ParquetWriter(tmp, schema) as w:
        for df in frames:
            w.write_table(_table(df, header))
            n += len(df)
    os.replace(tmp, path)
    return n


class PartWriter:
    """Writes a recording as a directory of Parquet parts (crash-safe, see above)."""

    def __init__(self, directory: Path, header: TraceHeader) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        if any(self.directory.glob(PART_GLOB)):
            raise TraceError(self.directory, "already holds a trace; choose a new -o path")
        self.header = header
        self.parts = 0
        self.events = 0

    def write(self, table: pa.Table) -> Path:
        """Write one part from an Arrow table in the schema (or a subset of it)."""
        table = conform(table).replace_schema_metadata(
            {METADATA_KEY: self.header.to_json(PARQUET_FORMAT)}
        )
        final = self.directory / f"part-{self.parts:06d}.parquet"
        tmp = self.directory / f".{final.name}.tmp"
        pq.write_table(table, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, final)
        self.parts += 1
        self.events += table.num_rows
        return final

    def close(self) -> None:
        """Write a final (possibly empty) part so the last header is complete."""
        self.write(ARROW_SCHEMA.empty_table())
