"""The `pageref probes` report: plan, missing targets, covered/uncovered drops."""

from __future__ import annotations

from typing import Any

from pageref.errors import PagerefError
from pageref.tracer import kernel_rules
from pageref.tracer.defines import layout
from pageref.tracer.facts import KernelFacts
from pageref.tracer.plan import LOGICAL, resolve


def plan_report(facts: KernelFacts) -> dict[str, Any]:
    """Everything `pageref probes` shows, as a dict with a "text" rendering."""
    fentry = facts.has_btf and facts.caps.get("fentry") is not False
    plan = resolve(facts, fentry=fentry)
    idle, idle_why = kernel_rules.idle_refcount(facts)
    bias, bias_src = kernel_rules.pin_bias(facts)
    lines = [f"kernel {facts.release or '?'} ({facts.source})"]
    caps = facts.caps
    if caps:
        lines.append("  kprobes: " + _yn(caps.get("kprobes")) + "   fentry: "
                     + _yn(caps.get("fentry")) + "   BTF: " + _yn(caps.get("btf")))
    if fentry:
        lines.append("  (fentry/fexit where the kernel accepts BPF trampolines; `record` "
                     "falls back to kprobes if it refuses)")
    for probe in LOGICAL:
        entries = plan.for_probe(probe)
        lines.append(f"{probe}:")
        if not entries:
            lines.append("  (nothing to attach)")
        for e in entries:
            ret = "  + return" if e.ret else ""
            sig = e.signature or e.symbol
            lines.append(f"  {e.method.value:12} {sig}{ret}")
            if e.returns:
                lines.append(f"          success: {e.returns}")
    refs = plan.for_probe("ref")
    if refs:
        lines.append("ref (the kernel's page_ref tracepoints, every refcount change):")
        lines.append("  raw_tracepoint " + ", ".join(e.symbol for e in refs))
    if plan.missing:
        lines.append("not attached:")
        for m in plan.missing:
            lines.append(f"  {m.probe:5} {m.symbol}: {m.why}")
    lines.append("drop paths covered:")
    lines += [f"  + {c}" for c in plan.covered]
    lines.append("drop paths NOT covered (and what else changes the count unseen):")
    lines += [f"  - {u}" for u in plan.uncovered]
    for n in plan.notes:
        lines.append(f"note: {n}")
    lay_d: dict[str, Any] = {}
    try:
        lay = layout(facts)
        lay_d = {"offsets": lay.off, "zones_pgshift": lay.zones_pgshift,
                 "zones_mask": lay.zones_mask, "zone_device": lay.zone_device,
                 "nodes_shift": lay.nodes_shift, "sizeof_page": lay.sizeof_page,
                 "vmemmap": (f"vmemmap_base at {lay.vmemmap_base_addr:#x}"
                             if lay.vmemmap_base_addr
                             else f"constant {lay.vmemmap_start or 0:#x}")}
        src = {"btf": "BTF", "headers": "kernel headers"}.get(facts.layout_source or "", "?")
        lines.append(f"page layout ({src}): " + ", ".join(f"{k}={v}" for k, v in lay.off.items()))
        if facts.layout_note:
            lines.append(f"  layout {facts.layout_note}")
        lay_d["source"] = facts.layout_source
        lines.append(f"  zone = (flags >> {lay.zones_pgshift}) & {lay.zones_mask}, "
                     f"ZONE_DEVICE = {lay.zone_device}; pfn from {lay_d['vmemmap']}")
        for n in lay.notes:
            lines.append(f"note: {n}")
    except PagerefError as e:
        lines.append(f"page layout: cannot record here: {e}")
        lay_d = {"error": str(e)}
    if facts.foll:
        lines.append("GUP flags (" + (facts.foll_source or "?") + "): " +
                     ", ".join(f"{k}={v:#x}" for k, v in sorted(facts.foll.items())))
    lines.append(f"pin bias: {bias} ({bias_src})")
    lines.append("idle refcount: " + ", ".join(f"{k} {v}" for k, v in idle.items())
                 + f" ({idle_why})")
    return {"kernel": facts.release, "plan": plan.to_dict(), "layout": lay_d,
            "idle_refcount": idle, "idle_refcount_reason": idle_why, "pin_bias": bias,
            "foll": facts.foll, "text": "\n".join(lines) + "\n"}


def _yn(v: bool | None) -> str:
    return "unknown" if v is None else ("yes" if v else "no")
