"""The probe plan: which kernel functions carry pageref's four logical probes
(grab, put, free, busy) on a given kernel, decided from what that kernel has
(kallsyms, available_filter_functions, BTF), newest form first. No version
numbers are compared anywhere.

Each `Target` is one kernel function the BPF program has handlers for
(bpf/pageref.bpf.c: on_<symbol> and ret_<symbol>; ids in bpf/pageref.h). A
target declares the -D defines its handler needs beyond the page layout
(`requires`, named as tracer/defines.py emits them): the plan leaves it out,
with that reason, when the kernel's facts do not give them, and defines.py
emits HAVE_<SYMBOL> for exactly the targets attached, which is what compiles
the guarded handlers (tests/unit/test_tracer_plan_defines.py checks both).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from pageref.trace.header import CoverageRecord
from pageref.trace.plan_record import LeftOut
from pageref.tracer.defines import (
    BIO_FLAGS,
    BIO_WALK,
    FBATCH_WALK,
    WALK_CHUNK,
    WALK_PAGES,
    optional_defines,
)
from pageref.tracer.facts import KernelFacts
from pageref.tracer.page_ref import PAGE_REF_TARGETS, resolve_page_ref
from pageref.tracer.targets import Attached, AttachMethod, Target

__all__ = ["AttachMethod", "Attached", "ProbePlan", "Target", "TARGETS", "resolve"]

GRAB_KINDS = ("get", "pin", "grab_failed")
GET, PUT, UNPIN, FREE, BUSY = ("get",), ("put",), ("unpin",), ("free",), ("busy",)


# Order within a logical probe: newest form first.
TARGETS: tuple[Target, ...] = (
    # grab -------------------------------------------------------------------
    Target("try_grab_folio_fast", "grab", 3, GRAB_KINDS, ret=True,
           note="gup-fast grab, static, 6.10+ ('mm: gup: stop abusing try_grab_folio', "
                "f442fa614137)"),
    Target("try_grab_folio", "grab", 2, GRAB_KINDS, ret=True,
           note="(page, refs, flags) -> folio 5.18-6.9 ('mm/gup: Add try_get_folio() and "
                "try_grab_folio()'); (folio, refs, flags) -> int 6.10+ (f442fa614137)"),
    Target("vmf_insert_page_mkwrite", "grab", 19, GET, ret=True,
           note="DAX PTE fault takes the mapping's reference (6.15+, 'fs/dax: Fix "
                "ZONE_DEVICE page reference counts' series); seen as a refcount rise"),
    Target("vmf_insert_folio_pmd", "grab", 20, GET, ret=True,
           note="DAX PMD fault takes the mapping's reference (same series)"),
    Target("vmf_insert_folio_pud", "grab", 21, GET, ret=True,
           note="DAX PUD fault takes the mapping's reference (same series)"),
    Target("try_grab_page", "grab", 1, GRAB_KINDS, ret=True,
           note="(page, flags) 5.7-6.9 ('mm/gup: track FOLL_PIN pages', 3faa52c03f44); bool "
                "until 6.1, int from 6.2 ('mm: allow multiple error returns in "
                "try_grab_page()'); GUP of fsdax PMD mappings on 6.1"),
    Target("try_grab_compound_head", "grab", 23, GRAB_KINDS, ret=True,
           note="gup-fast grab (page, refs, flags) -> head page or NULL, 5.7-5.17: static "
                "__maybe_unused in 5.10's mm/gup.c (a 5.10.262 boot has it traceable), global "
                "in 5.14/5.15; on 5.x O_DIRECT takes its pages through get_user_pages_fast, "
                "so this is every such grab. Replaced in 5.18 by try_grab_folio ('mm/gup: Add "
                "try_get_folio() and try_grab_folio()')"),
    # put --------------------------------------------------------------------
    Target("gup_put_folio", "put", 9, PUT + UNPIN, ret=True,
           note="static; every unpin and GUP put since 5.18 ('mm/gup: Convert "
                "put_compound_head() to gup_put_folio()'); inlined on newer kernels"),
    Target("unpin_user_folio", "put", 12, UNPIN, ret=True,
           note="6.11+ ('mm: add unpin_user_folio')"),
    Target("unpin_folio", "put", 18, UNPIN, ret=True, note="6.11+ (memfd pins)"),
    Target("unpin_user_page", "put", 10, UNPIN, ret=True,
           note="5.6+ ('mm/gup: introduce pin_user_pages*() and FOLL_PIN', fc1d8e7cca2d)"),
    Target("unpin_user_pages", "put", 11, UNPIN, ret=True, note="5.6+ (fc1d8e7cca2d)"),
    Target("unpin_user_pages_dirty_lock", "put", 27, UNPIN, ret=True,
           note="5.6+ (fc1d8e7cca2d); before gup_put_folio (5.18) it drops each page's pins "
                "through static put_compound_head and put_page (5.14/5.15: put_page_refs, an "
                "inline subtract then put_page), which a leaf probe would see as 1-reference "
                "puts: an outer probe, walking the array"),
    Target("unpin_user_page_range_dirty_lock", "put", 28, UNPIN, ret=True,
           note="(page, npages, make_dirty), added after 5.10 ('mm/gup: add a range variant "
                "of unpin_user_pages_dirty_lock()'; absent from 5.10.89, in 5.14.2/5.15.100): "
                "outer probe walking the range, before gup_put_folio (5.18)"),
    Target("__put_devmap_managed_folio_refs", "put", 8, PUT,
           note="fsdax put, folio form of the next ('mm: convert put_devmap_managed_page_refs() "
                "to put_devmap_managed_folio_refs()', after 6.8: 6.8 still has the page form, "
                "6.12 this one); removed by the 'fs/dax: Fix ZONE_DEVICE page reference "
                "counts' (DAX-gup) series, 6.15"),
    Target("__put_devmap_managed_page_refs", "put", 7, PUT,
           note="fsdax put with a count, 5.19-6.8 ('mm: add __put_devmap_managed_page_refs' "
                "renamed __put_devmap_managed_page)"),
    Target("__put_devmap_managed_page", "put", 6, PUT,
           note="fsdax put, 5.18 only: 27674ef6c73f ('mm: remove the extra ZONE_DEVICE struct "
                "page refcount') made it of put_devmap_managed_page, 5.19 added a count"),
    Target("put_devmap_managed_page", "put", 24, PUT,
           note="put_page() of a devmap-managed page (fsdax or device-private: "
                "page_is_devmap_managed()), exported from mm/swap.c 5.10-5.17 (5.10.89, 5.14.2, "
                "5.15.100 sources; a 5.10.262 boot); release_pages() routes those pages through "
                "it too. Removed by 27674ef6c73f (5.18)"),
    Target("__bio_release_pages", "put", 13, PUT, ret=True, requires=BIO_WALK,
           note="O_DIRECT completion; before BIO_PAGE_PINNED ('block: Add BIO_PAGE_PINNED "
                "and associated infrastructure', a8affc03a9b3, 6.5) it puts each page "
                "inline: pageref walks the bio"),
    Target("folios_put_refs", "put", 22, PUT, ret=True, requires=FBATCH_WALK,
           note="batched release (mmu_gather zap, release_pages), 6.10+: zone-device "
                "folios are decremented inline there; pageref walks the batch"),
    Target("bio_release_pages", "put", 26, PUT, ret=True,
           requires=BIO_WALK | BIO_FLAGS,
           note="O_DIRECT completion, 5.x (block/bio.c, exported, 5.10-5.15 checked): put_page "
                "on each page unless BIO_NO_PAGE_REF; an outer probe walking the bio (so "
                "devdax pages, whose puts are inline, are seen) and hiding the nested devmap "
                "put. Made an inline wrapper of __bio_release_pages later"),
    Target("__folio_put", "put", 5, PUT,
           note="last reference dropped, 6.0+ (the folio conversion replaced __put_page)"),
    Target("__put_page", "put", 4, PUT, note="last reference dropped, <= 5.19"),
    # free -------------------------------------------------------------------
    Target("free_devmap_managed_page", "free", 25, FREE,
           note="mm/memremap.c 5.10-5.17: put_devmap_managed_page calls it when the count "
                "reaches 1 (1-based pages): the device-private free (a `free`) and the fsdax "
                "idle wake-up (no event: fsdax pages idle at 1, never freed). Replaced by "
                "free_zone_device_page in 5.18"),
    Target("free_zone_device_folio", "free", 15, FREE,
           note="folio form of free_zone_device_page (6.10+); on kernels where fsdax "
                "mappings hold references it wakes layout waiters"),
    Target("free_zone_device_page", "free", 14, FREE,
           note="5.18-6.9 ('mm: simplify freeing of devmap managed pages')"),
    # busy -------------------------------------------------------------------
    Target("dax_layout_busy_page_range", "busy", 16, BUSY, ret=True,
           note="5.10+ ('dax: Create a range version of dax_layout_busy_page()'; in 5.10.89's "
                "fs/dax.c and a 5.10.262 boot); dax_layout_busy_page and dax_break_layout "
                "call it"),
    Target("dax_layout_busy_page", "busy", 17, BUSY, ret=True,
           note="the whole-mapping form; only where the _range form is absent"),
)
# The kernel's page_ref tracepoints (tracer/page_ref.py) are targets too, of
# their own logical probe "ref": only CONFIG_DEBUG_PAGE_REF kernels have them.
TARGETS += PAGE_REF_TARGETS
BY_SYMBOL = {t.symbol: t for t in TARGETS}
BY_ID = {t.id: t for t in TARGETS}
LOGICAL = ("grab", "put", "free", "busy")

# How a grab function says it succeeded (RET_* in bpf/pageref.bpf.c).
RET_BOOL, RET_ZERO_OK, RET_PTR = 1, 2, 3
RET_NAMES = {RET_BOOL: "bool (true = ok)", RET_ZERO_OK: "int (0 = ok)",
             RET_PTR: "pointer (non-NULL = ok)"}


def ret_convention(ret_type: str) -> int | None:
    """RET_* for a BTF return type spelling, None if unknown."""
    t = ret_type.strip()
    if t.endswith("*"):
        return RET_PTR
    if t in ("bool", "_Bool"):
        return RET_BOOL
    if t in ("int", "long int", "long"):
        return RET_ZERO_OK
    return None


@dataclasses.dataclass
class ProbePlan:
    """The resolved plan: what is attached, what is missing and why, which drop
    paths are covered."""

    kernel: str | None
    attached: list[Attached]
    missing: list[LeftOut]
    covered: list[str]
    uncovered: list[str]
    notes: list[str]

    def symbols(self) -> list[str]:
        return [a.symbol for a in self.attached]

    def by_symbol(self) -> dict[str, Attached]:
        return {a.symbol: a for a in self.attached}

    def for_probe(self, probe: str) -> list[Attached]:
        return [a for a in self.attached if a.probe == probe]

    def ret_ok(self, symbol: str) -> int:
        """RET_* of grab function `symbol` (RET_BOOL where it is not attached: the
        handler is then never called, the define only has to exist)."""
        a = self.by_symbol().get(symbol)
        return a.ret_conv if a is not None and a.ret_conv is not None else RET_BOOL

    def header_plan(self) -> list[dict[str, Any]]:
        """The `probe_plan` list written in the trace header (plan_record.PlanEntry)."""
        return [a.header_entry() for a in self.attached]

    def header_coverage(self, extra_notes: Sequence[str] = ()) -> CoverageRecord:
        """The `coverage` written in the trace header (plan_record.Coverage)."""
        return {"covered": list(self.covered), "uncovered": list(self.uncovered),
                "left_out": [dataclasses.asdict(m) for m in self.missing],
                "notes": list(self.notes) + list(extra_notes)}

    def to_dict(self) -> dict[str, Any]:
        return {"kernel": self.kernel, "attached": self.header_plan(),
                "missing": [dataclasses.asdict(m) for m in self.missing],
                "covered": list(self.covered), "uncovered": list(self.uncovered),
                "notes": list(self.notes)}


def _signature(facts: KernelFacts, sym: str) -> str | None:
    proto = facts.btf_funcs.get(sym)
    if proto is None:
        return None
    params = ", ".join(f"{t} {n}".replace("* ", "*") for n, t in proto["params"])
    ret = proto["ret"]
    sep = "" if ret.endswith("*") else " "
    return f"{ret}{sep}{sym}({params})"


# Targets that can use BPF trampolines (their handlers need no pt_regs; drop
# functions keep kprobes because their nesting mark is keyed by the stack pointer).
FENTRY_METHOD = {"grab": AttachMethod.FENTRY_FEXIT, "free": AttachMethod.FENTRY,
                 "busy": AttachMethod.FEXIT}
FENTRY_SYMBOLS = frozenset({"try_grab_page", "try_grab_folio", "try_grab_folio_fast",
                            "try_grab_compound_head", "free_devmap_managed_page",
                            "free_zone_device_page", "free_zone_device_folio",
                            "dax_layout_busy_page_range", "dax_layout_busy_page"})
MAPPING_REFS = ("vmf_insert_page_mkwrite", "vmf_insert_folio_pmd", "vmf_insert_folio_pud")
# The devmap put of put_page(), newest name first (each target's note says when)
DEVMAP_PUTS = ("__put_devmap_managed_folio_refs", "__put_devmap_managed_page_refs",
               "__put_devmap_managed_page", "put_devmap_managed_page")
FREE_NAMES = ("free_zone_device_folio", "free_zone_device_page", "free_devmap_managed_page")


def resolve(facts: KernelFacts, fentry: bool = False, page_ref: bool = True) -> ProbePlan:
    """Resolve the probe plan on `facts`: kprobes (and kretprobes); with `fentry`,
    grab/free/busy targets that have a BTF prototype use BPF trampolines
    (fentry/fexit) instead; with `page_ref`, the kernel's page_ref tracepoints
    where it has them (tracer/page_ref.py)."""
    attached: list[Attached] = []
    missing: list[LeftOut] = []
    notes: list[str] = []
    have_defines = optional_defines(facts).keys()

    def leave_out(t: Target | str, why: str, probe: str = "put") -> None:
        if isinstance(t, Target):
            missing.append(LeftOut(t.probe, t.symbol, why))
        else:
            missing.append(LeftOut(probe, t, why))

    def try_attach(t: Target) -> bool:
        traceable = facts.is_traceable(t.symbol)
        if traceable is None:
            leave_out(t, "not in this kernel")
            return False
        if not traceable:
            leave_out(t, "present but not traceable (inlined, notrace or not in "
                         "available_filter_functions)")
            return False
        lacking = sorted(t.requires - have_defines)
        if lacking:
            leave_out(t, f"needs {', '.join(lacking)}: struct offsets the kernel's BTF/"
                         "headers did not give")
            return False
        m = AttachMethod.KPROBE
        if fentry and t.symbol in FENTRY_SYMBOLS and t.symbol in facts.btf_funcs:
            m = FENTRY_METHOD[t.probe]
        sig = _signature(facts, t.symbol)
        returns: str | None = None
        conv: int | None = None
        if t.symbol in MAPPING_REFS:
            returns = "a rise of the refcount between entry and return"
        elif t.probe == "grab":
            proto = facts.btf_funcs.get(t.symbol)
            conv = RET_PTR if t.symbol == "try_grab_folio_fast" else None
            if proto is not None:
                conv = ret_convention(proto["ret"])
            elif t.symbol in facts.header_ret_conv:
                conv = facts.header_ret_conv[t.symbol]
            if conv is None:
                leave_out(t, "no BTF prototype or header declaration: cannot tell a failed "
                             "grab from a successful one")
                return False
            returns = RET_NAMES[conv]
        attached.append(Attached(t, m, signature=sig, returns=returns, ret_conv=conv))
        return True

    # grab: every grab function the kernel has is a separate path (on 6.1 GUP of
    # fsdax PMD mappings uses try_grab_page, PTE mappings try_grab_folio).
    for t in TARGETS:
        if t.probe == "grab" and t.symbol not in MAPPING_REFS:
            try_attach(t)
    # Mapping references: only where DAX mappings hold them (no devmap put path).
    devmap = [s for s in DEVMAP_PUTS if facts.has_symbol(s)]
    for sym in MAPPING_REFS:
        if facts.has_symbol(sym) and not devmap:
            try_attach(BY_SYMBOL[sym])

    # put: gup_put_folio is every unpin's common path, but newer compilers inline
    # it into the single-folio entry points (7.2: unpin_user_page, unpin_user_folio
    # and unpin_folio hold inlined copies), so those are attached too, as outer
    # probes: when they do call gup_put_folio, the nested event is suppressed.
    covered: list[str] = []
    uncovered: list[str] = []
    gup = try_attach(BY_SYMBOL["gup_put_folio"])
    for sym in ("unpin_user_folio", "unpin_folio", "unpin_user_page"):
        if facts.has_symbol(sym) and try_attach(BY_SYMBOL[sym]):
            covered.append(f"{sym}()")
    if gup:
        covered.append("unpin_user_pages(_dirty_lock), unpin_user_page_range_dirty_lock and "
                       "GUP puts, through gup_put_folio")
        uncovered.append("copies of gup_put_folio inlined into other callers (e.g. the "
                         "gup-fast undo of a racing grab)")
    else:
        # Before gup_put_folio (5.x) the batch unpins drop each page's pins through
        # static helpers and put_page: outer probes that walk their pages.
        if try_attach(BY_SYMBOL["unpin_user_pages"]):
            covered.append("unpin_user_pages(): every page of each call (walked in BPF; "
                           f"past {WALK_PAGES:,} pages a lost row)")
        for sym in ("unpin_user_pages_dirty_lock", "unpin_user_page_range_dirty_lock"):
            if not facts.has_symbol(sym):
                continue
            if try_attach(BY_SYMBOL[sym]):
                covered.append(f"{sym}(): " + (
                    "every page of each call (the unpin_user_pages walk)"
                    if sym == "unpin_user_pages_dirty_lock" else
                    f"{WALK_CHUNK} pages of each call, a lost row naming the rest of the "
                    "range"))
            else:
                uncovered.append(f"{sym}() with make_dirty: its unpins are seen only as "
                                 "devmap puts of one reference (see 'not attached')")

    # fsdax puts (and on 5.x device-private ones): the newest name the kernel has
    for sym in devmap[:1]:
        if try_attach(BY_SYMBOL[sym]):
            which = ("fsdax and device-private pages" if sym == "put_devmap_managed_page"
                     else "fsdax pages")
            covered.append(f"put_page() on {which}, through {sym}")
    for sym in devmap[1:]:
        leave_out(sym, f"superseded by {devmap[0]}")
    if not devmap and any(facts.has_symbol(s) for s in MAPPING_REFS):
        notes.append("no devmap put (put_devmap_managed_page, __put_devmap_managed_*): fsdax "
                     "pages are refcounted like any other folio ('fs/dax: Fix ZONE_DEVICE "
                     "page reference counts' series, 6.15)")
    elif not devmap:
        notes.append("no devmap put (put_devmap_managed_page, __put_devmap_managed_*) and no "
                     "DAX mapping references: fsdax puts that leave references are not seen")

    # O_DIRECT completion: bios before BIO_PAGE_PINNED (6.5) hold page references
    bio_pinned = facts.enums.get("bio_flags", {}).get("BIO_PAGE_PINNED") is not None
    if facts.has_symbol("__bio_release_pages"):
        if bio_pinned:
            leave_out("__bio_release_pages", "not needed: it only unpins BIO_PAGE_PINNED bios "
                                             "(6.5+), page by page through unpin_user_page")
        elif try_attach(BY_SYMBOL["__bio_release_pages"]):
            covered.append("O_DIRECT bio completion (__bio_release_pages walks the bio: "
                           f"every page; past {WALK_PAGES:,} pages, lost rows naming the pfn "
                           "ranges)")
        else:
            uncovered.append("O_DIRECT bio completion: __bio_release_pages not attached "
                             "(see 'not attached')")
    elif facts.has_symbol("bio_release_pages"):
        if try_attach(BY_SYMBOL["bio_release_pages"]):
            covered.append("O_DIRECT bio completion (bio_release_pages walks the bio, "
                           f"BIO_NO_PAGE_REF bios skipped: every page; past {WALK_PAGES:,} "
                           "pages, lost rows naming the pfn ranges)")
        else:
            uncovered.append("O_DIRECT bio completion: bio_release_pages not attached (see "
                             "'not attached')" + (f"; fsdax puts are seen through {devmap[0]}"
                                                  if devmap else ""))
        if facts.has_symbol("bio_release_pages.part.0"):
            uncovered.append("bio_release_pages() calls inside block/bio.c (the O_DIRECT read "
                             "completion's bio_check_pages_dirty) that reach gcc's "
                             "bio_release_pages.part.0 clone directly: only their devmap puts "
                             "are seen")

    final = "__folio_put" if facts.has_symbol("__folio_put") else "__put_page"
    other = "__put_page" if final == "__folio_put" else "__folio_put"
    if try_attach(BY_SYMBOL[final]):
        covered.append(f"put_page()/folio_put() dropping the last reference, through {final}")
    if facts.has_symbol(other):
        leave_out(other, f"superseded by {final}")
    # The devmap put takes only the pages page_is_devmap_managed() names (fsdax,
    # and before 6.1 device-private): a device DAX (MEMORY_DEVICE_GENERIC) or
    # p2pdma put that leaves references is an inline decrement everywhere.
    # The paths below were found by the page_ref tracepoints on the lab's debug
    # kernel (tests/lab/test_lab_debug.py fails on a change they show that no
    # entry names): their function names are what the test matches.
    private_seen = bool(devmap) and devmap[0] == "put_devmap_managed_page"
    inline_kinds = ("device DAX and p2pdma" if private_seen
                    else "device DAX, p2pdma and device-private" if devmap
                    else "all ZONE_DEVICE (fsdax included: no devmap put)")
    uncovered.append("put_page()/folio_put()/folio_put_refs() that leave references "
                     "(inline atomic decrement; nothing to probe" +
                     (", except the devmap puts above)" if devmap else ")") +
                     f": {inline_kinds} pages' puts are not seen, among them pipe releases "
                     "(page_cache_pipe_buf_release, vmsplice), gup_test's put_back_pages "
                     "(gup_test_ioctl)" +
                     ("" if private_seen else ", device-private migration "
                      "(migrate_device_finalize, migrate_vma_collect_pmd, try_to_migrate_one)") +
                     f"; the last put, to 0, is seen through {final}")
    uncovered.append("references taken outside GUP (inline folio_get()/folio_try_get()/"
                     "get_page(); nothing to probe): device-private migration and faults "
                     "(migrate_vma_collect_pmd, migrate_device_range, __migrate_device_pages, "
                     "remove_migration_pte, do_swap_page), page table copies on fork "
                     "(copy_page_range)")
    uncovered.append("the count set by the page's owner (set_page_count(), inline): "
                     "ZONE_DEVICE memmap init (memmap_init_zone_device) and device-private "
                     "allocation (zone_device_page_init, to 1); a `free` ends each life")
    if facts.has_symbol("folios_put_refs") and try_attach(BY_SYMBOL["folios_put_refs"]):
        covered.append("batched releases (munmap/zap mmu_gather, release_pages) through "
                       "folios_put_refs: every folio of each batch")
    elif facts.has_symbol("release_pages") and devmap:
        # 5.10-6.8 (checked 5.10.89, 5.14.2, 5.15.100, 6.1, 6.8): release_pages()
        # sends devmap-managed pages to the devmap put, the others it decrements inline
        covered.append(f"batched releases (release_pages: munmap, zap) of the pages "
                       f"{devmap[0]} takes, through it")
        uncovered.append("batched releases (release_pages) of other ZONE_DEVICE pages (device "
                         "DAX, p2pdma): inline decrement; a page freed there shows as 'free'")
    elif facts.has_symbol("release_pages"):
        uncovered.append("batched releases (release_pages: munmap, zap, pagevec): "
                         "decrements inline; a page freed there shows as 'free'")

    # free: newest name first
    for sym in FREE_NAMES:
        if facts.has_symbol(sym):
            try_attach(BY_SYMBOL[sym])
            break
    else:
        leave_out("free_zone_device_folio", "not in this kernel (nor free_zone_device_page "
                                            "nor free_devmap_managed_page)", probe="free")

    # busy: the _range form; dax_layout_busy_page calls it
    if not try_attach(BY_SYMBOL["dax_layout_busy_page_range"]):
        try_attach(BY_SYMBOL["dax_layout_busy_page"])
    if facts.has_symbol("dax_break_layout"):
        notes.append("dax_break_layout(_final) (6.15+) loops over "
                     "dax_layout_busy_page_range: its busy pages are reported there")

    refs, ref_covered = resolve_page_ref(facts, page_ref, missing.append)
    attached += refs
    covered += ref_covered
    if refs:
        notes.append("the paths under 'not covered' are recorded by the page_ref "
                     "tracepoints as `ref` rows, with their kernel stacks under --stacks")

    have = {a.probe for a in attached}
    for p in LOGICAL:
        if p not in have:
            notes.append(f"no {p} probe can be attached on this kernel")
    return ProbePlan(kernel=facts.release, attached=attached, missing=missing,
                     covered=covered, uncovered=uncovered, notes=notes)
