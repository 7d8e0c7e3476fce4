"""A small pure-Python reader of raw BTF (/sys/kernel/btf/vmlinux, or the .BTF
section of a vmlinux), enough for pageref: struct member offsets (through
anonymous unions/structs), struct sizes, enum values, and function prototypes.

The format is documented in the kernel's Documentation/bpf/btf.rst. Only the
type section is decoded; the string section is read lazily.
"""

from __future__ import annotations

import dataclasses
import struct
from pathlib import Path

BTF_MAGIC = 0xEB9F

# BTF_KIND_* (include/uapi/linux/btf.h)
INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT = range(1, 12)
FUNC, FUNC_PROTO, VAR, DATASEC, FLOAT, DECL_TAG, TYPE_TAG, ENUM64 = range(12, 20)

_KIND_NAMES = {
    INT: "int", PTR: "ptr", ARRAY: "array", STRUCT: "struct", UNION: "union", ENUM: "enum",
    FWD: "fwd", TYPEDEF: "typedef", VOLATILE: "volatile", CONST: "const",
    RESTRICT: "restrict", FUNC: "func", FUNC_PROTO: "func_proto", VAR: "var",
    DATASEC: "datasec", FLOAT: "float", DECL_TAG: "decl_tag", TYPE_TAG: "type_tag",
    ENUM64: "enum64",
}
_MODIFIERS = (TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG)


class BTFError(ValueError):
    """Raw bytes that are not BTF, or a type/member the caller asked for is absent."""


@dataclasses.dataclass
class BType:
    id: int
    kind: int
    name: str
    size_or_type: int      # size for int/struct/union/enum, referenced type otherwise
    vlen: int
    kind_flag: bool
    # struct/union: [(name, type_id, bit_offset)]; enum: [(name, value)];
    # func_proto: [(name, type_id)]; array: (elem_type, nelems)
    members: list = dataclasses.field(default_factory=list)

    @property
    def kind_name(self) -> str:
        return _KIND_NAMES.get(self.kind, str(self.kind))


class BTF:
    """Decoded BTF types, indexed by name."""

    def __init__(self, data: bytes) -> None:
        if len(data) < 24:
            raise BTFError("too short for a BTF header")
        magic, version, _flags, hdr_len = struct.unpack_from("<HBBI", data, 0)
        if magic != BTF_MAGIC:
            raise BTFError(f"bad BTF magic {magic:#x} (big-endian BTF is not supported)")
        type_off, type_len, str_off, str_len = struct.unpack_from("<IIII", data, 8)
        self._strings = data[hdr_len + str_off: hdr_len + str_off + str_len]
        self.types: list[BType | None] = [None]  # id 0 is void
        self._by_name: dict[str, list[int]] = {}
        self._parse(data[hdr_len + type_off: hdr_len + type_off + type_len])
        del version

    @classmethod
    def from_file(cls, path: str | Path) -> BTF:
        return cls(Path(path).read_bytes())

    def _str(self, off: int) -> str:
        end = self._strings.index(b"\0", off)
        return self._strings[off:end].decode("utf-8", "replace")

    def _parse(self, buf: bytes) -> None:
        pos, n = 0, len(buf)
        unpack = struct.unpack_from
        while pos < n:
            name_off, info, sz = unpack("<III", buf, pos)
            pos += 12
            vlen, kind, kflag = info & 0xFFFF, (info >> 24) & 0x1F, bool(info >> 31)
            t = BType(len(self.types), kind, self._str(name_off) if name_off else "", sz,
                      vlen, kflag)
            if kind == INT or kind == VAR or kind == DECL_TAG:
                pos += 4
            elif kind == ARRAY:
                elem, _idx, nelems = unpack("<III", buf, pos)
                t.members = [elem, nelems]
                pos += 12
            elif kind in (STRUCT, UNION):
                mems = []
                for _ in range(vlen):
                    mname, mtype, moff = unpack("<III", buf, pos)
                    pos += 12
                    bit_off = moff & 0xFFFFFF if kflag else moff
                    mems.append((self._str(mname) if mname else "", mtype, bit_off))
                t.members = mems
            elif kind == ENUM:
                vals = []
                for _ in range(vlen):
                    ename, val = unpack("<Ii", buf, pos)
                    pos += 8
                    vals.append((self._str(ename), val))
                t.members = vals
            elif kind == ENUM64:
                vals = []
                for _ in range(vlen):
                    ename, lo, hi = unpack("<III", buf, pos)
                    pos += 12
                    val = (hi << 32) | lo
                    if kflag and val >= 1 << 63:  # signed enum64
                        val -= 1 << 64
                    vals.append((self._str(ename), val))
                t.members = vals
            elif kind == FUNC_PROTO:
                params = []
                for _ in range(vlen):
                    pname, ptype = unpack("<II", buf, pos)
                    pos += 8
                    params.append((self._str(pname) if pname else "", ptype))
                t.members = params
            elif kind == DATASEC:
                pos += 12 * vlen
            elif kind in (PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT,
                          TYPE_TAG):
                pass
            else:
                raise BTFError(f"unknown BTF kind {kind} at type {t.id}")
            self.types.append(t)
            if t.name:
                self._by_name.setdefault(t.name, []).append(t.id)

    # --- lookups -------------------------------------------------------------

    def find(self, name: str, kind: int) -> BType | None:
        """The first type named `name` of `kind` (struct, enum, func, ...), or None."""
        for tid in self._by_name.get(name, ()):
            t = self.types[tid]
            if t is not None and t.kind == kind:
                return t
        return None

    def struct(self, name: str) -> BType | None:
        # A complete definition (vlen > 0 or size > 0) rather than a forward one.
        for tid in self._by_name.get(name, ()):
            t = self.types[tid]
            if t is not None and t.kind in (STRUCT, UNION):
                return t
        return None

    def resolve(self, tid: int) -> BType | None:
        """Follow typedef/const/volatile/restrict/type_tag to the underlying type."""
        t = self.types[tid] if tid else None
        while t is not None and t.kind in _MODIFIERS:
            t = self.types[t.size_or_type] if t.size_or_type else None
        return t

    def type_name(self, tid: int) -> str:
        """A C-like spelling of type `tid` ("struct page *", "int", "bool", "void")."""
        t = self.types[tid] if tid else None
        if t is None:
            return "void"
        if t.kind == PTR:
            return self.type_name(t.size_or_type) + " *"
        if t.kind in (CONST, VOLATILE, RESTRICT, TYPE_TAG):
            return self.type_name(t.size_or_type)
        if t.kind in (STRUCT, UNION):
            return f"{t.kind_name} {t.name}"
        if t.kind in (ENUM, ENUM64):
            return f"enum {t.name}"
        return t.name or t.kind_name

    def size_of(self, name: str) -> int | None:
        """sizeof(struct name), or of a typedef/int named `name`."""
        t = self.struct(name)
        if t is None:
            for tid in self._by_name.get(name, ()):
                r = self.resolve(tid)
                if r is not None and r.kind in (INT, STRUCT, UNION, ENUM, ENUM64):
                    t = r
                    break
        return t.size_or_type if t is not None else None

    def _member_path(self, t: BType, name: str, base_bits: int) -> tuple[int, int] | None:
        """(bit offset, type id) of member `name` in `t`, looking into anonymous members."""
        for mname, mtype, bit_off in t.members:
            if mname == name:
                return base_bits + bit_off, mtype
        for mname, mtype, bit_off in t.members:
            if not mname:
                inner = self.resolve(mtype)
                if inner is not None and inner.kind in (STRUCT, UNION):
                    found = self._member_path(inner, name, base_bits + bit_off)
                    if found is not None:
                        return found
        return None

    def member(self, struct_name: str, path: str) -> tuple[int, int] | None:
        """(byte offset, type id) of `struct_name`.`path` ("a.b" walks named members)."""
        t = self.struct(struct_name)
        if t is None:
            return None
        bits = 0
        tid = t.id
        for part in path.split("."):
            cur = self.resolve(tid)
            if cur is None or cur.kind not in (STRUCT, UNION):
                return None
            found = self._member_path(cur, part, bits)
            if found is None:
                return None
            bits, tid = found
        if bits % 8:
            return None  # bitfields are not something pageref reads
        return bits // 8, tid

    def offset_of(self, struct_name: str, path: str) -> int | None:
        m = self.member(struct_name, path)
        return m[0] if m else None

    def member_size(self, struct_name: str, path: str) -> int | None:
        m = self.member(struct_name, path)
        if m is None:
            return None
        r = self.resolve(m[1])
        if r is None:
            return None
        if r.kind == PTR:
            return 8
        if r.kind == ARRAY:
            elem = self.resolve(r.members[0])
            return (elem.size_or_type if elem else 0) * r.members[1]
        return r.size_or_type

    def enum(self, name: str) -> dict[str, int] | None:
        """Enumerators of `enum name`."""
        t = self.find(name, ENUM) or self.find(name, ENUM64)
        return dict(t.members) if t is not None else None

    def enumerators(self, names: set[str] | None = None, prefix: str | None = None
                    ) -> dict[str, int]:
        """Enumerator values across all enums (anonymous ones included), by name."""
        out: dict[str, int] = {}
        for t in self.types:
            if t is None or t.kind not in (ENUM, ENUM64):
                continue
            for ename, val in t.members:
                if (names is not None and ename in names) or (
                        prefix is not None and ename.startswith(prefix)):
                    out.setdefault(ename, val)
        return out

    def func_proto(self, name: str) -> tuple[str, list[tuple[str, str]]] | None:
        """(return type, [(param name, param type)]) of function `name`, if BTF has it."""
        f = self.find(name, FUNC)
        if f is None:
            return None
        proto = self.types[f.size_or_type]
        if proto is None or proto.kind != FUNC_PROTO:
            return None
        return (self.type_name(proto.size_or_type),
                [(pname, self.type_name(ptype)) for pname, ptype in proto.members])

    def has_func(self, name: str) -> bool:
        return self.find(name, FUNC) is not None
