/*
 * sockflow.c - flows and listeners over host socket descriptors, shared by
 * the unix and tcp backends.  Descriptors are always non-blocking and
 * close-on-exec; writes use MSG_NOSIGNAL (SO_NOSIGPIPE where that is the
 * platform's way) so no process dies of SIGPIPE; close() is never retried.
 */
#include "sockflow.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0 /* SO_NOSIGPIPE is set on the socket instead */
#endif

enum cs_state {
	CS_CONNECTING, /* connect() in progress on fd */
	CS_RETRY,      /* listener queue full: connect() again at retry_at */
	CS_OPEN,
};

struct cd_sockflow {
	conduit_flow base;
	int fd;
	uint8_t cstate;
	uint8_t retries;
	bool unix_family; /* only Unix sockets carry peer credentials */
	/* Only while connecting; freed once open. */
	struct cs_connect *conn;
};

struct cs_connect {
	const struct cd_sockhooks *hooks;
	size_t naddrs, next;
	uint64_t deadline; /* UINT64_MAX: none */
	uint64_t retry_at;
	int last_err;
	size_t last_addr;
	void *opts; /* the backend's options for its prepare hook */
	struct cd_sockaddr addrs[];
};

const char *cd_errtext(int err)
{
	int st = conduit_status_from_errno(err);
	if (st == CONDUIT_ERR_SYSTEM || st == CONDUIT_ERR_INVALID)
		return strerror(err);
	if (err == ENOENT)
		return "no such socket file";
	return conduit_strerror(st);
}

int cd_socket(int family, int type)
{
#ifdef SOCK_CLOEXEC
	int fd = socket(family, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -1;
#else
	int fd = socket(family, type, 0);
	if (fd < 0)
		return -1;
	if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0 ||
	    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
#endif
#ifdef SO_NOSIGPIPE
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof(one));
#endif
	return fd;
}

static struct cd_sockflow *sf_of(conduit_flow *f)
{
	return (struct cd_sockflow *)f;
}

static void conn_free(struct cs_connect *c)
{
	free(c);
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd); /* never retried: the descriptor is gone either way */
	*fd = -1;
}

static void describe(const struct cs_connect *c, size_t i, char *buf,
                     size_t len)
{
	if (c->hooks->describe != NULL)
		c->hooks->describe(&c->addrs[i], buf, len);
	else
		snprintf(buf, len, "address %zu", i + 1);
}

/* All addresses failed: report the last error. */
static int conn_failed(struct cd_sockflow *sf)
{
	struct cs_connect *c = sf->conn;
	int err = c->last_err ? c->last_err : ECONNREFUSED;
	int st = c->hooks->connect_status ? c->hooks->connect_status(err)
	                                  : conduit_status_from_errno(err);
	if (st == CONDUIT_WANT_READ || st == CONDUIT_OK)
		st = CONDUIT_ERR_SYSTEM;
	if (c->naddrs > 1) {
		char a[128];
		describe(c, c->last_addr, a, sizeof(a));
		return conduit_flow_fail(&sf->base, st,
		                         "connect %s: %s (%zu addresses tried, "
		                         "last %s)",
		                         sf->base.uri, cd_errtext(err), c->naddrs, a);
	}
	return conduit_flow_fail(&sf->base, st, "connect %s: %s", sf->base.uri,
	                         cd_errtext(err));
}

static int conn_done(struct cd_sockflow *sf)
{
	if (conduit_observed(sf->base.ctx)) {
		char a[128];
		describe(sf->conn, sf->conn->last_addr, a, sizeof(a));
		conduit_emit(sf->base.ctx, CONDUIT_PHASE_CONNECTED, CONDUIT_OK,
		             sf->base.uri, a, &sf->base);
	}
	conn_free(sf->conn);
	sf->conn = NULL;
	sf->cstate = CS_OPEN;
	return CONDUIT_OK;
}

/* Issue connect() on the current descriptor and classify the result. */
static int conn_issue(struct cd_sockflow *sf)
{
	struct cs_connect *c = sf->conn;
	const struct cd_sockaddr *to = &c->addrs[c->last_addr];
	for (;;) {
		if (connect(sf->fd, (const struct sockaddr *)&to->ss, to->len) == 0)
			return conn_done(sf);
		int e = errno;
		if (e == EINPROGRESS || e == EINTR || e == EALREADY) {
			/* An interrupted connect goes on in the background. */
			sf->cstate = CS_CONNECTING;
			return CONDUIT_WANT_WRITE;
		}
		if (e == EISCONN)
			return conn_done(sf);
		if (e == EAGAIN && to->ss.ss_family == AF_UNIX) {
			/* The listener's queue is full: nothing will wake us,
			 * so try again shortly, backing off to 64 ms. */
			unsigned step = sf->retries < 6 ? 1u << sf->retries : 64u;
			if (sf->retries < 255)
				sf->retries++;
			c->retry_at = conduit_now_ms() + step;
			sf->cstate = CS_RETRY;
			return CONDUIT_WANT_WRITE;
		}
		return -e;
	}
}

/* Try addresses from c->next on until one connects or is in progress. */
static int conn_next(struct cd_sockflow *sf)
{
	struct cs_connect *c = sf->conn;
	while (c->next < c->naddrs) {
		size_t i = c->next++;
		const struct cd_sockaddr *to = &c->addrs[i];
		c->last_addr = i;
		sf->retries = 0;
		sf->fd = cd_socket(to->ss.ss_family, SOCK_STREAM);
		if (sf->fd < 0) {
			c->last_err = errno;
			continue;
		}
		int e = c->hooks->prepare != NULL
		                ? c->hooks->prepare(sf->fd, to, c->opts)
		                : 0;
		if (e != 0) {
			c->last_err = e;
			close_fd(&sf->fd);
			continue;
		}
		if (conduit_observed(sf->base.ctx)) {
			char a[128];
			describe(c, i, a, sizeof(a));
			conduit_emit(sf->base.ctx, CONDUIT_PHASE_CONNECTING,
			             CONDUIT_OK, sf->base.uri, a, &sf->base);
		}
		int rc = conn_issue(sf);
		if (rc >= 0)
			return rc;
		c->last_err = -rc;
		close_fd(&sf->fd);
	}
	return conn_failed(sf);
}

static int sf_handshake(conduit_flow *f)
{
	struct cd_sockflow *sf = sf_of(f);
	struct cs_connect *c = sf->conn;
	if (sf->cstate == CS_OPEN)
		return CONDUIT_OK;
	uint64_t now = conduit_now_ms();
	if (now >= c->deadline) {
		close_fd(&sf->fd);
		return conduit_flow_fail(f, CONDUIT_ERR_TIMED_OUT,
		                         "connect %s: timed out after %u ms", f->uri,
		                         f->ctx->connect_timeout_ms);
	}
	if (sf->cstate == CS_RETRY) {
		if (now < c->retry_at)
			return CONDUIT_WANT_WRITE;
		int rc = conn_issue(sf);
		if (rc >= 0)
			return rc;
		c->last_err = -rc;
		close_fd(&sf->fd);
		return conn_next(sf);
	}
	struct pollfd p = {.fd = sf->fd, .events = POLLOUT};
	int r;
	do
		r = poll(&p, 1, 0);
	while (r < 0 && errno == EINTR);
	if (r == 0)
		return CONDUIT_WANT_WRITE;
	int err = 0;
	socklen_t len = sizeof(err);
	if (r < 0)
		err = errno;
	else if (getsockopt(sf->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err == 0)
		return conn_done(sf);
	c->last_err = err;
	close_fd(&sf->fd);
	return conn_next(sf);
}

static int io_fail(conduit_flow *f, const char *op, int err)
{
	int st = conduit_status_from_errno(err);
	if (err == ENOTCONN)
		st = CONDUIT_ERR_CLOSED;
	return conduit_flow_fail(f, st, "%s %s: %s", op, f->uri, cd_errtext(err));
}

static int sf_read(conduit_flow *f, void *buf, size_t len, size_t *nread)
{
	struct cd_sockflow *sf = sf_of(f);
	for (;;) {
		ssize_t n = recv(sf->fd, buf, len, 0);
		if (n > 0) {
			*nread = (size_t)n;
			return CONDUIT_OK;
		}
		if (n == 0)
			return CONDUIT_EOF;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return CONDUIT_WANT_READ;
		return io_fail(f, "read", errno);
	}
}

static int sf_writev(conduit_flow *f, const struct conduit_iov *iov,
                     size_t iovcnt, size_t *nwritten)
{
	struct cd_sockflow *sf = sf_of(f);
	ssize_t n;
	if (iovcnt == 1) {
		do
			n = send(sf->fd, iov[0].base, iov[0].len, MSG_NOSIGNAL);
		while (n < 0 && errno == EINTR);
	} else {
		/* sendmsg, not writev: writev takes no MSG_NOSIGNAL. */
		struct iovec v[64];
		size_t cnt = iovcnt < 64 ? iovcnt : 64;
		for (size_t i = 0; i < cnt; i++) {
			v[i].iov_base = (void *)iov[i].base;
			v[i].iov_len = iov[i].len;
		}
		struct msghdr m;
		memset(&m, 0, sizeof(m));
		m.msg_iov = v;
		m.msg_iovlen = cnt;
		do
			n = sendmsg(sf->fd, &m, MSG_NOSIGNAL);
		while (n < 0 && errno == EINTR);
	}
	if (n >= 0) {
		*nwritten = (size_t)n;
		return CONDUIT_OK;
	}
	if (errno == EAGAIN || errno == EWOULDBLOCK)
		return CONDUIT_WANT_WRITE;
	return io_fail(f, "write", errno);
}

static int sf_shutdown(conduit_flow *f, unsigned how)
{
	struct cd_sockflow *sf = sf_of(f);
	int h = how == CONDUIT_SHUT_RDWR ? SHUT_RDWR
	        : how == CONDUIT_SHUT_RD ? SHUT_RD
	                                 : SHUT_WR;
	/* ENOTCONN: the peer is already gone, so the direction is shut. */
	if (shutdown(sf->fd, h) < 0 && errno != ENOTCONN)
		return io_fail(f, "shutdown", errno);
	return CONDUIT_OK;
}

static void sf_destroy(conduit_flow *f)
{
	struct cd_sockflow *sf = sf_of(f);
	close_fd(&sf->fd);
	conn_free(sf->conn);
	conduit_flow_fini(f);
	free(sf);
}

static void sf_wait(conduit_flow *f, unsigned interest,
                    struct conduit_waitset *ws)
{
	struct cd_sockflow *sf = sf_of(f);
	switch (sf->cstate) {
	case CS_CONNECTING:
		conduit_waitset_fd(ws, sf->fd, CONDUIT_POLLOUT);
		conduit_waitset_deadline(ws, sf->conn->deadline);
		break;
	case CS_RETRY:
		conduit_waitset_deadline(ws, sf->conn->retry_at);
		conduit_waitset_deadline(ws, sf->conn->deadline);
		break;
	default:
		conduit_waitset_fd(ws, sf->fd, interest);
	}
}

static int sf_peer_cred(conduit_flow *f, struct conduit_peer_cred *cred)
{
	struct cd_sockflow *sf = sf_of(f);
	if (!sf->unix_family)
		return conduit_flow_fail(f, CONDUIT_ERR_UNSUPPORTED,
		                         "%s: only Unix-socket flows carry peer "
		                         "credentials",
		                         f->uri);
#if defined(SO_PEERCRED) && defined(__linux__)
	struct ucred uc;
	socklen_t len = sizeof(uc);
	if (getsockopt(sf->fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) < 0)
		return io_fail(f, "peer credentials of", errno);
	cred->uid = uc.uid;
	cred->gid = uc.gid;
	cred->pid = uc.pid;
	return CONDUIT_OK;
#elif defined(__APPLE__) || defined(__FreeBSD__) || defined(__OpenBSD__)
	uid_t uid;
	gid_t gid;
	if (getpeereid(sf->fd, &uid, &gid) < 0)
		return io_fail(f, "peer credentials of", errno);
	cred->uid = uid;
	cred->gid = gid;
#ifdef LOCAL_PEERPID
	pid_t pid;
	socklen_t len = sizeof(pid);
	if (getsockopt(sf->fd, SOL_LOCAL, LOCAL_PEERPID, &pid, &len) == 0)
		cred->pid = pid;
#endif
	return CONDUIT_OK;
#else
	(void)sf;
	(void)cred;
	return conduit_flow_fail(f, CONDUIT_ERR_UNSUPPORTED,
	                         "%s: peer credentials not available here",
	                         f->uri);
#endif
}

static int sf_fd(const conduit_flow *f)
{
	return ((const struct cd_sockflow *)f)->fd;
}

static const struct conduit_flow_ops sockflow_ops = {
	.name = "socket",
	.handshake = sf_handshake,
	.read = sf_read,
	.writev = sf_writev,
	.shutdown = sf_shutdown,
	.destroy = sf_destroy,
	.wait = sf_wait,
	.peer_cred = sf_peer_cred,
	.fd = sf_fd,
};

static struct cd_sockflow *sf_new(conduit_ctx *ctx, const char *uri,
                                  int family)
{
	struct cd_sockflow *sf = calloc(1, sizeof(*sf));
	if (sf == NULL)
		return NULL;
	if (conduit_flow_init(&sf->base, &sockflow_ops, ctx, uri) != CONDUIT_OK) {
		free(sf);
		return NULL;
	}
	sf->fd = -1;
	sf->unix_family = family == AF_UNIX;
	return sf;
}

int cd_sockflow_connect(conduit_flow **out, conduit_ctx *ctx,
                        const conduit_endpoint *ep,
                        const struct cd_sockhooks *hooks,
                        const struct cd_sockaddr *addrs, size_t naddrs,
                        const void *opts, size_t optlen)
{
	*out = NULL;
	if (naddrs == 0)
		return conduit_ctx_fail(ctx, CONDUIT_ERR_RESOLVE,
		                        "connect %s: no address to connect to",
		                        ep->uri);
	/* One allocation holds the connect state, the addresses and the
	 * options; it is freed once the flow is open. */
	size_t alen = naddrs * sizeof(struct cd_sockaddr);
	struct cd_sockflow *sf = sf_new(ctx, ep->uri, addrs[0].ss.ss_family);
	struct cs_connect *c = malloc(sizeof(*c) + alen + optlen);
	if (sf == NULL || c == NULL) {
		if (sf != NULL)
			sf_destroy(&sf->base);
		free(c);
		return conduit_ctx_fail(ctx, CONDUIT_ERR_NOMEM,
		                        "connect %s: out of memory", ep->uri);
	}
	memset(c, 0, sizeof(*c));
	memcpy(c->addrs, addrs, alen);
	c->opts = NULL;
	if (opts != NULL && optlen > 0) {
		c->opts = (char *)c->addrs + alen;
		memcpy(c->opts, opts, optlen);
	}
	c->hooks = hooks;
	c->naddrs = naddrs;
	c->deadline = ctx->connect_timeout_ms
	                      ? conduit_now_ms() + ctx->connect_timeout_ms
	                      : UINT64_MAX;
	sf->conn = c;
	int rc = conn_next(sf);
	if (rc != CONDUIT_OK && rc != CONDUIT_WANT_WRITE) {
		conduit_ctx_fail(ctx, rc, "%s", conduit_flow_error(&sf->base));
		conduit_emit(ctx, CONDUIT_PHASE_FAILED, rc, ep->uri,
		             conduit_ctx_error(ctx), NULL);
		sf_destroy(&sf->base);
		return rc;
	}
	if (rc == CONDUIT_OK)
		sf->base.state |= CONDUIT_FLOW_ESTABLISHED;
	*out = &sf->base;
	return CONDUIT_OK;
}

/* ------------------------------------------------------------------ */
/* Listeners                                                           */

#define BACKOFF_MS 100

struct cd_socklistener {
	conduit_listener base;
	const struct cd_sockhooks *hooks;
	size_t nfds;
	size_t turn; /* round-robin start among fds */
	int fds[CD_MAX_LISTEN_FDS];
	uint64_t backoff_until;
	char *unlink_path;
	dev_t dev;
	ino_t ino;
};

static struct cd_socklistener *sl_of(conduit_listener *l)
{
	return (struct cd_socklistener *)l;
}

static int sl_accept(conduit_listener *l, conduit_flow **out)
{
	struct cd_socklistener *sl = sl_of(l);
	if (sl->backoff_until != 0) {
		if (conduit_now_ms() < sl->backoff_until)
			return CONDUIT_WANT_READ;
		sl->backoff_until = 0;
	}
	for (size_t k = 0; k < sl->nfds; k++) {
		size_t i = (sl->turn + k) % sl->nfds;
		struct cd_sockaddr peer;
		int fd;
		for (;;) {
			peer.len = sizeof(peer.ss);
#ifdef __linux__
			fd = accept4(sl->fds[i], (struct sockaddr *)&peer.ss, &peer.len,
			             SOCK_CLOEXEC | SOCK_NONBLOCK);
#else
			fd = accept(sl->fds[i], (struct sockaddr *)&peer.ss, &peer.len);
			if (fd >= 0 &&
			    (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0 ||
			     fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0)) {
				close(fd);
				fd = -1;
				errno = EMFILE;
			}
#endif
			/* A connection that died in the queue is not our
			 * error: look for the next one. */
			if (fd < 0 && (errno == EINTR || errno == ECONNABORTED))
				continue;
			break;
		}
		if (fd < 0) {
			int e = errno;
			if (e == EAGAIN || e == EWOULDBLOCK)
				continue;
			if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
				sl->backoff_until = conduit_now_ms() + BACKOFF_MS;
				return conduit_listener_fail(
					l, conduit_status_from_errno(e),
					"accept %s: %s (pausing accepts for %d ms)", l->uri,
					cd_errtext(e), BACKOFF_MS);
			}
			return conduit_listener_fail(l, conduit_status_from_errno(e),
			                             "accept %s: %s", l->uri,
			                             cd_errtext(e));
		}
		sl->turn = i + 1;
#ifdef SO_NOSIGPIPE
		int one = 1;
		setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof(one));
#endif
		if (sl->hooks->accepted != NULL) {
			int e = sl->hooks->accepted(fd);
			if (e != 0) {
				close(fd);
				return conduit_listener_fail(
					l, conduit_status_from_errno(e),
					"accept %s: setting up connection: %s", l->uri,
					cd_errtext(e));
			}
		}
		char uri[256];
		if (sl->hooks->peer_uri != NULL)
			sl->hooks->peer_uri(&peer, l->uri, uri, sizeof(uri));
		struct cd_sockflow *sf =
			sf_new(l->ctx, sl->hooks->peer_uri != NULL ? uri : l->uri,
			       peer.ss.ss_family);
		if (sf == NULL) {
			close(fd);
			return conduit_listener_fail(l, CONDUIT_ERR_NOMEM,
			                             "accept %s: out of memory",
			                             l->uri);
		}
		sf->fd = fd;
		sf->cstate = CS_OPEN;
		sf->base.state |= CONDUIT_FLOW_ESTABLISHED;
		*out = &sf->base;
		return CONDUIT_OK;
	}
	return CONDUIT_WANT_READ;
}

static void sl_wait(conduit_listener *l, struct conduit_waitset *ws)
{
	struct cd_socklistener *sl = sl_of(l);
	if (sl->backoff_until != 0) {
		/* Out of descriptors: a readable listener would wake us at
		 * once, so sleep until the back-off ends instead. */
		conduit_waitset_deadline(ws, sl->backoff_until);
		return;
	}
	for (size_t i = 0; i < sl->nfds; i++)
		conduit_waitset_fd(ws, sl->fds[i], CONDUIT_POLLIN);
}

static void sl_destroy(conduit_listener *l)
{
	struct cd_socklistener *sl = sl_of(l);
	for (size_t i = 0; i < sl->nfds; i++)
		close_fd(&sl->fds[i]);
	if (sl->unlink_path != NULL) {
		struct stat st;
		if (lstat(sl->unlink_path, &st) == 0 && st.st_dev == sl->dev &&
		    st.st_ino == sl->ino && S_ISSOCK(st.st_mode))
			unlink(sl->unlink_path);
		free(sl->unlink_path);
	}
	conduit_listener_fini(l);
	free(sl);
}

static const struct conduit_listener_ops socklistener_ops = {
	.name = "socket",
	.accept = sl_accept,
	.destroy = sl_destroy,
	.wait = sl_wait,
};

int cd_socklistener_new(conduit_listener **out, conduit_ctx *ctx,
                        const char *uri, const struct cd_sockhooks *hooks,
                        const int *fds, size_t nfds, const char *unlink_path)
{
	*out = NULL;
	struct cd_socklistener *sl = calloc(1, sizeof(*sl));
	if (sl == NULL ||
	    conduit_listener_init(&sl->base, &socklistener_ops, ctx, uri) !=
	            CONDUIT_OK) {
		free(sl);
		for (size_t i = 0; i < nfds; i++)
			close(fds[i]);
		return conduit_ctx_fail(ctx, CONDUIT_ERR_NOMEM,
		                        "listen %s: out of memory", uri);
	}
	sl->hooks = hooks;
	for (size_t i = 0; i < nfds && i < CD_MAX_LISTEN_FDS; i++)
		sl->fds[sl->nfds++] = fds[i];
	for (size_t i = CD_MAX_LISTEN_FDS; i < nfds; i++)
		close(fds[i]);
	if (unlink_path != NULL) {
		struct stat st;
		sl->unlink_path = cd_strdup(unlink_path);
		if (sl->unlink_path == NULL) {
			sl_destroy(&sl->base);
			return conduit_ctx_fail(ctx, CONDUIT_ERR_NOMEM,
			                        "listen %s: out of memory", uri);
		}
		if (lstat(unlink_path, &st) == 0) {
			sl->dev = st.st_dev;
			sl->ino = st.st_ino;
		}
	}
	*out = &sl->base;
	return CONDUIT_OK;
}
