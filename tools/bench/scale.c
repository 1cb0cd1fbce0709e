/*
 * scale.c - what a flow costs at rest and what many cost at once.
 *
 *   idle memory   heap bytes held by one connected, idle flow: glibc's
 *                 in-use heap (mallinfo2) before and after making 1,000
 *                 connections, each connected and carrying one round trip
 *                 of one byte, divided by 1,000.  The end being measured
 *                 is conduit's (or raw, for the baseline) and the other end
 *                 is always a raw socket, which takes no heap, so the
 *                 figure is the flow's own: once for the connecting end,
 *                 once for the accepted one.  TLS over unix, where built,
 *                 is measured the same way with a conduit peer in a forked
 *                 process (informational: its baseline is the raw socket).
 *   concurrency   10,000 flows (2,000 under --quick) held open at once by
 *                 one echo server in its own process, clients in this
 *                 one.  The server is either conduit (conduit_poll over a
 *                 listener and every flow) or the baseline, a raw poll(2)
 *                 loop doing the same work with the same buffers; the
 *                 client is the same raw poll(2) program for both.  On
 *                 accepting, the server sends one greeting byte: a client
 *                 counts its flow as set up when that byte arrives, and
 *                 keeps at most 1,000 connects outstanding so the listen
 *                 queue (4,096) never overflows.  Then every client sends
 *                 its own 64-byte pattern and checks the echo byte for
 *                 byte.  Figures: the time to set up every flow, the time
 *                 of one round of echoes over all of them, and the
 *                 server's RSS and heap growth divided by the flows.
 *
 * Every wait is bounded: one deadline covers a whole concurrency run and a
 * run that misses it says what is missing and fails the section.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "scale.h"

#include <conduit/conduit.h>
#ifdef CONDUIT_HAVE_TLS
#include <conduit/tls.h>
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

char S_dir[PATH_MAX];
const char *const scale_tr_name[] = {"unix", "tcp"};

/* ------------------------------------------------------------------ */
/* Errors, clocks, memory                                              */

__attribute__((format(printf, 1, 2))) int scale_fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("conduit-bench: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	return -1;
}

/* Milliseconds left before deadline, at most cap. */
int left_ms(uint64_t deadline, int cap)
{
	uint64_t now = tool_now_ms();
	if (now >= deadline)
		return 0;
	uint64_t d = deadline - now;
	return d < (uint64_t)cap ? (int)d : cap;
}

/* Bytes of heap in use: glibc's allocated chunks, and the large
 * allocations it maps on their own (a poll set for 10,000 flows is one). */
long long heap_used(void)
{
#ifdef HAVE_MALLINFO2
	struct mallinfo2 mi = mallinfo2();
	return (long long)(mi.uordblks + mi.hblkhd);
#else
	return -1;
#endif
}

/* Resident set size in bytes, -1 if unknown. */
long long rss_bytes(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	if (f == NULL)
		return -1;
	unsigned long size = 0, resident = 0;
	int n = fscanf(f, "%lu %lu", &size, &resident);
	fclose(f);
	if (n != 2)
		return -1;
	return (long long)resident * sysconf(_SC_PAGESIZE);
}

/* ------------------------------------------------------------------ */
/* Addresses: a unix socket file in a private directory, or tcp on      */
/* 127.0.0.1 with the port the listener got.                            */

/* A unix URI for a path: everything but unreserved bytes and '/' is
 * percent-encoded, so any directory name parses back. */
void unix_uri(char *out, size_t cap, const char *scheme, const char *path)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t k = (size_t)snprintf(out, cap, "%s://", scheme);
	for (const unsigned char *p = (const unsigned char *)path;
	     *p != '\0' && k + 4 < cap; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || strchr("-._~/", *p) != NULL) {
			out[k++] = (char)*p;
		} else {
			out[k++] = '%';
			out[k++] = hex[*p >> 4];
			out[k++] = hex[*p & 15];
		}
	}
	out[k] = '\0';
}

/* An address for tr; for tcp the port is set later (set_port). */
int make_addr(struct addr *a, enum tr tr, const char *name)
{
	memset(a, 0, sizeof(*a));
	a->tr = tr;
	if (tr == TR_UNIX) {
		struct sockaddr_un *un = (struct sockaddr_un *)&a->sa;
		int n =
		    snprintf(a->path, sizeof(a->path), "%s/%s", S_dir, name);
		if (n < 0 || (size_t)n >= sizeof(a->path))
			return scale_fail(
			    "socket path %s/%s is longer than a unix "
			    "socket allows; set TMPDIR to a shorter "
			    "directory",
			    S_dir, name);
		un->sun_family = AF_UNIX;
		memcpy(un->sun_path, a->path, (size_t)n + 1);
		a->salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) +
		                       (size_t)n + 1);
		unix_uri(a->uri, sizeof(a->uri), "unix", a->path);
		return 0;
	}
	struct sockaddr_in *in = (struct sockaddr_in *)&a->sa;
	in->sin_family = AF_INET;
	in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a->salen = sizeof(*in);
	snprintf(a->uri, sizeof(a->uri), "tcp://127.0.0.1:0");
	return 0;
}

void set_port(struct addr *a, int port)
{
	((struct sockaddr_in *)&a->sa)->sin_port = htons((uint16_t)port);
	snprintf(a->uri, sizeof(a->uri), "tcp://127.0.0.1:%d", port);
}

/* The port at the end of a bound tcp URI; -1 if there is none. */
int uri_port(const char *uri)
{
	const char *c = strrchr(uri, ':');
	if (c == NULL)
		return -1;
	char *end = NULL;
	long p = strtol(c + 1, &end, 10);
	return end != c + 1 && p > 0 && p < 65536 ? (int)p : -1;
}

/* ------------------------------------------------------------------ */
/* Raw sockets, set up as conduit sets up its own (non-blocking,        */
/* close-on-exec, TCP_NODELAY, the system's largest listen queue).     */

int raw_listen(struct addr *a)
{
	int fd = socket(a->sa.ss_family,
	                SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return scale_fail("socket: %s", strerror(errno));
	int one = 1;
	if (a->tr == TR_TCP)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&a->sa, a->salen) < 0 ||
	    listen(fd, SOMAXCONN) < 0) {
		scale_fail("listen on %s: %s", a->uri, strerror(errno));
		close(fd);
		return -1;
	}
	if (a->tr == TR_TCP) {
		struct sockaddr_in in;
		socklen_t len = sizeof(in);
		if (getsockname(fd, (struct sockaddr *)&in, &len) < 0) {
			scale_fail("getsockname: %s", strerror(errno));
			close(fd);
			return -1;
		}
		set_port(a, ntohs(in.sin_port));
	}
	return fd;
}

/* Start a connect: 0 connected, 1 in progress, -EAGAIN for a full unix
 * queue (try again later), other -errno on failure; *out is the socket
 * when 0 or 1 is returned. */
int raw_connect_start(const struct addr *a, int *out)
{
	int fd = socket(a->sa.ss_family,
	                SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	if (a->tr == TR_TCP) {
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	if (connect(fd, (const struct sockaddr *)&a->sa, a->salen) == 0) {
		*out = fd;
		return 0;
	}
	int e = errno;
	if (e == EINPROGRESS || e == EINTR) {
		*out = fd;
		return 1;
	}
	close(fd);
	return -e;
}

int wait_fd(int fd, short events, int ms)
{
	struct pollfd p = {.fd = fd, .events = events};
	uint64_t deadline = tool_now_ms() + (uint64_t)ms;
	for (int i = 0; i < 1000; i++) {
		int r = poll(&p, 1, left_ms(deadline, ms));
		if (r > 0)
			return 0;
		if (r == 0)
			return scale_fail("no event on a socket within %d ms",
			                  ms);
		if (errno != EINTR)
			return scale_fail("poll: %s", strerror(errno));
	}
	return scale_fail("poll: interrupted too often");
}

/* Connect and wait until connected. */
int raw_connect_wait(const struct addr *a, int *out)
{
	int fd = -1, r = -EAGAIN;
	uint64_t deadline = tool_now_ms() + IO_MS;
	for (int i = 0; i < 10000 && r == -EAGAIN; i++) {
		r = raw_connect_start(a, &fd);
		if (r == -EAGAIN) {
			if (tool_now_ms() > deadline)
				break;
			struct timespec ts = {0, 1000000L};
			nanosleep(&ts, NULL);
		}
	}
	if (r < 0)
		return scale_fail("connect %s: %s", a->uri, strerror(-r));
	if (r == 1) {
		int err = 0;
		socklen_t len = sizeof(err);
		if (wait_fd(fd, POLLOUT, IO_MS) < 0 ||
		    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 ||
		    err != 0) {
			close(fd);
			return scale_fail("connect %s: %s", a->uri,
			                  err ? strerror(err)
			                      : "not connected");
		}
	}
	*out = fd;
	return 0;
}

int raw_accept_wait(int lfd, int *out)
{
	for (int i = 0; i < 1000; i++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd >= 0) {
			*out = fd;
			return 0;
		}
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
		    errno != ECONNABORTED)
			return scale_fail("accept: %s", strerror(errno));
		if (wait_fd(lfd, POLLIN, IO_MS) < 0)
			return -1;
	}
	return scale_fail("accept: no connection came");
}

/* One byte each way: the measured end sends, the other echoes. */
int raw_send1(int fd, unsigned char b)
{
	for (int i = 0; i < 1000; i++) {
		ssize_t n = send(fd, &b, 1, MSG_NOSIGNAL);
		if (n == 1)
			return 0;
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			return scale_fail("send: %s", strerror(errno));
		if (wait_fd(fd, POLLOUT, IO_MS) < 0)
			return -1;
	}
	return scale_fail("send: no progress");
}

int raw_recv1(int fd, unsigned char want)
{
	for (int i = 0; i < 1000; i++) {
		unsigned char b;
		ssize_t n = recv(fd, &b, 1, 0);
		if (n == 1) {
			if (b != want)
				return scale_fail(
				    "received 0x%02x, sent 0x%02x", b, want);
			return 0;
		}
		if (n == 0)
			return scale_fail(
			    "recv: end of stream before the byte");
		if (errno != EAGAIN && errno != EINTR)
			return scale_fail("recv: %s", strerror(errno));
		if (wait_fd(fd, POLLIN, IO_MS) < 0)
			return -1;
	}
	return scale_fail("recv: no progress");
}

int flow_send1(conduit_flow *f, unsigned char b)
{
	int rc = conduit_write_all(f, &b, 1, NULL, IO_MS);
	if (rc != CONDUIT_OK)
		return scale_fail("conduit_write_all: %s",
		                  bench_cerr(conduit_flow_error(f), rc));
	return 0;
}

int flow_recv1(conduit_flow *f, unsigned char want)
{
	unsigned char b = 0;
	size_t n = 0;
	int rc = conduit_read_wait(f, &b, 1, &n, IO_MS);
	if (rc != CONDUIT_OK)
		return scale_fail("conduit_read_wait: %s",
		                  bench_cerr(conduit_flow_error(f), rc));
	if (n != 1 || b != want)
		return scale_fail("received 0x%02x, sent 0x%02x", b, want);
	return 0;
}

/* Raise the descriptor limit to need; fail clearly when the hard limit is
 * lower.  *old gets the limit to restore. */
int raise_nofile(rlim_t need, struct rlimit *old)
{
	if (getrlimit(RLIMIT_NOFILE, old) < 0)
		return scale_fail("getrlimit: %s", strerror(errno));
	if (old->rlim_cur != RLIM_INFINITY && old->rlim_cur >= need)
		return 0;
	if (old->rlim_max != RLIM_INFINITY && old->rlim_max < need)
		return scale_fail(
		    "%llu descriptors are needed per process, the hard "
		    "limit is %llu: raise it (ulimit -Hn) or use --quick",
		    (unsigned long long)need,
		    (unsigned long long)old->rlim_max);
	struct rlimit rl = {need, old->rlim_max};
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		return scale_fail("raising the descriptor limit to %llu: %s",
		                  (unsigned long long)need, strerror(errno));
	return 0;
}

int read_full(int fd, void *buf, size_t len, int ms)
{
	size_t got = 0;
	uint64_t deadline = tool_now_ms() + (uint64_t)ms;
	while (got < len) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int r = poll(&p, 1, left_ms(deadline, ms));
		if (r == 0)
			return scale_fail("no answer from a child within %d ms",
			                  ms);
		if (r < 0 && errno == EINTR)
			continue;
		ssize_t k = read(fd, (char *)buf + got, len - got);
		if (k <= 0)
			return scale_fail("a child ended before answering");
		got += (size_t)k;
	}
	return 0;
}

/* Wait for a child, ms at most; it is killed after that. */
int reap(pid_t pid, int ms)
{
	int st = 0;
	uint64_t deadline = tool_now_ms() + (uint64_t)ms;
	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid)
			return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
		if (r < 0 && errno != EINTR)
			return -1;
		if (tool_now_ms() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			return scale_fail(
			    "a child did not finish within %d ms; killed", ms);
		}
		struct timespec ts = {0, 2000000L};
		nanosleep(&ts, NULL);
	}
}

/* ------------------------------------------------------------------ */

int bench_scale(const struct bench_settings *s)
{
	const char *base = getenv("TMPDIR");
	if (base == NULL || base[0] == '\0')
		base = "/tmp";
	int k = snprintf(S_dir, sizeof(S_dir), "%s/conduit-scale-XXXXXX", base);
	if (k < 0 || (size_t)k >= sizeof(S_dir))
		return scale_fail("TMPDIR is too long");
	if (mkdtemp(S_dir) == NULL)
		return scale_fail("mkdtemp %s: %s", S_dir, strerror(errno));
	/* Descriptors for the most flows one process holds: both ends of
	 * the idle pairs, or the clients (and, in its own process, the
	 * server) of the concurrency runs. */
	size_t flows = s->quick ? SCALE_FLOWS_QUICK : SCALE_FLOWS;
	if (flows < 2 * IDLE_PAIRS)
		flows = 2 * IDLE_PAIRS;
	struct rlimit lim;
	if (raise_nofile((rlim_t)flows + FD_SPARE, &lim) < 0) {
		rmdir(S_dir);
		return -1;
	}
	/* A peer that has gone must not kill the benchmark. */
	struct sigaction ign = {.sa_handler = SIG_IGN}, old;
	sigaction(SIGPIPE, &ign, &old);
	int rc = idle_section(s);
	if (rc == 0)
		rc = scale_section(s);
	sigaction(SIGPIPE, &old, NULL);
	setrlimit(RLIMIT_NOFILE, &lim);
	rmdir(S_dir);
	return rc;
}
