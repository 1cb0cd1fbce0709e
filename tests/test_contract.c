/*
 * test_contract.c - the flow contract of backend.h, one table of cases
 * run against every transport of the build and against layers:
 *
 *   mem         conduit_mem_pair()
 *   unix, tcp   host sockets (a private directory; 127.0.0.1)
 *   lwip        TCP on lwIP, two netifs of one stack on an in-memory wire
 *   vchan       the real libxenvchan over the Xen emulation, both domains
 *               in this process (the emulation reads the domain id from
 *               the environment at each call: each end's calls are made
 *               as its own domain)
 *   tls(mem)    the TLS layer over two mem flows, full handshake with a
 *               certificate made for the run
 *   layer(mem)  a pass-through layer written with backend.h's inner-flow
 *               helpers, over two mem flows
 *
 * Each case gets a fresh pair: a is the connecting end, b the accepting
 * one.  Where a backend does not do what the contract asks, the rig says
 * so with a quirk flag, the case checks that the backend does exactly
 * what the flag says, and backend.h names the difference: a deviation is
 * written down, never hidden by a weaker check.  Both ends are driven from
 * this process with conduit_poll(), waits bounded by time.
 */
#include "flowkit.h"
#include "harness.h"

#include "core.h"

#include <conduit/backend.h>
#include <conduit/conduit.h>
#ifdef CONDUIT_HAVE_MEM
#include <conduit/mem.h>
#endif
#ifdef CONDUIT_HAVE_LWIP
#include <conduit/lwip.h>
#endif
#ifdef CONDUIT_HAVE_TLS
#include <conduit/tls.h>
#endif
#ifdef CONDUIT_HAVE_VCHAN
#include <dlfcn.h>
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* Rigs                                                                */

/* Documented deviations (see backend.h). */
/* No close op: the peer sees the end of stream when the flow is freed. */
#define Q_EOF_AT_FREE 1u
/* The peer's writes after SHUT_RD are taken and dropped. */
#define Q_SHUT_RD_DROPS 2u
/* The peer's writes after SHUT_RD stay in the ring, which fills. */
#define Q_SHUT_RD_HOLDS 4u
/* Writes after the peer's close may be taken until its reset returns. */
#define Q_LATE_WRITE_ERROR 8u
/* An abortive end is seen as an end of stream unless bytes were left
 * unread (the kernel's close(2) sends a reset only then). */
#define Q_ABORT_NEEDS_UNREAD 16u
/* A closed end keeps taking the peer's writes (into the ring, until it is
 * full) until it is freed; only then do they fail. */
#define Q_CLOSE_HOLDS_WRITES 32u
/* A descriptor may announce a read that then wants, once: events of
 * bytes already taken are consumed only on the way to a want. */
#define Q_STALE_WAKEUP 64u
/* A write may leave bytes it took queued in the layer; they leave with
 * the flow's next operation (read, write, shutdown, close). */
#define Q_WRITE_QUEUES 128u
/* wait() reports a writer ready now once the peer's end of stream has
 * been read, even when the ring is full: conduit_poll() returns at once,
 * round after round, while the write wants. */
#define Q_FULL_WRITER_READY_AFTER_EOF 256u
/* writev copies from an empty buffer's base even when it is NULL, which
 * the API allows (memcpy from NULL is undefined even for 0 bytes: UBSan
 * stops the test); empty buffers given to it point somewhere. */
#define Q_NULL_EMPTY_IOV 512u

struct rig;
struct rig_ops {
	const char *name;
	unsigned quirks;
	void (*up)(struct rig *r);
	void (*pair)(struct rig *r, conduit_flow **a, conduit_flow **b);
	void (*down)(struct rig *r);
	/* Make the calls that follow as end `side` (0: a, 1: b); NULL if
	 * it does not matter. */
	void (*enter)(struct rig *r, int side);
};

struct rig {
	const struct rig_ops *ops;
	conduit_ctx *ctx;
	conduit_listener *l;
	conduit_flow *a, *b;
	char dir[256];
#ifdef CONDUIT_HAVE_LWIP
	conduit_lwip *st;
	conduit_lwip_netif *na, *nb;
#endif
};

/* "rig/case", for every message. */
static char where[96];

#define CK(cond, ...)                                                          \
	do {                                                                   \
		if (!(cond)) {                                                 \
			char m_[512];                                          \
			snprintf(m_, sizeof(m_), __VA_ARGS__);                 \
			ck_abort_msg("%s: %s", where, m_);                     \
		}                                                              \
	} while (0)

#define CK_RC(expr, want)                                                      \
	do {                                                                   \
		int got_ = (expr), want_ = (want);                             \
		CK(got_ == want_, "%s: got %s, want %s", #expr,                \
		   conduit_status_name(got_), conduit_status_name(want_));     \
	} while (0)

/* The time one step of a case may take. */
static int step_ms(void)
{
	return cd_scaled(5000);
}

static void enter(struct rig *r, conduit_flow *f)
{
	if (r->ops->enter != NULL)
		r->ops->enter(r, f == r->b);
}

static const char *name_of(struct rig *r, conduit_flow *f)
{
	(void)r;
	return f == r->a ? "a" : "b";
}

/* Poll up to two flows (y may be NULL) for ms; returns the ready count. */
static size_t poll2(struct rig *r, conduit_flow *x, unsigned ex,
                    conduit_flow *y, unsigned ey, int ms)
{
	struct conduit_pollitem it[2] = {{.flow = x, .events = ex},
	                                 {.flow = y, .events = ey}};
	size_t n = 0;
	enter(r, x);
	CK_RC(conduit_poll(r->ctx, it, y != NULL ? 2 : 1, ms, &n), CONDUIT_OK);
	return n;
}

#if defined(CONDUIT_HAVE_UNIX) || defined(CONDUIT_HAVE_TCP) ||                 \
    defined(CONDUIT_HAVE_LWIP) || defined(CONDUIT_HAVE_VCHAN)
#define HAVE_LISTENERS 1
#endif

#ifdef HAVE_LISTENERS
/* Connect a to uri and accept b on r->l, both driven by conduit_poll. */
static void connect_accept(struct rig *r, const char *uri, conduit_flow **a,
                           conduit_flow **b)
{
	if (r->ops->enter != NULL)
		r->ops->enter(r, 0);
	int rc = conduit_connect(a, r->ctx, uri);
	CK(rc == CONDUIT_OK, "connect %s: %s", uri, conduit_ctx_error(r->ctx));
	*b = NULL;
	bool up = false;
	uint64_t end = cd_now_ms() + (uint64_t)step_ms();
	while (!up || *b == NULL) {
		CK(cd_now_ms() < end, "connect %s: no progress", uri);
		struct conduit_pollitem it[2] = {
		    {.flow = *a, .events = CONDUIT_POLLOUT},
		    {.listener = r->l, .events = CONDUIT_POLLIN}};
		size_t n = 0;
		CK_RC(conduit_poll(r->ctx, it, 2, 20, &n), CONDUIT_OK);
		if (!up) {
			if (r->ops->enter != NULL)
				r->ops->enter(r, 0);
			rc = conduit_handshake(*a);
			CK(rc == CONDUIT_OK || fk_is_want(rc), "handshake: %s",
			   conduit_flow_error(*a));
			up = rc == CONDUIT_OK;
		}
		if (*b == NULL) {
			if (r->ops->enter != NULL)
				r->ops->enter(r, 1);
			rc = conduit_accept(b, r->l);
			CK(rc == CONDUIT_OK || fk_is_want(rc), "accept: %s",
			   conduit_listener_error(r->l));
		}
	}
	/* The accepted end is established too (a layered listener's would
	 * still handshake; none is used here). */
	if (r->ops->enter != NULL)
		r->ops->enter(r, 1);
	CK_RC(conduit_handshake(*b), CONDUIT_OK);
}
#endif

/* ---- mem -------------------------------------------------------- */

#ifdef CONDUIT_HAVE_MEM
static void mem_up(struct rig *r)
{
	r->ctx = fk_new_ctx();
}

static void mem_pair(struct rig *r, conduit_flow **a, conduit_flow **b)
{
	struct conduit_mem_config cfg = {.capacity = 65536};
	CK_RC(conduit_mem_pair(a, b, r->ctx, &cfg), CONDUIT_OK);
}

#endif

/* ---- unix, tcp ---------------------------------------------------- */

static void host_down(struct rig *r)
{
	conduit_listener_free(r->l);
	conduit_ctx_free(r->ctx);
	if (r->dir[0] != '\0')
		cd_rmtree(r->dir);
}

#ifdef CONDUIT_HAVE_UNIX
static void unix_up(struct rig *r)
{
	r->ctx = fk_new_ctx();
	cd_tmpdir(r->dir, sizeof(r->dir));
	char uri[400];
	snprintf(uri, sizeof(uri), "unix://%s/c.sock", r->dir);
	r->l = fk_listen(r->ctx, uri);
}
#endif

#ifdef CONDUIT_HAVE_TCP
static void tcp_up(struct rig *r)
{
	r->ctx = fk_new_ctx();
	r->l = fk_listen(r->ctx, "tcp://127.0.0.1:0");
}
#endif

#if defined(CONDUIT_HAVE_UNIX) || defined(CONDUIT_HAVE_TCP) ||                 \
    defined(CONDUIT_HAVE_LWIP)
static void listener_pair(struct rig *r, conduit_flow **a, conduit_flow **b)
{
	connect_accept(r, conduit_listener_uri(r->l), a, b);
}
#endif

/* ---- lwip --------------------------------------------------------- */

#ifdef CONDUIT_HAVE_LWIP
static void lwip_up(struct rig *r)
{
	static const struct conduit_lwip_netif_config ca = {
	    .ipv4 = "10.0.0.1/24", .ipv6 = "fd00::1"};
	static const struct conduit_lwip_netif_config cb = {
	    .ipv4 = "10.0.0.2/24", .ipv6 = "fd00::2"};
	CK_RC(conduit_lwip_stack(&r->st), CONDUIT_OK);
	CK_RC(
	    conduit_lwip_netif_wire_pair(&r->na, &r->nb, r->st, &ca, &cb, NULL),
	    CONDUIT_OK);
	r->ctx = fk_new_ctx();
	CK_RC(conduit_ctx_use_lwip(r->ctx, r->st), CONDUIT_OK);
	r->l = fk_listen(r->ctx, "tcp://10.0.0.2:0");
}

static void lwip_down(struct rig *r)
{
	conduit_listener_free(r->l);
	r->l = NULL;
	/* Let the closing handshakes end; then nothing may be left. */
	struct conduit_lwip_stats s;
	uint64_t end = cd_now_ms() + (uint64_t)step_ms();
	for (;;) {
		conduit_lwip_stats(r->st, &s);
		if ((s.lwip_active == 0 && s.frames == 0) || cd_now_ms() > end)
			break;
		size_t n = 0;
		conduit_poll(r->ctx, NULL, 0, 10, &n);
	}
	CK(s.flows == 0 && s.listeners == 0 && s.pcbs == 0 && s.pbufs == 0,
	   "lwIP objects left: flows %zu listeners %zu pcbs %zu pbufs %zu",
	   s.flows, s.listeners, s.pcbs, s.pbufs);
	conduit_ctx_free(r->ctx);
	conduit_lwip_netif_free(r->na);
	conduit_lwip_netif_free(r->nb);
	conduit_lwip_release(r->st);
}
#endif

/* ---- vchan -------------------------------------------------------- */

#ifdef CONDUIT_HAVE_VCHAN
static void vchan_enter(struct rig *r, int side)
{
	(void)r;
	/* a is domain 2 connecting to domain 1, b domain 1 listening. */
	setenv("CONDUIT_XEN_DOMID", side == 0 ? "2" : "1", 1);
}

static void vchan_up(struct rig *r)
{
	CK(dlsym(RTLD_DEFAULT, "conduit_xen_emulation") != NULL,
	   "the Xen emulation is not loaded: run with "
	   "LD_LIBRARY_PATH=<build>/stubs/xen (ctest does)");
	/* Grant pages and XenStore are files: on a RAM file system when
	 * there is one, as Xen's are memory. */
	struct stat st;
	if (stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) &&
	    access("/dev/shm", W_OK | X_OK) == 0) {
		snprintf(r->dir, sizeof(r->dir), "/dev/shm/conduit-ct-XXXXXX");
		CK(mkdtemp(r->dir) != NULL, "mkdtemp: %s", strerror(errno));
	} else {
		cd_tmpdir(r->dir, sizeof(r->dir));
	}
	setenv("CONDUIT_XEN_DIR", r->dir, 1);
	r->ctx = fk_new_ctx();
	vchan_enter(r, 1);
	r->l = fk_listen(r->ctx, "vchan://2/contract");
}

static void vchan_down(struct rig *r)
{
	vchan_enter(r, 1); /* the listener's domain */
	host_down(r);
}

static void vchan_pair(struct rig *r, conduit_flow **a, conduit_flow **b)
{
	connect_accept(r, "vchan://1/contract", a, b);
}
#endif

/* ---- tls(mem) ----------------------------------------------------- */

#if defined(CONDUIT_HAVE_TLS) && defined(CONDUIT_HAVE_MEM)
static struct cd_certs certs;

static const char cert_steps[] = "ca ca 'conduit contract CA'\n"
                                 "leaf srv localhost ext_srv ca 2\n";

static void tls_up(struct rig *r)
{
	cd_certs_need(&certs);
	r->ctx = fk_new_ctx();
	CK_RC(conduit_tls_set_cert_file(r->ctx,
	                                cd_certs_file(&certs, "srv.crt"),
	                                cd_certs_file(&certs, "srv.key"), NULL),
	      CONDUIT_OK);
	CK_RC(conduit_tls_set_ca_file(r->ctx, cd_certs_file(&certs, "ca.crt")),
	      CONDUIT_OK);
}

/* The TLS layer over inner, as the core stacks it over a transport: the
 * endpoint gives the layer its options and the name to verify. */
static conduit_flow *tls_over(struct rig *r, conduit_flow *inner, int server)
{
	const struct cd_registration *reg = cd_find_layer(r->ctx, "tls");
	CK(reg != NULL, "no tls layer registered");
	conduit_endpoint *ep = NULL;
	char err[256];
	CK_RC(conduit_endpoint_parse(&ep, "tls+tcp://localhost:443", err,
	                             sizeof(err)),
	      CONDUIT_OK);
	conduit_flow *out = NULL;
	int rc = reg->be->wrap(reg->state, r->ctx, ep, inner, server, &out);
	conduit_endpoint_free(ep);
	CK(rc == CONDUIT_OK, "wrap: %s", conduit_ctx_error(r->ctx));
	return out;
}

static void tls_pair(struct rig *r, conduit_flow **a, conduit_flow **b)
{
	conduit_flow *ia, *ib;
	struct conduit_mem_config cfg = {.capacity = 65536};
	CK_RC(conduit_mem_pair(&ia, &ib, r->ctx, &cfg), CONDUIT_OK);
	*a = tls_over(r, ia, 0);
	*b = tls_over(r, ib, 1);
	int ra = CONDUIT_WANT_WRITE, rb = CONDUIT_WANT_READ;
	uint64_t end = cd_now_ms() + (uint64_t)step_ms();
	while (ra != CONDUIT_OK || rb != CONDUIT_OK) {
		CK(cd_now_ms() < end, "handshake: no progress");
		if (ra != CONDUIT_OK)
			ra = conduit_handshake(*a);
		if (rb != CONDUIT_OK)
			rb = conduit_handshake(*b);
		CK(ra == CONDUIT_OK || fk_is_want(ra), "client: %s",
		   conduit_flow_error(*a));
		CK(rb == CONDUIT_OK || fk_is_want(rb), "server: %s",
		   conduit_flow_error(*b));
		if (ra != CONDUIT_OK && rb != CONDUIT_OK)
			CK(poll2(r, *a, CONDUIT_POLLOUT, *b, CONDUIT_POLLOUT,
			         20) > 0,
			   "handshake: neither end is ready, each waits for "
			   "the other");
	}
}
#endif

/* ---- layer(mem): a pass-through layer built on backend.h's helpers - */

#ifdef CONDUIT_HAVE_MEM
struct pass_flow {
	conduit_flow base;
	conduit_flow *inner;
};

static conduit_flow *inner_of(conduit_flow *f)
{
	return ((struct pass_flow *)f)->inner;
}

static int pass_read(conduit_flow *f, void *buf, size_t len, size_t *nread)
{
	return conduit_flow_inner_read(f, inner_of(f), buf, len, nread);
}

static int pass_writev(conduit_flow *f, const struct conduit_iov *iov,
                       size_t iovcnt, size_t *nwritten)
{
	return conduit_flow_inner_writev(f, inner_of(f), iov, iovcnt, nwritten);
}

static int pass_shutdown(conduit_flow *f, unsigned how)
{
	return conduit_flow_inner_shutdown(f, inner_of(f), how);
}

static int pass_close(conduit_flow *f)
{
	return conduit_flow_inner_close(f, inner_of(f));
}

static void pass_destroy(conduit_flow *f)
{
	conduit_flow_free(inner_of(f));
	conduit_flow_fini(f);
	free(f);
}

static void pass_wait(conduit_flow *f, unsigned interest,
                      struct conduit_waitset *ws)
{
	conduit_flow_inner_wait(inner_of(f), interest, ws);
}

static unsigned pass_pending(conduit_flow *f, unsigned interest)
{
	return conduit_flow_inner_pending(inner_of(f), interest);
}

static int pass_unread(conduit_flow *f, size_t *n)
{
	return conduit_flow_inner_unread(f, inner_of(f), n);
}

static const struct conduit_flow_ops pass_ops = {
    .name = "pass",
    .read = pass_read,
    .writev = pass_writev,
    .shutdown = pass_shutdown,
    .close = pass_close,
    .destroy = pass_destroy,
    .wait = pass_wait,
    .pending = pass_pending,
    .unread = pass_unread,
};

static conduit_flow *pass_over(struct rig *r, conduit_flow *inner)
{
	struct pass_flow *p = calloc(1, sizeof(*p));
	CK(p != NULL, "out of memory");
	char uri[128];
	snprintf(uri, sizeof(uri), "pass+%s", conduit_flow_uri(inner));
	CK_RC(conduit_flow_init(&p->base, &pass_ops, r->ctx, uri), CONDUIT_OK);
	p->base.state |= CONDUIT_FLOW_ESTABLISHED;
	p->inner = inner;
	return &p->base;
}

static void pass_pair(struct rig *r, conduit_flow **a, conduit_flow **b)
{
	conduit_flow *ia, *ib;
	struct conduit_mem_config cfg = {.capacity = 65536};
	CK_RC(conduit_mem_pair(&ia, &ib, r->ctx, &cfg), CONDUIT_OK);
	*a = pass_over(r, ia);
	*b = pass_over(r, ib);
}
#endif

/* The table of rigs: what this build has. */
static const struct rig_ops rigs[] = {
#ifdef CONDUIT_HAVE_MEM
    {"mem", 0, mem_up, mem_pair, host_down, NULL},
#endif
#ifdef CONDUIT_HAVE_UNIX
    {"unix", Q_EOF_AT_FREE | Q_ABORT_NEEDS_UNREAD, unix_up, listener_pair,
     host_down, NULL},
#endif
#ifdef CONDUIT_HAVE_TCP
    {"tcp",
     Q_EOF_AT_FREE | Q_SHUT_RD_DROPS | Q_LATE_WRITE_ERROR |
         Q_ABORT_NEEDS_UNREAD,
     tcp_up, listener_pair, host_down, NULL},
#endif
#ifdef CONDUIT_HAVE_LWIP
    {"lwip", Q_SHUT_RD_DROPS | Q_LATE_WRITE_ERROR, lwip_up, listener_pair,
     lwip_down, NULL},
#endif
#ifdef CONDUIT_HAVE_VCHAN
    {"vchan", Q_SHUT_RD_HOLDS | Q_CLOSE_HOLDS_WRITES | Q_STALE_WAKEUP, vchan_up,
     vchan_pair, vchan_down, vchan_enter},
#endif
#if defined(CONDUIT_HAVE_TLS) && defined(CONDUIT_HAVE_MEM)
    {"tls(mem)", Q_WRITE_QUEUES, tls_up, tls_pair, host_down, NULL},
#endif
#ifdef CONDUIT_HAVE_MEM
    {"layer(mem)", 0, mem_up, pass_pair, host_down, NULL},
#endif
};
#define NRIGS (sizeof(rigs) / sizeof(rigs[0]))

/* ------------------------------------------------------------------ */
/* Steps the cases share                                               */

/* Read exactly n bytes into buf. */
static void read_exact(struct rig *r, conduit_flow *f, void *buf, size_t n)
{
	size_t got = 0;
	uint64_t end = cd_now_ms() + (uint64_t)step_ms();
	while (got < n) {
		CK(cd_now_ms() < end, "read on %s: %zu of %zu bytes in time",
		   name_of(r, f), got, n);
		size_t k = 0;
		enter(r, f);
		int rc = conduit_read(f, (char *)buf + got, n - got, &k);
		if (rc == CONDUIT_OK) {
			CK(k > 0 && k <= n - got, "read returned OK with %zu",
			   k);
			got += k;
			continue;
		}
		CK(fk_is_want(rc), "read on %s: %s (%s)", name_of(r, f),
		   conduit_status_name(rc), conduit_flow_error(f));
		poll2(r, f, CONDUIT_POLLIN, NULL, 0, 20);
	}
}

/* Write all n bytes of buf. */
static void write_all(struct rig *r, conduit_flow *f, const void *buf, size_t n)
{
	size_t put = 0;
	uint64_t end = cd_now_ms() + (uint64_t)step_ms();
	while (put < n) {
		CK(cd_now_ms() < end, "write on %s: %zu of %zu bytes in time",
		   name_of(r, f), put, n);
		size_t k = 0;
		enter(r, f);
		int rc = conduit_write(f, (const char *)buf + put, n - put, &k);
		if (rc == CONDUIT_OK) {
			CK(k > 0 && k <= n - put, "write returned OK with %zu",
			   k);
			put += k;
			continue;
		}
		CK(fk_is_want(rc), "write on %s: %s (%s)", name_of(r, f),
		   conduit_status_name(rc), conduit_flow_error(f));
		poll2(r, f, CONDUIT_POLLOUT, NULL, 0, 20);
	}
}

/* Read until something other than bytes or a want: that status.  Bytes
 * are an error unless expect_bytes, when they are skipped. */
static int read_end(struct rig *r, conduit_flow *f, bool expect_bytes)
{
	uint64_t end = cd_now_ms() + (uint64_t)step_ms();
	for (;;) {
		CK(cd_now_ms() < end, "read on %s: no end in time",
		   name_of(r, f));
		char buf[4096];
		size_t k = 0;
		enter(r, f);
		int rc = conduit_read(f, buf, sizeof(buf), &k);
		if (rc == CONDUIT_OK) {
			CK(expect_bytes, "read on %s: %zu unexpected bytes",
			   name_of(r, f), k);
			continue;
		}
		if (!fk_is_want(rc))
			return rc;
		poll2(r, f, CONDUIT_POLLIN, NULL, 0, 20);
	}
}

/* Write until an error; returns it.  Wants wait for writable, up to a
 * step's time; limit bounds the bytes taken meanwhile. */
static int write_until_error(struct rig *r, conduit_flow *f, size_t limit)
{
	static const char chunk[1024];
	size_t put = 0;
	uint64_t end = cd_now_ms() + (uint64_t)step_ms();
	for (;;) {
		CK(cd_now_ms() < end && put <= limit,
		   "write on %s: no error after %zu bytes", name_of(r, f), put);
		size_t k = 0;
		enter(r, f);
		int rc = conduit_write(f, chunk, sizeof(chunk), &k);
		if (rc == CONDUIT_OK) {
			put += k;
			continue;
		}
		if (!fk_is_want(rc))
			return rc;
		poll2(r, f, CONDUIT_POLLOUT, NULL, 0, 20);
	}
}

/* Close f gracefully, waiting out its wants. */
static void close_graceful(struct rig *r, conduit_flow *f)
{
	uint64_t end = cd_now_ms() + (uint64_t)step_ms();
	for (;;) {
		enter(r, f);
		int rc = conduit_close(f);
		if (rc == CONDUIT_OK)
			return;
		CK(fk_is_want(rc), "close on %s: %s (%s)", name_of(r, f),
		   conduit_status_name(rc), conduit_flow_error(f));
		CK(cd_now_ms() < end, "close on %s: not done in time",
		   name_of(r, f));
		poll2(r, f, conduit_want_bits(rc), NULL, 0, 20);
	}
}

/* The end of f that the peer sees at its close: close, and free too
 * where the backend has no close op (Q_EOF_AT_FREE).  Returns NULL if
 * freed. */
static conduit_flow *end_gracefully(struct rig *r, conduit_flow *f)
{
	close_graceful(r, f);
	if (r->ops->quirks & Q_EOF_AT_FREE) {
		enter(r, f);
		conduit_flow_free(f);
		return NULL;
	}
	return f;
}

/* Wait until f is ready for events by conduit_poll, within a step. */
static void until_ready(struct rig *r, conduit_flow *f, unsigned events,
                        const char *why)
{
	uint64_t end = cd_now_ms() + (uint64_t)step_ms();
	while (poll2(r, f, events, NULL, 0, 20) == 0)
		CK(cd_now_ms() < end, "%s: %s never ready", why, name_of(r, f));
}

/* ------------------------------------------------------------------ */
/* The cases                                                           */

typedef void case_fn(struct rig *r, conduit_flow *a, conduit_flow *b);

/* Bytes go both ways intact; the counters count them. */
static void c_read_write(struct rig *r, conduit_flow *a, conduit_flow *b)
{
	char buf[16];
	write_all(r, a, "hello", 5);
	read_exact(r, b, buf, 5);
	CK(memcmp(buf, "hello", 5) == 0, "b read \"%.5s\"", buf);
	write_all(r, b, "world!", 6);
	read_exact(r, a, buf, 6);
	CK(memcmp(buf, "world!", 6) == 0, "a read \"%.6s\"", buf);
	struct conduit_flow_stats sa, sb;
	conduit_flow_stats(a, &sa);
	conduit_flow_stats(b, &sb);
	CK(sa.bytes_written == 5 && sa.bytes_read == 6 && sb.bytes_read == 5 &&
	       sb.bytes_written == 6,
	   "counters a %llu/%llu b %llu/%llu",
	   (unsigned long long)sa.bytes_written,
	   (unsigned long long)sa.bytes_read,
	   (unsigned long long)sb.bytes_written,
	   (unsigned long long)sb.bytes_read);
	/* A read of 0 bytes and a write of 0 bytes move nothing. */
	size_t n = 1;
	CK_RC(conduit_read(a, buf, 0, &n), CONDUIT_OK);
	CK(n == 0, "read of 0 gave %zu", n);
	n = 1;
	enter(r, a);
	CK_RC(conduit_write(a, "x", 0, &n), CONDUIT_OK);
	CK(n == 0, "write of 0 took %zu", n);
}

/*
 * Writing without reading: writes are short or want once the transport
 * is full; then the writer is not ready (poll with no wait reports
 * nothing, as pending says), and becomes ready once the reader makes room;
 * every byte arrives in order.
 */
static void c_short_writes_and_full(struct rig *r, conduit_flow *a,
                                    conduit_flow *b)
{
	size_t cap = 64 * MiB, put = 0;
	unsigned char *buf = malloc(cap);
	CK(buf != NULL, "out of memory");
	cd_pattern(11, 0, buf, cap);
	bool short_seen = false;
	int rc = CONDUIT_OK;
	uint64_t end = cd_now_ms() + (uint64_t)step_ms();
	/* Fill: write until a want, letting the transport move what it
	 * moves by itself (lwIP needs the loop turned). */
	for (;;) {
		CK(put < cap && cd_now_ms() < end,
		   "a took %zu bytes and still does not want", put);
		size_t k = 0, ask = cap - put < 1 * MiB ? cap - put : 1 * MiB;
		enter(r, a);
		rc = conduit_write(a, buf + put, ask, &k);
		if (rc == CONDUIT_OK) {
			CK(k > 0 && k <= ask, "OK with %zu of %zu", k, ask);
			short_seen = short_seen || k < ask;
			put += k;
			continue;
		}
		CK(fk_is_want(rc), "write: %s (%s)", conduit_status_name(rc),
		   conduit_flow_error(a));
		/* Full, or is it just in transit?  Turn the loop and try
		 * again; only a want that survives a turn counts. */
		poll2(r, b, CONDUIT_POLLIN, NULL, 0, 0);
		if (poll2(r, a, CONDUIT_POLLOUT, NULL, 0, 50) == 0)
			break;
	}
	CK(short_seen, "no short write before the want (%zu bytes taken)", put);
	/* The want and conduit_poll agree: not ready for writing.  (A
	 * write may still take a few bytes: Linux reports a TCP socket
	 * writable only once a third of its buffer is free.) */
	CK(poll2(r, a, CONDUIT_POLLOUT, NULL, 0, 0) == 0,
	   "a full writer is reported writable");
	/* b reads until a is reported writable; then a write takes bytes
	 * (and sends what a layer queued); then every byte arrives. */
	unsigned char *got = malloc(put + 1 * MiB);
	CK(got != NULL, "out of memory");
	size_t rd = 0, k = 0;
	end = cd_now_ms() + (uint64_t)step_ms() * 3;
	while (poll2(r, a, CONDUIT_POLLOUT, NULL, 0, 0) == 0) {
		CK(cd_now_ms() < end, "read %zu of %zu; a never writable", rd,
		   put);
		size_t n = 0;
		enter(r, b);
		rc = conduit_read(b, got + rd, put - rd, &n);
		if (rc == CONDUIT_OK)
			rd += n;
		else
			CK(fk_is_want(rc) && rd < put, "read: %s",
			   conduit_status_name(rc));
		if (rc != CONDUIT_OK && !(r->ops->quirks & Q_WRITE_QUEUES))
			CK(rd < put, "all read, a still not writable");
		if (rc != CONDUIT_OK)
			poll2(r, b, CONDUIT_POLLIN, NULL, 0, 20);
	}
	enter(r, a);
	rc = conduit_write(a, buf + put, 100, &k);
	CK(rc == CONDUIT_OK && k > 0, "write once writable: %s",
	   conduit_status_name(rc));
	read_exact(r, b, got + rd, put + k - rd);
	size_t bad = cd_pattern_check(11, 0, got, put + k);
	CK(bad == put + k, "byte %zu of %zu wrong", bad, put + k);
	free(got);
	free(buf);
}

/* A gather write is one stream: empty buffers skipped, order kept. */
static void c_writev(struct rig *r, conduit_flow *a, conduit_flow *b)
{
	char big[400];
	cd_pattern(5, 0, big, sizeof(big));
	const void *none = (r->ops->quirks & Q_NULL_EMPTY_IOV) ? "" : NULL;
	struct conduit_iov iov[] = {
	    {"", 0}, {"ab", 2}, {none, 0}, {"cde", 3}, {big, sizeof(big)},
	    {"", 0}, {"f", 1},
	};
	char want[3 + 2 + sizeof(big) + 1];
	memcpy(want, "abcde", 5);
	memcpy(want + 5, big, sizeof(big));
	want[5 + sizeof(big)] = 'f';
	size_t total = sizeof(want), put = 0;
	uint64_t end = cd_now_ms() + (uint64_t)step_ms();
	size_t first = 0;
	while (put < total) {
		CK(cd_now_ms() < end, "writev: %zu of %zu in time", put, total);
		/* The buffers not yet taken, the first one cut. */
		struct conduit_iov rest[8];
		size_t cnt = 0, skip = put;
		for (size_t i = 0; i < sizeof(iov) / sizeof(iov[0]); i++) {
			if (skip >= iov[i].len) {
				skip -= iov[i].len;
				if (iov[i].len > 0 || cnt == 0)
					continue;
			}
			rest[cnt].base = iov[i].len > 0
			                     ? (const char *)iov[i].base + skip
			                     : iov[i].base;
			rest[cnt].len = iov[i].len - skip;
			skip = 0;
			cnt++;
		}
		size_t k = 0;
		enter(r, a);
		int rc = conduit_writev(a, rest, cnt, &k);
		if (rc == CONDUIT_OK) {
			CK(k > 0 && k <= total - put, "writev OK with %zu", k);
			if (first == 0)
				first = k;
			put += k;
			continue;
		}
		CK(fk_is_want(rc), "writev: %s (%s)", conduit_status_name(rc),
		   conduit_flow_error(a));
		poll2(r, a, CONDUIT_POLLOUT, NULL, 0, 20);
	}
	char got[sizeof(want)];
	read_exact(r, b, got, total);
	CK(memcmp(got, want, total) == 0, "gathered bytes arrived wrong");
	struct conduit_flow_stats sa;
	conduit_flow_stats(a, &sa);
	CK(sa.bytes_written == total, "counted %llu written",
	   (unsigned long long)sa.bytes_written);
	/* Only empty buffers: nothing moves, nothing fails. */
	struct conduit_iov empty[2] = {{"", 0}, {NULL, 0}};
	size_t k = 9;
	CK_RC(conduit_writev(a, empty, 2, &k), CONDUIT_OK);
	CK(k == 0, "empty writev took %zu", k);
}

/*
 * Half-close: after a's SHUT_WR, b reads what came before, then end of
 * stream, again on every read; b may still write and a read it; a's own
 * writes are refused.  Then b's SHUT_WR ends the other direction.
 */
static void c_shutdown_wr_eof(struct rig *r, conduit_flow *a, conduit_flow *b)
{
	char buf[8];
	write_all(r, a, "last", 4);
	enter(r, a);
	CK_RC(conduit_shutdown(a, CONDUIT_SHUT_WR), CONDUIT_OK);
	CK_RC(conduit_shutdown(a, CONDUIT_SHUT_WR), CONDUIT_OK);
	size_t k = 0;
	CK_RC(conduit_write(a, "x", 1, &k), CONDUIT_ERR_STATE);
	read_exact(r, b, buf, 4);
	CK(memcmp(buf, "last", 4) == 0, "b read \"%.4s\"", buf);
	until_ready(r, b, CONDUIT_POLLIN, "end of stream");
	CK_RC(read_end(r, b, false), CONDUIT_EOF);
	enter(r, b);
	CK_RC(conduit_read(b, buf, sizeof(buf), &k), CONDUIT_EOF);
	CK(poll2(r, b, CONDUIT_POLLIN, NULL, 0, 0) == 1,
	   "b at end of stream is not reported readable");
	/* The other direction is untouched. */
	write_all(r, b, "reply", 5);
	read_exact(r, a, buf, 5);
	CK(memcmp(buf, "reply", 5) == 0, "a read \"%.5s\"", buf);
	enter(r, b);
	CK_RC(conduit_shutdown(b, CONDUIT_SHUT_WR), CONDUIT_OK);
	CK_RC(read_end(r, a, false), CONDUIT_EOF);
	/* Both directions over: a graceful close on both ends. */
	close_graceful(r, a);
	close_graceful(r, b);
}

/*
 * SHUT_RD: reading is refused; what the peer writes next is refused
 * (CONDUIT_ERR_CLOSED), or, as the rig's quirk says, dropped or held.
 */
static void c_shutdown_rd(struct rig *r, conduit_flow *a, conduit_flow *b)
{
	char buf[8];
	size_t k = 0;
	enter(r, a);
	CK_RC(conduit_shutdown(a, CONDUIT_SHUT_RD), CONDUIT_OK);
	CK_RC(conduit_read(a, buf, sizeof(buf), &k), CONDUIT_ERR_STATE);
	/* a still writes. */
	write_all(r, a, "up", 2);
	read_exact(r, b, buf, 2);
	unsigned q = r->ops->quirks;
	if (q & Q_SHUT_RD_DROPS) {
		/* 1 MiB goes without complaint, nowhere. */
		static char mb[1 * MiB];
		write_all(r, b, mb, sizeof(mb));
	} else if (q & Q_SHUT_RD_HOLDS) {
		/* Taken until the ring is full; then b wants for good. */
		size_t put = 0;
		uint64_t end = cd_now_ms() + (uint64_t)step_ms();
		for (;;) {
			CK(cd_now_ms() < end, "b never filled (%zu)", put);
			enter(r, b);
			int rc = conduit_write(b, buf, sizeof(buf), &k);
			if (rc == CONDUIT_OK) {
				put += k;
				continue;
			}
			CK(fk_is_want(rc), "write: %s",
			   conduit_status_name(rc));
			if (poll2(r, b, CONDUIT_POLLOUT, NULL, 0, 100) == 0)
				break;
		}
	} else {
		int rc = write_until_error(r, b, 64 * MiB);
		CK(rc == CONDUIT_ERR_CLOSED,
		   "b's write after a's SHUT_RD: %s (%s), want "
		   "CONDUIT_ERR_CLOSED",
		   conduit_status_name(rc), conduit_flow_error(b));
	}
}

/* Closed: every operation is refused, close again is a no-op. */
static void c_after_close(struct rig *r, conduit_flow *a, conduit_flow *b)
{
	(void)b;
	close_graceful(r, a);
	char buf[4];
	size_t k = 7;
	enter(r, a);
	CK_RC(conduit_read(a, buf, sizeof(buf), &k), CONDUIT_ERR_STATE);
	CK(k == 0, "read after close set %zu", k);
	CK_RC(conduit_write(a, "x", 1, &k), CONDUIT_ERR_STATE);
	CK_RC(conduit_shutdown(a, CONDUIT_SHUT_WR), CONDUIT_ERR_STATE);
	CK_RC(conduit_handshake(a), CONDUIT_ERR_STATE);
	CK(strstr(conduit_flow_error(a), "closed") != NULL, "message: %s",
	   conduit_flow_error(a));
	CK_RC(conduit_close(a), CONDUIT_OK);
	/* A closed flow is ready, so a poller calls and learns. */
	CK(poll2(r, a, CONDUIT_POLLIN | CONDUIT_POLLOUT, NULL, 0, 0) == 1,
	   "a closed flow is not reported ready");
}

/*
 * The peer's graceful close: bytes written before it arrive, then end of
 * stream; writing to it then fails with CONDUIT_ERR_CLOSED (or RESET),
 * at once or, as the quirk says, once its reset has come back; that
 * failure stays.
 */
static void c_peer_close(struct rig *r, conduit_flow *a, conduit_flow *b)
{
	char buf[4];
	write_all(r, b, "bye", 3);
	conduit_flow *left = end_gracefully(r, b);
	if (left == NULL)
		r->b = NULL;
	read_exact(r, a, buf, 3);
	CK(memcmp(buf, "bye", 3) == 0, "a read \"%.3s\"", buf);
	CK_RC(read_end(r, a, false), CONDUIT_EOF);
	if (left != NULL && (r->ops->quirks & Q_CLOSE_HOLDS_WRITES)) {
		/* Taken until full, no error; freeing b ends that. */
		size_t put = 0, k = 0;
		int rc;
		for (;;) {
			CK(put < 64 * MiB, "a never filled (%zu)", put);
			enter(r, a);
			rc = conduit_write(a, buf, sizeof(buf), &k);
			if (rc != CONDUIT_OK)
				break;
			put += k;
		}
		CK(fk_is_want(rc), "write: %s (%s)", conduit_status_name(rc),
		   conduit_flow_error(a));
		/* Nothing will make room, and conduit_poll should say so;
		 * the quirk says it does not (its loop would spin). */
		bool ready = poll2(r, a, CONDUIT_POLLOUT, NULL, 0, 0) > 0;
		if (r->ops->quirks & Q_FULL_WRITER_READY_AFTER_EOF)
			CK(ready, "Q_FULL_WRITER_READY_AFTER_EOF is fixed: "
			          "drop the quirk");
		else
			CK(!ready, "a full writer is reported writable");
		enter(r, b);
		conduit_flow_free(b);
		r->b = NULL;
	}
	size_t limit = (r->ops->quirks & Q_LATE_WRITE_ERROR) ? 64 * MiB : 0;
	int rc = write_until_error(r, a, limit);
	CK(rc == CONDUIT_ERR_CLOSED || rc == CONDUIT_ERR_RESET,
	   "write to a closed peer: %s (%s)", conduit_status_name(rc),
	   conduit_flow_error(a));
	size_t k;
	enter(r, a);
	CK_RC(conduit_write(a, "x", 1, &k), rc);
	CK(conduit_flow_error(a)[0] != '\0', "no message");
}

/*
 * Errors after failure: the peer goes away abortively (freed unclosed,
 * with a byte it never read where the quirk needs one); a's next read
 * fails with CONDUIT_ERR_RESET and every operation then returns it
 * again; a failed flow is ready, closes without error and frees.
 */
static void c_peer_abort(struct rig *r, conduit_flow *a, conduit_flow *b)
{
	if (r->ops->quirks & Q_ABORT_NEEDS_UNREAD) {
		char buf[1];
		write_all(r, a, "u", 1);
		/* Arrived, not read. */
		until_ready(r, b, CONDUIT_POLLIN, "the unread byte");
		(void)buf;
	}
	enter(r, b);
	conduit_flow_free(b);
	r->b = NULL;
	int rc = read_end(r, a, false);
	CK(rc == CONDUIT_ERR_RESET, "read after the peer's abort: %s (%s)",
	   conduit_status_name(rc), conduit_flow_error(a));
	char buf[4];
	size_t k = 5;
	enter(r, a);
	CK_RC(conduit_read(a, buf, sizeof(buf), &k), rc);
	CK(k == 0, "failed read set %zu", k);
	CK_RC(conduit_write(a, "x", 1, &k), rc);
	CK_RC(conduit_shutdown(a, CONDUIT_SHUT_WR), rc);
	CK_RC(conduit_handshake(a), rc);
	CK(poll2(r, a, CONDUIT_POLLIN | CONDUIT_POLLOUT, NULL, 0, 0) == 1,
	   "a failed flow is not reported ready");
	CK(conduit_flow_error(a)[0] != '\0', "no message");
	CK_RC(conduit_close(a), CONDUIT_OK);
}

/*
 * Readiness: an idle pair is writable and not readable, and the read
 * wants; a byte written makes the peer readable by conduit_poll, and the
 * read then takes it.  The same through conduit_read_wait().
 */
static void c_pending_and_poll(struct rig *r, conduit_flow *a, conduit_flow *b)
{
	char buf[4];
	size_t k = 0;
	until_ready(r, a, CONDUIT_POLLOUT, "an idle flow's write");
	CK(poll2(r, b, CONDUIT_POLLIN, NULL, 0, 0) == 0,
	   "an idle flow is reported readable");
	enter(r, b);
	int rc = conduit_read(b, buf, sizeof(buf), &k);
	CK(fk_is_want(rc), "idle read: %s", conduit_status_name(rc));
	write_all(r, a, "p", 1);
	until_ready(r, b, CONDUIT_POLLIN, "a byte");
	enter(r, b);
	CK_RC(conduit_read(b, buf, sizeof(buf), &k), CONDUIT_OK);
	CK(k == 1 && buf[0] == 'p', "read %zu bytes", k);
	if (r->ops->quirks & Q_STALE_WAKEUP) {
		/* The want that consumes the stale events. */
		enter(r, b);
		rc = conduit_read(b, buf, sizeof(buf), &k);
		CK(fk_is_want(rc), "drained read: %s", conduit_status_name(rc));
	}
	CK(poll2(r, b, CONDUIT_POLLIN, NULL, 0, 0) == 0,
	   "drained flow is reported readable");
	/* The blocking conveniences over the same readiness. */
	write_all(r, a, "qr", 2);
	until_ready(r, b, CONDUIT_POLLIN, "two bytes");
	enter(r, b);
	CK_RC(conduit_read_wait(b, buf, 2, &k, step_ms()), CONDUIT_OK);
	CK(k >= 1 && buf[0] == 'q', "read_wait got %zu", k);
	if (k == 1)
		read_exact(r, b, buf + 1, 1);
	enter(r, a);
	CK_RC(conduit_write_all(a, "s", 1, &k, step_ms()), CONDUIT_OK);
	read_exact(r, b, buf, 1);
	CK(buf[0] == 's', "write_all sent %c", buf[0]);
}

/* Both directions at once, every byte checked, then end of stream. */
static void c_large_transfer(struct rig *r, conduit_flow *a, conduit_flow *b)
{
	const uint64_t total = 8 * MiB;
	conduit_flow *f[2] = {a, b};
	uint64_t sent[2] = {0, 0}, got[2] = {0, 0};
	bool shut[2] = {false, false}, eof[2] = {false, false};
	static unsigned char buf[64 * 1024];
	uint64_t end = cd_now_ms() + (uint64_t)step_ms() * 6;
	while (!eof[0] || !eof[1]) {
		CK(cd_now_ms() < end,
		   "a sent %llu got %llu, b sent %llu got %llu in time",
		   (unsigned long long)sent[0], (unsigned long long)got[0],
		   (unsigned long long)sent[1], (unsigned long long)got[1]);
		bool moved = false;
		for (int i = 0; i < 2; i++) {
			enter(r, f[i]);
			if (sent[i] < total) {
				size_t n = total - sent[i] < sizeof(buf)
				               ? (size_t)(total - sent[i])
				               : sizeof(buf);
				cd_pattern(100 + (uint32_t)i, sent[i], buf, n);
				size_t k = 0;
				int rc = conduit_write(f[i], buf, n, &k);
				CK(rc == CONDUIT_OK || fk_is_want(rc),
				   "write on %c: %s", 'a' + i,
				   conduit_flow_error(f[i]));
				sent[i] += k;
				moved = moved || k > 0;
			} else if (!shut[i]) {
				CK_RC(conduit_shutdown(f[i], CONDUIT_SHUT_WR),
				      CONDUIT_OK);
				shut[i] = true;
			}
			if (!eof[i]) {
				size_t k = 0;
				int rc =
				    conduit_read(f[i], buf, sizeof(buf), &k);
				if (rc == CONDUIT_OK) {
					size_t bad = cd_pattern_check(
					    101 - (uint32_t)i, got[i], buf, k);
					CK(bad == k, "%c: byte %llu wrong",
					   'a' + i,
					   (unsigned long long)(got[i] + bad));
					got[i] += k;
					moved = true;
				} else if (rc == CONDUIT_EOF) {
					CK(got[i] == total,
					   "%c: end of stream after %llu",
					   'a' + i, (unsigned long long)got[i]);
					eof[i] = true;
				} else {
					CK(fk_is_want(rc), "read on %c: %s",
					   'a' + i, conduit_flow_error(f[i]));
				}
			}
		}
		if (!moved)
			poll2(r, a,
			      (eof[0] ? 0 : CONDUIT_POLLIN) |
			          (sent[0] < total ? CONDUIT_POLLOUT : 0),
			      b,
			      (eof[1] ? 0 : CONDUIT_POLLIN) |
			          (sent[1] < total ? CONDUIT_POLLOUT : 0),
			      20);
	}
	struct conduit_flow_stats sa;
	conduit_flow_stats(a, &sa);
	CK(sa.bytes_read == total && sa.bytes_written == total,
	   "counters %llu %llu", (unsigned long long)sa.bytes_read,
	   (unsigned long long)sa.bytes_written);
	close_graceful(r, a);
	close_graceful(r, b);
}

/*
 * unread (what StartTLS asks): more than 0 while bytes wait unread, 0
 * once they are read.  Not an exact count: framing and ciphertext not yet
 * decrypted count too (vchan, TLS).
 */
static void c_unread(struct rig *r, conduit_flow *a, conduit_flow *b)
{
	CK(b->ops->unread != NULL, "no unread op");
	size_t n = 99;
	enter(r, b);
	CK_RC(b->ops->unread(b, &n), CONDUIT_OK);
	CK(n == 0, "idle flow: %zu unread", n);
	write_all(r, a, "abc", 3);
	until_ready(r, b, CONDUIT_POLLIN, "three bytes");
	enter(r, b);
	CK_RC(b->ops->unread(b, &n), CONDUIT_OK);
	CK(n > 0, "3 bytes waiting, unread says 0");
	char buf[3];
	read_exact(r, b, buf, 3);
	enter(r, b);
	CK_RC(b->ops->unread(b, &n), CONDUIT_OK);
	CK(n == 0, "all read, unread says %zu", n);
}

/* *_free(NULL) is a no-op; ends may be freed in either order. */
static void c_free(struct rig *r, conduit_flow *a, conduit_flow *b)
{
	conduit_flow_free(NULL);
	conduit_listener_free(NULL);
	CK_RC(conduit_close(NULL), CONDUIT_ERR_INVALID);
	/* b before a, unclosed: abortive, and nothing is left (ASan and
	 * the descriptor check see to that). */
	enter(r, b);
	conduit_flow_free(b);
	enter(r, a);
	conduit_flow_free(a);
	r->a = r->b = NULL;
}

static const struct contract_case {
	const char *name;
	case_fn *fn;
	double timeout_s;
} cases[] = {
    {"read_write", c_read_write, 30},
    {"short_writes_and_full", c_short_writes_and_full, 60},
    {"writev", c_writev, 30},
    {"shutdown_wr_eof", c_shutdown_wr_eof, 30},
    {"shutdown_rd", c_shutdown_rd, 30},
    {"after_close", c_after_close, 30},
    {"peer_close", c_peer_close, 30},
    {"peer_abort", c_peer_abort, 30},
    {"pending_and_poll", c_pending_and_poll, 30},
    {"large_transfer", c_large_transfer, 90},
    {"unread", c_unread, 30},
    {"free", c_free, 30},
};
#define NCASES (sizeof(cases) / sizeof(cases[0]))

static void run(size_t c, size_t i)
{
	struct rig r;
	memset(&r, 0, sizeof(r));
	r.ops = &rigs[i];
	snprintf(where, sizeof(where), "%s/%s", rigs[i].name, cases[c].name);
	r.ops->up(&r);
	r.ops->pair(&r, &r.a, &r.b);
	cases[c].fn(&r, r.a, r.b);
	if (r.b != NULL) {
		enter(&r, r.b);
		conduit_flow_free(r.b);
	}
	if (r.a != NULL) {
		enter(&r, r.a);
		conduit_flow_free(r.a);
	}
	r.ops->down(&r);
}

/* One test per case, looped over the rigs (_i). */
#define CASE_TEST(n)                                                           \
	START_TEST(t_##n)                                                      \
	{                                                                      \
		run(n, (size_t)_i);                                            \
	}                                                                      \
	END_TEST
CASE_TEST(0)
CASE_TEST(1)
CASE_TEST(2)
CASE_TEST(3)
CASE_TEST(4)
CASE_TEST(5)
CASE_TEST(6)
CASE_TEST(7)
CASE_TEST(8)
CASE_TEST(9)
CASE_TEST(10)
CASE_TEST(11)

/* The rigs of this build, and the case table's size, as expected. */
START_TEST(rigs_of_this_build)
{
	snprintf(where, sizeof(where), "rigs");
	char names[256] = "";
	for (size_t i = 0; i < NRIGS; i++) {
		strcat(names, " ");
		strcat(names, rigs[i].name);
	}
	CK(strcmp(names + 1, CONDUIT_CONTRACT_RIGS) == 0,
	   "rigs \"%s\", configured \"%s\"", names + 1, CONDUIT_CONTRACT_RIGS);
}
END_TEST

int main(void)
{
#if defined(CONDUIT_HAVE_TLS) && defined(CONDUIT_HAVE_MEM)
	cd_certs_make(&certs, "conduit-contract", 30, "", cert_steps);
#endif
	const TTest *const case_tests[] = {t_0, t_1, t_2, t_3, t_4,  t_5,
	                                   t_6, t_7, t_8, t_9, t_10, t_11};
	_Static_assert(sizeof(case_tests) / sizeof(case_tests[0]) == NCASES,
	               "one test function per case");
	const struct cd_test tests[] = {CD_TEST(rigs_of_this_build, 0)};
	Suite *s = cd_suite("contract", tests, 1);
	for (size_t c = 0; c < NCASES; c++)
		cd_suite_add_loop(s, cases[c].name, case_tests[c], (int)NRIGS,
		                  cases[c].timeout_s);
	int rc = cd_run(s);
#if defined(CONDUIT_HAVE_TLS) && defined(CONDUIT_HAVE_MEM)
	cd_certs_remove(&certs);
#endif
	return rc;
}
