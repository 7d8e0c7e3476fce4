"""Return probes the kernel could not run: a kretprobe fires only when one of
its `maxactive` instances is free at the function's entry; otherwise the
kernel counts a miss (tracefs kprobe_profile: name, hits, misses) and the
return handler never runs. For pageref that is a lost event (a grab with no
result) that no buffer counted, so the recorder reads these counts too.
"""

from __future__ import annotations

import re
from pathlib import Path

from pageref.tracer.facts import TRACEFS

# "  r_gup_put_folio_bcc_236                                  123               0"
_LINE = re.compile(r"^\s*r_(?P<fn>\w+)_bcc_(?P<pid>\d+)\s+(?P<hits>\d+)\s+(?P<miss>\d+)\s*$")


def missed_returns(profile: str, pid: int) -> dict[str, int]:
    """function -> misses of the return probes process `pid` (BCC's names) owns,
    from a kprobe_profile text; functions without a miss are left out."""
    out: dict[str, int] = {}
    for line in profile.splitlines():
        m = _LINE.match(line)
        if m and int(m.group("pid")) == pid and int(m.group("miss")):
            out[m.group("fn")] = out.get(m.group("fn"), 0) + int(m.group("miss"))
    return out


def read_missed_returns(pid: int) -> dict[str, int]:
    for d in TRACEFS:
        try:
            return missed_returns((Path(d) / "kprobe_profile").read_text(), pid)
        except OSError:
            continue
    return {}
