"""The kernel's page_ref:* tracepoints as a probe source (logical probe "ref").

A kernel built with CONFIG_DEBUG_PAGE_REF fires one of these after every change
of a page's _refcount (include/linux/page_ref.h; mm/debug_page_ref.c defines
them), the inline puts no function probe can see included. Debian's kernels
build it off; the lab's `6.12-debug` (lab/debug_config.py) and distribution
debug kernels have it. Where the kernel has them, the plan attaches all seven
as raw tracepoints (bpf/page_ref.bpf.c: on_<tracepoint>) and every change of a
ZONE_DEVICE page's refcount becomes a `ref` row (docs/trace-format.md).

Present since the tracepoints were added ('mm/page_ref: add tracepoint to track
down page reference manipulation', 95813b8faa0c, 4.6); a kernel has them when
kallsyms lists `__tracepoint_<name>` (no version is compared).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from pageref.trace.plan_record import LeftOut
from pageref.tracer.targets import Attached, AttachMethod, Target

if TYPE_CHECKING:   # facts.py wants MARKERS from here
    from pageref.tracer.facts import KernelFacts

REF = ("ref",)
# (tracepoint, PROBE_* id in bpf/pageref.h, what fires it)
_TRACEPOINTS = (
    ("page_ref_set", 29, "set_page_count()/folio_set_count(): count set, change unknown"),
    ("page_ref_mod", 30, "page_ref_add/sub/inc/dec (folio_get, gup pins, inline puts)"),
    ("page_ref_mod_and_test", 31, "page_ref_sub_and_test/dec_and_test (folio_put_refs)"),
    ("page_ref_mod_and_return", 32, "page_ref_inc_return/dec_return, folio_ref_sub_return"),
    ("page_ref_mod_unless", 33, "page_ref_add_unless (folio_try_get, gup-fast); only "
                                "when it added"),
    ("page_ref_freeze", 34, "page_ref_freeze (migration, split); only when it froze"),
    ("page_ref_unfreeze", 35, "page_ref_unfreeze"),
)
PAGE_REF_TARGETS: tuple[Target, ...] = tuple(
    Target(name, "ref", pid, REF, note=f"page_ref:{name}: {what}")
    for name, pid, what in _TRACEPOINTS)
PAGE_REF_NAMES = tuple(t.symbol for t in PAGE_REF_TARGETS)
# -D define that compiles bpf/page_ref.bpf.c into the program
HAVE_DEFINE = "HAVE_PAGE_REF"


def marker(name: str) -> str:
    """The kallsyms symbol that says the kernel has tracepoint `name`."""
    return f"__tracepoint_{name}"


MARKERS = tuple(marker(n) for n in PAGE_REF_NAMES)


def resolve_page_ref(facts: KernelFacts, wanted: bool,
                     leave_out: Callable[[LeftOut], None]) -> tuple[list[Attached], list[str]]:
    """The page_ref targets to attach and the coverage lines they add. All seven
    or none: a history is complete only with every kind of change."""
    absent = [n for n in PAGE_REF_NAMES if not facts.has_symbol(marker(n))]
    if not wanted:
        leave_out(LeftOut("ref", "page_ref:*", "not asked for (--no-page-ref)"))
        return [], []
    if absent == list(PAGE_REF_NAMES):
        leave_out(LeftOut("ref", "page_ref:*", "not in this kernel (CONFIG_DEBUG_PAGE_REF "
                                               "off): refcount changes no probe above "
                                               "covers are not recorded"))
        return [], []
    if absent:
        leave_out(LeftOut("ref", "page_ref:*", f"only part of them in this kernel (no "
                                               f"{', '.join(absent)}): not attached"))
        return [], []
    attached = [Attached(t, AttachMethod.RAW_TRACEPOINT) for t in PAGE_REF_TARGETS]
    return attached, ["every change of a ZONE_DEVICE page's refcount, inline ones included, "
                      "through the kernel's page_ref tracepoints (CONFIG_DEBUG_PAGE_REF): "
                      "`ref` rows"]
