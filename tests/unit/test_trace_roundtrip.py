"""Trace formats: JSON Lines <-> Parquet round trips, recordings as parts
directories (read by pageref and by plain pandas.read_parquet alike)."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
from analysis_support import Tr, run_cli

from pageref.analysis.anomalies import find_anomalies
from pageref.analysis.synth import bulk_header, bulk_tables, random_scenario
from pageref.trace.io import read_header, read_trace
from pageref.trace.parquet import PartWriter


def sample(tmp_path):
    s, events = random_scenario(7, ("pin_leak", "double_free"), clean_pages=2, truncates=1)
    events.append({"ts_ns": events[-1]["ts_ns"] + 1, "kind": "lost", "cpu": 1, "count": 2,
                   "extra_key": "kept or ignored"})
    s.header.lost = {"1": 2}
    s.header.extra["recorder"] = "test"
    path = tmp_path / "in.jsonl"
    s.write_jsonl(path, events)
    return s, path


def test_jsonl_parquet_jsonl_round_trip(tmp_path):
    s, src = sample(tmp_path)
    pq_path, back = tmp_path / "t.parquet", tmp_path / "back.jsonl"
    assert run_cli("convert", src, pq_path)[0] == 0
    assert run_cli("convert", pq_path, back)[0] == 0
    a, b = read_trace(src), read_trace(back)
    pd.testing.assert_frame_equal(a.events, b.events)
    assert read_header(pq_path) == read_header(back) == a.header
    assert a.header.extra == {"recorder": "test"} and a.header.lost == {"1": 2}
    # The analysis sees the same trace through either format.
    x, y = find_anomalies(src), find_anomalies(pq_path)
    pd.testing.assert_frame_equal(x, y)


def test_parts_directory_reads_like_one_file(tmp_path):
    rec = tmp_path / "run.trace"
    w = PartWriter(rec, bulk_header())
    tables = list(bulk_tables(30_000, seed=3, part_rows=7_000, leaks=2))
    for t in tables:
        w.write(t)
    w.close()
    assert w.parts == len(tables) + 1  # the final, empty part carries the full header
    n = sum(t.num_rows for t in tables)
    assert len(pd.read_parquet(rec)) == n  # plain pandas reads the directory
    tr = read_trace(rec)
    assert len(tr.events) == n and tr.header.kernel == "6.1.0-56-amd64"
    a = find_anomalies(rec)
    assert list(a["kind"]) == ["pin_leak", "pin_leak"]
    # Evidence rows are positions in the whole recording, across parts.
    ev = tr.events
    for rows in a["evidence"]:
        assert set(ev["kind"].astype(str).iloc[rows]) <= {"pin", "unpin"}
    one = tmp_path / "one.parquet"
    assert run_cli("convert", rec, one)[0] == 0
    pd.testing.assert_frame_equal(read_trace(one).events, ev)


def test_part_writer_accepts_a_subset_of_columns(tmp_path):
    rec = tmp_path / "r"
    w = PartWriter(rec, bulk_header())
    w.write(pa.table({"ts_ns": pa.array([5, 6]), "kind": pa.array(["get", "put"]),
                      "pfn": pa.array([1, 1]), "refcount": pa.array([1, 2], pa.int32())}))
    w.close()
    code, out, _ = run_cli("analyze", rec, "--json")
    assert code == 0 and json.loads(out)["events"] == 2


def test_unknown_json_keys_are_kept_or_ignored_never_fatal(tmp_path):
    t = Tr()
    t.add("get", rc=1, frobnicate={"a": [1, 2]})
    t.add("put", rc=2, future_field=None)
    code, out, _ = run_cli("analyze", t.write(tmp_path / "u.jsonl"), "--json")
    assert code == 0 and json.loads(out)["anomalies"] == []


def test_foreign_parquet_files_are_read(tmp_path):
    # Written by plain pandas (large_string, int64 everywhere), and with
    # string_view columns (which Arrow cannot cast to a dictionary directly).
    df = pd.DataFrame({"ts_ns": [2, 1], "kind": ["put", "get"], "pfn": [5, 5],
                       "refcount": [2, 1], "comm": ["fio", "fio"]})
    df.to_parquet(tmp_path / "pandas.parquet")
    sv = pa.table({"ts_ns": pa.array([1, 2]), "kind": pa.array(["get", "put"]).cast(
        pa.string_view()), "pfn": pa.array([5, 5]), "refcount": pa.array([1, 0]),
        "stack": pa.array([["try_grab_folio"], None], pa.list_(pa.string_view()))})
    import pyarrow.parquet as pq

    pq.write_table(sv, tmp_path / "sv.parquet")
    code, out, err = run_cli("analyze", tmp_path / "pandas.parquet", "--json")
    assert code == 0 and json.loads(out)["anomalies"] == []
    code, out, err = run_cli("analyze", tmp_path / "sv.parquet", "--json")
    assert code == 0 and [a["kind"] for a in json.loads(out)["anomalies"]] == [
        "refcount_underflow"]
    assert read_trace(tmp_path / "sv.parquet").events["stack"][0].tolist() == [
        "try_grab_folio"]
