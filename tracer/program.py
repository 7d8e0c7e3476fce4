"""The BPF program: its text (bpf/pageref.bpf.c and the handler files appended
to it), its compile with a kernel's -D defines, and the walk programs the
recorder loads into its prog array. tracer/recorder.py attaches it."""

from __future__ import annotations

import os
from typing import Any

from pageref.errors import PagerefError
from pageref.tracer.defines import cflags
from pageref.tracer.event import bpf_dir
from pageref.tracer.facts import KernelFacts

PROGRAM = "pageref.bpf.c"
# (index in the BPF `walks` prog array (WALK_*), program, the probes that start it)
WALKS = ((0, "walk_bio", ("__bio_release_pages", "bio_release_pages")),
         (1, "walk_unpin", ("unpin_user_pages", "unpin_user_pages_dirty_lock")))
BPF_PROG_TYPE_KPROBE = 2    # uapi enum bpf_prog_type (bcc's BPF.KPROBE)


# Handler files appended to the main program: BCC makes BPF programs only of
# functions in its main text, not of an #include's. Each is guarded inside by
# the define that compiles it.
PARTS = ("page_ref.bpf.c",)


def program_text() -> str:
    return "\n".join((bpf_dir() / name).read_text() for name in (PROGRAM, *PARTS))


def compile_program(defs: dict[str, int]) -> Any:
    """Compile (and load nothing): returns the bcc.BPF object. Raises PagerefError."""
    try:
        from bcc import BPF
    except ImportError:
        raise PagerefError("BCC is not importable (python3-bpfcc); install it: "
                           "apt-get install python3-bpfcc bpfcc-tools") from None
    from pageref.tracer.kheaders import bcc_environment

    bcc_environment()
    flags = cflags(defs) + [f"-I{bpf_dir()}", "-Wno-unused-function", "-Wno-ignored-attributes"]
    try:
        return BPF(text=program_text().encode(), cflags=flags)  # bytes: BCC warns on str
    except Exception as e:  # bcc raises bare Exception
        raise PagerefError(f"BPF compile failed ({e}); kernel headers for BCC missing? "
                           f"install linux-headers-{os.uname().release} "
                           "or run `pageref doctor`") from None


def has_ringbuf(facts: KernelFacts) -> bool:
    """BPF_MAP_TYPE_RINGBUF (5.8+) in the kernel's enum bpf_map_type."""
    if facts.has_btf:
        return "BPF_MAP_TYPE_RINGBUF" in (facts.enums.get("bpf_map_type") or {})
    return facts.has_symbol("bpf_ringbuf_output")  # no BTF: the helper's presence
