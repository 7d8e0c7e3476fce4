"""The probe plan's data shapes: a `Target` (one kernel function or tracepoint
the BPF program has handlers for), how it is attached (`AttachMethod`) and a
target the plan attaches (`Attached`). tracer/plan.py resolves them."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any


@dataclasses.dataclass(frozen=True)
class Target:
    symbol: str
    probe: str            # logical probe: grab | put | free | busy (| ref: page_ref.py)
    id: int               # PROBE_* in bpf/pageref.h
    kinds: tuple[str, ...]  # event kinds its handlers emit (trace/schema.py KINDS)
    entry: bool = True    # has on_<symbol>
    ret: bool = False     # has ret_<symbol>
    note: str = ""        # what it is and the kernel commit that made it so
    requires: frozenset[str] = frozenset()  # -D defines its handler needs (defines.py)


class AttachMethod(str, enum.Enum):
    """How a target is attached. Kprobes everywhere; BPF trampolines where the
    plan allows and the kernel accepts them; raw tracepoints for the kernel's
    page_ref tracepoints (tracer/page_ref.py)."""

    KPROBE = "kprobe"
    FENTRY_FEXIT = "fentry+fexit"
    FENTRY = "fentry"
    FEXIT = "fexit"
    RAW_TRACEPOINT = "raw_tracepoint"

    @property
    def trampoline(self) -> bool:
        """BCC attaches trampolines when it loads the program (no attach_kprobe)."""
        return self in (AttachMethod.FENTRY_FEXIT, AttachMethod.FENTRY, AttachMethod.FEXIT)


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
