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
        raise ValueError(f"unknown kind {kind!r} (expected one of {', '.join(KINDS)})")
    row: dict[str, Any] = {}
    for name in COLUMN_NAMES:
        if name not in obj or obj[name] is None:
            continue
        v = obj[name]
        if name in INT_COLUMNS:
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f"field {name!r} must be an integer, got {v!r}")
            lo, hi = _RANGES[name]
            if not lo <= v <= hi:
                raise ValueError(f"field {name!r} out of range: {v}")
        elif name in BOOL_COLUMNS:
            if not isinstance(v, bool):
                raise ValueError(f"field {name!r} must be true or false, got {v!r}")
        elif name in STR_COLUMNS:
            if not isinstance(v, str):
                raise ValueError(f"field {name!r} must be a string, got {v!r}")
            _check_text(name, v)
            if name == "pgmap_type" and v not in PGMAP_TYPES:
                raise ValueError(f"unknown pgmap_type {v!r}")
        elif name == "stack":
            if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
                raise ValueError("field 'stack' must be a list of strings")
            for sym in v:
                _check_text(name, sym)
        row[name] = v
    if "pfn" not in row and kind not in KINDS_WITHOUT_PFN:
        raise ValueError(f"missing required field 'pfn' for a {kind!r} event")
    return row


def _parse_line(line: str) -> Any:
    """Decode one line; ValueError with a short reason (never a traceback)."""

    # Reject NaN/Infinity: they are not JSON and not valid in any column.
    def bad_constant(c: str) -> Any:
        raise ValueError(f"invalid JSON constant {c}")

    try:
        return json.loads(line.strip(), parse_constant=bad_constant)
    except json.JSONDecodeError as e:
        raise ValueError(f"not valid JSON ({e.msg} at column {e.colno})") from None
    except RecursionError:
        raise ValueError("not valid JSON (nested too deeply)") from None


def _is_header(obj: Any) -> bool:
    return isinstance(obj, dict) and "format" in obj and "kind" not in obj


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of the non-blank lines; a line that is not UTF-8 is a
    TraceError naming it."""
    try:
        f = open(path, "rb")
    except OSError as e:
        raise TraceError(path, f"cannot open ({e.strerror or e})") from None
    with f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise TraceError(path, f"not UTF-8 text ({e.reason} at byte {e.start + 1})",
                                 f"line {lineno}") from None
            if line.strip():
                yield lineno, line


def read_header(path: Path) -> tuple[TraceHeader, int]:
    """The header and the number of lines it took (0 when the file has none)."""
    for lineno, line in _lines(path):
        try:
            obj = _parse_line(line)
        except ValueError as e:
            raise TraceError(path, str(e), f"line {lineno}") from None
        if not _is_header(obj):
            return TraceHeader(), 0
        if obj["format"] != JSONL_FORMAT:
            raise TraceError(
                path,
                f"unknown format {obj['format']!r} (expected {JSONL_FORMAT!r})",
                f"line {lineno}",
            )
        try:
            return TraceHeader.from_dict(obj), lineno
        except (TypeError, ValueError) as e:
            raise TraceError(path, str(e), f"line {lineno}") from None
    return TraceHeader(), 0


def iter_batches(path: Path, batch_rows: int = 500_000) -> Iterator[pd.DataFrame]:
    """Validated events as DataFrames of at most `batch_rows` rows, in file order."""
    _, header_lines = read_header(path)
    rows: list[dict[str, Any]] = []
    for lineno, line in _lines(path):
        if lineno <= header_lines:
            continue
        try:
            rows.append(_check_event(_parse_line(line)))
        except ValueError as e:
            raise TraceError(path, str(e), f"line {lineno}") from None
        if len(rows) >= batch_rows:
            yield rows_to_frame(rows)
            rows = []
    if rows:
        yield rows_to_frame(rows)


def rows_to_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Validated event dicts -> a DataFrame with the schema's dtypes."""
    from pageref.trace.frame import table_to_frame

    columns = {name: [r.get(name) for r in rows] for name in COLUMN_NAMES}
    table = pa.Table.from_pydict(columns, schema=ARROW_SCHEMA.remove_metadata())
    return table_to_frame(table)


def _jsonable(v: Any) -> Any:
    if v is None or v is pd.NA:
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    if hasattr(v, "tolist"):  # numpy scalar, or numpy array (stack)
        return v.tolist()
    return v


def write_jsonl(path: Path, header: TraceHeader, frames: Iterator[pd.DataFrame]) -> int:
    """Write a header line and the events; returns the number of events written."""
    n = 0
    with open(path, "w", encoding="utf-8") as out:
        out.write(header.to_json(JSONL_FORMAT) + "\n")
        for df in frames:
            cols = [c for c in COLUMN_NAMES if c in df.columns]
            for values in zip(*(df[c].tolist() for c in cols)):
                obj = {c: _jsonable(v) for c, v in zip(cols, values)}
                out.write(json.dumps({k: v for k, v in obj.items() if v is not None}) + "\n")
                n += 1
    return n
