"""A kernel without BTF, for real: the guest hides /sys/kernel/btf/vmlinux under
a bind mount of /dev/null, and `pageref record` must take the struct layout
from the kernel's headers instead (tracer/header_layout.py).

Before hiding it, `pageref doctor` compiles the layout program against the
headers with the BTF values as compile-time checks: they must agree.

Where the headers hold everything (FOLL_* are #defines in include/linux/mm.h:
5.10, 6.1), the whole workload suite is recorded without BTF, kprobes only,
and held to the same assertions as the BTF recording (test_lab_suite.py).
From 6.2 FOLL_PIN is private to mm/internal.h, which no headers package ships:
there the recorder must refuse with that reason, in one line, exit 2. Which
case a kernel is is read from its headers, not from its name.
"""

from __future__ import annotations

import shlex

import pytest
import test_lab_suite as suite_tests
from conftest import SuiteRun, register_part
from lab_expect import EXPECT

pytestmark = pytest.mark.lab

HIDE_BTF = """
mount --bind /dev/null /sys/kernel/btf/vmlinux || { echo "@@ bind mount failed"; exit 90; }
test -s /sys/kernel/btf/vmlinux && { echo "@@ BTF still visible"; exit 91; }
"""


def guest_script(pageref: list[str], suite: list[str]) -> str:
    p = shlex.join(pageref)
    return "\n".join([
        "set -u",
        "r=$PAGEREF_LAB_PART_DIR",
        f"{p} doctor > $r/doctor-btf.txt 2>&1",
        HIDE_BTF,
        f"{p} doctor > $r/doctor-no-btf.txt 2>&1",
        f"{p} record -o $r/trace --live plain -- {shlex.join(suite)} "
        "2> $r/record.err",
        "rc=$?",
        "cat $r/record.err >&2",
        "exit $rc",
    ])


class NoBtfRun:
    def __init__(self, kernel: str, run) -> None:
        self.kernel = kernel
        self.run = run
        d = run.run_dir
        self.doctor_btf = (d / "doctor-btf.txt").read_text(errors="replace")
        self.doctor_no_btf = (d / "doctor-no-btf.txt").read_text(errors="replace")
        self.record_err = (d / "record.err").read_text(errors="replace")


def _no_btf_part(kernel: str):
    from pageref.lab import session

    return session.Part("no_btf", script=guest_script(session.pageref_in_guest(),
                                                      session.suite_command()),
                        timeout_s=1200)


# Last in the shared boot (conftest.py): BTF stays hidden until power-off.
register_part("no_btf", 90, _no_btf_part)


@pytest.fixture(scope="module")
def no_btf(lab_boot) -> NoBtfRun:
    return NoBtfRun(lab_boot.kernel, lab_boot.part("no_btf"))


def headers_define_foll_pin(kernel: str) -> bool:
    """Whether the kernel's headers package #defines FOLL_PIN (include/linux/mm.h)."""
    import re

    from pageref.lab.kernels import ensure_kernel

    mods = ensure_kernel(kernel).modules_dir
    for link in ("source", "build"):   # Debian: source -> the -common half
        mm = mods / link / "include" / "linux" / "mm.h"
        if mm.is_file():
            return re.search(r"^#define\s+FOLL_PIN\b", mm.read_text(errors="replace"),
                             re.M) is not None
    pytest.fail(f"kernel {kernel}: no include/linux/mm.h under {mods}/source or build")


def layout_line(doctor: str) -> str:
    found = [ln for ln in doctor.splitlines() if ln.split()[1:2] == ["layout"]]
    assert len(found) == 1, doctor
    return found[0]


def test_headers_agree_with_the_running_kernels_btf(no_btf):
    line = layout_line(no_btf.doctor_btf)
    assert line.startswith("OK"), line
    n = int(line.split("agree on ")[1].split()[0])
    assert n >= EXPECT.get(no_btf.kernel, {}).get("layout_checks_min", 32), line


def test_doctor_without_btf(no_btf):
    btf = [ln for ln in no_btf.doctor_no_btf.splitlines() if ln.split()[1:2] == ["BTF"]]
    assert btf and btf[0].startswith("WARN"), no_btf.doctor_no_btf
    assert "only kprobes" in btf[0]
    assert layout_line(no_btf.doctor_no_btf).startswith("OK")


@pytest.fixture(scope="module")
def recorded(no_btf) -> SuiteRun:
    if not headers_define_foll_pin(no_btf.kernel):
        pytest.skip(f"{no_btf.kernel}: FOLL_PIN is not in its headers; "
                    "test_refusal_names_mm_internal_h covers it")
    assert no_btf.run.exit_code == 0, no_btf.record_err[-3000:]
    return SuiteRun(no_btf.kernel, no_btf.run)


def test_61_records_from_headers_with_kprobes_only(recorded):
    tracer = recorded.trace.header.extra["tracer"]
    assert tracer["layout"] == "headers"
    assert "no BTF to check them against" in tracer["layout_note"]
    assert tracer["foll_source"] == "headers"
    assert tracer["buffer"] == "ringbuf"          # bpf_ringbuf_output in kallsyms
    methods = {p["method"] for p in recorded.trace.header.probe_plan}
    assert methods == {"kprobe"}
    grabs = {p["symbol"] for p in recorded.trace.header.probe_plan if p["probe"] == "grab"}
    # return types from headers: the grab targets the kernel has (6.1: both)
    assert {"try_grab_page", "try_grab_folio"} <= grabs or (
        recorded.kernel == "5.10" and grabs >= {"try_grab_page"}), grabs


# The BTF recording's own assertions, on the recording without BTF.
@pytest.mark.parametrize("check", [
    suite_tests.test_every_workload_ran,
    suite_tests.test_events_from_every_logical_probe,
    suite_tests.test_pfns_inside_pmem_and_fsdax,
    suite_tests.test_idle_refcount,
    suite_tests.test_pin_adds_bias,
    suite_tests.test_foll_pin_and_foll_get_told_apart,
    suite_tests.test_anomalies_are_the_expected_ones,
], ids=lambda f: f.__name__.removeprefix("test_"))
def test_61_same_results_as_with_btf(recorded, check):
    check(recorded)


def test_refusal_names_mm_internal_h(no_btf):
    if headers_define_foll_pin(no_btf.kernel):
        pytest.skip(f"{no_btf.kernel}'s headers define FOLL_PIN: it records (tests above)")
    assert no_btf.run.exit_code == 2, no_btf.record_err[-3000:]
    err = [ln for ln in no_btf.record_err.splitlines() if ln.strip()]
    assert "Traceback" not in no_btf.record_err
    assert "FOLL_PIN" in err[-1] and "mm/internal.h" in err[-1], err[-3:]
