// SPDX-License-Identifier: GPL-2.0
/*
 * The kernel's own refcount record: the page_ref:* tracepoints a kernel built
 * with CONFIG_DEBUG_PAGE_REF fires after every change of a page's _refcount
 * (include/linux/page_ref.h calls them behind page_ref_tracepoint_active(),
 * inline puts included). Compiled as part of pageref.bpf.c (tracer/recorder.py
 * program_text() appends it: BCC makes programs only of its main text's
 * functions) under HAVE_PAGE_REF, which tracer/defines.py emits when the plan
 * attaches them (tracer/page_ref.py).
 *
 * Raw tracepoints: the handler gets the tracepoint's arguments (struct page *,
 * int v[, int ret]) as ctx->args[], so the page is read with the same
 * fill_page() and filtered to ZONE_DEVICE like every other probe. The change
 * is already made when the tracepoint fires: fill_page() reads the refcount
 * after it, and the row's refcount (before) is that minus the change.
 */

/* after_known: `after` is the kernel's own value (the _return variants), not
 * the racy re-read. */
#ifdef HAVE_PAGE_REF
static __always_inline int page_ref_event(struct bpf_raw_tracepoint_args *ctx, u16 probe,
					  s32 delta, int after_known, s32 after)
{
	struct pageref_event *e = page_event(ctx, probe, KIND_REF, ctx->args[0]);

	if (!e)
		return 0;
	if (after_known)
		e->refcount = after;
	e->ret = e->refcount;
	e->refs = delta;
	e->refcount = e->refcount - delta;
	submit(ctx, e);
	return 0;
}

/* set_page_count()/folio_set_count(): the count is set to v, from an unknown
 * value (decode writes refs and refcount as null for this probe). */
int on_page_ref_set(struct bpf_raw_tracepoint_args *ctx)
{
	return page_ref_event(ctx, PROBE_PAGE_REF_SET, 0, 1, (s32)ctx->args[1]);
}

/* page_ref_add/sub/inc/dec: v is the signed change */
int on_page_ref_mod(struct bpf_raw_tracepoint_args *ctx)
{
	return page_ref_event(ctx, PROBE_PAGE_REF_MOD, (s32)ctx->args[1], 0, 0);
}

/* page_ref_sub_and_test/dec_and_test: v signed, ret = reached zero */
int on_page_ref_mod_and_test(struct bpf_raw_tracepoint_args *ctx)
{
	return page_ref_event(ctx, PROBE_PAGE_REF_MOD_AND_TEST, (s32)ctx->args[1], 0, 0);
}

/* page_ref_inc_return/dec_return, folio_ref_sub_return: ret = the new count */
int on_page_ref_mod_and_return(struct bpf_raw_tracepoint_args *ctx)
{
	return page_ref_event(ctx, PROBE_PAGE_REF_MOD_AND_RETURN, (s32)ctx->args[1], 1,
			      (s32)ctx->args[2]);
}

/* page_ref_add_unless (folio_try_get, gup-fast's grab): ret = whether it added */
int on_page_ref_mod_unless(struct bpf_raw_tracepoint_args *ctx)
{
	if (!(s32)ctx->args[2])
		return 0;	/* refused: nothing changed */
	return page_ref_event(ctx, PROBE_PAGE_REF_MOD_UNLESS, (s32)ctx->args[1], 0, 0);
}

/* page_ref_freeze(page, count): count -> 0 when ret */
int on_page_ref_freeze(struct bpf_raw_tracepoint_args *ctx)
{
	if (!(s32)ctx->args[2])
		return 0;	/* the count was not `count`: nothing changed */
	return page_ref_event(ctx, PROBE_PAGE_REF_FREEZE, -(s32)ctx->args[1], 1, 0);
}

/* page_ref_unfreeze(page, count): 0 -> count */
int on_page_ref_unfreeze(struct bpf_raw_tracepoint_args *ctx)
{
	return page_ref_event(ctx, PROBE_PAGE_REF_UNFREEZE, (s32)ctx->args[1], 1,
			      (s32)ctx->args[1]);
}
#endif /* HAVE_PAGE_REF */
