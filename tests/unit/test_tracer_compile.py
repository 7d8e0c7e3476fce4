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
])
def test_compile_and_load_every_handler(bcc_env, gen, opts):
    from pageref.tracer.recorder import compile_program, program_text

    facts = KernelFacts.load(FIX / gen)
    d = defines(facts, resolve(facts), opts)
    t0 = time.monotonic()
    b = compile_program(d)
    elapsed = time.monotonic() - t0
    try:
        for fn in re.findall(r"^int ((?:on|ret)_\w+)\(", program_text(), re.M):
            if "bio_release" in fn and "OFF_BVEC_PAGE" not in d:
                continue
            b.load_func(fn.encode(), bcc_env.BPF.KPROBE)  # verifier accepts it; nothing attached
    finally:
        b.cleanup()
    assert elapsed < 60, f"compile took {elapsed:.1f}s"


def test_missing_define_fails_to_compile(bcc_env):
    from pageref.errors import PagerefError
    from pageref.tracer.recorder import compile_program

    facts = KernelFacts.load(FIX / "6.1")
    d = defines(facts, resolve(facts), Options())
    del d["OFF_PAGE_REFCOUNT"]
    with pytest.raises(PagerefError, match="compile failed"):
        compile_program(d)
