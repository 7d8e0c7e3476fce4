"""The probe plan as the trace header records it (trace/plan_record.py)."""

from __future__ import annotations

import json

import pytest

from pageref.trace.header import TraceHeader
from pageref.trace.plan_record import Coverage, LeftOut, PlanEntry, coverage_of, legacy_kinds

COVERAGE = {"covered": ["unpin_user_page()"], "uncovered": ["inline puts"],
            "left_out": [{"probe": "put", "symbol": "__put_page", "why": "superseded"}],
            "notes": ["a note"]}


def _roundtrip(d: dict) -> TraceHeader:
    h = TraceHeader.from_dict(d)
    return TraceHeader.from_dict(json.loads(h.to_json("pageref-trace")))


def test_new_header_roundtrips_coverage_and_kinds():
    h = _roundtrip({"probe_plan": [
        {"probe": "put", "symbol": "gup_put_folio", "method": "kprobe", "id": 9,
         "return": True, "kinds": ["put", "unpin"]},
        {"probe": "grab", "symbol": "try_grab_folio", "method": "fentry+fexit",
         "kinds": ["get", "pin", "grab_failed"], "signature": "int try_grab_folio(...)",
         "returns": "int (0 = ok)"}], "coverage": COVERAGE})
    c = coverage_of(h)
    assert isinstance(c, Coverage)
    assert c.entries[0] == PlanEntry("put", "gup_put_folio", "kprobe", ("put", "unpin"))
    assert c.entries[1].method == "fentry+fexit"
    assert c.entries[1].signature == "int try_grab_folio(...)"
    assert c.entries[1].returns == "int (0 = ok)"
    assert c.covered == ("unpin_user_page()",) and c.uncovered == ("inline puts",)
    assert c.left_out == (LeftOut("put", "__put_page", "superseded"),)
    assert c.notes == ("a note",)
    assert c.kinds() == {"put", "unpin", "get", "pin", "grab_failed"}


def test_old_header_kinds_derived_and_coverage_from_tracer_extra():
    h = _roundtrip({"probe_plan": [
        {"probe": "grab", "symbol": "try_grab_page", "method": "kprobe"},
        {"probe": "put", "symbol": "gup_put_folio", "method": "kprobe"},
        {"probe": "put", "symbol": "unpin_user_pages", "method": "kprobe"},
        {"probe": "put", "symbol": "__folio_put", "method": "kprobe"},
        {"probe": "grab", "symbol": "vmf_insert_folio_pmd", "method": "kprobe"},
        {"probe": "free", "symbol": "free_zone_device_page", "method": "fentry"},
        {"probe": "busy", "symbol": "dax_layout_busy_page_range", "method": "fexit"},
        {"probe": "other", "symbol": "something_new", "method": "kprobe"}],
        "tracer": {"drop_paths_covered": ["a"], "drop_paths_uncovered": ["b"],
                   "probes_missing": [{"probe": "free", "symbol": "x", "why": "y"}],
                   "notes": ["n"]}})
    assert h.coverage is None
    c = coverage_of(h)
    kinds = {e.symbol: e.kinds for e in c.entries}
    assert kinds == {"try_grab_page": ("get", "pin", "grab_failed"),
                     "gup_put_folio": ("put", "unpin"), "unpin_user_pages": ("unpin",),
                     "__folio_put": ("put",), "vmf_insert_folio_pmd": ("get",),
                     "free_zone_device_page": ("free",),
                     "dax_layout_busy_page_range": ("busy",), "something_new": ()}
    assert (c.covered, c.uncovered, c.notes) == (("a",), ("b",), ("n",))
    assert c.left_out == (LeftOut("free", "x", "y"),)


def test_header_without_any_plan():
    c = coverage_of(TraceHeader())
    assert c == Coverage((), (), (), (), ())


@pytest.mark.parametrize("coverage", [
    "text", [], {"covered": "a", "uncovered": [], "notes": [], "left_out": []},
    {"covered": [1], "uncovered": [], "notes": [], "left_out": []},
    {"covered": [], "uncovered": [], "notes": []},
    {"covered": [], "uncovered": [], "notes": [], "left_out": [{"probe": "p"}]},
    {"covered": [], "uncovered": [], "notes": [], "left_out": ["x"]},
])
def test_bad_coverage_is_refused_on_read(coverage):
    with pytest.raises(ValueError, match="coverage"):
        TraceHeader.from_dict({"coverage": coverage})


def test_hostile_entries_are_skipped_and_said():
    h = TraceHeader.from_dict({"probe_plan": [
        {"probe": 1, "symbol": "x", "method": "kprobe"},
        {"probe": "put", "symbol": "a", "method": "kprobe", "kinds": ["put", "rm -rf", 3]},
        {"probe": "put", "symbol": "b", "method": "kprobe", "kinds": ["put", "evil"]},
        {"probe": "put", "symbol": "c", "method": "kprobe", "kinds": "put",
         "signature": 5, "returns": ["x"]},
    ], "tracer": {"drop_paths_covered": "not a list", "drop_paths_uncovered": ["ok", 7],
                  "probes_missing": [{"probe": "a"}, "x"], "notes": None}})
    c = coverage_of(h)
    assert [e.symbol for e in c.entries] == ["a", "b", "c"]
    by = {e.symbol: e for e in c.entries}
    assert by["a"].kinds == () and by["b"].kinds == ("put",) and by["c"].kinds == ()
    assert by["c"].signature is None and by["c"].returns is None
    assert c.covered == () and c.uncovered == ("ok",) and c.left_out == ()
    text = "\n".join(c.notes)
    assert "entry 0" in text and "evil" in text and "not a list" in text
    assert "probes_missing" in text and "not text" in text


def test_legacy_kinds_unknown_is_empty():
    assert legacy_kinds("put", "unpin_folio") == ("unpin",)
    assert legacy_kinds("nonsense", "x") == ()


def test_legacy_table_agrees_with_the_plan_targets():
    """Old traces' derived kinds are what the plan's targets declare today."""
    from pageref.trace.schema import KINDS
    from pageref.tracer.plan import TARGETS

    for t in TARGETS:
        assert set(t.kinds) <= set(KINDS), t.symbol
        if t.probe == "ref":
            continue  # page_ref tracepoints came with version 2: entries carry kinds
        assert legacy_kinds(t.probe, t.symbol) == t.kinds, t.symbol
