"""The analysis's compact view of a trace: only the columns it needs, as numpy
arrays, read straight from Arrow (the batches of the one trace reader,
pageref.trace.io.iter_tables, or an in-memory Trace) without building a full
pandas DataFrame.

Reading only these columns is what keeps `pageref analyze` fast and small on a
10-million-event recording: stacks, probes and the other per-event details are
looked up afterwards for the few rows an anomaly cites.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from pageref.errors import TraceError
from pageref.trace import io as trace_io
from pageref.trace.frame import conform
from pageref.trace.header import TraceHeader
from pageref.trace.schema import ARROW_SCHEMA, KINDS, KINDS_WITHOUT_PFN, PGMAP_TYPES

# Kind codes used throughout the analysis (index into schema.KINDS).
K = {name: code for code, name in enumerate(KINDS)}
PGMAP = {name: code for code, name in enumerate(PGMAP_TYPES)}

NEEDED = ("ts_ns", "kind", "pfn", "refcount", "refs", "pid", "tid", "comm", "order",
          "pgmap_type", "longterm", "mapping", "count", "refcount_after")
_SUBSCHEMA = pa.schema([ARROW_SCHEMA.field(n) for n in NEEDED])
# The per-row arrays of Columns (everything but the header, names and row numbers).
ARRAYS = ("ts", "kind", "pfn", "has_pfn", "refcount", "has_refcount", "refs", "order",
          "pgmap", "longterm", "pid", "tid", "comm", "mapping", "count", "refcount_after",
          "has_refcount_after")
_NEEDS_PFN = np.array([k not in KINDS_WITHOUT_PFN for k in KINDS])


@dataclasses.dataclass
class Columns:
    """One array per field, all of length `n`, in file order.

    Nulls are folded into sentinels: `has_pfn`/`has_refcount`/`has_refcount_after`
    say which values are real; refs null -> 1; order null -> 0; pgmap/comm -1 =
    unknown; pid/tid -1 = unknown; mapping 0 = unknown; count null -> 0.

    `ref` rows (the kernel's page_ref tracepoints, format version 2) differ:
    `refs` is the signed change, and null -> 0 (a `page_ref_set`: no change
    known, so its refcount before is unknown too); a refcount before left out
    where the change and the count after are known is filled in as
    refcount_after - refs (docs/trace-format.md defines it so).
    """

    header: TraceHeader
    path: Path | None
    ts: np.ndarray
    kind: np.ndarray
    pfn: np.ndarray
    has_pfn: np.ndarray
    refcount: np.ndarray
    has_refcount: np.ndarray
    refs: np.ndarray
    order: np.ndarray
    pgmap: np.ndarray
    longterm: np.ndarray
    pid: np.ndarray
    tid: np.ndarray
    comm: np.ndarray
    comm_names: list[str]
    mapping: np.ndarray
    count: np.ndarray
    refcount_after: np.ndarray      # `ref` rows: the refcount after the change
    has_refcount_after: np.ndarray
    # Row position of each event in the source (trace.events index); None means
    # 0..n-1, the file order.
    row: np.ndarray | None = None
    # Distinct pages, once the model has counted them (saves summarize a pass).
    pages: int | None = None

    @property
    def n(self) -> int:
        return len(self.ts)

    def rows(self) -> np.ndarray:
        return np.arange(self.n, dtype=np.int64) if self.row is None else self.row

    def comm_of(self, i: int) -> str | None:
        c = int(self.comm[i])
        return self.comm_names[c] if c >= 0 else None


class _Builder:
    """Accumulates Arrow tables (in the sub-schema) into Columns. With `total`
    known (Parquet metadata), arrays are allocated once and filled in place, so
    peak memory is the columns themselves, not twice that."""

    def __init__(self, path: Path | None, total: int | None = None) -> None:
        self.path = path
        self.total = total
        self.arrays: dict[str, np.ndarray] = {}
        if total is not None:
            self.arrays = {k: np.empty(total, dtype=t) for k, t in _EMPTY_DTYPES.items()}
        self.parts: dict[str, list[np.ndarray]] = {}
        self.comm_index: dict[str, int] = {}
        self.rows_seen = 0

    def _codes(self, col: pa.ChunkedArray, vocab: dict[str, int] | None) -> np.ndarray:
        """Dictionary column -> int codes (-1 null). With vocab None, grow comm_index."""
        out = []
        for chunk in col.chunks:
            if not pa.types.is_dictionary(chunk.type):
                chunk = chunk.dictionary_encode()
            values = chunk.dictionary.to_pylist()
            if vocab is None:
                for v in values:
                    if v is not None and v not in self.comm_index:
                        self.comm_index[v] = len(self.comm_index)
                mapping = [self.comm_index.get(v, -1) if v is not None else -1 for v in values]
            else:
                mapping = [vocab.get(v, -2) if v is not None else -1 for v in values]
            lut = np.array(mapping + [-1], dtype=np.int32)
            ind = chunk.indices
            if ind.null_count:
                ind = ind.fill_null(len(values))
            out.append(lut[ind.to_numpy(zero_copy_only=False)])
        return np.concatenate(out) if len(out) != 1 else out[0]

    def add(self, table: pa.Table) -> None:
        """Add one checked table; raise TraceError naming the first bad row."""
        n = table.num_rows

        def num(name: str, fill, dtype) -> np.ndarray:
            col = table.column(name)
            if not n:
                return np.zeros(0, dtype=dtype)
            if col.null_count:
                col = col.fill_null(fill)
            return col.to_numpy().astype(dtype, copy=False)

        def valid(name: str) -> np.ndarray:
            col = table.column(name)
            if not col.null_count:
                return np.ones(n, dtype=bool)
            return col.is_valid().to_numpy(zero_copy_only=False)

        kind = self._codes(table.column("kind"), K).astype(np.int8) if n else \
            np.zeros(0, np.int8)
        pgmap = self._codes(table.column("pgmap_type"), PGMAP).astype(np.int8) if n else \
            np.zeros(0, np.int8)
        has_ts = valid("ts_ns")
        has_pfn = valid("pfn")
        bad_kind = kind < 0
        needs = _NEEDS_PFN[np.where(bad_kind, 0, kind)]
        checks = [(~has_ts, "ts_ns is null"),
                  (bad_kind, f"kind is not one of {', '.join(KINDS)}"),
                  (needs & ~has_pfn & ~bad_kind, "pfn is null for an event that needs one"),
                  (pgmap == -2, "unknown pgmap_type")]
        firsts = [(int(np.argmax(m)), msg) for m, msg in checks if m.any()]
        if firsts:
            row, msg = min(firsts)
            raise TraceError(self.path, msg, f"row {self.rows_seen + row}")
        fields = {
            "ts": num("ts_ns", 0, np.int64),
            "kind": kind,
            "pfn": num("pfn", 0, np.int64),
            "has_pfn": has_pfn,
            "refcount": num("refcount", 0, np.int32),
            "has_refcount": valid("refcount"),
            "refs": num("refs", 1, np.int32),
            "order": num("order", 0, np.int8),
            "pgmap": pgmap,
            "longterm": num("longterm", False, bool),
            "pid": num("pid", -1, np.int32),
            "tid": num("tid", -1, np.int32),
            "comm": self._codes(table.column("comm"), None) if n else np.zeros(0, np.int32),
            "mapping": num("mapping", 0, np.uint64),
            "count": num("count", 0, np.int64),
            "refcount_after": num("refcount_after", 0, np.int32),
            "has_refcount_after": valid("refcount_after"),
        }
        _ref_rows(fields, valid("refs"))
        lo = self.rows_seen
        for k, v in fields.items():
            if self.total is not None:
                self.arrays[k][lo:lo + n] = v
            else:
                self.parts.setdefault(k, []).append(v)
        self.rows_seen += n

    def finish(self, header: TraceHeader) -> Columns:
        if self.total is not None:
            arrays = {k: v[: self.rows_seen] for k, v in self.arrays.items()}
        else:
            arrays = {}
            for k, dtype in _EMPTY_DTYPES.items():
                chunks = self.parts.pop(k, [])
                arrays[k] = chunks[0] if len(chunks) == 1 else (
                    np.concatenate(chunks) if chunks else np.zeros(0, dtype=dtype))
        names = [""] * len(self.comm_index)
        for name, code in self.comm_index.items():
            names[code] = name
        return Columns(header=header, path=self.path, comm_names=names,
                       **arrays)  # type: ignore[arg-type]  # the arrays by field name


_EMPTY_DTYPES = {"ts": np.int64, "kind": np.int8, "pfn": np.int64, "has_pfn": bool,
                 "refcount": np.int32, "has_refcount": bool, "refs": np.int32,
                 "order": np.int8, "pgmap": np.int8, "longterm": bool, "pid": np.int32,
                 "tid": np.int32, "comm": np.int32, "mapping": np.uint64, "count": np.int64,
                 "refcount_after": np.int32, "has_refcount_after": bool}


def _ref_rows(fields: dict[str, np.ndarray], has_refs: np.ndarray) -> None:
    """`ref` rows' own reading of refs and refcount (see Columns), in place."""
    ref = fields["kind"] == K["ref"]
    if not ref.any():
        return
    for name in ("refs", "has_refcount", "refcount"):   # Arrow's may be read-only views
        fields[name] = fields[name].copy()
    unset = ref & ~has_refs
    fields["refs"][unset] = 0
    fields["has_refcount"][unset] = False
    fill = ref & has_refs & ~fields["has_refcount"] & fields["has_refcount_after"]
    if fill.any():
        fields["refcount"][fill] = fields["refcount_after"][fill] - fields["refs"][fill]
        fields["has_refcount"][fill] = True


def _project(table: pa.Table, path: Path | None, where: str | None = None) -> pa.Table:
    """The needed columns, cast to the schema; TraceError naming a bad column."""
    try:
        return conform(table, _SUBSCHEMA)
    except ValueError as e:
        raise TraceError(path, str(e), where) from None


def load_columns(path: Path, progress=None) -> Columns:
    """Read the columns the analysis needs from a trace file or parts directory,
    through the one trace reader (pageref.trace.io.iter_tables)."""
    path = Path(path)
    header = trace_io.read_header(path)
    b = _Builder(path, total=trace_io.row_count(path))
    for batch in trace_io.iter_tables(path, NEEDED):
        b.path = batch.source
        b.rows_seen = batch.first_row  # rows are named by their position in the trace
        b.add(_project(batch.table, batch.source))
        if progress:
            progress(b.rows_seen)
    b.path = path
    return b.finish(header)


def from_table(table: pa.Table, header: TraceHeader, path: Path | None,
               first_row: int) -> Columns:
    """Columns of one checked Arrow batch of a trace (trace.io.iter_tables),
    rows numbered from `first_row`: straight from Arrow, no DataFrame between."""
    b = _Builder(path)
    b.rows_seen = first_row         # errors name rows by their place in the trace
    b.add(_project(table.select([n for n in NEEDED if n in table.column_names]), path))
    cols = b.finish(header)
    cols.row = np.arange(first_row, first_row + cols.n, dtype=np.int64)
    return cols


def from_frame(events: pd.DataFrame, header: TraceHeader, path: Path | None = None) -> Columns:
    """Columns of an in-memory events DataFrame (e.g. Trace.events)."""
    present = [c for c in NEEDED if c in events.columns]
    table = pa.Table.from_pandas(events[present], preserve_index=False)
    b = _Builder(path)
    b.add(_project(table, path))
    cols = b.finish(header)
    index = events.index
    if not (isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1):
        cols.row = np.asarray(index, dtype=np.int64)
    return cols
