// SPDX-License-Identifier: GPL-2.0
/*
 * pageref: the struct offsets and enum values pageref.bpf.c needs, read from
 * the kernel's headers, for kernels without BTF. Compiled by BCC and never
 * loaded: each fact is a function `fact_<name>` whose code is `r0 = value;
 * exit`, and tracer/header_layout.py reads the value from the bytecode.
 *
 * Every fact is switched by WANT_<name> (1 or 0: the headers do not have it,
 * known from the previous compile's errors), a -D integer; nothing else
 * reaches this file. header_layout.py compares the values with BTF's.
 *
 * Names: off__<struct>__<member>, size__<type>, enum__<enum>__<ENUMERATOR>,
 * const__<NAME>, ret__<function> (1 bool, 2 int, 3 struct folio *, 0 other).
 */
#include <linux/mm_types.h>
#include <linux/mm.h>
#include <linux/mmzone.h>
#include <linux/nodemask.h>
#include <linux/page-flags.h>
#include <linux/memremap.h>
#include <linux/blk_types.h>
#include <linux/bvec.h>
/* struct folio_batch: pagevec.h, folio_batch.h once pagevec was gone (7.x) */
#if __has_include(<linux/folio_batch.h>)
#include <linux/folio_batch.h>
#elif __has_include(<linux/pagevec.h>)
#include <linux/pagevec.h>
#endif

#define PR_CAT_(a, b) a##b
#define PR_CAT(a, b) PR_CAT_(a, b)
#define PR_IF_1(...) __VA_ARGS__
#define PR_IF_0(...)
#define FACT(name, expr) PR_CAT(PR_IF_, WANT_##name)( \
	int fact_##name(void *ctx) { return (expr); })
#define RET_CONV(call) _Generic((call), _Bool: 1, int: 2, struct folio *: 3, default: 0)

FACT(off__page__flags, offsetof(struct page, flags))
FACT(off__page___refcount, offsetof(struct page, _refcount))
FACT(off__page__mapping, offsetof(struct page, mapping))
FACT(off__page__index, offsetof(struct page, index))
FACT(off__page____folio_index, offsetof(struct page, __folio_index))
FACT(off__page__compound_head, offsetof(struct page, compound_head))
FACT(off__page__compound_info, offsetof(struct page, compound_info))
FACT(off__page__pgmap, offsetof(struct page, pgmap))
FACT(off__folio__pgmap, offsetof(struct folio, pgmap))
FACT(off__folio___pincount, offsetof(struct folio, _pincount))
FACT(off__folio___folio_order, offsetof(struct folio, _folio_order))
FACT(off__folio___flags_1, offsetof(struct folio, _flags_1))
FACT(off__dev_pagemap__type, offsetof(struct dev_pagemap, type))
FACT(off__bio__bi_io_vec, offsetof(struct bio, bi_io_vec))
FACT(off__bio__bi_vcnt, offsetof(struct bio, bi_vcnt))
FACT(off__bio__bi_flags, offsetof(struct bio, bi_flags))
FACT(off__bio_vec__bv_page, offsetof(struct bio_vec, bv_page))
FACT(off__bio_vec__bv_len, offsetof(struct bio_vec, bv_len))
FACT(off__bio_vec__bv_offset, offsetof(struct bio_vec, bv_offset))
FACT(off__folio_batch__nr, offsetof(struct folio_batch, nr))
FACT(off__folio_batch__folios, offsetof(struct folio_batch, folios))

FACT(size__page, sizeof(struct page))
FACT(size__folio, sizeof(struct folio))
FACT(size__nodemask_t, sizeof(nodemask_t))
FACT(size__bio_vec, sizeof(struct bio_vec))

FACT(enum__zone_type__ZONE_DEVICE, ZONE_DEVICE)
FACT(enum__zone_type____MAX_NR_ZONES, __MAX_NR_ZONES)
FACT(enum__memory_type__MEMORY_DEVICE_PRIVATE, MEMORY_DEVICE_PRIVATE)
FACT(enum__memory_type__MEMORY_DEVICE_COHERENT, MEMORY_DEVICE_COHERENT)
FACT(enum__memory_type__MEMORY_DEVICE_FS_DAX, MEMORY_DEVICE_FS_DAX)
FACT(enum__memory_type__MEMORY_DEVICE_GENERIC, MEMORY_DEVICE_GENERIC)
FACT(enum__memory_type__MEMORY_DEVICE_PCI_P2PDMA, MEMORY_DEVICE_PCI_P2PDMA)
FACT(enum__pageflags__PG_head, PG_head)
FACT(enum__pageflags____NR_PAGEFLAGS, __NR_PAGEFLAGS)
FACT(enum__bio_flags__BIO_PAGE_PINNED, BIO_PAGE_PINNED)
FACT(enum__bio_flags__BIO_PAGE_REFFED, BIO_PAGE_REFFED)
FACT(enum__bio_flags__BIO_NO_PAGE_REF, BIO_NO_PAGE_REF)

/* #defines up to 6.1; from 6.2 the public ones are an enum in mm_types.h and
 * FOLL_PIN/FOLL_FAST_ONLY are private to mm/internal.h, which no headers
 * package ships ("mm/gup: move private gup FOLL_ flags to internal.h"). */
FACT(const__FOLL_WRITE, FOLL_WRITE)
FACT(const__FOLL_GET, FOLL_GET)
FACT(const__FOLL_LONGTERM, FOLL_LONGTERM)
FACT(const__FOLL_PIN, FOLL_PIN)
FACT(const__FOLL_FAST_ONLY, FOLL_FAST_ONLY)
FACT(const__GUP_PIN_COUNTING_BIAS, GUP_PIN_COUNTING_BIAS)

/* Through a pointer of the function's own type: an undeclared function is an
 * error here, where a plain call would be an implicit int declaration. */
FACT(ret__try_grab_page, RET_CONV(((__typeof__(&try_grab_page))0)(0, 0)))
