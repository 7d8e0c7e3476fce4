"""The live view shown while a trace is being recorded (or replayed by `pageref watch`).

API used by the recorder (tracer/recorder.py) and `pageref watch` (report/replay.py):

    view = LiveView(mode="auto")
    view.feed(batch)                      # new events, schema columns
    view.set_counters(per_probe, lost)    # cumulative kernel-side counters
    view.refresh()                        # redraws if about a second has passed
    view.close()                          # final summary line

Modes: "rich" (a redrawn table, for terminals), "plain" (one line per refresh and
one per new anomaly, for logs and pipes), "quiet" (nothing), "auto" (rich when
the output stream is a terminal, plain otherwise). Output goes to stderr by
default so that stdout stays free for the recorder's own output.

Process names are untrusted (a task can call itself anything, escape sequences
included): they are shown through `safe_text`, never as rich markup.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from typing import IO

import pandas as pd

from pageref.analysis.completeness import describe
from pageref.analysis.detectors.base import Anomaly
from pageref.analysis.engine import DEFAULT_THRESHOLD_NS
from pageref.analysis.fmt import fmt_ns, fmt_pfn, fmt_seconds
from pageref.analysis.severity import Severity
from pageref.errors import PagerefError
from pageref.report.live_state import LiveState
from pageref.trace.schema import DEFAULT_PIN_BIAS
from pageref.trace.text import escape_controls

MODES = ("auto", "rich", "plain", "quiet")
REFRESH_S = 1.0


def safe_text(s: object, limit: int = 64) -> str:
    """Printable form of untrusted text: control characters escaped
    (pageref.trace.text, the one owner of that), length capped."""
    r = escape_controls("" if s is None else str(s))
    return r if len(r) <= limit else r[: limit - 1] + "…"


def _fmt_rate(r: float) -> str:
    return f"{r:,.0f}/s" if r >= 10 or r == 0 else f"{r:.1f}/s"


class LiveView:
    """Terminal view of a recording in progress."""

    def __init__(
        self,
        mode: str = "auto",
        *,
        stream: IO[str] | None = None,
        pin_bias: int = DEFAULT_PIN_BIAS,
        idle_refcount: Mapping[str, int] | None = None,
        clock: Callable[[], float] = time.monotonic,
        interval: float = REFRESH_S,
        title: str = "pageref record",
        threshold_ns: int = DEFAULT_THRESHOLD_NS,
    ) -> None:
        if mode not in MODES:
            raise PagerefError(f"unknown live view mode {mode!r}; use one of {', '.join(MODES)}")
        self.stream = stream if stream is not None else sys.stderr
        if mode == "auto":
            isatty = getattr(self.stream, "isatty", None)
            mode = "rich" if isatty is not None and isatty() else "plain"
        self.mode = mode
        self.title = title
        self.state = LiveState(pin_bias=pin_bias, idle_refcount=idle_refcount,
                               threshold_ns=threshold_ns)
        self.threshold_ns = threshold_ns
        self._clock = clock
        self._interval = interval
        self._t0 = clock()
        self._last_draw: float | None = None
        self._kernel_probe: dict[str, int] | None = None
        self._kernel_lost: dict[int, int] | None = None
        self._prev_counts: dict[str, int] = {}
        self._prev_t = self._t0
        self.rates: dict[str, float] = {}
        self._live = None
        self._closed = False
        if self.mode == "rich":
            from rich.console import Console
            from rich.live import Live

            console = Console(file=self.stream, force_terminal=True)
            # Python-level prints (the recorder's messages) go above the view
            # instead of tearing it.
            self._live = Live(console=console, auto_refresh=False, transient=False,
                              redirect_stdout=True, redirect_stderr=True)
            self._live.start()

    # -- the recorder's API ------------------------------------------------
    def feed(self, events: pd.DataFrame) -> None:
        """A batch of new events (columns of pageref.trace.schema)."""
        self.state.feed(events)

    def set_counters(self, per_probe: dict[str, int], lost: dict[int, int]) -> None:
        """Cumulative counters from the kernel side: events per probe, lost per CPU.

        When given, they take precedence over what was counted from fed events
        (the kernel saw events that never reached user space)."""
        self._kernel_probe = {str(k): int(v) for k, v in per_probe.items()}
        self._kernel_lost = {int(k): int(v) for k, v in lost.items()}

    def refresh(self, force: bool = False) -> None:
        """Redraw if about a second has passed since the last draw (or if forced)."""
        if self._closed:
            return
        now = self._clock()
        if not force and self._last_draw is not None and now - self._last_draw < self._interval:
            return
        if not force and self._last_draw is None and now - self._t0 < self._interval:
            return
        self._update_rates(now)
        self._last_draw = now
        self._draw()

    def close(self) -> None:
        """Final draw and a one-line summary (nothing in quiet mode)."""
        if self._closed:
            return
        # The end of the recording decides what only the end decides (pin_leak,
        # a page still busy): the summary is then `pageref analyze`'s answer.
        self.state.finish()
        now = self._clock()
        self._update_rates(now)
        if self.mode == "rich" and self._live is not None:
            self._live.update(self._rich_renderable(), refresh=True)
            self._live.stop()
        elif self.mode == "plain":
            self._print_new_anomalies()
        self._closed = True
        if self.mode != "quiet":
            print(self.summary_line(), file=self.stream, flush=True)

    def __enter__(self) -> LiveView:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- numbers -----------------------------------------------------------
    @property
    def per_probe(self) -> dict[str, int]:
        return dict(self._kernel_probe) if self._kernel_probe is not None else dict(
            self.state.by_probe)

    @property
    def lost_total(self) -> int:
        if self._kernel_lost is not None:
            return sum(self._kernel_lost.values())
        return self.state.lost_from_events

    @property
    def events_total(self) -> int:
        if self._kernel_probe is not None:
            return sum(self._kernel_probe.values())
        return self.state.events

    def _update_rates(self, now: float) -> None:
        counts = self.per_probe
        dt = now - self._prev_t
        if dt <= 0:
            return
        self.rates = {p: max(0, n - self._prev_counts.get(p, 0)) / dt for p, n in counts.items()}
        self._prev_counts = counts
        self._prev_t = now

    def summary_line(self) -> str:
        s = self.state
        elapsed = self._clock() - self._t0
        parts = [
            f"{self.title}: {self.events_total:,} events in {fmt_seconds(elapsed)}",
            f"{len(s.pages):,} pages",
            f"{s.pins_outstanding:,} pins outstanding on {s.pages_pinned:,} pages",
            f"{self.lost_total:,} lost",
        ]
        when = "" if s.finished else " so far"
        if s.anomalies:
            unsure = f" ({s.uncertain} uncertain: evidence spans lost events)" \
                if s.uncertain else ""
            parts.append(f"anomalies{when}: " + ", ".join(
                f"{k} {n}" for k, n in sorted(s.anomalies.items())) + unsure)
        else:
            parts.append(f"no anomalies{when}")
        # the figure `pageref analyze` prints, from the same engine
        parts.append(describe(s.engine.completeness()) + when)
        return "; ".join(parts) + " (`pageref analyze` lists them with their evidence)"

    # -- drawing -----------------------------------------------------------
    def _draw(self) -> None:
        if self.mode == "quiet":
            return
        if self.mode == "plain":
            self._print_new_anomalies()
            print(self._plain_line(), file=self.stream, flush=True)
            return
        assert self._live is not None
        self._live.update(self._rich_renderable(), refresh=True)

    def _plain_line(self) -> str:
        s = self.state
        rate = sum(self.rates.values())
        probes = " ".join(f"{safe_text(p, 40)}={_fmt_rate(r)}" for p, r in sorted(
            self.rates.items()))
        anomalies = " ".join(f"{k}={n}" for k, n in sorted(s.anomalies.items())) or "none"
        pend = s.pending()
        waiting = ""
        if pend:
            pins = sum(1 for p in pend if p.what == "pin_held")
            busy = len(pend) - pins
            waiting = (f" | pending > {fmt_ns(self.threshold_ns)}: pins held on {pins} "
                       f"page(s), {busy} page(s) busy")
        # A fixed-width clock column (a ticker, not a duration to read back).
        return (f"[{self._clock() - self._t0:7.1f}s] events {self.events_total:,} "
                f"({_fmt_rate(rate)}) [{probes}] | pages {len(s.pages):,} | "
                f"pins {s.pins_outstanding:,} | lost {self.lost_total:,} | "
                f"anomalies {anomalies}{waiting}")

    def _print_new_anomalies(self) -> None:
        new = self.state.take_new()
        for a in new[-5:]:
            print(self._anomaly_line(a), file=self.stream)
        if len(new) > 5:
            print(f"  ... and {len(new) - 5} more anomalies", file=self.stream)

    def _rel(self, ts_ns: int) -> str:
        t0 = self.state.first_ts if self.state.first_ts is not None else ts_ns
        return f"+{fmt_ns(ts_ns - t0)}"  # as `pageref analyze` shows the same anomaly

    def _anomaly_line(self, a: Anomaly) -> str:
        unsure = " (uncertain: events were lost)" \
            if a.severity == Severity.UNCERTAIN.value else ""
        return (f"  anomaly {a.kind}: pfn {fmt_pfn(a.pfn)} by {safe_text(a.comm)}"
                f"[{a.pid if a.pid is not None else '?'}] at {self._rel(a.ts_ns)}{unsure}")

    def _rich_renderable(self):  # -> rich renderable
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        s = self.state
        self.state.take_new()  # rich shows the latest list instead
        elapsed = self._clock() - self._t0
        head = Text()
        head.append(f"{self.title}", style="bold")
        head.append(f"  {elapsed:.0f}s  events {self.events_total:,} "
                    f"({_fmt_rate(sum(self.rates.values()))})  pages {len(s.pages):,}  "
                    f"pins outstanding {s.pins_outstanding:,} on {s.pages_pinned:,} pages  ")
        lost = self.lost_total
        head.append(f"lost {lost:,}", style="bold red" if lost else "green")

        probes = Table(title="Events by probe", title_justify="left", expand=False)
        probes.add_column("probe")
        probes.add_column("events", justify="right")
        probes.add_column("events/s", justify="right")
        for p, n in sorted(self.per_probe.items()):
            probes.add_row(Text(safe_text(p, 40)), f"{n:,}", _fmt_rate(self.rates.get(p, 0.0)))

        kinds = Table(title="Anomalies as decided", title_justify="left")
        kinds.add_column("kind")
        kinds.add_column("count", justify="right")
        for k, n in sorted(s.anomalies.items()):
            kinds.add_row(Text(k, style="bold red"), f"{n:,}")
        if not s.anomalies:
            kinds.add_row(Text("none", style="green"), "0")

        side = Table.grid(padding=(0, 2))
        side.add_row(probes, kinds)
        parts = [head, side]
        if s.latest:
            latest = Table(title="Latest anomalies", title_justify="left")
            for c in ("kind", "pfn", "task", "time"):
                latest.add_column(c)
            for a in reversed(s.latest):
                latest.add_row(a.kind, fmt_pfn(a.pfn),
                               Text(f"{safe_text(a.comm)}[{a.pid if a.pid is not None else '?'}]"),
                               self._rel(a.ts_ns))
            parts.append(latest)
        pend = s.pending()
        if pend:
            waiting = Table(title=f"Pending: longer than {fmt_ns(self.threshold_ns)} so far",
                            title_justify="left")
            for c in ("what", "pfn", "count", "task", "since"):
                waiting.add_column(c)
            for p in pend[:10]:
                waiting.add_row("pins held" if p.what == "pin_held" else "busy",
                                fmt_pfn(p.pfn), f"{p.count:,}",
                                Text(f"{safe_text(p.comm)}[{p.pid if p.pid is not None else '?'}]"),
                                self._rel(p.since_ns))
            parts.append(waiting)
        return Group(*parts)
