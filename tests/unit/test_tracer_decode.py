"""The batch decoder (numpy over raw bytes) against a per-event decoder (ctypes,
one struct at a time) on the same bytes, and the ring buffer span reader
(tracer/ringbuf_reader.drain) on ring images built here. No root, no BPF."""

from __future__ import annotations

import ctypes
import random
import struct

import numpy as np
import pytest

from pageref.tracer.decode import EVENT_SIZE, KIND_LOST, DecodeContext, decode
from pageref.tracer.event import KIND_NAMES, PagerefEvent
from pageref.tracer.plan import BY_ID
from pageref.tracer.ringbuf_reader import BUSY, DISCARD, drain, record_stride

CTX = DecodeContext(pgmap_names={4: "fsdax", 1: "private"}, foll_longterm=1 << 16)
COMMS = [b"fio", b"dax_pvm", b"kworker/u4:1", b"a" * 16, b"x\xffy", b""]


def random_events(n: int, seed: int = 7) -> bytes:
    rnd = random.Random(seed)
    probes = sorted(BY_ID)
    out = bytearray()
    for _ in range(n):
        e = PagerefEvent()
        e.ts_ns = rnd.randrange(1, 2**62)
        e.kind = rnd.choice(sorted(KIND_NAMES))
        e.page = 0 if rnd.random() < 0.1 else rnd.randrange(1, 2**63)
        e.pfn = rnd.randrange(0, 2**40)
        e.mapping = rnd.choice([0, rnd.randrange(1, 2**64)])
        e.index = rnd.randrange(0, 2**40)
        e.flags = rnd.choice([0, 1 << 16, 0x41, rnd.randrange(0, 2**40)])
        e.ret = rnd.randrange(-2**40, 2**40)
        e.pid, e.tid = rnd.randrange(1, 2**22), rnd.randrange(1, 2**22)
        e.refcount = rnd.randrange(-5, 5000)
        e.refs = rnd.randrange(-3, 2000)
        e.pincount = rnd.choice([-1, rnd.randrange(0, 600)])
        e.stack_id = -1
        e.cpu = rnd.randrange(0, 64)
        e.probe = rnd.choice(probes)
        e.order = rnd.choice([0, 9])
        e.zone_device = rnd.choice([0, 1])
        e.pgmap_type = rnd.choice([4, 1, 0xFF, 7])
        # a short name over an older, longer one: the 6.1 unpadded comm
        comm = rnd.choice(COMMS)
        e.comm = (comm + b"\0" + b"stale-tail")[:16] if len(comm) < 15 else comm[:16]
        out += bytes(e)
    return bytes(out)


def per_event(raw: bytes) -> list[dict]:
    """The reference: one ctypes struct at a time, the trace format's rules."""
    rows = []
    for off in range(0, len(raw) - EVENT_SIZE + 1, EVENT_SIZE):
        e = PagerefEvent.from_buffer_copy(raw, off)
        kind = KIND_NAMES[e.kind]
        grab = kind in ("get", "pin", "grab_failed")
        no_page = e.page == 0
        # a page_ref tracepoint's change: after it in `ret`; page_ref_set's unknown
        ref = kind == "ref"
        unknown = ref and BY_ID.get(e.probe) is not None and BY_ID[e.probe].symbol == "page_ref_set"
        rows.append({
            "ts_ns": e.ts_ns, "kind": kind,
            "pfn": None if no_page else e.pfn,
            "refcount": None if no_page or unknown else e.refcount,
            "refs": None if kind == "busy" or unknown else e.refs,
            "pid": e.pid, "tid": e.tid, "cpu": e.cpu,
            "comm": ctypes.string_at(ctypes.addressof(e) + PagerefEvent.comm.offset, 16)
            .split(b"\0", 1)[0].decode("utf-8", "replace"),
            "flags": None if (not grab and e.flags == 0) else e.flags,
            "longterm": bool(e.flags & CTX.foll_longterm) if grab else None,
            "zone_device": None if no_page else bool(e.zone_device),
            "pgmap_type": CTX.pgmap_names.get(e.pgmap_type),
            "mapping": e.mapping or None,
            "index": None if no_page else e.index,
            "order": None if no_page else e.order,
            "pincount": e.pincount if e.pincount >= 0 else None,
            "probe": BY_ID[e.probe].symbol if e.probe in BY_ID else None,
            "ret": e.ret if grab or kind == "busy" else None,
            "count": e.ret if e.kind == KIND_LOST else None,
            "refcount_after": ctypes.c_int32(e.ret).value if ref else None,
        })
    return rows


@pytest.mark.parametrize("n", [0, 1, 3, 500])
def test_batch_decoder_matches_per_event_decoder(n: int) -> None:
    raw = random_events(n)
    got = decode(raw, CTX).to_pylist()
    want = per_event(raw)
    assert len(got) == len(want) == n
    for g, w in zip(got, want):
        assert {k: g[k] for k in w} == w


def test_lost_event_carries_pfn_refs_and_count() -> None:
    e = PagerefEvent(ts_ns=5, kind=KIND_LOST, page=0xFFFFEA0004000000, pfn=0x140000,
                     refs=300, ret=300, probe=13, pgmap_type=4, zone_device=1)
    row = decode(bytes(e), CTX).to_pylist()[0]
    assert (row["kind"], row["pfn"], row["refs"], row["count"], row["ret"]) == \
        ("lost", 0x140000, 300, 300, None)


def test_page_ref_rows_carry_the_change_and_the_count_after_it() -> None:
    page = 0xFFFFEA0004000000
    mod = PagerefEvent(ts_ns=5, kind=8, page=page, pfn=0x140000, refs=-1, refcount=3, ret=2,
                       probe=31, pgmap_type=4, zone_device=1)
    put = decode(bytes(mod), CTX).to_pylist()[0]
    assert (put["kind"], put["probe"], put["refs"], put["refcount"], put["refcount_after"],
            put["ret"]) == ("ref", "page_ref_mod_and_test", -1, 3, 2, None)
    st = PagerefEvent(ts_ns=6, kind=8, page=page, pfn=0x140000, refs=0, refcount=1, ret=1,
                      probe=29, pgmap_type=1, zone_device=1)
    s = decode(bytes(st), CTX).to_pylist()[0]
    assert (s["probe"], s["refs"], s["refcount"], s["refcount_after"]) == \
        ("page_ref_set", None, None, 1)


def test_trailing_partial_event_is_dropped_not_misread() -> None:
    raw = random_events(2)
    assert decode(raw + raw[:40], CTX).num_rows == 2


# -- the ring buffer image ----------------------------------------------------

SIZE = 4096


def ring(records: list[tuple[int, bytes]], start: int = 0) -> tuple[np.ndarray, int, int]:
    """A double-mapped data area holding `records` ((header len word, sample))
    from position `start`; returns (data, cons, prod)."""
    data = bytearray(SIZE)
    pos = start
    for word, sample in records:
        size = word & ~(BUSY | DISCARD)
        rec = struct.pack("<II", word, 0) + sample.ljust(record_stride(size) - 8, b"\0")
        for i, b in enumerate(rec):
            data[(pos + i) % SIZE] = b
        pos += len(rec)
    return np.frombuffer(bytes(data) * 2, dtype=np.uint8), start, pos


def test_drain_takes_every_record_in_order_across_the_wrap() -> None:
    samples = [bytes([i]) * EVENT_SIZE for i in range(30)]     # 30 * 120 > SIZE - start
    data, cons, prod = ring([(EVENT_SIZE, s) for s in samples], start=SIZE - 5 * 120)
    raw, new, skipped = drain(data, cons, prod, SIZE - 1, EVENT_SIZE)
    assert raw == b"".join(samples) and new == prod and skipped == 0


def test_drain_stops_at_a_busy_record_and_resumes_after_commit() -> None:
    a, b, c = (bytes([x]) * EVENT_SIZE for x in (1, 2, 3))
    data, cons, prod = ring([(EVENT_SIZE, a), (EVENT_SIZE | BUSY, b), (EVENT_SIZE, c)])
    raw, new, _ = drain(data, cons, prod, SIZE - 1, EVENT_SIZE)
    assert raw == a and new == record_stride(EVENT_SIZE)
    data, _, _ = ring([(EVENT_SIZE, a), (EVENT_SIZE, b), (EVENT_SIZE, c)])
    raw, new, _ = drain(data, new, prod, SIZE - 1, EVENT_SIZE)
    assert raw == b + c and new == prod


def test_drain_skips_discarded_and_foreign_records_and_counts_them() -> None:
    a, c = bytes([1]) * EVENT_SIZE, bytes([3]) * EVENT_SIZE
    data, cons, prod = ring([(EVENT_SIZE, a), (EVENT_SIZE | DISCARD, bytes(EVENT_SIZE)),
                             (20, bytes(20)), (EVENT_SIZE, c)])
    raw, new, skipped = drain(data, cons, prod, SIZE - 1, EVENT_SIZE)
    assert raw == a + c and new == prod and skipped == 2
    assert decode(raw, CTX).num_rows == 2


def test_coded_columns_have_unique_dictionaries_and_become_a_frame():
    """Unknown kind codes all decode to `lost`: one dictionary entry, not one per
    code, so the batch converts to pandas (the live view's feed) on any kernel.
    (A recording on 5.10 failed here: "Categorical categories must be unique".)"""
    import numpy as np
    import pyarrow as pa

    from pageref.trace.frame import table_to_frame
    from pageref.tracer.decode import _coded

    col = _coded(np.array([0, 7, 9, 200, 7, 1], np.uint8), ["get", None, "x"] + ["lost"] * 253)
    assert col.dictionary.to_pylist() == ["get", "x", "lost"]
    assert col.to_pylist() == ["get", "lost", "lost", "lost", "lost", None]
    df = table_to_frame(pa.table({"kind": col}))
    assert [None if pd_na(v) else v for v in df["kind"].astype(object)] == col.to_pylist()


def pd_na(v) -> bool:
    import pandas as pd

    return v is None or v is pd.NA or (isinstance(v, float) and v != v)
