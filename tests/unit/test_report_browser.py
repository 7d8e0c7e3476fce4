"""The report in a real browser: headless Chromium renders the page; the tables
and plots are there and visible, nothing logs to the console, and process names
that are HTML/JS payloads stay text. Screenshots are saved as test artefacts
(the path is printed; set PAGEREF_TEST_ARTIFACTS=DIR to also copy them there).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import report_traces as rt
from cdp import Browser, find_chromium

from pageref.report.build import make_report
from pageref.trace.io import read_trace
from pageref.trace.output import write_text

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(find_chromium() is None, reason="chromium is not installed "
                       "(bin/setup installs Debian's chromium)"),
]

PAYLOADS = {
    "script": "<script>document.title='pwned';console.log('pwned');window.__pwned=1</script>",
    "img-onerror": "<img src=x onerror=\"document.title='pwned';console.log('pwned');"
                   "window.__pwned=1\">",
}

PROBE = r"""
(() => {
  const vis = el => { const r = el.getBoundingClientRect(); const s = getComputedStyle(el);
    return r.width > 0 && r.height > 0 && s.visibility !== 'hidden' && s.display !== 'none'; };
  const tables = [...document.querySelectorAll('table.anomalies')];
  const imgs = [...document.querySelectorAll('img.plot')];
  const onattrs = [...document.querySelectorAll('*')]
    .flatMap(e => [...e.attributes].map(a => a.name)).filter(n => n.startsWith('on'));
  return {
    title: document.title,
    kinds: tables.map(t => t.dataset.kind),
    tablesVisible: tables.every(vis),
    rows: tables.map(t => t.tBodies[0].rows.length),
    imgs: imgs.map(i => i.complete && i.naturalWidth > 100 && vis(i)),
    verdictVisible: vis(document.querySelector('#verdict-table')),
    scripts: document.querySelectorAll('script').length,
    svgs: document.querySelectorAll('svg').length,
    onattrs: onattrs,
    pwned: typeof window.__pwned,
    headline: document.querySelector('#verdict .headline').innerText,
    warning: document.querySelector('.warning') ? document.querySelector('.warning').innerText
             : null,
    text: document.body.innerText,
  };
})()
"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    pytest.importorskip("websocket", reason="websocket-client is not installed")
    b = Browser(tmp_path_factory.mktemp("chromium-profile"))
    yield b
    b.close()


def _artefact(path: Path) -> None:
    print(f"\nscreenshot: {path}")
    dest = os.environ.get("PAGEREF_TEST_ARTIFACTS")
    if dest:
        Path(dest).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(dest) / path.name)
        print(f"copied to {Path(dest) / path.name}")


def _render(tmp_path: Path, comm: str) -> tuple[Path, object]:
    trace = read_trace(rt.write_known(tmp_path / "known.jsonl", comm))
    model, html = make_report(trace)  # the real analysis
    out = tmp_path / "report.html"
    write_text(out, html)
    return out, model


def test_report_renders(browser, tmp_path):
    out, model = _render(tmp_path, "fio")
    browser.open(out.as_uri())
    page = browser.evaluate(PROBE)
    shot = browser.screenshot(tmp_path / "report.png")
    _artefact(shot)
    assert browser.console_messages() == []
    assert page["title"] == "pageref report: known.jsonl"
    assert page["verdictVisible"]
    assert page["headline"] == f"{model.total_anomalies} anomalies of {len(model.verdict)} kinds"
    assert {"grab_on_free_page", "double_free", "pin_leak", "longterm_pin_fsdax"} <= \
        set(page["kinds"])
    assert page["tablesVisible"] and all(n >= 1 for n in page["rows"])
    assert len(page["imgs"]) == len(model.plots) >= 8 and all(page["imgs"])
    assert page["warning"].startswith("Warning: 3 events were lost while recording.")
    assert "fio[666]" in page["text"]
    assert shot.stat().st_size > 50_000


def test_example_trace_report(browser, tmp_path):
    """examples/basic.jsonl: one of each catalog anomaly planted among clean traffic."""
    example = Path(__file__).resolve().parents[2] / "examples" / "basic.jsonl"
    if not example.exists():
        pytest.skip("examples/basic.jsonl is not in this checkout")
    trace = read_trace(example)
    model, html = make_report(trace)
    out = tmp_path / "basic.html"
    write_text(out, html)
    browser.open(out.as_uri())
    page = browser.evaluate(PROBE)
    _artefact(browser.screenshot(tmp_path / "report-basic.png"))
    assert browser.console_messages() == []
    assert page["kinds"] == [s.kind for s in model.sections]
    assert len(page["kinds"]) >= 9  # the catalog's nine, plus any extra detectors
    assert page["tablesVisible"] and all(page["imgs"])
    assert len(page["imgs"]) == len(model.plots)
    assert page["warning"].startswith("Warning: 3 events were lost while recording.")


@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_malicious_comm_does_not_execute(browser, tmp_path, name):
    evil = PAYLOADS[name]
    out, model = _render(tmp_path, evil)
    browser.open(out.as_uri())
    page = browser.evaluate(PROBE)
    shot = browser.screenshot(tmp_path / f"report-{name}.png")
    _artefact(shot)
    assert browser.console_messages() == []          # no console.log, no CSP violation
    assert page["title"] == "pageref report: known.jsonl"
    assert page["pwned"] == "undefined"
    assert page["scripts"] == 0 and page["svgs"] == 0 and page["onattrs"] == []
    assert evil + "[666]" in page["text"]            # shown, as text
    assert all(page["imgs"])
