"""lab/kernel_facts.py on small made-up inputs: payload extraction and BTF FUNC names."""

from __future__ import annotations

import gzip
import lzma
import struct
from pathlib import Path

import pytest

from pageref.errors import PagerefError
from pageref.lab import kernel_facts


@pytest.mark.parametrize("compress", [lzma.compress, gzip.compress], ids=["xz", "gzip"])
def test_extract_vmlinux_finds_the_payload(tmp_path: Path, compress) -> None:
    elf = b"\x7fELF" + bytes(range(256)) * 16
    # A bzImage: setup code (with a false gzip/xz magic in it), then the payload.
    image = b"MZ" + b"\x1f\x8b\x08junk" + b"\xfd7zXZ\x00junk" + b"\0" * 100 + compress(elf)
    (tmp_path / "vmlinuz").write_bytes(image + b"trailer")
    out = kernel_facts.extract_vmlinux(tmp_path / "vmlinuz", tmp_path / "vmlinux")
    assert out.read_bytes() == elf


def test_extract_vmlinux_without_payload(tmp_path: Path) -> None:
    (tmp_path / "vmlinuz").write_bytes(b"MZ" + b"\0" * 4096)
    with pytest.raises(PagerefError, match="no compressed ELF payload"):
        kernel_facts.extract_vmlinux(tmp_path / "vmlinuz", tmp_path / "vmlinux")


def _btf(types: bytes, strings: bytes) -> bytes:
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    return hdr + types + strings


def test_btf_func_names() -> None:
    strings = b"\0int\0try_grab_folio\0__folio_put\0folio\0"
    off = {s: strings.index(s.encode() + b"\0") for s in
           ("int", "try_grab_folio", "__folio_put", "folio")}
    t = b""
    t += struct.pack("<III", off["int"], 1 << 24, 4) + struct.pack("<I", 32)  # 1 INT
    t += struct.pack("<III", 0, (13 << 24) | 1, 1) + struct.pack("<II", 0, 1)  # 2 FUNC_PROTO
    t += struct.pack("<III", off["folio"], (3 << 24) | 1, 8)  # 3 STRUCT folio, 1 member
    t += struct.pack("<III", off["int"], 1, 0)
    t += struct.pack("<III", off["try_grab_folio"], 12 << 24, 2)  # 4 FUNC
    t += struct.pack("<III", off["__folio_put"], 12 << 24, 2)  # 5 FUNC
    assert kernel_facts.btf_func_names(_btf(t, strings)) == ["__folio_put", "try_grab_folio"]


def test_btf_func_names_rejects_other_bytes() -> None:
    with pytest.raises(PagerefError):
        kernel_facts.btf_func_names(b"\0" * 64)


def test_save_boot_facts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAGEREF_LAB_CACHE", str(tmp_path / "cache"))
    results = tmp_path / "results"
    results.mkdir()
    (results / "kallsyms").write_text("ffffffff81000000 T _text\n")
    (results / "kprobe_blacklist").write_text("")  # empty: not saved
    saved = kernel_facts.save_boot_facts("6.12", results)
    assert saved == ["kallsyms"]
    assert (kernel_facts.facts_dir("6.12") / "kallsyms").read_text().startswith("ffff")
