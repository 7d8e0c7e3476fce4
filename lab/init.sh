#!/bin/busybox sh
# pageref lab, stage one (PID 1 of the busybox initramfs).
# Loads the modules listed in /modules/order (dependency order computed on the
# host from the kernel's modules.dep), mounts the host's root read-only over 9p
# under a tmpfs overlay, and switch_roots to the stage-two script named by
# `pageref.stage2=` on the kernel command line. Any failure powers the guest off:
# nobody is there to answer a rescue shell, and the host is waiting for QEMU to exit.
/bin/busybox --install -s /bin
export PATH=/bin

fail() {
    echo "@@pageref-lab fail stage1: $*"
    sleep 1
    echo o > /proc/sysrq-trigger
    poweroff -f
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "@@pageref-lab stage1 $(cut -d' ' -f1 /proc/uptime)"

stage2=
overlay_size=2g
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        pageref.stage2=*) stage2="${arg#pageref.stage2=}" ;;
        pageref.overlay=*) overlay_size="${arg#pageref.overlay=}" ;;
    esac
done
[ -n "$stage2" ] || fail "no pageref.stage2= on the kernel command line"

for m in $(cat /modules/order); do
    insmod "/modules/$m" || fail "insmod $m"
done
echo "@@pageref-lab stage1-modules $(cut -d' ' -f1 /proc/uptime)"

# cache=loose: the host's root does not change under the guest, and TCG makes
# every 9p round trip expensive (python imports, BCC's headers).
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=524288 hostroot /host \
    || fail "mount of the host's root (9p tag hostroot)"
mount -t tmpfs -o size="$overlay_size",mode=0755 tmpfs /upper || fail "tmpfs"
mkdir -p /upper/rw /upper/work
mount -t overlay overlay -o lowerdir=/host,upperdir=/upper/rw,workdir=/upper/work /newroot \
    || fail "overlay mount"
[ -x "/newroot$stage2" ] || [ -f "/newroot$stage2" ] || fail "stage two $stage2 not found"
mount --move /dev /newroot/dev || fail "move /dev"
umount /proc /sys
exec switch_root /newroot /bin/sh "$stage2"
fail "switch_root"
