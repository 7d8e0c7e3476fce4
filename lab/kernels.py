"""Kernels the lab can boot: `ensure_kernel(generation) -> KernelFiles`.

This minimal version knows only "6.1", the host's own Debian packages
(linux-image-amd64 and its headers). The kernels for 6.12 and 7.2 (private apt
downloads unpacked into the lab cache) are added here with the same API.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from pathlib import Path

from pageref.errors import PagerefError

GENERATIONS = ("6.1", "6.12", "7.2")


@dataclasses.dataclass(frozen=True)
class KernelFiles:
    """Where one kernel's files are, as the lab needs them."""

    release: str                # `uname -r` of the kernel
    vmlinuz: Path
    modules_dir: Path           # .../lib/modules/<release>, with modules.dep, plain .ko
    headers_dir: Path | None    # .../usr/src/linux-headers-<release>, or None
    root: Path                  # where the packages are unpacked ("/" for the host's)


def _host_61() -> KernelFiles:
    # Newest installed 6.1 Debian kernel (bookworm's linux-image-amd64 pulls one).
    candidates = sorted(glob.glob("/boot/vmlinuz-6.1.*-amd64"), key=_version_key)
    if not candidates:
        raise PagerefError(
            "no Debian 6.1 kernel in /boot (vmlinuz-6.1.*-amd64); "
            "run bin/setup (it installs linux-image-amd64)"
        )
    vmlinuz = Path(candidates[-1])
    release = vmlinuz.name[len("vmlinuz-"):]
    modules_dir = Path("/lib/modules") / release
    if not (modules_dir / "modules.dep").is_file():
        raise PagerefError(
            f"{modules_dir}/modules.dep missing; reinstall linux-image-{release} or run depmod"
        )
    headers = Path("/usr/src") / f"linux-headers-{release}"
    return KernelFiles(
        release=release,
        vmlinuz=vmlinuz,
        modules_dir=modules_dir,
        headers_dir=headers if headers.is_dir() else None,
        root=Path("/"),
    )


def _version_key(path: str) -> list[int]:
    base = os.path.basename(path)[len("vmlinuz-"):]
    return [int(p) for p in base.replace("-", ".").split(".") if p.isdigit()]


def ensure_kernel(generation: str) -> KernelFiles:
    """The files of kernel `generation` ("6.1", "6.12" or "7.2"), fetching if needed."""
    if generation == "6.1":
        return _host_61()
    if generation in GENERATIONS:
        raise PagerefError(
            f"kernel {generation} is not available in this version of the lab yet; "
            "use --kernel 6.1"
        )
    raise PagerefError(
        f"unknown kernel generation {generation!r}; choose one of {', '.join(GENERATIONS)}"
    )
