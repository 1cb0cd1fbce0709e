/*
 * tcp.c - TCP over the host's sockets: IPv4 and IPv6, every address of a
 * name raced and TCP_NODELAY, keepalive and source address set as the
 * shared TCP policy says (tcppolicy.h, the same on lwIP), and listeners that
 * report the port the system chose (and refuse connect-to, which only a
 * connection has a use for).  Messages show endpoint URIs redacted.  A context
 * may replace this backend (with lwIP) by registering another one for "tcp".
 */
#include "sockflow.h"
#include "tcppolicy.h"

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
		const struct sockaddr_in *in =
		    (const struct sockaddr_in *)&a->ss;
		inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
		snprintf(buf, len, "%s:%d", ip, port_of(a));
	} else {
		const struct sockaddr_in6 *in6 =
		    (const struct sockaddr_in6 *)&a->ss;
		inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
		if (in6->sin6_scope_id != 0)
			snprintf(buf, len, "[%s%%%u]:%d", ip,
			         (unsigned)in6->sin6_scope_id, port_of(a));
		else
			snprintf(buf, len, "[%s]:%d", ip, port_of(a));
	}
}

/* Decimal digits of v at p; returns the end. */
static char *put_dec(char *p, unsigned v)
{
	char tmp[10];
	int n = 0;
	do
		tmp[n++] = (char)('0' + v % 10);
	while ((v /= 10) != 0);
	while (n > 0)
		*p++ = tmp[--n];
	return p;
}

static void peer_uri(const struct cd_sockaddr *peer, const char *listen_uri,
                     char *buf, size_t len)
{
	(void)listen_uri;
	/* Every accepted flow gets a URI, so IPv4, the common case, is
	 * formatted by hand: snprintf and inet_ntop cost several times
	 * more than the accept itself in user space. */
	if (peer->ss.ss_family == AF_INET &&
	    len >= sizeof("tcp://255.255.255.255:65535")) {
		const struct sockaddr_in *in =
		    (const struct sockaddr_in *)&peer->ss;
		const uint8_t *b = (const uint8_t *)&in->sin_addr;
		char *p = buf;
		memcpy(p, "tcp://", 6);
		p += 6;
		for (int i = 0; i < 4; i++) {
			p = put_dec(p, b[i]);
			*p++ = i < 3 ? '.' : ':';
		}
		p = put_dec(p, ntohs(in->sin_port));
		*p = '\0';
		return;
	}
	char d[INET6_ADDRSTRLEN + 16];
	describe(peer, d, sizeof(d));
	/* A zone in a URI is written %25zone (RFC 6874). */
	char *pct = strchr(d, '%');
	if (pct != NULL)
		snprintf(buf, len, "tcp://%.*s%%25%s", (int)(pct - d), d,
		         pct + 1);
	else
		snprintf(buf, len, "tcp://%s", d);
}

/* Messages name an endpoint without the values of its secret options (a
 * TLS key file on a tls+tcp endpoint): the canonical URI keeps them. */

static const char *shown(const conduit_endpoint *ep, char buf[CD_SHOWN_URI])
{
	cd_uri_redact(ep->uri, buf, CD_SHOWN_URI);
	return buf;
}

static int set_int(int fd, int level, int opt, int v)
{
	return setsockopt(fd, level, opt, &v, sizeof(v)) < 0 ? errno : 0;
}

/* Set the shared policy's options (struct cd_tcp_opts) on a new socket
 * bound for to. */
static int prepare(int fd, const struct cd_sockaddr *to, const void *arg)
{
	const struct cd_tcp_opts *o = arg;
	int e = 0;
	if (o->nodelay)
		e = set_int(fd, IPPROTO_TCP, TCP_NODELAY, 1);
	if (e == 0 && o->keep_idle_s > 0) {
		e = set_int(fd, SOL_SOCKET, SO_KEEPALIVE, 1);
#ifdef TCP_KEEPIDLE
		if (e == 0)
			e = set_int(fd, IPPROTO_TCP, TCP_KEEPIDLE,
			            (int)o->keep_idle_s);
#elif defined(TCP_KEEPALIVE)
		if (e == 0)
			e = set_int(fd, IPPROTO_TCP, TCP_KEEPALIVE,
			            (int)o->keep_idle_s);
#endif
#ifdef TCP_KEEPINTVL
		if (e == 0)
			e = set_int(fd, IPPROTO_TCP, TCP_KEEPINTVL,
			            (int)o->keep_intvl_s);
#endif
#ifdef TCP_KEEPCNT
		if (e == 0)
			e = set_int(fd, IPPROTO_TCP, TCP_KEEPCNT,
			            (int)o->keep_cnt);
#endif
	}
	if (e == 0 && o->have_source) {
		struct cd_sockaddr src;
		to_sockaddr(&o->source, 0, &src);
		if (src.ss.ss_family != to->ss.ss_family)
			return EAFNOSUPPORT;
		if (bind(fd, (const struct sockaddr *)&src.ss, src.len) < 0)
			e = errno;
	}
	return e;
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

static int tcp_connect(void *state, conduit_ctx *ctx,
                       const conduit_endpoint *ep, conduit_flow **out)
{
	(void)state;
	char sh[CD_SHOWN_URI];
	if (ep->host_kind == CONDUIT_HOST_NONE)
		return conduit_ctx_fail(ctx, CONDUIT_ERR_HOST,
		                        "connect %s: no host to connect to",
		                        shown(ep, sh));
	/* Zeroed: GCC cannot see that no address means none is read. */
	struct cd_sockaddr stack[4] = {0};
	struct cd_sockaddr *sa = stack;
	if (ep->naddrs > 4) {
		sa = calloc(ep->naddrs, sizeof(*sa));
		if (sa == NULL)
			return conduit_ctx_fail(ctx, CONDUIT_ERR_NOMEM,
			                        "connect %s: out of memory",
			                        shown(ep, sh));
	}
	struct cd_tcp_opts o;
	int rc = cd_tcp_opts_parse(&o, ctx, ep);
	if (rc != CONDUIT_OK) {
		if (sa != stack)
			free(sa);
		return rc;
	}
	/* A connect-to rule moved the destination; the logical port stays
	 * in the URI.  With a source address only addresses of its family
	 * can work. */
	int port = ep->dest_port > 0 ? ep->dest_port : ep->port;
	size_t n = 0;
	for (size_t i = 0; i < ep->naddrs; i++)
		if (cd_tcp_opts_fit(&o, ep->addrs[i].family))
			to_sockaddr(&ep->addrs[i], port, &sa[n++]);
	if (n == 0 && ep->naddrs > 0) {
		if (sa != stack)
			free(sa);
		return cd_tcp_opts_no_fit(ctx, ep, &o);
	}
	rc =
	    cd_sockflow_connect(out, ctx, ep, &tcp_hooks, sa, n, &o, sizeof(o));
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
	char sh[CD_SHOWN_URI];
	if (cd_listen_refuses_connect_to(ctx, ep) != CONDUIT_OK)
		return CONDUIT_ERR_OPTION;
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
			                        "listen %s: out of memory",
			                        shown(ep, sh));
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
			if (getsockname(fd, (struct sockaddr *)&bound.ss,
			                &bound.len) == 0)
				port = port_of(&bound);
		}
	}
	conduit_endpoint_free(looked);
	if (err != 0) {
		for (size_t i = 0; i < nfds; i++)
			close(fds[i]);
		return conduit_ctx_fail(ctx, conduit_status_from_errno(err),
		                        "listen %s: %s: %s", shown(ep, sh),
		                        where, cd_errtext(err));
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
		                        "listen %s: out of memory",
		                        shown(ep, sh));
	}
	int rc =
	    cd_socklistener_new(out, ctx, uri, &tcp_hooks, fds, nfds, NULL);
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
