/* O_DIRECT write and read with a DAX mapping as the user buffer.
 * The block layer takes the buffer's pages with get_user_pages (FOLL_GET on
 * 6.1: iov_iter_get_pages2) and drops them when the bio completes
 * (bio_release_pages -> put_page -> put_devmap_managed_page_refs).
 * The O_DIRECT file must be on a non-DAX device: O_DIRECT on a DAX file does
 * no GUP at all. Usage: dax_odirect DAXDIR SCRATCHDIR [PAGES] */
#include "dax_common.h"

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s DAXDIR SCRATCHDIR [PAGES]\n", argv[0]);
		return 2;
	}
	size_t n = argc > 3 ? strtoul(argv[3], NULL, 0) : 8;
	char path[4096], spath[4096];

	start("odirect", argv[1]);
	snprintf(path, sizeof(path), "%s/odirect.buf", argv[1]);
	snprintf(spath, sizeof(spath), "%s/odirect.dat", argv[2]);
	int fd = dax_file(path, n);
	char *buf = dax_map(fd, n);
	int sfd = open(spath, O_RDWR | O_CREAT | O_TRUNC | O_DIRECT, 0644);
	if (sfd < 0)
		die("open O_DIRECT %s", spath);
	report_pfns(buf, n);
	ssize_t w = pwrite(sfd, buf, n * PAGE, 0);	/* reads the DAX pages */
	if (w != (ssize_t)(n * PAGE))
		die("O_DIRECT pwrite");
	ssize_t r = pread(sfd, buf, n * PAGE, 0);	/* writes into the DAX pages */
	if (r != (ssize_t)(n * PAGE))
		die("O_DIRECT pread");
	jint("pages", n);
	jint("written", w);
	jint("read", r);
	munmap(buf, n * PAGE);
	close(fd);
	close(sfd);
	finish();
	return 0;
}
