"""The event schema shared by the tracer, the readers and the analysis.

One row per event. The native trace stores these columns with these Arrow types;
the JSON Lines interchange format uses the same names. docs/trace-format.md is
the user-facing description of the same facts: change both together.
"""

from __future__ import annotations

import pyarrow as pa

# Version 2 added the `ref` kind and the `refcount_after` column (the kernel's
# page_ref tracepoints, where it has them). A version-1 trace is read as it
# always was: it has neither.
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
PARQUET_FORMAT = "pageref-trace"
JSONL_FORMAT = "pageref-events"
METADATA_KEY = b"pageref"

# Event kinds. `grab_failed` is a grab the kernel refused (try_grab_* returned
# failure): it took no reference, but it is evidence (e.g. a long-term pin on
# fsdax refused, or GUP racing a freed page).
# `ref` (version 2) is one change of a page's refcount as the kernel's own
# page_ref:* tracepoint reported it (CONFIG_DEBUG_PAGE_REF): not a reference
# of its own but the record of one, inline puts included. It is appended so
# that the other kinds keep their codes.
KINDS = ("get", "pin", "put", "unpin", "free", "busy", "lost", "grab_failed", "ref")
REF_KIND = "ref"
KINDS_WITHOUT_PFN = ("busy", "lost")

# enum memory_type names, as pageref spells them (include/linux/memremap.h).
PGMAP_TYPES = ("private", "coherent", "fsdax", "generic", "p2pdma", "devdax")

DEFAULT_PIN_BIAS = 1024  # GUP_PIN_COUNTING_BIAS since 5.7 (fc1d8e7cca2d)
DEFAULT_PAGE_SIZE = 4096

_STR = pa.dictionary(pa.int32(), pa.string())

# (name, arrow type, required). Only ts_ns and kind are required in a trace.
COLUMNS: tuple[tuple[str, pa.DataType, bool], ...] = (
    ("ts_ns", pa.int64(), True),          # CLOCK_MONOTONIC ns (bpf_ktime_get_ns)
    ("kind", _STR, True),                 # one of KINDS
    ("pfn", pa.int64(), False),           # null only for busy (nothing busy) and lost
    ("refcount", pa.int32(), False),      # page _refcount just before the operation
    ("refs", pa.int32(), False),          # references taken/dropped; null means 1
    ("pid", pa.int32(), False),           # tgid
    ("tid", pa.int32(), False),
    ("comm", _STR, False),
    ("cpu", pa.int32(), False),
    ("flags", pa.int64(), False),         # GUP flags, running kernel's numbering
    ("longterm", pa.bool_(), False),      # FOLL_LONGTERM
    ("zone_device", pa.bool_(), False),
    ("pgmap_type", _STR, False),          # one of PGMAP_TYPES or null
    ("mapping", pa.uint64(), False),      # page->mapping (kernel pointer)
    ("index", pa.int64(), False),         # page index in the mapping
    ("order", pa.int8(), False),          # folio order; 0/null for a small page
    ("pincount", pa.int32(), False),      # large folio _pincount before the operation
    ("probe", _STR, False),               # kernel symbol that produced the event
    ("ret", pa.int64(), False),           # grab return value, where recorded
    ("count", pa.int64(), False),         # lost: events lost on `cpu`
    ("stack", pa.list_(pa.string()), False),  # kernel stack, innermost first
    ("refcount_after", pa.int32(), False),  # ref (v2): _refcount after the change
)

COLUMN_NAMES = tuple(name for name, _, _ in COLUMNS)
REQUIRED = tuple(name for name, _, req in COLUMNS if req)
ARROW_SCHEMA = pa.schema([pa.field(name, typ, nullable=not req) for name, typ, req in COLUMNS])

# Python types accepted for each column in JSON Lines.
INT_COLUMNS = frozenset(
    name for name, typ, _ in COLUMNS if pa.types.is_integer(typ)
)
BOOL_COLUMNS = frozenset(name for name, typ, _ in COLUMNS if pa.types.is_boolean(typ))
STR_COLUMNS = frozenset(name for name, typ, _ in COLUMNS if pa.types.is_dictionary(typ))


# Integer columns that are never negative: a CLOCK_MONOTONIC time (a negative
# one would also overflow int64 when subtracted from another) and a lost count.
NON_NEGATIVE = frozenset({"ts_ns", "count"})


def int_range(name: str) -> tuple[int, int]:
    """The inclusive range a value of integer column `name` must fall in."""
    typ = ARROW_SCHEMA.field(name).type
    bits = typ.bit_width
    if pa.types.is_unsigned_integer(typ):
        return 0, (1 << bits) - 1
    if name in NON_NEGATIVE:
        return 0, (1 << (bits - 1)) - 1
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
