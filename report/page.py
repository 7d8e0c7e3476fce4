"""What goes on the report page, as plain data: the records the sections fill
and the template reads (strings and numbers; nothing here draws or escapes).

Large traces: tables are capped (`Limits`) with a count of what is not shown,
and every plot series is reduced to at most `Limits.plot_points` points.
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass
class Limits:
    rows_per_kind: int = 200      # table rows shown per anomaly kind
    worst_per_kind: int = 3       # occurrences plotted per kind
    evidence_rows: int = 25       # evidence events listed per plotted occurrence
    stack_frames: int = 24        # frames shown per stack
    text_chars: int = 200         # untrusted strings are cut to this length
    plot_points: int = 2000       # points per plotted series
    top_tasks: int = 15
    probes_plotted: int = 8       # the rest are summed as "other"
    rate_bins: int = 300


@dataclasses.dataclass
class Fact:
    label: str
    value: str
    warn: bool = False


@dataclasses.dataclass
class ProbeRow:
    probe: str
    symbol: str
    method: str
    role: str          # the event kinds this probe produces, e.g. "put" or "get, pin"
    events: int        # events in the trace from this symbol
    notes: str         # other keys of the plan entry


@dataclasses.dataclass
class DropPath:
    kind: str          # put / unpin / free
    covered: bool | None  # None: unknown (no probe plan and no such events)
    by: list[str]      # probe symbols covering it
    events: int        # events of this kind in the trace


@dataclasses.dataclass
class MissingProbe:
    probe: str
    symbol: str
    why: str


@dataclasses.dataclass
class RecorderNotes:
    """What the recorder wrote about its own coverage (header extra "tracer")."""

    covered: list[str]
    uncovered: list[str]
    missing: list[MissingProbe]
    notes: list[str]


@dataclasses.dataclass
class VerdictRow:
    kind: str
    count: int
    severity: str
    severity_class: str
    text: str


@dataclasses.dataclass
class EventRow:
    pos: int           # row position in trace.events
    time: str          # seconds since the trace start
    kind: str
    pfn: str
    refcount: str
    refs: str
    task: str
    probe: str
    stack: list[str]
    stack_hidden: int  # frames not shown


@dataclasses.dataclass
class AnomalyRow:
    anchor: str
    kind: str
    pfn: str
    time: str
    ts_ns: int
    task: str
    detail: str
    severity: str
    severity_class: str
    seen: int = 1          # how many times (repeats on one page life: docs/anomalies.md)


@dataclasses.dataclass
class PlotSpec:
    id: str
    title: str
    type: str          # page_history, rate, refcount_hist, pins, tasks
    data: dict[str, Any]
    note: str = ""     # e.g. "downsampled from 1,234,567 points"
    alt: str = ""

    @property
    def points(self) -> int:
        """Largest number of points in any one series of this plot."""
        return int(self.data.get("_points", 0))


@dataclasses.dataclass
class Case:
    row: AnomalyRow
    plot: PlotSpec | None
    evidence: list[EventRow]
    evidence_hidden: int


@dataclasses.dataclass
class KindSection:
    kind: str
    text: str
    severity: str
    severity_class: str
    count: int
    rows: list[AnomalyRow]
    hidden: int
    cases: list[Case]


@dataclasses.dataclass
class Report:
    title: str
    trace_name: str
    generated: str
    threshold: str
    facts: list[Fact]
    warnings: list[str]
    probes: list[ProbeRow]
    drop_paths: list[DropPath]
    verdict: list[VerdictRow]
    total_anomalies: int
    sections: list[KindSection]
    overview: list[PlotSpec]
    notes: list[str]
    recorder: RecorderNotes | None = None

    @property
    def plots(self) -> list[PlotSpec]:
        out = list(self.overview)
        for s in self.sections:
            out.extend(c.plot for c in s.cases if c.plot is not None)
        return out
