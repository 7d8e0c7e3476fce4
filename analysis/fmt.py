"""Small formatting and parsing helpers shared by the analysis, the report and the
commands: the one owner of how durations and page frame numbers are typed and shown."""

from __future__ import annotations

import re

# The one duration vocabulary of every command (record --duration, analyze/
# history/report --threshold): users type the same durations everywhere.
_NS_PER = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000,
           "s": 1_000_000_000, "m": 60_000_000_000, "min": 60_000_000_000,
           "h": 3_600_000_000_000}
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-zµμ]*)\s*$")
# Timestamps and thresholds are int64 nanoseconds in the trace and the analysis.
_MAX_NS = 2**63 - 1
_EXAMPLES = "examples: 10ns, 250us, 500ms, 1.5s, 2min, 1h; a plain number is seconds"


def parse_duration(text: str, *, positive: bool = False) -> int:
    """A duration as a user types it -> nanoseconds.

    Units: ns, us (or µs), ms, s, m or min, h; a plain number is seconds.
    `positive`: zero is refused too (a recording of no time).
    Raises ValueError with a one-line message a user can act on.
    """
    m = _DURATION.match(str(text))
    if not m or m.group(2) not in ("", *_NS_PER):
        raise ValueError(f"not a duration: {text!r} ({_EXAMPLES})")
    ns = round(float(m.group(1)) * _NS_PER[m.group(2) or "s"])
    if ns > _MAX_NS:
        raise ValueError(f"duration too long: {text!r} (at most 292 years)")
    if positive and ns <= 0:
        raise ValueError(f"duration must be more than 0: {text!r} ({_EXAMPLES})")
    return int(ns)


def parse_seconds(text: str, *, positive: bool = False) -> float:
    """parse_duration, in seconds (for wall-clock timers such as record --duration)."""
    return parse_duration(text, positive=positive) / 1e9


def fmt_ns(ns: int | float | None) -> str:
    """A duration for humans: 1.5 min, 1.50 s, 250.0 ms, 12.0 µs, 80 ns.

    The one duration formatter of analyze, history, report, the live view and
    record."""
    if ns is None:
        return "?"
    ns = float(ns)
    if ns != ns:  # NaN: unknown, not a number of nanoseconds
        return "?"
    a = abs(ns)
    if a >= 60e9:
        return f"{ns / 60e9:.1f} min"
    if a >= 1e9:
        return f"{ns / 1e9:.2f} s"
    if a >= 1e6:
        return f"{ns / 1e6:.1f} ms"
    if a >= 1e3:
        return f"{ns / 1e3:.1f} µs"
    return f"{ns:.0f} ns"


def fmt_seconds(seconds: float | None) -> str:
    """fmt_ns for a duration measured in seconds (wall-clock timers)."""
    return "?" if seconds is None else fmt_ns(seconds * 1e9)


def fmt_pfn(pfn: int | None) -> str:
    return "-" if pfn is None else f"{int(pfn):#x}"


def parse_pfn(text: str) -> int:
    """'0x140018' (hex) or '1310744' (decimal) -> int; ValueError otherwise."""
    t = str(text).strip().lower()
    try:
        value = int(t, 16) if t.startswith("0x") else int(t, 10)
    except ValueError:
        raise ValueError(f"not a page frame number: {text!r} (examples: 0x140018, 1310744)"
                         ) from None
    if value < 0:
        raise ValueError(f"page frame number must not be negative: {text!r}")
    return value
