"""Lab fixtures: ONE boot per kernel generation serves every lab test file
that needs the DAX guest in its ordinary state.

A boot to `ready` costs minutes under TCG, often more than the work the tests
then do, so the files share it: each file registers the guest job its
fixture needs as a `Part` (`register_part`), and `lab_boot` runs, in one boot
per kernel, the parts of the fixtures the collected tests use, in a fixed
order (a part that changes the guest for good, like hiding BTF, goes last).
Each part has its own results directory (/results/<part>/, exported as
$PAGEREF_LAB_PART_DIR) and exit status, so the files' assertions are the same
as with a boot each. `pageref lab run` and `lab shell` test those commands
themselves and still boot on their own.

The kernels come from $PAGEREF_LAB_KERNELS (comma-separated, default
pageref.lab.kernels.DEFAULT_LAB_KERNELS: 5.10, 6.1, 6.12 and newest).
When the lab cannot start (no QEMU, no kernel, too little memory) the tests
skip with the reason, except under CI (CI=true), where they fail: CI must not
pass by not running them.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from pageref.lab.kernels import DEFAULT_LAB_KERNELS
from pageref.lab.session import LabRun, Part

GUEST_MEMORY_NEEDED_KB = 6 * 1024 * 1024   # 5 GiB guest + QEMU and the host's own work


def kernels_under_test() -> list[str]:
    kernels = os.environ.get("PAGEREF_LAB_KERNELS", ",".join(DEFAULT_LAB_KERNELS))
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


def recorded_trace(run):
    """The trace a recorded part wrote, read; the test fails (with the console's
    tail where the trace is unreadable) when there is none to read."""
    from pageref.trace.io import read_trace

    console = run.run_dir / "console.log"
    if run.trace is None:
        pytest.fail(f"the lab wrote no trace (exit {run.exit_code}); see {console}",
                    pytrace=False)
    try:
        return read_trace(run.trace)
    except Exception as e:
        tail = "\n".join(console.read_text(errors="replace").splitlines()[-25:])
        pytest.fail(f"unreadable trace {run.trace} (record exit {run.exit_code}): {e}\n"
                    f"--- {console} (tail) ---\n{tail}", pytrace=False)


class SuiteRun:
    """What one recorded boot produced, read once."""

    def __init__(self, kernel: str, run) -> None:
        from pageref.analysis.anomalies import find_anomalies

        self.kernel = kernel
        self.run = run
        self.trace = recorded_trace(run)
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


def closing_anomalies(run) -> dict[str, int]:
    """The anomalies `pageref record`'s closing line (the live view's summary)
    gave for a recorded part: kind -> how many."""
    text = (run.run_dir / "console.log").read_text(errors="replace")
    lines = [ln for ln in text.splitlines() if ln.startswith("pageref record: ")
             and "anomalies" in ln]
    assert lines, f"no closing line in {run.run_dir / 'console.log'}"
    line = lines[-1]
    if "; no anomalies" in line:
        return {}
    m = re.search(r"; anomalies: ([a-z_]+ \d+(?:, [a-z_]+ \d+)*)", line)
    assert m, f"not a closing line: {line!r}"
    return {k: int(n) for k, n in (item.split(" ") for item in m.group(1).split(", "))}


def assert_closing_line_is_the_analysis(run, anomalies) -> None:
    """Issue 12: what the operator was told at the end of the recording is what
    `pageref analyze` finds in the trace it wrote."""
    told = closing_anomalies(run)
    found = anomalies["kind"].astype(str).value_counts().to_dict() if len(anomalies) else {}
    assert told == found, (told, found)


@dataclass(frozen=True)
class PartSpec:
    order: int                                   # place in the boot (hide-BTF last)
    build: Callable[[str], Part | None]          # kernel -> the part, or None: not there


# fixture name -> the part it needs (filled when the test files are imported)
PARTS: dict[str, PartSpec] = {}
_USED: set[str] = set()


def register_part(fixture: str, order: int, build: Callable[[str], Part | None]) -> None:
    PARTS[fixture] = PartSpec(order, build)


def pytest_collection_modifyitems(session, config, items) -> None:
    # Only the parts whose fixtures a collected test uses (directly or not) run.
    for item in items:
        _USED.update(n for n in getattr(item, "fixturenames", ()) if n in PARTS)


@dataclass
class LabBoot:
    kernel: str
    runs: dict[str, LabRun]

    def part(self, fixture: str) -> LabRun:
        if fixture not in self.runs:
            pytest.skip(f"{fixture}: not run on kernel {self.kernel}")
        return self.runs[fixture]


def _suite_part(kernel: str) -> Part:
    from pageref.lab import session

    return Part("suite", argv=tuple(session.suite_command()), record=True, timeout_s=900)


register_part("suite", 50, _suite_part)


def _parts_for(kernel: str) -> list[Part]:
    specs = sorted(((n, PARTS[n]) for n in _USED or PARTS), key=lambda x: x[1].order)
    parts = []
    for name, spec in specs:
        part = spec.build(kernel)
        if part is not None:
            assert part.name == name, (part.name, name)
            parts.append(part)
    return parts


def _boot(kernel: str, parts: list[Part]) -> LabBoot:
    from pageref.lab import session

    lines: list[str] = []
    runs = session.run_parts(parts, kernel=kernel, progress=lines.append, label="pytest")
    first = next(iter(runs.values()))
    print(f"lab boot {first.run_dir.parent} ({', '.join(runs)}): timings {first.timings}")
    return LabBoot(kernel, runs)


def parallel_boots() -> int:
    """How many kernels boot at once ($PAGEREF_LAB_PARALLEL, default 2), as far
    as memory allows. A TCG guest keeps about 1.4 of the 2 cores busy and waits
    the rest (sleeps in the workloads, timeouts), so two at once finish the
    generations sooner than one after another (README: CI figures)."""
    want = int(os.environ.get("PAGEREF_LAB_PARALLEL", "2") or 1)
    return max(1, min(want, _mem_available_kb() // GUEST_MEMORY_NEEDED_KB))


_BOOTS: dict[str, Future[LabBoot]] = {}


def _start_boots() -> None:
    """At the first boot asked for: every kernel under test that can start, its
    parts built here (the host's workload builds are not thread-safe), booted
    `parallel_boots()` at a time in the order of $PAGEREF_LAB_KERNELS."""
    pool = ThreadPoolExecutor(max_workers=parallel_boots(), thread_name_prefix="lab-boot")
    for kernel in kernels_under_test():
        if lab_unavailable(kernel) is None:
            _BOOTS[kernel] = pool.submit(_boot, kernel, _parts_for(kernel))
    pool.shutdown(wait=False)


@pytest.fixture(scope="session", params=kernels_under_test(), ids=lambda k: f"kernel-{k}")
def lab_boot(request) -> LabBoot:
    """The one boot of this kernel: every used part, in order."""
    kernel = request.param
    require_lab(kernel)
    if not _BOOTS:
        _start_boots()
    if kernel not in _BOOTS:      # became available only now: boot it here
        return _boot(kernel, _parts_for(kernel))
    return _BOOTS[kernel].result()


@pytest.fixture(scope="session")
def suite(lab_boot: LabBoot) -> SuiteRun:
    return SuiteRun(lab_boot.kernel, lab_boot.part("suite"))


@pytest.fixture(autouse=True)
def awaited_targets(request):
    """xfail, with the reason, a test lab_expect.AWAITS lists for this kernel
    while the booted probe plan lacks the targets it awaits; otherwise nothing."""
    from lab_expect import AWAITS

    callspec = getattr(request.node, "callspec", None)
    kernel = callspec.params.get("lab_boot") if callspec else None
    awaits = AWAITS.get(kernel)
    test = f"{request.node.module.__name__}::{request.node.originalname}"
    if not awaits or test not in awaits["tests"]:
        return
    # The plan the booted kernel got, from any part's recording of this boot
    # (all parts record with the same plan).
    from pageref.trace.io import read_header

    boot = request.getfixturevalue("lab_boot")
    traces = [r.trace for r in boot.runs.values() if r.trace is not None]
    if not traces:
        return   # nothing recorded: the test fails or skips on its own
    attached = {p["symbol"] for p in read_header(traces[0]).probe_plan}
    missing = [t for t in awaits["targets"] if t not in attached]
    if missing:
        request.node.add_marker(pytest.mark.xfail(
            reason=f"kernel {kernel}: awaits the 5.x probe targets {', '.join(missing)} "
                   "(issue 13; the kernel has them, pageref's probe plan does not attach "
                   "them yet)", strict=False))
