/*
 * bench_scale.c - what a flow costs at rest and what many cost at once.
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

#include "bench.h"

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

#if defined(__GLIBC__) &&                                                      \
    (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
#define HAVE_MALLINFO2 1
#endif

#define IDLE_PAIRS        1000
#define TLS_IDLE_PAIRS    100
#define SCALE_FLOWS       10000
#define SCALE_FLOWS_QUICK 2000
/* Connects started whose greeting has not arrived yet. */
#define MAX_OUTSTANDING 1000
#define MSG_LEN         64
#define GREETING        '+'
/* A whole concurrency run: setup, round and teardown. */
#define SCALE_DEADLINE_MS 120000
/* Any single wait of the idle measurements. */
#define IO_MS 10000
/* Descriptors beyond the flows: listeners, pipes, what the caller has. */
#define FD_SPARE 256
/* Accepts per wake-up of the server, so flows already open get a turn. */
#define ACCEPT_BURST 256
/* Room for any URI here: a socket path is under 108 bytes, 3x encoded. */
#define URI_MAX_LEN 512

enum api { API_RAW, API_CONDUIT };
enum tr { TR_UNIX, TR_TCP };
static const char *const tr_name[] = {"unix", "tcp"};

/* ------------------------------------------------------------------ */
/* Errors, clocks, memory                                              */

__attribute__((format(printf, 1, 2))) static int fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("conduit-bench: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	return -1;
}

static const char *cerr(const char *detail, int rc)
{
	return detail != NULL && detail[0] != '\0' ? detail
	                                           : conduit_strerror(rc);
}

/* Milliseconds left before deadline, at most cap. */
static int left_ms(uint64_t deadline, int cap)
{
	uint64_t now = tool_now_ms();
	if (now >= deadline)
		return 0;
	uint64_t d = deadline - now;
	return d < (uint64_t)cap ? (int)d : cap;
}

/* Bytes of heap in use: glibc's allocated chunks, and the large
 * allocations it maps on their own (a poll set for 10,000 flows is one). */
static long long heap_used(void)
{
#ifdef HAVE_MALLINFO2
	struct mallinfo2 mi = mallinfo2();
	return (long long)(mi.uordblks + mi.hblkhd);
#else
	return -1;
#endif
}

/* Resident set size in bytes, -1 if unknown. */
static long long rss_bytes(void)
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

static char S_dir[PATH_MAX];

struct addr {
	enum tr tr;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char uri[URI_MAX_LEN];
	struct sockaddr_storage sa;
	socklen_t salen;
};

/* A unix URI for a path: everything but unreserved bytes and '/' is
 * percent-encoded, so any directory name parses back. */
static void unix_uri(char *out, size_t cap, const char *scheme,
                     const char *path)
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
static int make_addr(struct addr *a, enum tr tr, const char *name)
{
	memset(a, 0, sizeof(*a));
	a->tr = tr;
	if (tr == TR_UNIX) {
		struct sockaddr_un *un = (struct sockaddr_un *)&a->sa;
		int n =
		    snprintf(a->path, sizeof(a->path), "%s/%s", S_dir, name);
		if (n < 0 || (size_t)n >= sizeof(a->path))
			return fail("socket path %s/%s is longer than a unix "
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

static void set_port(struct addr *a, int port)
{
	((struct sockaddr_in *)&a->sa)->sin_port = htons((uint16_t)port);
	snprintf(a->uri, sizeof(a->uri), "tcp://127.0.0.1:%d", port);
}

/* The port at the end of a bound tcp URI; -1 if there is none. */
static int uri_port(const char *uri)
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

static int raw_listen(struct addr *a)
{
	int fd = socket(a->sa.ss_family,
	                SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return fail("socket: %s", strerror(errno));
	int one = 1;
	if (a->tr == TR_TCP)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&a->sa, a->salen) < 0 ||
	    listen(fd, SOMAXCONN) < 0) {
		fail("listen on %s: %s", a->uri, strerror(errno));
		close(fd);
		return -1;
	}
	if (a->tr == TR_TCP) {
		struct sockaddr_in in;
		socklen_t len = sizeof(in);
		if (getsockname(fd, (struct sockaddr *)&in, &len) < 0) {
			fail("getsockname: %s", strerror(errno));
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
static int raw_connect_start(const struct addr *a, int *out)
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

static int wait_fd(int fd, short events, int ms)
{
	struct pollfd p = {.fd = fd, .events = events};
	uint64_t deadline = tool_now_ms() + (uint64_t)ms;
	for (int i = 0; i < 1000; i++) {
		int r = poll(&p, 1, left_ms(deadline, ms));
		if (r > 0)
			return 0;
		if (r == 0)
			return fail("no event on a socket within %d ms", ms);
		if (errno != EINTR)
			return fail("poll: %s", strerror(errno));
	}
	return fail("poll: interrupted too often");
}

/* Connect and wait until connected. */
static int raw_connect_wait(const struct addr *a, int *out)
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
		return fail("connect %s: %s", a->uri, strerror(-r));
	if (r == 1) {
		int err = 0;
		socklen_t len = sizeof(err);
		if (wait_fd(fd, POLLOUT, IO_MS) < 0 ||
		    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 ||
		    err != 0) {
			close(fd);
			return fail("connect %s: %s", a->uri,
			            err ? strerror(err) : "not connected");
		}
	}
	*out = fd;
	return 0;
}

static int raw_accept_wait(int lfd, int *out)
{
	for (int i = 0; i < 1000; i++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd >= 0) {
			*out = fd;
			return 0;
		}
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
		    errno != ECONNABORTED)
			return fail("accept: %s", strerror(errno));
		if (wait_fd(lfd, POLLIN, IO_MS) < 0)
			return -1;
	}
	return fail("accept: no connection came");
}

/* One byte each way: the measured end sends, the other echoes. */
static int raw_send1(int fd, unsigned char b)
{
	for (int i = 0; i < 1000; i++) {
		ssize_t n = send(fd, &b, 1, MSG_NOSIGNAL);
		if (n == 1)
			return 0;
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			return fail("send: %s", strerror(errno));
		if (wait_fd(fd, POLLOUT, IO_MS) < 0)
			return -1;
	}
	return fail("send: no progress");
}

static int raw_recv1(int fd, unsigned char want)
{
	for (int i = 0; i < 1000; i++) {
		unsigned char b;
		ssize_t n = recv(fd, &b, 1, 0);
		if (n == 1) {
			if (b != want)
				return fail("received 0x%02x, sent 0x%02x", b,
				            want);
			return 0;
		}
		if (n == 0)
			return fail("recv: end of stream before the byte");
		if (errno != EAGAIN && errno != EINTR)
			return fail("recv: %s", strerror(errno));
		if (wait_fd(fd, POLLIN, IO_MS) < 0)
			return -1;
	}
	return fail("recv: no progress");
}

static int flow_send1(conduit_flow *f, unsigned char b)
{
	int rc = conduit_write_all(f, &b, 1, NULL, IO_MS);
	if (rc != CONDUIT_OK)
		return fail("conduit_write_all: %s",
		            cerr(conduit_flow_error(f), rc));
	return 0;
}

static int flow_recv1(conduit_flow *f, unsigned char want)
{
	unsigned char b = 0;
	size_t n = 0;
	int rc = conduit_read_wait(f, &b, 1, &n, IO_MS);
	if (rc != CONDUIT_OK)
		return fail("conduit_read_wait: %s",
		            cerr(conduit_flow_error(f), rc));
	if (n != 1 || b != want)
		return fail("received 0x%02x, sent 0x%02x", b, want);
	return 0;
}

/* Raise the descriptor limit to need; fail clearly when the hard limit is
 * lower.  *old gets the limit to restore. */
static int raise_nofile(rlim_t need, struct rlimit *old)
{
	if (getrlimit(RLIMIT_NOFILE, old) < 0)
		return fail("getrlimit: %s", strerror(errno));
	if (old->rlim_cur != RLIM_INFINITY && old->rlim_cur >= need)
		return 0;
	if (old->rlim_max != RLIM_INFINITY && old->rlim_max < need)
		return fail(
		    "%llu descriptors are needed per process, the hard "
		    "limit is %llu: raise it (ulimit -Hn) or use --quick",
		    (unsigned long long)need,
		    (unsigned long long)old->rlim_max);
	struct rlimit rl = {need, old->rlim_max};
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		return fail("raising the descriptor limit to %llu: %s",
		            (unsigned long long)need, strerror(errno));
	return 0;
}

static int read_full(int fd, void *buf, size_t len, int ms)
{
	size_t got = 0;
	uint64_t deadline = tool_now_ms() + (uint64_t)ms;
	while (got < len) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int r = poll(&p, 1, left_ms(deadline, ms));
		if (r == 0)
			return fail("no answer from a child within %d ms", ms);
		if (r < 0 && errno == EINTR)
			continue;
		ssize_t k = read(fd, (char *)buf + got, len - got);
		if (k <= 0)
			return fail("a child ended before answering");
		got += (size_t)k;
	}
	return 0;
}

/* Wait for a child, ms at most; it is killed after that. */
static int reap(pid_t pid, int ms)
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
			return fail(
			    "a child did not finish within %d ms; killed", ms);
		}
		struct timespec ts = {0, 2000000L};
		nanosleep(&ts, NULL);
	}
}

/* ------------------------------------------------------------------ */
/* Idle memory                                                         */

enum side { SIDE_CONNECTING, SIDE_ACCEPTED };

/*
 * Heap bytes per idle flow of one end (side), made by api; the other end
 * is a raw socket.  n pairs, one round trip each, then the heap is read
 * with every pair still open.  A first pair, made and freed before the
 * first reading, keeps one-time costs (the context's first resolution,
 * poll buffers) out of the figure.
 */
static int idle_run(enum api api, enum tr tr, enum side side, size_t n,
                    double *out)
{
	int rc = -1;
	struct addr a;
	if (make_addr(&a, tr, "idle.sock") < 0)
		return -1;
	conduit_ctx *ctx = NULL;
	conduit_listener *l = NULL;
	int lfd = -1;
	int *near = calloc(n + 1, sizeof(int)); /* the measured end (raw) */
	int *far = calloc(n + 1, sizeof(int));  /* the other end */
	conduit_flow **fl = calloc(n + 1, sizeof(*fl));
	if (near == NULL || far == NULL || fl == NULL) {
		fail("out of memory");
		goto out;
	}
	for (size_t i = 0; i <= n; i++)
		near[i] = far[i] = -1;
	if (api == API_CONDUIT && conduit_ctx_new(&ctx) != CONDUIT_OK) {
		fail("conduit_ctx_new failed");
		goto out;
	}
	if (api == API_CONDUIT && side == SIDE_ACCEPTED) {
		int r = conduit_listen(&l, ctx, a.uri);
		if (r != CONDUIT_OK) {
			fail("listen %s: %s", a.uri,
			     cerr(conduit_ctx_error(ctx), r));
			goto out;
		}
		if (tr == TR_TCP)
			set_port(&a, uri_port(conduit_listener_uri(l)));
	} else if ((lfd = raw_listen(&a)) < 0) {
		goto out;
	}

	long long h0 = 0;
	for (size_t i = 0; i <= n; i++) {
		if (i == 1)
			h0 = heap_used();
		unsigned char b = (unsigned char)('a' + i % 26);
		bool cf = api == API_CONDUIT && side == SIDE_CONNECTING;
		bool af = api == API_CONDUIT && side == SIDE_ACCEPTED;
		/* The connecting end. */
		if (cf) {
			int r = conduit_connect(&fl[i], ctx, a.uri);
			if (r != CONDUIT_OK) {
				fail("connect %s: %s", a.uri,
				     cerr(conduit_ctx_error(ctx), r));
				goto out;
			}
		} else if (raw_connect_wait(&a, side == SIDE_CONNECTING
		                                    ? &near[i]
		                                    : &far[i]) < 0) {
			goto out;
		}
		/* The accepting end. */
		if (af) {
			int r = conduit_accept_wait(&fl[i], l, IO_MS);
			if (r != CONDUIT_OK) {
				fail("accept %s: %s", a.uri,
				     cerr(conduit_listener_error(l), r));
				goto out;
			}
		} else if (raw_accept_wait(lfd, side == SIDE_ACCEPTED
		                                    ? &near[i]
		                                    : &far[i]) < 0) {
			goto out;
		}
		/* One byte from the measured end, echoed by the other. */
		int r = fl[i] != NULL ? flow_send1(fl[i], b)
		                      : raw_send1(near[i], b);
		if (r == 0)
			r = raw_recv1(far[i], b);
		if (r == 0)
			r = raw_send1(far[i], b);
		if (r == 0)
			r = fl[i] != NULL ? flow_recv1(fl[i], b)
			                  : raw_recv1(near[i], b);
		if (r < 0) {
			fail("idle %s flow %zu: the round trip failed",
			     tr_name[tr], i);
			goto out;
		}
		if (i == 0) {
			/* The warm-up pair goes before the first reading. */
			if (fl[0] != NULL) {
				conduit_close(fl[0]);
				conduit_flow_free(fl[0]);
				fl[0] = NULL;
			}
			if (near[0] >= 0)
				close(near[0]);
			close(far[0]);
			near[0] = far[0] = -1;
		}
	}
	*out = (double)(heap_used() - h0) / (double)n;
	rc = 0;
out:
	for (size_t i = 0; fl != NULL && i <= n; i++) {
		if (fl[i] != NULL) {
			conduit_close(fl[i]);
			conduit_flow_free(fl[i]);
		}
		if (near[i] >= 0)
			close(near[i]);
		if (far[i] >= 0)
			close(far[i]);
	}
	free(near);
	free(far);
	free(fl);
	if (lfd >= 0)
		close(lfd);
	conduit_listener_free(l);
	conduit_ctx_free(ctx);
	if (tr == TR_UNIX)
		unlink(a.path);
	return rc;
}

#ifdef CONDUIT_HAVE_TLS
/*
 * tls+unix: both ends are conduit, in two processes, so each end's heap is
 * its own.  The child serves n + 1 flows one after another (the first is
 * the warm-up), reports its heap growth for the last n through a pipe and
 * holds them until the parent closes its end.  The server's session cache
 * is turned off (tickets stay on), so the figure is the flows' and not
 * the cache's.
 */
static int tls_child(const char *uri, const char *cert, const char *key,
                     size_t n, int rep, int ctl)
{
	conduit_ctx *ctx = NULL;
	conduit_listener *l = NULL;
	conduit_flow **fl = calloc(n + 1, sizeof(*fl));
	double per = -1;
	int st = 1;
	if (fl == NULL || conduit_ctx_new(&ctx) != CONDUIT_OK)
		goto report;
	if (conduit_tls_set_cert_pem(ctx, cert, strlen(cert), key, strlen(key),
	                             NULL) != CONDUIT_OK ||
	    conduit_tls_set_resumption(ctx, CONDUIT_TLS_RESUME_TICKETS) !=
	        CONDUIT_OK ||
	    conduit_listen(&l, ctx, uri) != CONDUIT_OK) {
		fprintf(stderr, "conduit-bench: tls server: %s\n",
		        conduit_ctx_error(ctx));
		goto report;
	}
	/* Ready: the parent may connect. */
	if (write(rep, "r", 1) != 1)
		goto report;
	long long h0 = 0;
	for (size_t i = 0; i <= n; i++) {
		if (i == 1)
			h0 = heap_used();
		unsigned char b = 0;
		size_t got = 0;
		int rc = conduit_accept_wait(&fl[i], l, IO_MS);
		if (rc == CONDUIT_OK)
			rc = conduit_read_wait(fl[i], &b, 1, &got, IO_MS);
		if (rc == CONDUIT_OK)
			rc = conduit_write_all(fl[i], &b, 1, NULL, IO_MS);
		if (rc != CONDUIT_OK) {
			fprintf(stderr,
			        "conduit-bench: tls server flow %zu: %s\n", i,
			        fl[i] != NULL
			            ? cerr(conduit_flow_error(fl[i]), rc)
			            : cerr(conduit_listener_error(l), rc));
			goto report;
		}
		if (i == 0) {
			conduit_close(fl[0]);
			conduit_flow_free(fl[0]);
			fl[0] = NULL;
		}
	}
	per = (double)(heap_used() - h0) / (double)n;
	st = 0;
report:
	if (write(rep, &per, sizeof(per)) != (ssize_t)sizeof(per))
		st = 1;
	/* Hold the flows until the parent has measured its own end. */
	struct pollfd p = {.fd = ctl, .events = POLLIN};
	poll(&p, 1, 2 * IO_MS);
	for (size_t i = 0; fl != NULL && i <= n; i++)
		conduit_flow_free(fl[i]);
	free(fl);
	conduit_listener_free(l);
	conduit_ctx_free(ctx);
	return st;
}

static int tls_idle_run(size_t n, double *client, double *server)
{
	const char *cert, *key, *why;
	if (bench_tls_identity(&cert, &key, &why) < 0)
		return fail("tls certificate: %s", why);
	struct addr a;
	if (make_addr(&a, TR_UNIX, "tls.sock") < 0)
		return -1;
	char luri[URI_MAX_LEN + 32], uri[sizeof(luri) + 32];
	unix_uri(luri, sizeof(luri), "tls+unix", a.path);
	snprintf(uri, sizeof(uri), "%s?servername=bench.test", luri);
	int rep[2], ctl[2];
	if (pipe2(rep, O_CLOEXEC) < 0)
		return fail("pipe: %s", strerror(errno));
	if (pipe2(ctl, O_CLOEXEC) < 0) {
		close(rep[0]);
		close(rep[1]);
		return fail("pipe: %s", strerror(errno));
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		for (int i = 0; i < 2; i++) {
			close(rep[i]);
			close(ctl[i]);
		}
		return fail("fork: %s", strerror(errno));
	}
	if (pid == 0) {
#ifdef __linux__
		prctl(PR_SET_PDEATHSIG, SIGKILL);
#endif
		alarm(120);
		close(rep[0]);
		close(ctl[1]);
		_exit(tls_child(luri, cert, key, n, rep[1], ctl[0]));
	}
	close(rep[1]);
	close(ctl[0]);

	int rc = -1;
	conduit_ctx *ctx = NULL;
	conduit_flow **fl = calloc(n + 1, sizeof(*fl));
	char ready = 0;
	double sper = -1;
	if (fl == NULL || conduit_ctx_new(&ctx) != CONDUIT_OK) {
		fail("out of memory");
		goto out;
	}
	if (conduit_tls_set_ca_pem(ctx, cert, strlen(cert)) != CONDUIT_OK) {
		fail("tls: %s", conduit_ctx_error(ctx));
		goto out;
	}
	if (read_full(rep[0], &ready, 1, IO_MS) < 0)
		goto out;
	long long h0 = 0;
	for (size_t i = 0; i <= n; i++) {
		if (i == 1)
			h0 = heap_used();
		unsigned char b = (unsigned char)('A' + i % 26);
		int r = conduit_connect_wait(&fl[i], ctx, uri, IO_MS);
		if (r != CONDUIT_OK) {
			fail("connect %s: %s", uri,
			     cerr(conduit_ctx_error(ctx), r));
			goto out;
		}
		if (flow_send1(fl[i], b) < 0 || flow_recv1(fl[i], b) < 0)
			goto out;
		if (i == 0) {
			conduit_close(fl[0]);
			conduit_flow_free(fl[0]);
			fl[0] = NULL;
		}
	}
	*client = (double)(heap_used() - h0) / (double)n;
	if (read_full(rep[0], &sper, sizeof(sper), IO_MS) < 0)
		goto out;
	if (sper < 0) {
		fail("the tls server failed");
		goto out;
	}
	*server = sper;
	rc = 0;
out:
	close(ctl[1]); /* the child frees its flows and ends */
	close(rep[0]);
	if (reap(pid, 2 * IO_MS) < 0 && rc == 0)
		rc = fail("the tls server failed");
	for (size_t i = 0; fl != NULL && i <= n; i++)
		conduit_flow_free(fl[i]);
	free(fl);
	conduit_ctx_free(ctx);
	unlink(a.path);
	return rc;
}
#endif

static int idle_section(const struct bench_settings *s)
{
#ifndef HAVE_MALLINFO2
	(void)s;
	fprintf(stderr, "conduit-bench: idle-flow memory needs glibc's "
	                "mallinfo2 (glibc 2.33 or later); not measured\n");
	return 0;
#else
	unsigned reps = s->repeats < 3 ? s->repeats : 3;
	if (reps == 0)
		reps = 1;
#if defined(__SANITIZE_ADDRESS__)
	fprintf(stderr, "conduit-bench: built with AddressSanitizer, whose "
	                "heap mallinfo2 does not see: heap figures read 0\n");
#endif
	static const char *const fig[2] = {"idle_heap_connecting",
	                                   "idle_heap_accepted"};
	static const char *const label[2] = {
	    "idle flow heap, connecting end (bytes)",
	    "idle flow heap, accepted end (bytes)"};
#ifdef CONDUIT_HAVE_TLS
	/* Raw unix runs, kept as the baseline of the TLS figures. */
	double raw_unix[2][BENCH_MAX_REPEATS] = {{0}};
#endif
	for (int t = TR_UNIX; t <= TR_TCP; t++) {
		for (int side = 0; side < 2; side++) {
			struct bench_figure f = {
			    .transport = tr_name[t],
			    .figure = fig[side],
			    .label = label[side],
			    .unit = "bytes",
			    .baseline = "raw socket",
			    .param_name = "pairs",
			    .param = IDLE_PAIRS,
			    .higher_better = false,
			    .decimals = 0,
			};
			for (unsigned r = 0; r < reps; r++) {
				/* Alternate which variant runs first. */
				for (int k = 0; k < 2; k++) {
					enum api api =
					    (enum api)((k + (int)r) % 2);
					double v = 0;
					if (idle_run(api, (enum tr)t,
					             (enum side)side,
					             IDLE_PAIRS, &v) < 0)
						return fail(
						    "idle %s flows failed",
						    tr_name[t]);
					if (api == API_RAW)
						f.base[r] = v;
					else
						f.conduit[r] = v;
				}
#ifdef CONDUIT_HAVE_TLS
				if (t == TR_UNIX)
					raw_unix[side][r] = f.base[r];
#endif
			}
			f.n = reps;
			bench_emit(&f);
		}
	}
#ifdef CONDUIT_HAVE_TLS
	{
		struct bench_figure f[2];
		for (int side = 0; side < 2; side++)
			f[side] = (struct bench_figure){
			    .transport = "tls+unix",
			    .figure = fig[side],
			    .label = label[side],
			    .unit = "bytes",
			    .baseline = "raw unix socket (no TLS)",
			    .param_name = "pairs",
			    .param = TLS_IDLE_PAIRS,
			    .higher_better = false,
			    .decimals = 0,
			};
		for (unsigned r = 0; r < reps; r++) {
			double c = 0, sv = 0;
			if (tls_idle_run(TLS_IDLE_PAIRS, &c, &sv) < 0)
				return fail("idle tls+unix flows failed");
			f[0].conduit[r] = c;
			f[1].conduit[r] = sv;
			f[0].base[r] = raw_unix[0][r];
			f[1].base[r] = raw_unix[1][r];
		}
		for (int side = 0; side < 2; side++) {
			f[side].n = reps;
			bench_emit(&f[side]);
		}
	}
#endif
	return 0;
#endif
}

/* ------------------------------------------------------------------ */
/* Concurrency: the echo server                                        */

/* Flow i's message: its index in the first four bytes, so no two are
 * alike, then bytes that depend on both index and position. */
static unsigned char msg_byte(size_t flow, size_t k)
{
	if (k < 4)
		return (unsigned char)(flow >> (8 * k));
	uint64_t x = (uint64_t)flow * 0x9e3779b97f4a7c15u +
	             (uint64_t)k * 0xbf58476d1ce4e5b9u;
	x ^= x >> 31;
	x *= 0x94d049bb133111ebu;
	x ^= x >> 29;
	return (unsigned char)x;
}

/* What the server tells the client process when it is done. */
struct srv_report {
	int ok;
	int port;                   /* first message: the tcp port (unix: 0) */
	char msg[400];              /* why it failed */
	long long heap0, heap_full; /* before the first flow, all open */
	long long rss0, rss_full;
	unsigned long long accepted, written;
};

/* One flow of the server: what it still has to send back. */
struct sconn {
	conduit_flow *flow;
	int fd;
	uint16_t len, off;
	unsigned char buf[2 * MSG_LEN];
};

struct server {
	enum api api;
	size_t n;
	uint64_t deadline;
	conduit_ctx *ctx;
	conduit_listener *l;
	int lfd;
	struct sconn *c;
	struct conduit_pollitem *items; /* conduit: [0] listener, k+1 c[k] */
	struct pollfd *pfds;            /* raw: the same layout */
	size_t live;
	unsigned long long accepted, written, closed;
	struct srv_report rep;
};

__attribute__((format(printf, 2, 3))) static int srv_fail(struct server *sv,
                                                          const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(sv->rep.msg, sizeof(sv->rep.msg), fmt, ap);
	va_end(ap);
	return -1;
}

/* Send what c holds; 1 all sent, 0 would block, -1 failed. */
static int srv_flush(struct server *sv, struct sconn *c, size_t k)
{
	while (c->off < c->len) {
		size_t n = 0;
		if (sv->api == API_CONDUIT) {
			int rc = conduit_write(c->flow, c->buf + c->off,
			                       (size_t)(c->len - c->off), &n);
			if (rc == CONDUIT_WANT_WRITE || rc == CONDUIT_WANT_READ)
				return 0;
			if (rc != CONDUIT_OK)
				return srv_fail(
				    sv, "write on flow %zu: %s", k,
				    cerr(conduit_flow_error(c->flow), rc));
		} else {
			ssize_t r =
			    send(c->fd, c->buf + c->off,
			         (size_t)(c->len - c->off), MSG_NOSIGNAL);
			if (r < 0 && (errno == EAGAIN || errno == EINTR))
				return 0;
			if (r < 0)
				return srv_fail(sv, "send on flow %zu: %s", k,
				                strerror(errno));
			n = (size_t)r;
		}
		c->off = (uint16_t)(c->off + n);
		sv->written += n;
	}
	c->off = c->len = 0;
	return 1;
}

/* Forget flow k: the last one takes its place. */
static void srv_drop(struct server *sv, size_t k)
{
	struct sconn *c = &sv->c[k];
	if (sv->api == API_CONDUIT) {
		conduit_close(c->flow);
		conduit_flow_free(c->flow);
	} else {
		close(c->fd);
	}
	sv->live--;
	sv->c[k] = sv->c[sv->live];
	if (sv->api == API_CONDUIT)
		sv->items[k + 1] = sv->items[sv->live + 1];
	else
		sv->pfds[k + 1] = sv->pfds[sv->live + 1];
	sv->closed++;
}

/* Echo on flow k: send what is held, then read more and send it back.
 * 0 on, -1 failed; the flow may have been dropped (end of stream). */
static int srv_serve(struct server *sv, size_t k)
{
	struct sconn *c = &sv->c[k];
	for (int turn = 0; turn < 4; turn++) {
		int r = srv_flush(sv, c, k);
		if (r <= 0)
			return r;
		size_t n = 0;
		if (sv->api == API_CONDUIT) {
			int rc =
			    conduit_read(c->flow, c->buf, sizeof(c->buf), &n);
			if (rc == CONDUIT_WANT_READ || rc == CONDUIT_WANT_WRITE)
				return 0;
			if (rc == CONDUIT_EOF) {
				srv_drop(sv, k);
				return 0;
			}
			if (rc != CONDUIT_OK)
				return srv_fail(
				    sv, "read on flow %zu: %s", k,
				    cerr(conduit_flow_error(c->flow), rc));
		} else {
			ssize_t m = recv(c->fd, c->buf, sizeof(c->buf), 0);
			if (m < 0 && (errno == EAGAIN || errno == EINTR))
				return 0;
			if (m == 0) {
				srv_drop(sv, k);
				return 0;
			}
			if (m < 0)
				return srv_fail(sv, "recv on flow %zu: %s", k,
				                strerror(errno));
			n = (size_t)m;
		}
		c->len = (uint16_t)n;
		c->off = 0;
	}
	return 0;
}

/* Accept what is waiting (a burst at most); each new flow is greeted. */
static int srv_accept(struct server *sv)
{
	for (int i = 0; i < ACCEPT_BURST && sv->accepted < sv->n; i++) {
		struct sconn *c = &sv->c[sv->live];
		memset(c, 0, sizeof(*c));
		c->fd = -1;
		if (sv->api == API_CONDUIT) {
			int rc = conduit_accept(&c->flow, sv->l);
			if (rc == CONDUIT_WANT_READ || rc == CONDUIT_WANT_WRITE)
				return 0;
			if (rc != CONDUIT_OK)
				return srv_fail(
				    sv, "accept: %s",
				    cerr(conduit_listener_error(sv->l), rc));
			sv->items[sv->live + 1] = (struct conduit_pollitem){
			    .flow = c->flow, .events = CONDUIT_POLLIN};
		} else {
			int fd = accept4(sv->lfd, NULL, NULL,
			                 SOCK_CLOEXEC | SOCK_NONBLOCK);
			if (fd < 0 && (errno == EAGAIN || errno == EINTR ||
			               errno == ECONNABORTED))
				return 0;
			if (fd < 0)
				return srv_fail(sv, "accept: %s",
				                strerror(errno));
			/* conduit's tcp backend sets this on accepted flows. */
			int one = 1;
			if (sv->rep.port != 0)
				setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one,
				           sizeof(one));
			c->fd = fd;
			sv->pfds[sv->live + 1] =
			    (struct pollfd){.fd = fd, .events = POLLIN};
		}
		sv->live++;
		sv->accepted++;
		c->buf[0] = GREETING;
		c->len = 1;
		if (srv_flush(sv, c, sv->live - 1) < 0)
			return -1;
	}
	return 0;
}

/* One wait and what it woke; 0 on, -1 failed. */
static int srv_turn(struct server *sv)
{
	size_t live = sv->live;
	bool want_accept = sv->accepted < sv->n;
	int ms = left_ms(sv->deadline, 1000);
	if (sv->api == API_CONDUIT) {
		sv->items[0].events = want_accept ? CONDUIT_POLLIN : 0;
		for (size_t k = 0; k < live; k++)
			sv->items[k + 1].events = sv->c[k].off < sv->c[k].len
			                              ? CONDUIT_POLLOUT
			                              : CONDUIT_POLLIN;
		size_t nready = 0;
		int rc =
		    conduit_poll(sv->ctx, sv->items, live + 1, ms, &nready);
		if (rc != CONDUIT_OK)
			return srv_fail(sv, "conduit_poll: %s",
			                cerr(conduit_ctx_error(sv->ctx), rc));
		/* Backwards: a dropped flow takes the last one's place, which
		 * has been served already. */
		for (size_t k = live; k-- > 0;)
			if (sv->items[k + 1].revents != 0 &&
			    srv_serve(sv, k) < 0)
				return -1;
		if (want_accept && sv->items[0].revents != 0)
			return srv_accept(sv);
		return 0;
	}
	sv->pfds[0].events = want_accept ? POLLIN : 0;
	for (size_t k = 0; k < live; k++)
		sv->pfds[k + 1].events =
		    sv->c[k].off < sv->c[k].len ? POLLOUT : POLLIN;
	int r = poll(sv->pfds, live + 1, ms);
	if (r < 0 && errno != EINTR)
		return srv_fail(sv, "poll: %s", strerror(errno));
	if (r <= 0)
		return 0;
	for (size_t k = live; k-- > 0;)
		if (sv->pfds[k + 1].revents != 0 && srv_serve(sv, k) < 0)
			return -1;
	if (want_accept && sv->pfds[0].revents != 0)
		return srv_accept(sv);
	return 0;
}

/* The server process: listen, send the port, serve until every one of
 * the n flows has come and gone, send the report. */
static int server_main(enum api api, struct addr *a, size_t n,
                       uint64_t deadline, int rep)
{
	struct server sv = {
	    .api = api, .n = n, .deadline = deadline, .lfd = -1};
	int st = -1;
	sv.c = calloc(n, sizeof(*sv.c));
	if (api == API_CONDUIT)
		sv.items = calloc(n + 1, sizeof(*sv.items));
	else
		sv.pfds = calloc(n + 1, sizeof(*sv.pfds));
	if (sv.c == NULL || (sv.items == NULL && sv.pfds == NULL)) {
		srv_fail(&sv, "out of memory for %zu flows", n);
		goto out;
	}
	/* Touch the server's own tables now, so that what grows later is
	 * what serving the flows costs. */
	memset(sv.c, 0xff, n * sizeof(*sv.c));
	if (api == API_CONDUIT) {
		if (conduit_ctx_new(&sv.ctx) != CONDUIT_OK) {
			srv_fail(&sv, "conduit_ctx_new failed");
			goto out;
		}
		int rc = conduit_listen(&sv.l, sv.ctx, a->uri);
		if (rc != CONDUIT_OK) {
			srv_fail(&sv, "listen %s: %s", a->uri,
			         cerr(conduit_ctx_error(sv.ctx), rc));
			goto out;
		}
		memset(sv.items, 0, (n + 1) * sizeof(*sv.items));
		sv.items[0].listener = sv.l;
		if (a->tr == TR_TCP)
			sv.rep.port = uri_port(conduit_listener_uri(sv.l));
	} else {
		sv.lfd = raw_listen(a);
		if (sv.lfd < 0) {
			srv_fail(&sv, "listen %s failed", a->uri);
			goto out;
		}
		memset(sv.pfds, 0, (n + 1) * sizeof(*sv.pfds));
		sv.pfds[0].fd = sv.lfd;
		if (a->tr == TR_TCP)
			sv.rep.port =
			    ntohs(((struct sockaddr_in *)&a->sa)->sin_port);
	}
#ifdef HAVE_MALLINFO2
	/* The heap inherited from the parent has free pages that are still
	 * resident: hand them back, or flows would fill them without the
	 * RSS growing. */
	malloc_trim(0);
#endif
	sv.rep.heap0 = heap_used();
	sv.rep.rss0 = rss_bytes();
	sv.rep.ok = 1;
	if (write(rep, &sv.rep, sizeof(sv.rep)) != (ssize_t)sizeof(sv.rep))
		goto out;
	sv.rep.ok = 0;
	bool measured = false;
	unsigned long long full = (unsigned long long)n * (1 + MSG_LEN);
	for (unsigned long turns = 0; sv.closed < n; turns++) {
		if (tool_now_ms() >= deadline || turns > 100000000ul) {
			srv_fail(
			    &sv,
			    "server timed out: %llu of %zu flows accepted, "
			    "%llu closed, %llu of %llu bytes sent",
			    sv.accepted, n, sv.closed, sv.written, full);
			goto out;
		}
		if (srv_turn(&sv) < 0)
			goto out;
		/* Every flow open and every echo sent: the server at its
		 * fullest. */
		if (!measured && sv.accepted == n && sv.written == full) {
			sv.rep.heap_full = heap_used();
			sv.rep.rss_full = rss_bytes();
			measured = true;
		}
	}
	if (!measured) {
		srv_fail(&sv,
		         "flows ended before every echo was sent: %llu of "
		         "%llu bytes",
		         sv.written, full);
		goto out;
	}
	sv.rep.ok = 1;
	st = 0;
out:
	sv.rep.accepted = sv.accepted;
	sv.rep.written = sv.written;
	for (size_t k = 0; k < sv.live; k++) {
		if (api == API_CONDUIT)
			conduit_flow_free(sv.c[k].flow);
		else
			close(sv.c[k].fd);
	}
	conduit_listener_free(sv.l);
	conduit_ctx_free(sv.ctx);
	if (sv.lfd >= 0)
		close(sv.lfd);
	free(sv.c);
	free(sv.items);
	free(sv.pfds);
	if (write(rep, &sv.rep, sizeof(sv.rep)) != (ssize_t)sizeof(sv.rep))
		st = -1;
	return st;
}

/* ------------------------------------------------------------------ */
/* Concurrency: the clients                                            */

enum cstate { C_CONNECTING, C_GREETING, C_SENDING, C_ECHO, C_DONE };

struct cconn {
	int fd;
	uint8_t state;
	uint8_t sent, got;
};

struct scale_result {
	double setup_ms, round_ms;
	double rss_per_flow, heap_per_flow;
};

static int client_setup(struct cconn *cc, size_t n, const struct addr *a,
                        uint64_t deadline)
{
	size_t act[MAX_OUTSTANDING];
	struct pollfd pf[MAX_OUTSTANDING];
	size_t nact = 0, next = 0, up = 0;
	for (unsigned long turn = 0; up < n; turn++) {
		if (tool_now_ms() >= deadline || turn > 10000000ul)
			return fail(
			    "setting up %s flows timed out: %zu of %zu up, "
			    "%zu connecting or waiting for the greeting",
			    tr_name[a->tr], up, n, nact);
		while (next < n && nact < MAX_OUTSTANDING) {
			int fd = -1;
			int r = raw_connect_start(a, &fd);
			if (r == -EAGAIN)
				break; /* the queue is full: after a wait */
			if (r < 0)
				return fail("connect %s (flow %zu): %s", a->uri,
				            next, strerror(-r));
			cc[next].fd = fd;
			cc[next].state = r == 0 ? C_GREETING : C_CONNECTING;
			act[nact++] = next++;
		}
		for (size_t j = 0; j < nact; j++) {
			pf[j].fd = cc[act[j]].fd;
			pf[j].events =
			    cc[act[j]].state == C_CONNECTING ? POLLOUT : POLLIN;
			pf[j].revents = 0;
		}
		int r = poll(pf, nact, left_ms(deadline, nact > 0 ? 1000 : 1));
		if (r < 0 && errno != EINTR)
			return fail("poll: %s", strerror(errno));
		for (size_t j = nact; r > 0 && j-- > 0;) {
			if (pf[j].revents == 0)
				continue;
			struct cconn *c = &cc[act[j]];
			if (c->state == C_CONNECTING) {
				int err = 0;
				socklen_t len = sizeof(err);
				if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR,
				               &err, &len) < 0)
					err = errno;
				if (err != 0)
					return fail("connect %s (flow %zu): %s",
					            a->uri, act[j],
					            strerror(err));
				c->state = C_GREETING;
				continue;
			}
			unsigned char b = 0;
			ssize_t k = recv(c->fd, &b, 1, 0);
			if (k < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (k < 0)
				return fail(
				    "flow %zu, waiting for the greeting: %s",
				    act[j], strerror(errno));
			if (k == 0 || b != GREETING)
				return fail(
				    "flow %zu: %s instead of the greeting",
				    act[j],
				    k == 0 ? "end of stream" : "a wrong byte");
			c->state = C_SENDING;
			up++;
			act[j] = act[--nact];
		}
	}
	return 0;
}

static int client_round(struct cconn *cc, size_t n, uint64_t deadline)
{
	size_t *pend = malloc(n * sizeof(*pend));
	struct pollfd *pf = malloc(n * sizeof(*pf));
	int rc = -1;
	if (pend == NULL || pf == NULL) {
		fail("out of memory for %zu flows", n);
		goto out;
	}
	size_t npend = n, done = 0;
	for (size_t i = 0; i < n; i++)
		pend[i] = i;
	for (unsigned long turn = 0; done < n; turn++) {
		if (tool_now_ms() >= deadline || turn > 10000000ul) {
			size_t sending = 0;
			for (size_t j = 0; j < npend; j++)
				sending += cc[pend[j]].state == C_SENDING;
			fail("the echo round timed out: %zu of %zu echoes "
			     "complete, %zu still sending, %zu waiting for "
			     "their echo",
			     done, n, sending, npend - sending);
			goto out;
		}
		/* Send, or read what has come; then wait for the rest. */
		for (size_t j = npend; j-- > 0;) {
			size_t i = pend[j];
			struct cconn *c = &cc[i];
			if (turn > 0 && pf[j].revents == 0)
				continue;
			if (c->state == C_SENDING) {
				unsigned char m[MSG_LEN];
				for (size_t k = c->sent; k < MSG_LEN; k++)
					m[k] = msg_byte(i, k);
				ssize_t k =
				    send(c->fd, m + c->sent, MSG_LEN - c->sent,
				         MSG_NOSIGNAL);
				if (k < 0 && errno != EAGAIN &&
				    errno != EINTR) {
					fail("send on flow %zu: %s", i,
					     strerror(errno));
					goto out;
				}
				if (k > 0)
					c->sent = (uint8_t)(c->sent + k);
				if (c->sent == MSG_LEN)
					c->state = C_ECHO;
				continue;
			}
			unsigned char in[MSG_LEN];
			ssize_t k = recv(c->fd, in, MSG_LEN - c->got, 0);
			if (k < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (k <= 0) {
				fail("flow %zu: %s after %u of %d echoed bytes",
				     i,
				     k == 0 ? "end of stream" : strerror(errno),
				     c->got, MSG_LEN);
				goto out;
			}
			for (ssize_t q = 0; q < k; q++) {
				unsigned char want =
				    msg_byte(i, c->got + (size_t)q);
				if (in[q] != want) {
					fail("flow %zu: echoed byte %zu is "
					     "0x%02x, "
					     "sent 0x%02x",
					     i, c->got + (size_t)q, in[q],
					     want);
					goto out;
				}
			}
			c->got = (uint8_t)(c->got + k);
			if (c->got == MSG_LEN) {
				c->state = C_DONE;
				done++;
				pend[j] = pend[--npend];
			}
		}
		/* Order no longer matches pf after the swaps: rebuild it. */
		for (size_t j = 0; j < npend; j++) {
			pf[j].fd = cc[pend[j]].fd;
			pf[j].events =
			    cc[pend[j]].state == C_SENDING ? POLLOUT : POLLIN;
			pf[j].revents = 0;
		}
		if (npend == 0)
			break;
		int r = poll(pf, npend, left_ms(deadline, 1000));
		if (r < 0 && errno != EINTR) {
			fail("poll: %s", strerror(errno));
			goto out;
		}
		if (r < 0)
			for (size_t j = 0; j < npend; j++)
				pf[j].revents = 0;
	}
	rc = 0;
out:
	free(pend);
	free(pf);
	return rc;
}

/* One concurrency run: server api over tr with n flows. */
static int scale_run(enum api api, enum tr tr, size_t n,
                     struct scale_result *res)
{
	struct addr a;
	if (make_addr(&a, tr, "scale.sock") < 0)
		return -1;
	uint64_t deadline = tool_now_ms() + SCALE_DEADLINE_MS;
	int rep[2];
	if (pipe2(rep, O_CLOEXEC) < 0)
		return fail("pipe: %s", strerror(errno));
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		close(rep[0]);
		close(rep[1]);
		return fail("fork: %s", strerror(errno));
	}
	if (pid == 0) {
#ifdef __linux__
		prctl(PR_SET_PDEATHSIG, SIGKILL);
#endif
		alarm(SCALE_DEADLINE_MS / 1000 + 30);
		close(rep[0]);
		_exit(server_main(api, &a, n, deadline, rep[1]) == 0 ? 0 : 1);
	}
	close(rep[1]);

	int rc = -1;
	const char *who = api == API_CONDUIT ? "conduit" : "raw";
	struct cconn *cc = calloc(n, sizeof(*cc));
	struct srv_report sr;
	memset(&sr, 0, sizeof(sr));
	if (cc == NULL) {
		fail("out of memory for %zu flows", n);
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		cc[i].fd = -1;
	if (read_full(rep[0], &sr, sizeof(sr), IO_MS) < 0)
		goto out;
	if (!sr.ok) {
		fail("%s %s server: %s", who, tr_name[tr], sr.msg);
		goto out;
	}
	if (tr == TR_TCP)
		set_port(&a, sr.port);

	double t0 = (tool_now_us() / 1e6);
	if (client_setup(cc, n, &a, deadline) < 0)
		goto out;
	double t1 = (tool_now_us() / 1e6);
	if (client_round(cc, n, deadline) < 0)
		goto out;
	double t2 = (tool_now_us() / 1e6);
	res->setup_ms = (t1 - t0) * 1000.0;
	res->round_ms = (t2 - t1) * 1000.0;
	for (size_t i = 0; i < n; i++) {
		close(cc[i].fd);
		cc[i].fd = -1;
	}
	int wait = left_ms(deadline, SCALE_DEADLINE_MS);
	if (read_full(rep[0], &sr, sizeof(sr), wait > 0 ? wait : 1) < 0)
		goto out;
	if (!sr.ok) {
		fail("%s %s server: %s", who, tr_name[tr], sr.msg);
		goto out;
	}
	res->rss_per_flow = sr.rss0 >= 0 && sr.rss_full >= 0
	                        ? (double)(sr.rss_full - sr.rss0) / (double)n
	                        : -1;
	res->heap_per_flow = (double)(sr.heap_full - sr.heap0) / (double)n;
	rc = 0;
out:
	for (size_t i = 0; cc != NULL && i < n; i++)
		if (cc[i].fd >= 0)
			close(cc[i].fd);
	free(cc);
	close(rep[0]);
	if (reap(pid, rc == 0 ? IO_MS : 1000) < 0 && rc == 0)
		rc = fail("the %s %s server failed", who, tr_name[tr]);
	if (tr == TR_UNIX)
		unlink(a.path);
	return rc;
}

static int scale_section(const struct bench_settings *s)
{
	size_t n = s->quick ? SCALE_FLOWS_QUICK : SCALE_FLOWS;
	unsigned reps = s->quick ? 1 : (s->repeats < 3 ? s->repeats : 3);
	if (reps == 0)
		reps = 1;
	if (s->quick)
		fprintf(stderr,
		        "conduit-bench: --quick: %d concurrent flows (the full "
		        "run uses %d)\n",
		        SCALE_FLOWS_QUICK, SCALE_FLOWS);
	/* The labels say how many flows, and whether this is the quick run. */
	static const char *const lab_full[4] = {
	    "10,000 flows: set up all (ms)",
	    "10,000 flows: one echo round (ms)",
	    "10,000 flows: server RSS per flow (bytes)",
	    "10,000 flows: server heap per flow (bytes)"};
	static const char *const lab_quick[4] = {
	    "2,000 flows (quick): set up all (ms)",
	    "2,000 flows (quick): one echo round (ms)",
	    "2,000 flows (quick): server RSS per flow (bytes)",
	    "2,000 flows (quick): server heap per flow (bytes)"};
	static const char *const fig[4] = {
	    "concurrent_setup", "concurrent_round", "concurrent_server_rss",
	    "concurrent_server_heap"};
	static const char *const unit[4] = {"ms", "ms", "bytes", "bytes"};
	int rc = 0;
	for (int t = TR_UNIX; t <= TR_TCP && rc == 0; t++) {
		struct bench_figure f[4];
		for (int k = 0; k < 4; k++)
			f[k] = (struct bench_figure){
			    .transport = tr_name[t],
			    .figure = fig[k],
			    .label = s->quick ? lab_quick[k] : lab_full[k],
			    .unit = unit[k],
			    .baseline = "raw poll(2) server",
			    .param_name = "flows",
			    .param = n,
			    .higher_better = false,
			    .decimals = k < 2 ? 1 : 0,
			};
		for (unsigned r = 0; r < reps && rc == 0; r++) {
			for (int k = 0; k < 2; k++) {
				enum api api = (enum api)((k + (int)r) % 2);
				struct scale_result res = {0};
				if (scale_run(api, (enum tr)t, n, &res) < 0) {
					rc = fail(
					    "%zu concurrent %s flows failed", n,
					    tr_name[t]);
					break;
				}
				double v[4] = {res.setup_ms, res.round_ms,
				               res.rss_per_flow,
				               res.heap_per_flow};
				for (int q = 0; q < 4; q++) {
					if (api == API_RAW)
						f[q].base[r] = v[q];
					else
						f[q].conduit[r] = v[q];
				}
			}
		}
		for (int k = 0; k < 4 && rc == 0; k++) {
			f[k].n = reps;
			bench_emit(&f[k]);
		}
	}
	return rc;
}

/* ------------------------------------------------------------------ */

int bench_scale(const struct bench_settings *s)
{
	const char *base = getenv("TMPDIR");
	if (base == NULL || base[0] == '\0')
		base = "/tmp";
	int k = snprintf(S_dir, sizeof(S_dir), "%s/conduit-scale-XXXXXX", base);
	if (k < 0 || (size_t)k >= sizeof(S_dir))
		return fail("TMPDIR is too long");
	if (mkdtemp(S_dir) == NULL)
		return fail("mkdtemp %s: %s", S_dir, strerror(errno));
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
