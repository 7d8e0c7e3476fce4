#!/bin/sh
# Run pageref's device DAX workloads on one device DAX character device, one
# after another, like dax-suite.sh does for the fsdax ones: each prints one JSON
# line (collected in $PAGEREF_WORKLOADS_OUT, default ./workloads.jsonl, with
# "fs": "devdax" and its exit status "rc"); "@@pageref-lab workload" lines
# let the lab host show progress. Each workload uses its own 2 MiB unit of the
# device (SLOT), so their pfns do not overlap.
#
# Usage: devdax-suite.sh BINDIR SCRATCHDIR DEVDAX
set -u
bin=$1 scratch=$2 dev=$3
out=${PAGEREF_WORKLOADS_OUT:-./workloads.jsonl}
here=$(dirname "$0")
failed=0

mark() { echo "@@pageref-lab workload $(cut -d' ' -f1 /proc/uptime 2>/dev/null || echo 0) $*"; }
# fio's window: CLOCK_BOOTTIME to 10 ms, the trace's clock in a guest (dax-suite.sh)
uptime_ns() { awk '{printf "%.0f", $1 * 1000000000}' /proc/uptime; }

run() {
    name=$1
    shift
    mark "$name devdax"
    res=$("$@")
    rc=$?
    if [ -n "$res" ]; then
        printf '%s\n' "$res" | sed "s/^{/{\"fs\": \"devdax\", \"rc\": $rc, /" >> "$out"
    else
        printf '{"fs": "devdax", "rc": %d, "workload": "%s"}\n' "$rc" "$name" >> "$out"
    fi
    # an io_uring registration the kernel refuses with EOPNOTSUPP (5.10, 6.1:
    # file-backed buffers) is what the workload is there to show, not a
    # failure: its row keeps rc 1 and the errno, the suite goes on as passed
    if [ $rc -ne 0 ] && ! printf '%s\n' "$res" | grep -q '"register_errno": 95'; then
        echo "devdax-suite: $name failed (exit $rc)" >&2
        failed=1
    fi
}

run devdax_odirect "$bin/devdax_refs" odirect "$dev" 0 8 0 "$scratch"
run devdax_pvm "$bin/devdax_refs" pvm "$dev" 1 8 0
run devdax_vmsplice "$bin/devdax_refs" vmsplice "$dev" 2 4 2000
# held 2 s, twice the analysis' default threshold: a long hold, released in the trace
run devdax_uring "$bin/devdax_refs" uring "$dev" 3 4 2000
if command -v fio >/dev/null; then
    mark "fio devdax"
    t0=$(uptime_ns)
    log=$(PAGEREF_FIO_DEVDAX=$dev PAGEREF_FIO_SCRATCH=$scratch fio "$here/fio-devdax.fio" 2>&1)
    rc=$? t1=$(uptime_ns)
    if printf '%s\n' "$log" | grep -q 'got signal'; then rc=1; fi
    ios=$(printf '%s\n' "$log" | awk '/^ +(READ|WRITE):/ { n++ } END { print n + 0 }')
    printf '{"fs": "devdax", "rc": %d, "workload": "devdax_fio", "dir": "%s", "directions": %d, ' \
        "$rc" "$dev" "$ios" >> "$out"
    printf '"start_ns": %s, "end_ns": %s}\n' "$t0" "$t1" >> "$out"
    if [ $rc -ne 0 ]; then
        printf '%s\n' "$log" >&2
        echo "devdax-suite: fio on $dev failed (exit $rc)" >&2
        failed=1
    fi
fi
exit $failed
