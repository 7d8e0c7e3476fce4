#!/bin/sh
# Build the kernel's mm selftests hmm-tests and gup_test from Debian's
# linux-source-X.Y package (/usr/src/linux-source-X.Y.tar.xz), the way
# tools/testing/selftests/mm/Makefile would (-I the source top for
# <lib/test_hmm_uapi.h> and <mm/gup_test.h>; LDLIBS -lrt -lpthread -lm), minus
# the kernel's header install: against the host's libc headers, with that
# source's uapi <linux/fs.h> (vm_util.c uses PAGEMAP_SCAN, newer than
# bookworm's linux-libc-dev). They drive test_hmm.ko (CONFIG_TEST_HMM) and
# /sys/kernel/debug/gup_test (CONFIG_GUP_TEST): only the lab's debug kernel
# has both. Take the source of the kernel they run on (its ioctl numbers).
# Usage: build-mm-selftests.sh TARBALL OUTDIR   -> OUTDIR/hmm-tests OUTDIR/gup_test
set -eu
tarball=$1 out=$2
top=$(basename "$tarball" .tar.xz)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -C "$work" -xf "$tarball" --wildcards "$top/tools/testing/selftests/mm/*" \
    "$top/tools/testing/selftests/kselftest*" "$top/mm/gup_test.h" \
    "$top/lib/test_hmm_uapi.h" "$top/include/uapi/linux/fs.h"
src="$work/$top"
mm="$src/tools/testing/selftests/mm"
[ -f "$mm/hmm-tests.c" ] || { echo "no hmm-tests.c in $tarball" >&2; exit 1; }
mkdir -p "$work/uapi/linux" "$out"
cp "$src/include/uapi/linux/fs.h" "$work/uapi/linux/fs.h"
: > "$mm/local_config.h"
out=$(cd "$out" && pwd)
# compiled from their own directory, as the selftests' lib.mk does
(cd "$mm" && gcc -O2 -Wall -I. -I"$src" -I"$work/uapi" -o "$out/hmm-tests" hmm-tests.c \
    -lrt -lpthread -lm)
(cd "$mm" && gcc -O2 -Wall -I. -I"$src" -I"$work/uapi" -o "$out/gup_test" gup_test.c \
    vm_util.c -lrt -lpthread -lm)
echo "$out/hmm-tests"
echo "$out/gup_test"
