/* process_vm_readv / process_vm_writev with the *remote* side in a DAX
 * mapping. The kernel pins the remote pages (pin_user_pages_remote: FOLL_PIN,
 * +1024 per pin on small pages) and unpins them after the copy. The remote
 * process is this one (pid = getpid()): the pin path is the same.
 * Usage: dax_pvm DAXDIR [PAGES] */
#include "dax_common.h"
#include <sys/uio.h>

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s DAXDIR [PAGES]\n", argv[0]);
		return 2;
	}
	size_t n = argc > 2 ? strtoul(argv[2], NULL, 0) : 8;
	char path[4096];

	start("pvm", argv[1]);
	snprintf(path, sizeof(path), "%s/pvm.buf", argv[1]);
	int fd = dax_file(path, n);
	char *dax = dax_map(fd, n);
	char *local = malloc(n * PAGE);
	if (!local)
		die("malloc");
	report_pfns(dax, n);
	struct iovec l = { local, n * PAGE }, r = { dax, n * PAGE };
	ssize_t rd = process_vm_readv(getpid(), &l, 1, &r, 1, 0);
	if (rd != (ssize_t)(n * PAGE))
		die("process_vm_readv");
	memset(local, 0xa5, n * PAGE);
	ssize_t wr = process_vm_writev(getpid(), &l, 1, &r, 1, 0);
	if (wr != (ssize_t)(n * PAGE))
		die("process_vm_writev");
	if ((unsigned char)dax[0] != 0xa5) {
		errno = EIO;
		die("process_vm_writev did not reach the DAX page");
	}
	jint("pages", n);
	jint("readv", rd);
	jint("writev", wr);
	munmap(dax, n * PAGE);
	close(fd);
	finish();
	return 0;
}
