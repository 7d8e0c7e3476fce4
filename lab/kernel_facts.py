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

Judging kprobe-ability from a static image: a function can be kprobed when it
has a text symbol (kallsyms 't'/'T'; an inlined function has none, and neither
has a `static inline` like put_page) and is not on the kprobe blacklist
(NOKPROBE_SYMBOL, __kprobes, noinstr sections). fentry/fexit needs more: the
function must be in ftrace's mcount table (available_filter_functions) and
have a BTF prototype. pahole emits BTF FUNC records only for functions with
an mcount entry and a consistent prototype, so `btf_funcs.txt` is a static
stand-in for available_filter_functions; a name with a text symbol but no BTF
FUNC record is kprobe-only (or has a .isra/.constprop clone). The boot-time
files settle it exactly.
"""

from __future__ import annotations

import bz2
import lzma
import shutil
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

from pageref.lab.kernels import KernelFiles, kernel_dir

from pageref.errors import PagerefError

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
