"""Device DAX in the lab: the devdax workloads and the real clients, recorded.

A part of the shared boot of each kernel generation (conftest.py) runs,
under one `pageref record`: workloads/devdax-suite.sh on /dev/dax1.0 (O_DIRECT,
process_vm_readv/writev, vmsplice, an io_uring registration held 2 s, fio),
perftest over soft-RoCE (workloads/rdma-clients.sh: ib_write_bw on fsdax and
on device DAX, ib_read_bw on device DAX), and last an io_uring registration
that is never undone while the trace runs (it outlives the trace). Every test
reads that trace and the workloads' own JSON lines; per-generation facts are in
devdax_expect.py.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import assert_closing_line_is_the_analysis, register_part
from devdax_expect import DEVDAX_EXPECT
from lab_layout import read_layout

from pageref.tracer.plan import MAPPING_REFS

pytestmark = pytest.mark.lab

SUITE_ROWS = ("devdax_odirect", "devdax_pvm", "devdax_vmsplice", "devdax_uring", "devdax_fio")


class DevdaxRun:
    def __init__(self, kernel: str, run) -> None:
        from conftest import recorded_trace

        from pageref.analysis.anomalies import find_anomalies

        self.kernel, self.run = kernel, run
        self.trace = recorded_trace(run)
        self.events = self.trace.events
        self.anomalies = find_anomalies(self.trace)
        self.layout = read_layout(run.run_dir)
        self.rows = run.workloads
        leak = run.run_dir / "leak.jsonl"
        from pageref.lab.session import read_workloads

        self.leak = read_workloads(leak)

    def row(self, name: str, fs: str = "devdax") -> dict:
        rows = [w for w in self.rows if w.get("workload") == name and w.get("fs") == fs]
        assert len(rows) == 1, f"expected one {name} row on {fs}, got {rows}"
        return rows[0]

    def window(self, w: dict) -> pd.DataFrame:
        ev = self.events
        return ev[(ev["ts_ns"] >= w["start_ns"]) & (ev["ts_ns"] <= w["end_ns"])]


def mapping_refs(dd: DevdaxRun) -> int:
    """References a device DAX mapping holds on each folio: where the plan
    probes vmf_insert_folio_pmd (7.x), the one it takes; checked against the
    kernel's written facts."""
    planned = any(p.get("symbol") in MAPPING_REFS for p in dd.trace.header.probe_plan)
    n = DEVDAX_EXPECT.get(dd.kernel, {}).get("mapping_refs", 0)
    assert planned == bool(n), f"mapping references planned: {planned}, expected {n}"
    return n


def heads(pfns, order: int) -> set[int]:
    """The folio heads of pagemap's 4 KiB pfns (units are naturally aligned)."""
    return {p >> order << order for p in pfns}


def on_heads(ev: pd.DataFrame, w: dict, order: int) -> pd.DataFrame:
    return ev[ev["pfn"].isin(list(heads(w["pfns"], order)))]


GUP_LONGTERM_SOURCE = Path("/usr/src/linux-source-6.12.tar.xz")   # bin/setup installs it


def gup_longterm_binary(cache: Path) -> Path:
    """The mm selftest gup_longterm, built once from Debian's linux-source-6.12
    (6.1's source has none: the test arrived in 6.5)."""
    from pageref.workloads.build import source_dir

    out = cache / "gup_longterm-6.12"
    if not (out / "gup_longterm").is_file():
        if not GUP_LONGTERM_SOURCE.is_file():
            pytest.fail(f"{GUP_LONGTERM_SOURCE} missing: run bin/setup (linux-source-6.12)",
                        pytrace=False)
        subprocess.run(["sh", str(source_dir() / "build-mm-selftests.sh"),
                        str(GUP_LONGTERM_SOURCE), str(out), "gup_longterm"],
                       check=True, capture_output=True)
    return out / "gup_longterm"


# The part's guest script: `pageref record` around the device DAX suite, the
# real clients and the gup_longterm selftest, then a registration that outlives
# the trace; the part ends when that holder has exited, so that its late unpin
# is in no later part's recording.
GUEST = r"""
set -u
P="$1" bins="$2" src="$3" glt="$4" r=$PAGEREF_LAB_PART_DIR
$P record -o "$r/trace" --live plain -- sh -c '
    sh "$0/devdax-suite.sh" "$1" /mnt/scratch "$PAGEREF_LAB_DEVDAX"; rc=$?
    sh "$0/rdma-clients.sh" /mnt/ext4 "$PAGEREF_LAB_DEVDAX" || rc=1
    # gup_longterm makes its "local tmpfile" in its working directory
    for fs in ext4 xfs; do
        (cd /mnt/$fs && "$2" > "$3/gup_longterm-$fs.tap" 2>&1; echo $? > "$3/gup_longterm-$fs.rc")
    done
    # never unregistered while the trace runs: the process sleeps 20 s and
    # the recorder stops 3 s after the registration
    "$1/devdax_refs" uring "$PAGEREF_LAB_DEVDAX" 4 4 -20000 > "$3/leak.jsonl" &
    sleep 3
    exit $rc' "$src" "$bins" "$glt" "$r"
rc=$?
for _ in $(seq 60); do pgrep -x devdax_refs > /dev/null || break; sleep 1; done
exit $rc
"""


def _devdax_part(kernel: str):
    from pageref.lab import session
    from pageref.lab.paths import cache_dir
    from pageref.workloads.build import build, source_dir

    bins, src = build(cache_dir()), source_dir()
    glt = gup_longterm_binary(cache_dir())
    return session.Part("dd", script=GUEST, timeout_s=1500,
                        args=(shlex.join(session.pageref_in_guest()), str(bins), str(src),
                              str(glt)))


# In the shared boot (conftest.py), after the fsdax suite, before BTF is hidden.
register_part("dd", 60, _devdax_part)


@pytest.fixture(scope="module")
def dd(lab_boot) -> DevdaxRun:
    return DevdaxRun(lab_boot.kernel, lab_boot.part("dd"))


def test_closing_line_is_the_analysis(dd):
    assert_closing_line_is_the_analysis(dd.run, dd.anomalies)


def expect(dd: DevdaxRun, key: str):
    facts = DEVDAX_EXPECT.get(dd.kernel)
    if facts is None or key not in facts:
        pytest.skip(f"no {key!r} expectation for kernel {dd.kernel} in devdax_expect.py")
    return facts[key]


def test_devdax_is_there_and_every_workload_ran(dd):
    store = dd.layout["devdax"]
    assert store.present, f"no device DAX in the guest: {store.why_missing}"
    assert store.path == "/dev/dax1.0"
    for name in SUITE_ROWS:
        row = dd.row(name)
        if name == "devdax_uring" and not expect(dd, "uring_accepts"):
            assert row["rc"] == 1 and row["register_errno"] == 95, row   # EOPNOTSUPP
        else:
            assert row["rc"] == 0, row
    assert dd.trace.header.lost_total == 0


def test_pfns_are_device_dax_folios(dd):
    """pagemap's pfns fall in device DAX's range; the trace names each folio by
    its head, an order-9 folio of pgmap type generic (shown as devdax)."""
    store, order = dd.layout["devdax"], expect(dd, "order")
    for name in SUITE_ROWS[:4]:
        w = dd.row(name)
        assert w["pfns"] and all(store.holds(p) for p in w["pfns"]), (name, w["pfns"])
        ev = on_heads(dd.window(w), w, order)
        assert len(ev), f"no event on the pages of {name}"
        assert (ev["pgmap_type"].astype(str) == "generic").all()
        assert (ev["order"] == order).all(), ev["order"].unique()
    dev = dd.events[dd.events["pgmap_type"].astype(str) == "generic"]
    assert dev["pfn"].map(store.holds).all()
    assert dd.trace.header.idle_for("generic") == expect(dd, "idle")


def test_odirect_takes_and_drops_every_reference(dd):
    w, order = dd.row("devdax_odirect"), expect(dd, "order")
    take = expect(dd, "odirect_take")
    drop = {"get": "put", "pin": "unpin"}[take]
    ev = on_heads(dd.window(w), w, order)
    taken = ev.loc[ev["kind"] == take, "refs"].sum()
    dropped = ev.loc[ev["kind"] == drop, "refs"].sum()
    # the write and the read each take every page once
    assert taken == 2 * w["pages"], ev[["kind", "refs", "refcount"]]
    if DEVDAX_EXPECT[dd.kernel].get("odirect_read_puts_traced", True):
        assert dropped == taken
    else:
        assert dropped == w["pages"], ev[["kind", "probe", "refs"]]   # the write's only
    first = ev[ev["kind"] == take].iloc[0]
    assert first["refcount"] == expect(dd, "idle") + mapping_refs(dd)


def test_pvm_pins_balance_on_a_large_folio(dd):
    """FOLL_PIN on a large folio: +1 on the refcount and +1 on _pincount per
    page (try_grab_page / try_grab_folio), every pin unpinned."""
    w, order = dd.row("devdax_pvm"), expect(dd, "order")
    ev = on_heads(dd.window(w), w, order)
    pins, unpins = ev[ev["kind"] == "pin"], ev[ev["kind"] == "unpin"]
    assert pins["refs"].sum() == 2 * w["pages"] == unpins["refs"].sum()
    assert pins["refcount"].iloc[0] == expect(dd, "idle") + mapping_refs(dd)
    assert (pins["longterm"] == False).all()  # noqa: E712 (pandas nullable bool)


def test_vmsplice_gets_and_what_is_seen_of_the_pipe_release(dd):
    w, order = dd.row("devdax_vmsplice"), expect(dd, "order")
    ev = on_heads(dd.window(w), w, order)
    mapped = ev["probe"].astype(str).isin(MAPPING_REFS)
    assert ev.loc[mapped, "refs"].sum() == mapping_refs(dd), ev[mapped]
    gets = ev[(ev["kind"] == "get") & (ev["ts_ns"] <= w["spliced_ns"]) & ~mapped]
    assert gets["refs"].sum() == w["pages"]
    puts = ev[(ev["kind"] == "put") & (ev["ts_ns"] >= w["drain_ns"])]
    # where the mapping holds a reference, munmap (after the drain) drops it
    if expect(dd, "pipe_puts_traced"):
        assert puts["refs"].sum() == w["pages"] + mapping_refs(dd)
    else:
        # the inline decrement is invisible (devdax_expect.py): nothing invented
        assert puts["refs"].sum() == mapping_refs(dd), puts


def test_uring_registration(dd):
    """FOLL_LONGTERM on device DAX: GUP accepts it (no longterm_pin_fsdax).
    Held 2 s and released: not a leak. Where io_uring itself refuses the
    file-backed buffer (6.1), the pins are undone at once."""
    w, order = dd.row("devdax_uring"), expect(dd, "order")
    ev = on_heads(dd.window(w), w, order)
    pins, unpins = ev[ev["kind"] == "pin"], ev[ev["kind"] == "unpin"]
    assert len(pins) and (pins["longterm"] == True).all(), pins  # noqa: E712
    rounds = DEVDAX_EXPECT[dd.kernel].get("uring_pin_rounds", 1)
    assert pins["refs"].sum() == rounds * w["pages"] == unpins["refs"].sum(), ev
    held_ns = int(unpins["ts_ns"].max() - pins["ts_ns"].min())
    if expect(dd, "uring_accepts"):
        # 6.12 keeps one pin per folio: io_coalesce_buffer() gives back the
        # other pages' pins at once (measured: pin x4, unpin 3, then unpin 1
        # at IORING_UNREGISTER_BUFFERS); the last unpin is the unregister's
        held = unpins[unpins["ts_ns"] >= w["unregister_ns"]]
        assert len(held) >= 1 and held["refs"].sum() >= 1, unpins
        assert held_ns >= 2_000_000_000
    else:
        assert expect(dd, "uring_pins_then_unpins")
        assert held_ns < 1_000_000_000
    a = dd.anomalies
    assert not (a["kind"] == "longterm_pin_fsdax").any() if len(a) else True
    page = heads(w["pfns"], order)
    leaks = a[(a["kind"] == "pin_leak") & a["pfn"].isin(list(page))] if len(a) else a
    assert len(leaks) == 0, leaks


def test_registration_outliving_the_trace_is_a_pin_leak(dd):
    assert len(dd.leak) == 1, dd.leak
    w, order = dd.leak[0], expect(dd, "order")
    a = dd.anomalies
    page = heads(w["pfns"], order)
    leaks = a[(a["kind"] == "pin_leak") & a["pfn"].isin(list(page))] if len(a) else a
    if expect(dd, "uring_accepts"):
        assert w["register"] == "accepted", w
        assert len(leaks) == 1, a
        assert w["pid"] in set(leaks["pid"]) if "pid" in leaks else True
    else:
        assert w["register_errno"] == 95, w
        assert len(leaks) == 0, leaks


def test_fio_on_device_dax(dd):
    w = dd.row("devdax_fio")
    assert w["directions"] == 2, w
    store = dd.layout["devdax"]
    fio = dd.events[(dd.events["comm"].astype(str) == "fio")
                    & (dd.events["pgmap_type"].astype(str) == "generic")]
    assert len(fio) and fio["pfn"].map(store.holds).all()
    take = expect(dd, "odirect_take")
    drop = {"get": "put", "pin": "unpin"}[take]
    taken = fio.loc[fio["kind"] == take, "refs"].sum()
    dropped = fio.loc[fio["kind"] == drop, "refs"].sum()
    if DEVDAX_EXPECT[dd.kernel].get("odirect_read_puts_traced", True):
        assert taken == dropped
    else:
        assert 0 < dropped < taken    # the writes' releases only


def test_rdma_fsdax_refused(dd):
    """ibv_reg_mr on an fsdax mapping: pin_user_pages_fast(FOLL_LONGTERM)
    refused (check_vma_flags / the gup-fast longterm check) before any page is
    grabbed, or on 5.x pinned and every pin dropped again before the refusal;
    the server fails to create its MR, and nothing is reported."""
    w = dd.row("ib_write_bw", "fsdax")
    assert w["server_rc"] != 0 and "failed to create mr" in w["outcome"].lower(), w
    ev = dd.events[dd.events["comm"].astype(str).str.startswith("ib_")]
    fsdax = ev[ev["pgmap_type"].astype(str) == "fsdax"]
    if DEVDAX_EXPECT.get(dd.kernel, {}).get("rdma_fsdax_pins_then_unpins"):
        pins, unpins = fsdax[fsdax["kind"] == "pin"], fsdax[fsdax["kind"] == "unpin"]
        assert len(pins) and pins["refs"].sum() == unpins["refs"].sum(), fsdax
        a = dd.anomalies
        assert not len(a) or not (a["kind"] == "longterm_pin_fsdax").any(), a
    else:
        assert not fsdax["kind"].isin(["get", "pin"]).any(), fsdax


def test_rdma_devdax_pins_held_for_the_run(dd):
    """ibv_reg_mr on device DAX: accepted, long-term pins held by the
    perftest task until ibv_dereg_mr; every pin released in the trace."""
    for t in ("ib_write_bw", "ib_read_bw"):
        w = dd.row(t, "devdax")
        assert w["server_rc"] == 0 and w["client_rc"] == 0, w
    ev = dd.events[(dd.events["comm"].astype(str).str.startswith("ib_"))
                   & (dd.events["pgmap_type"].astype(str) == "generic")]
    pins, unpins = ev[ev["kind"] == "pin"], ev[ev["kind"] == "unpin"]
    assert len(pins) and (pins["longterm"] == True).all()  # noqa: E712
    assert pins["refs"].sum() == unpins["refs"].sum()
    # a server and a client per test, each registering 2 MiB = 512 pages
    assert pins["refs"].sum() == 4 * 512, pins["refs"].sum()


def test_history_and_analyze_say_devdax(dd):
    for cmd in (["history", str(dd.run.trace)], ["analyze", str(dd.run.trace)]):
        out = subprocess.run([sys.executable, "-m", "pageref", *cmd], capture_output=True,
                             text=True, timeout=300)
        assert "devdax" in out.stdout and "generic" not in out.stdout, out.stdout


def tap(dd: DevdaxRun, fs: str) -> tuple[int, list[str]]:
    d = dd.run.run_dir
    return int((d / f"gup_longterm-{fs}.rc").read_text()), \
        (d / f"gup_longterm-{fs}.tap").read_text().splitlines()


def test_gup_longterm_selftest_on_fsdax(dd):
    """The kernel's own FOLL_LONGTERM test with its local file on each DAX
    file system: the io_uring cases run (fixed buffers on a DAX file must be
    refused, and are); the GUP cases need CONFIG_GUP_TEST (/sys/kernel/debug/
    gup_test), which Debian's kernels lack, and skip themselves saying so."""
    not_ok_expected = DEVDAX_EXPECT.get(dd.kernel, {}).get("gup_longterm_not_ok", [])
    for fs in ("ext4", "xfs"):
        rc, lines = tap(dd, fs)
        not_ok = [int(ln.split()[2]) for ln in lines if ln.startswith("not ok")]
        assert not_ok == not_ok_expected, (fs, [ln for ln in lines if "not ok" in ln])
        assert rc == (1 if not_ok_expected else 0), (fs, lines[-15:])
        local = [i for i, ln in enumerate(lines) if "with local tmpfile" in ln]
        assert local, lines[:20]
        results = [ln for ln in lines if ln.startswith("ok ")]
        assert any("# SKIP gup_test not available" in ln for ln in results), results[:5]
        passed = [ln for ln in results if "SKIP" not in ln]
        assert passed, f"no gup_longterm case ran on {fs}"
    ev = dd.events[dd.events["comm"].astype(str) == "gup_longterm"]
    fsdax = ev[ev["pgmap_type"].astype(str) == "fsdax"]
    a = dd.anomalies
    assert not len(a) or not ((a["kind"] == "longterm_pin_fsdax")
                              & (a["comm"].astype(str) == "gup_longterm")).any(), a
    if not DEVDAX_EXPECT.get(dd.kernel, {}).get("rdma_fsdax_pins_then_unpins"):
        # GUP refuses FOLL_LONGTERM on fsdax before it grabs (not 5.x)
        assert not ((fsdax["kind"] == "pin") & (fsdax["longterm"] == True)).any()  # noqa: E712
