#!/usr/bin/env python3
"""How many events per second the recorder's consumer takes, without BPF (any
machine, no root): the two ring buffer readers over the same records.

- batch: tracer/ringbuf_reader.drain over a ring image (spans of records,
  headers checked and samples copied by numpy), then decode, conform and a
  Parquet part per batch: what `record` does by default.
- callback: one ctypes callback per event (ctypes.CFUNCTYPE, as BCC's
  ring_buffer_poll calls the recorder for each record, here called from
  Python, so slightly dearer than from C), copying the event, then the same
  decode and write: the reader before.

    python bench/bench_consumer.py [--events 400000] [-o consumer.json]

The lab figure (events the recorder keeps at zero loss) is
bench/bench_throughput.py; under QEMU TCG a guest's producer is slower than
either reader, so this isolates the consumer.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import struct
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

RING = 16 << 20      # the default ring buffer of a 2-CPU machine (tracer/buffer_size.py)


def events(n: int) -> bytes:
    from pageref.tracer.decode import EVENT_DTYPE

    ev = np.zeros(n, EVENT_DTYPE)
    ev["ts_ns"] = np.arange(n) * 1000
    slot = np.arange(n, dtype=np.uint64) % 4096
    ev["page"] = np.uint64(0xFFFFEA0004000000) + np.uint64(64) * slot
    ev["pfn"] = 0x100000 + np.arange(n) % 4096
    ev["kind"] = np.arange(n) % 4
    ev["probe"] = 9
    ev["refs"] = 1
    ev["refcount"] = 1025
    ev["pincount"] = -1
    ev["stack_id"] = -1
    ev["pgmap_type"] = 4
    ev["zone_device"] = 1
    ev["pid"] = ev["tid"] = 4242
    ev["comm"] = b"dax_pvm"
    return ev.tobytes()


def ring_image(raw: bytes, size: int) -> tuple[np.ndarray, int]:
    """Records of `raw` events laid out as committed ring records (data twice)."""
    from pageref.tracer.decode import EVENT_SIZE

    hdr = struct.pack("<II", EVENT_SIZE, 0)
    recs = b"".join(hdr + raw[i:i + EVENT_SIZE] for i in range(0, len(raw), EVENT_SIZE))
    assert len(recs) <= size
    data = recs.ljust(size, b"\0")
    return np.frombuffer(data + data, dtype=np.uint8), len(recs)


def write_batches(chunks: list[bytes], out: Path) -> int:
    from pageref.trace.frame import conform
    from pageref.trace.header import TraceHeader
    from pageref.trace.parquet import PartWriter
    from pageref.tracer.decode import DecodeContext, decode

    ctx = DecodeContext(pgmap_names={4: "fsdax"})
    header = TraceHeader(kernel="bench", pin_bias=1024, page_size=4096,
                         idle_refcount={"fsdax": 1}, probe_plan=[], start_ns=0)
    w = PartWriter(out, header)
    for raw in chunks:
        w.write(conform(decode(raw, ctx)))
    w.close()
    return w.events


def run_batch(raw: bytes, work: Path) -> tuple[float, float]:
    from pageref.tracer.decode import EVENT_SIZE
    from pageref.tracer.ringbuf_reader import drain

    per_ring = RING // (EVENT_SIZE + 8) * EVENT_SIZE
    # what the kernel wrote: one full ring after another (built before timing)
    rings = [ring_image(raw[off:off + per_ring], RING) for off in range(0, len(raw), per_ring)]
    t0 = time.perf_counter()
    chunks = []
    for data, prod in rings:
        got, cons, skipped = drain(data, 0, prod, RING - 1, EVENT_SIZE)
        assert cons == prod and not skipped
        chunks.append(got)
    t_read = time.perf_counter()
    n = write_batches(chunks, work / "batch")
    assert n * EVENT_SIZE == len(raw) and b"".join(chunks) == raw
    return time.perf_counter() - t0, t_read - t0


def run_callback(raw: bytes, work: Path) -> tuple[float, float]:
    from pageref.tracer.decode import EVENT_SIZE

    buf = ctypes.create_string_buffer(raw, len(raw))
    base = ctypes.addressof(buf)
    got: list[bytes] = []

    def on_event(_ctx, data, size):     # tracer/recorder.Recorder._on_event
        if size >= EVENT_SIZE:
            got.append(ctypes.string_at(data, EVENT_SIZE))
        return 0

    cb = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int)(on_event)
    t0 = time.perf_counter()
    chunks = []
    per_flush = 65536
    for off in range(0, len(raw), EVENT_SIZE):
        cb(None, base + off, EVENT_SIZE)
        if len(got) == per_flush:
            chunks.append(b"".join(got))
            got = []
    if got:
        chunks.append(b"".join(got))
    t_read = time.perf_counter()
    write_batches(chunks, work / "callback")
    return time.perf_counter() - t0, t_read - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=400_000)
    ap.add_argument("-o", "--out", type=Path, default=Path("consumer.json"))
    a = ap.parse_args()
    raw = events(a.events)
    res = {"events": a.events, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="pageref-consumer-") as d:
        write_batches([raw[:112 * 10]], Path(d) / "warm")    # imports, outside the timing
        for name, fn in (("callback", run_callback), ("batch", run_batch)):
            total, read = fn(raw, Path(d))
            res[name] = {"seconds": round(total, 3), "read_seconds": round(read, 3),
                         "events_per_s": round(a.events / total),
                         "read_events_per_s": round(a.events / read)}
            print(f"bench: {name}: {a.events / total:,.0f} events/s end to end "
                  f"(reading alone {a.events / read:,.0f}/s)", file=sys.stderr)
    res["speedup"] = round(res["batch"]["events_per_s"] / res["callback"]["events_per_s"], 1)
    a.out.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
