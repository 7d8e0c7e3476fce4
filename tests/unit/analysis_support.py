"""Helpers for the analysis tests: inline traces and running the CLI in-process."""

from __future__ import annotations

import io
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pandas as pd

from pageref.analysis.anomalies import find_anomalies
from pageref.trace.header import TraceHeader
from pageref.trace.io import Trace

S = 1_000_000_000
MS = 1_000_000
T0 = 1_000 * S
FSDAX = 0x140000


def events_frame(events: list[dict[str, Any]]) -> pd.DataFrame:
    """Event dicts -> a DataFrame in the trace schema, through the same checks a
    JSON Lines trace gets (a test may use the reader's internals)."""
    from pageref.trace.jsonl import _check_event, rows_to_frame

    return rows_to_frame([_check_event(e) for e in events])


def header(**kw) -> TraceHeader:
    base = {"kernel": "6.1.0-56-amd64", "pin_bias": 1024,
            "idle_refcount": {"fsdax": 1, "devdax": 1, "private": 0}}
    base.update(kw)
    return TraceHeader(**base)


class Tr:
    """Build a trace event by event; each event 1 ms after the previous unless
    `at` (ns after T0) is given. Defaults: an fsdax page, task fio[100]."""

    def __init__(self, **hdr) -> None:
        self.events: list[dict] = []
        self.now = T0
        self.hdr = header(**hdr)

    def add(self, kind: str, pfn: int | None = FSDAX, rc: int | None = None, at: int | None = None,
            pid: int = 100, comm: str = "fio", pgmap: str | None = "fsdax", **kw) -> int:
        self.now = T0 + at if at is not None else self.now + MS
        e = {"ts_ns": self.now, "kind": kind, "pid": pid, "tid": pid, "comm": comm}
        if pfn is not None:
            e["pfn"] = pfn
        if rc is not None:
            e["refcount"] = rc
        if pgmap is not None and pfn is not None:
            e["pgmap_type"] = pgmap
        e.update(kw)
        self.events.append(e)
        return len(self.events) - 1

    def trace(self) -> Trace:
        return Trace(Path("inline.jsonl"), self.hdr, events_frame(self.events))

    def anomalies(self, threshold_ns: int = S):
        return find_anomalies(self.trace(), threshold_ns)

    def kinds(self, threshold_ns: int = S) -> list[tuple[str, int]]:
        a = self.anomalies(threshold_ns)
        return sorted(zip(a["kind"], a["pfn"].astype(int)))

    def write(self, path: Path) -> Path:
        import json

        with open(path, "w") as f:
            f.write(self.hdr.to_json("pageref-events") + "\n")
            for e in self.events:
                f.write(json.dumps(e) + "\n")
        return path


def run_cli(*args: str) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `pageref ARGS` through pageref.cli.main."""
    from pageref.cli import main

    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = ["pageref", *map(str, args)]
    code = 0
    try:
        with redirect_stdout(out), redirect_stderr(err):
            main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = argv
    return code, out.getvalue(), err.getvalue()
