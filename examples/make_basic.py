#!/usr/bin/env python3
"""Regenerate examples/basic.jsonl: a small, realistic fsdax trace (Debian 6.1
kernel: fsdax pages idle at refcount 1, pin bias 1024) with one of each anomaly
of the catalog planted among clean traffic, one truncate that waits correctly,
and a few lost events.

    .venv/bin/python examples/make_basic.py   # writes examples/basic.jsonl
"""

from __future__ import annotations

from pathlib import Path

from pageref.analysis.synth import BUGS, Scenario


def main() -> None:
    s = Scenario(seed=20261122, idle_fsdax=1, drop_refcount=0.1)
    # The plan pageref record chose on the lab's Debian 6.1 guest.
    s.header.probe_plan = [
        {"probe": "grab", "symbol": "try_grab_folio", "method": "fentry+fexit"},
        {"probe": "grab", "symbol": "try_grab_page", "method": "fentry+fexit"},
        {"probe": "put", "symbol": "__put_devmap_managed_page_refs", "method": "kprobe"},
        {"probe": "put", "symbol": "__folio_put", "method": "kprobe"},
        {"probe": "put", "symbol": "__bio_release_pages", "method": "kprobe"},
        {"probe": "put", "symbol": "gup_put_folio", "method": "kprobe"},
        {"probe": "put", "symbol": "unpin_user_page", "method": "kprobe"},
        {"probe": "free", "symbol": "free_zone_device_page", "method": "fentry"},
        {"probe": "busy", "symbol": "dax_layout_busy_page_range", "method": "fexit"},
    ]
    for _ in range(4):
        s.clean_page(lives=2, n=6, pgmap="fsdax")
    s.clean_truncate(s.new_page("fsdax", 0))
    # The tracer's ring buffer overflowed once, in the middle of a page's traffic:
    # `pageref history` shows the gap.
    p = s.new_page("fsdax", 9)
    s.traffic(p, 5)
    s.events.append({"ts_ns": s.tick(), "kind": "lost", "cpu": 1, "count": 3})
    s.header.lost = {"1": 3}
    s.traffic(p, 5)
    for bug in BUGS:
        s.inject(bug)
        s.clean_page(lives=1, n=4, pgmap="fsdax")
    events = s.finish(shuffle=3)
    out = Path(__file__).with_name("basic.jsonl")
    s.write_jsonl(out, events)
    print(f"wrote {len(events)} events to {out}; planted: "
          + ", ".join(f"{k}@{p:#x}" for k, p in s.expected))


if __name__ == "__main__":
    main()
