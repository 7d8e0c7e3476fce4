/* Large I/O from a PMD-mapped DAX buffer: what databases and VMs do, and what a
 * tracer that walks bios, unpin arrays and folio batches only up to a bound
 * gets wrong (releases past the bound missing, pages wrongly accused).
 *
 *  1. O_DIRECT pwrite then pread of the whole buffer (MIB MiB, 64 by default)
 *     to a file on SCRATCHDIR (not DAX: O_DIRECT on a DAX file does no GUP).
 *     The buffer is physically contiguous, so a bio holds multi-page vectors
 *     of thousands of pages (6.1: __bio_release_pages drops each page).
 *  2. pwritev/preadv of the same buffer cut into SEGS iovecs (hundreds).
 *  3. process_vm_readv of the whole buffer: pin_user_pages_remote, then
 *     unpin_user_pages of up to 1024 pages a call (PVM_MAX_KMALLOC_PAGES).
 *  4. munmap of the whole mapping (7.2: the mapping's folio references are
 *     dropped in folios_put_refs batches).
 * The buffer is a file with a 2 MiB extent size hint (xfs with the 2 MiB stripe
 * unit gives 2 MiB-aligned blocks: PMD faults), mapped 2 MiB-aligned, as in
 * dax_pmd.c. The JSON line gives what the kernel answered and the first pfn of
 * each 2 MiB ("pmd_pfns"; the buffer's pfns are those 2 MiB runs when
 * "aligned_pmds" equals "pmds").
 * DAXDIR may instead be a device DAX character device (/dev/daxX.Y): the
 * buffer is then the device itself, mapped at DEVDAX_OFFSET (clear of the
 * slots devdax_refs uses), its 2 MiB units the folios.
 * Usage: dax_bigio DAXDIR|DEVDAX SCRATCHDIR [MIB] [SEGS] */
#include "dax_common.h"
#include <linux/fs.h>
#include <limits.h>
#include <sys/ioctl.h>
#include <sys/uio.h>

#define PMD_SIZE (2UL << 20)
#define PMD_PAGES (PMD_SIZE / PAGE)
#define DEVDAX_OFFSET (256UL << 20)

static uint64_t pfn_of(int pagemap, const void *addr)
{
	uint64_t e = 0;

	if (pread(pagemap, &e, sizeof(e), (uintptr_t)addr / PAGE * sizeof(e)) != sizeof(e))
		return 0;
	return (e & (1ULL << 63)) ? e & ((1ULL << 55) - 1) : 0;
}

/* The whole of len, in as many calls as the kernel needs (it may return short). */
static void full(const char *what, ssize_t (*op)(int, const struct iovec *, int, off_t),
		 int fd, struct iovec *iov, int cnt, size_t len)
{
	ssize_t n = op(fd, iov, cnt, 0);

	if (n != (ssize_t)len) {
		if (n >= 0)
			errno = EIO;
		die("%s returned %zd of %zu", what, n, len);
	}
}

static ssize_t wv(int fd, const struct iovec *iov, int cnt, off_t off)
{
	return pwritev(fd, iov, cnt, off);
}

static ssize_t rv(int fd, const struct iovec *iov, int cnt, off_t off)
{
	return preadv(fd, iov, cnt, off);
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s DAXDIR SCRATCHDIR [MIB] [SEGS]\n", argv[0]);
		return 2;
	}
	size_t mib = argc > 3 ? strtoul(argv[3], NULL, 0) : 64;
	int segs = argc > 4 ? (int)strtol(argv[4], NULL, 0) : 512;
	size_t pmds = (mib << 20) / PMD_SIZE;
	size_t len = pmds * PMD_SIZE;
	char path[4096], spath[4096];
	struct fsxattr fa;

	if (!pmds || segs < 1 || segs > IOV_MAX || len / PAGE % (size_t)segs) {
		errno = EINVAL;
		die("MIB must be a multiple of 2 and SEGS (1..%d) divide its pages", IOV_MAX);
	}
	struct stat st;
	int devdax = stat(argv[1], &st) == 0 && S_ISCHR(st.st_mode);

	start("bigio", argv[1]);
	jint("devdax", devdax);
	snprintf(path, sizeof(path), devdax ? "%s" : "%s/bigio.buf", argv[1]);
	snprintf(spath, sizeof(spath), "%s/bigio.dat", argv[2]);
	int fd = devdax ? open(path, O_RDWR) : open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		die("open %s", path);
	if (!devdax) {
		int hint = 0;
		if (ioctl(fd, FS_IOC_FSGETXATTR, &fa) == 0) {
			fa.fsx_xflags |= FS_XFLAG_EXTSIZE;
			fa.fsx_extsize = PMD_SIZE;
			hint = ioctl(fd, FS_IOC_FSSETXATTR, &fa) == 0;
		}
		jint("extsize_hint", hint);
		if (fallocate(fd, 0, 0, len))
			die("fallocate %s", path);
		require_dax(fd, path);
	}
	char *resv = mmap(NULL, len + PMD_SIZE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (resv == MAP_FAILED)
		die("mmap reserve");
	char *p = (char *)(((uintptr_t)resv + PMD_SIZE - 1) & ~(PMD_SIZE - 1));
	if (mmap(p, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd,
		 devdax ? (off_t)DEVDAX_OFFSET : 0) == MAP_FAILED)
		die("mmap %s", path);
	for (size_t i = 0; i < len / PAGE; i++)
		p[i * PAGE] = (char)i;		/* write faults: pmem, not the zero page */

	int pm = open("/proc/self/pagemap", O_RDONLY);
	size_t aligned = 0;
	wl_append("%s\"pmd_pfns\": [", wl_len ? ", " : "");
	for (size_t i = 0; i < pmds; i++) {
		uint64_t pfn = pm >= 0 ? pfn_of(pm, p + i * PMD_SIZE) : 0;
		int contiguous = pfn && pfn % PMD_PAGES == 0;
		for (size_t j = 1; contiguous && j < PMD_PAGES; j++)
			contiguous = pfn_of(pm, p + i * PMD_SIZE + j * PAGE) == pfn + j;
		aligned += contiguous;
		wl_append("%s%llu", i ? ", " : "", (unsigned long long)pfn);
	}
	wl_append("]");
	if (pm >= 0)
		close(pm);
	jint("pmds", (long long)pmds);
	jint("aligned_pmds", (long long)aligned);
	jint("pages", (long long)(len / PAGE));

	/* 1. one O_DIRECT write and one read of the whole buffer */
	int sfd = open(spath, O_RDWR | O_CREAT | O_TRUNC | O_DIRECT, 0644);
	if (sfd < 0)
		die("open %s O_DIRECT", spath);
	struct iovec one = { p, len };
	full("O_DIRECT pwritev", wv, sfd, &one, 1, len);
	full("O_DIRECT preadv", rv, sfd, &one, 1, len);
	jint("odirect_bytes", (long long)len);

	/* 2. the same buffer as SEGS iovecs */
	struct iovec *iov = calloc((size_t)segs, sizeof(*iov));
	if (!iov)
		die("calloc");
	size_t seg = len / (size_t)segs;
	for (int i = 0; i < segs; i++)
		iov[i] = (struct iovec){ p + (size_t)i * seg, seg };
	full("O_DIRECT pwritev (segments)", wv, sfd, iov, segs, len);
	full("O_DIRECT preadv (segments)", rv, sfd, iov, segs, len);
	jint("segments", segs);
	close(sfd);
	unlink(spath);

	/* 3. process_vm_readv of every page: unpin_user_pages of 1024 at a time */
	char *local = malloc(len);
	if (!local)
		die("malloc");
	struct iovec l = { local, len }, r = { p, len };
	ssize_t rd = process_vm_readv(getpid(), &l, 1, &r, 1, 0);
	if (rd != (ssize_t)len)
		die("process_vm_readv");
	jint("pvm_bytes", rd);

	/* 4. munmap of the whole mapping */
	if (munmap(p, len))
		die("munmap");
	close(fd);
	if (!devdax)
		unlink(path);
	finish();
	return 0;
}
