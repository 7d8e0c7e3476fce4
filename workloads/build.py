"""Compile the C workloads with the host's gcc into a cache directory.

The sources ship as package data (this folder); binaries never go into git.
A build is reused while the sources and the compiler are unchanged.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from importlib import resources
from pathlib import Path

from pageref.errors import PagerefError

PROGRAMS = ("dax_odirect", "dax_pvm", "dax_vmsplice", "dax_punch", "dax_uring", "dax_pmd",
            "dax_bigio", "devdax_refs")
CFLAGS = ("-O2", "-Wall", "-Wextra", "-Wno-unused-function", "-pthread")


def source_dir() -> Path:
    """The directory of the workload sources and scripts (dax-suite.sh, fio-dax.fio)."""
    return Path(str(resources.files("pageref.workloads")))


def build(cache: Path) -> Path:
    """Compile every workload into `cache`/workloads-<hash>/; returns that directory."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if not cc:
        raise PagerefError("no C compiler (gcc) on the host; run bin/setup")
    src = source_dir()
    h = hashlib.sha256(cc.encode() + " ".join(CFLAGS).encode())
    for f in sorted(src.glob("*.[ch]")):
        h.update(f.name.encode() + f.read_bytes())
    out = cache / f"workloads-{h.hexdigest()[:12]}"
    if all((out / p).is_file() for p in PROGRAMS):
        return out
    out.mkdir(parents=True, exist_ok=True)
    for prog in PROGRAMS:
        tmp = out / f".{prog}.tmp"
        cmd = [cc, *CFLAGS, "-o", str(tmp), str(src / f"{prog}.c")]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise PagerefError(f"compiling workload {prog} failed:\n{proc.stderr.strip()}")
        tmp.replace(out / prog)
    return out
