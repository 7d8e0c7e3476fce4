#!/bin/sh
# Build the kernel's mm selftest gup_longterm from Debian's linux-source-X.Y
# package (/usr/src/linux-source-X.Y.tar.xz), the way its Makefile would, minus
# the kernel's header install: the selftest's own sources (gup_longterm.c,
# vm_util.c, kselftest.h, mm/gup_test.h) against the host's libc headers, with
# that source's uapi <linux/fs.h> (vm_util.c uses PAGEMAP_SCAN, newer than
# bookworm's linux-libc-dev) and liburing (local_config.h, as check_config.sh
# writes it when liburing is installed: enables the io_uring cases).
# gup_longterm first appeared in 6.5 ("selftests/mm: gup_longterm: new
# functional test for FOLL_LONGTERM"): Debian's linux-source-6.1 has none, so
# use linux-source-6.12 (or newer).
# Usage: build-gup-longterm.sh TARBALL OUTDIR   -> OUTDIR/gup_longterm
set -eu
tarball=$1 out=$2
top=$(basename "$tarball" .tar.xz)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -C "$work" -xf "$tarball" --wildcards "$top/tools/testing/selftests/mm/*" \
    "$top/tools/testing/selftests/kselftest*" "$top/mm/gup_test.h" \
    "$top/include/uapi/linux/fs.h"
mm="$work/$top/tools/testing/selftests/mm"
[ -f "$mm/gup_longterm.c" ] || { echo "no gup_longterm.c in $tarball (needs 6.5+)" >&2; exit 1; }
mkdir -p "$work/uapi/linux" "$out"
cp "$work/$top/include/uapi/linux/fs.h" "$work/uapi/linux/fs.h"
echo '#define LOCAL_CONFIG_HAVE_LIBURING 1' > "$mm/local_config.h"
# compiled from its own directory, as the selftests' lib.mk does: the "local
# tmpfile" is named after __FILE__, which must be a relative name
out=$(cd "$out" && pwd)
(cd "$mm" && gcc -O2 -Wall -I. -I"$work/uapi" -o "$out/gup_longterm" \
    gup_longterm.c vm_util.c -luring)
echo "$out/gup_longterm"
