"""Small formatting and parsing helpers shared by the analysis and the commands."""

from __future__ import annotations

import re

_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
          "m": 60_000_000_000, "min": 60_000_000_000}
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-zµ]*)\s*$")


def parse_duration(text: str) -> int:
    """'1s', '500ms', '250us', '10ns', '2m'; a plain number is seconds. -> ns.

    Raises ValueError with a message a user can act on.
    """
    m = _DURATION.match(str(text))
    if not m or m.group(2) not in ("", *_UNITS):
        raise ValueError(f"not a duration: {text!r} (examples: 1s, 500ms, 250us, 2.5)")
    value = float(m.group(1))
    ns = round(value * _UNITS.get(m.group(2) or "s", 1))
    if ns < 0:
        raise ValueError(f"duration must not be negative: {text!r}")
    return int(ns)


def fmt_ns(ns: int | float | None) -> str:
    """A duration for humans: 1.50 s, 250 ms, 12 µs, 80 ns."""
    if ns is None:
        return "?"
    ns = float(ns)
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
