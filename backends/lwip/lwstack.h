/*
 * lwstack.h - private to the lwIP backend's files that see lwIP's headers
 * (lwip.c lists them): the stack, its netifs and its flows as those files
 * share them, and the functions one file calls in another.  tapdev.c and
 * the tests see lwpriv.h only, which must stay free of lwIP's headers.
 */
#ifndef CONDUIT_LWSTACK_H
#define CONDUIT_LWSTACK_H

#include "core.h"
#include "lwpriv.h"
#include "tcppolicy.h"

#include <conduit/lwip.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lwip/ip_addr.h"
#include "lwip/netif.h"
#include "lwip/pbuf.h"
#include "lwip/tcp.h"

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

/* ------------------------------------------------------------------ */
/* Flows                                                               */

/* Room for cd_lwip_describe(): "[", an IPv6 address, "]:", a port, NUL. */
#define LW_ADDR_MAX (IP6ADDR_STRLEN_MAX + 9)

/* A received chain and the number of pbufs in it (for the stack's
 * count, without walking the chain again when it is freed). */
struct rx_slot {
	struct pbuf *p;
	size_t n;
};

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

/* ------------------------------------------------------------------ */
/* Shared between the files                                            */

/* lwip_stack.c: addresses.  cd_lwip_describe writes LW_ADDR_MAX bytes at
 * most and returns the length. */
void cd_lwip_to_ip(const struct conduit_addr *a, ip_addr_t *ip);
conduit_lwip_netif *cd_lwip_netif_towards(conduit_lwip *st,
                                          const ip_addr_t *dst);
size_t cd_lwip_describe(const ip_addr_t *ip, u16_t port, char *buf);

/* lwip.c, beside the poll turn that asks it too: whether an address is a
 * netif's, and which netif owns it (NULL: none). */
bool cd_lwip_netif_has(const conduit_lwip_netif *n, const ip_addr_t *ip);
conduit_lwip_netif *cd_lwip_netif_owning(conduit_lwip *st, const ip_addr_t *ip);

/* lwip.c: the netif's driver hooks (netif_add's init function), frames,
 * lwIP's errors in words. */
err_t cd_lwip_netif_setup(struct netif *nif);
void cd_lwip_frameq_clear(conduit_lwip *st, struct frameq *q);
const char *cd_lwip_err_text(err_t e);

/* lwip.c: a flow's pcb callbacks, its memory and its ops. */
extern const struct conduit_flow_ops cd_lwip_flow_ops;
void cd_lwip_on_err(void *arg, err_t err);
err_t cd_lwip_on_recv(void *arg, struct tcp_pcb *pcb, struct pbuf *p,
                      err_t err);
void cd_lwip_abort_pcb(struct lw_flow *f);
struct lw_flow *cd_lwip_flow_alloc(conduit_lwip *st, conduit_ctx *ctx,
                                   const char *uri);
void cd_lwip_flow_destroy(conduit_flow *base);
void cd_lwip_spare_free(conduit_lwip *st);

/* lwip_connect.c: connecting, the race. */
int cd_lwip_connect(void *state, conduit_ctx *ctx, const conduit_endpoint *ep,
                    conduit_flow **out);
int cd_lwip_handshake(conduit_flow *base);
void cd_lwip_race_release(struct lw_flow *f);

/* lwip_listen.c: listening. */
int cd_lwip_listen(void *state, conduit_ctx *ctx, const conduit_endpoint *ep,
                   conduit_listener **out);

#endif
