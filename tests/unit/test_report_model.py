"""The report model: what goes on the page for a given trace."""

from __future__ import annotations

import datetime

import numpy as np
import pandas as pd
import pytest
import report_traces as rt

from pageref.analysis.severity import Severity
from pageref.report import history
from pageref.report.build import analyse
from pageref.report.downsample import minmax_indices
from pageref.report.model import build_report
from pageref.report.page import Limits
from pageref.report.render import render_html
from pageref.report.text import clean_text
from pageref.trace.io import read_trace

EVIL = "<script>document.title='pwned'</script>"
NOW = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)


@pytest.fixture
def known(tmp_path):
    return read_trace(rt.write_known(tmp_path / "known.jsonl", EVIL))


@pytest.fixture
def report(known):
    # the known answer for the anomalies; the analysis's page model, as
    # report/build.py passes it, for the pins-held plot
    return build_report(known, rt.known_anomalies(EVIL), now=NOW,
                        model=analyse(known, 10**9)[1])


def test_header_and_facts(report):
    assert report.title == "pageref report: known.jsonl"
    assert report.generated == "2026-01-02 03:04:05 UTC"
    facts = {f.label: (f.value, f.warn) for f in report.facts}
    assert facts["Kernel"] == ("6.1.0-56-amd64", False)
    assert facts["Host"] == ("pmem-host", False)
    assert facts["Command"] == ("pageref record -- ./dax-workload", False)
    assert facts["Duration"] == ("5.00 s", False)
    assert facts["Events"] == ("9 (get 2, pin 2, free 2, put 1, lost 1, unpin 1)", False)
    assert facts["Pages"] == ("5", False)
    assert facts["Device pages"] == ("5", False)
    assert facts["Idle refcount"] == ("devdax 1, fsdax 1", False)
    assert facts["Lost events"] == ("3 (cpu1: 3)", True)
    assert len(report.warnings) == 1
    assert report.warnings[0].startswith("3 events were lost while recording.")


def test_probe_plan_and_drop_paths(report):
    assert [(p.probe, p.symbol, p.method, p.role, p.events) for p in report.probes] == [
        # the kinds the plan says grab emits (issue 10: no longer guessed from names)
        ("grab", "try_grab_folio", "kprobe", "get, pin, grab_failed", 4),
        ("put", "put_page", "kprobe", "put", 1),
        ("unpin", "unpin_user_page", "kprobe", "unpin", 1),
        ("free", "free_zone_device_page", "kprobe", "free", 2),
    ]
    assert [(d.kind, d.covered, d.by, d.events) for d in report.drop_paths] == [
        ("put", True, ["put_page"], 1),
        ("unpin", True, ["unpin_user_page"], 1),
        ("free", True, ["free_zone_device_page"], 2),
    ]
    assert report.notes == []


def test_verdict_worst_first(report):
    assert report.total_anomalies == 4
    assert [(v.kind, v.count, v.severity, v.severity_class) for v in report.verdict] == [
        ("double_free", 1, "error", "sev-error"),
        ("grab_on_free_page", 1, "error", "sev-error"),
        ("pin_leak", 1, "warning", "sev-warning"),
        ("longterm_pin_fsdax", 1, "uncertain", "sev-uncertain"),
    ]
    assert [s.kind for s in report.sections] == [v.kind for v in report.verdict]


def test_anomaly_rows_and_evidence(report):
    grab = next(s for s in report.sections if s.kind == "grab_on_free_page")
    assert grab.hidden == 0
    (row,) = grab.rows
    assert (row.pfn, row.time, row.task, row.detail) == (
        "0x1002", "1.000000", EVIL + "[666]", "get on a page with refcount 0")
    (case,) = grab.cases
    (ev,) = case.evidence
    assert (ev.pos, ev.time, ev.kind, ev.pfn, ev.refcount, ev.refs, ev.task, ev.probe) == (
        3, "1.000000", "get", "0x1002", "0", "1", EVIL + "[666]", "try_grab_folio")
    assert ev.stack == rt.STACK and ev.stack_hidden == 0
    dbl = next(s for s in report.sections if s.kind == "double_free")
    assert [e.pos for e in dbl.cases[0].evidence] == [4, 5]
    assert [e.stack for e in dbl.cases[0].evidence] == [[], []]


def test_page_history_plot(report):
    lt = next(s for s in report.sections if s.kind == "longterm_pin_fsdax")
    plot = lt.cases[0].plot
    assert plot.type == "page_history"
    d = plot.data
    assert d["x"] == [2.0, 3.2]                 # seconds since start_ns
    assert d["refcount"] == [1025.0, 1.0]       # after the pin, after the unpin
    assert d["pins"] == [1.0, 0.0]              # decoded: refcount // 1024
    assert d["markers"] == {"pin": {"x": [2.0], "y": [1025.0]},
                            "unpin": {"x": [3.2], "y": [1.0]}}
    assert d["evidence_x"] == [2.0]
    assert d["anomaly_x"] == 2.0
    assert d["end_x"] == 5.0
    # the page's whole story (1.2 s) is not short next to the plot's 3.2 s
    # (ZOOM_FRACTION): no zoom panel (test_large_trace_plots_downsampled has one)
    assert d["zoom"] is None
    leak = next(s for s in report.sections if s.kind == "pin_leak").cases[0].plot
    assert leak.data["refcount"] == [1025.0] and leak.data["pins"] == [1.0]


def test_overview_plots(report):
    assert [p.id for p in report.overview] == ["rate", "refcount-hist", "pins", "tasks"]
    rate, hist_, pins, tasks = report.overview
    # lost records are not probe hits; every event counted once
    assert set(rate.data["series"]) == {"try_grab_folio", "put_page", "unpin_user_page",
                                        "free_zone_device_page"}
    total = sum(sum(ys) for ys in rate.data["series"].values()) * rate.data["bin_s"]
    assert total == pytest.approx(8)
    # final refcount per device page: 0x1000 ->1, 0x1001 ->1025, 0x1002 ->1,
    # 0x1003 ->0 (freed), 0x1004 ->1
    assert hist_.data["labels"] == ["0", "1", "1025"]
    assert hist_.data["counts"] == [1, 3, 1]
    assert pins.data["x"] == [0.5, 2.0, 3.2] and pins.data["y"] == [1, 2, 1]
    assert tasks.data["tasks"][:2] == [EVIL + "[666]", "rdma-app[200]"]
    assert tasks.data["held_gets"][:2] == [1, 0] and tasks.data["held_pins"][:2] == [0, 1]


def test_no_anomalies_no_lost_no_plan(tmp_path):
    header = dict(rt.HEADER, lost={}, probe_plan=[])
    events = [e for e in rt.known_events() if e["kind"] not in ("lost", "unpin")]
    trace = read_trace(rt.write_jsonl(tmp_path / "t.jsonl", events, header))
    r = build_report(trace, pd.DataFrame(columns=["kind", "pfn", "ts_ns", "pid", "comm",
                                                  "detail", "severity", "evidence"]))
    assert r.total_anomalies == 0 and r.verdict == [] and r.sections == []
    assert dict((f.label, f.warn) for f in r.facts)["Lost events"] is False
    assert r.notes == ["The trace header has no probe plan (a converted or hand-written "
                       "trace): drop-path coverage is judged from the events alone."]
    # no plan and no unpin events: unknown, not a warning (the note says why)
    assert [(d.kind, d.covered) for d in r.drop_paths] == [
        ("put", True), ("unpin", None), ("free", True)]
    assert r.warnings == []


def test_dead_probe_does_not_cover(tmp_path):
    plan = [{"probe": "unpin", "symbol": "unpin_user_page", "method": "none",
             "reason": "symbol not found"}]
    events = [e for e in rt.known_events() if e["kind"] != "unpin"]
    trace = read_trace(rt.write_jsonl(tmp_path / "t.jsonl", events,
                                      dict(rt.HEADER, probe_plan=plan)))
    r = build_report(trace, None)
    # an entry the tracer cannot have attached (issue 10: the plan record has no
    # `reason` per entry; targets left out are under coverage.left_out with `why`)
    assert r.probes[0].notes == "not attached (method 'none' is not an attach method)"
    assert [(d.kind, d.covered) for d in r.drop_paths][1] == ("unpin", False)
    assert r.warnings[-1] == ("The probe plan has no live probe on the unpin path and the "
                              "trace has no unpin events: anomalies that depend on it "
                              "cannot be seen in this trace.")


def test_tables_capped_and_worst_on_distinct_pages(known):
    n = 500
    a = pd.DataFrame({
        "kind": ["pin_leak"] * n, "pfn": [0x1001 if i < 10 else 0x1004 for i in range(n)],
        "ts_ns": [rt.T0 + i for i in range(n)], "pid": [1] * n, "comm": ["x"] * n,
        "detail": ["d"] * n, "severity": [Severity.WARNING.value] * n, "evidence": [[2]] * n})
    r = build_report(known, a, limits=Limits(rows_per_kind=50, worst_per_kind=3))
    (s,) = r.sections
    assert (s.count, len(s.rows), s.hidden) == (500, 50, 450)
    assert [c.row.pfn for c in s.cases] == ["0x1001", "0x1004"]  # one case per page


def test_large_trace_plots_downsampled(tmp_path):
    # one page climbing to a single peak and back, 60,000 events
    n = 30_000
    ts = np.arange(2 * n, dtype=np.int64) * 1000 + rt.T0
    kinds = ["get"] * n + ["put"] * n
    rc = list(range(1, n + 1)) + list(range(n + 1, 1, -1))
    ev = pd.DataFrame({"ts_ns": ts, "kind": kinds, "pfn": 0x2000, "refcount": rc,
                       "pid": 7, "comm": "big", "zone_device": True, "pgmap_type": "fsdax",
                       "probe": ["try_grab_folio"] * n + ["put_page"] * n, "stack": None})
    from pageref.trace.header import TraceHeader
    from pageref.trace.io import Trace

    trace = Trace(tmp_path / "big", TraceHeader(idle_refcount={"fsdax": 1}), ev)
    a = pd.DataFrame([{"kind": "refcount_underflow", "pfn": 0x2000, "ts_ns": int(ts[-1]),
                       "pid": 7, "comm": "big", "detail": "d", "severity": Severity.ERROR.value,
                       "evidence": [2 * n - 1]}])
    r = build_report(trace, a, limits=Limits(plot_points=1000))
    for p in r.plots:
        assert p.points <= 1000, p.id
    page = r.sections[0].cases[0].plot
    assert max(page.data["refcount"]) == n + 1       # the peak survives downsampling
    assert page.data["evidence_x"] == [(ts[-1] - rt.T0) / 1e9]
    assert page.note == "downsampled from 60,000 events; lower panel: around the anomaly"
    # the zoom panel: the evidence and the 5 events before it, at full resolution
    zoom = page.data["zoom"]
    assert zoom["x"] == [(t - rt.T0) / 1e9 for t in ts[-6:]]
    assert zoom["refcount"] == [6.0, 5.0, 4.0, 3.0, 2.0, 1.0]  # after each put


def test_minmax_indices_keeps_extremes():
    y = np.zeros(10_000)
    y[1234] = 99
    y[8765] = -5
    idx = minmax_indices(y, 100, keep=np.array([42]))
    assert len(idx) <= 100
    assert {0, 42, 1234, 8765, 9999} <= set(idx.tolist())
    assert minmax_indices(np.arange(5.0), 100).tolist() == [0, 1, 2, 3, 4]


def test_pins_over_time_never_below_zero(tmp_path):
    events = [
        {"ts_ns": 1, "kind": "unpin", "pfn": 1, "refcount": 1025},  # pinned before the trace
        {"ts_ns": 2, "kind": "pin", "pfn": 2, "refcount": 1},
        {"ts_ns": 3, "kind": "pin", "pfn": 2, "refcount": 1025, "refs": 2},
        {"ts_ns": 4, "kind": "unpin", "pfn": 2, "refcount": 3073},
    ]
    trace = read_trace(rt.write_jsonl(tmp_path / "t.jsonl", events, {
        "format": "pageref-events", "version": 1}))
    _, page_model = analyse(trace, 10**9)
    ts, held = history.pins_over_time_from_model(page_model)
    # the unpin of a pin taken before the trace leaves nothing below zero
    assert ts.tolist() == [2, 3, 4] and held.tolist() == [1, 3, 2]


def test_references_by_task(known):
    t = history.references_by_task(known)
    assert t.to_dict("list") == {
        "comm": [EVIL, "rdma-app", "fio", "vfio-user"], "pid": [666, 200, 100, 300],
        "taken": [1, 1, 1, 1], "held_gets": [1, 0, 0, 0], "held_pins": [0, 1, 0, 0]}


def test_clean_text():
    assert clean_text("a\x1b[31mb\x00") == "a\\x1b[31mb\\x00"
    assert clean_text(None) == "" and clean_text(pd.NA) == ""
    assert clean_text("x" * 300, 10) == "x" * 9 + "…"


def test_recorder_plan_and_coverage(tmp_path):
    """A header as `pageref record` writes it (tracer/plan.py): logical probes
    grab/put/free/busy, the recorder's own coverage lists under extra["tracer"]."""
    plan = [
        {"probe": "grab", "symbol": "try_grab_folio", "method": "kprobe", "id": 2,
         "return": True, "ret_conv": 3, "returns": "pointer (non-NULL = ok)"},
        {"probe": "put", "symbol": "gup_put_folio", "method": "kprobe", "id": 9,
         "return": True},
        {"probe": "put", "symbol": "__folio_put", "method": "kprobe", "id": 5,
         "return": False},
        {"probe": "free", "symbol": "free_zone_device_page", "method": "kprobe", "id": 14,
         "return": False},
    ]
    tracer = {"idle_refcount_reason": "fsdax idles at 1 before the DAX-gup series",
              "drop_paths_covered": ["GUP puts and unpins, through gup_put_folio"],
              "drop_paths_uncovered": ["put_page() leaving references (inline)"],
              "probes_missing": [{"probe": "put", "symbol": "__put_page",
                                  "why": "superseded by __folio_put"}],
              "notes": ["<b>note</b>"]}
    header = dict(rt.HEADER, probe_plan=plan, tracer=tracer)
    events = [e for e in rt.known_events() if e["kind"] not in ("unpin", "put")]
    trace = read_trace(rt.write_jsonl(tmp_path / "t.jsonl", events, header))
    r = build_report(trace, None)
    assert [(p.symbol, p.role, p.notes) for p in r.probes] == [
        ("try_grab_folio", "get, pin, grab_failed", "returns=pointer (non-NULL = ok)"),
        ("gup_put_folio", "put, unpin", ""),
        ("__folio_put", "put", ""),
        ("free_zone_device_page", "free", ""),
    ]
    # no put or unpin events, but the plan covers both paths: no warning
    assert [(d.kind, d.covered, d.by, d.events) for d in r.drop_paths] == [
        ("put", True, ["gup_put_folio", "__folio_put"], 0),
        ("unpin", True, ["gup_put_folio"], 0),
        ("free", True, ["free_zone_device_page"], 2),
    ]
    assert not any("probe plan has no live probe" in w for w in r.warnings)
    assert r.recorder.covered == ["GUP puts and unpins, through gup_put_folio"]
    assert r.recorder.uncovered == ["put_page() leaving references (inline)"]
    assert [(m.probe, m.symbol, m.why) for m in r.recorder.missing] == [
        ("put", "__put_page", "superseded by __folio_put")]
    facts = {f.label: f.value for f in r.facts}
    assert facts["Idle refcount"] == ("devdax 1, fsdax 1 (fsdax idles at 1 before the "
                                      "DAX-gup series)")
    html = render_html(r)
    assert "&lt;b&gt;note&lt;/b&gt;" in html and "<b>note" not in html
    assert 'id="probes-missing"' in html


def test_pins_plot_uses_the_analysis_counts(tmp_path):
    """A pin released through put_page (pin_put_mismatch) is released for the
    analysis; counting pin/unpin events alone would keep it held for ever."""
    from pageref.report.build import analyse

    events = [
        {"ts_ns": 10, "kind": "pin", "pfn": 7, "refcount": 1, "pgmap_type": "fsdax"},
        {"ts_ns": 20, "kind": "put", "pfn": 7, "refcount": 1025, "pgmap_type": "fsdax"},
        {"ts_ns": 30, "kind": "pin", "pfn": 8, "refcount": 1, "pgmap_type": "fsdax"},
        {"ts_ns": 40, "kind": "unpin", "pfn": 8, "refcount": 1025, "pgmap_type": "fsdax"},
    ]
    header = {"format": "pageref-events", "version": 1, "idle_refcount": {"fsdax": 1},
              "start_ns": 0}
    trace = read_trace(rt.write_jsonl(tmp_path / "t.jsonl", events, header))
    anomalies, page_model = analyse(trace, 10**9)
    assert "pin_put_mismatch" in set(anomalies["kind"])
    r = build_report(trace, anomalies, model=page_model)
    pins = next(p for p in r.overview if p.id == "pins")
    assert pins.data["x"] == [1e-08, 2e-08, 3e-08, 4e-08]
    assert pins.data["y"] == [1, 0, 1, 0]
    assert pins.note.startswith("the analysis's count")
