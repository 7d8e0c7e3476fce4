"""tracer/losses.py: the kernel's loss counts become `lost` rows of what is new
and header totals, and the closing line's account."""

from __future__ import annotations

import pyarrow as pa

from pageref.trace.header import TraceHeader
from pageref.tracer.losses import LossAccount


class LostMap(dict):
    """BCC's per-CPU array: bpf["lost"][c_int(0)] is the list of per-CPU counts."""

    def __getitem__(self, _k):
        return dict.__getitem__(self, 0)


def bpf_with(per_cpu: list[int]):
    return {"lost": LostMap({0: per_cpu})}


def header() -> TraceHeader:
    return TraceHeader(kernel="t", pin_bias=1024, page_size=4096, idle_refcount={"fsdax": 1},
                       probe_plan=[], start_ns=0)


def test_only_new_losses_become_rows_and_the_header_has_the_totals(capsys) -> None:
    acc, h = LossAccount(), header()
    assert acc.update(bpf_with([0, 0]), h) is None and h.lost == {}
    rows = acc.update(bpf_with([3, 0]), h)
    assert rows is not None and rows.column("count").to_pylist() == [3]
    assert rows.column("cpu").to_pylist() == [0]
    rows = acc.update(bpf_with([5, 2]), h)
    assert rows is not None
    new = dict(zip(rows.column("cpu").to_pylist(), rows.column("count").to_pylist()))
    assert new == {0: 2, 1: 2}
    assert h.lost == {"0": 5, "1": 2}
    assert acc.update(bpf_with([5, 2]), h) is None
    assert "; 7 lost (per CPU: {0: 5, 1: 2})" == acc.summary()
    assert capsys.readouterr().err.count("events lost") == 2


def test_a_missing_map_is_no_loss() -> None:
    acc = LossAccount()
    assert acc.update({}, header()) is None and acc.summary() == "; 0 lost"


def test_events_without_their_stack_are_counted_in_the_header():
    acc, h = LossAccount(), header()
    t = pa.table({"kind": ["ref", "ref", "put"],
                  "stack": pa.array([["a"], None, None], pa.list_(pa.string()))})
    acc.stacks(t, h)
    acc.stacks(pa.table({"kind": ["get"]}), h)          # recorded without --stacks
    acc.stacks(t.slice(0, 2), h)
    assert h.extra["tracer"]["stacks_missing"] == 3
    assert "3 events without their stack" in acc.summary()
