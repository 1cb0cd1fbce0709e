/*
 * lwip.c - TCP over Debian's liblwip, driven by polling, as a "tcp"
 * backend a context can choose at run time.
 *
 * The stack is the process-wide lwIP (lwip_init() once; it keeps its
 * state in globals) and its netifs, dummy Ethernet devices: an in-memory
 * wire between two netifs of this process, a datagram socket to another
 * process, a TAP device to the kernel; frames are queued on output and
 * delivered from the poll loop, never from inside lwIP.  The flows and
 * listeners turn lwIP's raw TCP API (callbacks) into conduit's
 * non-blocking read / write with "pending" work.
 *
 * This file is what a busy loop runs on every call, kept in one file so
 * that the compiler sees it whole: the poll turn (frames in and out,
 * lwIP's timers), the flow's read, write, pending and wait, its ending,
 * and the backend entry.  The other concerns have files of their own,
 * tied together by lwstack.h, which also describes the objects they
 * share:
 *
 *   lwip_stack.c    the stack's references and statistics; making and
 *                   freeing netifs (wires, datagram sockets, TAPs); the
 *                   addresses: which netif leads to one, their text
 *   lwip_connect.c  connecting: the staggered race of the shared TCP
 *                   policy (backends/tcppolicy) over lwIP pcbs
 *   lwip_listen.c   listeners and accepting
 *   tapdev.c        opening a TAP device (apart: its Linux headers clash
 *                   with lwIP's)
 *
 * Traps of the distribution's build this code works around (see README):
 * the library's PBUF_POOL elements are smaller than its headers say, so
 * received frames are PBUF_RAM; the library is built with NO_SYS 0 and
 * core locking, which is harmless only as long as tcpip_init() is never
 * called, so it is not; sys_now() is the library's own clock, used only by
 * lwIP's timers; a pcb is already freed when its error callback runs; and
 * pcbs are pinned to their netif, or lwIP routes a connection between two
 * of its own netifs through its loopback (which would need its thread).
 * What lwIP sends with no pinned pcb (a reset for a segment no connection
 * takes, an ICMP error, a SYN-ACK of a listener on every address) is kept
 * off that loopback too: while a frame is delivered only the netif it came
 * in by is visible to lwIP's routing, stray pcbs are pinned before the
 * timers run, and destinations that would loop back are refused.
 */
#include "lwstack.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lwip/etharp.h"
#include "lwip/ethip6.h"
#include "lwip/priv/tcp_priv.h"
#include "lwip/timeouts.h"
#include "netif/ethernet.h"

/* Largest frame a netif sends or takes: Ethernet header, MTU, and room
 * for a VLAN tag a TAP may hand us. */
#define LW_FRAME_MAX 1518
/* Frames read from one descriptor per poll turn, so one busy netif cannot
 * starve the rest. */
#define LW_READ_BATCH 128
/* Frames waiting for a full descriptor; beyond this they are dropped
 * (Ethernet may lose frames; TCP resends). */
#define LW_TXQ_MAX 1024
/* Delivery rounds over the in-memory wires per poll turn. */
#define LW_WIRE_ROUNDS 16

/* ------------------------------------------------------------------ */
/* Frames and the netifs' output                                       */

/* xorshift64*: repeatable faults without touching rand()'s state. */
static double rng_unit(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return (double)((x * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0;
}

static void frameq_push(struct frameq *q, struct frame *f)
{
	f->next = NULL;
	if (q->tail != NULL)
		q->tail->next = f;
	else
		q->head = f;
	q->tail = f;
	q->n++;
}

/* Put f before the last frame of q (q has at least one). */
static void frameq_push_before_last(struct frameq *q, struct frame *f)
{
	if (q->head == q->tail) {
		f->next = q->head;
		q->head = f;
	} else {
		struct frame *p = q->head;
		while (p->next != q->tail)
			p = p->next;
		f->next = q->tail;
		p->next = f;
	}
	q->n++;
}

static struct frame *frameq_pop(struct frameq *q)
{
	struct frame *f = q->head;
	if (f == NULL)
		return NULL;
	q->head = f->next;
	if (q->head == NULL)
		q->tail = NULL;
	q->n--;
	return f;
}

void cd_lwip_frameq_clear(conduit_lwip *st, struct frameq *q)
{
	struct frame *f;
	while ((f = frameq_pop(q)) != NULL) {
		free(f);
		st->nframes--;
	}
}

/*
 * Make n the only netif lwIP's routing sees (and its default), returning
 * the default to put back.  lwIP routes what it answers with no pinned
 * pcb, a reset for a segment no connection takes or an ICMP error, to
 * the first netif whose subnet holds the destination.  With two netifs of
 * this process on one subnet that can be the netif owning the
 * destination, and lwIP then sends the packet to itself through its
 * loopback, which posts to the thread that is never started: an
 * assertion aborts the process.  Hidden, the answer leaves by the netif
 * the frame came in by, onto the wire.  ip4_route, ip6_route and the ND
 * router lookup all skip a netif whose link is down; the flag is flipped
 * in place because netif_set_link_down/up would run callbacks and send
 * gratuitous ARP and MLD reports for every frame.
 */
static struct netif *hide_others(conduit_lwip_netif *n)
{
	struct netif *dflt = netif_default;
	if (n->st->nnetifs < 2)
		return dflt;
	for (conduit_lwip_netif *o = n->st->netifs; o != NULL; o = o->next) {
		if (o == n || !(o->nif.flags & NETIF_FLAG_LINK_UP))
			continue;
		o->nif.flags &= (u8_t)~NETIF_FLAG_LINK_UP;
		o->hidden = true;
	}
	/* A hidden default would leave off-subnet answers no way out. */
	if (dflt != NULL && !netif_is_link_up(dflt))
		netif_set_default(&n->nif);
	return dflt;
}

static void unhide_others(conduit_lwip *st, struct netif *dflt)
{
	for (conduit_lwip_netif *o = st->netifs; o != NULL; o = o->next)
		if (o->hidden) {
			o->nif.flags |= NETIF_FLAG_LINK_UP;
			o->hidden = false;
		}
	if (netif_default != dflt)
		netif_set_default(dflt);
}

/* The shortest Ethernet frame (without its checksum): a network card
 * pads shorter ones with zeros, and lwIP relies on that.  Its ARP input
 * reads the whole ARP header without checking the frame's length, so a
 * runt from a wire (found by tests/fuzz) read past the end of its
 * buffer. */
#define LW_FRAME_MIN 60

/* Hand one received frame to lwIP, padded as a card would.  PBUF_RAM,
 * not PBUF_POOL: one contiguous buffer, whatever the pool's element size
 * (Debian's liblwip had 616-byte elements where its headers assume
 * 1536). */
static CD_HOT void input_frame(conduit_lwip_netif *n, const void *data,
                               size_t len)
{
	if (len == 0 || len > LW_FRAME_MAX)
		return;
	if (len > n->st->max_frame)
		n->st->max_frame = len;
	size_t plen = len < LW_FRAME_MIN ? LW_FRAME_MIN : len;
	struct pbuf *p = pbuf_alloc(PBUF_RAW, (u16_t)plen, PBUF_RAM);
	if (p == NULL) {
		n->st->dropped++;
		return;
	}
	pbuf_take(p, data, (u16_t)len);
	if (plen > len)
		memset((uint8_t *)p->payload + len, 0, plen - len);
	/* lwIP never frees a netif while it takes a frame (only the
	 * application does), so the list is the same afterwards. */
	struct netif *dflt = hide_others(n);
	if (n->nif.input(p, &n->nif) != ERR_OK)
		pbuf_free(p);
	unhide_others(n->st, dflt);
}

static ssize_t fd_send(conduit_lwip_netif *n, const void *data, size_t len)
{
	ssize_t r;
	do {
		/* A socket must not raise SIGPIPE; a TAP is no socket. */
		if (n->kind == NK_DGRAM)
			r = send(n->fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		else
			r = write(n->fd, data, len);
	} while (r < 0 && errno == EINTR);
	return r;
}

static bool fd_full(void)
{
	return errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS;
}

/* lwIP's output path: copy the frame out and queue it.  Delivering it to
 * the peer netif here would re-enter tcp_input() from tcp_output(). */
static CD_HOT err_t linkoutput(struct netif *nif, struct pbuf *p)
{
	conduit_lwip_netif *n = (conduit_lwip_netif *)nif;
	conduit_lwip *st = n->st;
	size_t len = p->tot_len;
	if (len > LW_FRAME_MAX)
		return ERR_BUF;
	if (n->kind == NK_WIRE) {
		if (n->peer == NULL)
			return ERR_OK; /* unplugged: the frame is lost */
		if (n->faults.loss > 0 && rng_unit(&n->rng) < n->faults.loss) {
			st->dropped++;
			return ERR_OK;
		}
	} else if (n->txq.n == 0) {
		uint8_t buf[LW_FRAME_MAX];
		pbuf_copy_partial(p, buf, (u16_t)len, 0);
		if (fd_send(n, buf, len) >= 0)
			return ERR_OK;
		if (!fd_full()) {
			st->dropped++;
			return ERR_OK;
		}
	}
	if (n->kind != NK_WIRE && n->txq.n >= LW_TXQ_MAX) {
		st->dropped++;
		return ERR_OK;
	}
	struct frame *f = malloc(sizeof(*f) + len);
	if (f == NULL)
		return ERR_MEM;
	f->len = (uint16_t)len;
	f->due = 0;
	pbuf_copy_partial(p, f->data, (u16_t)len, 0);
	st->nframes++;
	if (n->kind != NK_WIRE) {
		frameq_push(&n->txq, f);
		return ERR_OK;
	}
	struct frameq *q = &n->peer->rxq;
	if (n->faults.delay_ms > 0)
		f->due = conduit_now_ms() + n->faults.delay_ms;
	if (n->faults.reorder > 0 && q->n > 0 &&
	    rng_unit(&n->rng) < n->faults.reorder) {
		if (q->tail->due > f->due)
			f->due = q->tail->due;
		frameq_push_before_last(q, f);
	} else {
		frameq_push(q, f);
	}
	return ERR_OK;
}

err_t cd_lwip_netif_setup(struct netif *nif)
{
	nif->name[0] = 'c';
	nif->name[1] = 'd';
	nif->output = etharp_output;
	nif->output_ip6 = ethip6_output;
	nif->linkoutput = linkoutput;
	nif->hwaddr_len = ETH_HWADDR_LEN;
	nif->flags = NETIF_FLAG_BROADCAST | NETIF_FLAG_ETHARP |
	             NETIF_FLAG_ETHERNET | NETIF_FLAG_IGMP | NETIF_FLAG_MLD6;
	return ERR_OK;
}

/* ------------------------------------------------------------------ */
/* The poll turn                                                       */

/* Send what waits for a descriptor; stop when it is full again. */
static void flush_txq(conduit_lwip_netif *n)
{
	struct frame *f;
	while ((f = n->txq.head) != NULL) {
		if (fd_send(n, f->data, f->len) < 0 && fd_full())
			return;
		frameq_pop(&n->txq);
		free(f);
		n->st->nframes--;
	}
}

static void read_fd(conduit_lwip_netif *n)
{
	uint8_t buf[LW_FRAME_MAX + 64];
	for (int i = 0; i < LW_READ_BATCH; i++) {
		ssize_t r = read(n->fd, buf, sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return;
		input_frame(n, buf, (size_t)r);
		/* input may have freed n?  No: netifs go only by the
		 * application's hand, never from inside lwIP. */
	}
}

static void sweep_time_wait(conduit_lwip *st);

/* Whether address ip is one of n's. */
static bool netif_has(const conduit_lwip_netif *n, const ip_addr_t *ip)
{
	if (IP_IS_V4(ip))
		return ip4_addr_cmp(ip_2_ip4(ip), netif_ip4_addr(&n->nif));
	for (int i = 0; i < LWIP_IPV6_NUM_ADDRESSES; i++)
		if (ip6_addr_isvalid(netif_ip6_addr_state(&n->nif, i)) &&
		    ip6_addr_cmp_zoneless(ip_2_ip6(ip),
		                          netif_ip6_addr(&n->nif, i)))
			return true;
	return false;
}

/* The netif that owns address ip, or NULL. */
static conduit_lwip_netif *netif_owning(conduit_lwip *st, const ip_addr_t *ip)
{
	for (conduit_lwip_netif *n = st->netifs; n != NULL; n = n->next)
		if (netif_has(n, ip))
			return n;
	return NULL;
}

/* The same for the other files.  The poll turn (pin_strays) calls the
 * static ones, which the compiler inlines there as it did before the
 * backend was split. */
bool cd_lwip_netif_has(const conduit_lwip_netif *n, const ip_addr_t *ip)
{
	return netif_has(n, ip);
}

conduit_lwip_netif *cd_lwip_netif_owning(conduit_lwip *st, const ip_addr_t *ip)
{
	return netif_owning(st, ip);
}

/*
 * A listener on every address pins a connection to the netif it came in
 * by only when it is accepted; until then lwIP routes its segments.  Sent
 * while a frame is delivered they leave by that frame's netif, but a
 * SYN-ACK retransmitted from a timer would be routed among all netifs
 * (see hide_others).  So before the timers run, every connection lwIP
 * made without a netif is pinned to the one owning its local address.
 */
static void pin_strays(conduit_lwip *st)
{
	for (struct tcp_pcb *p = tcp_active_pcbs; p != NULL; p = p->next) {
		if (p->netif_idx != NETIF_NO_INDEX ||
		    ip_addr_isany(&p->local_ip))
			continue;
		conduit_lwip_netif *n = netif_owning(st, &p->local_ip);
		if (n != NULL)
			tcp_bind_netif(p, &n->nif);
	}
}

CD_HOT int conduit_lwip_process(conduit_lwip *st)
{
	if (st == NULL || st->refs <= 0)
		return CONDUIT_ERR_INVALID;
	for (conduit_lwip_netif *n = st->netifs; n != NULL; n = n->next) {
		if (n->kind == NK_WIRE)
			continue;
		flush_txq(n);
		read_fd(n);
	}
	/* Wires: deliver what is due, in rounds, since each delivery may
	 * queue an answer.  Bounded, so a chatty pair cannot hold the loop. */
	uint64_t now = 0;
	for (int round = 0; round < LW_WIRE_ROUNDS; round++) {
		bool moved = false;
		for (conduit_lwip_netif *n = st->netifs; n != NULL;
		     n = n->next) {
			if (n->kind != NK_WIRE)
				continue;
			/* Only the frames queued before this round: those
			 * its deliveries queue wait for the next. */
			size_t todo = n->rxq.n;
			while (todo-- > 0 && n->rxq.head != NULL) {
				struct frame *f = n->rxq.head;
				if (f->due != 0) {
					if (now == 0)
						now = conduit_now_ms();
					if (f->due > now)
						break;
				}
				frameq_pop(&n->rxq);
				st->nframes--;
				input_frame(n, f->data, f->len);
				free(f);
				moved = true;
			}
		}
		if (!moved)
			break;
	}
	pin_strays(st);
	sys_check_timeouts();
	sweep_time_wait(st);
	return CONDUIT_OK;
}

static void stack_wait(conduit_lwip *st, struct conduit_waitset *ws)
{
	for (conduit_lwip_netif *n = st->netifs; n != NULL; n = n->next) {
		if (n->kind == NK_WIRE) {
			if (n->rxq.head != NULL)
				conduit_waitset_deadline(ws, n->rxq.head->due);
			continue;
		}
		conduit_waitset_fd(ws, n->fd,
		                   CONDUIT_POLLIN |
		                       (n->txq.n > 0 ? CONDUIT_POLLOUT : 0));
	}
	u32_t sleep = sys_timeouts_sleeptime();
	if (sleep != SYS_TIMEOUTS_SLEEPTIME_INFINITE)
		conduit_waitset_deadline(ws, conduit_now_ms() + sleep);
}

static const char *err_text(err_t e)
{
	switch (e) {
	case ERR_MEM:
		return "out of memory";
	case ERR_BUF:
		return "buffer error";
	case ERR_TIMEOUT:
		return "timed out";
	case ERR_RTE:
		return "no route to host";
	case ERR_USE:
		return "address in use";
	case ERR_ISCONN:
		return "already connected";
	case ERR_CONN:
		return "not connected";
	case ERR_ABRT:
		return "connection aborted";
	case ERR_RST:
		return "connection reset";
	case ERR_CLSD:
		return "connection closed";
	case ERR_VAL:
		return "illegal value";
	case ERR_ARG:
		return "illegal argument";
	default:
		return "lwIP error";
	}
}

/* The same for the other files; the data path calls the static one. */
const char *cd_lwip_err_text(err_t e)
{
	return err_text(e);
}

/* ------------------------------------------------------------------ */
/* Flows                                                               */

/* Freed flows a stack keeps for reuse.  None under AddressSanitizer, so
 * that a stale pointer to a freed flow is reported, not quietly aliased
 * to the next one. */
#if defined(__SANITIZE_ADDRESS__)
#define LW_SPARE 0
#else
#define LW_SPARE 8
#endif
static const size_t lw_spare_max = LW_SPARE;

/* The flow no longer holds its pcb (let go, or freed by lwIP). */
static void lost_pcb(struct lw_flow *f)
{
	f->pcb = NULL;
	f->st->npcbs--;
	if (f->fin_sent) {
		f->fin_sent = false;
		f->st->nfin--;
	}
}

/* Let go of the pcb: no callback will reach this flow again (the
 * callbacks setup_pcb set; no sent or poll callback is ever set). */
static void detach_pcb(struct lw_flow *f)
{
	if (f->pcb == NULL)
		return;
	tcp_arg(f->pcb, NULL);
	tcp_recv(f->pcb, NULL);
	tcp_err(f->pcb, NULL);
	lost_pcb(f);
}

void cd_lwip_abort_pcb(struct lw_flow *f)
{
	struct tcp_pcb *pcb = f->pcb;
	if (pcb == NULL)
		return;
	detach_pcb(f);
	tcp_abort(pcb);
}

static void rx_clear(struct lw_flow *f)
{
	while (f->rx_n > 0) {
		struct rx_slot *r = &f->rx[f->rx_head];
		f->st->npbufs -= r->n;
		pbuf_free(r->p);
		f->rx_head = (f->rx_head + 1) & (f->rx_cap - 1);
		f->rx_n--;
	}
	f->rx_head = 0;
	f->rx_off = 0;
	f->rx_bytes = 0;
}

void cd_lwip_on_err(void *arg, err_t err)
{
	struct lw_flow *f = arg;
	if (f == NULL)
		return;
	/* lwIP has freed the pcb already: forget it, never touch it. */
	lost_pcb(f);
	f->lwerr = err;
	if (!f->connected)
		f->error = err == ERR_RST    ? CONDUIT_ERR_REFUSED
		           : err == ERR_ABRT ? CONDUIT_ERR_TIMED_OUT
		                             : CONDUIT_ERR_UNREACHABLE;
	else
		f->error =
		    err == ERR_CLSD ? CONDUIT_ERR_CLOSED : CONDUIT_ERR_RESET;
}

/* Double a full receive ring (on the heap from then on); false if
 * memory ran out. */
static CD_COLD bool rx_grow(struct lw_flow *f)
{
	size_t cap = f->rx_cap * 2;
	struct rx_slot *r = malloc(cap * sizeof(*r));
	if (r == NULL)
		return false;
	for (size_t i = 0; i < f->rx_n; i++)
		r[i] = f->rx[(f->rx_head + i) & (f->rx_cap - 1)];
	if (f->rx != f->rx_first)
		free(f->rx);
	f->rx = r;
	f->rx_cap = cap;
	f->rx_head = 0;
	return true;
}

/* The end of the peer's stream, or data after SHUT_RD: not the loop's
 * business. */
static CD_COLD err_t recv_rare(struct lw_flow *f, struct tcp_pcb *pcb,
                               struct pbuf *p)
{
	if (p == NULL) {
		f->eof = true;
		return ERR_OK;
	}
	tcp_recved(pcb, p->tot_len);
	pbuf_free(p);
	return ERR_OK;
}

CD_HOT err_t cd_lwip_on_recv(void *arg, struct tcp_pcb *pcb, struct pbuf *p,
                             err_t err)
{
	struct lw_flow *f = arg;
	(void)err;
	if (__builtin_expect(p == NULL || f->discard, 0))
		return recv_rare(f, pcb, p);
	if (__builtin_expect(f->rx_n == f->rx_cap, 0) && !rx_grow(f))
		return ERR_MEM; /* lwIP keeps p and offers it again */
	/* A wire frame is one pbuf: no walk for the count. */
	size_t n = p->next == NULL ? 1 : pbuf_clen(p);
	struct rx_slot *r = &f->rx[(f->rx_head + f->rx_n) & (f->rx_cap - 1)];
	r->p = p;
	r->n = n;
	f->rx_n++;
	f->rx_bytes += p->tot_len;
	f->st->npbufs += n;
	return ERR_OK;
}

struct lw_flow *cd_lwip_flow_alloc(conduit_lwip *st, conduit_ctx *ctx,
                                   const char *uri)
{
	/* A spare one if there is: a flow is made for every connection. */
	struct lw_flow *f = st->spare;
	if (f != NULL) {
		st->spare = f->next;
		st->nspare--;
	} else {
		f = malloc(sizeof(*f));
		if (f == NULL)
			return NULL;
	}
	/* The connecting part is set up by cd_lwip_connect; an accepted flow
	 * needs only what cd_lwip_flow_destroy reads of it. */
	memset(f, 0, offsetof(struct lw_flow, cur));
	f->cur = NULL;
	f->natt = 0;
	f->race.more = NULL;
	if (conduit_flow_init_in(&f->base, &cd_lwip_flow_ops, ctx, uri,
	                         f->uri_buf,
	                         sizeof(f->uri_buf)) != CONDUIT_OK) {
		free(f);
		return NULL;
	}
	f->st = st;
	f->nodelay = true;
	f->att = &f->att1;
	f->addrs = &f->addr1;
	f->rx = f->rx_first;
	f->rx_cap = LW_RX_INLINE;
	f->next = st->flows;
	if (st->flows != NULL)
		st->flows->prev = f;
	st->flows = f;
	st->nflows++;
	return f;
}

/* The status for an operation on a flow lwIP has ended. */
static CD_COLD int flow_broken(struct lw_flow *f, const char *op)
{
	int status = f->error != CONDUIT_OK ? f->error : CONDUIT_ERR_STATE;
	return conduit_flow_fail(&f->base, status, "%s %s: %s", op, f->base.uri,
	                         f->error != CONDUIT_OK ? err_text(f->lwerr)
	                                                : "connection is gone");
}

static void give_window(struct lw_flow *f, size_t n)
{
	while (n > 0 && f->pcb != NULL) {
		u16_t k = n > 0xffff ? 0xffff : (u16_t)n;
		tcp_recved(f->pcb, k);
		n -= k;
	}
}

static CD_HOT int lw_read(conduit_flow *base, void *buf, size_t len,
                          size_t *nread)
{
	struct lw_flow *f = (struct lw_flow *)base;
	/* The usual read of a request or an echo: one queued frame of one
	 * pbuf, all of which fits.  Taken whole without the ring walk. */
	if (f->rx_n == 1 && f->pcb != NULL) {
		struct rx_slot *r = &f->rx[f->rx_head];
		struct pbuf *p = r->p;
		size_t avail = p->tot_len - f->rx_off;
		if (p->next == NULL && avail > 0 && avail <= len) {
			memcpy(buf, (const uint8_t *)p->payload + f->rx_off,
			       avail);
			f->st->npbufs -= r->n;
			pbuf_free(p);
			f->rx_n = 0;
			f->rx_head = 0;
			f->rx_off = 0;
			f->rx_bytes -= avail;
			tcp_recved(f->pcb,
			           (u16_t)avail); /* tot_len is a u16_t */
			*nread = avail;
			return CONDUIT_OK;
		}
	}
	size_t done = 0;
	uint8_t *out = buf;
	while (done < len && f->rx_n > 0) {
		struct rx_slot *r = &f->rx[f->rx_head];
		struct pbuf *p = r->p;
		size_t avail = p->tot_len - f->rx_off;
		size_t k = len - done < avail ? len - done : avail;
		/* A chain of one pbuf, what a wire frame gives, is a plain
		 * copy. */
		if (p->next == NULL)
			memcpy(out + done,
			       (const uint8_t *)p->payload + f->rx_off, k);
		else
			pbuf_copy_partial(p, out + done, (u16_t)k,
			                  (u16_t)f->rx_off);
		done += k;
		f->rx_off += k;
		if (f->rx_off == p->tot_len) {
			f->st->npbufs -= r->n;
			pbuf_free(p);
			/* An emptied ring starts again at its first slot:
			 * a flow that takes one segment at a time keeps
			 * using the same one. */
			f->rx_head = --f->rx_n > 0
			                 ? (f->rx_head + 1) & (f->rx_cap - 1)
			                 : 0;
			f->rx_off = 0;
		}
	}
	f->rx_bytes -= done;
	if (done > 0) {
		/* Open the window only as the application consumes: that
		 * is the backpressure towards the sender. */
		give_window(f, done);
		*nread = done;
		return CONDUIT_OK;
	}
	if (f->eof)
		return CONDUIT_EOF;
	if (f->error != CONDUIT_OK || f->pcb == NULL)
		return flow_broken(f, "read");
	return CONDUIT_WANT_READ;
}

/* Bytes a tcp_write can take now without failing for want of queue
 * entries (the segment queue is bounded apart from the byte count). */
static size_t send_room(const struct tcp_pcb *pcb)
{
	size_t room = tcp_sndbuf(pcb);
	size_t q = tcp_sndqueuelen(pcb);
	size_t qmax = TCP_SND_QUEUELEN;
	if (q + 2 >= qmax)
		return 0;
	size_t by_queue = (qmax - q - 2) * (size_t)tcp_mss(pcb);
	return room < by_queue ? room : by_queue;
}

static CD_HOT int lw_writev(conduit_flow *base, const struct conduit_iov *iov,
                            size_t iovcnt, size_t *nwritten)
{
	struct lw_flow *f = (struct lw_flow *)base;
	struct tcp_pcb *pcb = f->pcb;
	if (f->error != CONDUIT_OK || pcb == NULL)
		return flow_broken(f, "write");
	/* One buffer that fits at once (a request, an echo): the one
	 * tcp_write the loop below would make, without its bookkeeping.
	 * If lwIP refuses it, the loop tries again and reports why. */
	if (iovcnt == 1 && iov[0].len <= 0xffff &&
	    iov[0].len <= send_room(pcb) &&
	    tcp_write(pcb, iov[0].base, (u16_t)iov[0].len,
	              TCP_WRITE_FLAG_COPY) == ERR_OK) {
		tcp_output(pcb);
		*nwritten = iov[0].len;
		return CONDUIT_OK;
	}
	size_t done = 0;
	for (size_t i = 0; i < iovcnt && f->pcb != NULL; i++) {
		size_t off = 0;
		while (off < iov[i].len) {
			size_t room = send_room(f->pcb);
			if (room == 0)
				break;
			size_t k = iov[i].len - off;
			if (k > room)
				k = room;
			if (k > 0xffff)
				k = 0xffff;
			bool more = off + k < iov[i].len || i + 1 < iovcnt;
			err_t e = tcp_write(
			    f->pcb, (const char *)iov[i].base + off, (u16_t)k,
			    TCP_WRITE_FLAG_COPY |
			        (more ? TCP_WRITE_FLAG_MORE : 0));
			if (e == ERR_MEM)
				break;
			if (e != ERR_OK) {
				if (done > 0)
					break;
				return conduit_flow_fail(
				    base, CONDUIT_ERR_RESET, "write %s: %s",
				    base->uri, err_text(e));
			}
			off += k;
			done += k;
		}
		if (off < iov[i].len)
			break;
	}
	if (f->pcb != NULL)
		tcp_output(f->pcb);
	if (done == 0) {
		if (f->error != CONDUIT_OK || f->pcb == NULL)
			return flow_broken(f, "write");
		return CONDUIT_WANT_WRITE;
	}
	*nwritten = done;
	return CONDUIT_OK;
}

static int lw_shutdown(conduit_flow *base, unsigned how)
{
	struct lw_flow *f = (struct lw_flow *)base;
	if (how & CONDUIT_SHUT_RD) {
		/* lwIP's own shut_rx resets the connection when data comes
		 * after it; a socket's SHUT_RD only drops it, so do that. */
		size_t n = f->rx_bytes;
		rx_clear(f);
		give_window(f, n);
		f->discard = true;
	}
	if ((how & CONDUIT_SHUT_WR) && f->pcb != NULL) {
		err_t e = tcp_shutdown(f->pcb, 0, 1);
		if (e != ERR_OK)
			return conduit_flow_fail(base, CONDUIT_ERR_NOMEM,
			                         "shutdown %s: %s", base->uri,
			                         err_text(e));
		/* Only such a pcb can reach TIME-WAIT while a flow holds it
		 * (see sweep_time_wait). */
		if (f->pcb != NULL && !f->fin_sent) {
			f->fin_sent = true;
			f->st->nfin++;
		}
		if (f->pcb != NULL)
			tcp_output(f->pcb);
	}
	return CONDUIT_OK;
}

static int lw_close(conduit_flow *base)
{
	struct lw_flow *f = (struct lw_flow *)base;
	struct tcp_pcb *pcb = f->pcb;
	if (pcb == NULL)
		return CONDUIT_OK;
	/* Unread data makes lwIP (like Linux) answer the close with a
	 * reset, which is right: the peer's bytes were not taken. */
	detach_pcb(f);
	/* lwIP owns the pcb from here: it sends what is queued, then FIN,
	 * and frees it when the closing handshake ends. */
	if (tcp_close(pcb) != ERR_OK)
		tcp_abort(pcb);
	return CONDUIT_OK;
}

void cd_lwip_flow_destroy(conduit_flow *base)
{
	struct lw_flow *f = (struct lw_flow *)base;
	cd_lwip_abort_pcb(f);
	if (f->natt != 0)
		cd_lwip_race_release(f);
	rx_clear(f);
	if (f->rx != f->rx_first)
		free(f->rx);
	if (f->prev != NULL)
		f->prev->next = f->next;
	else
		f->st->flows = f->next;
	if (f->next != NULL)
		f->next->prev = f->prev;
	f->st->nflows--;
	conduit_flow_fini(base);
	conduit_lwip *st = f->st;
	if (st->nspare < lw_spare_max) {
		f->next = st->spare;
		st->spare = f;
		st->nspare++;
	} else {
		free(f);
	}
}

void cd_lwip_spare_free(conduit_lwip *st)
{
	while (st->spare != NULL) {
		struct lw_flow *f = st->spare;
		st->spare = f->next;
		free(f);
	}
	st->nspare = 0;
}

static void lw_wait(conduit_flow *base, unsigned interest,
                    struct conduit_waitset *ws)
{
	struct lw_flow *f = (struct lw_flow *)base;
	(void)interest;
	/* No descriptor: the stack's hook waits on the netifs and timers.
	 * Only a connect deadline is the flow's own. */
	if (!f->connected && f->deadline != 0)
		conduit_waitset_deadline(ws, f->deadline);
}

static CD_HOT unsigned lw_pending(conduit_flow *base, unsigned interest)
{
	struct lw_flow *f = (struct lw_flow *)base;
	if (__builtin_expect(!(base->state & CONDUIT_FLOW_ESTABLISHED), 0)) {
		/* Connecting: every interest waits on the handshake. */
		if (f->connected || f->error != CONDUIT_OK || f->pcb == NULL ||
		    (f->deadline != 0 && conduit_now_ms() >= f->deadline))
			return interest;
		return 0;
	}
	/* Most calls find data queued or the flow alive: the tests run in
	 * that order, each only when the one before cannot tell. */
	unsigned r = 0;
	if ((interest & CONDUIT_POLLIN) &&
	    (f->rx_n > 0 || f->eof || f->error != CONDUIT_OK || f->pcb == NULL))
		r = CONDUIT_POLLIN;
	if ((interest & CONDUIT_POLLOUT) &&
	    (f->error != CONDUIT_OK || f->pcb == NULL || send_room(f->pcb) > 0))
		r |= CONDUIT_POLLOUT;
	return r;
}

static int lw_unread(conduit_flow *base, size_t *n)
{
	*n = ((struct lw_flow *)base)->rx_bytes;
	return CONDUIT_OK;
}

/*
 * lwIP frees a TIME-WAIT pcb when its timer ends without telling anyone
 * (no error callback), so a flow lets go of its pcb once it reaches that
 * state: both directions are over and nothing more can come.  A pcb gets
 * there only after sending its FIN, and a flow's pcb sends one only
 * through lw_shutdown (lw_close lets go of the pcb first), so the list is
 * walked only while such flows exist, not on every turn of the loop.
 */
static void sweep_time_wait(conduit_lwip *st)
{
	if (st->nfin == 0)
		return;
	for (struct lw_flow *f = st->flows; f != NULL; f = f->next)
		if (f->pcb != NULL && f->pcb->state == TIME_WAIT) {
			f->eof = true;
			detach_pcb(f);
		}
}

const struct conduit_flow_ops cd_lwip_flow_ops = {
    .name = "lwip",
    .handshake = cd_lwip_handshake,
    .read = lw_read,
    .writev = lw_writev,
    .shutdown = lw_shutdown,
    .close = lw_close,
    .destroy = cd_lwip_flow_destroy,
    .wait = lw_wait,
    .pending = lw_pending,
    .unread = lw_unread,
};

/* ------------------------------------------------------------------ */
/* The backend                                                         */

static void be_ctx_wait(void *state, struct conduit_waitset *ws)
{
	stack_wait(state, ws);
}

static CD_HOT int be_ctx_process(void *state)
{
	return conduit_lwip_process(state);
}

/* The state is the process's stack itself (state_size 0: the arg given
 * to conduit_ctx_register), which serves one context at a time; the
 * context holds a reference to it. */
static int be_attach(void *state, conduit_ctx *ctx, void *arg)
{
	(void)arg;
	conduit_lwip *st = state;
	if (st == NULL || st->refs <= 0)
		return CONDUIT_ERR_INVALID;
	if (st->ctx != NULL)
		return conduit_ctx_fail(
		    ctx, CONDUIT_ERR_STATE,
		    "use lwip: the stack already serves another "
		    "context (one per process)");
	st->refs++;
	st->ctx = ctx;
	return CONDUIT_OK;
}

static void be_detach(void *state)
{
	conduit_lwip *st = state;
	st->ctx = NULL;
	conduit_lwip_release(st);
}

static const char *const lw_transports[] = {"tcp", NULL};

static const struct conduit_backend lw_backend = {
    .name = "lwip",
    .transports = lw_transports,
    .connect = cd_lwip_connect,
    .listen = cd_lwip_listen,
    .ctx_wait = be_ctx_wait,
    .ctx_process = be_ctx_process,
    .attach = be_attach,
    .detach = be_detach,
};

int conduit_ctx_use_lwip(conduit_ctx *ctx, conduit_lwip *st)
{
	if (ctx == NULL || st == NULL)
		return CONDUIT_ERR_INVALID;
	if (st->ctx == ctx)
		return CONDUIT_OK;
	return conduit_ctx_register(ctx, &lw_backend, st);
}
