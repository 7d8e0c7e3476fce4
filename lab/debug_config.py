"""The debug lab kernel's configuration (lab/debug_kernel.py builds it): which
Debian source it builds, the kernel's own minimal base (`make allnoconfig`),
the fragment that base is given (every option the lab guest and the tracer
need), the modules the guest loads, and the pure functions over them (fragment
rendering, the cache key, generation names, the built module check) that the
unit tests check without a build."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

DEBUG_SUFFIX = "-debug"
LOCALVERSION = "-pageref-debug"
# Bump when the installed layout or the way the config is made changes, so old
# builds are redone. 2: allnoconfig + FRAGMENT instead of Debian's cloud
# config + localmodconfig.
BUILD_FORMAT = 2


@dataclass(frozen=True)
class DebugSource:
    """Where a series' Debian source comes from (an installed package)."""

    series: str
    source_package: str  # linux-source-<series>: /usr/src/linux-source-<series>.tar.xz

    @property
    def tarball(self) -> Path:
        return Path("/usr/src", f"{self.source_package}.tar.xz")


# 6.12: the folio-era kernel (ZONE_DEVICE folios, gup_put_folio), the lab's
# "6.12" generation's series, and the source gup_longterm is built from.
SOURCES: dict[str, DebugSource] = {
    "6.12": DebugSource("6.12", "linux-source-6.12"),
}
DEBUG_GENERATIONS: tuple[str, ...] = tuple(s + DEBUG_SUFFIX for s in SOURCES)

# The base: the kernel's own `make allnoconfig` with FRAGMENT as its
# KCONFIG_ALLCONFIG: the fragment's options are set (and what they select),
# every other option Kconfig lets be off is off. Debian's cloud config +
# localmodconfig (BUILD_FORMAT 1) compiled 2,759 objects in 80 min; this
# compiles what a TCG lab guest runs and nothing else (docs/lab.md: measured).
BASE_TARGET = "allnoconfig"
# Compiler flags on top of Kbuild's (`make KCFLAGS=`). BTF needs DWARF's types,
# not where each variable lives: -fno-var-tracking (what the kernel's own
# DEBUG_INFO_REDUCED passes, without its -femit-struct-debug-baseonly, which
# would lose the types) saves about a tenth of the compile time, measured.
KCFLAGS = "-fno-var-tracking"

# What the lab guest loads by name: stage one's insmods (lab/initramfs.py
# STAGE_ONE_MODULES, from modules.dep), stage two's modprobes (lab/stage2.sh),
# the RDMA clients' (workloads/rdma-clients.sh) and test_hmm. Each must be
# built in (modules.builtin: the initramfs skips it, kmod's modprobe of a
# built-in succeeds) or a module; checked after the build (module_mismatches).
GUEST_MODULES: tuple[str, ...] = (
    "virtio_pci", "9pnet_virtio", "9p", "overlay",                        # stage one
    "libnvdimm", "nd_e820", "nd_pmem", "dax_pmem", "device_dax",          # pmem, devdax
    "dm_delay", "ext4", "xfs", "brd", "rdma_rxe", "dummy", "test_hmm",
)
# Those that must stay loadable modules: stage two gives brd its rd_nr and
# rd_size on the modprobe line (modprobe of a built-in brd succeeds and drops
# them: 16 RAM disks of 4 MiB), and test_hmm is loaded only by whoever wants
# device-private memory (`modprobe test_hmm`, docs/lab.md).
MODULES: tuple[str, ...] = ("brd", "test_hmm")

# Every option the debug kernel must have (values as in .config: "y", "m",
# "n" or a quoted string), given to allnoconfig and checked after it: one
# Kconfig refused fails the build at once with its name.
FRAGMENT: tuple[tuple[str, str], ...] = (
    # What issue 15 is about: the kernel's own refcount record, device-private
    # pages and their test driver, the GUP test harness.
    ("DEBUG_PAGE_REF", "y"), ("DEVICE_PRIVATE", "y"), ("RUNTIME_TESTING_MENU", "y"),
    ("TEST_HMM", "m"), ("GUP_TEST", "y"),
    # The tracer: BTF (pahole from dwarves; DWARF 5, what Debian's gcc 12
    # build has), kprobes, fentry (BPF trampolines), BPF, perf events (BCC
    # attaches kprobes through them), tracepoints, debugfs, every symbol.
    ("DEBUG_KERNEL", "y"), ("DEBUG_INFO_DWARF5", "y"), ("DEBUG_INFO_BTF", "y"),
    ("DEBUG_INFO_BTF_MODULES", "y"), ("KPROBES", "y"), ("KPROBE_EVENTS", "y"),
    ("BPF_SYSCALL", "y"), ("BPF_JIT", "y"), ("BPF_EVENTS", "y"), ("PERF_EVENTS", "y"),
    ("FTRACE", "y"), ("FUNCTION_TRACER", "y"), ("DYNAMIC_FTRACE", "y"),
    ("DYNAMIC_FTRACE_WITH_DIRECT_CALLS", "y"), ("FTRACE_SYSCALLS", "y"),
    ("TRACEPOINTS", "y"), ("JUMP_LABEL", "y"), ("KALLSYMS_ALL", "y"), ("DEBUG_FS", "y"),
    # The machine: QEMU's pc (i440fx) under TCG, SeaBIOS, virtio PCI, the
    # console on ttyS0; ACPI for the power-off that ends every run (stage two's
    # sysrq o: without ACPI the guest halts and QEMU never exits).
    ("64BIT", "y"), ("SMP", "y"), ("PCI", "y"), ("PCI_MSI", "y"), ("ACPI", "y"),
    ("HYPERVISOR_GUEST", "y"), ("PARAVIRT", "y"), ("KVM_GUEST", "y"),
    ("VIRTIO_MENU", "y"), ("VIRTIO_PCI", "y"), ("SERIAL_8250", "y"),
    ("SERIAL_8250_CONSOLE", "y"), ("MAGIC_SYSRQ", "y"), ("MODULES", "y"),
    ("MODULE_UNLOAD", "y"), ("LOCALVERSION", f'"{LOCALVERSION}"'), ("LOCALVERSION_AUTO", "n"),
    # What the host's userland does in the guest (busybox stage one, then
    # Debian's sh, python, BCC, fio, ndctl, mkfs, dmsetup, the workloads):
    # the uncompressed initramfs, devtmpfs, tmpfs (/run, /dev/shm, the overlay's
    # upper, with the xattrs overlayfs keeps there), #! scripts, SysV IPC (fio),
    # process_vm_readv/writev (the workloads), inotify, AF_UNIX.
    ("BLK_DEV_INITRD", "y"), ("DEVTMPFS", "y"), ("TMPFS", "y"), ("TMPFS_XATTR", "y"),
    ("BINFMT_ELF", "y"), ("BINFMT_SCRIPT", "y"), ("SYSVIPC", "y"), ("POSIX_MQUEUE", "y"),
    ("CROSS_MEMORY_ATTACH", "y"), ("INOTIFY_USER", "y"), ("NET", "y"), ("UNIX", "y"),
    # The lab guest, built in (the initramfs then loads nothing): the host's
    # root over 9p under an overlay, emulated pmem (memmap=!, e820), fsdax and
    # device DAX, ext4 and xfs, dm-delay, io_uring, and soft-RoCE on a dummy
    # netdev for the RDMA clients every lab boot runs (test_lab_devdax.py's
    # part, workloads/rdma-clients.sh: perftest's TCP set-up needs IPv4, not
    # IPv6); the RAM disks stay a module (MODULES).
    ("NETWORK_FILESYSTEMS", "y"), ("NET_9P", "y"), ("NET_9P_VIRTIO", "y"), ("9P_FS", "y"),
    ("OVERLAY_FS", "y"), ("OVERLAY_FS_REDIRECT_ALWAYS_FOLLOW", "y"),
    ("X86_PMEM_LEGACY", "y"), ("LIBNVDIMM", "y"), ("BLK_DEV_PMEM", "y"),
    ("NVDIMM_PFN", "y"), ("NVDIMM_DAX", "y"), ("ZONE_DEVICE", "y"), ("FS_DAX", "y"),
    ("FS_DAX_PMD", "y"), ("DAX", "y"), ("DEV_DAX", "y"), ("DEV_DAX_PMEM", "y"),
    ("MEMORY_HOTPLUG", "y"), ("MEMORY_HOTREMOVE", "y"), ("TRANSPARENT_HUGEPAGE", "y"),
    ("EXT4_FS", "y"), ("XFS_FS", "y"), ("BLK_DEV", "y"), ("BLK_DEV_WRITE_MOUNTED", "y"),
    ("BLK_DEV_RAM", "m"), ("MD", "y"), ("BLK_DEV_DM", "y"), ("DM_DELAY", "y"),
    ("IO_URING", "y"), ("INET", "y"), ("IPV6", "n"), ("NETDEVICES", "y"), ("NET_CORE", "y"),
    ("DUMMY", "y"), ("INFINIBAND", "y"), ("INFINIBAND_USER_ACCESS", "y"), ("RDMA_RXE", "y"),
    # Debian's choices that shape struct page and folio, page->flags and the
    # vmemmap the tracer decodes, or the mm paths it probes, kept as the stock
    # 6.12 has them: NUMA with 10 node bits, 5-level paging, KASLR with a
    # randomized vmemmap_base, memcg (folio->memcg_data), hugetlbfs with HVO,
    # hwpoison and idle page flags (enum pageflags), KSM, compaction,
    # migration, swap, userfaultfd (uffd-wp PTE markers), MGLRU, per-VMA locks,
    # deferred struct page init; the tick and preemption model (TCG timing).
    ("NUMA", "y"), ("NODES_SHIFT", "10"), ("X86_5LEVEL", "y"), ("SPARSEMEM_VMEMMAP", "y"),
    ("RELOCATABLE", "y"), ("RANDOMIZE_BASE", "y"), ("RANDOMIZE_MEMORY", "y"),
    ("CGROUPS", "y"), ("MEMCG", "y"), ("HUGETLBFS", "y"),
    ("HUGETLB_PAGE_OPTIMIZE_VMEMMAP", "y"), ("X86_MCE", "y"), ("MEMORY_FAILURE", "y"),
    ("IDLE_PAGE_TRACKING", "y"), ("PAGE_IDLE_FLAG", "y"), ("KSM", "y"), ("COMPACTION", "y"),
    ("MIGRATION", "y"), ("SWAP", "y"), ("USERFAULTFD", "y"), ("PTE_MARKER_UFFD_WP", "y"),
    ("LRU_GEN", "y"), ("LRU_GEN_ENABLED", "y"), ("PER_VMA_LOCK", "y"),
    ("DEFERRED_STRUCT_PAGE_INIT", "y"), ("VMAP_STACK", "y"),
    ("HZ_250", "y"), ("NO_HZ_IDLE", "y"), ("HIGH_RES_TIMERS", "y"),
    ("PREEMPT_VOLUNTARY", "y"), ("PREEMPT_DYNAMIC", "y"),
    # Plain, unsigned modules (the lab's busybox insmods plain .ko).
    ("MODULE_SIG", "n"),
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


def cache_key(source_version: str, fragment: str = "", base: str = BASE_TARGET,
              kcflags: str = KCFLAGS) -> str:
    """`<source version>-<12 hex>`: the build's directory name. The hash covers
    everything else that decides what is built: the base target, the
    fragment, the compiler flags and the installed layout."""
    h = hashlib.sha256()
    for part in (str(BUILD_FORMAT), base, fragment or render_fragment(), kcflags):
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


def config_mismatches(config: str, options: Iterable[tuple[str, str]] = FRAGMENT) -> list[str]:
    """The fragment's options a resolved .config does not have, as
    "NAME: wanted X, got Y" (absent counts as "n": Kconfig drops what it cannot set)."""
    have = parse_config(config)
    return [f"CONFIG_{name}: wanted {value}, got {have.get(name, 'n')}"
            for name, value in options if have.get(name, "n") != value]


def _module_names(text: str) -> set[str]:
    """modules.builtin or modules.dep text -> module names (kmod's: `-` is `_`)."""
    names = set()
    for line in text.splitlines():
        path = line.split(":", 1)[0].strip()
        if path:
            names.add(path.rsplit("/", 1)[-1].split(".ko", 1)[0].replace("-", "_"))
    return names


def module_mismatches(builtin: str, dep: str, wanted: Sequence[str] = GUEST_MODULES,
                      modules: Sequence[str] = MODULES) -> list[str]:
    """What the lab guest could not load from a build, given its modules.builtin
    and modules.dep: each of `wanted` built in or a module, each of `modules`
    a module."""
    built_in, loadable = _module_names(builtin), _module_names(dep)
    bad = [f"{m}: neither built in nor a module" for m in wanted
           if m not in built_in and m not in loadable]
    bad += [f"{m}: built in, the lab needs it as a module" for m in modules
            if m in built_in]
    return bad


def build_step(log_line: str) -> str:
    """Kbuild's `  CC      mm/gup.o` -> "CC mm/gup.o", for the progress line."""
    parts = log_line.split()
    return " ".join(parts[:2]) if parts else ""
