"""The debug lab kernel (issue 15): the kernel's own page_ref tracepoints as
ground truth for what pageref's ordinary probes see, device-private pages
through test_hmm, and the kernel's GUP test harness. One boot of 6.12-debug
(tests/lab/debug_part.py says what it runs); it must be built first with
`pageref lab kernels --debug` (docs/lab.md: build time), else every test here
skips, saying so.
"""

from __future__ import annotations

import pandas as pd
import pytest
from debug_part import DEBUG_KERNEL, GUP_TEST_VARIANTS, debug_part, read_clients
from lab_layout import read_layout

pytestmark = pytest.mark.lab


class DebugRun:
    def __init__(self, run) -> None:
        from pageref.analysis.anomalies import find_anomalies
        from pageref.trace.io import read_trace

        self.run = run
        if run.trace is None:
            pytest.fail(f"no trace (exit {run.exit_code}); see {run.run_dir / 'console.log'}",
                        pytrace=False)
        self.trace = read_trace(run.trace)
        self.events = self.trace.events
        self.anomalies = find_anomalies(self.trace)
        self.layout = read_layout(run.run_dir)
        self.clients = read_clients(run.run_dir)

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
