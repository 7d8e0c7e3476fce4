"""Checks behind `pageref doctor`: each gives OK/WARN/FAIL/INFO and what to do."""

from __future__ import annotations

import ctypes
import dataclasses
import glob
import os
import platform
import shutil
import subprocess
from pathlib import Path

from pageref.errors import PagerefError
from pageref.tracer.facts import TRACEFS, KernelFacts, live_caps
from pageref.tracer.plan import LOGICAL, resolve

CAP_SYS_ADMIN, CAP_PERFMON, CAP_BPF = 21, 38, 39
SYS_BPF = 321  # x86-64
BPF_MAP_CREATE, BPF_MAP_TYPE_ARRAY = 0, 2


@dataclasses.dataclass
class Check:
    name: str
    verdict: str   # OK | WARN | FAIL | INFO
    detail: str


def _caps() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    except OSError:
        pass
    return 0


def check_privileges() -> Check:
    if os.geteuid() == 0:
        return Check("privileges", "OK", "running as root")
    caps = _caps()
    if caps & (1 << CAP_SYS_ADMIN) or (caps & (1 << CAP_BPF) and caps & (1 << CAP_PERFMON)):
        return Check("privileges", "OK", "CAP_BPF+CAP_PERFMON (or CAP_SYS_ADMIN)")
    return Check("privileges", "FAIL", "not root and no CAP_BPF/CAP_PERFMON: run with sudo")


def check_bpf_syscall() -> Check:
    """Create (and close) a one-entry array map: the smallest real bpf() call."""
    libc = ctypes.CDLL(None, use_errno=True)
    attr = (ctypes.c_uint32 * 30)()
    attr[0], attr[1], attr[2], attr[3] = BPF_MAP_TYPE_ARRAY, 4, 4, 1
    fd = libc.syscall(SYS_BPF, BPF_MAP_CREATE, ctypes.byref(attr), ctypes.sizeof(attr))
    if fd >= 0:
        os.close(fd)
        return Check("bpf syscall", "OK", "bpf() works")
    err = ctypes.get_errno()
    if err == 1:  # EPERM
        return Check("bpf syscall", "FAIL", "bpf() refused (EPERM): run as root; "
                     "check kernel.unprivileged_bpf_disabled and lockdown")
    if err == 38:  # ENOSYS
        return Check("bpf syscall", "FAIL", "the kernel has no bpf() (CONFIG_BPF_SYSCALL off)")
    return Check("bpf syscall", "FAIL", f"bpf() failed: {os.strerror(err)}")


def check_kprobes() -> Check:
    pmu = os.path.exists("/sys/bus/event_source/devices/kprobe")
    tracefs = [d for d in TRACEFS if os.path.exists(os.path.join(d, "kprobe_events"))]
    if pmu or tracefs:
        how = "kprobe PMU" if pmu else f"{tracefs[0]}/kprobe_events"
        return Check("kprobes", "OK", f"available ({how})")
    return Check("kprobes", "FAIL", "no kprobes (no kprobe PMU, no kprobe_events): this "
                 "kernel lacks CONFIG_KPROBES; pageref cannot attach here. Use the lab: "
                 "pageref lab run -- CMD")


def _has_btf() -> bool:
    return bool(live_caps().get("btf"))


def check_fentry() -> Check:
    if not _has_btf():
        return Check("fentry", "INFO", "no BTF: fentry/fexit impossible (kprobes are used)")
    try:
        from bcc import BPF
        ok = BPF.support_kfunc()
    except Exception:
        ok = False
    if ok:
        return Check("fentry", "INFO", "BPF trampolines present: record tries fentry/fexit for "
                     "grab/free/busy and falls back to kprobes if the kernel refuses")
    return Check("fentry", "INFO", "no BPF trampoline support seen (kprobes are used)")


def check_bcc() -> Check:
    try:
        import bcc  # noqa: F401
    except ImportError:
        return Check("bcc", "FAIL", "python bcc not importable: apt-get install python3-bpfcc "
                     "(and use a Python that sees system site-packages)")
    return Check("bcc", "OK", "bcc importable")


def check_headers() -> Check:
    rel = platform.release()
    env = os.environ.get("BCC_KERNEL_SOURCE")
    build = Path(f"/lib/modules/{rel}/build")
    if env and Path(env).is_dir():
        return Check("kernel headers", "OK", f"BCC_KERNEL_SOURCE={env}")
    if build.is_dir():
        return Check("kernel headers", "OK", f"{build} (BCC compiles against it)")
    if os.path.exists("/sys/kernel/kheaders.tar.xz"):
        return Check("kernel headers", "OK", "/sys/kernel/kheaders.tar.xz (CONFIG_IKHEADERS)")
    return Check("kernel headers", "FAIL", f"no headers for {rel}: BCC cannot compile. "
                 f"apt-get install linux-headers-{rel} (or modprobe kheaders)")


def check_btf() -> Check:
    if _has_btf():
        return Check("BTF", "OK", "/sys/kernel/btf/vmlinux (struct offsets, enums, prototypes)")
    return Check("BTF", "WARN", "no BTF (/sys/kernel/btf/vmlinux): struct offsets and enum "
                 "values come from the kernel headers, and only kprobes can attach")


def check_layout(facts: KernelFacts) -> Check:
    """With BTF: compile the layout program against the kernel headers and check
    that they agree (`record --layout headers` refuses where they do not)."""
    from pageref.tracer.header_layout import btf_expectations, read_header_layout

    try:
        lay = read_header_layout(btf_expectations(facts))
    except PagerefError as e:
        return Check("layout", "WARN", f"BTF is used; the headers are no fallback: {e}")
    return Check("layout", "OK", f"from BTF; the kernel headers agree on {len(lay.checked)} "
                 "offsets, sizes and enum values")


def layout_without_btf() -> tuple[Check, KernelFacts | None]:
    """No BTF: the layout from the kernel headers, as record will read it."""
    from pageref.tracer.header_layout import live_facts

    try:
        facts = live_facts()
    except PagerefError as e:
        return Check("layout", "FAIL", str(e)), None
    return Check("layout", "OK", facts.layout_note or "from the kernel headers"), facts


def check_plan(facts: KernelFacts) -> Check:
    from pageref.tracer.defines import layout
    plan = resolve(facts)
    have = {a.probe for a in plan.attached}
    absent = [p for p in LOGICAL if p not in have]
    try:
        layout(facts)
    except PagerefError as e:
        return Check("probe plan", "FAIL", str(e))
    if "grab" in absent or "put" in absent:
        return Check("probe plan", "FAIL", f"no {' or '.join(absent)} target; see pageref probes")
    msg = f"{len(plan.attached)} targets: " + ", ".join(plan.symbols())
    if absent:
        return Check("probe plan", "WARN", msg + f" (none for {', '.join(absent)})")
    return Check("probe plan", "OK", msg)


def check_page_ref(facts: KernelFacts) -> Check:
    """The kernel's own refcount record (tracer/page_ref.py): INFO either way,
    since stock kernels build CONFIG_DEBUG_PAGE_REF off."""
    from pageref.tracer.page_ref import PAGE_REF_NAMES, marker

    have = [n for n in PAGE_REF_NAMES if facts.has_symbol(marker(n))]
    if len(have) == len(PAGE_REF_NAMES):
        return Check("page_ref", "OK", "the kernel's page_ref tracepoints are there "
                     "(CONFIG_DEBUG_PAGE_REF): `record` attaches them, every refcount "
                     "change of a ZONE_DEVICE page becomes a `ref` row")
    return Check("page_ref", "INFO", "no page_ref tracepoints (CONFIG_DEBUG_PAGE_REF off, "
                 "as in distribution kernels): changes no probe covers are not recorded "
                 "(`pageref probes` lists them); the analysis still flags unexplained steps")


def check_pmem() -> list[Check]:
    out = []
    nd = sorted(os.path.basename(p) for p in glob.glob("/sys/bus/nd/devices/namespace*"))
    devs = sorted(glob.glob("/dev/pmem*") + glob.glob("/dev/dax*"))
    if nd or devs:
        out.append(Check("pmem", "OK", f"namespaces: {', '.join(nd) or '-'}; "
                         f"devices: {', '.join(devs) or '-'}"))
    else:
        out.append(Check("pmem", "WARN", "no pmem (no /sys/bus/nd namespaces, no /dev/pmem* or "
                         "/dev/dax*): nothing to trace here; try `pageref lab demo`"))
    if shutil.which("ndctl"):
        try:
            r = subprocess.run(["ndctl", "list"], capture_output=True, text=True, timeout=10)
            out.append(Check("ndctl", "INFO", (r.stdout.strip().replace("\n", " ")[:200])
                             or "ndctl list: nothing"))
        except (OSError, subprocess.TimeoutExpired):
            pass
    mounts = []
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 4 and any(o == "dax" or o.startswith("dax=")
                                       for o in parts[3].split(",")):
                mounts.append(f"{parts[1]} ({parts[2]}, {parts[0]})")
    except OSError:
        pass
    if mounts:
        out.append(Check("DAX mounts", "OK", "; ".join(mounts)))
    elif devs:
        out.append(Check("DAX mounts", "WARN", "pmem present but nothing mounted with -o dax: "
                         "mount -o dax /dev/pmem0 /mnt (ext4/xfs)"))
    else:
        out.append(Check("DAX mounts", "INFO", "none"))
    return out


def run_checks() -> list[Check]:
    checks = [check_privileges(), check_bpf_syscall(), check_kprobes(), check_fentry(),
              check_bcc(), check_headers(), check_btf()]
    try:
        live = KernelFacts.live()
        facts: KernelFacts | None = live
        if live.has_btf:
            checks.append(check_layout(live))
        else:
            check, facts = layout_without_btf()
            checks.append(check)
        if facts is not None:
            checks.append(check_plan(facts))
            checks.append(check_page_ref(facts))
    except Exception as e:  # a broken kernel fact must not hide the other verdicts
        checks.append(Check("probe plan", "FAIL", f"cannot resolve: {e}"))
    checks += check_pmem()
    return checks
