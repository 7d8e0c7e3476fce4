"""The probe plan: which kernel functions carry pageref's four logical probes
(grab, put, free, busy) on a given kernel, decided from what that kernel has
(kallsyms, available_filter_functions, BTF), newest form first. No version
numbers are compared anywhere.

Each `Target` is one kernel function the BPF program has handlers for
(bpf/pageref.bpf.c: on_<symbol> and ret_<symbol>; ids in bpf/pageref.h).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pageref.tracer.facts import KernelFacts


@dataclasses.dataclass(frozen=True)
class Target:
    symbol: str
    probe: str            # logical probe: grab | put | free | busy
    id: int               # PROBE_* in bpf/pageref.h
    entry: bool = True    # has on_<symbol>
    ret: bool = False     # has ret_<symbol>
    note: str = ""        # what it is and the kernel commit that made it so


# Order within a logical probe: newest form first.
TARGETS: tuple[Target, ...] = (
    # grab -------------------------------------------------------------------
    Target("try_grab_folio_fast", "grab", 3, ret=True,
           note="gup-fast grab, static, 6.10+ ('mm: gup: stop abusing try_grab_folio', "
                "f442fa614137)"),
    Target("try_grab_folio", "grab", 2, ret=True,
           note="(page, refs, flags) -> folio 5.18-6.9 ('mm/gup: Add try_get_folio() and "
                "try_grab_folio()'); (folio, refs, flags) -> int 6.10+ (f442fa614137)"),
    Target("vmf_insert_page_mkwrite", "grab", 19, ret=True,
           note="DAX PTE fault takes the mapping's reference (6.15+, 'fs/dax: Fix "
                "ZONE_DEVICE page reference counts' series); seen as a refcount rise"),
    Target("vmf_insert_folio_pmd", "grab", 20, ret=True,
           note="DAX PMD fault takes the mapping's reference (same series)"),
    Target("vmf_insert_folio_pud", "grab", 21, ret=True,
           note="DAX PUD fault takes the mapping's reference (same series)"),
    Target("try_grab_page", "grab", 1, ret=True,
           note="(page, flags) 5.7-6.9 ('mm/gup: track FOLL_PIN pages', 3faa52c03f44); bool "
                "until 6.1, int from 6.2 ('mm: allow multiple error returns in "
                "try_grab_page()'); GUP of fsdax PMD mappings on 6.1"),
    # put --------------------------------------------------------------------
    Target("gup_put_folio", "put", 9, ret=True,
           note="static; every unpin and GUP put since 5.18 ('mm/gup: Convert "
                "put_compound_head() to gup_put_folio()'); inlined on newer kernels"),
    Target("unpin_user_folio", "put", 12, ret=True, note="6.11+ ('mm: add unpin_user_folio')"),
    Target("unpin_folio", "put", 18, ret=True, note="6.11+ (memfd pins)"),
    Target("unpin_user_page", "put", 10, ret=True,
           note="5.6+ ('mm/gup: introduce pin_user_pages*() and FOLL_PIN', fc1d8e7cca2d)"),
    Target("unpin_user_pages", "put", 11, ret=True, note="5.6+ (fc1d8e7cca2d)"),
    Target("__put_devmap_managed_folio_refs", "put", 8,
           note="fsdax put, folio form of the next (6.8+); removed by the "
                "'fs/dax: Fix ZONE_DEVICE page reference counts' (DAX-gup) series, 6.15"),
    Target("__put_devmap_managed_page_refs", "put", 7,
           note="fsdax put with a count, 5.19+ ('mm: add "
                "__put_devmap_managed_page_refs')"),
    Target("__put_devmap_managed_page", "put", 6, note="fsdax put before 5.19"),
    Target("__bio_release_pages", "put", 13, ret=True,
           note="O_DIRECT completion; before BIO_PAGE_PINNED ('block: Add BIO_PAGE_PINNED "
                "and associated infrastructure', a8affc03a9b3, 6.5) it puts each page "
                "inline: pageref walks the bio"),
    Target("folios_put_refs", "put", 22, ret=True,
           note="batched release (mmu_gather zap, release_pages), 6.10+: zone-device "
                "folios are decremented inline there; pageref walks the batch"),
    Target("__folio_put", "put", 5,
           note="last reference dropped, 6.0+ (the folio conversion replaced __put_page)"),
    Target("__put_page", "put", 4, note="last reference dropped, <= 5.19"),
    # free -------------------------------------------------------------------
    Target("free_zone_device_folio", "free", 15,
           note="folio form of free_zone_device_page (6.10+); on kernels where fsdax "
                "mappings hold references it wakes layout waiters"),
    Target("free_zone_device_page", "free", 14,
           note="5.18-6.9 ('mm: simplify freeing of devmap managed pages')"),
    # busy -------------------------------------------------------------------
    Target("dax_layout_busy_page_range", "busy", 16, ret=True,
           note="5.12+ ('dax: Create a range version of dax_layout_busy_page()'); "
                "dax_layout_busy_page and dax_break_layout call it"),
    Target("dax_layout_busy_page", "busy", 17, ret=True, note="before 5.12"),
)
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
    attached: list[dict[str, Any]]
    missing: list[dict[str, str]]
    covered: list[str]
    uncovered: list[str]
    notes: list[str]

    def symbols(self) -> list[str]:
        return [a["symbol"] for a in self.attached]

    def for_probe(self, probe: str) -> list[dict[str, Any]]:
        return [a for a in self.attached if a["probe"] == probe]

    def ret_conventions(self) -> dict[str, int]:
        return {a["symbol"]: a["ret_conv"] for a in self.attached if "ret_conv" in a}

    def header_plan(self) -> list[dict[str, Any]]:
        """The `probe_plan` list written in the trace header."""
        return [dict(a) for a in self.attached]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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
FENTRY_METHOD = {"grab": "fentry+fexit", "free": "fentry", "busy": "fexit"}
FENTRY_SYMBOLS = frozenset({"try_grab_page", "try_grab_folio", "try_grab_folio_fast",
                            "free_zone_device_page", "free_zone_device_folio",
                            "dax_layout_busy_page_range", "dax_layout_busy_page"})
MAPPING_REFS = ("vmf_insert_page_mkwrite", "vmf_insert_folio_pmd", "vmf_insert_folio_pud")


def resolve(facts: KernelFacts, method: str = "kprobe", fentry: bool = False) -> ProbePlan:
    """Resolve the probe plan on `facts`. `method` is the default attach method;
    with `fentry`, grab/free/busy targets that have a BTF prototype use BPF
    trampolines (fentry/fexit) instead of kprobes/kretprobes."""
    attached: list[dict[str, Any]] = []
    missing: list[dict[str, str]] = []
    notes: list[str] = []

    def try_attach(t: Target, why_extra: str = "") -> bool:
        traceable = facts.is_traceable(t.symbol)
        if traceable is None:
            missing.append({"probe": t.probe, "symbol": t.symbol,
                            "why": "not in this kernel" + why_extra})
            return False
        if not traceable:
            missing.append({"probe": t.probe, "symbol": t.symbol,
                            "why": "present but not traceable (inlined, notrace or "
                                   "not in available_filter_functions)"})
            return False
        m = method
        if fentry and t.symbol in FENTRY_SYMBOLS and t.symbol in facts.btf_funcs:
            m = FENTRY_METHOD[t.probe]
        entry: dict[str, Any] = {"probe": t.probe, "symbol": t.symbol, "method": m,
                                 "id": t.id, "return": t.ret}
        sig = _signature(facts, t.symbol)
        if sig:
            entry["signature"] = sig
        if t.symbol in MAPPING_REFS:
            entry["returns"] = "a rise of the refcount between entry and return"
        elif t.probe == "grab":
            proto = facts.btf_funcs.get(t.symbol)
            conv = RET_PTR if t.symbol == "try_grab_folio_fast" else None
            if proto is not None:
                conv = ret_convention(proto["ret"])
            elif t.symbol in facts.header_ret_conv:
                conv = facts.header_ret_conv[t.symbol]
            if conv is None:
                missing.append({"probe": t.probe, "symbol": t.symbol,
                                "why": "no BTF prototype or header declaration: cannot "
                                       "tell a failed grab from a successful one"})
                return False
            entry["ret_conv"] = conv
            entry["returns"] = RET_NAMES[conv]
        attached.append(entry)
        return True

    # grab: every grab function the kernel has is a separate path (on 6.1 GUP of
    # fsdax PMD mappings uses try_grab_page, PTE mappings try_grab_folio).
    for t in TARGETS:
        if t.probe == "grab" and t.symbol not in MAPPING_REFS:
            try_attach(t)
    # Mapping references: only where DAX mappings hold them (no devmap put path).
    devmap_put = any(facts.has_symbol(s) for s in (
        "__put_devmap_managed_folio_refs", "__put_devmap_managed_page_refs",
        "__put_devmap_managed_page"))
    for sym in MAPPING_REFS:
        if facts.has_symbol(sym) and not devmap_put:
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
        if try_attach(BY_SYMBOL["unpin_user_pages"]):
            covered.append("unpin_user_pages(): every page of each call (walked in BPF; "
                           "past 8,192 pages a lost row)")
        for sym in ("unpin_user_pages_dirty_lock", "unpin_user_page_range_dirty_lock"):
            if facts.has_symbol(sym):
                uncovered.append(f"{sym}() with make_dirty: pins dropped by the inlined "
                                 "gup_put_folio, no function to probe")

    devmap = [s for s in ("__put_devmap_managed_folio_refs", "__put_devmap_managed_page_refs",
                          "__put_devmap_managed_page") if facts.has_symbol(s)]
    for sym in devmap[:1]:
        if try_attach(BY_SYMBOL[sym]):
            covered.append(f"put_page() on fsdax pages, through {sym}")
    for sym in devmap[1:]:
        missing.append({"probe": "put", "symbol": sym, "why": f"superseded by {devmap[0]}"})
    if not devmap:
        notes.append("no __put_devmap_managed_*: fsdax pages are refcounted like any "
                     "other folio ('Fix the DAX-gup mistake' series, 6.15)")

    bio_pinned = facts.enums.get("bio_flags", {}).get("BIO_PAGE_PINNED") is not None
    if facts.has_symbol("__bio_release_pages"):
        if bio_pinned:
            missing.append({"probe": "put", "symbol": "__bio_release_pages",
                            "why": "not needed: BIO_PAGE_PINNED bios unpin through "
                                   "unpin_user_folio/unpin_user_page"})
            uncovered.append("bio_release_page() put_page on BIO_PAGE_REFFED bios "
                             "(inline put; only a last reference is seen)")
        elif try_attach(BY_SYMBOL["__bio_release_pages"]):
            covered.append("O_DIRECT bio completion (__bio_release_pages walks the bio: "
                           "every page; past 8,192 pages, lost rows naming the pfn ranges)")
        else:
            uncovered.append("O_DIRECT bio completion: __bio_release_pages not traceable")

    final = "__folio_put" if facts.has_symbol("__folio_put") else "__put_page"
    other = "__put_page" if final == "__folio_put" else "__folio_put"
    if try_attach(BY_SYMBOL[final]):
        covered.append(f"put_page()/folio_put() dropping the last reference, through {final}")
    if facts.has_symbol(other):
        missing.append({"probe": "put", "symbol": other, "why": f"superseded by {final}"})
    uncovered.append("put_page()/folio_put()/folio_put_refs() that leave references "
                     "(inline atomic decrement; nothing to probe" +
                     (", except fsdax pages above)" if devmap else ")"))
    if facts.has_symbol("folios_put_refs") and try_attach(BY_SYMBOL["folios_put_refs"]):
        covered.append("batched releases (munmap/zap mmu_gather, release_pages) through "
                       "folios_put_refs: every folio of each batch")
    elif facts.has_symbol("release_pages"):
        uncovered.append("batched releases (release_pages: munmap, zap, pagevec): "
                         "decrements inline; a page freed there shows as 'free'")

    # free: newest name first
    for sym in ("free_zone_device_folio", "free_zone_device_page"):
        if facts.has_symbol(sym):
            try_attach(BY_SYMBOL[sym])
            break
    else:
        missing.append({"probe": "free", "symbol": "free_zone_device_folio",
                        "why": "not in this kernel (nor free_zone_device_page)"})

    # busy: the _range form; dax_layout_busy_page calls it
    if not try_attach(BY_SYMBOL["dax_layout_busy_page_range"]):
        try_attach(BY_SYMBOL["dax_layout_busy_page"])
    if facts.has_symbol("dax_break_layout"):
        notes.append("dax_break_layout(_final) (6.15+) loops over "
                     "dax_layout_busy_page_range: its busy pages are reported there")

    # Remove 'missing' noise for optional targets the kernel simply does not have
    # when another form was attached for the same logical probe.
    have = {a["probe"] for a in attached}
    for p in LOGICAL:
        if p not in have:
            notes.append(f"no {p} probe can be attached on this kernel")
    return ProbePlan(kernel=facts.release, attached=attached, missing=missing,
                     covered=covered, uncovered=uncovered, notes=notes)
