"""What each kernel generation must show in the lab, stated once.

Numbers come from the kernel's sources (cited) and were checked in the lab.
A generation without an entry here gets the generic assertions only; the
generation-specific tests skip with that reason until its facts are written.

AWAITS names, per generation, the probe targets the kernel has (seen in a lab
boot: tests/fixtures/kernels/5.10/) but pageref's probe plan does not
attach yet, and the tests that cannot hold until it does. While the booted
plan lacks any of them those tests are xfail with that reason (conftest.py
`awaited_targets`); once the plan attaches them they run for real.
"""

from __future__ import annotations

# The 5.x reference paths (issue 13): gup-fast grabs (try_grab_compound_head,
# static in 5.10 mm/gup.c but present and traceable in Debian's build), the
# devmap put (put_devmap_managed_page, mm/swap.c 5.10-5.17) and its wake-up at
# refcount 1 (free_devmap_managed_page, mm/memremap.c), and O_DIRECT's
# completion (bio_release_pages, block/bio.c), and process_vm_readv/writev's
# unpin (unpin_user_pages_dirty_lock -> static put_compound_head, mm/gup.c).
TARGETS_5X = ("try_grab_compound_head", "put_devmap_managed_page",
              "free_devmap_managed_page", "bio_release_pages", "unpin_user_pages_dirty_lock")

# Why each listed test cannot hold on 5.10 with today's plan (checked against
# the plan `pageref probes --kernel-facts tests/fixtures/kernels/5.10`
# prints: try_grab_page, unpin_user_page(s), __put_page, the busy probe):
# O_DIRECT and vmsplice grab through gup-fast (try_grab_compound_head) and drop
# through put_page -> put_devmap_managed_page, neither traced; pvm's unpins go
# through unpin_user_pages_dirty_lock; no free probe (free_devmap_managed_page).
AWAITS: dict[str, dict] = {
    "5.10": {"targets": TARGETS_5X, "tests": {
        "test_lab_suite::test_events_from_every_logical_probe",   # no free probe
        "test_lab_suite::test_idle_refcount",                # odirect grabs unseen
        "test_lab_suite::test_pin_adds_bias",                # pvm unpins unseen
        "test_lab_suite::test_foll_pin_and_foll_get_told_apart",
        "test_lab_suite::test_unmapped_truncate_does_not_wait",  # pipe puts unseen
        "test_lab_suite::test_anomalies_are_the_expected_ones",
        "test_lab_no_btf::test_61_same_results_as_with_btf",  # the same, without BTF
        "test_lab_pmd::test_every_page_pinned_and_unpinned_twice",
        "test_lab_pmd::test_small_page_kernels_pin_each_page_with_the_bias",
        "test_lab_pmd::test_no_rule_anomaly",
    }},
}

EXPECT: dict[str, dict] = {
    # Debian 11's 5.10 (bullseye-security). From the 5.10 sources, checked in a
    # lab boot (tests/fixtures/kernels/5.10/).
    "5.10": {
        # put_devmap_managed_page (mm/swap.c 5.10): at refcount 1 it calls
        # free_devmap_managed_page, which wakes the layout waiter: 1-based.
        "idle_fsdax": 1,
        "pin_bias": 1024,           # GUP_PIN_COUNTING_BIAS, small pages only on 5.x
        # include/linux/mm.h (5.10), as the boot's headers say (fixture facts.json).
        "foll_get": 0x04,
        "foll_pin": 0x40000,
        "free_events": 0,           # fsdax idles at 1: never freed by the mm
        "mapped_refs": 0,           # no mapping references before the 6.15 rework
        # O_DIRECT takes FOLL_GET references (iov_iter_get_pages ->
        # get_user_pages_fast); the block layer pins only from 6.5.
        "odirect_pins": False,
        # dax_layout_busy_page_range (fs/dax.c 5.10) returns NULL when
        # !mapping_mapped(): an unmapped file's truncate does not wait.
        "unmapped_truncate_waits": False,
        # bio_release_pages -> put_page -> put_devmap_managed_page ->
        # free_devmap_managed_page -> wake_up_var: O_DIRECT completion wakes the
        # waiter (the 6.1 missed wake-up came with __bio_release_pages' folio_put).
        "bio_release_wakes": True,
        # Measured (lab, 2026-12-02): io_uring's FOLL_LONGTERM registration on
        # fsdax PINS each page (try_grab_page, FOLL_PIN|FOLL_LONGTERM, +1024)
        # and unpins it again (unpin_user_pages, 1025 -> 1) before it returns
        # EOPNOTSUPP: 5.10 refuses only after pinning (pin_user_pages, then a
        # vma check: __gup_longterm_locked's check_dax_vmas in mm/gup.c, and
        # io_sqe_buffer_register's own in fs/io_uring.c; both release with
        # unpin_user_pages). Which of the two refused is not visible here.
        "longterm_pinned_then_released": True,
        # doctor's header/BTF check: 5.10 has no folio, no _pincount and none
        # of the 5.19+ put paths, so fewer offsets to compare (measured: 26).
        "layout_checks_min": 26,
    },
    "6.1": {
        # fsdax pages are 1-based (mm/memremap.c, __put_devmap_managed_page_refs:
        # "fsdax page refcounts are 1-based"), until the 6.15 DAX refcount rework.
        "idle_fsdax": 1,
        # GUP_PIN_COUNTING_BIAS (include/linux/mm.h), small pages.
        "pin_bias": 1024,
        # include/linux/mm.h (6.1): FOLL_GET 0x04, FOLL_LONGTERM 0x10000, FOLL_PIN 0x40000.
        "foll_get": 0x04,
        "foll_pin": 0x40000,
        # fsdax pages never reach free_zone_device_page on 6.1: they idle at 1
        # and are "freed" by the file system's block allocator, not by the mm.
        "free_events": 0,
        # __bio_release_pages (6.1.y stable, "block: Fix page refcounts for
        # unaligned buffers") drops O_DIRECT references with folio_put(),
        # bypassing put_devmap_managed_page(): no wake_up_var() for a truncate
        # sleeping in ext4_break_layouts / xfs_break_dax_layouts. The punch
        # workload's waiter is only released by its watchdog's signal.
        "bio_release_wakes": False,
        # dax_layout_busy_page_range() returns NULL when !mapping_mapped():
        # once the file is unmapped, truncate does not wait for references
        # still held by a pipe (vmsplice). The analysis reports it as
        # busy_check_missed_reference, once per file system (the kernels where
        # this is False; none where it is True).
        "unmapped_truncate_waits": False,
        # O_DIRECT takes FOLL_GET references on 6.1; from 6.5 the block layer
        # pins user pages (iov_iter_extract_pages, "block: convert
        # bio_map_user_iov to use iov_iter_extract_pages" and friends).
        "odirect_pins": False,
        # References a DAX mapping itself holds on a mapped small page: none
        # before the 6.15 rework.
        "mapped_refs": 0,
    },
    # Facts for 6.12 and 7.2 were measured in the lab (docs/kernels.md).
    "6.12": {
        "idle_fsdax": 1,            # __put_devmap_managed_folio_refs: still 1-based
        "pin_bias": 1024,
        "free_events": 0,           # fsdax still never reaches free_zone_device_folio
        # O_DIRECT pins (FOLL_PIN) and unpins through unpin_user_folio ->
        # gup_put_folio -> folio_put_refs -> put_devmap_managed_folio_refs,
        # which wakes the truncate waiter: no lost wake-up.
        "bio_release_wakes": True,
        "unmapped_truncate_waits": False,
        "odirect_pins": True,
        "mapped_refs": 0,
    },
    "7.2": {
        # 6.15 "fs/dax: Fix ZONE_DEVICE page reference counts": fsdax pages
        # idle at 0 and a DAX mapping holds a real reference
        # (vmf_insert_page_mkwrite), so a mapped small page sits at 1.
        "idle_fsdax": 0,
        "mapped_refs": 1,
        "pin_bias": 1024,
        # Every fsdax page whose last reference goes is freed through
        # free_zone_device_folio: 88 in the suite (measured in four runs).
        "free_events": 88,
        "bio_release_wakes": True,
        # dax_layout_busy_page_range() no longer skips an unmapped file: after
        # munmap the truncate still finds the pipe's pages busy (refcount 1)
        # and waits until their last put frees them (free_zone_device_folio
        # wakes it). Measured: the busy check returns each page, then NULL.
        "unmapped_truncate_waits": True,
        "odirect_pins": True,
        # gup-fast refuses FOLL_LONGTERM on fsdax and pageref sees it: one
        # grab_failed event with FOLL_LONGTERM per registration attempt.
        "longterm_grab_failed": True,
        # No "tracer_gaps" any more: the four double_free that the untraced
        # mapping reference caused are gone since the tracer follows it
        # (vmf_insert_page_mkwrite as a get, folios_put_refs on zap).
    },
}
# `newest` (7.3 today) is held to the post-6.15 rules measured on 7.2; the
# generation tests check the booted kernel really has that shape (its probe
# plan: free_zone_device_folio and __folio_put, no devmap put), so the day
# Debian's newest kernel changes shape the tests say so instead of passing.
EXPECT["newest"] = dict(EXPECT["7.2"])
