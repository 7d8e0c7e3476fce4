"""Arrow tables <-> the pandas DataFrames the analysis works on, and their checks."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pageref.trace.schema import ARROW_SCHEMA, KINDS, KINDS_WITHOUT_PFN, PGMAP_TYPES

_PANDAS_TYPES = {
    pa.int8(): pd.Int8Dtype(),
    pa.int16(): pd.Int16Dtype(),
    pa.int32(): pd.Int32Dtype(),
    pa.int64(): pd.Int64Dtype(),
    pa.uint64(): pd.UInt64Dtype(),
    pa.bool_(): pd.BooleanDtype(),
}


def table_to_frame(table: pa.Table) -> pd.DataFrame:
    """DataFrame with nullable integer/boolean columns and categorical strings.

    `ts_ns` and `kind` are never null. Columns: those of schema.COLUMNS.

    Not `self_destruct=True`: with pandas 3 it can leave the table's buffers
    freed under objects still reachable (apache/arrow#50698, pandas#66509).
    The memory it saved is a copy of one part or row group at a time.
    """
    return table.to_pandas(types_mapper=_PANDAS_TYPES.get)


def cast_column(col: pa.ChunkedArray, typ: pa.DataType) -> pa.ChunkedArray:
    """Cast a column to the schema's type, going through plain strings for the
    string flavours Arrow cannot cast to a dictionary directly (string_view).
    Raises pa.ArrowInvalid / pa.ArrowNotImplementedError."""
    try:
        return col.cast(typ)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        if pa.types.is_dictionary(typ) and not pa.types.is_dictionary(col.type):
            return col.cast(pa.string()).cast(typ)
        if pa.types.is_list(typ) and (pa.types.is_list(col.type)
                                      or pa.types.is_large_list(col.type)):
            return col.cast(pa.list_(pa.string())).cast(typ)
        raise


def conform(table: pa.Table, schema: pa.Schema = ARROW_SCHEMA) -> pa.Table:
    """Cast a table read from anywhere to `schema` (the trace schema, or a subset
    of it): add missing optional columns as nulls, drop unknown ones. Raises
    ValueError naming the column."""
    names = set(table.column_names)
    for req in ("ts_ns", "kind"):
        if req not in names:
            raise ValueError(f"missing required column {req!r}")
    arrays = []
    for field in schema:
        if field.name not in names:
            arrays.append(pa.nulls(table.num_rows, field.type))
            continue
        col = table.column(field.name)
        if col.type != field.type:
            try:
                col = cast_column(col, field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise ValueError(
                    f"column {field.name!r} has type {col.type}, expected {field.type} ({detail})"
                ) from None
        arrays.append(col)
    return pa.Table.from_arrays(arrays, schema=schema.remove_metadata())


def _per_row(col: pa.ChunkedArray, pred) -> pa.ChunkedArray:
    """pred(values) -> boolean array, evaluated once per dictionary value and
    spread to the rows (no string per row); null rows give null."""
    out = []
    for chunk in col.chunks:
        if pa.types.is_dictionary(chunk.type):
            out.append(pc.take(pred(chunk.dictionary), chunk.indices))
        else:
            out.append(pred(chunk))
    return pa.chunked_array(out, type=pa.bool_())


def first_bad_row(table: pa.Table) -> tuple[int, str] | None:
    """(row, reason) of the first row that breaks the schema's rules, or None.

    Checks the rule columns the table has (a reader of a subset of columns
    always includes ts_ns, kind, pfn, pgmap_type and count)."""
    kinds, no_pfn, pgmaps = pa.array(KINDS), pa.array(KINDS_WITHOUT_PFN), pa.array(PGMAP_TYPES)
    names = set(table.column_names)
    checks = []
    ts = table.column("ts_ns")
    checks.append((pc.is_null(ts), "ts_ns is null"))
    checks.append((pc.less(ts, 0), "ts_ns is negative"))
    kind = table.column("kind")
    known = _per_row(kind, lambda v: pc.is_in(v, value_set=kinds))
    checks.append((pc.invert(pc.fill_null(known, False)),
                   f"kind is not one of {', '.join(KINDS)}"))
    if "pfn" in names:
        pfn_optional = _per_row(kind, lambda v: pc.is_in(v, value_set=no_pfn))
        checks.append((pc.and_(pc.is_null(table.column("pfn")), pc.invert(pc.fill_null(
            pfn_optional, False))), "pfn is null for an event that needs one"))
    if "pgmap_type" in names:
        pgmap = table.column("pgmap_type")
        known_pg = _per_row(pgmap, lambda v: pc.is_in(v, value_set=pgmaps))
        checks.append((pc.and_(pc.is_valid(pgmap), pc.invert(pc.fill_null(known_pg, True))),
                       "unknown pgmap_type"))
    if "count" in names:
        checks.append((pc.fill_null(pc.less(table.column("count"), 0), False),
                       "count is negative"))
    best: tuple[int, str] | None = None
    for mask, reason in checks:
        mask = pc.fill_null(mask, True)
        if pc.any(mask).as_py():
            row = pc.index(mask, True).as_py()
            if best is None or row < best[0]:
                best = (row, reason)
    return best
