"""Struct offsets and enum values from the kernel's headers, for kernels
without BTF (and, where BTF exists, to check the headers against it).

bpf/kernel_layout.c turns each fact into a function `fact_<name>` whose code
is `r0 = value; exit`; BCC compiles it against the kernel's headers (no
loading, no root) and the value is read from the bytecode. Members and
enumerators move between kernels (page->index became __folio_index in 6.16,
pgmap moved to the folio): a fact the headers lack is a compile error on its
line, switched off with WANT_<name>=0 for the next compile, and then simply
absent, as it is from BTF. With BTF, each fact BTF knows is compared with the
headers' value, and a disagreement is refused. The read is kept per headers
tree (layout_cache.py): it takes minutes under QEMU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import struct
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pageref.errors import PagerefError
from pageref.tracer import layout_cache
from pageref.tracer.build_cflags import build_cflags
from pageref.tracer.defines import cflags
from pageref.tracer.event import bpf_dir
from pageref.tracer.facts import KernelFacts
from pageref.tracer.plan import RET_PTR, RET_ZERO_OK, ret_convention

PROGRAM = "kernel_layout.c"
UNCHECKED = -1
MAX_ROUNDS = 4   # a round per kind of error is plenty; more means a broken tree
SOURCES = ("auto", "btf", "headers")

_FACT = re.compile(r"^FACT\((\w+),", re.M)
_DIAG = re.compile(r"main\.c:(\d+):\d+: (error|fatal error): (.*)")


@dataclasses.dataclass
class HeaderLayout:
    """What one compile against a headers tree found."""

    values: dict[str, int]       # fact name -> value
    missing: list[str]           # facts these headers do not have
    checked: list[str]           # facts equal to the running kernel's BTF
    headers: str                 # the tree compiled against
    compiles: int = 1            # compiles it took (one more per kind of absence)
    seconds: float = 0.0         # their wall time
    cached: bool = False         # read from layout_cache.py: no compile this time


def program_text() -> str:
    return (bpf_dir() / PROGRAM).read_text()


def fact_names(text: str | None = None) -> list[str]:
    return _FACT.findall(text or program_text())


def _fact_at_line(text: str) -> dict[int, str]:
    return {text.count("\n", 0, m.start()) + 1: m.group(1) for m in _FACT.finditer(text)}


def btf_expectations(facts: KernelFacts) -> dict[str, int]:
    """The values `facts` took from BTF, under their kernel_layout.c names."""
    if not facts.has_btf:
        return {}
    exp: dict[str, int] = {}
    for key, off in facts.offsets.items():
        s, m = key.split(".", 1)
        exp[f"off__{s}__{m}"] = off
    for name, size in facts.sizes.items():
        exp[f"size__{name}"] = size
    for enum in ("zone_type", "memory_type", "bio_flags"):
        for k, v in (facts.enums.get(enum) or {}).items():
            exp[f"enum__{enum}__{k}"] = v
    for k, v in facts.pageflags.items():
        exp[f"enum__pageflags__{k}"] = v
    if facts.foll_source == "btf":
        exp.update({f"const__{k}": v for k, v in facts.foll.items()})
    if facts.pin_bias_source == "btf" and facts.pin_bias is not None:
        exp["const__GUP_PIN_COUNTING_BIAS"] = facts.pin_bias
    proto = facts.btf_funcs.get("try_grab_page")
    conv = ret_convention(proto["ret"]) if proto else None
    if conv is not None:
        exp["ret__try_grab_page"] = conv
    names = set(fact_names())
    return {k: v for k, v in exp.items() if k in names}


def headers_tree() -> Path:
    """The headers BCC compiles against (after kheaders.bcc_environment())."""
    env = os.environ.get("BCC_KERNEL_SOURCE")
    tree = Path(env) if env else Path("/lib/modules", os.uname().release, "build")
    if not (tree / "include").is_dir():
        raise PagerefError(f"no kernel headers at {tree}: install "
                           f"linux-headers-{os.uname().release} (or set BCC_KERNEL_SOURCE)")
    return tree


def read_header_layout(expect: dict[str, int] | None = None) -> HeaderLayout:
    """Read every fact from the kernel's headers (layout_cache.py keeps the read
    per tree) and compare with `expect` (BTF values). Raises PagerefError where
    the headers lack a fact BTF has, or disagree with it."""
    from pageref.tracer.kheaders import bcc_environment

    bcc_environment()
    tree = headers_tree()
    expect = dict(expect or {})
    text = program_text()
    k = layout_cache.key(tree, text)
    read = layout_cache.load(k)
    cached = read is not None
    if read is None:
        read = _compile_facts(text, tree)
        layout_cache.save(k, read)
    values, missing = read.values, read.missing

    def checks(n: str) -> bool:
        return expect.get(n, UNCHECKED) >= 0

    # (constants are exempt: FOLL_PIN is private to mm/internal.h from 6.2)
    lacking = [n for n in missing if checks(n) and not n.startswith("const__")]
    if lacking:
        raise PagerefError(f"the kernel headers in {tree} lack "
                           f"{', '.join(_pretty(n) for n in lacking)}, which the "
                           "running kernel's BTF has: they are not this kernel's headers")
    disagree = [n for n in values if checks(n) and values[n] != expect[n]]
    if disagree:
        parts = [f"{_pretty(n)}: headers {values[n]}, BTF {expect[n]}" for n in disagree]
        raise PagerefError(f"the kernel headers in {tree} disagree with the running kernel's "
                           f"BTF ({'; '.join(parts)}): they are not this kernel's headers; "
                           f"install linux-headers-{os.uname().release}")
    return HeaderLayout(values=values, missing=missing,
                        checked=[n for n in values if checks(n)], headers=str(tree),
                        compiles=read.compiles, seconds=read.seconds, cached=cached)


def _compile_facts(text: str, tree: Path) -> layout_cache.HeadersRead:
    """Compile until every fact the headers have compiles: a fact they lack is
    an error on its line, switched off (WANT_<name>=0) for the next round."""
    names = fact_names(text)
    want = dict.fromkeys(names, 1)
    at_line = _fact_at_line(text)
    t0 = time.monotonic()
    for rounds in range(1, MAX_ROUNDS + 1):
        bpf, diags = _compile(text, want, build_cflags(tree))
        if bpf is not None:
            try:
                values = {n: _returned_value(bpf.dump_func(f"fact_{n}".encode()), n)
                          for n in names if want[n]}
            finally:
                bpf.cleanup()
            return layout_cache.HeadersRead(values, [n for n in names if not want[n]],
                                            rounds, round(time.monotonic() - t0, 1))
        failed: dict[str, str] = {}
        for line, _kind, msg in diags:
            name = at_line.get(line)
            if name is None:
                raise PagerefError(f"cannot compile against the kernel headers in {tree}: "
                                   f"{msg}")
            failed.setdefault(name, msg)
        if not failed:
            first = next((m for _, _, m in diags), "no diagnostic")
            raise PagerefError(f"cannot compile against the kernel headers in {tree}: {first}")
        for n in failed:
            want[n] = 0
    raise PagerefError(f"cannot compile against the kernel headers in {tree} "
                       f"(still failing after {MAX_ROUNDS} rounds)")


def _pretty(name: str) -> str:
    kind, _, rest = name.partition("__")
    if kind == "off":
        s, _, m = rest.partition("__")
        return f"struct {s}.{m}"
    if kind == "size":
        return f"sizeof({rest})"
    if kind == "enum":
        e, _, k = rest.partition("__")
        return f"enum {e} {k}"
    if kind == "ret":
        return f"{rest}() return type"
    return rest


def _compile(text: str, want: dict[str, int],
             extra: list[str]) -> tuple[Any | None, list[tuple[int, str, str]]]:
    try:
        from bcc import BPF
    except ImportError:
        raise PagerefError("BCC is not importable (python3-bpfcc); it compiles the kernel "
                           "headers' layout: apt-get install python3-bpfcc") from None

    defs = {f"WANT_{n}": w for n, w in want.items()}
    flags = [*cflags(defs), *extra, "-Wno-unused-function", "-ferror-limit=0"]
    with _stderr_captured() as err:
        try:
            bpf = BPF(text=text.encode(), cflags=flags)
        except Exception:  # bcc raises bare Exception; the diagnostics say why
            bpf = None
    diags = [(int(m.group(1)), m.group(2), m.group(3)) for m in _DIAG.finditer("".join(err))]
    return bpf, diags


@contextlib.contextmanager
def _stderr_captured() -> Iterator[list[str]]:
    """clang's diagnostics go to fd 2: collect them (the list gets the text)."""
    out: list[str] = []
    with tempfile.TemporaryFile(mode="w+", errors="replace") as f:
        saved = os.dup(2)
        try:
            os.dup2(f.fileno(), 2)
            yield out
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            f.seek(0)
            out.append(f.read())


def _returned_value(code: bytes, name: str) -> int:
    """The constant of `r0 = K; exit` (BPF_ALU64|BPF_MOV|BPF_K 0xb7, the 32-bit
    0xb4, or a 16-byte BPF_LD|BPF_IMM|BPF_DW 0x18 for wider values)."""
    if len(code) >= 16 and code[0] in (0xB7, 0xB4) and code[8] == 0x95:
        return struct.unpack_from("<i", code, 4)[0]
    if len(code) >= 24 and code[0] == 0x18 and code[16] == 0x95:
        lo, hi = struct.unpack_from("<I", code, 4)[0], struct.unpack_from("<I", code, 12)[0]
        return hi << 32 | lo
    raise PagerefError(f"unexpected code for layout fact {name}: {code[:24].hex()}")


def apply_layout(facts: KernelFacts, layout: HeaderLayout) -> None:
    """Fill `facts` (a kernel without BTF) from the headers' values."""
    for name, value in layout.values.items():
        kind, _, rest = name.partition("__")
        if kind == "off":
            s, _, m = rest.partition("__")
            facts.offsets[f"{s}.{m}"] = value
        elif kind == "size":
            facts.sizes[rest] = value
        elif kind == "enum":
            enum, _, k = rest.partition("__")
            if enum == "pageflags":
                facts.pageflags[k] = value
            else:
                facts.enums.setdefault(enum, {})[k] = value
        elif kind == "const" and rest == "GUP_PIN_COUNTING_BIAS":
            if facts.pin_bias is None:
                facts.pin_bias, facts.pin_bias_source = value, "headers"
        elif kind == "ret" and value:
            facts.header_ret_conv[rest] = value
    foll = {n.removeprefix("const__"): v for n, v in layout.values.items()
            if n.startswith("const__FOLL_")}
    if facts.foll_source is None and "FOLL_PIN" in foll and "FOLL_GET" in foll:
        facts.foll, facts.foll_source = foll, "headers"
    if "try_grab_folio" not in facts.header_ret_conv and facts.has_symbol("try_grab_folio"):
        # Declared in mm/internal.h, which no headers package ships. The commit that
        # added try_grab_folio_fast ("mm: gup: stop abusing try_grab_folio",
        # f442fa614137) also made try_grab_folio take a folio and return 0 on
        # success; before it, it returned the folio.
        fast = facts.has_symbol("try_grab_folio_fast")
        facts.header_ret_conv["try_grab_folio"] = RET_ZERO_OK if fast else RET_PTR
    if "try_grab_compound_head" not in facts.header_ret_conv \
            and facts.has_symbol("try_grab_compound_head"):
        # static in mm/gup.c (no header declares it) for as long as it existed:
        # from "mm/gup: track FOLL_PIN pages" (5.7) until it became
        # try_grab_folio (5.18) it returned the head page, NULL when refused.
        facts.header_ret_conv["try_grab_compound_head"] = RET_PTR
    facts.layout_source = "headers"
    facts.layout_note = f"from the kernel headers in {layout.headers}"


def live_facts(source: str = "auto") -> KernelFacts:
    """The running kernel's facts with a struct layout from `source`: "btf",
    "headers" (checked against BTF where the kernel has it), or "auto" (BTF
    when the kernel has it, else headers)."""
    if source not in SOURCES:
        raise PagerefError(f"unknown layout source {source!r} (one of {', '.join(SOURCES)})")
    facts = KernelFacts.live()
    if source == "btf" and not facts.has_btf:
        raise PagerefError("the kernel has no BTF (/sys/kernel/btf/vmlinux); drop "
                           "--layout btf to read the layout from the kernel headers")
    if source == "headers" or not facts.has_btf:
        layout = read_header_layout(btf_expectations(facts))
        # without BTF the facts already read are the bare ones: no second read
        # of kallsyms and tracefs
        bare = KernelFacts.live(btf=False) if facts.has_btf else facts
        apply_layout(bare, layout)
        cost = f"{layout.compiles} compiles, {layout.seconds} s"
        bare.layout_note = (f"from the kernel headers in {layout.headers} ("
                            + (f"cached: {cost} when first read" if layout.cached else cost)
                            + ")"
                            + (f", {len(layout.checked)} values checked equal to the "
                               "running kernel's BTF" if layout.checked else
                               "; no BTF to check them against"))
        facts = bare
    return facts
