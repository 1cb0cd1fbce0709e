/*
 * harness.c - see harness.h.  The leak check counts descriptors in the
 * forked test process before and after each test.
 */
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

static int fds_before;

int cd_count_fds(void)
{
	int n = 0;
	DIR *d = opendir("/proc/self/fd");
	if (d == NULL) {
		/* Fallback for systems without /proc: probe descriptors. */
		for (int fd = 0; fd < 4096; fd++)
			if (fcntl(fd, F_GETFD) != -1)
				n++;
		return n;
	}
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the directory's own descriptor */
}

static void leak_setup(void)
{
	signal(SIGPIPE, SIG_DFL); /* a SIGPIPE must kill the test, not hide */
	fds_before = cd_count_fds();
}

static void leak_teardown(void)
{
	int after = cd_count_fds();
	ck_assert_msg(after == fds_before,
	              "descriptor leak: %d open before the test, %d after",
	              fds_before, after);
}

double cd_time_scale(void)
{
#if defined(__SANITIZE_ADDRESS__)
	return 4.0;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
	return 4.0;
#else
	return 1.0;
#endif
#else
	return 1.0;
#endif
}

int cd_scaled(int ms)
{
	return (int)(ms * cd_time_scale());
}

uint64_t cd_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

Suite *cd_suite(const char *name, const struct cd_test *tests, size_t n)
{
	Suite *s = suite_create(name);
	for (size_t i = 0; i < n; i++) {
		TCase *tc = tcase_create(tests[i].name);
		double t = tests[i].timeout_s > 0 ? tests[i].timeout_s : 10.0;
		tcase_set_timeout(tc, t * cd_time_scale());
		tcase_add_checked_fixture(tc, leak_setup, leak_teardown);
		tcase_add_test(tc, tests[i].fn);
		suite_add_tcase(s, tc);
	}
	return s;
}

void cd_suite_add_loop(Suite *s, const char *name, const TTest *fn, int n,
                       double timeout_s)
{
	TCase *tc = tcase_create(name);
	tcase_set_timeout(tc, (timeout_s > 0 ? timeout_s : 10.0) * cd_time_scale());
	tcase_add_checked_fixture(tc, leak_setup, leak_teardown);
	tcase_add_loop_test(tc, fn, 0, n);
	suite_add_tcase(s, tc);
}

int cd_run(Suite *s)
{
	SRunner *sr = srunner_create(s);
	srunner_set_fork_status(sr, CK_FORK);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

pid_t cd_fork_peer(void)
{
	pid_t parent = getpid();
	fflush(NULL);
	pid_t pid = fork();
	ck_assert_msg(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0) {
#ifdef __linux__
		prctl(PR_SET_PDEATHSIG, SIGKILL);
#endif
		if (getppid() != parent)
			_exit(99);
	}
	return pid;
}

int cd_wait_peer(pid_t pid, int timeout_ms)
{
	int status;
	struct timespec nap = {0, 5 * 1000 * 1000};
	for (int waited = 0;; waited += 5) {
		pid_t r = waitpid(pid, &status, WNOHANG);
		if (r == pid)
			break;
		if (r < 0 && errno != EINTR)
			return -1;
		if (waited >= timeout_ms) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			return -1;
		}
		nanosleep(&nap, NULL);
	}
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return -1;
}

void cd_tmpdir(char *buf, size_t len)
{
	const char *base = getenv("TMPDIR");
	if (base == NULL || base[0] == '\0')
		base = "/tmp";
	int n = snprintf(buf, len, "%s/conduit-test-XXXXXX", base);
	ck_assert(n > 0 && (size_t)n < len);
	ck_assert_msg(mkdtemp(buf) != NULL, "mkdtemp: %s", strerror(errno));
}

static int rm_one(const char *path, const struct stat *sb, int flag,
                  struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

void cd_rmtree(const char *path)
{
	nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* A cheap stream that differs at every offset and between seeds. */
static inline uint8_t pattern_byte(uint32_t seed, uint64_t i)
{
	uint64_t x = (i >> 3) * 0x9E3779B97F4A7C15ull + seed;
	x ^= x >> 29;
	return (uint8_t)(x >> ((i & 7) * 8));
}

void cd_pattern(uint32_t seed, uint64_t offset, void *buf, size_t len)
{
	uint8_t *p = buf;
	for (size_t i = 0; i < len; i++)
		p[i] = pattern_byte(seed, offset + i);
}

size_t cd_pattern_check(uint32_t seed, uint64_t offset, const void *buf,
                        size_t len)
{
	const uint8_t *p = buf;
	for (size_t i = 0; i < len; i++)
		if (p[i] != pattern_byte(seed, offset + i))
			return i;
	return len;
}
