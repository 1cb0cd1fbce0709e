/*
 * test_demo.c - `conduit demo` as a user runs it: the built program is
 * started with fork/exec, its output read from pipes (or a pseudo-terminal
 * for the colour tests), and judged by what it prints and its exit status.
 *
 * Each leg is run alone (--leg NAME, 1 MiB) and must pass with every byte
 * verified, or, when its backend is not in this build, say so and still
 * exit 0.  The whole demo must list every leg in its table.  Failure
 * paths: unknown legs and options and bad byte counts are usage errors
 * (exit 2) naming what was wrong; a vchan leg without its emulation fails
 * (exit 1) naming the leg and the reason; an interrupted run dies of its
 * signal.  Every run gets its own TMPDIR, which must be empty afterwards:
 * the demo removes its sockets and emulated Xen hosts on every path.
 *
 * The test process itself never loads the Xen emulation: the demo puts it
 * on its children's library path on its own.
 */
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef CONDUIT_CLI
#error "CONDUIT_CLI must name the built conduit program (set by CMake)"
#endif

/* What one run of the command left: its output and how it ended. */
struct run {
	char out[65536];
	size_t outlen;
	char flat[65536]; /* out with wrapped fields joined again */
	char err[16384];
	size_t errlen;
	int status;  /* wait status */
	bool killed; /* still running at the deadline */
	char tmp[256];
};

/* Whether dir has no entries left. */
static bool dir_empty(const char *dir, char *first, size_t len)
{
	DIR *d = opendir(dir);
	if (d == NULL)
		return true;
	struct dirent *e;
	bool empty = true;
	while ((e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") != 0 &&
		    strcmp(e->d_name, "..") != 0) {
			snprintf(first, len, "%s", e->d_name);
			empty = false;
			break;
		}
	closedir(d);
	return empty;
}

static void drain(int fd, char *buf, size_t *len, size_t cap, bool *open)
{
	ssize_t r = read(fd, buf + *len, cap - 1 - *len);
	if (r > 0) {
		*len += (size_t)r;
		buf[*len] = '\0';
	} else if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
		/* A pseudo-terminal whose other side is gone says EIO. */
		*open = false;
	}
	if (*len >= cap - 1)
		*open = false;
}

/*
 * Run `conduit demo ARGS...` (args NULL-terminated) with env strings
 * ("NAME=VALUE", NULL-terminated, may be NULL) added, its stdout on a pipe
 * or, with tty, on a pseudo-terminal; stderr on a pipe.  After
 * signal_after_ms (0: never) it is sent sig.  Waits up to ms (scaled) and
 * kills it then.  TMPDIR is a fresh directory, checked empty afterwards.
 */
static void run_demo(struct run *r, const char *const *args,
                     const char *const *env, bool tty, int sig,
                     int signal_after_ms, int ms)
{
	memset(r, 0, sizeof(*r));
	cd_tmpdir(r->tmp, sizeof(r->tmp));
	int out[2], err[2];
	int master = -1, slave = -1;
	if (tty) {
		ck_assert_msg(openpty(&master, &slave, NULL, NULL, NULL) == 0,
		              "openpty: %s", strerror(errno));
		fcntl(master, F_SETFD, FD_CLOEXEC);
		fcntl(slave, F_SETFD, FD_CLOEXEC);
		out[0] = master;
		out[1] = slave;
	} else {
		ck_assert(pipe2(out, O_CLOEXEC) == 0);
	}
	ck_assert(pipe2(err, O_CLOEXEC) == 0);
	char *argv[16];
	size_t n = 0;
	argv[n++] = (char *)"conduit";
	argv[n++] = (char *)"demo";
	for (size_t i = 0; args[i] != NULL && n < 15; i++)
		argv[n++] = (char *)args[i];
	argv[n] = NULL;
	char tmpenv[300];
	snprintf(tmpenv, sizeof(tmpenv), "TMPDIR=%s", r->tmp);
	pid_t pid = cd_fork_peer();
	if (pid == 0) {
		int devnull = open("/dev/null", O_RDONLY);
		if (devnull < 0 || dup2(devnull, 0) < 0 ||
		    dup2(out[1], 1) < 0 || dup2(err[1], 2) < 0)
			_exit(126);
		signal(SIGPIPE, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		unsetenv("NO_COLOR");
		if (putenv(tmpenv) != 0)
			_exit(126);
		for (size_t i = 0; env != NULL && env[i] != NULL; i++)
			if (putenv((char *)env[i]) != 0)
				_exit(126);
		execv(CONDUIT_CLI, argv);
		_exit(127);
	}
	close(out[1]);
	close(err[1]);
	bool out_open = true, err_open = true, signalled = false;
	uint64_t start = cd_now_ms();
	uint64_t end = start + (uint64_t)cd_scaled(ms);
	while (out_open || err_open) {
		uint64_t now = cd_now_ms();
		if (now >= end)
			break;
		if (sig != 0 && !signalled &&
		    now - start >= (uint64_t)signal_after_ms) {
			kill(pid, sig);
			signalled = true;
		}
		struct pollfd pf[2] = {{out[0], out_open ? POLLIN : 0, 0},
		                       {err[0], err_open ? POLLIN : 0, 0}};
		poll(pf, 2, 50);
		if (pf[0].revents != 0)
			drain(out[0], r->out, &r->outlen, sizeof(r->out),
			      &out_open);
		if (pf[1].revents != 0)
			drain(err[0], r->err, &r->errlen, sizeof(r->err),
			      &err_open);
	}
	close(out[0]);
	close(err[0]);
	/* Its output has ended: it is exiting.  Bounded all the same. */
	int st = 0;
	for (;;) {
		pid_t w = waitpid(pid, &st, WNOHANG);
		if (w == pid)
			break;
		if (cd_now_ms() >= end + 2000) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			r->killed = true;
			break;
		}
		struct timespec ts = {0, 5000000};
		nanosleep(&ts, NULL);
	}
	r->status = st;
	/* A field's continuation lines are indented 12 columns. */
	size_t k = 0;
	for (size_t i = 0; i < r->outlen; i++) {
		if (r->out[i] == '\n' &&
		    strncmp(r->out + i + 1, "            ", 12) == 0) {
			r->flat[k++] = ' ';
			i += 12;
			continue;
		}
		r->flat[k++] = r->out[i];
	}
	r->flat[k] = '\0';
	char left[256] = "";
	bool empty = dir_empty(r->tmp, left, sizeof(left));
	cd_rmtree(r->tmp);
	ck_assert_msg(!r->killed,
	              "conduit demo still running after %d ms; output:\n%s\n%s",
	              cd_scaled(ms), r->out, r->err);
	ck_assert_msg(empty, "conduit demo left %s behind in TMPDIR", left);
}

static int exit_code(const struct run *r)
{
	return WIFEXITED(r->status) ? WEXITSTATUS(r->status) : -1;
}

static void assert_exit(const struct run *r, int want)
{
	ck_assert_msg(
	    WIFEXITED(r->status) && WEXITSTATUS(r->status) == want,
	    "exit %d (status 0x%x), want %d; stdout:\n%s\nstderr:\n%s",
	    exit_code(r), (unsigned)r->status, want, r->out, r->err);
}

static void assert_has(const char *hay, const char *needle, const char *what)
{
	ck_assert_msg(strstr(hay, needle) != NULL, "%s lacks \"%s\":\n%s", what,
	              needle, hay);
}

/* The table line of a leg: the leg's name at the start of a line, padded
 * to the table's first column, then the result. */
static const char *table_line(const char *out, const char *leg, char *buf,
                              size_t len)
{
	char head[32];
	snprintf(head, sizeof(head), "\n%-10s ", leg);
	const char *p = NULL, *q = out;
	/* The table comes last: take the last such line. */
	while ((q = strstr(q, head)) != NULL)
		p = q++;
	if (p == NULL)
		return NULL;
	p++;
	size_t n = strcspn(p, "\n");
	snprintf(buf, len, "%.*s", (int)n, p);
	return buf;
}

/* One leg alone: it passes with 1 MiB verified, or is not built. */
static void leg_case(const char *leg, const char *missing)
{
	struct run *r = malloc(sizeof(*r));
	ck_assert_ptr_nonnull(r);
	const char *args[] = {"--leg", leg, "--bytes", "1M", NULL};
	run_demo(r, args, NULL, false, 0, 0, 20000);
	assert_exit(r, 0);
	ck_assert_msg(r->outlen > 0 && strchr(r->out, '\033') == NULL,
	              "colour on a pipe:\n%s", r->out);
	char line[200];
	ck_assert_msg(table_line(r->out, leg, line, sizeof(line)) != NULL,
	              "no table line for %s:\n%s", leg, r->out);
	if (missing != NULL) {
		char want[100];
		snprintf(want, sizeof(want), "not built (%s)", missing);
		assert_has(line, want, "the table line");
		free(r);
		return;
	}
	assert_has(r->flat,
	           "verified  1048576 bytes (1.00 MiB) sent, every byte "
	           "checked by the receiver",
	           "the leg's output");
	assert_has(r->flat, "median of 300", "the leg's output");
	assert_has(line, "pass", "the table line");
	assert_has(line, "1.00 MiB", "the table line");
	assert_has(r->flat, "1 passed", "the summary");
	free(r);
}

#ifdef CONDUIT_HAVE_UNIX
#define M_UNIX NULL
#else
#define M_UNIX "CONDUIT_WITH_UNIX=OFF"
#endif
#ifdef CONDUIT_HAVE_TCP
#define M_TCP NULL
#else
#define M_TCP "CONDUIT_WITH_TCP=OFF"
#endif
#ifdef CONDUIT_HAVE_TLS
#define M_TLS NULL
#else
#define M_TLS "CONDUIT_WITH_TLS=OFF"
#endif
#ifdef CONDUIT_HAVE_VCHAN
#define M_VCHAN NULL
#else
#define M_VCHAN "CONDUIT_WITH_VCHAN=OFF"
#endif
#ifdef CONDUIT_HAVE_LWIP
#define M_LWIP NULL
#else
#define M_LWIP "CONDUIT_WITH_LWIP=OFF"
#endif
#define M2(a, b) ((a) != NULL ? (a) : (b))

START_TEST(leg_unix)
{
	leg_case("unix", M_UNIX);
}
END_TEST

START_TEST(leg_tcp)
{
	leg_case("tcp", M_TCP);
}
END_TEST

START_TEST(leg_tls_tcp)
{
	leg_case("tls+tcp", M2(M_TLS, M_TCP));
}
END_TEST

START_TEST(leg_tls_unix)
{
	leg_case("tls+unix", M2(M_TLS, M_UNIX));
}
END_TEST

START_TEST(leg_vchan)
{
	leg_case("vchan", M_VCHAN);
}
END_TEST

START_TEST(leg_tls_vchan)
{
	leg_case("tls+vchan", M2(M_TLS, M_VCHAN));
}
END_TEST

START_TEST(leg_lwip)
{
	leg_case("lwip", M_LWIP);
}
END_TEST

START_TEST(leg_tls_lwip)
{
	leg_case("tls+lwip", M2(M_TLS, M_LWIP));
}
END_TEST

START_TEST(leg_rules)
{
	leg_case("rules", M2(M_TLS, M_VCHAN));
	/* The rule really did the rewriting. */
#if defined(CONDUIT_HAVE_TLS) && defined(CONDUIT_HAVE_VCHAN)
	struct run *r = malloc(sizeof(*r));
	ck_assert_ptr_nonnull(r);
	const char *args[] = {"--leg", "rules", "--bytes", "4K", NULL};
	run_demo(r, args, NULL, false, 0, 0, 20000);
	assert_exit(r, 0);
	assert_has(r->flat, "https://logger.xen/", "the output");
	assert_has(r->flat,
	           "rules     demo.rules: map *.xen vchan://{label}/{scheme}",
	           "the output");
	assert_has(r->flat, "(demo.rules:1)", "the explanation");
	assert_has(r->flat, "tls+vchan://logger/https?servername=logger.xen",
	           "the explanation");
	assert_has(r->flat, "verified against the demo CA for logger.xen",
	           "the TLS line");
	free(r);
#endif
}
END_TEST

static const char *const all_legs[] = {"unix",     "tcp",      "tls+tcp",
                                       "tls+unix", "vchan",    "tls+vchan",
                                       "lwip",     "tls+lwip", "rules"};

/* The whole demo: every leg in the table, each passed or not built. */
START_TEST(table_lists_every_leg)
{
	struct run *r = malloc(sizeof(*r));
	ck_assert_ptr_nonnull(r);
	const char *args[] = {"--bytes", "64K", NULL};
	run_demo(r, args, NULL, false, 0, 0, 30000);
	assert_exit(r, 0);
	assert_has(r->flat, "9 legs", "the heading");
	const char *table = strstr(r->out, "\nleg ");
	ck_assert_msg(table != NULL, "no table:\n%s", r->out);
	for (size_t i = 0; i < sizeof(all_legs) / sizeof(all_legs[0]); i++) {
		char line[200];
		ck_assert_msg(
		    table_line(table, all_legs[i], line, sizeof(line)) != NULL,
		    "the table lacks %s:\n%s", all_legs[i], table);
		ck_assert_msg(strstr(line, "pass") != NULL ||
		                  strstr(line, "not built (CONDUIT_WITH_") !=
		                      NULL,
		              "leg %s: %s", all_legs[i], line);
	}
	ck_assert_msg(strstr(r->out, "FAILED") == NULL, "%s", r->out);
	/* Readable in an 80-column terminal: lines wrap at spaces; only a
	 * single word too long for any line (a URI with this test's long
	 * TMPDIR in it) may stick out. */
	for (const char *p = r->out; *p != '\0';) {
		size_t n = strcspn(p, "\n");
		if (n > 80) {
			/* Skip the indent and a label of one word. */
			const char *w = p + strspn(p, " ");
			if (w - p == 2)
				w += strcspn(w, " ");
			w += strspn(w, " ");
			size_t words_len = (size_t)(p + n - w);
			ck_assert_msg(memchr(w, ' ', words_len) == NULL,
			              "a line of %zu columns: %.*s", n, (int)n,
			              p);
		}
		p += n + (p[n] != '\0');
	}
	free(r);
}
END_TEST

START_TEST(unknown_leg_is_usage_error)
{
	struct run *r = malloc(sizeof(*r));
	ck_assert_ptr_nonnull(r);
	const char *args[] = {"--leg", "tcp", "--leg", "carrier-pigeon", NULL};
	run_demo(r, args, NULL, false, 0, 0, 5000);
	assert_exit(r, 2);
	assert_has(r->err, "--leg: unknown leg 'carrier-pigeon'", "stderr");
	assert_has(r->err, "tls+vchan", "the list of legs");
	ck_assert_msg(r->outlen == 0, "ran anyway:\n%s", r->out);
	free(r);
}
END_TEST

START_TEST(bad_options_are_usage_errors)
{
	static const struct {
		const char *a, *b, *msg;
	} cases[] = {
	    {"--bytes", "12Q", "--bytes: '12Q' is not a byte count"},
	    {"--bytes", "0", "--bytes: '0' is not a byte count"},
	    {"--bytes", "-5", "--bytes: '-5' is not a byte count"},
	    {"--bytes", "5G", "--bytes: '5G' is not a byte count"},
	    {"--bytes", NULL, "--bytes needs a value"},
	    {"--frobnicate", NULL, "unknown option '--frobnicate'"},
	    {"--leg=", NULL, "--leg: unknown leg ''"},
	};
	struct run *r = malloc(sizeof(*r));
	ck_assert_ptr_nonnull(r);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *args[] = {cases[i].a, cases[i].b, NULL};
		run_demo(r, args, NULL, false, 0, 0, 5000);
		assert_exit(r, 2);
		assert_has(r->err, cases[i].msg, "stderr");
		ck_assert_msg(r->outlen == 0, "ran anyway:\n%s", r->out);
	}
	/* --bytes=N works as --bytes N does. */
	const char *args[] = {"--leg", "tcp", "--bytes=3K", NULL};
	run_demo(r, args, NULL, false, 0, 0, 10000);
	assert_exit(r, 0);
	assert_has(r->flat, "verified  3072 bytes (3.0 KiB)", "the output");
	free(r);
}
END_TEST

START_TEST(help_lists_legs)
{
	struct run *r = malloc(sizeof(*r));
	ck_assert_ptr_nonnull(r);
	const char *args[] = {"--help", NULL};
	run_demo(r, args, NULL, false, 0, 0, 5000);
	assert_exit(r, 0);
	assert_has(r->flat, "usage: conduit demo", "--help");
	for (size_t i = 0; i < sizeof(all_legs) / sizeof(all_legs[0]); i++)
		assert_has(r->flat, all_legs[i], "--help");
	ck_assert_msg(strstr(r->out, "--peer") == NULL,
	              "the internal mode is shown:\n%s", r->out);
	free(r);
}
END_TEST

/* A leg that cannot run fails the demo, naming the leg, the phase and
 * why; the other legs still run and pass. */
START_TEST(failed_leg_fails_the_run)
{
#ifdef CONDUIT_HAVE_VCHAN
	char empty[256], env[300];
	cd_tmpdir(empty, sizeof(empty));
	snprintf(env, sizeof(env), "CONDUIT_XEN_EMULATION=%s", empty);
	const char *envs[] = {env, NULL};
	struct run *r = malloc(sizeof(*r));
	ck_assert_ptr_nonnull(r);
	const char *args[] = {"--leg",   "vchan", "--leg", "unix",
	                      "--bytes", "64K",   NULL};
	run_demo(r, args, envs, false, 0, 0, 10000);
	cd_rmtree(empty);
	assert_exit(r, 1);
	assert_has(r->flat, "FAILED in setup: the Xen emulation is not in",
	           "the leg's result");
	char line[200];
	ck_assert_ptr_nonnull(table_line(r->out, "vchan", line, sizeof(line)));
	assert_has(line, "FAILED", "the vchan table line");
	ck_assert_ptr_nonnull(table_line(r->out, "unix", line, sizeof(line)));
	assert_has(line, "pass", "the unix table line");
	assert_has(r->flat, "1 FAILED, 1 passed", "the summary");
	free(r);
#else
	/* Without vchan, a leg cannot be made to fail from outside: check
	 * the not-built leg does not fail the run instead. */
	leg_case("vchan", M_VCHAN);
#endif
}
END_TEST

/* Interrupted, it cleans up (TMPDIR empty, children gone) and dies of
 * the signal. */
static void interrupt_case(const char *leg)
{
	struct run *r = malloc(sizeof(*r));
	ck_assert_ptr_nonnull(r);
	const char *args[] = {"--leg", leg, "--bytes", "4G", NULL};
	run_demo(r, args, NULL, false, SIGINT, cd_scaled(300), 10000);
	ck_assert_msg(WIFSIGNALED(r->status) && WTERMSIG(r->status) == SIGINT,
	              "status 0x%x, want death by SIGINT; stdout:\n%s\n%s",
	              (unsigned)r->status, r->out, r->err);
	assert_has(r->err, "conduit demo: interrupted", "stderr");
	free(r);
}

START_TEST(interrupt_cleans_up)
{
	interrupt_case("unix");
#ifdef CONDUIT_HAVE_VCHAN
	interrupt_case("vchan");
#endif
}
END_TEST

/* Colour on a terminal, none with NO_COLOR set. */
START_TEST(colour_only_on_terminal)
{
	struct run *r = malloc(sizeof(*r));
	ck_assert_ptr_nonnull(r);
	const char *args[] = {"--leg", "tcp", "--bytes", "4K", NULL};
	run_demo(r, args, NULL, true, 0, 0, 10000);
	assert_exit(r, 0);
	ck_assert_msg(strstr(r->out, "\033[") != NULL, "no colour:\n%s",
	              r->out);
	const char *nc[] = {"NO_COLOR=1", NULL};
	run_demo(r, args, nc, true, 0, 0, 10000);
	assert_exit(r, 0);
	ck_assert_msg(r->outlen > 0 && strchr(r->out, '\033') == NULL,
	              "colour with NO_COLOR:\n%s", r->out);
	free(r);
}
END_TEST

int main(void)
{
	const struct cd_test tests[] = {
	    CD_TEST(leg_unix, 20),
	    CD_TEST(leg_tcp, 20),
	    CD_TEST(leg_tls_tcp, 20),
	    CD_TEST(leg_tls_unix, 20),
	    CD_TEST(leg_vchan, 20),
	    CD_TEST(leg_tls_vchan, 20),
	    CD_TEST(leg_lwip, 20),
	    CD_TEST(leg_tls_lwip, 20),
	    CD_TEST(leg_rules, 30),
	    CD_TEST(table_lists_every_leg, 40),
	    CD_TEST(unknown_leg_is_usage_error, 10),
	    CD_TEST(bad_options_are_usage_errors, 20),
	    CD_TEST(help_lists_legs, 10),
	    CD_TEST(failed_leg_fails_the_run, 20),
	    CD_TEST(interrupt_cleans_up, 30),
	    CD_TEST(colour_only_on_terminal, 20),
	};
	return cd_run(
	    cd_suite("demo", tests, sizeof(tests) / sizeof(tests[0])));
}
