// SPDX-License-Identifier: GPL-2.0
/*
 * pageref: who takes and drops references on ZONE_DEVICE pages.
 *
 * BCC program. It includes no kernel struct definitions: every field is read at
 * a byte offset taken from the running kernel's BTF (without BTF, from its
 * headers: kernel_layout.c) and passed as a -D define by
 * tracer/defines.py (which validates every number). That keeps the
 * compile short (no kernel headers to parse) and right on kernels whose layout
 * moved (page->index -> __folio_index in 6.16, page->pgmap -> folio->pgmap).
 *
 * Probe handlers are named on_<function> (entry) and ret_<function> (return);
 * the recorder attaches those its probe plan selected, nothing else. Handlers
 * that need optional offsets (a plan Target's `requires`) are compiled only
 * under HAVE_<FUNCTION>, which defines.py emits exactly for the targets the
 * plan attaches, and the plan attaches them only when those offsets exist.
 */
#include <uapi/linux/ptrace.h>
#include "pageref.h"

/* Required numbers: fail the compile, never read a wrong field. */
#if !defined(OFF_PAGE_FLAGS) || !defined(OFF_PAGE_REFCOUNT) || !defined(OFF_PAGE_MAPPING) || \
	!defined(OFF_PAGE_INDEX) || !defined(OFF_PAGE_COMPOUND_HEAD) || !defined(OFF_PGMAP) || \
	!defined(OFF_PGMAP_TYPE) || !defined(SIZEOF_PAGE) || !defined(ZONES_PGSHIFT) || \
	!defined(ZONES_MASK) || !defined(ZONE_DEVICE_ID) || !defined(PG_HEAD) || \
	!defined(FOLL_GET_VAL) || !defined(FOLL_PIN_VAL) || !defined(PGMAP_FSDAX) || \
	!defined(RET_OK_TRY_GRAB_PAGE) || !defined(RET_OK_TRY_GRAB_FOLIO)
#error "pageref: a required -D define is missing (tracer/defines.py builds them)"
#endif
#if !defined(VMEMMAP_BASE_ADDR) && !defined(VMEMMAP_START)
#error "pageref: need VMEMMAP_BASE_ADDR (address of vmemmap_base) or VMEMMAP_START"
#endif
/*
 * Walks of whole structures (a bio's pages, an unpin array) run in chunks of
 * WALK_CHUNK items, one BPF program per chunk, chained by tail calls (BCC
 * cannot relocate a bpf_loop() callback, so bpf_loop is out of reach here).
 * The kernel stops a chain after MAX_TAIL_CALL_CNT (32 before 5.17, 33 since)
 * calls: the chain's last program (WALK_CALLS) names what is left as `lost`
 * rows (a pfn range and its references) instead of walking it, so nothing past
 * a bound vanishes. WALK_CHUNK and WALK_CALLS come from tracer/defines.py (their owner, with
 * the verifier's limit that sets it): 31 x 512 pages, 15,872 pages (62 MiB).
 */
#if !defined(WALK_CHUNK) || !defined(WALK_CALLS)
#error "pageref: WALK_CHUNK and WALK_CALLS come from tracer/defines.py"
#endif
#define WALK_BIO 0
#define WALK_UNPIN 1
#define FBATCH_MAX 32	/* PAGEVEC_SIZE / folio_batch is 31 */

/*
 * Keep a loop counter opaque to clang, so it is not merged into another
 * induction variable: older verifiers (6.1) then see a precise counter and
 * accept the loop instead of reporting "infinite loop detected".
 */
#define barrier_var(v) asm volatile("" : "+r"(v))

/* RET_OK_*: 1 = bool (nonzero is success), 2 = int (0 is success), 3 = pointer */
#define RET_BOOL 1
#define RET_ZERO_OK 2
#define RET_PTR 3
#define GRAB_OK(conv, rc) \
	((conv) == RET_ZERO_OK ? ((int)(rc) == 0) : \
	 (conv) == RET_BOOL ? (((rc) & 0xff) != 0) : ((rc) != 0))

#ifdef USE_RINGBUF
BPF_RINGBUF_OUTPUT(events, RINGBUF_PAGES);
#else
BPF_PERF_OUTPUT(events);
#endif

BPF_PERCPU_ARRAY(lost, u64, 1);		/* events the buffer refused, per CPU */
BPF_PERCPU_ARRAY(scratch, struct pageref_event, 1);
/* A walk in progress on this CPU: kprobe programs do not nest on a CPU, and a
 * tail-call chain runs start to end without leaving it. */
struct walk_state {
	u64 base;	/* bio: the bio_vec array; unpin: the page pointer array */
	u64 page;	/* bio: the next page of the current vector */
	u32 i;		/* the next vector / entry */
	u32 n;		/* vectors / entries */
	u32 left;	/* bio: pages left in the current vector */
	u32 calls;	/* programs of this chain run so far */
	u16 probe;	/* PROBE_* of the function that started the walk */
};
BPF_PERCPU_ARRAY(walk_state, struct walk_state, 1);
BPF_PROG_ARRAY(walks, 2);
/* grab entry -> return, keyed by tid << 8 | probe */
BPF_TABLE("lru_hash", u64, struct pageref_event, pending, 16384);
/*
 * Depth inside an outer drop function (nested drops are the same drop), keyed by
 * the kernel stack the code runs on rather than the task: bio completion runs in
 * interrupt context on whatever task it interrupted, on the CPU's IRQ stack, and
 * must neither be hidden by nor hide that task's own drops. Stacks are
 * THREAD_SIZE (16 KiB) aligned on x86-64.
 */
BPF_TABLE("lru_hash", u64, u32, depth, 16384);
#ifndef STACK_SHIFT
#define STACK_SHIFT 14
#endif
#ifdef FILTER_PIDS
BPF_HASH(pids, u32, u8, 1024);
#endif
#ifdef WANT_STACKS
BPF_STACK_TRACE(stacks, 16384);
#endif

static __always_inline u64 rd64(u64 addr)
{
	u64 v = 0;
	bpf_probe_read_kernel(&v, sizeof(v), (void *)addr);
	return v;
}

static __always_inline u32 rd32(u64 addr)
{
	u32 v = 0;
	bpf_probe_read_kernel(&v, sizeof(v), (void *)addr);
	return v;
}

static __always_inline u8 rd8(u64 addr)
{
	u8 v = 0;
	bpf_probe_read_kernel(&v, sizeof(v), (void *)addr);
	return v;
}

static __always_inline int task_ok(void)
{
#if defined(FILTER_PIDS) || defined(SELF_TGID)
	u32 tgid = bpf_get_current_pid_tgid() >> 32;
#endif
#ifdef SELF_TGID
	if (tgid == SELF_TGID)
		return 0;	/* the recorder's own I/O (Parquet parts) is not traced */
#endif
#ifdef FILTER_PIDS
	if (!pids.lookup(&tgid))
		return 0;
#endif
#ifdef CGROUP_ID
	if (bpf_get_current_cgroup_id() != CGROUP_ID)
		return 0;
#endif
	return 1;
}

static __always_inline u64 vmemmap(void)
{
#ifdef VMEMMAP_BASE_ADDR
	return rd64(VMEMMAP_BASE_ADDR);	/* KASLR: the value of the variable vmemmap_base */
#else
	return VMEMMAP_START;
#endif
}

/*
 * Fill the page part of `e` from `page` (head page found through compound_head).
 * Returns 0 if the page passes the in-kernel filters.
 */
static __always_inline int fill_page(struct pageref_event *e, u64 page)
{
	u64 ch = rd64(page + OFF_PAGE_COMPOUND_HEAD);
	u64 fl;
	u8 zd;

	if (ch & 1) {
		/* a tail page: its head holds the refcount */
#ifdef COMPOUND_INFO_MASK
		page &= ch;	/* compound_info is a mask (HVO, 7.x) */
#else
		page = ch - 1;	/* compound_head: head pointer | 1 */
#endif
	}
	fl = rd64(page + OFF_PAGE_FLAGS);
	zd = ((fl >> ZONES_PGSHIFT) & ZONES_MASK) == ZONE_DEVICE_ID;
#ifndef ALL_PAGES
	if (!zd)
		return -1;
#endif
	e->zone_device = zd;
	e->pgmap_type = PAGEREF_NO_PGMAP;
	if (zd) {
		/* only ZONE_DEVICE pages have a pgmap; elsewhere the field is lru */
		u64 pgmap = rd64(page + OFF_PGMAP);
		if (pgmap)
			e->pgmap_type = rd32(pgmap + OFF_PGMAP_TYPE) & 0xff;
	}
#ifdef PGMAP_MASK
	if (e->pgmap_type == PAGEREF_NO_PGMAP || !((PGMAP_MASK >> e->pgmap_type) & 1))
		return -1;
#endif
	e->page = page;
	e->pfn = (page - vmemmap()) / SIZEOF_PAGE;
	e->refcount = (s32)rd32(page + OFF_PAGE_REFCOUNT);
	e->mapping = rd64(page + OFF_PAGE_MAPPING);
	e->index = rd64(page + OFF_PAGE_INDEX);
	e->pincount = -1;
	e->order = 0;
	if (fl & (1UL << PG_HEAD)) {
#ifdef OFF_FOLIO_ORDER
		e->order = rd8(page + OFF_FOLIO_ORDER);
#endif
#ifdef OFF_FOLIO_PINCOUNT
		e->pincount = (s32)rd32(page + OFF_FOLIO_PINCOUNT);
#endif
	}
	return 0;
}

/* The page part of an event that names no page (busy with nothing busy). */
static __always_inline void zero_page_part(struct pageref_event *e)
{
	e->page = 0;
	e->pfn = 0;
	e->mapping = 0;
	e->index = 0;
	e->refcount = 0;
	e->pincount = -1;
	e->order = 0;
	e->zone_device = 0;
	e->pgmap_type = PAGEREF_NO_PGMAP;
}

/*
 * The task part of `e`. Called after fill_page() has accepted the page: most
 * pages a drop function sees on a live host are not ZONE_DEVICE, and those cost
 * two reads, not a timestamp, the comm and the rest.
 */
static __always_inline void fill_task(struct pageref_event *e, void *ctx, u16 probe, u8 kind)
{
	u64 id = bpf_get_current_pid_tgid();

	e->ts_ns = bpf_ktime_get_ns();
	e->pid = id >> 32;
	e->tid = (u32)id;
	e->cpu = bpf_get_smp_processor_id();
	e->probe = probe;
	e->kind = kind;
	e->refs = 1;
	e->flags = 0;
	e->ret = 0;
	/* 6.1's bpf_get_current_comm() does not pad: clear the reused scratch first */
	__builtin_memset(e->comm, 0, sizeof(e->comm));
	bpf_get_current_comm(&e->comm, sizeof(e->comm));
#ifdef WANT_STACKS
	e->stack_id = stacks.get_stackid(ctx, 0);
#else
	e->stack_id = -1;
#endif
}

static __always_inline void submit(void *ctx, struct pageref_event *e)
{
	int rc;

#ifdef USE_RINGBUF
	rc = events.ringbuf_output(e, sizeof(*e), 0);
#else
	rc = events.perf_submit(ctx, e, sizeof(*e));
#endif
	if (rc < 0) {
		int zero = 0;
		u64 *n = lost.lookup(&zero);
		if (n)
			(*n)++;
	}
}

static __always_inline struct pageref_event *scratch_event(void)
{
	int zero = 0;
	return scratch.lookup(&zero);
}

/*
 * The event of a task and a page that pass the in-kernel filters: this CPU's
 * scratch event with its page and task parts filled, or NULL (filtered out).
 */
static __always_inline struct pageref_event *page_event(void *ctx, u16 probe, u8 kind,
							 u64 page)
{
	struct pageref_event *e;

	if (!task_ok())
		return NULL;
	e = scratch_event();
	if (!e || fill_page(e, page))
		return NULL;
	fill_task(e, ctx, probe, kind);
	return e;
}

/* ---- grab: entry saves the event, return decides get/pin or grab_failed ---- */

/*
 * The `flags` column: the kernel's GUP flags are an unsigned int in every
 * function pageref probes, so only the low 32 bits of the register (kprobe) or
 * trampoline argument (fentry) are the flags; the rest is whatever the caller
 * left there. Every handler stores them through here, so the column does not
 * depend on how the probe was attached.
 */
static __always_inline void set_flags(struct pageref_event *e, u64 raw)
{
	e->flags = (u32)raw;
}

static __always_inline int grab_entry(void *ctx, u16 probe, u64 page, s32 refs, u64 flags)
{
	struct pageref_event *e;
	u64 key;

	if (!(flags & (FOLL_GET_VAL | FOLL_PIN_VAL)))
		return 0;	/* neither FOLL_GET nor FOLL_PIN: takes no reference */
	e = page_event(ctx, probe, (flags & FOLL_PIN_VAL) ? KIND_PIN : KIND_GET, page);
	if (!e)
		return 0;
	e->refs = refs;
	set_flags(e, flags);
	key = ((u64)e->tid << 8) | probe;
	pending.update(&key, e);
	return 0;
}

static __always_inline int grab_return_rc(void *ctx, u16 probe, int conv, u64 rc)
{
	u64 key = ((bpf_get_current_pid_tgid() & 0xffffffff) << 8) | probe;
	struct pageref_event *e = pending.lookup(&key);

	if (!e)
		return 0;
	e->ret = (s64)rc;
	if (conv == RET_ZERO_OK)
		e->ret = (s64)(int)rc;
	else if (conv == RET_BOOL)
		e->ret = rc & 0xff;
	if (!GRAB_OK(conv, rc))
		e->kind = KIND_GRAB_FAILED;
	submit(ctx, e);
	pending.delete(&key);
	return 0;
}

static __always_inline int grab_return(void *ctx, u16 probe, int conv)
{
	return grab_return_rc(ctx, probe, conv, PT_REGS_RC((struct pt_regs *)ctx));
}

/* try_grab_page(page, flags): 5.7-6.9; bool until 6.1, int (0 = ok) from 6.2 */
int on_try_grab_page(struct pt_regs *ctx)
{
	return grab_entry(ctx, PROBE_TRY_GRAB_PAGE, PT_REGS_PARM1(ctx), 1, PT_REGS_PARM2(ctx));
}
int ret_try_grab_page(struct pt_regs *ctx)
{
	return grab_return(ctx, PROBE_TRY_GRAB_PAGE, RET_OK_TRY_GRAB_PAGE);
}

/* try_grab_folio(page, refs, flags) -> folio (5.18-6.9), or (folio, refs, flags) -> int (6.10+) */
int on_try_grab_folio(struct pt_regs *ctx)
{
	return grab_entry(ctx, PROBE_TRY_GRAB_FOLIO, PT_REGS_PARM1(ctx), (s32)PT_REGS_PARM2(ctx),
			  PT_REGS_PARM3(ctx));
}
int ret_try_grab_folio(struct pt_regs *ctx)
{
	return grab_return(ctx, PROBE_TRY_GRAB_FOLIO, RET_OK_TRY_GRAB_FOLIO);
}

/* try_grab_folio_fast(page, refs, flags) -> folio (static, 6.10+) */
int on_try_grab_folio_fast(struct pt_regs *ctx)
{
	return grab_entry(ctx, PROBE_TRY_GRAB_FOLIO_FAST, PT_REGS_PARM1(ctx),
			  (s32)PT_REGS_PARM2(ctx), PT_REGS_PARM3(ctx));
}
int ret_try_grab_folio_fast(struct pt_regs *ctx)
{
	return grab_return(ctx, PROBE_TRY_GRAB_FOLIO_FAST, RET_PTR);
}

/* ---- drops ---- */

static __always_inline u64 stack_key(void *ctx)
{
	return PT_REGS_SP((struct pt_regs *)ctx) >> STACK_SHIFT;
}

static __always_inline int nested(void *ctx)
{
	u64 key = stack_key(ctx);
	u32 *d = depth.lookup(&key);
	return d && *d > 0;
}

static __always_inline void enter_outer(void *ctx)
{
	u64 key = stack_key(ctx);
	u32 one = 1;
	u32 *d = depth.lookup(&key);
	if (d)
		(*d)++;
	else
		depth.update(&key, &one);
}

static __always_inline int leave_outer(void *ctx)
{
	u64 key = stack_key(ctx);
	u32 *d = depth.lookup(&key);
	if (d && *d > 1)
		(*d)--;
	else if (d)
		depth.delete(&key);
	return 0;
}

/* refcount_bias: added to the observed refcount so the row holds the value
 * before the drop (functions called after the last reference is gone see 0). */
static __always_inline int emit_drop_into(struct pageref_event *e, void *ctx, u16 probe,
					  u8 kind, u64 page, s32 refs, u64 flags,
					  s32 refcount_bias, int fsdax_only)
{
	if (fill_page(e, page))
		return 0;
	fill_task(e, ctx, probe, kind);
	if (fsdax_only && e->pgmap_type != PGMAP_FSDAX)
		return 0;	/* the function returns false and put_page() goes on inline */
	e->refs = refs;
	set_flags(e, flags);
	e->refcount += refcount_bias;
	submit(ctx, e);
	return 0;
}

static __always_inline int emit_drop(void *ctx, u16 probe, u8 kind, u64 page, s32 refs,
				     u64 flags, s32 refcount_bias, int fsdax_only)
{
	struct pageref_event *e = scratch_event();

	if (!e)
		return 0;
	return emit_drop_into(e, ctx, probe, kind, page, refs, flags, refcount_bias, fsdax_only);
}

static __always_inline int leaf_drop(void *ctx, u16 probe, u8 kind, u64 page, s32 refs,
				     u64 flags, s32 bias, int fsdax_only)
{
	if (!task_ok() || nested(ctx))
		return 0;
	return emit_drop(ctx, probe, kind, page, refs, flags, bias, fsdax_only);
}

static __always_inline int outer_drop(void *ctx, u16 probe, u8 kind, u64 page, s32 refs,
				      u64 flags)
{
	int inner = nested(ctx);

	enter_outer(ctx);
	if (inner || !task_ok())
		return 0;
	return emit_drop(ctx, probe, kind, page, refs, flags, 0, 0);
}

/* __put_page(page): <= 5.19, called once the refcount reached 0 */
int on___put_page(struct pt_regs *ctx)
{
	return leaf_drop(ctx, PROBE___PUT_PAGE, KIND_PUT, PT_REGS_PARM1(ctx), 1, 0, 1, 0);
}

/* __folio_put(folio): 6.0+ (7f3e4ad2d9a6), called once the refcount reached 0 */
int on___folio_put(struct pt_regs *ctx)
{
	return leaf_drop(ctx, PROBE___FOLIO_PUT, KIND_PUT, PT_REGS_PARM1(ctx), 1, 0, 1, 0);
}

/* __put_devmap_managed_page(page): 5.18's fsdax put, one reference */
int on___put_devmap_managed_page(struct pt_regs *ctx)
{
	return leaf_drop(ctx, PROBE___PUT_DEVMAP_MANAGED_PAGE, KIND_PUT, PT_REGS_PARM1(ctx), 1, 0,
			 0, 1);
}

/* __put_devmap_managed_page_refs(page, refs): 5.19-6.8; _folio_refs(folio, refs): to 6.14 */
int on___put_devmap_managed_page_refs(struct pt_regs *ctx)
{
	return leaf_drop(ctx, PROBE___PUT_DEVMAP_MANAGED_PAGE_REFS, KIND_PUT, PT_REGS_PARM1(ctx),
			 (s32)PT_REGS_PARM2(ctx), 0, 0, 1);
}
int on___put_devmap_managed_folio_refs(struct pt_regs *ctx)
{
	return leaf_drop(ctx, PROBE___PUT_DEVMAP_MANAGED_FOLIO_REFS, KIND_PUT,
			 PT_REGS_PARM1(ctx), (s32)PT_REGS_PARM2(ctx), 0, 0, 1);
}

/* gup_put_folio(folio, refs, flags): static; every unpin and GUP put of 5.18+ */
int on_gup_put_folio(struct pt_regs *ctx)
{
	u64 flags = PT_REGS_PARM3(ctx);

	return outer_drop(ctx, PROBE_GUP_PUT_FOLIO, (flags & FOLL_PIN_VAL) ? KIND_UNPIN : KIND_PUT,
			  PT_REGS_PARM1(ctx), (s32)PT_REGS_PARM2(ctx), flags);
}
int ret_gup_put_folio(struct pt_regs *ctx)
{
	return leave_outer(ctx);
}

/* unpin_user_page(page): one pin */
int on_unpin_user_page(struct pt_regs *ctx)
{
	return outer_drop(ctx, PROBE_UNPIN_USER_PAGE, KIND_UNPIN, PT_REGS_PARM1(ctx), 1,
			  FOLL_PIN_VAL);
}
int ret_unpin_user_page(struct pt_regs *ctx)
{
	return leave_outer(ctx);
}

/* unpin_user_folio(folio, npages): 6.11+, npages pins of one folio */
int on_unpin_user_folio(struct pt_regs *ctx)
{
	return outer_drop(ctx, PROBE_UNPIN_USER_FOLIO, KIND_UNPIN, PT_REGS_PARM1(ctx),
			  (s32)PT_REGS_PARM2(ctx), FOLL_PIN_VAL);
}
int ret_unpin_user_folio(struct pt_regs *ctx)
{
	return leave_outer(ctx);
}

/* unpin_folio(folio): 6.11+, one pin */
int on_unpin_folio(struct pt_regs *ctx)
{
	return outer_drop(ctx, PROBE_UNPIN_FOLIO, KIND_UNPIN, PT_REGS_PARM1(ctx), 1, FOLL_PIN_VAL);
}
int ret_unpin_folio(struct pt_regs *ctx)
{
	return leave_outer(ctx);
}

/* ---- walks (see WALK_CHUNK) ---- */

static __always_inline struct walk_state *walk_start(u64 base, u32 n, u16 probe)
{
	int zero = 0;
	struct walk_state *s = walk_state.lookup(&zero);

	if (!s)
		return 0;
	s->base = base;
	s->page = 0;
	s->i = 0;
	s->n = n;
	s->left = 0;
	s->calls = 0;
	s->probe = probe;
	return s;
}

/*
 * A `lost` row: `count` pages not walked, dropping `count` references. With a
 * page (the first of a run of contiguous frames) it names pfn .. pfn+count-1;
 * without one (page 0: pfn null) which pages is unknown and count is a floor.
 */
static __always_inline void emit_walk_lost(struct pageref_event *e, void *ctx, u16 probe,
					   u64 page, u32 count)
{
	if (!count)
		return;
	if (page) {
		if (fill_page(e, page))
			return;		/* not a page the filters keep: nothing lost */
		e->page = page;		/* the run's first frame, not its head page */
		e->pfn = (page - vmemmap()) / SIZEOF_PAGE;
		e->order = 0;
	} else {
		zero_page_part(e);
	}
	fill_task(e, ctx, probe, KIND_LOST);
	e->refs = count;
	e->ret = count;
	submit(ctx, e);
}

/* unpin_user_pages(pages, npages): one unpin per page, the whole array */
int walk_unpin(struct pt_regs *ctx)
{
	int zero = 0;
	struct walk_state *s = walk_state.lookup(&zero);
	struct pageref_event *e = scratch_event();

	if (!s || !e)
		return 0;
	s->calls++;
	for (u32 k = 0; k < WALK_CHUNK; k++) {
		barrier_var(k);
		if (s->i >= s->n)
			return 0;
		emit_drop_into(e, ctx, s->probe, KIND_UNPIN,
			       rd64(s->base + 8 * (u64)s->i), 1, FOLL_PIN_VAL, 0, 0);
		s->i++;
	}
	if (s->i >= s->n)
		return 0;
	if (s->calls < WALK_CALLS)
		walks.call(ctx, WALK_UNPIN);
	/* the chain ends here: entries of an array are not one range, so pfn unknown */
	emit_walk_lost(e, ctx, s->probe, 0, s->n - s->i);
	return 0;
}

int on_unpin_user_pages(struct pt_regs *ctx)
{
	int inner = nested(ctx);
	struct walk_state *s;

	enter_outer(ctx);
	if (inner || !task_ok())
		return 0;
	s = walk_start(PT_REGS_PARM1(ctx), (u32)PT_REGS_PARM2(ctx), PROBE_UNPIN_USER_PAGES);
	if (!s)
		return 0;
	walks.call(ctx, WALK_UNPIN);
	/* only if the walk program is missing (the recorder loads it): say so */
	struct pageref_event *e = scratch_event();
	if (e)
		emit_walk_lost(e, ctx, PROBE_UNPIN_USER_PAGES, 0, s->n);
	return 0;
}
int ret_unpin_user_pages(struct pt_regs *ctx)
{
	return leave_outer(ctx);
}

#if defined(HAVE___BIO_RELEASE_PAGES) || defined(HAVE_BIO_RELEASE_PAGES)
#if !defined(OFF_BIO_IO_VEC) || !defined(OFF_BIO_VCNT) || !defined(OFF_BVEC_PAGE) || \
	!defined(OFF_BVEC_LEN) || !defined(OFF_BVEC_OFFSET) || !defined(SIZEOF_BIO_VEC)
#error "pageref: a bio walk planned without the bio offsets (plan.py BIO_WALK)"
#endif
/*
 * __bio_release_pages(bio, mark_dirty): before BIO_PAGE_PINNED (6.5) it drops one
 * reference per page with an inline put (no probe-able function below it), so
 * walk the bio's vectors here: one put per page, every page of every vector.
 * A vector is a run of contiguous frames (a multi-page bvec), so the chain's
 * last program names each vector left as one `lost` row with its range.
 */
int walk_bio(struct pt_regs *ctx)
{
	int zero = 0;
	struct walk_state *s = walk_state.lookup(&zero);
	struct pageref_event *e = scratch_event();
	int last;

	if (!s || !e)
		return 0;
	s->calls++;
	last = s->calls >= WALK_CALLS;
	for (u32 k = 0; k < WALK_CHUNK; k++) {
		barrier_var(k);
		if (!s->left) {
			u64 bv;
			u32 len, off;

			if (s->i >= s->n)
				return 0;
			bv = s->base + (u64)s->i * SIZEOF_BIO_VEC;
			s->i++;
			len = rd32(bv + OFF_BVEC_LEN);
			off = rd32(bv + OFF_BVEC_OFFSET);
			if (!len)
				continue;
			s->page = rd64(bv + OFF_BVEC_PAGE) + (u64)(off / PAGE_SIZE_VAL) * SIZEOF_PAGE;
			s->left = (off + len - 1) / PAGE_SIZE_VAL - off / PAGE_SIZE_VAL + 1;
		}
		if (last) {
			emit_walk_lost(e, ctx, s->probe, s->page, s->left);
			s->left = 0;
			continue;
		}
		emit_drop_into(e, ctx, s->probe, KIND_PUT, s->page, 1, 0, 0, 0);
		s->page += SIZEOF_PAGE;
		s->left--;
	}
	if (!s->left && s->i >= s->n)
		return 0;
	if (!last)
		walks.call(ctx, WALK_BIO);
	/* more vectors than WALK_CHUNK (never with BIO_MAX_VECS 256), or no tail call */
	emit_walk_lost(e, ctx, s->probe, s->page, s->left);
	emit_walk_lost(e, ctx, s->probe, 0, s->n - s->i);
	return 0;
}
#endif

#ifdef HAVE___BIO_RELEASE_PAGES
int on___bio_release_pages(struct pt_regs *ctx)
{
	u64 bio = PT_REGS_PARM1(ctx);
	int inner = nested(ctx);
	struct walk_state *s;

	enter_outer(ctx);
	if (inner || !task_ok())
		return 0;
	s = walk_start(rd64(bio + OFF_BIO_IO_VEC), rd32(bio + OFF_BIO_VCNT) & 0xffff,
		       PROBE___BIO_RELEASE_PAGES);
	if (!s)
		return 0;
	walks.call(ctx, WALK_BIO);
	struct pageref_event *e = scratch_event();
	if (e)
		emit_walk_lost(e, ctx, PROBE___BIO_RELEASE_PAGES, 0, s->n);
	return 0;
}
int ret___bio_release_pages(struct pt_regs *ctx)
{
	return leave_outer(ctx);
}
#endif

/*
 * Mapping references (kernels where DAX mappings hold page references, the
 * "fs/dax: Fix ZONE_DEVICE page reference counts" series): a DAX fault takes
 * one in vmf_insert_page_mkwrite/vmf_insert_folio_pmd/_pud, but only when it
 * installs a new entry, and the return value does not say which. So the entry
 * probe reads the refcount, the return probe reads it again, and a rise is
 * reported as a `get` of that many references.
 */
static __always_inline int mapref_entry(void *ctx, u16 probe, u64 page)
{
	struct pageref_event *e = page_event(ctx, probe, KIND_GET, page);
	u64 key;

	if (!e)
		return 0;
	key = ((u64)e->tid << 8) | probe;
	pending.update(&key, e);
	return 0;
}

static __always_inline int mapref_return(void *ctx, u16 probe)
{
	u64 key = ((bpf_get_current_pid_tgid() & 0xffffffff) << 8) | probe;
	struct pageref_event *e = pending.lookup(&key);
	s32 now;

	if (!e)
		return 0;
	now = (s32)rd32(e->page + OFF_PAGE_REFCOUNT);
	if (now > e->refcount) {
		e->refs = now - e->refcount;
		e->ret = PT_REGS_RC((struct pt_regs *)ctx);
		submit(ctx, e);
	}
	pending.delete(&key);
	return 0;
}

int on_vmf_insert_page_mkwrite(struct pt_regs *ctx)
{
	return mapref_entry(ctx, PROBE_VMF_INSERT_PAGE_MKWRITE, PT_REGS_PARM2(ctx));
}
int ret_vmf_insert_page_mkwrite(struct pt_regs *ctx)
{
	return mapref_return(ctx, PROBE_VMF_INSERT_PAGE_MKWRITE);
}
int on_vmf_insert_folio_pmd(struct pt_regs *ctx)
{
	return mapref_entry(ctx, PROBE_VMF_INSERT_FOLIO_PMD, PT_REGS_PARM2(ctx));
}
int ret_vmf_insert_folio_pmd(struct pt_regs *ctx)
{
	return mapref_return(ctx, PROBE_VMF_INSERT_FOLIO_PMD);
}
int on_vmf_insert_folio_pud(struct pt_regs *ctx)
{
	return mapref_entry(ctx, PROBE_VMF_INSERT_FOLIO_PUD, PT_REGS_PARM2(ctx));
}
int ret_vmf_insert_folio_pud(struct pt_regs *ctx)
{
	return mapref_return(ctx, PROBE_VMF_INSERT_FOLIO_PUD);
}

#ifdef HAVE_FOLIOS_PUT_REFS
#if !defined(OFF_FBATCH_NR) || !defined(OFF_FBATCH_FOLIOS)
#error "pageref: folios_put_refs planned without the folio_batch offsets (plan.py FBATCH_WALK)"
#endif
/*
 * folios_put_refs(folios, refs): the batched release of munmap/zap (mmu_gather)
 * and release_pages (6.10+); zone-device folios are decremented inline there.
 * One put per folio of the batch, refs[i] references (1 when refs is NULL).
 */
int on_folios_put_refs(struct pt_regs *ctx)
{
	u64 fb = PT_REGS_PARM1(ctx);
	u64 refs = PT_REGS_PARM2(ctx);
	u32 nr = rd8(fb + OFF_FBATCH_NR);
	int inner = nested(ctx);
	struct pageref_event *e;

	enter_outer(ctx);
	if (inner || !task_ok())
		return 0;
	e = scratch_event();
	if (!e)
		return 0;
	for (u32 i = 0; i < FBATCH_MAX; i++) {
		barrier_var(i);
		if (i >= nr)
			break;
		emit_drop_into(e, ctx, PROBE_FOLIOS_PUT_REFS, KIND_PUT,
			       rd64(fb + OFF_FBATCH_FOLIOS + 8 * (u64)i),
			       refs ? (s32)rd32(refs + 4 * (u64)i) : 1, 0, 0, 0);
	}
	/* a batch larger than any kernel's folio_batch: never silently */
	if (nr > FBATCH_MAX)
		emit_walk_lost(e, ctx, PROBE_FOLIOS_PUT_REFS, 0, nr - FBATCH_MAX);
	return 0;
}
int ret_folios_put_refs(struct pt_regs *ctx)
{
	return leave_outer(ctx);
}
#endif

/*
 * ---- 5.x reference paths (before the folio conversion of 5.18) ----
 *
 * try_grab_compound_head(page, refs, flags) -> head page: the gup-fast grab.
 * put_devmap_managed_page(page): put_page() of an fsdax or device-private page
 * (page_is_devmap_managed()); it decrements, then calls free_devmap_managed_page
 * at 1 (fsdax wake-up, device-private free) or __put_page at 0. A leaf: inside an
 * unpin or a bio walk (outer probes) it is the same drop.
 */
int on_try_grab_compound_head(struct pt_regs *ctx)
{
	return grab_entry(ctx, PROBE_TRY_GRAB_COMPOUND_HEAD, PT_REGS_PARM1(ctx),
			  (s32)PT_REGS_PARM2(ctx), PT_REGS_PARM3(ctx));
}
int ret_try_grab_compound_head(struct pt_regs *ctx)
{
	return grab_return(ctx, PROBE_TRY_GRAB_COMPOUND_HEAD, RET_PTR);
}

int on_put_devmap_managed_page(struct pt_regs *ctx)
{
	return leaf_drop(ctx, PROBE_PUT_DEVMAP_MANAGED_PAGE, KIND_PUT, PT_REGS_PARM1(ctx), 1, 0,
			 0, 0);
}

#ifdef HAVE_UNPIN_USER_PAGES_DIRTY_LOCK
/* unpin_user_pages_dirty_lock(pages, npages, make_dirty): one unpin per page, the
 * whole array (the walk of unpin_user_pages, under this probe's id) */
int on_unpin_user_pages_dirty_lock(struct pt_regs *ctx)
{
	int inner = nested(ctx);
	struct walk_state *s;

	enter_outer(ctx);
	if (inner || !task_ok())
		return 0;
	s = walk_start(PT_REGS_PARM1(ctx), (u32)PT_REGS_PARM2(ctx),
		       PROBE_UNPIN_USER_PAGES_DIRTY_LOCK);
	if (!s)
		return 0;
	walks.call(ctx, WALK_UNPIN);
	/* only if the walk program is missing (the recorder loads it): say so */
	struct pageref_event *e = scratch_event();
	if (e)
		emit_walk_lost(e, ctx, PROBE_UNPIN_USER_PAGES_DIRTY_LOCK, 0, s->n);
	return 0;
}
int ret_unpin_user_pages_dirty_lock(struct pt_regs *ctx)
{
	return leave_outer(ctx);
}
#endif

#ifdef HAVE_UNPIN_USER_PAGE_RANGE_DIRTY_LOCK
/* unpin_user_page_range_dirty_lock(page, npages, make_dirty): npages contiguous
 * struct pages, one unpin each (fill_page() finds each one's head); past
 * WALK_CHUNK pages one `lost` row names the rest of the range */
int on_unpin_user_page_range_dirty_lock(struct pt_regs *ctx)
{
	u64 page = PT_REGS_PARM1(ctx);
	u32 n = (u32)PT_REGS_PARM2(ctx);
	int inner = nested(ctx);
	struct pageref_event *e;

	enter_outer(ctx);
	if (inner || !task_ok())
		return 0;
	e = scratch_event();
	if (!e)
		return 0;
	for (u32 i = 0; i < WALK_CHUNK; i++) {
		barrier_var(i);
		if (i >= n)
			return 0;
		emit_drop_into(e, ctx, PROBE_UNPIN_USER_PAGE_RANGE_DIRTY_LOCK, KIND_UNPIN,
			       page + (u64)i * SIZEOF_PAGE, 1, FOLL_PIN_VAL, 0, 0);
	}
	if (n > WALK_CHUNK)
		emit_walk_lost(e, ctx, PROBE_UNPIN_USER_PAGE_RANGE_DIRTY_LOCK,
			       page + (u64)WALK_CHUNK * SIZEOF_PAGE, n - WALK_CHUNK);
	return 0;
}
int ret_unpin_user_page_range_dirty_lock(struct pt_regs *ctx)
{
	return leave_outer(ctx);
}
#endif

#ifdef HAVE_BIO_RELEASE_PAGES
#if !defined(OFF_BIO_FLAGS) || !defined(BIO_NO_PAGE_REF_BIT)
#error "pageref: bio_release_pages planned without bio.bi_flags (plan.py BIO_FLAGS)"
#endif
/*
 * bio_release_pages(bio, mark_dirty), 5.x: put_page() on every page unless the
 * bio is BIO_NO_PAGE_REF. The walk of __bio_release_pages, under this probe's id.
 */
int on_bio_release_pages(struct pt_regs *ctx)
{
	u64 bio = PT_REGS_PARM1(ctx);
	u32 bflags = rd32(bio + OFF_BIO_FLAGS) & 0xffff;
	int inner = nested(ctx);
	struct walk_state *s;

	enter_outer(ctx);
	if (inner || !task_ok() || (bflags & (1U << BIO_NO_PAGE_REF_BIT)))
		return 0;
	s = walk_start(rd64(bio + OFF_BIO_IO_VEC), rd32(bio + OFF_BIO_VCNT) & 0xffff,
		       PROBE_BIO_RELEASE_PAGES);
	if (!s)
		return 0;
	walks.call(ctx, WALK_BIO);
	struct pageref_event *e = scratch_event();
	if (e)
		emit_walk_lost(e, ctx, PROBE_BIO_RELEASE_PAGES, 0, s->n);
	return 0;
}
int ret_bio_release_pages(struct pt_regs *ctx)
{
	return leave_outer(ctx);
}
#endif

/* ---- free: the last reference is gone (never nested-suppressed) ---- */

/* free_zone_device_page(page): 5.18 (80a72d0af8b8); renamed _folio in 6.9-6.10 */
int on_free_zone_device_page(struct pt_regs *ctx)
{
	if (!task_ok())
		return 0;
	return emit_drop(ctx, PROBE_FREE_ZONE_DEVICE_PAGE, KIND_FREE, PT_REGS_PARM1(ctx), 0, 0,
			 0, 0);
}
int on_free_zone_device_folio(struct pt_regs *ctx)
{
	if (!task_ok())
		return 0;
	return emit_drop(ctx, PROBE_FREE_ZONE_DEVICE_FOLIO, KIND_FREE, PT_REGS_PARM1(ctx), 0, 0,
			 0, 0);
}

/*
 * free_devmap_managed_page(page): 5.x, the count just reached 1. A device-private
 * page is freed here (its driver's page_free); an fsdax page is only idle (the
 * layout waiter's wake-up, as inside 6.1's devmap put): no `free` for it, as no
 * kernel frees an fsdax page that idles at 1.
 */
static __always_inline int devmap_free(void *ctx, u64 page)
{
	struct pageref_event *e;

	if (!task_ok())
		return 0;
	e = scratch_event();
	if (!e || fill_page(e, page) || e->pgmap_type == PGMAP_FSDAX)
		return 0;
	fill_task(e, ctx, PROBE_FREE_DEVMAP_MANAGED_PAGE, KIND_FREE);
	e->refs = 0;
	submit(ctx, e);
	return 0;
}
int on_free_devmap_managed_page(struct pt_regs *ctx)
{
	return devmap_free(ctx, PT_REGS_PARM1(ctx));
}

/* ---- busy: dax_layout_busy_page(_range) returns a page still referenced ---- */

static __always_inline int busy_entry(void *ctx, u16 probe)
{
	struct pageref_event *e;
	u64 key;

	if (!task_ok())
		return 0;
	e = scratch_event();
	if (!e)
		return 0;
	fill_task(e, ctx, probe, KIND_BUSY);
	zero_page_part(e);
	e->mapping = PT_REGS_PARM1((struct pt_regs *)ctx);	/* the address_space */
	e->refs = 0;
	key = ((u64)e->tid << 8) | probe;
	pending.update(&key, e);
	return 0;
}

/* fexit: the address_space argument and the returned page in one program */
static __always_inline int busy_exit(void *ctx, u16 probe, u64 mapping, u64 page)
{
	struct pageref_event *e;

	if (!task_ok())
		return 0;
	e = scratch_event();
	if (!e)
		return 0;
	fill_task(e, ctx, probe, KIND_BUSY);
	zero_page_part(e);
	e->refs = 0;
	e->ret = page;
	if (page && fill_page(e, page))
		return 0;
	if (mapping)
		e->mapping = mapping;
	submit(ctx, e);
	return 0;
}

static __always_inline int busy_return(void *ctx, u16 probe)
{
	u64 key = ((bpf_get_current_pid_tgid() & 0xffffffff) << 8) | probe;
	struct pageref_event *e = pending.lookup(&key);
	u64 page = PT_REGS_RC((struct pt_regs *)ctx);
	u64 mapping;

	if (!e)
		return 0;
	e->ret = page;
	if (page) {
		mapping = e->mapping;
		if (fill_page(e, page)) {
			pending.delete(&key);
			return 0;
		}
		e->mapping = mapping ? mapping : e->mapping;
	}
	submit(ctx, e);
	pending.delete(&key);
	return 0;
}

int on_dax_layout_busy_page_range(struct pt_regs *ctx)
{
	return busy_entry(ctx, PROBE_DAX_LAYOUT_BUSY_PAGE_RANGE);
}
int ret_dax_layout_busy_page_range(struct pt_regs *ctx)
{
	return busy_return(ctx, PROBE_DAX_LAYOUT_BUSY_PAGE_RANGE);
}
int on_dax_layout_busy_page(struct pt_regs *ctx)
{
	return busy_entry(ctx, PROBE_DAX_LAYOUT_BUSY_PAGE);
}
int ret_dax_layout_busy_page(struct pt_regs *ctx)
{
	return busy_return(ctx, PROBE_DAX_LAYOUT_BUSY_PAGE);
}

/*
 * fentry/fexit forms (BPF trampolines: cheaper than kprobes, and fexit sees the
 * return value without a return probe). Only where the recorder asked for them
 * (FENTRY_<FUNCTION> defines) and the kernel accepted them: BCC attaches these
 * when it loads the program. Drop functions stay kprobes: their nesting mark
 * is keyed by the kernel stack pointer, which only pt_regs gives.
 *
 * The verifier types a trampoline's struct arguments as BTF pointers and
 * forbids arithmetic on them (page - vmemmap_base): CTX_ARG reads the raw
 * 64-bit argument from the context instead, as a plain number.
 */
static __always_inline u64 ctx_arg(unsigned long long *ctx, int i)
{
	u64 v = 0;
	bpf_probe_read_kernel(&v, sizeof(v), &ctx[i]);
	return v;
}
#define CTX_ARG(i) ctx_arg(ctx, (i))

#ifdef FENTRY_TRY_GRAB_PAGE
KFUNC_PROBE(try_grab_page, u64 page, u64 flags)
{
	return grab_entry(ctx, PROBE_TRY_GRAB_PAGE, CTX_ARG(0), 1, CTX_ARG(1));
}
KRETFUNC_PROBE(try_grab_page, u64 page, u64 flags, u64 ret)
{
	return grab_return_rc(ctx, PROBE_TRY_GRAB_PAGE, RET_OK_TRY_GRAB_PAGE, CTX_ARG(2));
}
#endif
#ifdef FENTRY_TRY_GRAB_FOLIO
KFUNC_PROBE(try_grab_folio, u64 folio, u64 refs, u64 flags)
{
	return grab_entry(ctx, PROBE_TRY_GRAB_FOLIO, CTX_ARG(0), (s32)CTX_ARG(1),
			  CTX_ARG(2));
}
KRETFUNC_PROBE(try_grab_folio, u64 folio, u64 refs, u64 flags, u64 ret)
{
	return grab_return_rc(ctx, PROBE_TRY_GRAB_FOLIO, RET_OK_TRY_GRAB_FOLIO, CTX_ARG(3));
}
#endif
#ifdef FENTRY_TRY_GRAB_FOLIO_FAST
KFUNC_PROBE(try_grab_folio_fast, u64 page, u64 refs, u64 flags)
{
	return grab_entry(ctx, PROBE_TRY_GRAB_FOLIO_FAST, CTX_ARG(0), (s32)CTX_ARG(1),
			  CTX_ARG(2));
}
KRETFUNC_PROBE(try_grab_folio_fast, u64 page, u64 refs, u64 flags, u64 ret)
{
	return grab_return_rc(ctx, PROBE_TRY_GRAB_FOLIO_FAST, RET_PTR, CTX_ARG(3));
}
#endif
#ifdef FENTRY_TRY_GRAB_COMPOUND_HEAD
KFUNC_PROBE(try_grab_compound_head, u64 page, u64 refs, u64 flags)
{
	return grab_entry(ctx, PROBE_TRY_GRAB_COMPOUND_HEAD, CTX_ARG(0), (s32)CTX_ARG(1),
			  CTX_ARG(2));
}
KRETFUNC_PROBE(try_grab_compound_head, u64 page, u64 refs, u64 flags, u64 ret)
{
	return grab_return_rc(ctx, PROBE_TRY_GRAB_COMPOUND_HEAD, RET_PTR, CTX_ARG(3));
}
#endif
#ifdef FENTRY_FREE_DEVMAP_MANAGED_PAGE
KFUNC_PROBE(free_devmap_managed_page, u64 page)
{
	return devmap_free(ctx, CTX_ARG(0));
}
#endif
#ifdef FENTRY_FREE_ZONE_DEVICE_PAGE
KFUNC_PROBE(free_zone_device_page, u64 page)
{
	if (!task_ok())
		return 0;
	return emit_drop(ctx, PROBE_FREE_ZONE_DEVICE_PAGE, KIND_FREE, CTX_ARG(0), 0, 0, 0, 0);
}
#endif
#ifdef FENTRY_FREE_ZONE_DEVICE_FOLIO
KFUNC_PROBE(free_zone_device_folio, u64 folio)
{
	if (!task_ok())
		return 0;
	return emit_drop(ctx, PROBE_FREE_ZONE_DEVICE_FOLIO, KIND_FREE, CTX_ARG(0), 0, 0, 0,
			 0);
}
#endif
#ifdef FENTRY_DAX_LAYOUT_BUSY_PAGE_RANGE
KRETFUNC_PROBE(dax_layout_busy_page_range, u64 mapping, u64 start, u64 end, u64 ret)
{
	return busy_exit(ctx, PROBE_DAX_LAYOUT_BUSY_PAGE_RANGE, CTX_ARG(0), CTX_ARG(3));
}
#endif
#ifdef FENTRY_DAX_LAYOUT_BUSY_PAGE
KRETFUNC_PROBE(dax_layout_busy_page, u64 mapping, u64 ret)
{
	return busy_exit(ctx, PROBE_DAX_LAYOUT_BUSY_PAGE, CTX_ARG(0), CTX_ARG(1));
}
#endif
