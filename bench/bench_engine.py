#!/usr/bin/env python3
"""Benchmark: the streaming rules engine (`pageref analyze`) on a long trace, its
peak memory and events/s, side by side with `pandas.read_parquet` of the file.

    .venv/bin/python bench/bench_engine.py --events 1e8 --no-read     # 100M: memory bar
    .venv/bin/python bench/bench_engine.py --events 1e7               # 10M: speed bar
    .venv/bin/python bench/bench_engine.py --events 1e7 --busy 0.04   # truncate-heavy

It writes a synthetic recording in Parquet parts (analysis/synth.bulk_tables,
one part per million events, no stacks), with `--busy` adding that fraction of
`busy` reports (a truncating task told a held page is busy, and page-less busy
checks) on pages that are held at the time, so many pages are busy at once.
Then, each in a fresh child process, it runs

  read:    pandas.read_parquet(TRACE)           (skipped with --no-read)
  analyze: pageref analyze TRACE --json          (the CLI: the engine, streamed)

and prints wall time, events/s and peak RSS (the child's ru_maxrss). Bars
(issue 12): analyze peak RSS < 2 GiB at 100M events; analyze <= 3x read.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bench_analyze import child_rss  # bench/ is sys.path[0] when run as a script

READ = """
import sys, pandas as pd
print(len(pd.read_parquet(sys.argv[1])))
"""

ANALYZE = """
import sys
sys.argv = ["pageref", "analyze", sys.argv[1], "--json"]
from pageref.cli import main
main()
"""


def child(code: str, trace: Path) -> tuple[float, int, str]:
    """(wall s, peak RSS bytes, stdout) of `code` in a new interpreter: the one
    child runner of bench_analyze.py."""
    wall, rss, _cpu, out = child_rss(code, trace)
    return wall, rss, out


def with_busy(table, fraction: float, rng):
    """`table` plus busy reports on pages held at the time (after a get), by a
    few truncating tasks, and as many page-less checks of the same mappings."""
    import numpy as np
    import pyarrow as pa

    kind = table.column("kind").to_numpy(zero_copy_only=False).astype(str)
    gets = np.flatnonzero(kind == "get")
    n = int(len(table) * fraction / 2)
    if not n or not len(gets):
        return table
    at = np.sort(rng.choice(gets, size=min(n, len(gets)), replace=False))
    src = table.take(pa.array(at))
    m = len(at)
    task = rng.integers(5000, 5008, size=m)
    mapping = np.uint64(0xFFFF_8881_0000_0000) + (task - 5000).astype(np.uint64) * np.uint64(0x1000)
    cols = {}
    for f in table.schema:
        c = src.column(f.name)
        if f.name == "kind":
            c = pa.array(["busy"] * m, type=f.type)
        elif f.name == "ts_ns":
            c = pa.array(c.to_numpy() + 1, type=f.type)
        elif f.name in ("pid", "tid"):
            c = pa.array(task, type=f.type)
        elif f.name == "comm":
            c = pa.array(["xfs_io"] * m, type=f.type)
        elif f.name == "mapping":
            c = pa.array(mapping, type=f.type)
        elif f.name in ("refs", "stack", "probe", "count", "longterm"):
            c = pa.nulls(m, type=f.type)
        cols[f.name] = c
    busy = pa.table(cols, schema=table.schema)
    check = busy.set_column(busy.schema.get_field_index("pfn"), "pfn",
                            pa.nulls(m, type=table.schema.field("pfn").type))
    check = check.set_column(check.schema.get_field_index("ts_ns"), "ts_ns",
                             pa.array(busy.column("ts_ns").to_numpy() + 1,
                                      type=table.schema.field("ts_ns").type))
    out = pa.concat_tables([table, busy, check])
    return out.take(pa.array(np.argsort(out.column("ts_ns").to_numpy(), kind="stable")))


def make_trace(path: Path, events: int, busy: float) -> None:
    import numpy as np

    from pageref.analysis.synth import bulk_header, bulk_tables
    from pageref.trace.parquet import PartWriter

    t = time.perf_counter()
    rng = np.random.default_rng(7)
    w = PartWriter(path, bulk_header())
    for table in bulk_tables(events, stack_fraction=0.0):
        w.write(with_busy(table, busy, rng) if busy else table)
        print(f"\rbench: writing {path}: {w.events:,} events", end="", file=sys.stderr)
    w.close()
    print(f"\rbench: wrote {w.events:,} events in {w.parts} parts to {path} "
          f"({time.perf_counter() - t:.0f} s)", file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=float, default=1e7)
    ap.add_argument("--busy", type=float, default=0.0,
                    help="fraction of events that are busy reports (e.g. 0.04)")
    ap.add_argument("--no-read", action="store_true",
                    help="skip pandas.read_parquet (it holds the whole trace in memory)")
    ap.add_argument("--trace", type=Path, default=None)
    args = ap.parse_args()
    n = int(args.events)
    trace = args.trace or Path(f"/tmp/pageref-engine-{n}-busy{args.busy:g}")
    if not trace.exists():
        make_trace(trace, n, args.busy)
    import json

    from pageref.trace.parquet import part_files

    print(f"trace: {trace} ({len(part_files(trace))} parts)")
    ratio = None
    if not args.no_read:
        wall_r, rss_r, _ = child(READ, trace)
        print(f"read_parquet: {wall_r:7.1f} s  peak RSS {rss_r / 2**30:5.2f} GiB")
    wall_a, rss_a, out = child(ANALYZE, trace)
    doc = json.loads(out)
    ev = doc["events"]
    print(f"analyze:      {wall_a:7.1f} s  peak RSS {rss_a / 2**30:5.2f} GiB  "
          f"{ev / wall_a:,.0f} events/s  ({ev:,} events, {len(doc['anomalies'])} anomalies, "
          f"{doc['by_kind']})")
    if not args.no_read:
        ratio = wall_a / wall_r
        print(f"ratio analyze/read_parquet: {ratio:.2f} (target <= 3: "
              f"{'met' if ratio <= 3 else 'NOT met'})")
    print(f"analyze peak RSS < 2 GiB: {'met' if rss_a < 2 * 2**30 else 'NOT met'}")


if __name__ == "__main__":
    main()
