"""BCC compiles (and the host verifier loads, without attaching) the BPF program with
the defines of each recorded kernel. Attaching needs kprobes: only in the lab."""

from __future__ import annotations

import glob
import os
import re
import time
from pathlib import Path

import pytest

from pageref.tracer.defines import Options, defines
from pageref.tracer.facts import KernelFacts
from pageref.tracer.plan import resolve

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "kernels"


def _headers() -> str | None:
    rel = os.uname().release
    if os.path.isdir(f"/lib/modules/{rel}/build"):
        return None  # BCC finds them itself
    cands = sorted(glob.glob("/usr/src/linux-headers-*-amd64"))
    return cands[-1] if cands else ""


pytestmark = [
    pytest.mark.bpf,
    pytest.mark.skipif(os.geteuid() != 0, reason="BCC creates maps: needs root"),
    pytest.mark.skipif(_headers() == "", reason="no kernel headers for BCC"),
]


@pytest.fixture(scope="module")
def bcc_env():
    bcc = pytest.importorskip("bcc")
    hdr = _headers()
    old = os.environ.get("BCC_KERNEL_SOURCE")
    if hdr:
        from pageref.tracer.kheaders import merged_tree
        os.environ["BCC_KERNEL_SOURCE"] = str(merged_tree(Path(hdr)))
    yield bcc
    if old is None:
        os.environ.pop("BCC_KERNEL_SOURCE", None)
    else:
        os.environ["BCC_KERNEL_SOURCE"] = old


@pytest.mark.parametrize("gen, opts", [
    ("6.1", Options()),
    ("6.1", Options(stacks=True, filter_pids=True, pgmap_types=(3,), ringbuf=False)),
    ("6.12", Options(all_pages=True)),
    ("7.2", Options(cgroup_id=12345)),
    ("5.10", Options()),
    ("6.12-debug", Options(stacks=True)),
    ("6.12-debug", Options(ringbuf=False)),
])
def test_compile_and_load_every_handler(bcc_env, gen, opts):
    from pageref.tracer.program import compile_program

    facts = KernelFacts.load(FIX / gen)
    d = defines(facts, resolve(facts), opts)
    t0 = time.monotonic()
    b = compile_program(d)
    elapsed = time.monotonic() - t0
    try:
        for fn in compiled_handlers(d):
            b.load_func(fn.encode(), bcc_env.BPF.KPROBE)  # verifier accepts it; nothing attached
        for fn in page_ref_handlers(d):
            b.load_func(fn.encode(), bcc_env.BPF.RAW_TRACEPOINT)
    finally:
        b.cleanup()
    assert elapsed < 60, f"compile took {elapsed:.1f}s"


def page_ref_handlers(d: dict[str, int]) -> list[str]:
    """The page_ref tracepoint handlers (bpf/page_ref.bpf.c), compiled under
    HAVE_PAGE_REF: one per tracer/page_ref.py target."""
    from pageref.tracer.event import bpf_dir
    from pageref.tracer.page_ref import HAVE_DEFINE, PAGE_REF_NAMES

    if HAVE_DEFINE not in d:
        return []
    text = (bpf_dir() / "page_ref.bpf.c").read_text()  # appended by program_text()
    found = re.findall(r"^int (on_\w+)\(", text, re.M)
    assert sorted(found) == sorted(f"on_{n}" for n in PAGE_REF_NAMES)
    return found


def test_page_ref_define_only_where_the_plan_attaches_them():
    from pageref.tracer.page_ref import HAVE_DEFINE

    debug = KernelFacts.load(FIX / "6.12-debug")
    assert HAVE_DEFINE in defines(debug, resolve(debug), Options())
    assert HAVE_DEFINE not in defines(debug, resolve(debug, page_ref=False), Options())
    stock = KernelFacts.load(FIX / "6.12")
    assert HAVE_DEFINE not in defines(stock, resolve(stock), Options())


def compiled_handlers(d: dict[str, int]) -> list[str]:
    """on_/ret_ handlers the program has with defines `d`: all, but those under
    an `#ifdef HAVE_<SYMBOL>` guard only with that define (defines.py emits it for
    the targets the plan attaches)."""
    from pageref.tracer.plan import BY_SYMBOL
    from pageref.tracer.program import program_text

    text = program_text()
    guarded = set(re.findall(r"^#ifdef HAVE_(\w+)$", text, re.M))
    out = []
    for fn in re.findall(r"^int ((?:on|ret)_\w+)\(", text, re.M):
        t = BY_SYMBOL[fn.split("_", 1)[1]]
        if t.probe == "ref":
            continue  # raw tracepoints: page_ref_handlers()
        if t.symbol.upper() in guarded and f"HAVE_{t.symbol.upper()}" not in d:
            continue
        out.append(fn)
    # a walk program (recorder.WALKS) is compiled where one of its starters is
    from pageref.tracer.program import WALKS
    for _index, fn, starters in WALKS:
        if any(s.upper() not in guarded or f"HAVE_{s.upper()}" in d for s in starters):
            out.append(fn)
    return out


@pytest.mark.parametrize("drop", [("bio_vec.bv_len",), ("folio_batch.nr",),
                                  ("bio.bi_vcnt", "folio_batch.folios")])
def test_plan_without_optional_offsets_compiles(bcc_env, drop):
    """Offsets a kernel does not give: the plan leaves their targets out, and the
    program compiles and loads without them (6.1, both walks planned when complete)."""
    from pageref.tracer.program import compile_program

    facts = KernelFacts.load(FIX / "6.1")
    for key in drop:
        del facts.offsets[key]
    plan = resolve(facts)
    d = defines(facts, plan, Options())
    b = compile_program(d)
    try:
        handlers = compiled_handlers(d)
        for fn in handlers:
            b.load_func(fn.encode(), bcc_env.BPF.KPROBE)
    finally:
        b.cleanup()
    for sym in plan.symbols():   # every attached target's handler is in the program
        assert f"on_{sym}" in handlers or f"ret_{sym}" in handlers, sym
    if "bio_vec.bv_len" in drop or "bio.bi_vcnt" in drop:
        assert "on___bio_release_pages" not in handlers
        assert "__bio_release_pages" not in plan.symbols()


def test_missing_define_fails_to_compile(bcc_env):
    from pageref.errors import PagerefError
    from pageref.tracer.program import compile_program

    facts = KernelFacts.load(FIX / "6.1")
    d = defines(facts, resolve(facts), Options())
    del d["OFF_PAGE_REFCOUNT"]
    with pytest.raises(PagerefError, match="compile failed"):
        compile_program(d)


def test_planned_walk_without_its_offsets_fails_to_compile(bcc_env):
    """The BPF side refuses a HAVE_ guard whose offsets are missing (a plan bug)."""
    from pageref.errors import PagerefError
    from pageref.tracer.program import compile_program

    facts = KernelFacts.load(FIX / "6.1")
    d = defines(facts, resolve(facts), Options())
    assert d["HAVE___BIO_RELEASE_PAGES"] == 1
    del d["OFF_BVEC_LEN"]
    with pytest.raises(PagerefError, match="compile failed"):
        compile_program(d)
