#!/bin/sh
# pageref lab, stage two: runs as PID 1 on the overlay of the host's root.
# Mounts what the host's tools need, brings up the emulated pmem (nd_e820 +
# nd_pmem on the memmap=!-reserved ranges), makes the DAX file systems, the
# scratch RAM disk and the slow (dm-delay) device, then runs the job the host
# left in the results share (/results/job.sh) and powers off. Progress lines
# start with "@@pageref-lab " and carry the guest's uptime; the host parses them.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH HOME=/root TERM="${TERM:-linux}" LANG=C.UTF-8

mark() { echo "@@pageref-lab $1 $(cut -d' ' -f1 /proc/uptime) $2"; }
off() {
    sync
    echo o > /proc/sysrq-trigger
    sleep 5
    busybox poweroff -f
}
fail() { mark fail "$*"; [ -d /results ] && echo "$*" > /results/lab-failure; off; }

mount -t proc proc /proc
mount -t sysfs sysfs /sys
# No tmpfs on /tmp: the overlay's tmpfs upper already takes writes there, and a
# fresh mount would hide the host's /tmp, where a clone of pageref (its .venv,
# lab-cache, workloads) may well live (CI clones into /tmp).
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
mount -t bpf bpf /sys/fs/bpf 2>/dev/null
mkdir -p /dev/pts /dev/shm && mount -t devpts devpts /dev/pts && mount -t tmpfs tmpfs /dev/shm
echo 1 > /proc/sys/kernel/sysrq
hostname pageref-lab    # else "(none)": traces name the host they were recorded on
mark stage2 "$(uname -r)"

mkdir -p /results
mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288 results /results \
    || fail "mount of the results share (9p tag results)"
[ -f /results/job.env ] || fail "no /results/job.env"
set -a    # the job and its children see every job.env variable (PAGEREF_WORKLOADS_OUT, ...)
. /results/job.env
set +a

rel=$(uname -r)
# A kernel that is not the host's own: make /lib/modules/<release> (with build ->
# its headers, which BCC needs) from the unpacked packages the host named.
if [ ! -e "/lib/modules/$rel/modules.dep" ]; then
    [ -d "$PAGEREF_LAB_MODULES" ] || fail "modules dir $PAGEREF_LAB_MODULES missing"
    mkdir -p "/lib/modules/$rel"
    for f in "$PAGEREF_LAB_MODULES"/*; do ln -sfn "$f" "/lib/modules/$rel/"; done
fi
if [ -n "$PAGEREF_LAB_HEADERS" ] && [ ! -e "/lib/modules/$rel/build/Makefile" ]; then
    rm -f "/lib/modules/$rel/build"
    ln -sfn "$PAGEREF_LAB_HEADERS" "/lib/modules/$rel/build"
fi

dmesg -n 1    # keep kernel messages off the console the job's output shares
# Debian's modprobe.d runs `ndctl load-keys` (TPM-sealed nvdimm keys; none
# here) before libnvdimm; --ignore-install covers only the modules named.
modprobe --ignore-install libnvdimm || fail "modprobe libnvdimm"
modprobe -a nd_e820 nd_pmem dm_delay ext4 xfs \
    || fail "modprobe nd_e820 nd_pmem dm_delay ext4 xfs"
# device DAX: the namespace driver (dax_pmem) and the character device (device_dax);
# a kernel without them still gets its fsdax mounts, and says why devdax is missing
devdax_why=
modprobe -a dax_pmem device_dax 2>/dev/null || devdax_why="modprobe dax_pmem device_dax failed"
modprobe brd rd_nr=2 rd_size="${PAGEREF_LAB_RAMDISK_KB:-131072}" || fail "modprobe brd"
mark modules ""
n=0
while [ ! -b /dev/pmem0 ] || [ ! -b /dev/pmem1 ]; do
    n=$((n + 1)); [ $n -gt 100 ] && fail "no /dev/pmem0 and /dev/pmem1 (memmap=!, nd_e820)"
    sleep 0.1
done
mark pmem "$(cat /sys/block/pmem0/size) $(cat /sys/block/pmem1/size)"

# Layout: namespace0.0 (/dev/pmem0, fsdax) carries both DAX file systems in
# two partitions, 2 MiB-aligned (a PMD mapping needs a 2 MiB-aligned physical
# block): p1 190 MiB ext4, p2 the last 320 MiB xfs (mkfs.xfs wants >= 300 MiB).
# namespace1.0 becomes device DAX (/dev/dax1.0). fs_dax_get_by_bdev() serves
# DAX on a partition with the partition's start as offset (it refuses only a
# partition not page-aligned).
mkdir -p /mnt/ext4 /mnt/xfs /mnt/scratch
printf 'label: dos\nstart=4096, size=389120, type=83\nstart=393216, type=83\n' \
    | sfdisk -q /dev/pmem0 >/dev/null || fail "sfdisk /dev/pmem0"
n=0
while [ ! -b /dev/pmem0p1 ] || [ ! -b /dev/pmem0p2 ]; do
    n=$((n + 1)); [ $n -gt 50 ] && fail "no /dev/pmem0p1 and /dev/pmem0p2 after sfdisk"
    sleep 0.1
done
# The three mkfs run at once (two vCPUs; each is mostly waiting on TCG).
mkfs.ext4 -q -F -b 4096 /dev/pmem0p1 & p0=$!
# xfs: a 2 MiB stripe unit aligns large allocations on the device, so a file
# with a 2 MiB extent size hint can be mapped with PMDs (dax_pmd); two AGs
# leave room for the log a stripe-aligned file system needs
mkfs.xfs -q -f -m reflink=0 -d su=2m,sw=1,agcount=2 /dev/pmem0p2 & p1=$!
mkfs.ext4 -q -F /dev/ram0 & p2=$!
if [ -z "$devdax_why" ]; then
    # -f: the e820 namespace is "raw" (mode memory); reconfigure it in place
    if ! out=$(ndctl create-namespace -f -e namespace1.0 -m devdax 2>&1); then
        devdax_why="ndctl create-namespace -e namespace1.0 -m devdax failed:"
        devdax_why="$devdax_why $(printf '%s' "$out" | tail -n 2 | tr '\n' ' ')"
    fi
fi
wait $p0 || fail "mkfs.ext4 /dev/pmem0p1"
wait $p1 || fail "mkfs.xfs /dev/pmem0p2"
wait $p2 || fail "mkfs.ext4 /dev/ram0"
mount -o dax /dev/pmem0p1 /mnt/ext4 || fail "mount -o dax /dev/pmem0p1"
mount -o dax=always /dev/pmem0p2 /mnt/xfs || fail "mount -o dax=always /dev/pmem0p2"
mount /dev/ram0 /mnt/scratch || fail "mount /dev/ram0"
devdax=
if [ -z "$devdax_why" ]; then
    n=0
    while [ ! -c /dev/dax1.0 ] && [ $n -lt 50 ]; do n=$((n + 1)); sleep 0.1; done
    if [ -c /dev/dax1.0 ]; then devdax=/dev/dax1.0; else devdax_why="no /dev/dax1.0"; fi
fi
# Where each DAX store sits in physical memory (pfns), measured here, not
# assumed: the namespace's resource plus the partition's start; device DAX's
# own resource (after the struct pages it keeps on the device: map "dev").
ns0=$(cat /sys/bus/nd/devices/namespace0.0/resource)
part_pfns() {  # partition -> "start end" pfns, [start, end)
    s=$(( ns0 + $(cat /sys/block/pmem0/$1/start) * 512 ))
    echo "$(( s / 4096 )) $(( (s + $(cat /sys/block/pmem0/$1/size) * 512) / 4096 ))"
}
{
    echo "ext4 /mnt/ext4 /dev/pmem0p1 $(part_pfns pmem0p1)"
    echo "xfs /mnt/xfs /dev/pmem0p2 $(part_pfns pmem0p2)"
    if [ -n "$devdax" ]; then
        r=$(cat /sys/bus/dax/devices/dax1.0/resource 2>/dev/null || echo 0)
        sz=$(cat /sys/bus/dax/devices/dax1.0/size 2>/dev/null || echo 0)
        if [ $((r)) = 0 ] || [ $((sz)) = 0 ]; then
            # 5.10's dev_dax says 0 for both (measured in the lab); the nvdimm
            # side has them: the namespace's dax device (its holder) gives the
            # data area after the reserved struct pages (drivers/nvdimm/
            # pfn_devs.c resource_show, size_show)
            nd=/sys/bus/nd/devices/$(cat /sys/bus/nd/devices/namespace1.0/holder)
            r=$(cat "$nd/resource") sz=$(cat "$nd/size")
        fi
        echo "devdax $devdax $devdax $(( r / 4096 )) $(( (r + sz) / 4096 ))"
    else
        echo "devdax none none 0 0 $devdax_why"
    fi
} > /results/lab-layout.txt
mark devdax "${devdax:-none} ${devdax_why}"
sectors=$(blockdev --getsz /dev/ram1)
dmsetup create slow --noudevsync \
    --table "0 $sectors delay /dev/ram1 0 ${PAGEREF_LAB_SLOW_MS:-500}" || fail "dmsetup create slow"
dmsetup mknodes slow
[ -b /dev/mapper/slow ] || fail "/dev/mapper/slow missing after dmsetup mknodes"
chmod 1777 /mnt/ext4 /mnt/xfs /mnt/scratch
mark ready "$(grep -E ' /mnt/(ext4|xfs) ' /proc/mounts | tr '\n' ';')"

# numpy's AVX2 kernels (x86-simd-sort's argsort: vpgatherqq with masked-off
# lanes) take a general protection fault under QEMU TCG's emulation of -cpu
# max: `pageref record` died in the guest on 5.10 and 6.1 (dmesg: "general
# protection fault ... in _multiarray_umath", at that instruction), never on
# the host. The guest's numpy keeps to its x86-64-v2 kernels.
export NPY_DISABLE_CPU_FEATURES="X86_V3 X86_V4 AVX512_ICL AVX512_SPR"
export PAGEREF_LAB=1 PAGEREF_LAB_EXT4=/mnt/ext4 PAGEREF_LAB_XFS=/mnt/xfs
export PAGEREF_LAB_DEVDAX="$devdax" PAGEREF_LAB_LAYOUT=/results/lab-layout.txt
export PAGEREF_LAB_SCRATCH=/mnt/scratch PAGEREF_LAB_SLOW_DEV=/dev/mapper/slow
export PAGEREF_LAB_RESULTS=/results
case "${PAGEREF_LAB_FS:-ext4}" in
    xfs) export PAGEREF_LAB_DAX=/mnt/xfs ;;
    *) export PAGEREF_LAB_DAX=/mnt/ext4 ;;
esac
ulimit -l unlimited
cd "${PAGEREF_LAB_CWD:-/results}" 2>/dev/null || cd /results

if [ "${PAGEREF_LAB_INTERACTIVE:-0}" = 1 ]; then
    mark shell ""
    echo "pageref lab shell: DAX mounts /mnt/ext4 /mnt/xfs, device DAX ${devdax:-none}," \
         "scratch /mnt/scratch, slow device /dev/mapper/slow, results /results." \
         "Exit the shell to power off."
    setsid -c /bin/bash -l </dev/console >/dev/console 2>&1
    echo 0 > /results/exit-code
else
    mark job-start ""
    timeout -k 5 "${PAGEREF_LAB_TIMEOUT:-600}" /bin/sh /results/job.sh </dev/null 2>&1
    rc=$?
    echo "$rc" > /results/exit-code
    mark job-end "$rc"
fi
dmesg > /results/dmesg.txt 2>/dev/null
sync
off
