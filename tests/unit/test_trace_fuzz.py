"""Fuzzing the readers (hypothesis): whatever the bytes, reading a trace either
works or raises TraceError (one line naming the file), never anything else.
tests/data/fuzz/ keeps nasty inputs found on the way; every one is replayed
through the CLI."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from analysis_support import run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pageref.analysis.anomalies import find_anomalies
from pageref.errors import TraceError
from pageref.trace.io import read_trace
from pageref.trace.schema import KINDS, PGMAP_TYPES

CORPUS = Path(__file__).resolve().parent.parent / "data" / "fuzz"
FUZZ = settings(max_examples=int(os.environ.get("PAGEREF_FUZZ_EXAMPLES", "150")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow,
                                       HealthCheck.function_scoped_fixture])

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**65, 2**65),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8),
                         st.sampled_from(["\ud800", "x\udfff"]))
json_values = st.recursive(json_scalars, lambda c: st.one_of(
    st.lists(c, max_size=3), st.dictionaries(st.text(max_size=5), c, max_size=3)), max_leaves=6)
field_values = {
    "ts_ns": st.one_of(st.integers(0, 2**40), json_values),
    "kind": st.one_of(st.sampled_from(KINDS), json_values),
    "pfn": st.one_of(st.integers(0, 2**40), st.none(), json_values),
    "refcount": st.one_of(st.integers(-3, 3000), json_values),
    "refs": st.one_of(st.integers(1, 4), json_values),
    "order": st.one_of(st.sampled_from([0, 9]), json_values),
    "pgmap_type": st.one_of(st.sampled_from(PGMAP_TYPES), json_values),
    "longterm": st.one_of(st.booleans(), json_values),
    "stack": st.one_of(st.lists(st.text(max_size=6), max_size=3), json_values),
    "comm": st.one_of(st.text(max_size=6), json_values),
}
events = st.fixed_dictionaries({}, optional=field_values)
lines = st.one_of(events.map(json.dumps), json_values.map(json.dumps),
                  st.binary(max_size=30).map(lambda b: b.decode("latin-1")),
                  st.just('{"format": "pageref-events", "version": 1}'))


def read_all(path: Path) -> None:
    """Every reader entry point; only TraceError may escape."""
    try:
        read_trace(path)
    except TraceError as e:
        assert str(e).startswith(str(path))
    try:
        find_anomalies(path)
    except TraceError as e:
        assert str(e).startswith(str(path))


@FUZZ
@given(st.lists(lines, min_size=1, max_size=6))
def test_fuzz_jsonl(tmp_path, ls):
    p = tmp_path / "f.jsonl"
    p.write_text("\n".join(ls) + "\n", encoding="utf-8", errors="surrogatepass")
    read_all(p)


def _good_parquet() -> bytes:
    buf = io.BytesIO()
    t = pa.table({"ts_ns": pa.array([1, 2, 3, 4], pa.int64()),
                  "kind": pa.array(["get", "pin", "unpin", "put"]).dictionary_encode(),
                  "pfn": pa.array([5, 5, 5, 5], pa.int64()),
                  "refcount": pa.array([1, 2, 1026, 2], pa.int32()),
                  "stack": pa.array([["a", "b"], None, ["c"], []], pa.list_(pa.string()))})
    pq.write_table(t.replace_schema_metadata({b"pageref": json.dumps(
        {"format": "pageref-trace", "version": 1}).encode()}), buf)
    return buf.getvalue()


GOOD_PARQUET = _good_parquet()


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(GOOD_PARQUET) - 1), st.integers(1, 255)),
                max_size=6), st.integers(8, len(GOOD_PARQUET)))
def test_fuzz_parquet_bytes(tmp_path, flips, keep):
    data = bytearray(GOOD_PARQUET[:keep])
    for pos, x in flips:
        if pos < len(data):
            data[pos] ^= x
    p = tmp_path / "f.parquet"
    p.write_bytes(bytes(data))
    read_all(p)


def corpus_files():
    return sorted(CORPUS.iterdir()) if CORPUS.is_dir() else []


def test_corpus_is_not_empty():
    assert len(corpus_files()) >= 10


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: p.name)
def test_corpus_replays_through_the_cli(path):
    read_all(path)
    code, out, err = run_cli("analyze", path)
    assert "Traceback" not in err
    assert code in (0, 2), err
    if code == 2:
        assert err.count("\n") == 1 and err.startswith(f"pageref: error: {path}")


def test_invalid_utf8_in_a_string_column_is_a_clean_error(tmp_path):
    # Found by test_fuzz_parquet_bytes: one flipped byte in the dictionary page
    # leaves the file readable but a string invalid UTF-8.
    data = bytearray(GOOD_PARQUET[:1914])
    data[154] ^= 128
    p = tmp_path / "f.parquet"
    p.write_bytes(bytes(data))
    with pytest.raises(TraceError, match="corrupt Parquet data"):
        read_trace(p)
    with pytest.raises(TraceError, match="corrupt Parquet data"):
        find_anomalies(p)


# Hostile inputs of issue 11 (point 4) kept as files: each must be refused in
# one line saying why (or, for the last ones, read).
HOSTILE = {
    "header-pin-bias-2-64.jsonl": "'pin_bias' is out of range",
    "header-start-ns-2-64.jsonl": "'start_ns' must be between 0 and 2**63-1",
    "header-idle-2-64.jsonl": "'idle_refcount.fsdax' is out of range",
    "header-kernel-surrogate.jsonl": "'kernel' is not valid Unicode",
    "header-lost-key-not-cpu.jsonl": "must map CPU numbers to counts",
    "header-duplicate-key.jsonl": "duplicate key 'pin_bias'",
    "ts-int64-min-and-zero.jsonl": "'ts_ns' out of range",
    "lost-count-overflow.jsonl": "past 2**63-1",
    "huge-pfn-string.jsonl": "'pfn' must be an integer",
    "duplicate-column.parquet": "'pfn' appears more than once",
    "metadata-deep-nesting.parquet": "nested too deeply",
    "metadata-infinity.parquet": "invalid JSON constant Infinity",
    "metadata-pin-bias-2-64.parquet": "'pin_bias' is out of range",
    "checksum-flipped-value.parquet": "CRC checksum verification failed",
}


@pytest.mark.parametrize("name,fragment", sorted(HOSTILE.items()))
def test_hostile_corpus_file_is_refused_in_one_line(name, fragment):
    path = CORPUS / name
    code, out, err = run_cli("analyze", path)
    assert code == 2, (out, err)
    assert err.count("\n") == 1 and fragment in err, err
    assert len(err) < 400, len(err)


@pytest.mark.parametrize("name", ["control-characters.jsonl", "one-row-row-groups.parquet"])
def test_hostile_corpus_file_is_read(name):
    code, out, err = run_cli("analyze", CORPUS / name)
    assert code == 0, err
    assert "\x1b" not in out and "\x9b" not in out and "\u202e" not in out
