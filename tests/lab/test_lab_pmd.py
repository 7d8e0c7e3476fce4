"""PMD (2 MiB) DAX mappings, for real: dax_pmd maps two 2 MiB-aligned extents
of an xfs file (stripe unit 2 MiB, extent size hint 2 MiB) with PMD entries
and pins them with process_vm_readv/writev, under `pageref record`.

What each kernel does (measured in the lab, and the reason):
- 6.1: fsdax pages are not compound; GUP through the PMD grabs each 4 KiB page
  with try_grab_page (follow_devmap_pmd), +GUP_PIN_COUNTING_BIAS each.
- 6.12: the same pages grabbed through try_grab_folio, still order 0.
- 7.2 ("fs/dax: Fix ZONE_DEVICE page reference counts", 6.15): the PMD maps an
  order-9 folio; the fault takes one reference (vmf_insert_folio_pmd), a pin
  adds its page count to the refcount and to _pincount (no bias on large
  folios), munmap drops the mapping's reference in folios_put_refs and the
  folio is freed (free_zone_device_folio).
The ftrace event fs_dax:dax_pmd_fault_done says the faults were PMD faults
(NOPAGE), not fallbacks to 4 KiB.
"""

from __future__ import annotations

import json
import shlex

import pandas as pd
import pytest
from conftest import register_part

pytestmark = pytest.mark.lab

PMDS = 2
PAGES = PMDS * 512

GUEST = r"""
set -u
T=/sys/kernel/tracing r=$PAGEREF_LAB_PART_DIR
echo 1 > $T/events/fs_dax/dax_pmd_fault_done/enable || exit 90
$1 record -o $r/trace --live plain -- sh -c "'$2/dax_pmd' /mnt/xfs {pmds} > $r/pmd.json"
rc=$?
grep dax_pmd_fault_done $T/trace > $r/pmd_faults.txt
echo 0 > $T/events/fs_dax/dax_pmd_fault_done/enable
exit $rc
""".replace("{pmds}", str(PMDS))


class PmdRun:
    def __init__(self, kernel: str, run) -> None:
        from pageref.analysis.anomalies import find_anomalies
        from pageref.trace.io import read_trace

        self.kernel = kernel
        d = run.run_dir
        assert run.exit_code == 0, (d / "console.log").read_text()[-3000:]
        self.workload = json.loads((d / "pmd.json").read_text())
        self.faults = (d / "pmd_faults.txt").read_text().splitlines()
        self.trace = read_trace(run.trace)
        heads = self.workload["pmd_pfns"]
        ev = self.trace.events
        on = pd.Series(False, index=ev.index)
        for h in heads:
            on |= (ev["pfn"] >= h) & (ev["pfn"] < h + 512)
        self.events = ev[on]
        self.anomalies = find_anomalies(self.trace)


def _pmd_part(kernel: str):
    from pageref.lab import session
    from pageref.workloads.build import build

    bin_dir = build(session.cache_dir())
    return session.Part("pmd", script=GUEST, args=(shlex.join(session.pageref_in_guest()),
                                                   str(bin_dir)),
                        env=(("PAGEREF_LAB_FS", "xfs"), ("PAGEREF_LAB_DAX", "/mnt/xfs")),
                        timeout_s=900)


# First in the shared boot (conftest.py): fresh file systems, as in a boot of its own.
register_part("pmd", 10, _pmd_part)


@pytest.fixture(scope="module")
def pmd(lab_boot) -> PmdRun:
    return PmdRun(lab_boot.kernel, lab_boot.part("pmd"))


def kinds(ev: pd.DataFrame) -> dict[tuple[str, str], int]:
    return ev.groupby(["kind", "probe"], observed=True).size().to_dict()


def test_the_faults_were_pmd_faults(pmd):
    assert pmd.workload["aligned_pmds"] == PMDS, pmd.workload
    assert len(pmd.faults) == PMDS and all(f.endswith("NOPAGE") for f in pmd.faults), pmd.faults


def test_every_page_pinned_and_unpinned_twice(pmd):
    """readv and writev each pin all 1,024 pages and unpin them: counted in
    pages (refs), whatever the batching."""
    ev = pmd.events
    for kind in ("pin", "unpin"):
        assert int(ev[ev["kind"] == kind]["refs"].sum()) == 2 * PAGES, kinds(ev)


def test_small_page_kernels_pin_each_page_with_the_bias(pmd):
    if pmd.kernel in ("7.2", "newest"):
        pytest.skip(f"{pmd.kernel} maps large folios: next test")
    # 5.10 and 6.1: follow_devmap_pmd -> try_grab_page per small page.
    # The unpin: 5.10 has no gup_put_folio; process_vm_rw's
    # unpin_user_pages_dirty_lock is the outer probe there (one event a page).
    grab = {"5.10": "try_grab_page", "6.1": "try_grab_page",
            "6.12": "try_grab_folio"}[pmd.kernel]
    unpin = "unpin_user_pages_dirty_lock" if pmd.kernel == "5.10" else "gup_put_folio"
    ev = pmd.events
    assert kinds(ev) == {("pin", grab): 2 * PAGES, ("unpin", unpin): 2 * PAGES}
    assert (ev["order"] == 0).all()
    assert (ev[ev["kind"] == "pin"]["refcount"] == 1).all()        # fsdax idles at 1
    assert (ev[ev["kind"] == "unpin"]["refcount"] == 1025).all()   # + the bias


def test_72_pins_a_large_folio_by_its_page_count(pmd):
    if pmd.kernel not in ("7.2", "newest"):   # newest: 7.3 today, 7.2's shape
        pytest.skip("only 7.2 and newer map fsdax PMDs as large folios")
    ev = pmd.events
    assert (ev["order"] == 9).all() and set(ev["pfn"]) == set(pmd.workload["pmd_pfns"])
    k = kinds(ev)
    assert k[("get", "vmf_insert_folio_pmd")] == PMDS
    assert k[("put", "folios_put_refs")] == PMDS
    assert k[("free", "free_zone_device_folio")] == PMDS
    assert (ev[ev["kind"] == "get"]["refs"] == 1).all()
    for _, page in ev.sort_values("ts_ns").groupby("pfn"):
        # From the mapping's one reference (the fault's own temporary reference
        # around vmf_insert_folio_pmd is dropped inline, unseen), every pin and
        # unpin moves the refcount and _pincount by its page count.
        rc, pins = 1, 0
        for row in page[page["kind"] != "get"].itertuples():
            assert row.refcount == rc, (row.kind, row.probe, row.refcount, rc)
            if row.kind in ("pin", "unpin"):
                assert row.pincount == pins, (row.kind, row.pincount, pins)
            step = int(row.refs)
            if row.kind == "pin":          # large folio: +refs, and _pincount +refs
                rc, pins = rc + step, pins + step
            elif row.kind == "unpin":
                rc, pins = rc - step, pins - step
            elif row.kind == "put":
                rc -= step
        assert rc == 0 and pins == 0


def test_no_rule_anomaly(pmd):
    assert len(pmd.anomalies) == 0, pmd.anomalies[["kind", "pfn", "detail"]].to_string()
