#!/bin/sh
# Build the kernel's mm selftests from Debian's linux-source-X.Y package
# (/usr/src/linux-source-X.Y.tar.xz), the way tools/testing/selftests/mm/Makefile
# would (-I the source top for <lib/test_hmm_uapi.h> and <mm/gup_test.h>;
# LDLIBS -lrt -lpthread -lm), minus the kernel's header install: against the
# host's libc headers, with that source's uapi <linux/fs.h> (vm_util.c uses
# PAGEMAP_SCAN, newer than bookworm's linux-libc-dev) and liburing
# (local_config.h, as check_config.sh writes it when liburing is installed:
# enables gup_longterm's io_uring cases).
# - gup_longterm: first in 6.5 ("selftests/mm: gup_longterm: new functional
#   test for FOLL_LONGTERM"): Debian's linux-source-6.1 has none, use 6.12+;
# - hmm-tests, gup_test: they drive test_hmm.ko (CONFIG_TEST_HMM) and
#   /sys/kernel/debug/gup_test (CONFIG_GUP_TEST), which only the lab's debug
#   kernel has; take the source of the kernel they run on (its ioctl numbers).
# Usage: build-mm-selftests.sh TARBALL OUTDIR [NAME...]   -> OUTDIR/NAME
#   (default: gup_longterm hmm-tests gup_test)
set -eu
tarball=$1 out=$2
shift 2
[ $# -gt 0 ] || set -- gup_longterm hmm-tests gup_test
top=$(basename "$tarball" .tar.xz)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -C "$work" -xf "$tarball" --wildcards "$top/tools/testing/selftests/mm/*" \
    "$top/tools/testing/selftests/kselftest*" "$top/mm/gup_test.h" \
    "$top/lib/test_hmm_uapi.h" "$top/include/uapi/linux/fs.h"
src="$work/$top"
mm="$src/tools/testing/selftests/mm"
mkdir -p "$work/uapi/linux" "$out"
cp "$src/include/uapi/linux/fs.h" "$work/uapi/linux/fs.h"
echo '#define LOCAL_CONFIG_HAVE_LIBURING 1' > "$mm/local_config.h"
out=$(cd "$out" && pwd)
for name in "$@"; do
    case $name in
        gup_longterm) files="gup_longterm.c vm_util.c" libs="-luring" ;;
        gup_test) files="gup_test.c vm_util.c" libs="" ;;
        hmm-tests) files="hmm-tests.c" libs="" ;;
        *) echo "build-mm-selftests.sh: unknown selftest $name" >&2; exit 2 ;;
    esac
    [ -f "$mm/${files%% *}" ] || { echo "no ${files%% *} in $tarball" >&2; exit 1; }
    # compiled from its own directory, as the selftests' lib.mk does: the "local
    # tmpfile" is named after __FILE__, which must be a relative name
    # shellcheck disable=SC2086
    (cd "$mm" && gcc -O2 -Wall -I. -I"$src" -I"$work/uapi" -o "$out/$name" $files $libs \
        -lrt -lpthread -lm)
    echo "$out/$name"
done
