"""One finding per fact (issue 12): repeats of a kind on one page life are one
anomaly with a count, also when the engine is fed the trace in pieces."""

from __future__ import annotations

from analysis_support import FSDAX, MS, T0, S, Tr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_analysis_engine import as_set, whole_pass

from pageref.analysis.columns import from_frame
from pageref.analysis.detectors.base import MAX_EVIDENCE
from pageref.analysis.engine import Engine, column_batches


def truncate_loop(t: Tr, checks: int, every: int = 10 * MS, start: int = S) -> list[int]:
    """vmsplice[7] holds a get on a page of mapping 0xAB; xfs_io[50] checks the
    mapping `checks` times in a loop, finding nothing busy (6.1's early return)."""
    t.add("get", rc=2, pid=7, comm="vmsplice", at=0, mapping=0xAB)
    return [t.add("busy", pfn=None, pid=50, comm="xfs_io", at=start + i * every, mapping=0xAB)
            for i in range(checks)]


def test_a_busy_check_loop_is_one_finding_with_its_count():
    t = Tr()
    checks = truncate_loop(t, 137)
    a = t.anomalies()
    assert list(a["kind"]) == ["busy_check_missed_reference"]
    row = a.iloc[0]
    assert row["count"] == 137 and row["ts_ns"] == T0 + S and row["pid"] == 50
    assert len(row["evidence"]) == MAX_EVIDENCE            # capped
    assert row["evidence"][:3] == [0, checks[0], checks[1]]  # the grab, then the first checks


def test_repeats_further_apart_than_T_are_separate_findings():
    t = Tr()
    truncate_loop(t, 3, every=2 * S)
    a = t.anomalies()
    assert list(a["count"]) == [1, 1, 1]


def test_a_free_ends_the_repeats():
    t = Tr()
    t.add("put", rc=1, at=0)              # underflow 1 -> 0
    t.add("put", rc=1, at=MS)             # again, same life
    t.add("free", rc=0, at=2 * MS)
    t.add("get", rc=0, at=3 * MS)         # (grab_on_free_page: a new life)
    t.add("put", rc=1, at=4 * MS)         # underflow on the new life
    a = t.anomalies()
    u = a[a["kind"] == "refcount_underflow"]
    assert list(u["count"]) == [2, 1] and list(u["evidence"]) == [[0, 1], [4]]


def test_double_free_repeated_is_one_finding_per_free():
    t = Tr()
    for i in range(3):
        t.add("free", rc=0, at=i * MS)
    a = t.anomalies()
    assert list(a["kind"]) == ["double_free", "double_free"] and list(a["count"]) == [1, 1]


def test_the_engine_emits_at_the_first_occurrence_and_raises_the_count():
    t = Tr()
    truncate_loop(t, 5)
    t.add("get", rc=1, pfn=FSDAX + 1, at=5 * S)    # time moves on past T
    tr = t.trace()
    e = Engine(tr.header, S)
    first = e.feed_frame(tr.events.iloc[:2])
    assert [(a.kind, a.count) for a in first] == [("busy_check_missed_reference", 1)]
    assert e.feed_frame(tr.events.iloc[2:]) == []       # never a second record
    assert e.finish() == []
    assert [a.count for a in e.found] == [5] and first[0] is e.found[0]
    assert first[0].final_ns == T0 + S + 4 * 10 * MS + S + 1


def loop_corpus(seed: int):
    """Loops of repeats on a few pages, with frees, releases and pauses: what
    the engine must count the same way in pieces."""
    import random

    rnd = random.Random(seed)
    t = Tr()
    at = 0
    for _ in range(rnd.randint(2, 5)):
        pfn = FSDAX + rnd.randint(0, 2)
        what = rnd.choice(["busy", "underflow", "refused"])
        if what == "busy":
            t.add("get", rc=2, pfn=pfn, pid=7, comm="vmsplice", at=at, mapping=0xAB)
        for _ in range(rnd.randint(1, 30)):
            at += rnd.choice([MS, 50 * MS, 150 * MS, 400 * MS])
            if what == "busy":
                t.add("busy", pfn=None, pid=50, comm="xfs_io", at=at, mapping=0xAB)
            elif what == "underflow":
                t.add("put", rc=1, pfn=pfn, at=at)
            else:
                t.add("grab_failed", rc=0, pfn=pfn, at=at)
            if rnd.random() < 0.1:
                at += MS
                t.add("get", rc=1, pfn=pfn, at=at)
                at += MS
                t.add("put", rc=2, pfn=pfn, at=at)
        at += rnd.choice([MS, 300 * MS])
        if what == "busy":
            t.add("put", rc=2, pfn=pfn, pid=7, comm="vmsplice", at=at)
        if rnd.random() < 0.5:
            at += MS
            t.add("free", rc=0, pfn=pfn, at=at)
    tr = t.trace()
    return from_frame(tr.events, tr.header)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 40),
       st.lists(st.sampled_from([1, 2, 3, 5, 17, 64, 10**9]), min_size=1, max_size=40))
def test_counts_are_batch_invariant(seed, sizes):
    cols = loop_corpus(seed)
    T = 200 * MS
    e = Engine(cols.header, T)
    got = e.run(column_batches(cols, sizes))
    assert as_set(got) == whole_pass(cols, T)
    assert len(got) == len(set(map(id, got)))


def test_the_loop_corpus_has_repeats_and_compaction():
    T = 200 * MS
    counts, dropped = [], 0
    for seed in range(41):
        cols = loop_corpus(seed)
        e = Engine(cols.header, T)
        counts += [a.count for a in e.run(column_batches(cols, [1] * cols.n))]
        dropped += e.dropped
    assert max(counts) > 5 and 1 in counts and dropped > 0


def test_analyze_shows_the_count(tmp_path):
    import json

    from analysis_support import run_cli

    t = Tr()
    truncate_loop(t, 137)
    path = t.write(tmp_path / "loop.jsonl")
    code, out, _ = run_cli("analyze", str(path), "--json")
    doc = json.loads(out)
    assert [(a["kind"], a["count"]) for a in doc["anomalies"]] == [
        ("busy_check_missed_reference", 137)]
    code, out, _ = run_cli("analyze", str(path))
    assert "busy_check_missed_reference" in out and "seen 137 times" in out
