#!/usr/bin/env python3
"""Events per second that `pageref record` keeps with nothing lost.

process_vm_readv/writev over N DAX pages (dax_pvm) makes 4N events in a burst
(pin and unpin per page, twice). For growing N, under the default buffer, the
bench records the burst and reports the events kept, the events lost, and the
rate of the burst as the trace itself dates it (first to last event): the
highest rate with zero loss is the figure. Run inside a machine with pmem and
kprobes (the lab guest):

    python bench/bench_throughput.py -o /results/throughput.json

or from the host, booting the lab guest (QEMU TCG):

    python bench/bench_throughput.py --lab [--kernel 6.1] -o throughput.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PAGEREF = [sys.executable, "-m", "pageref"]
SIZES = (1024, 4096, 16384, 65536)


def burst(pages: int, work: Path, extra: list[str]) -> dict:
    """Record one dax_pvm burst of `pages` pages; what was kept and lost, and how fast."""
    from lab_runner import workload_bin

    from pageref.trace.io import read_trace

    dax = os.environ.get("PAGEREF_LAB_DAX", "/mnt/ext4")
    out = work / f"pvm-{pages}.trace"
    cmd = [*PAGEREF, "record", "-o", str(out), "--live", "quiet", *extra, "--",
           f"{workload_bin()}/dax_pvm", dax, str(pages)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    t = read_trace(out)
    ev = t.events
    grabs = ev[ev["kind"].astype(str).isin(["pin", "unpin"])]
    span_s = (grabs["ts_ns"].max() - grabs["ts_ns"].min()) / 1e9 if len(grabs) > 1 else 0.0
    shutil.rmtree(out, ignore_errors=True)
    return {"pages": pages, "expected": 4 * pages, "kept": int(len(grabs)),
            "lost": int(t.header.lost_total), "span_s": round(float(span_s), 4),
            "events_per_s": round(len(grabs) / span_s) if span_s else None,
            "buffer": t.header.extra.get("tracer", {}).get("buffer")}


def run_all(sizes: tuple[int, ...], extra: list[str]) -> dict:
    rows = []
    with tempfile.TemporaryDirectory(prefix="pageref-tput-") as d:
        for n in sizes:
            row = burst(n, Path(d), extra)
            rows.append(row)
            print(f"bench: {n} pages: {row['kept']} kept, {row['lost']} lost, "
                  f"{row['events_per_s']} events/s", file=sys.stderr, flush=True)
    clean = [r for r in rows if r["lost"] == 0 and r["events_per_s"]]
    return {"kernel": os.uname().release, "record_options": extra, "bursts": rows,
            "max_events_per_s_zero_loss": max((r["events_per_s"] for r in clean), default=None)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--out", type=Path, default=Path("throughput.json"))
    ap.add_argument("--lab", action="store_true", help="boot the lab guest and run there")
    ap.add_argument("--kernel", default="6.1")
    ap.add_argument("--perf-buffer", action="store_true", help="record with the perf buffer")
    ap.add_argument("--buffer-pages", type=int, help="record's --buffer-pages")
    a = ap.parse_args()
    sys.path.insert(0, str(REPO))
    extra = ["--perf-buffer"] if a.perf_buffer else []
    if a.buffer_pages:
        extra += ["--buffer-pages", str(a.buffer_pages)]
    if a.lab:
        from lab_runner import run_in_lab
        return run_in_lab(a.kernel, HERE / "bench_throughput.py", extra, "throughput.json",
                          a.out)
    res = run_all(SIZES, extra)
    a.out.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
