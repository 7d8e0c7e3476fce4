"""Parsing the durations users type (`--threshold 1s`)."""

from __future__ import annotations

import re

_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
          "m": 60_000_000_000, "min": 60_000_000_000}


def parse_duration(text: str) -> int:
    """'1s', '250ms', '2.5s', '500us', '1000000' (ns) -> nanoseconds."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?)\s*([a-zµ]*)\s*", str(text))
    if not m:
        raise ValueError(f"not a duration: {text!r} (use e.g. 1s, 250ms, 500us)")
    value, unit = float(m.group(1)), m.group(2) or "ns"
    if unit not in _UNITS:
        raise ValueError(f"unknown unit {unit!r} in {text!r} (use ns, us, ms, s or min)")
    return int(round(value * _UNITS[unit]))
