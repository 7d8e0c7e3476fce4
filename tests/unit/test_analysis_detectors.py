"""Each detector of the catalog: cases that must fire (with exact attribution and
evidence) and near-misses that must not. Header: pin bias 1024, fsdax and
devdax idle at 1, private at 0; T = 1 s unless said."""

from __future__ import annotations

import pytest
from analysis_support import FSDAX, MS, T0, S, Tr

P2 = FSDAX + 2


# -- refcount_underflow ---------------------------------------------------------------

def test_underflow_put_below_idle_fires_with_exact_fields():
    t = Tr()
    t.add("get", rc=1)
    r = t.add("put", rc=1, pid=7, comm="kworker/u8:2")
    a = t.anomalies()
    assert list(a["kind"]) == ["refcount_underflow"]
    row = a.iloc[0]
    assert row["pfn"] == FSDAX and row["pid"] == 7 and row["comm"] == "kworker/u8:2"
    assert row["ts_ns"] == T0 + 2 * MS and row["evidence"] == [r]
    assert row["severity"] == "error"
    assert "from 1 to 0, below idle 1" in row["detail"]


def test_underflow_unpin_counts_the_pin_bias():
    t = Tr()
    t.add("unpin", rc=1024)  # 1024 - 1024 = 0 < idle 1
    assert t.kinds() == [("refcount_underflow", FSDAX)]


def test_underflow_large_folio_unpin_weighs_one_per_ref():
    t = Tr()
    t.add("unpin", rc=2, refs=2, order=9)  # 2 - 2*1 = 0 < 1
    assert t.kinds() == [("refcount_underflow", FSDAX)]


@pytest.mark.parametrize("kind,rc,extra", [
    ("put", 2, {}),                      # 2 -> 1 == idle
    ("unpin", 1025, {}),                 # 1025 - 1024 = 1 == idle
    ("unpin", 3, {"order": 9, "refs": 2}),  # 3 - 2 = 1 == idle
])
def test_underflow_near_misses_to_exactly_idle(kind, rc, extra):
    t = Tr()
    t.add(kind, rc=rc, **extra)
    assert t.kinds() == []


def test_underflow_needs_an_observed_refcount():
    t = Tr()
    t.add("get", rc=1)
    t.add("put", rc=2)
    t.add("put")  # inferred 1 -> 0, but not observed: not decided
    assert t.kinds() == []


@pytest.mark.parametrize("pgmap", ["private", None])
def test_underflow_idle_zero_types_may_reach_zero(pgmap):
    t = Tr()
    t.add("put", rc=1, pgmap=pgmap)
    assert t.kinds() == []
    t.add("put", rc=0, pgmap=pgmap)
    assert t.kinds() == [("refcount_underflow", FSDAX)]


# -- grab_on_free_page ----------------------------------------------------------------

@pytest.mark.parametrize("kind", ["get", "pin"])
def test_grab_on_free_page_fires(kind):
    t = Tr()
    r = t.add(kind, rc=0, pgmap="private")
    t.add("put" if kind == "get" else "unpin", rc=1 if kind == "get" else 1024,
          pgmap="private")
    a = t.anomalies()
    assert list(a["kind"]) == ["grab_on_free_page"] and a["evidence"][0] == [r]


@pytest.mark.parametrize("kind,rc", [("get", 1), ("grab_failed", 0), ("get", None)])
def test_grab_on_free_page_near_misses(kind, rc):
    t = Tr()
    t.add(kind, rc=rc, pgmap="private")
    assert t.kinds() == []


# -- pin_put_mismatch -----------------------------------------------------------------

def test_pin_put_mismatch_fires_and_is_not_also_a_leak():
    t = Tr()
    p = t.add("pin", rc=1, pid=5, comm="qemu-system-x86")
    r = t.add("put", rc=1025, pid=5, comm="qemu-system-x86")
    a = t.anomalies()
    assert list(a["kind"]) == ["pin_put_mismatch"]
    assert a["evidence"][0] == [p, r] and a["pid"][0] == 5
    assert "1 pin(s) outstanding" in a["detail"][0]


def test_pin_put_mismatch_large_folio():
    t = Tr()
    t.add("pin", rc=1, order=9)
    t.add("put", rc=2, order=9)  # 2 - 1 = 1 < idle 1 + 1*1
    assert t.kinds() == [("pin_put_mismatch", FSDAX)]


def test_pin_put_mismatch_near_miss_put_of_a_get_on_a_pinned_page():
    t = Tr()
    t.add("pin", rc=1)
    t.add("get", rc=1025)
    t.add("put", rc=1026)    # 1025 >= idle + 1*1024: a get's release
    t.add("unpin", rc=1025)
    assert t.kinds() == []


def test_pin_put_mismatch_near_miss_put_without_pins():
    t = Tr()
    t.add("get", rc=1)
    t.add("put", rc=2)
    assert t.kinds() == []


def test_pin_put_mismatch_each_put_releases_one_pin():
    t = Tr()
    t.add("pin", rc=1)
    t.add("pin", rc=1025)
    t.add("put", rc=2049)  # 2048 < 1 + 2*1024: P 2 -> 1
    t.add("put", rc=2048)  # 2047 < 1 + 1*1024? no: 2047 >= 1025 -> not a mismatch
    a = t.anomalies()
    assert sorted(a["kind"]) == ["pin_leak", "pin_put_mismatch"]
    from pageref.analysis.history import df_history

    h = df_history(t.trace(), FSDAX)
    assert list(h["pins"]) == [1, 2, 1, 1]
    assert list(h["pin_put"]) == [False, False, True, False]


# -- pin_leak -------------------------------------------------------------------------

def test_pin_leak_reports_pinner_and_hold_time():
    t = Tr(end_ns=T0 + 3 * S)
    t.add("get", rc=1, pid=1)
    p = t.add("pin", rc=2, pid=42, comm="ib_write_bw")
    t.add("put", rc=1026, pid=1)
    a = t.anomalies()
    assert list(a["kind"]) == ["pin_leak"]
    row = a.iloc[0]
    assert row["pid"] == 42 and row["comm"] == "ib_write_bw" and row["ts_ns"] == T0 + 2 * MS
    assert row["evidence"] == [p] and row["severity"] == "error"
    assert "held for 3.00 s" in row["detail"]


def test_pin_leak_short_hold_is_a_warning():
    t = Tr()
    t.add("pin", rc=1)
    t.add("get", rc=1025, pfn=P2)  # the trace ends 1 ms after the pin
    a = t.anomalies()
    assert list(a["kind"]) == ["pin_leak"] and a["severity"][0] == "warning"


@pytest.mark.parametrize("events", [
    [("pin", 1), ("unpin", 1025)],
    [("unpin", 1025)],                       # pinned before the trace began
    [("pin", 1), ("free", 1025)],            # reported as free_while_referenced
])
def test_pin_leak_near_misses(events):
    t = Tr()
    for kind, rc in events:
        t.add(kind, rc=rc)
    assert ("pin_leak", FSDAX) not in t.kinds()


# -- free_while_referenced ------------------------------------------------------------

def test_free_while_pinned_fires():
    t = Tr()
    p = t.add("pin", rc=1, pid=9, comm="fio")
    f = t.add("free", rc=1025, pid=11, comm="xfs_io")
    a = t.anomalies()
    assert list(a["kind"]) == ["free_while_referenced"]
    assert a["evidence"][0] == [p, f] and a["pid"][0] == 11
    assert "fio[9]" in a["detail"][0]


def test_free_with_gets_only_is_not_decided():
    t = Tr()
    t.add("get", rc=1)
    t.add("free", rc=2)
    assert t.kinds() == []


def test_free_while_pinned_mentions_gets_as_a_hint():
    t = Tr()
    t.add("pin", rc=1)
    t.add("get", rc=1025)
    t.add("free", rc=1026)
    a = t.anomalies()
    assert list(a["kind"]) == ["free_while_referenced"] and "1 get(s)" in a["detail"][0]


def test_free_after_unpin_is_fine_and_resets_the_counts():
    t = Tr()
    t.add("pin", rc=1)
    t.add("unpin", rc=1025)
    t.add("free", rc=1)
    t.add("unpin", rc=1)  # a stray release after the free does not go negative
    assert ("free_while_referenced", FSDAX) not in t.kinds()


# -- double_free ----------------------------------------------------------------------

def test_double_free_fires_with_both_frees_as_evidence():
    t = Tr()
    t.add("get", rc=1)
    t.add("put", rc=2)
    f1 = t.add("free", rc=1)
    f2 = t.add("free", rc=1)
    a = t.anomalies()
    assert list(a["kind"]) == ["double_free"] and a["evidence"][0] == [f1, f2]


def test_double_free_refused_grab_does_not_count_as_a_grab():
    t = Tr()
    t.add("free", rc=1)
    t.add("grab_failed", rc=1, longterm=True)
    t.add("free", rc=1)
    assert t.kinds() == [("double_free", FSDAX)]


@pytest.mark.parametrize("between", ["get", "pin"])
def test_double_free_near_miss_grab_between(between):
    t = Tr()
    t.add("free", rc=1)
    t.add(between, rc=1)
    t.add("put" if between == "get" else "unpin", rc=2 if between == "get" else 1025)
    t.add("free", rc=1)
    assert t.kinds() == []


def test_double_free_owner_reallocation_is_not_one():
    """A device-private page reused by its driver (hmm-tests on the lab's debug
    kernel): free, the owner's untraced zone_device_page_init, the last put
    (refcount 1 seen), free again. Not a double free; two frees with only the
    page seen unreferenced between still are."""
    t = Tr()
    t.add("free", rc=0, pgmap="private")
    t.add("put", rc=1, probe="__folio_put", pgmap="private")
    t.add("free", rc=0, pgmap="private")
    assert t.kinds() == []
    t = Tr()
    t.add("free", rc=0, pgmap="private")
    t.add("busy", rc=0, pgmap="private")
    f2 = t.add("free", rc=0, pgmap="private")
    a = t.anomalies()
    assert list(a["kind"]) == ["double_free"] and a["evidence"][0][-1] == f2


def test_double_free_near_miss_other_page():
    t = Tr()
    t.add("free", rc=1)
    t.add("free", rc=1, pfn=P2)
    assert t.kinds() == []


# -- busy_page_stall and missed_wakeup ---------------------------------------------------

def truncate(t: Tr, release_after: int, recheck_after: int | None, end_after: int,
             rechecker: int = 50, mapping: int = 0xAB, recheck_mapping: int = 0xAB):
    """pin by fio[1]; busy to xfs_io[50] at 1 s; unpin release_after later; the
    truncating task re-checks recheck_after after that; trace ends end_after
    after the busy report."""
    t.add("pin", rc=1, pid=1, at=0)
    b = t.add("busy", rc=1025, pid=50, comm="xfs_io", at=S, mapping=mapping)
    u = t.add("unpin", rc=1025, pid=1, at=S + release_after)
    if recheck_after is not None:
        t.add("busy", pfn=None, pid=rechecker, comm="xfs_io", at=S + release_after + recheck_after,
              mapping=recheck_mapping)
    t.add("get", rc=1, pfn=P2, at=S + end_after)
    t.add("put", rc=2, pfn=P2, at=S + end_after + 1)
    return b, u


def test_busy_page_stall_fires_with_holders():
    t = Tr()
    b, u = truncate(t, 3 * S // 2, 10 * MS, 3 * S)
    a = t.anomalies()
    assert list(a["kind"]) == ["busy_page_stall"]
    row = a.iloc[0]
    assert row["pid"] == 50 and row["comm"] == "xfs_io" and row["ts_ns"] == T0 + S
    assert row["evidence"] == [0, b, u] and "holders: fio[1]" in row["detail"]
    assert row["severity"] == "warning"


def test_busy_page_stall_near_miss_released_within_T():
    t = Tr()
    truncate(t, 9 * S // 10, 10 * MS, 3 * S)
    assert t.kinds() == []


def test_busy_page_stall_threshold_is_respected():
    t = Tr()
    truncate(t, 3 * S // 2, 10 * MS, 3 * S)
    assert t.kinds(threshold_ns=2 * S) == []
    assert t.kinds(threshold_ns=3 * S // 2) == [("busy_page_stall", FSDAX)]


def test_busy_page_stall_never_released():
    t = Tr()
    t.add("pin", rc=1, pid=1, at=0)
    t.add("busy", rc=1025, pid=50, at=S)
    t.add("get", rc=1, pfn=P2, at=S + S)  # the trace goes on for exactly T
    assert t.kinds() == [("busy_page_stall", FSDAX), ("pin_leak", FSDAX)]


def test_busy_page_stall_undecided_when_the_trace_ends_early():
    t = Tr()
    t.add("pin", rc=1, pid=1, at=0)
    t.add("busy", rc=1025, pid=50, at=S)
    t.add("get", rc=1, pfn=P2, at=S + S // 2)
    assert t.kinds() == [("pin_leak", FSDAX)]


def test_busy_repeated_reports_are_one_episode():
    t = Tr()
    t.add("pin", rc=1, pid=1, at=0)
    t.add("busy", rc=1025, pid=50, at=S)
    t.add("busy", rc=1025, pid=50, at=S + S // 2)
    t.add("busy", rc=1025, pid=50, at=S + S)
    t.add("unpin", rc=1025, pid=1, at=S + 3 * S // 2)
    t.add("busy", pfn=None, pid=50, at=S + 3 * S // 2 + MS)
    t.add("get", rc=1, pfn=P2, at=5 * S)
    a = t.anomalies()
    assert list(a["kind"]) == ["busy_page_stall"] and "3 time(s)" in a["detail"][0]


def test_missed_wakeup_fires():
    t = Tr()
    b, u = truncate(t, S // 10, None, 2 * S)
    a = t.anomalies()
    assert list(a["kind"]) == ["missed_wakeup"]
    row = a.iloc[0]
    assert row["pid"] == 50 and row["ts_ns"] == T0 + S + S // 10
    assert row["evidence"] == [b, u] and row["severity"] == "error"


def test_missed_wakeup_near_miss_task_checks_again():
    t = Tr()
    truncate(t, S // 10, 100 * MS, 2 * S)
    assert t.kinds() == []


def test_missed_wakeup_recheck_exactly_at_T_counts():
    t = Tr()
    truncate(t, S // 10, S, 3 * S)
    assert t.kinds() == []
    t = Tr()
    truncate(t, S // 10, S + 1, 3 * S)
    assert t.kinds() == [("missed_wakeup", FSDAX)]


def test_missed_wakeup_undecided_when_the_trace_ends_within_T():
    t = Tr()
    truncate(t, S // 10, None, S // 2)
    assert t.kinds() == []


def test_missed_wakeup_another_tasks_check_does_not_count():
    t = Tr()
    truncate(t, S // 10, 100 * MS, 2 * S, rechecker=51)
    assert t.kinds() == [("missed_wakeup", FSDAX)]


def test_missed_wakeup_check_of_another_mapping_does_not_count():
    t = Tr()
    truncate(t, S // 10, 100 * MS, 2 * S, recheck_mapping=0xCD)
    assert t.kinds() == [("missed_wakeup", FSDAX)]


def test_missed_wakeup_not_when_the_task_was_awake_before_the_idle_point():
    """The truncating task checked again (nothing busy) after its report and
    before the page went idle: it was not asleep on the page, whatever the
    idle point the trace shows later (an unseen earlier idle, the page reused)."""
    for check_between in (True, False):
        t = Tr()
        t.add("pin", rc=1, pid=1, at=0)
        t.add("busy", rc=1025, pid=50, comm="xfs_io", at=S, mapping=0xAB)
        if check_between:
            t.add("busy", pfn=None, pid=50, comm="xfs_io", at=S + 100 * MS, mapping=0xCD)
        t.add("unpin", rc=1025, pid=1, at=3 * S)
        t.add("get", rc=1, pfn=P2, at=6 * S)
        t.add("put", rc=2, pfn=P2, at=6 * S + 1)
        fired = ("missed_wakeup", FSDAX) in t.kinds()
        assert fired == (not check_between)     # without it: a missed wake-up


# -- longterm_pin_fsdax ---------------------------------------------------------------

def test_longterm_pin_on_fsdax_fires():
    t = Tr()
    r = t.add("pin", rc=1, longterm=True)
    t.add("unpin", rc=1025, at=3 * S)       # kept past T
    a = t.anomalies()
    assert list(a["kind"]) == ["longterm_pin_fsdax"] and a["evidence"][0] == [r]


def test_longterm_pin_fsdax_type_from_another_event_of_the_page():
    t = Tr()
    t.add("get", rc=1)
    t.add("put", rc=2)
    t.add("pin", rc=1, longterm=True, pgmap=None)
    t.add("unpin", rc=1025, pgmap=None, at=3 * S)
    assert t.kinds() == [("longterm_pin_fsdax", FSDAX)]


def test_longterm_pin_fsdax_undone_at_once_by_its_task_is_the_5x_refusal():
    # 5.10's __gup_longterm_locked: pin every page, check_dax_vmas() finds
    # the fsdax vma, unpin_user_pages() (the lab's io_uring registration)
    t = Tr()
    for pfn in (FSDAX, FSDAX + 1):
        t.add("pin", pfn=pfn, rc=1, longterm=True)
    for pfn in (FSDAX, FSDAX + 1):
        t.add("unpin", pfn=pfn, rc=1025)
    assert t.kinds() == []


@pytest.mark.parametrize("case", ["another task", "kept past T", "never released"])
def test_longterm_pin_fsdax_kept_still_fires(case):
    t = Tr()
    t.add("pin", rc=1, longterm=True)
    if case == "another task":
        t.add("unpin", rc=1025, pid=200)
    elif case == "kept past T":
        t.add("unpin", rc=1025, at=2 * S)
    assert ("longterm_pin_fsdax", FSDAX) in t.kinds()


@pytest.mark.parametrize("kind,pgmap,longterm", [
    ("pin", "devdax", True), ("grab_failed", "fsdax", True), ("pin", "fsdax", False),
])
def test_longterm_pin_fsdax_near_misses(kind, pgmap, longterm):
    t = Tr()
    t.add(kind, rc=1, pgmap=pgmap, longterm=longterm)
    if kind == "pin":
        t.add("unpin", rc=1025, pgmap=pgmap)
    assert t.kinds() == []


# -- grab_refused_on_free_page --------------------------------------------------------

def test_grab_refused_on_free_page_fires_where_idle_is_one():
    t = Tr()
    r = t.add("grab_failed", rc=0)
    a = t.anomalies()
    assert list(a["kind"]) == ["grab_refused_on_free_page"] and a["evidence"][0] == [r]
    assert a["severity"][0] == "warning"


@pytest.mark.parametrize("rc,pgmap", [(0, "private"), (1, "fsdax"), (None, "fsdax")])
def test_grab_refused_near_misses(rc, pgmap):
    t = Tr()
    t.add("grab_failed", rc=rc, pgmap=pgmap)
    assert t.kinds() == []


# -- ordering and gaps ----------------------------------------------------------------

def test_events_out_of_file_order_are_sorted_by_time():
    t = Tr()
    t.add("put", rc=2, at=2 * MS)
    t.add("get", rc=1, at=1 * MS)  # recorded later by another CPU
    assert t.kinds() == []


def test_equal_timestamps_keep_file_order():
    t = Tr()
    t.add("get", rc=1, at=MS)
    t.add("put", rc=2, at=MS)
    t.add("pin", rc=1, at=2 * MS)
    t.add("unpin", rc=1025, at=2 * MS)
    assert t.kinds() == []


def test_lost_events_are_named_in_the_detail():
    t = Tr()
    t.add("pin", rc=1)
    t.add("lost", pfn=None, cpu=1, count=7)
    t.add("get", rc=1025)
    a = t.anomalies()
    assert list(a["kind"]) == ["pin_leak"] and "7 events were lost" in a["detail"][0]


# -- busy_check_missed_reference --------------------------------------------------------

def pipe_truncate(t: Tr, kind: str = "get", release_at: int = 3 * S, check_mapping: int = 0xAB,
                  grab_mapping: int = 0xAB) -> tuple[list[int], int]:
    """vmsplice[7] grabs two pages of mapping 0xAB; xfs_io[50]'s busy check (at 1 s)
    finds nothing; the pipe drops them at release_at (page->mapping cleared by
    then)."""
    grabs = [t.add(kind, rc=1, pfn=p, pid=7, comm="vmsplice", at=i * MS, mapping=grab_mapping)
             for i, p in enumerate((FSDAX, FSDAX + 1))]
    b = t.add("busy", pfn=None, pid=50, comm="xfs_io", at=S, mapping=check_mapping)
    rel = "put" if kind == "get" else "unpin"
    for i, p in enumerate((FSDAX, FSDAX + 1)):
        t.add(rel, pfn=p, pid=7, comm="vmsplice", at=release_at + i * MS)
    return grabs, b


def test_busy_check_missed_reference_fires_with_the_holders():
    t = Tr()
    grabs, b = pipe_truncate(t)
    a = t.anomalies()
    assert list(a["kind"]) == ["busy_check_missed_reference"]
    row = a.iloc[0]
    assert row["pfn"] == FSDAX and row["ts_ns"] == T0 + S
    assert row["pid"] == 50 and row["comm"] == "xfs_io" and row["severity"] == "warning"
    assert row["evidence"] == [*grabs, b]
    assert "2 page(s)" in row["detail"] and "2 get(s)" in row["detail"]
    assert "holders: vmsplice[7]" in row["detail"] and "0xab" in row["detail"]


def test_busy_check_missed_reference_pins_are_an_error():
    t = Tr()
    grabs, b = pipe_truncate(t, kind="pin")
    a = t.anomalies()
    assert list(a["kind"]) == ["busy_check_missed_reference"]
    assert a["severity"][0] == "error" and "2 pin(s)" in a["detail"][0]
    assert a["evidence"][0] == [*grabs, b]


def test_busy_check_missed_reference_near_miss_released_before_the_check():
    t = Tr()
    pipe_truncate(t, release_at=S // 2)
    assert t.kinds() == []


def test_busy_check_missed_reference_near_miss_another_mapping():
    t = Tr()
    pipe_truncate(t, check_mapping=0xCD)
    assert t.kinds() == []


def test_busy_check_missed_reference_near_miss_page_reused_by_another_mapping():
    """The page's last recorded mapping decides: a leaked get under 0xAB, then the
    page shows up under 0xCD before the check of 0xAB."""
    t = Tr()
    t.add("get", rc=1, pid=7, at=0, mapping=0xAB)
    t.add("busy", rc=2, pid=60, at=MS, mapping=0xCD)
    t.add("busy", pfn=None, pid=50, at=S, mapping=0xAB)
    assert t.kinds() == []


def test_busy_check_missed_reference_near_miss_check_found_a_page_busy():
    t = Tr()
    t.add("get", rc=1, pid=7, at=0, mapping=0xAB)
    t.add("busy", rc=2, pid=50, at=S // 2, mapping=0xAB)
    t.add("put", rc=2, pid=7, at=S // 2 + MS)
    t.add("busy", pfn=None, pid=50, at=S // 2 + 2 * MS, mapping=0xAB)
    assert t.kinds() == []


def test_busy_check_missed_reference_not_decided_across_lost_events():
    t = Tr()
    t.add("get", rc=1, pid=7, at=0, mapping=0xAB)
    t.add("lost", pfn=None, cpu=1, count=3, at=MS)
    t.add("busy", pfn=None, pid=50, at=S, mapping=0xAB)
    t.add("put", rc=2, pid=7, at=2 * S)
    assert t.kinds() == []


def test_busy_check_missed_reference_lost_events_before_the_references_do_not_matter():
    t = Tr()
    t.add("lost", pfn=None, cpu=1, count=3, at=0)
    t.add("get", rc=1, pid=7, at=MS, mapping=0xAB)
    t.add("busy", pfn=None, pid=50, at=S, mapping=0xAB)
    t.add("put", rc=2, pid=7, at=2 * S)
    assert t.kinds() == [("busy_check_missed_reference", FSDAX)]


def test_busy_check_missed_reference_mapping_reference_dropped_at_unmap():
    """7.2: fsdax idles at 0, the mapping's reference is a traced get
    (vmf_insert_*) dropped at munmap (folios_put_refs), the pipe's last put frees
    the page before the truncate's empty check."""
    t = Tr(idle_refcount={"fsdax": 0})
    t.add("get", pid=7, at=0, mapping=0xAB)             # fault: the mapping's reference
    t.add("get", rc=1, pid=7, at=MS, mapping=0xAB)      # vmsplice
    t.add("put", rc=2, pid=7, at=2 * MS, mapping=0xAB)  # munmap
    t.add("busy", rc=1, pid=50, at=3 * MS, mapping=0xAB)
    t.add("put", rc=1, pid=7, at=S)                     # the pipe drained
    t.add("free", rc=0, pid=7, at=S + 1)
    t.add("busy", pfn=None, pid=50, at=S + MS, mapping=0xAB)
    assert t.kinds() == []
