/*
 * evtchn.c - libxenevtchn.so.1 of the Xen emulation: event channels
 * between processes playing domains.
 *
 * A port is a SOCK_SEQPACKET Unix socket bound to an abstract name made
 * of the host directory, the domain and the port number (binding the name
 * is what allocates the number).  An unbound port listens; binding an
 * interdomain port connects to it and says which domain and port it is;
 * the listener accepts only the domain the port was offered to, and only
 * once: later connections are closed at once.  A notification is a
 * one-byte message sent without blocking: when the queue is full the
 * peer has notifications pending already, so the new one merges with
 * them, as Xen's pending bit does.
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
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>
#include <xenevtchn.h>

#define XE_MAX_PORT 4095u
#define KIND_LISTEN 1ull
#define KIND_CONN 2ull

struct xe_port {
	uint32_t port;
	uint32_t remote_dom;
	uint32_t remote_port; /* known once connected */
	int lfd;              /* listening socket (unbound ports), or -1 */
	int cfd;              /* the connection, or -1 */
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

/* A socket bound to a free port number of this domain; *port set. */
static int bind_port(uint32_t *port)
{
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	uint32_t self = xe_domid();
	for (uint32_t p = 1; p <= XE_MAX_PORT; p++) {
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
		errno = errno == ECONNREFUSED || errno == ENOENT ? EINVAL : errno;
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

int xenevtchn_notify(xenevtchn_handle *xce, evtchn_port_t port)
{
	struct xe_port *p = find(xce, port);
	if (p == NULL) {
		errno = EINVAL;
		return -1;
	}
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

/* A connection to a listening port: keep it if it comes from the domain
 * the port was offered to and the port is still free. */
static void accept_one(xenevtchn_handle *h, struct xe_port *p)
{
	int fd = accept4(p->lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return;
	struct hello hi;
	struct pollfd pf = {fd, POLLIN, 0};
	/* The hello follows the connect at once. */
	if (p->cfd >= 0 || p->dead || poll(&pf, 1, 1000) != 1 ||
	    recv(fd, &hi, sizeof(hi), 0) != (ssize_t)sizeof(hi) ||
	    hi.domid != p->remote_dom || fcntl(fd, F_SETFL, O_NONBLOCK) < 0 ||
	    watch(h, fd, KIND_CONN, p->port) < 0) {
		close(fd);
		return;
	}
	p->cfd = fd;
	p->remote_port = hi.port;
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
			accept_one(xce, p);
			return (xenevtchn_port_or_error_t)port;
		}
		char buf[256];
		int gone = (ev.events & (EPOLLHUP | EPOLLERR)) != 0;
		for (;;) {
			ssize_t r = recv(p->cfd, buf, sizeof(buf), MSG_DONTWAIT);
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
			epoll_ctl(xce->ep, EPOLL_CTL_DEL, p->cfd, NULL);
			close(p->cfd);
			p->cfd = -1;
			p->dead = 1;
		}
		return (xenevtchn_port_or_error_t)port;
	}
}
