/* io_uring fixed-buffer registration (IORING_REGISTER_BUFFERS) of a DAX
 * mapping: the kernel long-term pins the buffer (pin_user_pages with
 * FOLL_LONGTERM), which it must refuse on fsdax (-EOPNOTSUPP): a long-term pin
 * would block truncate forever. As a control, an anonymous buffer registers.
 * Raw syscalls, no liburing. Exit 0 when the kernel refused the DAX buffer,
 * 1 when it accepted it. Usage: dax_uring DAXDIR [PAGES] */
#include "dax_common.h"
#include <linux/io_uring.h>
#include <sys/syscall.h>
#include <sys/uio.h>

static int register_buffer(int ring, void *addr, size_t len)
{
	struct iovec iov = { addr, len };
	long r = syscall(__NR_io_uring_register, ring, IORING_REGISTER_BUFFERS, &iov, 1);

	if (r == 0)
		syscall(__NR_io_uring_register, ring, IORING_UNREGISTER_BUFFERS, NULL, 0);
	return r == 0 ? 0 : -errno;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s DAXDIR [PAGES]\n", argv[0]);
		return 2;
	}
	size_t n = argc > 2 ? strtoul(argv[2], NULL, 0) : 4;
	char path[4096];
	struct io_uring_params params;

	start("uring", argv[1]);
	snprintf(path, sizeof(path), "%s/uring.buf", argv[1]);
	int fd = dax_file(path, n);
	char *dax = dax_map(fd, n);
	report_pfns(dax, n);
	memset(&params, 0, sizeof(params));
	int ring = (int)syscall(__NR_io_uring_setup, 4, &params);
	if (ring < 0)
		die("io_uring_setup");
	uint64_t t = now_ns();
	int dax_err = register_buffer(ring, dax, n * PAGE);
	char *anon = mmap(NULL, n * PAGE, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (anon == MAP_FAILED)
		die("mmap anonymous");
	int anon_err = register_buffer(ring, anon, n * PAGE);
	jint("pages", n);
	jint("register_ns", (long long)t);
	jint("dax_register_errno", -dax_err);
	jstr("dax_register", dax_err ? strerror(-dax_err) : "accepted");
	jint("anon_register_errno", -anon_err);
	close(ring);
	munmap(dax, n * PAGE);
	close(fd);
	finish();
	return dax_err ? 0 : 1;
}
