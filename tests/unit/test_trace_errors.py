"""Bad input: one clear line naming the file and the line or row, a non-zero
exit, no traceback; through the CLI (pageref.cli.main), for every reading
command."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from analysis_support import run_cli

from pageref.trace.schema import METADATA_KEY

GOOD = {"ts_ns": 1, "kind": "get", "pfn": 5, "refcount": 1}
HEADER = {"format": "pageref-events", "version": 1}


def jsonl(tmp_path, *lines: str | bytes, name="t.jsonl"):
    p = tmp_path / name
    data = b"".join((x if isinstance(x, bytes) else x.encode()) + b"\n" for x in lines)
    p.write_bytes(data)
    return p


def good_parquet(tmp_path, name="t.parquet", **cols):
    base = {"ts_ns": pa.array([1, 2, 3], pa.int64()),
            "kind": pa.array(["get", "put", "get"]),
            "pfn": pa.array([5, 5, 6], pa.int64())}
    base.update(cols)
    p = tmp_path / name
    pq.write_table(pa.table(base), p)
    return p


JSONL_CASES = [
    # (lines, where, message fragment)
    ([json.dumps(GOOD), "[1, 2]"], "line 2", "expected a JSON object, got list"),
    ([json.dumps(GOOD), '"just a string"'], "line 2", "expected a JSON object"),
    ([json.dumps({"ts_ns": 1, "pfn": 5})], "line 1", "missing required field 'kind'"),
    ([json.dumps({"kind": "get", "pfn": 5})], "line 1", "missing required field 'ts_ns'"),
    ([json.dumps({"ts_ns": 1, "kind": "put"})], "line 1", "missing required field 'pfn'"),
    ([json.dumps({**GOOD, "ts_ns": "12"})], "line 1", "'ts_ns' must be an integer"),
    ([json.dumps({**GOOD, "refcount": 1.5})], "line 1", "'refcount' must be an integer"),
    ([json.dumps({**GOOD, "longterm": 1})], "line 1", "'longterm' must be true or false"),
    ([json.dumps({**GOOD, "stack": "try_grab_folio"})], "line 1", "'stack' must be a list"),
    ([json.dumps({**GOOD, "kind": "grab"})], "line 1", "unknown kind 'grab'"),
    ([json.dumps({**GOOD, "pgmap_type": "pmem"})], "line 1", "unknown pgmap_type 'pmem'"),
    ([json.dumps({**GOOD, "pfn": 2**70})], "line 1", "'pfn' out of range"),
    ([json.dumps(HEADER), json.dumps(GOOD), '{"ts_ns": 2, "kind": "get", "pfn": NaN}'],
     "line 3", "invalid JSON constant NaN"),
    ([json.dumps(GOOD), '{"ts_ns": 2, "kind":'], "line 2", "not valid JSON"),
    ([json.dumps({**HEADER, "version": 3}), json.dumps(GOOD)], "line 1",
     "unknown trace format version 3"),
    ([json.dumps({**HEADER, "version": "1"})], "line 1", "'version' must be an integer"),
    ([json.dumps({**HEADER, "pin_bias": 0})], "line 1", "'pin_bias' must be a positive"),
    ([json.dumps({**HEADER, "format": "other"})], "line 1", "unknown format 'other'"),
    ([json.dumps({**HEADER, "idle_refcount": {"fsdax": "1"}})], "line 1", "idle_refcount"),
    ([json.dumps(GOOD), b'{"ts_ns": 2, "kind": "get", "pfn": 5, "comm": "\xff"}'], "line 2",
     "not UTF-8"),
    ([json.dumps(GOOD), "[" * 50000 + "]" * 50000], "line 2", "nested too deeply"),
]


def assert_one_line_error(code, out, err, path, where, fragment):
    assert code == 2, (code, err)
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    if where:
        assert lines[0].startswith(f"pageref: error: {path}:{where}: "), lines[0]
    else:  # a whole-file problem; a reader may still say which rows it was reading
        assert lines[0].startswith((f"pageref: error: {path}: ",
                                    f"pageref: error: {path}:row")), lines[0]
    assert fragment in lines[0]


@pytest.mark.parametrize("command", ["analyze", "history", "convert"])
@pytest.mark.parametrize("lines,where,fragment", JSONL_CASES)
def test_bad_jsonl(tmp_path, command, lines, where, fragment):
    p = jsonl(tmp_path, *lines)
    args = {"analyze": ["analyze", p], "history": ["history", p, "--pfn", "5"],
            "convert": ["convert", p, tmp_path / "out.parquet"]}[command]
    assert_one_line_error(*run_cli(*args), p, where, fragment)


def parquet_cases(tmp_path):
    cases = []
    good = good_parquet(tmp_path, "good.parquet")
    raw = good.read_bytes()
    trunc = tmp_path / "trunc.parquet"
    trunc.write_bytes(raw[: len(raw) // 2])
    cases.append((trunc, None, "not a readable Parquet file"))
    corrupt = tmp_path / "corrupt.parquet"
    data = bytearray(raw)
    for i in range(4, min(len(data) // 3, 120)):
        data[i] ^= 0xA5
    corrupt.write_bytes(bytes(data))
    cases.append((corrupt, "rows 0-2", "corrupt Parquet data"))
    empty = tmp_path / "empty.parquet"
    empty.write_bytes(b"")
    cases.append((empty, None, "empty file"))
    cases.append((good_parquet(tmp_path, "badkind.parquet", kind=pa.array(["get", "oops", "put"])),
                  "row 1", "kind is not one of"))
    cases.append((good_parquet(tmp_path, "nullpfn.parquet", pfn=pa.array([5, 5, None])),
                  "row 2", "pfn is null"))
    cases.append((good_parquet(tmp_path, "nullts.parquet", ts_ns=pa.array([1, None, 3])),
                  "row 1", "ts_ns is null"))
    cases.append((good_parquet(tmp_path, "strts.parquet", ts_ns=pa.array(["1", "x", "3"])),
                  "rows 0-2", "column 'ts_ns'"))
    cases.append((good_parquet(tmp_path, "liststack.parquet",
                               stack=pa.array([1, 2, 3], pa.int64())), None, "column 'stack'"))
    nots = tmp_path / "nots.parquet"
    pq.write_table(pa.table({"kind": pa.array(["get"]), "pfn": pa.array([1])}), nots)
    cases.append((nots, None, "missing required column 'ts_ns'"))
    for name, meta, frag in (
        ("version.parquet", {"format": "pageref-trace", "version": 9}, "unknown trace format"),
        ("fmt.parquet", {"format": "something"}, "unknown format 'something'"),
        ("notjson.parquet", None, "trace metadata is not valid JSON"),
    ):
        t = pa.table({"ts_ns": pa.array([1]), "kind": pa.array(["get"]), "pfn": pa.array([1])})
        raw_meta = b"{not json" if meta is None else json.dumps(meta).encode()
        p = tmp_path / name
        pq.write_table(t.replace_schema_metadata({METADATA_KEY: raw_meta}), p)
        cases.append((p, None, frag))
    parts = tmp_path / "rec"
    parts.mkdir()
    pq.write_table(pa.table({"ts_ns": pa.array([1]), "kind": pa.array(["get"]),
                             "pfn": pa.array([1])}), parts / "part-000000.parquet")
    (parts / "part-000001.parquet").write_bytes(b"PAR1 broken")
    # A damaged part before the last is an error (a recording copied half-way
    # ends in the damage: that case is read up to it, see test_trace_hostile.py).
    pq.write_table(pa.table({"ts_ns": pa.array([2]), "kind": pa.array(["get"]),
                             "pfn": pa.array([1])}), parts / "part-000002.parquet")
    cases.append((parts / "part-000001.parquet", None, "not a readable Parquet file"))
    nodir = tmp_path / "emptydir"
    nodir.mkdir()
    cases.append((nodir, None, "holds no trace parts"))
    return cases, parts


@pytest.mark.parametrize("command", ["analyze", "history", "convert"])
def test_bad_parquet(tmp_path, command):
    cases, parts = parquet_cases(tmp_path)
    for path, where, fragment in cases:
        arg = parts if path.parent == parts else path
        args = {"analyze": ["analyze", arg], "history": ["history", arg, "--pfn", "5"],
                "convert": ["convert", arg, tmp_path / "out.jsonl"]}[command]
        code, out, err = run_cli(*args)
        # One reader: every command names the same rows for the same damage.
        assert_one_line_error(code, out, err, path, where, fragment)


def test_missing_file_and_bad_options(tmp_path):
    code, out, err = run_cli("analyze", tmp_path / "nope.parquet")
    assert code == 2 and "no such file or directory" in err and len(err.splitlines()) == 1
    p = jsonl(tmp_path, json.dumps(GOOD))
    code, out, err = run_cli("analyze", p, "--threshold", "5 parsecs")
    assert code == 2 and "not a duration" in err and "Traceback" not in err
    code, out, err = run_cli("history", p, "--pfn", "0xZZ")
    assert code == 2 and "not a page frame number" in err


def test_real_process_exit_status_and_no_traceback(tmp_path):
    p = jsonl(tmp_path, json.dumps(GOOD), "[]")
    r = subprocess.run([sys.executable, "-m", "pageref", "analyze", str(p)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip() == f"pageref: error: {p}:line 2: expected a JSON object, got list"


@pytest.mark.parametrize("first", ["[1, 2]", '"text"', "42"])
def test_a_first_line_that_is_json_but_not_an_object_names_line_1(tmp_path, first):
    p = jsonl(tmp_path, first)
    code, out, err = run_cli("analyze", p)
    assert code == 2 and "Traceback" not in err
    assert f"{p}:line 1: expected a JSON object" in err
