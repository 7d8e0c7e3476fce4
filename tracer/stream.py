"""The recorder's streaming helpers: the ring buffer's drain thread, the live
line, the consumer's CPU clock, closing the perf buffer."""

from __future__ import annotations

import contextlib
import resource
import threading
import time
from typing import Any, Protocol

from pageref.trace.header import TraceHeader
from pageref.tracer.ringbuf_reader import RingReader


def cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


class RawSink(Protocol):
    _raw: list[bytes]


class Drainer:
    """Reads the ring buffer on a thread of its own, so that it is drained while
    the main thread decodes and writes a part: under QEMU a part of 100k events
    takes seconds, during which a buffer read only between parts fills (the
    lab's 5.10 fidelity run lost 14,153 events in CI that way, under load; none
    since). The reads are an epoll wait and numpy copies (ringbuf_reader.py),
    which let the main thread run."""

    def __init__(self, reader: RingReader, max_backlog: int | None = None) -> None:
        self._reader = reader
        self._lock = threading.Lock()
        self._raw: list[bytes] = []
        self._held = 0                  # bytes read and not yet written by the recorder
        # Bounded (buffer_size.backlog_limit): past it the thread stops reading
        # and the kernel's own loss count takes over. backlog_waits says how
        # often that happened.
        self._max = max_backlog
        self.backlog_waits = 0
        self._stopping = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="pageref-drain", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                if self._max is not None and self._held >= self._max:
                    self.backlog_waits += 1
                    self._stopping.wait(0.05)
                    continue
                raw = self._reader.read(0.1)
                if raw:
                    with self._lock:
                        self._raw.append(raw)
                        self._held += len(raw)
        except BaseException as e:   # re-raised in the main thread by stop()
            self._error = e

    def poll_into(self, sink: RawSink, wait_s: float = 0.1) -> None:
        """Move what was drained to the sink's *current* list (looked up each time:
        the recorder replaces it at every part); wait a little first, as the
        callback readers' polls do, so the main loop does not spin."""
        time.sleep(wait_s)
        with self._lock:
            raw, self._raw = self._raw, []
        sink._raw.extend(raw)

    def written(self, nbytes: int) -> None:
        """The recorder decoded and wrote `nbytes` it was handed: they no longer
        count against the backlog (what waits in the recorder's own list until
        its next part counts, so the bound holds whatever the part interval)."""
        with self._lock:
            self._held = max(0, self._held - nbytes)

    def stop(self) -> None:
        """Stop the thread, then take what the buffer still holds."""
        self._stopping.set()
        self._thread.join()
        if self._error is not None:
            raise self._error
        rest = self._reader.take()
        if rest:
            with self._lock:
                self._raw.append(rest)


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
