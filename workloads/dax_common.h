/* Shared helpers of pageref's DAX workloads (header-only; each workload is one
 * small program). Every workload maps a file on a DAX file system, checks that
 * the kernel really serves it with DAX (statx STATX_ATTR_DAX), and prints one
 * JSON line describing what it did: its pid, CLOCK_MONOTONIC start/end (the
 * clock of the trace's ts_ns), the pfns of its DAX buffer (from
 * /proc/self/pagemap, root only) and what the kernel answered. */
#ifndef PAGEREF_DAX_COMMON_H
#define PAGEREF_DAX_COMMON_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef STATX_ATTR_DAX
#define STATX_ATTR_DAX 0x00200000
#endif

#define PAGE 4096UL

static const char *wl_name = "workload";
static char wl_json[8192];
static size_t wl_len;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static void die(const char *fmt, ...)
{
	va_list ap;
	int e = errno;
	fprintf(stderr, "%s: ", wl_name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, ": %s\n", strerror(e));
	exit(2);
}

/* Append to the JSON line; never past its end (a long line is cut, not
 * overflowed: snprintf returns what it would have written). */
static void wl_vappend(const char *fmt, va_list ap)
{
	if (wl_len >= sizeof(wl_json) - 1)
		return;
	wl_len += vsnprintf(wl_json + wl_len, sizeof(wl_json) - wl_len, fmt, ap);
	if (wl_len >= sizeof(wl_json))
		wl_len = sizeof(wl_json) - 1;
}

static void wl_append(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	wl_vappend(fmt, ap);
	va_end(ap);
}

/* Append `"key": <value>` to the JSON line (value already formatted as JSON). */
static void jraw(const char *key, const char *fmt, ...)
{
	va_list ap;
	wl_append("%s\"%s\": ", wl_len ? ", " : "", key);
	va_start(ap, fmt);
	wl_vappend(fmt, ap);
	va_end(ap);
}

static void jstr(const char *key, const char *val) { jraw(key, "\"%s\"", val); }
static void jint(const char *key, long long val) { jraw(key, "%lld", val); }

static void report(void)
{
	printf("{%s}\n", wl_json);
	fflush(stdout);
}

/* Exit unless the kernel serves `fd` with DAX. */
static void require_dax(int fd, const char *path)
{
	struct statx stx;

	if (statx(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, &stx))
		die("statx %s", path);
	if (!(stx.stx_attributes & STATX_ATTR_DAX)) {
		errno = EINVAL;
		die("%s is not DAX (mount the file system with -o dax)", path);
	}
}

/* Create `path` with `npages` pages of data (written, so the blocks are
 * allocated: a read fault on a hole would map the zero page, not pmem). */
static int dax_file(const char *path, size_t npages)
{
	char buf[PAGE];
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);

	if (fd < 0)
		die("open %s", path);
	memset(buf, 0x5a, sizeof(buf));
	for (size_t i = 0; i < npages; i++)
		if (pwrite(fd, buf, PAGE, i * PAGE) != (ssize_t)PAGE)
			die("pwrite %s", path);
	if (fsync(fd))
		die("fsync %s", path);
	require_dax(fd, path);
	return fd;
}

/* Map the file shared and fault every page in (write faults: pmem pages). */
static char *dax_map(int fd, size_t npages)
{
	char *p = mmap(NULL, npages * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

	if (p == MAP_FAILED)
		die("mmap");
	for (size_t i = 0; i < npages; i++)
		p[i * PAGE] = (char)i;
	return p;
}

/* Record the pfns behind [addr, addr + npages pages) as "pfns": [..]. Needs
 * CAP_SYS_ADMIN (pagemap hides pfns otherwise); records null if hidden. */
static void report_pfns_as(const char *key, const void *addr, size_t npages)
{
	int fd = open("/proc/self/pagemap", O_RDONLY);
	uint64_t e;
	char tmp[32];
	int n = 0;

	size_t unlisted = 0;

	wl_append("%s\"%s\": [", wl_len ? ", " : "", key);
	for (size_t i = 0; fd >= 0 && i < npages; i++) {
		off_t off = ((uintptr_t)addr / PAGE + i) * sizeof(e);
		if (pread(fd, &e, sizeof(e), off) != sizeof(e))
			break;
		uint64_t pfn = e & ((1ULL << 55) - 1);
		if (!(e & (1ULL << 63)) || pfn == 0)
			continue;
		/* keep room to close the line: the rest is counted, not listed */
		if (sizeof(wl_json) - wl_len < 512) {
			unlisted++;
			continue;
		}
		snprintf(tmp, sizeof(tmp), "%s%llu", n++ ? ", " : "", (unsigned long long)pfn);
		wl_append("%s", tmp);
	}
	wl_append("]");
	if (unlisted)
		jint("pfns_unlisted", (long long)unlisted);
	if (fd >= 0)
		close(fd);
}

static void report_pfns(const void *addr, size_t npages)
{
	report_pfns_as("pfns", addr, npages);
}

static void start(const char *name, const char *dir)
{
	wl_name = name;
	jstr("workload", name);
	jstr("dir", dir);
	jint("pid", getpid());
	jint("start_ns", (long long)now_ns());
}

static void finish(void)
{
	jint("end_ns", (long long)now_ns());
	report();
}

#endif
