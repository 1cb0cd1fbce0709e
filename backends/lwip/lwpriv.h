/*
 * lwpriv.h - private to the lwIP backend: the pieces that must not see
 * lwIP's headers (which define names Linux's network headers use too).
 */
#ifndef CONDUIT_LWPRIV_H
#define CONDUIT_LWPRIV_H

#include <conduit/conduit.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Open (or make) the TAP device name, without packet information and
 * non-blocking.  Returns the descriptor, or -1 with errno set.
 */
int cd_lwip_tap_open(const char *name);

/* The TCP options of an lwIP flow's connection, for tests: what the
 * shared policy (tcppolicy.h) set on the pcb. */
struct cd_lwip_tcp_info {
	bool nodelay;
	bool keepalive;
	uint32_t keep_idle_ms;
	uint32_t keep_intvl_ms;
	uint32_t keep_cnt;
};

/* Fill *out for f, a connected flow of the lwIP backend.  CONDUIT_OK, or
 * CONDUIT_ERR_INVALID when f is not one or has no connection. */
int cd_lwip_tcp_info(const conduit_flow *f, struct cd_lwip_tcp_info *out);

#endif
