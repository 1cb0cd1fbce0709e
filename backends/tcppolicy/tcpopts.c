/*
 * tcpopts.c - the TCP options of an endpoint (nodelay=, keepalive=,
 * source=), read once per connect, for the host-socket and lwIP stacks
 * alike (see tcppolicy.h).
 */
#include "tcppolicy.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

int cd_tcp_opts_parse(struct cd_tcp_opts *o, conduit_ctx *ctx,
                      const conduit_endpoint *ep)
{
	memset(o, 0, sizeof(*o));
	o->nodelay = true;
	if (ep->nopts == 0)
		return CONDUIT_OK; /* the usual case: the defaults */
	const char *v = conduit_endpoint_option(ep, "nodelay");
	o->nodelay = v == NULL || strcmp(v, "0") != 0;
	v = conduit_endpoint_option(ep, "keepalive");
	if (v != NULL) {
		long k = strtol(v, NULL, 10);
		if (k > 0) {
			o->keep_idle_s = (uint32_t)k;
			o->keep_intvl_s = k / 3 > 0 ? (uint32_t)(k / 3) : 1;
			o->keep_cnt = CD_TCP_KEEPCNT;
		}
	}
	v = conduit_endpoint_option(ep, "source");
	if (v != NULL) {
		struct conduit_addr *a = &o->source;
		if (inet_pton(AF_INET, v, a->bytes) == 1)
			a->family = CONDUIT_AF_INET;
		else if (inet_pton(AF_INET6, v, a->bytes) == 1)
			a->family = CONDUIT_AF_INET6;
		else
			return conduit_ctx_fail(
			    ctx, CONDUIT_ERR_OPTION,
			    "connect %s: source=%s is not an IP address",
			    cd_endpoint_shown(ep), v);
		o->have_source = true;
	}
	return CONDUIT_OK;
}

int cd_tcp_opts_no_fit(conduit_ctx *ctx, const conduit_endpoint *ep,
                       const struct cd_tcp_opts *o)
{
	int v = o->source.family == CONDUIT_AF_INET6 ? 6 : 4;
	return conduit_ctx_fail(ctx, CONDUIT_ERR_OPTION,
	                        "connect %s: source=%s is IPv%d, but the "
	                        "host has no IPv%d address",
	                        cd_endpoint_shown(ep),
	                        conduit_endpoint_option(ep, "source"), v, v);
}
