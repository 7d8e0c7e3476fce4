"""What a recording did not see, counted as it goes: events the BPF program
could not store (its per-CPU `lost` map), return probes the kernel could not
run (kprobe_misses.py) and pages a stopped walk named (lost rows). Each part
carries the totals in its header and a `lost` row for every new loss; each new
loss is said on stderr when it happens.
"""

from __future__ import annotations

import ctypes
import os
import sys
import time
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pageref.trace.header import TraceHeader
from pageref.tracer.decode import lost_table
from pageref.tracer.kprobe_misses import read_missed_returns


def read_lost_map(bpf: Any) -> dict[int, int]:
    """CPU -> events the BPF program could not submit (the `lost` per-CPU map)."""
    total: dict[int, int] = {}
    try:
        values = bpf["lost"][ctypes.c_int(0)]
    except Exception:
        return total
    for cpu, n in enumerate(values):
        if n:
            total[cpu] = int(n)
    return total


class LossAccount:
    def __init__(self) -> None:
        self.lost: dict[int, int] = {}            # CPU -> events lost so far
        self.missed_returns: dict[str, int] = {}  # function -> kretprobe misses
        self.walk_lost = 0                        # pages a stopped walk named
        self.stackless = 0                        # events whose stack was not stored

    def walked(self, table: pa.Table) -> None:
        """Count the lost rows a stopped BPF walk wrote among decoded events."""
        n = pc.sum(pc.fill_null(table.column("count"), 0)).as_py() or 0
        if n:
            self.walk_lost += n
            print(f"pageref: warning: {n} pages past the walk bound written as lost rows "
                  "(their pages are uncertain, see docs/trace-format.md)", file=sys.stderr)

    def stacks(self, table: pa.Table, header: TraceHeader) -> None:
        """With --stacks: count the events whose stack the kernel did not store
        (bpf_get_stackid() fails when the stack map is full or a bucket holds
        another stack: the event is kept, its stack is null). In the header as
        tracer.stacks_missing."""
        if "stack" not in table.column_names:
            return
        n = table.column("stack").null_count
        if n:
            if not self.stackless:
                print("pageref: warning: events without their kernel stack (the stack map "
                      "is full or a bucket collided); counted in the header",
                      file=sys.stderr)
            self.stackless += n
            header.extra.setdefault("tracer", {})["stacks_missing"] = self.stackless

    def update(self, bpf: Any, header: TraceHeader) -> pa.Table | None:
        """Read the kernel's counts; put the totals in the header; return the
        `lost` rows of what is new since the last call (None if nothing)."""
        rows = None
        now = read_lost_map(bpf)
        delta = {c: n - self.lost.get(c, 0) for c, n in now.items() if n > self.lost.get(c, 0)}
        if delta:
            self.lost = now
            rows = lost_table(time.monotonic_ns(), delta)
            print(f"pageref: warning: {sum(delta.values())} events lost "
                  f"(CPUs {', '.join(map(str, sorted(delta)))}); the buffer is too small (raise "
                  "--buffer-pages) or the consumer too slow", file=sys.stderr)
        header.lost = {str(c): n for c, n in self.lost.items()}
        # counts only grow; after detach the events (and their counts) are gone
        missed = dict(self.missed_returns)
        for fn, n in read_missed_returns(os.getpid()).items():
            missed[fn] = max(n, missed.get(fn, 0))
        if missed != self.missed_returns:
            new = sum(missed.values()) - sum(self.missed_returns.values())
            print(f"pageref: warning: {new} return probes missed (no free kretprobe "
                  f"instance: {', '.join(sorted(missed))}); their events are missing",
                  file=sys.stderr)
            self.missed_returns = missed
            header.extra.setdefault("tracer", {})["return_probes_missed"] = missed
        return rows

    def summary(self) -> str:
        """The closing line's account: '; N lost (per CPU: …)…'."""
        total = sum(self.lost.values())
        missed = sum(self.missed_returns.values())
        return (f"; {total} lost"
                + (f" (per CPU: {dict(sorted(self.lost.items()))})" if total else "")
                + (f"; {missed} return probes missed" if missed else "")
                + (f"; {self.walk_lost} pages past a walk bound (lost rows)"
                   if self.walk_lost else "")
                + (f"; {self.stackless} events without their stack" if self.stackless else ""))
