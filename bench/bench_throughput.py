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

`--consumers batch,callback` records each burst once with each ring buffer
reader, side by side in one boot: `batch` (the default: spans of the mapped
buffer, decoded with numpy) and `callback` (BCC's Python call per event, the
reader before). `--buffer-pages` fixes the buffer for both (default: record's,
sized to the machine); a small one shows the reader's own speed, since a burst
larger than the buffer is kept whole only by a reader that keeps up.
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
    # the pageref of this checkout, whatever the venv's editable install points at
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    t = read_trace(out)
    ev = t.events
    grabs = ev[ev["kind"].astype(str).isin(["pin", "unpin"])]
    span_s = (grabs["ts_ns"].max() - grabs["ts_ns"].min()) / 1e9 if len(grabs) > 1 else 0.0
    shutil.rmtree(out, ignore_errors=True)
    tracer = t.header.extra.get("tracer", {})
    cpu_s = tracer.get("consumer_cpu_s")
    return {"pages": pages, "expected": 4 * pages, "kept": int(len(grabs)),
            "lost": int(t.header.lost_total), "span_s": round(float(span_s), 4),
            "events_per_s": round(len(grabs) / span_s) if span_s else None,
            # what the recorder can take: all events it wrote per second of its CPU
            "consumer_cpu_s": cpu_s,
            "consumer_events_per_cpu_s": round(len(t.events) / cpu_s) if cpu_s else None,
            "buffer": tracer.get("buffer"), "buffer_pages": tracer.get("buffer_pages"),
            "consumer": tracer.get("consumer")}


def run_all(sizes: tuple[int, ...], extra: list[str], consumers: list[str]) -> dict:
    rows = []
    with tempfile.TemporaryDirectory(prefix="pageref-tput-") as d:
        for n in sizes:
            for consumer in consumers:
                opts = [*extra, "--consumer", consumer] if consumer else extra
                try:
                    row = {"consumer": consumer or "default", **burst(n, Path(d), opts)}
                except subprocess.CalledProcessError as e:
                    # e.g. a burst larger than the DAX file system: said, and the
                    # other sizes still measured
                    print(f"bench: {n} pages, {consumer or 'default'}: record failed "
                          f"(exit {e.returncode})", file=sys.stderr, flush=True)
                    rows.append({"consumer": consumer or "default", "pages": n,
                                 "error": f"exit {e.returncode}"})
                    continue
                rows.append(row)
                print(f"bench: {n} pages, {row['consumer']}: {row['kept']} kept, "
                      f"{row['lost']} lost, {row['events_per_s']} events/s",
                      file=sys.stderr, flush=True)
    per: dict[str, dict] = {}
    for c in dict.fromkeys(r["consumer"] for r in rows):
        ok = [r for r in rows if r["consumer"] == c and "error" not in r]
        clean = [r for r in ok if r["lost"] == 0 and r["events_per_s"]]
        per[c] = {
            "max_events_per_s_zero_loss": max((r["events_per_s"] for r in clean), default=None),
            "largest_burst_zero_loss": max((r["expected"] for r in clean), default=None),
            "max_consumer_events_per_cpu_s": max(
                (r["consumer_events_per_cpu_s"] or 0 for r in ok),
                default=None)}
    return {"kernel": os.uname().release, "record_options": extra, "bursts": rows,
            "per_consumer": per}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--out", type=Path, default=Path("throughput.json"))
    ap.add_argument("--lab", action="store_true", help="boot the lab guest and run there")
    ap.add_argument("--kernel", default="6.1")
    ap.add_argument("--perf-buffer", action="store_true", help="record with the perf buffer")
    ap.add_argument("--buffer-pages", type=int, help="record's --buffer-pages")
    ap.add_argument("--consumers", default="",
                    help="comma-separated ring buffer readers to compare (batch,callback)")
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)),
                    help="burst sizes in pages, comma-separated")
    a = ap.parse_args()
    sys.path.insert(0, str(REPO))
    extra = ["--perf-buffer"] if a.perf_buffer else []
    if a.buffer_pages:
        extra += ["--buffer-pages", str(a.buffer_pages)]
    if a.lab:
        from lab_runner import run_in_lab
        passed = [*extra, "--consumers", a.consumers, "--sizes", a.sizes]
        return run_in_lab(a.kernel, HERE / "bench_throughput.py", passed, "throughput.json",
                          a.out)
    sizes = tuple(int(x) for x in a.sizes.split(",") if x)
    res = run_all(sizes, extra, [c for c in a.consumers.split(",") if c] or [""])
    a.out.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
