"""Trace metadata: the facts about the recording that the analysis needs."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any, TypedDict

from pageref.trace.schema import (
    DEFAULT_PAGE_SIZE,
    DEFAULT_PIN_BIAS,
    FORMAT_VERSION,
    READABLE_VERSIONS,
)
from pageref.trace.text import escape_controls, shown

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_SURROGATE = re.compile("[\ud800-\udfff]")


class CoverageRecord(TypedDict):
    """What the probe plan covers, as the recorder wrote it (trace/plan_record.py
    reads it as `Coverage`). Absent in traces written before it existed."""

    covered: list[str]      # drop paths covered (the text `pageref probes` prints)
    uncovered: list[str]    # drop paths not covered
    left_out: list[dict[str, str]]  # {"probe", "symbol", "why"}: targets not attached
    notes: list[str]


@dataclasses.dataclass
class TraceHeader:
    """Metadata of a trace. Unknown keys read from a file are kept in `extra`."""

    version: int = FORMAT_VERSION
    kernel: str | None = None
    pin_bias: int = DEFAULT_PIN_BIAS
    page_size: int = DEFAULT_PAGE_SIZE
    idle_refcount: dict[str, int] = dataclasses.field(default_factory=dict)
    # [{"probe": "grab", "symbol": "try_grab_folio", "method": "kprobe", ...}]
    probe_plan: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    start_ns: int | None = None       # CLOCK_MONOTONIC at start, same clock as ts_ns
    end_ns: int | None = None
    start_time: str | None = None     # wall clock at start, ISO 8601 UTC
    host: str | None = None
    command: list[str] | None = None
    lost: dict[str, int] = dataclasses.field(default_factory=dict)  # cpu -> events lost
    coverage: CoverageRecord | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def idle_for(self, pgmap_type: str | None) -> int:
        """Idle refcount of a page of `pgmap_type` (0 where unknown)."""
        if pgmap_type is None:
            return 0
        # Where the trace does not say, 0: nothing is invented. (fsdax pages idle
        # at 1 on kernels before the "Fix the DAX-gup mistake" series, at 0 after.)
        return int(self.idle_refcount.get(pgmap_type, 0))

    @property
    def lost_total(self) -> int:
        return sum(self.lost.values())

    def to_dict(self, fmt: str) -> dict[str, Any]:
        d = {"format": fmt}
        for f in dataclasses.fields(self):
            if f.name != "extra":
                d[f.name] = getattr(self, f.name)
        d.update(self.extra)
        return d

    def to_json(self, fmt: str) -> str:
        # allow_nan=False: NaN/Infinity are not JSON; no reader of ours takes them.
        return json.dumps(self.to_dict(fmt), sort_keys=True, allow_nan=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TraceHeader:
        """Build from a decoded header object; raises ValueError with the bad key."""
        known = {f.name: f for f in dataclasses.fields(cls) if f.name != "extra"}
        kwargs: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in d.items():
            if key == "format":
                continue
            if key in known:
                kwargs[key] = value
            else:
                extra[key] = value
        h = cls(**kwargs, extra=extra)
        h._check()
        return h

    def _check(self) -> None:
        def is_int(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        def in_int64(name: str, v: int) -> None:
            # Every integer of the header ends up in int64 arithmetic (numpy,
            # Arrow): past it, Python would raise OverflowError far from here.
            if not INT64_MIN <= v <= INT64_MAX:
                raise ValueError(f"header field {name!r} is out of range "
                                 f"(past a 64-bit integer): {shown(v)}")

        _check_unicode(self.to_dict("-"))
        if not is_int(self.version):
            raise ValueError("header field 'version' must be an integer, got "
                             f"{shown(self.version)}")
        if self.version not in READABLE_VERSIONS:
            raise ValueError(
                f"unknown trace format version {shown(self.version)} (this pageref reads "
                f"versions {', '.join(map(str, READABLE_VERSIONS))}); upgrade pageref"
            )
        for name in ("pin_bias", "page_size"):
            v = getattr(self, name)
            if not is_int(v) or v <= 0:
                raise ValueError(f"header field {name!r} must be a positive integer, "
                                 f"got {shown(v)}")
            in_int64(name, v)
        for name in ("start_ns", "end_ns"):
            v = getattr(self, name)
            if v is not None and not is_int(v):
                raise ValueError(f"header field {name!r} must be an integer, got {shown(v)}")
            if v is not None and not 0 <= v <= INT64_MAX:
                # CLOCK_MONOTONIC, like ts_ns: never negative.
                raise ValueError(f"header field {name!r} must be between 0 and 2**63-1, "
                                 f"got {shown(v)}")
        for name in ("idle_refcount", "lost"):
            v = getattr(self, name)
            if not isinstance(v, dict) or not all(
                isinstance(k, str) and is_int(x) for k, x in v.items()
            ):
                raise ValueError(f"header field {name!r} must map names to integers")
            for k, x in v.items():
                in_int64(f"{name}.{k}", x)
        for k, x in self.lost.items():
            # lost maps a CPU number to the events lost on it.
            if not (k.isascii() and k.isdigit()):
                raise ValueError(f"header field 'lost' must map CPU numbers to counts, "
                                 f"got the key {shown(k)}")
            if x < 0:
                raise ValueError(f"header field 'lost' has a negative count for CPU {k}")
        if sum(self.lost.values()) > INT64_MAX:
            raise ValueError("header field 'lost' counts add up past 2**63-1 events: "
                             "the header is corrupt")
        if not isinstance(self.probe_plan, list) or not all(
            isinstance(p, dict) for p in self.probe_plan
        ):
            raise ValueError("header field 'probe_plan' must be a list of objects")
        if self.coverage is not None:
            _check_coverage(self.coverage)
        for name in ("kernel", "start_time", "host"):
            v = getattr(self, name)
            if v is not None and not isinstance(v, str):
                raise ValueError(f"header field {name!r} must be a string, got {shown(v)}")
        if self.command is not None and not (
            isinstance(self.command, list) and all(isinstance(a, str) for a in self.command)
        ):
            raise ValueError("header field 'command' must be a list of strings")


def _check_coverage(c: Any) -> None:
    def strings(v: Any) -> bool:
        return isinstance(v, list) and all(isinstance(x, str) for x in v)

    if not isinstance(c, dict) or not all(
        strings(c.get(k)) for k in ("covered", "uncovered", "notes")
    ):
        raise ValueError("header field 'coverage' must hold lists of strings 'covered', "
                         "'uncovered' and 'notes'")
    left = c.get("left_out")
    if not isinstance(left, list) or not all(
        isinstance(m, dict) and all(isinstance(m.get(k), str) for k in ("probe", "symbol", "why"))
        for m in left
    ):
        raise ValueError("header field 'coverage' must hold 'left_out', a list of "
                         "{probe, symbol, why} strings")


def _check_unicode(obj: Any, where: str = "") -> None:
    """Every string of the header (keys too) must be writable as UTF-8: JSON can
    escape a lone surrogate (\\ud800) that no terminal or file can take."""
    stack: list[tuple[Any, str]] = [(obj, where)]
    while stack:
        v, at = stack.pop()
        if isinstance(v, str):
            if _SURROGATE.search(v):
                raise ValueError(f"header field {at or 'key'!r} is not valid Unicode "
                                 "(a lone surrogate escape)")
        elif isinstance(v, dict):
            for k, x in v.items():
                name = f"{at}.{k}" if at else str(k)
                stack.append((k, escape_controls(name)))
                stack.append((x, escape_controls(name)))
        elif isinstance(v, (list, tuple)):
            stack.extend((x, at) for x in v)
