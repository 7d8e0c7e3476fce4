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
