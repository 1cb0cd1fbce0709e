/*
 * sock_link.c - the host-socket sections' links and listeners, one per
 * variant: raw sockets (non-blocking, poll(2) when they would block, the
 * same flags and options conduit uses, so the comparison is like for
 * like), conduit's public API the way an application uses it (URIs,
 * conduit_connect_wait, conduit_accept_wait, conduit_write_all,
 * conduit_read_wait), raw mbedTLS on a raw socket, and nng.
 */
#include "sock.h"

#ifdef CONDUIT_HAVE_TLS
#include <conduit/tls.h>
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* Raw sockets: non-blocking, poll(2) when they would block, the same   */
/* flags and options conduit uses, so the comparison is like for like.  */

int raw_wait(int fd, short events)
{
	struct pollfd p = {.fd = fd, .events = events};
	for (int tries = 0; tries < 1000; tries++) {
		int r = poll(&p, 1, IO_TIMEOUT_MS);
		/* Ready, hung up or failed: the call that follows says. */
		if (r > 0)
			return 0;
		if (r == 0)
			return bench_fail("timed out after %d ms",
			                  IO_TIMEOUT_MS);
		if (errno != EINTR)
			return bench_fail("poll: %s", strerror(errno));
	}
	return bench_fail("poll: interrupted too often");
}
static int set_nodelay(int fd)
{
	int one = 1;
	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
		return bench_fail("TCP_NODELAY: %s", strerror(errno));
	return 0;
}

static int raw_write_all(int fd, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	size_t done = 0;
	/* Each pass either moves at least one byte or waits (bounded). */
	for (size_t pass = 0; done < len; pass++) {
		if (pass > len + 1000)
			return bench_fail("send: no progress");
		ssize_t n = send(fd, p + done, len - done, MSG_NOSIGNAL);
		if (n >= 0) {
			done += (size_t)n;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return bench_fail("send: %s", strerror(errno));
		if (raw_wait(fd, POLLOUT) < 0)
			return -1;
	}
	return 0;
}

/* 1 with *got bytes, 0 at end of stream, -1 on error. */
static int raw_read(int fd, void *buf, size_t cap, size_t *got)
{
	for (int pass = 0; pass < 1000; pass++) {
		ssize_t n = recv(fd, buf, cap, 0);
		if (n > 0) {
			*got = (size_t)n;
			return 1;
		}
		if (n == 0)
			return 0;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return bench_fail("recv: %s", strerror(errno));
		if (raw_wait(fd, POLLIN) < 0)
			return -1;
	}
	return bench_fail("recv: no progress");
}

/* ------------------------------------------------------------------ */
/* Links: one connection, any variant.  The switch costs every variant  */
/* the same predictable branch.                                         */

static int link_write_all(struct bench_link *b, const void *buf, size_t len)
{
	struct sock_link *k = (struct sock_link *)b;
	if (k->api == API_CONDUIT)
		return link_flow_write(k->flow, buf, len, IO_TIMEOUT_MS);
#ifdef CONDUIT_BENCH_NNG
	if (k->api == API_NNG)
		return nng_link_write(k->ns, buf, len);
#endif
#ifdef CONDUIT_HAVE_TLS
	if (k->rt != NULL)
		return rt_write_all(k->rt, buf, len);
#endif
	return raw_write_all(k->fd, buf, len);
}

/* 1 with *got bytes, 0 at end of stream, -1 on error. */
static int link_read(struct bench_link *b, void *buf, size_t cap, size_t *got)
{
	struct sock_link *k = (struct sock_link *)b;
	if (k->api == API_CONDUIT)
		return link_flow_read(k->flow, buf, cap, got, IO_TIMEOUT_MS);
#ifdef CONDUIT_BENCH_NNG
	if (k->api == API_NNG)
		return nng_link_read(k->ns, buf, cap, got);
#endif
#ifdef CONDUIT_HAVE_TLS
	if (k->rt != NULL)
		return rt_read(k->rt, buf, cap, got);
#endif
	return raw_read(k->fd, buf, cap, got);
}

static void link_close(struct bench_link *b)
{
	struct sock_link *k = (struct sock_link *)b;
	if (k->api == API_CONDUIT) {
		if (k->flow == NULL)
			return;
		/* Sockets have nothing left to send; TLS may have its
		 * close_notify to flush. */
		int rc = conduit_close(k->flow);
		if (rc == CONDUIT_WANT_READ || rc == CONDUIT_WANT_WRITE)
			conduit_close_wait(k->flow, IO_TIMEOUT_MS);
		conduit_flow_free(k->flow);
		k->flow = NULL;
		return;
	}
#ifdef CONDUIT_BENCH_NNG
	if (k->api == API_NNG) {
		if (k->ns_own)
			nng_link_close(k->ns);
		k->ns_own = false;
		return;
	}
#endif
#ifdef CONDUIT_HAVE_TLS
	if (k->rt != NULL) {
		rt_close(k->rt);
		k->rt = NULL;
		k->fd = -1;
	}
#endif
	if (k->fd >= 0) {
		close(k->fd);
		k->fd = -1;
	}
}

static const struct bench_link_ops sock_link_ops = {
    .write_all = link_write_all,
    .read = link_read,
    .close = link_close,
};

void link_init(struct sock_link *k, enum api api)
{
	memset(k, 0, sizeof(*k));
	k->base.ops = &sock_link_ops;
	k->base.messages = api == API_NNG;
	k->api = api;
	k->fd = -1;
}

static int raw_connect(const struct target *t, int *out)
{
	/* A full unix listen queue says EAGAIN; conduit retries then too. */
	for (int attempt = 0; attempt < 1000; attempt++) {
		int fd = socket(t->sa.ss_family,
		                SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0)
			return bench_fail("socket: %s", strerror(errno));
		if (t->tr != T_UNIX && set_nodelay(fd) < 0) {
			close(fd);
			return -1;
		}
		const struct sockaddr *sa = (const struct sockaddr *)&t->sa;
		if (connect(fd, sa, t->salen) == 0) {
			*out = fd;
			return 0;
		}
		int e = errno;
		if (e == EINPROGRESS || e == EINTR) {
			if (raw_wait(fd, POLLOUT) < 0) {
				close(fd);
				return -1;
			}
			int soerr = 0;
			socklen_t sl = sizeof(soerr);
			int g =
			    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
			if (g < 0)
				soerr = errno;
			if (soerr == 0) {
				*out = fd;
				return 0;
			}
			e = soerr;
		}
		close(fd);
		if (e != EAGAIN)
			return bench_fail("connect: %s", strerror(e));
		struct timespec nap = {0, 1000 * 1000};
		nanosleep(&nap, NULL);
	}
	return bench_fail("connect: listen queue stayed full");
}

int link_connect(struct sock_link *k, enum api api, const struct target *t)
{
	link_init(k, api);
	if (api == API_CONDUIT) {
		/* What an application writes: a URI, parsed every time. */
#ifdef CONDUIT_BENCH_NNG
		unsigned long pinned = nng_pinned();
#endif
		int rc = conduit_connect_wait(&k->flow, G.ctx, t->uri,
		                              IO_TIMEOUT_MS);
		if (rc != CONDUIT_OK)
			return bench_fail(
			    "conduit_connect_wait %s: %s", t->uri,
			    bench_cerr(conduit_ctx_error(G.ctx), rc));
#ifdef CONDUIT_BENCH_NNG
		/* The suite pinning is nng's alone (nng.c). */
		if (nng_pinned() != pinned) {
			link_close(&k->base);
			return bench_fail("conduit's TLS set-up went through "
			                  "nng's suite pinning");
		}
#endif
#ifdef CONDUIT_HAVE_TLS
		if (t->tr == T_TLS &&
		    check_suite(conduit_tls_cipher(k->flow)) < 0) {
			link_close(&k->base);
			return -1;
		}
#endif
		return 0;
	}
#ifdef CONDUIT_BENCH_NNG
	if (api == API_NNG) {
		if (nng_dial_uri(&k->ns, t->tr, t->uri) < 0)
			return -1;
		k->ns_own = true;
		return 0;
	}
#endif
	if (raw_connect(t, &k->fd) < 0)
		return -1;
#ifdef CONDUIT_HAVE_TLS
	if (t->tr == T_TLS && rt_open(&k->rt, k->fd, false) < 0) {
		k->fd = -1; /* rt_open closed it */
		return -1;
	}
	if (t->tr == T_TLS && check_suite(rt_suite(k->rt)) < 0) {
		link_close(&k->base);
		return -1;
	}
#endif
	return 0;
}

int lsn_open(struct listener *L, enum api api, enum transport tr,
             conduit_ctx *ctx, bool poly)
{
	memset(L, 0, sizeof(*L));
	L->api = api;
	L->tr = tr;
	L->fd = -1;
	L->port = -1;
	L->ctx = ctx;
	if (api == API_CONDUIT) {
		const char *uri = tr == T_UNIX  ? G.unix_uri
		                  : tr == T_TLS ? "tls+tcp://127.0.0.1:0"
		                                : "tcp://127.0.0.1:0";
		int rc = conduit_listen(&L->l, ctx, uri);
		if (rc != CONDUIT_OK)
			return bench_fail(
			    "conduit_listen %s: %s", uri,
			    bench_cerr(conduit_ctx_error(ctx), rc));
		/* The real port is in the listener's URI; a TLS client
		 * checks the certificate's name. */
		snprintf(L->uri, sizeof(L->uri), "%s%s",
		         conduit_listener_uri(L->l),
		         tr == T_TLS ? "?servername=" TLS_NAME : "");
		return 0;
	}
	if (api == API_NNG) {
#ifdef CONDUIT_BENCH_NNG
		return nng_lsn_open(L, tr, poly);
#else
		return bench_fail("nng is not built in");
#endif
	}
	(void)poly;
	int fd = socket(tr == T_UNIX ? AF_UNIX : AF_INET,
	                SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return bench_fail("socket: %s", strerror(errno));
	if (tr == T_UNIX) {
		struct sockaddr_un un;
		memset(&un, 0, sizeof(un));
		un.sun_family = AF_UNIX;
		memcpy(un.sun_path, G.sock, strlen(G.sock) + 1);
		unlink(G.sock); /* a leftover of an earlier run */
		if (bind(fd, (struct sockaddr *)&un, sizeof(un)) < 0 ||
		    listen(fd, SOMAXCONN) < 0) {
			bench_fail("listen %s: %s", G.sock, strerror(errno));
			close(fd);
			return -1;
		}
		snprintf(L->uri, sizeof(L->uri), "%s", G.unix_uri);
	} else {
		struct sockaddr_in in;
		socklen_t sl = sizeof(in);
		int one = 1;
		memset(&in, 0, sizeof(in));
		in.sin_family = AF_INET;
		in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one,
		               sizeof(one)) < 0 ||
		    bind(fd, (struct sockaddr *)&in, sizeof(in)) < 0 ||
		    listen(fd, SOMAXCONN) < 0 ||
		    getsockname(fd, (struct sockaddr *)&in, &sl) < 0) {
			bench_fail("listen 127.0.0.1: %s", strerror(errno));
			close(fd);
			return -1;
		}
		L->port = ntohs(in.sin_port);
		snprintf(L->uri, sizeof(L->uri), "tcp://127.0.0.1:%d", L->port);
	}
	L->fd = fd;
	return 0;
}

#ifdef CONDUIT_HAVE_TLS
/* A server finishes the TLS handshake before it counts a connection as
 * accepted, as raw mbedTLS does in rt_open. */
static int flow_handshake_wait(conduit_flow *f, conduit_ctx *ctx)
{
	for (int pass = 0; pass < 10000; pass++) {
		int rc = conduit_handshake(f);
		if (rc == CONDUIT_OK)
			return 0;
		if (rc != CONDUIT_WANT_READ && rc != CONDUIT_WANT_WRITE)
			return bench_fail(
			    "conduit_handshake: %s",
			    bench_cerr(conduit_flow_error(f), rc));
		struct conduit_pollitem it = {.flow = f,
		                              .events = CONDUIT_POLLOUT};
		size_t nr = 0;
		rc = conduit_poll(ctx, &it, 1, IO_TIMEOUT_MS, &nr);
		if (rc != CONDUIT_OK)
			return bench_fail(
			    "conduit_poll: %s",
			    bench_cerr(conduit_ctx_error(ctx), rc));
		if (nr == 0)
			return bench_fail("handshake: timed out after %d ms",
			                  IO_TIMEOUT_MS);
	}
	return bench_fail("handshake: no progress");
}
#endif

int lsn_accept(struct listener *L, struct sock_link *k)
{
	link_init(k, L->api);
	if (L->api == API_CONDUIT) {
		int rc = conduit_accept_wait(&k->flow, L->l, IO_TIMEOUT_MS);
		if (rc != CONDUIT_OK)
			return bench_fail(
			    "conduit_accept_wait: %s",
			    bench_cerr(conduit_listener_error(L->l), rc));
#ifdef CONDUIT_HAVE_TLS
		if (L->tr == T_TLS &&
		    flow_handshake_wait(k->flow, L->ctx) < 0) {
			link_close(&k->base);
			return -1;
		}
#endif
		return 0;
	}
#ifdef CONDUIT_BENCH_NNG
	if (L->api == API_NNG) {
		/* nng accepts by itself; the socket is the connection. */
		k->ns = L->ns;
		return 0;
	}
#endif
	for (int pass = 0; pass < 1000; pass++) {
		/* The peer's address is asked for, as conduit does. */
		struct sockaddr_storage peer;
		socklen_t pl = sizeof(peer);
		int fd = accept4(L->fd, (struct sockaddr *)&peer, &pl,
		                 SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd >= 0) {
			if (L->tr != T_UNIX && set_nodelay(fd) < 0) {
				close(fd);
				return -1;
			}
			k->fd = fd;
#ifdef CONDUIT_HAVE_TLS
			if (L->tr == T_TLS && rt_open(&k->rt, fd, true) < 0) {
				k->fd = -1;
				return -1;
			}
#endif
			return 0;
		}
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return bench_fail("accept: %s", strerror(errno));
		if (raw_wait(L->fd, POLLIN) < 0)
			return -1;
	}
	return bench_fail("accept: no progress");
}

void lsn_close(struct listener *L)
{
	if (L->api == API_CONDUIT) {
		conduit_listener_free(L->l); /* removes its socket file */
		L->l = NULL;
		return;
	}
#ifdef CONDUIT_BENCH_NNG
	if (L->api == API_NNG) {
		if (L->ns_open)
			nng_link_close(L->ns);
		L->ns_open = false;
	}
#endif
	if (L->fd >= 0)
		close(L->fd);
	L->fd = -1;
	if (L->tr == T_UNIX)
		unlink(G.sock);
}
