/*
 * lookup.c - the last step of resolution: the addresses of an endpoint's
 * host (or of its connect-to destination).  IP literals are converted
 * without blocking; names go to the system resolver or to the context's
 * lookup function, and every address found is kept once, in its order,
 * for the connect race.
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

/* Messages show an endpoint's URI without the values of secret options
 * (a TLS key file): the canonical URI keeps them, messages never do.
 * When the URI the caller was given differs from the endpoint's (the
 * resolver's "tls://" or "https://", a rule's rewrite), both are named:
 * "GIVEN (ENDPOINT)".  Made only for a message, on the way to a failure. */
#define LK_SHOWN (2 * CD_SHOWN_URI + 4)

static const char *shown(const conduit_endpoint *ep, const char *given,
                         char buf[LK_SHOWN])
{
	cd_uri_redact(ep->uri, buf, CD_SHOWN_URI);
	if (given == NULL || strcmp(ep->uri, given) == 0)
		return buf;
	char e[CD_SHOWN_URI];
	memcpy(e, buf, sizeof(e));
	cd_uri_redact(given, buf, CD_SHOWN_URI);
	size_t n = strlen(buf);
	snprintf(buf + n, LK_SHOWN - n, " (%s)", e);
	return buf;
}

static int literal(conduit_ctx *ctx, conduit_endpoint *ep, const char *given,
                   const char *host, enum conduit_host_kind kind,
                   const char *zone)
{
	char sh[LK_SHOWN];
	struct conduit_addr a;
	memset(&a, 0, sizeof(a));
	if (kind == CONDUIT_HOST_IPV4) {
		a.family = CONDUIT_AF_INET;
		if (!cd_ipv4_parse(host, a.bytes))
			return conduit_ctx_fail(ctx, CONDUIT_ERR_HOST,
			                        "resolve %s: bad IPv4 address",
			                        shown(ep, given, sh));
	} else {
		a.family = CONDUIT_AF_INET6;
		if (inet_pton(AF_INET6, host, a.bytes) != 1)
			return conduit_ctx_fail(ctx, CONDUIT_ERR_HOST,
			                        "resolve %s: bad IPv6 address",
			                        shown(ep, given, sh));
		if (zone[0] != '\0') {
			char *end = NULL;
			unsigned long idx = strtoul(zone, &end, 10);
			if (end == NULL || *end != '\0' || end == zone)
				idx = if_nametoindex(zone);
			if (idx == 0 || idx > UINT32_MAX)
				return conduit_ctx_fail(
				    ctx, CONDUIT_ERR_HOST,
				    "resolve %s: no network interface '%s'",
				    shown(ep, given, sh), zone);
			a.scope = (uint32_t)idx;
		}
	}
	return cd_endpoint_set_addresses(ep, &a, 1);
}

/* Two addresses are the same when family, address and (for IPv6) scope
 * are: bytes an IPv4 address does not use may hold anything a lookup
 * function left there. */
static bool same_addr(const struct conduit_addr *a,
                      const struct conduit_addr *b)
{
	if (a->family != b->family)
		return false;
	if (a->family == CONDUIT_AF_INET)
		return memcmp(a->bytes, b->bytes, 4) == 0;
	return memcmp(a->bytes, b->bytes, 16) == 0 && a->scope == b->scope;
}

/*
 * The one place found addresses go onto an endpoint, whoever found them:
 * each kept once, in the order found (the order is the connect race's),
 * with the bytes a family does not use cleared.  Sorts in place; the
 * caller's array holds IPv4 and IPv6 addresses only.
 */
static int set_found(conduit_ctx *ctx, conduit_endpoint *ep, const char *given,
                     const char *host, struct conduit_addr *addrs, size_t n)
{
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		struct conduit_addr a = addrs[i];
		if (a.family == CONDUIT_AF_INET) {
			memset(a.bytes + 4, 0, sizeof(a.bytes) - 4);
			a.scope = 0;
		}
		bool dup = false;
		for (size_t j = 0; j < k && !dup; j++)
			dup = same_addr(&addrs[j], &a);
		if (!dup)
			addrs[k++] = a;
	}
	char sh[LK_SHOWN];
	if (k == 0)
		return conduit_ctx_fail(ctx, CONDUIT_ERR_RESOLVE,
		                        "resolve %s: %s has no IP address",
		                        shown(ep, given, sh), host);
	return cd_endpoint_set_addresses(ep, addrs, k);
}

#define CUSTOM_MAX 32

/*
 * The context's own lookup function.  Its contract allows CONDUIT_OK with
 * at least one address, CONDUIT_ERR_RESOLVE and CONDUIT_ERR_NOMEM; any
 * other answer is a resolution failure that says what came back, so that
 * a "want" or a stray value is never mistaken by the caller for a flow
 * state or a status it knows.
 */
static int lookup_custom(conduit_ctx *ctx, conduit_endpoint *ep,
                         const char *given, const char *host)
{
	struct conduit_addr addrs[CUSTOM_MAX];
	size_t n = 0;
	char sh[LK_SHOWN];
	memset(addrs, 0, sizeof(addrs));
	int rc = ctx->lookup(ctx->lookup_arg, host, addrs, CUSTOM_MAX, &n);
	if (rc == CONDUIT_ERR_RESOLVE)
		return conduit_ctx_fail(ctx, rc,
		                        "resolve %s: %s: no address found",
		                        shown(ep, given, sh), host);
	if (rc == CONDUIT_ERR_NOMEM)
		return conduit_ctx_fail(ctx, rc,
		                        "resolve %s: %s: out of memory",
		                        shown(ep, given, sh), host);
	if (rc != CONDUIT_OK && rc > CONDUIT_EOF && rc < CONDUIT_STATUS_COUNT)
		return conduit_ctx_fail(ctx, CONDUIT_ERR_RESOLVE,
		                        "resolve %s: %s: the lookup function "
		                        "failed: %s (%s)",
		                        shown(ep, given, sh), host,
		                        conduit_strerror(rc),
		                        conduit_status_name(rc));
	if (rc != CONDUIT_OK && rc >= 0 && rc < CONDUIT_STATUS_COUNT)
		return conduit_ctx_fail(
		    ctx, CONDUIT_ERR_RESOLVE,
		    "resolve %s: %s: the lookup function "
		    "returned %s, which is not a lookup result",
		    shown(ep, given, sh), host, conduit_status_name(rc));
	if (rc != CONDUIT_OK)
		return conduit_ctx_fail(ctx, CONDUIT_ERR_RESOLVE,
		                        "resolve %s: %s: the lookup function "
		                        "returned %d, which is not a status",
		                        shown(ep, given, sh), host, rc);
	if (n == 0)
		return conduit_ctx_fail(ctx, CONDUIT_ERR_RESOLVE,
		                        "resolve %s: %s: the lookup function "
		                        "returned CONDUIT_OK with no address",
		                        shown(ep, given, sh), host);
	if (n > CUSTOM_MAX)
		return conduit_ctx_fail(
		    ctx, CONDUIT_ERR_RESOLVE,
		    "resolve %s: %s: the lookup function "
		    "claims %zu addresses but had room for %d",
		    shown(ep, given, sh), host, n, CUSTOM_MAX);
	for (size_t i = 0; i < n; i++)
		if (addrs[i].family != CONDUIT_AF_INET &&
		    addrs[i].family != CONDUIT_AF_INET6)
			return conduit_ctx_fail(
			    ctx, CONDUIT_ERR_RESOLVE,
			    "resolve %s: %s: the lookup function's address "
			    "%zu has family %d (not CONDUIT_AF_INET or "
			    "CONDUIT_AF_INET6)",
			    shown(ep, given, sh), host, i + 1, addrs[i].family);
	return set_found(ctx, ep, given, host, addrs, n);
}

static int lookup_name(conduit_ctx *ctx, conduit_endpoint *ep,
                       const char *given, const char *host)
{
	if (ctx->lookup != NULL)
		return lookup_custom(ctx, ep, given, host);
	char sh[LK_SHOWN];
	struct addrinfo hints, *res = NULL;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_ADDRCONFIG;
	int gai = getaddrinfo(host, NULL, &hints, &res);
	if (gai == EAI_MEMORY)
		return conduit_ctx_fail(ctx, CONDUIT_ERR_NOMEM,
		                        "resolve %s: out of memory",
		                        shown(ep, given, sh));
	if (gai != 0)
		return conduit_ctx_fail(
		    ctx, CONDUIT_ERR_RESOLVE, "resolve %s: %s: %s",
		    shown(ep, given, sh), host, gai_strerror(gai));
	size_t n = 0;
	for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next)
		n++;
	struct conduit_addr *addrs = calloc(n ? n : 1, sizeof(*addrs));
	if (addrs == NULL) {
		freeaddrinfo(res);
		return conduit_ctx_fail(ctx, CONDUIT_ERR_NOMEM,
		                        "resolve %s: out of memory",
		                        shown(ep, given, sh));
	}
	size_t k = 0;
	for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
		struct conduit_addr *a = &addrs[k];
		if (ai->ai_family == AF_INET) {
			const struct sockaddr_in *s = (const void *)ai->ai_addr;
			a->family = CONDUIT_AF_INET;
			memcpy(a->bytes, &s->sin_addr, 4);
		} else if (ai->ai_family == AF_INET6) {
			const struct sockaddr_in6 *s =
			    (const void *)ai->ai_addr;
			a->family = CONDUIT_AF_INET6;
			memcpy(a->bytes, &s->sin6_addr, 16);
			a->scope = s->sin6_scope_id;
		} else {
			continue;
		}
		k++;
	}
	freeaddrinfo(res);
	int rc = set_found(ctx, ep, given, host, addrs, k);
	free(addrs);
	return rc;
}

/*
 * Split a connect-to value: "HOST:PORT" with HOST a DNS name or IPv4
 * address, or "[IPV6]:PORT", PORT 1-65535.  The URI grammar has checked
 * values it parsed; this is checked again because the endpoint is the
 * lookup's only input, and a value that is not of that shape must be an
 * error rather than a destination guessed from half of it.
 */
static bool split_connect_to(const char *ct, char host[256],
                             enum conduit_host_kind *kind, int *port)
{
	const char *colon = strrchr(ct, ':');
	if (colon == NULL || colon == ct)
		return false;
	size_t hn = (size_t)(colon - ct);
	const char *p = colon + 1;
	long v = 0;
	size_t digits = strspn(p, "0123456789");
	if (digits == 0 || digits > 5 || p[digits] != '\0')
		return false;
	for (size_t i = 0; i < digits; i++)
		v = v * 10 + (p[i] - '0');
	if (v < 1 || v > 65535)
		return false;
	unsigned char b[16];
	if (ct[0] == '[') {
		if (hn < 3 || ct[hn - 1] != ']' || hn - 2 >= 256)
			return false;
		memcpy(host, ct + 1, hn - 2);
		host[hn - 2] = '\0';
		if (inet_pton(AF_INET6, host, b) != 1)
			return false;
		*kind = CONDUIT_HOST_IPV6;
	} else {
		if (hn >= 256 || memchr(ct, '[', hn) != NULL ||
		    memchr(ct, ']', hn) != NULL || memchr(ct, ':', hn) != NULL)
			return false;
		memcpy(host, ct, hn);
		host[hn] = '\0';
		if (cd_ipv4_parse(host, b))
			*kind = CONDUIT_HOST_IPV4;
		else if (cd_host_numeric(host, hn))
			return false; /* the system resolver would guess */
		else
			*kind = CONDUIT_HOST_NAME;
	}
	*port = (int)v;
	return true;
}

/* Look the connect-to destination's host up in place of the endpoint's. */
static int lookup_connect_to(conduit_ctx *ctx, conduit_endpoint *ep,
                             const char *given, const char *ct)
{
	char host[256];
	enum conduit_host_kind kind = CONDUIT_HOST_NAME;
	int port = 0;
	if (!split_connect_to(ct, host, &kind, &port)) {
		char sh[LK_SHOWN];
		return conduit_ctx_fail(
		    ctx, CONDUIT_ERR_OPTION,
		    "resolve %s: connect-to=%.64s%s is not "
		    "HOST:PORT (a DNS name, IPv4 or [IPv6], "
		    "port 1-65535)",
		    shown(ep, given, sh), ct, strlen(ct) > 64 ? "..." : "");
	}
	int rc = kind == CONDUIT_HOST_NAME
	             ? lookup_name(ctx, ep, given, host)
	             : literal(ctx, ep, given, host, kind, "");
	if (rc == CONDUIT_OK)
		ep->dest_port = port;
	return rc;
}

int cd_listen_refuses_connect_to(conduit_ctx *ctx, const conduit_endpoint *ep)
{
	if (conduit_endpoint_option(ep, "connect-to") == NULL)
		return CONDUIT_OK;
	return conduit_ctx_fail(ctx, CONDUIT_ERR_OPTION,
	                        "listen %s: connect-to is for connecting (a "
	                        "listener has no destination to override); "
	                        "remove it to listen on the host",
	                        cd_endpoint_shown(ep));
}

int cd_lookup_for(conduit_ctx *ctx, conduit_endpoint *ep, const char *given)
{
	int rc;
	const char *ct = conduit_endpoint_option(ep, "connect-to");
	if (ct != NULL)
		rc = lookup_connect_to(ctx, ep, given, ct);
	else if (ep->host_kind == CONDUIT_HOST_IPV4 ||
	         ep->host_kind == CONDUIT_HOST_IPV6)
		rc = literal(ctx, ep, given, ep->host, ep->host_kind, ep->zone);
	else if (ep->host_kind == CONDUIT_HOST_NAME)
		rc = lookup_name(ctx, ep, given, ep->host);
	else
		return CONDUIT_OK;
	if (rc == CONDUIT_ERR_NOMEM && ctx->error == NULL) {
		char sh[LK_SHOWN];
		conduit_ctx_fail(ctx, rc, "resolve %s: out of memory",
		                 shown(ep, given, sh));
	}
	return rc;
}

int cd_lookup(conduit_ctx *ctx, conduit_endpoint *ep)
{
	return cd_lookup_for(ctx, ep, NULL);
}
