#!/usr/bin/env python3
"""Benchmark: `pageref analyze` against `pandas.read_parquet` on the same trace.

    .venv/bin/python bench/bench_analyze.py                 # 10M events, 3 rounds
    .venv/bin/python bench/bench_analyze.py --events 2e6 --rounds 2
    .venv/bin/python bench/bench_analyze.py --stack-fraction 0   # no stacks at all

It writes a synthetic recording (a directory of Parquet parts, as `pageref
record` writes; analysis/synth.bulk_tables: kernel-rule-following holds on
~events/64 fsdax pages, every column filled, kernel stacks on a fraction of the
events) unless it already exists, then alternates, in fresh child processes,

  read:    pandas.read_parquet(TRACE)
  analyze: pageref analyze TRACE --json  (the CLI's code path: pageref.cli.main)

and reports wall time, events/s and peak RSS (ru_maxrss of the child) of each
round, the median ratio analyze/read, and whether it meets the targets
(ratio <= 3, analyze peak RSS < 4 GiB).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

READ = """
import sys, pandas as pd
df = pd.read_parquet(sys.argv[1])
print(len(df))
"""

ANALYZE = """
import sys
sys.argv = ["pageref", "analyze", sys.argv[1], "--json"]
from pageref.cli import main
main()
"""


def child_rss(code: str, trace: Path) -> tuple[float, int, float, str]:
    """(wall s, peak RSS bytes, CPU s, stdout) of `code` run in a new interpreter;
    the child measures its own peak RSS and CPU time (user + system)."""
    wrapped = code + """
import resource, sys
_ru = resource.getrusage(resource.RUSAGE_SELF)
sys.stderr.write("\\nMAXRSS %d CPU %.3f\\n" % (_ru.ru_maxrss, _ru.ru_utime + _ru.ru_stime))
"""
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", wrapped, str(trace)], capture_output=True,
                       text=True)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"bench: child failed ({p.returncode}):\n{p.stderr[-2000:]}")
    stats = [line.split() for line in p.stderr.splitlines() if line.startswith("MAXRSS")]
    rss = int(stats[-1][1]) * 1024 if stats else -1
    cpu = float(stats[-1][3]) if stats else float("nan")
    return wall, rss, cpu, p.stdout


def make_trace(path: Path, events: int, stack_fraction: float) -> None:
    from pageref.analysis.synth import bulk_header, bulk_tables
    from pageref.trace.parquet import PartWriter

    t = time.perf_counter()
    w = PartWriter(path, bulk_header())
    for table in bulk_tables(events, stack_fraction=stack_fraction):
        w.write(table)
        print(f"\rbench: writing {path}: {w.events:,} events", end="", file=sys.stderr)
    w.close()
    print(f"\rbench: wrote {w.events:,} events in {w.parts} parts to {path} "
          f"({time.perf_counter() - t:.0f} s, "
          f"{sum(f.stat().st_size for f in path.iterdir()) / 2**20:.0f} MiB)", file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=float, default=10e6)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--stack-fraction", type=float, default=0.1)
    ap.add_argument("--trace", type=Path, default=None,
                    help="trace directory (default: /tmp/pageref-bench-<events>-<stacks>)")
    args = ap.parse_args()
    n = int(args.events)
    trace = args.trace or Path(f"/tmp/pageref-bench-{n}-{args.stack_fraction:g}")
    if not trace.exists():
        make_trace(trace, n, args.stack_fraction)
    rows = []
    for r in range(args.rounds):
        # Alternate which goes first so the page cache favours neither.
        pair = [("read", READ), ("analyze", ANALYZE)]
        if r % 2:
            pair.reverse()
        for name, code in pair:
            wall, rss, cpu, out = child_rss(code, trace)
            if name == "analyze":
                doc = json.loads(out)
                events, anomalies = doc["events"], len(doc["anomalies"])
            else:
                events, anomalies = int(out.strip()), None
            rows.append({"round": r, "what": name, "wall": wall, "rss": rss, "cpu": cpu,
                         "events": events, "anomalies": anomalies})
            print(f"round {r}: {name:<7} {wall:7.2f} s  {events / wall / 1e6:6.2f} M events/s  "
                  f"CPU {cpu:6.2f} s  peak RSS {rss / 2**30:5.2f} GiB"
                  + (f"  ({anomalies} anomalies)" if anomalies is not None else ""),
                  flush=True)
    read = [x["wall"] for x in rows if x["what"] == "read"]
    ana = [x["wall"] for x in rows if x["what"] == "analyze"]
    ratios = [a / b for a, b in zip(ana, read)]
    ana_rss = max(x["rss"] for x in rows if x["what"] == "analyze")
    read_rss = max(x["rss"] for x in rows if x["what"] == "read")
    ratio = statistics.median(ratios)
    cpu_ratio = statistics.median(
        [a["cpu"] / b["cpu"] for a, b in zip([x for x in rows if x["what"] == "analyze"],
                                             [x for x in rows if x["what"] == "read"])])
    print()
    print(f"trace: {trace} ({n:,} events, stack fraction {args.stack_fraction:g}); "
          f"{os.cpu_count()} CPUs; python {sys.version.split()[0]}")
    print(f"read_parquet: median {statistics.median(read):.2f} s "
          f"({n / statistics.median(read) / 1e6:.2f} M events/s), peak RSS "
          f"{read_rss / 2**30:.2f} GiB")
    print(f"analyze:      median {statistics.median(ana):.2f} s "
          f"({n / statistics.median(ana) / 1e6:.2f} M events/s), peak RSS "
          f"{ana_rss / 2**30:.2f} GiB")
    print(f"ratio analyze/read_parquet: median {ratio:.2f} (rounds: "
          f"{', '.join(f'{x:.2f}' for x in ratios)}); target <= 3: "
          f"{'met' if ratio <= 3 else 'NOT met'}; memory < 4 GiB: "
          f"{'met' if ana_rss < 4 * 2**30 else 'NOT met'}")
    print(f"CPU time ratio (user+system, less sensitive to other load on the machine): "
          f"median {cpu_ratio:.2f}; load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
