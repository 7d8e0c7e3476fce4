"""Synthetic traces that follow the kernel's refcount rules, with injected bugs.

Why this ships in the runtime package and not beside the tests: besides the
property tests (tests/unit/test_analysis_properties.py) it makes the bundled
example (examples/make_basic.py) and the benchmark's recordings
(bench/bench_analyze.py), and docs/analysis.md offers it to users who want a
trace with a known answer. It uses only public interfaces of the package
(the header and the schema); turning event dicts into a validated frame, which
only the tests need, lives in tests/unit/analysis_support.py.

The simulated kernel (one per trace):
- pages of a pgmap type; at rest a page sits at its type's idle refcount, except
  that a page of a type idling at 0 is "allocated" (refcount 1, set without a
  traced event, like zone_device_page_init()) before use and released by a final
  put to 0 followed by `free`;
- a hold is a get (refcount +refs) or a FOLL_PIN pin (+refs*w, w = pin bias for a
  small page, 1 for a large folio) released later by a put or unpin;
- a truncate (`busy`) happens only on a page with holds outstanding; the holds
  end, the page goes idle, the truncating task is woken and checks again
  (a `busy` with no page) well within T;
- every event records the refcount observed just before it (some randomly
  omitted), the task, the probe and a kernel-looking stack;
- with `page_refs`, the kernel also reports every change of a refcount as a
  `ref` row (CONFIG_DEBUG_PAGE_REF's page_ref tracepoints, format version 2),
  by the same task shortly after the ordinary row that names it: a gup-fast
  pin of a small page as +refs then +refs x (bias - 1), a refused grab
  sometimes as +1 then -1 (gup-fast gave it back), a put or unpin as one
  change, some puts' changes many ms later (a walk emits its rows ahead of
  the kernel's puts); the untraced changes too (the allocation reference set
  by the owner, page_ref_set; an fsdax page's inline unmap put, counted in
  `Scenario.inline_changes`: the changes no ordinary row names).

`Scenario.inject(bug)` adds one bug of the catalog on a fresh page and returns
its pfn; `Scenario.expected` lists (kind, pfn) the analysis must report.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import numpy as np

from pageref.trace.header import TraceHeader

BASE_PFN = 0x140000
MS = 1_000_000

# Kernel-looking call chains (innermost first), after a Debian 6.1 kernel.
_SYSCALL = ["do_syscall_64", "entry_SYSCALL_64_after_hwframe"]
STACKS: dict[str, list[str]] = {
    "get_dio": ["try_grab_folio", "gup_pte_range", "lockless_pages_from_mm",
                "internal_get_user_pages_fast", "get_user_pages_fast", "iov_iter_get_pages2",
                "__bio_iov_iter_get_pages", "bio_iov_iter_get_pages", "iomap_dio_bio_iter",
                "__iomap_dio_rw", "iomap_dio_rw", "ext4_file_read_iter", "vfs_read",
                "ksys_read", *_SYSCALL],
    "put_dio": ["__put_devmap_managed_page_refs", "__bio_release_pages", "iomap_dio_bio_end_io",
                "blk_update_request", "blk_mq_end_request", "pmem_submit_bio",
                "__submit_bio", "submit_bio_noacct_nocheck", "iomap_dio_submit_bio",
                "iomap_dio_bio_iter", "__iomap_dio_rw", "iomap_dio_rw", "ext4_file_read_iter",
                "vfs_read", "ksys_read", *_SYSCALL],
    "pin_uring": ["try_grab_page", "follow_page_pte", "follow_page_mask", "__get_user_pages",
                  "__gup_longterm_locked", "pin_user_pages", "io_pin_pages",
                  "io_sqe_buffer_register", "io_sqe_buffers_register",
                  "__io_uring_register", "__do_sys_io_uring_register", *_SYSCALL],
    "unpin_uring": ["gup_put_folio", "unpin_user_pages", "io_buffer_unmap",
                    "__io_sqe_buffers_unregister", "io_ring_ctx_free", "io_ring_exit_work",
                    "process_one_work", "worker_thread", "kthread", "ret_from_fork"],
    "pin_rdma": ["try_grab_page", "follow_page_pte", "follow_page_mask", "__get_user_pages",
                 "__gup_longterm_locked", "pin_user_pages_fast", "ib_umem_get",
                 "mlx5_ib_reg_user_mr", "ib_uverbs_reg_mr", "ib_uverbs_handler_UVERBS_METHOD_"
                 "INVOKE_WRITE", "ib_uverbs_cmd_verbs", "ib_uverbs_ioctl", "__x64_sys_ioctl",
                 *_SYSCALL],
    "unpin_rdma": ["gup_put_folio", "unpin_user_page_range_dirty_lock", "__ib_umem_release",
                   "ib_umem_release", "mlx5_ib_dereg_mr", "ib_dereg_mr_user",
                   "uverbs_free_mr", "destroy_hw_idr_uobject", "uverbs_destroy_uobject",
                   "ib_uverbs_cmd_verbs", "ib_uverbs_ioctl", "__x64_sys_ioctl", *_SYSCALL],
    "put_wrong": ["__put_devmap_managed_page_refs", "vhost_net_buf_unproduce",
                  "vhost_net_release", "__fput", "task_work_run", "exit_to_user_mode_prepare",
                  "syscall_exit_to_user_mode", *_SYSCALL],
    "free": ["free_zone_device_page", "__folio_put", "dax_delete_mapping_entry",
             "truncate_folio_batch_exceptionals", "truncate_inode_pages_range",
             "xfs_setattr_size", "xfs_vn_setattr", "notify_change", "do_truncate",
             "do_sys_ftruncate", *_SYSCALL],
    "busy": ["dax_layout_busy_page_range", "xfs_break_dax_layouts", "xfs_break_layouts",
             "xfs_file_fallocate", "vfs_fallocate", "__x64_sys_fallocate", *_SYSCALL],
    "refused": ["try_grab_page", "follow_page_pte", "follow_page_mask", "__get_user_pages",
                "__gup_longterm_locked", "pin_user_pages_remote", "vfio_pin_pages_remote",
                "vfio_pin_map_dma", "vfio_iommu_type1_ioctl", "__x64_sys_ioctl", *_SYSCALL],
}
PROBES = {"get": "try_grab_folio", "pin": "try_grab_page", "put":
          "__put_devmap_managed_page_refs", "unpin": "gup_put_folio",
          "free": "free_zone_device_page", "busy": "dax_layout_busy_page_range",
          "grab_failed": "try_grab_page"}

TASKS = [(2214, "fio"), (2215, "fio"), (3101, "qemu-system-x86"), (3388, "ib_write_bw"),
         (1876, "postgres"), (4410, "xfs_io"), (97, "kworker/u8:2")]
TRUNCATOR = (4521, "xfs_io")

BUGS = ("refcount_underflow", "grab_on_free_page", "pin_put_mismatch", "pin_leak",
        "free_while_referenced", "double_free", "busy_page_stall", "missed_wakeup",
        "longterm_pin_fsdax", "grab_refused_on_free_page", "busy_check_missed_reference")


@dataclasses.dataclass
class _Page:
    pfn: int
    pgmap: str
    idle: int
    order: int
    rc: int
    mapping: int = 0
    allocated: bool = False


class Scenario:
    """A trace under construction. All times in ns; the clock only moves forward."""

    def __init__(self, seed: int = 0, idle_fsdax: int = 1, pin_bias: int = 1024,
                 threshold_ns: int = 1_000_000_000, drop_refcount: float = 0.0,
                 stacks: bool = True, kernel: str = "6.1.0-56-amd64",
                 page_refs: bool = False) -> None:
        self.rng = random.Random(seed)
        self.header = TraceHeader(kernel=kernel, pin_bias=pin_bias,
                                  idle_refcount={"fsdax": idle_fsdax, "generic": 1,
                                                 "private": 0, "coherent": 0},
                                  host="pmem-lab", start_time="2026-11-21T23:00:00Z",
                                  command=["pageref", "record", "-o", "run.trace"])
        self.T = threshold_ns
        self.drop = drop_refcount
        self.stacks = stacks
        self.now = 1_000_000_000_000
        self.header.start_ns = self.now
        self.events: list[dict[str, Any]] = []
        self.pages: list[_Page] = []
        self.expected: list[tuple[str, int]] = []
        self._mapping = 0xFFFF_8881_0A3C_0000   # each page its own file's address_space
        self._quiet: list[tuple[int, int]] = []  # spans lost markers must not fall in
        self._next_pfn = BASE_PFN
        self.page_refs = page_refs
        self.inline_changes = 0                  # ref rows no ordinary row names
        self._later: list[dict[str, Any]] = []   # ref rows due after the clock moves on

    # -- primitives ---------------------------------------------------------
    def tick(self, lo: int = 1_000, hi: int = 200_000) -> int:
        self.now += self.rng.randint(lo, hi)
        return self.now

    def new_page(self, pgmap: str = "fsdax", order: int = 0) -> _Page:
        if order:  # a large folio starts on a multiple of its size
            self._next_pfn = -(-self._next_pfn // (1 << order)) * (1 << order)
        pfn = self._next_pfn
        self._next_pfn += 1 << order
        idle = self.header.idle_for(pgmap)
        p = _Page(pfn, pgmap, idle, order, idle, mapping=self._mapping + 0x400 * len(self.pages))
        self.pages.append(p)
        return p

    def _emit(self, kind: str, p: _Page | None, task: tuple[int, str] | None = None,
              stack: str | None = None, observe: bool | None = None,
              **extra: Any) -> dict[str, Any]:
        pid, comm = task or self.rng.choice(TASKS)
        ev: dict[str, Any] = {"ts_ns": self.tick(), "kind": kind, "pid": pid,
                              "tid": pid, "comm": comm, "cpu": self.rng.randrange(4)}
        if p is not None:
            ev.update(pfn=p.pfn, pgmap_type=p.pgmap, zone_device=True,
                      mapping=p.mapping, index=p.pfn - BASE_PFN)
            if p.order:
                ev["order"] = p.order
            # observe None: maybe omitted (drop_refcount); True: always (bug events).
            if observe or (observe is None and self.rng.random() >= self.drop):
                ev["refcount"] = p.rc
        if kind in PROBES:
            ev["probe"] = PROBES[kind]
        if self.stacks and stack:
            ev["stack"] = list(STACKS[stack])
        ev.update(extra)
        self.events.append(ev)
        return ev

    def _ref(self, p: _Page, change: int | None, probe: str, ev: dict[str, Any] | None,
             later: bool = False, set_to: int | None = None) -> None:
        """A `ref` row of `p` by the task of `ev` (the ordinary row naming the
        change; None: a kernel worker), p.rc before it; `later`: many ms on."""
        if not self.page_refs:
            return
        pid, comm = (ev["pid"], ev["comm"]) if ev is not None else (97, "kworker/u8:2")
        ts = self.now + self.rng.randint(1_000, 20_000)
        if later:
            ts = self.now + self.rng.randint(MS, 50 * MS)
        else:
            self.now = ts
        row: dict[str, Any] = {"ts_ns": ts, "kind": "ref", "pid": pid, "tid": pid,
                               "comm": comm, "pfn": p.pfn, "pgmap_type": p.pgmap,
                               "zone_device": True, "probe": probe}
        if p.order:
            row["order"] = p.order
        if change is None:
            row["refcount_after"] = set_to
        else:
            row.update(refs=change, refcount=p.rc, refcount_after=p.rc + change)
        if self.stacks:
            row["stack"] = [probe, "__page_ref_mod" if change is not None else "set_page_count",
                            *(STACKS["put_dio"] if change is not None and change < 0
                              else STACKS["get_dio"])[:4]]
        (self._later if later else self.events).append(row)

    def _free(self, p: _Page) -> None:
        """A `free`: the kernel's put that took the page to its end came first,
        so its ref rows still due are out before it."""
        due = [r for r in self._later if r["pfn"] == p.pfn]
        if due:
            self._later = [r for r in self._later if r["pfn"] != p.pfn]
            for r in due:
                r["ts_ns"] = self.tick(1_000, 20_000)
                self.events.append(r)
        self._emit("free", p, TRUNCATOR, "free")

    def w(self, p: _Page) -> int:
        return 1 if p.order else self.header.pin_bias

    def alloc(self, p: _Page) -> None:
        """Types idling at 0 hold one reference while in use (set untraced)."""
        if p.idle == 0 and not p.allocated:
            if p.rc == 0:
                self._ref(p, None, "page_ref_set", None, set_to=1)
            else:
                self._ref(p, 1, "page_ref_mod", None)
                self.inline_changes += 1
            p.rc += 1
            p.allocated = True

    def get(self, p: _Page, task=None, refs: int = 1, observe: bool | None = None) -> None:
        self.alloc(p)
        ev = self._emit("get", p, task, "get_dio", observe,
                        **({"refs": refs} if refs > 1 else {}))
        self._ref(p, refs, "page_ref_mod_unless", ev)
        p.rc += refs

    def put(self, p: _Page, task=None, refs: int = 1, stack: str = "put_dio",
            observe: bool | None = None) -> None:
        ev = self._emit("put", p, task, stack, observe, **({"refs": refs} if refs > 1 else {}))
        # a bio's walk emits its puts ahead of the kernel's (same task)
        self._ref(p, -refs, "page_ref_mod_and_test", ev,
                  later=stack == "put_dio" and self.rng.random() < 0.3)
        p.rc -= refs

    def pin(self, p: _Page, task=None, refs: int = 1, longterm: bool = False) -> None:
        self.alloc(p)
        ev = self._emit("pin", p, task, "pin_rdma" if longterm else "pin_uring", None,
                        flags=0x40000 | (0x10000 if longterm else 0), longterm=longterm,
                        **({"refs": refs} if refs > 1 else {}))
        # gup-fast: try_get_folio's +refs, then folio_ref_add's +refs x (bias - 1)
        self._ref(p, refs, "page_ref_mod_unless", ev)
        p.rc += refs
        if self.w(p) > 1:
            self._ref(p, refs * (self.w(p) - 1), "page_ref_mod", ev)
            p.rc += refs * (self.w(p) - 1)

    def unpin(self, p: _Page, task=None, refs: int = 1) -> None:
        ev = self._emit("unpin", p, task, "unpin_uring", None,
                        **({"refs": refs} if refs > 1 else {}))
        self._ref(p, -refs * self.w(p), "page_ref_mod_and_test", ev)
        p.rc -= refs * self.w(p)

    def unmap(self, p: _Page) -> None:
        """Drop the untraced allocation/mapping reference of an idle-0 type. fsdax
        pages drop it through inline puts no probe sees (as on 7.2); others
        through a traced final put."""
        if p.idle == 0 and p.allocated:
            if p.pgmap == "fsdax":
                self._ref(p, -1, "page_ref_mod_and_test", None)
                self.inline_changes += 1
                p.rc -= 1
            else:
                self.put(p, stack="free")
            p.allocated = False

    def release_life(self, p: _Page) -> None:
        """End a page's life: drop the allocation reference, then free."""
        self.unmap(p)
        self._free(p)

    def busy(self, p: _Page | None, task=TRUNCATOR, of: _Page | None = None) -> None:
        """A busy check of the mapping of `p` (or of `of` when nothing is busy)."""
        page = p if p is not None else of
        assert page is not None, "a busy check needs the page or the mapping's page"
        self._emit("busy", p, task, "busy", mapping=page.mapping)

    # -- clean traffic --------------------------------------------------------
    def traffic(self, p: _Page, n: int) -> None:
        """n balanced holds on `p`, overlapping, all released at the end."""
        held: list[tuple[str, tuple, int]] = []
        for _ in range(n):
            if held and self.rng.random() < 0.45:
                kind, task, refs = held.pop(self.rng.randrange(len(held)))
                (self.put if kind == "get" else self.unpin)(p, task, refs)
                continue
            task = self.rng.choice(TASKS)
            refs = self.rng.choice((1, 1, 1, 2))
            if self.rng.random() < 0.6:
                self.get(p, task, refs)
                held.append(("get", task, refs))
            else:
                self.pin(p, task, refs)
                held.append(("pin", task, refs))
            if p.pgmap == "fsdax" and self.rng.random() < 0.05:
                # A refused long-term pin: the kernel working, not an anomaly.
                ev = self._emit("grab_failed", p, (3388, "ib_write_bw"), "refused",
                                longterm=True, flags=0x50000, ret=-95)
                if p.rc > 0 and self.rng.random() < 0.5:
                    # gup-fast took it, then gave it back: +1, -1 by the same task
                    self._ref(p, 1, "page_ref_mod_unless", ev)
                    p.rc += 1
                    self._ref(p, -1, "page_ref_mod_and_test", ev)
                    p.rc -= 1
        while held:
            kind, task, refs = held.pop()
            (self.put if kind == "get" else self.unpin)(p, task, refs)

    def clean_page(self, lives: int = 2, n: int = 6, pgmap: str | None = None,
                   order: int | None = None) -> _Page:
        p = self.new_page(pgmap or self.rng.choice(("fsdax", "fsdax", "generic")),
                          order if order is not None else self.rng.choice((0, 0, 0, 9)))
        for life in range(lives):
            self.traffic(p, max(n, 1))
            if life < lives - 1 or self.rng.random() < 0.5:
                self.release_life(p)
        return p

    def clean_truncate(self, p: _Page) -> None:
        """A truncate that finds the page busy, waits briefly, and re-checks."""
        task = self.rng.choice(TASKS[:4])
        self.pin(p, task)
        self.unmap(p)  # truncate unmaps first, then asks what is still busy
        self.busy(p)
        self.now += self.rng.randint(1, self.T // 4)
        self.unpin(p, task)
        self.now += self.rng.randint(1_000, self.T // 4)
        self.busy(None, of=p)
        self.release_life(p)

    # -- bugs -----------------------------------------------------------------
    def inject(self, bug: str) -> int:
        r = self.rng
        if bug == "grab_on_free_page":
            p = self.new_page(r.choice(("private", "coherent")), 0)
        elif bug in ("longterm_pin_fsdax", "busy_page_stall", "missed_wakeup",
                     "grab_refused_on_free_page", "pin_put_mismatch"):
            p = self.new_page("fsdax", r.choice((0, 9)) if bug == "pin_put_mismatch" else 0)
        else:
            p = self.new_page(r.choice(("fsdax", "generic")), r.choice((0, 9)))
        if p.idle == 0 and bug in ("pin_put_mismatch", "grab_refused_on_free_page"):
            # Not decidable there: a page of a type idling at 0 holds an untraced
            # allocation reference, and a refused grab at 0 is the normal race.
            raise ValueError(f"{bug} needs a pgmap type idling at 1 or more")
        task = r.choice(TASKS[:4])
        self.traffic(p, r.randint(0, 4))
        expected = [bug]
        if bug == "refcount_underflow":
            self.alloc(p)
            self.put(p, task, refs=p.rc - p.idle + 1, observe=True)
        elif bug == "grab_on_free_page":
            self.get(p, task)
            self.put(p, task)
            self.release_life(p)
            self._emit("get", p, task, "get_dio", True)  # observed at refcount 0
            p.rc += 1
        elif bug == "pin_put_mismatch":
            self.pin(p, task)
            self.now += r.randint(MS, 50 * MS)
            self.put(p, task, stack="put_wrong", observe=True)
        elif bug == "pin_leak":
            self.pin(p, task)
            self.now += r.randint(MS, 3 * self.T)
        elif bug == "free_while_referenced":
            self.pin(p, task)
            self._free(p)
            if r.random() < 0.5:
                self.unpin(p, task)
        elif bug == "double_free":
            self.get(p, task)
            self.put(p, task)
            self.release_life(p)
            self.now += r.randint(MS, 10 * MS)
            self._free(p)
        elif bug == "busy_page_stall":
            self.pin(p, task)
            self.unmap(p)
            self.busy(p)
            self.now += self.T + r.randint(0, self.T)
            self.busy(p)  # woken early, still busy: the same episode
            self.now += r.randint(1, MS)
            self.unpin(p, task)
            self.now += r.randint(1_000, self.T // 4)
            self.busy(None, of=p)
        elif bug == "missed_wakeup":
            self.pin(p, task)
            self.unmap(p)
            self.busy(p)
            self.now += r.randint(1, self.T // 4)
            self.unpin(p, task)
            self.now += self.T + r.randint(1, self.T)  # the task never checks again
        elif bug == "busy_check_missed_reference":
            # A pipe (vmsplice) holds the page; the file is unmapped, so the
            # truncate's busy check (6.1-6.14) returns nothing at once.
            pipe = (5120, "dax_vmsplice")
            self.get(p, pipe)
            t0 = self.now
            self.unmap(p)
            self.now += r.randint(MS, 20 * MS)
            self.busy(None, of=p)
            self._quiet.append((t0, self.now))  # decided only with no loss between
            self.now += r.randint(MS, 2 * self.T)
            self.put(p, pipe)
            if p.idle == 0:
                self.release_life(p)
        elif bug == "longterm_pin_fsdax":
            self.pin(p, task, longterm=True)
            # kept past T: one its task drops at once is 5.x's refusal, not a bug
            self.now += self.T + r.randint(1, self.T)
            self.unpin(p, task)
        elif bug == "grab_refused_on_free_page":
            self.put(p, task, refs=p.rc, observe=True)  # idle -> 0: an underflow too
            expected.append("refcount_underflow")
            self._emit("grab_failed", p, task, "refused", True, ret=0)
        else:
            raise ValueError(f"unknown bug {bug!r}")
        for k in expected:
            self.expected.append((k, p.pfn))
        return p.pfn

    # -- output ---------------------------------------------------------------
    def finish(self, shuffle: int = 0, tail_ns: int | None = None,
               lost_rows: int = 0) -> list[dict[str, Any]]:
        """The events in file order: time order, locally shuffled within windows of
        `shuffle` events (CPUs' buffers interleave). Sets header end_ns.
        `lost_rows` `lost` records are mixed in (markers only: no event is
        actually dropped, so a clean trace stays clean)."""
        tail = self.T * 2 if tail_ns is None else tail_ns
        self.header.end_ns = self.now + tail
        evs = list(self.events)
        if self._later:   # ref rows due later: into time order (stable)
            evs = sorted(evs + self._later, key=lambda e: e["ts_ns"])
        for _ in range(lost_rows if evs else 0):
            at = self.rng.randrange(len(evs))
            for _ in range(100):
                if not any(a <= evs[at]["ts_ns"] <= b for a, b in self._quiet):
                    break
                at = self.rng.randrange(len(evs))
            else:
                continue
            cpu = self.rng.randrange(4)
            evs.insert(at + 1, {"ts_ns": evs[at]["ts_ns"], "kind": "lost", "cpu": cpu,
                                "count": self.rng.randint(1, 50)})
        if shuffle > 1:
            keyed = [(i + self.rng.uniform(0, shuffle), e) for i, e in enumerate(evs)]
            keyed.sort(key=lambda x: x[0])
            evs = [e for _, e in keyed]
        return evs

    def write_jsonl(self, path, events: list[dict[str, Any]]) -> None:
        import json

        with open(path, "w", encoding="utf-8") as f:
            f.write(self.header.to_json("pageref-events") + "\n")
            for e in events:
                f.write(json.dumps(e) + "\n")


def random_scenario(seed: int, bugs: tuple[str, ...] = (), clean_pages: int = 3,
                    idle_fsdax: int = 1, drop_refcount: float = 0.0, truncates: int = 1,
                    shuffle: int = 4, lost_rows: int = 0, page_refs: bool = False
                    ) -> tuple[Scenario, list[dict[str, Any]]]:
    """A trace of clean pages (some truncated) with `bugs` injected on their own
    pages, interleaved in time. Returns (scenario, events in file order)."""
    s = Scenario(seed, idle_fsdax=idle_fsdax, drop_refcount=drop_refcount,
                 page_refs=page_refs)
    work: list[tuple[str, Any]] = [("clean", None)] * clean_pages + [("bug", b) for b in bugs]
    work += [("truncate", None)] * truncates
    s.rng.shuffle(work)
    for what, arg in work:
        if what == "clean":
            s.clean_page(lives=s.rng.randint(1, 3), n=s.rng.randint(1, 8))
        elif what == "truncate":
            s.clean_truncate(s.new_page("fsdax", 0))
        else:
            s.inject(arg)
    return s, s.finish(shuffle=shuffle, lost_rows=lost_rows)


# -- bulk traces for the benchmark ----------------------------------------------------

def bulk_tables(n_events: int, seed: int = 1, part_rows: int = 1_000_000,
                stack_fraction: float = 0.1, pages: int | None = None, leaks: int = 5):
    """Yield Arrow tables (one per part) of a clean-looking, kernel-rule-following
    trace of about `n_events` events, vectorised (no Python loop per event).

    Each page gets balanced holds (60% gets, 40% pins) in back-to-back, partly
    overlapping pairs; refcounts are computed per page in time order; file order
    is time order jittered by a few microseconds (per-CPU buffers). A few lost
    rows and a few busy reports are mixed in. `stack_fraction` of the events carry
    a kernel stack (the rest null), as a recorder that samples stacks would write.
    """
    import pyarrow as pa

    from pageref.analysis import segments as seg
    from pageref.trace.schema import ARROW_SCHEMA

    rng = np.random.default_rng(seed)
    holds = n_events // 2
    npages = pages or max(1, n_events // 64)
    page = np.sort(rng.integers(0, npages, holds))
    # Each hold starts some time after the previous hold on the page started and
    # lasts a while: overlaps happen, as with concurrent DIO.
    gap = rng.integers(2_000, 400_000, holds)
    starts_pg = seg.run_starts(page)
    start = seg.cumsum(gap, starts_pg) + rng.integers(0, 10_000_000_000, npages)[page]
    dur = rng.integers(1_000, 300_000, holds)
    is_pin = rng.random(holds) < 0.4
    refs = np.where(rng.random(holds) < 0.9, 1, 2).astype(np.int32)
    task = rng.integers(0, len(TASKS), holds)

    # A few pins are never released: `leaks` pin_leak anomalies to find.
    keep_end = np.ones(holds, bool)
    keep_end[rng.choice(np.flatnonzero(is_pin), size=min(leaks, int(is_pin.sum())),
                        replace=False)] = False
    ev_page = np.concatenate([page, page])
    ev_ts = np.concatenate([start, start + dur]) + 1_000_000_000_000
    take = np.concatenate([np.ones(holds, bool), np.zeros(holds, bool)])
    ev_pin = np.concatenate([is_pin, is_pin])
    ev_refs = np.concatenate([refs, refs])
    ev_task = np.concatenate([task, task])
    keep = np.concatenate([np.ones(holds, bool), keep_end])
    ev_page, ev_ts, take, ev_pin, ev_refs, ev_task = (
        a[keep] for a in (ev_page, ev_ts, take, ev_pin, ev_refs, ev_task))
    bias = 1024
    delta = np.where(ev_pin, ev_refs.astype(np.int64) * bias, ev_refs).astype(np.int64)
    delta = np.where(take, delta, -delta)
    o = np.lexsort((ev_ts, ev_page))
    ev_page, ev_ts, take, ev_pin, ev_refs, ev_task, delta = (
        a[o] for a in (ev_page, ev_ts, take, ev_pin, ev_refs, ev_task, delta))
    # Strictly increasing within a page (ties broken in the sorted order).
    ev_ts = ev_ts + np.arange(len(ev_ts))
    pstarts = seg.run_starts(ev_page)
    idle = 1
    before = idle + seg.cumsum(delta, pstarts) - delta
    kind_codes = np.where(take, np.where(ev_pin, 1, 0), np.where(ev_pin, 3, 2)).astype(np.int32)
    # File order: time order with per-CPU jitter.
    fo = np.argsort(ev_ts + rng.integers(0, 5_000, len(ev_ts)), kind="stable")
    n = len(fo)
    kinds = pa.array(["get", "pin", "put", "unpin", "free", "busy", "lost", "grab_failed"])
    comms = pa.array(sorted({c for _, c in TASKS}))
    comm_idx = {c: i for i, c in enumerate(comms.to_pylist())}
    task_comm = np.array([comm_idx[c] for _, c in TASKS], dtype=np.int32)
    task_pid = np.array([p for p, _ in TASKS], dtype=np.int32)
    probes = pa.array(["try_grab_folio", "try_grab_page", "__put_devmap_managed_page_refs",
                       "gup_put_folio"])
    stack_pool = [STACKS["get_dio"], STACKS["pin_uring"], STACKS["put_dio"],
                  STACKS["unpin_uring"]]
    for lo in range(0, n, part_rows):
        sl = fo[lo:lo + part_rows]
        m = len(sl)
        kc = kind_codes[sl]
        t = ev_task[sl]
        has_stack = rng.random(m) < stack_fraction
        stack_vals = [stack_pool[k] if s else None for k, s in zip(kc.tolist(),
                                                                    has_stack.tolist())]
        cols = {
            "ts_ns": pa.array(ev_ts[sl]),
            "kind": pa.DictionaryArray.from_arrays(pa.array(kc), kinds),
            "pfn": pa.array(ev_page[sl].astype(np.int64) + BASE_PFN),
            "refcount": pa.array(before[sl].astype(np.int32)),
            "refs": pa.array(ev_refs[sl]),
            "pid": pa.array(task_pid[t]),
            "tid": pa.array(task_pid[t] + rng.integers(0, 4, m).astype(np.int32)),
            "comm": pa.DictionaryArray.from_arrays(pa.array(task_comm[t]), comms),
            "cpu": pa.array(rng.integers(0, 2, m).astype(np.int32)),
            "flags": pa.array(np.where(ev_pin[sl], 0x40000, 0).astype(np.int64)),
            "longterm": pa.array(np.zeros(m, bool)),
            "zone_device": pa.array(np.ones(m, bool)),
            "pgmap_type": pa.DictionaryArray.from_arrays(pa.array(np.zeros(m, np.int32)),
                                                         pa.array(["fsdax"])),
            "mapping": pa.array(np.uint64(0xFFFF888100000000)
                                + (ev_page[sl] // 256).astype(np.uint64) * np.uint64(0x400)),
            "index": pa.array(ev_page[sl].astype(np.int64) % 256),
            "probe": pa.DictionaryArray.from_arrays(pa.array(kc), probes),
            "stack": pa.array(stack_vals, type=pa.list_(pa.string())),
        }
        table = pa.table(cols)
        missing = [f for f in ARROW_SCHEMA if f.name not in cols]
        for f in missing:
            table = table.append_column(f.name, pa.nulls(m, f.type))
        yield table.select([f.name for f in ARROW_SCHEMA])


def bulk_header() -> TraceHeader:
    return TraceHeader(kernel="6.1.0-56-amd64", pin_bias=1024,
                       idle_refcount={"fsdax": 1, "generic": 1, "private": 0},
                       host="bench", command=["bench/bench_analyze.py"])
