"""The -D defines of the BPF program: every number it needs, computed from
KernelFacts and the user's options, validated here. Nothing but integers
reaches the C compiler (names are fixed identifiers, values are ints).
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING

from pageref.errors import PagerefError
from pageref.tracer.facts import KernelFacts
from pageref.tracer.page_ref import HAVE_DEFINE as PAGE_REF_DEFINE
from pageref.tracer.targets import AttachMethod

if TYPE_CHECKING:   # plan.py imports this module (Target.requires names these defines)
    from pageref.tracer.plan import ProbePlan

# x86-64 VMEMMAP_START without CONFIG_RANDOMIZE_MEMORY (4- and 5-level paging;
# arch/x86/include/asm/pgtable_64_types.h __VMEMMAP_BASE_L4/L5)
VMEMMAP_START_L4 = 0xFFFFEA0000000000
VMEMMAP_START_L5 = 0xFFD4000000000000

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # a C identifier, nothing else

# BPF walks (bpf/pageref.bpf.c): WALK_CHUNK items a program, chained by tail
# calls; the kernel's MAX_TAIL_CALL_CNT (32 before 5.17) leaves 31 programs
# that walk, the 32nd names the rest as lost rows. 512 is what the verifier
# takes for the bio walk (1,024 exceeds its 8,192-jump history; measured on
# 6.18 with the 5.10 and 6.1 layouts) and covers the lab's largest bios
# (11,776 pages: a 64 MiB O_DIRECT from device DAX on 6.1).
WALK_CHUNK = 512
WALK_CALLS = 32                     # programs in a chain (MAX_TAIL_CALL_CNT, 5.10+)
WALK_PAGES = (WALK_CALLS - 1) * WALK_CHUNK   # 15,872 pages (62 MiB) walked in one call

# Offsets only some handlers need (a plan Target's `requires`): fact key -> define.
# Absent from a kernel's facts, the define is not emitted and the plan leaves the
# targets needing it out (plan.py), so their guarded handlers are not compiled.
OPTIONAL_OFFSETS = (
    ("bio.bi_io_vec", "OFF_BIO_IO_VEC"), ("bio.bi_vcnt", "OFF_BIO_VCNT"),
    ("bio_vec.bv_page", "OFF_BVEC_PAGE"), ("bio_vec.bv_len", "OFF_BVEC_LEN"),
    ("bio_vec.bv_offset", "OFF_BVEC_OFFSET"),
    ("folio_batch.nr", "OFF_FBATCH_NR"), ("folio_batch.folios", "OFF_FBATCH_FOLIOS"),
    ("bio.bi_flags", "OFF_BIO_FLAGS"),
)
OPTIONAL_SIZES = (("bio_vec", "SIZEOF_BIO_VEC"),)
# What the walks of a bio and of a folio batch read (bpf/pageref.bpf.c)
BIO_WALK = frozenset({"OFF_BIO_IO_VEC", "OFF_BIO_VCNT", "OFF_BVEC_PAGE", "OFF_BVEC_LEN",
                      "OFF_BVEC_OFFSET", "SIZEOF_BIO_VEC"})
FBATCH_WALK = frozenset({"OFF_FBATCH_NR", "OFF_FBATCH_FOLIOS"})
# 5.x bio_release_pages() returns early on BIO_NO_PAGE_REF bios: read bi_flags
BIO_FLAGS = frozenset({"OFF_BIO_FLAGS", "BIO_NO_PAGE_REF_BIT"})


def optional_defines(facts: KernelFacts) -> dict[str, int]:
    """The optional offset and size defines `facts` gives (no other check: the
    plan asks this even where the page layout itself is not readable)."""
    d = {name: facts.offsets[key] for key, name in OPTIONAL_OFFSETS if key in facts.offsets}
    d.update({name: facts.sizes[key] for key, name in OPTIONAL_SIZES if key in facts.sizes})
    nopageref = facts.enums.get("bio_flags", {}).get("BIO_NO_PAGE_REF")
    if nopageref is not None and 0 <= nopageref < 16:   # a bit of the u16 bi_flags
        d["BIO_NO_PAGE_REF_BIT"] = nopageref
    return d


@dataclasses.dataclass
class Options:
    """What the user asked for, already parsed (commands/record.py)."""

    all_pages: bool = False
    pgmap_types: tuple[int, ...] = ()   # enum memory_type values
    filter_pids: bool = False
    cgroup_id: int | None = None
    self_tgid: int | None = None        # the recorder: its own events are not traced
    stacks: bool = False
    fentry: bool = True                 # use BPF trampolines where the plan allows
    page_ref: bool = True               # the page_ref tracepoints, where the kernel has them
    ringbuf: bool = True
    ringbuf_pages: int = 256            # power of two
    max_batch: int = 64


@dataclasses.dataclass
class Layout:
    """Where the BPF program reads things, for this kernel (all from facts)."""

    off: dict[str, int]
    zones_pgshift: int
    zones_mask: int
    zone_device: int
    pg_head: int
    sizeof_page: int
    foll: dict[str, int]
    pgmap_fsdax: int
    vmemmap_base_addr: int | None
    vmemmap_start: int | None
    nodes_shift: int
    notes: list[str]


def _need(value: int | None, what: str) -> int:
    if value is None:
        raise PagerefError(f"this kernel's BTF or headers lack {what}; pageref cannot read "
                           "pages safely here (report the kernel version)")
    return value


def nodes_shift(facts: KernelFacts) -> int:
    """CONFIG_NODES_SHIFT: from the config, else from sizeof(nodemask_t) (MAX_NUMNODES
    = 1 << NODES_SHIFT bits, rounded up to longs: exact when it is above 64 bits)."""
    cfg = facts.config.get("CONFIG_NODES_SHIFT")
    if cfg is not None and cfg.isdigit():
        return int(cfg)
    size = facts.sizes.get("nodemask_t")
    if size is not None and size > 8:
        bits = size * 8
        if bits & (bits - 1) == 0:
            return bits.bit_length() - 1
    if size == 8 and facts.config.get("CONFIG_NUMA") is None:
        # a single long: NODES_SHIFT <= 6; not NUMA kernels have NODES_SHIFT 0
        return 0
    raise PagerefError("cannot tell CONFIG_NODES_SHIFT (no kernel config, nodemask_t of "
                       f"{size} bytes); put the config in /boot/config-$(uname -r)")


def zones_shift(max_nr_zones: int) -> int:
    # include/linux/page-flags-layout.h
    if max_nr_zones < 2:
        return 0
    if max_nr_zones <= 2:
        return 1
    if max_nr_zones <= 4:
        return 2
    if max_nr_zones <= 8:
        return 3
    raise PagerefError(f"unexpected MAX_NR_ZONES {max_nr_zones}")


def layout(facts: KernelFacts) -> Layout:
    """Offsets and page-flags geometry for `facts` (raises PagerefError if short)."""
    if facts.machine not in ("x86_64", "amd64"):
        raise PagerefError(f"pageref's pfn and page-flags layout are x86-64 only "
                           f"(this is {facts.machine})")
    if facts.layout_source is None:
        raise PagerefError("no struct layout for this kernel: it has no BTF "
                           "(/sys/kernel/btf/vmlinux) and its headers were not read; install "
                           "linux-headers-$(uname -r)")
    o = facts.offsets
    off = {
        "OFF_PAGE_FLAGS": _need(o.get("page.flags"), "struct page.flags"),
        "OFF_PAGE_REFCOUNT": _need(o.get("page._refcount"), "struct page._refcount"),
        "OFF_PAGE_MAPPING": _need(o.get("page.mapping"), "struct page.mapping"),
        # page->index was renamed __folio_index in 6.16 ("mm: rename page->index to
        # page->__folio_index")
        "OFF_PAGE_INDEX": _need(facts.offset("page.__folio_index", "page.index"),
                                "struct page.index/__folio_index"),
        # compound_head was renamed compound_info (7.x, "mm: Eliminate fake head
        # pages from vmemmap optimization" series): see COMPOUND_INFO_MASK below
        "OFF_PAGE_COMPOUND_HEAD": _need(facts.offset("page.compound_head",
                                                     "page.compound_info"),
                                        "struct page.compound_head/compound_info"),
        # pgmap moved from struct page to struct folio (7.x); read on the head page,
        # which is the folio, so one offset serves both
        "OFF_PGMAP": _need(facts.offset("folio.pgmap", "page.pgmap"), "pgmap member"),
        "OFF_PGMAP_TYPE": _need(o.get("dev_pagemap.type"), "struct dev_pagemap.type"),
    }
    notes: list[str] = []
    if "page.compound_head" not in o and "page.compound_info" in o:
        # include/linux/page-flags.h compound_info_has_mask(): with HVO and a
        # power-of-two struct page, a tail's compound_info is a mask, not a pointer
        size = facts.sizes.get("page", 0)
        hvo = facts.config.get("CONFIG_HUGETLB_PAGE_OPTIMIZE_VMEMMAP")
        if hvo is None:
            notes.append("config unknown: assuming compound_info holds a head mask "
                         "(CONFIG_HUGETLB_PAGE_OPTIMIZE_VMEMMAP=y, as distributions set)")
        if hvo != "n" and size and size & (size - 1) == 0:
            off["COMPOUND_INFO_MASK"] = 1
    # order: folio->_folio_order (6.1) or the low byte of folio->_flags_1 (6.6+)
    if "folio._folio_order" in o:
        off["OFF_FOLIO_ORDER"] = o["folio._folio_order"]
    elif "folio._flags_1" in o:
        off["OFF_FOLIO_ORDER"] = o["folio._flags_1"]  # little-endian: low byte = order
    else:
        notes.append("folio order not readable (no _folio_order/_flags_1): order left 0")
    if "folio._pincount" in o:
        off["OFF_FOLIO_PINCOUNT"] = o["folio._pincount"]
    off.update(optional_defines(facts))

    zones = facts.enums.get("zone_type") or {}
    zone_device = _need(zones.get("ZONE_DEVICE"), "enum zone_type ZONE_DEVICE "
                        "(kernel without CONFIG_ZONE_DEVICE?)")
    max_zones = _need(zones.get("__MAX_NR_ZONES"), "enum zone_type __MAX_NR_ZONES")
    zshift = zones_shift(max_zones)
    nshift = nodes_shift(facts)
    nr_pageflags = _need(facts.pageflags.get("__NR_PAGEFLAGS"), "enum pageflags")
    if zshift + nshift > 64 - nr_pageflags:
        raise PagerefError("node and zone bits do not fit page->flags on this kernel's "
                           "layout (NODE_NOT_IN_PAGE_FLAGS); not supported")
    # SPARSEMEM_VMEMMAP (always on x86-64): no section bits, so from the top of
    # page->flags: NODE (NODES_SHIFT bits) then ZONE (include/linux/mm.h ZONES_PGOFF)
    zones_pgshift = 64 - nshift - zshift
    mt = facts.enums.get("memory_type") or {}
    fsdax = _need(mt.get("MEMORY_DEVICE_FS_DAX"), "enum memory_type MEMORY_DEVICE_FS_DAX")
    if "FOLL_PIN" not in facts.foll or "FOLL_GET" not in facts.foll:
        raise PagerefError("cannot find the FOLL_GET/FOLL_PIN values: not in BTF and not in "
                           "the kernel headers (from 6.2 FOLL_PIN is private to mm/internal.h, "
                           "which headers packages do not ship); set BCC_KERNEL_SOURCE to "
                           "this kernel's source tree")
    sizeof_page = _need(facts.sizes.get("page"), "sizeof(struct page)")
    vm_addr = None
    vm_start = None
    sym = facts.symbols.get("vmemmap_base")
    if sym is not None and sym.get("addr"):
        vm_addr = int(sym["addr"])
    elif sym is not None:
        raise PagerefError("vmemmap_base's address is hidden (kallsyms shows 0); run as root")
    else:
        # vmemmap_base is a variable only with CONFIG_DYNAMIC_MEMORY_LAYOUT; without it
        # 4-level paging's constant applies (5-level kernels always have the variable)
        vm_start = VMEMMAP_START_L4
        if facts.config.get("CONFIG_RANDOMIZE_MEMORY") == "y":
            notes.append("vmemmap_base not in kallsyms (no CONFIG_KALLSYMS_ALL?) on a "
                         "CONFIG_RANDOMIZE_MEMORY kernel: pfns assume the default "
                         "VMEMMAP_START and may be wrong")
    return Layout(off=off, zones_pgshift=zones_pgshift, zones_mask=(1 << zshift) - 1,
                  zone_device=zone_device, pg_head=_need(facts.pageflags.get("PG_head"),
                                                         "enum pageflags PG_head"),
                  sizeof_page=sizeof_page, foll=dict(facts.foll), pgmap_fsdax=fsdax,
                  vmemmap_base_addr=vm_addr, vmemmap_start=vm_start, nodes_shift=nshift,
                  notes=notes)


def defines(facts: KernelFacts, plan: ProbePlan, opts: Options, page_size: int = 4096
            ) -> dict[str, int]:
    """name -> integer value for every -D the program gets."""
    lay = layout(facts)
    d: dict[str, int] = dict(lay.off)
    d.update({
        "SIZEOF_PAGE": lay.sizeof_page,
        "ZONES_PGSHIFT": lay.zones_pgshift,
        "ZONES_MASK": lay.zones_mask,
        "ZONE_DEVICE_ID": lay.zone_device,
        "PG_HEAD": lay.pg_head,
        "FOLL_GET_VAL": lay.foll["FOLL_GET"],
        "FOLL_PIN_VAL": lay.foll["FOLL_PIN"],
        "PGMAP_FSDAX": lay.pgmap_fsdax,
        "PAGE_SIZE_VAL": page_size,
        "MAX_BATCH": opts.max_batch,
        "WALK_CHUNK": WALK_CHUNK,
        "WALK_CALLS": WALK_CALLS,
    })
    d["RET_OK_TRY_GRAB_PAGE"] = plan.ret_ok("try_grab_page")
    d["RET_OK_TRY_GRAB_FOLIO"] = plan.ret_ok("try_grab_folio")
    for a in plan.attached:
        # HAVE_<SYMBOL>: the plan attaches it, so its guarded handler is compiled
        d[f"HAVE_{a.symbol.upper()}"] = 1
        if a.method.trampoline:
            d[f"FENTRY_{a.symbol.upper()}"] = 1
        if a.method is AttachMethod.RAW_TRACEPOINT:
            d[PAGE_REF_DEFINE] = 1   # compiles bpf/page_ref.bpf.c
        lacking = a.target.requires - d.keys()
        if lacking:   # plan.resolve() leaves such targets out: a bug if reached
            raise PagerefError(f"internal: {a.symbol} attached without {sorted(lacking)}")
    if lay.vmemmap_base_addr is not None:
        d["VMEMMAP_BASE_ADDR"] = lay.vmemmap_base_addr
    else:
        d["VMEMMAP_START"] = lay.vmemmap_start or VMEMMAP_START_L4
    if opts.all_pages:
        d["ALL_PAGES"] = 1
    if opts.pgmap_types:
        mask = 0
        for t in opts.pgmap_types:
            if not 0 <= t < 32:
                raise PagerefError(f"pgmap type value {t} out of range")
            mask |= 1 << t
        d["PGMAP_MASK"] = mask
    if opts.filter_pids:
        d["FILTER_PIDS"] = 1
    if opts.cgroup_id is not None:
        d["CGROUP_ID"] = opts.cgroup_id
    if opts.self_tgid is not None:
        d["SELF_TGID"] = opts.self_tgid
    if opts.stacks:
        d["WANT_STACKS"] = 1
    if opts.ringbuf:
        pages = opts.ringbuf_pages
        if pages <= 0 or pages & (pages - 1):
            raise PagerefError(f"ring buffer pages must be a power of two, got {pages}")
        d["USE_RINGBUF"] = 1
        d["RINGBUF_PAGES"] = pages
    return d


def cflags(defs: dict[str, int]) -> list[str]:
    """-D arguments, refusing anything that is not NAME=integer."""
    out = []
    for name, value in sorted(defs.items()):
        if not _NAME.match(name):
            raise ValueError(f"bad define name {name!r}")
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"define {name} must be an integer, got {value!r}")
        if not -(1 << 63) <= value < (1 << 64):
            raise ValueError(f"define {name} out of 64-bit range")
        suffix = "ULL" if value >= 1 << 63 else ("LL" if abs(value) >= 1 << 31 else "")
        out.append(f"-D{name}={value}{suffix}")
    return out
