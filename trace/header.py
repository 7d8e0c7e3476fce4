"""Trace metadata: the facts about the recording that the analysis needs."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, TypedDict

from pageref.trace.schema import DEFAULT_PAGE_SIZE, DEFAULT_PIN_BIAS, FORMAT_VERSION


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
        return json.dumps(self.to_dict(fmt), sort_keys=True)

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

        if not is_int(self.version):
            raise ValueError(f"header field 'version' must be an integer, got {self.version!r}")
        if self.version != FORMAT_VERSION:
            raise ValueError(
                f"unknown trace format version {self.version} (this pageref reads version "
                f"{FORMAT_VERSION}); upgrade pageref"
            )
        for name in ("pin_bias", "page_size"):
            v = getattr(self, name)
            if not is_int(v) or v <= 0:
                raise ValueError(f"header field {name!r} must be a positive integer, got {v!r}")
        for name in ("start_ns", "end_ns"):
            v = getattr(self, name)
            if v is not None and not is_int(v):
                raise ValueError(f"header field {name!r} must be an integer, got {v!r}")
        for name in ("idle_refcount", "lost"):
            v = getattr(self, name)
            if not isinstance(v, dict) or not all(
                isinstance(k, str) and is_int(x) for k, x in v.items()
            ):
                raise ValueError(f"header field {name!r} must map names to integers")
        if not isinstance(self.probe_plan, list) or not all(
            isinstance(p, dict) for p in self.probe_plan
        ):
            raise ValueError("header field 'probe_plan' must be a list of objects")
        if self.coverage is not None:
            _check_coverage(self.coverage)
        for name in ("kernel", "start_time", "host"):
            v = getattr(self, name)
            if v is not None and not isinstance(v, str):
                raise ValueError(f"header field {name!r} must be a string, got {v!r}")
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
