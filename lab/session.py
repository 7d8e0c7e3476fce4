"""One lab boot, seen from the host: run a command (usually under `pageref
record`) in the guest and bring its trace and results out.

Guest paths (documented in docs/lab.md, exported to the command as environment):

    /mnt/ext4          ext4 -o dax on /dev/pmem0p1      PAGEREF_LAB_EXT4
    /mnt/xfs           xfs -o dax=always on /dev/pmem0p2
                       (both partitions of namespace0.0) PAGEREF_LAB_XFS
    (the --fs one)                                       PAGEREF_LAB_DAX
    /dev/dax1.0        device DAX (namespace1.0), empty
                       if the kernel has none            PAGEREF_LAB_DEVDAX
    /results/lab-layout.txt  each store's pfn range      PAGEREF_LAB_LAYOUT
    /mnt/scratch       ext4 on /dev/ram0 (brd), no DAX   PAGEREF_LAB_SCRATCH
    /dev/mapper/slow   dm-delay over /dev/ram1           PAGEREF_LAB_SLOW_DEV
    /results           writable share = the run dir      PAGEREF_LAB_RESULTS
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from pageref.errors import PagerefError
from pageref.lab import qemu
from pageref.lab.kernels import ensure_kernel
from pageref.lab.paths import cache_dir

DAX_MOUNTS = {"ext4": "/mnt/ext4", "xfs": "/mnt/xfs"}
SCRATCH = "/mnt/scratch"
SLOW_DEV = "/dev/mapper/slow"
RESULTS = "/results"
GUEST_TRACE = f"{RESULTS}/trace"

Progress = Callable[[str], None]
# `pageref record` says how long BCC took: "... (compile 34.3s, attach 1.9s)"
_COMPILE_RE = re.compile(r"\(compile ([\d.]+)s, attach ([\d.]+)s\)")


@dataclasses.dataclass
class LabRun:
    guest: qemu.GuestResult
    run_dir: Path
    trace: Path | None              # where the trace is on the host, if one was written
    workloads: list[dict]           # workloads.jsonl lines (suite runs)
    # guest seconds: boot_s (stage two starts), ready_s (pmem and file systems
    # up), record_startup_s (record started -> first workload: Python, BCC
    # compile, attach), compile_s/attach_s (as the recorder reports them),
    # job_s; host seconds: wall_s
    timings: dict[str, float]

    @property
    def exit_code(self) -> int | None:
        return self.guest.exit_code


def require_root() -> None:
    """The lab runs as root: Debian installs kernel images 0600, and QEMU's 9p
    export of the host's root (security_model=none) reads and writes with
    QEMU's own credentials."""
    if os.geteuid() != 0:
        raise PagerefError("pageref lab needs root (it boots /boot/vmlinuz-*, readable only "
                           "by root, and shares the host's root with the guest); use sudo")


def pageref_in_guest() -> list[str]:
    """How the guest starts this very pageref: the host's interpreter, seen over 9p."""
    return [sys.executable, "-m", "pageref"]


def record_command(command: Sequence[str], record_args: Sequence[str] = ()) -> list[str]:
    return [*pageref_in_guest(), "record", "-o", GUEST_TRACE, "--live", "plain",
            *record_args, "--", *command]


def job_script(command: Sequence[str], record: bool, record_args: Sequence[str] = ()) -> str:
    """The guest's job: mark when the recorder starts, run, keep its exit status."""
    argv = record_command(command, record_args) if record else list(command)
    return "\n".join([
        "mark() { echo \"@@pageref-lab $1 $(cut -d' ' -f1 /proc/uptime) $2\"; }",
        "mark record-start ''" if record else "mark command-start ''",
        shlex.join(argv),
        "rc=$?",
        "mark command-end \"$rc\"",
        "exit $rc",
        "",
    ])


def run(
    command: Sequence[str],
    kernel: str = "6.1",
    fs: str = "ext4",
    record: bool = True,
    record_args: Sequence[str] = (),
    timeout_s: float = 900.0,
    progress: Progress | None = None,
    output: Callable[[str], None] | None = None,
    label: str = "run",
    env: dict[str, str] | None = None,
) -> LabRun:
    """Boot the lab with `kernel`, run `command` (under `pageref record` if `record`)."""
    if fs not in DAX_MOUNTS:
        raise PagerefError(f"unknown --fs {fs!r}; choose ext4 or xfs")
    require_root()
    kf = ensure_kernel(kernel)
    cache = cache_dir()
    run_dir = qemu.new_run_dir(cache, f"{label}-{kernel}")
    say = progress or (lambda s: None)
    seen: dict[str, float] = {}

    def on_mark(event: str, uptime: float, detail: str) -> None:
        seen[event] = uptime
        if event == "stage1":
            say(f"booting {kf.release} (guest {uptime:.1f} s)")
        elif event == "ready":
            say(f"guest ready: pmem, DAX ext4 and xfs mounted (guest {uptime:.1f} s)")
        elif event == "record-start":
            say("pageref record: compiling and attaching the BPF program")
        elif event == "workload":
            if "startup" not in seen and "record-start" in seen:
                seen["startup"] = uptime - seen["record-start"]
                say(f"recording after {seen['startup']:.1f} s")
            say(f"workload {detail}")
        elif event == "fail":
            say(f"lab failed: {detail}")

    # The command starts in the caller's directory (the guest sees the host's
    # root, read-only under a tmpfs overlay), so relative paths work.
    environ = {"PAGEREF_LAB_FS": fs, "PAGEREF_WORKLOADS_OUT": f"{RESULTS}/workloads.jsonl",
               "PAGEREF_LAB_CWD": os.getcwd()}
    environ.update(env or {})
    def on_output(line: str) -> None:
        m = _COMPILE_RE.search(line)
        if m and "compile" not in seen:
            seen["compile"], seen["attach"] = float(m.group(1)), float(m.group(2))
        if output:
            output(line)

    say(f"run directory {run_dir}")
    result = qemu.boot(kf, cache, run_dir, job_script(command, record, record_args),
                       env=environ, timeout_s=timeout_s, on_mark=on_mark, on_output=on_output)
    timings = {"wall_s": round(result.wall_s, 1)}
    for name, event in (("boot_s", "stage2"), ("ready_s", "ready")):
        t = result.guest_time(event)
        if t is not None:
            timings[name] = t
    if "startup" in seen:
        timings["record_startup_s"] = round(seen["startup"], 1)
    if "compile" in seen:
        timings["compile_s"], timings["attach_s"] = seen["compile"], seen["attach"]
    start, end = result.guest_time("job-start"), result.guest_time("job-end")
    if start is not None and end is not None:
        timings["job_s"] = round(end - start, 1)
    trace = run_dir / "trace"
    timings.update(_recorder_timings(trace))
    (run_dir / "timings.json").write_text(json.dumps(timings, indent=1) + "\n")
    if result.failure:
        raise PagerefError(f"{result.failure}; run directory {run_dir}")
    # Without the recorder a /results/trace is the command's own file, not a
    # trace: left in the run directory, never handed on as one.
    return LabRun(result, run_dir, trace if record and trace.exists() else None,
                  read_workloads(run_dir / "workloads.jsonl"), timings)


def _recorder_timings(trace: Path) -> dict[str, float]:
    """BCC compile and attach seconds from the trace header (the recorder's own)."""
    if not trace.exists():
        return {}
    try:
        from pageref.trace.io import read_header

        tracer = read_header(trace).extra.get("tracer") or {}
    except Exception:  # a broken trace is reported by whoever reads it next
        return {}
    return {k: float(tracer[k]) for k in ("compile_s", "attach_s") if k in tracer}


def read_workloads(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise PagerefError(f"{path}:{n}: bad workload line ({e})") from None
    return rows


def suite_command(fss: Sequence[str] = ("ext4", "xfs")) -> list[str]:
    """The guest command running the shipped DAX workloads on each file system."""
    from pageref.workloads.build import build, source_dir

    bin_dir = build(cache_dir())
    return ["/bin/sh", str(source_dir() / "dax-suite.sh"), str(bin_dir), SCRATCH, SLOW_DEV,
            *(DAX_MOUNTS[f] for f in fss)]


def demo_command(fss: Sequence[str] = ("ext4", "xfs"), devdax: bool = True) -> list[str]:
    """The demo's guest command: the fsdax suite on each file system, then the
    device DAX suite on the lab's $PAGEREF_LAB_DEVDAX (lab/stage2.sh), so one
    recording holds both page kinds. Exits non-zero if either suite failed."""
    from pageref.workloads.build import build, source_dir

    fsdax = shlex.join(suite_command(fss))
    if not devdax:
        return ["/bin/sh", "-c", fsdax]
    dd = shlex.join(["/bin/sh", str(source_dir() / "devdax-suite.sh"), str(build(cache_dir())),
                     SCRATCH])
    return ["/bin/sh", "-c", f'{fsdax}; a=$?; {dd} "$PAGEREF_LAB_DEVDAX"; b=$?; '
                             '[ $a -eq 0 ] && [ $b -eq 0 ]']


def move_trace(trace: Path, dest: Path) -> Path:
    """Move the trace out of the run directory to `dest` (replacing an older one)."""
    if dest.exists():
        if dest.is_dir():
            shutil.rmtree(dest)
        else:
            dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(trace), str(dest))
    return dest


# Files stage two leaves in the run directory for the whole boot (lab/stage2.sh).
BOOT_FILES = ("lab-layout.txt", "dmesg.txt")


@dataclasses.dataclass(frozen=True)
class Part:
    """One job of a shared boot: `script` runs with /bin/sh in /results/<name>/
    (its own results directory), with `env` on top of the lab's, after the
    parts before it. `record`: run `argv` under `pageref record` instead."""

    name: str
    script: str = ""
    argv: tuple[str, ...] = ()
    args: tuple[str, ...] = ()   # positional arguments of `script` ($1, $2, ...)
    record: bool = False
    env: tuple[tuple[str, str], ...] = ()
    timeout_s: float = 600.0


def parts_script(parts: Sequence[Part]) -> str:
    """The guest job running each part in turn, each in its own /results/<name>/
    with its own output and exit status (a failing part does not stop the rest)."""
    lines = ["mark() { echo \"@@pageref-lab $1 $(cut -d' ' -f1 /proc/uptime) $2\"; }", "rc=0"]
    for p in parts:
        d = f"{RESULTS}/{p.name}"
        if p.record:
            body = shlex.join([*pageref_in_guest(), "record", "-o", f"{d}/trace", "--live",
                               "plain", "--", *p.argv])
        else:
            body = shlex.join(["/bin/sh", f"{d}/job.sh", *p.args])
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in
                       (("PAGEREF_WORKLOADS_OUT", f"{d}/workloads.jsonl"),
                        ("PAGEREF_LAB_PART_DIR", d), *p.env))
        lines += [
            f"mkdir -p {d}",
            f"mark part-start-{p.name} ''",
            f"( export {env}; timeout -k 5 {int(p.timeout_s)} {body} ) </dev/null "
            f"> {d}/console.log 2>&1",
            "prc=$?",
            f"echo $prc > {d}/exit-code",
            f"mark part-end-{p.name} $prc",
            "[ $prc = 0 ] || rc=$prc",
        ]
    return "\n".join([*lines, "exit $rc", ""])


def run_parts(parts: Sequence[Part], kernel: str = "6.1", progress: Progress | None = None,
              label: str = "parts") -> dict[str, LabRun]:
    """Boot once and run every part in it; one LabRun per part (its run_dir is
    the part's own directory, its exit code the part's). Saves a boot per part:
    under TCG a boot to `ready` is minutes, a part's own work often less."""
    require_root()
    kf = ensure_kernel(kernel)
    cache = cache_dir()
    run_dir = qemu.new_run_dir(cache, f"{label}-{kernel}")
    say = progress or (lambda s: None)
    for p in parts:
        if not p.record:
            (run_dir / p.name).mkdir(parents=True, exist_ok=True)
            (run_dir / p.name / "job.sh").write_text(p.script)
    say(f"run directory {run_dir}: parts {', '.join(p.name for p in parts)}")
    total = sum(p.timeout_s for p in parts) + 300   # + boot to ready
    result = qemu.boot(kf, cache, run_dir, parts_script(parts),
                       env={"PAGEREF_LAB_FS": "ext4", "PAGEREF_LAB_CWD": os.getcwd()},
                       timeout_s=total,
                       on_mark=lambda ev, t, d: say(f"{ev} {d} (guest {t:.1f} s)")
                       if ev.startswith("part") or ev == "ready" else None)
    timings = {"wall_s": round(result.wall_s, 1)}
    for name, event in (("boot_s", "stage2"), ("ready_s", "ready")):
        t = result.guest_time(event)
        if t is not None:
            timings[name] = t
    (run_dir / "timings.json").write_text(json.dumps(timings, indent=1) + "\n")
    if result.failure:
        raise PagerefError(f"{result.failure}; run directory {run_dir}")
    out: dict[str, LabRun] = {}
    for p in parts:
        d = run_dir / p.name
        # What stage two wrote for the whole boot (the DAX layout it measured,
        # dmesg) belongs to every part: each part's directory stands for a run
        # directory of its own.
        for name in BOOT_FILES:
            if (run_dir / name).is_file():
                shutil.copyfile(run_dir / name, d / name)
        try:
            rc: int | None = int((d / "exit-code").read_text().strip())
        except (OSError, ValueError):
            rc = None
        guest = dataclasses.replace(result, exit_code=rc, run_dir=d,
                                    console_log=d / "console.log")
        trace = d / "trace"
        part_t = dict(timings, **_recorder_timings(trace))
        start, end = (result.guest_time(f"part-{e}-{p.name}") for e in ("start", "end"))
        if start is not None and end is not None:
            part_t["job_s"] = round(end - start, 1)
        (d / "timings.json").write_text(json.dumps(part_t, indent=1) + "\n")
        out[p.name] = LabRun(guest, d, trace if trace.exists() else None,
                             read_workloads(d / "workloads.jsonl"), part_t)
    return out
