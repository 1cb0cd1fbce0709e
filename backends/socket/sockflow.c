/*
 * sockflow.c - flows and listeners over host socket descriptors, shared by
 * the unix and tcp backends.  Descriptors are always non-blocking and
 * close-on-exec; writes use MSG_NOSIGNAL (SO_NOSIGPIPE where that is the
 * platform's way) so no process dies of SIGPIPE; close() is never retried.
 */
#include "sockflow.h"
#include "tcppolicy.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0 /* SO_NOSIGPIPE is set on the socket instead */
#endif

/* Buffers given to one sendmsg(); a longer gather is a short write. */
#define SF_MAX_IOV 64

struct cd_sockflow {
	conduit_flow base;
	int fd;           /* -1 until connected */
	bool unix_family; /* only Unix sockets carry peer credentials */
	/* Only while connecting; freed once open. */
	struct cs_connect *conn;
};

/* One connect() in flight.  retry_at != 0: a Unix listener's queue was
 * full (EAGAIN), and nothing will wake us, so connect() again then. */
struct cs_attempt {
	int fd;
	uint32_t addr;
	uint8_t retries;
	uint64_t retry_at;
};

/*
 * Connecting races the addresses as the shared policy says (tcppolicy.h:
 * RFC 8305, families alternating, a new attempt every 250 ms or as soon as
 * one fails); the first to connect wins and the others are closed.
 */
struct cs_connect {
	const struct cd_sockhooks *hooks;
	struct cd_race race;
	int last_err;
	size_t last_addr;
	size_t nattempts;
	struct cs_attempt att[CD_RACE_MAX_ATTEMPTS];
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

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(
		    *fd); /* never retried: the descriptor is gone either way */
	*fd = -1;
}

static void conn_free(struct cs_connect *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < c->nattempts; i++)
		close_fd(&c->att[i].fd);
	cd_race_fini(&c->race);
	free(c);
}

static void describe(const struct cs_connect *c, size_t i, char *buf,
                     size_t len)
{
	if (c->hooks->describe != NULL)
		c->hooks->describe(&c->addrs[i], buf, len);
	else
		snprintf(buf, len, "address %zu", i + 1);
}

/* Every address failed: report the last error. */
static int conn_failed(struct cd_sockflow *sf)
{
	struct cs_connect *c = sf->conn;
	int err = c->last_err ? c->last_err : ECONNREFUSED;
	int st = c->hooks->connect_status ? c->hooks->connect_status(err)
	                                  : conduit_status_from_errno(err);
	if (st == CONDUIT_WANT_READ || st == CONDUIT_OK)
		st = CONDUIT_ERR_SYSTEM;
	if (cd_race_count(&c->race) > 1) {
		char a[128];
		describe(c, c->last_addr, a, sizeof(a));
		return conduit_flow_fail(&sf->base, st,
		                         "connect %s: %s (%zu addresses tried, "
		                         "last %s)",
		                         sf->base.uri, cd_errtext(err),
		                         cd_race_count(&c->race), a);
	}
	return conduit_flow_fail(&sf->base, st, "connect %s: %s", sf->base.uri,
	                         cd_errtext(err));
}

/* Attempt i won: keep its descriptor, close the others. */
static int conn_won(struct cd_sockflow *sf, size_t i)
{
	struct cs_connect *c = sf->conn;
	sf->fd = c->att[i].fd;
	c->att[i].fd = -1;
	cd_race_won(&c->race);
	if (conduit_observed(sf->base.ctx)) {
		char a[128];
		describe(c, c->att[i].addr, a, sizeof(a));
		conduit_emit(sf->base.ctx, CONDUIT_PHASE_CONNECTED, CONDUIT_OK,
		             sf->base.uri, a, &sf->base);
	}
	conn_free(c);
	sf->conn = NULL;
	return CONDUIT_OK;
}

/* Attempt i failed with err: forget it; the next address may start now. */
static void conn_drop(struct cs_connect *c, size_t i, int err)
{
	c->last_err = err;
	c->last_addr = c->att[i].addr;
	close_fd(&c->att[i].fd);
	c->att[i] = c->att[--c->nattempts];
	cd_race_failed(&c->race);
}

/* connect() on attempt i.  Returns 1 connected, 0 in progress or waiting
 * to retry, or -errno. */
static int conn_issue(struct cs_connect *c, size_t i, uint64_t now)
{
	struct cs_attempt *at = &c->att[i];
	const struct cd_sockaddr *to = &c->addrs[at->addr];
	at->retry_at = 0;
	if (connect(at->fd, (const struct sockaddr *)&to->ss, to->len) == 0)
		return 1;
	int e = errno;
	/* An interrupted connect goes on in the background. */
	if (e == EINPROGRESS || e == EINTR || e == EALREADY)
		return 0;
	if (e == EISCONN)
		return 1;
	if (e == EAGAIN && to->ss.ss_family == AF_UNIX) {
		/* Back off 1, 2, 4 ... 64 ms. */
		unsigned step = at->retries < 6 ? 1u << at->retries : 64u;
		if (at->retries < 255)
			at->retries++;
		at->retry_at = now + step;
		return 0;
	}
	return -e;
}

/* Start an attempt on address a.  Returns CONDUIT_OK when it connected
 * at once, else CONDUIT_WANT_WRITE (in flight, or failed and reported to
 * the race). */
static int conn_start(struct cd_sockflow *sf, size_t a, uint64_t now)
{
	struct cs_connect *c = sf->conn;
	const struct cd_sockaddr *to = &c->addrs[a];
	int fd = cd_socket(to->ss.ss_family, SOCK_STREAM);
	int e = fd < 0 ? errno : 0;
	if (e == 0 && c->hooks->prepare != NULL) {
		e = c->hooks->prepare(fd, to, c->opts);
		if (e != 0)
			close(fd);
	}
	if (e != 0) {
		c->last_err = e;
		c->last_addr = a;
		cd_race_failed(&c->race);
		return CONDUIT_WANT_WRITE;
	}
	if (conduit_observed(sf->base.ctx)) {
		char d[128];
		describe(c, a, d, sizeof(d));
		conduit_emit(sf->base.ctx, CONDUIT_PHASE_CONNECTING, CONDUIT_OK,
		             sf->base.uri, d, &sf->base);
	}
	size_t i = c->nattempts++;
	c->att[i] = (struct cs_attempt){.fd = fd, .addr = (uint32_t)a};
	int r = conn_issue(c, i, now);
	if (r == 1)
		return conn_won(sf, i);
	if (r < 0)
		conn_drop(c, i, -r);
	return CONDUIT_WANT_WRITE;
}

/* Do what the race says now: start attempts, or end.  CONDUIT_OK once
 * connected, CONDUIT_WANT_WRITE while attempts are in flight, else the
 * failure. */
static int conn_progress(struct cd_sockflow *sf, uint64_t now)
{
	struct cs_connect *c = sf->conn;
	size_t a = 0;
	for (;;) {
		switch (cd_race_next(&c->race, now, &a)) {
		case CD_RACE_START:
			if (conn_start(sf, a, now) == CONDUIT_OK)
				return CONDUIT_OK;
			continue;
		case CD_RACE_FAILED:
			return conn_failed(sf);
		case CD_RACE_TIMEOUT:
			for (size_t i = 0; i < c->nattempts; i++)
				close_fd(&c->att[i].fd);
			c->nattempts = 0;
			return conduit_flow_fail(
			    &sf->base, CONDUIT_ERR_TIMED_OUT,
			    "connect %s: timed out after %u ms", sf->base.uri,
			    sf->base.ctx->connect_timeout_ms);
		case CD_RACE_WAIT:
			break;
		}
		return CONDUIT_WANT_WRITE;
	}
}

static int sf_handshake(conduit_flow *f)
{
	struct cd_sockflow *sf = sf_of(f);
	struct cs_connect *c = sf->conn;
	if (c == NULL)
		return CONDUIT_OK;
	uint64_t now = conduit_now_ms();
	/* Success is looked for before the deadline: a connection that was
	 * made while nobody was asking is made, even if it is asked about
	 * only after the deadline. */
	struct pollfd p[CD_RACE_MAX_ATTEMPTS];
	for (size_t i = 0; i < c->nattempts; i++) {
		p[i].fd = c->att[i].retry_at ? -1 : c->att[i].fd;
		p[i].events = POLLOUT;
		p[i].revents = 0;
	}
	int r;
	do
		r = poll(p, (nfds_t)c->nattempts, 0);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return conduit_flow_fail(f, conduit_status_from_errno(errno),
		                         "connect %s: poll: %s", f->uri,
		                         strerror(errno));
	/* Walk backwards: conn_drop moves the last attempt into slot i. */
	for (size_t i = c->nattempts; i-- > 0;) {
		struct cs_attempt *at = &c->att[i];
		if (at->retry_at != 0) {
			if (now < at->retry_at)
				continue;
			int x = conn_issue(c, i, now);
			if (x == 1)
				return conn_won(sf, i);
			if (x < 0)
				conn_drop(c, i, -x);
			continue;
		}
		if (p[i].revents == 0)
			continue;
		int err = 0;
		socklen_t len = sizeof(err);
		if (getsockopt(at->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (err == 0)
			return conn_won(sf, i);
		conn_drop(c, i, err);
	}
	return conn_progress(sf, now);
}

static int io_fail(conduit_flow *f, const char *op, int err)
{
	int st = conduit_status_from_errno(err);
	if (err == ENOTCONN)
		st = CONDUIT_ERR_CLOSED;
	return conduit_flow_fail(f, st, "%s %s: %s", op, f->uri,
	                         cd_errtext(err));
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
		/* sendmsg, not writev: writev takes no MSG_NOSIGNAL.  Empty
		 * buffers are left out, so a window of SF_MAX_IOV always holds
		 * bytes (the core has checked that there are some): a run of
		 * empty ones at the start must not read as "0 written". */
		struct iovec v[SF_MAX_IOV];
		size_t cnt = 0;
		for (size_t i = 0; i < iovcnt && cnt < SF_MAX_IOV; i++) {
			if (iov[i].len == 0)
				continue;
			v[cnt].iov_base = (void *)iov[i].base;
			v[cnt].iov_len = iov[i].len;
			cnt++;
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
	struct cs_connect *c = sf->conn;
	if (c == NULL) {
		conduit_waitset_fd(ws, sf->fd, interest);
		return;
	}
	/* Connecting: every attempt in flight, retries of full Unix queues,
	 * and when the race next has work (the next start, the timeout). */
	for (size_t i = 0; i < c->nattempts; i++) {
		if (c->att[i].retry_at != 0)
			conduit_waitset_deadline(ws, c->att[i].retry_at);
		else
			conduit_waitset_fd(ws, c->att[i].fd, CONDUIT_POLLOUT);
	}
	conduit_waitset_deadline(ws, cd_race_wake(&c->race));
}

static int sf_peer_cred(conduit_flow *f, struct conduit_peer_cred *cred)
{
	struct cd_sockflow *sf = sf_of(f);
	if (!sf->unix_family)
		return conduit_flow_fail(
		    f, CONDUIT_ERR_UNSUPPORTED,
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

/* Bytes the kernel holds that the application has not read. */
static int sf_unread(conduit_flow *f, size_t *n)
{
	int v = 0;
	if (ioctl(sf_of(f)->fd, FIONREAD, &v) < 0)
		return io_fail(f, "unread bytes of", errno);
	*n = v > 0 ? (size_t)v : 0;
	return CONDUIT_OK;
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
    .unread = sf_unread,
};

static struct cd_sockflow *sf_new(conduit_ctx *ctx, const char *uri, int family)
{
	struct cd_sockflow *sf = calloc(1, sizeof(*sf));
	if (sf == NULL)
		return NULL;
	if (conduit_flow_init(&sf->base, &sockflow_ops, ctx, uri) !=
	    CONDUIT_OK) {
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
		                        cd_endpoint_shown(ep));
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
		                        "connect %s: out of memory",
		                        cd_endpoint_shown(ep));
	}
	/* Field by field: the attempts are written as they start. */
	c->nattempts = 0;
	c->last_err = 0;
	memcpy(c->addrs, addrs, alen);
	c->opts = NULL;
	if (opts != NULL && optlen > 0) {
		c->opts = (char *)c->addrs + alen;
		memcpy(c->opts, opts, optlen);
	}
	c->hooks = hooks;
	c->last_addr = 0;
	sf->conn = c;
	uint64_t now = conduit_now_ms();
	cd_race_init(&c->race, now, ctx->connect_timeout_ms, 0);
	int rc = CONDUIT_OK;
	for (size_t i = 0; i < naddrs && rc == CONDUIT_OK; i++)
		rc = cd_race_add(&c->race, addrs[i].ss.ss_family == AF_INET6
		                               ? CD_RACE_V6
		                               : CD_RACE_OTHER);
	cd_race_complete(&c->race);
	if (rc != CONDUIT_OK)
		rc = conduit_flow_fail(
		    &sf->base, rc, "connect %s: out of memory", sf->base.uri);
	else
		rc = conn_progress(sf, now);
	if (rc != CONDUIT_OK && rc != CONDUIT_WANT_WRITE) {
		conduit_ctx_fail(ctx, rc, "%s", conduit_flow_error(&sf->base));
		conduit_emit(ctx, CONDUIT_PHASE_FAILED, rc,
		             cd_endpoint_shown(ep), conduit_ctx_error(ctx),
		             NULL);
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
			fd = accept4(sl->fds[i], (struct sockaddr *)&peer.ss,
			             &peer.len, SOCK_CLOEXEC | SOCK_NONBLOCK);
#else
			fd = accept(sl->fds[i], (struct sockaddr *)&peer.ss,
			            &peer.len);
			if (fd >= 0 &&
			    (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0 ||
			     fcntl(fd, F_SETFL,
			           fcntl(fd, F_GETFL) | O_NONBLOCK) < 0)) {
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
			if (e == EMFILE || e == ENFILE || e == ENOBUFS ||
			    e == ENOMEM) {
				sl->backoff_until =
				    conduit_now_ms() + BACKOFF_MS;
				return conduit_listener_fail(
				    l, conduit_status_from_errno(e),
				    "accept %s: %s (pausing accepts for %d ms)",
				    l->uri, cd_errtext(e), BACKOFF_MS);
			}
			return conduit_listener_fail(
			    l, conduit_status_from_errno(e), "accept %s: %s",
			    l->uri, cd_errtext(e));
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
				    "accept %s: setting up connection: %s",
				    l->uri, cd_errtext(e));
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
	if (sl == NULL || conduit_listener_init(&sl->base, &socklistener_ops,
	                                        ctx, uri) != CONDUIT_OK) {
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
			                        "listen %s: out of memory",
			                        uri);
		}
		if (lstat(unlink_path, &st) == 0) {
			sl->dev = st.st_dev;
			sl->ino = st.st_ino;
		}
	}
	*out = &sl->base;
	return CONDUIT_OK;
}
