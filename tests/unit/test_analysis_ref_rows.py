"""`ref` rows (trace format 2: the kernel's page_ref tracepoints) in the page
model: never a reference taken or dropped, no verdict changed by them, but
the page's exact refcount in `pageref history`."""

from __future__ import annotations

from analysis_support import FSDAX, S, Tr, events_frame, run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pageref.analysis import model
from pageref.analysis.anomalies import columns_of, find_anomalies
from pageref.analysis.history import df_history
from pageref.analysis.synth import BUGS, random_scenario
from pageref.trace.io import Trace

IDLE0_UNDECIDABLE = ("pin_put_mismatch", "grab_refused_on_free_page")


def _verdicts(events, header, keep=None):
    """The anomalies as records, evidence mapped through `keep` (row i of the
    trace is row keep[i] of the full one)."""
    a = find_anomalies(Trace(None, header, events_frame(events)))
    if keep is not None:
        a["evidence"] = [[keep[r] for r in rows] for rows in a["evidence"]]
    return a.to_dict("records")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.sampled_from([0, 1]),
       st.lists(st.sampled_from(BUGS), max_size=4), st.sampled_from([0.0, 0.3]),
       st.integers(0, 3))
def test_adding_the_ref_rows_of_a_trace_changes_no_verdict(seed, idle, bugs, drop, lost):
    bugs = tuple(b for b in bugs if idle or b not in IDLE0_UNDECIDABLE)
    s, events = random_scenario(seed, bugs=bugs, clean_pages=3, truncates=2, shuffle=3,
                                lost_rows=lost, page_refs=True, idle_fsdax=idle,
                                drop_refcount=drop)
    keep = [i for i, e in enumerate(events) if e["kind"] != "ref"]
    assert len(keep) < len(events)                 # the trace has ref rows
    full = _verdicts(events, s.header)
    assert full == _verdicts([events[i] for i in keep], s.header, keep)
    assert {(a["kind"], a["pfn"]) for a in full} == set(s.expected)


def test_ref_rows_count_no_reference():
    """A get and its page_ref_mod, a put and its: one get, one put, not two."""
    t = Tr()
    t.add("get", rc=1)
    t.add("ref", refs=1, refcount=1, refcount_after=2, probe="page_ref_mod_unless")
    t.add("put", rc=2)
    t.add("ref", refs=-1, refcount=2, refcount_after=1, probe="page_ref_mod_and_test")
    h = df_history(t.trace(), FSDAX)
    assert h["gets"].tolist() == [1, 1, 0, 0]
    assert h["pins"].tolist() == [0, 0, 0, 0]
    assert t.kinds() == []


def test_ref_rows_alone_are_no_underflow_nor_leak():
    """An inline put's ref row taking the page below idle, and a pin's ref
    rows with no ordinary row: no verdict (only ordinary rows decide)."""
    t = Tr()
    t.add("ref", refs=-1, refcount=1, refcount_after=0, probe="page_ref_mod_and_test")
    t.add("ref", refs=1024, refcount=0, refcount_after=1024, probe="page_ref_mod")
    assert t.kinds() == []


def test_history_shows_exact_counts_from_ref_rows():
    """An ordinary row without a refcount takes the count the page's latest ref
    row left: exact, no `~`; a ref row shows its own before -> after."""
    t = Tr()
    t.add("get", rc=1)
    t.add("ref", refs=1, refcount=1, refcount_after=2, probe="page_ref_mod_unless")
    t.add("put")                                   # walk: ahead of the kernel's put
    t.add("ref", refs=-1, refcount=2, refcount_after=1, probe="page_ref_mod_and_test")
    t.add("busy")
    h = df_history(t.trace(), FSDAX)
    assert h["refcount_before"].tolist() == [1, 1, 2, 2, 1]
    assert h["refcount_after"].tolist() == [2, 2, 1, 1, 1]
    assert h["refcount_observed"].all()
    assert h["probe"].tolist()[1] == "page_ref_mod_unless"


def test_without_ref_rows_the_same_count_is_inferred(tmp_path):
    t = Tr()
    t.add("get", rc=1)
    t.add("put")
    h = df_history(t.trace(), FSDAX)
    assert h["refcount_observed"].tolist() == [True, False]
    code, out, _ = run_cli("history", t.write(tmp_path / "t.jsonl"), "--pfn", hex(FSDAX))
    assert code == 0 and "~2 -> ~1" in out


def test_history_text_lists_ref_rows(tmp_path):
    t = Tr()
    t.add("pin", rc=1)
    t.add("ref", refs=1, refcount=1, refcount_after=2, probe="page_ref_mod_unless")
    t.add("ref", refs=1023, refcount=2, refcount_after=1025, probe="page_ref_mod")
    t.add("unpin")
    t.add("ref", refs=-1024, refcount=1025, refcount_after=1, probe="page_ref_mod_and_test")
    t.add("free")
    t.add("ref", refcount_after=1, probe="page_ref_set")
    code, out, _ = run_cli("history", t.write(tmp_path / "t.jsonl"), "--pfn", hex(FSDAX))
    assert code == 0
    lines = [ln for ln in out.splitlines() if " ref " in ln]
    assert len(lines) == 4
    assert "+1023  2 -> 1025" in lines[1] and "page_ref_mod" in lines[1]
    assert "-1024  1025 -> 1" in lines[2]
    assert "set  1 -> 1" in lines[3] and "page_ref_set" in lines[3]
    unpin = next(ln for ln in out.splitlines() if " unpin " in ln)
    assert "1025 -> 1" in unpin and "~" not in unpin


def test_a_loss_between_a_row_and_its_ref_row_moves_no_gap():
    """Events lost between a get's ref row and the next put's: the detectors
    see the hole on the put (after its previous ordinary row), as without the
    ref rows; the history marks it before the ref row that follows the loss."""
    def trace(refs: bool):
        t = Tr()
        t.add("get", rc=1, pid=7)
        if refs:
            t.add("ref", refs=1, refcount=1, refcount_after=2)
        t.add("lost", pfn=None, pgmap=None, count=5, cpu=0)
        if refs:
            t.add("ref", refs=-1, refcount=2, refcount_after=1)
        t.add("put", rc=1, refs=2, pid=8)
        return t.trace()

    with_refs = columns_of(trace(True))
    m = model.build(with_refs, S)
    assert m.gap.tolist() == [False, False, False, True]
    assert m.gap_any is not None and m.gap_any.tolist() == [False, False, True, False]
    a, b = find_anomalies(trace(True)), find_anomalies(trace(False))
    assert a["kind"].tolist() == b["kind"].tolist() == ["refcount_underflow"]
    assert a["severity"].tolist() == b["severity"].tolist()
    h = df_history(trace(True), FSDAX)
    assert h["gap"].tolist() == [False, False, True, False]


def test_a_long_term_pin_undone_at_once_with_its_ref_rows_between():
    """5.x's refusal after the grab: pin, its ref rows, the unpin: not kept."""
    t = Tr()
    t.add("pin", rc=1, longterm=True)
    t.add("ref", refs=1, refcount=1, refcount_after=2)
    t.add("ref", refs=1023, refcount=2, refcount_after=1025)
    t.add("unpin", rc=1025)
    t.add("ref", refs=-1024, refcount=1025, refcount_after=1)
    t.add("get", rc=1, at=3 * S)
    assert t.kinds() == []
