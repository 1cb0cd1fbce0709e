/*
 * lwip.c - conduit-bench's lwIP figures: TCP on lwIP through
 * conduit's public API, beside lwIP's raw TCP API doing the same work.
 *
 * lwIP is one stack per process (its state is global), so both ends of
 * every connection live in this process: two netifs of the stack joined by
 * conduit's in-memory Ethernet wire (conduit_lwip_netif_wire_pair),
 * 10.0.0.1 the client's and 10.0.0.2 the server's, and one loop drives
 * both ends.  Both variants use that same wire, whose frames are carried
 * by conduit_lwip_process(): the wire is the dummy device under the
 * stack, not what is measured.
 *
 *   conduit   a context on the stack (conduit_ctx_use_lwip): URIs,
 *             conduit_listen / conduit_connect / conduit_accept /
 *             conduit_handshake / conduit_read / conduit_write, and one
 *             conduit_poll() over both ends per turn of the loop, acting
 *             on what it reports.
 *   raw lwIP  tcp_new_ip_type / tcp_bind_netif / tcp_listen /
 *             tcp_connect with tcp_accept, tcp_recv and tcp_err
 *             callbacks.  Received pbufs are queued by the callback and
 *             copied out into the application's buffer (pbuf_copy_partial,
 *             then tcp_recved); writes are tcp_write with
 *             TCP_WRITE_FLAG_COPY, then tcp_output.  Each turn of the loop
 *             runs the stack (conduit_lwip_process: the wire, then lwIP's
 *             timers), looks at what each end can do, and sleeps until
 *             lwIP's next timer only when nothing can move.
 *
 * So both variants make the same copies (the application's buffer into
 * lwIP, lwIP's pbufs into the application's buffer), use the same pcb
 * settings (pinned to their netif, Nagle off, as conduit sets them) and
 * the same byte check; what differs is conduit's code between the
 * application and lwIP.  The figures, as for sockets (sock_run.c): one-way
 * throughput with 1, 16 and 64 KiB writes (the receiver checks every byte
 * against a pattern; the clock stops when the last byte has been checked),
 * 64-byte round trips (median and 99th percentile), and sequential connect +
 * accept + close.  Each repeat runs the two variants back to back in
 * alternating order; bench_emit() gets every run.  Between runs (and,
 * off the clock, every LB_CONN_BATCH connections) the stack is settled and
 * TIME-WAIT pcbs are dropped, so neither variant inherits the other's and
 * a connection's cost does not grow with the run (lwIP scans that list for
 * every SYN and every new port).
 */
#include "bench.h"

#include <conduit/conduit.h>
#include <conduit/lwip.h>

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lwip/ip_addr.h"
#include "lwip/netif.h"
#include "lwip/pbuf.h"
#include "lwip/priv/tcp_priv.h"
#include "lwip/tcp.h"
#include "lwip/timeouts.h"

/* Every wait is bounded; generous for valgrind and a loaded machine. */
#define LB_TIMEOUT_MS 30000
/* The receiver's buffer, the same for both variants. */
#define LB_RBUF   (64 * 1024)
#define LB_PING   64
#define LB_MIB    (1024.0 * 1024.0)
#define LB_ADDR_C "10.0.0.1"
#define LB_ADDR_S "10.0.0.2"
#define LB_PORT   7001
/* Received chains a raw end holds before its callback refuses more
 * (lwIP then keeps the data and offers it again): more than a full
 * window of segments. */
#define LB_RXQ 256
/* Connections timed between two clean-ups of the stack (see run_connect). */
#define LB_CONN_BATCH 250

enum lb_api { LB_RAW, LB_CONDUIT };
static const char *const lb_api_name[] = {"raw", "conduit"};

/* What an operation on an end did. */
enum { LB_OK, LB_WANT, LB_EOF, LB_ERR };

static char lb_msg[512];

__attribute__((format(printf, 1, 2))) static int lb_fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(lb_msg, sizeof(lb_msg), fmt, ap);
	va_end(ap);
	return LB_ERR;
}

static void lb_nap_ms(uint32_t ms)
{
	struct timespec ts = {(time_t)(ms / 1000),
	                      (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* ------------------------------------------------------------------ */
/* Ends of a connection and listeners, either variant.                 */

struct raw_end {
	struct tcp_pcb *pcb;     /* NULL once lwIP freed it or we let it go */
	struct pbuf *rx[LB_RXQ]; /* received chains, oldest first (a ring) */
	size_t rx_head, rx_n, rx_off;
	bool connected, eof, dead;
	err_t err;
};

struct end {
	enum lb_api api;
	conduit_flow *flow;
	struct raw_end raw;
};

struct lsn {
	enum lb_api api;
	conduit_listener *l;
	struct tcp_pcb *pcb;
	struct end *slot;  /* raw: the end the next connection goes to */
	unsigned accepted; /* raw: connections put in slot, not yet taken */
};

/* What to wait for, and what came (CONDUIT_POLLIN / CONDUIT_POLLOUT). */
struct want {
	struct end *e;
	struct lsn *l;
	unsigned events, revents;
};

struct rig {
	conduit_lwip *st;
	conduit_lwip_netif *a, *b;
	struct netif *nc, *ns; /* lwIP's netifs of the two addresses */
	ip_addr_t server_ip;
	conduit_ctx *ctx;
	char uri[64];
	struct end c, s;
	struct lsn L;
	uint8_t *wbuf, *rbuf;
	uint64_t deadline; /* of the current wait, in ns */
};

static const char *lb_err_text(err_t e)
{
	switch (e) {
	case ERR_MEM:
		return "out of memory";
	case ERR_RTE:
		return "no route";
	case ERR_ABRT:
		return "connection aborted";
	case ERR_RST:
		return "connection reset";
	case ERR_CLSD:
		return "connection closed";
	case ERR_CONN:
		return "not connected";
	case ERR_USE:
		return "address in use";
	default:
		return "lwIP error";
	}
}

static void raw_detach(struct raw_end *e)
{
	if (e->pcb == NULL)
		return;
	tcp_arg(e->pcb, NULL);
	tcp_recv(e->pcb, NULL);
	tcp_err(e->pcb, NULL);
	e->pcb = NULL;
}

static void raw_rx_clear(struct raw_end *e)
{
	while (e->rx_n > 0) {
		pbuf_free(e->rx[e->rx_head]);
		e->rx_head = (e->rx_head + 1) % LB_RXQ;
		e->rx_n--;
	}
	e->rx_off = 0;
}

static err_t raw_on_recv(void *arg, struct tcp_pcb *pcb, struct pbuf *p,
                         err_t err)
{
	struct raw_end *e = arg;
	(void)pcb;
	(void)err;
	if (p == NULL) {
		e->eof = true;
		return ERR_OK;
	}
	if (e->rx_n == LB_RXQ)
		return ERR_MEM; /* lwIP keeps it and offers it again */
	e->rx[(e->rx_head + e->rx_n) % LB_RXQ] = p;
	e->rx_n++;
	return ERR_OK;
}

static void raw_on_err(void *arg, err_t err)
{
	struct raw_end *e = arg;
	if (e == NULL)
		return;
	e->pcb = NULL; /* lwIP has freed it already */
	e->dead = true;
	e->err = err;
}

static err_t raw_on_connected(void *arg, struct tcp_pcb *pcb, err_t err)
{
	struct raw_end *e = arg;
	(void)pcb;
	(void)err;
	e->connected = true;
	return ERR_OK;
}

/* A fresh end (the queue's slots need no clearing: rx_n says what is
 * in use). */
static void raw_reset(struct raw_end *e)
{
	e->pcb = NULL;
	e->rx_head = e->rx_n = e->rx_off = 0;
	e->connected = e->eof = e->dead = false;
	e->err = ERR_OK;
}

static void raw_setup(struct raw_end *e, struct tcp_pcb *pcb)
{
	raw_reset(e);
	e->pcb = pcb;
	tcp_arg(pcb, e);
	tcp_recv(pcb, raw_on_recv);
	tcp_err(pcb, raw_on_err);
	tcp_nagle_disable(pcb);
}

static err_t raw_on_accept(void *arg, struct tcp_pcb *npcb, err_t err)
{
	struct lsn *L = arg;
	if (err != ERR_OK || npcb == NULL)
		return ERR_VAL;
	/* One connection at a time here: a second one is refused. */
	if (L->accepted > 0 || L->slot == NULL)
		return ERR_MEM;
	/* Answers leave by the netif the SYN came in on, as conduit's. */
	if (npcb->netif_idx == NETIF_NO_INDEX &&
	    ip_current_input_netif() != NULL)
		tcp_bind_netif(npcb, ip_current_input_netif());
	raw_setup(&L->slot->raw, npcb);
	L->slot->raw.connected = true;
	L->accepted++;
	return ERR_OK;
}

/* Bytes a tcp_write can take now. */
static bool raw_can_write(const struct tcp_pcb *pcb)
{
	return tcp_sndbuf(pcb) > 0 && tcp_sndqueuelen(pcb) < TCP_SND_QUEUELEN;
}

static int raw_write(struct raw_end *e, const uint8_t *buf, size_t len,
                     size_t *n)
{
	*n = 0;
	if (e->pcb == NULL)
		return lb_fail("write: %s", e->dead ? lb_err_text(e->err)
		                                    : "connection is gone");
	size_t done = 0;
	while (done < len && raw_can_write(e->pcb)) {
		size_t k = len - done;
		if (k > tcp_sndbuf(e->pcb))
			k = tcp_sndbuf(e->pcb);
		if (k > 0xffff)
			k = 0xffff;
		u8_t flags = TCP_WRITE_FLAG_COPY;
		if (done + k < len)
			flags |= TCP_WRITE_FLAG_MORE;
		err_t er = tcp_write(e->pcb, buf + done, (u16_t)k, flags);
		if (er == ERR_MEM)
			break;
		if (er != ERR_OK)
			return lb_fail("tcp_write: %s", lb_err_text(er));
		done += k;
	}
	tcp_output(e->pcb);
	*n = done;
	return done > 0 ? LB_OK : LB_WANT;
}

static int raw_read(struct raw_end *e, uint8_t *buf, size_t cap, size_t *n)
{
	size_t done = 0;
	while (done < cap && e->rx_n > 0) {
		struct pbuf *p = e->rx[e->rx_head];
		size_t k = p->tot_len - e->rx_off;
		if (k > cap - done)
			k = cap - done;
		pbuf_copy_partial(p, buf + done, (u16_t)k, (u16_t)e->rx_off);
		done += k;
		e->rx_off += k;
		if (e->rx_off == p->tot_len) {
			pbuf_free(p);
			e->rx_head = (e->rx_head + 1) % LB_RXQ;
			e->rx_n--;
			e->rx_off = 0;
		}
	}
	*n = done;
	if (done > 0) {
		/* The window opens as the application takes the bytes. */
		for (size_t left = done; left > 0 && e->pcb != NULL;) {
			u16_t k = left > 0xffff ? 0xffff : (u16_t)left;
			tcp_recved(e->pcb, k);
			left -= k;
		}
		return LB_OK;
	}
	if (e->eof)
		return LB_EOF;
	if (e->dead || e->pcb == NULL)
		return lb_fail("read: %s", e->dead ? lb_err_text(e->err)
		                                   : "connection is gone");
	return LB_WANT;
}

static int end_write(struct end *e, const uint8_t *buf, size_t len, size_t *n)
{
	if (e->api == LB_RAW)
		return raw_write(&e->raw, buf, len, n);
	int rc = conduit_write(e->flow, buf, len, n);
	if (rc == CONDUIT_OK)
		return LB_OK;
	if (rc == CONDUIT_WANT_WRITE || rc == CONDUIT_WANT_READ)
		return LB_WANT;
	return lb_fail("conduit_write: %s", conduit_flow_error(e->flow));
}

static int end_read(struct end *e, uint8_t *buf, size_t cap, size_t *n)
{
	if (e->api == LB_RAW)
		return raw_read(&e->raw, buf, cap, n);
	int rc = conduit_read(e->flow, buf, cap, n);
	if (rc == CONDUIT_OK)
		return LB_OK;
	if (rc == CONDUIT_EOF)
		return LB_EOF;
	if (rc == CONDUIT_WANT_READ || rc == CONDUIT_WANT_WRITE)
		return LB_WANT;
	return lb_fail("conduit_read: %s", conduit_flow_error(e->flow));
}

static void end_close(struct end *e)
{
	if (e->api == LB_CONDUIT) {
		if (e->flow != NULL) {
			conduit_close(e->flow);
			conduit_flow_free(e->flow);
		}
		e->flow = NULL;
		return;
	}
	struct tcp_pcb *pcb = e->raw.pcb;
	raw_detach(&e->raw);
	raw_rx_clear(&e->raw);
	/* lwIP owns the pcb from here: queued data, then FIN. */
	if (pcb != NULL && tcp_close(pcb) != ERR_OK)
		tcp_abort(pcb);
}

/* What a raw end or listener can do without waiting. */
static unsigned raw_ready(const struct want *w)
{
	unsigned r = 0;
	if (w->l != NULL)
		return w->l->accepted > 0 ? CONDUIT_POLLIN : 0;
	const struct raw_end *e = &w->e->raw;
	bool over = e->dead || e->pcb == NULL;
	if ((w->events & CONDUIT_POLLIN) && (e->rx_n > 0 || e->eof || over))
		r |= CONDUIT_POLLIN;
	if ((w->events & CONDUIT_POLLOUT) &&
	    (over || (e->connected && raw_can_write(e->pcb))))
		r |= CONDUIT_POLLOUT;
	return r & w->events;
}

static __attribute__((noinline)) int lb_wait_conduit(struct rig *r,
                                                     struct want *w, size_t n)
{
	struct conduit_pollitem it[3];
	if (n > 3)
		return lb_fail("too many items");
	for (size_t i = 0; i < n; i++)
		it[i] = (struct conduit_pollitem){
		    .flow = w[i].e != NULL ? w[i].e->flow : NULL,
		    .listener = w[i].l != NULL ? w[i].l->l : NULL,
		    .events = w[i].events};
	for (int pass = 0; pass < 100000; pass++) {
		size_t nr = 0;
		int rc = conduit_poll(r->ctx, it, n, 1000, &nr);
		if (rc != CONDUIT_OK)
			return lb_fail("conduit_poll: %s",
			               conduit_ctx_error(r->ctx));
		if (nr > 0) {
			for (size_t i = 0; i < n; i++)
				w[i].revents = it[i].revents;
			return LB_OK;
		}
		if (tool_now_ns() > r->deadline)
			break;
	}
	return lb_fail("no progress for %d ms", LB_TIMEOUT_MS);
}

static __attribute__((noinline)) int lb_wait_raw(struct rig *r, struct want *w,
                                                 size_t n)
{
	for (long pass = 0; pass < 100000000L; pass++) {
		conduit_lwip_process(r->st);
		bool any = false;
		for (size_t i = 0; i < n; i++) {
			w[i].revents = raw_ready(&w[i]);
			any = any || w[i].revents != 0;
		}
		if (any)
			return LB_OK;
		struct conduit_lwip_stats s;
		conduit_lwip_stats(r->st, &s);
		if (s.frames == 0) {
			u32_t ms = sys_timeouts_sleeptime();
			lb_nap_ms(ms > 1000 ? 1000 : ms);
		}
		if (tool_now_ns() > r->deadline)
			break;
	}
	return lb_fail("no progress for %d ms", LB_TIMEOUT_MS);
}

/*
 * Wait until something in w can move, and say what in revents.  conduit:
 * conduit_poll().  Raw: run the stack (the wire, then lwIP's timers),
 * look, and when nothing can move and no frame is on its way, sleep until
 * lwIP's next timer: the steps conduit_poll takes for lwIP flows.
 */
static int lb_wait(struct rig *r, enum lb_api a, struct want *w, size_t n)
{
	return a == LB_CONDUIT ? lb_wait_conduit(r, w, n)
	                       : lb_wait_raw(r, w, n);
}

static void lb_arm(struct rig *r)
{
	r->deadline = tool_now_ns() + (uint64_t)LB_TIMEOUT_MS * 1000000u;
}

static int lsn_open(struct rig *r, enum lb_api a)
{
	struct lsn *L = &r->L;
	memset(L, 0, sizeof(*L));
	L->api = a;
	if (a == LB_CONDUIT) {
		int rc = conduit_listen(&L->l, r->ctx, r->uri);
		if (rc != CONDUIT_OK)
			return lb_fail("conduit_listen %s: %s", r->uri,
			               conduit_ctx_error(r->ctx));
		return LB_OK;
	}
	struct tcp_pcb *pcb = tcp_new_ip_type(IPADDR_TYPE_V4);
	if (pcb == NULL)
		return lb_fail("tcp_new: out of memory");
	tcp_bind_netif(pcb, r->ns);
	err_t er = tcp_bind(pcb, &r->server_ip, LB_PORT);
	struct tcp_pcb *lpcb = NULL;
	if (er == ERR_OK)
		lpcb = tcp_listen_with_backlog_and_err(pcb, 16, &er);
	if (lpcb == NULL) {
		tcp_close(pcb);
		return lb_fail("tcp_listen %s:%d: %s", LB_ADDR_S, LB_PORT,
		               lb_err_text(er));
	}
	L->pcb = lpcb;
	tcp_arg(lpcb, L);
	tcp_accept(lpcb, raw_on_accept);
	return LB_OK;
}

static void lsn_close(struct lsn *L)
{
	if (L->api == LB_CONDUIT) {
		conduit_listener_free(L->l);
		L->l = NULL;
		return;
	}
	if (L->pcb != NULL) {
		tcp_arg(L->pcb, NULL);
		tcp_accept(L->pcb, NULL);
		tcp_close(L->pcb);
	}
	L->pcb = NULL;
}

/* Connect r->c to the listener and accept r->s, as an application
 * does: start connecting, then wait for both to finish. */
static int lb_connect(struct rig *r, enum lb_api a)
{
	struct end *c = &r->c, *s = &r->s;
	struct lsn *L = &r->L;
	c->api = s->api = a;
	c->flow = s->flow = NULL;
	raw_reset(&c->raw);
	raw_reset(&s->raw);
	bool up = false, got = false;
	if (a == LB_CONDUIT) {
		/* What an application writes: a URI, parsed every time. */
		int rc = conduit_connect(&c->flow, r->ctx, r->uri);
		if (rc != CONDUIT_OK)
			return lb_fail("conduit_connect %s: %s", r->uri,
			               conduit_ctx_error(r->ctx));
	} else {
		struct tcp_pcb *pcb = tcp_new_ip_type(IPADDR_TYPE_V4);
		if (pcb == NULL)
			return lb_fail("tcp_new: out of memory");
		/* Pinned, or lwIP would take its loopback to its own
		 * address. */
		tcp_bind_netif(pcb, r->nc);
		raw_setup(&c->raw, pcb);
		L->slot = s;
		L->accepted = 0;
		err_t er =
		    tcp_connect(pcb, &r->server_ip, LB_PORT, raw_on_connected);
		if (er != ERR_OK) {
			raw_detach(&c->raw);
			tcp_abort(pcb);
			return lb_fail("tcp_connect: %s", lb_err_text(er));
		}
	}
	for (int turn = 0; !(up && got) && turn < 1000000; turn++) {
		if (!up) {
			if (a == LB_CONDUIT) {
				int rc = conduit_handshake(c->flow);
				if (rc == CONDUIT_OK)
					up = true;
				else if (rc != CONDUIT_WANT_READ &&
				         rc != CONDUIT_WANT_WRITE)
					return lb_fail(
					    "connect %s: %s", r->uri,
					    conduit_flow_error(c->flow));
			} else if (c->raw.dead) {
				return lb_fail("connect %s: %s", r->uri,
				               lb_err_text(c->raw.err));
			} else {
				up = c->raw.connected;
			}
		}
		if (!got) {
			if (a == LB_CONDUIT) {
				int rc = conduit_accept(&s->flow, L->l);
				if (rc == CONDUIT_OK)
					got = true;
				else if (rc != CONDUIT_WANT_READ &&
				         rc != CONDUIT_WANT_WRITE)
					return lb_fail(
					    "accept: %s",
					    conduit_listener_error(L->l));
			} else if (L->accepted > 0) {
				L->accepted--;
				got = true;
			}
		}
		if (up && got)
			break;
		struct want w[2] = {{.e = c, .events = CONDUIT_POLLOUT},
		                    {.l = L, .events = CONDUIT_POLLIN}};
		struct want *wp = up ? &w[1] : w;
		size_t nw = up ? 1 : got ? 1 : 2;
		if (lb_wait(r, a, wp, nw) != LB_OK)
			return LB_ERR;
	}
	if (!(up && got))
		return lb_fail("connect: no progress");
	return LB_OK;
}

/* Let the closing handshakes finish and drop TIME-WAIT pcbs (see the
 * top), so the next run starts from the same stack. */
static void lb_settle(struct rig *r)
{
	struct conduit_lwip_stats s;
	for (int i = 0; i < 2000; i++) {
		conduit_lwip_process(r->st);
		conduit_lwip_stats(r->st, &s);
		if (s.lwip_active == 0 && s.frames == 0)
			break;
		if (i > 100)
			lb_nap_ms(1);
	}
	while (tcp_tw_pcbs != NULL)
		tcp_abort(tcp_tw_pcbs);
}

/* ------------------------------------------------------------------ */
/* One run of one figure for one variant.                              */

/* A run's start: the listener, and the client's connection (its status
 * in *rc).  -1 when the listener failed: nothing to undo then. */
static int run_open(struct rig *r, enum lb_api a, int *rc)
{
	lb_arm(r);
	if (lsn_open(r, a) != LB_OK)
		return -1;
	*rc = lb_connect(r, a);
	return 0;
}

/* A run's end, whatever happened: both ends and the listener closed,
 * lwIP left to settle.  Returns rc. */
static int run_close(struct rig *r, int rc)
{
	end_close(&r->c);
	end_close(&r->s);
	lsn_close(&r->L);
	lb_settle(r);
	return rc;
}

/* Not inlined, so that a profile can be cut to it:
 * valgrind --tool=callgrind --toggle-collect='run_throughput*' */
__attribute__((noinline)) static int run_throughput(struct rig *r,
                                                    enum lb_api a, size_t ws,
                                                    uint64_t total,
                                                    double *secs)
{
	struct end *c = &r->c, *s = &r->s;
	int rc;
	if (run_open(r, a, &rc) < 0)
		return LB_ERR;
	uint64_t sent = 0, got = 0, bad = UINT64_MAX, t0 = 0, t1 = 0;
	size_t in_chunk = 0;
	if (rc != LB_OK)
		goto out;
	tool_pat_fill(r->wbuf, ws, 0);
	lb_arm(r);
	t0 = tool_now_ns();
	/* Write first, as an application does; then act on what poll
	 * reports. */
	unsigned cready = CONDUIT_POLLOUT, sready = 0;
	for (uint64_t turn = 0; got < total; turn++) {
		while ((cready & CONDUIT_POLLOUT) && sent < total) {
			size_t n = 0;
			rc =
			    end_write(c, r->wbuf + in_chunk, ws - in_chunk, &n);
			if (rc == LB_WANT)
				break;
			if (rc != LB_OK)
				goto out;
			in_chunk += n;
			sent += n;
			if (in_chunk == ws && sent < total) {
				in_chunk = 0;
				tool_pat_fill(r->wbuf, ws, sent);
			}
		}
		while (sready & CONDUIT_POLLIN) {
			size_t n = 0;
			rc = end_read(s, r->rbuf, LB_RBUF, &n);
			if (rc == LB_WANT)
				break;
			if (rc == LB_EOF)
				rc = lb_fail("end of stream after %" PRIu64
				             " of %" PRIu64 " bytes",
				             got, total);
			if (rc != LB_OK)
				goto out;
			if (n > total - got) {
				rc = lb_fail("more bytes than were sent");
				goto out;
			}
			if (bad == UINT64_MAX)
				bad = tool_pat_check(r->rbuf, n, got);
			got += n;
		}
		if (got == total)
			break;
		if (turn > total) {
			rc = lb_fail("more turns than bytes");
			goto out;
		}
		struct want w[2] = {
		    {.e = c, .events = sent < total ? CONDUIT_POLLOUT : 0},
		    {.e = s, .events = CONDUIT_POLLIN}};
		/* A finished writer is not waited on. */
		struct want *wp = sent < total ? w : &w[1];
		rc = lb_wait(r, a, wp, sent < total ? 2 : 1);
		if (rc != LB_OK)
			goto out;
		cready = sent < total ? w[0].revents : 0;
		sready = w[1].revents;
	}
	t1 = tool_now_ns();
	rc = LB_OK;
	if (bad != UINT64_MAX)
		rc = lb_fail("byte mismatch: the receiver saw a wrong byte at "
		             "offset %" PRIu64,
		             bad);
	*secs = (double)(t1 - t0) / 1e9;
out:
	return run_close(r, rc);
}

static int cmp_u64(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
	return a < b ? -1 : a > b;
}

/* Round trips: the client sends 64 bytes, the server echoes what it
 * reads, the client waits for all 64; samples[] gets n times in ns. */
/* Not inlined, so that a profile can be cut to it:
 * valgrind --tool=callgrind --toggle-collect='run_latency*' */
__attribute__((noinline)) static int run_latency(struct rig *r, enum lb_api a,
                                                 unsigned warm, unsigned n,
                                                 uint64_t *samples)
{
	struct end *c = &r->c, *s = &r->s;
	int rc;
	if (run_open(r, a, &rc) < 0)
		return LB_ERR;
	uint8_t out[LB_PING], in[LB_PING], echo[LB_PING];
	for (unsigned i = 0; rc == LB_OK && i < warm + n; i++) {
		tool_pat_fill(out, sizeof(out), (uint64_t)i * LB_PING);
		lb_arm(r);
		uint64_t t0 = tool_now_ns();
		size_t m = 0, got = 0, eheld = 0;
		rc = end_write(c, out, sizeof(out), &m);
		if (rc == LB_OK && m != sizeof(out))
			rc = lb_fail("a 64-byte write was cut short");
		/* Bounded: each turn moves a byte or waits (bounded). */
		for (int turn = 0; rc == LB_OK && got < sizeof(in); turn++) {
			if (turn > 100000) {
				rc = lb_fail("round trip %u: no progress", i);
				break;
			}
			struct want w[2] = {{.e = s, .events = CONDUIT_POLLIN},
			                    {.e = c, .events = CONDUIT_POLLIN}};
			rc = lb_wait(r, a, w, 2);
			if (rc != LB_OK)
				break;
			if (w[0].revents & CONDUIT_POLLIN) {
				size_t k = 0;
				rc = end_read(s, echo + eheld,
				              sizeof(echo) - eheld, &k);
				if (rc == LB_WANT)
					rc = LB_OK;
				else if (rc == LB_EOF)
					rc = lb_fail("the echo side saw end "
					             "of stream");
				else if (rc == LB_OK) {
					size_t wrote = 0;
					rc = end_write(s, echo + eheld, k,
					               &wrote);
					if (rc == LB_OK && wrote != k)
						rc = lb_fail("an echo write "
						             "was cut short");
				}
			}
			if (rc == LB_OK && (w[1].revents & CONDUIT_POLLIN)) {
				size_t k = 0;
				rc =
				    end_read(c, in + got, sizeof(in) - got, &k);
				if (rc == LB_WANT)
					rc = LB_OK;
				else if (rc == LB_EOF)
					rc = lb_fail("end of stream in round "
					             "trip %u",
					             i);
				got += k;
			}
		}
		uint64_t t1 = tool_now_ns();
		if (rc == LB_OK && memcmp(in, out, sizeof(in)) != 0)
			rc = lb_fail("byte mismatch: round trip %u came back "
			             "different",
			             i);
		if (rc == LB_OK && i >= warm)
			samples[i - warm] = t1 - t0;
	}
	return run_close(r, rc);
}

/* Sequential connections: connect and accept, the server closes, the
 * client waits for the end of stream and closes. */
/* Not inlined, so that a profile can be cut to it:
 * valgrind --tool=callgrind --toggle-collect='run_connect*' */
__attribute__((noinline)) static int run_connect(struct rig *r, enum lb_api a,
                                                 unsigned warm, unsigned n,
                                                 double *secs)
{
	lb_arm(r);
	if (lsn_open(r, a) != LB_OK)
		return LB_ERR;
	int rc = LB_OK;
	uint64_t t0 = tool_now_ns(), spent = 0;
	for (unsigned i = 0; rc == LB_OK && i < warm + n; i++) {
		if (i == warm ||
		    (i > warm && (i - warm) % LB_CONN_BATCH == 0)) {
			/* The server's side of each connection stays in
			 * TIME-WAIT, and lwIP scans that list for every
			 * SYN: drop it between batches, off the clock, so
			 * the figure is the cost of a connection and not of
			 * how many came before it in the run. */
			if (i > warm)
				spent += tool_now_ns() - t0;
			lb_settle(r);
			t0 = tool_now_ns();
		}
		lb_arm(r);
		rc = lb_connect(r, a);
		if (rc != LB_OK)
			break;
		end_close(&r->s);
		for (int turn = 0; turn < 100000; turn++) {
			uint8_t b;
			size_t k = 0;
			rc = end_read(&r->c, &b, 1, &k);
			if (rc == LB_OK)
				rc = lb_fail("the server sent data");
			if (rc != LB_WANT)
				break;
			struct want w = {.e = &r->c, .events = CONDUIT_POLLIN};
			rc = lb_wait(r, a, &w, 1);
			if (rc != LB_OK)
				break;
			rc = LB_WANT;
		}
		if (rc == LB_EOF)
			rc = LB_OK;
		else if (rc == LB_WANT)
			rc = lb_fail("no end of stream");
		end_close(&r->c);
	}
	spent += tool_now_ns() - t0;
	if (rc != LB_OK) {
		end_close(&r->c);
		end_close(&r->s);
	}
	lsn_close(&r->L);
	lb_settle(r);
	*secs = (double)spent / 1e9;
	return rc;
}

/* ------------------------------------------------------------------ */
/* Figures                                                             */

/* The order of the variants in repeat i: raw first in even repeats. */
static enum lb_api lb_turn(unsigned i, int k)
{
	return ((i + (unsigned)k) & 1) ? LB_CONDUIT : LB_RAW;
}

static int lb_report(const char *what, enum lb_api a)
{
	fprintf(stderr, "conduit-bench: lwip %s (%s): %s\n", what,
	        lb_api_name[a], lb_msg);
	return -1;
}

static void lb_figure(struct bench_figure *f, const char *figure,
                      const char *label, const char *unit, bool higher,
                      int decimals)
{
	memset(f, 0, sizeof(*f));
	f->transport = "lwip";
	f->figure = figure;
	f->label = label;
	f->unit = unit;
	f->baseline = "raw lwIP";
	f->higher_better = higher;
	f->decimals = decimals;
}

static unsigned lb_repeats(const struct bench_settings *s)
{
	unsigned n = s->repeats;
	if (n == 0)
		n = 1;
	return n > BENCH_MAX_REPEATS ? BENCH_MAX_REPEATS : n;
}

/* Repeat i's figure v of variant a. */
static void lb_put(struct bench_figure *f, enum lb_api a, unsigned i, double v)
{
	if (a == LB_RAW)
		f->base[i] = v;
	else
		f->conduit[i] = v;
}

/* A figure whose every run gives a time: throughput (ws > 0) or
 * connections. */
struct lb_rate {
	size_t ws;
	uint64_t total;
	unsigned warm, n;
};

/* Rounds of both variants in rotating order; a run's value is amount
 * divided by its time. */
static int lb_rates(struct rig *r, const struct bench_settings *s,
                    struct bench_figure *f, const char *what,
                    const struct lb_rate *q, double amount)
{
	unsigned reps = lb_repeats(s);
	for (unsigned i = 0; i < reps; i++) {
		for (int k = 0; k < 2; k++) {
			enum lb_api a = lb_turn(i, k);
			double t = 0;
			int rc = q->ws > 0
			             ? run_throughput(r, a, q->ws, q->total, &t)
			             : run_connect(r, a, q->warm, q->n, &t);
			if (rc != LB_OK)
				return lb_report(what, a);
			lb_put(f, a, i, t > 0 ? amount / t : 0);
		}
		f->n = i + 1;
	}
	bench_emit(f);
	return 0;
}

static int measure_throughput(struct rig *r, const struct bench_settings *s,
                              size_t ws)
{
	static char labels[3][48];
	static unsigned nlabels;
	char what[40];
	snprintf(what, sizeof(what), "throughput %zu KiB", ws / 1024);
	/* Warm-up, which also sizes the runs: about target_s at the faster
	 * variant's pace, the same bytes for both. */
	uint64_t warm = 32u * 1024 * 1024;
	double rate = 0;
	for (int k = 0; k < 2; k++) {
		double t = 0;
		if (run_throughput(r, lb_turn(0, k), ws, warm, &t) != LB_OK)
			return lb_report(what, lb_turn(0, k));
		if (t > 0 && (double)warm / t > rate)
			rate = (double)warm / t;
	}
	/* Everything here is in memory and quick: runs of at least 0.15 s
	 * even in --quick, or a scheduler hiccup decides the figure. */
	double want = rate * (s->target_s > 0.15 ? s->target_s : 0.15);
	if (want < (double)warm)
		want = (double)warm;
	if (want > 8.0 * 1024 * LB_MIB)
		want = 8.0 * 1024 * LB_MIB;
	uint64_t total = ((uint64_t)want + ws - 1) / ws * ws;

	char *label = labels[nlabels++ % 3];
	snprintf(label, sizeof(labels[0]), "throughput %u KiB (MiB/s)",
	         (unsigned)(ws / 1024));
	struct bench_figure f;
	lb_figure(&f, "throughput", label, "MiB/s", true, 1);
	f.param_name = "write_size";
	f.param = ws;
	struct lb_rate q = {ws, total, 0, 0};
	return lb_rates(r, s, &f, what, &q, (double)total / LB_MIB);
}

static int measure_latency(struct rig *r, const struct bench_settings *s)
{
	/* A round trip is about a microsecond: many of them per run. */
	unsigned warm = s->quick ? 2000 : 10000, n = s->quick ? 20000 : 100000;
	uint64_t *t = calloc(n, sizeof(*t));
	if (t == NULL) {
		lb_fail("out of memory");
		return lb_report("latency", LB_RAW);
	}
	struct bench_figure fm, fp;
	lb_figure(&fm, "latency_median", "latency 64 B median (us)", "us",
	          false, 2);
	lb_figure(&fp, "latency_p99", "latency 64 B p99 (us)", "us", false, 2);
	fm.param_name = fp.param_name = "message_size";
	fm.param = fp.param = LB_PING;
	unsigned reps = lb_repeats(s);
	for (unsigned i = 0; i < reps; i++) {
		for (int k = 0; k < 2; k++) {
			enum lb_api a = lb_turn(i, k);
			if (run_latency(r, a, warm, n, t) != LB_OK) {
				free(t);
				return lb_report("latency", a);
			}
			qsort(t, n, sizeof(*t), cmp_u64);
			double med = (double)t[n / 2] / 1000.0;
			double p99 = (double)t[(size_t)n * 99 / 100] / 1000.0;
			lb_put(&fm, a, i, med);
			lb_put(&fp, a, i, p99);
		}
		fm.n = fp.n = i + 1;
	}
	free(t);
	bench_emit(&fm);
	bench_emit(&fp);
	return 0;
}

static int measure_connect(struct rig *r, const struct bench_settings *s)
{
	unsigned warm = s->quick ? 500 : 2000, n = s->quick ? 5000 : 20000;
	struct bench_figure f;
	lb_figure(&f, "connect_rate", "connect+accept+close (/s)", "1/s", true,
	          0);
	struct lb_rate q = {0, 0, warm, n};
	return lb_rates(r, s, &f, "connections", &q, n);
}

/* lwIP's netif that has address text (the wire pair's netifs are
 * conduit's; the raw variant pins its pcbs to the same ones). */
static struct netif *lb_netif_of(const char *text)
{
	ip4_addr_t want;
	struct netif *n;
	if (!ip4addr_aton(text, &want))
		return NULL;
	NETIF_FOREACH(n)
	{
		if (ip4_addr_cmp(netif_ip4_addr(n), &want))
			return n;
	}
	return NULL;
}

static int rig_up(struct rig *r)
{
	static const struct conduit_lwip_netif_config cc = {.ipv4 = LB_ADDR_C
	                                                    "/24"};
	static const struct conduit_lwip_netif_config cs = {.ipv4 = LB_ADDR_S
	                                                    "/24"};
	memset(r, 0, sizeof(*r));
	if (conduit_lwip_stack(&r->st) != CONDUIT_OK)
		return lb_fail("conduit_lwip_stack failed");
	if (conduit_lwip_netif_wire_pair(&r->a, &r->b, r->st, &cc, &cs, NULL) !=
	    CONDUIT_OK)
		return lb_fail("wire pair: %s", conduit_lwip_error(r->st));
	r->nc = lb_netif_of(LB_ADDR_C);
	r->ns = lb_netif_of(LB_ADDR_S);
	if (r->nc == NULL || r->ns == NULL ||
	    !ipaddr_aton(LB_ADDR_S, &r->server_ip))
		return lb_fail("the wire's netifs are not in lwIP's list");
	if (conduit_ctx_new(&r->ctx) != CONDUIT_OK)
		return lb_fail("conduit_ctx_new: out of memory");
	if (conduit_ctx_use_lwip(r->ctx, r->st) != CONDUIT_OK)
		return lb_fail("conduit_ctx_use_lwip: %s",
		               conduit_ctx_error(r->ctx));
	snprintf(r->uri, sizeof(r->uri), "tcp://%s:%d", LB_ADDR_S, LB_PORT);
	r->wbuf = malloc(64 * 1024);
	r->rbuf = malloc(LB_RBUF);
	if (r->wbuf == NULL || r->rbuf == NULL)
		return lb_fail("out of memory");
	return LB_OK;
}

static void rig_down(struct rig *r)
{
	conduit_ctx_free(r->ctx); /* gives its reference to the stack back */
	conduit_lwip_netif_free(r->a);
	conduit_lwip_netif_free(r->b);
	if (r->st != NULL)
		conduit_lwip_release(r->st);
	free(r->wbuf);
	free(r->rbuf);
	memset(r, 0, sizeof(*r));
}

int bench_lwip(const struct bench_settings *s)
{
	static struct rig rig; /* ends are lwIP callback arguments: fixed */
	static const size_t sizes[] = {1024, 16 * 1024, 64 * 1024};
	int rc = 0;
	if (rig_up(&rig) != LB_OK) {
		fprintf(stderr, "conduit-bench: lwip: %s\n", lb_msg);
		rig_down(&rig);
		return -1;
	}
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]) && rc == 0; i++)
		rc = measure_throughput(&rig, s, sizes[i]);
	if (rc == 0)
		rc = measure_latency(&rig, s);
	if (rc == 0)
		rc = measure_connect(&rig, s);
	rig_down(&rig);
	return rc;
}
