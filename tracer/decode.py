"""Raw `struct pageref_event` bytes -> an Arrow table in the trace schema.

Vectorised with numpy (the callback only appends bytes), so decoding keeps up
with the kernel at hundreds of thousands of events per second.
"""

from __future__ import annotations

import ctypes
import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa

from pageref.trace.schema import ARROW_SCHEMA
from pageref.tracer.event import KIND_NAMES, PagerefEvent, header_defines
from pageref.tracer.plan import BY_ID


def _dtype() -> np.dtype:
    """The numpy twin of PagerefEvent (the ctypes mirror of the one C declaration),
    field for field at the same offsets; comm as one 16-byte string."""
    names: list[str] = []
    formats: list[np.dtype] = []
    offsets: list[int] = []
    for field in PagerefEvent._fields_:
        name, ctype = field[0], field[1]
        descr = getattr(PagerefEvent, name)
        names.append(name)
        formats.append(np.dtype(f"S{descr.size}") if name == "comm" else np.dtype(ctype))
        offsets.append(descr.offset)
    return np.dtype({"names": names, "formats": formats, "offsets": offsets,
                     "itemsize": ctypes.sizeof(PagerefEvent)})


EVENT_DTYPE = _dtype()
EVENT_SIZE = EVENT_DTYPE.itemsize
_KIND_NAMES = [KIND_NAMES.get(i, "lost") for i in range(256)]


def _coded(codes: np.ndarray, names: Sequence[str | None]) -> pa.DictionaryArray:
    """A dictionary column straight from the event's small integer codes (no
    Python string per event): names[code], null where the name is None. Codes
    that share a name share one dictionary entry (a dictionary with repeated
    values cannot become a pandas categorical: the live view failed on it)."""
    uniq: dict[str, int] = {}
    remap = np.full(len(names), -1, np.int32)
    for i, n in enumerate(names):
        if n is not None:
            remap[i] = uniq.setdefault(n, len(uniq))
    idx = remap[codes]
    return pa.DictionaryArray.from_arrays(pa.array(idx, mask=idx < 0),
                                          pa.array(list(uniq), pa.string()))


KIND_LOST = header_defines()["KIND_LOST"]     # a walk the BPF program had to stop
KIND_REF = header_defines()["KIND_REF"]
PROBE_PAGE_REF_SET = header_defines()["PROBE_PAGE_REF_SET"]


def _comm_column(comm: np.ndarray) -> pa.Array:
    """Task names, decoded once per distinct name (a batch has few), not per event.
    Up to the first NUL: on 6.1 bpf_get_current_comm() does not pad (strscpy,
    not strscpy_pad), so a reused scratch event keeps an older, longer comm's tail."""
    raw = pa.FixedSizeBinaryArray.from_buffers(pa.binary(comm.dtype.itemsize), len(comm),
                                               [None, pa.py_buffer(comm.tobytes())])
    enc = raw.dictionary_encode()       # hashed in Arrow: a handful of distinct names
    names = pa.array([c.split(b"\0", 1)[0].decode("utf-8", "replace")
                      for c in enc.dictionary.to_pylist()], pa.string())
    return names.take(enc.indices)


@dataclasses.dataclass
class DecodeContext:
    pgmap_names: dict[int, str]                 # enum memory_type value -> name
    foll_longterm: int = 0                      # FOLL_LONGTERM value (0: unknown)
    stack_of: Callable[[int], list[str] | None] | None = None  # stack id -> frames

    def __post_init__(self) -> None:
        self._pgmap = [self.pgmap_names.get(i) for i in range(256)]
        self._probe = [BY_ID[i].symbol if i in BY_ID else None for i in range(65536)]


def decode(raw: bytes, ctx: DecodeContext) -> pa.Table:
    """Decode concatenated events (a multiple of EVENT_SIZE bytes)."""
    if len(raw) % EVENT_SIZE:
        raw = raw[: len(raw) - len(raw) % EVENT_SIZE]
    ev = np.frombuffer(raw, dtype=EVENT_DTYPE)
    n = len(ev)
    page = ev["page"]
    is_grab = np.isin(ev["kind"], (0, 1, 6))
    is_busy = ev["kind"] == 5
    # a stopped walk: `ret` carries how many events (pages) were not walked
    is_lost = ev["kind"] == KIND_LOST
    no_page = page == 0
    # a page_ref tracepoint's change: `ret` carries the refcount after it; a
    # page_ref_set's change (and so the count before it) is unknown
    is_ref = ev["kind"] == KIND_REF
    unknown_change = is_ref & (ev["probe"] == PROBE_PAGE_REF_SET)
    pincount = ev["pincount"]
    cols = {
        "ts_ns": pa.array(ev["ts_ns"].astype(np.int64)),
        "kind": _coded(ev["kind"], _KIND_NAMES),
        "pfn": pa.array(ev["pfn"].astype(np.int64), mask=no_page),
        "refcount": pa.array(ev["refcount"], mask=no_page | unknown_change),
        "refs": pa.array(ev["refs"], mask=is_busy | unknown_change),
        "pid": pa.array(ev["pid"].astype(np.int32)),
        "tid": pa.array(ev["tid"].astype(np.int32)),
        "comm": _comm_column(ev["comm"]) if n else pa.array([], pa.string()),
        "cpu": pa.array(ev["cpu"].astype(np.int32)),
        "flags": pa.array(ev["flags"].astype(np.int64), mask=~is_grab & (ev["flags"] == 0)),
        "longterm": pa.array((ev["flags"] & ctx.foll_longterm) != 0,
                             mask=~is_grab if ctx.foll_longterm else np.ones(n, bool)),
        "zone_device": pa.array(ev["zone_device"] != 0, mask=no_page),
        "pgmap_type": _coded(ev["pgmap_type"], ctx._pgmap),
        "mapping": pa.array(ev["mapping"], mask=ev["mapping"] == 0),
        "index": pa.array(ev["index"].astype(np.int64), mask=no_page),
        "order": pa.array(ev["order"].astype(np.int8), mask=no_page),
        "pincount": pa.array(pincount, mask=pincount < 0),
        "probe": _coded(ev["probe"], ctx._probe),
        "ret": pa.array(ev["ret"], mask=~(is_grab | is_busy)),
        "count": pa.array(ev["ret"], mask=~is_lost),
        "refcount_after": pa.array(ev["ret"].astype(np.int32), mask=~is_ref),
    }
    if ctx.stack_of is not None:
        stacks = [ctx.stack_of(int(s)) if s >= 0 else None for s in ev["stack_id"]]
        cols["stack"] = pa.array(stacks, pa.list_(pa.string()))
    return pa.table(cols)


def lost_table(ts_ns: int, lost: dict[int, int]) -> pa.Table:
    """`lost` rows: one per CPU that lost events since the last part."""
    cpus = sorted(c for c, n in lost.items() if n)
    return pa.table({
        "ts_ns": pa.array([ts_ns] * len(cpus), pa.int64()),
        "kind": pa.array(["lost"] * len(cpus), pa.string()),
        "cpu": pa.array(cpus, pa.int32()),
        "count": pa.array([lost[c] for c in cpus], pa.int64()),
    })


def empty_table() -> pa.Table:
    return ARROW_SCHEMA.empty_table()
