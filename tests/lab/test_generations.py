"""The same DAX workloads on every kernel generation, each held to its own rules.

One lab boot per kernel (the session fixture `suite` in conftest.py, shared
with test_lab_suite.py): the shipped workload suite on ext4 and xfs under
`pageref record`. Then, per generation, what that kernel must show (issue 5;
docs/kernels.md has the table and the measurements):

- 6.1 and 6.12 special-case fsdax puts (__put_devmap_managed_page_refs /
  __put_devmap_managed_folio_refs): fsdax pages idle at refcount 1 and never
  reach 0, so no fsdax page is ever freed.
- 7.2 (6.15+ "fs/dax: Fix ZONE_DEVICE page reference counts"): DAX mappings
  hold real references, fsdax pages idle at 0 and are freed through
  __folio_put -> free_zone_device_folio when the last reference goes.
- Everywhere: a pin adds GUP_PIN_COUNTING_BIAS (1024) on small pages.
- The probe plan differs, detected from what each kernel has.
- No anomaly that contradicts the refcount rules.

test_lab_suite.py holds the same run to the workloads' own reports (busy
pages, refused long-term pins, the exact timing anomalies) with per-kernel
numbers from lab_expect.py.

Nothing here is a version switch in pageref: the tests check that the
detected rules match what each real kernel does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.lab

PIN_BIAS = 1024
# The guest's emulated pmem (lab/qemu.py PMEM_RANGES): pfn ranges [start, end).
PMEM_PFNS = ((0x100000, 0x120000), (0x140000, 0x160000))

# What each generation's probe plan must and must not attach (symbol names).
# 5.10: what the plan attaches today; the 5.x reference paths it awaits are
# lab_expect.AWAITS (test_awaited_5x_targets).
PLAN_HAS = {
    "5.10": {"try_grab_page", "__put_page", "unpin_user_page", "unpin_user_pages",
             "dax_layout_busy_page_range"},
    "6.1": {"try_grab_page", "try_grab_folio", "__put_devmap_managed_page_refs",
            "dax_layout_busy_page_range"},
    "6.12": {"try_grab_folio", "try_grab_folio_fast", "__put_devmap_managed_folio_refs",
             "free_zone_device_folio", "unpin_user_folio", "dax_layout_busy_page_range"},
    "7.2": {"try_grab_folio", "try_grab_folio_fast", "free_zone_device_folio",
            "__folio_put", "unpin_user_folio", "dax_layout_busy_page_range"},
}
PLAN_LACKS = {
    # absent from 5.10 (the boot's kallsyms): the folio names and the 5.19+ forms
    "5.10": {"try_grab_folio", "try_grab_folio_fast", "__folio_put", "free_zone_device_page",
             "free_zone_device_folio", "__put_devmap_managed_page",
             "__put_devmap_managed_page_refs", "__put_devmap_managed_folio_refs",
             "unpin_user_folio"},
    "6.1": {"try_grab_folio_fast", "free_zone_device_folio", "__put_devmap_managed_folio_refs"},
    "6.12": {"try_grab_page", "free_zone_device_page", "__put_devmap_managed_page_refs"},
    "7.2": {"try_grab_page", "free_zone_device_page", "__put_devmap_managed_page_refs",
            "__put_devmap_managed_folio_refs"},
}
FSDAX_IDLE = {"5.10": 1, "6.1": 1, "6.12": 1, "7.2": 0}
# `newest` must have 7.2's shape (6.15+ DAX refcounts): the same plan and rules.
PLAN_HAS["newest"], PLAN_LACKS["newest"] = PLAN_HAS["7.2"], PLAN_LACKS["7.2"]
FSDAX_IDLE["newest"] = FSDAX_IDLE["7.2"]


@dataclass
class GenRun:
    kernel: str
    release: str
    run_dir: Path
    header: object
    events: pd.DataFrame
    anomalies: pd.DataFrame
    workloads: list[dict]
    timings: dict


@pytest.fixture(scope="session")
def gen(suite) -> GenRun:
    """The session's one recorded boot of this kernel (conftest.py `suite`:
    the workload suite on ext4 and xfs under `pageref record`), seen per
    generation. The kernels are $PAGEREF_LAB_KERNELS (all three by default)."""
    from pageref.lab.kernels import ensure_kernel

    if suite.kernel not in FSDAX_IDLE:
        pytest.skip(f"no generation rules for kernel {suite.kernel} here")
    run = suite.run
    a = suite.anomalies
    (run.run_dir / "anomalies.json").write_text(
        a.drop(columns=["evidence"]).to_json(orient="records", indent=1) if len(a) else "[]"
    )
    return GenRun(suite.kernel, ensure_kernel(suite.kernel).release, run.run_dir,
                  suite.trace.header, suite.events, a, suite.workloads, run.timings)


def _fsdax(e: pd.DataFrame) -> pd.DataFrame:
    return e[(e["pgmap_type"] == "fsdax") & e["pfn"].notna()]


def _in_pmem(pfns: pd.Series) -> pd.Series:
    inside = pd.Series(False, index=pfns.index)
    for lo, hi in PMEM_PFNS:
        inside |= (pfns >= lo) & (pfns < hi)
    return inside


def test_guest_ran_that_kernel_and_suite(gen: GenRun) -> None:
    assert gen.header.kernel == gen.release
    names = {(w.get("workload"), w.get("fs")) for w in gen.workloads}
    for fs in ("ext4", "xfs"):
        for w in ("odirect", "pvm", "vmsplice", "punch", "uring"):
            assert (w, fs) in names, f"{w} on {fs} did not run on {gen.kernel}"
    failed = [w for w in gen.workloads if w.get("rc") not in (0, None)
              and w.get("workload") != "fio"]
    assert not failed, f"workloads failed on {gen.kernel}: {failed}"
    # Timings go into docs/kernels.md; keep them with the run.
    (gen.run_dir / "generation.json").write_text(json.dumps(
        {"kernel": gen.kernel, "release": gen.release, **gen.timings}, indent=1) + "\n")


def test_probe_plan_detected_from_the_kernel(gen: GenRun) -> None:
    attached = {p["symbol"] for p in gen.header.probe_plan}
    missing = PLAN_HAS[gen.kernel] - attached
    assert not missing, f"{gen.kernel}: plan lacks {sorted(missing)}; has {sorted(attached)}"
    wrong = PLAN_LACKS[gen.kernel] & attached
    assert not wrong, f"{gen.kernel}: plan attaches {sorted(wrong)}, absent in this generation"


def test_awaited_5x_targets(gen: GenRun) -> None:
    """The 5.x reference paths the kernel has: attached, or xfail naming them."""
    from lab_expect import AWAITS

    if gen.kernel not in AWAITS:
        pytest.skip(f"{gen.kernel}: no awaited targets")
    attached = {p["symbol"] for p in gen.header.probe_plan}
    missing = [t for t in AWAITS[gen.kernel]["targets"] if t not in attached]
    if missing:
        pytest.xfail(f"{gen.kernel}: pageref's probe plan does not attach {missing} yet "
                     "(issue 13, the 5.x targets); the kernel has them "
                     "(tests/fixtures/kernels/5.10/symbols.txt)")


def test_idle_refcount_rule(gen: GenRun) -> None:
    assert gen.header.idle_refcount.get("fsdax") == FSDAX_IDLE[gen.kernel]


def test_events_from_every_logical_probe_on_pmem(gen: GenRun) -> None:
    e = gen.events
    fs = _fsdax(e)
    assert len(fs), "no fsdax events"
    assert _in_pmem(fs["pfn"]).all(), "fsdax events outside the emulated pmem ranges"
    kinds = set(e["kind"].astype(str))
    assert {"pin", "unpin", "busy"} <= kinds, f"{gen.kernel}: kinds {sorted(kinds)}"
    assert "get" in kinds or gen.kernel != "6.1", "6.1 O_DIRECT takes FOLL_GET references"


def test_a_pin_adds_the_bias_on_small_pages(gen: GenRun) -> None:
    """pin at refcount r on an order-0 page, then the next event on that pfn is the
    same task's unpin: it must see r + 1024 * refs.

    Only the O_DIRECT and process_vm_readv workloads: their mappings stay put
    while pinned. (On 7.2 a hole punch zaps the mapping's reference between pin
    and unpin, a drop no probe sees, so the unpin sees r + 1024 - 1 there.)"""
    e = _fsdax(gen.events)
    comm = e["comm"].astype(str).str.split("\x00").str[0]
    e = e[comm.isin(["dax_odirect", "dax_pvm"])].sort_values("ts_ns")
    checked = 0
    for _, page in e.groupby("pfn"):
        rows = page.to_dict("records")
        for a, b in zip(rows, rows[1:]):
            if (a["kind"] == "pin" and b["kind"] == "unpin" and a["tid"] == b["tid"]
                    and not a["order"] and pd.notna(a["refcount"])):
                refs = 1 if pd.isna(a["refs"]) else int(a["refs"])
                assert int(b["refcount"]) == int(a["refcount"]) + PIN_BIAS * refs, (a, b)
                checked += 1
    assert checked >= 8, f"only {checked} pin/unpin pairs on small fsdax pages"


def test_fsdax_free_path(gen: GenRun) -> None:
    fs = _fsdax(gen.events)
    frees = fs[fs["kind"] == "free"]
    if FSDAX_IDLE[gen.kernel] == 1:
        # The devmap put path wakes layout waiters at 1: fsdax pages never free.
        assert frees.empty, f"{gen.kernel}: fsdax pages freed: {frees.head()}"
        observed = fs[fs["kind"].isin(["get", "pin", "put", "unpin"])]["refcount"].dropna()
        assert observed.min() >= 1, f"{gen.kernel}: fsdax refcount below the idle 1"
    else:
        # 7.2: the last reference goes through __folio_put -> free_zone_device_folio.
        assert len(frees) >= 8, f"7.2: only {len(frees)} fsdax frees"
        assert set(frees["probe"].astype(str)) == {"free_zone_device_folio"}
        assert (frees["refcount"] == 0).all()


# Anomalies that contradict the refcount rules pageref detected for the kernel:
# on a correct kernel, traced completely, none may appear.
RULE_KINDS = {"refcount_underflow", "double_free", "free_while_referenced",
              "grab_on_free_page", "pin_put_mismatch"}


def _kinds(gen: GenRun) -> dict[str, int]:
    return {str(k): int(n) for k, n in gen.anomalies["kind"].value_counts().items()} \
        if len(gen.anomalies) else {}


def test_refcount_rules_hold(gen: GenRun) -> None:
    broken = {k: n for k, n in _kinds(gen).items() if k in RULE_KINDS}
    assert not broken, f"{gen.kernel}: {broken}; see {gen.run_dir}/anomalies.json"
