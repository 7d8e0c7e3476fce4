"""Read the BPF ring buffer directly through its mmap, without a Python call
per event.

BCC's `ring_buffer_poll` calls a Python callback for every record: at ~15 µs a
call under QEMU TCG that caps the recorder near 65k events/s, and a burst past
that fills the buffer and loses events. The kernel's ring buffer is a mapped
region (kernel/bpf/ringbuf.c, the layout libbpf's ring_buffer__consume reads):

    offset 0          consumer position (u64; the only page user space writes)
    offset PAGE       producer position (u64, read only)
    offset 2*PAGE     the data area, mapped twice in a row so a record that
                      wraps is contiguous

A record is an 8-byte header (u32 length with BUSY (1<<31: reserved, not yet
committed) and DISCARD (1<<30) bits, u32 page offset) and the sample, the whole
rounded up to 8 bytes. Every record pageref writes is one `struct
pageref_event`, so a drained span is an array of equal strides: numpy checks
the headers and copies the samples in one operation each.

x86-64 only orders loads with loads, which is what reading the producer
position, then the headers, then the data needs (the kernel commits a record
by clearing BUSY after writing it).
"""

from __future__ import annotations

import mmap
import select
import time
from typing import Any

import numpy as np

BUSY = 1 << 31
DISCARD = 1 << 30
HDR = 8


def record_stride(sample_size: int) -> int:
    """Bytes one record of `sample_size` takes in the ring (header, 8-aligned)."""
    return (sample_size + HDR + 7) & ~7


def drain(data: np.ndarray, cons: int, prod: int, mask: int,
          sample_size: int) -> tuple[bytes, int, int]:
    """Samples in data[cons..prod) (positions, `data` the double-mapped area).

    Returns (concatenated samples of exactly `sample_size` bytes each, new
    consumer position, records skipped: discarded or of another size). Stops
    at the first record still BUSY. Pure function of the bytes: unit-tested.
    """
    out: list[bytes] = []
    skipped = 0
    stride = record_stride(sample_size)
    while cons < prod:
        start = cons & mask
        avail = min(prod - cons, len(data) - start)    # the kernel keeps prod - cons <= size
        n = avail // stride
        if n:
            span = data[start:start + n * stride]
            lens = span.view(np.uint32).reshape(n, stride // 4)[:, 0]
            good = lens == sample_size
            k = n if good.all() else int(np.argmin(good))
            if k:
                rows = span.reshape(n, stride)[:k, HDR:HDR + sample_size]
                out.append(rows.tobytes())
                cons += k * stride
                continue
        # one record the fast path cannot take: busy, discarded, another size
        ln = int(data[start:start + 4].view(np.uint32)[0])
        if ln & BUSY:
            break
        size = ln & ~(BUSY | DISCARD)
        if not ln & DISCARD and size >= sample_size:
            out.append(data[start + HDR:start + HDR + sample_size].tobytes())
        else:
            skipped += 1
        cons += record_stride(size)
    return b"".join(out), cons, skipped


class RingReader:
    """The `events` ring buffer map of a loaded bcc.BPF program, read in batches."""

    def __init__(self, map_fd: int, size: int, sample_size: int) -> None:
        if size <= 0 or size & (size - 1):
            raise ValueError(f"ring buffer size {size} is not a power of two")
        page = mmap.PAGESIZE
        self.size = size
        self.mask = size - 1
        self.sample_size = sample_size
        self.skipped = 0
        self._cons_map = mmap.mmap(map_fd, page, mmap.MAP_SHARED,
                                   mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        self._data_map = mmap.mmap(map_fd, page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ,
                                   offset=page)
        self._cons = np.frombuffer(self._cons_map, dtype=np.uint64, count=1)
        self._prod = np.frombuffer(self._data_map, dtype=np.uint64, count=1)
        self._data = np.frombuffer(self._data_map, dtype=np.uint8, offset=page)
        self._epoll: select.epoll | None = select.epoll()
        try:
            self._epoll.register(map_fd, select.EPOLLIN)
        except OSError:     # not pollable (a file standing in for the map, in tests)
            self._epoll.close()
            self._epoll = None

    def read(self, timeout_s: float) -> bytes:
        """Wait up to `timeout_s` for data, then take all that is committed."""
        cons = int(self._cons[0])
        if int(self._prod[0]) == cons:
            if self._epoll is not None:
                self._epoll.poll(timeout_s)
            else:
                time.sleep(timeout_s)
        return self.take()

    def take(self) -> bytes:
        cons = int(self._cons[0])
        prod = int(self._prod[0])
        if prod == cons:
            return b""
        raw, new, skipped = drain(self._data, cons, prod, self.mask, self.sample_size)
        self.skipped += skipped
        self._cons[0] = new     # an aligned 8-byte store: the release libbpf does
        return raw

    def close(self) -> None:
        if self._epoll is not None:
            self._epoll.close()
        # numpy views pin the buffers; drop them before closing the maps
        del self._cons, self._prod, self._data
        self._cons_map.close()
        self._data_map.close()


def open_reader(table: Any, sample_size: int) -> RingReader:
    """A RingReader over BCC's RingBuf table `table` (its map fd and size)."""
    return RingReader(int(table.map_fd), int(table.max_entries), sample_size)
