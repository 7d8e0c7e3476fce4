"""Run a bench script inside the lab guest and bring its JSON result out
(shared by the benches: they run in the guest, where pmem and kprobes are)."""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path


def workload_bin() -> str:
    """The compiled workloads of this checkout (pageref.workloads.build: the
    build for these sources, which run_in_lab made on the host before booting;
    in the guest it is found, not rebuilt)."""
    from pageref.lab.paths import cache_dir
    from pageref.workloads.build import build

    return str(build(cache_dir()))


def run_in_lab(kernel: str, script: Path, args: list[str], result: str, out: Path) -> int:
    """Boot `kernel`, run `script args -o /results/<result>` there, copy the result
    to `out` and print it. Returns the exit status for main()."""
    from pageref.lab import qemu
    from pageref.lab.kernels import ensure_kernel
    from pageref.lab.paths import cache_dir
    from pageref.workloads.build import build

    build(cache_dir())
    k = ensure_kernel(kernel)
    run = qemu.new_run_dir(cache_dir(), f"{script.stem}-{kernel}")
    cmd = [sys.executable, str(script), *args, "-o", f"/results/{result}"]
    r = qemu.boot(k, cache_dir(), run, f"cd /results && {shlex.join(cmd)}\n", timeout_s=3600,
                  on_output=lambda line: print(line, file=sys.stderr))
    if r.failure or not (run / result).exists():
        print(f"bench: lab failed: {r.failure or f'no {result}'} ({run})", file=sys.stderr)
        return 1
    shutil.copyfile(run / result, out)
    print((run / result).read_text())
    return 0
