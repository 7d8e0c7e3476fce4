/* A DAX file mapped with 2 MiB (PMD) entries, then pinned by
 * process_vm_readv/writev: GUP through a PMD mapping. On 6.1 fsdax pages are
 * not compound and GUP grabs each 4 KiB page (follow_devmap_pmd ->
 * try_grab_page); once fsdax mappings hold large folios (6.15+) a pin on a
 * PMD-mapped folio adds 1 to its refcount and 1 to its _pincount instead of
 * GUP_PIN_COUNTING_BIAS.
 * A PMD fault needs 2 MiB-aligned blocks: on xfs an extent size hint of 2 MiB,
 * set while the file is empty, gives them; the mapping address is aligned to
 * 2 MiB here. The JSON line says whether the blocks came out aligned
 * ("aligned_pmds") and the first pfn of each 2 MiB ("pmd_pfns").
 * Usage: dax_pmd DAXDIR [PMDS] */
#include "dax_common.h"
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/uio.h>

#define PMD_SIZE (2UL << 20)
#define PMD_PAGES (PMD_SIZE / PAGE)

static uint64_t pfn_of(int pagemap, const void *addr)
{
	uint64_t e = 0;

	if (pread(pagemap, &e, sizeof(e), (uintptr_t)addr / PAGE * sizeof(e)) != sizeof(e))
		return 0;
	return (e & (1ULL << 63)) ? e & ((1ULL << 55) - 1) : 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s DAXDIR [PMDS]\n", argv[0]);
		return 2;
	}
	size_t n = argc > 2 ? strtoul(argv[2], NULL, 0) : 2;
	size_t len = n * PMD_SIZE;
	char path[4096];
	struct fsxattr fa;

	start("pmd", argv[1]);
	snprintf(path, sizeof(path), "%s/pmd.buf", argv[1]);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		die("open %s", path);
	int hint = 0;
	if (ioctl(fd, FS_IOC_FSGETXATTR, &fa) == 0) {
		fa.fsx_xflags |= FS_XFLAG_EXTSIZE;
		fa.fsx_extsize = PMD_SIZE;
		hint = ioctl(fd, FS_IOC_FSSETXATTR, &fa) == 0;   /* xfs: yes; ext4: no */
	}
	jint("extsize_hint", hint);
	if (fallocate(fd, 0, 0, len))
		die("fallocate %s", path);
	require_dax(fd, path);
	/* reserve len + 2 MiB, then map the file at the first 2 MiB boundary */
	char *resv = mmap(NULL, len + PMD_SIZE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (resv == MAP_FAILED)
		die("mmap reserve");
	char *p = (char *)(((uintptr_t)resv + PMD_SIZE - 1) & ~(PMD_SIZE - 1));
	if (mmap(p, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED)
		die("mmap %s", path);
	for (size_t i = 0; i < len / PAGE; i++)
		p[i * PAGE] = (char)i;		/* write faults: pmem, not the zero page */

	int pm = open("/proc/self/pagemap", O_RDONLY);
	size_t aligned = 0;
	wl_append("%s\"pmd_pfns\": [", wl_len ? ", " : "");
	for (size_t i = 0; i < n; i++) {
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
	jint("aligned_pmds", (long long)aligned);

	char *local = malloc(len);
	if (!local)
		die("malloc");
	struct iovec l = { local, len }, r = { p, len };
	ssize_t rd = process_vm_readv(getpid(), &l, 1, &r, 1, 0);
	if (rd != (ssize_t)len)
		die("process_vm_readv");
	memset(local, 0xa5, len);
	ssize_t wr = process_vm_writev(getpid(), &l, 1, &r, 1, 0);
	if (wr != (ssize_t)len)
		die("process_vm_writev");
	jint("pmds", (long long)n);
	jint("pages", (long long)(len / PAGE));
	jint("readv", rd);
	jint("writev", wr);
	munmap(p, len);
	close(fd);
	finish();
	return 0;
}
