/*
 * evtchn.c - libxenevtchn.so.1 of the Xen emulation: event channels
 * between processes playing domains.
 *
 * A port is a SOCK_SEQPACKET Unix socket bound to an abstract name made
 * of the host directory, the domain and the port number (binding the name
 * is what allocates the number; numbers are tried in rotation, see
 * port_hint()).  An unbound port listens; binding an
 * interdomain port connects to it and says which domain and port it is
 * (the "hello", the connection's first message); the listener keeps only
 * the domain the port was offered to, and only once: later connections
 * are closed at once.  A notification is a one-byte message sent without
 * blocking: when the queue is full the peer has notifications pending
 * already, so the new one merges with them, as Xen's pending bit does.
 *
 * In Xen a channel is connected the moment the other side binds it, so a
 * notification from the unbound side reaches a peer that has bound, even
 * if the unbound side never looked at its events.  Here the connection
 * waits in the listener's queue until it is accepted, so a notify on a
 * listening port first accepts what is queued; without that, a server that
 * read a ring filled before it first asked for events dropped the
 * notification, and the writer waited forever for room.  A connection
 * accepted before its hello has arrived is kept, unverified, until the
 * hello is read (a notification to it is harmless): waiting for it would
 * make notify block.
 *
 * The handle's descriptor is an epoll instance over its ports, readable
 * when any port has something.  xenevtchn_pending() reports one port and
 * drains it.  A peer that closed its port or died shows as a hang-up: the
 * port is reported once more, and the notify bytes the dead peer
 * registered on shared grants are cleared first (what gntdev does when a
 * process exits), so libxenvchan sees the peer's live flag drop.
 */
#include "xenemu.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <unistd.h>
#include <xenevtchn.h>

/* Xen's FIFO event channels go up to 2^17 - 1. */
#define XE_MAX_PORT 131071u
#define KIND_LISTEN 1ull
#define KIND_CONN   2ull

struct xe_port {
	uint32_t port;
	uint32_t remote_dom;
	uint32_t remote_port; /* known once connected */
	int lfd;              /* listening socket (unbound ports), or -1 */
	int cfd;              /* the connection, or -1 */
	int hello;            /* cfd accepted, its hello not read yet */
	int lquiet;           /* lfd out of the epoll set meanwhile */
	int dead;             /* the peer went away (reported once) */
};

struct xenevtchn_handle {
	int ep;
	size_t n, cap;
	struct xe_port *ports;
};

struct hello {
	uint32_t domid;
	uint32_t port;
};

xenevtchn_handle *xenevtchn_open(struct xentoollog_logger *logger,
                                 unsigned open_flags)
{
	(void)logger;
	(void)open_flags;
	if (xe_dir() == NULL)
		return NULL;
	xenevtchn_handle *h = calloc(1, sizeof(*h));
	if (h == NULL)
		return NULL;
	h->ep = epoll_create1(EPOLL_CLOEXEC);
	if (h->ep < 0) {
		free(h);
		return NULL;
	}
	return h;
}

static void port_close(xenevtchn_handle *h, struct xe_port *p)
{
	if (p->lfd >= 0) {
		epoll_ctl(h->ep, EPOLL_CTL_DEL, p->lfd, NULL);
		close(p->lfd);
	}
	if (p->cfd >= 0) {
		epoll_ctl(h->ep, EPOLL_CTL_DEL, p->cfd, NULL);
		close(p->cfd);
	}
	p->lfd = p->cfd = -1;
}

int xenevtchn_close(xenevtchn_handle *xce)
{
	if (xce == NULL)
		return 0;
	for (size_t i = 0; i < xce->n; i++)
		port_close(xce, &xce->ports[i]);
	close(xce->ep);
	free(xce->ports);
	free(xce);
	return 0;
}

int xenevtchn_fd(xenevtchn_handle *xce)
{
	return xce->ep;
}

static struct xe_port *find(xenevtchn_handle *h, uint32_t port)
{
	for (size_t i = 0; i < h->n; i++)
		if (h->ports[i].port == port)
			return &h->ports[i];
	return NULL;
}

static struct xe_port *add(xenevtchn_handle *h)
{
	if (h->n == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 4;
		struct xe_port *np = realloc(h->ports, cap * sizeof(*np));
		if (np == NULL)
			return NULL;
		h->ports = np;
		h->cap = cap;
	}
	struct xe_port *p = &h->ports[h->n++];
	memset(p, 0, sizeof(*p));
	p->lfd = p->cfd = -1;
	return p;
}

static int watch(xenevtchn_handle *h, int fd, uint64_t kind, uint32_t port)
{
	struct epoll_event ev;
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN;
	ev.data.u64 = kind << 32 | port;
	return epoll_ctl(h->ep, EPOLL_CTL_ADD, fd, &ev);
}

/*
 * The next port number to try, host-wide, in rotation through the whole
 * range: a number just freed is not handed out again until every other
 * one has been.  Xen hands out the lowest free port, but here the
 * survivor of a dead peer finds the grants to clean up by the peer's port
 * number, and does so when it notices, which can be after the dead
 * domain has bound a new port: with the lowest free number, that was
 * often the same number, and a fresh connection lost its live flag.  The
 * counter is a file in the host directory, under a lock.  0 when it
 * cannot be had (the caller then starts from 1).
 */
static uint32_t port_hint(void)
{
	char path[PATH_MAX];
	const char *d = xe_dir();
	if (d == NULL || (size_t)snprintf(path, sizeof(path), "%s/evtchn.next",
	                                  d) >= sizeof(path))
		return 0;
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return 0;
	uint32_t v = 0;
	while (flock(fd, LOCK_EX) < 0 && errno == EINTR)
		;
	if (pread(fd, &v, sizeof(v), 0) != (ssize_t)sizeof(v))
		v = 0;
	v = v % XE_MAX_PORT + 1;
	if (pwrite(fd, &v, sizeof(v), 0) != (ssize_t)sizeof(v))
		v = 0;
	flock(fd, LOCK_UN);
	close(fd);
	return v;
}

/* A socket bound to a free port number of this domain; *port set. */
static int bind_port(uint32_t *port)
{
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	uint32_t self = xe_domid();
	uint32_t p = port_hint();
	if (p == 0)
		p = 1;
	for (uint32_t i = 0; i < XE_MAX_PORT; i++, p = p % XE_MAX_PORT + 1) {
		struct sockaddr_un sa;
		socklen_t len = xe_evtchn_addr(&sa, self, p);
		if (bind(fd, (struct sockaddr *)&sa, len) == 0) {
			*port = p;
			return fd;
		}
		if (errno != EADDRINUSE)
			break;
	}
	int e = errno == EADDRINUSE ? ENOSPC : errno;
	close(fd);
	errno = e;
	return -1;
}

xenevtchn_port_or_error_t xenevtchn_bind_unbound_port(xenevtchn_handle *xce,
                                                      uint32_t domid)
{
	uint32_t port;
	int fd = bind_port(&port);
	if (fd < 0)
		return -1;
	struct xe_port *p;
	if (listen(fd, 4) < 0 || fcntl(fd, F_SETFL, O_NONBLOCK) < 0 ||
	    (p = add(xce)) == NULL) {
		close(fd);
		return -1;
	}
	p->port = port;
	p->remote_dom = domid;
	p->lfd = fd;
	if (watch(xce, fd, KIND_LISTEN, port) < 0) {
		close(fd);
		xce->n--;
		return -1;
	}
	return (xenevtchn_port_or_error_t)port;
}

xenevtchn_port_or_error_t xenevtchn_bind_interdomain(xenevtchn_handle *xce,
                                                     uint32_t domid,
                                                     evtchn_port_t remote_port)
{
	uint32_t port;
	int fd = bind_port(&port);
	if (fd < 0)
		return -1;
	struct sockaddr_un sa;
	socklen_t len = xe_evtchn_addr(&sa, domid, remote_port);
	struct hello hi = {xe_domid(), port};
	struct xe_port *p;
	int r;
	do
		r = connect(fd, (struct sockaddr *)&sa, len);
	while (r < 0 && errno == EINTR);
	if (r < 0) {
		/* No such port: Xen says EINVAL. */
		close(fd);
		errno =
		    errno == ECONNREFUSED || errno == ENOENT ? EINVAL : errno;
		return -1;
	}
	if (send(fd, &hi, sizeof(hi), MSG_NOSIGNAL) != (ssize_t)sizeof(hi) ||
	    fcntl(fd, F_SETFL, O_NONBLOCK) < 0 || (p = add(xce)) == NULL) {
		close(fd);
		errno = EINVAL;
		return -1;
	}
	p->port = port;
	p->remote_dom = domid;
	p->remote_port = remote_port;
	p->cfd = fd;
	if (watch(xce, fd, KIND_CONN, port) < 0) {
		close(fd);
		xce->n--;
		return -1;
	}
	return (xenevtchn_port_or_error_t)port;
}

int xenevtchn_unbind(xenevtchn_handle *xce, evtchn_port_t port)
{
	struct xe_port *p = find(xce, port);
	if (p == NULL) {
		errno = EINVAL;
		return -1;
	}
	port_close(xce, p);
	*p = xce->ports[--xce->n];
	return 0;
}

/* While an accepted connection has not said hello, the listening socket
 * is left out of the epoll set: what waits behind it is taken once the
 * hello is in, and the descriptor does not stay readable meanwhile. */
static void hello_done(xenevtchn_handle *h, struct xe_port *p)
{
	if (p->lquiet)
		watch(h, p->lfd, KIND_LISTEN, p->port);
	p->lquiet = 0;
	p->hello = 0;
}

static void drop_conn(xenevtchn_handle *h, struct xe_port *p)
{
	hello_done(h, p);
	epoll_ctl(h->ep, EPOLL_CTL_DEL, p->cfd, NULL);
	close(p->cfd);
	p->cfd = -1;
}

/* Read the hello of an accepted connection: keep the connection if it
 * comes from the domain the port was offered to.  1 kept, 0 not there
 * yet, -1 refused (closed, and the port free for the next one). */
static int check_hello(xenevtchn_handle *h, struct xe_port *p)
{
	struct hello hi;
	ssize_t r;
	do
		r = recv(p->cfd, &hi, sizeof(hi), MSG_DONTWAIT);
	while (r < 0 && errno == EINTR);
	if (r < 0 && errno == EAGAIN)
		return 0;
	if (r != (ssize_t)sizeof(hi) || hi.domid != p->remote_dom) {
		drop_conn(h, p);
		return -1;
	}
	p->remote_port = hi.port;
	hello_done(h, p);
	return 1;
}

/* Take what waits in listening port p's queue: the first connection whose
 * hello is right (or not there yet) is kept; the ones after a verified
 * one are closed.  Never blocks: the socket is non-blocking. */
static void accept_queued(xenevtchn_handle *h, struct xe_port *p)
{
	if (p->hello)
		return;
	/* Bounded: the queue holds a handful (listen backlog). */
	for (int i = 0; i < 16; i++) {
		int fd =
		    accept4(p->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0)
			return;
		if (p->cfd >= 0 || p->dead ||
		    watch(h, fd, KIND_CONN, p->port) < 0) {
			close(fd);
			continue;
		}
		p->cfd = fd;
		p->hello = 1;
		if (check_hello(h, p) == 0) {
			/* It may yet be refused and one behind it be
			 * the peer: they wait for its hello. */
			epoll_ctl(h->ep, EPOLL_CTL_DEL, p->lfd, NULL);
			p->lquiet = 1;
			return;
		}
	}
}

int xenevtchn_notify(xenevtchn_handle *xce, evtchn_port_t port)
{
	struct xe_port *p = find(xce, port);
	if (p == NULL) {
		errno = EINVAL;
		return -1;
	}
	/* A peer that has bound is connected, accepted or not (see the
	 * top of the file). */
	if (p->lfd >= 0 && p->cfd < 0 && !p->dead)
		accept_queued(xce, p);
	if (p->cfd >= 0 && !p->dead) {
		static const char one = 1;
		/* Never blocks; a full queue means "already pending". */
		ssize_t r;
		do
			r = send(p->cfd, &one, 1, MSG_DONTWAIT | MSG_NOSIGNAL);
		while (r < 0 && errno == EINTR);
	}
	return 0;
}

int xenevtchn_unmask(xenevtchn_handle *xce, evtchn_port_t port)
{
	(void)xce;
	(void)port;
	return 0;
}

xenevtchn_port_or_error_t xenevtchn_pending(xenevtchn_handle *xce)
{
	for (;;) {
		struct epoll_event ev;
		int n = epoll_wait(xce->ep, &ev, 1, -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			continue;
		uint32_t port = (uint32_t)ev.data.u64;
		uint64_t kind = ev.data.u64 >> 32;
		struct xe_port *p = find(xce, port);
		if (p == NULL)
			continue;
		if (kind == KIND_LISTEN) {
			/* Reported even when the connection was refused:
			 * the caller saw the descriptor readable, and a
			 * spurious event is harmless where a block is not. */
			accept_queued(xce, p);
			return (xenevtchn_port_or_error_t)port;
		}
		/* An unverified connection: its first message is the
		 * hello.  Closed before saying it, it was never our peer. */
		if (p->hello && check_hello(xce, p) <= 0) {
			if (p->hello && (ev.events & (EPOLLHUP | EPOLLERR)))
				drop_conn(xce, p);
			return (xenevtchn_port_or_error_t)port;
		}
		char buf[256];
		int gone = (ev.events & (EPOLLHUP | EPOLLERR)) != 0;
		for (;;) {
			ssize_t r =
			    recv(p->cfd, buf, sizeof(buf), MSG_DONTWAIT);
			if (r > 0)
				continue;
			if (r == 0 || (errno != EAGAIN && errno != EINTR))
				gone = 1;
			if (r < 0 && errno == EINTR)
				continue;
			break;
		}
		if (gone) {
			xe_peer_died(xe_domid(), p->remote_dom, p->remote_port);
			drop_conn(xce, p);
			p->dead = 1;
		}
		return (xenevtchn_port_or_error_t)port;
	}
}
