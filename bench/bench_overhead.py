#!/usr/bin/env python3
"""Overhead of `pageref record` against no tracing and against an equivalent
bpftrace script (same kernel functions, same ZONE_DEVICE filter, one printed
line per event: what a user would otherwise write).

Run inside a machine with pmem and kprobes (the lab guest):

    python bench/bench_overhead.py --rounds 3 -o /results/bench.json -- CMD ARGS

or from the host, booting the lab guest (QEMU TCG) and running the default DAX
workload there:

    python bench/bench_overhead.py --lab [--kernel 6.1] -o bench.json

Each round runs the workload once per mode (untraced, pageref, bpftrace), the
order rotating between rounds so slow drift hits every mode alike. A tracer is
started first and the workload only once the tracer says its probes are
attached; the workload's wall time is what is compared. Reported: median
workload seconds per mode, ratios against untraced, pageref's events/s and
lost events, each tracer's start-up (compile + attach) time, and, from the
kernel's BPF run-time statistics (kernel.bpf_stats_enabled), the time spent in
each tracer's probes: per run and as a share of the workload's wall time, a
figure the emulator's wall-time noise does not drown.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PAGEREF = [sys.executable, "-m", "pageref"]


def default_workload(iterations: int = 20) -> list[str]:
    """The lab's DAX workloads in a loop: O_DIRECT through a DAX buffer (GUP +
    bio release) and process_vm_readv (pins) on ext4 -o dax."""
    dax = os.environ.get("PAGEREF_LAB_DAX", "/mnt/ext4")
    scratch = os.environ.get("PAGEREF_LAB_SCRATCH", "/mnt/scratch")
    from lab_runner import workload_bin

    bindir = os.environ.get("PAGEREF_BENCH_BIN") or workload_bin()
    loop = (f"i=0; while [ $i -lt {iterations} ]; do "
            f"{bindir}/dax_odirect {dax} {scratch} 64 >/dev/null || exit 1; "
            f"{bindir}/dax_pvm {dax} 64 >/dev/null || exit 1; i=$((i+1)); done")
    return ["/bin/sh", "-c", loop]


def bpftrace_script() -> str:
    """The same probes as pageref's plan on this kernel, in bpftrace, reading the
    same BTF offsets (numbers only), filtering ZONE_DEVICE pages the same way."""
    from pageref.tracer.defines import layout
    from pageref.tracer.facts import KernelFacts
    from pageref.tracer.plan import resolve

    facts = KernelFacts.live()
    plan = resolve(facts)
    lay = layout(facts)
    o = lay.off
    zone = (f"((*(uint64 *)($p + {o['OFF_PAGE_FLAGS']}) >> {lay.zones_pgshift}) & "
            f"{lay.zones_mask}) == {lay.zone_device}")
    vm = (f"*(uint64 *){lay.vmemmap_base_addr}" if lay.vmemmap_base_addr
          else str(lay.vmemmap_start))
    out = []
    for a in plan.attached:
        sym = a.symbol
        if sym in ("unpin_user_pages", "__bio_release_pages"):
            continue  # array walks: no simple bpftrace equivalent; pageref does more
        body = (f"$p = (uint64)arg0; if ({zone}) {{ printf(\"%s %d %d %lx %d\\n\", probe, "
                f"pid, tid, ($p - {vm}) / {lay.sizeof_page}, "
                f"*(int32 *)($p + {o['OFF_PAGE_REFCOUNT']})); }}")
        if a.probe == "busy":
            out.append(f"kretprobe:{sym} {{ $p = (uint64)retval; if ($p != 0) "
                       f"{{ printf(\"busy %d %lx\\n\", pid, ($p - {vm}) / "
                       f"{lay.sizeof_page}); }} }}")
            continue
        if a.probe == "grab":
            # remember the thread's grab on a ZONE_DEVICE page, report its result
            gid = a.target.id
            body = body.replace("); }", f"); @g{gid}[tid] = 1; }}")
            out.append(f"kprobe:{sym} {{ {body} }}")
            out.append(f"kretprobe:{sym} /@g{gid}[tid]/ {{ printf(\"ret %s %d %ld\\n\", "
                       f"probe, tid, retval); delete(@g{gid}[tid]); }}")
        else:
            out.append(f"kprobe:{sym} {{ {body} }}")
    # BEGIN runs once every probe is attached: the bench waits for this line
    out.insert(0, 'BEGIN { printf("pageref-bench-ready\\n"); }')
    return "\n".join(out) + "\n"


def _start_tracer(cmd: list[str], ready: str, log: Path, timeout: float = 600
                  ) -> tuple[subprocess.Popen, float]:
    """Start a tracer and wait for `ready` in its output; returns (proc, start-up s)."""
    t0 = time.monotonic()
    f = open(log, "w")
    proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    while time.monotonic() - t0 < timeout:
        if ready in log.read_text(errors="replace"):
            return proc, time.monotonic() - t0
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd[0]} exited {proc.returncode}: "
                               f"{log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"{cmd[0]} not ready after {timeout}s")


def _cpu_s(pid: int) -> float:
    """utime + stime of a process (and its waited-for children), in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))
    return ticks / os.sysconf("SC_CLK_TCK")


BPF_STATS = Path("/proc/sys/kernel/bpf_stats_enabled")


def _bpf_run_stats(pid: int) -> tuple[int, int]:
    """(run_time_ns, run_cnt) summed over the BPF programs `pid` holds open: the
    kernel's own account of the time spent in the tracer's probes (fdinfo has
    them while kernel.bpf_stats_enabled is 1). Independent of the workload's
    wall-time noise, which under emulation is larger than any tracer's effect."""
    ns = cnt = 0
    fdinfo = Path(f"/proc/{pid}/fdinfo")
    try:
        entries = list(fdinfo.iterdir())
    except OSError:
        return 0, 0
    for e in entries:
        try:
            text = e.read_text()
        except OSError:
            continue
        if "prog_type:" not in text:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        ns += int(fields.get("run_time_ns", "0").strip() or 0)
        cnt += int(fields.get("run_cnt", "0").strip() or 0)
    return ns, cnt


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _time(cmd: list[str]) -> float:
    t0 = time.monotonic()
    subprocess.run(cmd, check=True)
    return time.monotonic() - t0


def run_bench(workload: list[str], rounds: int, work: Path) -> dict:
    # pageref-filtered: every probe fires but filters itself out in the kernel
    # (--pid 1): the probes' own cost, without the event pipeline
    modes = ["untraced", "pageref", "pageref-filtered", "bpftrace"]
    have_bpftrace = shutil.which("bpftrace") is not None
    if not have_bpftrace:
        modes.remove("bpftrace")
    script = work / "pageref-equivalent.bt"
    script.write_text(bpftrace_script())
    times: dict[str, list[float]] = {m: [] for m in modes}
    startup: dict[str, list[float]] = {m: [] for m in modes if m != "untraced"}
    cpu: dict[str, list[float]] = {m: [] for m in modes if m != "untraced"}
    bpf_ns: dict[str, list[int]] = {m: [] for m in modes if m != "untraced"}
    bpf_runs: dict[str, list[int]] = {m: [] for m in modes if m != "untraced"}
    events, lost, trace_s = [], [], []
    try:
        stats_before = BPF_STATS.read_text().strip()
        BPF_STATS.write_text("1\n")
    except OSError:
        stats_before = None   # no per-program accounting: bpf_* figures stay 0
    for r in range(rounds):
        order = modes[r % len(modes):] + modes[:r % len(modes)]
        for mode in order:
            if mode == "untraced":
                times[mode].append(_time(workload))
                print(f"bench: round {r} untraced: {times[mode][-1]:.2f}s", file=sys.stderr,
                      flush=True)
                continue
            if mode.startswith("pageref"):
                out = work / f"{mode}{r}.trace"
                cmd = PAGEREF + ["record", "-o", str(out), "--live", "quiet"]
                if mode == "pageref-filtered":
                    cmd += ["--pid", "1"]
                proc, up = _start_tracer(cmd, "probes attached", work / f"{mode}{r}.log")
            else:
                # line-buffered stdout: the ready line must reach the log at once
                cmd = ["stdbuf", "-oL", "bpftrace", str(script)]
                proc, up = _start_tracer(cmd, "pageref-bench-ready", work / f"bt{r}.log")
            startup[mode].append(up)
            t0 = time.monotonic()
            cpu0 = _cpu_s(proc.pid)
            ns0, cnt0 = _bpf_run_stats(proc.pid)
            times[mode].append(_time(workload))
            cpu[mode].append(_cpu_s(proc.pid) - cpu0)
            ns1, cnt1 = _bpf_run_stats(proc.pid)
            bpf_ns[mode].append(ns1 - ns0)
            bpf_runs[mode].append(cnt1 - cnt0)
            _stop(proc)
            if mode == "pageref":
                from pageref.trace.io import read_trace
                t = read_trace(out)
                n = int((t.events.kind != "lost").sum())
                events.append(n)
                lost.append(t.header.lost_total)
                trace_s.append(time.monotonic() - t0)
            print(f"bench: round {r} {mode}: {times[mode][-1]:.2f}s", file=sys.stderr, flush=True)
    if stats_before is not None:
        BPF_STATS.write_text(stats_before + "\n")
    med = {m: statistics.median(v) for m, v in times.items()}
    bpf_share = {m: statistics.median(ns / 1e9 / t for ns, t in zip(v, times[m]))
                 for m, v in bpf_ns.items() if v}
    res = {
        "rounds": rounds, "workload": workload, "kernel": os.uname().release,
        "median_s": med, "all_s": times,
        "ratio_vs_untraced": {m: med[m] / med["untraced"] for m in med},
        "startup_s": {m: statistics.median(v) for m, v in startup.items()},
        # CPU the tracer's user-space process used while the workload ran
        "tracer_cpu_s": {m: statistics.median(v) for m, v in cpu.items()},
        # the kernel's account of time spent in each tracer's BPF programs while
        # the workload ran: per probe run, and as a share of the workload's time
        "bpf_runs": {m: statistics.median(v) for m, v in bpf_runs.items() if v},
        "bpf_ns_per_run": {m: statistics.median(ns / max(c, 1) for ns, c in
                                                zip(bpf_ns[m], bpf_runs[m]))
                           for m in bpf_ns if bpf_ns[m]},
        "bpf_share_of_workload": bpf_share,
        "pageref_events": events, "pageref_lost": lost,
        "pageref_events_per_s": [e / max(s, 1e-9) for e, s in zip(events, trace_s)],
        "bpftrace": have_bpftrace,
    }
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=20, help="default workload loops")
    ap.add_argument("-o", "--out", type=Path, default=Path("bench.json"))
    ap.add_argument("--lab", action="store_true", help="boot the lab guest and run there")
    ap.add_argument("--kernel", default="6.1")
    ap.add_argument("--print-bpftrace", action="store_true",
                    help="print the equivalent bpftrace script and exit")
    ap.add_argument("command", nargs="*")
    a = ap.parse_args()
    sys.path.insert(0, str(REPO))
    if a.print_bpftrace:
        print(bpftrace_script(), end="")
        return 0
    if a.lab:
        from lab_runner import run_in_lab
        return run_in_lab(a.kernel, HERE / "bench_overhead.py",
                          ["--rounds", str(a.rounds), "--iterations", str(a.iterations)],
                          "bench.json", a.out)
    workload = a.command or default_workload(a.iterations)
    if os.environ.get("PAGEREF_LAB_RESULTS"):
        work = Path(os.environ["PAGEREF_LAB_RESULTS"]) / "bench-work"  # kept for a look
        work.mkdir(exist_ok=True)
        res = run_bench(workload, a.rounds, work)
    else:
        with tempfile.TemporaryDirectory(prefix="pageref-bench-") as d:
            res = run_bench(workload, a.rounds, Path(d))
    a.out.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
