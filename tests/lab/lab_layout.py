"""Where the lab guest put each DAX store, as stage two measured it.

lab/stage2.sh writes /results/lab-layout.txt (the run directory on the host):
one line per store, `NAME PATH DEVICE PFN_START PFN_END [why missing]`, pfns
[start, end) from the namespace's and partition's sysfs `resource`/`start`,
and device DAX's own `resource`/`size`. Tests read the guest's answer instead
of assuming the layout (two fsdax partitions on namespace0.0, device DAX on
namespace1.0: docs/lab.md).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class Store:
    name: str          # ext4 | xfs | devdax
    path: str          # mount point, or the device DAX character device
    device: str
    pfn_start: int
    pfn_end: int       # exclusive
    why_missing: str   # devdax only: why the guest has none ("" when present)

    @property
    def present(self) -> bool:
        return self.path != "none"

    def holds(self, pfn: int) -> bool:
        return self.pfn_start <= pfn < self.pfn_end


def read_layout(run_dir: Path) -> dict[str, Store]:
    text = (Path(run_dir) / "lab-layout.txt").read_text()
    out = {}
    for line in text.splitlines():
        parts = line.split(" ", 5)
        if len(parts) < 5:
            raise ValueError(f"bad lab-layout.txt line {line!r}")
        out[parts[0]] = Store(parts[0], parts[1], parts[2], int(parts[3]), int(parts[4]),
                              parts[5] if len(parts) > 5 else "")
    return out
