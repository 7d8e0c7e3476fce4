"""Which of the kernel's refcount changes (`ref` rows, the page_ref tracepoints)
a traced operation explains: the matching rule of the completeness figure
(analysis/completeness.py; docs/analysis.md "History completeness").

Per (page, task) the rows are taken in time order (an ordinary row before a
ref row at the same time). Each ordinary row that names a reference (get,
pin, put, unpin, grab_failed) opens a group with a target, its effect as the
page model counts it (get +refs, pin +refs x w, put -refs, unpin -refs x w,
grab_failed 0). A ref row joins the oldest open group of its (page, task)
that it fits, FIFO, at most MATCH_WINDOW_NS after the group's ordinary row:

- target > 0: increases while the sum stays at most the target (a gup-fast
  pin: +refs, then +refs x (bias - 1)); or, once the sum is above 0, decreases
  while it stays at least 0 (the grab given back: +x, -x);
- target < 0: decreases while the sum stays at least the target;
- target 0 (a refused grab): increases, then decreases to 0 (+x, -x).

A group is complete when its sum reaches the target (target 0 and given-back
grabs: back to 0 after a decrease); its ref rows are then attributed. A group
that does not complete within the window gives up its ref rows as
unattributed.

Some probes fire after the change they report: `__folio_put`/`__put_page` run
once folio_put() has dropped the last reference, so the kernel's ref row (to
0) comes first. A decrease to 0 no open group fits is therefore held for
EARLY_WINDOW_NS (any other ref row no group fits is unattributed at once):
the next row of the same (page, task), if it is an ordinary row in that time
whose effect the held rows make up exactly, claims them; any other next row
leaves them unattributed (device-private pages' last puts in
do_swap_page, unmap_page_range and migrate_device_finalize, hmm-tests on the
lab's debug kernel). Unclaimed, they are unattributed.

Pure Python over the rows of (page, task) pairs that hold ref rows: only
traces from CONFIG_DEBUG_PAGE_REF kernels pay for it.
"""

from __future__ import annotations

import dataclasses
from collections import deque

import numpy as np

from pageref.analysis.columns import K

# Generous: a walk over a bio (__bio_release_pages, folios_put_refs) emits its
# rows at the function's entry and the kernel's puts follow, page by page,
# possibly many ms later; the same 1 s the engine allows events to be late.
MATCH_WINDOW_NS = 1_000_000_000
# How long a ref row waits for an ordinary row reporting it after the fact (a
# kprobe on __folio_put fires microseconds after folio_put's decrement; TCG
# guests stretch that to a few ms).
EARLY_WINDOW_NS = 100_000_000

REF_OPS = np.array([K[k] for k in ("get", "pin", "put", "unpin", "grab_failed")])


@dataclasses.dataclass
class Group:
    """The ref rows an ordinary row has gathered so far."""

    ts: int               # the ordinary row's time
    target: int
    total: int = 0
    down: bool = False    # a decrease has come (the given-back form)
    rows: list[int] = dataclasses.field(default_factory=list)   # tally ids

    def fits(self, change: int) -> bool:
        t, s = self.target, self.total
        if change > 0:
            return not self.down and (s + change <= t if t > 0 else t == 0)
        if change < 0:
            if t < 0:
                return s + change >= t
            return s > 0 and s + change >= 0
        return False

    def add(self, change: int, rid: int) -> bool:
        """Take the change; True when the group is complete."""
        self.total += change
        self.down |= change < 0 and self.target >= 0
        self.rows.append(rid)
        if self.target != 0 and not self.down:
            return self.total == self.target
        return self.down and self.total == 0


class Matcher:
    """The FIFO matching of ref rows to ordinary rows, streamed: feed rows in
    time order (`ordinary`, `ref`); `expire(now)` closes the groups no later
    row can complete. Results: `attributed`/`unattributed` tally ids."""

    def __init__(self, window_ns: int = MATCH_WINDOW_NS,
                 early_ns: int = EARLY_WINDOW_NS) -> None:
        self.window = int(window_ns)
        self.early_window = int(early_ns)
        self.open: dict[tuple[int, int], deque[Group]] = {}
        # a last put no group fitted, waiting for the ordinary row reporting it
        # after the fact: (ts, change, tally id). At most one per key: the
        # key's next row, whatever it is, settles it.
        self.early: dict[tuple[int, int], tuple[int, int, int]] = {}
        self.attributed: list[int] = []
        self.unattributed: list[int] = []

    def ordinary(self, key: tuple[int, int], ts: int, target: int) -> None:
        held = self.early.pop(key, None)
        if held is not None:
            held_ts, change, rid = held
            if target and change == target and ts - held_ts <= self.early_window:
                self.attributed.append(rid)   # the late report
                return
            self.unattributed.append(rid)
        self.open.setdefault(key, deque()).append(Group(ts, target))

    def _unfitted(self, key: tuple[int, int], ts: int, change: int, rid: int,
                  to_zero: bool) -> None:
        """A ref row no open group fits: a last put waits for its late report."""
        if to_zero and change < 0:
            self.early[key] = (ts, change, rid)
        else:
            self.unattributed.append(rid)

    def ref(self, key: tuple[int, int], ts: int, change: int, rid: int,
            to_zero: bool = False) -> None:
        held = self.early.pop(key, None)
        if held is not None:   # another change came first: nobody reported it
            self.unattributed.append(held[2])
        q = self.open.get(key)
        if q:
            self._expire_queue(q, ts)
            for g in q:
                if g.fits(change):
                    if g.add(change, rid):
                        self.attributed.extend(g.rows)
                        q.remove(g)
                    break
            else:
                self._unfitted(key, ts, change, rid, to_zero)
            if not q:
                del self.open[key]
            return
        self._unfitted(key, ts, change, rid, to_zero)

    def expire(self, now: int | None) -> None:
        """Close the groups older than the window at `now` (None: all, the end
        of the trace): their ref rows are unattributed."""
        for key in list(self.open):
            q = self.open[key]
            self._expire_queue(q, now)
            if not q:
                del self.open[key]
        for key, (ts, _change, rid) in list(self.early.items()):
            if now is None or now - ts > self.early_window:
                self.unattributed.append(rid)
                del self.early[key]

    def _expire_queue(self, q: deque[Group], now: int | None) -> None:
        while q and (now is None or now - q[0].ts > self.window):
            self.unattributed.extend(q.popleft().rows)
        if now is not None and q:
            # a later group may be past the window too (FIFO by time: not usual)
            stale = [g for g in q if now - g.ts > self.window]
            for g in stale:
                self.unattributed.extend(g.rows)
                q.remove(g)

    @property
    def held(self) -> int:
        return sum(len(q) for q in self.open.values()) + len(self.early)

    @property
    def busy(self) -> bool:
        """Open groups or held rows: ordinary rows still matter."""
        return bool(self.open or self.early)
