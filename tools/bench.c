/*
 * bench.c - conduit-bench: what conduit costs on top of the system calls it
 * wraps, for the host-socket transports (unix, tcp).
 *
 * Every figure is measured twice in the same run: once through conduit's
 * public API the way an application would use it (URIs,
 * conduit_connect_wait, conduit_accept_wait, conduit_write_all,
 * conduit_read_wait), and once with raw sockets doing the same work the
 * same way (non-blocking descriptors, send/recv, poll(2) when they would
 * block, TCP_NODELAY where conduit sets it).  Both variants use the same
 * process layout (this process is the client, a forked child is the
 * server), the same buffer sizes and the same verification, and go through
 * the same small "link" switch below, so the only difference is the code
 * between the application and the kernel.  The figures:
 *
 *   throughput   one-way, 1/16/64 KiB writes; the child reads 64 KiB at a
 *                time, checks every byte against a pattern of 64-bit words
 *                derived from the offset, and answers with one byte at the
 *                end; the clock runs from the first write to that byte.
 *   latency      64-byte ping-pong with an echoing child, one clock reading
 *                per round trip; median and 99th percentile.
 *   connections  sequential connect + accept + close: the child accepts and
 *                closes, the client waits for the end of stream, closes and
 *                starts the next one.
 *
 * After a warm-up, each repeat runs the two variants back to back, in
 * alternating order (raw first, then conduit first, ...) so neither always
 * meets a cold or a warm machine.  Machine speed drifts over seconds on a
 * shared host, so the comparison is made inside each pair: the ratio
 * printed is the median over the repeats of conduit/raw, beside the median
 * of each variant's runs (the JSON output also has every run).  Client and
 * server are pinned to two different CPUs when there are two, the same for
 * both variants.  This is not a test: it never fails on speed, only when
 * something breaks (a wrong byte, a failed call), and then exits 1 with a
 * message.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <conduit/conduit.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

/* Every wait is bounded; generous so that a loaded machine or valgrind
 * does not turn slowness into a failure. */
#define IO_TIMEOUT_MS 30000
/* A child that outlives this is stuck: SIGALRM ends it. */
#define CHILD_WATCHDOG_S 600
/* The receiver's read size, the same for both variants. */
#define RBUF_SIZE (64 * 1024)
#define PING_SIZE 64
#define MIB       (1024.0 * 1024.0)
/* Room for any URI here: a socket path is under 108 bytes, 3x encoded. */
#define URI_MAX 512

enum api { API_RAW, API_CONDUIT };
enum transport { T_UNIX, T_TCP, T_RESOLVE };
static const char *const api_name[] = {"raw", "conduit"};
static const char *const tr_name[] = {"unix", "tcp", "resolver"};

/* ------------------------------------------------------------------ */
/* Errors: helpers record a message and return -1; the caller adds     */
/* what it was doing and reports it.                                   */

static char errmsg[512];

__attribute__((format(printf, 1, 2))) static int set_err(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(errmsg, sizeof(errmsg), fmt, ap);
	va_end(ap);
	return -1;
}

/* A failed conduit call's message: the object's detail if it has one. */
static const char *cerr(const char *detail, int rc)
{
	return detail != NULL && detail[0] != '\0' ? detail
	                                           : conduit_strerror(rc);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------------ */
/* The byte pattern.  Word i of the stream is i * MUL + ADD (native     */
/* byte order: both ends run on this machine).  Every word differs from */
/* every other, so a lost, repeated or shifted piece shows, and both    */
/* making and checking cost one add per 8 bytes, so verification does   */
/* not dominate what is measured.                                       */

#define PAT_MUL 0x9e3779b97f4a7c15u
#define PAT_ADD 0x5851f42d4c957f2du

static uint64_t pat_word(uint64_t index)
{
	return index * PAT_MUL + PAT_ADD;
}

static unsigned char pat_byte(uint64_t off)
{
	uint64_t w = pat_word(off >> 3);
	unsigned char b[8];
	memcpy(b, &w, sizeof(b));
	return b[off & 7];
}

/* The stream's bytes [off, off + len); both multiples of 8 (every write
 * size is, and writes start at multiples of the write size). */
static void pat_fill(unsigned char *p, size_t len, uint64_t off)
{
	uint64_t w = pat_word(off >> 3);
	for (size_t k = 0; k + 8 <= len; k += 8, w += PAT_MUL)
		memcpy(p + k, &w, 8);
}

/* Check len received bytes that sit at stream offset off (any alignment:
 * reads end wherever the kernel likes).  Returns the offset of the first
 * wrong byte, or UINT64_MAX when all are right. */
static uint64_t pat_check(const unsigned char *p, size_t len, uint64_t off)
{
	size_t k = 0;
	for (; k < len && ((off + k) & 7) != 0; k++)
		if (p[k] != pat_byte(off + k))
			return off + k;
	uint64_t w = pat_word((off + k) >> 3);
	while (len - k >= 8) {
		/* OR the differences of a block together (the compiler can
		 * vectorise that) and look closer only when it is not 0. */
		size_t blk = (len - k) & ~(size_t)7;
		if (blk > 4096)
			blk = 4096;
		uint64_t diff = 0;
		for (size_t j = 0; j < blk; j += 8, w += PAT_MUL) {
			uint64_t got;
			memcpy(&got, p + k + j, 8);
			diff |= got ^ w;
		}
		if (diff != 0)
			for (size_t j = 0; j < blk; j++)
				if (p[k + j] != pat_byte(off + k + j))
					return off + k + j;
		k += blk;
	}
	for (; k < len; k++)
		if (p[k] != pat_byte(off + k))
			return off + k;
	return UINT64_MAX;
}

/* ------------------------------------------------------------------ */
/* Process-wide state                                                  */

static struct {
	char dir[PATH_MAX];  /* private temporary directory */
	char sock[PATH_MAX]; /* dir/bench.sock */
	char unix_uri[URI_MAX];
	conduit_ctx *ctx; /* the client side's context */
	int cpu[2];       /* client and server CPU, -1: not pinned */
} G;

/* Client and server each on their own CPU: without that, how the
 * scheduler happens to place the two processes (same CPU or not, moving
 * between them) changes a figure by more than conduit does.  Both
 * variants run on the same placement.  Linux only; elsewhere the
 * scheduler decides. */
static void choose_cpus(void)
{
	G.cpu[0] = G.cpu[1] = -1;
#ifdef __linux__
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof(set), &set) < 0 || CPU_COUNT(&set) < 2)
		return;
	int n = 0;
	for (int c = 0; c < CPU_SETSIZE && n < 2; c++)
		if (CPU_ISSET(c, &set))
			G.cpu[n++] = c;
#endif
}

static void pin(int cpu)
{
#ifdef __linux__
	if (cpu < 0)
		return;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	/* A hint: if it is refused, the scheduler decides. */
	sched_setaffinity(0, sizeof(set), &set);
#else
	(void)cpu;
#endif
}

/* For the signal handler: what to kill and remove if we are interrupted. */
static volatile sig_atomic_t child_pid;

/* ------------------------------------------------------------------ */
/* Raw sockets: non-blocking, poll(2) when they would block, the same   */
/* flags and options conduit uses, so the comparison is like for like.  */

static int raw_wait(int fd, short events)
{
	struct pollfd p = {.fd = fd, .events = events};
	for (int tries = 0; tries < 1000; tries++) {
		int r = poll(&p, 1, IO_TIMEOUT_MS);
		/* Ready, hung up or failed: the call that follows says. */
		if (r > 0)
			return 0;
		if (r == 0)
			return set_err("timed out after %d ms", IO_TIMEOUT_MS);
		if (errno != EINTR)
			return set_err("poll: %s", strerror(errno));
	}
	return set_err("poll: interrupted too often");
}

static int set_nodelay(int fd)
{
	int one = 1;
	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
		return set_err("TCP_NODELAY: %s", strerror(errno));
	return 0;
}

static int raw_write_all(int fd, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	size_t done = 0;
	/* Each pass either moves at least one byte or waits (bounded). */
	for (size_t pass = 0; done < len; pass++) {
		if (pass > len + 1000)
			return set_err("send: no progress");
		ssize_t n = send(fd, p + done, len - done, MSG_NOSIGNAL);
		if (n >= 0) {
			done += (size_t)n;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return set_err("send: %s", strerror(errno));
		if (raw_wait(fd, POLLOUT) < 0)
			return -1;
	}
	return 0;
}

/* 1 with *got bytes, 0 at end of stream, -1 on error. */
static int raw_read(int fd, void *buf, size_t cap, size_t *got)
{
	for (int pass = 0; pass < 1000; pass++) {
		ssize_t n = recv(fd, buf, cap, 0);
		if (n > 0) {
			*got = (size_t)n;
			return 1;
		}
		if (n == 0)
			return 0;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return set_err("recv: %s", strerror(errno));
		if (raw_wait(fd, POLLIN) < 0)
			return -1;
	}
	return set_err("recv: no progress");
}

/* ------------------------------------------------------------------ */
/* Links: one connection, either variant.  The switch costs both sides  */
/* the same predictable branch.                                         */

struct link {
	enum api api;
	int fd;
	conduit_flow *flow;
};

struct target {
	enum transport tr;
	char uri[URI_MAX];          /* what conduit connects to */
	struct sockaddr_storage sa; /* what raw sockets connect to */
	socklen_t salen;
};

struct listener {
	enum api api;
	enum transport tr;
	int fd;
	conduit_listener *l;
	char uri[URI_MAX];
	int port;
};

static int link_write_all(struct link *k, const void *buf, size_t len)
{
	if (k->api == API_CONDUIT) {
		size_t n = 0;
		int rc =
		    conduit_write_all(k->flow, buf, len, &n, IO_TIMEOUT_MS);
		if (rc != CONDUIT_OK)
			return set_err("conduit_write_all: %s",
			               cerr(conduit_flow_error(k->flow), rc));
		return 0;
	}
	return raw_write_all(k->fd, buf, len);
}

/* 1 with *got bytes, 0 at end of stream, -1 on error. */
static int link_read(struct link *k, void *buf, size_t cap, size_t *got)
{
	if (k->api == API_CONDUIT) {
		int rc =
		    conduit_read_wait(k->flow, buf, cap, got, IO_TIMEOUT_MS);
		if (rc == CONDUIT_OK)
			return 1;
		if (rc == CONDUIT_EOF)
			return 0;
		return set_err("conduit_read_wait: %s",
		               cerr(conduit_flow_error(k->flow), rc));
	}
	return raw_read(k->fd, buf, cap, got);
}

static void link_close(struct link *k)
{
	if (k->api == API_CONDUIT) {
		conduit_close(k->flow); /* sockets have nothing left to send */
		conduit_flow_free(k->flow);
		k->flow = NULL;
	} else if (k->fd >= 0) {
		close(k->fd);
		k->fd = -1;
	}
}

static int raw_connect(const struct target *t, int *out)
{
	/* A full unix listen queue says EAGAIN; conduit retries then too. */
	for (int attempt = 0; attempt < 1000; attempt++) {
		int fd = socket(t->sa.ss_family,
		                SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0)
			return set_err("socket: %s", strerror(errno));
		if (t->tr == T_TCP && set_nodelay(fd) < 0) {
			close(fd);
			return -1;
		}
		const struct sockaddr *sa = (const struct sockaddr *)&t->sa;
		if (connect(fd, sa, t->salen) == 0) {
			*out = fd;
			return 0;
		}
		int e = errno;
		if (e == EINPROGRESS || e == EINTR) {
			if (raw_wait(fd, POLLOUT) < 0) {
				close(fd);
				return -1;
			}
			int soerr = 0;
			socklen_t sl = sizeof(soerr);
			int g =
			    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
			if (g < 0)
				soerr = errno;
			if (soerr == 0) {
				*out = fd;
				return 0;
			}
			e = soerr;
		}
		close(fd);
		if (e != EAGAIN)
			return set_err("connect: %s", strerror(e));
		struct timespec nap = {0, 1000 * 1000};
		nanosleep(&nap, NULL);
	}
	return set_err("connect: listen queue stayed full");
}

static int link_connect(struct link *k, enum api api, const struct target *t)
{
	k->api = api;
	k->fd = -1;
	k->flow = NULL;
	if (api == API_CONDUIT) {
		/* What an application writes: a URI, parsed every time. */
		int rc = conduit_connect_wait(&k->flow, G.ctx, t->uri,
		                              IO_TIMEOUT_MS);
		if (rc != CONDUIT_OK)
			return set_err("conduit_connect_wait %s: %s", t->uri,
			               cerr(conduit_ctx_error(G.ctx), rc));
		return 0;
	}
	return raw_connect(t, &k->fd);
}

static int lsn_open(struct listener *L, enum api api, enum transport tr,
                    conduit_ctx *ctx)
{
	memset(L, 0, sizeof(*L));
	L->api = api;
	L->tr = tr;
	L->fd = -1;
	L->port = -1;
	if (api == API_CONDUIT) {
		const char *uri =
		    tr == T_UNIX ? G.unix_uri : "tcp://127.0.0.1:0";
		int rc = conduit_listen(&L->l, ctx, uri);
		if (rc != CONDUIT_OK)
			return set_err("conduit_listen %s: %s", uri,
			               cerr(conduit_ctx_error(ctx), rc));
		/* The real port is in the listener's URI. */
		snprintf(L->uri, sizeof(L->uri), "%s",
		         conduit_listener_uri(L->l));
		return 0;
	}
	int fd = socket(tr == T_UNIX ? AF_UNIX : AF_INET,
	                SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return set_err("socket: %s", strerror(errno));
	if (tr == T_UNIX) {
		struct sockaddr_un un;
		memset(&un, 0, sizeof(un));
		un.sun_family = AF_UNIX;
		memcpy(un.sun_path, G.sock, strlen(G.sock) + 1);
		unlink(G.sock); /* a leftover of an earlier run */
		if (bind(fd, (struct sockaddr *)&un, sizeof(un)) < 0 ||
		    listen(fd, SOMAXCONN) < 0) {
			set_err("listen %s: %s", G.sock, strerror(errno));
			close(fd);
			return -1;
		}
		snprintf(L->uri, sizeof(L->uri), "%s", G.unix_uri);
	} else {
		struct sockaddr_in in;
		socklen_t sl = sizeof(in);
		int one = 1;
		memset(&in, 0, sizeof(in));
		in.sin_family = AF_INET;
		in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one,
		               sizeof(one)) < 0 ||
		    bind(fd, (struct sockaddr *)&in, sizeof(in)) < 0 ||
		    listen(fd, SOMAXCONN) < 0 ||
		    getsockname(fd, (struct sockaddr *)&in, &sl) < 0) {
			set_err("listen 127.0.0.1: %s", strerror(errno));
			close(fd);
			return -1;
		}
		L->port = ntohs(in.sin_port);
		snprintf(L->uri, sizeof(L->uri), "tcp://127.0.0.1:%d", L->port);
	}
	L->fd = fd;
	return 0;
}

static int lsn_accept(struct listener *L, struct link *k)
{
	k->api = L->api;
	k->fd = -1;
	k->flow = NULL;
	if (L->api == API_CONDUIT) {
		int rc = conduit_accept_wait(&k->flow, L->l, IO_TIMEOUT_MS);
		if (rc != CONDUIT_OK)
			return set_err("conduit_accept_wait: %s",
			               cerr(conduit_listener_error(L->l), rc));
		return 0;
	}
	for (int pass = 0; pass < 1000; pass++) {
		/* The peer's address is asked for, as conduit does. */
		struct sockaddr_storage peer;
		socklen_t pl = sizeof(peer);
		int fd = accept4(L->fd, (struct sockaddr *)&peer, &pl,
		                 SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd >= 0) {
			if (L->tr == T_TCP && set_nodelay(fd) < 0) {
				close(fd);
				return -1;
			}
			k->fd = fd;
			return 0;
		}
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return set_err("accept: %s", strerror(errno));
		if (raw_wait(L->fd, POLLIN) < 0)
			return -1;
	}
	return set_err("accept: no progress");
}

static void lsn_close(struct listener *L)
{
	if (L->api == API_CONDUIT) {
		conduit_listener_free(L->l); /* removes its socket file */
		L->l = NULL;
		return;
	}
	if (L->fd >= 0)
		close(L->fd);
	L->fd = -1;
	if (L->tr == T_UNIX)
		unlink(G.sock);
}

/* ------------------------------------------------------------------ */
/* Children: the server side of every figure.  A child listens, tells   */
/* the parent where (READY), serves, and reports what it saw (DONE) or  */
/* what broke (ERROR) through a pipe.                                   */

enum role { ROLE_SINK, ROLE_ECHO, ROLE_ACCEPT };
enum { MSG_READY = 1, MSG_DONE, MSG_ERROR };

struct job {
	enum role role;
	enum api api;
	enum transport tr;
	uint64_t amount; /* bytes to receive or echo, or connections */
};

/* Smaller than PIPE_BUF, so each report is written in one piece. */
struct report {
	int32_t kind;
	int32_t port;
	uint64_t count;     /* bytes received or echoed, connections accepted */
	uint64_t bad_at;    /* first wrong byte, UINT64_MAX if none */
	char text[URI_MAX]; /* listener URI or error */
};

static int send_report(int fd, const struct report *r)
{
	ssize_t n;
	do
		n = write(fd, r, sizeof(*r));
	while (n < 0 && errno == EINTR);
	return n == (ssize_t)sizeof(*r) ? 0 : -1;
}

static int serve_sink(struct listener *L, const struct job *job,
                      struct report *rep)
{
	struct link k;
	if (lsn_accept(L, &k) < 0)
		return -1;
	unsigned char *buf = malloc(RBUF_SIZE);
	if (buf == NULL) {
		link_close(&k);
		return set_err("out of memory");
	}
	uint64_t off = 0, bad = UINT64_MAX;
	int r = 0;
	size_t n = 0;
	/* Every read brings at least one byte: amount + 1 passes at most. */
	for (uint64_t pass = 0; off < job->amount && r == 0; pass++) {
		int g = link_read(&k, buf, RBUF_SIZE, &n);
		if (g < 0)
			r = -1;
		else if (pass > job->amount)
			r = set_err("more reads than bytes");
		else if (g == 0)
			r = set_err("end of stream after %" PRIu64
			            " of %" PRIu64 " bytes",
			            off, job->amount);
		else if (n > job->amount - off)
			r = set_err("more bytes than were sent");
		else {
			/* The same check on both variants; after the first
			 * wrong byte only counting goes on. */
			if (bad == UINT64_MAX)
				bad = pat_check(buf, n, off);
			off += n;
		}
	}
	if (r == 0) {
		unsigned char ack = 'k';
		r = link_write_all(&k, &ack, 1);
	}
	if (r == 0) {
		int g = link_read(&k, buf, RBUF_SIZE, &n);
		if (g > 0)
			r = set_err("bytes after the end of the stream");
		else if (g < 0)
			r = -1;
	}
	rep->count = off;
	rep->bad_at = bad;
	link_close(&k);
	free(buf);
	return r;
}

static int serve_echo(struct listener *L, const struct job *job,
                      struct report *rep)
{
	struct link k;
	if (lsn_accept(L, &k) < 0)
		return -1;
	unsigned char buf[PING_SIZE];
	uint64_t echoed = 0;
	int r = -1;
	for (uint64_t pass = 0; pass <= job->amount; pass++) {
		size_t n = 0;
		int g = link_read(&k, buf, sizeof(buf), &n);
		if (g < 0)
			break;
		if (g == 0) {
			r = 0;
			break;
		}
		if (link_write_all(&k, buf, n) < 0)
			break;
		echoed += n;
	}
	if (r < 0 && errmsg[0] == '\0')
		set_err("echo: more passes than bytes");
	rep->count = echoed;
	link_close(&k);
	return r;
}

static int serve_accept(struct listener *L, const struct job *job,
                        struct report *rep)
{
	for (uint64_t i = 0; i < job->amount; i++) {
		struct link k;
		if (lsn_accept(L, &k) < 0)
			return -1;
		link_close(&k);
		rep->count++;
	}
	return 0;
}

/* Not inlined, so that a profile of a child can start here:
 * valgrind --tool=callgrind --trace-children=yes --zero-before=child_main */
__attribute__((noinline)) static int child_main(const struct job *job, int wfd)
{
	struct report rep;
	memset(&rep, 0, sizeof(rep));
	rep.bad_at = UINT64_MAX;
	errmsg[0] = '\0';

	/* The parent's context is a copy here; this side has its own. */
	conduit_ctx_free(G.ctx);
	G.ctx = NULL;
	conduit_ctx *ctx = NULL;
	struct listener L;
	int r = -1;
	if (job->api == API_CONDUIT && conduit_ctx_new(&ctx) != CONDUIT_OK)
		set_err("conduit_ctx_new: out of memory");
	else if (lsn_open(&L, job->api, job->tr, ctx) == 0) {
		rep.kind = MSG_READY;
		rep.port = L.port;
		snprintf(rep.text, sizeof(rep.text), "%s", L.uri);
		if (send_report(wfd, &rep) == 0) {
			if (job->role == ROLE_SINK)
				r = serve_sink(&L, job, &rep);
			else if (job->role == ROLE_ECHO)
				r = serve_echo(&L, job, &rep);
			else
				r = serve_accept(&L, job, &rep);
		} else {
			set_err("report pipe: %s", strerror(errno));
		}
		lsn_close(&L);
	}
	rep.kind = r == 0 ? MSG_DONE : MSG_ERROR;
	if (r != 0)
		snprintf(rep.text, sizeof(rep.text), "%s", errmsg);
	send_report(wfd, &rep);
	close(wfd);
	conduit_ctx_free(ctx);
	return r == 0 ? 0 : 1;
}

struct peer {
	pid_t pid;
	int rfd;
};

static int peer_recv(struct peer *p, struct report *rep)
{
	struct pollfd pf = {.fd = p->rfd, .events = POLLIN};
	size_t have = 0;
	memset(rep, 0, sizeof(*rep));
	for (int pass = 0; have < sizeof(*rep) && pass < 1000; pass++) {
		int r = poll(&pf, 1, IO_TIMEOUT_MS);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return set_err("no word from the %s server",
			               r == 0 ? "silent" : "unreachable");
		ssize_t n =
		    read(p->rfd, (char *)rep + have, sizeof(*rep) - have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return set_err("the server process ended unexpectedly");
		have += (size_t)n;
	}
	if (have < sizeof(*rep))
		return set_err("the server's report was cut short");
	rep->text[sizeof(rep->text) - 1] = '\0';
	if (rep->kind == MSG_ERROR)
		return set_err("server: %s", rep->text);
	return 0;
}

/* Something failed on this side: the server may know why (it failed
 * first and closed), so give it a moment to say so, then end it. */
static void peer_abort(struct peer *p)
{
	struct pollfd pf = {.fd = p->rfd, .events = POLLIN};
	struct report rep;
	if (p->rfd >= 0 && poll(&pf, 1, 200) > 0 &&
	    read(p->rfd, &rep, sizeof(rep)) == (ssize_t)sizeof(rep) &&
	    rep.kind == MSG_ERROR) {
		char mine[sizeof(errmsg)];
		rep.text[sizeof(rep.text) - 1] = '\0';
		snprintf(mine, sizeof(mine), "%s", errmsg);
		set_err("%.300s (server: %.200s)", mine, rep.text);
	}
	if (p->pid > 0) {
		int st = 0;
		if (waitpid(p->pid, &st, WNOHANG) == p->pid) {
			/* It ended before we gave up on it: say how. */
			char mine[sizeof(errmsg)];
			snprintf(mine, sizeof(mine), "%s", errmsg);
			if (WIFSIGNALED(st))
				set_err("%.300s (the server was killed by "
				        "signal %d)",
				        mine, WTERMSIG(st));
			else if (WIFEXITED(st) && WEXITSTATUS(st) != 0)
				set_err(
				    "%.300s (the server exited with status %d)",
				    mine, WEXITSTATUS(st));
		} else {
			kill(p->pid, SIGKILL);
			waitpid(p->pid, NULL, 0);
		}
	}
	if (p->rfd >= 0)
		close(p->rfd);
	p->pid = -1;
	p->rfd = -1;
	child_pid = 0;
}

/* Fork a server for job; returns once it listens, with t telling where. */
static int peer_start(struct peer *p, const struct job *job, struct target *t)
{
	int pfd[2];
	p->pid = -1;
	p->rfd = -1;
	memset(t, 0, sizeof(*t));
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return set_err("pipe: %s", strerror(errno));
	pid_t parent = getpid();
	fflush(NULL); /* or the child's copy of stdout could print again */
	pid_t pid = fork();
	if (pid < 0) {
		close(pfd[0]);
		close(pfd[1]);
		return set_err("fork: %s", strerror(errno));
	}
	if (pid == 0) {
		close(pfd[0]);
#ifdef __linux__
		prctl(PR_SET_PDEATHSIG, SIGKILL);
#endif
		if (getppid() != parent)
			_exit(1); /* the parent died before prctl took hold */
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGHUP, SIG_DFL);
		alarm(CHILD_WATCHDOG_S);
		pin(G.cpu[1]);
		_exit(child_main(job, pfd[1]));
	}
	close(pfd[1]);
	p->pid = pid;
	p->rfd = pfd[0];
	child_pid = pid;

	struct report rep;
	if (peer_recv(p, &rep) < 0) {
		peer_abort(p);
		return -1;
	}
	if (rep.kind != MSG_READY) {
		peer_abort(p);
		return set_err("the server did not say where it listens");
	}
	t->tr = job->tr;
	snprintf(t->uri, sizeof(t->uri), "%s", rep.text);
	if (job->tr == T_UNIX) {
		struct sockaddr_un *un = (struct sockaddr_un *)&t->sa;
		un->sun_family = AF_UNIX;
		memcpy(un->sun_path, G.sock, strlen(G.sock) + 1);
		t->salen = sizeof(*un);
	} else {
		struct sockaddr_in *in = (struct sockaddr_in *)&t->sa;
		in->sin_family = AF_INET;
		in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		in->sin_port = htons((uint16_t)(rep.port > 0 ? rep.port : 0));
		t->salen = sizeof(*in);
	}
	return 0;
}

/* Collect the server's final report and reap it. */
static int peer_finish(struct peer *p, struct report *rep)
{
	if (peer_recv(p, rep) < 0) {
		peer_abort(p);
		return -1;
	}
	/* The child closes its end as it exits: wait for that, then reap. */
	struct pollfd pf = {.fd = p->rfd, .events = POLLIN};
	char c;
	for (int pass = 0; pass < 100; pass++) {
		int r = poll(&pf, 1, IO_TIMEOUT_MS);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0 || read(p->rfd, &c, 1) <= 0)
			break;
	}
	close(p->rfd);
	p->rfd = -1;
	int st = 0;
	pid_t w;
	do
		w = waitpid(p->pid, &st, 0);
	while (w < 0 && errno == EINTR);
	p->pid = -1;
	child_pid = 0;
	if (w < 0)
		return set_err("waitpid: %s", strerror(errno));
	if (WIFSIGNALED(st))
		return set_err("the server was killed by signal %d (%s)",
		               WTERMSIG(st), strsignal(WTERMSIG(st)));
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return set_err("the server exited with status %d",
		               WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	return 0;
}

/* ------------------------------------------------------------------ */
/* One run of one figure for one variant.                              */

static int run_throughput(enum api api, enum transport tr, size_t ws,
                          uint64_t total, double *secs)
{
	struct job job = {ROLE_SINK, api, tr, total};
	struct peer p;
	struct target t;
	struct link k;
	if (peer_start(&p, &job, &t) < 0)
		return -1;
	unsigned char *buf = malloc(ws);
	if (buf == NULL) {
		peer_abort(&p);
		return set_err("out of memory");
	}
	if (link_connect(&k, api, &t) < 0)
		goto fail;

	uint64_t t0 = now_ns();
	for (uint64_t off = 0; off < total; off += ws) {
		pat_fill(buf, ws, off);
		if (link_write_all(&k, buf, ws) < 0)
			goto fail_link;
	}
	unsigned char ack;
	size_t n = 0;
	int g = link_read(&k, &ack, 1, &n);
	uint64_t t1 = now_ns();
	if (g <= 0) {
		if (g == 0)
			set_err("end of stream instead of the receiver's ack");
		goto fail_link;
	}
	link_close(&k);
	free(buf);

	struct report rep;
	if (peer_finish(&p, &rep) < 0)
		return -1;
	if (rep.bad_at != UINT64_MAX)
		return set_err(
		    "byte mismatch: the receiver saw a wrong byte at "
		    "offset %" PRIu64,
		    rep.bad_at);
	if (rep.count != total)
		return set_err("the receiver counted %" PRIu64
		               " bytes, %" PRIu64 " were sent",
		               rep.count, total);
	*secs = (double)(t1 - t0) / 1e9;
	return 0;

fail_link:
	link_close(&k);
fail:
	free(buf);
	peer_abort(&p);
	return -1;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Round-trip times in ns go to samples[0..n). */
static int run_latency(enum api api, enum transport tr, unsigned warm,
                       unsigned n, uint64_t *samples)
{
	uint64_t total = (uint64_t)(warm + n) * PING_SIZE;
	struct job job = {ROLE_ECHO, api, tr, total};
	struct peer p;
	struct target t;
	struct link k;
	if (peer_start(&p, &job, &t) < 0)
		return -1;
	if (link_connect(&k, api, &t) < 0) {
		peer_abort(&p);
		return -1;
	}
	unsigned char out[PING_SIZE], in[PING_SIZE];
	for (unsigned i = 0; i < warm + n; i++) {
		pat_fill(out, sizeof(out), (uint64_t)i * PING_SIZE);
		uint64_t t0 = now_ns();
		if (link_write_all(&k, out, sizeof(out)) < 0)
			goto fail;
		size_t got = 0;
		/* At most one pass per byte. */
		for (int pass = 0; got < sizeof(in) && pass < PING_SIZE;
		     pass++) {
			size_t m = 0;
			int g = link_read(&k, in + got, sizeof(in) - got, &m);
			if (g <= 0) {
				if (g == 0)
					set_err("the echo server closed early");
				goto fail;
			}
			got += m;
		}
		uint64_t t1 = now_ns();
		if (got != sizeof(in) || memcmp(in, out, sizeof(in)) != 0) {
			set_err(
			    "byte mismatch: round trip %u came back different",
			    i);
			goto fail;
		}
		if (i >= warm)
			samples[i - warm] = t1 - t0;
	}
	link_close(&k);
	struct report rep;
	if (peer_finish(&p, &rep) < 0)
		return -1;
	if (rep.count != total)
		return set_err("the echo server echoed %" PRIu64
		               " bytes, not %" PRIu64,
		               rep.count, total);
	return 0;

fail:
	link_close(&k);
	peer_abort(&p);
	return -1;
}

static int run_connect(enum api api, enum transport tr, unsigned warm,
                       unsigned n, double *secs)
{
	struct job job = {ROLE_ACCEPT, api, tr, (uint64_t)warm + n};
	struct peer p;
	struct target t;
	if (peer_start(&p, &job, &t) < 0)
		return -1;
	uint64_t t0 = now_ns();
	for (unsigned i = 0; i < warm + n; i++) {
		if (i == warm)
			t0 = now_ns();
		struct link k;
		if (link_connect(&k, api, &t) < 0) {
			peer_abort(&p);
			return -1;
		}
		/* End of stream says the server has accepted and closed. */
		unsigned char c;
		size_t m = 0;
		int g = link_read(&k, &c, 1, &m);
		link_close(&k);
		if (g != 0) {
			if (g > 0)
				set_err("the server sent data");
			peer_abort(&p);
			return -1;
		}
	}
	uint64_t t1 = now_ns();
	struct report rep;
	if (peer_finish(&p, &rep) < 0)
		return -1;
	if (rep.count != (uint64_t)warm + n)
		return set_err("the server accepted %" PRIu64
		               " connections, not %u",
		               rep.count, warm + n);
	*secs = (double)(t1 - t0) / 1e9;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Figures and output                                                  */

struct params {
	bool quick;
	unsigned repeats;    /* pairs of runs (one raw, one conduit) */
	double target_s;     /* aimed-at length of one throughput run */
	uint64_t warm_bytes; /* warm-up and calibration run */
	unsigned rtt_warm, rtt_n;
	unsigned conn_warm, conn_n;
};

static struct params P;

#define MAX_REPEATS 32

/*
 * One figure.  Every repeat is a pair of runs next to each other in time,
 * one per variant; machine speed drifts over seconds here (a shared host),
 * so the pair's own conduit/raw quotient is the fair comparison, and the
 * figure's ratio is the median of those quotients.  The conduit and raw
 * columns are the medians of each variant's runs; the best runs and every
 * pair's quotient go to the JSON output.
 */
struct row {
	enum transport tr;
	char label[40];     /* table: "throughput 1 KiB (MiB/s)" */
	const char *figure; /* JSON: "throughput" */
	const char *unit;
	const char *param_name; /* "write_size", or NULL */
	uint64_t param;
	const char *amount_name;
	uint64_t amount;
	bool higher_better;
	int decimals;
	unsigned n;
	double run[2][MAX_REPEATS]; /* [API_RAW], [API_CONDUIT] */
	double pair[MAX_REPEATS];   /* conduit / raw of each repeat */
	double med[2], best[2];
	double ratio, rmin, rmax;
};

#define MAX_ROWS 32
static struct row rows[MAX_ROWS];
static size_t nrows;
static bool json;

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(const double *v, unsigned n)
{
	double s[MAX_REPEATS];
	if (n == 0)
		return 0;
	memcpy(s, v, n * sizeof(*s));
	qsort(s, n, sizeof(*s), cmp_double);
	return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

static struct row *add_row(enum transport tr, const char *figure,
                           const char *unit, bool higher_better, int decimals)
{
	if (nrows == MAX_ROWS)
		return NULL;
	struct row *r = &rows[nrows++];
	memset(r, 0, sizeof(*r));
	r->tr = tr;
	r->figure = figure;
	r->unit = unit;
	r->higher_better = higher_better;
	r->decimals = decimals;
	return r;
}

/* Record repeat i's two runs. */
static void row_add(struct row *r, double raw, double cdt)
{
	if (r->n == MAX_REPEATS)
		return;
	r->run[API_RAW][r->n] = raw;
	r->run[API_CONDUIT][r->n] = cdt;
	r->pair[r->n] = raw > 0 ? cdt / raw : 0;
	r->n++;
}

static void row_finish(struct row *r)
{
	for (int a = 0; a < 2; a++) {
		r->med[a] = median(r->run[a], r->n);
		r->best[a] = r->n ? r->run[a][0] : 0;
		for (unsigned i = 1; i < r->n; i++)
			if (r->higher_better ? r->run[a][i] > r->best[a]
			                     : r->run[a][i] < r->best[a])
				r->best[a] = r->run[a][i];
	}
	r->ratio = median(r->pair, r->n);
	r->rmin = r->rmax = r->n ? r->pair[0] : 0;
	for (unsigned i = 1; i < r->n; i++) {
		if (r->pair[i] < r->rmin)
			r->rmin = r->pair[i];
		if (r->pair[i] > r->rmax)
			r->rmax = r->pair[i];
	}
	if (json)
		return;
	char range[32];
	snprintf(range, sizeof(range), "%.2f..%.2f", r->rmin, r->rmax);
	printf("%-9s  %-25s %11.*f %11.*f %6.3f  %-10s\n", tr_name[r->tr],
	       r->label, r->decimals, r->med[API_CONDUIT], r->decimals,
	       r->med[API_RAW], r->ratio, range);
	fflush(stdout);
}

/* The order of the two variants in repeat i: raw first in even repeats,
 * conduit first in odd ones, so neither always runs on a cold or a warm
 * machine. */
static enum api turn(unsigned i, int k)
{
	return ((i + (unsigned)k) & 1) ? API_CONDUIT : API_RAW;
}

static int fail_figure(enum transport tr, const char *what, enum api api)
{
	fprintf(stderr, "conduit-bench: %s %s (%s): %s\n", tr_name[tr], what,
	        api_name[api], errmsg);
	return -1;
}

static int measure_throughput(enum transport tr, size_t ws)
{
	char what[40];
	snprintf(what, sizeof(what), "throughput %u KiB",
	         (unsigned)(ws / 1024));

	/* Warm-up, which also tells how many bytes make a run of about
	 * target_s at the faster variant's pace; both variants then move
	 * exactly that many in every run. */
	uint64_t warm = (P.warm_bytes + ws - 1) / ws * ws;
	double rate = 0;
	for (int k = 0; k < 2; k++) {
		double s = 0;
		if (run_throughput(turn(0, k), tr, ws, warm, &s) < 0)
			return fail_figure(tr, what, turn(0, k));
		if (s > 0 && (double)warm / s > rate)
			rate = (double)warm / s;
	}
	double want = rate * P.target_s;
	if (want < (double)warm)
		want = (double)warm;
	if (want > 64.0 * 1024 * MIB)
		want = 64.0 * 1024 * MIB;
	uint64_t total = ((uint64_t)want + ws - 1) / ws * ws;

	struct row *r = add_row(tr, "throughput", "MiB/s", true, 1);
	if (r == NULL) {
		set_err("too many figures");
		return fail_figure(tr, what, API_RAW);
	}
	snprintf(r->label, sizeof(r->label), "throughput %u KiB (MiB/s)",
	         (unsigned)(ws / 1024));
	r->param_name = "write_size";
	r->param = ws;
	r->amount_name = "bytes_per_run";
	r->amount = total;
	for (unsigned i = 0; i < P.repeats; i++) {
		double v[2] = {0, 0};
		for (int k = 0; k < 2; k++) {
			enum api a = turn(i, k);
			double s = 0;
			if (run_throughput(a, tr, ws, total, &s) < 0)
				return fail_figure(tr, what, a);
			v[a] = s > 0 ? (double)total / MIB / s : 0;
		}
		row_add(r, v[API_RAW], v[API_CONDUIT]);
	}
	row_finish(r);
	return 0;
}

static int measure_latency(enum transport tr)
{
	struct row *rm = add_row(tr, "latency_median", "us", false, 2);
	struct row *rp = add_row(tr, "latency_p99", "us", false, 2);
	uint64_t *s = calloc(P.rtt_n, sizeof(*s));
	if (rm == NULL || rp == NULL || s == NULL) {
		free(s);
		set_err(s == NULL ? "out of memory" : "too many figures");
		return fail_figure(tr, "latency", API_RAW);
	}
	snprintf(rm->label, sizeof(rm->label), "latency %d B median (us)",
	         PING_SIZE);
	snprintf(rp->label, sizeof(rp->label), "latency %d B p99 (us)",
	         PING_SIZE);
	struct row *both[2] = {rm, rp};
	for (int j = 0; j < 2; j++) {
		both[j]->param_name = "message_size";
		both[j]->param = PING_SIZE;
		both[j]->amount_name = "round_trips";
		both[j]->amount = P.rtt_n;
	}
	for (unsigned i = 0; i < P.repeats; i++) {
		double med[2] = {0, 0}, p99[2] = {0, 0};
		for (int k = 0; k < 2; k++) {
			enum api a = turn(i, k);
			if (run_latency(a, tr, P.rtt_warm, P.rtt_n, s) < 0) {
				free(s);
				return fail_figure(tr, "latency", a);
			}
			qsort(s, P.rtt_n, sizeof(*s), cmp_u64);
			med[a] = (double)s[P.rtt_n / 2] / 1000.0;
			p99[a] = (double)s[(size_t)P.rtt_n * 99 / 100] / 1000.0;
		}
		row_add(rm, med[API_RAW], med[API_CONDUIT]);
		row_add(rp, p99[API_RAW], p99[API_CONDUIT]);
	}
	free(s);
	row_finish(rm);
	row_finish(rp);
	return 0;
}

static int measure_connect(enum transport tr)
{
	struct row *r = add_row(tr, "connect_rate", "1/s", true, 0);
	if (r == NULL) {
		set_err("too many figures");
		return fail_figure(tr, "connections", API_RAW);
	}
	snprintf(r->label, sizeof(r->label), "connect+accept+close (/s)");
	r->amount_name = "connections";
	r->amount = P.conn_n;
	for (unsigned i = 0; i < P.repeats; i++) {
		double v[2] = {0, 0};
		for (int k = 0; k < 2; k++) {
			enum api a = turn(i, k);
			double s = 0;
			if (run_connect(a, tr, P.conn_warm, P.conn_n, &s) < 0)
				return fail_figure(tr, "connections", a);
			v[a] = s > 0 ? P.conn_n / s : 0;
		}
		row_add(r, v[API_RAW], v[API_CONDUIT]);
	}
	row_finish(r);
	return 0;
}

/*
 * Resolutions per second of a URI that rules resolve without DNS
 * (https://logger.xen/ through "map *.xen ..."), beside the baseline of
 * parsing the resulting endpoint URI alone: the ratio is what the service
 * table, the rule and the TLS merge cost on top of one parse.  One
 * process, no peer.
 */
#define RESOLVE_URI "https://logger.xen/"
#define RESOLVE_RULE "map *.xen unix-abstract://xen-{label}-{scheme}\n"

static int resolve_loop(enum api a, conduit_ctx *ctx, const char *result,
                        unsigned n, double *secs)
{
	uint64_t t0 = now_ns();
	for (unsigned i = 0; i < n; i++) {
		conduit_endpoint *ep = NULL;
		int rc = a == API_CONDUIT
		                 ? conduit_resolve(&ep, ctx, RESOLVE_URI)
		                 : conduit_endpoint_parse(&ep, result, NULL, 0);
		if (rc != CONDUIT_OK) {
			set_err("%s", conduit_ctx_error(ctx));
			return -1;
		}
		conduit_endpoint_free(ep);
	}
	*secs = (double)(now_ns() - t0) / 1e9;
	return 0;
}

static int measure_resolve(void)
{
	struct row *r = add_row(T_RESOLVE, "resolve_rate", "1/s", true, 0);
	conduit_ctx *ctx = NULL;
	if (r == NULL || conduit_ctx_new(&ctx) != CONDUIT_OK ||
	    conduit_ctx_add_rules(ctx, RESOLVE_RULE, "bench") != CONDUIT_OK) {
		set_err("cannot set up the resolver context");
		conduit_ctx_free(ctx);
		return fail_figure(T_RESOLVE, "resolutions", API_CONDUIT);
	}
	snprintf(r->label, sizeof(r->label), "rule-based resolve (/s)");
	conduit_endpoint *ep = NULL;
	if (conduit_resolve(&ep, ctx, RESOLVE_URI) != CONDUIT_OK) {
		set_err("%s", conduit_ctx_error(ctx));
		conduit_ctx_free(ctx);
		return fail_figure(T_RESOLVE, "resolutions", API_CONDUIT);
	}
	char result[256];
	snprintf(result, sizeof(result), "%s", conduit_endpoint_uri(ep));
	conduit_endpoint_free(ep);
	unsigned n = P.quick ? 50000 : 200000;
	r->amount_name = "resolutions";
	r->amount = n;
	double s = 0;
	for (int k = 0; k < 2; k++) /* warm-up */
		if (resolve_loop(turn(0, k), ctx, result, n / 10, &s) < 0) {
			conduit_ctx_free(ctx);
			return fail_figure(T_RESOLVE, "resolutions", turn(0, k));
		}
	for (unsigned i = 0; i < P.repeats; i++) {
		double v[2] = {0, 0};
		for (int k = 0; k < 2; k++) {
			enum api a = turn(i, k);
			if (resolve_loop(a, ctx, result, n, &s) < 0) {
				conduit_ctx_free(ctx);
				return fail_figure(T_RESOLVE, "resolutions", a);
			}
			v[a] = s > 0 ? n / s : 0;
		}
		row_add(r, v[API_RAW], v[API_CONDUIT]);
	}
	conduit_ctx_free(ctx);
	row_finish(r);
	return 0;
}

static void json_str(const char *s)
{
	putchar('"');
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static void json_list(const double *v, unsigned n, int decimals)
{
	putchar('[');
	for (unsigned i = 0; i < n; i++)
		printf("%s%.*f", i ? ", " : "", decimals, v[i]);
	putchar(']');
}

static void print_json(const struct utsname *u, long cpus, const char *only)
{
	printf("{\n  \"program\": \"conduit-bench\",\n  \"conduit_version\": "
	       "\"%d.%d.%d\",\n",
	       CONDUIT_VERSION_MAJOR, CONDUIT_VERSION_MINOR,
	       CONDUIT_VERSION_PATCH);
	printf("  \"machine\": {\"sysname\": ");
	json_str(u->sysname);
	printf(", \"release\": ");
	json_str(u->release);
	printf(", \"arch\": ");
	json_str(u->machine);
	printf(", \"cpus\": %ld, \"client_cpu\": %d, \"server_cpu\": %d},\n",
	       cpus, G.cpu[0], G.cpu[1]);
	printf("  \"mode\": \"%s\",\n  \"only\": ", P.quick ? "quick" : "full");
	if (only != NULL)
		json_str(only);
	else
		printf("null");
	printf(",\n  \"repeats\": %u,\n", P.repeats);
	printf("  \"method\": \"each repeat runs raw and conduit back to back "
	       "(order alternating); conduit and raw are the medians of the "
	       "runs, best_* the best runs, ratio the median of the repeats' "
	       "conduit/raw quotients (pairs)\",\n  \"results\": [");
	for (size_t i = 0; i < nrows; i++) {
		const struct row *r = &rows[i];
		int d = r->decimals + 2;
		printf("%s\n    {\"transport\": \"%s\", \"figure\": \"%s\", "
		       "\"unit\": \"%s\", \"better\": \"%s\", ",
		       i ? "," : "", tr_name[r->tr], r->figure, r->unit,
		       r->higher_better ? "higher" : "lower");
		if (r->param_name != NULL)
			printf("\"%s\": %" PRIu64 ", ", r->param_name,
			       r->param);
		printf("\"%s\": %" PRIu64 ",\n     \"conduit\": %.*f, \"raw\": "
		       "%.*f, \"ratio\": %.4f, \"ratio_min\": %.4f, "
		       "\"ratio_max\": %.4f,\n     \"best_conduit\": %.*f, "
		       "\"best_raw\": %.*f,\n     \"runs_conduit\": ",
		       r->amount_name, r->amount, d, r->med[API_CONDUIT], d,
		       r->med[API_RAW], r->ratio, r->rmin, r->rmax, d,
		       r->best[API_CONDUIT], d, r->best[API_RAW]);
		json_list(r->run[API_CONDUIT], r->n, d);
		printf(",\n     \"runs_raw\": ");
		json_list(r->run[API_RAW], r->n, d);
		printf(",\n     \"pairs\": ");
		json_list(r->pair, r->n, 4);
		printf("}");
	}
	printf("\n  ]\n}\n");
}

/* ------------------------------------------------------------------ */
/* Set-up and clean-up                                                 */

static int rm_entry(const char *path, const struct stat *sb, int flag,
                    struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

static void cleanup(void)
{
	conduit_ctx_free(G.ctx);
	G.ctx = NULL;
	if (G.dir[0] != '\0')
		nftw(G.dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
	G.dir[0] = '\0';
}

/* Interrupted: kill the server, remove what we made, die of the signal.
 * Only async-signal-safe calls. */
static void on_signal(int sig)
{
	pid_t pid = (pid_t)child_pid;
	if (pid > 0)
		kill(pid, SIGKILL);
	if (G.sock[0] != '\0')
		unlink(G.sock);
	if (G.dir[0] != '\0')
		rmdir(G.dir);
	signal(sig, SIG_DFL);
	raise(sig);
}

/* unix:// + the path, percent-encoding anything not plainly safe. */
static void make_unix_uri(void)
{
	static const char hex[] = "0123456789ABCDEF";
	char *o = G.unix_uri;
	o += sprintf(o, "unix://");
	for (const char *s = G.sock; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || strchr("-._~/", c) != NULL) {
			*o++ = (char)c;
		} else {
			*o++ = '%';
			*o++ = hex[c >> 4];
			*o++ = hex[c & 15];
		}
	}
	*o = '\0';
}

static int make_tmpdir(void)
{
	const char *base = getenv("TMPDIR");
	if (base == NULL || base[0] == '\0')
		base = "/tmp";
	size_t bl = strlen(base);
	while (bl > 1 && base[bl - 1] == '/')
		bl--;
	int n = snprintf(G.dir, sizeof(G.dir), "%.*s/conduit-bench.XXXXXX",
	                 (int)bl, base);
	if (n < 0 || (size_t)n >= sizeof(G.dir)) {
		G.dir[0] = '\0';
		return set_err("TMPDIR is too long");
	}
	if (mkdtemp(G.dir) == NULL) {
		set_err("mkdtemp %s: %s", G.dir, strerror(errno));
		G.dir[0] = '\0';
		return -1;
	}
	n = snprintf(G.sock, sizeof(G.sock), "%s/bench.sock", G.dir);
	struct sockaddr_un un;
	if (n < 0 || (size_t)n + 1 > sizeof(un.sun_path))
		return set_err("socket path %s is longer than a unix socket "
		               "allows; set TMPDIR to a shorter directory",
		               G.sock);
	make_unix_uri();
	return 0;
}

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: conduit-bench [--quick] [--json] [--only unix|tcp|resolver]\n"
	    "\n"
	    "Measures conduit against raw socket calls doing the same work in\n"
	    "the same run: one-way throughput (1, 16, 64 KiB writes), 64-byte\n"
	    "round-trip latency, and connections per second, over unix and "
	    "tcp\n"
	    "(loopback), and rule-based resolutions per second.  Prints\n"
	    "conduit, raw and conduit/raw for each figure.\n"
	    "\n"
	    "  --quick        fewer and shorter runs (well under a minute)\n"
	    "  --json         print one JSON object instead of the table\n"
	    "  --only T       only T: unix, tcp or resolver\n"
	    "  --help         this text\n"
	    "\n"
	    "Exits 0 whatever the figures; 1 if something broke (a wrong "
	    "byte,\n"
	    "a failed call), 2 on a usage error.\n");
}

int main(int argc, char **argv)
{
	const char *only = NULL;
	bool quick = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--quick") == 0)
			quick = true;
		else if (strcmp(a, "--json") == 0)
			json = true;
		else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			return 0;
		} else if (strcmp(a, "--only") == 0 && i + 1 < argc)
			only = argv[++i];
		else if (strncmp(a, "--only=", 7) == 0)
			only = a + 7;
		else {
			fprintf(stderr,
			        "conduit-bench: unknown or incomplete "
			        "option '%s'\n",
			        a);
			usage(stderr);
			return 2;
		}
	}
	if (only != NULL && strcmp(only, "unix") != 0 &&
	    strcmp(only, "tcp") != 0 && strcmp(only, "resolver") != 0) {
		fprintf(stderr,
		        "conduit-bench: --only takes unix, tcp or resolver, not "
		        "'%s'\n",
		        only);
		return 2;
	}

	if (quick)
		P = (struct params){.quick = true,
		                    .repeats = 5,
		                    .target_s = 0.08,
		                    .warm_bytes = 8 * 1024 * 1024,
		                    .rtt_warm = 200,
		                    .rtt_n = 2000,
		                    .conn_warm = 50,
		                    .conn_n = 500};
	else
		P = (struct params){.quick = false,
		                    .repeats = 11,
		                    .target_s = 0.2,
		                    .warm_bytes = 32 * 1024 * 1024,
		                    .rtt_warm = 1000,
		                    .rtt_n = 10000,
		                    .conn_warm = 200,
		                    .conn_n = 2000};

	struct utsname u;
	if (uname(&u) < 0)
		memset(&u, 0, sizeof(u));
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	choose_cpus();
	pin(G.cpu[0]);

	if (make_tmpdir() < 0) {
		fprintf(stderr, "conduit-bench: %s\n", errmsg);
		cleanup();
		return 1;
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);

	if (conduit_ctx_new(&G.ctx) != CONDUIT_OK) {
		fprintf(stderr,
		        "conduit-bench: conduit_ctx_new: out of memory\n");
		cleanup();
		return 1;
	}

	if (!json) {
		printf(
		    "conduit-bench: conduit %d.%d.%d on %s %s %s, %ld CPUs%s\n",
		    CONDUIT_VERSION_MAJOR, CONDUIT_VERSION_MINOR,
		    CONDUIT_VERSION_PATCH, u.sysname, u.release, u.machine,
		    cpus, quick ? " (quick)" : "");
		if (G.cpu[0] >= 0)
			printf("client on CPU %d, server on CPU %d; ", G.cpu[0],
			       G.cpu[1]);
		printf("%u repeats, each a raw and a conduit run back\n"
		       "to back.  conduit, raw: medians of the runs; ratio: "
		       "median of the repeats'\nconduit/raw; range: lowest and "
		       "highest of those.  Throughput and\nconnections: higher "
		       "is better; latency: lower is better.\n\n",
		       P.repeats);
		printf("%-9s  %-25s %11s %11s %6s  %-10s\n", "transport",
		       "figure", "conduit", "raw", "ratio", "range");
		printf("%-9s  %-25s %11s %11s %6s  %-10s\n", "---------",
		       "-------------------------", "----------", "----------",
		       "------", "----------");
		fflush(stdout);
	}

	static const size_t sizes[] = {1024, 16 * 1024, 64 * 1024};
	int rc = 0;
	for (int tr = T_UNIX; tr <= T_TCP && rc == 0; tr++) {
		if (only != NULL && strcmp(only, tr_name[tr]) != 0)
			continue;
		for (size_t i = 0;
		     i < sizeof(sizes) / sizeof(sizes[0]) && rc == 0; i++)
			rc = measure_throughput((enum transport)tr, sizes[i]);
		if (rc == 0)
			rc = measure_latency((enum transport)tr);
		if (rc == 0)
			rc = measure_connect((enum transport)tr);
	}
	if (rc == 0 && (only == NULL || strcmp(only, "resolver") == 0))
		rc = measure_resolve();
	if (rc == 0 && !json)
		printf("\nresolver: %s through a *.xen rule; its baseline "
		       "(raw) is\nparsing the resulting endpoint URI alone.\n",
		       RESOLVE_URI);
	cleanup();
	if (rc != 0)
		return 1;
	if (json)
		print_json(&u, cpus, only);
	return 0;
}
