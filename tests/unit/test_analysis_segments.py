"""The vectorised segment helpers against plain-Python references."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pageref.analysis import segments as seg

cases = st.lists(st.tuples(st.integers(-5, 5), st.booleans(), st.booleans()),
                 min_size=1, max_size=80)


def split(rows):
    v = np.array([r[0] for r in rows], dtype=np.int64)
    starts = np.array([r[1] for r in rows], dtype=bool)
    starts[0] = True
    flag = np.array([r[2] for r in rows], dtype=bool)
    ids = np.cumsum(starts) - 1
    return v, starts, flag, ids


@settings(max_examples=300, deadline=None)
@given(cases)
def test_segment_helpers_match_python(rows):
    v, starts, flag, ids = split(rows)
    n = len(v)
    groups = [np.flatnonzero(ids == i) for i in range(ids.max() + 1)]
    cs, cm, cl, first, last = [], [], [], [], []
    for g in groups:
        x = 0
        for d in v[g]:
            x = max(0, x + d)
            cl.append(x)
        cs.extend(np.cumsum(v[g]))
        cm.extend(np.minimum.accumulate(v[g]))
        first.extend([g[0]] * len(g))
        last.extend([g[-1]] * len(g))
    assert seg.cumsum(v, starts).tolist() == cs
    assert seg.cummin(v, starts).tolist() == cm
    assert seg.clamped_cumsum(v, starts).tolist() == cl
    assert seg.segment_first_index(starts).tolist() == first
    assert seg.segment_last_index(starts).tolist() == last
    nxt = [next((k for k in range(j + 1, n) if ids[k] == ids[j] and flag[k]), -1)
           for j in range(n)]
    assert seg.next_true_index(flag, starts).tolist() == nxt
    prev = [next((k for k in range(j, -1, -1) if ids[k] == ids[j] and flag[k]), -1)
            for j in range(n)]
    assert seg.last_valid_index(flag, starts).tolist() == prev
    shifted = [0 if starts[j] else int(v[j - 1]) for j in range(n)]
    assert seg.shift(v, starts, 0).tolist() == shifted
    anyf = [bool(flag[groups[ids[j]]].any()) for j in range(n)]
    assert seg.any_per_segment(flag, starts).tolist() == anyf


def test_run_starts_and_empty_inputs():
    a = np.array([3, 3, 4, 4, 4, 3])
    assert seg.run_starts(a).tolist() == [True, False, True, False, False, True]
    e = np.zeros(0, dtype=np.int64)
    eb = np.zeros(0, dtype=bool)
    for f in (seg.cumsum, seg.cummin, seg.clamped_cumsum):
        assert len(f(e, eb)) == 0
    assert len(seg.next_true_index(eb, eb)) == 0


def test_cummin_falls_back_for_huge_spans():
    v = np.array([2**61, -(2**61), 5, -3], dtype=np.int64)
    starts = np.array([True, False, True, False])
    assert seg.cummin(v, starts).tolist() == [2**61, -(2**61), 5, -3]
