"""The severity vocabulary (pageref.analysis.severity) and how the report uses it."""

from __future__ import annotations

from pathlib import Path

import report_traces as rt

from pageref.analysis.anomalies import find_anomalies
from pageref.analysis.severity import ORDER, Severity, severity_rank
from pageref.report.catalog import severity_class
from pageref.report.model import build_report
from pageref.trace.io import read_trace

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "basic.jsonl"


def test_three_words_worst_first():
    assert [s.value for s in ORDER] == ["error", "warning", "uncertain"]
    assert [s.rank for s in ORDER] == [3, 2, 1]
    assert all(s.label == s.value and s.meaning for s in ORDER)


def test_of_and_rank_know_only_the_vocabulary():
    assert Severity.of(" Warning ") is Severity.WARNING and Severity.of(Severity.ERROR) is \
        Severity.ERROR
    for word in ("high", "medium", "low", "critical", "info", "", None, 3, float("nan")):
        assert Severity.of(word) is None and severity_rank(word) == 0
    assert severity_class("error") == "sev-error" and severity_class("high") == "sev-unknown"


def test_the_analysis_emits_only_the_vocabulary():
    a = find_anomalies(read_trace(EXAMPLE))
    assert len(a) and {Severity.of(s) for s in a["severity"]} <= set(Severity)
    assert None not in {Severity.of(s) for s in a["severity"]}


def test_report_ranks_by_the_vocabulary_unknown_last(tmp_path):
    known = read_trace(rt.write_known(tmp_path / "k.jsonl", "x"))
    a = rt.known_anomalies("x")
    a.loc[a["kind"] == "grab_on_free_page", "severity"] = "critical"  # not a word we use
    r = build_report(known, a)
    assert [(v.kind, v.severity, v.severity_class) for v in r.verdict] == [
        ("double_free", "error", "sev-error"),
        ("pin_leak", "warning", "sev-warning"),
        ("longterm_pin_fsdax", "uncertain", "sev-uncertain"),
        ("grab_on_free_page", "critical", "sev-unknown"),
    ]
