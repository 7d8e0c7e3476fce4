"""The debug lab kernel's configuration (lab/debug_kernel.py builds it): which
Debian source and config it starts from, the modules localmodconfig keeps, the
fragment on top, and the pure functions over them (fragment rendering, the
cache key, generation names) that the unit tests check without a build."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

DEBUG_SUFFIX = "-debug"
LOCALVERSION = "-pageref-debug"
# Bump when the installed layout changes, so old builds are redone.
BUILD_FORMAT = 1


@dataclass(frozen=True)
class DebugSource:
    """Where a series' Debian source and config come from (installed packages)."""

    series: str
    source_package: str  # linux-source-<series>: /usr/src/linux-source-<series>.tar.xz
    config_package: str  # linux-config-<series>: Debian's configs for that same source
    config_flavour: str  # the file under /usr/src/linux-config-<series>/

    @property
    def tarball(self) -> Path:
        return Path("/usr/src", f"{self.source_package}.tar.xz")

    @property
    def base_config(self) -> Path:
        return Path("/usr/src", self.config_package, f"config.{self.config_flavour}.xz")


# 6.12: the folio-era kernel (ZONE_DEVICE folios, gup_put_folio), the lab's
# "6.12" generation's series, and the source gup_longterm is built from.
SOURCES: dict[str, DebugSource] = {
    "6.12": DebugSource("6.12", "linux-source-6.12", "linux-config-6.12",
                        "amd64_none_cloud-amd64"),
}
DEBUG_GENERATIONS: tuple[str, ...] = tuple(s + DEBUG_SUFFIX for s in SOURCES)

# What a lab guest loads (modules.dep closure on the stock 6.12 lab kernel of
# lab/init.sh's and lab/stage2.sh's modprobes and workloads/rdma-clients.sh's),
# plus test_hmm: `make localmodconfig` keeps these and drops every other module.
LAB_MODULES: tuple[str, ...] = (
    "netfs", "9pnet", "9pnet_virtio", "9p", "overlay",            # stage one: the host's root
    "libnvdimm", "nd_e820", "nd_btt", "nd_pmem", "dax_pmem", "device_dax",   # pmem, devdax
    "dm_mod", "dm_delay", "brd", "crc16", "mbcache", "jbd2", "ext4", "libcrc32c", "xfs",
    "ib_core", "ib_uverbs", "ip6_udp_tunnel", "udp_tunnel", "rdma_rxe", "dummy",  # soft-RoCE
    "iw_cm", "ib_cm", "configfs", "rdma_cm", "rdma_ucm", "ib_umad",
    "test_hmm",
)

# The options the debug kernel must have, on top of the trimmed base (values
# as in .config: "y", "m", "n" or a quoted string). Every one is checked
# after `make olddefconfig`: one Kconfig refused fails the build at once.
FRAGMENT: tuple[tuple[str, str], ...] = (
    # What issue 15 is about: the kernel's own refcount record, device-private
    # pages and their test driver, the GUP test harness.
    ("DEBUG_PAGE_REF", "y"), ("DEVICE_PRIVATE", "y"), ("TEST_HMM", "m"), ("GUP_TEST", "y"),
    # The tracer: BTF (pahole from dwarves), kprobes, fentry, BPF (Debian's
    # config has them; stated so that a change of base cannot lose them).
    ("DEBUG_INFO_BTF", "y"), ("DEBUG_INFO_BTF_MODULES", "y"), ("KPROBES", "y"),
    ("KPROBE_EVENTS", "y"), ("BPF_SYSCALL", "y"), ("BPF_JIT", "y"), ("BPF_EVENTS", "y"),
    ("FUNCTION_TRACER", "y"), ("DYNAMIC_FTRACE", "y"), ("FTRACE_SYSCALLS", "y"),
    ("KALLSYMS_ALL", "y"), ("DEBUG_FS", "y"), ("TRACEPOINTS", "y"),
    # The lab guest: the host's root over 9p (the cloud flavour has no 9p),
    # emulated pmem (memmap=!, e820), fsdax and device DAX, the file systems,
    # dm-delay, the RAM disks, io_uring, soft-RoCE (not in the cloud flavour).
    ("NET_9P", "m"), ("NET_9P_VIRTIO", "m"), ("9P_FS", "m"), ("OVERLAY_FS", "m"),
    ("VIRTIO_PCI", "y"), ("X86_PMEM_LEGACY", "m"), ("LIBNVDIMM", "m"), ("BLK_DEV_PMEM", "m"),
    ("NVDIMM_PFN", "y"), ("NVDIMM_DAX", "y"), ("ZONE_DEVICE", "y"), ("FS_DAX", "y"),
    ("FS_DAX_PMD", "y"), ("DEV_DAX", "m"), ("DEV_DAX_PMEM", "m"), ("TRANSPARENT_HUGEPAGE", "y"),
    ("EXT4_FS", "y"), ("XFS_FS", "m"), ("BLK_DEV_DM", "m"), ("DM_DELAY", "m"),
    ("BLK_DEV_RAM", "m"), ("IO_URING", "y"), ("INFINIBAND", "m"),
    ("INFINIBAND_USER_ACCESS", "m"), ("RDMA_RXE", "m"), ("DUMMY", "m"),
    # Plain, unsigned modules: the tarball has no Debian signing key (the
    # config names debian/certs/), and the lab's busybox insmods plain .ko.
    # Debian's lockdown LSM selects MODULE_SIG; the lab has no secure boot.
    ("SECURITY_LOCKDOWN_LSM", "n"), ("MODULE_SIG", "n"), ("MODULE_COMPRESS", "n"),
    ("SYSTEM_TRUSTED_KEYS", '""'),
    ("LOCALVERSION", f'"{LOCALVERSION}"'), ("LOCALVERSION_AUTO", "n"),
    # Built in by the cloud flavour, useless in the lab and minutes to compile.
    ("XEN", "n"), ("SECURITY_SELINUX", "n"), ("SECURITY_TOMOYO", "n"),
    ("SECURITY_APPARMOR", "n"),
)



def debug_series(generation: str) -> str | None:
    """"6.12-debug" -> "6.12"; None for a generation that is not a debug build."""
    if not generation.endswith(DEBUG_SUFFIX):
        return None
    series = generation[: -len(DEBUG_SUFFIX)]
    return series if series in SOURCES else None


def render_fragment(options: Iterable[tuple[str, str]] = FRAGMENT) -> str:
    """The fragment as .config lines ("n" as Kconfig writes it: `# ... is not set`)."""
    lines = []
    for name, value in options:
        if value == "n":
            lines.append(f"# CONFIG_{name} is not set")
        else:
            lines.append(f"CONFIG_{name}={value}")
    return "\n".join(lines) + "\n"


def cache_key(source_version: str, fragment: str = "",
              modules: Sequence[str] = LAB_MODULES, flavour: str = "") -> str:
    """`<source version>-<12 hex>`: the build's directory name. The hash covers
    everything else that decides what is built: the fragment, the module list
    localmodconfig keeps, the base flavour and the installed layout."""
    h = hashlib.sha256()
    for part in (str(BUILD_FORMAT), flavour, fragment or render_fragment(), *modules):
        h.update(part.encode() + b"\0")
    return f"{source_version}-{h.hexdigest()[:12]}"


def parse_config(text: str) -> dict[str, str]:
    """.config text -> {NAME: value}, "n" for `# CONFIG_NAME is not set`."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        m = re.fullmatch(r"CONFIG_(\w+)=(.*)", line)
        if m:
            out[m.group(1)] = m.group(2)
            continue
        m = re.fullmatch(r"# CONFIG_(\w+) is not set", line)
        if m:
            out[m.group(1)] = "n"
    return out


def apply_fragment(config: str, options: Iterable[tuple[str, str]] = FRAGMENT) -> str:
    """`config` with every option of the fragment set (old lines dropped, the
    fragment appended: Kconfig takes the last assignment of a symbol)."""
    names = {name for name, _ in options}
    kept = [ln for ln in config.splitlines()
            if not (m := re.fullmatch(r"(?:# )?CONFIG_(\w+)(?:=.*| is not set)", ln))
            or m.group(1) not in names]
    return "\n".join(kept) + "\n" + render_fragment(options)


def config_mismatches(config: str, options: Iterable[tuple[str, str]] = FRAGMENT) -> list[str]:
    """The fragment's options a resolved .config does not have, as
    "NAME: wanted X, got Y" (absent counts as "n": Kconfig drops what it cannot set)."""
    have = parse_config(config)
    return [f"CONFIG_{name}: wanted {value}, got {have.get(name, 'n')}"
            for name, value in options if have.get(name, "n") != value]


def lsmod_text(modules: Sequence[str] = LAB_MODULES) -> str:
    """What localmodconfig's LSMOD= file must look like (lsmod's output:
    streamline_config.pl skips the header and reads the first column)."""
    return "Module                  Size  Used by\n" + "".join(f"{m} 0 0\n" for m in modules)


def build_step(log_line: str) -> str:
    """Kbuild's `  CC      mm/gup.o` -> "CC mm/gup.o", for the progress line."""
    parts = log_line.split()
    return " ".join(parts[:2]) if parts else ""
