"""The report's sections one by one (report/facts.py, coverage.py, verdict.py,
overview.py, page_history.py): their documented DataFrames, the durations they
show, and the shape of the package (small modules, no import fallbacks)."""

from __future__ import annotations

import ast
from pathlib import Path

import markupsafe
import pandas as pd
import pytest
import report_traces as rt

from pageref.report import coverage, facts, overview, verdict
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
    from pageref.report.build import analyse

    pins = overview.df_pins(analyse(known, 10**9)[1])
    assert list(pins.columns) == ["ts_ns", "held"]
    assert pins.attrs["source"] == "the analysis's count"
    assert pins["held"].tolist() == [1, 2, 1]     # 0x1001's pin kept, 0x1004's released
    assert overview.df_pins(None).empty            # no analysis, no count of its own


def test_df_probes_kinds_come_from_the_plan(known):
    df = coverage.df_probes(known)
    assert list(df.columns) == ["probe", "symbol", "method", "kinds", "attached", "events",
                                "notes"]
    assert df["events"].tolist() == [4, 1, 1, 2] and df["attached"].all()
    # KNOWN's header predates per-entry kinds: plan_record's legacy table decides
    assert df["kinds"].tolist() == [("get", "pin", "grab_failed"), ("put",), ("unpin",),
                                    ("free",)]
    drops = coverage.df_drop_kinds(known)
    assert drops["kind"].tolist() == ["put", "unpin", "free"]
    assert drops["by"].tolist() == [["put_page"], ["unpin_user_page"],
                                    ["free_zone_device_page"]]


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
    from pageref.report.build import analyse

    assert overview.df_rate(t, 0, Limits()).empty and overview.df_pins(analyse(t, 10**9)[1]).empty
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


FIXTURES = ROOT / "tests" / "fixtures" / "kernels"


@pytest.mark.parametrize("kernel", ["6.1", "6.12", "7.2"])
def test_drop_paths_table_says_what_pageref_probes_says(tmp_path, kernel):
    """The report's "drop paths covered" table and `pageref probes` read the same
    plan record: same covered and uncovered text, same kinds per probe."""
    from pageref.report.render import render_html
    from pageref.tracer.facts import KernelFacts
    from pageref.tracer.plan import resolve
    from pageref.tracer.probes_text import plan_report

    facts = KernelFacts.load(FIXTURES / kernel)
    shown = plan_report(facts)
    fentry = facts.has_btf and facts.caps.get("fentry") is not False
    plan = resolve(facts, fentry=fentry)
    header = dict(rt.HEADER, probe_plan=plan.header_plan(), coverage=plan.header_coverage())
    trace = read_trace(rt.write_jsonl(tmp_path / "t.jsonl", rt.known_events("x"), header))
    r = build_report(trace, None)
    assert r.recorder is not None
    assert r.recorder.covered == shown["plan"]["covered"] and r.recorder.covered
    assert r.recorder.uncovered == shown["plan"]["uncovered"]
    for c in r.recorder.covered:
        assert f"  + {c}\n" in shown["text"]
    for u in r.recorder.uncovered:
        assert f"  - {u}\n" in shown["text"]
    assert [(p.symbol, p.role) for p in r.probes] == [
        (a["symbol"], ", ".join(a["kinds"])) for a in shown["plan"]["attached"]]
    assert [(m.probe, m.symbol, m.why) for m in r.recorder.missing] == [
        (m["probe"], m["symbol"], m["why"]) for m in shown["plan"]["missing"]]
    html = render_html(r)
    table = html[html.index('id="drop-paths"'):html.index('id="drop-kinds"')]
    for c in r.recorder.covered + r.recorder.uncovered:
        assert f"<td><bdi>{markupsafe.escape(c)}</bdi></td>" in table


def test_pages_by_kind_name_device_dax():
    """The page kinds are shown by the names users know: the kernel's
    MEMORY_DEVICE_GENERIC pages (device DAX) as devdax (issue 14)."""
    t = read_trace(Path(__file__).resolve().parents[2] / "examples" / "basic.jsonl")
    df = facts.df_facts(t, 10**9).set_index("label")["value"]
    ev = t.events[t.events["pgmap_type"].notna()]
    n = ev.drop_duplicates(["pgmap_type", "pfn"]).groupby("pgmap_type").size()
    assert f"devdax {int(n['generic']):,}" in df["Pages by kind"]
    assert f"fsdax {int(n['fsdax']):,}" in df["Pages by kind"]
    assert "generic" not in df["Pages by kind"] and "generic" not in df["Idle refcount"]
