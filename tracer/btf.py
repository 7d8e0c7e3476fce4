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
    """BTF types, decoded lazily: one pass records where each type starts (the
    kernel's BTF has 100k+ types, and pageref needs a few dozen); a type is
    decoded when asked for. Names are looked up through the (deduplicated)
    string section."""

    def __init__(self, data: bytes) -> None:
        if len(data) < 24:
            raise BTFError("too short for a BTF header")
        magic, _version, _flags, hdr_len = struct.unpack_from("<HBBI", data, 0)
        if magic != BTF_MAGIC:
            raise BTFError(f"bad BTF magic {magic:#x} (big-endian BTF is not supported)")
        type_off, type_len, str_off, str_len = struct.unpack_from("<IIII", data, 8)
        self._strings = data[hdr_len + str_off: hdr_len + str_off + str_len]
        self._buf = data[hdr_len + type_off: hdr_len + type_off + type_len]
        self._pos: list[int] = [0]          # type id -> offset in _buf (id 0: void)
        self._by_name_off: dict[int, list[int]] = {}
        self._enums: list[int] = []
        self._cache: dict[int, BType] = {}
        self._named: dict[str, list[int]] = {}
        self._index()

    @classmethod
    def from_file(cls, path: str | Path) -> BTF:
        return cls(Path(path).read_bytes())

    def _str(self, off: int) -> str:
        end = self._strings.index(b"\0", off)
        return self._strings[off:end].decode("utf-8", "replace")

    def _index(self) -> None:
        buf, n = self._buf, len(self._buf)
        unpack = struct.unpack_from
        pos_list, by_name, enums = self._pos, self._by_name_off, self._enums
        # bytes after the 12-byte header: fixed per kind, or per member (vlen)
        fixed = {INT: 4, VAR: 4, DECL_TAG: 4, ARRAY: 12}
        per_member = {STRUCT: 12, UNION: 12, ENUM: 8, ENUM64: 12, FUNC_PROTO: 8, DATASEC: 12}
        pos = 0
        while pos < n:
            name_off, info = unpack("<II", buf, pos)
            kind = (info >> 24) & 0x1F
            tid = len(pos_list)
            pos_list.append(pos)
            if name_off:
                lst = by_name.get(name_off)
                if lst is None:
                    by_name[name_off] = [tid]
                else:
                    lst.append(tid)
            if kind == ENUM or kind == ENUM64:
                enums.append(tid)
            pos += 12
            if kind in fixed:
                pos += fixed[kind]
            elif kind in per_member:
                pos += per_member[kind] * (info & 0xFFFF)
            elif kind not in (PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT,
                              TYPE_TAG):
                raise BTFError(f"unknown BTF kind {kind} at type {tid}")

    def __len__(self) -> int:
        return len(self._pos)

    @property
    def types(self) -> _Types:
        return _Types(self)

    def get(self, tid: int) -> BType | None:
        """The decoded type `tid` (None for void/out of range)."""
        if tid <= 0 or tid >= len(self._pos):
            return None
        t = self._cache.get(tid)
        if t is None:
            t = self._decode(tid)
            self._cache[tid] = t
        return t

    def _decode(self, tid: int) -> BType:
        buf, pos = self._buf, self._pos[tid]
        unpack = struct.unpack_from
        name_off, info, sz = unpack("<III", buf, pos)
        pos += 12
        vlen, kind, kflag = info & 0xFFFF, (info >> 24) & 0x1F, bool(info >> 31)
        t = BType(tid, kind, self._str(name_off) if name_off else "", sz, vlen, kflag)
        if kind == ARRAY:
            elem, _idx, nelems = unpack("<III", buf, pos)
            t.members = [elem, nelems]
        elif kind in (STRUCT, UNION):
            mems = []
            for i in range(vlen):
                mname, mtype, moff = unpack("<III", buf, pos + 12 * i)
                bit_off = moff & 0xFFFFFF if kflag else moff
                mems.append((self._str(mname) if mname else "", mtype, bit_off))
            t.members = mems
        elif kind == ENUM:
            t.members = [(self._str(e), v) for e, v in
                         (unpack("<Ii", buf, pos + 8 * i) for i in range(vlen))]
        elif kind == ENUM64:
            vals = []
            for i in range(vlen):
                ename, lo, hi = unpack("<III", buf, pos + 12 * i)
                val = (hi << 32) | lo
                if kflag and val >= 1 << 63:  # signed enum64
                    val -= 1 << 64
                vals.append((self._str(ename), val))
            t.members = vals
        elif kind == FUNC_PROTO:
            t.members = [(self._str(p) if p else "", pt) for p, pt in
                         (unpack("<II", buf, pos + 8 * i) for i in range(vlen))]
        return t

    def _ids_named(self, name: str) -> list[int]:
        if not name:
            return []
        hit = self._named.get(name)
        if hit is not None:
            return hit
        self._named[name] = out = self._find_named(name)
        return out

    def _find_named(self, name: str) -> list[int]:
        key = b"\0" + name.encode() + b"\0"
        out: list[int] = []
        start = 0
        while True:  # strings are deduplicated, but a name can also end a longer one
            i = self._strings.find(key, start)
            if i < 0:
                return out
            out.extend(self._by_name_off.get(i + 1, ()))
            start = i + 1

    # --- lookups -------------------------------------------------------------

    def find(self, name: str, kind: int) -> BType | None:
        """The first type named `name` of `kind` (struct, enum, func, ...), or None."""
        for tid in self._ids_named(name):
            t = self.get(tid)
            if t is not None and t.kind == kind:
                return t
        return None

    def struct(self, name: str) -> BType | None:
        # A complete definition (vlen > 0 or size > 0) rather than a forward one.
        for tid in self._ids_named(name):
            t = self.get(tid)
            if t is not None and t.kind in (STRUCT, UNION):
                return t
        return None

    def resolve(self, tid: int) -> BType | None:
        """Follow typedef/const/volatile/restrict/type_tag to the underlying type."""
        t = self.get(tid)
        while t is not None and t.kind in _MODIFIERS:
            t = self.get(t.size_or_type)
        return t

    def type_name(self, tid: int) -> str:
        """A C-like spelling of type `tid` ("struct page *", "int", "bool", "void")."""
        t = self.get(tid)
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
            for tid in self._ids_named(name):
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
            esize = 8 if elem is not None and elem.kind == PTR else (
                elem.size_or_type if elem else 0)
            return esize * r.members[1]
        return r.size_or_type

    def enum(self, name: str) -> dict[str, int] | None:
        """Enumerators of `enum name`."""
        t = self.find(name, ENUM) or self.find(name, ENUM64)
        return dict(t.members) if t is not None else None

    def enumerators(self, names: set[str] | None = None, prefix: str | None = None
                    ) -> dict[str, int]:
        """Enumerator values across all enums (anonymous ones included), by name."""
        out: dict[str, int] = {}
        for tid in self._enums:
            t = self.get(tid)
            if t is None:
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
        proto = self.get(f.size_or_type)
        if proto is None or proto.kind != FUNC_PROTO:
            return None
        return (self.type_name(proto.size_or_type),
                [(pname, self.type_name(ptype)) for pname, ptype in proto.members])

    def has_func(self, name: str) -> bool:
        return self.find(name, FUNC) is not None


class _Types:
    """Sequence view of all types (id 0 is None), decoding on access."""

    def __init__(self, btf: BTF) -> None:
        self._btf = btf

    def __len__(self) -> int:
        return len(self._btf)

    def __getitem__(self, tid: int) -> BType | None:
        return self._btf.get(tid)

    def __iter__(self):
        return (self._btf.get(i) for i in range(len(self._btf)))
