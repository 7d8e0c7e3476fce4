"""Python mirror of `struct pageref_event` (bpf/pageref.h), and decoding of raw
events into rows of the trace schema. test_tracer_event.py checks the mirror
against the C header compiled by a C compiler.
"""

from __future__ import annotations

import ctypes
import re
from importlib import resources
from pathlib import Path

KIND_NAMES = {0: "get", 1: "pin", 2: "put", 3: "unpin", 4: "free", 5: "busy",
              6: "grab_failed", 7: "lost", 8: "ref"}
NO_PGMAP = 0xFF


class PagerefEvent(ctypes.Structure):
    _fields_ = [
        ("ts_ns", ctypes.c_uint64),
        ("page", ctypes.c_uint64),
        ("pfn", ctypes.c_uint64),
        ("mapping", ctypes.c_uint64),
        ("index", ctypes.c_uint64),
        ("flags", ctypes.c_uint64),
        ("ret", ctypes.c_int64),
        ("pid", ctypes.c_uint32),
        ("tid", ctypes.c_uint32),
        ("refcount", ctypes.c_int32),
        ("refs", ctypes.c_int32),
        ("pincount", ctypes.c_int32),
        ("stack_id", ctypes.c_int32),
        ("cpu", ctypes.c_uint32),
        ("probe", ctypes.c_uint16),
        ("kind", ctypes.c_uint8),
        ("order", ctypes.c_uint8),
        ("zone_device", ctypes.c_uint8),
        ("pgmap_type", ctypes.c_uint8),
        ("pad", ctypes.c_uint8 * 6),
        ("comm", ctypes.c_char * 16),
    ]


def bpf_dir() -> Path:
    """Directory of the BPF sources shipped as package data."""
    return Path(str(resources.files("pageref.bpf")))


def header_defines(name: str = "pageref.h") -> dict[str, int]:
    """`#define NAME <int>` of the shared header (KIND_*, PROBE_*)."""
    text = (bpf_dir() / name).read_text()
    return {m.group(1): int(m.group(2), 0)
            for m in re.finditer(r"^#define\s+([A-Z_0-9]+)\s+(0x[0-9a-fA-F]+|\d+)\s*$",
                                 text, re.M)}
