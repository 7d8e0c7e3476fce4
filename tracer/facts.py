"""What pageref needs to know about a kernel, gathered once: `KernelFacts`.

Facts come from the running kernel (`KernelFacts.live()`: /proc/kallsyms,
tracefs available_filter_functions, /sys/kernel/btf/vmlinux, the kernel's
headers for the few numbers BTF lacks), from a kernel's files
(`KernelFacts.from_files()`: System.map or an nm listing, raw BTF, headers), or
from a small JSON extract kept as a test fixture (`KernelFacts.load()`). The
probe plan and the BPF program's -D defines are computed from these facts only,
so they can be tested on any kernel's extract without booting it.
"""

from __future__ import annotations

import ast
import dataclasses
import gzip
import json
import operator
import os
import platform
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pageref.tracer.btf import BTF, BTFError
from pageref.tracer.page_ref import MARKERS as PAGE_REF_MARKERS

# Every function pageref may probe, or whose presence tells something about the
# kernel (see plan.py and kernel_rules.py for what each one means).
WANTED_FUNCS = (
    "try_grab_page", "try_grab_folio", "try_grab_folio_fast", "try_grab_compound_head",
    "__put_page", "__folio_put", "__put_devmap_managed_page", "put_devmap_managed_page",
    "free_devmap_managed_page", "zone_device_page_init",
    "__put_devmap_managed_page_refs", "__put_devmap_managed_folio_refs",
    "unpin_user_page", "unpin_user_pages", "unpin_user_pages_dirty_lock",
    "unpin_user_page_range_dirty_lock", "unpin_user_folio", "unpin_folio", "gup_put_folio",
    "put_user_page", "put_user_pages",
    "__bio_release_pages", "bio_release_pages", "bio_release_pages.part.0", "release_pages",
    "folios_put_refs",
    "free_zone_device_page", "free_zone_device_folio",
    "dax_layout_busy_page", "dax_layout_busy_page_range", "dax_break_layout",
    "dax_break_layout_final",
    "vmf_insert_page_mkwrite", "vmf_insert_folio_pmd", "vmf_insert_folio_pud",
)
WANTED_VARS = ("vmemmap_base", "page_offset_base")
# symbols whose presence tells what the kernel offers, where there is no BTF
# enum to say it: bpf_ringbuf_output is the BPF ring buffer (5.8); the kernel's
# page_ref tracepoints (CONFIG_DEBUG_PAGE_REF) are tracer/page_ref.py MARKERS.
WANTED_MARKERS = ("bpf_ringbuf_output", *PAGE_REF_MARKERS)

# struct member paths read by the BPF program (first found wins; see defines.py)
WANTED_MEMBERS = (
    ("page", "flags"), ("page", "_refcount"), ("page", "mapping"), ("page", "index"),
    ("page", "__folio_index"), ("page", "compound_head"), ("page", "compound_info"),
    ("page", "pgmap"),
    ("folio", "pgmap"), ("folio", "_pincount"), ("folio", "_folio_order"),
    ("folio", "_flags_1"), ("dev_pagemap", "type"),
    ("bio", "bi_io_vec"), ("bio", "bi_vcnt"), ("bio", "bi_flags"),
    ("bio_vec", "bv_page"), ("bio_vec", "bv_len"), ("bio_vec", "bv_offset"),
    ("folio_batch", "nr"), ("folio_batch", "folios"),
)
WANTED_SIZES = ("page", "folio", "nodemask_t", "bio_vec")
WANTED_ENUMS = ("zone_type", "memory_type")
WANTED_PAGEFLAGS = ("PG_head", "__NR_PAGEFLAGS")
FOLL_NAMES = ("FOLL_WRITE", "FOLL_GET", "FOLL_PIN", "FOLL_LONGTERM", "FOLL_FAST_ONLY")

TRACEFS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")


@dataclasses.dataclass
class KernelFacts:
    """Facts about one kernel. JSON-serialisable (a fixture is `to_json()`)."""

    release: str | None = None
    machine: str = "x86_64"
    # name -> {"addr": int (0 when hidden), "type": nm letter}
    symbols: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    # names (of WANTED_FUNCS) in available_filter_functions; None = not known
    traceable: list[str] | None = None
    # name -> {"ret": "int", "params": [[name, type], ...]} for BTF FUNC entries
    btf_funcs: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    has_btf: bool = False
    offsets: dict[str, int] = dataclasses.field(default_factory=dict)   # "page.flags" -> 0
    member_sizes: dict[str, int] = dataclasses.field(default_factory=dict)
    sizes: dict[str, int] = dataclasses.field(default_factory=dict)
    enums: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    pageflags: dict[str, int] = dataclasses.field(default_factory=dict)
    foll: dict[str, int] = dataclasses.field(default_factory=dict)
    foll_source: str | None = None        # "btf" | "headers"
    pin_bias: int | None = None
    pin_bias_source: str | None = None    # "btf" | "headers"
    # where offsets, sizes and enums came from: "btf", "headers" (header_layout.py)
    layout_source: str | None = None
    layout_note: str | None = None        # headers tree, and what was checked
    # grab functions' return conventions (plan.RET_*) read from headers, no BTF
    header_ret_conv: dict[str, int] = dataclasses.field(default_factory=dict)
    config: dict[str, str] = dataclasses.field(default_factory=dict)  # a few CONFIG_*
    # capabilities of the running kernel; None where not known (fixtures)
    caps: dict[str, bool | None] = dataclasses.field(default_factory=dict)
    source: str = "live"

    # --- queries used by plan/defines ---------------------------------------

    def has_symbol(self, name: str) -> bool:
        return name in self.symbols or name in self.btf_funcs

    def is_traceable(self, name: str) -> bool | None:
        """Whether `name` can be kprobed: in available_filter_functions where known,
        else a text symbol in kallsyms. None if the kernel does not have it at all."""
        if self.traceable is not None:
            if name in self.traceable:
                return True
            return False if self.has_symbol(name) else None
        sym = self.symbols.get(name)
        if sym is not None:
            return sym.get("type", "T").lower() == "t"
        return False if name in self.btf_funcs else None

    def offset(self, *paths: str) -> int | None:
        for p in paths:
            if p in self.offsets:
                return self.offsets[p]
        return None

    # --- (de)serialisation ---------------------------------------------------

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> KernelFacts:
        names = {f.name for f in dataclasses.fields(cls)}
        facts = cls(**{k: v for k, v in d.items() if k in names})
        if facts.has_btf and facts.layout_source is None:
            facts.layout_source = "btf"   # extracts written before the field existed
        return facts

    @classmethod
    def load(cls, path: str | Path) -> KernelFacts:
        """Facts from a JSON extract (a file, or a directory holding facts.json)."""
        p = Path(path)
        if p.is_dir():
            p = p / "facts.json"
        facts = cls.from_dict(json.loads(p.read_text()))
        facts.source = str(path)
        return facts

    # --- gathering -----------------------------------------------------------

    @classmethod
    def from_files(cls, btf: str | Path | None, symbols: str | Path | None = None,
                   headers: str | Path | None = None, config: str | Path | None = None,
                   release: str | None = None, filter_functions: str | Path | None = None
                   ) -> KernelFacts:
        """Facts from a kernel's files: raw BTF, a System.map/kallsyms/nm listing,
        its headers directory (linux-headers-*), its config file."""
        facts = cls(release=release, source="files")
        if symbols is not None:
            facts.symbols = _read_symbols(Path(symbols).read_text(errors="replace"))
        if filter_functions is not None:
            facts.traceable = _read_filter_functions(Path(filter_functions))
        if btf is not None:
            facts._add_btf(BTF.from_file(btf))
        if headers is not None:
            facts._add_headers(Path(headers))
        if config is not None:
            facts._add_config(_read_config(Path(config)))
        return facts

    @classmethod
    def live(cls, btf: bool = True) -> KernelFacts:
        """Facts of the running kernel. Works without root (addresses then read 0).
        With btf=False its BTF is not read (to take the layout from headers)."""
        release = platform.release()
        facts = cls(release=release, machine=platform.machine(), source="live")
        try:
            facts.symbols = _read_symbols(Path("/proc/kallsyms").read_text(errors="replace"))
        except OSError:
            pass
        for d in TRACEFS:
            aff = Path(d) / "available_filter_functions"
            try:
                facts.traceable = _read_filter_functions(aff)
                break
            except OSError:
                continue
        if btf:
            try:
                facts._add_btf(BTF.from_file("/sys/kernel/btf/vmlinux"))
            except (OSError, BTFError):
                pass
        trees = [Path(f"/lib/modules/{release}/build"), Path(f"/lib/modules/{release}/source"),
                 Path(f"/usr/src/linux-headers-{release}")]
        if os.environ.get("BCC_KERNEL_SOURCE"):   # a source tree has mm/internal.h
            trees.insert(0, Path(os.environ["BCC_KERNEL_SOURCE"]))
        for hdr in trees:
            if hdr.is_dir():
                facts._add_headers(hdr)
        cfg = _live_config(release)
        if cfg:
            facts._add_config(cfg)
        facts.caps = live_caps()
        return facts

    def _add_btf(self, btf: BTF) -> None:
        self.has_btf = True
        self.layout_source = "btf"
        for name in WANTED_FUNCS:
            proto = btf.func_proto(name)
            if proto is not None:
                self.btf_funcs[name] = {"ret": proto[0], "params": [list(p) for p in proto[1]]}
        for struct_name, member in WANTED_MEMBERS:
            m = btf.member(struct_name, member)
            if m is not None:
                key = f"{struct_name}.{member}"
                self.offsets[key] = m[0]
                size = btf.member_size(struct_name, member)
                if size is not None:
                    self.member_sizes[key] = size
        for name in WANTED_SIZES:
            size = btf.size_of(name)
            if size is not None:
                self.sizes[name] = size
        for name in WANTED_ENUMS:
            e = btf.enum(name)
            if e is not None:
                self.enums[name] = e
        pf = btf.enum("pageflags") or {}
        self.pageflags = {k: v for k, v in pf.items() if k in WANTED_PAGEFLAGS}
        # One walk over every enum for all the enumerators wanted:
        # FOLL_* became enums after 6.1 (public ones in mm_types.h, internal ones in
        # mm/internal.h); BIO_PAGE_PINNED (6.5) says bios unpin through
        # unpin_user_folio/page (plan.py); BPF_MAP_TYPE_RINGBUF says ring buffer.
        bio_names = {"BIO_PAGE_PINNED", "BIO_PAGE_REFFED", "BIO_NO_PAGE_REF"}
        # (GUP_PIN_COUNTING_BIAS is a #define in every version: _add_headers reads it)
        found = btf.enumerators(names=set(FOLL_NAMES) | bio_names | {"BPF_MAP_TYPE_RINGBUF"})
        foll = {k: v for k, v in found.items() if k in FOLL_NAMES}
        if "FOLL_PIN" in foll and "FOLL_GET" in foll:
            self.foll, self.foll_source = foll, "btf"
        self.enums["bio_flags"] = {k: v for k, v in found.items() if k in bio_names}
        self.enums["bpf_map_type"] = {k: v for k, v in found.items()
                                      if k == "BPF_MAP_TYPE_RINGBUF"}

    def _add_headers(self, root: Path) -> None:
        """FOLL_* and GUP_PIN_COUNTING_BIAS from include/linux/mm*.h (#defines before
        6.2). Debian splits headers into -amd64 and -common: follow the include dir."""
        texts = []
        for d in _header_dirs(root):
            # mm/internal.h only in a source tree: FOLL_PIN's home since 6.2
            for name in ("include/linux/mm.h", "include/linux/mm_types.h", "mm/internal.h"):
                try:
                    texts.append((d / name).read_text(errors="replace"))
                except OSError:
                    pass
        if not texts:
            return
        text = "\n".join(texts)
        if self.foll_source is None:
            foll = {}
            for name in FOLL_NAMES:
                v = _c_define(text, name)
                if v is None:
                    v = _c_enumerator(text, name)
                if v is not None:
                    foll[name] = v
            if "FOLL_PIN" in foll and "FOLL_GET" in foll:
                self.foll, self.foll_source = foll, "headers"
        if self.pin_bias is None:
            v = _c_define(text, "GUP_PIN_COUNTING_BIAS")
            if v is not None:
                self.pin_bias, self.pin_bias_source = v, "headers"

    def _add_config(self, cfg: dict[str, str]) -> None:
        for key in ("CONFIG_NODES_SHIFT", "CONFIG_RANDOMIZE_MEMORY", "CONFIG_X86_5LEVEL",
                    "CONFIG_SPARSEMEM_VMEMMAP", "CONFIG_KPROBES", "CONFIG_DEBUG_PAGE_REF",
                    "CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS", "CONFIG_FS_DAX",
                    "CONFIG_HUGETLB_PAGE_OPTIMIZE_VMEMMAP", "CONFIG_NUMA"):
            if key in cfg:
                self.config[key] = cfg[key]


def _read_symbols(text: str) -> dict[str, dict[str, Any]]:
    """WANTED symbols of a kallsyms/System.map/nm listing ("addr type name [module]")."""
    wanted = set(WANTED_FUNCS) | set(WANTED_VARS) | set(WANTED_MARKERS)
    out: dict[str, dict[str, Any]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 3 or parts[2] not in wanted or len(parts) > 3:
            continue  # module symbols ("[mod]") are not what pageref wants
        name = parts[2]
        try:
            addr = int(parts[0], 16)
        except ValueError:
            continue
        # Keep the first; a static function can appear twice (.isra/.constprop
        # clones have other names and are not matched).
        out.setdefault(name, {"addr": addr, "type": parts[1]})
    return out


def _read_filter_functions(path: Path) -> list[str]:
    wanted = set(WANTED_FUNCS)
    found = set()
    with open(path, errors="replace") as f:
        for line in f:
            name = line.split(None, 1)[0] if line.strip() else ""
            if name in wanted:
                found.add(name)
    return sorted(found)


def _header_dirs(root: Path) -> list[Path]:
    dirs = [root]
    # Debian: linux-headers-X-amd64/include -> its -common sibling holds the rest
    m = re.match(r"(linux-headers-.*)-(amd64|arm64|cloud-amd64|rt-amd64)$", root.resolve().name)
    if m:
        dirs.append(root.resolve().parent / f"{m.group(1)}-common")
    return dirs


_DEFINE = r"^\s*#\s*define\s+{name}\s+(.+?)\s*(?:/\*.*)?$"
_MAX_DEPTH = 8          # macro references followed, at most
_MAX_EXPR = 200         # characters of one expression


def _c_define(text: str, name: str, depth: int = 0) -> int | None:
    """The value of `#define name <int expr>`, else None. The expression may
    name other #defines or enumerators of `text` (followed _MAX_DEPTH deep)."""
    m = re.search(_DEFINE.format(name=re.escape(name)), text, re.M)
    if not m or depth > _MAX_DEPTH:
        return None
    return _int_expr(m.group(1), lambda ref: _c_value(text, ref, depth + 1))


def _c_enumerator(text: str, name: str, depth: int = 0) -> int | None:
    """The value of `name = <int expr>,` in an enum (FOLL_* from 6.2), else None."""
    m = re.search(rf"^\s*{re.escape(name)}\s*=\s*([^,\n/]+?)\s*,", text, re.M)
    if not m or depth > _MAX_DEPTH:
        return None
    return _int_expr(m.group(1), lambda ref: _c_value(text, ref, depth + 1))


def _c_value(text: str, name: str, depth: int) -> int | None:
    v = _c_define(text, name, depth)
    return v if v is not None else _c_enumerator(text, name, depth)


_BINOPS: dict[type[ast.operator], Callable[[int, int], int]] = {
    ast.BitOr: operator.or_, ast.BitAnd: operator.and_, ast.BitXor: operator.xor,
    ast.LShift: operator.lshift, ast.RShift: operator.rshift,
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
}
_UNARY: dict[type[ast.unaryop], Callable[[int], int]] = {
    ast.Invert: operator.invert, ast.USub: operator.neg, ast.UAdd: operator.pos,
}


def _int_expr(expr: str, lookup: Callable[[str], int | None] | None = None) -> int | None:
    """A C integer constant expression of header text as an int, or None: ints
    (decimal, hex, with U/L suffixes), parentheses, | & ^ << >> + - * ~ and names
    `lookup` resolves. Parsed, never evaluated as code: anything else is None, and
    so is a value outside 64 bits (header text is data, not trusted)."""
    expr = expr.strip()
    if not expr or len(expr) > _MAX_EXPR:
        return None
    expr = re.sub(r"\b(0[xX][0-9a-fA-F]+|\d+)[uUlL]+\b", r"\1", expr)
    try:
        tree = ast.parse(expr, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None

    def ev(node: ast.AST) -> int:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            v = node.value
        elif isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            a, b = ev(node.left), ev(node.right)
            if isinstance(node.op, (ast.LShift, ast.RShift)) and not 0 <= b < 64:
                raise ValueError("shift out of range")
            v = _BINOPS[type(node.op)](a, b)
        elif isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            v = _UNARY[type(node.op)](ev(node.operand))
        elif isinstance(node, ast.Name) and lookup is not None:
            ref = lookup(node.id)
            if ref is None:
                raise ValueError(f"unknown name {node.id}")
            v = ref
        else:
            raise ValueError(f"not an integer expression: {type(node).__name__}")
        if not -(1 << 63) <= v < (1 << 64):
            raise ValueError("outside 64 bits")
        return v

    try:
        return ev(tree.body)
    except (ValueError, RecursionError):
        return None


def _read_config(path: Path) -> dict[str, str]:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    cfg = {}
    for line in raw.decode(errors="replace").splitlines():
        if line.startswith("CONFIG_") and "=" in line:
            k, v = line.split("=", 1)
            cfg[k] = v.strip('"')
    return cfg


def _live_config(release: str) -> dict[str, str]:
    for p in (Path(f"/boot/config-{release}"), Path("/proc/config.gz"),
              Path(f"/lib/modules/{release}/build/.config")):
        try:
            return _read_config(p)
        except OSError:
            continue
    return {}


def live_caps() -> dict[str, bool | None]:
    """What the running kernel offers to a tracer, from files only (no root needed)."""
    caps: dict[str, bool | None] = {}
    try:  # an empty file (BTF hidden by a bind mount, as the lab does) is no BTF
        caps["btf"] = os.path.getsize("/sys/kernel/btf/vmlinux") > 0
    except OSError:
        caps["btf"] = False
    caps["kprobes"] = os.path.exists("/sys/bus/event_source/devices/kprobe") or any(
        os.path.exists(os.path.join(d, "kprobe_events")) for d in TRACEFS)
    # fentry needs BTF and BPF trampolines; whether the kernel lets us attach is only
    # known by trying (the recorder does, and falls back to kprobes).
    caps["fentry"] = None if caps["btf"] else False
    caps["bpf_syscall"] = os.path.exists("/proc/sys/kernel/unprivileged_bpf_disabled")
    return caps
