"""kprobe events a killed pageref left in tracefs.

BCC attaches kprobes through the kprobe PMU (perf_event_open), which the
kernel removes with the process. A kretprobe with `maxactive` (pageref asks
for 64 instances, so returns are not missed under concurrency) has no PMU
form: BCC writes it into tracefs `kprobe_events` as `r64:kprobes/r_<fn>_bcc_<pid>`
and removes it on a clean exit. After a SIGKILL it stays. It is disabled (its
perf event closed with the process) and costs nothing, but it is clutter that
only grows: the next recording removes those whose process is gone.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from pageref.tracer.facts import TRACEFS

# "r64:kprobes/r_gup_put_folio_bcc_1234 gup_put_folio"
_EVENT = re.compile(r"^[pr]\d*:(?P<group>[\w.]+)/(?P<name>[pr]_(?P<fn>\w+)_bcc_(?P<pid>\d+))\s")


def stale_events(listing: str, symbols: Iterable[str],
                 alive: Callable[[int], bool]) -> list[str]:
    """`group/name` of the BCC kprobe events in a kprobe_events `listing` on
    one of `symbols` whose process is no longer `alive`."""
    wanted = set(symbols)
    out = []
    for line in listing.splitlines():
        m = _EVENT.match(line)
        if m and m.group("fn") in wanted and not alive(int(m.group("pid"))):
            out.append(f"{m.group('group')}/{m.group('name')}")
    return out


def _alive(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


def remove_stale(symbols: Iterable[str]) -> list[str]:
    """Remove stale BCC kprobe events on `symbols`; returns what was removed."""
    for d in TRACEFS:
        path = Path(d) / "kprobe_events"
        try:
            listing = path.read_text()
        except OSError:
            continue
        removed = []
        for ev in stale_events(listing, symbols, _alive):
            # os.open: Python's append mode seeks to the end, which tracefs refuses
            try:
                fd = os.open(path, os.O_WRONLY | os.O_APPEND)
                try:
                    os.write(fd, f"-:{ev}\n".encode())
                finally:
                    os.close(fd)
                removed.append(ev)
            except OSError:
                pass  # in use or already gone: leave it
        return removed
    return []
