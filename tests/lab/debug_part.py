"""The debug kernel's one boot (6.12-debug: CONFIG_DEBUG_PAGE_REF, DEVICE_PRIVATE,
TEST_HMM, GUP_TEST; lab/debug_config.py): what it runs and how its results are
read. tests/lab/test_lab_debug.py holds them to the kernel's own count.

One `pageref record --stacks` (the page_ref tracepoints attached with the
ordinary plan) around, in order:
- the fsdax suite on ext4 and xfs and the device DAX suite (our workloads);
- the real clients: perftest over soft-RoCE where the kernel has rdma_rxe, and
  the kernel's own selftests built from Debian's linux-source-6.12:
  gup_longterm, gup_test (every GUP and pin variant on a DAX file and on device
  DAX) and hmm-tests (device-private pages through test_hmm.ko).
Each client writes one JSON line to /results/dbg/clients.jsonl with its
CLOCK_BOOTTIME window (/proc/uptime: the guest never suspends, so it is the
trace's CLOCK_MONOTONIC to 10 ms) and exit status.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest

DEBUG_KERNEL = "6.12-debug"
SOURCE = Path("/usr/src/linux-source-6.12.tar.xz")   # bin/setup installs it
# gup_test's commands (tools/testing/selftests/mm/gup_test.c): the flag, the
# kernel call (mm/gup_test.c), what each page gets, how it is given back
GUP_TEST_VARIANTS = {
    "u": ("get_user_pages_fast", "get", "put_page"),
    "U": ("get_user_pages", "get", "put_page"),
    "a": ("pin_user_pages_fast", "pin", "unpin_user_pages"),
    "b": ("pin_user_pages", "pin", "unpin_user_pages"),
    "L": ("pin_user_pages FOLL_LONGTERM", "pin", "unpin_user_pages"),
}
GUP_TEST_MIB = 2    # one PMD's worth: device DAX maps in 2 MiB units

GUEST = r"""
set -u
P="$1" bins="$2" src="$3" mm="$4" r=$PAGEREF_LAB_PART_DIR
export r bins src mm
# 64 MiB of ring buffer: `modprobe test_hmm` sets the count of 131,072 device-
# private pages at once (memmap_init_zone_device, ~200k ref rows, 25 MB), a
# burst the default ring lost 62,898 events of once when the host was busy
$P record -o "$r/trace" --stacks --buffer-pages 16384 --live plain -- sh -c '
    up() { awk "{printf \"%.0f\", \$1 * 1000000000}" /proc/uptime; }
    # client NAME TARGET CMD...: run CMD, log its window and status, output to NAME-TARGET.out
    client() {
        name=$1 target=$2; shift 2
        t0=$(up); "$@" > "$r/$name-$target.out" 2>&1; rc=$?; t1=$(up)
        printf "{\"client\": \"%s\", \"target\": \"%s\", \"rc\": %d, " \
            "$name" "$target" $rc >> "$r/clients.jsonl"
        printf "\"start_ns\": %s, \"end_ns\": %s}\n" "$t0" "$t1" >> "$r/clients.jsonl"
    }
    PAGEREF_WORKLOADS_OUT="$r/workloads.jsonl" sh "$src/dax-suite.sh" "$bins" /mnt/scratch \
        /dev/mapper/slow /mnt/ext4 /mnt/xfs
    PAGEREF_WORKLOADS_OUT="$r/workloads.jsonl" sh "$src/devdax-suite.sh" "$bins" /mnt/scratch \
        "$PAGEREF_LAB_DEVDAX"
    if modprobe rdma_rxe 2>/dev/null; then
        client perftest devdax sh "$src/rdma-clients.sh" /mnt/ext4 "$PAGEREF_LAB_DEVDAX"
    fi
    truncate -s 2M /mnt/ext4/gup_test.dat
    for v in u U a b L; do
        client "gup_test-$v" fsdax "$mm/gup_test" -$v -f /mnt/ext4/gup_test.dat -S -m 2 -n 512 -r 1
        client "gup_test-$v" devdax "$mm/gup_test" -$v -f "$PAGEREF_LAB_DEVDAX" -S -m 2 -n 512 -r 1
    done
    (cd /mnt/ext4 && client gup_longterm ext4 "$mm/gup_longterm")
    modprobe test_hmm && client hmm-tests private "$mm/hmm-tests"
    exit 0'
"""


def selftests(cache: Path) -> Path:
    """hmm-tests, gup_test and gup_longterm, built once from linux-source-6.12."""
    from pageref.workloads.build import source_dir

    out = cache / "mm-selftests-6.12"
    if not all((out / n).is_file() for n in ("hmm-tests", "gup_test", "gup_longterm")):
        if not SOURCE.is_file():
            pytest.fail(f"{SOURCE} missing: run bin/setup (linux-source-6.12)", pytrace=False)
        subprocess.run(["sh", str(source_dir() / "build-mm-selftests.sh"), str(SOURCE),
                        str(out)], check=True, capture_output=True)
    return out


def debug_part():
    from pageref.lab import session
    from pageref.lab.paths import cache_dir
    from pageref.workloads.build import build, source_dir

    return session.Part("dbg", script=GUEST, timeout_s=2400,
                        args=(shlex.join(session.pageref_in_guest()), str(build(cache_dir())),
                              str(source_dir()), str(selftests(cache_dir()))))


def read_clients(run_dir: Path) -> list[dict]:
    path = run_dir / "clients.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
