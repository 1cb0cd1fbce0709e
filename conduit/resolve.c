/*
 * resolve.c - from a URI to an endpoint with addresses.  This is where
 * the resolver grows (service table, rules, explain); for now it parses,
 * converts IP literals without blocking, and looks names up through the
 * system resolver, keeping every address it returns.
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

static int literal(conduit_ctx *ctx, conduit_endpoint *ep)
{
	struct conduit_addr a;
	memset(&a, 0, sizeof(a));
	if (ep->host_kind == CONDUIT_HOST_IPV4) {
		a.family = CONDUIT_AF_INET;
		if (inet_pton(AF_INET, ep->host, a.bytes) != 1)
			return conduit_ctx_fail(ctx, CONDUIT_ERR_HOST,
			                        "resolve %s: bad IPv4 address",
			                        ep->uri);
	} else {
		a.family = CONDUIT_AF_INET6;
		if (inet_pton(AF_INET6, ep->host, a.bytes) != 1)
			return conduit_ctx_fail(ctx, CONDUIT_ERR_HOST,
			                        "resolve %s: bad IPv6 address",
			                        ep->uri);
		if (ep->zone[0] != '\0') {
			char *end = NULL;
			unsigned long idx = strtoul(ep->zone, &end, 10);
			if (end == NULL || *end != '\0' || end == ep->zone)
				idx = if_nametoindex(ep->zone);
			if (idx == 0 || idx > UINT32_MAX)
				return conduit_ctx_fail(
					ctx, CONDUIT_ERR_HOST,
					"resolve %s: no network interface '%s'",
					ep->uri, ep->zone);
			a.scope = (uint32_t)idx;
		}
	}
	return cd_endpoint_set_addresses(ep, &a, 1);
}

static int lookup_name(conduit_ctx *ctx, conduit_endpoint *ep)
{
	struct addrinfo hints, *res = NULL;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_ADDRCONFIG;
	int gai = getaddrinfo(ep->host, NULL, &hints, &res);
	if (gai == EAI_MEMORY)
		return conduit_ctx_fail(ctx, CONDUIT_ERR_NOMEM,
		                        "resolve %s: out of memory", ep->uri);
	if (gai != 0)
		return conduit_ctx_fail(ctx, CONDUIT_ERR_RESOLVE,
		                        "resolve %s: %s: %s", ep->uri, ep->host,
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
	                                  ep->uri, ep->host);
	free(addrs);
	return rc;
}

int cd_lookup(conduit_ctx *ctx, conduit_endpoint *ep)
{
	int rc;
	switch (ep->host_kind) {
	case CONDUIT_HOST_IPV4:
	case CONDUIT_HOST_IPV6:
		rc = literal(ctx, ep);
		break;
	case CONDUIT_HOST_NAME:
		rc = lookup_name(ctx, ep);
		break;
	default:
		return CONDUIT_OK;
	}
	if (rc == CONDUIT_ERR_NOMEM && ctx->error == NULL)
		conduit_ctx_fail(ctx, rc, "resolve %s: out of memory", ep->uri);
	return rc;
}

int conduit_resolve(conduit_endpoint **out, conduit_ctx *ctx, const char *uri)
{
	if (out != NULL)
		*out = NULL;
	if (out == NULL || ctx == NULL || uri == NULL)
		return CONDUIT_ERR_INVALID;
	/* Event details are built only for an observer: resolving is on
	 * every connect's path. */
	bool observed = conduit_observed(ctx);
	char shown[512] = "";
	if (observed) {
		cd_uri_redact(uri, shown, sizeof(shown));
		conduit_emit(ctx, CONDUIT_PHASE_RESOLVING, CONDUIT_OK, shown, "",
		             NULL);
	}

	char msg[512];
	conduit_endpoint *ep = NULL;
	int rc = conduit_endpoint_parse(&ep, uri, msg, sizeof(msg));
	if (rc != CONDUIT_OK) {
		conduit_ctx_fail(ctx, rc, "resolve %s", msg);
		conduit_emit(ctx, CONDUIT_PHASE_RESOLVED, rc, shown,
		             conduit_ctx_error(ctx), NULL);
		return rc;
	}
	rc = cd_lookup(ctx, ep);
	if (rc != CONDUIT_OK) {
		conduit_emit(ctx, CONDUIT_PHASE_RESOLVED, rc, ep->uri,
		             conduit_ctx_error(ctx), NULL);
		conduit_endpoint_free(ep);
		return rc;
	}
	char detail[64] = "";
	if (observed && ep->naddrs > 0)
		snprintf(detail, sizeof(detail), "%zu address%s", ep->naddrs,
		         ep->naddrs == 1 ? "" : "es");
	conduit_emit(ctx, CONDUIT_PHASE_RESOLVED, CONDUIT_OK, ep->uri, detail,
	             NULL);
	*out = ep;
	return CONDUIT_OK;
}
