"""df_history: refcounts before/after, inference, counts, gaps; plot_history."""

from __future__ import annotations

import pandas as pd
import pytest
from analysis_support import FSDAX, MS, T0, Tr

from pageref.analysis.history import HISTORY_COLUMNS, df_history, plot_history, read_page_trace
from pageref.errors import PagerefError


def sample() -> Tr:
    t = Tr()
    t.add("get", rc=1, pid=1, comm="fio", probe="try_grab_folio",
          stack=["try_grab_folio", "gup_pte_range"])
    t.add("pin", pid=2, comm="qemu")           # refcount not recorded: inferred
    t.add("get", rc=3, pfn=FSDAX + 1)          # another page
    t.add("lost", pfn=None, cpu=0, count=4)
    t.add("unpin", pid=2, comm="qemu")         # after a gap: unknown
    t.add("put", rc=2, pid=1, comm="fio")      # observed again
    t.add("free", rc=1)
    return t


def test_history_columns_and_values():
    h = df_history(sample().trace(), FSDAX)
    assert tuple(h.columns) == HISTORY_COLUMNS
    assert list(h["row"]) == [0, 1, 4, 5, 6]
    assert list(h["kind"].astype(str)) == ["get", "pin", "unpin", "put", "free"]
    assert list(h["w"]) == [1024] * 5 and list(h["idle"]) == [1] * 5
    assert h["refcount_before"].tolist() == [1, 2, pd.NA, 2, 1]
    assert h["refcount_after"].tolist() == [2, 1026, pd.NA, 1, 1]
    assert list(h["refcount_observed"]) == [True, False, False, True, True]
    assert list(h["pins"]) == [0, 1, 0, 0, 0]
    assert list(h["gets"]) == [1, 1, 1, 0, 0]
    assert list(h["gap"]) == [False, False, True, False, False]
    assert list(h["lost"]) == [0, 0, 4, 0, 0]
    assert list(h["comm"].astype(str))[:2] == ["fio", "qemu"]
    assert h["probe"][0] == "try_grab_folio" and list(h["stack"][0]) == ["try_grab_folio",
                                                                          "gup_pte_range"]
    assert h["probe"][1] is None and h["stack"][1] is None
    assert h["ts_ns"][0] == T0 + MS


def test_history_all_pages_sorted_by_pfn_then_time():
    h = df_history(sample().trace())
    assert list(h["pfn"]) == [FSDAX] * 5 + [FSDAX + 1]
    assert h["ts_ns"][:5].is_monotonic_increasing


def test_history_free_resets_counts_and_new_life_starts_at_zero():
    t = Tr()
    t.add("pin", rc=1)
    t.add("free", rc=1025)
    t.add("get", rc=1025)
    h = df_history(t.trace(), FSDAX)
    assert list(h["pins"]) == [1, 0, 0] and list(h["gets"]) == [0, 0, 1]


def test_history_unknown_pfn_is_empty():
    assert df_history(sample().trace(), 0x999).empty


def test_read_page_trace_keeps_positions(tmp_path):
    path = sample().write(tmp_path / "s.jsonl")
    sub = read_page_trace(path, FSDAX)
    assert list(sub.events.index) == [0, 1, 3, 4, 5, 6]
    h = df_history(sub, FSDAX)
    assert list(h["row"]) == [0, 1, 4, 5, 6] and list(h["gap"]) == [False, False, True,
                                                                       False, False]


@pytest.mark.parametrize("suffix,magic", [(".png", b"\x89PNG"), (".svg", b"<?xml")])
def test_plot_history_writes_the_file(tmp_path, suffix, magic):
    h = df_history(sample().trace(), FSDAX)
    out = plot_history(h, tmp_path / f"p{suffix}")
    assert out.read_bytes()[:5].startswith(magic)


def test_plot_history_rejects_other_suffixes_and_empty(tmp_path):
    h = df_history(sample().trace(), FSDAX)
    with pytest.raises(PagerefError, match="png or .svg"):
        plot_history(h, tmp_path / "p.pdf")
    with pytest.raises(PagerefError, match="no events"):
        plot_history(h.iloc[:0], tmp_path / "p.png")


def test_large_folio_tail_pages_count_on_the_head():
    t = Tr()
    head = FSDAX + 0x200
    t.add("pin", pfn=head + 3, rc=1, order=9)
    t.add("get", pfn=head + 17, rc=2, order=9)
    t.add("put", pfn=head + 17, rc=3, order=9)
    t.add("unpin", pfn=head + 3, rc=2, order=9)
    t.add("put", pfn=head + 5, rc=1, order=9)  # below idle 1 on the folio
    a = t.anomalies()
    assert list(a["kind"]) == ["refcount_underflow"] and a["pfn"][0] == head
    for asked in (head, head + 17, head + 511):
        h = df_history(t.trace(), asked)
        assert list(h["page"]) == [head] * 5
        assert list(h["pfn"]) == [head + 3, head + 17, head + 17, head + 3, head + 5]
        assert list(h["pins"]) == [1, 1, 1, 0, 0] and list(h["w"]) == [1] * 5
    assert df_history(t.trace(), head + 512).empty
