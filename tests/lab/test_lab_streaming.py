"""Streaming for real, on 6.1: the perf buffer, events lost and counted, SIGTERM
and SIGKILL in the middle of a recording.

One boot runs five recordings of the process_vm_readv/writev workload
(dax_pvm: N pages pinned by readv, unpinned, pinned by writev, unpinned: 4N
events on pmem, nothing else touches the pmem pages):
- `perf`: --perf-buffer, 8 pages: every event arrives.
- `tiny` / `tinyperf`: a 1-page ring buffer / perf buffer and 2048 pages of
  work: the buffer must overflow. Kept + lost must still be 4N: nothing lost
  silently.
- `term`: SIGTERM once the workload is done: exit 0, a complete trace.
- `killed`: SIGKILL once the workload is done and a flush has passed: the trace
  is readable up to the last part and holds every event; the next recording
  (`after`) removes the kretprobe events the killed one left in tracefs.
"""

from __future__ import annotations

import shlex

import pytest
from conftest import register_part

pytestmark = pytest.mark.lab

KERNEL = "6.1"
SMALL, LARGE = 64, 2048

GUEST = r"""
set -u
P="$1" bin="$2" dax=/mnt/ext4 r=$PAGEREF_LAB_PART_DIR
rec() {  # name, record options..., -- command
    name=$1; shift
    $P record -o "$r/$name" --live plain "$@" > "$r/$name.out" 2> "$r/$name.err"
    echo $? > "$r/$name.rc"
}
rec perf --perf-buffer --buffer-pages 8 -- "$bin/dax_pvm" "$dax" {small}
rec tiny --buffer-pages 1 -- "$bin/dax_pvm" "$dax" {large}
rec tinyperf --perf-buffer --buffer-pages 1 -- "$bin/dax_pvm" "$dax" {large}

# in the background until the workload is done, then a signal
background() {  # name, signal
    $P record -o "$r/$1" --live plain -- sh -c \
        "'$bin/dax_pvm' '$dax' {small} > '$r/$1.pvm'; exec sleep 600" \
        > "$r/$1.out" 2> "$r/$1.err" &
    pid=$!
    for _ in $(seq 600); do [ -s "$r/$1.pvm" ] && break; sleep 0.5; done
    sleep 3    # a flush (every second) has written the workload's events
    kill -"$2" "$pid"
    wait "$pid"
    echo $? > "$r/$1.rc"
    pkill -x sleep
}
background term TERM
background killed KILL
cat /sys/kernel/tracing/kprobe_events > "$r/kprobe_events.killed"
rec after -- true
cat /sys/kernel/tracing/kprobe_events > "$r/kprobe_events.after"
exit 0
""".replace("{small}", str(SMALL)).replace("{large}", str(LARGE))


def _streaming_part(kernel: str):
    if kernel != KERNEL:
        return None
    from pageref.lab import session
    from pageref.workloads.build import build

    bin_dir = build(session.cache_dir())
    return session.Part("runs", script=GUEST, args=(shlex.join(session.pageref_in_guest()),
                                                    str(bin_dir)), timeout_s=900)


# In 6.1's shared boot (conftest.py), after pmd, before the suite: the next
# recording after a SIGKILL-ed one is this file's own `after`.
register_part("runs", 20, _streaming_part)


@pytest.fixture(scope="module")
def runs(lab_boot):
    if lab_boot.kernel != KERNEL:
        pytest.skip(f"streaming is tested on {KERNEL}")
    run = lab_boot.part("runs")
    assert run.exit_code == 0, (run.run_dir / "console.log").read_text()[-3000:]
    return run.run_dir


def read(run_dir, name):
    from pageref.trace.io import read_trace

    rc = int((run_dir / f"{name}.rc").read_text())
    return rc, read_trace(run_dir / name), (run_dir / f"{name}.err").read_text()


def on_pmem(trace):
    from pageref.lab.qemu import pmem_pfn_ranges

    ev = trace.events
    (lo, hi), _ = pmem_pfn_ranges()   # /mnt/ext4 is pmem0
    return ev[(ev["pfn"] >= lo) & (ev["pfn"] < hi)]


def test_perf_buffer_gets_every_event(runs):
    rc, t, err = read(runs, "perf")
    assert rc == 0, err
    assert t.header.extra["tracer"]["buffer"] == "perf"
    assert t.header.lost_total == 0
    kinds = on_pmem(t)["kind"].astype(str).value_counts().to_dict()
    assert kinds == {"pin": 2 * SMALL, "unpin": 2 * SMALL}, kinds


@pytest.mark.parametrize("name, buffer", [("tiny", "ringbuf"), ("tinyperf", "perf")])
def test_overflow_is_counted_not_silent(runs, name, buffer):
    rc, t, err = read(runs, name)
    assert rc == 0, err
    assert t.header.extra["tracer"]["buffer"] == buffer
    lost = t.header.lost_total
    assert lost > 0, "a 1-page buffer did not overflow: the test proves nothing"
    rows = t.events[t.events["kind"].astype(str) == "lost"]
    assert int(rows["count"].sum()) == lost        # lost rows agree with the header
    kept = len(on_pmem(t))
    assert kept + lost == 4 * LARGE, (kept, lost)   # every event: kept or counted
    assert f"{lost} lost" in err                    # the summary line says so
    assert "events lost" in err                     # and a warning as it happened


def test_sigterm_closes_the_trace(runs):
    rc, t, err = read(runs, "term")
    assert rc == 0, err
    assert t.header.end_ns is not None and t.header.end_ns > t.header.start_ns
    assert len(on_pmem(t)) == 4 * SMALL


def test_sigkill_leaves_a_readable_trace(runs):
    rc, t, err = read(runs, "killed")
    assert rc == 128 + 9, (rc, err)
    assert len(on_pmem(t)) == 4 * SMALL    # every event flushed before the kill


def test_next_recording_removes_what_a_killed_one_left(runs):
    """Kprobes go with the process (kprobe PMU); kretprobes with maxactive are
    tracefs kprobe_events BCC cannot remove once killed: the next record does."""
    left = [ln for ln in (runs / "kprobe_events.killed").read_text().splitlines() if ln]
    rc, _, err = read(runs, "after")
    assert rc == 0, err
    if left:
        assert f"removed {len(left)} kretprobe event(s)" in err, (left, err)
    assert (runs / "kprobe_events.after").read_text().strip() == ""
