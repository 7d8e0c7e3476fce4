"""Per workload and page kind, the completeness figure (analysis/completeness.py):
on the debug kernel the share of the kernel's refcount changes (the page_ref
tracepoints' `ref` rows) the ordinary probe plan attributes, and where the
others come from; on every other kernel the share of refcount transitions the
workload's own events explain. The lab tests write it to the part's run
directory as completeness.md; docs/kernels.md carries the tables of a run.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

# /proc/uptime's 10 ms steps (the windows of shell-timed clients): one step
# each side
SLACK_NS = 10_000_000


@dataclasses.dataclass(frozen=True)
class Row:
    workload: str
    on: str
    kind: str
    source: str                           # "page_ref" or "refcount"
    changes: int
    attributed: int
    unattributed: int
    share: float | None
    frames: tuple[tuple[str, int], ...]   # (first frame past the refcount helpers, count)


def window(events: pd.DataFrame, w: dict) -> pd.DataFrame:
    return events[(events["ts_ns"] >= w["start_ns"] - SLACK_NS) &
                  (events["ts_ns"] <= w["end_ns"] + SLACK_NS)]


def table(trace, rows: list[dict], own_pages: bool = False) -> list[Row]:
    """One Row per (workload window, page kind) with something counted; with
    `own_pages`, only the pages a row lists (`pfns`, where it has them)."""
    from pageref.analysis.completeness import completeness
    from pageref.analysis.unexplained import by_frame, df_unexplained
    from pageref.trace.io import Trace
    from pageref.trace.pgmap_names import display_name

    out = []
    for w in rows:
        if "start_ns" not in w or "end_ns" not in w:
            continue
        part = window(trace.events, w)
        if own_pages and w.get("pfns"):
            part = part[part["pfn"].isin(w["pfns"])]
        kinds = part["pgmap_type"].astype("string")
        for kind in sorted(k for k in kinds.dropna().unique()):
            sub = Trace(trace.path, trace.header, part[kinds == kind].reset_index(drop=True))
            c = completeness(sub)
            if not c.counted:
                continue
            u = df_unexplained(sub)
            frames = tuple((f["frame"], f["count"]) for f in by_frame(u["stack"])) if len(u) else ()
            out.append(Row(w["workload"], w.get("fs") or w.get("target") or "",
                           display_name(kind), c.source, c.counted, c.explained,
                           c.unexplained, c.share, frames))
    return out


def markdown(rows: list[Row]) -> str:
    if rows and rows[0].source == "refcount":
        lines = ["| workload | on | page kind | transitions | explained | unexplained |",
                 "|---|---|---|---|---|---|"]
        for r in rows:
            share = "-" if r.share is None else f"{r.share:.1%}"
            lines.append(f"| {r.workload} | {r.on} | {r.kind} | {r.changes:,} | "
                         f"{r.attributed:,} ({share}) | {r.unattributed:,} |")
        return "\n".join(lines) + "\n"
    lines = ["| workload | on | page kind | refcount changes | attributed | unattributed: "
             "where (first frame past the refcount helpers) |", "|---|---|---|---|---|---|"]
    for r in rows:
        share = "-" if r.share is None else f"{r.share:.1%}"
        where = ", ".join(f"{f} {n:,}" for f, n in r.frames) or "-"
        lines.append(f"| {r.workload} | {r.on} | {r.kind} | {r.changes:,} | "
                     f"{r.attributed:,} ({share}) | {r.unattributed:,}: {where} |")
    return "\n".join(lines) + "\n"


def write(rows: list[Row], path: Path) -> None:
    path.write_text(markdown(rows))
