"""Boot the lab guest under QEMU (TCG) and run one job in it.

The guest's root is the host's own, shared read-only over 9p; a second,
writable 9p share (the run directory) carries the job in and the results out.
The guest reports progress on its serial console as `@@pageref-lab EVENT UPTIME
DETAIL` lines; everything the job prints between `job-start` and `job-end` is
passed on to the caller.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from pageref.errors import PagerefError
from pageref.lab.initramfs import build_initramfs
from pageref.lab.kernels import KernelFiles

MARK = "@@pageref-lab "
# Two legacy e820 pmem ranges, 512 MiB each, above 4 GiB with a gap between
# them (pfns 0x100000-0x11ffff and 0x140000-0x15ffff). The guest needs more than
# 4.5 GiB of RAM or the second range lands in a reserved hole.
PMEM_RANGES = ((4 << 30, 512 << 20), (5 << 30, 512 << 20))
GUEST_MEMORY = "5G"
GUEST_CPUS = 2
# Host seconds from QEMU's start to the guest's first mark (stage two starts):
# 2-10 s normally, about a minute on a loaded host. A boot past it is hung.
BOOT_DEADLINE_S = 300.0
BOOT_ATTEMPTS = 2


@dataclasses.dataclass
class GuestResult:
    exit_code: int | None          # the job's exit status; None if it never finished
    marks: dict[str, tuple[float, str]]   # event -> (guest uptime s, detail)
    wall_s: float                  # host seconds from QEMU start to exit
    console_log: Path
    run_dir: Path
    failure: str | None            # why the lab failed (not the job), or None

    def guest_time(self, event: str) -> float | None:
        m = self.marks.get(event)
        return m[0] if m else None


def pmem_pfn_ranges(page_size: int = 4096) -> list[tuple[int, int]]:
    """[start, end) pfn ranges of the guest's emulated pmem."""
    return [(start // page_size, (start + size) // page_size) for start, size in PMEM_RANGES]


def qemu_binary() -> str:
    q = shutil.which("qemu-system-x86_64")
    if not q:
        raise PagerefError("qemu-system-x86_64 not found; run bin/setup (qemu-system-x86)")
    return q


def accel_args() -> list[str]:
    """TCG unless $PAGEREF_LAB_ACCEL=kvm asks for KVM.

    Not detected from /dev/kvm: on the machine the lab was built on /dev/kvm
    exists but a KVM guest stops after the BIOS, while TCG always works.
    """
    accel = os.environ.get("PAGEREF_LAB_ACCEL", "tcg")
    if accel == "kvm":
        return ["-accel", "kvm", "-cpu", "host"]
    if accel != "tcg":
        raise PagerefError(f"PAGEREF_LAB_ACCEL={accel!r}: use tcg (default) or kvm")
    return ["-accel", "tcg,thread=multi", "-cpu", "max"]


def kernel_cmdline(stage2: str) -> str:
    memmap = " ".join(f"memmap={size >> 20}M!{start >> 30}G" for start, size in PMEM_RANGES)
    # mitigations=off and tsc=reliable: TCG is slow enough already; panic=-1 with
    # QEMU's -no-reboot turns a kernel panic into QEMU exiting. no_timer_check:
    # on a loaded host the TCG guest's early IO-APIC timer check can fail and
    # panic ("IO-APIC + timer doesn't work"); seen here with two guests on 2 cores.
    return (
        f"console=ttyS0 {memmap} panic=-1 oops=panic mitigations=off tsc=reliable no_timer_check "
        f"quiet loglevel=4 pageref.stage2={stage2}"
    )


def qemu_command(kernel: KernelFiles, initramfs: Path, run_dir: Path,
                 interactive: bool = False) -> list[str]:
    stage2 = str(resources.files("pageref.lab").joinpath("stage2.sh"))
    cmd = [
        qemu_binary(),
        "-machine", "pc", *accel_args(),
        "-smp", str(GUEST_CPUS), "-m", GUEST_MEMORY,
        "-kernel", str(kernel.vmlinuz), "-initrd", str(initramfs),
        "-append", kernel_cmdline(stage2),
        "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,"
                   "multidevs=remap",
        "-virtfs", f"local,path={run_dir},mount_tag=results,security_model=none,"
                   "multidevs=remap",
        "-nic", "none", "-no-reboot",
    ]
    if interactive:
        cmd += ["-nographic"]
    else:
        cmd += ["-display", "none", "-serial", "stdio", "-monitor", "none"]
    return cmd


def write_job(run_dir: Path, script: str, env: dict[str, str]) -> None:
    """Leave the job for stage two: job.sh (run with /bin/sh) and job.env (sourced)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("exit-code", "lab-failure", "dmesg.txt"):
        (run_dir / stale).unlink(missing_ok=True)
    (run_dir / "job.sh").write_text(script)
    lines = [f"{k}={shlex.quote(v)}" for k, v in sorted(env.items())]
    (run_dir / "job.env").write_text("\n".join(lines) + "\n")


def boot(
    kernel: KernelFiles,
    cache: Path,
    run_dir: Path,
    script: str,
    env: dict[str, str] | None = None,
    timeout_s: float = 900.0,
    on_mark: Callable[[str, float, str], None] | None = None,
    on_output: Callable[[str], None] | None = None,
    interactive: bool = False,
) -> GuestResult:
    """Boot the guest, run `script` in it, and return once QEMU has exited.

    `timeout_s` bounds the whole boot on the host's clock; the guest also runs the
    job under `timeout` (PAGEREF_LAB_TIMEOUT) so that it can still power off cleanly.
    """
    initramfs = build_initramfs(kernel, cache)
    job_env = {
        "PAGEREF_LAB_MODULES": str(kernel.modules_dir),
        "PAGEREF_LAB_HEADERS": str(kernel.headers_dir or ""),
        "PAGEREF_LAB_TIMEOUT": str(max(30, int(timeout_s) - 120)),
        "PAGEREF_LAB_INTERACTIVE": "1" if interactive else "0",
    }
    job_env.update(env or {})
    write_job(run_dir, script, job_env)
    cmd = qemu_command(kernel, initramfs, run_dir, interactive)
    (run_dir / "qemu-command").write_text(shlex.join(cmd) + "\n")
    console_log = run_dir / "console.log"
    start = time.monotonic()
    if interactive:
        done = subprocess.run(cmd, check=False)
        return _result(run_dir, {}, time.monotonic() - start, console_log,
                       None if done.returncode == 0 else f"qemu exited {done.returncode}")

    for attempt in range(1, BOOT_ATTEMPTS + 1):
        marks, why, code = _run(cmd, console_log, timeout_s, on_mark, on_output)
        if why != "hung" or attempt == BOOT_ATTEMPTS:
            break
        # A boot that never reached stage two (under TCG a vCPU has been seen
        # spinning in a boot-time kernel thread for half an hour, soft lockups on
        # the console) is retried once; its console is kept beside the new one.
        kept = console_log.with_name(f"console-hung-{attempt}.log")
        console_log.replace(kept)
        print(f"pageref lab: the guest did not reach stage two within {BOOT_DEADLINE_S:.0f} s "
              f"(see {kept}); booting it again", file=sys.stderr)
    wall = time.monotonic() - start
    failure = None
    if why == "hung":
        failure = (f"the guest did not reach stage two within {BOOT_DEADLINE_S:.0f} s, "
                   f"{BOOT_ATTEMPTS} times; killed (see {console_log})")
    elif why == "timeout":
        failure = f"the guest did not finish within {timeout_s:.0f} s; killed (see {console_log})"
    elif "fail" in marks:
        failure = f"lab set-up failed in the guest: {marks['fail'][1]} (see {console_log})"
    elif "job-end" not in marks:
        failure = (f"the guest stopped before the job finished (QEMU exit {code}; "
                   f"see {console_log})")
    return _result(run_dir, marks, wall, console_log, failure)


def _run(cmd: list[str], console_log: Path, timeout_s: float,
         on_mark: Callable[[str, float, str], None] | None,
         on_output: Callable[[str], None] | None
         ) -> tuple[dict[str, tuple[float, str]], str | None, int | None]:
    """One QEMU run: (marks, why it was killed: "hung" before the first mark
    within BOOT_DEADLINE_S, "timeout" past timeout_s, or None; QEMU's exit code)."""
    marks: dict[str, tuple[float, str]] = {}
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    why: list[str] = []

    def kill(reason: str) -> None:
        why.append(reason)
        proc.kill()

    timer = threading.Timer(timeout_s, kill, args=("timeout",))
    timer.daemon = True
    timer.start()
    booting = threading.Timer(min(BOOT_DEADLINE_S, timeout_s), kill, args=("hung",))
    booting.daemon = True
    booting.start()
    in_job = False
    try:
        with open(console_log, "wb") as log:
            assert proc.stdout is not None
            for raw in proc.stdout:
                log.write(raw)
                log.flush()
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                idx = line.find(MARK)
                if idx >= 0:
                    booting.cancel()
                    parts = line[idx + len(MARK):].split(" ", 2)
                    event = parts[0]
                    try:
                        uptime = float(parts[1]) if len(parts) > 1 else -1.0
                    except ValueError:
                        uptime = -1.0
                    detail = parts[2] if len(parts) > 2 else ""
                    marks[event] = (uptime, detail)
                    in_job = event == "job-start" or (in_job and event != "job-end")
                    if on_mark:
                        on_mark(event, uptime, detail)
                elif in_job and on_output:
                    on_output(line)
        proc.wait()
    except KeyboardInterrupt:
        proc.kill()
        proc.wait()
        raise
    finally:
        timer.cancel()
        booting.cancel()
    return marks, (why[0] if why else None), proc.returncode


def _result(run_dir: Path, marks: dict[str, tuple[float, str]], wall: float,
            console_log: Path, failure: str | None) -> GuestResult:
    code_file = run_dir / "exit-code"
    code: int | None = None
    if code_file.is_file():
        try:
            code = int(code_file.read_text().strip())
        except ValueError:
            code = None
    return GuestResult(code, marks, wall, console_log, run_dir, failure)


def new_run_dir(cache: Path, label: str) -> Path:
    """A fresh directory for one boot under `cache`/runs."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = cache / "runs" / f"{stamp}-{label}"
    path = base
    n = 1
    while path.exists():
        n += 1
        path = Path(f"{base}-{n}")
    path.mkdir(parents=True)
    os.chmod(path, 0o777)
    return path
