/*
 * lwip.c - TCP over Debian's liblwip, driven by polling, as a "tcp"
 * backend a context can choose at run time.
 *
 * Three parts.  The stack: the process-wide lwIP (lwip_init() once; it
 * keeps its state in globals) and its netifs.  The dummy Ethernet devices:
 * an in-memory wire between two netifs of this process, a datagram socket
 * to another process, a TAP device to the kernel; frames are queued on
 * output and delivered from the poll loop, never from inside lwIP.  The
 * flows and listeners: lwIP's raw TCP API (callbacks) turned into
 * conduit's non-blocking read / write with "pending" work.
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
#include "core.h"
#include "lwpriv.h"
#include "tcppolicy.h"

#include <conduit/lwip.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lwip/etharp.h"
#include "lwip/ethip6.h"
#include "lwip/init.h"
#include "lwip/ip.h"
#include "lwip/ip_addr.h"
#include "lwip/netif.h"
#include "lwip/pbuf.h"
#include "lwip/priv/tcp_priv.h"
#include "lwip/tcp.h"
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
/* Connections a listener holds before conduit_accept() takes them. */
#define LW_BACKLOG 128

/* ------------------------------------------------------------------ */
/* The stack and its netifs                                            */

struct frame {
	struct frame *next;
	uint64_t due; /* conduit_now_ms() at which to deliver; 0: now */
	uint16_t len;
	uint8_t data[];
};

struct frameq {
	struct frame *head, *tail;
	size_t n;
};

enum netif_kind { NK_WIRE, NK_DGRAM, NK_TAP };

struct conduit_lwip_netif {
	struct netif nif; /* first: lwIP's netif pointer is ours */
	conduit_lwip *st;
	conduit_lwip_netif *next;
	enum netif_kind kind;
	int fd;                   /* NK_DGRAM, NK_TAP; else -1 */
	conduit_lwip_netif *peer; /* NK_WIRE */
	struct frameq rxq;        /* NK_WIRE: frames on their way to us */
	struct frameq txq;        /* fds: frames waiting for the fd */
	struct conduit_lwip_wire_config faults; /* frames we send */
	uint64_t rng;
	int ip6_index; /* slot of the configured IPv6 address, -1 none */
	bool hidden;   /* link flag cleared while another netif takes a frame */
};

struct lw_flow;

struct conduit_lwip {
	int refs;
	struct lw_flow *flows; /* every flow with a pcb of ours or not */
	/* Freed flows kept for the next ones (a server accepting and
	 * closing, a client reconnecting): at most LW_SPARE. */
	struct lw_flow *spare;
	size_t nspare;
	conduit_ctx *ctx; /* the context it serves, NULL if none */
	conduit_lwip_netif *netifs;
	size_t nnetifs, nflows, nlisteners, npcbs, npbufs, nframes;
	size_t nfin; /* flows holding a pcb that has sent its FIN */
	uint64_t dropped;
	size_t max_frame;
	char error[256];
};

/* liblwip's state is global, so this is too. */
static conduit_lwip the_stack;
static bool lwip_started;
static unsigned mac_counter;

static int st_fail(conduit_lwip *st, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int st_fail(conduit_lwip *st, int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(st->error, sizeof(st->error), fmt, ap);
	va_end(ap);
	return status;
}

static void spare_free(conduit_lwip *st);

int conduit_lwip_stack(conduit_lwip **out)
{
	if (out == NULL)
		return CONDUIT_ERR_INVALID;
	if (!lwip_started) {
		/* Never tcpip_init(): that starts lwIP's thread and its core
		 * lock, and polling from here would then race it. */
		lwip_init();
		lwip_started = true;
	}
	the_stack.refs++;
	*out = &the_stack;
	return CONDUIT_OK;
}

void conduit_lwip_release(conduit_lwip *st)
{
	if (st == NULL || st->refs <= 0)
		return;
	if (--st->refs > 0)
		return;
	while (st->netifs != NULL)
		conduit_lwip_netif_free(st->netifs);
	spare_free(st);
	st->ctx = NULL;
	st->error[0] = '\0';
}

const char *conduit_lwip_error(const conduit_lwip *st)
{
	return st != NULL ? st->error : "";
}

static size_t list_len(const struct tcp_pcb *p)
{
	size_t n = 0;
	for (; p != NULL; p = p->next)
		n++;
	return n;
}

void conduit_lwip_stats(const conduit_lwip *st, struct conduit_lwip_stats *out)
{
	if (out == NULL)
		return;
	memset(out, 0, sizeof(*out));
	if (st == NULL)
		return;
	out->netifs = st->nnetifs;
	out->flows = st->nflows;
	out->listeners = st->nlisteners;
	out->pcbs = st->npcbs;
	out->pbufs = st->npbufs;
	out->frames = st->nframes;
	out->frames_dropped = st->dropped;
	out->max_frame = st->max_frame;
	out->lwip_active = list_len(tcp_active_pcbs);
	out->lwip_listen =
	    list_len((const struct tcp_pcb *)tcp_listen_pcbs.pcbs);
	out->lwip_bound = list_len(tcp_bound_pcbs);
	out->lwip_time_wait = list_len(tcp_tw_pcbs);
}

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

static void frameq_clear(conduit_lwip *st, struct frameq *q)
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

/* Hand one received frame to lwIP.  PBUF_RAM, not PBUF_POOL: the
 * library's pool elements are 616 bytes while its headers (and so
 * pbuf_alloc's callers) assume 1536, and a full-size frame in a pool
 * pbuf would overrun it. */
static CD_HOT void input_frame(conduit_lwip_netif *n, const void *data,
                               size_t len)
{
	if (len == 0 || len > LW_FRAME_MAX)
		return;
	if (len > n->st->max_frame)
		n->st->max_frame = len;
	struct pbuf *p = pbuf_alloc(PBUF_RAW, (u16_t)len, PBUF_RAM);
	if (p == NULL) {
		n->st->dropped++;
		return;
	}
	pbuf_take(p, data, (u16_t)len);
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

static err_t netif_setup(struct netif *nif)
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

/* Parse "A.B.C.D[/P]" into address and netmask. */
static bool parse_v4(const char *text, ip4_addr_t *addr, ip4_addr_t *mask)
{
	char buf[32];
	const char *slash = strchr(text, '/');
	size_t alen = slash != NULL ? (size_t)(slash - text) : strlen(text);
	if (alen >= sizeof(buf))
		return false;
	memcpy(buf, text, alen);
	buf[alen] = '\0';
	if (!ip4addr_aton(buf, addr))
		return false;
	unsigned prefix = 24;
	if (slash != NULL) {
		char *end = NULL;
		unsigned long v = strtoul(slash + 1, &end, 10);
		if (end == slash + 1 || *end != '\0' || v > 32)
			return false;
		prefix = (unsigned)v;
	}
	uint32_t m = prefix == 0 ? 0 : 0xffffffffu << (32 - prefix);
	ip4_addr_set_u32(mask, lwip_htonl(m));
	return true;
}

/* Add a netif of kind to the stack, configured from cfg. */
static int netif_new(conduit_lwip_netif **out, conduit_lwip *st,
                     enum netif_kind kind, int fd, const char *what,
                     const struct conduit_lwip_netif_config *cfg)
{
	static const struct conduit_lwip_netif_config none;
	if (cfg == NULL)
		cfg = &none;
	ip4_addr_t addr, mask, gw;
	ip4_addr_set_zero(&addr);
	ip4_addr_set_zero(&mask);
	ip4_addr_set_zero(&gw);
	if (cfg->ipv4 != NULL && !parse_v4(cfg->ipv4, &addr, &mask))
		return st_fail(st, CONDUIT_ERR_INVALID,
		               "%s: '%s' is not an IPv4 address/prefix", what,
		               cfg->ipv4);
	if (cfg->gateway4 != NULL && !ip4addr_aton(cfg->gateway4, &gw))
		return st_fail(st, CONDUIT_ERR_INVALID,
		               "%s: gateway '%s' is not an IPv4 address", what,
		               cfg->gateway4);
	ip6_addr_t a6;
	if (cfg->ipv6 != NULL && !ip6addr_aton(cfg->ipv6, &a6))
		return st_fail(st, CONDUIT_ERR_INVALID,
		               "%s: '%s' is not an IPv6 address", what,
		               cfg->ipv6);

	conduit_lwip_netif *n = calloc(1, sizeof(*n));
	if (n == NULL)
		return st_fail(st, CONDUIT_ERR_NOMEM, "%s: out of memory",
		               what);
	n->st = st;
	n->kind = kind;
	n->fd = fd;
	n->ip6_index = -1;
	n->rng = 0x9E3779B97F4A7C15ull;
	static const uint8_t zero[6];
	if (memcmp(cfg->mac, zero, 6) != 0) {
		memcpy(n->nif.hwaddr, cfg->mac, 6);
	} else {
		/* Locally administered, unicast, unique per process. */
		unsigned c = ++mac_counter;
		uint32_t pid = (uint32_t)getpid();
		uint8_t mac[6] = {
		    0x02,         (uint8_t)(pid >> 16), (uint8_t)(pid >> 8),
		    (uint8_t)pid, (uint8_t)(c >> 8),    (uint8_t)c};
		memcpy(n->nif.hwaddr, mac, 6);
	}
	if (netif_add(&n->nif, &addr, &mask, &gw, n, netif_setup,
	              ethernet_input) == NULL) {
		free(n);
		return st_fail(st, CONDUIT_ERR_SYSTEM,
		               "%s: lwIP refused the netif", what);
	}
	n->nif.mtu = cfg->mtu != 0 ? cfg->mtu : 1500;
	n->nif.mtu6 = n->nif.mtu;
	/* Addresses are ours to give: skip duplicate detection, which would
	 * hold them tentative for a second. */
	netif_create_ip6_linklocal_address(&n->nif, 1);
	netif_ip6_addr_set_state(&n->nif, 0, IP6_ADDR_PREFERRED);
	if (cfg->ipv6 != NULL) {
		s8_t idx = -1;
		if (netif_add_ip6_address(&n->nif, &a6, &idx) != ERR_OK ||
		    idx < 0) {
			netif_remove(&n->nif);
			free(n);
			return st_fail(st, CONDUIT_ERR_SYSTEM,
			               "%s: lwIP refused the IPv6 address %s",
			               what, cfg->ipv6);
		}
		netif_ip6_addr_set_state(&n->nif, idx, IP6_ADDR_PREFERRED);
		n->ip6_index = idx;
	}
	n->next = st->netifs;
	st->netifs = n;
	st->nnetifs++;
	netif_set_up(&n->nif);
	netif_set_link_up(&n->nif);
	if (cfg->is_default)
		netif_set_default(&n->nif);
	*out = n;
	return CONDUIT_OK;
}

void conduit_lwip_netif_free(conduit_lwip_netif *n)
{
	if (n == NULL)
		return;
	conduit_lwip *st = n->st;
	netif_set_link_down(&n->nif);
	netif_set_down(&n->nif);
	netif_remove(&n->nif);
	if (n->peer != NULL)
		n->peer->peer = NULL;
	frameq_clear(st, &n->rxq);
	frameq_clear(st, &n->txq);
	if (n->fd >= 0)
		close(n->fd);
	for (conduit_lwip_netif **pp = &st->netifs; *pp != NULL;
	     pp = &(*pp)->next)
		if (*pp == n) {
			*pp = n->next;
			break;
		}
	st->nnetifs--;
	free(n);
}

static void set_faults(conduit_lwip_netif *n,
                       const struct conduit_lwip_wire_config *w)
{
	static const struct conduit_lwip_wire_config perfect;
	n->faults = w != NULL ? *w : perfect;
	n->rng = 0x9E3779B97F4A7C15ull ^ ((uint64_t)n->faults.seed << 17) ^
	         (uint64_t)(uintptr_t)n->peer;
	if (n->rng == 0)
		n->rng = 1;
}

int conduit_lwip_netif_wire_pair(conduit_lwip_netif **a, conduit_lwip_netif **b,
                                 conduit_lwip *st,
                                 const struct conduit_lwip_netif_config *ca,
                                 const struct conduit_lwip_netif_config *cb,
                                 const struct conduit_lwip_wire_config *wire)
{
	if (a == NULL || b == NULL || st == NULL || st->refs <= 0)
		return CONDUIT_ERR_INVALID;
	*a = *b = NULL;
	conduit_lwip_netif *na = NULL, *nb = NULL;
	int rc = netif_new(&na, st, NK_WIRE, -1, "wire netif A", ca);
	if (rc != CONDUIT_OK)
		return rc;
	rc = netif_new(&nb, st, NK_WIRE, -1, "wire netif B", cb);
	if (rc != CONDUIT_OK) {
		conduit_lwip_netif_free(na);
		return rc;
	}
	na->peer = nb;
	nb->peer = na;
	set_faults(na, wire);
	set_faults(nb, wire);
	*a = na;
	*b = nb;
	return CONDUIT_OK;
}

int conduit_lwip_wire_set(conduit_lwip_netif *n,
                          const struct conduit_lwip_wire_config *wire)
{
	if (n == NULL || n->kind != NK_WIRE)
		return CONDUIT_ERR_INVALID;
	set_faults(n, wire);
	return CONDUIT_OK;
}

int conduit_lwip_netif_dgram(conduit_lwip_netif **out, conduit_lwip *st, int fd,
                             const struct conduit_lwip_netif_config *cfg)
{
	if (out != NULL)
		*out = NULL;
	if (out == NULL || st == NULL || st->refs <= 0 || fd < 0) {
		if (fd >= 0)
			close(fd);
		return CONDUIT_ERR_INVALID;
	}
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
		int e = errno;
		close(fd);
		return st_fail(st, conduit_status_from_errno(e),
		               "dgram netif: fd %d: %s", fd, strerror(e));
	}
	/* Room for a window's worth of frames each way; best effort. */
	int sz = 1 << 20;
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	int rc = netif_new(out, st, NK_DGRAM, fd, "dgram netif", cfg);
	if (rc != CONDUIT_OK)
		close(fd);
	return rc;
}

int conduit_lwip_netif_tap(conduit_lwip_netif **out, conduit_lwip *st,
                           const char *name,
                           const struct conduit_lwip_netif_config *cfg)
{
	if (out != NULL)
		*out = NULL;
	if (out == NULL || st == NULL || st->refs <= 0 || name == NULL)
		return CONDUIT_ERR_INVALID;
	int fd = cd_lwip_tap_open(name);
	if (fd < 0) {
		int e = errno;
		int status = e == ENOENT || e == ENODEV || e == ENOSYS
		                 ? CONDUIT_ERR_UNSUPPORTED
		                 : conduit_status_from_errno(e);
		return st_fail(st, status, "tap netif %s: %s", name,
		               strerror(e));
	}
	int rc = netif_new(out, st, NK_TAP, fd, "tap netif", cfg);
	if (rc != CONDUIT_OK)
		close(fd);
	return rc;
}

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
static conduit_lwip_netif *netif_owning(conduit_lwip *st, const ip_addr_t *ip);

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

/* ------------------------------------------------------------------ */
/* Addresses                                                           */

static void to_ip(const struct conduit_addr *a, ip_addr_t *ip)
{
	if (a->family == CONDUIT_AF_INET) {
		uint32_t v;
		memcpy(&v, a->bytes, 4);
		ip_addr_set_ip4_u32(ip, v);
	} else {
		uint32_t w[4];
		memcpy(w, a->bytes, 16);
		IP_ADDR6(ip, w[0], w[1], w[2], w[3]);
		ip6_addr_clear_zone(ip_2_ip6(ip));
	}
}

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

/*
 * The netif a connection to dst leaves by: one whose subnet holds dst and
 * which is not dst itself (two netifs of this process on one wire share a
 * subnet); else the default netif; else, for IPv6, any netif with a
 * matching /64 or link-local destination.
 */
static conduit_lwip_netif *netif_towards(conduit_lwip *st, const ip_addr_t *dst)
{
	conduit_lwip_netif *fallback = NULL;
	for (conduit_lwip_netif *n = st->netifs; n != NULL; n = n->next) {
		if (IP_IS_V4(dst)) {
			const ip4_addr_t *a = netif_ip4_addr(&n->nif);
			if (ip4_addr_isany(a) || ip4_addr_cmp(a, ip_2_ip4(dst)))
				continue;
			if (ip4_addr_netcmp(ip_2_ip4(dst), a,
			                    netif_ip4_netmask(&n->nif)))
				return n;
			continue;
		}
		bool mine = false, near = false;
		for (int i = 0; i < LWIP_IPV6_NUM_ADDRESSES; i++) {
			if (!ip6_addr_isvalid(netif_ip6_addr_state(&n->nif, i)))
				continue;
			const ip6_addr_t *a = netif_ip6_addr(&n->nif, i);
			if (ip6_addr_cmp_zoneless(a, ip_2_ip6(dst)))
				mine = true;
			else if (ip6_addr_netcmp_zoneless(a, ip_2_ip6(dst)))
				near = true;
		}
		if (mine)
			continue;
		if (near)
			return n;
		if (fallback == NULL)
			fallback = n;
	}
	if (netif_default != NULL)
		for (conduit_lwip_netif *n = st->netifs; n != NULL; n = n->next)
			if (&n->nif == netif_default &&
			    (IP_IS_V4(dst) ? netif_owning(st, dst) != n : true))
				return n;
	return IP_IS_V4(dst) ? NULL : fallback;
}

/* Room for describe(): "[", an IPv6 address, "]:", a port, NUL. */
#define LW_ADDR_MAX (IP6ADDR_STRLEN_MAX + 9)

/* The decimal digits of v (at most 65535) at p; returns the end. */
static char *put_uint(char *p, unsigned v)
{
	if (v >= 10000)
		*p++ = (char)('0' + v / 10000);
	if (v >= 1000)
		*p++ = (char)('0' + v / 1000 % 10);
	if (v >= 100)
		*p++ = (char)('0' + v / 100 % 10);
	if (v >= 10)
		*p++ = (char)('0' + v / 10 % 10);
	*p++ = (char)('0' + v % 10);
	return p;
}

/*
 * "10.0.0.1:80" or "[fd00::1]:80" into buf (LW_ADDR_MAX bytes); returns
 * the length.  By hand rather than with snprintf: every accepted
 * connection's URI is made from it, and the formatting would cost about
 * as much as the rest of accepting.
 */
static size_t describe(const ip_addr_t *ip, u16_t port, char *buf)
{
	char *p = buf;
	if (IP_IS_V4(ip)) {
		const u8_t *b = (const u8_t *)&ip_2_ip4(ip)->addr;
		for (int i = 0; i < 4; i++) {
			p = put_uint(p, b[i]);
			*p++ = i < 3 ? '.' : ':';
		}
	} else {
		*p++ = '[';
		/* inet_ntop, not lwIP's ip6addr_ntoa: that writes upper-case
		 * digits and shortens the first run of zeros rather than the
		 * longest, so a peer would read otherwise than on host TCP
		 * (RFC 5952 text, as everywhere in conduit). */
		if (inet_ntop(AF_INET6, ip_2_ip6(ip)->addr, p,
		              IP6ADDR_STRLEN_MAX) == NULL)
			*p = '\0';
		p += strlen(p);
		*p++ = ']';
		*p++ = ':';
	}
	p = put_uint(p, port);
	*p = '\0';
	return (size_t)(p - buf);
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

/* ------------------------------------------------------------------ */
/* Flows                                                               */

/* A received chain and the number of pbufs in it (for the stack's
 * count, without walking the chain again when it is freed). */
struct rx_slot {
	struct pbuf *p;
	size_t n;
};

/* Freed flows a stack keeps for reuse.  None under AddressSanitizer, so
 * that a stale pointer to a freed flow is reported, not quietly aliased
 * to the next one. */
#if defined(__SANITIZE_ADDRESS__)
#define LW_SPARE 0
#else
#define LW_SPARE 8
#endif
static const size_t lw_spare_max = LW_SPARE;

/* Ring slots inside the flow; a busier flow's ring moves to the heap. */
#define LW_RX_INLINE 4

struct lw_flow;

/* One connect attempt of the race.  Its pcb's callbacks reach it (arg),
 * except for the one attempt whose pcb is the flow's (see lw_flow.cur). */
struct lw_att {
	struct lw_flow *f;
	struct tcp_pcb *pcb; /* NULL once it ended */
	size_t addr;         /* index in the flow's addrs */
	err_t lwerr;         /* how it ended */
	bool ended;          /* ended, not yet told to the race */
};

/* What every read, write and poll looks at comes first, next to the
 * base, so that it spans as few cache lines as it can. */
struct lw_flow {
	conduit_flow base;
	conduit_lwip *st;
	struct tcp_pcb *pcb; /* NULL once lwIP freed it or we let it go */
	int error;           /* status of a failure lwIP reported, else OK */
	err_t lwerr;
	bool connected;
	bool eof;     /* the peer's FIN */
	bool discard; /* SHUT_RD: received data is dropped */
	/* Received pbuf chains, oldest first (a ring of rx_cap slots, a
	 * power of two: rx_first, or on the heap once more are needed):
	 * each as lwIP gave it; off bytes of the first are read. */
	struct rx_slot *rx;
	size_t rx_cap, rx_head, rx_n, rx_off, rx_bytes;
	struct rx_slot rx_first[LW_RX_INLINE];
	/* Connecting: when the handshake next has work (the race's next
	 * start or its timeout; LW_NOW once an attempt ended), 0: none. */
	uint64_t deadline;
	int port;
	bool nodelay;
	bool fin_sent; /* counted in the stack's nfin */
	/* The peer: the address being tried, or the one that connected.
	 * Messages and events show it (where()); it is formatted only
	 * then. */
	ip_addr_t peer;
	u16_t peer_port;
	struct lw_flow *prev, *next; /* the stack's list */
	/* The base's URI when it fits: "tcp://10.0.0.1:49152", or an IPv6
	 * peer in brackets. */
	char uri_buf[6 + LW_ADDR_MAX];
	/* Connecting only, out of the data paths' way.  The attempts race
	 * as the shared policy says (tcppolicy.h).  While any is in flight
	 * one of them, cur, has its pcb in pcb above with the flow's own
	 * callbacks, so that pcb is never NULL while the race runs; the
	 * others' callbacks reach their struct lw_att. */
	struct lw_att *cur;
	struct lw_att *att; /* natt slots: att1, or on the heap with addrs */
	size_t natt;
	struct conduit_addr *addrs; /* addr1, or on the heap */
	struct cd_race race;
	struct cd_tcp_opts opts;
	int last_status; /* how the last attempt that ended failed */
	const char *last_text;
	size_t last_addr;
	struct lw_att att1;
	struct conduit_addr addr1;
};

/* f->deadline once an attempt ended: the handshake has work now. */
#define LW_NOW 1

/* The peer as messages show it: "10.0.0.2:7000"; buf has LW_ADDR_MAX
 * bytes. */
static const char *where(const struct lw_flow *f, char *buf)
{
	describe(&f->peer, f->peer_port, buf);
	return buf;
}

static const struct conduit_flow_ops lw_flow_ops;

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

static void abort_pcb(struct lw_flow *f)
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

static void on_err(void *arg, err_t err)
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

static CD_HOT err_t on_recv(void *arg, struct tcp_pcb *pcb, struct pbuf *p,
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

static void setup_pcb(struct lw_flow *f, struct tcp_pcb *pcb)
{
	f->pcb = pcb;
	f->st->npcbs++;
	tcp_arg(pcb, f);
	tcp_recv(pcb, on_recv);
	tcp_err(pcb, on_err);
	if (f->nodelay)
		tcp_nagle_disable(pcb);
}

static err_t on_connected(void *arg, struct tcp_pcb *pcb, err_t err)
{
	struct lw_flow *f = arg;
	(void)pcb;
	(void)err; /* always ERR_OK in lwIP 2.1 */
	f->connected = true;
	return ERR_OK;
}

/* ------------------------------------------------------------------ */
/* The connect race                                                    */

static err_t on_att_connected(void *arg, struct tcp_pcb *pcb, err_t err);

/* An attempt's pcb, lost by lwIP (it is freed already). */
static void on_att_err(void *arg, err_t err)
{
	struct lw_att *a = arg;
	if (a == NULL)
		return;
	a->pcb = NULL;
	a->f->st->npcbs--;
	a->lwerr = err;
	a->ended = true;
	a->f->deadline = LW_NOW;
}

/* Point a's pcb's callbacks at a. */
static void att_bind_slot(struct lw_att *a)
{
	tcp_arg(a->pcb, a);
	tcp_recv(a->pcb, NULL); /* it has not connected: nothing comes */
	tcp_err(a->pcb, on_att_err);
	a->pcb->connected = on_att_connected;
}

/* Make a's pcb the flow's: the flow's callbacks, its peer. */
static void att_bind_flow(struct lw_flow *f, struct lw_att *a)
{
	f->pcb = a->pcb;
	f->cur = a;
	tcp_arg(a->pcb, f);
	tcp_recv(a->pcb, on_recv);
	tcp_err(a->pcb, on_err);
	a->pcb->connected = on_connected;
	if (f->natt > 1)
		to_ip(&f->addrs[a->addr], &f->peer);
}

/* An attempt that is not the flow's connected.  The first one wins and
 * becomes the flow's pcb at once, before any data can come on it; one
 * connecting after that is aborted. */
static err_t on_att_connected(void *arg, struct tcp_pcb *pcb, err_t err)
{
	struct lw_att *a = arg;
	struct lw_flow *f = a->f;
	(void)err;
	if (f->connected) {
		tcp_arg(pcb, NULL);
		tcp_err(pcb, NULL);
		a->pcb = NULL;
		f->st->npcbs--;
		tcp_abort(pcb);
		return ERR_ABRT;
	}
	if (f->cur != NULL && f->pcb != NULL) {
		att_bind_slot(f->cur);
	} else if (f->cur != NULL) {
		/* The flow's attempt ended (on_err counted its pcb); this one
		 * wins all the same. */
		f->cur->pcb = NULL;
		f->error = CONDUIT_OK;
	}
	att_bind_flow(f, a);
	f->connected = true;
	return ERR_OK;
}

/* Abort every attempt but the flow's own pcb, and let go of the race's
 * memory. */
static void race_release(struct lw_flow *f)
{
	for (size_t i = 0; i < f->natt; i++) {
		struct lw_att *a = &f->att[i];
		if (a == f->cur || a->pcb == NULL)
			continue;
		tcp_arg(a->pcb, NULL);
		tcp_err(a->pcb, NULL);
		tcp_abort(a->pcb);
		a->pcb = NULL;
		f->st->npcbs--;
	}
	f->cur = NULL;
	f->natt = 0;
	if (f->att != &f->att1)
		free(f->att); /* the addresses are in the same block */
	f->att = &f->att1;
	f->addrs = &f->addr1;
	cd_race_fini(&f->race);
}

/* An attempt on address i failed with status (text says how): note it
 * and tell the race. */
static void att_failed(struct lw_flow *f, size_t i, int status,
                       const char *text)
{
	f->last_status = status;
	f->last_text = text;
	f->last_addr = i;
	cd_race_failed(&f->race);
}

/* How lwIP's error for a connection that never connected reads. */
static int att_status(err_t e)
{
	return e == ERR_RST    ? CONDUIT_ERR_REFUSED
	       : e == ERR_ABRT ? CONDUIT_ERR_TIMED_OUT
	                       : CONDUIT_ERR_UNREACHABLE;
}

static const char *att_text(int status, err_t e)
{
	return status == CONDUIT_ERR_REFUSED ? "connection refused"
	                                     : err_text(e);
}

/* The shared policy's options on a new pcb. */
static void apply_opts(struct tcp_pcb *pcb, const struct cd_tcp_opts *o)
{
	if (o->nodelay)
		tcp_nagle_disable(pcb);
	if (o->keep_idle_s > 0) {
		ip_set_option(pcb, SOF_KEEPALIVE);
		pcb->keep_idle = o->keep_idle_s * 1000u;
		pcb->keep_intvl = o->keep_intvl_s * 1000u;
		pcb->keep_cnt = o->keep_cnt;
	}
}

/* Start an attempt on address i in a free slot; one that cannot start
 * is told to the race as failed. */
static void start_attempt(struct lw_flow *f, size_t i)
{
	ip_addr_t dst;
	to_ip(&f->addrs[i], &dst);
	ip_addr_copy(f->peer, dst);
	f->peer_port = (u16_t)f->port;
	if (conduit_observed(f->base.ctx)) {
		char buf[LW_ADDR_MAX];
		conduit_emit(f->base.ctx, CONDUIT_PHASE_CONNECTING, CONDUIT_OK,
		             f->base.uri, where(f, buf), &f->base);
	}
	ip_addr_t src;
	conduit_lwip_netif *out;
	if (f->opts.have_source) {
		to_ip(&f->opts.source, &src);
		out = netif_owning(f->st, &src);
	} else {
		out = netif_towards(f->st, &dst);
	}
	if (out == NULL)
		return att_failed(f, i, CONDUIT_ERR_UNREACHABLE,
		                  "no lwIP netif leads there");
	/* lwIP sends these to itself through its loopback, which needs its
	 * thread: a polled stack would abort. */
	if (ip_addr_isloopback(&dst))
		return att_failed(f, i, CONDUIT_ERR_UNREACHABLE,
		                  "a loopback address; lwIP's loopback needs "
		                  "its own thread, which a polled stack does "
		                  "not run");
	if (netif_has(out, &dst))
		return att_failed(f, i, CONDUIT_ERR_UNREACHABLE,
		                  "the netif's own address; lwIP's loopback "
		                  "needs its own thread, which a polled stack "
		                  "does not run");
	struct tcp_pcb *pcb =
	    tcp_new_ip_type(IP_IS_V4(&dst) ? IPADDR_TYPE_V4 : IPADDR_TYPE_V6);
	if (pcb == NULL)
		return att_failed(f, i, CONDUIT_ERR_NOMEM, "out of lwIP pcbs");
	/* Pinned: otherwise a destination that is another netif of this
	 * stack goes through lwIP's loopback. */
	tcp_bind_netif(pcb, &out->nif);
	err_t e = f->opts.have_source ? tcp_bind(pcb, &src, 0) : ERR_OK;
	if (e != ERR_OK) {
		tcp_close(pcb); /* bound only: freed at once */
		return att_failed(f, i,
		                  e == ERR_USE   ? CONDUIT_ERR_ADDR_IN_USE
		                  : e == ERR_MEM ? CONDUIT_ERR_NOMEM
		                                 : CONDUIT_ERR_UNREACHABLE,
		                  err_text(e));
	}
	apply_opts(pcb, &f->opts);
	struct lw_att *a = f->att;
	while (a->pcb != NULL || a->ended)
		a++; /* the race starts no more than natt at once */
	*a = (struct lw_att){.f = f, .pcb = pcb, .addr = i};
	f->st->npcbs++;
	/* The first attempt in flight is the flow's from the start. */
	bool mine = f->cur == NULL;
	if (mine)
		att_bind_flow(f, a);
	else
		att_bind_slot(a);
	e = tcp_connect(pcb, &dst, (u16_t)f->port,
	                mine ? on_connected : on_att_connected);
	if (e != ERR_OK) {
		tcp_arg(pcb, NULL);
		tcp_err(pcb, NULL);
		tcp_abort(pcb);
		a->pcb = NULL;
		f->st->npcbs--;
		if (mine) {
			f->cur = NULL;
			f->pcb = NULL;
		}
		att_failed(f, i,
		           e == ERR_MEM ? CONDUIT_ERR_NOMEM
		                        : CONDUIT_ERR_UNREACHABLE,
		           err_text(e));
	}
}

/* The race's failure, as the host backend words it. */
static int race_failed(struct lw_flow *f)
{
	char buf[LW_ADDR_MAX];
	int st = f->last_status != CONDUIT_OK ? f->last_status
	                                      : CONDUIT_ERR_UNREACHABLE;
	to_ip(&f->addrs[f->last_addr], &f->peer);
	f->peer_port = (u16_t)f->port;
	size_t n = cd_race_count(&f->race);
	if (n > 1)
		return conduit_flow_fail(&f->base, st,
		                         "connect %s: %s (%zu addresses tried, "
		                         "last %s)",
		                         f->base.uri, f->last_text, n,
		                         where(f, buf));
	return conduit_flow_fail(&f->base, st, "connect %s: %s: %s",
	                         f->base.uri, where(f, buf), f->last_text);
}

/* One turn of the race: take in the attempts that ended, then do what
 * the race says.  CONDUIT_OK once connected, CONDUIT_WANT_WRITE while
 * racing, else the failure. */
static int race_step(struct lw_flow *f, uint64_t now)
{
	char buf[LW_ADDR_MAX];
	struct lw_att *cur = f->cur;
	if (cur != NULL && f->pcb == NULL) {
		/* The flow's pcb ended: on_err said how. */
		int st =
		    f->error != CONDUIT_OK ? f->error : CONDUIT_ERR_UNREACHABLE;
		cur->pcb = NULL;
		f->cur = NULL;
		att_failed(f, cur->addr, st, att_text(st, f->lwerr));
		f->error = CONDUIT_OK;
		f->connected = false;
	} else if (f->connected) {
		cd_race_won(&f->race);
		if (f->natt > 1) {
			race_release(f);
		} else {
			f->cur = NULL; /* one address: nothing else to let go */
			f->natt = 0;
		}
		f->deadline = 0;
		if (conduit_observed(f->base.ctx))
			conduit_emit(f->base.ctx, CONDUIT_PHASE_CONNECTED,
			             CONDUIT_OK, f->base.uri, where(f, buf),
			             &f->base);
		return CONDUIT_OK;
	}
	for (size_t i = 0; i < f->natt; i++) {
		struct lw_att *a = &f->att[i];
		if (!a->ended)
			continue;
		a->ended = false;
		int st = att_status(a->lwerr);
		att_failed(f, a->addr, st, att_text(st, a->lwerr));
	}
	size_t i = 0;
	enum cd_race_step step;
	while ((step = cd_race_next(&f->race, now, &i)) == CD_RACE_START)
		start_attempt(f, i);
	if (step == CD_RACE_TIMEOUT) {
		abort_pcb(f);
		race_release(f);
		f->deadline = 0;
		return conduit_flow_fail(
		    &f->base, CONDUIT_ERR_TIMED_OUT,
		    "connect %s: %s: timed out after %u ms", f->base.uri,
		    where(f, buf), (unsigned)f->base.ctx->connect_timeout_ms);
	}
	if (step == CD_RACE_FAILED) {
		f->deadline = 0;
		int rc = race_failed(f);
		race_release(f);
		return rc;
	}
	/* Some attempt's pcb is the flow's while any is in flight. */
	if (f->cur == NULL)
		for (size_t k = 0; k < f->natt; k++)
			if (f->att[k].pcb != NULL) {
				att_bind_flow(f, &f->att[k]);
				break;
			}
	uint64_t wake = cd_race_wake(&f->race);
	f->deadline = wake == UINT64_MAX ? 0 : wake;
	return CONDUIT_WANT_WRITE;
}

static struct lw_flow *flow_alloc(conduit_lwip *st, conduit_ctx *ctx,
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
	/* The connecting part is set up by lw_connect; an accepted flow
	 * needs only what lw_destroy reads of it. */
	memset(f, 0, offsetof(struct lw_flow, cur));
	f->cur = NULL;
	f->natt = 0;
	f->race.more = NULL;
	if (conduit_flow_init_in(&f->base, &lw_flow_ops, ctx, uri, f->uri_buf,
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

static int lw_connect(void *state, conduit_ctx *ctx, const conduit_endpoint *ep,
                      conduit_flow **out)
{
	conduit_lwip *st = state;
	if (ep->host_kind == CONDUIT_HOST_NONE)
		return conduit_ctx_fail(ctx, CONDUIT_ERR_HOST,
		                        "connect %s: no host to connect to",
		                        cd_endpoint_shown(ep));
	if (ep->naddrs == 0)
		return conduit_ctx_fail(ctx, CONDUIT_ERR_RESOLVE,
		                        "connect %s: no address",
		                        cd_endpoint_shown(ep));
	struct cd_tcp_opts o;
	int rc = cd_tcp_opts_parse(&o, ctx, ep);
	if (rc != CONDUIT_OK)
		return rc;
	/* With a source address only addresses of its family can work. */
	size_t n = 0;
	for (size_t i = 0; i < ep->naddrs; i++)
		n += cd_tcp_opts_fit(&o, ep->addrs[i].family);
	if (n == 0)
		return cd_tcp_opts_no_fit(ctx, ep, &o);
	struct lw_flow *f = flow_alloc(st, ctx, ep->uri);
	/* One address, the usual case, needs no allocation of its own;
	 * several share one block with their attempts. */
	size_t natt = n < CD_RACE_MAX_ATTEMPTS ? n : CD_RACE_MAX_ATTEMPTS;
	if (f != NULL && n > 1) {
		struct lw_att *att = calloc(
		    1, natt * sizeof(*att) + n * sizeof(struct conduit_addr));
		if (att != NULL) {
			f->att = att;
			f->addrs = (struct conduit_addr *)(att + natt);
			f->natt = natt; /* so that destroy frees the block */
		} else {
			lw_flow_ops.destroy(&f->base);
			f = NULL;
		}
	}
	if (f == NULL)
		return conduit_ctx_fail(ctx, CONDUIT_ERR_NOMEM,
		                        "connect %s: out of memory",
		                        cd_endpoint_shown(ep));
	if (n == 1)
		f->att1 = (struct lw_att){.pcb = NULL};
	f->natt = natt;
	f->last_status = CONDUIT_OK;
	f->last_text = "";
	f->last_addr = 0;
	f->opts = o;
	f->nodelay = o.nodelay;
	f->port = ep->dest_port > 0 ? ep->dest_port : ep->port;
	/* The clock matters only to a stagger or a timeout. */
	uint64_t now =
	    n > 1 || ctx->connect_timeout_ms > 0 ? conduit_now_ms() : 0;
	cd_race_init(&f->race, now, ctx->connect_timeout_ms, natt);
	for (size_t i = 0, k = 0; i < ep->naddrs && rc == CONDUIT_OK; i++) {
		if (!cd_tcp_opts_fit(&o, ep->addrs[i].family))
			continue;
		f->addrs[k++] = ep->addrs[i];
		rc = cd_race_add(&f->race,
		                 ep->addrs[i].family == CONDUIT_AF_INET6
		                     ? CD_RACE_V6
		                     : CD_RACE_OTHER);
	}
	cd_race_complete(&f->race);
	if (rc != CONDUIT_OK)
		rc = conduit_flow_fail(
		    &f->base, rc, "connect %s: out of memory", f->base.uri);
	else
		rc = race_step(f, now);
	if (rc != CONDUIT_OK && rc != CONDUIT_WANT_WRITE) {
		conduit_ctx_fail(ctx, rc, "%s", conduit_flow_error(&f->base));
		lw_flow_ops.destroy(&f->base);
		return rc;
	}
	*out = &f->base;
	return CONDUIT_OK;
}

static int lw_handshake(conduit_flow *base)
{
	struct lw_flow *f = (struct lw_flow *)base;
	/* Most calls find nothing new: no attempt connected or ended (one
	 * that ends makes the deadline now) and nothing due. */
	bool quiet = !f->connected && f->pcb != NULL;
	if (quiet && f->deadline == 0)
		return CONDUIT_WANT_WRITE;
	/* A winner needs no clock. */
	uint64_t now = f->connected && f->pcb != NULL ? 0 : conduit_now_ms();
	if (quiet && now < f->deadline)
		return CONDUIT_WANT_WRITE;
	return race_step(f, now);
}

int cd_lwip_tcp_info(const conduit_flow *base, struct cd_lwip_tcp_info *out)
{
	if (base == NULL || base->ops != &lw_flow_ops || out == NULL)
		return CONDUIT_ERR_INVALID;
	const struct tcp_pcb *pcb = ((const struct lw_flow *)base)->pcb;
	if (pcb == NULL)
		return CONDUIT_ERR_INVALID;
	out->nodelay = tcp_nagle_disabled(pcb);
	out->keepalive = ip_get_option(pcb, SOF_KEEPALIVE) != 0;
	out->keep_idle_ms = pcb->keep_idle;
	out->keep_intvl_ms = pcb->keep_intvl;
	out->keep_cnt = pcb->keep_cnt;
	return CONDUIT_OK;
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

static void lw_destroy(conduit_flow *base)
{
	struct lw_flow *f = (struct lw_flow *)base;
	abort_pcb(f);
	if (f->natt != 0)
		race_release(f);
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

static void spare_free(conduit_lwip *st)
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

static const struct conduit_flow_ops lw_flow_ops = {
    .name = "lwip",
    .handshake = lw_handshake,
    .read = lw_read,
    .writev = lw_writev,
    .shutdown = lw_shutdown,
    .close = lw_close,
    .destroy = lw_destroy,
    .wait = lw_wait,
    .pending = lw_pending,
    .unread = lw_unread,
};

/* ------------------------------------------------------------------ */
/* Listeners                                                           */

struct lw_listener {
	conduit_listener base;
	conduit_lwip *st;
	struct tcp_pcb *pcb;
	/* Accepted flows waiting for conduit_accept(), a FIFO. */
	struct lw_flow *queue[LW_BACKLOG];
	size_t q_head, q_n;
};

static err_t on_accept(void *arg, struct tcp_pcb *npcb, err_t err)
{
	struct lw_listener *l = arg;
	if (err != ERR_OK || npcb == NULL)
		return ERR_VAL;
	if (l->q_n == LW_BACKLOG)
		return ERR_MEM; /* lwIP aborts the connection */
	char uri[6 + LW_ADDR_MAX];
	memcpy(uri, "tcp://", 6);
	describe(&npcb->remote_ip, npcb->remote_port, uri + 6);
	struct lw_flow *f = flow_alloc(l->st, l->base.ctx, uri);
	if (f == NULL)
		return ERR_MEM;
	ip_addr_copy(f->peer, npcb->remote_ip);
	f->peer_port = npcb->remote_port;
	/* The SYN came in on this netif: answers go out on it too. */
	if (npcb->netif_idx == NETIF_NO_INDEX &&
	    ip_current_input_netif() != NULL)
		tcp_bind_netif(npcb, ip_current_input_netif());
	setup_pcb(f, npcb);
	f->connected = true;
	f->base.state |= CONDUIT_FLOW_ESTABLISHED;
	l->queue[(l->q_head + l->q_n) % LW_BACKLOG] = f;
	l->q_n++;
	return ERR_OK;
}

static int ll_accept(conduit_listener *base, conduit_flow **out)
{
	struct lw_listener *l = (struct lw_listener *)base;
	if (l->q_n == 0)
		return CONDUIT_WANT_READ;
	struct lw_flow *f = l->queue[l->q_head];
	l->q_head = (l->q_head + 1) % LW_BACKLOG;
	l->q_n--;
	/* conduit_accept() reports "accepted", with the flow's URI. */
	*out = &f->base;
	return CONDUIT_OK;
}

static void ll_destroy(conduit_listener *base)
{
	struct lw_listener *l = (struct lw_listener *)base;
	while (l->q_n > 0) {
		lw_destroy(&l->queue[l->q_head]->base);
		l->q_head = (l->q_head + 1) % LW_BACKLOG;
		l->q_n--;
	}
	if (l->pcb != NULL) {
		tcp_arg(l->pcb, NULL);
		tcp_accept(l->pcb, NULL);
		tcp_close(l->pcb); /* a listening pcb closes at once */
		l->st->npcbs--;
	}
	l->st->nlisteners--;
	conduit_listener_fini(base);
	free(l);
}

static void ll_wait(conduit_listener *base, struct conduit_waitset *ws)
{
	(void)base;
	(void)ws; /* the stack's hook does the waiting */
}

static unsigned ll_pending(conduit_listener *base)
{
	return ((struct lw_listener *)base)->q_n > 0 ? CONDUIT_POLLIN : 0;
}

static const struct conduit_listener_ops lw_listener_ops = {
    .name = "lwip",
    .accept = ll_accept,
    .destroy = ll_destroy,
    .wait = ll_wait,
    .pending = ll_pending,
};

static int lw_listen(void *state, conduit_ctx *ctx, const conduit_endpoint *ep,
                     conduit_listener **out)
{
	conduit_lwip *st = state;
	ip_addr_t ip;
	conduit_lwip_netif *on = NULL;
	u8_t type = IPADDR_TYPE_ANY;
	if (cd_listen_refuses_connect_to(ctx, ep) != CONDUIT_OK)
		return CONDUIT_ERR_OPTION;
	if (ep->host_kind == CONDUIT_HOST_NONE) {
		ip_addr_copy(ip, *IP_ANY_TYPE);
	} else {
		/* A parsed endpoint carries no addresses yet: literals are
		 * converted here, names looked up (the context's lookup). */
		struct conduit_addr first = {0};
		if (ep->naddrs > 0) {
			first = ep->addrs[0];
		} else {
			conduit_endpoint *looked = conduit_endpoint_dup(ep);
			if (looked == NULL)
				return conduit_ctx_fail(
				    ctx, CONDUIT_ERR_NOMEM,
				    "listen %s: out of memory",
				    cd_endpoint_shown(ep));
			int rc = cd_lookup(ctx, looked);
			if (rc == CONDUIT_OK && looked->naddrs == 0)
				rc = conduit_ctx_fail(ctx, CONDUIT_ERR_RESOLVE,
				                      "listen %s: no address",
				                      cd_endpoint_shown(ep));
			if (rc == CONDUIT_OK)
				first = looked->addrs[0];
			conduit_endpoint_free(looked);
			if (rc != CONDUIT_OK)
				return rc;
		}
		to_ip(&first, &ip);
		type = IP_IS_V4(&ip) ? IPADDR_TYPE_V4 : IPADDR_TYPE_V6;
		on = netif_owning(st, &ip);
		if (on == NULL)
			return conduit_ctx_fail(
			    ctx, CONDUIT_ERR_ADDR_UNAVAILABLE,
			    "listen %s: no lwIP netif has this "
			    "address",
			    cd_endpoint_shown(ep));
	}
	struct lw_listener *l = calloc(1, sizeof(*l));
	struct tcp_pcb *pcb = tcp_new_ip_type(type);
	if (l == NULL || pcb == NULL) {
		free(l);
		if (pcb != NULL)
			tcp_close(pcb);
		return conduit_ctx_fail(ctx, CONDUIT_ERR_NOMEM,
		                        "listen %s: out of memory",
		                        cd_endpoint_shown(ep));
	}
	/* Connections it accepts inherit the netif: pinned like ours. */
	if (on != NULL)
		tcp_bind_netif(pcb, &on->nif);
	err_t e = tcp_bind(pcb, &ip, (u16_t)ep->port);
	struct tcp_pcb *lpcb = NULL;
	if (e == ERR_OK) {
		lpcb = tcp_listen_with_backlog_and_err(pcb, LW_BACKLOG, &e);
		if (lpcb == NULL && e == ERR_OK)
			e = ERR_MEM;
	}
	if (lpcb == NULL) {
		tcp_close(pcb);
		free(l);
		return conduit_ctx_fail(
		    ctx,
		    e == ERR_USE ? CONDUIT_ERR_ADDR_IN_USE : CONDUIT_ERR_NOMEM,
		    "listen %s: %s", cd_endpoint_shown(ep), err_text(e));
	}
	/* The bound URI: the endpoint with the port lwIP chose. */
	conduit_endpoint *bound = conduit_endpoint_dup(ep);
	char *uri = NULL;
	if (bound != NULL) {
		bound->port = lpcb->local_port;
		uri = cd_uri_format(bound);
		conduit_endpoint_free(bound);
	}
	int rc = uri != NULL ? conduit_listener_init(&l->base, &lw_listener_ops,
	                                             ctx, uri)
	                     : CONDUIT_ERR_NOMEM;
	free(uri);
	if (rc != CONDUIT_OK) {
		tcp_close(lpcb);
		free(l);
		return conduit_ctx_fail(ctx, CONDUIT_ERR_NOMEM,
		                        "listen %s: out of memory",
		                        cd_endpoint_shown(ep));
	}
	l->st = st;
	l->pcb = lpcb;
	st->npcbs++;
	st->nlisteners++;
	tcp_arg(lpcb, l);
	tcp_accept(lpcb, on_accept);
	*out = &l->base;
	return CONDUIT_OK;
}

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
    .connect = lw_connect,
    .listen = lw_listen,
    .ctx_wait = be_ctx_wait,
    .ctx_process = be_ctx_process,
    .detach = be_detach,
};

int conduit_ctx_use_lwip(conduit_ctx *ctx, conduit_lwip *st)
{
	if (ctx == NULL || st == NULL || st->refs <= 0)
		return CONDUIT_ERR_INVALID;
	if (st->ctx == ctx)
		return CONDUIT_OK;
	if (st->ctx != NULL)
		return conduit_ctx_fail(
		    ctx, CONDUIT_ERR_STATE,
		    "use lwip: the stack already serves another "
		    "context (one per process)");
	int rc = conduit_ctx_register(ctx, &lw_backend, st);
	if (rc != CONDUIT_OK)
		return rc;
	st->refs++;
	st->ctx = ctx;
	return CONDUIT_OK;
}
