/*
 * lwip_opts.c - --lwip-tap and --lwip-dgram: the context's TCP on an lwIP
 * stack over a TAP device, or over a datagram wire to another conduit
 * process.
 */
#include "cli.h"
#include "common.h"
#ifdef CONDUIT_HAVE_LWIP
#include <conduit/lwip.h>
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* --lwip-tap, --lwip-dgram: the context's TCP on lwIP                  */

/* WHERE,ADDR[/PREFIX][,GW], checked here so that a typo is named as such
 * (and before a TAP device is made or a wire joined). */
struct lwip_spec {
	char buf[PATH_MAX + 64];
	const char *where, *addr, *gw;
};

static bool ipv4_ok(const char *s)
{
	struct in_addr a;
	return inet_pton(AF_INET, s, &a) == 1;
}

static bool spec_parse(struct lwip_spec *sp, const char *opt, const char *what,
                       const char *spec)
{
	if (strlen(spec) >= sizeof(sp->buf)) {
		say("%s: argument too long", opt);
		return false;
	}
	strcpy(sp->buf, spec);
	char *addr = strchr(sp->buf, ',');
	if (addr == NULL || addr == sp->buf || addr[1] == '\0') {
		say("%s: expected %s,ADDR/PREFIX[,GW] (e.g. %s,10.0.0.2/24), "
		    "got '%s'",
		    opt, what, what, spec);
		return false;
	}
	*addr++ = '\0';
	char *gw = strchr(addr, ',');
	if (gw != NULL)
		*gw++ = '\0';
	char ip[INET_ADDRSTRLEN];
	const char *slash = strchr(addr, '/');
	size_t iplen = slash != NULL ? (size_t)(slash - addr) : strlen(addr);
	snprintf(ip, sizeof(ip), "%.*s", (int)iplen, addr);
	if (iplen >= sizeof(ip) || !ipv4_ok(ip)) {
		say("%s: '%.*s' is not an IPv4 address (ADDR/PREFIX, e.g. "
		    "10.0.0.2/24)",
		    opt, (int)iplen, addr);
		return false;
	}
	if (slash != NULL) {
		char *end;
		errno = 0;
		long pfx = strtol(slash + 1, &end, 10);
		if (slash[1] < '0' || slash[1] > '9' || *end != '\0' ||
		    errno != 0 || pfx < 1 || pfx > 32) {
			say("%s: bad prefix '/%s' in '%s' (a length from 1 to "
			    "32)",
			    opt, slash + 1, addr);
			return false;
		}
	}
	if (gw != NULL && !ipv4_ok(gw)) {
		say("%s: gateway '%s' is not an IPv4 address", opt, gw);
		return false;
	}
	sp->where = sp->buf;
	sp->addr = addr;
	sp->gw = gw;
	return true;
}

/*
 * The wire of --lwip-dgram: a SOCK_DGRAM socketpair whose ends are two
 * processes' netifs, so that each Ethernet frame is one datagram.  A
 * socketpair needs no address for either end, and a netif needs a
 * connected socket; the ends are dealt out through a rendezvous socket at
 * PATH.  The first process there makes the pair, keeps one end and listens
 * at PATH; the second connects and is handed the other end (SCM_RIGHTS),
 * after which PATH is removed: a wire joins exactly two processes.  The
 * first one does not wait for the second: frames it sends meanwhile queue
 * in the pair (or are dropped when the queue is full, as on a wire with
 * nobody at the other end), and TCP's retransmissions cover the rest.
 */
struct wire {
	int lfd;   /* rendezvous socket while the other end is unclaimed */
	int spare; /* that other end */
	dev_t dev; /* PATH's identity: remove only our own socket file */
	ino_t ino;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};
static struct wire wire = {.lfd = -1, .spare = -1};

/* How long a joining process waits for its end, without --timeout. */
#define WIRE_WAIT_MS 5000

int wire_fd(void)
{
	return wire.lfd;
}

static void wire_close(void)
{
	struct stat st;
	if (wire.lfd >= 0) {
		if (lstat(wire.path, &st) == 0 && st.st_dev == wire.dev &&
		    st.st_ino == wire.ino)
			unlink(wire.path);
		close(wire.lfd);
		wire.lfd = -1;
	}
	if (wire.spare >= 0) {
		close(wire.spare);
		wire.spare = -1;
	}
}

#ifdef CONDUIT_HAVE_LWIP /* making and joining a wire */
static socklen_t wire_addr(struct sockaddr_un *sa, const char *path)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	memcpy(sa->sun_path, path, strlen(path));
	return (socklen_t)sizeof(*sa);
}

/* Make the pair and listen at path.  The end for our netif, or -1 after
 * saying why; -2 (silently) when another process bound path first. */
static int wire_make(const char *path)
{
	int sp[2];
	if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sp) != 0) {
		say("--lwip-dgram %s: socketpair: %s", path, strerror(errno));
		return -1;
	}
	struct sockaddr_un sa;
	socklen_t len = wire_addr(&sa, path);
	int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	int e = 0;
	if (l < 0) {
		e = errno;
	} else {
		/* The socket file is private to this user: whoever connects
		 * gets a wire into this process's stack. */
		mode_t old = umask(077);
		if (bind(l, (struct sockaddr *)&sa, len) != 0)
			e = errno;
		umask(old);
		struct stat st;
		if (e == 0 && (listen(l, 4) != 0 || lstat(path, &st) != 0))
			e = errno;
		if (e == 0) {
			wire.dev = st.st_dev;
			wire.ino = st.st_ino;
		}
	}
	if (e != 0) {
		if (l >= 0)
			close(l);
		close(sp[0]);
		close(sp[1]);
		if (e == EADDRINUSE)
			return -2;
		say("--lwip-dgram %s: %s", path, strerror(e));
		return -1;
	}
	wire.lfd = l;
	wire.spare = sp[1];
	snprintf(wire.path, sizeof(wire.path), "%s", path);
	return sp[0];
}

/* Connected to the rendezvous socket s: receive our end of the wire. */
static int wire_join(int s, const char *path, int wait_ms)
{
	struct pollfd pf = {.fd = s, .events = POLLIN};
	int r;
	do
		r = poll(&pf, 1, wait_ms);
	while (r < 0 && errno == EINTR);
	if (r == 0) {
		say("--lwip-dgram %s: the process that made the wire did not "
		    "hand it over within %d ms",
		    path, wait_ms);
		return -1;
	}
	char byte;
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct iovec iov = {.iov_base = &byte, .iov_len = 1};
	struct msghdr m = {.msg_iov = &iov,
	                   .msg_iovlen = 1,
	                   .msg_control = ctl.buf,
	                   .msg_controllen = sizeof(ctl.buf)};
	ssize_t n;
	do
		n = recvmsg(s, &m, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	struct cmsghdr *c = n > 0 ? CMSG_FIRSTHDR(&m) : NULL;
	if (c == NULL || c->cmsg_level != SOL_SOCKET ||
	    c->cmsg_type != SCM_RIGHTS ||
	    c->cmsg_len != CMSG_LEN(sizeof(int))) {
		say("--lwip-dgram %s: %s", path,
		    n < 0 ? strerror(errno)
		    : n == 0
		        ? "the wire was taken by another process"
		        : "not a conduit wire (no socket was handed over)");
		return -1;
	}
	int fd;
	memcpy(&fd, CMSG_DATA(c), sizeof(fd));
	int type = 0;
	socklen_t tlen = sizeof(type);
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) != 0 ||
	    type != SOCK_DGRAM) {
		close(fd);
		say("--lwip-dgram %s: not a conduit wire (the socket handed "
		    "over is not a datagram socket)",
		    path);
		return -1;
	}
	return fd;
}

/* Make the wire at path or join the one there.  Our end, or -1. */
static int wire_open(const char *path, int wait_ms, bool verbose)
{
	if (strlen(path) >= sizeof(wire.path)) {
		say("--lwip-dgram %s: path too long (at most %zu bytes)", path,
		    sizeof(wire.path) - 1);
		return -1;
	}
	int refused = 0;
	for (int attempt = 0; attempt < 4; attempt++) {
		struct sockaddr_un sa;
		socklen_t len = wire_addr(&sa, path);
		int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (s < 0) {
			say("--lwip-dgram %s: %s", path, strerror(errno));
			return -1;
		}
		if (connect(s, (struct sockaddr *)&sa, len) == 0) {
			int fd = wire_join(s, path, wait_ms);
			close(s);
			if (fd >= 0 && verbose)
				say("wire %s: joined", path);
			return fd;
		}
		int e = errno;
		close(s);
		struct stat st;
		if (e == ECONNREFUSED && lstat(path, &st) == 0 &&
		    S_ISSOCK(st.st_mode)) {
			/* Nobody listens: a wire whose maker died, or one
			 * between bind() and listen().  Ask twice before
			 * calling it stale. */
			if (refused++ == 0) {
				struct timespec nap = {0, 100000000};
				nanosleep(&nap, NULL);
				continue;
			}
			unlink(path);
			e = ENOENT;
		}
		if (e != ENOENT) {
			say("--lwip-dgram %s: %s", path, strerror(e));
			return -1;
		}
		int fd = wire_make(path);
		if (fd == -2)
			continue; /* another process made it first: join */
		if (fd >= 0 && verbose)
			say("wire %s: made; waiting for the other process",
			    path);
		return fd;
	}
	say("--lwip-dgram %s: could neither make nor join a wire there", path);
	return -1;
}

#endif /* CONDUIT_HAVE_LWIP */

/* The loop saw the rendezvous socket readable: hand the spare end to the
 * process that connected, and stop listening. */
void wire_hand_over(bool verbose)
{
	int c = accept4(wire.lfd, NULL, NULL, SOCK_CLOEXEC);
	if (c < 0)
		return;
	char byte = 'w';
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} ctl;
	memset(&ctl, 0, sizeof(ctl));
	struct iovec iov = {.iov_base = &byte, .iov_len = 1};
	struct msghdr m = {.msg_iov = &iov,
	                   .msg_iovlen = 1,
	                   .msg_control = ctl.buf,
	                   .msg_controllen = sizeof(ctl.buf)};
	struct cmsghdr *h = CMSG_FIRSTHDR(&m);
	h->cmsg_level = SOL_SOCKET;
	h->cmsg_type = SCM_RIGHTS;
	h->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(h), &wire.spare, sizeof(int));
	ssize_t n;
	do
		n = sendmsg(c, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	close(c);
	if (n != 1)
		return; /* that one went away; wait for the next */
	if (verbose)
		say("wire %s: the other process joined", wire.path);
	wire_close();
}

/* The --lwip-* option given, parsed into sp: its name, or NULL after
 * saying what is wrong (a typo is named as such, whatever the build). */
static const char *lwip_opt(const struct opts *o, struct lwip_spec *sp)
{
	bool tap = o->lwip_tap != NULL;
	const char *opt = tap ? "--lwip-tap" : "--lwip-dgram";
	if (!spec_parse(sp, opt, tap ? "NAME" : "PATH",
	                tap ? o->lwip_tap : o->lwip_dgram))
		return NULL;
	return opt;
}

#ifdef CONDUIT_HAVE_LWIP
/* Parse the --lwip-* option, make the stack and its netif, and put ctx
 * on it.  *handle is the stack reference, for lwip_teardown().  Returns 0,
 * or -1 after saying why. */
int lwip_setup(conduit_ctx *ctx, const struct opts *o, void **handle)
{
	bool tap = o->lwip_tap != NULL;
	struct lwip_spec sp;
	const char *opt = lwip_opt(o, &sp);
	if (opt == NULL)
		return -1;
	if (tap && strlen(sp.where) > 15) {
		say("--lwip-tap: interface name '%s' is longer than 15 bytes",
		    sp.where);
		return -1;
	}
	conduit_lwip *st = NULL;
	conduit_lwip_netif *nif = NULL;
	struct conduit_lwip_netif_config cfg = {
	    .ipv4 = sp.addr, .gateway4 = sp.gw, .is_default = 1};
	if (conduit_lwip_stack(&st) != CONDUIT_OK) {
		say("%s: cannot start lwIP", opt);
		return -1;
	}
	int rc;
	if (tap) {
		rc = conduit_lwip_netif_tap(&nif, st, sp.where, &cfg);
	} else {
		int fd = wire_open(
		    sp.where, o->timeout_ms > 0 ? o->timeout_ms : WIRE_WAIT_MS,
		    o->verbose);
		if (fd < 0) {
			conduit_lwip_release(st);
			return -1;
		}
		/* The netif owns fd from here, also on failure. */
		rc = conduit_lwip_netif_dgram(&nif, st, fd, &cfg);
	}
	if (rc != CONDUIT_OK) {
		say("%s: %s", opt, conduit_lwip_error(st));
	} else if ((rc = conduit_ctx_use_lwip(ctx, st)) != CONDUIT_OK) {
		say("%s: %s", opt, conduit_ctx_error(ctx));
	}
	if (rc != CONDUIT_OK) {
		conduit_lwip_release(st);
		wire_close();
		return -1;
	}
	*handle = st;
	return 0;
}

/*
 * lwIP is this process's own TCP: a connection closed a moment ago may
 * still have data and its FIN in lwIP's queues, and nothing but this
 * process will ever send them.  So before exiting, go on driving the stack
 * (bounded, and cut short by a signal) until lwIP holds no connection in
 * its active list, i.e. every closing handshake is over, as the kernel
 * does for a process that exits with data unsent.
 */
#define LINGER_MS 5000
void lwip_linger(conduit_ctx *ctx, void *handle)
{
	uint64_t end = tool_now_ms() + LINGER_MS;
	for (;;) {
		conduit_process(ctx);
		struct conduit_lwip_stats s;
		conduit_lwip_stats(handle, &s);
		uint64_t now = tool_now_ms();
		if ((s.lwip_active == 0 && s.frames == 0) || now >= end)
			return;
		struct pollfd fds[32];
		size_t n = 0;
		int tmo = -1;
		if (conduit_wait_fds(ctx, NULL, 0, fds, 31, &n, &tmo) !=
		    CONDUIT_OK)
			return;
		if (signal_fd() >= 0)
			fds[n++] = (struct pollfd){.fd = signal_fd(),
			                           .events = POLLIN};
		int left = (int)(end - now);
		if (tmo < 0 || tmo > left)
			tmo = left;
		if (poll(fds, (nfds_t)n, tmo) > 0 && signal_fd() >= 0 &&
		    fds[n - 1].revents != 0)
			return;
	}
}

/* After the context is freed: the last reference removes the netif. */
void lwip_teardown(void *handle)
{
	if (handle != NULL)
		conduit_lwip_release(handle);
	wire_close();
}
#else
int lwip_setup(conduit_ctx *ctx, const struct opts *o, void **handle)
{
	(void)ctx;
	(void)handle;
	struct lwip_spec sp;
	const char *opt = lwip_opt(o, &sp);
	if (opt == NULL)
		return -1;
	say("%s: this build has no lwIP (CONDUIT_WITH_LWIP=OFF)", opt);
	return -1;
}

void lwip_linger(conduit_ctx *ctx, void *handle)
{
	(void)ctx;
	(void)handle;
}

void lwip_teardown(void *handle)
{
	(void)handle;
	wire_close();
}
#endif
