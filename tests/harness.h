/*
 * harness.h - shared helpers of the Check suites: building suites with a
 * descriptor-leak check, forked peers that die with their test, temporary
 * directories, a verifiable byte pattern and clocks.  Nothing here knows
 * conduit; its own helpers are in flowkit.h.
 */
#ifndef CONDUIT_TEST_HARNESS_H
#define CONDUIT_TEST_HARNESS_H

#include <check.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct cd_test {
	const char *name;
	const TTest *fn;
	double timeout_s; /* 0: the default of 10 s (x4 under sanitizers) */
};
#define CD_TEST(fn, timeout) { #fn, fn, timeout }

/* One suite with one test case per test, each wrapped in a checked fixture
 * that fails the test if it leaves a descriptor open. */
Suite *cd_suite(const char *name, const struct cd_test *tests, size_t n);

/* Add a table-driven test run n times (_i from 0), with the same leak
 * check as cd_suite's tests. */
void cd_suite_add_loop(Suite *s, const char *name, const TTest *fn, int n,
                       double timeout_s);

/* Run a suite (fork mode) and return the process exit status. */
int cd_run(Suite *s);

/* fork() a peer that is killed when the test process dies.  Returns the pid
 * in the parent and 0 in the child.  The child must end with _exit(). */
pid_t cd_fork_peer(void);

/* Wait up to timeout_ms for a peer; returns its exit status, or -1 (after
 * killing it) if it timed out or died of a signal. */
int cd_wait_peer(pid_t pid, int timeout_ms);

/* Make a private temporary directory; path written to buf. */
void cd_tmpdir(char *buf, size_t len);
/* Remove a directory tree made by cd_tmpdir(). */
void cd_rmtree(const char *path);

/* The test byte stream: byte i of stream `seed`. */
void cd_pattern(uint32_t seed, uint64_t offset, void *buf, size_t len);
/* Check buf against the pattern; returns the index of the first wrong
 * byte, or len when all match. */
size_t cd_pattern_check(uint32_t seed, uint64_t offset, const void *buf,
                        size_t len);

/* Count this process's open descriptors. */
int cd_count_fds(void);

/* Sanitizer builds are slower; timeouts are scaled by this. */
double cd_time_scale(void);
/* A timeout of ms milliseconds, scaled by cd_time_scale(). */
int cd_scaled(int ms);

/* Milliseconds on the monotonic clock. */
uint64_t cd_now_ms(void);

#endif
