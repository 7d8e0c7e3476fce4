"""The live view: its running numbers, cheap checks and the three output modes."""

from __future__ import annotations

import io

import pandas as pd
import pytest
import report_traces as rt

from pageref.errors import PagerefError
from pageref.report.live import LiveView, safe_text
from pageref.report.live_state import LiveState
from pageref.report.replay import replay
from pageref.trace.io import read_trace


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def known(tmp_path):
    return read_trace(rt.write_known(tmp_path / "k.jsonl", "bad\x1b[2J[bold]x[/bold]"))


def _state(events: pd.DataFrame, batch: int) -> LiveState:
    s = LiveState(pin_bias=1024, idle_refcount={"fsdax": 1, "devdax": 1})
    for i in range(0, len(events), batch):
        s.feed(events.iloc[i:i + batch])
    return s


@pytest.mark.parametrize("batch", [1, 2, 3, 100])
def test_state_counts_whatever_the_batching(known, batch):
    s = _state(known.events, batch)
    assert s.events == 9
    assert dict(s.by_kind) == {"get": 2, "put": 1, "pin": 2, "unpin": 1, "free": 2, "lost": 1}
    assert dict(s.by_probe) == {"try_grab_folio": 4, "put_page": 1, "unpin_user_page": 1,
                                "free_zone_device_page": 2}
    assert s.lost_from_events == 3
    assert s.pages == {0x1000, 0x1001, 0x1002, 0x1003, 0x1004}
    assert (s.pins_outstanding, s.pages_pinned) == (1, 1)
    # The known trace spans 3.2 s: grab_on_free_page (1.0 s) and double_free
    # (1.6 s) are settled once the trace's time is 1 s (REORDER_NS) past them;
    # longterm_pin_fsdax is decided T after its pin, so only at the end.
    assert dict(s.anomalies) == {"grab_on_free_page": 1, "double_free": 1}
    s.finish()
    assert dict(s.anomalies) == {"grab_on_free_page": 1, "double_free": 1,
                                 "longterm_pin_fsdax": 1, "pin_leak": 1}
    assert [(a.kind, a.pfn, a.pid) for a in s.latest] == [
        ("grab_on_free_page", 0x1002, 666), ("double_free", 0x1003, 30),
        ("pin_leak", 0x1001, 200), ("longterm_pin_fsdax", 0x1004, 300)]


def test_state_checks_and_near_misses():
    ev = pd.DataFrame({
        "ts_ns": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
        "kind": ["put", "put", "unpin", "free", "get", "free", "pin", "free", "pin", "unpin",
                 "free"],
        "pfn": [1, 2, 3, 4, 4, 4, 5, 5, 6, 6, 6],
        "refcount": [1, 2, 1024, 0, 0, 1, 1, 1025, 1, 1025, 1],
        "pgmap_type": ["fsdax"] * 11,
    })
    s = LiveState(idle_refcount={"fsdax": 1})
    s.feed(ev.sample(frac=1, random_state=3))  # arrival order does not matter
    assert dict(s.anomalies) == {}   # all within REORDER_NS of the latest: not settled
    s.finish()
    # pfn 1: put at rc 1 -> 0 < idle 1: underflow; pfn 2: put at rc 2: fine;
    # pfn 3: unpin 1024 - 1024 = 0 < 1: underflow; pfn 4: free, get at 0
    # (grab_on_free_page), free: not a double free (a get between);
    # pfn 5: pin then free while pinned; pfn 6: pin, unpin, free: fine.
    assert dict(s.anomalies) == {"refcount_underflow": 2, "grab_on_free_page": 1,
                                 "free_while_referenced": 1}
    assert [a.pfn for a in s.latest] == [1, 3, 4, 5]
    # As `pageref analyze` counts (issue 12): the free ended pfn 5's life (and was
    # reported as free_while_referenced), so nothing is outstanding after it.
    assert (s.pins_outstanding, s.pages_pinned) == (0, 0)


def test_double_free_across_batches():
    s = LiveState()
    s.feed(pd.DataFrame({"ts_ns": [1], "kind": ["free"], "pfn": [9]}))
    s.feed(pd.DataFrame({"ts_ns": [2], "kind": ["free"], "pfn": [9]}))
    s.feed(pd.DataFrame({"ts_ns": [3], "kind": ["pin"], "pfn": [9], "refcount": [1]}))
    s.feed(pd.DataFrame({"ts_ns": [4, 5], "kind": ["unpin", "free"], "pfn": [9, 9],
                         "refcount": [1025, 1]}))
    s.finish()
    assert dict(s.anomalies) == {"double_free": 1}
    assert s.pins_outstanding == 0


def test_plain_mode_lines(known):
    out, clock = io.StringIO(), Clock()
    v = LiveView("auto", stream=out, clock=clock, idle_refcount={"fsdax": 1})
    assert v.mode == "plain"  # a StringIO is not a terminal
    v.feed(known.events.iloc[:4])
    v.refresh()
    assert out.getvalue() == ""  # less than a second: nothing yet
    clock.t += 2
    v.refresh()
    v.refresh()  # again at once: no second line
    clock.t += 1
    v.feed(known.events.iloc[4:])
    v.close()
    lines = out.getvalue().splitlines()
    # At 2 s of wall time the trace's latest event (1.0 s) is the grab itself:
    # within REORDER_NS of it an earlier event may still come, so not yet said.
    assert lines[0] == ("[    2.0s] events 4 (2.0/s) [put_page=0.5/s try_grab_folio=1.5/s] | "
                        "pages 3 | pins 1 | lost 0 | anomalies none")
    assert lines[1] == ("  anomaly grab_on_free_page: pfn 0x1002 by "
                        "bad\\x1b[2J[bold]x[/bold][666] at +900.0 ms")
    assert lines[2].startswith("  anomaly double_free: pfn 0x1003")
    # Closing: the end decides the pin still held (across the lost events, so
    # uncertain) and the long-term pin kept to 3.2 s (T after it is past the
    # end of the feed), and the summary is `pageref analyze`'s answer (issue 12).
    assert lines[3] == ("  anomaly pin_leak: pfn 0x1001 by rdma-app[200] at +400.0 ms "
                        "(uncertain: events were lost)")
    assert lines[4].startswith("  anomaly longterm_pin_fsdax: pfn 0x1004")
    assert lines[5] == ("pageref record: 9 events in 3.00 s; 5 pages; 1 pins outstanding on "
                        "1 pages; 3 lost; anomalies: double_free 1, "
                        "grab_on_free_page 1, longterm_pin_fsdax 1, pin_leak 1 (1 uncertain: "
                        "evidence spans lost events); history completeness: 100.0% of 1 "
                        "transition explained (`pageref analyze` lists them with their "
                        "evidence)")
    assert len(lines) == 6
    assert "\x1b" not in out.getvalue()


def test_kernel_counters_take_precedence():
    out, clock = io.StringIO(), Clock()
    v = LiveView("plain", stream=out, clock=clock)
    v.feed(pd.DataFrame({"ts_ns": [1], "kind": ["get"], "pfn": [1], "probe": ["x"]}))
    v.set_counters({"grab": 1000, "put": 500}, {0: 7, 3: 5})
    clock.t += 2
    v.refresh()
    assert v.events_total == 1500 and v.lost_total == 12
    assert v.rates == {"grab": 500.0, "put": 250.0}
    v.set_counters({"grab": 3000, "put": 500}, {0: 7, 3: 5})
    clock.t += 1
    v.refresh()
    assert v.rates == {"grab": 2000.0, "put": 0.0}
    assert "events 3,000+500" not in out.getvalue()
    assert out.getvalue().splitlines()[-1].startswith(
        "[    3.0s] events 3,500 (2,000/s) [grab=2,000/s put=0/s]")


def test_quiet_mode_prints_nothing(known):
    out = io.StringIO()
    v = LiveView("quiet", stream=out, clock=Clock())
    v.feed(known.events)
    v.refresh(force=True)
    v.close()
    assert out.getvalue() == ""
    assert v.state.anomalies["double_free"] == 1


def test_rich_mode_shows_tables_and_no_markup_from_comms(known):
    out, clock = io.StringIO(), Clock()
    v = LiveView("rich", stream=out, clock=clock)
    v.feed(known.events)
    clock.t += 1.5
    v.refresh()
    v.close()
    text = out.getvalue()
    for s in ("Events by probe", "try_grab_folio", "Anomalies as decided", "double_free",
              "Latest anomalies", "0x1002"):
        assert s in text
    # the task's name is shown literally: its escape sequence and markup are inert
    assert "bad\\x1b[2J[bold]x[/bold]" in text
    assert "\x1b[2J" not in text


def test_bad_mode():
    with pytest.raises(PagerefError, match="unknown live view mode 'fancy'"):
        LiveView("fancy")


def test_safe_text():
    assert safe_text("a\x07b\x9bc") == "a\\x07b\\x9bc"
    assert safe_text("x" * 100, 10) == "x" * 9 + "…"


def test_replay_fast(tmp_path):
    path = rt.write_known(tmp_path / "k.jsonl", "fio")
    out = io.StringIO()
    v = LiveView("plain", stream=out, clock=Clock(), idle_refcount={"fsdax": 1})
    replay(path, speed=0, view=v)
    assert v.state.events == 9 and v.lost_total == 3
    assert out.getvalue().splitlines()[-1].startswith("pageref record: 9 events")


def test_replay_paced(tmp_path):
    """At speed 2, a 4-second trace takes 2 seconds of (fake) wall time."""
    path = rt.write_known(tmp_path / "k.jsonl", "fio")
    clock = Clock()
    slept = []

    def sleep(s: float) -> None:
        slept.append(s)
        clock.t += s

    v = LiveView("quiet", clock=clock)
    replay(path, speed=2.0, view=v, sleep=sleep, clock=clock)
    assert v.state.events == 9
    # last event at 3.2 s after start_ns -> 1.6 s of wall time at speed 2
    assert sum(slept) == pytest.approx(1.6, abs=0.06)


def test_feed_as_the_recorder_does(known):
    """The recorder feeds `pyarrow.Table.to_pandas()` batches: dictionary columns
    arrive as categoricals, nullable integers as floats with NaN."""
    import pyarrow as pa

    from pageref.trace.schema import ARROW_SCHEMA

    table = pa.Table.from_pandas(known.events, schema=ARROW_SCHEMA, preserve_index=False)
    plain = table.replace_schema_metadata(None).to_pandas()  # as decoded, no pandas meta
    assert plain["pfn"].dtype == "float64" and plain["kind"].dtype == "category"
    s = LiveState(idle_refcount={"fsdax": 1, "devdax": 1})
    for i in range(0, len(plain), 4):
        s.feed(plain.iloc[i:i + 4])
    assert s.events == 9 and s.lost_from_events == 3
    s.finish()
    assert dict(s.anomalies) == {"grab_on_free_page": 1, "double_free": 1,
                                 "longterm_pin_fsdax": 1, "pin_leak": 1}
    assert (s.pins_outstanding, len(s.pages)) == (1, 5)


def test_closing_summary_is_the_analysis_of_the_same_trace():
    """Issue 12: the live view (here replaying examples/basic.jsonl) ends with
    exactly `pageref analyze`'s anomalies, evidence rows included."""
    from pathlib import Path

    from pageref.analysis.anomalies import find_anomalies

    path = Path(__file__).resolve().parents[2] / "examples" / "basic.jsonl"
    v = replay(path, speed=0, mode="quiet")
    a = find_anomalies(path)
    got = sorted((x.kind, x.pfn, x.ts_ns, x.severity, tuple(x.evidence))
                 for x in v.state.engine.found)
    want = sorted(zip(a["kind"], a["pfn"].astype(int), a["ts_ns"], a["severity"],
                      map(tuple, a["evidence"])))
    assert got == want and len(got) >= 11
    assert sum(v.state.anomalies.values()) == len(a)


def test_pending_shows_pins_held_longer_than_T():
    out, clock = io.StringIO(), Clock()
    v = LiveView("plain", stream=out, clock=clock, idle_refcount={"fsdax": 1})
    v.feed(pd.DataFrame({"ts_ns": [0, 2_000_000_000], "kind": ["pin", "get"],
                         "pfn": [7, 8], "refcount": [1, 1], "pgmap_type": ["fsdax"] * 2}))
    clock.t += 2
    v.refresh()
    assert [(p.what, p.pfn, p.count) for p in v.state.pending()] == [("pin_held", 7, 1)]
    assert out.getvalue().splitlines()[-1].endswith(
        "| pending > 1.00 s: pins held on 1 page(s), 0 page(s) busy")
    v.close()
    assert v.state.pending() == [] and v.state.anomalies == {"pin_leak": 1}
