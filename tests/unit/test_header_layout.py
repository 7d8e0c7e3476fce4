"""The struct layout from kernel headers (tracer/header_layout.py): decoding,
mapping onto KernelFacts, and real compiles against Debian's 6.1, 6.12 and 7.2
headers checked against the BTF extracts of the same kernels."""

from __future__ import annotations

import dataclasses
import glob
import struct
from pathlib import Path

import pytest

from pageref.errors import PagerefError
from pageref.tracer import header_layout as hl
from pageref.tracer.defines import Options, defines, layout
from pageref.tracer.facts import KernelFacts
from pageref.tracer.plan import RET_BOOL, RET_PTR, RET_ZERO_OK, resolve

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "kernels"
REPO = Path(__file__).resolve().parents[2]


def btf_facts(gen: str) -> KernelFacts:
    return KernelFacts.load(FIX / gen)


def bare(f: KernelFacts) -> KernelFacts:
    """The same kernel as it looks without BTF: symbols, config, caps only."""
    return KernelFacts(release=f.release, machine=f.machine, symbols=dict(f.symbols),
                       traceable=f.traceable, config=dict(f.config), source="no-btf")


def insn(op: int, imm: int) -> bytes:
    return struct.pack("<BBhi", op, 0, 0, imm)


EXIT = struct.pack("<BBhi", 0x95, 0, 0, 0)


# -- decoding and mapping (no compiler) ---------------------------------------

@pytest.mark.parametrize("code, value", [
    (insn(0xB7, 52) + EXIT, 52),
    (insn(0xB4, 1024) + EXIT, 1024),
    (insn(0x18, 0x1) + insn(0, 0x2) + EXIT, 0x2_0000_0001),
])
def test_returned_value(code, value):
    assert hl._returned_value(code, "x") == value


def test_returned_value_refuses_other_code():
    with pytest.raises(PagerefError, match="unexpected code for layout fact x"):
        hl._returned_value(insn(0x61, 4) + EXIT, "x")   # a load, not a constant


def test_every_fact_name_maps_somewhere():
    names = hl.fact_names()
    assert len(names) == len(set(names)) > 40
    f = KernelFacts()
    hl.apply_layout(f, hl.HeaderLayout(values=dict.fromkeys(names, 7), missing=[],
                                       checked=[], headers="/x"))
    filled = (len(f.offsets) + len(f.sizes) + sum(map(len, f.enums.values()))
              + len(f.pageflags) + len(f.foll) + len(f.header_ret_conv)
              + (f.pin_bias is not None))
    assert filled == len(names)


@pytest.mark.parametrize("gen", ["6.1", "6.12", "7.2"])
def test_btf_expectations_use_the_programs_names(gen):
    f = btf_facts(gen)
    exp = hl.btf_expectations(f)
    assert set(exp) <= set(hl.fact_names())
    assert exp["off__page___refcount"] == f.offsets["page._refcount"]
    assert exp["enum__memory_type__MEMORY_DEVICE_FS_DAX"] == 3
    # FOLL_* only where they came from BTF (6.1: #defines, so from headers)
    assert ("const__FOLL_PIN" in exp) == (f.foll_source == "btf")


def test_layout_from_headers_values_gives_the_btf_defines():
    """Facts filled from header values equal to 6.1's BTF give the same program."""
    f = btf_facts("6.1")
    values = hl.btf_expectations(f) | {f"const__{k}": v for k, v in f.foll.items()}
    values["ret__try_grab_page"] = RET_BOOL
    h = bare(f)
    hl.apply_layout(h, hl.HeaderLayout(values=values, missing=[], checked=[], headers="/x"))
    assert h.layout_source == "headers" and not h.has_btf
    assert dataclasses.asdict(layout(h)) == dataclasses.asdict(layout(f))
    ph, pf = resolve(h), resolve(f)
    assert ph.symbols() == pf.symbols()
    assert defines(h, ph, Options()) == defines(f, pf, Options())


@pytest.mark.parametrize("gen, conv", [("6.1", RET_PTR), ("6.12", RET_ZERO_OK)])
def test_try_grab_folio_convention_without_btf(gen, conv):
    """mm/internal.h is in no headers package: inferred from try_grab_folio_fast."""
    h = bare(btf_facts(gen))
    hl.apply_layout(h, hl.HeaderLayout(values={}, missing=[], checked=[], headers="/x"))
    assert h.header_ret_conv["try_grab_folio"] == conv
    grab = {a.symbol: a for a in resolve(h).attached if a.probe == "grab"}
    assert grab["try_grab_folio"].ret_conv == conv


@pytest.mark.parametrize("gen", ["5.10", "5.15"])
def test_5x_gup_fast_grab_attaches_without_btf(gen):
    """try_grab_compound_head is static in mm/gup.c (no header declares it):
    found in the lab, 5.10 without BTF lost every O_DIRECT grab for want of its
    return type. It returned the head page (NULL: refused) as long as it lived."""
    h = bare(btf_facts(gen))
    hl.apply_layout(h, hl.HeaderLayout(values={}, missing=[], checked=[], headers="/x"))
    assert h.header_ret_conv["try_grab_compound_head"] == RET_PTR
    grab = {a.symbol: a for a in resolve(h).attached if a.probe == "grab"}
    assert grab["try_grab_compound_head"].ret_conv == RET_PTR


def test_grab_without_any_prototype_is_missing_with_reason():
    h = bare(btf_facts("6.1"))
    h.layout_source = "headers"
    why = {m.symbol: m.why for m in resolve(h).missing}
    assert "no BTF prototype or header declaration" in why["try_grab_page"]


def test_unknown_source_is_refused():
    with pytest.raises(PagerefError, match="unknown layout source"):
        hl.live_facts("dwarf")


# -- real compiles against Debian's headers -------------------------------------

def _headers(gen: str) -> Path | None:
    pats = {"6.1": "/usr/src/linux-headers-6.1.*-amd64",
            "6.12": f"{REPO}/lab-cache/kernels/6.12/root/usr/src/linux-headers-*-amd64",
            "7.2": f"{REPO}/lab-cache/kernels/7.2/root/usr/src/linux-headers-*-amd64"}
    found = sorted(glob.glob(pats[gen]))
    return Path(found[-1]) if found else None


def same_kernel_btf_facts(gen: str) -> KernelFacts:
    """BTF facts of the very build whose headers `_headers` found: a lab kernel's
    own BTF (extracted by `pageref lab kernels` beside its headers), since the
    archive moves on and the fixture's build may not be the one downloaded."""
    btf = REPO / "lab-cache" / "kernels" / gen / "facts" / "vmlinux.btf"
    if gen == "6.1" or not btf.is_file():
        return btf_facts(gen)
    cfg = btf.with_name("config")
    return KernelFacts.from_files(btf, None, None, cfg if cfg.is_file() else None,
                                  btf.with_name("release").read_text().strip()
                                  if btf.with_name("release").is_file() else gen)


@pytest.fixture
def headers_of(monkeypatch):
    pytest.importorskip("bcc", reason="python3-bpfcc not importable")
    from pageref.tracer.kheaders import merged_tree

    def use(gen: str) -> None:
        tree = _headers(gen)
        if tree is None:
            pytest.skip(f"no {gen} headers (bin/setup installs 6.1's and downloads the "
                        "lab kernels')")
        monkeypatch.setenv("BCC_KERNEL_SOURCE", str(merged_tree(tree)))
    return use


@pytest.mark.parametrize("gen, absent", [
    ("6.1", {"off__page____folio_index", "off__folio__pgmap", "off__page__compound_info"}),
    ("6.12", {"off__page____folio_index", "off__folio__pgmap", "const__FOLL_PIN"}),
    ("7.2", {"off__page__index", "off__page__pgmap", "off__page__compound_head",
             "const__FOLL_PIN"}),
])
def test_headers_agree_with_btf_of_the_same_kernel(headers_of, gen, absent):
    headers_of(gen)
    f = same_kernel_btf_facts(gen)
    exp = hl.btf_expectations(f)
    lay = hl.read_header_layout(exp)
    assert absent <= set(lay.missing)
    # every BTF value the headers have was checked by the compile, and matches
    assert set(lay.checked) == {n for n in exp if n not in lay.missing}
    assert len(lay.checked) >= 32
    assert all(lay.values[n] == exp[n] for n in lay.checked)
    assert lay.values["const__GUP_PIN_COUNTING_BIAS"] == 1024


def test_61_headers_alone_record_like_btf(headers_of):
    """6.1 without BTF: the headers give the very defines BTF gives, FOLL_* too."""
    headers_of("6.1")
    f = btf_facts("6.1")
    h = bare(f)
    hl.apply_layout(h, hl.read_header_layout())
    assert h.foll == f.foll and h.foll_source == "headers"
    assert h.header_ret_conv == {"try_grab_page": RET_BOOL, "try_grab_folio": RET_PTR}
    assert defines(h, resolve(h), Options()) == defines(f, resolve(f), Options())


def test_72_headers_alone_lack_foll_pin(headers_of):
    """From 6.2 FOLL_PIN is private to mm/internal.h: without BTF, a clear refusal."""
    headers_of("7.2")
    h = bare(btf_facts("7.2"))
    hl.apply_layout(h, hl.read_header_layout())
    assert h.offsets["page.__folio_index"] == 32 and "page.index" not in h.offsets
    assert "FOLL_PIN" not in h.foll
    with pytest.raises(PagerefError, match="mm/internal.h.*BCC_KERNEL_SOURCE"):
        layout(h)


def test_disagreement_fails_the_compile_with_both_values(headers_of):
    headers_of("6.1")
    exp = hl.btf_expectations(btf_facts("6.1"))
    exp["off__page___refcount"] = 60
    with pytest.raises(PagerefError, match=r"struct page\._refcount: headers 52, BTF 60"):
        hl.read_header_layout(exp)


def test_headers_lacking_a_btf_member_are_refused(headers_of):
    headers_of("6.1")
    exp = hl.btf_expectations(btf_facts("6.1"))
    exp["off__page____folio_index"] = 32    # as if BTF were 6.16+'s
    with pytest.raises(PagerefError, match=r"lack struct page\.__folio_index"):
        hl.read_header_layout(exp)


def test_without_bcc_a_clear_error(monkeypatch, tmp_path):
    (tmp_path / "include").mkdir()
    monkeypatch.setenv("BCC_KERNEL_SOURCE", str(tmp_path))
    monkeypatch.setitem(__import__("sys").modules, "bcc", None)   # import bcc fails
    with pytest.raises(PagerefError, match="BCC is not importable.*python3-bpfcc"):
        hl.read_header_layout()


def test_source_tree_supplies_foll_pin_from_mm_internal_h(tmp_path):
    """A 6.2+ kernel without BTF: with its source tree (BCC_KERNEL_SOURCE), FOLL_PIN
    comes from mm/internal.h's enum, the public flags from mm_types.h's."""
    tree = _headers("6.12")
    if tree is None:
        pytest.skip("no 6.12 headers (bin/setup downloads the lab kernels')")
    from pageref.tracer.kheaders import merged_tree

    src = merged_tree(tree)
    (tmp_path / "include" / "linux").mkdir(parents=True)
    (tmp_path / "include/linux/mm_types.h").write_text(
        (src / "include/linux/mm_types.h").read_text(errors="replace"))
    (tmp_path / "mm").mkdir()
    # the enum as it stands in 6.12's mm/internal.h (not in any headers package)
    (tmp_path / "mm/internal.h").write_text(
        "enum {\n\t/* mark page accessed */\n\tFOLL_TOUCH = 1 << 16,\n"
        "\tFOLL_TRIED = 1 << 17,\n\tFOLL_REMOTE = 1 << 18,\n"
        "\t/* pages must be released via unpin_user_page */\n\tFOLL_PIN = 1 << 19,\n"
        "\tFOLL_FAST_ONLY = 1 << 20,\n\tFOLL_UNLOCKABLE = 1 << 21,\n};\n")
    h = bare(btf_facts("6.12"))
    h._add_headers(tmp_path)
    assert h.foll_source == "headers"
    assert h.foll == btf_facts("6.12").foll      # the running kernel's BTF values


def test_a_headers_read_is_kept_and_checked_again(headers_of, tmp_path):
    """The second read of the same tree compiles nothing (layout_cache.py) and
    is checked against BTF as the first was; a damaged cache file is ignored."""
    from pageref.tracer import layout_cache

    headers_of("6.1")
    exp = hl.btf_expectations(btf_facts("6.1"))
    first = hl.read_header_layout(exp)
    assert first.compiles >= 1 and not first.cached
    again = hl.read_header_layout(exp)
    assert again.cached and again.values == first.values
    assert again.checked == first.checked
    exp["off__page___refcount"] = 60
    with pytest.raises(PagerefError, match=r"struct page\._refcount: headers 52, BTF 60"):
        hl.read_header_layout(exp)
    for f in layout_cache.cache_dir().glob("layout-*.json"):
        f.write_text('{"values": {"off__page___refcount": "rm -rf /"}, "missing": []}')
    assert not hl.read_header_layout().cached     # not trusted: compiled again
