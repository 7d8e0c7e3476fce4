"""Native trace: Parquet, a single file or a directory of parts.

A recording is a directory of parts (`part-000000.parquet`, ...), each a complete
Parquet file written under a temporary name and renamed when closed, so a crash
loses at most the part being written. Every part carries the header in its
key-value metadata; the last part's header is the most complete (end time, lost
counts). `pandas.read_parquet(path)` reads a file or a directory alike.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pageref.errors import TraceError
from pageref.trace import output
from pageref.trace.frame import conform
from pageref.trace.header import TraceHeader
from pageref.trace.jsonl import decode_json
from pageref.trace.schema import ARROW_SCHEMA, COLUMN_NAMES, METADATA_KEY, PARQUET_FORMAT
from pageref.trace.text import cap, escape_controls, shown

PART_GLOB = "part-*.parquet"


def part_files(path: Path) -> list[Path]:
    """The Parquet files making up the trace at `path`, in recording order."""
    if path.is_dir():
        try:
            parts = sorted(p for p in path.glob(PART_GLOB) if not p.name.startswith("."))
        except OSError as e:
            raise TraceError(path, f"cannot list the directory ({e.strerror or e})") from None
        if not parts:
            raise TraceError(path, "directory holds no trace parts (part-*.parquet)")
        return parts
    return [path]


def open_file(path: Path, name: Path | None = None) -> pq.ParquetFile:
    """Open one Parquet file, verifying page checksums where the writer stored
    them (a flipped byte must not come back as a different value). `name` is
    what messages call it (the file as the user named it)."""
    try:
        # pre_buffer off: with it, a ParquetFile keeps every column chunk it has
        # read until the object goes, and a recording's parts stay open while it
        # is read (about 10 MB per million-event part: 1 GB over 100 parts).
        return pq.ParquetFile(path, page_checksum_verification=True, pre_buffer=False)
    except (pa.ArrowException, OSError) as e:
        raise TraceError(name or path, f"not a readable Parquet file ({short(e)})") from None


def short(e: BaseException) -> str:
    """The first line of an exception's text, controls escaped and capped: a
    reader's message may echo cell text from the file."""
    text = str(e).strip()
    return cap(escape_controls(text.splitlines()[0] if text else type(e).__name__), 200)


# Page checksums cover the data, not the footer: the header's JSON carries its
# own CRC32, so a flipped byte cannot change a pin bias or an idle refcount.
CRC_KEY = METADATA_KEY + b".crc32"


def metadata(header: TraceHeader) -> dict[bytes, bytes]:
    """The Parquet key-value metadata of a trace: the header and its CRC32."""
    raw = header.to_json(PARQUET_FORMAT).encode()
    return {METADATA_KEY: raw, CRC_KEY: b"%08x" % zlib.crc32(raw)}


def header_of_file(path: Path, pf: pq.ParquetFile | None = None,
                   name: Path | None = None) -> TraceHeader:
    name = name or path
    meta = (pf or open_file(path, name)).schema_arrow.metadata or {}
    raw = meta.get(METADATA_KEY)
    if raw is None:
        return TraceHeader()  # a Parquet file from elsewhere: defaults
    crc = meta.get(CRC_KEY)
    if crc is not None and crc != b"%08x" % zlib.crc32(raw):
        raise TraceError(name, "trace metadata fails its checksum (the file is damaged)")
    try:
        obj = decode_json(raw)
    except ValueError as e:
        raise TraceError(name, f"trace metadata is not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise TraceError(name, "trace metadata is not a JSON object")
    if obj.get("format") != PARQUET_FORMAT:
        raise TraceError(name, f"unknown format {shown(obj.get('format'))} in trace metadata")
    try:
        return TraceHeader.from_dict(obj)
    except (TypeError, ValueError) as e:
        raise TraceError(name, str(e)) from None


def check_schema(name: Path, schema: pa.Schema) -> None:
    """Refuse, before reading any data, a file whose columns cannot be the
    trace's: a column named twice (which one would be the data?) or one of an
    impossible type."""
    seen: set[str] = set()
    ours = METADATA_KEY in (schema.metadata or {})
    for col in schema.names:
        if col in seen:
            raise TraceError(name, f"column {shown(col)} appears more than once")
        if ours and col not in COLUMN_NAMES:
            # pageref writes only the schema's columns: a name it does not know
            # in its own file is damage (a flipped byte in the footer), not an
            # extra column to drop while the real one reads as all nulls.
            raise TraceError(name, f"unknown column {shown(col)} in a pageref trace "
                                   "(the file is damaged)")
        seen.add(col)
    try:
        conform(schema.empty_table())
    except ValueError as e:
        raise TraceError(name, str(e)) from None


def row_groups(pf: pq.ParquetFile, batch_rows: int) -> Iterator[tuple[list[int], int]]:
    """Consecutive row groups gathered into reads of about `batch_rows` rows:
    (row group indices, rows). Reading a file of 100,000 one-row row groups one
    by one costs a table, a conversion and a frame per row; gathered, it costs
    what one row group would."""
    md = pf.metadata
    group: list[int] = []
    rows = 0
    for rg in range(md.num_row_groups):
        n = md.row_group(rg).num_rows
        if group and rows + n > batch_rows:
            yield group, rows
            group, rows = [], 0
        group.append(rg)
        rows += n
    if group:
        yield group, rows


def read_row_groups(pf: pq.ParquetFile, groups: list[int],
                    columns: list[str] | None = None) -> pa.Table:
    """Row groups, fully validated: a flipped byte can leave the file readable
    but its strings invalid UTF-8, which would only fail (with a traceback) when
    a string is decoded later. Raises pa.ArrowInvalid / OSError instead."""
    table = pf.read_row_groups(groups, columns=columns, use_threads=True)
    table.validate(full=True)
    return table


def _table(df: pd.DataFrame, header: TraceHeader) -> pa.Table:
    table = conform(pa.Table.from_pandas(df, preserve_index=False))
    return table.replace_schema_metadata(metadata(header))


# Every part and file pageref writes carries CRC32 page checksums, and every
# reader verifies them (open_file): a flipped byte is an error, not a new value.
WRITE_OPTIONS = {"write_page_checksum": True}


def write_parquet(path: Path, header: TraceHeader, frames: Iterator[pd.DataFrame]) -> int:
    """Write a single-file trace; returns the number of events. Written beside
    `path` under a temporary name and renamed only when complete: a failure
    leaves neither a half file nor a changed `path`."""
    schema = ARROW_SCHEMA.with_metadata(metadata(header))
    n = 0
    with output.replacing(path) as tmp:
        with pq.ParquetWriter(tmp, schema, **WRITE_OPTIONS) as w:
            for df in frames:
                w.write_table(_table(df, header))
                n += len(df)
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
            metadata(self.header)
        )
        final = self.directory / f"part-{self.parts:06d}.parquet"
        tmp = self.directory / f".{final.name}.tmp"
        pq.write_table(table, tmp, **WRITE_OPTIONS)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, final)
        self.parts += 1
        self.events += table.num_rows
        return final

    def close(self) -> None:
        """Write a final (possibly empty) part so the last header is complete."""
        self.write(ARROW_SCHEMA.empty_table())
