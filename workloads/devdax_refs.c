/* References on device DAX pages (/dev/daxX.Y, pgmap MEMORY_DEVICE_GENERIC).
 * One program, one mode per run, each printing one JSON line like the fsdax
 * workloads (pid, CLOCK_MONOTONIC window, the pfns behind the buffer from
 * /proc/self/pagemap, what the kernel answered):
 *
 *   odirect  O_DIRECT write then read on SCRATCHDIR/devdax.dat with the
 *            devdax mapping as the buffer (the block layer grabs the pages)
 *   pvm      process_vm_readv/writev with the remote side in the mapping
 *            (pin_user_pages_remote: FOLL_PIN)
 *   vmsplice vmsplice the pages into a pipe, hold HOLD_MS, drain
 *   uring    IORING_REGISTER_BUFFERS of the mapping: FOLL_LONGTERM, which the
 *            kernel must ACCEPT on device DAX (check_vma_flags refuses only
 *            fsdax VMAs); kept registered HOLD_MS, then unregistered. With
 *            HOLD_MS negative the registration is never undone: the process
 *            sleeps -HOLD_MS and exits (the ring's release unpins then).
 *
 * Device DAX maps in units of its `align` (2 MiB here): the mapping's offset
 * and length are whole 2 MiB units. SLOT picks which unit of the device
 * (so that modes run one after another use distinct pages).
 * Usage: devdax_refs MODE DEVDAX SLOT PAGES HOLD_MS [SCRATCHDIR] */
#include "dax_common.h"
#include <linux/io_uring.h>
#include <sys/syscall.h>
#include <sys/uio.h>

#define UNIT (2UL << 20)

static char *map_devdax(const char *dev, long slot, size_t npages, int *fdp)
{
	int fd = open(dev, O_RDWR);

	if (fd < 0)
		die("open %s", dev);
	char *p = mmap(NULL, UNIT, PROT_READ | PROT_WRITE, MAP_SHARED, fd, slot * UNIT);
	if (p == MAP_FAILED)
		die("mmap %s at unit %ld", dev, slot);
	for (size_t i = 0; i < npages; i++)
		p[i * PAGE] = (char)(i + 1);	/* fault in: PMD mapping of the unit */
	*fdp = fd;
	return p;
}

static void do_odirect(char *buf, size_t n, const char *scratch)
{
	char spath[4096];

	snprintf(spath, sizeof(spath), "%s/devdax.dat", scratch);
	int sfd = open(spath, O_RDWR | O_CREAT | O_TRUNC | O_DIRECT, 0644);
	if (sfd < 0)
		die("open O_DIRECT %s", spath);
	ssize_t w = pwrite(sfd, buf, n * PAGE, 0);
	if (w != (ssize_t)(n * PAGE))
		die("O_DIRECT pwrite");
	ssize_t r = pread(sfd, buf, n * PAGE, 0);
	if (r != (ssize_t)(n * PAGE))
		die("O_DIRECT pread");
	jint("written", w);
	jint("read", r);
	close(sfd);
}

static void do_pvm(char *buf, size_t n)
{
	char *local = malloc(n * PAGE);

	if (!local)
		die("malloc");
	struct iovec l = { local, n * PAGE }, r = { buf, n * PAGE };
	ssize_t rd = process_vm_readv(getpid(), &l, 1, &r, 1, 0);
	if (rd != (ssize_t)(n * PAGE))
		die("process_vm_readv");
	memset(local, 0xa5, n * PAGE);
	ssize_t wr = process_vm_writev(getpid(), &l, 1, &r, 1, 0);
	if (wr != (ssize_t)(n * PAGE))
		die("process_vm_writev");
	if ((unsigned char)buf[0] != 0xa5) {
		errno = EIO;
		die("process_vm_writev did not reach the device DAX page");
	}
	jint("readv", rd);
	jint("writev", wr);
	free(local);
}

static void do_vmsplice(char *buf, size_t n, long hold_ms)
{
	int p[2];

	if (pipe(p))
		die("pipe");
	fcntl(p[1], F_SETPIPE_SZ, (int)(n * PAGE > 65536 ? n * PAGE : 65536));
	struct iovec iov = { buf, n * PAGE };
	ssize_t s = vmsplice(p[1], &iov, 1, 0);
	if (s != (ssize_t)(n * PAGE))
		die("vmsplice");
	jint("spliced", s);
	jint("spliced_ns", (long long)now_ns());
	usleep(hold_ms * 1000);
	char *sink = malloc(n * PAGE);
	ssize_t got = 0;
	jint("drain_ns", (long long)now_ns());
	while (got < s) {
		ssize_t r = read(p[0], sink + got, n * PAGE - got);
		if (r <= 0)
			die("read pipe");
		got += r;
	}
	jint("drained", got);
	free(sink);
	close(p[0]);
	close(p[1]);
}

/* Returns 0 when the kernel accepted the registration. */
static int do_uring(char *buf, size_t n, long hold_ms)
{
	struct io_uring_params params;

	memset(&params, 0, sizeof(params));
	int ring = (int)syscall(__NR_io_uring_setup, 4, &params);
	if (ring < 0)
		die("io_uring_setup");
	struct iovec iov = { buf, n * PAGE };
	jint("register_ns", (long long)now_ns());
	long r = syscall(__NR_io_uring_register, ring, IORING_REGISTER_BUFFERS, &iov, 1);
	int err = r == 0 ? 0 : errno;
	jint("register_errno", err);
	jstr("register", err ? strerror(err) : "accepted");
	if (err) {
		close(ring);
		return err;
	}
	if (hold_ms < 0) {
		/* never unregistered: the report goes out first, since whoever
		 * traces this may stop before the process exits */
		jint("unregister_ns", 0);
		jint("held_until_exit", 1);
		finish();
		usleep(-hold_ms * 1000);
		exit(0);
	}
	usleep(hold_ms * 1000);
	jint("unregister_ns", (long long)now_ns());
	if (syscall(__NR_io_uring_register, ring, IORING_UNREGISTER_BUFFERS, NULL, 0))
		die("IORING_UNREGISTER_BUFFERS");
	jint("unregistered_ns", (long long)now_ns());
	close(ring);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 6) {
		fprintf(stderr, "usage: %s odirect|pvm|vmsplice|uring DEVDAX SLOT PAGES HOLD_MS "
			"[SCRATCHDIR]\n", argv[0]);
		return 2;
	}
	const char *mode = argv[1], *dev = argv[2];
	long slot = strtol(argv[3], NULL, 0);
	size_t n = strtoul(argv[4], NULL, 0);
	long hold_ms = strtol(argv[5], NULL, 0);
	int fd, rc = 0;

	if (n == 0 || n * PAGE > UNIT) {
		errno = EINVAL;
		die("PAGES must be 1..%lu", UNIT / PAGE);
	}
	if (!strcmp(mode, "odirect") && argc < 7) {
		errno = EINVAL;
		die("odirect needs SCRATCHDIR");
	}
	char name[32];
	snprintf(name, sizeof(name), "devdax_%s", mode);
	start(name, dev);
	jint("slot", slot);
	jint("pages", (long long)n);
	char *buf = map_devdax(dev, slot, n, &fd);
	report_pfns(buf, n);
	if (!strcmp(mode, "odirect"))
		do_odirect(buf, n, argv[6]);
	else if (!strcmp(mode, "pvm"))
		do_pvm(buf, n);
	else if (!strcmp(mode, "vmsplice"))
		do_vmsplice(buf, n, hold_ms);
	else if (!strcmp(mode, "uring"))
		rc = do_uring(buf, n, hold_ms) ? 1 : 0;
	else {
		errno = EINVAL;
		die("unknown mode %s", mode);
	}
	munmap(buf, UNIT);
	close(fd);
	finish();
	return rc;
}
