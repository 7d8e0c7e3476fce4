"""summarize and find_anomalies on in-memory traces (as the report uses them)."""

from __future__ import annotations

import json

import numpy as np
from analysis_support import FSDAX, Tr

from pageref.analysis.anomalies import ANOMALY_COLUMNS, find_anomalies
from pageref.analysis.summary import summarize
from pageref.trace.io import Trace


def test_summarize_shape_is_json_serialisable():
    t = Tr(lost={"0": 5, "1": 2})
    t.add("pin", rc=1, pid=4, comm="ib_write_bw")
    t.add("get", rc=1, pfn=FSDAX + 1)
    t.add("lost", pfn=None, cpu=0, count=3)
    tr = t.trace()
    a = find_anomalies(tr)
    assert tuple(a.columns) == ANOMALY_COLUMNS
    doc = summarize(tr, a)
    json.dumps(doc)
    assert doc["events"] == 3 and doc["pages"] == 2
    assert doc["lost_events"] == 7  # the header's counters say more than the rows
    assert [x["kind"] for x in doc["anomalies"]] == ["pin_leak"]
    assert doc["anomalies"][0]["comm"] == "ib_write_bw" and doc["by_kind"] == {"pin_leak": 1}
    assert doc["trace"]["pin_bias"] == 1024


def test_empty_trace():
    tr = Tr().trace()
    a = find_anomalies(tr)
    assert a.empty and tuple(a.columns) == ANOMALY_COLUMNS
    assert summarize(tr, a) | {"trace": None} == {
        "anomalies": [], "events": 0, "pages": 0, "lost_events": 0, "by_kind": {},
        "by_severity": {"error": 0, "warning": 0, "uncertain": 0}, "trace": None,
        "completeness": {"source": "refcount", "counted": 0, "explained": 0,
                         "unexplained": 0, "pages": 0, "share": None}}


def test_evidence_uses_the_events_index_of_a_sub_trace():
    t = Tr()
    for _ in range(3):
        t.add("get", rc=1, pfn=FSDAX + 9)
        t.add("put", rc=2, pfn=FSDAX + 9)
    t.add("put", rc=1)
    full = t.trace()
    ev = full.events
    mask = (ev["pfn"] == FSDAX).to_numpy(dtype=bool)
    sub = Trace(full.path, full.header, ev[mask].set_axis(np.flatnonzero(mask)))
    a = find_anomalies(sub)
    assert list(a["kind"]) == ["refcount_underflow"] and a["evidence"][0] == [6]


def test_lost_rows_without_count_still_count():
    t = Tr()
    t.add("get", rc=1)
    t.add("lost", pfn=None, cpu=1)
    t.add("put", rc=2)
    tr = t.trace()
    assert summarize(tr, find_anomalies(tr))["lost_events"] == 1
