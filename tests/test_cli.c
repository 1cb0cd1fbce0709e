/*
 * test_cli.c - the `conduit` command end to end, as a user runs it: the
 * built program is started with fork/exec, its standard input, output and
 * error are pipes, and the other side of each connection is a plain
 * kernel socket made here (not conduit), so the command is judged by
 * something that does not share its code.  Covered: cat and listen over
 * unix and tcp with every byte of 4 MiB each way checked, the real port
 * printed for tcp://127.0.0.1:0, listen --echo (once and --keep with
 * concurrent clients), relay unix->tcp and tcp->unix with eight
 * simultaneous connections each moving different data, a half-close
 * passed through the relay, a failed target connect, the idle timeout, a
 * closed stdout, resolve, help, and every exit status with its message.
 * Then the backends from the command line: TLS between two conduit
 * processes and against openssl s_server and s_client (mutual TLS, ALPN,
 * what -v reports), verification failures (exit 4) and bad certificates,
 * keys and options (exit 2); vchan between two processes playing two
 * domains over the Xen emulation; TCP on lwIP between two processes on a
 * datagram wire, and between lwIP and the kernel through a TAP device in
 * a network namespace of the test's own; bad --lwip-* specifications.
 *
 * Every child dies with the test (PR_SET_PDEATHSIG through cd_fork_peer)
 * and every wait is bounded: a child still running at its deadline is
 * killed and the test fails.  Only loopback and temporary-directory
 * addresses are used.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifdef CONDUIT_HAVE_LWIP
#include <linux/if_tun.h>
#endif

#ifndef CONDUIT_CLI
#error "CONDUIT_CLI must name the built conduit program (set by CMake)"
#endif

#define KiB 1024ull
#define MiB (1024ull * 1024ull)

static void set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	ck_assert(fl >= 0);
	ck_assert(fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0);
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* ------------------------------------------------------------------ */
/* Running the command                                                 */

struct proc {
	pid_t pid;
	int in, out, err; /* our ends of its stdin, stdout, stderr */
	char log[8192];   /* what it wrote on stderr so far */
	size_t loglen;
	size_t seen;    /* log before this was matched by await_line */
	char line[512]; /* the rest of the line await_line matched */
};

/* Start `conduit ARGS...` (args NULL-terminated) with three pipes and,
 * when env is not NULL, the "NAME=VALUE" strings of env (NULL-terminated)
 * added to its environment. */
static void spawn_env(struct proc *p, const char *const *env,
                      const char *const *args)
{
	int in[2], out[2], err[2];
	ck_assert(pipe2(in, O_CLOEXEC) == 0);
	ck_assert(pipe2(out, O_CLOEXEC) == 0);
	ck_assert(pipe2(err, O_CLOEXEC) == 0);
	char *argv[24];
	size_t n = 0;
	argv[n++] = (char *)"conduit";
	for (; args[n - 1] != NULL && n < 23; n++)
		argv[n] = (char *)args[n - 1];
	argv[n] = NULL;
	pid_t pid = cd_fork_peer();
	if (pid == 0) {
		/* dup2 leaves the copies without close-on-exec; the
		 * originals close at exec. */
		if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0 ||
		    dup2(err[1], 2) < 0)
			_exit(126);
		signal(SIGPIPE, SIG_DFL);
		for (size_t i = 0; env != NULL && env[i] != NULL; i++)
			if (putenv((char *)env[i]) != 0)
				_exit(126);
		execv(CONDUIT_CLI, argv);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	close(err[1]);
	memset(p, 0, sizeof(*p));
	p->pid = pid;
	p->in = in[1];
	p->out = out[0];
	p->err = err[0];
}

static void spawn(struct proc *p, const char *const *args)
{
	spawn_env(p, NULL, args);
}

/* Read stderr until a line starting with prefix arrives (after the lines
 * matched before); returns the rest of that line, or fails the test at the
 * deadline. */
static const char *await_line(struct proc *p, const char *prefix, int ms)
{
	uint64_t end = cd_now_ms() + (uint64_t)cd_scaled(ms);
	size_t plen = strlen(prefix);
	for (;;) {
		char *line = p->log + p->seen, *nl;
		while ((nl = memchr(line, '\n',
		                    p->loglen - (size_t)(line - p->log))) !=
		       NULL) {
			size_t len = (size_t)(nl - line);
			if (len >= plen && memcmp(line, prefix, plen) == 0) {
				snprintf(p->line, sizeof(p->line), "%.*s",
				         (int)(len - plen), line + plen);
				p->seen = (size_t)(nl + 1 - p->log);
				return p->line;
			}
			line = nl + 1;
		}
		uint64_t now = cd_now_ms();
		ck_assert_msg(now < end,
		              "no '%s' line on stderr in %d ms; got: %.*s",
		              prefix, ms, (int)p->loglen, p->log);
		ck_assert_msg(p->loglen < sizeof(p->log) - 1,
		              "stderr log full");
		struct pollfd pf = {p->err, POLLIN, 0};
		poll(&pf, 1, (int)(end - now));
		ssize_t r = read(p->err, p->log + p->loglen,
		                 sizeof(p->log) - 1 - p->loglen);
		ck_assert_msg(r != 0, "stderr closed before '%s'; got: %.*s",
		              prefix, (int)p->loglen, p->log);
		if (r > 0) {
			p->loglen += (size_t)r;
			p->log[p->loglen] = '\0';
		}
	}
}

/* Wait for the command to exit (killing it at the deadline); close our
 * pipe ends and keep the rest of its stderr in p->log.  Returns the exit
 * status, or -1 if it had to be killed or died of a signal. */
static int finish(struct proc *p, int ms)
{
	close_fd(&p->in);
	close_fd(&p->out);
	int st = cd_wait_peer(p->pid, cd_scaled(ms));
	/* The child is gone, so its stderr pipe ends: read it all. */
	for (;;) {
		if (p->loglen >= sizeof(p->log) - 1)
			break;
		ssize_t r = read(p->err, p->log + p->loglen,
		                 sizeof(p->log) - 1 - p->loglen);
		if (r <= 0)
			break;
		p->loglen += (size_t)r;
	}
	p->log[p->loglen] = '\0';
	close_fd(&p->err);
	return st;
}

/* finish() p, which must exit with status want; what names it in the
 * message. */
static void expect_exit(struct proc *p, int want, int ms, const char *what)
{
	int st = finish(p, ms);
	ck_assert_msg(st == want, "%s: exit %d: %s", what, st, p->log);
}

/* Stop a server that runs until interrupted; it must die of SIGTERM
 * (cleanly: the command re-raises the signal after cleaning up). */
static void terminate(struct proc *p)
{
	kill(p->pid, SIGTERM);
	close_fd(&p->in);
	close_fd(&p->out);
	int status = 0;
	uint64_t end = cd_now_ms() + (uint64_t)cd_scaled(5000);
	pid_t r;
	while ((r = waitpid(p->pid, &status, WNOHANG)) == 0 &&
	       cd_now_ms() < end) {
		struct timespec nap = {0, 5000000};
		nanosleep(&nap, NULL);
	}
	if (r != p->pid) {
		kill(p->pid, SIGKILL);
		waitpid(p->pid, &status, 0);
	}
	close_fd(&p->err);
	ck_assert_msg(r == p->pid && WIFSIGNALED(status) &&
	                  WTERMSIG(status) == SIGTERM,
	              "server did not end cleanly on SIGTERM");
}

/* Run the command to completion with nothing on stdin. */
static int run_cmd(struct proc *p, const char *const *args, int ms)
{
	spawn(p, args);
	return finish(p, ms);
}

/* The stderr line must name the URI and start "conduit: ". */
static void assert_error_line(const struct proc *p, const char *uri)
{
	ck_assert_msg(strncmp(p->log, "conduit: ", 9) == 0,
	              "stderr does not start with 'conduit: ': %s", p->log);
	ck_assert_msg(strstr(p->log, uri) != NULL,
	              "stderr does not name %s: %s", uri, p->log);
	const char *nl = strchr(p->log, '\n');
	ck_assert_msg(nl != NULL && nl[1] == '\0', "not exactly one line: %s",
	              p->log);
}

/* ------------------------------------------------------------------ */
/* Plain sockets for the other side                                    */

static socklen_t unix_addr(struct sockaddr_un *sa, const char *path)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	ck_assert(strlen(path) < sizeof(sa->sun_path));
	strcpy(sa->sun_path, path);
	return (socklen_t)sizeof(*sa);
}

static int unix_listen(const char *path)
{
	struct sockaddr_un sa;
	socklen_t len = unix_addr(&sa, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert(fd >= 0);
	ck_assert_msg(bind(fd, (struct sockaddr *)&sa, len) == 0, "bind %s: %s",
	              path, strerror(errno));
	ck_assert(listen(fd, 64) == 0);
	return fd;
}

static int unix_connect(const char *path)
{
	struct sockaddr_un sa;
	socklen_t len = unix_addr(&sa, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert(fd >= 0);
	ck_assert_msg(connect(fd, (struct sockaddr *)&sa, len) == 0,
	              "connect %s: %s", path, strerror(errno));
	return fd;
}

static void loopback(struct sockaddr_in *sa, int port)
{
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons((uint16_t)port);
	sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
}

/* A TCP socket bound to 127.0.0.1 on a port the system picks; listening
 * when listen_too, else just holding the port (connects are refused). */
static int tcp_bound(int *port, bool listen_too)
{
	struct sockaddr_in sa;
	loopback(&sa, 0);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert(fd >= 0);
	ck_assert(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	if (listen_too)
		ck_assert(listen(fd, 64) == 0);
	socklen_t len = sizeof(sa);
	ck_assert(getsockname(fd, (struct sockaddr *)&sa, &len) == 0);
	*port = ntohs(sa.sin_port);
	return fd;
}

static int tcp_connect(int port)
{
	struct sockaddr_in sa;
	loopback(&sa, port);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert(fd >= 0);
	ck_assert_msg(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0,
	              "connect 127.0.0.1:%d: %s", port, strerror(errno));
	return fd;
}

static int accept_within(int lfd, int ms)
{
	struct pollfd pf = {lfd, POLLIN, 0};
	ck_assert_msg(poll(&pf, 1, cd_scaled(ms)) == 1,
	              "nobody connected in %d ms", ms);
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	ck_assert(fd >= 0);
	return fd;
}

/* The port in "tcp://127.0.0.1:PORT" (a listening-on line). */
static int uri_port(const char *uri)
{
	const char *colon = strrchr(uri, ':');
	ck_assert_msg(colon != NULL, "no port in %s", uri);
	char *end;
	long port = strtol(colon + 1, &end, 10);
	ck_assert_msg(*end == '\0' && port > 0 && port < 65536,
	              "not a real port in %s", uri);
	return (int)port;
}

/* ------------------------------------------------------------------ */
/* Checked transfers                                                   */

/*
 * One stream: write wlen bytes of pattern wseed to *wfd and then end it
 * (shutdown(SHUT_WR) for a socket, close for a pipe), and/or read rfd to
 * its end checking pattern rseed.  Several run at once in one poll loop,
 * so a test can feed a command and drain it at the same time (the command
 * has bounded buffers: feeding alone would stall).
 */
struct xfer {
	int *wfd; /* NULL: nothing to write */
	bool wsock;
	uint32_t wseed;
	uint64_t wlen, sent;
	bool reading;
	int rfd;
	uint32_t rseed;
	uint64_t got, bad; /* bad: first wrong offset, UINT64_MAX: none */
	bool wdone, rdone;
	int rerr; /* errno of a failed read */
};

static void xfer_write(int *wfd, uint32_t wseed, uint64_t wlen, bool sock,
                       struct xfer *x)
{
	x->wfd = wfd;
	x->wseed = wseed;
	x->wlen = wlen;
	x->wsock = sock;
}

static void xfer_read(int rfd, uint32_t rseed, struct xfer *x)
{
	x->reading = true;
	x->rfd = rfd;
	x->rseed = rseed;
}

static void xfer_run(struct xfer *x, size_t n, int ms)
{
	static uint8_t buf[64 * 1024];
	uint64_t end = cd_now_ms() + (uint64_t)cd_scaled(ms);
	for (size_t i = 0; i < n; i++) {
		x[i].bad = UINT64_MAX;
		x[i].wdone = x[i].wfd == NULL;
		x[i].rdone = !x[i].reading;
		if (!x[i].wdone)
			set_nonblock(*x[i].wfd);
		if (!x[i].rdone)
			set_nonblock(x[i].rfd);
	}
	for (;;) {
		struct pollfd pf[64];
		size_t np = 0, left = 0;
		for (size_t i = 0; i < n; i++) {
			if (!x[i].wdone) {
				pf[np++] =
				    (struct pollfd){*x[i].wfd, POLLOUT, 0};
				left++;
			}
			if (!x[i].rdone) {
				pf[np++] = (struct pollfd){x[i].rfd, POLLIN, 0};
				left++;
			}
		}
		if (left == 0)
			return;
		uint64_t now = cd_now_ms();
		if (now >= end) {
			for (size_t i = 0; i < n; i++)
				fprintf(
				    stderr,
				    "xfer %zu: sent %llu of %llu, got %llu%s\n",
				    i, (unsigned long long)x[i].sent,
				    (unsigned long long)x[i].wlen,
				    (unsigned long long)x[i].got,
				    x[i].rdone ? " (ended)" : "");
			ck_abort_msg("transfers not done in %d ms", ms);
		}
		poll(pf, np, (int)(end - now));
		for (size_t i = 0; i < n; i++) {
			struct xfer *t = &x[i];
			if (!t->wdone) {
				size_t len = t->wlen - t->sent < sizeof(buf)
				                 ? (size_t)(t->wlen - t->sent)
				                 : sizeof(buf);
				ssize_t w = 0;
				if (len > 0) {
					cd_pattern(t->wseed, t->sent, buf, len);
					w = t->wsock ? send(*t->wfd, buf, len,
					                    MSG_NOSIGNAL)
					             : write(*t->wfd, buf, len);
					ck_assert_msg(w >= 0 || errno == EAGAIN,
					              "xfer %zu write: %s", i,
					              strerror(errno));
					if (w > 0)
						t->sent += (uint64_t)w;
				}
				if (t->sent == t->wlen) {
					if (t->wsock)
						shutdown(*t->wfd, SHUT_WR);
					else
						close_fd(t->wfd);
					t->wdone = true;
				}
			}
			if (!t->rdone) {
				ssize_t r = read(t->rfd, buf, sizeof(buf));
				if (r > 0) {
					size_t ok = cd_pattern_check(
					    t->rseed, t->got, buf, (size_t)r);
					if (ok < (size_t)r &&
					    t->bad == UINT64_MAX)
						t->bad = t->got + ok;
					t->got += (uint64_t)r;
				} else if (r == 0) {
					t->rdone = true;
				} else if (errno != EAGAIN) {
					t->rerr = errno;
					t->rdone = true;
				}
			}
		}
	}
}

/* Every byte arrived, in order, and then the end of stream. */
static void assert_got(const struct xfer *x, uint64_t want, const char *what)
{
	ck_assert_msg(x->rerr == 0, "%s: read failed: %s", what,
	              strerror(x->rerr));
	ck_assert_msg(x->bad == UINT64_MAX, "%s: wrong byte at offset %llu",
	              what, (unsigned long long)x->bad);
	ck_assert_msg(x->got == want, "%s: got %llu bytes, want %llu", what,
	              (unsigned long long)x->got, (unsigned long long)want);
}

/* ------------------------------------------------------------------ */
/* cat and listen bridged to stdin/stdout                              */

#define BULK (4 * MiB)

/*
 * The command p is connected to sock (our side of its connection).  First
 * BULK bytes go stdin -> sock and stdin ends: sock must then see the end
 * of stream while the command is still running (its other direction is
 * open), which only a half-close gives.  Then BULK other bytes go
 * sock -> stdout, and the command must exit 0 once they are through.
 */
static void bridge_both_ways(struct proc *p, int sock)
{
	struct xfer x[2];
	memset(x, 0, sizeof(x));
	xfer_write(&p->in, 101, BULK, false, &x[0]);
	xfer_read(sock, 101, &x[0]);
	xfer_run(&x[0], 1, 30000);
	assert_got(&x[0], BULK, "stdin -> peer, then a half-close");
	ck_assert_msg(waitpid(p->pid, NULL, WNOHANG) == 0,
	              "the command exited before its peer finished");
	xfer_write(&sock, 202, BULK, true, &x[1]);
	xfer_read(p->out, 202, &x[1]);
	xfer_run(&x[1], 1, 30000);
	assert_got(&x[1], BULK, "peer -> stdout");
	expect_exit(p, 0, 5000, "the command");
}

/* A socket path in a new temporary directory, and its unix:// URI. */
struct unix_place {
	char dir[256], path[320], uri[400];
};

static void unix_place(struct unix_place *u, const char *name)
{
	cd_tmpdir(u->dir, sizeof(u->dir));
	snprintf(u->path, sizeof(u->path), "%s/%s", u->dir, name);
	snprintf(u->uri, sizeof(u->uri), "unix://%s", u->path);
}

START_TEST(cat_unix_4mib_each_way)
{
	struct unix_place u;
	unix_place(&u, "s.sock");
	int lfd = unix_listen(u.path);
	struct proc p;
	spawn(&p, (const char *[]){"cat", u.uri, NULL});
	int s = accept_within(lfd, 5000);
	bridge_both_ways(&p, s);
	close(s);
	close(lfd);
	cd_rmtree(u.dir);
}
END_TEST

START_TEST(cat_tcp_4mib_each_way)
{
	int port;
	int lfd = tcp_bound(&port, true);
	char uri[64];
	snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d", port);
	struct proc p;
	spawn(&p, (const char *[]){"--timeout", "10000", "cat", uri, NULL});
	int s = accept_within(lfd, 5000);
	bridge_both_ways(&p, s);
	close(s);
	close(lfd);
}
END_TEST

START_TEST(listen_unix_4mib_each_way)
{
	struct unix_place u;
	unix_place(&u, "l.sock");
	struct proc p;
	spawn(&p, (const char *[]){"listen", u.uri, NULL});
	const char *where = await_line(&p, "listening on ", 5000);
	ck_assert_str_eq(where, u.uri);
	int s = unix_connect(u.path);
	bridge_both_ways(&p, s);
	close(s);
	/* Freed listener: its socket file is gone. */
	ck_assert_msg(access(u.path, F_OK) != 0, "%s left behind", u.path);
	cd_rmtree(u.dir);
}
END_TEST

START_TEST(listen_tcp_prints_real_port)
{
	struct proc p;
	spawn(&p, (const char *[]){"listen", "tcp://127.0.0.1:0", NULL});
	const char *where = await_line(&p, "listening on ", 5000);
	ck_assert_msg(strncmp(where, "tcp://127.0.0.1:", 16) == 0, "printed %s",
	              where);
	int port = uri_port(where);
	int s = tcp_connect(port);
	bridge_both_ways(&p, s);
	close(s);
}
END_TEST

/* listen without --keep serves one connection and stops listening. */
START_TEST(listen_once_then_refuses)
{
	struct unix_place u;
	unix_place(&u, "o.sock");
	struct proc p;
	spawn(&p, (const char *[]){"listen", u.uri, NULL});
	await_line(&p, "listening on ", 5000);
	int s = unix_connect(u.path);
	/* Once the connection is accepted the socket file goes away. */
	uint64_t end = cd_now_ms() + (uint64_t)cd_scaled(5000);
	while (access(u.path, F_OK) == 0 && cd_now_ms() < end) {
		struct timespec nap = {0, 2000000};
		nanosleep(&nap, NULL);
	}
	ck_assert_msg(access(u.path, F_OK) != 0, "still listening after one");
	const char hello[] = "one\n";
	ck_assert(write(p.in, hello, 4) == 4);
	close_fd(&p.in);
	char buf[16];
	ssize_t got = 0, r;
	while ((r = read(s, buf + got, sizeof(buf) - (size_t)got)) > 0)
		got += r;
	ck_assert_int_eq(got, 4);
	ck_assert(memcmp(buf, hello, 4) == 0);
	close(s);
	ck_assert_int_eq(finish(&p, 5000), 0);
	cd_rmtree(u.dir);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Echo                                                                */

START_TEST(listen_echo_with_cat)
{
	struct proc srv, cli;
	spawn(&srv,
	      (const char *[]){"listen", "--echo", "tcp://127.0.0.1:0", NULL});
	const char *where = await_line(&srv, "listening on ", 5000);
	char uri[64];
	snprintf(uri, sizeof(uri), "%s", where);
	spawn(&cli, (const char *[]){"cat", uri, NULL});
	struct xfer x;
	memset(&x, 0, sizeof(x));
	xfer_write(&cli.in, 303, BULK, false, &x);
	xfer_read(cli.out, 303, &x);
	xfer_run(&x, 1, 30000);
	assert_got(&x, BULK, "echoed through listen --echo");
	expect_exit(&cli, 0, 5000, "cat");
	/* Without --keep the server ends after its one connection. */
	expect_exit(&srv, 0, 5000, "listen");
}
END_TEST

START_TEST(listen_keep_echo_concurrent)
{
	struct unix_place u;
	unix_place(&u, "e.sock");
	struct proc srv;
	spawn(&srv,
	      (const char *[]){"listen", "--keep", "--echo", u.uri, NULL});
	await_line(&srv, "listening on ", 5000);
	enum { N = 4 };
	int s[N];
	struct xfer x[N];
	memset(x, 0, sizeof(x));
	for (int i = 0; i < N; i++) {
		s[i] = unix_connect(u.path);
		xfer_write(&s[i], 400 + (uint32_t)i, MiB + 777 * (uint64_t)i,
		           true, &x[i]);
		xfer_read(s[i], 400 + (uint32_t)i, &x[i]);
	}
	/* All at once: a server that served them one after another would
	 * still pass, but each client's stream must come back to it alone. */
	xfer_run(x, N, 30000);
	for (int i = 0; i < N; i++) {
		assert_got(&x[i], MiB + 777 * (uint64_t)i, "echo");
		close(s[i]);
	}
	terminate(&srv);
	ck_assert_msg(access(u.path, F_OK) != 0, "SIGTERM left %s behind",
	              u.path);
	cd_rmtree(u.dir);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Relay                                                               */

enum { NCONN = 8 };

/* NCONN clients at once through a relay to an echo server, each with its
 * own stream and length; connect_one makes client i. */
static void relay_many(int (*connect_one)(const void *arg), const void *arg)
{
	int s[NCONN];
	struct xfer x[NCONN];
	memset(x, 0, sizeof(x));
	for (int i = 0; i < NCONN; i++) {
		s[i] = connect_one(arg);
		uint64_t len = 512 * KiB + 4099 * (uint64_t)i;
		xfer_write(&s[i], 500 + (uint32_t)i, len, true, &x[i]);
		xfer_read(s[i], 500 + (uint32_t)i, &x[i]);
	}
	xfer_run(x, NCONN, 60000);
	for (int i = 0; i < NCONN; i++) {
		char what[32];
		snprintf(what, sizeof(what), "relayed connection %d", i);
		assert_got(&x[i], 512 * KiB + 4099 * (uint64_t)i, what);
		close(s[i]);
	}
}

static int connect_unix_arg(const void *arg)
{
	return unix_connect(arg);
}

static int connect_tcp_arg(const void *arg)
{
	return tcp_connect(*(const int *)arg);
}

START_TEST(relay_unix_to_tcp_8_at_once)
{
	char dir[256], path[320], ruri[400], turi[64];
	cd_tmpdir(dir, sizeof(dir));
	struct proc echo, relay;
	spawn(&echo, (const char *[]){"listen", "--keep", "--echo",
	                              "tcp://127.0.0.1:0", NULL});
	snprintf(turi, sizeof(turi), "%s",
	         await_line(&echo, "listening on ", 5000));
	snprintf(path, sizeof(path), "%s/r.sock", dir);
	snprintf(ruri, sizeof(ruri), "unix://%s", path);
	spawn(&relay, (const char *[]){"relay", ruri, turi, NULL});
	ck_assert_str_eq(await_line(&relay, "listening on ", 5000), ruri);
	relay_many(connect_unix_arg, path);
	terminate(&relay);
	terminate(&echo);
	cd_rmtree(dir);
}
END_TEST

START_TEST(relay_tcp_to_unix_8_at_once)
{
	char dir[256], turi[400], ruri[64];
	cd_tmpdir(dir, sizeof(dir));
	snprintf(turi, sizeof(turi), "unix://%s/t.sock", dir);
	struct proc echo, relay;
	spawn(&echo,
	      (const char *[]){"listen", "--keep", "--echo", turi, NULL});
	await_line(&echo, "listening on ", 5000);
	spawn(&relay,
	      (const char *[]){"relay", "tcp://127.0.0.1:0", turi, NULL});
	snprintf(ruri, sizeof(ruri), "%s",
	         await_line(&relay, "listening on ", 5000));
	int port = uri_port(ruri);
	relay_many(connect_tcp_arg, &port);
	terminate(&relay);
	terminate(&echo);
	cd_rmtree(dir);
}
END_TEST

/* The client half-closes; the server sees the end of the request and
 * still gets its reply back to the client, through the relay. */
START_TEST(relay_passes_half_close)
{
	char dir[256], path[320], turi[400], ruri[64];
	cd_tmpdir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/srv.sock", dir);
	snprintf(turi, sizeof(turi), "unix://%s", path);
	int lfd = unix_listen(path);
	struct proc relay;
	spawn(&relay,
	      (const char *[]){"relay", "tcp://127.0.0.1:0", turi, NULL});
	snprintf(ruri, sizeof(ruri), "%s",
	         await_line(&relay, "listening on ", 5000));
	int c = tcp_connect(uri_port(ruri));
	int s = accept_within(lfd, 5000);

	/* Request: 200 KiB, then the client's end of stream. */
	struct xfer x[2];
	memset(x, 0, sizeof(x));
	xfer_write(&c, 601, 200 * KiB, true, &x[0]);
	xfer_read(s, 601, &x[0]);
	xfer_run(x, 1, 20000);
	assert_got(&x[0], 200 * KiB, "request reached the server, then EOF");

	/* Reply after the request ended: the client's read side is open. */
	xfer_write(&s, 602, 300 * KiB, true, &x[1]);
	xfer_read(c, 602, &x[1]);
	xfer_run(&x[1], 1, 20000);
	assert_got(&x[1], 300 * KiB, "reply reached the half-closed client");
	close(c);
	close(s);
	close(lfd);
	terminate(&relay);
	cd_rmtree(dir);
}
END_TEST

/* A target that refuses: the accepted connection is closed, one line is
 * logged naming the target, and the relay goes on serving. */
START_TEST(relay_target_refused_keeps_serving)
{
	int port;
	int hold = tcp_bound(&port, false); /* bound, not listening: refuses */
	char turi[64], ruri[64];
	snprintf(turi, sizeof(turi), "tcp://127.0.0.1:%d", port);
	struct proc relay;
	spawn(&relay,
	      (const char *[]){"relay", "tcp://127.0.0.1:0", turi, NULL});
	snprintf(ruri, sizeof(ruri), "%s",
	         await_line(&relay, "listening on ", 5000));
	int rport = uri_port(ruri);
	for (int i = 0; i < 2; i++) {
		int c = tcp_connect(rport);
		struct pollfd pf = {c, POLLIN, 0};
		ck_assert_msg(poll(&pf, 1, cd_scaled(5000)) == 1,
		              "accepted connection not closed");
		char b;
		ck_assert(read(c, &b, 1) <= 0);
		close(c);
		const char *line = await_line(&relay, "conduit: relay ", 5000);
		ck_assert_msg(strstr(line, turi) != NULL &&
		                  strstr(line, "refused") != NULL,
		              "log line: %s", line);
	}
	terminate(&relay);
	close(hold);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Timeouts and a closed stdout                                        */

START_TEST(cat_idle_timeout_exits_1)
{
	struct unix_place u;
	unix_place(&u, "i.sock");
	int lfd = unix_listen(u.path);
	struct proc p;
	uint64_t t0 = cd_now_ms();
	spawn(&p, (const char *[]){"cat", "--timeout", "300", u.uri, NULL});
	int s = accept_within(lfd, 5000);
	/* Nobody sends anything; stdin stays open. */
	int st = cd_wait_peer(p.pid, cd_scaled(5000));
	uint64_t took = cd_now_ms() - t0;
	p.pid = -1;
	ck_assert_msg(st == 1, "exit %d", st);
	ck_assert_msg(took >= 250, "gave up after %llu ms",
	              (unsigned long long)took);
	close_fd(&p.in);
	close_fd(&p.out);
	ssize_t r = read(p.err, p.log, sizeof(p.log) - 1);
	p.log[r > 0 ? r : 0] = '\0';
	close_fd(&p.err);
	ck_assert_msg(strstr(p.log, "idle") != NULL &&
	                  strstr(p.log, u.uri) != NULL,
	              "stderr: %s", p.log);
	close(s);
	close(lfd);
	cd_rmtree(u.dir);
}
END_TEST

/* stdout is a pipe nobody reads any more: an error and status 1, not a
 * death by SIGPIPE. */
START_TEST(cat_closed_stdout_exits_1)
{
	int port;
	int lfd = tcp_bound(&port, true);
	char uri[64];
	snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d", port);
	struct proc p;
	spawn(&p, (const char *[]){"cat", uri, NULL});
	close_fd(&p.out);
	int s = accept_within(lfd, 5000);
	static const char data[4096];
	ck_assert(send(s, data, sizeof(data), MSG_NOSIGNAL) ==
	          (ssize_t)sizeof(data));
	int st = finish(&p, 5000);
	ck_assert_msg(st == 1, "exit %d (-1: killed by a signal); stderr: %s",
	              st, p.log);
	ck_assert_msg(strstr(p.log, "standard output") != NULL, "stderr: %s",
	              p.log);
	close(s);
	close(lfd);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Exit statuses, help, resolve                                        */

START_TEST(usage_errors_exit_2)
{
	const char *const cases[][5] = {
	    {NULL},
	    {"frobnicate", "x", NULL},
	    {"cat", NULL},
	    {"cat", "--bogus", "unix:///x", NULL},
	    {"relay", "tcp://127.0.0.1:0", NULL},
	    {"cat", "--timeout", "soon", "unix:///x", NULL},
	    {"cat", "--keep", "unix:///x", NULL},
	    {"resolve", "unix:///a", "unix:///b", NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct proc p;
		int st = run_cmd(&p, cases[i], 5000);
		ck_assert_msg(st == 2, "case %zu: exit %d", i, st);
		ck_assert_msg(strstr(p.log, "usage: conduit") != NULL,
		              "case %zu: no usage on stderr: %s", i, p.log);
	}
}
END_TEST

START_TEST(bad_uri_exits_3)
{
	struct proc p;
	ck_assert_int_eq(
	    run_cmd(&p, (const char *[]){"cat", "tcp://[::1", NULL}, 5000), 3);
	assert_error_line(&p, "tcp://[::1");
	ck_assert_int_eq(
	    run_cmd(&p,
	            (const char *[]){"listen", "tcp://127.0.0.1:99999", NULL},
	            5000),
	    3);
	assert_error_line(&p, "tcp://127.0.0.1:99999");
	ck_assert_int_eq(
	    run_cmd(&p, (const char *[]){"resolve", "unix://", NULL}, 5000), 3);
}
END_TEST

START_TEST(unknown_scheme_exits_3)
{
	struct proc p;
	ck_assert_int_eq(
	    run_cmd(&p,
	            (const char *[]){"cat", "nosuchproto://example.org", NULL},
	            5000),
	    3);
	assert_error_line(&p, "nosuchproto://example.org");
	ck_assert_int_eq(run_cmd(&p,
	                         (const char *[]){"relay", "tcp://127.0.0.1:0",
	                                          "nosuchproto://x", NULL},
	                         5000),
	                 3);
	assert_error_line(&p, "nosuchproto://x");
}
END_TEST

START_TEST(refused_exits_4)
{
	int port;
	int hold = tcp_bound(&port, false);
	char uri[64];
	snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d", port);
	struct proc p;
	ck_assert_int_eq(run_cmd(&p, (const char *[]){"cat", uri, NULL}, 5000),
	                 4);
	assert_error_line(&p, uri);
	ck_assert_msg(strstr(p.log, "refused") != NULL, "stderr: %s", p.log);
	close(hold);
}
END_TEST

START_TEST(missing_socket_exits_4)
{
	char dir[256], uri[400];
	cd_tmpdir(dir, sizeof(dir));
	snprintf(uri, sizeof(uri), "unix://%s/nobody.sock", dir);
	struct proc p;
	ck_assert_int_eq(run_cmd(&p, (const char *[]){"cat", uri, NULL}, 5000),
	                 4);
	assert_error_line(&p, uri);
	cd_rmtree(dir);
}
END_TEST

START_TEST(listen_in_use_exits_4)
{
	int port;
	int hold = tcp_bound(&port, true);
	char uri[64];
	snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d", port);
	struct proc p;
	ck_assert_int_eq(
	    run_cmd(&p, (const char *[]){"listen", uri, NULL}, 5000), 4);
	assert_error_line(&p, uri);
	close(hold);
}
END_TEST

START_TEST(help_exits_0_and_names_everything)
{
	struct proc p;
	spawn(&p, (const char *[]){"--help", NULL});
	char out[8192];
	size_t n = 0;
	ssize_t r;
	while (n < sizeof(out) - 1 &&
	       (r = read(p.out, out + n, sizeof(out) - 1 - n)) > 0)
		n += (size_t)r;
	out[n] = '\0';
	ck_assert_int_eq(finish(&p, 5000), 0);
	const char *words[] = {"cat",
	                       "listen",
	                       "relay",
	                       "resolve",
	                       "--timeout",
	                       "--keep",
	                       "--echo",
	                       "-v",
	                       "Exit status",
	                       "--ca",
	                       "--cert",
	                       "--key",
	                       "--key-password-env",
	                       "--client-auth",
	                       "--alpn",
	                       "--insecure",
	                       "vchan://",
	                       "CONDUIT_XEN_DOMID",
	                       "--lwip-tap",
	                       "--lwip-dgram"};
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		ck_assert_msg(strstr(out, words[i]) != NULL, "help lacks %s",
		              words[i]);
	const char *cmds[] = {"cat", "listen", "relay", "resolve"};
	for (size_t i = 0; i < 4; i++) {
		spawn(&p, (const char *[]){cmds[i], "--help", NULL});
		n = 0;
		while (n < sizeof(out) - 1 &&
		       (r = read(p.out, out + n, sizeof(out) - 1 - n)) > 0)
			n += (size_t)r;
		out[n] = '\0';
		ck_assert_int_eq(finish(&p, 5000), 0);
		char want[64];
		snprintf(want, sizeof(want), "usage: conduit %s", cmds[i]);
		ck_assert_msg(strstr(out, want) != NULL, "%s --help: %s",
		              cmds[i], out);
	}
}
END_TEST

START_TEST(resolve_prints_endpoint_and_addresses)
{
	struct proc p;
	spawn(&p, (const char *[]){"resolve", "TCP://127.0.0.1:80", NULL});
	char out[512];
	size_t n = 0;
	ssize_t r;
	while (n < sizeof(out) - 1 &&
	       (r = read(p.out, out + n, sizeof(out) - 1 - n)) > 0)
		n += (size_t)r;
	out[n] = '\0';
	ck_assert_int_eq(finish(&p, 5000), 0);
	ck_assert_str_eq(out, "tcp://127.0.0.1:80\n  address 127.0.0.1\n");
}
END_TEST

/* Everything the command printed on stdout until it exited. */
static int run_capture(struct proc *p, const char *const *args, char *out,
                       size_t len)
{
	spawn(p, args);
	size_t n = 0;
	ssize_t r;
	while (n < len - 1 && (r = read(p->out, out + n, len - 1 - n)) > 0)
		n += (size_t)r;
	out[n] = '\0';
	return finish(p, 5000);
}

static void write_rules(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	ck_assert_int_eq(fclose(f), 0);
}

/* --rules, and $CONDUIT_RULES when no --rules is given. */
START_TEST(resolve_with_rules_and_explain)
{
	char dir[256], path[512], out[2048];
	cd_tmpdir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/r.rules", dir);
	write_rules(path, "map *.xen unix-abstract://xen-{label}\n");
	struct proc p;
	ck_assert_int_eq(
	    run_capture(&p,
	                (const char *[]){"resolve", "--rules", path,
	                                 "https://logger.xen/", NULL},
	                out, sizeof(out)),
	    0);
	ck_assert_str_eq(out, "tls+unix-abstract://xen-logger?servername="
	                      "logger.xen\n");

	ck_assert_int_eq(
	    run_capture(&p,
	                (const char *[]){"resolve", "--explain", "--rules",
	                                 path, "https://logger.xen/", NULL},
	                out, sizeof(out)),
	    0);
	ck_assert_msg(
	    strstr(out, "  service: https (built in): port 443, TLS\n") &&
	        strstr(out, "  rule: map *.xen (") &&
	        strstr(out, "r.rules:1) sends logger.xen to") &&
	        strstr(out, "  endpoint: tls+unix-abstract://"),
	    "explain output:\n%s", out);

	setenv("CONDUIT_RULES", path, 1);
	int st =
	    run_capture(&p, (const char *[]){"resolve", "http://a.xen/", NULL},
	                out, sizeof(out));
	unsetenv("CONDUIT_RULES");
	ck_assert_int_eq(st, 0);
	ck_assert_str_eq(out, "unix-abstract://xen-a\n");
	cd_rmtree(dir);
}
END_TEST

/* A bad rules file: exit 2, one line with file:line:column. */
START_TEST(bad_rules_file_exits_2)
{
	char dir[256], path[512], want[600], out[256];
	cd_tmpdir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/bad.rules", dir);
	write_rules(path, "# fine\nmpa a.test unix:///x\n");
	struct proc p;
	ck_assert_int_eq(
	    run_capture(&p,
	                (const char *[]){"resolve", "--rules", path,
	                                 "tcp://a.test:1", NULL},
	                out, sizeof(out)),
	    2);
	snprintf(want, sizeof(want), "conduit: %s:2:1: ", path);
	ck_assert_msg(strncmp(p.log, want, strlen(want)) == 0, "stderr: %s",
	              p.log);
	ck_assert_int_eq(
	    run_capture(&p,
	                (const char *[]){"cat", "--rules", "/nonexistent/x",
	                                 "tcp://a.test:1", NULL},
	                out, sizeof(out)),
	    2);
	ck_assert_ptr_nonnull(strstr(p.log, "/nonexistent/x"));
	cd_rmtree(dir);
}
END_TEST

/* ------------------------------------------------------------------ */
/* TLS from the command line                                           */

#ifdef CONDUIT_HAVE_TLS
/*
 * Certificates are made once per run, in main(), by the openssl command in
 * a temporary directory (P-256 throughout):
 *   ca, ca2      the test CA and another CA nobody trusts
 *   srv          CN=localhost, DNS:localhost and IP:127.0.0.1, from ca
 *   client       CN=cli client, clientAuth, from ca
 *   srv_enc.key  srv's key encrypted with the password "sekrit"
 *   junk.pem     text that is no certificate or key
 */
static struct cd_certs certs;

/* The sections of cnf beyond the CA's and ext_srv (see harness.h), and the
 * steps of make.sh. */
static const char cert_cnf[] = "[ext_cli]\n"
                               "basicConstraints = CA:FALSE\n"
                               "keyUsage = critical,digitalSignature\n"
                               "extendedKeyUsage = clientAuth\n";
static const char cert_steps[] =
    "ca ca 'cli test CA'\n"
    "ca ca2 'cli other CA'\n"
    "leaf srv localhost ext_srv ca 2\n"
    "leaf client 'cli client' ext_cli ca 3\n"
    "openssl pkey -in srv.key -des3 -passout pass:sekrit -out srv_enc.key\n"
    "echo 'not a certificate' > junk.pem\n";

/* A file of the certificate directory (rotating static buffers). */
static const char *cf(const char *name)
{
	return cd_certs_file(&certs, name);
}

static void need_certs(void)
{
	cd_certs_need(&certs);
}

/* openssl s_server -rev (answers each line reversed) with srv's
 * certificate and extra arguments, on a free port, once it answers. */
static pid_t start_s_server(int *port, const char *const *extra)
{
	return cd_openssl_s_server(port, cf("srv.crt"), cf("srv.key"),
	                           cf("s_server.log"), extra);
}

/* Start `conduit listen OPTS --cert srv.crt --key srv.key
 * tls://127.0.0.1:0` (opts NULL-terminated) and wait until it listens;
 * returns the URI it printed. */
static const char *start_tls_listen(struct proc *srv, const char *const *opts)
{
	const char *args[16] = {"listen"};
	size_t n = 1;
	for (size_t i = 0; opts[i] != NULL; i++) {
		ck_assert(n < 10);
		args[n++] = opts[i];
	}
	args[n++] = "--cert";
	args[n++] = cf("srv.crt");
	args[n++] = "--key";
	args[n++] = cf("srv.key");
	args[n++] = "tls://127.0.0.1:0";
	args[n] = NULL;
	spawn(srv, args);
	return await_line(srv, "listening on ", 5000);
}

/* Read from fd until len bytes came (stopping early at the end of the
 * stream, an error or after ms); NUL-terminates buf, which holds len + 1
 * bytes.  Returns the count read. */
static size_t read_upto(int fd, char *buf, size_t len, int ms)
{
	size_t n = 0;
	uint64_t end = cd_now_ms() + (uint64_t)cd_scaled(ms);
	while (n < len && cd_now_ms() < end) {
		struct pollfd pf = {fd, POLLIN, 0};
		poll(&pf, 1, 100);
		if (pf.revents == 0)
			continue;
		ssize_t r = read(fd, buf + n, len - n);
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	buf[n] = '\0';
	return n;
}

/* Everything on the command's stdout until it ends. */
static size_t read_all(struct proc *p, char *out, size_t len, int ms)
{
	size_t n = 0;
	uint64_t end = cd_now_ms() + (uint64_t)cd_scaled(ms);
	set_nonblock(p->out);
	for (;;) {
		struct pollfd pf = {p->out, POLLIN, 0};
		uint64_t now = cd_now_ms();
		ck_assert_msg(now < end, "stdout not ended in %d ms; got: %.*s",
		              ms, (int)n, out);
		poll(&pf, 1, (int)(end - now));
		ssize_t r = read(p->out, out + n, len - 1 - n);
		if (r == 0 || n + 1 >= len)
			break;
		if (r > 0)
			n += (size_t)r;
		else
			ck_assert_msg(errno == EAGAIN, "read stdout: %s",
			              strerror(errno));
	}
	out[n] = '\0';
	return n;
}

/*
 * conduit listen --echo on TLS and conduit cat verifying it against the
 * test CA by the name localhost: 1 MiB through, every byte checked, and
 * -v names the version, the suite, the ALPN protocol and the peer.
 */
START_TEST(tls_listen_echo_and_cat_verified)
{
	need_certs();
	struct proc srv, cli;
	const char *where =
	    start_tls_listen(&srv, (const char *[]){"--echo", "-v", "--alpn",
	                                            "h2,http/1.1", NULL});
	ck_assert_msg(strncmp(where, "tls+tcp://127.0.0.1:", 20) == 0,
	              "printed %s", where);
	char uri[64];
	snprintf(uri, sizeof(uri), "tls://localhost:%d", uri_port(where));
	spawn(&cli, (const char *[]){"cat", "-v", "--ca", cf("ca.crt"),
	                             "--alpn", "http/1.1", uri, NULL});
	struct xfer x;
	memset(&x, 0, sizeof(x));
	xfer_write(&cli.in, 707, MiB, false, &x);
	xfer_read(cli.out, 707, &x);
	xfer_run(&x, 1, 30000);
	assert_got(&x, MiB, "echoed over TLS");
	const char *hs = await_line(&cli, "conduit: tls-handshaked ", 5000);
	ck_assert_msg(
	    strstr(hs, "TLSv1.2") != NULL && strstr(hs, "ECDHE") != NULL &&
	        strstr(hs, "GCM") != NULL && strstr(hs, "http/1.1") != NULL &&
	        strstr(hs, "peer \"CN=localhost\"") != NULL,
	    "client's handshake line: %s", hs);
	hs = await_line(&srv, "conduit: tls-handshaked ", 5000);
	ck_assert_msg(strstr(hs, "no peer certificate") != NULL,
	              "server's handshake line: %s", hs);
	expect_exit(&cli, 0, 5000, "cat");
	expect_exit(&srv, 0, 5000, "listen");
}
END_TEST

/*
 * --servername: the name checked (and sent as SNI) instead of the URI's
 * host.  The server's certificate names localhost and 127.0.0.1: reaching
 * it by address while checking "localhost" works, checking another name
 * fails verification (exit 4) naming that name.
 */
START_TEST(tls_servername_option)
{
	need_certs();
	struct proc srv, cli;
	const char *where =
	    start_tls_listen(&srv, (const char *[]){"--keep", "--echo", NULL});
	char uri[64];
	snprintf(uri, sizeof(uri), "tls://127.0.0.1:%d", uri_port(where));
	spawn(&cli, (const char *[]){"cat", "-v", "--ca", cf("ca.crt"),
	                             "--servername", "localhost", uri, NULL});
	/* No input: cat connects, verifies, half-closes, and ends when the
	 * echo server ends too. */
	expect_exit(&cli, 0, 10000, "cat --servername localhost");
	ck_assert_msg(strstr(cli.log, "tls-handshaked") != NULL &&
	                  strstr(cli.log, "CN=localhost") != NULL,
	              "log: %s", cli.log);
	spawn(&cli,
	      (const char *[]){"cat", "--ca", cf("ca.crt"), "--servername",
	                       "other.example", uri, NULL});
	int st = finish(&cli, 10000);
	ck_assert_msg(st == 4 && strstr(cli.log, "other.example") != NULL,
	              "cat --servername other.example: exit %d: %s", st,
	              cli.log);
	terminate(&srv);
}
END_TEST

/* conduit cat against openssl s_server, with mutual TLS (s_server requires
 * a client certificate) and ALPN. */
START_TEST(tls_cat_to_openssl_s_server)
{
	need_certs();
	int port;
	pid_t srv = start_s_server(
	    &port,
	    (const char *[]){"-Verify", "1", "-CAfile", cf("ca.crt"),
	                     "-verify_return_error", "-alpn", "h2", NULL});
	char uri[64];
	snprintf(uri, sizeof(uri), "tls://localhost:%d", port);
	struct proc p;
	spawn(&p, (const char *[]){"cat", "-v", "--ca", cf("ca.crt"), "--cert",
	                           cf("client.crt"), "--key", cf("client.key"),
	                           "--alpn", "h2", uri, NULL});
	const char line[] = "hello conduit\n";
	ck_assert(write(p.in, line, sizeof(line) - 1) == sizeof(line) - 1);
	char want[] = "tiudnoc olleh\n", got[64];
	read_upto(p.out, got, sizeof(want) - 1, 10000);
	ck_assert_msg(strcmp(got, want) == 0,
	              "s_server answered '%s'; stderr: %s", got, p.log);
	const char *hs = await_line(&p, "conduit: tls-handshaked ", 5000);
	ck_assert_msg(strstr(hs, " h2") != NULL &&
	                  strstr(hs, "peer \"CN=localhost\"") != NULL,
	              "handshake line: %s", hs);
	kill(srv, SIGTERM);
	cd_wait_peer(srv, cd_scaled(5000));
	/* s_server went away: cat ends (how depends on whether it sent
	 * close_notify), but it must end. */
	ck_assert_msg(finish(&p, 5000) >= 0, "cat did not end: %s", p.log);
}
END_TEST

/* openssl s_client (verifying conduit by the name localhost, presenting a
 * client certificate) against conduit listen --client-auth required. */
START_TEST(tls_openssl_s_client_to_listen)
{
	need_certs();
	struct proc srv;
	int port = uri_port(start_tls_listen(
	    &srv, (const char *[]){"-v", "--ca", cf("ca.crt"), "--client-auth",
	                           "required", NULL}));
	cd_write_file(cf("s_client.in"), "ping\n");
	char connect[32];
	snprintf(connect, sizeof(connect), "127.0.0.1:%d", port);
	pid_t cli = cd_spawn_logged(
	    (const char *[]){"openssl", "s_client", "-connect", connect,
	                     "-servername", "localhost", "-CAfile",
	                     cf("ca.crt"), "-verify_return_error", "-cert",
	                     cf("client.crt"), "-key", cf("client.key"),
	                     "-ign_eof", NULL},
	    cf("s_client.in"), cf("s_client.log"));
	char got[8];
	read_upto(srv.out, got, 5, 10000);
	ck_assert_msg(strcmp(got, "ping\n") == 0, "listen got '%s'; stderr: %s",
	              got, srv.log);
	const char *hs = await_line(&srv, "conduit: tls-handshaked ", 5000);
	ck_assert_msg(strstr(hs, "peer \"CN=cli client\"") != NULL,
	              "handshake line: %s", hs);
	ck_assert(write(srv.in, "pong\n", 5) == 5);
	close_fd(&srv.in); /* the end of the answer: close_notify */
	const char *log = cd_wait_logged(cli, cd_scaled(10000), "s_client",
	                                 cf("s_client.log"));
	ck_assert_msg(strstr(log, "Verify return code: 0 (ok)") != NULL &&
	                  strstr(log, "pong") != NULL,
	              "s_client:\n%s", log);
	expect_exit(&srv, 0, 5000, "listen");
}
END_TEST

/* A client without a certificate is refused by --client-auth required:
 * both sides exit 4 (a connection failure), naming the reason. */
START_TEST(tls_client_auth_required_refuses)
{
	need_certs();
	struct proc srv, cli;
	int port = uri_port(start_tls_listen(
	    &srv, (const char *[]){"--ca", cf("ca.crt"), "--client-auth",
	                           "required", NULL}));
	char uri[64];
	snprintf(uri, sizeof(uri), "tls://localhost:%d", port);
	spawn(&cli, (const char *[]){"cat", "--ca", cf("ca.crt"), uri, NULL});
	expect_exit(&cli, 4, 10000, "cat");
	ck_assert_msg(strstr(cli.log, uri + 6) != NULL, "cat: %s", cli.log);
	expect_exit(&srv, 4, 10000, "listen");
	ck_assert_msg(strstr(srv.log, "certificate") != NULL, "listen: %s",
	              srv.log);
}
END_TEST

/* Verification failures exit 4 with the reason; --insecure connects and
 * warns once. */
START_TEST(tls_verify_failures_exit_4)
{
	need_certs();
	struct proc srv, p;
	int port = uri_port(
	    start_tls_listen(&srv, (const char *[]){"--keep", "--echo", NULL}));
	char named[64], other[96];
	snprintf(named, sizeof(named), "tls://localhost:%d", port);
	snprintf(other, sizeof(other),
	         "tls://127.0.0.1:%d?servername=other.example", port);
	const struct {
		const char *args[6];
		const char *why;
	} cases[] = {
	    /* The system bundle does not know the test CA. */
	    {{"cat", named, NULL}, "not trusted"},
	    {{"cat", "--ca", cf("ca2.crt"), named, NULL}, "not trusted"},
	    {{"cat", "--ca", cf("ca.crt"), other, NULL}, "other.example"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int st = run_cmd(&p, cases[i].args, 10000);
		ck_assert_msg(st == 4, "case %zu: exit %d: %s", i, st, p.log);
		ck_assert_msg(strstr(p.log, "verification failed") != NULL &&
		                  strstr(p.log, cases[i].why) != NULL,
		              "case %zu: %s", i, p.log);
	}
	spawn(&p, (const char *[]){"cat", "--insecure", other, NULL});
	ck_assert(write(p.in, "x\n", 2) == 2);
	close_fd(&p.in);
	char out[16];
	read_all(&p, out, sizeof(out), 10000);
	ck_assert_str_eq(out, "x\n");
	expect_exit(&p, 0, 5000, "--insecure");
	const char *w = strstr(p.log, "warning: --insecure");
	ck_assert_msg(w != NULL && strstr(w + 1, "warning: --insecure") == NULL,
	              "want the warning once: %s", p.log);
	terminate(&srv);
}
END_TEST

/* Bad TLS input: exit 2, one message naming the file (or option) and why.
 * A good encrypted key with its password loads: then the connect is what
 * fails (exit 4), which shows the key was accepted. */
START_TEST(tls_bad_input_exits_2)
{
	need_certs();
	int port;
	int hold = tcp_bound(&port, false); /* refuses */
	char uri[64];
	snprintf(uri, sizeof(uri), "tls://127.0.0.1:%d", port);
	/* Paths of their own: cf()'s buffers rotate. */
	char missing[600], crt[600], key[600], ckey[600], junk[600], enc[600];
	snprintf(missing, sizeof(missing), "%s", cf("nonexistent.pem"));
	snprintf(crt, sizeof(crt), "%s", cf("srv.crt"));
	snprintf(key, sizeof(key), "%s", cf("srv.key"));
	snprintf(ckey, sizeof(ckey), "%s", cf("client.key"));
	snprintf(junk, sizeof(junk), "%s", cf("junk.pem"));
	snprintf(enc, sizeof(enc), "%s", cf("srv_enc.key"));
	static char pw_right[] = "CLI_TEST_PW=sekrit";
	static char pw_wrong[] = "CLI_TEST_PW=wrong";
	const struct {
		const char *env;
		const char *args[12];
		int status;
		const char *say1, *say2;
	} cases[] = {
	    {NULL,
	     {"cat", "--cert", missing, "--key", key, uri},
	     2,
	     "nonexistent.pem",
	     "No such file"},
	    {NULL,
	     {"cat", "--cert", crt, "--key", missing, uri},
	     2,
	     "nonexistent.pem",
	     "No such file"},
	    {NULL,
	     {"cat", "--cert", crt, "--key", certs.dir, uri},
	     2,
	     certs.dir,
	     "directory"},
	    {NULL,
	     {"cat", "--cert", crt, "--key", ckey, uri},
	     2,
	     "client.key",
	     "does not belong"},
	    {NULL,
	     {"cat", "--cert", crt, "--key", junk, uri},
	     2,
	     "junk.pem",
	     "key"},
	    {NULL,
	     {"cat", "--cert", junk, "--key", key, uri},
	     2,
	     "junk.pem",
	     "certificate"},
	    {NULL, {"cat", "--key", key, uri}, 2, "--key", "needs --cert"},
	    {NULL,
	     {"cat", "--cert", crt, "--key", enc, uri},
	     2,
	     "srv_enc.key",
	     "encrypted"},
	    {NULL,
	     {"cat", "--cert", crt, "--key", enc, "--key-password-env",
	      "CLI_TEST_NO_SUCH_VAR", uri},
	     2,
	     "CLI_TEST_NO_SUCH_VAR",
	     "no such variable"},
	    {pw_wrong,
	     {"cat", "--cert", crt, "--key", enc, "--key-password-env",
	      "CLI_TEST_PW", uri},
	     2,
	     "srv_enc.key",
	     "password"},
	    {pw_right,
	     {"cat", "--cert", crt, "--key", enc, "--key-password-env",
	      "CLI_TEST_PW", uri},
	     4,
	     "refused",
	     uri + 6},
	    {NULL,
	     {"cat", "--ca", missing, uri},
	     2,
	     "nonexistent.pem",
	     "No such file"},
	    {NULL, {"cat", "--ca", junk, uri}, 2, "junk.pem", "--ca"},
	    {NULL,
	     {"cat", "--client-auth", "required", uri},
	     2,
	     "--client-auth",
	     "listen"},
	    {NULL,
	     {"listen", "--client-auth", "sometimes", uri},
	     2,
	     "sometimes",
	     "none, optional or required"},
	    {NULL, {"cat", "--alpn", "h2,,x", uri}, 2, "--alpn", "h2,,x"},
	    {NULL,
	     {"listen", "tls://127.0.0.1:0"},
	     2,
	     "tls://127.0.0.1:0",
	     "--cert"},
	    {NULL,
	     {"cat", "--servername", "a b", uri},
	     2,
	     "--servername",
	     "'a b'"},
	    {NULL,
	     {"cat", "--servername", "localhost", "tcp://127.0.0.1:1"},
	     2,
	     "--servername",
	     "is not TLS"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct proc p;
		const char *env[] = {cases[i].env, NULL};
		spawn_env(&p, env, cases[i].args);
		int st = finish(&p, 10000);
		ck_assert_msg(st == cases[i].status, "case %zu: exit %d: %s", i,
		              st, p.log);
		ck_assert_msg(strncmp(p.log, "conduit: ", 9) == 0 &&
		                  strstr(p.log, cases[i].say1) != NULL &&
		                  strstr(p.log, cases[i].say2) != NULL,
		              "case %zu: stderr: %s", i, p.log);
	}
	close(hold);
}
END_TEST
#endif /* CONDUIT_HAVE_TLS */

/* ------------------------------------------------------------------ */
/* Xen vchan over the hypervisor emulation                             */

#ifdef CONDUIT_HAVE_VCHAN
/*
 * Two `conduit` processes as two domains: `listen --echo vchan://5/echo`
 * in domain 0 serves domain 5, `cat vchan://0/echo` in domain 5.  Each
 * finds the emulation through LD_LIBRARY_PATH and says which domain it is
 * in CONDUIT_XEN_DOMID; both share one host directory.  1 MiB goes through
 * the echo and back, every byte checked; no granted page is left behind.
 */
START_TEST(vchan_listen_echo_and_cat_1mib)
{
#ifndef CONDUIT_XENEMU_DIR
	ck_abort_msg("test_cli was built without CONDUIT_XENEMU_DIR (the Xen "
	             "emulation's directory; see tests/CMakeLists.txt)");
#else
	char host[256], dirv[300], grants[300];
	cd_tmpdir(host, sizeof(host));
	snprintf(dirv, sizeof(dirv), "CONDUIT_XEN_DIR=%s", host);
	const char *env0[] = {"LD_LIBRARY_PATH=" CONDUIT_XENEMU_DIR, dirv,
	                      "CONDUIT_XEN_DOMID=0", NULL};
	const char *env5[] = {"LD_LIBRARY_PATH=" CONDUIT_XENEMU_DIR, dirv,
	                      "CONDUIT_XEN_DOMID=5", NULL};
	struct proc srv, cli;
	spawn_env(&srv, env0,
	          (const char *[]){"listen", "--echo", "vchan://5/echo", NULL});
	ck_assert_str_eq(await_line(&srv, "listening on ", 5000),
	                 "vchan://5/echo");
	spawn_env(&cli, env5, (const char *[]){"cat", "vchan://0/echo", NULL});
	struct xfer x;
	memset(&x, 0, sizeof(x));
	xfer_write(&cli.in, 808, MiB, false, &x);
	xfer_read(cli.out, 808, &x);
	xfer_run(&x, 1, 30000);
	assert_got(&x, MiB, "echoed over vchan");
	expect_exit(&cli, 0, 5000, "cat");
	expect_exit(&srv, 0, 5000, "listen");
	snprintf(grants, sizeof(grants), "%s/grant", host);
	char cmd[400];
	snprintf(cmd, sizeof(cmd), "test -z \"$(ls -A '%s' 2>/dev/null)\"",
	         grants);
	ck_assert_msg(system(cmd) == 0, "granted pages left in %s", grants);
	cd_rmtree(host);
#endif
}
END_TEST
#endif /* CONDUIT_HAVE_VCHAN */

/* ------------------------------------------------------------------ */
/* TCP on lwIP                                                          */

#ifdef CONDUIT_HAVE_LWIP
/*
 * Two `conduit` processes, each its own lwIP stack (its own "unikernel"),
 * on one datagram wire made at a path: listen --echo on 10.0.0.1 and cat
 * from 10.0.0.2 talk TCP through lwIP, 1 MiB each way checked.  The
 * rendezvous socket is gone once the second process has joined.
 */
START_TEST(lwip_dgram_two_processes_echo)
{
	char dir[256], wa[400], wb[400], path[320];
	cd_tmpdir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/wire", dir);
	snprintf(wa, sizeof(wa), "%s,10.0.0.1/24", path);
	snprintf(wb, sizeof(wb), "%s,10.0.0.2/24", path);
	struct proc srv, cli;
	spawn(&srv, (const char *[]){"--lwip-dgram", wa, "listen", "--echo",
	                             "tcp://10.0.0.1:7000", NULL});
	ck_assert_str_eq(await_line(&srv, "listening on ", 5000),
	                 "tcp://10.0.0.1:7000");
	spawn(&cli, (const char *[]){"--lwip-dgram", wb, "--timeout", "20000",
	                             "cat", "tcp://10.0.0.1:7000", NULL});
	struct xfer x;
	memset(&x, 0, sizeof(x));
	xfer_write(&cli.in, 909, MiB, false, &x);
	xfer_read(cli.out, 909, &x);
	xfer_run(&x, 1, 30000);
	assert_got(&x, MiB, "echoed over lwIP on a datagram wire");
	expect_exit(&cli, 0, 10000, "cat");
	expect_exit(&srv, 0, 10000, "listen");
	ck_assert_msg(access(path, F_OK) != 0, "%s left behind", path);
	cd_rmtree(dir);
}
END_TEST

#define TAP_NAME      "cdclitap0"
#define TAP_KERNEL_IP "10.0.0.1"

static int if_ioctl(unsigned long req, struct ifreq *ifr)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -1;
	int r = ioctl(s, req, ifr);
	close(s);
	return r;
}

static int if_up(const char *name)
{
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
	if (if_ioctl(SIOCGIFFLAGS, &ifr) < 0)
		return -1;
	ifr.ifr_flags |= IFF_UP;
	return if_ioctl(SIOCSIFFLAGS, &ifr);
}

static int if_addr(const char *name, const char *ip, const char *mask)
{
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
	struct sockaddr_in *in = (struct sockaddr_in *)&ifr.ifr_addr;
	in->sin_family = AF_INET;
	inet_pton(AF_INET, ip, &in->sin_addr);
	if (if_ioctl(SIOCSIFADDR, &ifr) < 0)
		return -1;
	inet_pton(AF_INET, mask, &in->sin_addr);
	return if_ioctl(SIOCSIFNETMASK, &ifr);
}

/* A persistent TAP device (it outlives the conduit processes that attach
 * to it in turn, and goes with this test's namespace).  false when TAP
 * devices cannot be had here. */
static bool tap_make(const char *name)
{
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return false;
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI; /* as conduit opens it */
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
	bool ok =
	    ioctl(fd, TUNSETIFF, &ifr) == 0 && ioctl(fd, TUNSETPERSIST, 1) == 0;
	close(fd);
	return ok;
}

static int tcp_connect_to(const char *ip, int port, int ms)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_port = htons((uint16_t)port)};
	inet_pton(AF_INET, ip, &sa.sin_addr);
	uint64_t end = cd_now_ms() + (uint64_t)cd_scaled(ms);
	for (;;) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		ck_assert(fd >= 0);
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return fd;
		int e = errno;
		close(fd);
		ck_assert_msg(cd_now_ms() < end, "connect %s:%d: %s", ip, port,
		              strerror(e));
		usleep(20000);
	}
}

/*
 * lwIP in a `conduit` process and the Linux kernel's TCP, through a TAP
 * device in a network namespace this test makes (Check runs each test in
 * its own process, so unshare() here affects this test alone): the kernel
 * connects to `conduit --lwip-tap ... listen --echo`, then `conduit
 * --lwip-tap ... cat` connects to a kernel listener; every byte checked.
 * Where no namespace or TAP can be made the test fails, loudly, unless
 * CONDUIT_ALLOW_NO_TAP=1 (which CI does not set).
 */
START_TEST(lwip_tap_kernel_tcp)
{
	if (unshare(CLONE_NEWNET) != 0 || !tap_make(TAP_NAME)) {
		int e = errno;
		const char *allow = getenv("CONDUIT_ALLOW_NO_TAP");
		ck_assert_msg(
		    allow != NULL && strcmp(allow, "1") == 0,
		    "NO TAP DEVICE (%s): cannot unshare a network "
		    "namespace or create " TAP_NAME " via /dev/net/tun "
		    "(needs CAP_NET_ADMIN); the conduit --lwip-tap <-> "
		    "kernel TCP test did NOT run.  Set "
		    "CONDUIT_ALLOW_NO_TAP=1 to skip it.",
		    strerror(e));
		fprintf(stderr, "test_cli: TAP UNAVAILABLE: --lwip-tap test "
		                "SKIPPED (CONDUIT_ALLOW_NO_TAP=1)\n");
		return;
	}
	ck_assert(if_up("lo") == 0);
	ck_assert(if_addr(TAP_NAME, TAP_KERNEL_IP, "255.255.255.0") == 0);
	ck_assert(if_up(TAP_NAME) == 0);
	const char *spec = TAP_NAME ",10.0.0.2/24";

	/* The kernel connects to lwIP. */
	struct proc srv;
	spawn(&srv, (const char *[]){"--lwip-tap", spec, "listen", "--echo",
	                             "tcp://10.0.0.2:7000", NULL});
	ck_assert_str_eq(await_line(&srv, "listening on ", 5000),
	                 "tcp://10.0.0.2:7000");
	int s = tcp_connect_to("10.0.0.2", 7000, 5000);
	struct xfer x;
	memset(&x, 0, sizeof(x));
	xfer_write(&s, 111, MiB, true, &x);
	xfer_read(s, 111, &x);
	xfer_run(&x, 1, 30000);
	assert_got(&x, MiB, "kernel -> lwIP echo -> kernel");
	close(s);
	expect_exit(&srv, 0, 10000, "listen");

	/* lwIP connects to the kernel. */
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_port = htons(7001)};
	inet_pton(AF_INET, TAP_KERNEL_IP, &sa.sin_addr);
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert(lfd >= 0);
	ck_assert(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	ck_assert(listen(lfd, 4) == 0);
	struct proc cli;
	spawn(&cli,
	      (const char *[]){"--lwip-tap", spec, "--timeout", "20000", "cat",
	                       "tcp://" TAP_KERNEL_IP ":7001", NULL});
	s = accept_within(lfd, 10000);
	bridge_both_ways(&cli, s);
	close(s);
	close(lfd);
}
END_TEST

/* Bad --lwip-* specifications: exit 2 with a message naming the part. */
START_TEST(lwip_bad_specs_exit_2)
{
	const struct {
		const char *opt, *spec, *say;
	} cases[] = {
	    {"--lwip-tap", "foo", "NAME,ADDR/PREFIX"},
	    {"--lwip-tap", "tap9,", "NAME,ADDR/PREFIX"},
	    {"--lwip-tap", "tap9,10.0.0.2/40", "bad prefix '/40'"},
	    {"--lwip-tap", "tap9,10.0.0.2/", "bad prefix"},
	    {"--lwip-tap", "tap9,10.0.0.300/24", "'10.0.0.300' is not an IPv4"},
	    {"--lwip-tap", "tap9,10.0.0.2/24,gw", "gateway 'gw'"},
	    {"--lwip-tap", "an-interface-name-too-long,10.0.0.2/24",
	     "longer than 15"},
	    {"--lwip-dgram", "/x/wire", "PATH,ADDR/PREFIX"},
	    {"--lwip-dgram", "/x/wire,10.0.0.2/33", "bad prefix '/33'"},
	    {"--lwip-dgram", "/nonexistent/dir/wire,10.0.0.2/24",
	     "/nonexistent/dir/wire: No such file"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct proc p;
		int st =
		    run_cmd(&p,
		            (const char *[]){cases[i].opt, cases[i].spec, "cat",
		                             "tcp://10.0.0.1:7", NULL},
		            5000);
		ck_assert_msg(st == 2, "case %zu: exit %d: %s", i, st, p.log);
		ck_assert_msg(strstr(p.log, cases[i].opt) != NULL &&
		                  strstr(p.log, cases[i].say) != NULL,
		              "case %zu: stderr: %s", i, p.log);
	}
	struct proc p;
	int st = run_cmd(&p,
	                 (const char *[]){"--lwip-tap", "t,10.0.0.1/24",
	                                  "--lwip-dgram", "/x,10.0.0.1/24",
	                                  "cat", "tcp://10.0.0.2:7", NULL},
	                 5000);
	ck_assert_msg(st == 2 && strstr(p.log, "one of them") != NULL,
	              "both: exit %d: %s", st, p.log);
}
END_TEST
#endif /* CONDUIT_HAVE_LWIP */

int main(void)
{
	const struct cd_test tests[] = {
	    CD_TEST(resolve_with_rules_and_explain, 0),
	    CD_TEST(bad_rules_file_exits_2, 0),
	    CD_TEST(cat_unix_4mib_each_way, 60),
	    CD_TEST(cat_tcp_4mib_each_way, 60),
	    CD_TEST(listen_unix_4mib_each_way, 60),
	    CD_TEST(listen_tcp_prints_real_port, 60),
	    CD_TEST(listen_once_then_refuses, 0),
	    CD_TEST(listen_echo_with_cat, 60),
	    CD_TEST(listen_keep_echo_concurrent, 60),
	    CD_TEST(relay_unix_to_tcp_8_at_once, 90),
	    CD_TEST(relay_tcp_to_unix_8_at_once, 90),
	    CD_TEST(relay_passes_half_close, 60),
	    CD_TEST(relay_target_refused_keeps_serving, 30),
	    CD_TEST(cat_idle_timeout_exits_1, 0),
	    CD_TEST(cat_closed_stdout_exits_1, 0),
	    CD_TEST(usage_errors_exit_2, 30),
	    CD_TEST(bad_uri_exits_3, 0),
	    CD_TEST(unknown_scheme_exits_3, 0),
	    CD_TEST(refused_exits_4, 0),
	    CD_TEST(missing_socket_exits_4, 0),
	    CD_TEST(listen_in_use_exits_4, 0),
	    CD_TEST(help_exits_0_and_names_everything, 0),
	    CD_TEST(resolve_prints_endpoint_and_addresses, 0),
#ifdef CONDUIT_HAVE_TLS
	    CD_TEST(tls_servername_option, 30),
	    CD_TEST(tls_listen_echo_and_cat_verified, 60),
	    CD_TEST(tls_cat_to_openssl_s_server, 30),
	    CD_TEST(tls_openssl_s_client_to_listen, 30),
	    CD_TEST(tls_client_auth_required_refuses, 30),
	    CD_TEST(tls_verify_failures_exit_4, 30),
	    CD_TEST(tls_bad_input_exits_2, 60),
#endif
#ifdef CONDUIT_HAVE_VCHAN
	    CD_TEST(vchan_listen_echo_and_cat_1mib, 60),
#endif
#ifdef CONDUIT_HAVE_LWIP
	    CD_TEST(lwip_dgram_two_processes_echo, 60),
	    CD_TEST(lwip_tap_kernel_tcp, 90),
	    CD_TEST(lwip_bad_specs_exit_2, 30),
#endif
	};
#ifdef CONDUIT_HAVE_TLS
	cd_certs_make(&certs, "conduit-cli", 7, cert_cnf, cert_steps);
#endif
	int status =
	    cd_run(cd_suite("cli", tests, sizeof(tests) / sizeof(tests[0])));
#ifdef CONDUIT_HAVE_TLS
	cd_certs_remove(&certs);
#endif
	return status;
}
