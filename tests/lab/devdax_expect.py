"""What each kernel generation does with device DAX pages and the real
clients in the lab, stated once (tests/lab/test_lab_devdax.py). Measured in
the lab, with the kernel source that explains it.
"""

from __future__ import annotations

DEVDAX_EXPECT: dict[str, dict] = {
    # measured in the lab (Debian 5.10.0-46), 2 December 2026
    "5.10": {
        "idle": 1,
        # 5.x has no compound ZONE_DEVICE pages (compound devmap came in 5.17):
        # every device DAX page is its own order-0 page
        "order": 0,
        # fs/io_uring.c io_sqe_buffer_register(): pin_user_pages(FOLL_LONGTERM),
        # then a vma with a vm_file that is not hugetlbfs -> -EOPNOTSUPP and
        # unpin_user_pages() of what it pinned
        "uring_accepts": False,
        "uring_pins_then_unpins": True,
        # put_page(): page_is_devmap_managed() is false for a generic pgmap,
        # the decrement is inline: the pipe's puts are not traced
        "pipe_puts_traced": False,
        # O_DIRECT takes FOLL_GET references (iov_iter_get_pages ->
        # get_user_pages_fast). Its release: the write's completion calls
        # bio_release_pages() (probed); the read's goes through
        # bio_check_pages_dirty(), whose copy of bio_release_pages() is inlined
        # in block/bio.c, and put_page() is inline for a generic page: the
        # read's puts are not seen (pageref probes lists the path as uncovered)
        "odirect_take": "get",
        "odirect_read_puts_traced": False,
        # FOLL_LONGTERM on fsdax (perftest's ibv_reg_mr, gup_longterm's io_uring
        # cases): pinned, then __gup_longterm_locked's check_dax_vmas() refuses
        # and unpin_user_pages() drops every pin
        "rdma_fsdax_pins_then_unpins": True,
        # the 6.12 selftest's case 48 ("io_uring fixed buffer with MAP_PRIVATE
        # file mapping ... with local tmpfile") expects a refusal 5.10 does not
        # make; its pages are private copies, not DAX pages (none traced)
        "gup_longterm_not_ok": [48],
    },
    "6.1": {
        # the 6.12 selftest's case 48 (io_uring fixed buffer, MAP_PRIVATE file
        # mapping, local tmpfile) expects a refusal 6.1 does not make, as on
        # 5.10 (measured on ext4 and xfs, 2 December 2026)
        "gup_longterm_not_ok": [48],
        # memmap_init_zone_device() leaves ZONE_DEVICE pages at refcount 1; the
        # PMD mapping device DAX installs (vmf_insert_pfn_pmd) takes none.
        "idle": 1,
        # device DAX pages are compound (pgmap->vmemmap_shift, "device-dax:
        # compound devmap support", 5.17): a 2 MiB unit is one order-9 folio
        "order": 9,
        # io_uring/rsrc.c io_pin_pages(): pin_user_pages(FOLL_LONGTERM) succeeds
        # on device DAX, then "don't support file backed memory": a VMA with
        # a vm_file that is neither shmem nor hugetlbfs -> -EOPNOTSUPP and
        # unpin_user_pages() of what it pinned.
        "uring_accepts": False,
        "uring_pins_then_unpins": True,
        # put_page() on a device DAX page: put_devmap_managed_page_refs() calls
        # __put_devmap_managed_page_refs(), which returns false for a pgmap
        # that is not MEMORY_DEVICE_FS_DAX (mm/memremap.c), and folio_put()
        # decrements inline: the pipe's puts are not traced.
        "pipe_puts_traced": False,
        # O_DIRECT takes FOLL_GET references (iov_iter_get_pages2) and
        # __bio_release_pages drops them: traced (the bio walk)
        "odirect_take": "get",
    },
    # measured in the lab (Debian 6.12.107+deb13), 2 December 2026
    "6.12": {
        "idle": 1,
        "order": 9,
        # io_pin_pages() has no file-backed check any more; GUP's
        # check_vma_flags() refuses FOLL_LONGTERM only on fsdax, and
        # writable_file_mapping_allowed() passes: device DAX needs no dirty
        # tracking (dev_dax_aops, no writeback). Pinned until unregistered.
        "uring_accepts": True,
        # __put_devmap_managed_folio_refs() still returns false for a
        # non-fsdax pgmap: the pipe's puts are inline, untraced
        "pipe_puts_traced": False,
        # from 6.5 the block layer pins O_DIRECT buffers (FOLL_PIN) and
        # unpins through unpin_user_folio
        "odirect_take": "pin",
    },
    # measured in the lab (Debian 7.3.x, trixie-backports, the "newest"
    # generation), 2 December 2026. If Debian's newest moves on and a test
    # below fails, what the new kernel does is to be written here.
    "newest": {
        "idle": 1,
        "order": 9,
        # without devmap PMDs ("mm: remove devmap", 6.18) device DAX maps its
        # folios as ordinary PMD leaves: vmf_insert_folio_pmd() takes a
        # reference for the mapping (probed, a `get`), munmap's
        # folios_put_refs() drops it. A first pin finds the refcount at idle + 1.
        "mapping_refs": 1,
        # check_vma_flags() refuses FOLL_LONGTERM only on fsdax: accepted, one
        # pin per folio kept until IORING_UNREGISTER_BUFFERS, as on 6.12
        "uring_accepts": True,
        # gup-fast now reaches device DAX folios through gup_fast_pmd_leaf(),
        # whose gup_fast_folio_allowed() will not long-term pin a file-backed
        # mapping it cannot check locklessly: try_grab_folio_fast() pins, the
        # pins are given back (gup_put_folio) and the slow path pins again.
        # Measured: pin 4 / unpin 4 at once, then pin 1 + 3, unpin 3, unpin 1
        # at unregister: twice the pages pinned and unpinned.
        "uring_pin_rounds": 2,
        # folio_put() on a generic pgmap is an inline decrement: the pipe's
        # puts are not traced (the only put after the drain is munmap's
        # release of the mapping reference)
        "pipe_puts_traced": False,
        # the block layer pins O_DIRECT buffers (FOLL_PIN, 6.5+)
        "odirect_take": "pin",
        # the 6.12 selftest's cases all pass or skip on 7.3
        "gup_longterm_not_ok": [],
    },
}
