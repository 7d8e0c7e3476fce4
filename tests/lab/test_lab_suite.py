"""The lab's main tests: the shipped DAX workloads, recorded in the guest.

One boot per kernel (the session fixture `suite` in conftest.py) runs
workloads/dax-suite.sh on ext4 and xfs under `pageref record`; every test
here reads that one trace and the workloads' own report (workloads.jsonl:
pids, CLOCK_MONOTONIC windows, the pfns behind each DAX buffer from
/proc/self/pagemap, and what the kernel answered).
"""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import assert_closing_line_is_the_analysis
from lab_expect import EXPECT
from lab_layout import read_layout

from pageref.lab.qemu import pmem_pfn_ranges

pytestmark = pytest.mark.lab

FSS = ("ext4", "xfs")
PIN_BIAS = 1024   # GUP_PIN_COUNTING_BIAS (include/linux/mm.h), small pages
# dax-suite.sh runs these, in this order, on each file system
WORKLOADS = ("odirect", "pvm", "vmsplice", "punch", "uring", "fio")
PMEM0, PMEM1 = pmem_pfn_ranges()   # ext4 and xfs: partitions of pmem0; devdax on PMEM1


def expect(suite, key: str):
    facts = EXPECT.get(suite.kernel)
    if facts is None or key not in facts:
        pytest.skip(f"no {key!r} expectation for kernel {suite.kernel} in lab_expect.py")
    return facts[key]


def in_pmem(pfn: pd.Series) -> pd.Series:
    return ((pfn >= PMEM0[0]) & (pfn < PMEM0[1])) | ((pfn >= PMEM1[0]) & (pfn < PMEM1[1]))


def gup_only(ev: pd.DataFrame) -> pd.DataFrame:
    """Without the mapping's own references (7.2: a DAX fault takes one through
    vmf_insert_*, munmap's batched release drops it): GUP's takes and drops only."""
    probe = ev["probe"].astype(str)
    return ev[~(probe.str.startswith("vmf_insert") | (probe == "folios_put_refs"))]


def logical_probe_of(suite) -> dict[str, str]:
    return {p["symbol"]: p["probe"] for p in suite.trace.header.probe_plan}


def on_pages(ev: pd.DataFrame, pfns) -> pd.DataFrame:
    return ev[ev["pfn"].isin(list(pfns))]


def test_every_workload_ran(suite):
    """The recorder and every workload exited 0 on both file systems."""
    assert suite.run.exit_code == 0, f"suite/record exit {suite.run.exit_code}"
    for fs in FSS:
        for name in WORKLOADS:
            row = suite.workload(name, fs)
            assert row["rc"] == 0, row
    assert suite.trace.header.lost_total == 0, suite.trace.header.lost


def test_timings_recorded(suite):
    t = suite.run.timings
    for key in ("boot_s", "ready_s", "compile_s", "job_s", "wall_s"):
        assert key in t, t
    assert 0 < t["boot_s"] < t["ready_s"] < t["wall_s"]


def test_events_from_every_logical_probe(suite):
    """grab, put and busy fire; free is attached but fsdax never frees (6.1)."""
    plan = logical_probe_of(suite)
    assert {"grab", "put", "busy", "free"} <= set(plan.values()), plan
    logical = suite.events["probe"].astype(str).map(plan)
    counts = logical.value_counts().to_dict()
    for probe in ("grab", "put", "busy"):
        assert counts.get(probe, 0) > 0, counts
    assert counts.get("free", 0) == expect(suite, "free_events"), counts


def test_pfns_inside_pmem_and_fsdax(suite):
    ev = suite.events[suite.events["pfn"].notna()]
    dev = ev[ev["pgmap_type"].astype(str) == "fsdax"]
    assert len(dev) > 0
    assert in_pmem(dev["pfn"]).all(), dev[~in_pmem(dev["pfn"])].head()
    pm = ev[in_pmem(ev["pfn"])]
    assert (pm["pgmap_type"].astype(str) == "fsdax").all()
    assert pm["zone_device"].fillna(False).astype(bool).all()
    for fs in FSS:
        store = read_layout(suite.run.run_dir)[fs]   # the partition, as the guest saw it
        lo, hi = store.pfn_start, store.pfn_end
        for name in ("odirect", "pvm", "vmsplice", "punch", "uring"):
            pfns = suite.workload(name, fs)["pfns"]
            assert pfns, f"{name} on {fs} reported no pfns (pagemap)"
            assert all(lo <= p < hi for p in pfns), (name, fs, pfns)


def test_idle_refcount(suite):
    idle = expect(suite, "idle_fsdax")
    assert suite.trace.header.idle_for("fsdax") == idle
    for fs in FSS:
        for name in ("odirect", "pvm"):
            w = suite.workload(name, fs)
            ev = on_pages(suite.window(w["start_ns"], w["end_ns"]), w["pfns"])
            first = ev[ev["kind"].isin(["get", "pin"])].groupby("pfn").head(1)
            assert set(first["pfn"]) == set(w["pfns"]), (name, fs)
            # a mapped page: idle plus the mapping's own references (7.2: 1)
            mapped = idle + EXPECT[suite.kernel].get("mapped_refs", 0)
            assert (first["refcount"] == mapped).all(), first[["pfn", "refcount"]]


def test_pin_adds_bias(suite):
    """process_vm_readv/writev pin (+1024 each on small pages) and unpin back."""
    idle, bias = expect(suite, "idle_fsdax"), expect(suite, "pin_bias")
    assert suite.trace.header.pin_bias == bias
    for fs in FSS:
        w = suite.workload("pvm", fs)
        ev = on_pages(suite.window(w["start_ns"], w["end_ns"]), w["pfns"])
        pins, unpins = ev[ev["kind"] == "pin"], ev[ev["kind"] == "unpin"]
        # readv and writev: each pins every page once
        assert len(pins) == 2 * w["pages"] and len(unpins) == 2 * w["pages"], (fs, len(ev))
        mapped = idle + EXPECT[suite.kernel].get("mapped_refs", 0)
        assert (pins["refcount"] == mapped).all()
        assert (unpins["refcount"] == mapped + bias).all(), unpins["refcount"].tolist()


# Where a DAX mapping holds its own reference (7.2), faulting a page in takes it
# and munmap/zap drops it: references, but no GUP.
MAPPING_PROBES = {"vmf_insert_page_mkwrite", "vmf_insert_folio_pmd", "vmf_insert_folio_pud",
                  "folios_put_refs"}


def gup_kinds(ev: pd.DataFrame) -> set[str]:
    """Kinds of the events in `ev` that GUP and its releases produced."""
    gup = ev[~ev["probe"].astype(str).isin(MAPPING_PROBES) & (ev["kind"] != "free")]
    return set(gup["kind"].astype(str))


def test_foll_pin_and_foll_get_told_apart(suite):
    """process_vm_* pins (FOLL_PIN); vmsplice gets (FOLL_GET); O_DIRECT gets on
    6.1 and pins from 6.5 on (lab_expect.py "odirect_pins")."""
    odirect_pins = EXPECT.get(suite.kernel, {}).get("odirect_pins")
    for fs in FSS:
        pvm = suite.workload("pvm", fs)
        ev = gup_only(on_pages(suite.window(pvm["start_ns"], pvm["end_ns"]), pvm["pfns"]))
        assert gup_kinds(ev) == {"pin", "unpin"}, fs
        for name in ("odirect", "vmsplice"):
            if name == "odirect" and odirect_pins is None:
                continue    # not stated for this kernel
            w = suite.workload(name, fs)
            ev = gup_only(on_pages(suite.window(w["start_ns"], w["end_ns"]), w["pfns"]))
            kinds = gup_kinds(ev)
            take, drop = ("pin", "unpin") if name == "odirect" and odirect_pins else ("get", "put")
            other = {"get", "put", "pin", "unpin"} - {take, drop}
            assert take in kinds and drop in kinds and not kinds & other, (name, fs, kinds)
    # FOLL_* values are the running kernel's: the recorder writes them in the header
    foll = suite.trace.header.extra["tracer"]["foll"]
    get_bit, pin_bit = foll["FOLL_GET"], foll["FOLL_PIN"]
    facts = EXPECT.get(suite.kernel, {})
    if "foll_get" in facts:
        assert (get_bit, pin_bit) == (facts["foll_get"], facts["foll_pin"])
    ev = gup_only(suite.events)
    grabs = ev[ev["kind"].isin(["get", "pin"]) & ev["flags"].notna()]
    gets, pins = grabs[grabs["kind"] == "get"], grabs[grabs["kind"] == "pin"]
    assert len(gets) and len(pins)
    assert ((gets["flags"] & get_bit) != 0).all() and ((gets["flags"] & pin_bit) == 0).all()
    assert ((pins["flags"] & pin_bit) != 0).all() and ((pins["flags"] & get_bit) == 0).all()


def test_busy_pages_during_truncate(suite):
    """Truncate and hole punch find the held pages busy and wait for them."""
    idle = expect(suite, "idle_fsdax")
    for fs in FSS:
        v = suite.workload("vmsplice", fs)
        assert v["mapped_truncate_waited"] == 1, v
        ev = suite.window(v["mapped_truncate_start_ns"], v["mapped_drain_ns"])
        busy = on_pages(ev[ev["kind"] == "busy"], v["pfns"])
        assert len(busy) >= 1, f"no busy page reported during the vmsplice truncate on {fs}"
        assert (busy["refcount"] > idle).all()
        p = suite.workload("punch", fs)
        # the reader slept on its read (pages held) before each operation began
        assert p["punch_read_in_flight"] == 1 and p["truncate_read_in_flight"] == 1, p
        assert p["punch_waited_for_io"] == 1 and p["truncate_waited_for_io"] == 1, p
        for op in ("punch", "truncate"):
            ev = suite.window(p[f"{op}_start_ns"], p[f"{op}_end_ns"])
            busy = ev[(ev["kind"] == "busy") & ev["pfn"].notna()]
            assert len(busy) >= 1, f"no busy page during {op} on {fs}"
            assert (busy["pid"] == p["pid"]).all()


def test_unmapped_truncate_does_not_wait(suite):
    """After munmap, truncate skips the busy scan although a pipe holds the pages.

    dax_layout_busy_page_range() returns NULL when the file is not mapped; the
    trace shows the truncating task's busy check come back empty while the
    vmsplice references are still outstanding (their puts come later).
    """
    waits = expect(suite, "unmapped_truncate_waits")
    for fs in FSS:
        v = suite.workload("vmsplice", fs)
        assert bool(v["unmapped_truncate_waited"]) == waits, v
        if waits:
            continue
        pfns = v["unmapped_pfns"]
        ev = suite.window(v["unmapped_truncate_start_ns"], v["end_ns"])
        checks = ev[(ev["kind"] == "busy") & (ev["pid"] == v["unmapped_truncate_pid"])]
        assert len(checks) >= 1 and checks["pfn"].isna().all(), checks
        puts = on_pages(ev[ev["kind"] == "put"], pfns)
        assert len(puts) >= 1 and puts["ts_ns"].min() > checks["ts_ns"].max(), (
            "the pipe's references should be dropped only after the truncate's empty check")


def test_longterm_pin_refused(suite):
    """io_uring buffer registration (FOLL_LONGTERM) is refused on fsdax, not on anon."""
    for fs in FSS:
        w = suite.workload("uring", fs)
        assert w["dax_register_errno"] == 95, w    # EOPNOTSUPP
        assert w["anon_register_errno"] == 0, w
        ev = on_pages(suite.window(w["register_ns"], w["end_ns"]), w["pfns"])
        if EXPECT.get(suite.kernel, {}).get("longterm_pinned_then_released"):
            # 5.10: each page pinned long-term once, then unpinned back to idle
            pins, unpins = ev[ev["kind"] == "pin"], ev[ev["kind"] == "unpin"]
            assert sorted(pins["pfn"]) == sorted(w["pfns"]) == sorted(unpins["pfn"]), ev
            assert pins["longterm"].fillna(False).astype(bool).all(), pins
            assert (unpins["refcount"] == expect(suite, "idle_fsdax") + PIN_BIAS).all(), unpins
            assert ev[ev["kind"] == "get"].empty, ev
            continue
        assert ev[ev["kind"].isin(["pin", "get"])].empty, ev
    if EXPECT.get(suite.kernel, {}).get("longterm_pinned_then_released"):
        return
    pm = suite.events[suite.events["pfn"].notna() & in_pmem(suite.events["pfn"])]
    longterm = pm[pm["longterm"].fillna(False).astype(bool)]
    # no long-term reference was ever taken on pmem ...
    assert longterm[longterm["kind"].isin(["pin", "get"])].empty, longterm
    # ... and where the refused attempt reaches a probed grab (7.2: gup-fast), it
    # is recorded as grab_failed, once per file system
    seen = EXPECT.get(suite.kernel, {}).get("longterm_grab_failed", False)
    failed = longterm[longterm["kind"] == "grab_failed"]
    assert (len(failed) == len(FSS)) if seen else failed.empty, longterm


def test_closing_line_is_the_analysis(suite):
    assert_closing_line_is_the_analysis(suite.run, suite.anomalies)


def test_anomalies_are_the_expected_ones(suite):
    """The analysis reports exactly what the workloads provoke on this kernel.

    - missed_wakeup: each punch round (punch, truncate) on each file system,
      when O_DIRECT completion does not wake the waiter (6.1, see expect.py);
    - busy_page_stall: the vmsplice pipe holds its pages 2 s (twice the
      threshold) while truncate waits: a stall by design;
    - busy_check_missed_reference: the vmsplice round that truncates after
      munmap, once per file system, where the busy check skips an unmapped
      file (6.1, 6.12; see expect.py "unmapped_truncate_waits").
    Nothing else: a new kind here is either a kernel change or a tracer bug.
    """
    a = suite.anomalies
    kinds = set(a["kind"].astype(str))
    wakes = expect(suite, "bio_release_wakes")
    waits = expect(suite, "unmapped_truncate_waits")
    allowed = {"busy_page_stall"} | (set() if wakes else {"missed_wakeup"}) \
        | (set() if waits else {"busy_check_missed_reference"})
    # what pageref cannot see yet on this kernel (lab_expect.py "tracer_gaps")
    gaps = EXPECT[suite.kernel].get("tracer_gaps", {})
    assert kinds - set(gaps) <= allowed, a[["kind", "pfn", "pid", "detail"]]
    unwaited = a[a["kind"] == "busy_check_missed_reference"]
    assert len(unwaited) == (0 if waits else len(FSS)), unwaited[["pfn", "pid", "detail"]]
    for fs in FSS:
        v = suite.workload("vmsplice", fs)
        stalls = a[(a["kind"] == "busy_page_stall") & (a["pid"] == v["mapped_truncate_pid"])]
        assert len(stalls) >= 1, f"no busy_page_stall for the vmsplice truncate on {fs}"
        if not waits:
            mine = unwaited[unwaited["pid"] == v["unmapped_truncate_pid"]]
            assert len(mine) == 1, (fs, unwaited[["pfn", "pid", "detail"]])
            assert int(mine["pfn"].iloc[0]) in {int(p) for p in v["unmapped_pfns"]}, (fs, mine)
            assert mine["severity"].iloc[0] == "warning", mine
            assert (v["unmapped_truncate_start_ns"] <= mine["ts_ns"].iloc[0] <= v["end_ns"]), mine
        p = suite.workload("punch", fs)
        missed = a[(a["kind"] == "missed_wakeup") & (a["pid"] == p["pid"])]
        for op in ("punch", "truncate"):
            kicked = p[f"{op}_kicks"] > 0
            assert kicked == (not wakes), (fs, op, p)
            in_op = missed[(missed["ts_ns"] >= p[f"{op}_start_ns"])
                           & (missed["ts_ns"] <= p[f"{op}_end_ns"])]
            assert (len(in_op) >= 1) == kicked, (fs, op, in_op)
    if kinds & set(gaps):
        pytest.xfail("; ".join(f"{k}: {gaps[k]}" for k in sorted(kinds & set(gaps))))


def test_history_completeness_per_workload(suite):
    """Issue 15: on every generation, the share of each workload's refcount
    transitions its own events explain (these kernels have no page_ref
    tracepoints: the refcount each event recorded says when the count moved
    with nothing traced to explain it), written to completeness.md in the
    part's run directory and printed; the whole trace's figure is the one
    `pageref analyze` states."""
    import json
    import subprocess
    import sys

    from completeness_table import markdown, table, write

    from pageref.analysis.completeness import completeness

    rows = table(suite.trace, suite.workloads, own_pages=True)
    write(rows, suite.run.run_dir / "completeness.md")
    print(f"\n{suite.kernel}:\n" + markdown(rows))
    assert rows, "no workload with a transition to count"
    for r in rows:
        assert r.source == "refcount" and r.changes == r.attributed + r.unattributed, r
    whole = completeness(suite.trace)
    out = subprocess.run([sys.executable, "-m", "pageref", "analyze", "--json",
                          str(suite.run.trace)], capture_output=True, text=True)
    stated = json.loads(out.stdout)["completeness"]
    assert (stated["counted"], stated["explained"], stated["unexplained"]) == \
        (whole.counted, whole.explained, whole.unexplained), (stated, whole)
