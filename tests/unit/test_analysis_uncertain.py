"""Verdicts across a loss are not errors (issue 11 point 3): an anomaly whose
evidence spans lost events, or that falls on a page a `lost` row names (references
a bounded walk could not follow), has severity `uncertain`, shown apart."""

from __future__ import annotations

import json

from analysis_support import FSDAX, MS, S, Tr, run_cli

from pageref.analysis.history import df_history
from pageref.analysis.severity import ORDER, Severity
from pageref.analysis.summary import summarize

P2 = FSDAX + 1


def test_severity_vocabulary_and_display_order():
    assert [s.value for s in ORDER] == ["error", "warning", "uncertain"]
    assert Severity.UNCERTAIN == "uncertain"


def test_pin_leak_across_a_cpu_loss_is_uncertain():
    t = Tr()
    t.add("pin", rc=1, at=0)
    t.add("lost", pfn=None, cpu=1, count=7, at=MS)
    t.add("get", rc=1025, at=2 * S)
    a = t.anomalies()
    assert list(a["kind"]) == ["pin_leak"] and list(a["severity"]) == ["uncertain"]


def test_pin_leak_with_a_loss_after_the_pages_last_event_is_uncertain():
    """The unpin may be among events lost after the page was last seen."""
    t = Tr()
    t.add("pin", rc=1, at=0)
    t.add("get", rc=1, pfn=P2, at=MS)
    t.add("lost", pfn=None, cpu=1, count=2, at=2 * MS)
    t.add("put", rc=2, pfn=P2, at=2 * S)
    a = t.anomalies()
    assert list(zip(a["kind"], a["severity"])) == [("pin_leak", "uncertain")]


def test_pin_leak_with_the_loss_before_the_pin_stays_an_error():
    t = Tr()
    t.add("lost", pfn=None, cpu=1, count=2, at=0)
    t.add("pin", rc=1, at=MS)
    t.add("get", rc=1, pfn=P2, at=2 * S)
    a = t.anomalies()
    assert list(zip(a["kind"], a["severity"])) == [("pin_leak", "error")]


def test_a_page_lost_row_makes_that_pages_later_verdicts_uncertain():
    """fidelity's unwalked range: `lost` with a pfn and refs = references on
    that page not seen. The free with a pin outstanding is not an accusation."""
    t = Tr()
    t.add("pin", rc=1, at=0)
    t.add("lost", pfn=FSDAX, refs=1, at=MS)
    t.add("free", rc=1, at=2 * MS)
    a = t.anomalies()
    assert list(zip(a["kind"], a["severity"])) == [("free_while_referenced", "uncertain")]


def test_a_page_lost_row_does_not_touch_other_pages():
    t = Tr()
    t.add("pin", rc=1, at=0)
    t.add("lost", pfn=P2, refs=3, at=MS)
    t.add("free", rc=1, at=2 * MS)
    a = t.anomalies()
    assert list(zip(a["kind"], a["severity"])) == [("free_while_referenced", "error")]


def test_a_walk_lost_row_covers_every_page_of_its_range():
    """A stopped walk names pfn .. pfn + count - 1 in one row on the first page:
    the other pages of the range are uncertain from then on too (their own
    verdicts before it stand), a page past the range is not touched."""
    for victim, expected in ((FSDAX + 3, "uncertain"), (FSDAX + 4, "error")):
        t = Tr()
        t.add("pin", pfn=victim, rc=1, at=0)
        t.add("lost", pfn=FSDAX, refs=4, count=4, at=MS)    # FSDAX .. FSDAX+3
        t.add("free", pfn=victim, rc=1, at=2 * MS)
        a = t.anomalies()
        assert list(zip(a["kind"], a["severity"])) == [("free_while_referenced", expected)]


def test_a_walk_lost_row_on_a_tail_page_covers_its_large_folio():
    """The walk names the frames it did not reach (order 0, maybe tails); the
    analysis counts a large folio on its head: the folio is uncertain."""
    head = FSDAX + 512
    t = Tr()
    t.add("pin", pfn=head, rc=1, order=9, at=0)
    t.add("lost", pfn=head + 100, refs=20, count=20, at=MS)
    t.add("free", pfn=head, rc=1, order=9, at=2 * MS)
    a = t.anomalies()
    assert list(zip(a["kind"], a["severity"])) == [("free_while_referenced", "uncertain")]


def test_a_page_lost_row_earlier_than_the_verdict_only():
    """Before the page's own lost row, its verdicts stand."""
    t = Tr()
    t.add("put", rc=1, at=0)                     # underflow: 1 -> 0, below idle 1
    t.add("lost", pfn=FSDAX, refs=1, at=MS)
    t.add("put", rc=1, at=2 * MS)                # the same, after the loss
    a = t.anomalies()
    assert list(zip(a["kind"], a["severity"])) == [
        ("refcount_underflow", "error"), ("refcount_underflow", "uncertain")]


def test_page_lost_row_breaks_refcount_inference_and_shows_as_a_gap():
    t = Tr()
    t.add("get", rc=1, at=0)
    t.add("lost", pfn=FSDAX, refs=2, at=MS)
    t.add("get", at=2 * MS)                      # refcount not observed
    h = df_history(t.trace())
    assert list(h["kind"]) == ["get", "get"]     # the history lists references
    assert list(h["gap"]) == [False, True] and list(h["lost"]) == [0, 2]
    assert h["refcount_before"].isna().tolist() == [False, True]


def test_missed_wakeup_with_a_loss_after_the_idle_point_is_uncertain():
    """The task's re-check may be among the lost events."""
    t = Tr()
    t.add("pin", rc=1, pid=1, at=0)
    t.add("busy", rc=1025, pid=50, comm="xfs_io", at=S, mapping=0xAB)
    t.add("unpin", rc=1025, pid=1, at=S + S // 10)
    t.add("lost", pfn=None, cpu=0, count=5, at=S + S // 5)
    t.add("get", rc=1, pfn=P2, at=3 * S)
    a = t.anomalies()
    assert list(zip(a["kind"], a["severity"])) == [("missed_wakeup", "uncertain")]


def test_busy_page_stall_across_a_loss_is_uncertain():
    t = Tr()
    t.add("pin", rc=1, pid=1, at=0)
    t.add("busy", rc=1025, pid=50, comm="xfs_io", at=S, mapping=0xAB)
    t.add("lost", pfn=None, cpu=0, count=5, at=S + MS)
    t.add("unpin", rc=1025, pid=1, at=S + 3 * S // 2)
    t.add("busy", pfn=None, pid=50, comm="xfs_io", at=S + 3 * S // 2 + MS, mapping=0xAB)
    t.add("get", rc=1, pfn=P2, at=5 * S)
    a = t.anomalies()
    assert list(zip(a["kind"], a["severity"])) == [("busy_page_stall", "uncertain")]


def uncertain_and_error(tmp_path):
    t = Tr(end_ns=None)
    t.add("pin", rc=1, pfn=P2, at=0)
    t.add("unpin", rc=1025, pfn=P2, at=MS)
    t.add("put", rc=1, pfn=P2, at=2 * MS)          # refcount_underflow: an error
    t.add("pin", rc=1, at=3 * MS)
    t.add("lost", pfn=FSDAX, refs=1, at=4 * MS)
    t.add("free", rc=1, at=5 * MS)                 # free_while_referenced: uncertain
    return t, t.write(tmp_path / "u.jsonl")


def test_json_counts_uncertain_apart(tmp_path):
    t, path = uncertain_and_error(tmp_path)
    code, out, err = run_cli("analyze", path, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["by_severity"] == {"error": 1, "warning": 0, "uncertain": 1}
    assert summarize(t.trace(), t.anomalies())["by_severity"] == doc["by_severity"]
    sev = {a["kind"]: a["severity"] for a in doc["anomalies"]}
    assert sev == {"refcount_underflow": "error", "free_while_referenced": "uncertain"}


def test_text_shows_uncertain_apart_and_not_as_errors(tmp_path):
    _, path = uncertain_and_error(tmp_path)
    code, out, err = run_cli("analyze", path)
    assert code == 0, err
    assert "1 anomaly (1 error, 0 warnings): refcount_underflow 1" in out
    assert "1 uncertain (the evidence spans lost events: not counted as errors): " \
        "free_while_referenced 1" in out
    # the uncertain section comes after the errors and warnings
    assert out.index("  error ") < out.index("1 uncertain") < out.index("  uncertain ")
