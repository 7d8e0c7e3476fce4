"""Open any trace: a Parquet file, a directory of Parquet parts, or JSON Lines.

The one reader of a trace's tables: every command (analyze, history, convert,
report, watch) and the analysis's compact columns read events through
`iter_tables` (file order) or `iter_time_order` (time order), so a damaged file
gets one error text everywhere: the file (or part) and, for JSON Lines, the
line; for Parquet, the rows of the trace being read.
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pageref.errors import TraceError
from pageref.trace import jsonl, parquet
from pageref.trace.frame import conform, first_bad_row, table_to_frame
from pageref.trace.header import INT64_MAX, TraceHeader
from pageref.trace.schema import ARROW_SCHEMA, COLUMN_NAMES, KINDS
from pageref.trace.text import escape_controls

PARQUET_MAGIC = b"PAR1"
BATCH_ROWS = 1_000_000
# Read whatever columns are asked for, plus these: the reader checks them.
CHECKED = ("ts_ns", "kind", "pfn", "pgmap_type", "count")


@dataclasses.dataclass(frozen=True)
class TraceInput:
    """A trace as given (`name`, what messages say) and as read (`data`: the file
    itself, or a copy of a pipe read once), with its format."""

    name: Path
    data: Path
    fmt: str  # "parquet" or "jsonl"


_SPOOLED: dict[str, TraceInput] = {}


def _spool(path: Path) -> Path:
    """Copy a pipe (FIFO, `... | pageref analyze /dev/stdin`) to a temporary file,
    once: a pipe can be read only once and the reader reads a file more than
    once (header, events). The copy is removed when the process exits."""
    fd, tmp = tempfile.mkstemp(prefix="pageref-stdin-", suffix=".trace")
    atexit.register(lambda: Path(tmp).unlink(missing_ok=True))
    try:
        with open(path, "rb") as src, os.fdopen(fd, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    except OSError as e:
        raise TraceError(path, f"cannot read ({e.strerror or e})") from None
    return Path(tmp)


def _sniff(name: Path, data: Path) -> str:
    try:
        with open(data, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise TraceError(name, f"cannot read ({e.strerror or e})") from None
    if not head:
        raise TraceError(name, "empty file: neither a header nor any event")
    if head == PARQUET_MAGIC:
        return "parquet"
    if head[:1] in (b"{", b"\n", b" ", b"\r", b"\t"):
        return "jsonl"
    if head[:1] in (b"[", b'"') or head[:1].isdigit():
        # JSON, but not an object: the JSON Lines reader names the line.
        return "jsonl"
    raise TraceError(name, "neither a Parquet trace nor JSON Lines; see docs/trace-format.md")


def open_input(path: Path) -> TraceInput:
    """Resolve what `path` is: a recording's directory, a trace file, or a pipe
    (read once into a temporary copy). A device is refused: it is not a trace
    (/dev/tty would wait for typing, /dev/zero never ends)."""
    path = Path(path)
    key = str(path)
    if key in _SPOOLED:
        return _SPOOLED[key]
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise TraceError(path, "no such file or directory") from None
    except OSError as e:
        raise TraceError(path, f"cannot open ({e.strerror or e})") from None
    if stat.S_ISDIR(st.st_mode):
        return TraceInput(path, path, "parquet")
    if stat.S_ISFIFO(st.st_mode) or stat.S_ISSOCK(st.st_mode):
        data = _spool(path)
        src = TraceInput(path, data, _sniff(path, data))
        _SPOOLED[key] = src
        return src
    if not stat.S_ISREG(st.st_mode):
        raise TraceError(path, "is a device, not a trace file; save the trace to a file "
                               "(or pipe it: ... | pageref analyze /dev/stdin)")
    return TraceInput(path, path, _sniff(path, path))


def trace_format(path: Path) -> str:
    """'parquet' or 'jsonl', from the content (not the name)."""
    return open_input(path).fmt


# ---------------------------------------------------------------------------
# A recording copied off a host half-way ends in a damaged part: it is read up
# to the damage, with one warning naming the part.

_WARNED: list[tuple[str, str]] = []  # (trace as named, message)


def warn(trace: Path, message: str) -> None:
    """Say once (per process) on stderr that part of `trace` was not read."""
    if (str(trace), message) in _WARNED:
        return
    _WARNED.append((str(trace), message))
    print(f"pageref: warning: {escape_controls(message)}", file=sys.stderr, flush=True)


def warnings_for(trace: Path) -> list[str]:
    """The warnings `warn` gave about `trace` (for a command's own output, e.g.
    the `warnings` of `analyze --json`)."""
    return [m for t, m in _WARNED if t == str(trace)]


def _damaged_last_part(trace: Path, part: Path, error: TraceError) -> None:
    warn(trace, f"{part}: the recording's last part is damaged; read the trace up to it "
                f"({str(error).removeprefix(str(part) + ': ')})")


@dataclasses.dataclass
class _Part:
    name: Path
    pf: pq.ParquetFile
    last: bool


_OPENED: dict[tuple, list[_Part]] = {}


def _parts(src: TraceInput) -> list[_Part]:
    """The readable parts; a damaged last part of a directory is left out with a
    warning (when an earlier part can stand for it). The last trace's parts stay
    open: a command reads the header, the row count and the events, and a
    file's metadata (100,000 row groups) costs as much to read as its events."""
    files = parquet.part_files(src.data)
    try:
        key: tuple | None = (str(src.data), tuple(
            (str(f), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            for f in files for st in (f.stat(),)))
    except OSError:
        key = None
    if key is not None and key in _OPENED:
        return _OPENED[key]
    parts = _open_parts(src, files)
    # Only where it pays: a file rewritten in place within a clock tick would
    # keep its key, and small files cost nothing to open again.
    if key is not None and sum(p.pf.metadata.num_row_groups for p in parts) >= 1000:
        _OPENED.clear()
        _OPENED[key] = parts
    return parts


def _open_parts(src: TraceInput, files: list[Path]) -> list[_Part]:
    out = []
    for i, f in enumerate(files):
        name = src.name if not src.data.is_dir() else f
        last = src.data.is_dir() and i == len(files) - 1 and i > 0
        try:
            pf = parquet.open_file(f, name)
            parquet.check_schema(name, pf.schema_arrow)
            parquet.header_of_file(f, pf, name)
        except TraceError as e:
            if not last:
                raise
            _damaged_last_part(src.name, name, e)
            break
        out.append(_Part(name, pf, last))
    return out


def read_header(path: Path) -> TraceHeader:
    src = open_input(path)
    if src.fmt == "parquet":
        part = _parts(src)[-1]
        return parquet.header_of_file(part.name, part.pf, part.name)
    return jsonl.read_header(src.data, src.name)[0]


def row_count(path: Path) -> int | None:
    """How many events the trace says it holds (Parquet metadata), or None when
    only reading it all can tell (JSON Lines)."""
    src = open_input(path)
    if src.fmt != "parquet":
        return None
    return sum(p.pf.metadata.num_rows for p in _parts(src))


# ---------------------------------------------------------------------------
# Events


@dataclasses.dataclass
class TableBatch:
    """Events of a trace, checked against the schema's rules.

    table: the requested columns (plus CHECKED), cast to the schema's types.
    first_row: the trace-wide row number (file order over all parts, from 0) of
      the table's first row; `rows` gives every row's number when they are not
      consecutive (time order).
    source: the file (or part) the rows came from, for messages.
    lines: for JSON Lines, the line number of each row.
    """

    table: pa.Table
    first_row: int
    source: Path
    lines: Sequence[int] | None = None
    rows: np.ndarray | None = None

    @property
    def num_rows(self) -> int:
        return self.table.num_rows

    def row_numbers(self) -> np.ndarray:
        if self.rows is not None:
            return self.rows
        return np.arange(self.first_row, self.first_row + self.num_rows, dtype=np.int64)

    def where(self, i: int) -> str:
        """How a message names row `i` of this batch: its line, or its row."""
        if self.lines is not None:
            return f"line {self.lines[i]}"
        return f"row {int(self.row_numbers()[i])}"


def _subschema(columns: Sequence[str] | None) -> pa.Schema:
    if columns is None:
        return ARROW_SCHEMA
    want = set(columns) | set(CHECKED)
    return pa.schema([ARROW_SCHEMA.field(n) for n in COLUMN_NAMES if n in want])


class _LostTotal:
    """The `lost` rows' counts, summed exactly: past 2**63-1 they would wrap in
    any int64 sum downstream (two rows of 2**63-1 became "0 events lost")."""

    LOST = KINDS.index("lost")

    def __init__(self) -> None:
        self.total = 0

    def add(self, batch: TableBatch, name: Path) -> None:
        count = batch.table.column("count")
        if count.null_count == len(count):
            return
        kind = batch.table.column("kind")
        is_lost = pc.fill_null(pc.equal(pc.cast(kind, pa.string()), "lost"), False)
        counts = pc.filter(count, is_lost).fill_null(0).to_numpy()
        if not len(counts):
            return
        # Exact: counts are non-negative int64 (checked); a float bound first.
        if float(counts.sum(dtype=np.float64)) + self.total < 2**62:
            self.total += int(counts.sum())
            return
        where = np.flatnonzero(is_lost.to_numpy(zero_copy_only=False))
        for i, c in zip(where, counts):
            self.total += int(c)
            if self.total > INT64_MAX:
                raise TraceError(name, "the lost rows' counts add up past 2**63-1 events: "
                                       "the trace is corrupt", batch.where(int(i)))


def _checked(batch: TableBatch, schema: pa.Schema, name: Path, where: str) -> TableBatch:
    try:
        batch.table = conform(batch.table, schema)
    except ValueError as e:
        raise TraceError(name, str(e), where) from None
    bad = first_bad_row(batch.table)
    if bad is not None:
        raise TraceError(name, bad[1], batch.where(bad[0]))
    return batch


def _rows_text(lo: int, n: int) -> str:
    return f"rows {lo}-{lo + n - 1}" if n > 1 else f"row {lo}"


def iter_tables(path: Path, columns: Sequence[str] | None = None,
                batch_rows: int = BATCH_ROWS) -> Iterator[TableBatch]:
    """The trace's events in file order, as checked TableBatches of about
    `batch_rows` rows (Parquet row groups are gathered to that size: reading
    costs the same whatever the row groups are). Raises TraceError naming the
    file or part and the line (JSON Lines) or rows (Parquet)."""
    src = open_input(path)
    schema = _subschema(columns)
    lost = _LostTotal()
    if src.fmt == "jsonl":
        base = 0
        for table, lines in jsonl.iter_tables(src.data, batch_rows, src.name):
            batch = _checked(TableBatch(table, base, src.name, lines), schema, src.name,
                             f"line {lines[0]}")
            lost.add(batch, src.name)
            base += table.num_rows
            yield batch
        return
    base = 0
    for part in _parts(src):
        pf = part.pf
        present = [n for n in schema.names if n in pf.schema_arrow.names]
        for groups, nrows in parquet.row_groups(pf, batch_rows):
            try:
                table = parquet.read_row_groups(pf, groups, present)
            except (pa.ArrowException, OSError, ValueError) as e:
                err = TraceError(part.name, f"corrupt Parquet data ({parquet.short(e)})",
                                 _rows_text(base, nrows))
                if part.last:
                    _damaged_last_part(src.name, part.name, err)
                    return
                raise err from None
            for off in range(0, table.num_rows, batch_rows):
                piece = table.slice(off, batch_rows)
                batch = _checked(TableBatch(piece, base, part.name), schema, part.name,
                                 _rows_text(base, piece.num_rows))
                lost.add(batch, part.name)
                base += piece.num_rows
                yield batch


def iter_time_order(path: Path, columns: Sequence[str] | None = None,
                    batch_rows: int = BATCH_ROWS) -> Iterator[TableBatch]:
    """The trace's events in time order, streamed, as TableBatches whose `rows`
    are the events' trace-wide row numbers (file order, as `iter_tables` counts
    them and as `analyze` cites them).

    Contract:
    - order: by ts_ns, ties in file order (a stable sort of the whole trace);
      every event is yielded exactly once; batches are never empty.
    - cost: two passes; the first reads only the checked columns and keeps one
      number per batch (the smallest ts_ns from that batch on). The second holds
      back only the events that a later batch could still precede: memory is
      one batch plus the trace's disorder (a recorder's per-CPU buffers interleave
      by a fraction of a second), time linear in the trace for such disorder.
    - errors and warnings: those of `iter_tables` (same text), raised on the
      first pass, before any event is yielded.
    """
    mins: list[int] = []
    for b in iter_tables(path, ("ts_ns",), batch_rows):
        mins.append(int(pc.min(b.table.column("ts_ns")).as_py()))
    # suffix[k]: the smallest ts_ns in batches k.. (a sentinel past the last).
    suffix = np.minimum.accumulate(np.array(mins[::-1] or [0], dtype=np.int64))[::-1]
    pending: list[tuple[pa.Table, np.ndarray, Path]] = []
    for k, batch in enumerate(iter_tables(path, columns, batch_rows)):
        pending.append((batch.table, batch.row_numbers(), batch.source))
        last = k + 1 >= len(mins)
        bound = None if last else int(suffix[k + 1])
        yield from _release(pending, bound)


def _release(pending: list[tuple[pa.Table, np.ndarray, Path]],
             bound: int | None) -> Iterator[TableBatch]:
    """Yield, sorted, the pending events with ts_ns <= bound (all with None);
    keep the rest in `pending` (in file order)."""
    if not pending:
        return
    table = pa.concat_tables([t for t, _, _ in pending]) if len(pending) > 1 else pending[0][0]
    rows = np.concatenate([r for _, r, _ in pending]) if len(pending) > 1 else pending[0][1]
    source = pending[-1][2]
    ts = table.column("ts_ns").to_numpy()
    due = np.ones(len(ts), dtype=bool) if bound is None else ts <= bound
    pending.clear()
    if not due.all():
        keep = np.flatnonzero(~due)
        pending.append((table.take(keep), rows[keep], source))
    idx = np.flatnonzero(due)
    if not len(idx):
        return
    order = idx[np.argsort(ts[idx], kind="stable")]
    yield TableBatch(table.take(order), int(rows[order[0]]), source, rows=rows[order])


# ---------------------------------------------------------------------------
# Whole traces and DataFrames (report, watch, history of one page)


@dataclasses.dataclass
class Trace:
    path: Path
    header: TraceHeader
    events: pd.DataFrame  # columns of schema.COLUMNS, in file order


def iter_batches(path: Path, batch_rows: int = BATCH_ROWS) -> Iterator[pd.DataFrame]:
    """The trace's events in chunks, checked, in file order (all columns)."""
    for batch in iter_tables(path, None, batch_rows):
        yield table_to_frame(batch.table)


def read_trace(path: Path) -> Trace:
    """The whole trace in memory: header and all events."""
    path = Path(path)
    header = read_header(path)
    tables = [b.table for b in iter_tables(path)]
    table = pa.concat_tables(tables) if tables else ARROW_SCHEMA.empty_table()
    return Trace(path, header, table_to_frame(table.replace_schema_metadata(None)))
