"""The report's sections one by one (report/facts.py, coverage.py, verdict.py,
overview.py, page_history.py): their documented DataFrames, the durations they
show, and the shape of the package (small modules, no import fallbacks)."""

from __future__ import annotations

import ast
from pathlib import Path

import pandas as pd
import pytest
import report_traces as rt

from pageref.report import facts, overview, verdict
from pageref.report.model import build_report
from pageref.report.page import Limits
from pageref.trace.io import read_trace

S = 1_000_000_000
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def known(tmp_path_factory):
    return read_trace(rt.write_known(tmp_path_factory.mktemp("k") / "known.jsonl", "x"))


@pytest.mark.parametrize("threshold_ns,text", [(10, "10 ns"), (90 * S, "1.5 min"),
                                               (S, "1.00 s"), (250_000, "250.0 µs")])
def test_durations_use_the_one_formatter(known, threshold_ns, text):
    """The report said '0.0 µs' for 10 ns and '90.00 s' for 90 s (issue 10)."""
    r = build_report(known, None, threshold_ns=threshold_ns)
    assert r.threshold == text
    assert dict((f.label, f.value) for f in r.facts)["Threshold"] == text


def test_df_facts(known):
    df = facts.df_facts(known, S)
    assert list(df.columns) == ["label", "value", "warn"]
    row = df.set_index("label").loc["Duration"]
    assert (row["value"], bool(row["warn"])) == ("5.00 s", False)
    assert bool(df.set_index("label").loc["Lost events", "warn"]) is True


def test_df_rate_and_spec_agree(known):
    lim = Limits(rate_bins=50)
    df = overview.df_rate(known, facts.trace_t0(known), lim)
    assert df.index.name == "t_s" and df.attrs["bin_ns"] >= 1e6
    assert "lost" not in df.columns
    bin_s = df.attrs["bin_ns"] / 1e9
    # events per second times the bin width: every non-lost event once
    non_lost = int((known.events["kind"] != "lost").sum())
    assert round(float(df.to_numpy().sum()) * bin_s) == non_lost
    spec = overview.rate_spec(known, facts.trace_t0(known), lim)
    assert spec is not None and spec.points == len(df)


def test_df_refcount_last_and_pins(known):
    df = overview.df_refcount_last(known)
    assert list(df.columns) == ["label", "pages"] and int(df["pages"].sum()) == \
        df.attrs["pages"] == 5
    pins = overview.df_pins(known)
    assert list(pins.columns) == ["ts_ns", "held"]
    assert pins.attrs["source"] == "counted from pin/unpin events"


def test_df_ranked_worst_first():
    a = rt.known_anomalies("x")
    r = verdict.df_ranked(a)
    assert r["_rank"].tolist() == sorted(r["_rank"].tolist(), reverse=True)
    assert r["severity"].tolist()[-1] == "uncertain"


def _report_modules() -> list[Path]:
    return sorted((ROOT / "report").glob("*.py"))


def test_report_modules_are_small():
    big = {p.name: n for p in _report_modules()
           if (n := len(p.read_text(encoding="utf-8").splitlines())) > 400}
    assert big == {}


@pytest.mark.parametrize("path", ["report/build.py", "tracer/recorder.py",
                                  *[f"report/{p.name}" for p in _report_modules()
                                    if p.name not in ("history.py", "live_state.py")]])
def test_no_import_error_fallback_for_own_modules(path):
    """A missing pageref module is a broken install, not something to paper over."""
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if not isinstance(node, ast.Try):
            continue
        caught = {n.id for h in node.handlers if h.type is not None
                  for n in ast.walk(h.type) if isinstance(n, ast.Name)}
        if not caught & {"ImportError", "ModuleNotFoundError"}:
            continue
        own = [n.lineno for b in node.body for n in ast.walk(b)
               if (isinstance(n, ast.ImportFrom) and (n.module or "").startswith("pageref"))
               or (isinstance(n, ast.Import)
                   and any(a.name.startswith("pageref") for a in n.names))]
        assert own == [], f"{path}:{own}"


def test_sections_tolerate_an_empty_trace(tmp_path):
    t = read_trace(rt.write_jsonl(tmp_path / "e.jsonl", [], dict(rt.HEADER, lost={})))
    assert overview.df_rate(t, 0, Limits()).empty and overview.df_pins(t).empty
    r = build_report(t, pd.DataFrame())
    assert r.overview == [] and r.verdict == []


def test_untrusted_text_escaped_by_the_one_owner():
    """The page and the live view escape what trace/text.py escapes, bidirectional
    overrides included (they reorder the text after them in a browser too)."""
    from pageref.report.live import safe_text
    from pageref.report.text import clean_text
    from pageref.trace.text import escape_controls

    evil = "a\x1b[2Jb\u202ec\x9bd"
    assert clean_text(evil) == safe_text(evil) == escape_controls(evil) == \
        "a\\x1b[2Jb\\u202ec\\x9bd"
