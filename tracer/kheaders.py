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


def _merge(dst: Path, srcs: list[Path]) -> None:
    """Make `dst` the union of `srcs`: an entry only one side has is a symlink, a
    directory both have is merged recursively; for files, the first source wins."""
    dst.mkdir(parents=True, exist_ok=True)
    names: dict[str, list[Path]] = {}
    for src in srcs:
        for entry in os.scandir(src):
            names.setdefault(entry.name, []).append(Path(entry.path))
    for name, paths in names.items():
        dirs = [p for p in paths if p.is_dir()]
        if len(dirs) > 1:
            _merge(dst / name, dirs)
        else:
            (dst / name).symlink_to((dirs or paths)[0])


def merged_tree(build: Path, cache: Path | None = None) -> Path:
    """One tree with both halves (symlinks; only directories both halves have are
    made, so it takes well under a second even under emulation), reused."""
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
    # the flavour's generated files (autoconf.h, ...) win over common's
    _merge(tmp, [build.resolve(), common])
    (tmp / ".pageref-merged").write_text(f"{common}\n{build.resolve()}\n")
    try:
        tmp.rename(out)
    except OSError:  # another process made it first
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def bcc_environment() -> None:
    """Give BCC one headers tree when Debian's split would defeat it: when
    BCC_KERNEL_SOURCE names a split dir, or when /lib/modules/<release>/build is
    split and has no usable `source` link (a kernel unpacked elsewhere, as in
    the lab's 6.12 and 7.2 guests)."""
    env = os.environ.get("BCC_KERNEL_SOURCE")
    if env:
        if Path(env).is_dir() and split_common(Path(env)) is not None:
            os.environ["BCC_KERNEL_SOURCE"] = str(merged_tree(Path(env)))
        return
    mod = Path("/lib/modules") / os.uname().release
    build = mod / "build"
    if not build.is_dir() or (mod / "source" / "include/linux/kconfig.h").exists():
        return
    if split_common(build) is not None:
        os.environ["BCC_KERNEL_SOURCE"] = str(merged_tree(build))
