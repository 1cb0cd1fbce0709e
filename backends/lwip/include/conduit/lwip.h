/*
 * lwip.h - TCP over the lwIP stack, chosen at run time per context.
 *
 * A unikernel links a TCP/IP stack instead of using a kernel's.  This
 * backend runs Debian's liblwip by polling (lwip_init() once, then
 * sys_check_timeouts() from conduit_poll(); no lwIP thread, tcpip_init()
 * is never called) and plugs it into a context as the "tcp" transport, so
 * tcp://, tls:// and the service schemes go through lwIP while the
 * application code stays the same.
 *
 * The objects:
 *
 *   conduit_lwip        THE stack of this process.  liblwip keeps its state
 *                       in globals, so there is exactly one per process:
 *                       conduit_lwip_stack() hands out references to it.
 *                       "Two stacks" means one stack with two netifs in one
 *                       process, or two processes.
 *   conduit_lwip_netif  a network interface of the stack, joined to a
 *                       "dummy Ethernet device": an in-memory wire to
 *                       another netif of this process, a datagram socket to
 *                       another process, or a TAP device of the kernel.
 *
 * Flows on lwIP have no descriptor (conduit_flow_fd() is -1); conduit_poll()
 * drives them through the context's hooks: it waits on the netifs'
 * descriptors and lwIP's next timer, delivers frames and runs the timers,
 * and asks each flow what it can do without waiting.
 *
 * Name lookups are not lwIP's business: a context on lwIP still resolves
 * names with the system resolver, or with conduit_ctx_set_lookup() (what a
 * unikernel would use).  IP literals never need a lookup.
 *
 * Threads: the stack and every context attached to it are used from one
 * thread at a time, like everything in conduit.  A process that forks
 * should make its stack after fork() (a child inherits a copy of the
 * parent's globals, which is a second, independent stack).
 */
#ifndef CONDUIT_LWIP_H
#define CONDUIT_LWIP_H

#include <conduit/conduit.h>

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct conduit_lwip conduit_lwip;
typedef struct conduit_lwip_netif conduit_lwip_netif;

/*
 * A reference to the process's stack, starting lwIP on first use.  Every
 * reference is given back with conduit_lwip_release().  CONDUIT_OK or
 * CONDUIT_ERR_INVALID (out NULL).
 */
int conduit_lwip_stack(conduit_lwip **out);

/*
 * Give a reference back.  When the last one goes, every netif is removed
 * and its descriptor closed; lwIP itself stays initialised (it cannot be
 * started twice) and a later conduit_lwip_stack() reuses it.
 */
void conduit_lwip_release(conduit_lwip *st);

/* The detail message of the stack's last failure ("" if none). */
const char *conduit_lwip_error(const conduit_lwip *st);

/*
 * Addresses of a netif.  ipv4 is "ADDR/PREFIX" ("10.0.0.1/24"; without
 * "/PREFIX" a /24 is assumed); gateway4 is optional.  ipv6 is an optional
 * global or unique-local address ("fd00::1"; lwIP treats every prefix as
 * /64); a link-local address derived from the MAC is always added.  mac
 * all zero makes a locally administered MAC unique in this process.
 * is_default makes the netif lwIP's default route.
 */
struct conduit_lwip_netif_config {
	const char *ipv4;
	const char *gateway4;
	const char *ipv6;
	uint8_t mac[6];
	uint16_t mtu; /* 0: 1500 */
	int is_default;
};

/*
 * Faults a wire applies to the frames one side sends, for tests: each
 * frame is dropped with probability loss, overtakes the frame queued
 * before it with probability reorder, and is delivered delay_ms late.
 * seed makes the faults repeatable (0: a fixed default).
 */
struct conduit_lwip_wire_config {
	double loss;
	double reorder;
	uint32_t delay_ms;
	uint32_t seed;
};

/*
 * Two netifs of this stack joined by an in-memory wire.  Frames a netif
 * sends are queued and delivered to the other from the poll loop (never
 * from inside lwIP's output path).  wire may be NULL (a perfect wire) and
 * applies to both directions; conduit_lwip_wire_set() changes one side.
 * Give the two netifs addresses on one subnet: connections are pinned to
 * the netif that owns their local address, so they cross the wire rather
 * than lwIP's loopback.  On failure nothing is left behind and the message
 * is on the stack.
 */
int conduit_lwip_netif_wire_pair(conduit_lwip_netif **a, conduit_lwip_netif **b,
                                 conduit_lwip *st,
                                 const struct conduit_lwip_netif_config *ca,
                                 const struct conduit_lwip_netif_config *cb,
                                 const struct conduit_lwip_wire_config *wire);

/* Change the faults applied to frames n sends on its in-memory wire.
 * CONDUIT_ERR_INVALID for netifs that are not on one. */
int conduit_lwip_wire_set(conduit_lwip_netif *n,
                          const struct conduit_lwip_wire_config *wire);

/*
 * A netif whose Ethernet frames are the datagrams of fd: one end of a
 * SOCK_DGRAM socketpair (or a connected Unix datagram socket) whose other
 * end is another process's netif.  The netif owns fd from the call on,
 * also on failure, and closes it when freed.  fd is made non-blocking.
 */
int conduit_lwip_netif_dgram(conduit_lwip_netif **out, conduit_lwip *st, int fd,
                             const struct conduit_lwip_netif_config *cfg);

/*
 * A netif on a Linux TAP device named name (made if it does not exist;
 * needs CAP_NET_ADMIN).  The kernel's side of the device is not touched:
 * bring it up and give it an address with ip(8) or netlink.  CONDUIT_ERR_
 * PERMISSION or _UNSUPPORTED (no /dev/net/tun) when no TAP can be had.
 */
int conduit_lwip_netif_tap(conduit_lwip_netif **out, conduit_lwip *st,
                           const char *name,
                           const struct conduit_lwip_netif_config *cfg);

/* Remove a netif from the stack, dropping its queued frames; connections
 * using its addresses are reset by lwIP.  NULL is a no-op. */
void conduit_lwip_netif_free(conduit_lwip_netif *n);

/*
 * Make lwIP the "tcp" transport of ctx: from now on tcp:// (and what is
 * built on it: tls://, https://, ...) connects and listens on this stack.
 * The context holds a reference to the stack until it is freed, and
 * conduit_poll() on it drives the stack.  The stack serves one context at
 * a time (CONDUIT_ERR_STATE otherwise); calling again on the same context
 * is a no-op.  There is no way back to host TCP on that context: a
 * program that needs both (a relay) uses two contexts.
 */
int conduit_ctx_use_lwip(conduit_ctx *ctx, conduit_lwip *st);

/*
 * Do the stack's pending work without a context (frames on wires and
 * descriptors, timers); conduit_poll() calls this through the context.
 * Returns CONDUIT_OK.
 */
int conduit_lwip_process(conduit_lwip *st);

/*
 * Counters, to check that nothing is left behind.  flows, listeners:
 * objects alive; pcbs: lwIP pcbs owned by them (including accepted ones
 * not yet taken); pbufs: received pbufs queued unread; frames: frames
 * queued on wires and descriptors.  lwip_*: lengths of lwIP's own pcb
 * lists (active connections, listeners, bound-only, TIME-WAIT): a closed
 * connection stays "active" until its closing handshake ends.
 */
struct conduit_lwip_stats {
	size_t netifs;
	size_t flows;
	size_t listeners;
	size_t pcbs;
	size_t pbufs;
	size_t frames;
	uint64_t frames_dropped; /* by wire faults or full queues */
	size_t max_frame;        /* largest frame received, in bytes */
	size_t lwip_active;
	size_t lwip_listen;
	size_t lwip_bound;
	size_t lwip_time_wait;
};
void conduit_lwip_stats(const conduit_lwip *st, struct conduit_lwip_stats *out);

#ifdef __cplusplus
}
#endif
#endif
