/*
 * harness.h - shared helpers of the Check suites: building suites with a
 * descriptor-leak check, forked peers that die with their test, temporary
 * directories, a verifiable byte pattern, clocks, small files, and other
 * programs as peers: test certificates made by the openssl command and
 * openssl s_server.  Nothing here knows conduit; its own helpers are in
 * flowkit.h.
 */
#ifndef CONDUIT_TEST_HARNESS_H
#define CONDUIT_TEST_HARNESS_H

#include <check.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct cd_test {
	const char *name;
	const TTest *fn;
	double timeout_s; /* 0: the default of 10 s (x4 under sanitizers) */
};
#define CD_TEST(fn, timeout)                                                   \
	{                                                                      \
#fn, fn, timeout                                               \
	}

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

/* Milliseconds of CPU this process has used (user + system), for tests
 * that check a wait sleeps rather than spins. */
uint64_t cd_cpu_ms(void);

/* ---- Files ------------------------------------------------------- */

/* The text of the file at path (at most 64 KiB) in a static buffer that
 * the next call overwrites; fails the test if it cannot be opened. */
const char *cd_slurp(const char *path);
/* Write text to path (made or truncated); fails the test on an error. */
void cd_write_file(const char *path, const char *text);

/* ---- Loopback TCP ------------------------------------------------ */

/* A port of 127.0.0.1 that was free a moment ago: bound, read back and
 * released, so another process may take it meanwhile. */
int cd_free_port(void);
/* Whether something accepts a TCP connection on 127.0.0.1:port. */
bool cd_port_answers(int port);

/* ---- Other programs as peers ------------------------------------- */

/* cd_fork_peer() a child that runs argv[0], found on PATH, with argv
 * (NULL-terminated): stdin from in_path (NULL: /dev/null), stdout and
 * stderr to log_path (made or truncated).  Returns its pid; the child
 * exits 126 if it cannot set up its descriptors, 127 if exec fails. */
pid_t cd_spawn_logged(const char *const *argv, const char *in_path,
                      const char *log_path);

/* Wait up to timeout_ms (as cd_wait_peer) for a child of
 * cd_spawn_logged() that wrote log_path; fails the test, naming it by
 * `what` and showing its log, unless it exited 0.  Returns the log's text
 * (cd_slurp's buffer). */
const char *cd_wait_logged(pid_t pid, int timeout_ms, const char *what,
                           const char *log_path);

/* openssl s_server -rev (it answers each line reversed) on a free
 * loopback port, written to *port, with certificate crt, key key and the
 * NULL-terminated extra arguments (NULL: none); its output goes to
 * log_path.  Returns its pid once the port answers; a port taken between
 * choosing and binding it is tried again once; fails the test if the
 * server does not start. */
pid_t cd_openssl_s_server(int *port, const char *crt, const char *key,
                          const char *log_path, const char *const *extra);

/* ---- Test certificates ------------------------------------------- */

/*
 * Certificates and keys made once per run, in main() outside any test, by
 * the openssl command in a temporary directory.  cd_certs_make() writes
 * there the OpenSSL configuration "cnf" and the shell script make.sh,
 * and runs it with sh in that directory (its output in make.log).
 *
 * cnf holds [req] (prompt = no, a placeholder subject), [ext_ca] (a CA
 * that signs certificates and CRLs, with a subject key identifier) and
 * [ext_srv] (a TLS server certificate for DNS:localhost and IP:127.0.0.1),
 * then the caller's text: the extension sections of its other leaves and
 * anything else its steps need.  make.sh stops at the first failing command
 * (set -e); it defines these shell functions, then runs the caller's
 * steps:
 *   key NAME                     a P-256 key in NAME.key
 *   ca NAME CN                   key NAME, and a self-signed CA NAME.crt
 *                                with subject CN and extensions ext_ca
 *   leaf NAME CN EXT CA SERIAL   key NAME, and NAME.crt with subject CN,
 *                                the extensions of section EXT of cnf and
 *                                serial number SERIAL, signed by CA
 *                                (CA.crt, CA.key)
 * Certificates made by ca and leaf are valid from now for `days` days
 * (the shell variable $days, which the steps may use too).
 */
struct cd_certs {
	char dir[256]; /* "" when there is nothing to remove */
	bool ok;       /* all steps succeeded */
	char err[512]; /* why not, for cd_certs_need() */
};

/* Make the directory (named after `name`) and run the steps; never
 * asserts.  On a failure c->err says what failed; when the script failed
 * the directory is kept, for its log, and c->dir emptied. */
void cd_certs_make(struct cd_certs *c, const char *name, int days,
                   const char *cnf, const char *steps);
/* The path of file name in c's directory, in one of 8 static buffers
 * used in turn. */
const char *cd_certs_file(const struct cd_certs *c, const char *name);
/* Fail the test, saying why, unless the certificates were made. */
void cd_certs_need(const struct cd_certs *c);
/* Remove c's directory (if any is left to remove). */
void cd_certs_remove(struct cd_certs *c);

#endif
