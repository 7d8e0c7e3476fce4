"""The debug lab kernel (issue 15): the kernel's own page_ref tracepoints as
ground truth for what pageref's ordinary probes see, device-private pages
through test_hmm, and the kernel's GUP test harness. One boot of 6.12-debug
(tests/lab/debug_part.py says what it runs); it must be built first with
`pageref lab kernels --debug` (docs/lab.md: build time), else every test here
skips, saying so.
"""

from __future__ import annotations

import os
import re

import pandas as pd
import pytest
from completeness_table import markdown, table, write
from debug_part import DEBUG_KERNEL, GUP_TEST_VARIANTS, debug_part, read_clients
from lab_layout import read_layout

pytestmark = pytest.mark.lab


class DebugRun:
    def __init__(self, run) -> None:
        from conftest import recorded_trace

        from pageref.analysis.anomalies import find_anomalies

        self.run = run
        self.trace = recorded_trace(run)
        self.events = self.trace.events
        self.anomalies = find_anomalies(self.trace)
        self.layout = read_layout(run.run_dir)
        self.clients = read_clients(run.run_dir)

    def workload_rows(self) -> list[dict]:
        """Our suites' rows (workloads.jsonl) and the clients', one window each."""
        from pageref.lab.session import read_workloads

        suites = read_workloads(self.run.run_dir / "workloads.jsonl")
        return suites + [dict(c, workload=c["client"], fs=c["target"]) for c in self.clients]

    def client(self, name: str, target: str) -> dict:
        rows = [c for c in self.clients if c["client"] == name and c["target"] == target]
        assert len(rows) == 1, f"expected one {name} on {target}: {self.clients}"
        return rows[0]

    def window(self, w: dict) -> pd.DataFrame:
        # /proc/uptime's 10 ms steps: the window is widened by one step each side
        ev = self.events
        return ev[(ev["ts_ns"] >= w["start_ns"] - 10_000_000) &
                  (ev["ts_ns"] <= w["end_ns"] + 10_000_000)]


@pytest.fixture(scope="module")
def dbg() -> DebugRun:
    from conftest import require_lab

    from pageref.lab import session
    from pageref.lab.debug_kernel import cached_debug_kernel

    require_lab(DEBUG_KERNEL)
    if cached_debug_kernel(DEBUG_KERNEL) is None:
        if os.environ.get("CI", "").lower() == "true":   # bin/setup builds it
            pytest.fail(f"the {DEBUG_KERNEL} lab kernel was not built: bin/setup builds it "
                        "(`pageref lab kernels --debug`)", pytrace=False)
        pytest.skip(f"the {DEBUG_KERNEL} lab kernel is not built here: `pageref lab kernels "
                    "--debug` builds it (docs/lab.md gives the time)")
    runs = session.run_parts([debug_part()], kernel=DEBUG_KERNEL, label="pytest")
    return DebugRun(runs["dbg"])


def test_page_ref_tracepoints_are_recorded(dbg):
    plan = dbg.trace.header.probe_plan
    refs = [p for p in plan if p.get("probe") == "ref"]
    assert [p["method"] for p in refs] == ["raw_tracepoint"] * 7, plan
    ev = dbg.events
    ref = ev[ev["kind"] == "ref"]
    assert len(ref) > 0
    assert ref["zone_device"].all()
    assert dbg.trace.header.lost_total == 0
    known = ref["refs"].notna()
    assert (ref.loc[known, "refcount"] + ref.loc[known, "refs"] ==
            ref.loc[known, "refcount_after"]).all()
    assert set(ref["probe"].astype(str)) <= {f"page_ref_{n}" for n in (
        "set", "mod", "mod_and_test", "mod_and_return", "mod_unless", "freeze", "unfreeze")}


def test_clients_ran(dbg):
    names = {(c["client"], c["target"]) for c in dbg.clients}
    for v in GUP_TEST_VARIANTS:
        assert (f"gup_test-{v}", "fsdax") in names and (f"gup_test-{v}", "devdax") in names
    assert ("hmm-tests", "private") in names, dbg.clients


# What each gup_test variant must do to the pages of a 2 MiB mapping on this
# kernel (6.12), from mm/gup.c and mm/gup_test.c: an fsdax file maps 512 small
# pages (idle at 1: the devmap put is there); device DAX one order-9 folio
# (idle at 1), whose pins add 1 each and count in _pincount. FOLL_LONGTERM on
# fsdax is refused before any grab (check_vma_flags: vma_is_fsdax). gup_test
# gives GUP references back with put_page() (inline; the devmap put sees it on
# fsdax only) and pins with unpin_user_pages().
def gup_expect(variant: str, target: str) -> dict:
    taken = GUP_TEST_VARIANTS[variant][1]
    if variant == "L" and target == "fsdax":
        return {"taken": taken, "refused": True}
    small = target == "fsdax"
    per_page = (1024 if taken == "pin" else 1) if small else 1
    return {"taken": taken, "refused": False, "pages": 512 if small else 1,
            "peak": 1 + (per_page if small else 512),
            "pincount": 512 if (taken == "pin" and not small) else None,
            # releases the ordinary probes see: all but device DAX's inline puts
            "released_seen": 0 if (taken == "get" and not small) else 512}


@pytest.mark.parametrize("target", ["fsdax", "devdax"])
@pytest.mark.parametrize("variant", list(GUP_TEST_VARIANTS))
def test_gup_test_variant_takes_and_gives_back_what_the_kernel_says(dbg, variant, target):
    c = dbg.client(f"gup_test-{variant}", target)
    assert c["rc"] == 0, (dbg.run.run_dir / f"gup_test-{variant}-{target}.out").read_text()
    w = dbg.window(c)
    w = w[w["comm"] == "gup_test"]
    ref, ordinary = w[w["kind"] == "ref"], w[w["kind"] != "ref"]
    want = gup_expect(variant, target)
    if want["refused"]:
        assert len(w) == 0, w[["kind", "probe", "refs"]]
        return
    taken = ordinary[ordinary["kind"] == want["taken"]]
    assert taken["refs"].sum() == 512 and taken["pfn"].nunique() == want["pages"]
    # the kernel's own count: every reference taken was given back, and the
    # page (folio) peaked where the rule says
    assert ref["refs"].sum() == 0
    assert ref.groupby("pfn")["refcount_after"].max().eq(want["peak"]).all()
    if want["pincount"] is not None:
        assert taken["pincount"].max() == want["pincount"] - 1   # observed before the last
    back = "unpin" if want["taken"] == "pin" else "put"
    seen = ordinary.loc[ordinary["kind"] == back, "refs"].sum()
    assert seen == want["released_seen"], ordinary.groupby(["kind", "probe"]).size()
    if seen < 512:
        # what the ordinary plan missed, the plan says it misses
        inline = [u for u in dbg.trace.header.coverage["uncovered"] if "device DAX" in u]
        assert inline, dbg.trace.header.coverage["uncovered"]
        assert (ref["refs"] < 0).sum() == 512 - seen


# hmm-tests on this kernel: the three device-exclusive tests fail with -EBUSY
# (hmm-tests.c:1817, make_device_exclusive) with and without pageref recording
# (a lab run with --no-record, 2 December 2026): a fact of this kernel and
# config, not of the tracer. Any other failure is one pageref caused.
HMM_TESTS_FAILING = {"hmm.hmm_device_private.exclusive",
                     "hmm.hmm_device_private.exclusive_mprotect",
                     "hmm.hmm_device_private.exclusive_cow"}


def test_hmm_tests_ran_with_no_failure_of_ours(dbg):
    out = (dbg.run.run_dir / "hmm-tests-private.out").read_text(errors="replace")
    failed = {line.split()[3] for line in out.splitlines() if line.startswith("not ok ")}
    passed = [line for line in out.splitlines() if line.startswith("ok ") and "SKIP" not in line]
    assert len(passed) >= 20, out[-2000:]
    assert failed <= HMM_TESTS_FAILING, failed - HMM_TESTS_FAILING


def test_device_private_lives_as_the_kernel_counts_them(dbg):
    """hmm-tests' device-private pages: allocated by test_hmm (zone_device_page_init
    sets the count to 1), migrated, faulted back and freed at 0 (their idle
    refcount on this kernel) through free_zone_device_folio, and no anomaly."""
    c = dbg.client("hmm-tests", "private")
    ev = dbg.window(c)
    priv = ev[ev["pgmap_type"].astype(str) == "private"]
    frees = priv[priv["kind"] == "free"]
    assert len(frees) > 1000 and set(frees["probe"].astype(str)) == {"free_zone_device_folio"}
    assert dbg.trace.header.idle_for("private") == 0
    ref = priv[priv["kind"] == "ref"]
    inits = ref[ref["stack"].map(lambda s: s is not None and any(
        f.startswith("zone_device_page_init") for f in s))]
    assert len(inits) == len(frees)          # one allocation per life
    assert (inits["refcount_after"] == 1).all()
    # every free finds the page at 0: the last change before it left 0
    for pfn, page in priv[priv["kind"].isin(["ref", "free"])].groupby("pfn"):
        kinds = page["kind"].astype(str).tolist()
        after = page["refcount_after"].tolist()
        for i, k in enumerate(kinds):
            if k == "free" and i > 0 and kinds[i - 1] == "ref":
                assert after[i - 1] == 0, (pfn, page[["kind", "probe", "refcount_after"]])
    an = dbg.anomalies
    assert not len(an[an["pfn"].isin(priv["pfn"].unique())]), an


def test_every_change_the_plan_misses_is_a_path_pageref_probes_names(dbg):
    """Issue 15's completeness table: per workload and page kind, the kernel's
    changes the ordinary plan attributes, and where the others come from. Each
    of those places must be named in the plan's 'not covered' list (the trace
    header's, what `pageref probes` prints): a gap it does not name is a bug."""
    from pageref.trace.plan_record import coverage_of

    rows = table(dbg.trace, dbg.workload_rows())
    write(rows, dbg.run.run_dir / "completeness.md")
    print("\n" + markdown(rows))
    seen = {(r.workload, r.on) for r in rows}
    # every workload and client that takes references (not: a refused io_uring
    # registration or FOLL_LONGTERM pin on fsdax, refused before any grab)
    takes = {(w, fs) for w in ("odirect", "pvm", "vmsplice", "punch", "fio")
             for fs in ("ext4", "xfs")}
    takes |= {(f"devdax_{w}", "devdax") for w in ("odirect", "pvm", "vmsplice", "uring", "fio")}
    takes |= {(f"gup_test-{v}", t) for v in GUP_TEST_VARIANTS for t in ("fsdax", "devdax")}
    takes -= {("gup_test-L", "fsdax")}
    takes |= {("hmm-tests", "private")}
    if any(c["client"] == "perftest" for c in dbg.clients):
        takes.add(("perftest", "devdax"))
    assert takes <= seen, sorted(takes - seen)
    uncovered = " ".join(coverage_of(dbg.trace.header).uncovered)
    # a change whose stack the kernel did not store cannot be placed: allowed
    # only as far as the recorder counted such events (tracer.stacks_missing)
    stackless = sum(n for r in rows for f, n in r.frames if f == "(no stack)")
    assert stackless <= dbg.trace.header.extra.get("tracer", {}).get("stacks_missing", 0)
    unnamed = [(r.workload, r.on, f, n) for r in rows for f, n in r.frames
               if f != "(no stack)" and
               not re.search(rf"(?<![\w]){re.escape(f)}(?![\w])", uncovered)]
    assert not unnamed, f"changes from places `pageref probes` does not name: {unnamed}"
    # this kernel's facts: the devmap put sees every fsdax put, so fsdax
    # workloads are whole; device DAX misses only inline puts
    for r in rows:
        if r.kind == "fsdax":
            assert r.unattributed == 0, r
        if r.kind == "devdax":
            assert {f for f, _ in r.frames} <= {"page_cache_pipe_buf_release",
                                                 "gup_test_ioctl"}, r
