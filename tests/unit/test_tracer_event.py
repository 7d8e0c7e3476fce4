"""The event struct: C header (compiled by a C compiler) and the Python mirror agree;
the ids and kinds the header defines are the ones Python decodes."""

from __future__ import annotations

import ctypes
import shutil
import subprocess

import pytest

from pageref.trace.schema import KINDS
from pageref.tracer.decode import EVENT_DTYPE
from pageref.tracer.event import KIND_NAMES, PagerefEvent, bpf_dir, header_defines
from pageref.tracer.plan import BY_ID, TARGETS

PROG = r"""
#include <stdio.h>
#include <stddef.h>
#include <linux/types.h>
#include "pageref.h"
#define F(m) printf("%s %zu %zu\n", #m, offsetof(struct pageref_event, m), \
                    sizeof(((struct pageref_event *)0)->m));
int main(void) {
    printf("size %zu 0\n", sizeof(struct pageref_event));
    %FIELDS%
    return 0;
}
"""


@pytest.mark.skipif(not shutil.which("cc"), reason="no C compiler")
def test_c_header_matches_ctypes_mirror(tmp_path):
    names = [n for n, _ in PagerefEvent._fields_]
    src = PROG.replace("%FIELDS%", " ".join(f"F({n})" for n in names))
    (tmp_path / "t.c").write_text(src)
    exe = tmp_path / "t"
    subprocess.run(["cc", "-I", str(bpf_dir()), "-o", str(exe), str(tmp_path / "t.c")],
                   check=True)
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    c = {line.split()[0]: (int(line.split()[1]), int(line.split()[2]))
         for line in out.splitlines()}
    assert c["size"][0] == ctypes.sizeof(PagerefEvent) == EVENT_DTYPE.itemsize
    for name in names:
        field = getattr(PagerefEvent, name)
        assert c[name] == (field.offset, field.size), name
        assert EVENT_DTYPE.fields[name][1] == field.offset


def test_probe_ids_match_header():
    d = header_defines()
    for t in TARGETS:
        assert d[f"PROBE_{t.symbol.upper()}"] == t.id, t.symbol
    assert len(BY_ID) == len(TARGETS)


def test_kinds_match_header_and_schema():
    d = header_defines()
    for value, name in KIND_NAMES.items():
        assert d[f"KIND_{name.upper()}"] == value
        assert name in KINDS


def test_program_has_handlers_for_every_target():
    from pageref.tracer.program import program_text

    src = program_text()
    for t in TARGETS:
        if t.probe == "ref":   # raw tracepoints (bpf/page_ref.bpf.c)
            assert f"int on_{t.symbol}(struct bpf_raw_tracepoint_args *ctx)" in src
            assert not t.ret
            continue
        assert f"int on_{t.symbol}(struct pt_regs *ctx)" in src
        assert (f"int ret_{t.symbol}(struct pt_regs *ctx)" in src) == t.ret, t.symbol
