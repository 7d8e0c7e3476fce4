/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The one event pageref's BPF program sends to user space. Mirrored once in
 * Python (tracer/event.py); tests/unit/test_tracer_event.py checks that
 * sizes and offsets agree. Change both together.
 */
#ifndef PAGEREF_H
#define PAGEREF_H

/* Event kinds (pageref.trace.schema.KINDS names, see event.py KIND_NAMES) */
#define KIND_GET 0
#define KIND_PIN 1
#define KIND_PUT 2
#define KIND_UNPIN 3
#define KIND_FREE 4
#define KIND_BUSY 5
#define KIND_GRAB_FAILED 6
/* a walk stopped: pages from pfn not walked, refs references; ret = how many */
#define KIND_LOST 7
/* one refcount change from a page_ref:* tracepoint: refs = the signed change,
 * refcount = before it, ret = after it (bpf/page_ref.bpf.c) */
#define KIND_REF 8

/* Probe targets: one id per kernel function pageref knows (plan.py TARGETS). */
#define PROBE_TRY_GRAB_PAGE 1
#define PROBE_TRY_GRAB_FOLIO 2
#define PROBE_TRY_GRAB_FOLIO_FAST 3
#define PROBE___PUT_PAGE 4
#define PROBE___FOLIO_PUT 5
#define PROBE___PUT_DEVMAP_MANAGED_PAGE 6
#define PROBE___PUT_DEVMAP_MANAGED_PAGE_REFS 7
#define PROBE___PUT_DEVMAP_MANAGED_FOLIO_REFS 8
#define PROBE_GUP_PUT_FOLIO 9
#define PROBE_UNPIN_USER_PAGE 10
#define PROBE_UNPIN_USER_PAGES 11
#define PROBE_UNPIN_USER_FOLIO 12
#define PROBE___BIO_RELEASE_PAGES 13
#define PROBE_FREE_ZONE_DEVICE_PAGE 14
#define PROBE_FREE_ZONE_DEVICE_FOLIO 15
#define PROBE_DAX_LAYOUT_BUSY_PAGE_RANGE 16
#define PROBE_DAX_LAYOUT_BUSY_PAGE 17
#define PROBE_UNPIN_FOLIO 18
#define PROBE_VMF_INSERT_PAGE_MKWRITE 19
#define PROBE_VMF_INSERT_FOLIO_PMD 20
#define PROBE_VMF_INSERT_FOLIO_PUD 21
#define PROBE_FOLIOS_PUT_REFS 22
#define PROBE_TRY_GRAB_COMPOUND_HEAD 23
#define PROBE_PUT_DEVMAP_MANAGED_PAGE 24
#define PROBE_FREE_DEVMAP_MANAGED_PAGE 25
#define PROBE_BIO_RELEASE_PAGES 26
#define PROBE_UNPIN_USER_PAGES_DIRTY_LOCK 27
#define PROBE_UNPIN_USER_PAGE_RANGE_DIRTY_LOCK 28
/* The kernel's page_ref:* tracepoints (CONFIG_DEBUG_PAGE_REF; tracer/page_ref.py) */
#define PROBE_PAGE_REF_SET 29
#define PROBE_PAGE_REF_MOD 30
#define PROBE_PAGE_REF_MOD_AND_TEST 31
#define PROBE_PAGE_REF_MOD_AND_RETURN 32
#define PROBE_PAGE_REF_MOD_UNLESS 33
#define PROBE_PAGE_REF_FREEZE 34
#define PROBE_PAGE_REF_UNFREEZE 35

#define PAGEREF_NO_PGMAP 0xff

struct pageref_event {
	__u64 ts_ns;		/* bpf_ktime_get_ns() (CLOCK_MONOTONIC) */
	__u64 page;		/* struct page * of the head page; 0 for busy with no page */
	__u64 pfn;		/* pfn of `page` */
	__u64 mapping;		/* page->mapping (busy: the address_space passed in) */
	__u64 index;		/* page->index / __folio_index */
	__u64 flags;		/* GUP flags (running kernel's FOLL_* values) */
	__s64 ret;		/* grab: the function's return value */
	__u32 pid;		/* tgid */
	__u32 tid;
	__s32 refcount;		/* _refcount just before the operation */
	__s32 refs;		/* references taken or dropped (pins: pin count, no bias) */
	__s32 pincount;		/* large folio _pincount before the operation; -1 none */
	__s32 stack_id;		/* kernel stack id in the `stacks` map; -1 none */
	__u32 cpu;
	__u16 probe;		/* PROBE_* */
	__u8 kind;		/* KIND_* */
	__u8 order;		/* folio order (0: small page) */
	__u8 zone_device;	/* page is in ZONE_DEVICE */
	__u8 pgmap_type;	/* enum memory_type value, PAGEREF_NO_PGMAP if none */
	__u8 pad[6];
	char comm[16];
};

#endif /* PAGEREF_H */
