"""The engine gives exactly the whole pass's anomalies whatever the batch sizes
(batch invariance, issue 12), and emits each verdict once it is decided."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np
import pytest
from analysis_support import FSDAX, MS, S, Tr, events_frame
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pageref.analysis import model as model_mod
from pageref.analysis.columns import Columns, K, from_frame, load_columns
from pageref.analysis.detectors import DETECTORS
from pageref.analysis.engine import Engine, column_batches
from pageref.analysis.synth import BUGS, random_scenario

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted((ROOT / "tests" / "fixtures" / "kernels").glob("*/suite.jsonl")) \
    + sorted((ROOT / "examples").glob("*.jsonl"))
T = 200 * MS


def synth(seed: int) -> Columns:
    """Synthetic traces; every other one with the kernel's page_ref rows."""
    bugs = tuple(b for i, b in enumerate(BUGS) if (seed >> (i % 5)) & 1)
    s, events = random_scenario(seed, bugs=bugs, clean_pages=3, truncates=2,
                                shuffle=3, lost_rows=seed % 3, page_refs=seed % 2 == 1)
    return from_frame(events_frame(events), s.header)


@functools.cache
def corpus(i: int) -> Columns:
    return load_columns(FILES[i]) if i < len(FILES) else synth(i - len(FILES))


N_CORPUS = len(FILES) + 16


def lateness(cols: Columns) -> int:
    """The engine's reorder_ns for this file: events must arrive *less* than it
    late (a verdict decided at max_ts - reorder_ns is out), so one past how late
    the most out-of-order event arrives; 0 for a file in time order."""
    ts = cols.ts
    late = int((np.maximum.accumulate(ts) - ts).max()) if len(ts) else 0
    return late + 1 if late else 0


def as_set(found) -> list[tuple]:
    return sorted(tuple((k, tuple(v) if isinstance(v, list) else v)
                        for k, v in dataclasses.asdict(a).items()) for a in found)


def whole_pass(cols: Columns, threshold: int) -> list[tuple]:
    m = model_mod.build(cols, threshold)
    return as_set(a for det in DETECTORS for a in det.detect(m))


def test_corpus_is_not_trivial():
    """The corpus holds every anomaly kind, and traces fed out of order."""
    kinds = set()
    for i in range(N_CORPUS):
        kinds |= {a[0][1] for a in whole_pass(corpus(i), T)}
    assert kinds == set(BUGS)
    assert any(lateness(corpus(i)) > 0 for i in range(N_CORPUS))
    with_refs = [i for i in range(N_CORPUS) if (corpus(i).kind == K["ref"]).any()]
    assert len(with_refs) >= 8


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, N_CORPUS - 1),
       st.lists(st.sampled_from([1, 2, 3, 5, 17, 64, 10**9]), min_size=1, max_size=40))
def test_batch_invariance(i, sizes):
    cols = corpus(i)
    e = Engine(cols.header, T, reorder_ns=lateness(cols))
    got = e.run(column_batches(cols, sizes))
    assert as_set(got) == whole_pass(cols, T)
    assert len(got) == len(set(map(id, got)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, N_CORPUS - 1),
       st.lists(st.sampled_from([1, 2, 3, 5, 17, 64, 10**9]), min_size=1, max_size=40))
def test_batch_invariance_with_a_horizon(i, sizes):
    """Fed with the horizon a file read ahead gives (the earliest time still to
    come, anomalies.horizons), the engine settles verdicts up to it and lets go
    of more, still with the whole pass's answer."""
    cols = corpus(i)
    e = Engine(cols.header, T, reorder_ns=lateness(cols))
    parts = list(column_batches(cols, sizes))
    ahead = np.minimum.accumulate([int(b.ts.min()) for b in parts][::-1])[::-1]
    for k, b in enumerate(parts):
        e.feed(b, horizon=int(ahead[k + 1]) if k + 1 < len(parts) else None)
    e.finish()
    assert as_set(e.found) == whole_pass(cols, T)
    assert len(e.found) == len(set(map(id, e.found)))


@pytest.mark.parametrize("i", range(N_CORPUS))
def test_one_event_at_a_time(i):
    cols = corpus(i)
    e = Engine(cols.header, T, reorder_ns=lateness(cols))
    assert as_set(e.run(column_batches(cols, [1] * cols.n))) == whole_pass(cols, T)


def test_verdicts_are_emitted_when_decided_not_at_the_end():
    t = Tr()
    t.add("put", rc=1, at=0)                       # refcount_underflow: decided at once
    t.add("pin", rc=1, pfn=FSDAX + 1, at=MS)       # pin_leak: only at the end
    t.add("get", rc=1, pfn=FSDAX + 2, at=2 * S)
    tr = t.trace()
    e = Engine(tr.header, S)
    first = e.feed_frame(tr.events.iloc[:1])
    assert [a.kind for a in first] == ["refcount_underflow"]
    assert e.feed_frame(tr.events.iloc[1:]) == []
    assert [p.what for p in e.pending()] == ["pin_held"]
    assert [a.kind for a in e.finish()] == ["pin_leak"]
    assert [a.evidence for a in e.found] == [[0], [1]]   # global row numbers


def test_missed_wakeup_waits_for_T_after_the_idle_point():
    t = Tr()
    t.add("pin", rc=1, pid=1, at=0)
    t.add("busy", rc=1025, pid=50, comm="xfs_io", at=S, mapping=0xAB)
    t.add("unpin", rc=1025, pid=1, at=S + S // 10)
    t.add("get", rc=1, pfn=FSDAX + 1, at=S + S // 10 + S)        # exactly T later
    t.add("get", rc=1, pfn=FSDAX + 1, at=S + S // 10 + S + 1)    # past T
    tr = t.trace()
    e = Engine(tr.header, S)
    assert e.feed_frame(tr.events.iloc[:4]) == []
    assert [a.kind for a in e.feed_frame(tr.events.iloc[4:])] == ["missed_wakeup"]
    assert e.finish() == []


def test_a_recheck_long_before_the_idle_point_is_kept():
    """The task checked again (it had stopped waiting) long before the page went
    idle: fed one event at a time, the engine keeps that check until the
    episode is decided, so no missed_wakeup the whole pass does not find."""
    t = Tr()
    t.add("pin", rc=1, pid=1, at=0)
    t.add("busy", rc=1025, pid=50, comm="xfs_io", at=S // 10, mapping=0xAB)
    t.add("busy", pfn=None, pid=50, comm="xfs_io", at=S // 2, mapping=0xAB)
    t.add("unpin", rc=1025, pid=1, at=3 * S)
    for i in range(6):
        t.add("get", rc=1, pfn=FSDAX + 1, at=3 * S + (i + 1) * S // 2)
        t.add("put", rc=2, pfn=FSDAX + 1, at=3 * S + (i + 1) * S // 2 + 1)
    tr = t.trace()
    cols = from_frame(tr.events, tr.header)
    e = Engine(tr.header, S)
    got = e.run(column_batches(cols, [1] * cols.n))
    assert "missed_wakeup" not in {a.kind for a in got}
    assert as_set(got) == whole_pass(cols, S)


def test_pending_shows_a_page_busy_longer_than_T():
    t = Tr()
    t.add("pin", rc=1, pid=1, at=0)
    t.add("busy", rc=1025, pid=50, comm="xfs_io", at=S, mapping=0xAB)
    t.add("busy", rc=1025, pid=50, comm="xfs_io", at=S + S // 2, mapping=0xAB)
    t.add("get", rc=1, pfn=FSDAX + 1, at=2 * S + 1)
    tr = t.trace()
    e = Engine(tr.header, S)
    e.feed_frame(tr.events)
    busy = [p for p in e.pending() if p.what == "busy"]
    assert [(p.pfn, p.since_ns - t.events[0]["ts_ns"], p.count, p.comm) for p in busy] == [
        (FSDAX, S, 2, "xfs_io")]


def test_settled_pages_are_let_go_of():
    """Memory is bounded by what is live: fed one event at a time, the engine
    lets go of most of the 7.2 fixture's rows, and still answers as the whole
    pass does (test_one_event_at_a_time)."""
    i = next(n for n, f in enumerate(FILES) if f.parent.name == "7.2")
    cols = corpus(i)
    e = Engine(cols.header, T, reorder_ns=lateness(cols))
    e.run(column_batches(cols, [1] * cols.n))
    assert e.dropped > cols.n // 2
