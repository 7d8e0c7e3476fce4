#!/bin/sh
# perftest over soft-RoCE in the lab guest: ib_write_bw / ib_read_bw with their
# buffers in a DAX mapping (--mmap=FILE). ibv_reg_mr pins the buffer with
# FOLL_LONGTERM (ib_umem_get -> pin_user_pages_fast): refused on fsdax,
# accepted on device DAX and held until ibv_dereg_mr.
# Sets up rxe0 on a dummy netdev d0 (all traffic stays in the guest), then for
# each case runs a server and a client on the same rxe0 and prints one JSON
# line per run: test, where, server and client exit status, the outcome line.
# Usage: rdma-clients.sh FSDAXDIR DEVDAX   (JSON lines to $PAGEREF_WORKLOADS_OUT)
set -u
fsdax=$1 dev=$2
out=${PAGEREF_WORKLOADS_OUT:-./workloads.jsonl}
mark() { echo "@@pageref-lab workload $(cut -d' ' -f1 /proc/uptime) $*"; }

modprobe -a rdma_rxe dummy || { echo "rdma-clients: modprobe rdma_rxe dummy failed" >&2; exit 1; }
# lo: the guest never brings it up (-nic none, no init), and perftest's TCP
# exchange to a local address goes through it (without it both sides hung)
ip link set lo up
ip link add d0 type dummy 2>/dev/null
ip addr add 10.99.0.1/24 dev d0 2>/dev/null
ip link set d0 up
rdma link add rxe0 type rxe netdev d0 2>/dev/null
rdma link show rxe0/1 >/dev/null 2>&1 || { echo "rdma-clients: no rxe0" >&2; exit 1; }

# one case: TEST WHERE SERVER_FILE SERVER_OFF [CLIENT_FILE CLIENT_OFF]
# (no client file: the client's buffer is anonymous memory). -s 1 MiB:
# perftest maps twice the message size, one 2 MiB unit (device DAX maps whole
# units only). Each side is bounded by `timeout`: a side whose peer failed
# would otherwise wait for it for ever (seen: the fsdax case hung the lab);
# stdbuf: perftest block-buffers its report, which a timeout would lose.
case_run() {
    t=$1 where=$2
    mark "$t $where"
    start=$(date +%s%N)
    timeout 60 stdbuf -oL -eL "$t" -d rxe0 -s 1048576 -n 20 -F --mmap="$3" --mmap-offset="$4" \
        >/tmp/srv.log 2>&1 &
    srv=$!
    sleep 3
    if [ $# -ge 6 ]; then
        timeout 45 stdbuf -oL -eL "$t" -d rxe0 -s 1048576 -n 20 -F --mmap="$5" --mmap-offset="$6" \
            10.99.0.1 >/tmp/cli.log 2>&1
    else
        timeout 45 stdbuf -oL -eL "$t" -d rxe0 -s 1048576 -n 20 -F 10.99.0.1 >/tmp/cli.log 2>&1
    fi
    crc=$?
    wait $srv
    src=$?
    end=$(date +%s%N)
    line=$(grep -hiE 'fail|couldn|unable|1048576 +20' /tmp/srv.log /tmp/cli.log | head -n 4 \
        | tr -d '"\\' | tr '\n\t' '| ')
    printf '{"workload": "%s", "fs": "%s", "server_rc": %d, "client_rc": %d, "start_wall_ns": %s, "end_wall_ns": %s, "outcome": "%s"}\n' \
        "$t" "$where" "$src" "$crc" "$start" "$end" "$line" >> "$out"
    sed 's/^/server| /' /tmp/srv.log
    sed 's/^/client| /' /tmp/cli.log
}

dd if=/dev/zero of="$fsdax/rdma-srv.buf" bs=1M count=2 2>/dev/null
sync
case_run ib_write_bw fsdax "$fsdax/rdma-srv.buf" 0
case_run ib_write_bw devdax "$dev" $((16 << 20)) "$dev" $((18 << 20))
case_run ib_read_bw devdax "$dev" $((20 << 20)) "$dev" $((22 << 20))
exit 0
