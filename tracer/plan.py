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
import enum
from collections.abc import Sequence
from typing import Any

from pageref.trace.header import CoverageRecord
from pageref.trace.plan_record import LeftOut
from pageref.tracer.defines import BIO_WALK, FBATCH_WALK, optional_defines
from pageref.tracer.facts import KernelFacts

GRAB_KINDS = ("get", "pin", "grab_failed")
GET, PUT, UNPIN, FREE, BUSY = ("get",), ("put",), ("unpin",), ("free",), ("busy",)


@dataclasses.dataclass(frozen=True)
class Target:
    symbol: str
    probe: str            # logical probe: grab | put | free | busy
    id: int               # PROBE_* in bpf/pageref.h
    kinds: tuple[str, ...]  # event kinds its handlers emit (trace/schema.py KINDS)
    entry: bool = True    # has on_<symbol>
    ret: bool = False     # has ret_<symbol>
    note: str = ""        # what it is and the kernel commit that made it so
    requires: frozenset[str] = frozenset()  # -D defines its handler needs (defines.py)


class AttachMethod(str, enum.Enum):
    """How a target is attached. Kprobes everywhere; BPF trampolines where the
    plan allows and the kernel accepts them."""

    KPROBE = "kprobe"
    FENTRY_FEXIT = "fentry+fexit"
    FENTRY = "fentry"
    FEXIT = "fexit"

    @property
    def trampoline(self) -> bool:
        """BCC attaches trampolines when it loads the program (no attach_kprobe)."""
        return self is not AttachMethod.KPROBE


@dataclasses.dataclass(frozen=True)
class Attached:
    """One target the plan attaches, and how."""

    target: Target
    method: AttachMethod
    signature: str | None = None   # BTF prototype, where known
    returns: str | None = None     # how success is told (grab), or what is measured
    ret_conv: int | None = None    # RET_* of a grab function

    @property
    def symbol(self) -> str:
        return self.target.symbol

    @property
    def probe(self) -> str:
        return self.target.probe

    @property
    def ret(self) -> bool:
        return self.target.ret

    def header_entry(self) -> dict[str, Any]:
        """The object trace/plan_record.py PlanEntry reads."""
        d: dict[str, Any] = {"probe": self.probe, "symbol": self.symbol,
                             "method": self.method.value, "id": self.target.id,
                             "return": self.ret, "kinds": list(self.target.kinds)}
        if self.signature:
            d["signature"] = self.signature
        if self.returns:
            d["returns"] = self.returns
        if self.ret_conv is not None:
            d["ret_conv"] = self.ret_conv
        return d


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
    Target("__put_devmap_managed_folio_refs", "put", 8, PUT,
           note="fsdax put, folio form of the next (6.8+); removed by the "
                "'fs/dax: Fix ZONE_DEVICE page reference counts' (DAX-gup) series, 6.15"),
    Target("__put_devmap_managed_page_refs", "put", 7, PUT,
           note="fsdax put with a count, 5.19+ ('mm: add "
                "__put_devmap_managed_page_refs')"),
    Target("__put_devmap_managed_page", "put", 6, PUT, note="fsdax put before 5.19"),
    Target("__bio_release_pages", "put", 13, PUT, ret=True, requires=BIO_WALK,
           note="O_DIRECT completion; before BIO_PAGE_PINNED ('block: Add BIO_PAGE_PINNED "
                "and associated infrastructure', a8affc03a9b3, 6.5) it puts each page "
                "inline: pageref walks the bio"),
    Target("folios_put_refs", "put", 22, PUT, ret=True, requires=FBATCH_WALK,
           note="batched release (mmu_gather zap, release_pages), 6.10+: zone-device "
                "folios are decremented inline there; pageref walks the batch"),
    Target("__folio_put", "put", 5, PUT,
           note="last reference dropped, 6.0+ (the folio conversion replaced __put_page)"),
    Target("__put_page", "put", 4, PUT, note="last reference dropped, <= 5.19"),
    # free -------------------------------------------------------------------
    Target("free_zone_device_folio", "free", 15, FREE,
           note="folio form of free_zone_device_page (6.10+); on kernels where fsdax "
                "mappings hold references it wakes layout waiters"),
    Target("free_zone_device_page", "free", 14, FREE,
           note="5.18-6.9 ('mm: simplify freeing of devmap managed pages')"),
    # busy -------------------------------------------------------------------
    Target("dax_layout_busy_page_range", "busy", 16, BUSY, ret=True,
           note="5.12+ ('dax: Create a range version of dax_layout_busy_page()'); "
                "dax_layout_busy_page and dax_break_layout call it"),
    Target("dax_layout_busy_page", "busy", 17, BUSY, ret=True, note="before 5.12"),
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
                            "free_zone_device_page", "free_zone_device_folio",
                            "dax_layout_busy_page_range", "dax_layout_busy_page"})
MAPPING_REFS = ("vmf_insert_page_mkwrite", "vmf_insert_folio_pmd", "vmf_insert_folio_pud")


def resolve(facts: KernelFacts, fentry: bool = False) -> ProbePlan:
    """Resolve the probe plan on `facts`: kprobes (and kretprobes); with `fentry`,
    grab/free/busy targets that have a BTF prototype use BPF trampolines
    (fentry/fexit) instead."""
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
        leave_out(sym, f"superseded by {devmap[0]}")
    if not devmap:
        notes.append("no __put_devmap_managed_*: fsdax pages are refcounted like any "
                     "other folio ('Fix the DAX-gup mistake' series, 6.15)")

    bio_pinned = facts.enums.get("bio_flags", {}).get("BIO_PAGE_PINNED") is not None
    if facts.has_symbol("__bio_release_pages"):
        if bio_pinned:
            leave_out("__bio_release_pages", "not needed: BIO_PAGE_PINNED bios unpin "
                                             "through unpin_user_folio/unpin_user_page")
            uncovered.append("bio_release_page() put_page on BIO_PAGE_REFFED bios "
                             "(inline put; only a last reference is seen)")
        elif try_attach(BY_SYMBOL["__bio_release_pages"]):
            covered.append("O_DIRECT bio completion (__bio_release_pages walks the bio: "
                           "every page; past 8,192 pages, lost rows naming the pfn ranges)")
        else:
            uncovered.append("O_DIRECT bio completion: __bio_release_pages not attached "
                             "(see 'not attached')")

    final = "__folio_put" if facts.has_symbol("__folio_put") else "__put_page"
    other = "__put_page" if final == "__folio_put" else "__folio_put"
    if try_attach(BY_SYMBOL[final]):
        covered.append(f"put_page()/folio_put() dropping the last reference, through {final}")
    if facts.has_symbol(other):
        leave_out(other, f"superseded by {final}")
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
        leave_out("free_zone_device_folio", "not in this kernel (nor free_zone_device_page)",
                  probe="free")

    # busy: the _range form; dax_layout_busy_page calls it
    if not try_attach(BY_SYMBOL["dax_layout_busy_page_range"]):
        try_attach(BY_SYMBOL["dax_layout_busy_page"])
    if facts.has_symbol("dax_break_layout"):
        notes.append("dax_break_layout(_final) (6.15+) loops over "
                     "dax_layout_busy_page_range: its busy pages are reported there")

    # Remove 'missing' noise for optional targets the kernel simply does not have
    # when another form was attached for the same logical probe.
    have = {a.probe for a in attached}
    for p in LOGICAL:
        if p not in have:
            notes.append(f"no {p} probe can be attached on this kernel")
    return ProbePlan(kernel=facts.release, attached=attached, missing=missing,
                     covered=covered, uncovered=uncovered, notes=notes)
