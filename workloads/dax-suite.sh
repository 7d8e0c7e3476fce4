#!/bin/sh
# Run pageref's DAX workloads on each DAX directory given, one after another.
# Each workload prints one JSON line (what it did, its pid, its CLOCK_MONOTONIC
# window, the pfns of its DAX buffer); they are collected in $PAGEREF_WORKLOADS_OUT
# (default ./workloads.jsonl). Progress lines "@@pageref-lab workload ..." let the
# lab host show what runs. A failing workload is recorded and the suite goes on;
# the exit status is non-zero if any failed.
#
# Usage: dax-suite.sh BINDIR SCRATCHDIR SLOWDEV DAXDIR...
#   BINDIR      the compiled workloads (pageref lab builds them)
#   SCRATCHDIR  a directory on a non-DAX file system (O_DIRECT side)
#   SLOWDEV     a slow block device (dm-delay) for I/O held in flight
#
# Hold times are 2 s, twice the analysis' default 1 s threshold, so that what
# the analysis reports does not depend on the guest's timing: the vmsplice pipe
# holds its pages 2 s (a busy-page stall the truncate must wait out), and
# dax_punch waits 2 s after its I/O completed before it kicks a truncate the
# kernel failed to wake (a missed wake-up, not a slow one).
set -u
bin=$1 scratch=$2 slow=$3
shift 3
out=${PAGEREF_WORKLOADS_OUT:-./workloads.jsonl}
here=$(dirname "$0")
failed=0

mark() { echo "@@pageref-lab workload $(cut -d' ' -f1 /proc/uptime 2>/dev/null || echo 0) $*"; }
# CLOCK_BOOTTIME in ns to 10 ms (/proc/uptime): the window of a program that
# does not print its own (fio); a guest never suspends, so it is the trace's
# CLOCK_MONOTONIC
uptime_ns() { awk '{printf "%.0f", $1 * 1000000000}' /proc/uptime; }

run() {
    name=$1 fs=$2
    shift 2
    mark "$name $fs"
    res=$("$@")
    rc=$?
    if [ -n "$res" ]; then
        printf '%s\n' "$res" | sed "s/^{/{\"fs\": \"$fs\", \"rc\": $rc, /" >> "$out"
    else
        printf '{"fs": "%s", "rc": %d, "workload": "%s"}\n' "$fs" "$rc" "$name" >> "$out"
    fi
    if [ $rc -ne 0 ]; then
        echo "dax-suite: $name on $fs failed (exit $rc)" >&2
        failed=1
    fi
}

for dax in "$@"; do
    fs=$(awk -v d="$dax" '$2 == d { t = $3 } END { print t ? t : "unknown" }' /proc/mounts)
    run odirect "$fs" "$bin/dax_odirect" "$dax" "$scratch" 8
    run pvm "$fs" "$bin/dax_pvm" "$dax" 8
    run vmsplice "$fs" "$bin/dax_vmsplice" "$dax" 4 2000
    run punch "$fs" "$bin/dax_punch" "$dax" "$slow" 4 2000
    run uring "$fs" "$bin/dax_uring" "$dax" 4
    if command -v fio >/dev/null; then
        mark "fio $fs"
        # fio (3.33) maps the iomem file without sizing it: a 0-byte file would
        # SIGBUS, so give it blocks first.
        fallocate -l 4M "$dax/fio.mem"
        t0=$(uptime_ns)
        log=$(PAGEREF_FIO_DAX=$dax PAGEREF_FIO_SCRATCH=$scratch fio "$here/fio-dax.fio" 2>&1)
        rc=$? t1=$(uptime_ns)
        # fio reports a job killed by a signal but may still exit 0
        if printf '%s\n' "$log" | grep -q 'got signal'; then rc=1; fi
        ios=$(printf '%s\n' "$log" | awk '/^ +(READ|WRITE):/ { n++ } END { print n + 0 }')
        printf '{"fs": "%s", "rc": %d, "workload": "fio", "dir": "%s", "directions": %d, ' \
            "$fs" "$rc" "$dax" "$ios" >> "$out"
        printf '"start_ns": %s, "end_ns": %s}\n' "$t0" "$t1" >> "$out"
        if [ $rc -ne 0 ]; then
            printf '%s\n' "$log" >&2
            echo "dax-suite: fio on $fs failed (exit $rc)" >&2
            failed=1
        fi
    fi
done
exit $failed
