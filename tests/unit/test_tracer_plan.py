"""Probe plans and BPF defines resolved on recorded kernel facts (no kernel needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pageref.errors import PagerefError
from pageref.tracer import kernel_rules
from pageref.tracer.defines import Options, defines, layout
from pageref.tracer.facts import KernelFacts
from pageref.tracer.plan import (
    RET_BOOL,
    RET_PTR,
    RET_ZERO_OK,
    Attached,
    AttachMethod,
    resolve,
)

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "kernels"


def facts(gen: str) -> KernelFacts:
    return KernelFacts.load(FIX / gen)


def plan_of(gen: str) -> dict[str, Attached]:
    return resolve(facts(gen)).by_symbol()


def test_61_grabs_both_forms_with_their_return_types():
    p = plan_of("6.1")
    assert p["try_grab_page"].ret_conv == RET_BOOL
    assert p["try_grab_folio"].ret_conv == RET_PTR
    assert "try_grab_folio_fast" not in p


def test_61_put_paths():
    p = plan_of("6.1")
    assert {"gup_put_folio", "__put_devmap_managed_page_refs", "__bio_release_pages",
            "__folio_put"} <= set(p)
    assert "free_zone_device_page" in p and "free_zone_device_folio" not in p
    assert "dax_layout_busy_page_range" in p and "dax_layout_busy_page" not in p


def test_612_folio_forms():
    p = plan_of("6.12")
    assert p["try_grab_folio"].ret_conv == RET_ZERO_OK
    assert "struct folio *folio" in p["try_grab_folio"].signature
    assert p["try_grab_folio_fast"].ret_conv == RET_PTR
    assert "__put_devmap_managed_folio_refs" in p
    assert "free_zone_device_folio" in p
    # bios pin with BIO_PAGE_PINNED: no bio walk
    assert "__bio_release_pages" not in p


@pytest.mark.parametrize("gen", ["7.2", "6.18-host"])
def test_new_kernels_have_no_devmap_put(gen):
    p = plan_of(gen)
    assert not any(s.startswith("__put_devmap") for s in p)
    assert {"gup_put_folio", "unpin_user_folio", "unpin_user_page", "__folio_put",
            "free_zone_device_folio"} <= set(p)


def test_72_gup_put_folio_inlined_entry_points_attached_as_outer():
    pl = resolve(facts("7.2"))
    outer = {a.symbol for a in pl.attached if a.ret and a.probe == "put"}
    assert {"unpin_user_page", "unpin_user_folio", "unpin_folio", "gup_put_folio"} <= outer
    assert any("inlined" in u for u in pl.uncovered)


@pytest.mark.parametrize("gen, fsdax, private, p2pdma", [
    ("5.10", 1, 1, 1), ("5.14", 1, 1, 1), ("5.15", 1, 1, 1), ("6.1", 1, 0, 1),
    ("6.6", 1, 0, 1), ("6.8", 1, 0, 1), ("6.12", 1, 0, 1), ("7.2", 0, 0, 0),
    ("6.18-host", 0, 0, 0)])
def test_idle_refcount_from_what_the_kernel_has(gen, fsdax, private, p2pdma):
    """fsdax and p2pdma: 0 with the DAX mapping-reference series; device-private:
    1-based until zone_device_page_init (ef233450898f, 6.1)."""
    idle, why = kernel_rules.idle_refcount(facts(gen))
    assert idle["fsdax"] == fsdax
    assert why.startswith(f"fsdax idles at {fsdax}")
    if fsdax == 0:
        assert "vmf_insert_page_mkwrite" in why
    assert idle["private"] == idle["coherent"] == private
    assert idle["p2pdma"] == p2pdma and idle["generic"] == 1
    assert ("private/coherent at 0: zone_device_page_init" in why) == (private == 0)


def test_old_kernels():
    """5.10 (a lab boot's facts): the 5.x reference paths, not names of later kernels.
    (Was: __put_devmap_managed_page and dax_layout_busy_page on 5.10, and no free
    probe; the first is 5.18-only, 5.10 has the _range form and
    free_devmap_managed_page: issue 13.)"""
    p10 = plan_of("5.10")
    assert set(p10) >= {"try_grab_page", "try_grab_compound_head", "unpin_user_page",
                        "unpin_user_pages", "unpin_user_pages_dirty_lock",
                        "put_devmap_managed_page", "bio_release_pages", "__put_page",
                        "free_devmap_managed_page", "dax_layout_busy_page_range"}
    assert not {"__put_devmap_managed_page", "dax_layout_busy_page",
                "unpin_user_page_range_dirty_lock"} & set(p10)
    assert p10["try_grab_page"].ret_conv == RET_BOOL
    assert p10["try_grab_compound_head"].ret_conv == RET_PTR
    for gen in ("5.14", "5.15"):
        p = plan_of(gen)
        assert {"dax_layout_busy_page_range", "try_grab_compound_head",
                "unpin_user_page_range_dirty_lock", "put_devmap_managed_page",
                "free_devmap_managed_page"} <= set(p), gen
        assert "__put_devmap_managed_page" not in p, gen
    pl = resolve(facts("5.10"))
    assert not any(m.probe == "free" for m in pl.missing)
    p66 = plan_of("6.6")
    assert p66["try_grab_page"].ret_conv == RET_ZERO_OK  # int since 6.2
    assert p66["try_grab_folio"].ret_conv == RET_PTR


def test_uncovered_always_lists_inline_puts():
    for gen in ("5.10", "6.1", "6.12", "7.2"):
        pl = resolve(facts(gen))
        assert any("inline" in u for u in pl.uncovered), gen
        assert pl.covered


def test_not_traceable_is_missing_with_reason():
    f = facts("6.1")
    f.traceable = [s for s in f.symbols if s != "gup_put_folio"]
    pl = resolve(f)
    assert "gup_put_folio" not in pl.symbols()
    why = {m.symbol: m.why for m in pl.missing}
    assert "not traceable" in why["gup_put_folio"]
    # without gup_put_folio the batch entry point is used
    assert "unpin_user_pages" in pl.symbols()


@pytest.mark.parametrize("gen, pgmap_type_off, index_off, order_off", [
    ("6.1", 96, 32, 81), ("6.12", 104, 32, 64), ("7.2", 96, 32, 64), ("6.18-host", 104, 32, 64)])
def test_layout_per_kernel(gen, pgmap_type_off, index_off, order_off):
    lay = layout(facts(gen))
    assert lay.off["OFF_PAGE_REFCOUNT"] == 52
    assert lay.off["OFF_PGMAP_TYPE"] == pgmap_type_off
    assert lay.off["OFF_PAGE_INDEX"] == index_off
    assert lay.off["OFF_FOLIO_ORDER"] == order_off
    # Debian: NODES_SHIFT 10, 5 zones (3 bits) -> zone at bit 51
    assert (lay.zones_pgshift, lay.zones_mask, lay.zone_device) == (51, 7, 4)


def test_72_compound_info_is_a_mask():
    d = layout(facts("7.2")).off
    assert d.get("COMPOUND_INFO_MASK") == 1
    assert "COMPOUND_INFO_MASK" not in layout(facts("6.12")).off


def test_nodes_shift_from_nodemask_size_without_config():
    f = facts("6.12")
    f.config = {}
    assert layout(f).nodes_shift == 10  # sizeof(nodemask_t) 128 bytes = 1024 nodes


def test_foll_values_per_kernel():
    assert facts("6.1").foll["FOLL_PIN"] == 0x40000   # #define in 6.1's mm.h
    assert facts("6.1").foll_source == "headers"
    assert facts("7.2").foll["FOLL_PIN"] == 0x80000   # enum in BTF
    assert facts("7.2").foll_source == "btf"
    assert facts("6.1").foll["FOLL_LONGTERM"] != facts("7.2").foll["FOLL_LONGTERM"]


def test_defines_carry_ret_conventions_and_filters():
    f = facts("6.1")
    pl = resolve(f)
    d = defines(f, pl, Options(pgmap_types=(3,), filter_pids=True, stacks=True))
    assert d["RET_OK_TRY_GRAB_PAGE"] == RET_BOOL and d["RET_OK_TRY_GRAB_FOLIO"] == RET_PTR
    assert d["PGMAP_MASK"] == 1 << 3 and d["FILTER_PIDS"] == 1 and d["WANT_STACKS"] == 1
    assert d["VMEMMAP_BASE_ADDR"] == f.symbols["vmemmap_base"]["addr"]
    assert "ALL_PAGES" not in d
    assert defines(f, pl, Options(all_pages=True))["ALL_PAGES"] == 1


def test_no_layout_is_a_clear_error():
    f = facts("6.1")
    f.has_btf, f.layout_source = False, None   # no BTF, headers not read
    with pytest.raises(PagerefError, match="no BTF.*linux-headers"):
        layout(f)


def test_pgmap_names_from_enum():
    names = kernel_rules.pgmap_type_names(facts("6.1"))
    assert names[3] == "fsdax" and names[4] == "generic"


def test_72_mapping_references_and_batched_release():
    """7.2's DAX mappings hold references: the fault's vmf_insert_* and the zap's
    folios_put_refs are traced there, and only there."""
    p = plan_of("7.2")
    assert {"vmf_insert_page_mkwrite", "vmf_insert_folio_pmd", "folios_put_refs"} <= set(p)
    assert p["vmf_insert_page_mkwrite"].method is AttachMethod.KPROBE
    assert p["vmf_insert_page_mkwrite"].ret_conv is None
    for gen in ("6.1", "6.12"):
        assert not any(s.startswith("vmf_insert") for s in plan_of(gen)), gen
    assert "folios_put_refs" in plan_of("6.12") and "folios_put_refs" not in plan_of("6.1")
    lay = layout(facts("7.2")).off
    assert (lay["OFF_FBATCH_NR"], lay["OFF_FBATCH_FOLIOS"]) == (0, 8)


def test_page_ref_tracepoints_attached_where_the_kernel_has_them():
    """CONFIG_DEBUG_PAGE_REF (the lab's 6.12-debug): all seven as raw tracepoints,
    a covered line; a stock kernel says why it has none; --no-page-ref too."""
    from pageref.tracer.page_ref import PAGE_REF_NAMES

    debug = facts("6.12-debug")
    plan = resolve(debug)
    refs = plan.for_probe("ref")
    assert [a.symbol for a in refs] == list(PAGE_REF_NAMES)
    assert {a.method for a in refs} == {AttachMethod.RAW_TRACEPOINT}
    assert any("page_ref tracepoints" in c for c in plan.covered)
    assert [e["kinds"] for e in plan.header_plan() if e["probe"] == "ref"] == [["ref"]] * 7
    # the ordinary plan is the same as without them
    assert [a.symbol for a in resolve(debug, page_ref=False).attached] == \
        [a.symbol for a in plan.attached if a.probe != "ref"]
    off = resolve(debug, page_ref=False)
    assert [m.why for m in off.missing if m.probe == "ref"] == ["not asked for (--no-page-ref)"]
    for gen in ("5.10", "6.1", "6.12", "7.2"):
        stock = resolve(facts(gen))
        assert not stock.for_probe("ref")
        why = [m.why for m in stock.missing if m.probe == "ref"]
        assert len(why) == 1 and "CONFIG_DEBUG_PAGE_REF" in why[0], gen


def test_page_ref_half_present_is_not_attached():
    f = facts("6.12-debug")
    del f.symbols["__tracepoint_page_ref_freeze"]
    plan = resolve(f)
    assert not plan.for_probe("ref")
    assert any("page_ref_freeze" in m.why for m in plan.missing if m.probe == "ref")


def test_facts_want_every_page_ref_marker():
    from pageref.tracer.facts import WANTED_MARKERS
    from pageref.tracer.page_ref import MARKERS

    assert set(MARKERS) <= set(WANTED_MARKERS)


def test_doctor_says_whether_the_page_ref_tracepoints_are_there():
    from pageref.tracer.doctor import check_page_ref

    assert check_page_ref(facts("6.12-debug")).verdict == "OK"
    stock = check_page_ref(facts("6.12"))
    assert stock.verdict == "INFO" and "CONFIG_DEBUG_PAGE_REF off" in stock.detail
