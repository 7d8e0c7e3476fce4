"""Kernel headers for BCC. Debian splits them into linux-headers-<rel> (generated
files, what /lib/modules/<rel>/build points to) and linux-headers-<common> (the
rest, /lib/modules/<rel>/source). BCC follows that split only under
/lib/modules/<uname -r>; pointed elsewhere with BCC_KERNEL_SOURCE it wants one
tree. `merged_tree()` builds that one tree as a symlink farm (a second or so).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path


def split_common(build: Path) -> Path | None:
    """The -common sibling of a Debian per-flavour headers dir, if split."""
    build = build.resolve()
    if (build / "include/linux/kconfig.h").exists():
        return None
    src = build.parent / build.name
    link = Path("/lib/modules") / build.name.replace("linux-headers-", "") / "source"
    if link.exists():
        return link.resolve()
    m = re.match(r"(linux-headers-.+)-(amd64|cloud-amd64|rt-amd64)$", src.name)
    if m and (build.parent / f"{m.group(1)}-common").is_dir():
        return build.parent / f"{m.group(1)}-common"
    return None


def merged_tree(build: Path, cache: Path | None = None) -> Path:
    """One tree with both halves (symlinks), reused across calls."""
    common = split_common(build)
    if common is None:
        return build.resolve()
    cache = cache or Path(tempfile.gettempdir()) / "pageref-kheaders"
    out = cache / build.resolve().name
    stamp = out / ".pageref-merged"
    if stamp.exists():
        return out
    tmp = cache / f".{out.name}.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    # cp -rs: a symlink farm; the flavour's generated files win over common's
    subprocess.run(["cp", "-rs", f"{common}/.", str(tmp)], check=True)
    subprocess.run(["cp", "-rsf", f"{build.resolve()}/.", str(tmp)], check=True)
    (tmp / ".pageref-merged").write_text(f"{common}\n{build.resolve()}\n")
    try:
        tmp.rename(out)
    except OSError:  # another process made it first
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def bcc_environment() -> None:
    """If BCC_KERNEL_SOURCE names a split Debian headers dir, point it at a merged one."""
    env = os.environ.get("BCC_KERNEL_SOURCE")
    if env and Path(env).is_dir() and split_common(Path(env)) is not None:
        os.environ["BCC_KERNEL_SOURCE"] = str(merged_tree(Path(env)))
