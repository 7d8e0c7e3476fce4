"""Raw facts of a lab kernel, for the tracer's fixtures: BTF, symbols, config.

`extract_facts(kernel)` writes into lab-cache/kernels/<gen>/facts/ (big, not
committed; the tracer turns them into small fixtures under tests/fixtures/):

- `vmlinux.btf`: the raw .BTF section (what /sys/kernel/btf/vmlinux serves on
  that kernel). Taken from the `vmlinux` that Debian's 6.12+ headers package
  ships for module BTF (a BTF-only ELF), else from the image itself: the
  bzImage's payload decompressed (scripts/extract-vmlinux in Python: find the
  compression magic, decompress, check for an ELF), then
  `objcopy -O binary --only-section=.BTF`.
- `btf_funcs.txt`: the names of BTF FUNC records, sorted (see below).
- `config`, `release`.
- `kallsyms`, `available_filter_functions`, `kprobe_blacklist`: only from a boot
  of that kernel in the lab (`pageref lab kernels --facts`), because Debian's
  packages carry a one-line placeholder System.map (the real one is in the
  -dbg package, about 1 GB) and the kallsyms tables inside the image are
  compressed in a kernel-version-specific layout.

Judging kprobe-ability from a static image (docs/kernels.md has the measured
comparison): a function can be kprobed when it has a text symbol (kallsyms
't'/'T') and is not on the kprobe blacklist (NOKPROBE_SYMBOL, __kprobes,
noinstr). An inlined function has no symbol at all; a `static inline` may also
have an out-of-line copy in a few files (Debian 6.1 and 6.12 have a `t put_page`
and a `t folio_put`, with BTF, but not in available_filter_functions): a probe
there sees only the callers of that one copy, so a symbol is necessary, not
sufficient. fentry/fexit needs the function in ftrace's mcount table
(available_filter_functions) and a BTF prototype. BTF FUNC records alone are
not a stand-in for available_filter_functions (thousands differ each way:
__init functions, notrace code, modules), so the static answer is "maybe" and
the boot-time files settle it; `pageref lab kernels --boot` collects them.
"""

from __future__ import annotations

import bz2
import json
import lzma
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterable
from pathlib import Path

from pageref.errors import PagerefError
from pageref.lab.kernels import KernelFiles, kernel_dir

# Compression magics as scripts/extract-vmlinux tries them.
_MAGICS: tuple[tuple[str, bytes], ...] = (
    ("gzip", b"\x1f\x8b\x08"),
    ("xz", b"\xfd7zXZ\x00"),
    ("zstd", b"\x28\xb5\x2f\xfd"),
    ("bzip2", b"BZh"),
    ("lzma", b"\x5d\x00\x00\x00"),
)
BOOT_FACTS = ("kallsyms", "available_filter_functions", "kprobe_blacklist")


def facts_dir(generation: str) -> Path:
    return kernel_dir(generation) / "facts"


def _decompress(kind: str, blob: bytes) -> bytes | None:
    try:
        if kind == "gzip":
            return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(blob)
        if kind == "xz":
            return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(blob)
        if kind == "lzma":
            return lzma.LZMADecompressor(format=lzma.FORMAT_ALONE).decompress(blob)
        if kind == "bzip2":
            return bz2.BZ2Decompressor().decompress(blob)
        if kind == "zstd":
            r = subprocess.run(["zstd", "-d", "-q", "-c"], input=blob, capture_output=True)
            return r.stdout or None  # trailing garbage makes zstd exit 1 after the frame
    except (OSError, EOFError, lzma.LZMAError, zlib.error, ValueError):
        return None
    return None


def extract_vmlinux(vmlinuz: Path, out: Path) -> Path:
    """Decompress a bzImage's payload into an ELF vmlinux at `out`."""
    data = vmlinuz.read_bytes()
    for kind, magic in _MAGICS:
        start = data.find(magic)
        while start != -1:
            elf = _decompress(kind, data[start:])
            if elf and elf[:4] == b"\x7fELF":
                out.write_bytes(elf)
                return out
            start = data.find(magic, start + 1)
    raise PagerefError(f"{vmlinuz}: found no compressed ELF payload (gzip/xz/zstd/bzip2/lzma)")


def _objcopy_btf(vmlinux: Path, out: Path) -> bool:
    for tool in ("objcopy", "llvm-objcopy"):
        if shutil.which(tool):
            r = subprocess.run(
                [tool, "-O", "binary", "--only-section=.BTF", str(vmlinux), str(out)],
                capture_output=True,
            )
            if r.returncode == 0 and out.exists() and out.stat().st_size > 24:
                return True
    return False


def btf_func_names(btf: bytes) -> list[str]:
    """Names of the BTF FUNC records in raw BTF, sorted (a minimal type walk)."""
    import struct

    magic, _v, _f, hdr_len = struct.unpack_from("<HBBI", btf, 0)
    if magic != 0xEB9F:
        raise PagerefError("not little-endian raw BTF")
    type_off, type_len, str_off, str_len = struct.unpack_from("<IIII", btf, 8)
    types = btf[hdr_len + type_off: hdr_len + type_off + type_len]
    strings = btf[hdr_len + str_off: hdr_len + str_off + str_len]
    # Extra bytes after the 12-byte header, by kind (Documentation/bpf/btf.rst).
    names: set[str] = set()
    pos = 0
    while pos < len(types):
        name_off, info, _ = struct.unpack_from("<III", types, pos)
        kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
        pos += 12
        if kind == 12:  # FUNC
            end = strings.index(b"\0", name_off)
            names.add(strings[name_off:end].decode())
        pos += {1: 4, 3: 12, 4: 12 * vlen, 5: 12 * vlen, 6: 8 * vlen, 13: 8 * vlen,
                14: 4, 15: 12 * vlen, 17: 4, 19: 12 * vlen}.get(kind, 0)
    return sorted(names)


def extract_facts(kernel: KernelFiles, force: bool = False) -> Path:
    """Write the static facts of `kernel` into its facts dir; returns the dir."""
    fdir = facts_dir(kernel.generation or "6.1")
    fdir.mkdir(parents=True, exist_ok=True)
    btf = fdir / "vmlinux.btf"
    if force or not btf.exists():
        print(f"pageref lab: kernel {kernel.generation}: extracting BTF", file=sys.stderr)
        shipped = kernel.headers_dir / "vmlinux" if kernel.headers_dir else None
        ok = shipped is not None and shipped.exists() and _objcopy_btf(shipped, btf)
        if not ok:
            with tempfile.TemporaryDirectory(dir=fdir) as tmp:
                vmlinux = extract_vmlinux(kernel.vmlinuz, Path(tmp) / "vmlinux")
                if not _objcopy_btf(vmlinux, btf):
                    raise PagerefError(f"{kernel.vmlinuz}: the kernel has no .BTF section")
    if force or not (fdir / "btf_funcs.txt").exists():
        names = btf_func_names(btf.read_bytes())
        (fdir / "btf_funcs.txt").write_text("\n".join(names) + "\n")
    if kernel.config is not None:
        shutil.copyfile(kernel.config, fdir / "config")
    if kernel.system_map is not None:
        shutil.copyfile(kernel.system_map, fdir / "System.map")
    (fdir / "release").write_text(kernel.release + "\n")
    return fdir


def save_boot_facts(generation: str, results: Path) -> list[str]:
    """Move the boot-time files a lab job left in `results` into the facts dir."""
    fdir = facts_dir(generation)
    fdir.mkdir(parents=True, exist_ok=True)
    saved = []
    for name in BOOT_FACTS:
        src = results / name
        if src.exists() and src.stat().st_size > 0:
            shutil.copyfile(src, fdir / name)
            saved.append(name)
    return saved


# What the guest dumps for the facts: the exact traceability answers.
_BOOT_FACTS_JOB = r"""
cat /proc/kallsyms > /results/kallsyms
for t in /sys/kernel/tracing /sys/kernel/debug/tracing; do
    [ -r $t/available_filter_functions ] && {
        cat $t/available_filter_functions > /results/available_filter_functions; break; }
done
cat /sys/kernel/debug/kprobes/blacklist > /results/kprobe_blacklist 2>/dev/null
# BCC compile + attach of a trivial program, against this kernel's headers
/usr/bin/python3 - <<'PY' > /results/bcc-time 2>/results/bcc-log
import os, time
import bcc
t = time.monotonic()
b = bcc.BPF(text="int on_folio_put(void *ctx) { return 0; }",
            cflags=os.environ.get("PAGEREF_BCC_CFLAGS", "").split())
# __folio_put from 5.16 (folio conversion); __put_page before it
fn = "__folio_put" if bcc.BPF.ksymname("__folio_put") != -1 else "__put_page"
b.attach_kprobe(event=fn, fn_name="on_folio_put")
print(f"{time.monotonic() - t:.1f}")
PY
"""


def collect_boot_facts(kernel: KernelFiles, timeout_s: float = 600.0) -> dict[str, object]:
    """Boot `kernel` in the lab, dump kallsyms, available_filter_functions and the
    kprobe blacklist into its facts dir, and time the boot and a BCC compile.

    Returns {"boot_s": guest uptime at "ready", "wall_s": host seconds of the
    whole boot, "bcc_s": compile+attach seconds or None, "saved": [file names]}.
    """
    from pageref.lab import qemu
    from pageref.lab.paths import cache_dir

    gen = kernel.generation or "6.1"
    run = qemu.new_run_dir(cache_dir(), f"facts-{gen}")
    print(f"pageref lab: kernel {gen}: booting to collect its symbols", file=sys.stderr)
    res = qemu.boot(kernel, cache_dir(), run, _BOOT_FACTS_JOB, timeout_s=timeout_s,
                    env={"PAGEREF_BCC_CFLAGS": " ".join(kernel.bcc_cflags)})
    if res.failure:
        raise PagerefError(f"kernel {gen}: {res.failure}")
    bcc_s = None
    try:
        bcc_s = float((run / "bcc-time").read_text().strip())
    except (OSError, ValueError):
        pass
    out: dict[str, object] = {"boot_s": res.guest_time("ready"), "wall_s": round(res.wall_s, 1),
           "bcc_s": bcc_s, "saved": save_boot_facts(gen, run), "run_dir": str(run)}
    (facts_dir(gen) / "boot.json").write_text(json.dumps(out, indent=1) + "\n")
    return out


def prefetch(generations: Iterable[str], boot: bool = False,
             refresh: bool = False) -> dict[str, dict[str, object]]:
    """Download/unpack each generation, extract its static facts, and with
    `boot` also its boot-time facts. Returns per generation what was done."""
    from pageref.lab.kernels import ensure_kernel

    done: dict[str, dict[str, object]] = {}
    for gen in generations:
        t = time.monotonic()
        kernel = ensure_kernel(gen, refresh=refresh)
        fdir = extract_facts(kernel, force=refresh)
        info: dict[str, object] = {"release": kernel.release, "facts": str(fdir),
                                   "fetch_s": round(time.monotonic() - t, 1)}
        if boot:
            info.update(collect_boot_facts(kernel))
        done[gen] = info
    return done


def suite_fixture(trace: Path, out: Path, generation: str) -> int:
    """Write the short per-generation trace fixture (tests/fixtures/kernels/<gen>/
    suite.jsonl) from a lab suite run's trace: every workload but fio (whose
    thousands of O_DIRECT events add nothing the others lack). Returns the rows."""
    from pageref.trace.io import read_trace
    from pageref.trace.jsonl import write_jsonl

    t = read_trace(trace)
    keep = t.events[t.events["comm"].astype(str) != "fio"].reset_index(drop=True)
    header = t.header
    header.extra = dict(header.extra or {}, fixture=(
        f"lab suite run on {generation}: every workload but fio, ext4 (pmem0p1) and xfs (pmem0p2)"))
    return write_jsonl(out, header, iter([keep]))


def traceability_table(fdir: Path, pattern: str) -> list[str]:
    """One line per kallsyms text symbol whose name (clone suffixes such as
    .part.0 included) matches `pattern`, with what a booted kernel says about
    it: `name kallsyms-type ftrace btf kprobe`, each yes/no (ftrace: in
    available_filter_functions; btf: a BTF FUNC record; kprobe: a text symbol
    not on the kprobe blacklist). For fixtures: the names a probe plan may
    consider, answered by the boot, not by the sources."""
    import re

    pat = re.compile(pattern)
    ftrace = {ln.split()[0] for ln in (fdir / "available_filter_functions").read_text()
              .splitlines() if ln.strip()}
    btf = set((fdir / "btf_funcs.txt").read_text().split())
    black = {ln.split()[-1] for ln in (fdir / "kprobe_blacklist").read_text().splitlines()
             if ln.strip()} if (fdir / "kprobe_blacklist").exists() else set()
    rows: dict[str, str] = {}
    for ln in (fdir / "kallsyms").read_text().splitlines():
        parts = ln.split()
        if len(parts) < 3 or len(parts) > 3 or parts[1] not in "tT" or not pat.fullmatch(parts[2]):
            continue  # module symbols (a 4th column) are not the core mm paths
        name = parts[2]
        yn = {True: "yes", False: "no"}
        rows[name] = (f"{name} {parts[1]} ftrace={yn[name in ftrace]} btf={yn[name in btf]} "
                      f"kprobe={yn[name not in black]}")
    return [rows[n] for n in sorted(rows)]
