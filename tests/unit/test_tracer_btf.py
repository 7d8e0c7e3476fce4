"""The pure-Python BTF reader, on a hand-built blob and on the running kernel's BTF."""

from __future__ import annotations

import os
import struct

import pytest

from pageref.tracer.btf import BTF, BTFError


class _Blob:
    """Build raw BTF: types appended in order (ids from 1), strings interned."""

    def __init__(self) -> None:
        self.strings = b"\0"
        self.types = b""
        self.next_id = 1

    def s(self, name: str) -> int:
        if not name:
            return 0
        off = len(self.strings)
        self.strings += name.encode() + b"\0"
        return off

    def add(self, name: str, kind: int, vlen: int, size_or_type: int, extra: bytes = b"",
            kflag: int = 0) -> int:
        info = (kflag << 31) | (kind << 24) | vlen
        self.types += struct.pack("<III", self.s(name), info, size_or_type) + extra
        tid = self.next_id
        self.next_id += 1
        return tid

    def raw(self) -> bytes:
        hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(self.types),
                          len(self.types), len(self.strings))
        return hdr + self.types + self.strings


def _sample() -> bytes:
    b = _Blob()
    u32 = b.add("unsigned int", 1, 0, 4, struct.pack("<I", 32))          # 1
    u64 = b.add("long unsigned int", 1, 0, 8, struct.pack("<I", 64))     # 2
    # 3: anonymous struct { u64 mapping; u64 index; } placed at offset 8 of the union
    inner = b.add("", 4, 2, 16, struct.pack("<III", b.s("mapping"), u64, 0)
                  + struct.pack("<III", b.s("index"), u64, 64))
    # 4: anonymous union { struct {...}; u64 compound_head; }
    un = b.add("", 5, 2, 16, struct.pack("<III", 0, inner, 0)
               + struct.pack("<III", b.s("compound_head"), u64, 0))
    # 5: struct page { u64 flags; union {...}; u32 _refcount @ 24 }
    b.add("page", 4, 3, 32, struct.pack("<III", b.s("flags"), u64, 0)
          + struct.pack("<III", 0, un, 64) + struct.pack("<III", b.s("_refcount"), u32, 192))
    # 6: enum zone_type
    b.add("zone_type", 6, 2, 4, struct.pack("<Ii", b.s("ZONE_NORMAL"), 2)
          + struct.pack("<Ii", b.s("ZONE_DEVICE"), 4))
    ptr = b.add("", 2, 0, 5)                                               # 7: struct page *
    # 8: func proto bool(struct page *page, unsigned int flags) - bool as int "_Bool"
    boolean = b.add("_Bool", 1, 0, 1, struct.pack("<I", 8))               # 8
    proto = b.add("", 13, 2, boolean, struct.pack("<II", b.s("page"), ptr)
                  + struct.pack("<II", b.s("flags"), u32))                 # 9
    b.add("try_grab_page", 12, 1, proto)                                   # 10
    # 11: enum64 with a large value
    b.add("big", 19, 1, 8, struct.pack("<III", b.s("BIG"), 0, 1))
    return b.raw()


def test_members_through_anonymous_unions():
    btf = BTF(_sample())
    assert btf.offset_of("page", "flags") == 0
    assert btf.offset_of("page", "mapping") == 8
    assert btf.offset_of("page", "index") == 16
    assert btf.offset_of("page", "compound_head") == 8
    assert btf.offset_of("page", "_refcount") == 24
    assert btf.offset_of("page", "nope") is None
    assert btf.member_size("page", "_refcount") == 4
    assert btf.size_of("page") == 32


def test_enums_protos():
    btf = BTF(_sample())
    assert btf.enum("zone_type") == {"ZONE_NORMAL": 2, "ZONE_DEVICE": 4}
    assert btf.enumerators(prefix="ZONE_D") == {"ZONE_DEVICE": 4}
    assert btf.enum("big") == {"BIG": 1 << 32}
    ret, params = btf.func_proto("try_grab_page")
    assert ret == "_Bool"
    assert params == [("page", "struct page *"), ("flags", "unsigned int")]
    assert btf.func_proto("missing") is None


def test_bad_magic():
    with pytest.raises(BTFError):
        BTF(b"\0" * 64)


@pytest.mark.skipif(not os.path.exists("/sys/kernel/btf/vmlinux"), reason="no kernel BTF")
def test_running_kernel_btf():
    btf = BTF.from_file("/sys/kernel/btf/vmlinux")
    assert btf.size_of("page") == 64
    assert btf.offset_of("page", "_refcount") == 52
    assert btf.enum("zone_type")["ZONE_DEVICE"] >= 3
    assert btf.func_proto("__folio_put") is not None
