"""Replaying a recorded trace through the live view, paced by the events' timestamps."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pageref.report.live import LiveView
from pageref.trace.io import read_trace


def replay(path: Path, speed: float = 1.0, mode: str = "auto", interval: float = 1.0,
           *, view: LiveView | None = None, sleep: Callable[[float], None] = time.sleep,
           clock: Callable[[], float] = time.monotonic, tick: float = 0.05) -> LiveView:
    """Feed the trace's events to a LiveView as if they were being recorded.

    Trace time runs `speed` times faster than the wall clock (0: no pacing);
    events are fed in slices of at most `tick` seconds of wall time."""
    trace = read_trace(Path(path))
    h = trace.header
    if view is None:
        view = LiveView(mode, pin_bias=h.pin_bias, idle_refcount=h.idle_refcount,
                        clock=clock, interval=interval,
                        title=f"pageref watch {Path(path).name}")
    # In time order, each event keeping its row position in the trace: the
    # engine cites those rows as evidence, as `pageref analyze` does.
    ev = trace.events.sort_values("ts_ns", kind="stable")
    ts = ev["ts_ns"].to_numpy(dtype=np.int64)
    try:
        if not len(ev):
            return view
        t_first = int(h.start_ns) if h.start_ns is not None else int(ts[0])
        wall0 = clock()
        i = 0
        n = len(ev)
        while i < n:
            if speed > 0:
                now_trace = t_first + (clock() - wall0) * speed * 1e9
                j = int(np.searchsorted(ts, now_trace, side="right"))
                if j == i:  # nothing due yet: sleep until the next event (or a tick)
                    wait = (ts[i] - now_trace) / 1e9 / speed
                    sleep(min(max(wait, 0.001), tick))
                    view.refresh()
                    continue
            else:
                j = min(n, i + 10_000)
            view.feed(ev.iloc[i:j])
            view.refresh()
            i = j
        if h.lost_total > view.state.lost_from_events:
            # Lost counts known only from the header: show them as kernel counters.
            view.set_counters(dict(view.state.by_probe),
                              {int(k): int(v) for k, v in h.lost.items()})
    finally:
        view.close()
    return view
