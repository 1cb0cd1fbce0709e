/*
 * harness.c - see harness.h.  The leak check counts descriptors in the
 * forked test process before and after each test.  Other programs run as
 * peers that die with the test (cd_fork_peer); the certificates are made
 * by a shell script, so that its log tells what openssl said.
 */
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
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

uint64_t cd_cpu_ms(void)
{
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) != 0)
		return 0;
	return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000u +
	       (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000u;
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
	tcase_set_timeout(tc,
	                  (timeout_s > 0 ? timeout_s : 10.0) * cd_time_scale());
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

const char *cd_slurp(const char *path)
{
	static char buf[65536];
	FILE *f = fopen(path, "r");
	ck_assert_msg(f != NULL, "open %s: %s", path, strerror(errno));
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

void cd_write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	ck_assert_msg(f != NULL, "open %s: %s", path, strerror(errno));
	fputs(text, f);
	ck_assert_msg(fclose(f) == 0, "write %s: %s", path, strerror(errno));
}

static struct sockaddr_in loopback_port(int port)
{
	struct sockaddr_in sin;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return sin;
}

int cd_free_port(void)
{
	struct sockaddr_in sin = loopback_port(0);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	socklen_t len = sizeof(sin);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	close(fd);
	return ntohs(sin.sin_port);
}

bool cd_port_answers(int port)
{
	struct sockaddr_in sin = loopback_port(port);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(fd, 0);
	bool ok = connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0;
	close(fd);
	return ok;
}

pid_t cd_spawn_logged(const char *const *argv, const char *in_path,
                      const char *log_path)
{
	pid_t pid = cd_fork_peer();
	if (pid != 0)
		return pid;
	int in = open(in_path != NULL ? in_path : "/dev/null", O_RDONLY);
	int out = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (in < 0 || out < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 ||
	    dup2(out, 2) < 0)
		_exit(126);
	/* exec's argv is not const for historical reasons only. */
	execvp(argv[0], (char *const *)argv);
	_exit(127);
}

const char *cd_wait_logged(pid_t pid, int timeout_ms, const char *what,
                           const char *log_path)
{
	int st = cd_wait_peer(pid, timeout_ms);
	const char *log = cd_slurp(log_path);
	ck_assert_msg(st == 0, "%s exited %d:\n%s", what, st, log);
	return log;
}

pid_t cd_openssl_s_server(int *port, const char *crt, const char *key,
                          const char *log_path, const char *const *extra)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		*port = cd_free_port();
		char accept[32];
		snprintf(accept, sizeof(accept), "127.0.0.1:%d", *port);
		const char *argv[32] = {"openssl", "s_server", "-accept",
		                        accept,    "-cert",    crt,
		                        "-key",    key,        "-rev"};
		size_t n = 9;
		for (size_t i = 0; extra != NULL && extra[i] != NULL && n < 31;
		     i++)
			argv[n++] = extra[i];
		argv[n] = NULL;
		pid_t pid = cd_spawn_logged(argv, NULL, log_path);
		for (int i = 0; i < 250; i++) {
			if (cd_port_answers(*port))
				return pid;
			if (waitpid(pid, NULL, WNOHANG) == pid)
				break; /* it exited: the port was taken? */
			usleep(20000);
		}
		kill(pid, SIGTERM);
		cd_wait_peer(pid, 2000);
	}
	ck_abort_msg("openssl s_server did not start (%s):\n%s", log_path,
	             cd_slurp(log_path));
	return -1;
}

/* The part of cnf that every caller shares: what req needs, a CA, and a
 * server for localhost. */
static const char certs_cnf[] = "[req]\n"
                                "distinguished_name = dn\n"
                                "prompt = no\n"
                                "[dn]\n"
                                "CN = unused\n"
                                "[ext_ca]\n"
                                "basicConstraints = critical,CA:TRUE\n"
                                "keyUsage = critical,keyCertSign,cRLSign\n"
                                "subjectKeyIdentifier = hash\n"
                                "[ext_srv]\n"
                                "basicConstraints = CA:FALSE\n"
                                "keyUsage = critical,digitalSignature\n"
                                "extendedKeyUsage = serverAuth\n"
                                "subjectAltName = DNS:localhost,IP:127.0.0.1\n";

/* The shell functions of make.sh (see harness.h). */
static const char certs_functions[] =
    "key() { openssl genpkey -algorithm EC -pkeyopt "
    "ec_paramgen_curve:P-256 -out \"$1.key\"; }\n"
    "ca() { key $1; openssl req -x509 -new -key $1.key -subj \"/CN=$2\" "
    "-days $days -config cnf -extensions ext_ca -out $1.crt; }\n"
    "leaf() { key $1; openssl req -new -key $1.key -subj \"/CN=$2\" "
    "-config cnf -out $1.csr; openssl x509 -req -in $1.csr -CA $4.crt "
    "-CAkey $4.key -set_serial $5 -days $days -extfile cnf "
    "-extensions $3 -out $1.crt; }\n";

const char *cd_certs_file(const struct cd_certs *c, const char *name)
{
	static char bufs[8][512];
	static int next;
	char *b = bufs[next++ % 8];
	snprintf(b, sizeof(bufs[0]), "%s/%s", c->dir, name);
	return b;
}

/* No ck_assert here: this runs in main(), outside any test. */
void cd_certs_make(struct cd_certs *c, const char *name, int days,
                   const char *cnf, const char *steps)
{
	memset(c, 0, sizeof(*c));
	const char *base = getenv("TMPDIR");
	snprintf(c->dir, sizeof(c->dir), "%s/%s-XXXXXX",
	         base != NULL && base[0] != '\0' ? base : "/tmp", name);
	if (mkdtemp(c->dir) == NULL) {
		snprintf(c->err, sizeof(c->err), "mkdtemp: %s",
		         strerror(errno));
		c->dir[0] = '\0';
		return;
	}
	if (system("command -v openssl >/dev/null 2>&1") != 0) {
		snprintf(c->err, sizeof(c->err),
		         "the openssl command is missing: run tools/setup");
		return;
	}
	const char *script = cd_certs_file(c, "make.sh");
	FILE *f = fopen(script, "w");
	bool written =
	    f != NULL &&
	    fprintf(f, "set -e\ndays=%d\ncat > cnf <<'EOF'\n%s%sEOF\n%s%s",
	            days, certs_cnf, cnf, certs_functions, steps) >= 0;
	if (f != NULL && fclose(f) != 0)
		written = false;
	if (!written) {
		snprintf(c->err, sizeof(c->err), "cannot write %s", script);
		return;
	}
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "cd '%s' && sh ./make.sh >make.log 2>&1",
	         c->dir);
	if (system(cmd) != 0) {
		snprintf(c->err, sizeof(c->err),
		         "making test certificates with openssl failed; see %s",
		         cd_certs_file(c, "make.log"));
		c->dir[0] = '\0'; /* keep the log for the reader */
		return;
	}
	c->ok = true;
}

void cd_certs_need(const struct cd_certs *c)
{
	ck_assert_msg(c->ok, "%s", c->err);
}

void cd_certs_remove(struct cd_certs *c)
{
	if (c->dir[0] != '\0')
		cd_rmtree(c->dir);
	c->dir[0] = '\0';
}
