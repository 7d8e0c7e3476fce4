"""pageref analyze / history / convert through pageref.cli.main."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from analysis_support import FSDAX, MS, S, Tr, run_cli

from pageref.analysis.fmt import fmt_ns, parse_duration, parse_pfn
from pageref.analysis.synth import BUGS

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "basic.jsonl"


def leaky(tmp_path) -> Path:
    t = Tr(end_ns=None)
    t.add("get", rc=1, pid=3, comm="fio")
    t.add("put", rc=2, pid=3, comm="fio")
    t.add("pin", rc=1, pid=4, comm="ib_write_bw", pfn=FSDAX + 1)
    t.add("put", rc=1, pid=5, comm="kworker/0:1", at=2 * S)
    return t.write(tmp_path / "leaky.jsonl")


def test_analyze_json_shape(tmp_path):
    code, out, err = run_cli("analyze", leaky(tmp_path), "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["events"] == 4 and doc["pages"] == 2 and doc["lost_events"] == 0
    kinds = [(a["kind"], a["pfn"]) for a in doc["anomalies"]]
    assert kinds == [("pin_leak", FSDAX + 1), ("refcount_underflow", FSDAX)]
    a = doc["anomalies"][1]
    assert {"kind", "pfn", "ts_ns", "pid", "comm", "detail", "severity", "evidence"} <= set(a)
    assert a["pid"] == 5 and a["comm"] == "kworker/0:1" and a["evidence"] == [3]
    assert a["pfn_hex"] == "0x140000"
    assert doc["by_kind"] == {"pin_leak": 1, "refcount_underflow": 1}
    assert doc["threshold_ns"] == S


def test_analyze_text_summary(tmp_path):
    code, out, err = run_cli("analyze", leaky(tmp_path))
    assert code == 0 and err == ""
    assert "4 events on 2 pages, 0 events lost" in out
    assert "2 anomalies (2 errors, 0 warnings)" in out
    assert "refcount_underflow" in out and "pfn 0x140000" in out and "kworker/0:1[5]" in out
    assert "pageref history" in out and "--pfn 0x140001" in out


def test_analyze_clean_trace_exits_zero(tmp_path):
    t = Tr()
    t.add("get", rc=1)
    t.add("put", rc=2)
    code, out, _ = run_cli("analyze", t.write(tmp_path / "c.jsonl"))
    assert code == 0 and "No anomalies found." in out


def test_analyze_threshold_option(tmp_path):
    t = Tr()
    t.add("pin", rc=1, pid=1, at=0)
    t.add("busy", rc=1025, pid=9, at=S)
    t.add("unpin", rc=1025, pid=1, at=S + 600 * MS)
    t.add("busy", pfn=None, pid=9, at=S + 601 * MS)
    t.add("get", rc=1, pfn=FSDAX + 1, at=4 * S)
    p = t.write(tmp_path / "b.jsonl")
    def kinds(*a):
        return [x["kind"] for x in json.loads(run_cli("analyze", p, "--json", *a)[1])[
            "anomalies"]]
    assert kinds() == []
    assert kinds("--threshold", "500ms") == ["busy_page_stall"]
    assert kinds("-t", "0.5") == ["busy_page_stall"]
    assert kinds("--threshold", "600000us") == ["busy_page_stall"]
    assert kinds("--threshold", "601ms") == []


def test_example_trace_has_one_of_each_anomaly():
    code, out, err = run_cli("analyze", EXAMPLE, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert sorted(doc["by_kind"]) == sorted(BUGS)
    assert doc["lost_events"] == 3 and doc["events"] > 150


@pytest.mark.parametrize("cmd", ["analyze", "history", "convert"])
def test_help_teaches_with_examples(cmd):
    code, out, _ = run_cli(cmd, "--help")
    assert code == 0 and "Examples:" in out and f"pageref {cmd} " in out


def test_history_table(tmp_path):
    p = leaky(tmp_path)
    code, out, err = run_cli("history", p, "--pfn", "0x140000")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("pfn 0x140000: 3 events")
    body = "\n".join(lines)
    assert "1 -> 2" in body and "2 -> 1" in body and "1 -> 0" in body
    assert "refcount_underflow" in body
    code2, out2, _ = run_cli("history", p, "--pfn", str(FSDAX))
    assert code2 == 0 and out2 == out


def test_history_lists_pages_without_pfn(tmp_path):
    code, out, _ = run_cli("history", leaky(tmp_path))
    assert code == 0 and "2 pages" in out and "0x140000" in out and "0x140001" in out


def test_history_plot_and_errors(tmp_path):
    p = leaky(tmp_path)
    png = tmp_path / "page.png"
    code, out, err = run_cli("history", p, "--pfn", "0x140000", "--plot", png)
    assert code == 0 and png.read_bytes()[:4] == b"\x89PNG" and "plot written" in err
    code, _, err = run_cli("history", p, "--plot", png)
    assert code == 2 and "add --pfn" in err
    code, _, err = run_cli("history", p, "--pfn", "0x999")
    assert code == 2 and "no events for pfn 0x999" in err


def test_history_stacks(tmp_path):
    t = Tr()
    t.add("get", rc=1, stack=["try_grab_folio", "gup_pte_range"], probe="try_grab_folio")
    code, out, _ = run_cli("history", t.write(tmp_path / "s.jsonl"), "--pfn", "0x140000",
                           "--stacks")
    assert code == 0 and "gup_pte_range" in out and "try_grab_folio" in out


def test_convert_needs_a_known_suffix(tmp_path):
    p = leaky(tmp_path)
    code, _, err = run_cli("convert", p, tmp_path / "out.bin")
    assert code == 2 and "--to" in err
    assert run_cli("convert", p, tmp_path / "out.bin", "--to", "parquet")[0] == 0
    code, _, err = run_cli("convert", p, p)
    assert code == 2 and "overwrite the input" in err


@pytest.mark.parametrize("text,ns", [("1s", S), ("500ms", 500 * MS), ("250us", 250_000),
                                     ("250µs", 250_000), ("10ns", 10), ("2", 2 * S),
                                     ("0.5", S // 2), ("1.5s", 3 * S // 2), ("2m", 120 * S),
                                     ("1h", 3600 * S)])
def test_parse_duration(text, ns):
    assert parse_duration(text) == ns


@pytest.mark.parametrize("text", ["", "s", "-1s", "1 2", "abc"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_parse_pfn_and_fmt():
    assert parse_pfn("0x140018") == 0x140018 == parse_pfn("1310744") == parse_pfn("0X140018")
    for bad in ("zz", "-3", "0x", ""):
        with pytest.raises(ValueError):
            parse_pfn(bad)
    assert fmt_ns(1_500_000_000) == "1.50 s" and fmt_ns(250_000) == "250.0 µs"
