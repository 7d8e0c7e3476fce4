/* Hole punch and truncate while references are held: a thread reads from the
 * slow device (dm-delay) with O_DIRECT into a DAX mapping, so GUP holds the
 * DAX pages for the whole delay; once the reader sleeps on its read, the main
 * thread punches a hole in (round 1), then truncates (round 2), the DAX file. The file system
 * must break the layout first: dax_layout_busy_page_range finds the held pages
 * and the caller sleeps (___wait_var_event on the page's _refcount) until the
 * I/O completes and the last reference is dropped, which must wake it.
 *
 * If the reference is dropped by a path that does not wake the waiter, the
 * punch would sleep forever. So a watchdog measures how long the punch still
 * waits after the I/O completed and, past a grace time, kicks it with a signal
 * (SA_RESTART: the syscall restarts, finds the pages idle and completes). The
 * JSON line reports `*_kicks`: 0 means the kernel woke the waiter itself.
 * Usage: dax_punch DAXDIR SLOWDEV [PAGES] [GRACE_MS] */
#include "dax_common.h"
#include <linux/falloc.h>
#include <pthread.h>
#include <signal.h>

static char *dax;
static size_t n;
static int slow_fd;
static long grace_ms;
static pthread_t main_thread;
static volatile int op_done;
static ssize_t io_ret;
static uint64_t io_start, io_end;
static int kicks;
static volatile pid_t reader_tid;
static volatile int op_started;

static void on_kick(int sig) { (void)sig; }

/* State letter of thread `tid` of this process (/proc/self/task/TID/stat), or 0. */
static char thread_state(pid_t tid)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)tid);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	char *p = strrchr(buf, ')');
	return p && p[1] == ' ' ? p[2] : 0;
}

static void *reader(void *arg)
{
	(void)arg;
	reader_tid = gettid();
	io_start = now_ns();
	io_ret = pread(slow_fd, dax, n * PAGE, 0);
	io_end = now_ns();
	/* the references are gone now; the layout break should finish at once */
	usleep(grace_ms * 1000);
	while (op_started && !op_done && kicks < 50) {
		kicks++;
		pthread_kill(main_thread, SIGUSR1);
		usleep(100 * 1000);
	}
	return NULL;
}

/* Run one layout-breaking operation while the reader holds the pages. */
static void round_with_io(const char *name, int fd, int punch)
{
	pthread_t t;
	char key[64];

	op_done = 0;
	op_started = 0;
	reader_tid = 0;
	kicks = 0;
	dax = dax_map(fd, n);	/* (re)fault: pmem blocks behind the buffer */
	if (pthread_create(&t, NULL, reader, NULL))
		die("pthread_create");
	/* Wait until the reader sleeps on its read (state D, twice in a row):
	 * GUP has taken the buffer's pages before the bio is submitted, so the
	 * references are held from then on. At most 3 s. */
	int seen = 0, streak = 0;
	for (int i = 0; i < 1500 && !seen; i++) {
		char st = reader_tid ? thread_state(reader_tid) : 0;
		streak = st == 'D' ? streak + 1 : 0;
		seen = streak >= 2;
		if (!seen)
			usleep(2 * 1000);
	}
	op_started = 1;
	uint64_t t0 = now_ns();
	int r = punch ? fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, n * PAGE)
		      : ftruncate(fd, 0);
	uint64_t t1 = now_ns();
	op_done = 1;
	if (r)
		die("%s", name);
	pthread_join(t, NULL);
	if (io_ret != (ssize_t)(n * PAGE)) {
		errno = io_ret < 0 ? errno : EIO;
		die("O_DIRECT read during %s", name);
	}
	munmap(dax, n * PAGE);
	snprintf(key, sizeof(key), "%s_start_ns", name);
	jint(key, (long long)t0);
	snprintf(key, sizeof(key), "%s_end_ns", name);
	jint(key, (long long)t1);
	snprintf(key, sizeof(key), "%s_io_end_ns", name);
	jint(key, (long long)io_end);
	snprintf(key, sizeof(key), "%s_read_in_flight", name);
	jint(key, seen);
	/* Waited: ended no earlier than 50 ms before the reader saw its read
	 * complete. (A woken waiter may well return before the reader thread
	 * does; one that did not wait ends about a delay earlier.) */
	snprintf(key, sizeof(key), "%s_waited_for_io", name);
	jint(key, t1 + 50000000ULL >= io_end);
	snprintf(key, sizeof(key), "%s_ms_after_io", name);
	jint(key, t1 > io_end ? (long long)((t1 - io_end) / 1000000) : 0);
	snprintf(key, sizeof(key), "%s_kicks", name);
	jint(key, kicks);
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s DAXDIR SLOWDEV [PAGES] [GRACE_MS]\n", argv[0]);
		return 2;
	}
	n = argc > 3 ? strtoul(argv[3], NULL, 0) : 4;
	grace_ms = argc > 4 ? strtol(argv[4], NULL, 0) : 1000;
	char path[4096];
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_kick;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGUSR1, &sa, NULL);
	main_thread = pthread_self();

	start("punch", argv[1]);
	snprintf(path, sizeof(path), "%s/punch.buf", argv[1]);
	int fd = dax_file(path, n + 4);
	char *first = dax_map(fd, n);
	report_pfns(first, n);
	munmap(first, n * PAGE);
	slow_fd = open(argv[2], O_RDONLY | O_DIRECT);
	if (slow_fd < 0)
		die("open O_DIRECT %s", argv[2]);
	jint("pages", n);
	jint("grace_ms", grace_ms);
	round_with_io("punch", fd, 1);
	round_with_io("truncate", fd, 0);
	close(fd);
	close(slow_fd);
	finish();
	return 0;
}
