/*
 * vchan.c - conduit-bench's vchan figures: Xen vchan through
 * conduit's public API, beside the raw libxenvchan doing the same work.
 *
 * Both run the real libxenvchan over the hypervisor emulation in
 * stubs/xen, which must be on the library path from the start of the
 * process (it stands in for libxengnttab, libxenevtchn and libxenstore).
 * So this section does not measure in the process that prints the table:
 * bench_vchan() starts this same program again (/proc/self/exe) with
 * CONDUIT_BENCH_ROLE=vchan, the emulation's directory on LD_LIBRARY_PATH
 * ($CONDUIT_XEN_EMULATION, else the one the build made), a private host
 * directory in CONDUIT_XEN_DIR and CONDUIT_XEN_DOMID=2; main() hands that
 * process to bench_role_main().  That worker is domain 2, the client of
 * every figure; for each run it forks a server, domain 1, pinned to
 * another CPU, as the host-socket sections do.  The worker sends each
 * finished figure back through a pipe, and the parent hands it to
 * bench_emit().
 *
 *   conduit   vchan://1/bench URIs: conduit_listen on
 *             vchan://2/bench?read-ring=R&write-ring=R (R below),
 *             conduit_connect_wait / conduit_accept_wait,
 *             conduit_write_all / conduit_read_wait / conduit_close_wait
 *             (conduit_poll underneath), the calls sock_link.c uses for
 *             sockets.
 *   raw       libxenvchan_server_init with the same ring sizes,
 *             libxenvchan_client_init, non-blocking libxenvchan_write /
 *             libxenvchan_read, and poll(2) on libxenvchan_fd_for_select
 *             then libxenvchan_wait when they would block.
 *
 * Not quite the same bytes: conduit frames the stream (a 4-byte length
 * before each chunk it writes, and an end mark), because vchan has no
 * half-close and cannot tell a clean close from a dead peer.  The raw
 * variant sends the bare payload and takes the closed ring as the end.
 * The framing is part of what conduit costs, so it stays in the figures.
 * Connection set-up also differs in what conduit adds on purpose: a
 * client claims a ring in a XenStore transaction before mapping it, and
 * the server hides a taken ring and arms the next one in accept.  The raw
 * server does the least that serves clients one after another correctly
 * (hide the taken ring's keys, arm the next ring, then close the old one).
 *
 * Figures, as for sockets (sock_run.c): one-way throughput with 1, 16 and 64
 * KiB writes (the server reads 64 KiB at a time, checks every byte against a
 * pattern and answers one byte at the end; the clock runs from the first
 * write to that byte), 64-byte round trips with an echoing server (median
 * and 99th percentile), and sequential connect + accept + close.
 *
 * Each figure asks for 64 KiB rings both ways (16 granted pages each),
 * and the 64 KiB writes and the round trips are measured again with 2 KiB
 * asked for both ways: libxenvchan then puts the server's read ring (the
 * client's writes) in the shared control page, and since that page has
 * room for only one 2 KiB ring, the other direction gets one page of its
 * own (4 KiB).  A 64 KiB write then crosses the ring in many pieces, each
 * a wake-up of the other side, which is the cost those rows show.
 * Both variants ask libxenvchan_server_init for the same sizes (conduit
 * hands the URI's read-ring and write-ring to it unchanged).
 */
#include "bench.h"
#include "link.h"

#include <conduit/conduit.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libxenvchan.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <xenstore.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#define VB_ROLE_ENV "CONDUIT_BENCH_ROLE"
#define VB_ARGS_ENV "CONDUIT_BENCH_VCHAN"
/* Every wait is bounded; generous for valgrind and a loaded machine. */
#define VB_TIMEOUT_MS 30000
/* A server that outlives this is stuck: SIGALRM ends it.  The worker,
 * which runs every figure, gets longer. */
#define VB_WATCHDOG_S        600
#define VB_WORKER_WATCHDOG_S 3600
#define LINK_RBUF            (64 * 1024)
#define LINK_PING            64
#define VB_MIB               (1024.0 * 1024.0)
/* The ring sizes asked for, the same both ways and in both variants:
 * large rings for every figure, and libxenvchan's in-page 2 KiB for a
 * second look at 64 KiB writes and round trips.  The URI grammar takes
 * 1024 to 1048576 (read-ring, write-ring). */
#define VB_RING_LARGE  65536
#define VB_RING_PAGE   2048
#define VB_CLIENT_DOM  2
#define VB_SERVER_DOM  1
#define VB_LISTEN_FMT  "vchan://2/bench?read-ring=%u&write-ring=%u"
#define VB_CONNECT_URI "vchan://1/bench"
#define VB_RAW_PATH    "/local/domain/1/data/vchan/2/rawb"

enum vb_api { VB_RAW, VB_CONDUIT };
static const char *const vb_api_name[] = {"raw", "conduit"};

static void vb_nap_us(long us)
{
	struct timespec ts = {us / 1000000, (us % 1000000) * 1000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* ------------------------------------------------------------------ */
/* The figures the worker sends back, by index.                        */

struct vb_fig {
	const char *figure, *label, *unit, *param_name;
	uint64_t param;
	bool higher_better;
	int decimals;
	unsigned ring; /* both ring sizes asked for */
};

enum {
	VF_TPUT1,
	VF_TPUT16,
	VF_TPUT64,
	VF_RTT_MED,
	VF_RTT_P99,
	VF_TPUT64_PAGE,
	VF_RTT_MED_PAGE,
	VF_RTT_P99_PAGE,
	VF_CONN,
	VF_N
};

/* The labels carry the ring size: two rows share figure and param. */
#define TPUT(kib, ring, rings)                                                 \
	{                                                                      \
		"throughput",                                                  \
		    "throughput " #kib " KiB, " rings " rings (MiB/s)",        \
		    "MiB/s", "write_size", kib * 1024, true, 1, ring           \
	}
#define RTT(fig, what, ring, rings)                                            \
	{                                                                      \
		fig, "latency 64 B " what ", " rings " rings (us)", "us",      \
		    "message_size", LINK_PING, false, 2, ring                  \
	}
static const struct vb_fig vb_figs[VF_N] = {
    TPUT(1, VB_RING_LARGE, "64 KiB"),
    TPUT(16, VB_RING_LARGE, "64 KiB"),
    TPUT(64, VB_RING_LARGE, "64 KiB"),
    RTT("latency_median", "median", VB_RING_LARGE, "64 KiB"),
    RTT("latency_p99", "p99", VB_RING_LARGE, "64 KiB"),
    TPUT(64, VB_RING_PAGE, "2 KiB"),
    RTT("latency_median", "median", VB_RING_PAGE, "2 KiB"),
    RTT("latency_p99", "p99", VB_RING_PAGE, "2 KiB"),
    {"connect_rate", "connect+accept+close, 64 KiB rings (/s)", "1/s", NULL, 0,
     true, 0, VB_RING_LARGE},
};
#undef TPUT
#undef RTT

/* Worker to parent; smaller than PIPE_BUF, so written in one piece. */
enum { VM_FIGURE = 1, VM_DONE, VM_ERROR };
struct vb_msg {
	int32_t kind;
	int32_t fig;
	uint32_t n;
	double base[BENCH_MAX_REPEATS];
	double conduit[BENCH_MAX_REPEATS];
	char text[400];
};

static int vb_send(int fd, const void *m, size_t len)
{
	ssize_t n;
	do
		n = write(fd, m, len);
	while (n < 0 && errno == EINTR);
	return n == (ssize_t)len ? 0 : -1;
}

/* Read exactly len bytes within VB_TIMEOUT_MS per piece: 1, 0 at end of
 * file before any byte, -1 (message set). */
static int vb_recv(int fd, void *m, size_t len, int timeout_ms)
{
	size_t have = 0;
	struct pollfd p = {.fd = fd, .events = POLLIN};
	for (int pass = 0; have < len && pass < 1000; pass++) {
		int r = poll(&p, 1, timeout_ms);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return bench_fail("no word for %d ms", timeout_ms);
		ssize_t k = read(fd, (char *)m + have, len - have);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return have == 0 ? 0
			                 : bench_fail("a report was cut short");
		have += (size_t)k;
	}
	return have == len ? 1 : bench_fail("a report was cut short");
}

/* ------------------------------------------------------------------ */
/* CPUs: the client on one, the server on another, for both variants.  */

static int vb_cpu[2] = {-1, -1};

static void vb_choose_cpus(void)
{
#ifdef __linux__
	/* The parent may have pinned itself (and so us) to one CPU: ask
	 * for every online CPU back, then take two of what we got. */
	long online = sysconf(_SC_NPROCESSORS_ONLN);
	cpu_set_t set;
	CPU_ZERO(&set);
	for (long c = 0; c < online && c < CPU_SETSIZE; c++)
		CPU_SET((int)c, &set);
	sched_setaffinity(0, sizeof(set), &set);
	if (sched_getaffinity(0, sizeof(set), &set) < 0 || CPU_COUNT(&set) < 2)
		return;
	int n = 0;
	for (int c = 0; c < CPU_SETSIZE && n < 2; c++)
		if (CPU_ISSET(c, &set))
			vb_cpu[n++] = c;
#endif
}

static void vb_set_domain(unsigned d)
{
	char v[16];
	snprintf(v, sizeof(v), "%u", d);
	setenv("CONDUIT_XEN_DOMID", v, 1);
}

/* ------------------------------------------------------------------ */
/* Links: one end of a connection, either variant.                     */

struct vlink {
	struct bench_link base;
	enum vb_api api;
	conduit_flow *flow;
	struct libxenvchan *ctrl;
	int fd;
};

/* Raw: wait until the event channel says something changed. */
static int raw_wait(struct vlink *k)
{
	struct pollfd p = {.fd = k->fd, .events = POLLIN};
	for (int pass = 0; pass < 1000; pass++) {
		int r = poll(&p, 1, VB_TIMEOUT_MS);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return bench_fail("poll: %s", strerror(errno));
		if (r == 0)
			return bench_fail("timed out after %d ms",
			                  VB_TIMEOUT_MS);
		/* Readable: libxenvchan_wait() will not block. */
		libxenvchan_wait(k->ctrl);
		return 0;
	}
	return bench_fail("poll: interrupted too often");
}

static int link_write_all(struct bench_link *b, const void *buf, size_t len)
{
	struct vlink *k = (struct vlink *)b;
	if (k->api == VB_CONDUIT)
		return link_flow_write(k->flow, buf, len, VB_TIMEOUT_MS);
	const uint8_t *p = buf;
	size_t done = 0;
	/* Each pass moves a byte or waits (bounded). */
	for (size_t pass = 0; done < len; pass++) {
		if (pass > len + 1000)
			return bench_fail("libxenvchan_write: no progress");
		int n = libxenvchan_write(k->ctrl, p + done, len - done);
		if (n < 0)
			return bench_fail(
			    "libxenvchan_write: the ring is closed");
		if (n > 0) {
			done += (size_t)n;
			continue;
		}
		if (raw_wait(k) < 0)
			return -1;
	}
	return 0;
}

/* 1 with *got bytes, 0 at end of stream, -1 on error. */
static int link_read(struct bench_link *b, void *buf, size_t cap, size_t *got)
{
	struct vlink *k = (struct vlink *)b;
	if (k->api == VB_CONDUIT)
		return link_flow_read(k->flow, buf, cap, got, VB_TIMEOUT_MS);
	for (int pass = 0; pass < 100000; pass++) {
		int n = libxenvchan_read(k->ctrl, buf, cap);
		if (n > 0) {
			*got = (size_t)n;
			return 1;
		}
		/* Raw vchan's only end of stream: the peer closed. */
		if (n < 0)
			return 0;
		if (raw_wait(k) < 0)
			return -1;
	}
	return bench_fail("libxenvchan_read: no progress");
}

static void link_close(struct bench_link *b)
{
	struct vlink *k = (struct vlink *)b;
	if (k->api == VB_CONDUIT) {
		if (k->flow != NULL) {
			/* The end mark may have to wait for room. */
			conduit_close_wait(k->flow, VB_TIMEOUT_MS);
			conduit_flow_free(k->flow);
		}
		k->flow = NULL;
		return;
	}
	if (k->ctrl != NULL)
		libxenvchan_close(k->ctrl);
	k->ctrl = NULL;
}

static const struct bench_link_ops vlink_ops = {
    .write_all = link_write_all,
    .read = link_read,
    .close = link_close,
};

static void link_init(struct vlink *k, enum vb_api api)
{
	memset(k, 0, sizeof(*k));
	k->base.ops = &vlink_ops;
	k->api = api;
	k->fd = -1;
}

static int link_connect(struct vlink *k, enum vb_api api, conduit_ctx *ctx)
{
	link_init(k, api);
	if (api == VB_CONDUIT) {
		/* What an application writes: a URI, parsed every time. */
		int rc = conduit_connect_wait(&k->flow, ctx, VB_CONNECT_URI,
		                              VB_TIMEOUT_MS);
		if (rc != CONDUIT_OK)
			return bench_fail(
			    "conduit_connect_wait %s: %s", VB_CONNECT_URI,
			    bench_cerr(conduit_ctx_error(ctx), rc));
		return 0;
	}
	/* No ring yet (the server is arming the next one): try again. */
	uint64_t end = tool_now_ns() + (uint64_t)VB_TIMEOUT_MS * 1000000u;
	for (int pass = 0; pass < 1000000; pass++) {
		k->ctrl =
		    libxenvchan_client_init(NULL, VB_SERVER_DOM, VB_RAW_PATH);
		if (k->ctrl != NULL)
			break;
		if (tool_now_ns() > end)
			break;
		vb_nap_us(200);
	}
	if (k->ctrl == NULL)
		return bench_fail("libxenvchan_client_init %s: %s", VB_RAW_PATH,
		                  strerror(errno));
	k->ctrl->blocking = 0;
	k->fd = libxenvchan_fd_for_select(k->ctrl);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Servers: a child of the worker, domain 1.  It listens, says READY,  */
/* serves, and reports what it saw (DONE) or what broke (ERROR).       */

struct vb_job {
	enum link_role role;
	enum vb_api api;
	unsigned ring;   /* both ring sizes the server asks for */
	uint64_t amount; /* bytes to receive or echo, or connections */
};

struct vserver {
	enum vb_api api;
	unsigned ring;
	conduit_ctx *ctx;
	conduit_listener *l;
	struct xs_handle *xs;
	struct libxenvchan *armed; /* raw: the ring waiting for a client */
};

static int raw_arm(struct vserver *sv)
{
	sv->armed = libxenvchan_server_init(NULL, VB_CLIENT_DOM, VB_RAW_PATH,
	                                    sv->ring, sv->ring);
	if (sv->armed == NULL)
		return bench_fail("libxenvchan_server_init %s: %s", VB_RAW_PATH,
		                  strerror(errno));
	sv->armed->blocking = 0;
	return 0;
}

static int vs_open(struct vserver *sv, enum vb_api api, unsigned ring)
{
	memset(sv, 0, sizeof(*sv));
	sv->api = api;
	sv->ring = ring;
	if (api == VB_CONDUIT) {
		char uri[96];
		snprintf(uri, sizeof(uri), VB_LISTEN_FMT, ring, ring);
		if (conduit_ctx_new(&sv->ctx) != CONDUIT_OK)
			return bench_fail("conduit_ctx_new: out of memory");
		int rc = conduit_listen(&sv->l, sv->ctx, uri);
		if (rc != CONDUIT_OK)
			return bench_fail(
			    "conduit_listen %s: %s", uri,
			    bench_cerr(conduit_ctx_error(sv->ctx), rc));
		return 0;
	}
	sv->xs = xs_open(0);
	if (sv->xs == NULL)
		return bench_fail("xs_open: %s", strerror(errno));
	return raw_arm(sv);
}

static int vs_accept(struct vserver *sv, struct vlink *k, bool again)
{
	link_init(k, sv->api);
	if (sv->api == VB_CONDUIT) {
		int rc = conduit_accept_wait(&k->flow, sv->l, VB_TIMEOUT_MS);
		if (rc != CONDUIT_OK)
			return bench_fail(
			    "conduit_accept_wait: %s",
			    bench_cerr(conduit_listener_error(sv->l), rc));
		return 0;
	}
	k->ctrl = sv->armed;
	k->fd = libxenvchan_fd_for_select(k->ctrl);
	for (int pass = 0; libxenvchan_is_open(k->ctrl) == 2; pass++) {
		if (pass > 100000 || raw_wait(k) < 0) {
			char why[sizeof(bench_errmsg)];
			snprintf(why, sizeof(why), "%s", bench_errmsg);
			k->ctrl = NULL;
			return bench_fail("no client came: %.400s", why);
		}
	}
	sv->armed = NULL;
	if (!again)
		return 0;
	/* The next client must find a fresh ring, never this one: hide
	 * its keys now, and keep its close from removing the next ring's
	 * (same path). */
	xs_rm(sv->xs, XBT_NULL, VB_RAW_PATH);
	free(k->ctrl->xs_path);
	k->ctrl->xs_path = NULL;
	return raw_arm(sv);
}

static void vs_close(struct vserver *sv)
{
	conduit_listener_free(sv->l);
	conduit_ctx_free(sv->ctx);
	if (sv->armed != NULL)
		libxenvchan_close(sv->armed);
	if (sv->xs != NULL)
		xs_close(sv->xs);
	memset(sv, 0, sizeof(*sv));
}

static int serve(struct vserver *sv, const struct vb_job *job,
                 struct bench_report *rep)
{
	struct vlink k;
	if (job->role != ROLE_ACCEPT) {
		if (vs_accept(sv, &k, false) < 0)
			return -1;
		return link_serve(&k.base, job->role, job->amount, rep);
	}
	for (uint64_t i = 0; i < job->amount; i++) {
		if (vs_accept(sv, &k, i + 1 < job->amount) < 0)
			return -1;
		link_close(&k.base);
		rep->count++;
	}
	return 0;
}

/* Not inlined, so that a profile of a server can start here:
 * valgrind --tool=callgrind --trace-children=yes --toggle-collect=vb_server */
__attribute__((noinline)) static int vb_server(const void *arg, int wfd)
{
	const struct vb_job *job = arg;
	struct bench_report rep;
	memset(&rep, 0, sizeof(rep));
	rep.bad_at = UINT64_MAX;
	/* The emulation reads the domain at each call. */
	vb_set_domain(VB_SERVER_DOM);
	struct vserver sv;
	int r = -1;
	if (vs_open(&sv, job->api, job->ring) == 0) {
		rep.kind = MSG_READY;
		if (bench_child_report(wfd, &rep) == 0)
			r = serve(&sv, job, &rep);
	}
	vs_close(&sv);
	rep.kind = r == 0 ? MSG_DONE : MSG_ERROR;
	if (r != 0)
		snprintf(rep.text, sizeof(rep.text), "%s", bench_errmsg);
	bench_child_report(wfd, &rep);
	close(wfd);
	return r == 0 ? 0 : 1;
}

/* ------------------------------------------------------------------ */
/* One run of one figure for one variant (the worker is the client).   */

static conduit_ctx *vb_ctx;

/* A throughput or latency run against a server of its own.  Not
 * inlined, so that a profile can start here. */
__attribute__((noinline)) static int run_stream(enum vb_api api, unsigned ring,
                                                struct link_run *run)
{
	struct vb_job job = {run->role, api, ring, run->total};
	struct bench_child c;
	struct bench_report rep;
	struct vlink k;
	if (bench_child_start(&c, vb_cpu[1], vb_server, &job, &rep) < 0)
		return -1;
	bool up = link_connect(&k, api, vb_ctx) == 0;
	return link_client(&c, up ? &k.base : NULL, run);
}

static int run_throughput(enum vb_api api, unsigned ring, size_t ws,
                          uint64_t total, double *secs)
{
	struct link_run run = {.role = ROLE_SINK, .ws = ws, .total = total};
	if (run_stream(api, ring, &run) < 0)
		return -1;
	*secs = (double)run.ns / 1e9;
	return 0;
}

static int run_latency(enum vb_api api, unsigned ring, unsigned warm,
                       unsigned n, uint64_t *samples)
{
	struct link_run run = {.role = ROLE_ECHO,
	                       .total = (uint64_t)(warm + n) * LINK_PING,
	                       .warm = warm,
	                       .n = n,
	                       .samples = samples};
	return run_stream(api, ring, &run);
}

__attribute__((noinline)) static int run_connect(enum vb_api api, unsigned warm,
                                                 unsigned n, double *secs)
{
	struct vb_job job = {ROLE_ACCEPT, api, vb_figs[VF_CONN].ring,
	                     (uint64_t)warm + n};
	struct bench_child c;
	struct bench_report rep;
	if (bench_child_start(&c, vb_cpu[1], vb_server, &job, &rep) < 0)
		return -1;
	uint64_t t0 = tool_now_ns();
	for (unsigned i = 0; i < warm + n; i++) {
		if (i == warm)
			t0 = tool_now_ns();
		struct vlink k;
		if (link_connect(&k, api, vb_ctx) < 0) {
			bench_child_abort(&c);
			return -1;
		}
		/* End of stream: the server has accepted and closed. */
		uint8_t ch;
		size_t m = 0;
		int g = link_read(&k.base, &ch, 1, &m);
		link_close(&k.base);
		if (g != 0) {
			if (g > 0)
				bench_fail("the server sent data");
			bench_child_abort(&c);
			return -1;
		}
	}
	uint64_t t1 = tool_now_ns();
	if (bench_child_finish(&c, &rep) < 0 ||
	    link_check_count(&rep, (uint64_t)warm + n, "the server accepted",
	                     "connections") < 0)
		return -1;
	*secs = (double)(t1 - t0) / 1e9;
	return 0;
}

/* ------------------------------------------------------------------ */
/* The worker: every figure, each sent to the parent when done.        */

struct vb_args {
	int fd;
	bool quick;
	unsigned repeats;
	double target_s;
};

/* The order of the variants in repeat i: raw first in even repeats. */
static enum vb_api vb_turn(unsigned i, int k)
{
	return ((i + (unsigned)k) & 1) ? VB_CONDUIT : VB_RAW;
}

static int vb_failed(const struct vb_args *a, const char *what, enum vb_api api)
{
	struct vb_msg m;
	memset(&m, 0, sizeof(m));
	m.kind = VM_ERROR;
	snprintf(m.text, sizeof(m.text), "%.60s (%s): %.300s", what,
	         vb_api_name[api], bench_errmsg);
	vb_send(a->fd, &m, sizeof(m));
	return -1;
}

static int vb_emit_msg(const struct vb_args *a, struct vb_msg *m, int fig)
{
	m->kind = VM_FIGURE;
	m->fig = fig;
	if (vb_send(a->fd, m, sizeof(*m)) < 0)
		return bench_fail("the report pipe broke: %s", strerror(errno));
	return 0;
}

/* A figure whose every run gives a time: throughput (ws > 0) or
 * connections. */
struct vb_rate {
	unsigned ring;
	size_t ws;
	uint64_t total;
	unsigned warm, n;
};

/* Rounds of both variants in rotating order; a run's value is amount
 * divided by its time. */
static int vb_rates(const struct vb_args *a, int fig, const char *what,
                    const struct vb_rate *q, double amount)
{
	struct vb_msg m;
	memset(&m, 0, sizeof(m));
	for (unsigned i = 0; i < a->repeats; i++) {
		for (int k = 0; k < 2; k++) {
			enum vb_api api = vb_turn(i, k);
			double t = 0;
			int r = q->ws > 0 ? run_throughput(api, q->ring, q->ws,
			                                   q->total, &t)
			                  : run_connect(api, q->warm, q->n, &t);
			if (r < 0)
				return vb_failed(a, what, api);
			(api == VB_RAW ? m.base : m.conduit)[i] =
			    t > 0 ? amount / t : 0;
		}
		m.n = i + 1;
	}
	return vb_emit_msg(a, &m, fig);
}

static int vb_throughput(const struct vb_args *a, int fig)
{
	size_t ws = (size_t)vb_figs[fig].param;
	unsigned ring = vb_figs[fig].ring;
	const char *what = vb_figs[fig].label;
	uint64_t warm = (a->quick ? 4u : 16u) * 1024 * 1024;
	double rate = 0;
	for (int k = 0; k < 2; k++) {
		double t = 0;
		if (run_throughput(vb_turn(0, k), ring, ws, warm, &t) < 0)
			return vb_failed(a, what, vb_turn(0, k));
		if (t > 0 && (double)warm / t > rate)
			rate = (double)warm / t;
	}
	double want = rate * a->target_s;
	if (want < (double)warm)
		want = (double)warm;
	if (want > 8.0 * 1024 * VB_MIB)
		want = 8.0 * 1024 * VB_MIB;
	struct vb_rate q = {ring, ws, ((uint64_t)want + ws - 1) / ws * ws, 0,
	                    0};
	return vb_rates(a, fig, what, &q, (double)q.total / VB_MIB);
}

static int cmp_u64(const void *x, const void *y)
{
	uint64_t p = *(const uint64_t *)x, q = *(const uint64_t *)y;
	return p < q ? -1 : p > q;
}

/* Median and p99 of one run, into the figures fmed and fp99 (one ring
 * size: theirs). */
static int vb_latency(const struct vb_args *a, int fmed, int fp99)
{
	unsigned ring = vb_figs[fmed].ring;
	const char *what = vb_figs[fmed].label;
	/* A round trip here wakes the other process twice: tens of us. */
	unsigned warm = a->quick ? 100 : 500, n = a->quick ? 1000 : 5000;
	uint64_t *t = calloc(n, sizeof(*t));
	if (t == NULL) {
		bench_fail("out of memory");
		return vb_failed(a, what, VB_RAW);
	}
	struct vb_msg med, p99;
	memset(&med, 0, sizeof(med));
	memset(&p99, 0, sizeof(p99));
	for (unsigned i = 0; i < a->repeats; i++) {
		for (int k = 0; k < 2; k++) {
			enum vb_api api = vb_turn(i, k);
			if (run_latency(api, ring, warm, n, t) < 0) {
				free(t);
				return vb_failed(a, what, api);
			}
			qsort(t, n, sizeof(*t), cmp_u64);
			double m50 = (double)t[n / 2] / 1000.0;
			double m99 = (double)t[(size_t)n * 99 / 100] / 1000.0;
			(api == VB_RAW ? med.base : med.conduit)[i] = m50;
			(api == VB_RAW ? p99.base : p99.conduit)[i] = m99;
		}
		med.n = p99.n = i + 1;
	}
	free(t);
	if (vb_emit_msg(a, &med, fmed) < 0 || vb_emit_msg(a, &p99, fp99) < 0)
		return -1;
	return 0;
}

static int vb_connect(const struct vb_args *a)
{
	/* Each connection is a few dozen XenStore operations (files and
	 * locks in the emulation) and a new shared ring: about a
	 * millisecond unloaded, tens on a busy machine. */
	unsigned warm = a->quick ? 5 : 20, n = a->quick ? 40 : 200;
	struct vb_rate q = {vb_figs[VF_CONN].ring, 0, 0, warm, n};
	return vb_rates(a, VF_CONN, "connections", &q, n);
}

static int vb_worker(const struct vb_args *a)
{
	/* Only the emulation exports this: the real libraries would need
	 * a hypervisor. */
	if (dlsym(RTLD_DEFAULT, "conduit_xen_emulation") == NULL) {
		bench_fail(
		    "the Xen emulation is not loaded (LD_LIBRARY_PATH=%s)",
		    getenv("LD_LIBRARY_PATH") ? getenv("LD_LIBRARY_PATH") : "");
		return vb_failed(a, "set-up", VB_RAW);
	}
	vb_choose_cpus();
	bench_pin(vb_cpu[0]);
	vb_set_domain(VB_CLIENT_DOM);
	if (conduit_ctx_new(&vb_ctx) != CONDUIT_OK) {
		bench_fail("conduit_ctx_new: out of memory");
		return vb_failed(a, "set-up", VB_CONDUIT);
	}
	static const int tput[] = {VF_TPUT1, VF_TPUT16, VF_TPUT64};
	int rc = 0;
	for (size_t i = 0; i < 3 && rc == 0; i++)
		rc = vb_throughput(a, tput[i]);
	if (rc == 0)
		rc = vb_latency(a, VF_RTT_MED, VF_RTT_P99);
	/* The same again through libxenvchan's in-page rings. */
	if (rc == 0)
		rc = vb_throughput(a, VF_TPUT64_PAGE);
	if (rc == 0)
		rc = vb_latency(a, VF_RTT_MED_PAGE, VF_RTT_P99_PAGE);
	if (rc == 0)
		rc = vb_connect(a);
	conduit_ctx_free(vb_ctx);
	vb_ctx = NULL;
	if (rc == 0) {
		struct vb_msg m;
		memset(&m, 0, sizeof(m));
		m.kind = VM_DONE;
		rc = vb_send(a->fd, &m, sizeof(m));
	}
	return rc == 0 ? 0 : 1;
}

int bench_role_main(const char *role)
{
	if (role == NULL || strcmp(role, "vchan") != 0) {
		fprintf(stderr, "conduit-bench: unknown %s '%s'\n", VB_ROLE_ENV,
		        role != NULL ? role : "");
		return 2;
	}
	struct vb_args a = {.fd = -1};
	const char *v = getenv(VB_ARGS_ENV);
	int quick = 0;
	if (v == NULL ||
	    sscanf(v, "%d %d %u %lf", &a.fd, &quick, &a.repeats, &a.target_s) !=
	        4 ||
	    a.fd < 0 || a.repeats == 0 || a.repeats > BENCH_MAX_REPEATS) {
		fprintf(stderr,
		        "conduit-bench: %s='%s' is not \"FD QUICK REPEATS "
		        "TARGET_S\" (set by conduit-bench itself)\n",
		        VB_ARGS_ENV, v != NULL ? v : "");
		return 2;
	}
	if (fcntl(a.fd, F_GETFD) < 0) {
		fprintf(stderr,
		        "conduit-bench: %s names descriptor %d, which is not "
		        "open\n",
		        VB_ARGS_ENV, a.fd);
		return 2;
	}
	a.quick = quick != 0;
	alarm(VB_WORKER_WATCHDOG_S);
	int rc = vb_worker(&a);
	close(a.fd);
	return rc;
}

/* ------------------------------------------------------------------ */
/* The parent: start the worker, hand its figures to bench_emit().     */

/* Fork and exec the worker (in the child; never returns). */
static void vb_exec_worker(const char *emu, const char *host, int wfd,
                           const struct bench_settings *s, unsigned reps)
{
#ifdef __linux__
	prctl(PR_SET_PDEATHSIG, SIGKILL);
#endif
	/* The report pipe must survive exec. */
	int fl = fcntl(wfd, F_GETFD);
	if (fl < 0 || fcntl(wfd, F_SETFD, fl & ~FD_CLOEXEC) < 0)
		_exit(127);
	const char *old = getenv("LD_LIBRARY_PATH");
	char lib[PATH_MAX * 2];
	if (old != NULL && old[0] != '\0')
		snprintf(lib, sizeof(lib), "%s:%s", emu, old);
	else
		snprintf(lib, sizeof(lib), "%s", emu);
	char args[128];
	snprintf(args, sizeof(args), "%d %d %u %.6f", wfd, s->quick ? 1 : 0,
	         reps, s->target_s > 0 ? s->target_s : 0.1);
	if (setenv("LD_LIBRARY_PATH", lib, 1) < 0 ||
	    setenv("CONDUIT_XEN_DIR", host, 1) < 0 ||
	    setenv(VB_ROLE_ENV, "vchan", 1) < 0 ||
	    setenv(VB_ARGS_ENV, args, 1) < 0)
		_exit(127);
	vb_set_domain(VB_CLIENT_DOM);
	char *argv[] = {"conduit-bench", NULL};
	execv("/proc/self/exe", argv);
	fprintf(stderr, "conduit-bench: vchan: cannot run /proc/self/exe: %s\n",
	        strerror(errno));
	_exit(127);
}

int bench_vchan(const struct bench_settings *s)
{
	const char *emu = tool_xen_emulation_dir();
	char probe[PATH_MAX];
	snprintf(probe, sizeof(probe), "%s/libxenstore.so.4", emu);
	if (emu[0] == '\0' || access(probe, R_OK) != 0) {
		fprintf(
		    stderr,
		    "conduit-bench: vchan: no Xen emulation in '%s' (no "
		    "libxenstore.so.4 there); build the xenemu target or set "
		    "CONDUIT_XEN_EMULATION to its directory\n",
		    emu);
		return -1;
	}
	unsigned reps = s->repeats == 0 ? 1 : s->repeats;
	if (reps > BENCH_MAX_REPEATS)
		reps = BENCH_MAX_REPEATS;

	/* The emulated grant pages and XenStore are files: on a RAM file
	 * system, as Xen's are memory, so that a disk does not enter the
	 * figures (on a disk, connections were four times slower here). */
	struct stat sb;
	const char *base = getenv("TMPDIR");
	if (stat("/dev/shm", &sb) == 0 && S_ISDIR(sb.st_mode) &&
	    access("/dev/shm", W_OK | X_OK) == 0)
		base = "/dev/shm";
	else if (base == NULL || base[0] == '\0')
		base = "/tmp";
	char host[PATH_MAX];
	snprintf(host, sizeof(host), "%s/conduit-bench-xen.XXXXXX", base);
	if (mkdtemp(host) == NULL) {
		fprintf(stderr, "conduit-bench: vchan: mkdtemp %s: %s\n", host,
		        strerror(errno));
		return -1;
	}
	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC) < 0) {
		fprintf(stderr, "conduit-bench: vchan: pipe: %s\n",
		        strerror(errno));
		rmdir(host);
		return -1;
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		fprintf(stderr, "conduit-bench: vchan: fork: %s\n",
		        strerror(errno));
		close(pfd[0]);
		close(pfd[1]);
		rmdir(host);
		return -1;
	}
	if (pid == 0) {
		close(pfd[0]);
		vb_exec_worker(emu, host, pfd[1], s, reps);
	}
	close(pfd[1]);

	int rc = -1;
	char why[sizeof(bench_errmsg) + 64] = "";
	/* One message per figure and one at the end: bounded. */
	for (int i = 0; i < VF_N + 2; i++) {
		struct vb_msg m;
		/* A figure takes seconds; a long silence is a hang. */
		int g = vb_recv(pfd[0], &m, sizeof(m), 10 * VB_TIMEOUT_MS);
		if (g <= 0) {
			snprintf(why, sizeof(why), "%s",
			         g == 0 ? "the worker process ended early"
			                : bench_errmsg);
			break;
		}
		m.text[sizeof(m.text) - 1] = '\0';
		if (m.kind == VM_DONE) {
			rc = 0;
			break;
		}
		if (m.kind == VM_ERROR) {
			snprintf(why, sizeof(why), "%s", m.text);
			break;
		}
		if (m.kind != VM_FIGURE || m.fig < 0 || m.fig >= VF_N ||
		    m.n == 0 || m.n > reps) {
			snprintf(why, sizeof(why), "a garbled report");
			break;
		}
		const struct vb_fig *d = &vb_figs[m.fig];
		struct bench_figure f;
		memset(&f, 0, sizeof(f));
		f.transport = "vchan";
		f.figure = d->figure;
		f.label = d->label;
		f.unit = d->unit;
		f.baseline = "raw libxenvchan";
		f.param_name = d->param_name;
		f.param = d->param;
		f.higher_better = d->higher_better;
		f.decimals = d->decimals;
		f.n = m.n;
		memcpy(f.base, m.base, sizeof(f.base));
		memcpy(f.conduit, m.conduit, sizeof(f.conduit));
		bench_emit(&f);
	}
	close(pfd[0]);
	if (rc != 0)
		kill(pid, SIGKILL);
	int st = 0;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (rc == 0 && !(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
		rc = -1;
		snprintf(why, sizeof(why), "the worker process failed (%s %d)",
		         WIFSIGNALED(st) ? "signal" : "status",
		         WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
	}
	tool_rmtree(host);
	if (rc != 0)
		fprintf(stderr, "conduit-bench: vchan %s\n", why);
	return rc;
}
