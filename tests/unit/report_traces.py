"""Hand-written traces (and their anomalies) for the report and live-view tests.

KNOWN: five fsdax/devdax pages, one of each story below, a lost-events record,
a probe plan, stacks. The anomalies are written by hand from the catalog's
definitions so the report model's tests do not depend on the detectors.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from pageref.analysis.severity import Severity

S = 1_000_000_000
T0 = 1 * S

HEADER = {
    "format": "pageref-events", "version": 1, "pin_bias": 1024, "page_size": 4096,
    "kernel": "6.1.0-56-amd64", "idle_refcount": {"fsdax": 1, "devdax": 1},
    "start_ns": T0, "end_ns": T0 + 5 * S, "host": "pmem-host",
    "command": ["pageref", "record", "--", "./dax-workload"],
    "lost": {"1": 3},
    "probe_plan": [
        {"probe": "grab", "symbol": "try_grab_folio", "method": "kprobe"},
        {"probe": "put", "symbol": "put_page", "method": "kprobe"},
        {"probe": "unpin", "symbol": "unpin_user_page", "method": "kprobe"},
        {"probe": "free", "symbol": "free_zone_device_page", "method": "kprobe"},
    ],
}

STACK = ["try_grab_folio+0x20", "follow_page_pte+0x1a4", "__get_user_pages+0x15e",
         "pin_user_pages_fast+0x3e"]


def _ev(t: float, kind: str, pfn: int | None, comm: str, pid: int, **kw) -> dict:
    probe = {"get": "try_grab_folio", "pin": "try_grab_folio", "put": "put_page",
             "unpin": "unpin_user_page", "free": "free_zone_device_page"}.get(kind)
    d = {"ts_ns": T0 + int(t * S), "kind": kind, "pfn": pfn, "comm": comm, "pid": pid,
         "tid": pid, "cpu": 0, "zone_device": True, "pgmap_type": "fsdax"}
    if probe:
        d["probe"] = probe
    d.update(kw)
    return d


def known_events(evil: str = "<script>document.title='pwned'</script>") -> list[dict]:
    """The events of KNOWN; `evil` is the comm of the task that grabs a free page."""
    return [
        # 0x1000: a normal get/put pair
        _ev(0.10, "get", 0x1000, "fio", 100, refcount=1),
        _ev(0.20, "put", 0x1000, "fio", 100, refcount=2),
        # 0x1001: pinned at 0.5 s, never unpinned (pin_leak)
        _ev(0.50, "pin", 0x1001, "rdma-app", 200, refcount=1, stack=STACK),
        # 0x1002: a get on a page whose refcount is 0 (grab_on_free_page)
        _ev(1.00, "get", 0x1002, evil, 666, refcount=0, stack=STACK),
        # 0x1003 (devdax): freed twice (double_free)
        _ev(1.50, "free", 0x1003, "kworker/0:1", 30, refcount=0, pgmap_type="devdax"),
        _ev(1.60, "free", 0x1003, "kworker/0:1", 30, refcount=0, pgmap_type="devdax"),
        # 0x1004: a long-term pin on fsdax, kept 1.2 s (> T), then released
        # (longterm_pin_fsdax; one dropped at once is 5.x's refusal)
        _ev(2.00, "pin", 0x1004, "vfio-user", 300, refcount=1, longterm=True),
        # the tracer lost 3 events on CPU 1
        {"ts_ns": T0 + int(3.0 * S), "kind": "lost", "cpu": 1, "count": 3},
        _ev(3.20, "unpin", 0x1004, "vfio-user", 300, refcount=1025),
    ]


def known_anomalies(evil: str = "<script>document.title='pwned'</script>") -> pd.DataFrame:
    """The anomalies of KNOWN, as find_anomalies' contract describes them."""
    rows = [
        ("grab_on_free_page", 0x1002, T0 + 1 * S, 666, evil,
         "get on a page with refcount 0", Severity.ERROR.value, [3]),
        ("double_free", 0x1003, T0 + int(1.6 * S), 30, "kworker/0:1",
         "second free with no get/pin since the free at 1.500000 s", Severity.ERROR.value,
         [4, 5]),
        ("pin_leak", 0x1001, T0 + int(0.5 * S), 200, "rdma-app",
         "pin held 4.5 s, still outstanding at the end", Severity.WARNING.value, [2]),
        ("longterm_pin_fsdax", 0x1004, T0 + 2 * S, 300, "vfio-user",
         "FOLL_LONGTERM pin on an fsdax page", Severity.UNCERTAIN.value, [6]),
    ]
    return pd.DataFrame(rows, columns=["kind", "pfn", "ts_ns", "pid", "comm", "detail",
                                       "severity", "evidence"])


def write_jsonl(path: Path, events: list[dict], header: dict | None = None) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(HEADER if header is None else header) + "\n")
        for e in events:
            f.write(json.dumps({k: v for k, v in e.items() if v is not None}) + "\n")
    return path


def write_known(path: Path, evil: str = "<script>document.title='pwned'</script>") -> Path:
    return write_jsonl(path, known_events(evil))
