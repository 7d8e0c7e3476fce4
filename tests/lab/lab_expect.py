"""What each kernel generation must show in the lab, stated once.

Numbers come from the kernel's sources (cited) and were checked in the lab.
A generation without an entry here gets the generic assertions only; the
generation-specific tests skip with that reason until its facts are written.
"""

from __future__ import annotations

EXPECT: dict[str, dict] = {
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
        # still held by a pipe (vmsplice).
        "unmapped_truncate_waits": False,
    },
}
