"""`pageref lab run` end to end: the documented guest paths exist, the
command's output and exit status come back, /results is the run directory.
Without the recorder (--no-record), so this checks the lab alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require_lab

pytestmark = pytest.mark.lab

GUEST = r"""
set -u
echo "dax=$PAGEREF_LAB_DAX ext4=$PAGEREF_LAB_EXT4 xfs=$PAGEREF_LAB_XFS"
grep -E '^/dev/pmem0p1 /mnt/ext4 ext4 .*dax' /proc/mounts >/dev/null && echo ext4-dax-ok
grep -E '^/dev/pmem0p2 /mnt/xfs xfs .*dax=always' /proc/mounts >/dev/null && echo xfs-dax-ok
test "$PAGEREF_LAB_DEVDAX" = /dev/dax1.0 && test -c /dev/dax1.0 && echo devdax-ok
grep -E '^/dev/ram0 /mnt/scratch ' /proc/mounts | grep -qv dax && echo scratch-ok
test -b "$PAGEREF_LAB_SLOW_DEV" && dmsetup table slow | grep -q ' delay ' && echo slow-ok
grep -q 'Persistent Memory (legacy)' /proc/iomem && echo iomem-ok
echo kept > "$PAGEREF_LAB_RESULTS/note.txt"
exit 7
"""


def test_lab_run_paths_output_and_status(tmp_path):
    require_lab("6.1")
    proc = subprocess.run(
        [sys.executable, "-m", "pageref", "lab", "run", "--fs", "xfs", "--no-record",
         "--timeout", "300", "--", "sh", "-c", GUEST],
        capture_output=True, text=True, timeout=400, cwd=tmp_path,
    )
    out = proc.stdout
    assert proc.returncode == 7, (proc.stdout, proc.stderr[-2000:])
    assert "dax=/mnt/xfs ext4=/mnt/ext4 xfs=/mnt/xfs" in out
    for ok in ("ext4-dax-ok", "xfs-dax-ok", "devdax-ok", "scratch-ok", "slow-ok", "iomem-ok"):
        assert ok in out, (ok, out)
    results = [ln.split("results: ", 1)[1] for ln in proc.stderr.splitlines()
               if "results: " in ln]
    assert results, proc.stderr
    assert (Path(results[-1]) / "note.txt").read_text() == "kept\n"
