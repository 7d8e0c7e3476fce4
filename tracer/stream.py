"""The recorder's streaming helpers: the readers' poll functions, the live line,
the consumer's CPU clock, closing the perf buffer."""

from __future__ import annotations

import contextlib
import resource
from typing import Any, Protocol

from pageref.trace.header import TraceHeader
from pageref.tracer.ringbuf_reader import RingReader


def cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


class RawSink(Protocol):
    _raw: list[bytes]


def read_into(reader: RingReader, sink: RawSink) -> None:
    """Append what the reader has to the sink's *current* list (looked up each
    time: the recorder replaces it with a new one at every part)."""
    raw = reader.read(0.1)
    if raw:
        sink._raw.append(raw)


def close_perf_buffer(events: Any) -> None:
    """Close the perf buffer's per-CPU readers while the map is still open: left
    to the garbage collector after BPF.cleanup(), BCC's PerfEventArray.__del__
    deletes entries of a closed map and prints a KeyError traceback at exit."""
    from bcc.utils import get_online_cpus

    for cpu in get_online_cpus():
        with contextlib.suppress(Exception):
            del events[cpu]     # a no-op for a CPU without a reader


def live_view(mode: str, header: TraceHeader) -> Any:
    if mode == "quiet":
        return None  # nothing shown: skip the view's per-event bookkeeping too
    from pageref.report.live import LiveView
    return LiveView(mode, pin_bias=header.pin_bias, idle_refcount=header.idle_refcount)
