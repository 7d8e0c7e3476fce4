"""The default size of the BPF event buffer, from the machine (stated in
`pageref record --help`). A burst the consumer cannot drain in time waits in
the buffer: on a machine with more CPUs, more can arrive at once.

Ring buffer (one, shared): 8 MiB per online CPU, at least 16 MiB, at most
1/64 of RAM and 256 MiB. Perf buffer (one per CPU): 8 MiB each, at most
1/64 of RAM over all CPUs. Both a power of two of pages, at least 64 pages.

The recorder's backlog (records read from the ring buffer, not yet decoded and
written) is bounded too: four times the ring buffer, at most 1/16 of RAM.
Past it the reader stops reading; the ring buffer fills and the BPF program
counts what it cannot store, per CPU, as any loss (nothing lost uncounted,
and no recording grows without bound on a host whose kernel produces faster
than the Parquet writer keeps up).
"""

from __future__ import annotations

import os

MIB = 1 << 20


def _pow2_floor(n: int) -> int:
    return 1 << (max(n, 1).bit_length() - 1)


def default_buffer_pages(ringbuf: bool, mem_bytes: int | None = None, cpus: int | None = None,
                         page_size: int | None = None) -> int:
    page = page_size or os.sysconf("SC_PAGE_SIZE")
    mem = mem_bytes if mem_bytes is not None else \
        os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    ncpu = cpus or os.cpu_count() or 1
    if ringbuf:
        size = min(max(8 * MIB * ncpu, 16 * MIB), 256 * MIB, mem // 64)
    else:
        size = min(8 * MIB, mem // 64 // ncpu)
    return max(64, _pow2_floor(size // page))


def backlog_limit(ring_bytes: int, mem_bytes: int | None = None) -> int:
    """Bytes of read records the recorder holds before it stops reading."""
    mem = mem_bytes if mem_bytes is not None else \
        os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return max(ring_bytes, min(4 * ring_bytes, mem // 16))
