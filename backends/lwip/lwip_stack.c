/*
 * lwip_stack.c - the process's lwIP stack and its netifs: the references
 * a context and the application hold, its statistics and last error;
 * making and freeing the dummy Ethernet devices (in-memory wire pairs
 * with their faults, datagram sockets, TAPs); and the addresses: which
 * netif a connection leaves by, and an address as messages and URIs show
 * it.  Which netif owns an address is in lwip.c, beside the poll turn
 * that asks it too.
 */
#include "lwstack.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lwip/init.h"
#include "lwip/ip.h"
#include "lwip/priv/tcp_priv.h"
#include "netif/ethernet.h"

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
	cd_lwip_spare_free(st);
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
	if (netif_add(&n->nif, &addr, &mask, &gw, n, cd_lwip_netif_setup,
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
	cd_lwip_frameq_clear(st, &n->rxq);
	cd_lwip_frameq_clear(st, &n->txq);
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

/* ------------------------------------------------------------------ */
/* Addresses                                                           */

void cd_lwip_to_ip(const struct conduit_addr *a, ip_addr_t *ip)
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

/*
 * The netif a connection to dst leaves by: one whose subnet holds dst and
 * which is not dst itself (two netifs of this process on one wire share a
 * subnet); else the default netif; else, for IPv6, any netif with a
 * matching /64 or link-local destination.
 */
conduit_lwip_netif *cd_lwip_netif_towards(conduit_lwip *st,
                                          const ip_addr_t *dst)
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
			    (IP_IS_V4(dst) ? cd_lwip_netif_owning(st, dst) != n
			                   : true))
				return n;
	return IP_IS_V4(dst) ? NULL : fallback;
}

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
size_t cd_lwip_describe(const ip_addr_t *ip, u16_t port, char *buf)
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
