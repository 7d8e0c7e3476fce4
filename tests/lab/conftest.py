"""Lab fixtures: one boot per kernel generation runs every shipped workload
under `pageref record`; the tests assert on that one trace.

The kernels come from $PAGEREF_LAB_KERNELS (comma-separated, default all
three generations "6.1,6.12,7.2": one boot each, a few minutes per kernel).
When the lab cannot start (no QEMU, no kernel, too little memory) the tests
skip with the reason, except under CI (CI=true), where they fail: CI must not
pass by not running them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

GUEST_MEMORY_NEEDED_KB = 6 * 1024 * 1024   # 5 GiB guest + QEMU and the host's own work


def kernels_under_test() -> list[str]:
    kernels = os.environ.get("PAGEREF_LAB_KERNELS", "6.1,6.12,7.2")
    return [k.strip() for k in kernels.split(",") if k.strip()]


def _mem_available_kb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1])
    return 0


def lab_unavailable(kernel: str) -> str | None:
    """Why the lab cannot start here, or None."""
    if not shutil.which("qemu-system-x86_64"):
        return "qemu-system-x86_64 not installed (bin/setup installs qemu-system-x86)"
    if not shutil.which("gcc"):
        return "gcc not installed (the workloads are compiled on the host)"
    if _mem_available_kb() < GUEST_MEMORY_NEEDED_KB:
        return f"less than {GUEST_MEMORY_NEEDED_KB >> 20} GiB of memory available for the guest"
    if os.geteuid() != 0:
        return "the lab shares the host's root with the guest as root; run as root"
    try:
        from pageref.lab.kernels import ensure_kernel

        ensure_kernel(kernel)
    except Exception as e:  # PagerefError, download failures: all mean "cannot start"
        return f"kernel {kernel} unavailable: {e}"
    return None


def require_lab(kernel: str) -> None:
    why = lab_unavailable(kernel)
    if why is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"lab cannot start under CI: {why}", pytrace=False)
    pytest.skip(f"lab cannot start: {why}")


class SuiteRun:
    """What one recorded boot produced, read once."""

    def __init__(self, kernel: str, run) -> None:
        from pageref.analysis.anomalies import find_anomalies
        from pageref.trace.io import read_trace

        self.kernel = kernel
        self.run = run
        console = run.run_dir / "console.log"
        if run.trace is None:
            pytest.fail(f"the lab wrote no trace (exit {run.exit_code}); see {console}",
                        pytrace=False)
        try:
            self.trace = read_trace(run.trace)
        except Exception as e:
            tail = "\n".join(console.read_text(errors="replace").splitlines()[-25:])
            pytest.fail(f"unreadable trace {run.trace} (record exit {run.exit_code}): {e}\n"
                        f"--- {console} (tail) ---\n{tail}", pytrace=False)
        self.events = self.trace.events
        self.anomalies = find_anomalies(self.trace)
        self.workloads = run.workloads

    def workload(self, name: str, fs: str) -> dict:
        rows = [w for w in self.workloads if w.get("workload") == name and w.get("fs") == fs]
        assert len(rows) == 1, f"expected one {name} row on {fs}, got {rows}"
        return rows[0]

    def window(self, start_ns: int, end_ns: int):
        ev = self.events
        return ev[(ev["ts_ns"] >= start_ns) & (ev["ts_ns"] <= end_ns)]


@pytest.fixture(scope="session", params=kernels_under_test(), ids=lambda k: f"kernel-{k}")
def suite(request) -> SuiteRun:
    kernel = request.param
    require_lab(kernel)
    from pageref.lab import session

    lines: list[str] = []
    run = session.run(session.suite_command(), kernel=kernel, timeout_s=900,
                      progress=lines.append, output=lines.append, label="pytest")
    print(f"lab run {run.run_dir}: timings {run.timings}")
    return SuiteRun(kernel, run)
