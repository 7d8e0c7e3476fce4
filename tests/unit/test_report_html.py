"""The rendered page: self-contained, escaped, and the `pageref report` command."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
import report_traces as rt
from click.testing import CliRunner

from pageref.cli import cli
from pageref.report import build
from pageref.report.model import build_report
from pageref.report.render import render_html
from pageref.trace.io import read_trace

EVILS = [
    "<script>document.title='pwned'</script>",
    "<img src=x onerror=\"document.title='pwned'\">",
    "\"><svg onload=alert(1)>",
]


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def _parse(html: str) -> _Tags:
    p = _Tags()
    p.feed(html)
    return p


@pytest.fixture(params=EVILS, ids=["script", "img-onerror", "svg-onload"])
def evil_html(request, tmp_path):
    trace = read_trace(rt.write_known(tmp_path / "evil.jsonl", request.param))
    return request.param, render_html(build_report(trace, rt.known_anomalies(request.param)))


def test_untrusted_text_is_escaped(evil_html):
    evil, html = evil_html
    tags = _parse(html)
    names = [t for t, _ in tags.tags]
    assert "script" not in names and "svg" not in names
    assert not any(k.startswith("on") for _, attrs in tags.tags for k in attrs)
    imgs = [a for t, a in tags.tags if t == "img"]
    assert imgs and all(a["src"].startswith("data:image/png;base64,") for a in imgs)
    # the name is shown, as text: in the anomaly table, the case heading, the evidence
    text = "".join(tags.text)
    assert text.count(evil + "[666]") >= 3


def test_self_contained(evil_html):
    _, html = evil_html
    tags = _parse(html)
    # no external resources of any kind
    assert not [a for t, a in tags.tags if t in ("link", "script", "iframe", "object")]
    assert not re.search(r"(src|href)=\"(https?:)?//", html)
    assert "url(" not in html
    csp = [a["content"] for t, a in tags.tags
           if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert csp == ["default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
                   "base-uri 'none'; form-action 'none'"]


def test_page_structure(tmp_path):
    trace = read_trace(rt.write_known(tmp_path / "k.jsonl", "fio"))
    html = render_html(build_report(trace, rt.known_anomalies("fio"),
                                    model=build.analyse(trace, 10**9)[1]))
    tags = _parse(html)
    ids = {a.get("id") for _, a in tags.tags}
    assert {"verdict", "verdict-table", "facts", "drop-paths", "probe-plan", "overview",
            "kind-double_free", "kind-grab_on_free_page", "kind-pin_leak",
            "kind-longterm_pin_fsdax"} <= ids
    tables = [a for t, a in tags.tags if t == "table" and "anomalies" in a.get("class", "")]
    assert [a["data-kind"] for a in tables] == ["double_free", "grab_on_free_page",
                                               "pin_leak", "longterm_pin_fsdax"]
    imgs = [a for t, a in tags.tags if t == "img"]
    assert len(imgs) == 4 + 4  # one page plot per anomaly, four overview plots
    assert "4 anomalies of 4 kinds" in html
    assert "3 events were lost while recording" in html


def test_clean_trace_says_so(tmp_path):
    events = [e for e in rt.known_events() if e["kind"] != "lost"]
    trace = read_trace(rt.write_jsonl(tmp_path / "t.jsonl", events, dict(rt.HEADER, lost={})))
    html = render_html(build_report(trace, None))
    assert "No anomalies found" in html and "Warning:" not in html


def test_report_command(tmp_path, monkeypatch):
    trace = rt.write_known(tmp_path / "k.jsonl", EVILS[0])
    seen = {}

    def fake(trace, threshold_ns):
        seen["threshold"] = threshold_ns
        return rt.known_anomalies(EVILS[0])

    real = build.analyse     # its page model draws the pins plot
    monkeypatch.setattr(build, "analyse", lambda t, threshold_ns: (
        fake(t, threshold_ns), real(t, threshold_ns)[1]))
    out = tmp_path / "r.html"
    res = CliRunner().invoke(cli, ["report", str(trace), "-o", str(out), "--threshold",
                                   "250ms", "--max-rows", "10"])
    assert res.exit_code == 0, res.output
    assert res.output == f"pageref: wrote {out} (4 anomalies, 8 plots)\n"
    assert seen["threshold"] == 250_000_000
    html = out.read_text()
    assert html.startswith("<!DOCTYPE html>") and "threshold 250.0 ms" in html
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_report_command_bad_threshold(tmp_path):
    res = CliRunner().invoke(cli, ["report", str(tmp_path / "x"), "--threshold", "soon"])
    assert res.exit_code == 2 and "not a duration" in res.output


@pytest.mark.parametrize("text,ns", [("2", 2 * 10**9), ("1min", 60 * 10**9), ("7ms", 7 * 10**6)])
def test_report_threshold_reads_like_analyze(tmp_path, monkeypatch, text, ns):
    # The same duration syntax as `pageref analyze --threshold`: a plain number is seconds.
    trace = rt.write_known(tmp_path / "k.jsonl", EVILS[0])
    seen = {}
    monkeypatch.setattr(build, "analyse", lambda t, threshold_ns: (
        seen.setdefault("threshold", threshold_ns) and rt.known_anomalies(EVILS[0]), None))
    res = CliRunner().invoke(cli, ["report", str(trace), "-o", str(tmp_path / "r.html"),
                                   "--threshold", text])
    assert res.exit_code == 0, res.output
    assert seen["threshold"] == ns


def test_report_command_default_output_name(tmp_path, monkeypatch):
    trace = rt.write_known(tmp_path / "run.trace.jsonl", "fio")
    monkeypatch.setattr(build, "analyse", lambda t, threshold_ns: (None, None))
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(cli, ["report", str(trace)])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "run.html").exists()


def test_report_with_the_real_analysis(tmp_path):
    """End to end with pageref.analysis: the detectors find KNOWN's anomalies."""
    pytest.importorskip("pageref.analysis.anomalies",
                        reason="pageref.analysis.anomalies not written yet")
    trace = read_trace(rt.write_known(tmp_path / "k.jsonl", EVILS[0]))
    model, html = build.make_report(trace)
    kinds = {v.kind for v in model.verdict}
    assert {"grab_on_free_page", "double_free", "pin_leak", "longterm_pin_fsdax"} <= kinds
    assert "<script>document" not in html


def test_report_open(tmp_path, monkeypatch):
    trace = rt.write_known(tmp_path / "k.jsonl", "fio")
    opened = []
    monkeypatch.setattr("webbrowser.open", lambda url: opened.append(url) or True)
    out = tmp_path / "r.html"
    res = CliRunner().invoke(cli, ["report", str(trace), "-o", str(out), "--open"])
    assert res.exit_code == 0, res.output
    assert opened == [out.resolve().as_uri()]


def test_report_missing_trace_is_one_line(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    pageref = str(Path(sys.executable).with_name("pageref"))
    res = subprocess.run([pageref, "report", str(tmp_path / "nope.parquet"), "-o",
                          str(tmp_path / "r.html")], capture_output=True, text=True, timeout=60)
    assert res.returncode != 0
    assert res.stderr == f"pageref: error: {tmp_path / 'nope.parquet'}: no such file or directory\n"
    assert not (tmp_path / "r.html").exists()
