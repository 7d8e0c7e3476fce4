/* vmsplice DAX pages into a pipe, then truncate the file while the pipe still
 * holds them. vmsplice takes page references (FOLL_GET, iov_iter_get_pages2);
 * the truncate must wait for them (ext4_break_layouts / xfs_break_dax_layouts
 * -> dax_layout_busy_page finds the pages busy) until the pipe is drained.
 *
 * Round "mapped" keeps the file mapped during the truncate; round "unmapped"
 * unmaps it first. dax_layout_busy_page_range() returns at once when the file
 * is not mapped (!mapping_mapped), so in that round the truncate does not wait
 * although the pipe still holds the pages: the blocks go back to the file
 * system while a reference is outstanding. The JSON line reports both.
 * Usage: dax_vmsplice DAXDIR [PAGES] [HOLD_MS] */
#include "dax_common.h"
#include <sys/uio.h>
#include <sys/wait.h>

static void round_trunc(const char *dir, const char *name, size_t n, long hold_ms, int unmap)
{
	char path[4096], key[64];
	int p[2];

	snprintf(path, sizeof(path), "%s/vmsplice-%s.buf", dir, name);
	int fd = dax_file(path, n);
	char *dax = dax_map(fd, n);
	report_pfns_as(unmap ? "unmapped_pfns" : "pfns", dax, n);
	if (pipe(p))
		die("pipe");
	fcntl(p[1], F_SETPIPE_SZ, (int)(n * PAGE > 65536 ? n * PAGE : 65536));
	struct iovec iov = { dax, n * PAGE };
	ssize_t s = vmsplice(p[1], &iov, 1, 0);
	if (s != (ssize_t)(n * PAGE))
		die("vmsplice");
	if (unmap)
		munmap(dax, n * PAGE);

	uint64_t t0 = now_ns();
	pid_t child = fork();
	if (child < 0)
		die("fork");
	if (child == 0) {
		/* the truncate should block in the layout break until the pipe is drained */
		if (ftruncate(fd, 0))
			die("ftruncate");
		_exit(0);
	}
	usleep(hold_ms * 1000);
	int status = 0;
	int done_early = waitpid(child, &status, WNOHANG) == child;
	uint64_t t_drain = now_ns();
	char *sink = malloc(n * PAGE);
	ssize_t got = 0;
	while (got < s) {
		ssize_t r = read(p[0], sink + got, n * PAGE - got);
		if (r <= 0)
			die("read pipe");
		got += r;
	}
	if (!done_early && waitpid(child, &status, 0) != child)
		die("waitpid");
	uint64_t t1 = now_ns();
	snprintf(key, sizeof(key), "%s_truncate_start_ns", name);
	jint(key, (long long)t0);
	snprintf(key, sizeof(key), "%s_truncate_pid", name);
	jint(key, child);
	snprintf(key, sizeof(key), "%s_drain_ns", name);
	jint(key, (long long)t_drain);
	snprintf(key, sizeof(key), "%s_truncate_waited", name);
	jint(key, !done_early);
	snprintf(key, sizeof(key), "%s_truncate_ms", name);
	jint(key, (long long)((t1 - t0) / 1000000));
	if (!unmap)
		munmap(dax, n * PAGE);
	free(sink);
	close(p[0]);
	close(p[1]);
	close(fd);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s DAXDIR [PAGES] [HOLD_MS]\n", argv[0]);
		return 2;
	}
	size_t n = argc > 2 ? strtoul(argv[2], NULL, 0) : 4;
	long hold_ms = argc > 3 ? strtol(argv[3], NULL, 0) : 1000;
	start("vmsplice", argv[1]);
	jint("pages", n);
	round_trunc(argv[1], "mapped", n, hold_ms, 0);
	round_trunc(argv[1], "unmapped", n, hold_ms, 1);
	finish();
	return 0;
}
