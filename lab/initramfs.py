"""The lab's first stage: a small busybox initramfs that mounts the host's root.

It holds busybox-static, the modules needed to reach the host's root over 9p
(virtio PCI, 9p, overlay; their load order comes from the kernel's own
modules.dep, so the same code serves every kernel generation) and `init.sh`.
Everything else (pmem, file systems, BCC) comes from the host's root in stage two.
"""

from __future__ import annotations

import hashlib
import io
import lzma
import os
import stat
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

from pageref.errors import PagerefError
from pageref.lab.kernels import KernelFiles

# What stage one needs to mount the host's root: the 9p transport over virtio
# PCI and overlayfs for the writable tmpfs layer.
STAGE_ONE_MODULES = ("virtio_pci", "9pnet_virtio", "9p", "overlay")
BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")


def module_name(path: str) -> str:
    """`kernel/fs/9p/9p.ko.xz` -> `9p`; dashes and underscores are the same to kmod."""
    base = os.path.basename(path)
    base = base.split(".ko", 1)[0]
    return base.replace("-", "_")


def parse_modules_dep(text: str) -> dict[str, tuple[str, list[str]]]:
    """modules.dep text -> {name: (relative path, [relative paths of direct deps])}."""
    table: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        if ":" not in line:
            continue
        path, _, deps = line.partition(":")
        table[module_name(path)] = (path.strip(), deps.split())
    return table


def load_order(
    wanted: Iterable[str], dep_table: dict[str, tuple[str, list[str]]], builtin: set[str]
) -> list[str]:
    """Relative module paths to insmod, dependencies first, each once.

    Modules built into the kernel (modules.builtin) need no loading and are skipped.
    """
    order: list[str] = []
    seen: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in seen or name in builtin:
            return
        if name in chain:
            raise PagerefError(f"modules.dep has a dependency cycle: {' -> '.join(chain)}")
        if name not in dep_table:
            raise PagerefError(
                f"module {name} is neither in modules.dep nor built in; "
                "the lab kernel lacks it (check the kernel's packages)"
            )
        path, deps = dep_table[name]
        for dep in deps:
            visit(module_name(dep), chain + (name,))
        seen.add(name)
        order.append(path)

    for name in wanted:
        visit(name.replace("-", "_"), ())
    return order


def _builtin(modules_dir: Path) -> set[str]:
    f = modules_dir / "modules.builtin"
    if not f.is_file():
        return set()
    return {module_name(line.strip()) for line in f.read_text().splitlines() if line.strip()}


def _read_module(path: Path) -> bytes:
    # Newer Debian kernels ship .ko.xz; busybox insmod wants the plain object.
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith((".zst", ".gz")):
        raise PagerefError(f"{path}: compressed module format not supported; decompress it")
    return data


class _Cpio:
    """A minimal writer of the `newc` cpio format the kernel unpacks as initramfs."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"") -> None:
        name_b = name.encode() + b"\0"
        header = "070701" + "".join(
            f"{v:08x}"
            for v in (
                self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name_b), 0,
            )
        )
        self.ino += 1
        self.buf.write(header.encode() + name_b)
        self.buf.write(b"\0" * (-(110 + len(name_b)) % 4))
        self.buf.write(data)
        self.buf.write(b"\0" * (-len(data) % 4))

    def dir(self, name: str) -> None:
        self._entry(name, stat.S_IFDIR | 0o755)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | mode, data)

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        self.buf.write(b"\0" * (-self.buf.tell() % 512))
        return self.buf.getvalue()


def find_busybox() -> Path:
    for c in BUSYBOX_CANDIDATES:
        p = Path(c)
        if p.is_file():
            return p
    raise PagerefError("busybox not found; install busybox-static (bin/setup does)")


def build_initramfs(kernel: KernelFiles, cache_dir: Path) -> Path:
    """Build (or reuse) the initramfs for `kernel` under `cache_dir`; returns its path."""
    dep_file = kernel.modules_dir / "modules.dep"
    if not dep_file.is_file():
        raise PagerefError(f"{dep_file} missing; the lab kernel needs modules.dep (run depmod)")
    order = load_order(STAGE_ONE_MODULES, parse_modules_dep(dep_file.read_text()),
                       _builtin(kernel.modules_dir))
    init = resources.files("pageref.lab").joinpath("init.sh").read_bytes()
    busybox = find_busybox()

    key = hashlib.sha256()
    key.update(init)
    key.update(str(busybox.stat().st_mtime_ns).encode())
    key.update(kernel.release.encode())
    for rel in order:
        st = (kernel.modules_dir / rel).stat()
        key.update(f"{rel}:{st.st_size}:{st.st_mtime_ns}".encode())
    out = cache_dir / f"initramfs-{kernel.release}-{key.hexdigest()[:12]}.cpio"
    if out.is_file():
        return out

    cpio = _Cpio()
    for d in ("bin", "dev", "proc", "sys", "host", "upper", "newroot", "modules"):
        cpio.dir(d)
    cpio.file("bin/busybox", busybox.read_bytes(), 0o755)
    cpio.file("init", init, 0o755)
    names = []
    for i, rel in enumerate(order):
        name = f"{i:02d}-{module_name(rel)}.ko"
        cpio.file(f"modules/{name}", _read_module(kernel.modules_dir / rel))
        names.append(name)
    cpio.file("modules/order", ("\n".join(names) + "\n").encode())
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(cpio.finish())
    tmp.replace(out)
    return out
