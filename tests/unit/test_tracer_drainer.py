"""The ring buffer's drain thread (tracer/stream.py Drainer): everything read
reaches the recorder's list once, in order, while the main thread is busy."""

from __future__ import annotations

import threading
import time

import pytest

from pageref.tracer.stream import Drainer


class FakeReader:
    """Stands for RingReader: `read` returns the next chunk the "kernel" wrote."""

    def __init__(self, chunks: list[bytes], fail_after: int | None = None) -> None:
        self.chunks = list(chunks)
        self.reads = 0
        self.lock = threading.Lock()
        self.fail_after = fail_after
        self.left_in_buffer = b"tail"

    def read(self, timeout_s: float) -> bytes:
        with self.lock:
            self.reads += 1
            if self.fail_after is not None and self.reads > self.fail_after:
                raise OSError("map gone")
            if self.chunks:
                return self.chunks.pop(0)
        time.sleep(min(timeout_s, 0.01))
        return b""

    def take(self) -> bytes:
        rest, self.left_in_buffer = self.left_in_buffer, b""
        return rest


class Sink:
    def __init__(self) -> None:
        self._raw: list[bytes] = []


def test_drains_while_the_main_thread_is_busy_and_loses_nothing() -> None:
    chunks = [bytes([i]) * 8 for i in range(200)]
    reader = FakeReader(chunks)
    d = Drainer(reader)    # type: ignore[arg-type]
    sink = Sink()
    deadline = time.monotonic() + 10
    while reader.chunks and time.monotonic() < deadline:
        time.sleep(0.05)   # "decoding a part": the thread keeps reading meanwhile
    assert not reader.chunks
    d.poll_into(sink, wait_s=0)
    first = list(sink._raw)
    sink._raw = []         # the recorder starts a new part
    d.stop()
    d.poll_into(sink, wait_s=0)
    assert first + sink._raw == chunks + [b"tail"]


def test_a_reader_failure_reaches_the_main_thread() -> None:
    d = Drainer(FakeReader([b"a"], fail_after=1))    # type: ignore[arg-type]
    time.sleep(0.2)
    with pytest.raises(OSError, match="map gone"):
        d.stop()


def test_a_full_backlog_stops_reading_until_the_recorder_writes() -> None:
    """Past the bound the thread leaves the records in the ring buffer (where
    the kernel counts what it cannot store) instead of growing without end."""
    chunks = [bytes([i]) * 100 for i in range(50)]
    reader = FakeReader(chunks)
    d = Drainer(reader, max_backlog=300)    # type: ignore[arg-type]
    sink = Sink()
    time.sleep(0.3)
    assert len(chunks) - len(reader.chunks) == 3     # 300 bytes read, then it waits
    d.poll_into(sink, wait_s=0)
    time.sleep(0.2)
    assert len(reader.chunks) == 47                  # handed over, but not yet written
    assert d.backlog_waits > 0
    d.written(sum(map(len, sink._raw)))              # the part is on disk
    time.sleep(0.3)
    assert len(reader.chunks) == 44
    d.stop()
    d.poll_into(sink, wait_s=0)
    assert sink._raw == chunks[:6] + [b"tail"]


def test_backlog_limit_follows_the_ring_and_the_memory() -> None:
    from pageref.tracer.buffer_size import MIB, backlog_limit

    assert backlog_limit(16 * MIB, mem_bytes=24 << 30) == 64 * MIB
    assert backlog_limit(16 * MIB, mem_bytes=512 * MIB) == 32 * MIB     # RAM/16
    assert backlog_limit(16 * MIB, mem_bytes=64 * MIB) == 16 * MIB      # never below the ring
