/*
 * tcp.c - TCP over the host's sockets: IPv4 and IPv6, every address of a
 * name tried in turn, TCP_NODELAY on by default, keepalive and source
 * address as endpoint options, and listeners that report the port the
 * system chose.  A context may replace this backend (with lwIP) by
 * registering another one for "tcp".
 */
#include "sockflow.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void to_sockaddr(const struct conduit_addr *a, int port,
                        struct cd_sockaddr *sa)
{
	memset(sa, 0, sizeof(*sa));
	if (a->family == CONDUIT_AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&sa->ss;
		in->sin_family = AF_INET;
		in->sin_port = htons((uint16_t)port);
		memcpy(&in->sin_addr, a->bytes, 4);
		sa->len = sizeof(*in);
	} else {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&sa->ss;
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		memcpy(&in6->sin6_addr, a->bytes, 16);
		in6->sin6_scope_id = a->scope;
		sa->len = sizeof(*in6);
	}
}

static int port_of(const struct cd_sockaddr *sa)
{
	if (sa->ss.ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)&sa->ss)->sin_port);
	return ntohs(((const struct sockaddr_in6 *)&sa->ss)->sin6_port);
}

/* "127.0.0.1:80" or "[::1]:80" (with "%scope" when set). */
static void describe(const struct cd_sockaddr *a, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	if (a->ss.ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)&a->ss;
		inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
		snprintf(buf, len, "%s:%d", ip, port_of(a));
	} else {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&a->ss;
		inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
		if (in6->sin6_scope_id != 0)
			snprintf(buf, len, "[%s%%%u]:%d", ip,
			         (unsigned)in6->sin6_scope_id, port_of(a));
		else
			snprintf(buf, len, "[%s]:%d", ip, port_of(a));
	}
}

static void peer_uri(const struct cd_sockaddr *peer, const char *listen_uri,
                     char *buf, size_t len)
{
	(void)listen_uri;
	char d[INET6_ADDRSTRLEN + 16];
	describe(peer, d, sizeof(d));
	/* A zone in a URI is written %25zone (RFC 6874). */
	char *pct = strchr(d, '%');
	if (pct != NULL)
		snprintf(buf, len, "tcp://%.*s%%25%s", (int)(pct - d), d, pct + 1);
	else
		snprintf(buf, len, "tcp://%s", d);
}

static int set_int(int fd, int level, int opt, int v)
{
	return setsockopt(fd, level, opt, &v, sizeof(v)) < 0 ? errno : 0;
}

static int prepare(int fd, const struct cd_sockaddr *to,
                   const conduit_endpoint *ep)
{
	const char *nodelay = conduit_endpoint_option(ep, "nodelay");
	if (nodelay == NULL || strcmp(nodelay, "0") != 0) {
		int e = set_int(fd, IPPROTO_TCP, TCP_NODELAY, 1);
		if (e != 0)
			return e;
	}
	const char *ka = conduit_endpoint_option(ep, "keepalive");
	if (ka != NULL) {
		int secs = atoi(ka);
		int e = set_int(fd, SOL_SOCKET, SO_KEEPALIVE, 1);
#ifdef TCP_KEEPIDLE
		if (e == 0)
			e = set_int(fd, IPPROTO_TCP, TCP_KEEPIDLE, secs);
		if (e == 0)
			e = set_int(fd, IPPROTO_TCP, TCP_KEEPINTVL,
			            secs / 3 > 0 ? secs / 3 : 1);
#elif defined(TCP_KEEPALIVE)
		if (e == 0)
			e = set_int(fd, IPPROTO_TCP, TCP_KEEPALIVE, secs);
#endif
		if (e != 0)
			return e;
	}
	const char *src = conduit_endpoint_option(ep, "source");
	if (src != NULL) {
		struct conduit_addr a;
		memset(&a, 0, sizeof(a));
		if (inet_pton(AF_INET, src, a.bytes) == 1)
			a.family = CONDUIT_AF_INET;
		else if (inet_pton(AF_INET6, src, a.bytes) == 1)
			a.family = CONDUIT_AF_INET6;
		else
			return EINVAL;
		int fam = a.family == CONDUIT_AF_INET ? AF_INET : AF_INET6;
		if (fam != to->ss.ss_family)
			return EAFNOSUPPORT;
		struct cd_sockaddr sa;
		to_sockaddr(&a, 0, &sa);
		if (bind(fd, (struct sockaddr *)&sa.ss, sa.len) < 0)
			return errno;
	}
	return 0;
}

static int accepted(int fd)
{
	return set_int(fd, IPPROTO_TCP, TCP_NODELAY, 1);
}

static const struct cd_sockhooks tcp_hooks = {
	.name = "tcp",
	.prepare = prepare,
	.accepted = accepted,
	.peer_uri = peer_uri,
	.describe = describe,
};

static int tcp_connect(void *state, conduit_ctx *ctx, const conduit_endpoint *ep,
                       conduit_flow **out)
{
	(void)state;
	if (ep->host_kind == CONDUIT_HOST_NONE)
		return conduit_ctx_fail(ctx, CONDUIT_ERR_HOST,
		                        "connect %s: no host to connect to", ep->uri);
	/* Zeroed: GCC cannot see that no address means none is read. */
	struct cd_sockaddr stack[4] = {0};
	struct cd_sockaddr *sa = stack;
	if (ep->naddrs > 4) {
		sa = calloc(ep->naddrs, sizeof(*sa));
		if (sa == NULL)
			return conduit_ctx_fail(ctx, CONDUIT_ERR_NOMEM,
			                        "connect %s: out of memory", ep->uri);
	}
	/* With a source address only addresses of its family can work. */
	const char *src = conduit_endpoint_option(ep, "source");
	int want = 0;
	if (src != NULL)
		want = strchr(src, ':') != NULL ? CONDUIT_AF_INET6 : CONDUIT_AF_INET;
	size_t n = 0;
	for (size_t i = 0; i < ep->naddrs; i++)
		if (want == 0 || ep->addrs[i].family == want)
			to_sockaddr(&ep->addrs[i], ep->port, &sa[n++]);
	if (n == 0 && ep->naddrs > 0) {
		if (sa != stack)
			free(sa);
		return conduit_ctx_fail(ctx, CONDUIT_ERR_OPTION,
		                        "connect %s: source=%s is IPv%d, but the "
		                        "host has no IPv%d address",
		                        ep->uri, src, want, want);
	}
	int rc = cd_sockflow_connect(out, ctx, ep, &tcp_hooks, sa, n);
	if (sa != stack)
		free(sa);
	return rc;
}

/* Bind and listen one socket; returns the fd or -1 with errno set. */
static int bind_one(const struct cd_sockaddr *sa, bool v6only)
{
	int fd = cd_socket(sa->ss.ss_family, SOCK_STREAM);
	if (fd < 0)
		return -1;
	int e = set_int(fd, SOL_SOCKET, SO_REUSEADDR, 1);
	if (e == 0 && sa->ss.ss_family == AF_INET6)
		e = set_int(fd, IPPROTO_IPV6, IPV6_V6ONLY, v6only ? 1 : 0);
	if (e == 0 && bind(fd, (const struct sockaddr *)&sa->ss, sa->len) < 0)
		e = errno;
	if (e == 0 && listen(fd, SOMAXCONN) < 0)
		e = errno;
	if (e != 0) {
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

static int tcp_listen(void *state, conduit_ctx *ctx, const conduit_endpoint *ep,
                      conduit_listener **out)
{
	(void)state;
	struct conduit_addr any6 = {.family = CONDUIT_AF_INET6};
	struct conduit_addr any4 = {.family = CONDUIT_AF_INET};
	const struct conduit_addr *addrs = ep->addrs;
	size_t naddrs = ep->naddrs;
	conduit_endpoint *looked = NULL;
	bool any = ep->host_kind == CONDUIT_HOST_NONE;
	if (any) {
		addrs = &any6;
		naddrs = 1;
	} else if (naddrs == 0) {
		looked = conduit_endpoint_dup(ep);
		if (looked == NULL)
			return conduit_ctx_fail(ctx, CONDUIT_ERR_NOMEM,
			                        "listen %s: out of memory", ep->uri);
		int rc = cd_lookup(ctx, looked);
		if (rc != CONDUIT_OK) {
			conduit_endpoint_free(looked);
			return rc;
		}
		addrs = looked->addrs;
		naddrs = looked->naddrs;
	}
	if (naddrs > CD_MAX_LISTEN_FDS)
		naddrs = CD_MAX_LISTEN_FDS;

	int fds[CD_MAX_LISTEN_FDS];
	size_t nfds = 0;
	int port = ep->port;
	int err = 0;
	char where[INET6_ADDRSTRLEN + 16] = "";
	for (size_t i = 0; i < naddrs; i++) {
		struct cd_sockaddr sa;
		to_sockaddr(&addrs[i], port, &sa);
		/* Listen-any is one dual-stack socket; several addresses
		 * each get their own socket, so ::1 and 127.0.0.1 coexist. */
		int fd = bind_one(&sa, !any);
		if (fd < 0 && any && errno == EAFNOSUPPORT) {
			to_sockaddr(&any4, port, &sa);
			fd = bind_one(&sa, false);
		}
		if (fd < 0) {
			err = errno;
			describe(&sa, where, sizeof(where));
			break;
		}
		fds[nfds++] = fd;
		if (port == 0) {
			struct cd_sockaddr bound;
			bound.len = sizeof(bound.ss);
			if (getsockname(fd, (struct sockaddr *)&bound.ss, &bound.len) == 0)
				port = port_of(&bound);
		}
	}
	conduit_endpoint_free(looked);
	if (err != 0) {
		for (size_t i = 0; i < nfds; i++)
			close(fds[i]);
		return conduit_ctx_fail(ctx, conduit_status_from_errno(err),
		                        "listen %s: %s: %s", ep->uri, where,
		                        cd_errtext(err));
	}

	/* The bound URI is the endpoint with the real port, printed by the
	 * same code as every endpoint so that it parses back. */
	conduit_endpoint *bound = conduit_endpoint_dup(ep);
	char *uri = NULL;
	if (bound != NULL) {
		bound->port = port;
		uri = cd_uri_format(bound);
		conduit_endpoint_free(bound);
	}
	if (uri == NULL) {
		for (size_t i = 0; i < nfds; i++)
			close(fds[i]);
		return conduit_ctx_fail(ctx, CONDUIT_ERR_NOMEM,
		                        "listen %s: out of memory", ep->uri);
	}
	int rc = cd_socklistener_new(out, ctx, uri, &tcp_hooks, fds, nfds, NULL);
	free(uri);
	return rc;
}

static const char *const tcp_transports[] = {"tcp", NULL};

const struct conduit_backend cd_backend_tcp = {
	.name = "tcp",
	.transports = tcp_transports,
	.connect = tcp_connect,
	.listen = tcp_listen,
};
