/*
 * lookup.c - the last step of resolution: the addresses of an endpoint's
 * host (or of its connect-to destination).  IP literals are converted
 * without blocking; names go to the system resolver, and every address it
 * returns is kept, in its order, for the connect race.
 */
#include "core.h"

#include <arpa/inet.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static int literal(conduit_ctx *ctx, conduit_endpoint *ep, const char *host,
                   enum conduit_host_kind kind, const char *zone)
{
	struct conduit_addr a;
	memset(&a, 0, sizeof(a));
	if (kind == CONDUIT_HOST_IPV4) {
		a.family = CONDUIT_AF_INET;
		if (inet_pton(AF_INET, host, a.bytes) != 1)
			return conduit_ctx_fail(ctx, CONDUIT_ERR_HOST,
			                        "resolve %s: bad IPv4 address",
			                        ep->uri);
	} else {
		a.family = CONDUIT_AF_INET6;
		if (inet_pton(AF_INET6, host, a.bytes) != 1)
			return conduit_ctx_fail(ctx, CONDUIT_ERR_HOST,
			                        "resolve %s: bad IPv6 address",
			                        ep->uri);
		if (zone[0] != '\0') {
			char *end = NULL;
			unsigned long idx = strtoul(zone, &end, 10);
			if (end == NULL || *end != '\0' || end == zone)
				idx = if_nametoindex(zone);
			if (idx == 0 || idx > UINT32_MAX)
				return conduit_ctx_fail(
					ctx, CONDUIT_ERR_HOST,
					"resolve %s: no network interface '%s'",
					ep->uri, zone);
			a.scope = (uint32_t)idx;
		}
	}
	return cd_endpoint_set_addresses(ep, &a, 1);
}

/* The context's own lookup function. */
static int lookup_custom(conduit_ctx *ctx, conduit_endpoint *ep,
                         const char *host)
{
	struct conduit_addr addrs[32];
	size_t n = 0;
	int rc = ctx->lookup(ctx->lookup_arg, host, addrs, 32, &n);
	if (rc == CONDUIT_OK && n == 0)
		rc = CONDUIT_ERR_RESOLVE;
	if (rc != CONDUIT_OK)
		return conduit_ctx_fail(ctx, rc, "resolve %s: %s: %s", ep->uri,
		                        host,
		                        rc == CONDUIT_ERR_RESOLVE ? "no address found"
		                                                  : conduit_strerror(rc));
	return cd_endpoint_set_addresses(ep, addrs, n > 32 ? 32 : n);
}

static int lookup_name(conduit_ctx *ctx, conduit_endpoint *ep, const char *host)
{
	if (ctx->lookup != NULL)
		return lookup_custom(ctx, ep, host);
	struct addrinfo hints, *res = NULL;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_ADDRCONFIG;
	int gai = getaddrinfo(host, NULL, &hints, &res);
	if (gai == EAI_MEMORY)
		return conduit_ctx_fail(ctx, CONDUIT_ERR_NOMEM,
		                        "resolve %s: out of memory", ep->uri);
	if (gai != 0)
		return conduit_ctx_fail(ctx, CONDUIT_ERR_RESOLVE,
		                        "resolve %s: %s: %s", ep->uri, host,
		                        gai_strerror(gai));
	size_t n = 0;
	for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next)
		n++;
	struct conduit_addr *addrs = calloc(n ? n : 1, sizeof(*addrs));
	if (addrs == NULL) {
		freeaddrinfo(res);
		return conduit_ctx_fail(ctx, CONDUIT_ERR_NOMEM,
		                        "resolve %s: out of memory", ep->uri);
	}
	size_t k = 0;
	for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
		struct conduit_addr a;
		memset(&a, 0, sizeof(a));
		if (ai->ai_family == AF_INET) {
			const struct sockaddr_in *s = (const void *)ai->ai_addr;
			a.family = CONDUIT_AF_INET;
			memcpy(a.bytes, &s->sin_addr, 4);
		} else if (ai->ai_family == AF_INET6) {
			const struct sockaddr_in6 *s = (const void *)ai->ai_addr;
			a.family = CONDUIT_AF_INET6;
			memcpy(a.bytes, &s->sin6_addr, 16);
			a.scope = s->sin6_scope_id;
		} else {
			continue;
		}
		bool dup = false;
		for (size_t j = 0; j < k; j++)
			if (memcmp(&addrs[j], &a, sizeof(a)) == 0)
				dup = true;
		if (!dup)
			addrs[k++] = a;
	}
	freeaddrinfo(res);
	int rc = k > 0 ? cd_endpoint_set_addresses(ep, addrs, k)
	               : conduit_ctx_fail(ctx, CONDUIT_ERR_RESOLVE,
	                                  "resolve %s: %s has no IP address",
	                                  ep->uri, host);
	free(addrs);
	return rc;
}

/* Split a connect-to value ("host:port", "[v6]:port", already checked by
 * the URI grammar) and look its host up. */
static int lookup_connect_to(conduit_ctx *ctx, conduit_endpoint *ep,
                             const char *ct)
{
	const char *colon = strrchr(ct, ':');
	char host[256];
	size_t hn = (size_t)(colon - ct);
	if (colon == NULL || hn == 0 || hn >= sizeof(host))
		return conduit_ctx_fail(ctx, CONDUIT_ERR_OPTION,
		                        "resolve %s: bad connect-to", ep->uri);
	enum conduit_host_kind kind = CONDUIT_HOST_NAME;
	if (ct[0] == '[') {
		memcpy(host, ct + 1, hn - 2);
		host[hn - 2] = '\0';
		kind = CONDUIT_HOST_IPV6;
	} else {
		unsigned char b[4];
		memcpy(host, ct, hn);
		host[hn] = '\0';
		if (inet_pton(AF_INET, host, b) == 1)
			kind = CONDUIT_HOST_IPV4;
	}
	ep->dest_port = atoi(colon + 1);
	if (kind == CONDUIT_HOST_NAME)
		return lookup_name(ctx, ep, host);
	return literal(ctx, ep, host, kind, "");
}

int cd_lookup(conduit_ctx *ctx, conduit_endpoint *ep)
{
	int rc;
	const char *ct = conduit_endpoint_option(ep, "connect-to");
	if (ct != NULL)
		rc = lookup_connect_to(ctx, ep, ct);
	else if (ep->host_kind == CONDUIT_HOST_IPV4 ||
	         ep->host_kind == CONDUIT_HOST_IPV6)
		rc = literal(ctx, ep, ep->host, ep->host_kind, ep->zone);
	else if (ep->host_kind == CONDUIT_HOST_NAME)
		rc = lookup_name(ctx, ep, ep->host);
	else
		return CONDUIT_OK;
	if (rc == CONDUIT_ERR_NOMEM && ctx->error == NULL)
		conduit_ctx_fail(ctx, rc, "resolve %s: out of memory", ep->uri);
	return rc;
}
