"""JSON Lines interchange format: an optional header line, then one event per line."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from pageref.errors import TraceError
from pageref.trace.header import TraceHeader
from pageref.trace.schema import (
    ARROW_SCHEMA,
    BOOL_COLUMNS,
    COLUMN_NAMES,
    INT_COLUMNS,
    JSONL_FORMAT,
    KINDS,
    KINDS_WITHOUT_PFN,
    PGMAP_TYPES,
    STR_COLUMNS,
    int_range,
)
from pageref.trace.text import shown

_RANGES = {name: int_range(name) for name in INT_COLUMNS}


def _check_text(name: str, v: str) -> None:
    """JSON may escape lone surrogates (\\ud800) that no UTF-8 file can hold."""
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"field {name!r} is not valid Unicode (a lone surrogate escape)"
                         ) from None


def _check_event(obj: Any) -> dict[str, Any]:
    """Validate one decoded event; returns the row (known columns only)."""
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    for req in ("ts_ns", "kind"):
        if req not in obj:
            raise ValueError(f"missing required field {req!r}")
    kind = obj["kind"]
    if kind not in KINDS:
        raise ValueError(f"unknown kind {shown(kind)} (expected one of {', '.join(KINDS)})")
    row: dict[str, Any] = {}
    for name in COLUMN_NAMES:
        if name not in obj or obj[name] is None:
            continue
        v = obj[name]
        if name in INT_COLUMNS:
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f"field {name!r} must be an integer, got {shown(v)}")
            lo, hi = _RANGES[name]
            if not lo <= v <= hi:
                raise ValueError(f"field {name!r} out of range: {shown(v)}")
        elif name in BOOL_COLUMNS:
            if not isinstance(v, bool):
                raise ValueError(f"field {name!r} must be true or false, got {shown(v)}")
        elif name in STR_COLUMNS:
            if not isinstance(v, str):
                raise ValueError(f"field {name!r} must be a string, got {shown(v)}")
            _check_text(name, v)
            if name == "pgmap_type" and v not in PGMAP_TYPES:
                raise ValueError(f"unknown pgmap_type {shown(v)}")
        elif name == "stack":
            if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
                raise ValueError("field 'stack' must be a list of strings")
            for sym in v:
                _check_text(name, sym)
        row[name] = v
    if "pfn" not in row and kind not in KINDS_WITHOUT_PFN:
        raise ValueError(f"missing required field 'pfn' for a {kind!r} event")
    return row


def _bad_constant(c: str) -> Any:
    # NaN/Infinity are not JSON and not valid in any column or header field.
    raise ValueError(f"invalid JSON constant {c}")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Which of two equal keys wins differs between JSON parsers (Python keeps
    # the last, others the first): a trace that says two things is refused.
    d = dict(pairs)
    if len(d) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise ValueError(f"duplicate key {shown(k)} in a JSON object")
            seen.add(k)
    return d


def decode_json(text: str | bytes) -> Any:
    """Decode one JSON value strictly (the one decoder of trace JSON: event lines,
    the JSON Lines header, the Parquet metadata): no NaN/Infinity, no duplicate
    keys, no unbounded nesting. ValueError with a short reason, never a traceback."""
    try:
        return json.loads(text, parse_constant=_bad_constant, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as e:
        raise ValueError(f"not valid JSON ({e.msg} at column {e.colno})") from None
    except RecursionError:
        raise ValueError("not valid JSON (nested too deeply)") from None


def _parse_line(line: str) -> Any:
    """Decode one line; ValueError with a short reason (never a traceback)."""
    return decode_json(line.strip())


def _is_header(obj: Any) -> bool:
    return isinstance(obj, dict) and "format" in obj and "kind" not in obj


def _lines(path: Path, name: Path | None = None) -> Iterator[tuple[int, str]]:
    """(line number, text) of the non-blank lines; a line that is not UTF-8 is a
    TraceError naming it. `name` is what messages call the file."""
    name = name or path
    try:
        f = open(path, "rb")
    except OSError as e:
        raise TraceError(name, f"cannot open ({e.strerror or e})") from None
    with f:
        lineno = 0
        while True:
            try:
                raw = f.readline()
            except OSError as e:  # /proc/self/mem, a device, a vanished mount
                raise TraceError(name, f"cannot read ({e.strerror or e})",
                                 f"line {lineno + 1}") from None
            if not raw:
                return
            lineno += 1
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise TraceError(name, f"not UTF-8 text ({e.reason} at byte {e.start + 1})",
                                 f"line {lineno}") from None
            if line.strip():
                yield lineno, line


def read_header(path: Path, name: Path | None = None) -> tuple[TraceHeader, int]:
    """The header and the number of lines it took (0 when the file has none)."""
    name = name or path
    for lineno, line in _lines(path, name):
        try:
            obj = _parse_line(line)
        except ValueError as e:
            raise TraceError(name, str(e), f"line {lineno}") from None
        if not _is_header(obj):
            return TraceHeader(), 0
        if obj["format"] != JSONL_FORMAT:
            raise TraceError(
                name,
                f"unknown format {shown(obj['format'])} (expected {JSONL_FORMAT!r})",
                f"line {lineno}",
            )
        try:
            return TraceHeader.from_dict(obj), lineno
        except (TypeError, ValueError) as e:
            raise TraceError(name, str(e), f"line {lineno}") from None
    return TraceHeader(), 0


def iter_tables(path: Path, batch_rows: int = 500_000, name: Path | None = None,
                ) -> Iterator[tuple[pa.Table, list[int]]]:
    """Validated events as Arrow tables in the trace schema, at most `batch_rows`
    rows each, in file order, with the line number of each row."""
    name = name or path
    _, header_lines = read_header(path, name)
    rows: list[dict[str, Any]] = []
    linenos: list[int] = []
    for lineno, line in _lines(path, name):
        if lineno <= header_lines:
            continue
        try:
            rows.append(_check_event(_parse_line(line)))
        except ValueError as e:
            raise TraceError(name, str(e), f"line {lineno}") from None
        linenos.append(lineno)
        if len(rows) >= batch_rows:
            yield rows_to_table(rows), linenos
            rows, linenos = [], []
    if rows:
        yield rows_to_table(rows), linenos


def iter_batches(path: Path, batch_rows: int = 500_000) -> Iterator[pd.DataFrame]:
    """Validated events as DataFrames of at most `batch_rows` rows, in file order."""
    from pageref.trace.frame import table_to_frame

    for table, _ in iter_tables(path, batch_rows):
        yield table_to_frame(table)


def rows_to_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Validated event dicts -> an Arrow table in the trace schema."""
    columns = {name: [r.get(name) for r in rows] for name in COLUMN_NAMES}
    return pa.Table.from_pydict(columns, schema=ARROW_SCHEMA.remove_metadata())


def rows_to_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Validated event dicts -> a DataFrame with the schema's dtypes."""
    from pageref.trace.frame import table_to_frame

    return table_to_frame(rows_to_table(rows))


def _jsonable(v: Any) -> Any:
    if v is None or v is pd.NA:
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    if hasattr(v, "tolist"):  # numpy scalar, or numpy array (stack)
        return v.tolist()
    return v


def write_jsonl(path: Path, header: TraceHeader, frames: Iterator[pd.DataFrame]) -> int:
    """Write a header line and the events; returns the number of events written.

    Written beside `path` under a temporary name and renamed only when complete
    (see trace/output.py). Never writes NaN or Infinity, which no JSON reader
    (ours included) takes: a value that would need them is an error."""
    from pageref.trace import output

    n = 0
    with output.replacing(path) as tmp, open(tmp, "w", encoding="utf-8") as out:
        out.write(header.to_json(JSONL_FORMAT) + "\n")
        for df in frames:
            cols = [c for c in COLUMN_NAMES if c in df.columns]
            for values in zip(*(df[c].tolist() for c in cols)):
                obj = {c: _jsonable(v) for c, v in zip(cols, values)}
                out.write(json.dumps({k: v for k, v in obj.items() if v is not None},
                                     allow_nan=False) + "\n")
                n += 1
    return n
