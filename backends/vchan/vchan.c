/*
 * vchan.c - the Xen vchan transport: byte streams between domains over
 * shared-memory rings, using the real libxenvchan.
 *
 * Endpoints.  vchan://DOMID/PORT talks to a domain by id, vchan://NAME/PORT
 * to the domain registered as NAME in XenStore.  The ring's keys live at
 * /local/domain/<server>/data/vchan/<client>/<port>/{ring-ref,
 * event-channel} (written by libxenvchan) plus "conduit-wire" and
 * "claim", ours.
 *
 * Listening.  libxenvchan's server must know its client's domid, so:
 *   vchan://DOMID/PORT  serves that one domain: a ring is always armed
 *                       for it; each client that connects gets it, and a
 *                       fresh ring is armed for the next.
 *   vchan://NAME/PORT   registers NAME for this domain (ocaml-conduit's
 *                       /conduit/NAME = domid) and serves any domain that
 *                       announces itself at /conduit/NAME/<client>/PORT
 *                       (value: its domid; the node must be owned by that
 *                       domain): a ring is armed for each announcer.
 * One libxenvchan server per connection.  libxenvchan's client_init does
 * not check whether a ring already has a client, so a conduit client
 * first takes the ring's "claim" key (empty until then, writable only by
 * the client's domain) in a XenStore transaction, and the server removes
 * the ring's keys as soon as a client is live on it.  Other domains
 * cannot map the ring at all (grants name the one domain); two conduit
 * clients of one domain each get their own ring.
 *
 * Waiting.  Connecting and named listeners watch XenStore (the ring's
 * path, /conduit/NAME): xs_fileno() goes in the waitset and events are
 * taken with xs_check_watch(), which never blocks.  The watch has a
 * handle of its own (real libxenstore gives a watching handle a reader
 * thread, and a transaction started on it fails and closes it); a
 * connecting client also reads the ring's keys every VC_RELOOK_MS, as a
 * backstop for an event that does not come.  XenStore transactions that
 * conflict (EAGAIN) are tried again.
 *
 * Names.  A lookup reads /conduit/NAME and refuses unless the node's
 * owner is the domain its value names, so a domain that writes another's
 * id into a name, or a name node it does not own, redirects nobody.
 *
 * Wires.  vchan has no half-close and no way to tell a clean close from
 * a dead peer (both clear the live flag), so between two conduit ends the
 * stream is framed: a 4-byte little-endian length before each chunk;
 * 0xffffffff is end of stream; a closed ring without it is a reset.  The
 * ends agree through XenStore: the listener writes conduit-wire=1 (before
 * ring-ref) and a conduit client answers with "1" in the claim.  A ring
 * without conduit-wire is a plain libxenvchan server, and a ring that
 * goes live with an empty claim has a plain client: towards those the
 * stream is raw bytes, the live flag going to 0 is the end of stream, and
 * a half-close is refused (CONDUIT_ERR_UNSUPPORTED).
 *
 * libxenvchan_wait() blocks in the event channel, so it is called only
 * after poll says the event descriptor is readable; data already in the
 * ring is pending work, not something to wait for.
 *
 * libxenvchan builds "<path>/event-channel" in a 64-byte buffer and cuts
 * longer paths silently: such paths are refused here first.
 */
#include "vcpriv.h"

#include <conduit/vchan.h>
#include <errno.h>
#include <libxenvchan.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xenstore.h>

#define VC_EOF_MARK 0xffffffffu
#define VC_HDR      4u
/* libxenvchan's own limit on a ring (MAX_RING_SIZE). */
#define VC_RING_MAX (1u << 20)
/* libxenvchan's key buffer, less "/event-channel" and the NUL. */
#define VC_XS_BUF   64
#define VC_PATH_MAX (VC_XS_BUF - sizeof("/event-channel"))
/* How often XenStore is polled while connecting or listening, where a
 * watch could not be set. */
#define VC_POLL_MS 5
/* While connecting with a watch, how often the ring's keys are read
 * anyway: a backstop for a watch event that does not come (seen on real
 * Xen with two clients of one domain connecting at once), far from the
 * 5 ms polling the watch replaces. */
#define VC_RELOOK_MS 500
/* How many times a XenStore transaction that conflicted (EAGAIN) is
 * tried again at once. */
#define VC_TX_TRIES 8
/* How long a client waits for a ring when the context sets no timeout. */
#define VC_CONNECT_MS 10000
#define VC_ARMED_MAX  16
/* How soon a client tries again a ring libxenvchan could not map. */
#define VC_RETRY_MS 50
/* The listener's advertisement beside ring-ref, and the framed wire's
 * version it offers; a conduit client answers with that version in the
 * claim key (see the top of the file). */
#define VC_ADVERT "conduit-wire"
#define VC_WIRE   "1"

struct vc_flow {
	conduit_flow base;
	struct libxenvchan *ctrl;
	int fd;
	uint32_t rleft; /* payload bytes left in the current record */
	bool plain;     /* raw libxenvchan bytes: the peer is not conduit */
	bool peer_eof;
	bool eof_wanted, eof_sent;
	/* while connecting */
	struct xs_handle *xs;
	struct xs_handle *xw; /* the watch's own handle, or NULL */
	int xs_fd;            /* its watch descriptor, or -1: poll */
	unsigned server;
	char path[VC_XS_BUF];
	char announce[160];
	uint64_t deadline;
	bool saw_ring;
	/* libxenvchan could not map the ring found (keys left by a server
	 * that is gone): errno then, and when to look again. */
	int init_errno;
	uint64_t retry_at;
	/* What the last look at the ring's keys found claimable, and
	 * whether the watch fired since (then it is looked at again). */
	bool ring_free, ring_changed;
	uint64_t relook_at; /* with a watch: the next look anyway */
};

struct vc_ring {
	struct libxenvchan *ctrl;
	unsigned peer;
	char path[VC_XS_BUF];
};

struct vc_listener {
	conduit_listener base;
	struct xs_handle *xs;
	struct xs_handle *xw; /* a named listener's watch handle, or NULL */
	int xs_fd;            /* its watch descriptor, or -1 */
	unsigned self;
	bool named, registered;
	unsigned direct_peer;
	char name[64];
	char port[64];
	size_t read_min, write_min;
	size_t narmed;
	struct vc_ring armed[VC_ARMED_MAX];
};

extern const struct conduit_backend cd_backend_vchan;

/* ---- XenStore helpers ------------------------------------------------ */

struct xs_handle *vc_open_xs(conduit_ctx *ctx, const char *what)
{
	struct xs_handle *xs = xs_open(0);
	if (xs == NULL)
		conduit_ctx_fail(ctx, CONDUIT_ERR_UNSUPPORTED,
		                 "%s: cannot reach XenStore: %s (not a Xen "
		                 "domain, or no emulation configured)",
		                 what, strerror(errno));
	return xs;
}

int vc_read_domid(struct xs_handle *xs, unsigned *out)
{
	char *v = xs_read(xs, XBT_NULL, "domid", NULL);
	if (v == NULL)
		return -1;
	char *end;
	unsigned long d = strtoul(v, &end, 10);
	int ok = *v != '\0' && *end == '\0' && d <= 32751;
	free(v);
	if (!ok)
		return -1;
	*out = (unsigned)d;
	return 0;
}

/* Consume the watch events that have come (never blocks); true if
 * there were any, or if the watch is gone (its handle's reader failed:
 * the caller then polls, *fd being -1).  What changed is then looked at
 * afresh. */
static bool drain_watch(struct xs_handle **xw, int *fd)
{
	bool any = false;
	char **ev;
	errno = 0;
	while ((ev = xs_check_watch(*xw)) != NULL) {
		free(ev);
		any = true;
		errno = 0;
	}
	if (errno != EAGAIN && errno != 0) {
		xs_close(*xw);
		*xw = NULL;
		*fd = -1;
		any = true;
	}
	return any;
}

/* Watch path (token: what for) on a handle of its own, *xw; the
 * descriptor to sleep on, or -1 when XenStore cannot watch it (the
 * caller then polls).  Its own handle: real libxenstore hands a watching
 * handle to a reader thread, and the reads and transactions of
 * connecting and arming stay on a handle without one. */
static int watch_fd(struct xs_handle **xw, const char *path, const char *token)
{
	*xw = xs_open(0);
	if (*xw == NULL)
		return -1;
	int fd = xs_fileno(*xw);
	if (fd < 0 || !xs_watch(*xw, path, token)) {
		xs_close(*xw);
		*xw = NULL;
		return -1;
	}
	return fd;
}

/* The ring path, or a PATH_TOO_LONG message. */
static int ring_path(conduit_ctx *ctx, char *buf, unsigned server,
                     unsigned client, const char *port, const char *uri)
{
	int n = snprintf(buf, VC_XS_BUF, "/local/domain/%u/data/vchan/%u/%s",
	                 server, client, port);
	if (n < 0 || (size_t)n > VC_PATH_MAX)
		return conduit_ctx_fail(
		    ctx, CONDUIT_ERR_PATH_TOO_LONG,
		    "%s: XenStore path "
		    "/local/domain/%u/data/vchan/%u/%s is %d "
		    "bytes; libxenvchan allows %zu (shorten "
		    "the port name)",
		    uri, server, client, port, n, (size_t)VC_PATH_MAX);
	return CONDUIT_OK;
}

/* What the ring at path offers a client, read in transaction t. */
enum ring_look {
	RING_NONE,    /* no ring-ref (yet) */
	RING_TAKEN,   /* a conduit ring another client has claimed */
	RING_CONDUIT, /* a conduit ring, free: claim it, framed */
	RING_PLAIN,   /* no advertisement: a plain libxenvchan server */
};

static enum ring_look look_ring(struct xs_handle *xs, xs_transaction_t t,
                                const char *path)
{
	char key[VC_XS_BUF + 16];
	snprintf(key, sizeof(key), "%s/ring-ref", path);
	char *v = xs_read(xs, t, key, NULL);
	if (v == NULL)
		return RING_NONE;
	free(v);
	snprintf(key, sizeof(key), "%s/" VC_ADVERT, path);
	v = xs_read(xs, t, key, NULL);
	if (v == NULL)
		return RING_PLAIN;
	free(v);
	snprintf(key, sizeof(key), "%s/claim", path);
	v = xs_read(xs, t, key, NULL);
	bool free_ring = v != NULL && v[0] == '\0';
	free(v);
	return free_ring ? RING_CONDUIT : RING_TAKEN;
}

struct vc_state *vc_state_of(conduit_ctx *ctx)
{
	const struct cd_registration *r = cd_find_transport(ctx, "vchan");
	if (r == NULL || r->be != &cd_backend_vchan)
		return NULL;
	return r->state;
}

/* ---- Flows -------------------------------------------------------- */

static struct vc_flow *vf_of(conduit_flow *f)
{
	return (struct vc_flow *)f;
}

/* Consume events, but only when the descriptor says there are some:
 * libxenvchan_wait() would block otherwise.  Done only on the way to a
 * "would block" (and at close), not on every read and write: events that
 * arrive meanwhile just make the next sleep return at once. */
static void drain_events(struct vc_flow *vf)
{
	struct pollfd p = {vf->fd, POLLIN, 0};
	/* Each turn consumes one port's events; a server has two (the
	 * channel and the port it listened on). */
	for (int i = 0; i < 8 && poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
	     i++) {
		if (libxenvchan_wait(vf->ctrl) < 0)
			break;
		p.revents = 0;
	}
}

/*
 * How much the rings hold, read from the shared indexes without asking
 * the peer for a notification.  libxenvchan_data_ready() and
 * libxenvchan_buffer_space() ask every time, and then the peer sends an
 * event after each of its operations: a system call on each side per
 * read or write.  Notifications are asked for only on the way to sleep
 * (before vf_read or vf_writev says "would block", and in vf_wait), each
 * time followed by another look, since what the peer did before the
 * request was not signalled.
 * Indexes that make no sense (a hostile peer) read as an empty ring and
 * a full one, as libxenvchan treats them.
 */
static uint32_t vc_ready(const struct libxenvchan *c)
{
	uint32_t size = 1u << c->read.order;
	uint32_t n = __atomic_load_n(&c->read.shr->prod, __ATOMIC_ACQUIRE) -
	             c->read.shr->cons;
	return n > size ? 0 : n;
}

static uint32_t vc_space(const struct libxenvchan *c)
{
	uint32_t size = 1u << c->write.order;
	uint32_t used = c->write.shr->prod -
	                __atomic_load_n(&c->write.shr->cons, __ATOMIC_ACQUIRE);
	return used > size ? 0 : size - used;
}

/* Enough in the ring for the next read to return something. */
static bool vc_readable(const struct vc_flow *vf)
{
	uint32_t r = vc_ready(vf->ctrl);
	return vf->rleft > 0 || vf->plain ? r > 0 : r >= VC_HDR;
}

/* Enough room in the ring for the next write to put something. */
static bool vc_writable(const struct vc_flow *vf)
{
	return vc_space(vf->ctrl) > (vf->plain ? 0 : VC_HDR);
}

static int try_send_eof(struct vc_flow *vf)
{
	if (!vf->eof_wanted || vf->eof_sent || vf->plain)
		return CONDUIT_OK;
	if (!libxenvchan_is_open(vf->ctrl)) {
		vf->eof_sent = true; /* nobody left to tell */
		return CONDUIT_OK;
	}
	if (libxenvchan_buffer_space(vf->ctrl) < (int)VC_HDR)
		return CONDUIT_WANT_WRITE;
	uint32_t m = VC_EOF_MARK;
	if (libxenvchan_write(vf->ctrl, &m, VC_HDR) != (int)VC_HDR)
		return conduit_flow_fail(
		    &vf->base, CONDUIT_ERR_RESET,
		    "shutdown %s: cannot write to the ring", vf->base.uri);
	vf->eof_sent = true;
	return CONDUIT_OK;
}

static int peer_gone(struct vc_flow *vf, const char *op)
{
	/* Towards a plain peer, closing is how its stream ends. */
	if (vf->peer_eof || vf->plain)
		return CONDUIT_EOF;
	return conduit_flow_fail(&vf->base, CONDUIT_ERR_RESET,
	                         "%s %s: the peer domain closed the vchan "
	                         "without ending the stream (it died or was "
	                         "killed)",
	                         op, vf->base.uri);
}

/* A record header just taken from the ring: start the record, or the
 * end of stream.  CONDUIT_ERR_RESET on a length that cannot be. */
static int start_record(struct vc_flow *vf, const unsigned char *h)
{
	uint32_t n = (uint32_t)h[0] | (uint32_t)h[1] << 8 |
	             (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24;
	if (n == VC_EOF_MARK) {
		vf->peer_eof = true;
		return CONDUIT_OK;
	}
	if (n == 0 || n > VC_RING_MAX)
		return conduit_flow_fail(&vf->base, CONDUIT_ERR_RESET,
		                         "read %s: malformed record (length "
		                         "%u) from the peer",
		                         vf->base.uri, n);
	vf->rleft = n;
	return CONDUIT_OK;
}

/*
 * Copy out the payload of as many records as the ring holds and len
 * takes; *got may be 0.  Stops at the end mark (peer_eof).  Every copy
 * is at most what the ring holds, so libxenvchan never asks the writer
 * for a notification here.  The rest of a record and the next header are
 * taken in one copy when the buffer has room for both (the header lands
 * where the next payload then goes): one libxenvchan call per record
 * rather than two.  CONDUIT_ERR_RESET on a malformed record.
 */
static int take(struct vc_flow *vf, unsigned char *out, size_t len, size_t *got)
{
	size_t done = 0;
	int rc = CONDUIT_OK;
	uint32_t ready = vc_ready(vf->ctrl);
	if (vf->plain) {
		/* Raw bytes: as much as the ring holds. */
		size_t want = len < ready ? len : ready;
		int n = want > 0 ? libxenvchan_read(vf->ctrl, out, want) : 0;
		*got = n > 0 ? (size_t)n : 0;
		return CONDUIT_OK;
	}
	while (done < len && !vf->peer_eof && rc == CONDUIT_OK) {
		if (vf->rleft == 0) {
			if (ready < VC_HDR)
				ready = vc_ready(vf->ctrl);
			unsigned char h[VC_HDR];
			if (ready < VC_HDR ||
			    libxenvchan_recv(vf->ctrl, h, VC_HDR) !=
			        (int)VC_HDR)
				break;
			ready -= VC_HDR;
			rc = start_record(vf, h);
			continue;
		}
		if (ready == 0)
			ready = vc_ready(vf->ctrl);
		size_t want = len - done;
		if (want > vf->rleft)
			want = vf->rleft;
		if (want > ready)
			want = ready;
		if (want == 0)
			break;
		size_t ask = want;
		if (want == vf->rleft && ready - want >= VC_HDR &&
		    len - done - want >= VC_HDR)
			ask += VC_HDR;
		int n = libxenvchan_read(vf->ctrl, out + done, ask);
		if (n <= 0)
			break;
		ready = (uint32_t)n < ready ? ready - (uint32_t)n : 0;
		if ((size_t)n > want) {
			/* Only a peer that moved its index back gives
			 * less than the ring held, cutting a header. */
			if ((size_t)n != ask)
				return conduit_flow_fail(
				    &vf->base, CONDUIT_ERR_RESET,
				    "read %s: the peer moved the ring's "
				    "index backwards",
				    vf->base.uri);
			done += want;
			vf->rleft = 0;
			rc = start_record(vf, out + done);
			continue;
		}
		vf->rleft -= (uint32_t)n;
		done += (size_t)n;
	}
	*got = done;
	return rc;
}

static int vf_read(conduit_flow *f, void *buf, size_t len, size_t *nread)
{
	struct vc_flow *vf = vf_of(f);
	if (vf->eof_wanted && !vf->eof_sent)
		try_send_eof(vf);
	if (vf->peer_eof)
		return CONDUIT_EOF;
	size_t got = 0;
	int rc = take(vf, buf, len, &got);
	if (rc == CONDUIT_OK && got == 0 && !vf->peer_eof) {
		/* On the way to "would block": consume the events that
		 * told of what was taken before, ask the writer to signal
		 * its next write, then look again (see vc_ready). */
		drain_events(vf);
		libxenvchan_data_ready(vf->ctrl);
		rc = take(vf, buf, len, &got);
		if (rc == CONDUIT_OK && got == 0 && !vf->peer_eof &&
		    !libxenvchan_is_open(vf->ctrl))
			/* Closed: but what it wrote before is ours. */
			rc = take(vf, buf, len, &got);
	}
	if (rc != CONDUIT_OK)
		return rc;
	if (got > 0) {
		*nread = got;
		return CONDUIT_OK;
	}
	if (vf->peer_eof)
		return CONDUIT_EOF;
	if (!libxenvchan_is_open(vf->ctrl)) {
		if (vf->plain)
			vf->peer_eof = true;
		return peer_gone(vf, "read");
	}
	return CONDUIT_WANT_READ;
}

/* Raw bytes to a plain peer: as much as the ring has room for. */
static int write_plain(struct vc_flow *vf, const struct conduit_iov *iov,
                       size_t iovcnt, size_t *nwritten)
{
	uint32_t space = vc_space(vf->ctrl);
	if (space == 0) {
		drain_events(vf);
		libxenvchan_buffer_space(vf->ctrl);
		space = vc_space(vf->ctrl);
		if (space == 0)
			return libxenvchan_is_open(vf->ctrl)
			           ? CONDUIT_WANT_WRITE
			           : conduit_flow_fail(
			                 &vf->base, CONDUIT_ERR_CLOSED,
			                 "write %s: the peer "
			                 "domain closed the vchan",
			                 vf->base.uri);
	}
	size_t done = 0;
	for (size_t i = 0; i < iovcnt && done < space; i++) {
		size_t k = iov[i].len;
		if (k > space - done)
			k = space - done;
		if (k == 0)
			continue;
		/* The only writer, and the room is there: all of it goes. */
		if (libxenvchan_write(vf->ctrl, iov[i].base, k) != (int)k)
			return conduit_flow_fail(&vf->base, CONDUIT_ERR_CLOSED,
			                         "write %s: the peer domain "
			                         "closed the vchan",
			                         vf->base.uri);
		done += k;
	}
	*nwritten = done;
	return CONDUIT_OK;
}

static int vf_writev(conduit_flow *f, const struct conduit_iov *iov,
                     size_t iovcnt, size_t *nwritten)
{
	struct vc_flow *vf = vf_of(f);
	if (!libxenvchan_is_open(vf->ctrl))
		return conduit_flow_fail(f,
		                         vf->peer_eof || vf->plain
		                             ? CONDUIT_ERR_CLOSED
		                             : CONDUIT_ERR_RESET,
		                         "write %s: the peer domain closed the "
		                         "vchan",
		                         f->uri);
	if (vf->plain)
		return write_plain(vf, iov, iovcnt, nwritten);
	uint32_t space = vc_space(vf->ctrl);
	if (space <= VC_HDR) {
		/* On the way to "would block": as in vf_read, for room. */
		drain_events(vf);
		libxenvchan_buffer_space(vf->ctrl);
		space = vc_space(vf->ctrl);
		if (space <= VC_HDR)
			return libxenvchan_is_open(vf->ctrl)
			           ? CONDUIT_WANT_WRITE
			           : peer_gone(vf, "write");
	}
	size_t total = 0;
	for (size_t i = 0; i < iovcnt; i++)
		total += iov[i].len;
	size_t n = total < space - VC_HDR ? total : space - VC_HDR;
	/* The header and the start of the payload go in one ring write:
	 * one index update and at most one event, and a reader woken by
	 * it finds payload, not a bare header. */
	unsigned char stage[4096];
	stage[0] = (unsigned char)n;
	stage[1] = (unsigned char)(n >> 8);
	stage[2] = (unsigned char)(n >> 16);
	stage[3] = (unsigned char)(n >> 24);
	size_t staged = VC_HDR, done = 0, i = 0, off = 0;
	while (i < iovcnt && done < n && staged < sizeof(stage)) {
		size_t k = iov[i].len - off;
		if (k > n - done)
			k = n - done;
		if (k > sizeof(stage) - staged)
			k = sizeof(stage) - staged;
		if (k > 0) /* an empty piece may have no base */
			memcpy(stage + staged,
			       (const unsigned char *)iov[i].base + off, k);
		staged += k;
		done += k;
		off += k;
		if (off == iov[i].len) {
			i++;
			off = 0;
		}
	}
	/* We are the only writer and the space is there: every write
	 * below goes through whole. */
	if (libxenvchan_write(vf->ctrl, stage, staged) != (int)staged)
		return peer_gone(vf, "write");
	for (; i < iovcnt && done < n; i++, off = 0) {
		size_t k = iov[i].len - off;
		if (k > n - done)
			k = n - done;
		if (k == 0)
			continue;
		if (libxenvchan_write(vf->ctrl,
		                      (const unsigned char *)iov[i].base + off,
		                      k) != (int)k)
			return peer_gone(vf, "write");
		done += k;
	}
	*nwritten = n;
	return CONDUIT_OK;
}

static int vf_shutdown(conduit_flow *f, unsigned how)
{
	struct vc_flow *vf = vf_of(f);
	if ((how & CONDUIT_SHUT_WR) && vf->plain)
		return conduit_flow_fail(
		    f, CONDUIT_ERR_UNSUPPORTED,
		    "shutdown %s: the peer speaks plain libxenvchan, which "
		    "has no half-close; only closing the flow ends the "
		    "stream",
		    f->uri);
	if (how & CONDUIT_SHUT_WR) {
		vf->eof_wanted = true;
		int rc = try_send_eof(vf);
		if (rc != CONDUIT_OK && rc != CONDUIT_WANT_WRITE)
			return rc;
		/* No room yet: sent by a later read, write or close. */
	}
	return CONDUIT_OK;
}

static int vf_close(conduit_flow *f)
{
	struct vc_flow *vf = vf_of(f);
	drain_events(vf);
	vf->eof_wanted = true;
	return try_send_eof(vf);
}

static void vf_destroy(conduit_flow *f)
{
	struct vc_flow *vf = vf_of(f);
	if (vf->ctrl != NULL)
		libxenvchan_close(vf->ctrl);
	if (vf->announce[0] != '\0' && vf->xs != NULL)
		xs_rm(vf->xs, XBT_NULL, vf->announce);
	if (vf->xs != NULL)
		xs_close(vf->xs);
	if (vf->xw != NULL)
		xs_close(vf->xw);
	conduit_flow_fini(f);
	free(vf);
}

/* Connecting: whether a ring is there to take.  With a watch, the keys
 * are read again only when it fired (XenStore is not read on every wake
 * of the caller's loop); without one, every time. */
static bool ring_claimable(struct vc_flow *vf)
{
	if (vf->xs_fd >= 0 && drain_watch(&vf->xw, &vf->xs_fd))
		vf->ring_changed = true;
	uint64_t now = conduit_now_ms();
	if (now >= vf->relook_at) {
		vf->ring_changed = true;
		vf->relook_at = now + VC_RELOOK_MS;
	}
	if (vf->xs_fd < 0 || vf->ring_changed) {
		enum ring_look look = look_ring(vf->xs, XBT_NULL, vf->path);
		vf->ring_free = look == RING_CONDUIT || look == RING_PLAIN;
		vf->ring_changed = false;
	}
	return vf->ring_free && conduit_now_ms() >= vf->retry_at;
}

static void vf_wait(conduit_flow *f, unsigned interest,
                    struct conduit_waitset *ws)
{
	struct vc_flow *vf = vf_of(f);
	(void)interest;
	if (vf->ctrl == NULL) {
		/* Connecting: a watch on the ring's keys says when to look
		 * again (events drained here, or the descriptor would stay
		 * readable); without one, XenStore is polled. */
		bool claimable = ring_claimable(vf);
		uint64_t at = vf->deadline;
		if (vf->xs_fd >= 0) {
			conduit_waitset_fd(ws, vf->xs_fd, CONDUIT_POLLIN);
			if (vf->relook_at < at)
				at = vf->relook_at;
		} else if (conduit_now_ms() + VC_POLL_MS < at) {
			at = conduit_now_ms() + VC_POLL_MS;
		}
		if (claimable)
			at = 0;
		else if (vf->retry_at > conduit_now_ms() && vf->retry_at < at)
			at = vf->retry_at;
		conduit_waitset_deadline(ws, at);
		return;
	}
	/* About to sleep: ask the peer to signal what we wait for (these
	 * calls do), then look again, since what it did before the request
	 * was not signalled; if that is already here, do not sleep. */
	bool now = !libxenvchan_is_open(vf->ctrl);
	/* The end of the peer's stream is news for a reader only: a writer
	 * still waits for room, which comes when the peer reads or closes
	 * (both signalled). */
	if (interest & CONDUIT_POLLIN) {
		libxenvchan_data_ready(vf->ctrl);
		now = now || vf->peer_eof || vc_readable(vf);
	}
	if (interest & CONDUIT_POLLOUT) {
		libxenvchan_buffer_space(vf->ctrl);
		now = now || vc_writable(vf);
	}
	conduit_waitset_fd(ws, vf->fd, CONDUIT_POLLIN);
	if (now)
		conduit_waitset_deadline(ws, 0);
}

static unsigned vf_pending(conduit_flow *f, unsigned interest)
{
	struct vc_flow *vf = vf_of(f);
	unsigned r = 0;
	if (vf->ctrl == NULL) {
		/* Connecting: ready when a free ring has appeared (the
		 * handshake then claims it) or the time is up. */
		if (conduit_now_ms() >= vf->deadline)
			return interest;
		return ring_claimable(vf) ? interest : 0;
	}
	/* Only a look: notifications are asked for in vf_wait. */
	bool open = libxenvchan_is_open(vf->ctrl) != 0;
	if ((interest & CONDUIT_POLLIN) &&
	    (vf->peer_eof || !open || vc_readable(vf)))
		r |= CONDUIT_POLLIN;
	if ((interest & CONDUIT_POLLOUT) && (!open || vc_writable(vf)))
		r |= CONDUIT_POLLOUT;
	return r;
}

static int vf_fd(const conduit_flow *f)
{
	const struct vc_flow *vf = (const struct vc_flow *)f;
	return vf->ctrl != NULL ? vf->fd : -1;
}

static int vf_unread(conduit_flow *f, size_t *n)
{
	struct vc_flow *vf = vf_of(f);
	*n = vf->ctrl != NULL ? vc_ready(vf->ctrl) : 0;
	return CONDUIT_OK;
}

/* Connecting: wait for a ring for us, claim it, map it. */
static int vf_handshake(conduit_flow *f)
{
	struct vc_flow *vf = vf_of(f);
	if (vf->ctrl != NULL)
		return CONDUIT_OK;
	uint64_t now = conduit_now_ms();
	if (now < vf->retry_at && now < vf->deadline)
		return CONDUIT_WANT_WRITE;
	char key[VC_XS_BUF + 16];
	snprintf(key, sizeof(key), "%s/claim", vf->path);
	bool won = false;
	enum ring_look look = RING_NONE;
	/* Look and claim in one transaction: two clients of one domain
	 * must not both take one ring.  A claim counts once committed; a
	 * transaction that conflicted (EAGAIN) is tried again. */
	for (int tries = 0; tries < VC_TX_TRIES; tries++) {
		xs_transaction_t t = xs_transaction_start(vf->xs);
		if (t == XBT_NULL)
			break;
		look = look_ring(vf->xs, t, vf->path);
		won = false;
		if (look == RING_CONDUIT)
			won =
			    xs_write(vf->xs, t, key, VC_WIRE, strlen(VC_WIRE));
		else if (look == RING_PLAIN)
			won = true; /* nothing to claim: the raw wire */
		bool commit = look == RING_CONDUIT && won;
		if (xs_transaction_end(vf->xs, t, !commit) || !commit)
			break;
		won = false;
		if (errno != EAGAIN)
			break;
	}
	if (look != RING_NONE)
		vf->saw_ring = true;
	vf->plain = look == RING_PLAIN;
	/* Not taken: nothing to take until the watch fires again (or, on
	 * failure below, the retry time). */
	vf->ring_free = false;
	if (!won) {
		if (conduit_now_ms() < vf->deadline)
			return CONDUIT_WANT_WRITE;
		if (vf->init_errno != 0)
			return conduit_flow_fail(
			    f, CONDUIT_ERR_REFUSED,
			    "connect %s: libxenvchan could not set up the "
			    "ring at %s: %s (keys left by a server that is "
			    "gone?)",
			    f->uri, vf->path, strerror(vf->init_errno));
		if (!vf->saw_ring)
			return conduit_flow_fail(
			    f, CONDUIT_ERR_REFUSED,
			    "connect %s: no vchan server for "
			    "this domain on that port (no "
			    "ring at %s)",
			    f->uri, vf->path);
		return conduit_flow_fail(f, CONDUIT_ERR_TIMED_OUT,
		                         "connect %s: timed out waiting for a "
		                         "free ring at %s",
		                         f->uri, vf->path);
	}
	vf->ctrl = libxenvchan_client_init(NULL, (int)vf->server, vf->path);
	if (vf->ctrl == NULL) {
		/* Keys a server left when it went away name a ring that is
		 * no more; the next server writes new ones.  Until the
		 * deadline, try again (a claimed ring is then "taken", and
		 * the watch tells when it is written anew). */
		vf->init_errno = errno;
		now = conduit_now_ms();
		if (now < vf->deadline) {
			vf->retry_at = now + VC_RETRY_MS;
			vf->ring_changed = true; /* look again then */
			return CONDUIT_WANT_WRITE;
		}
		return conduit_flow_fail(
		    f, CONDUIT_ERR_REFUSED,
		    "connect %s: libxenvchan could not set "
		    "up the ring at %s: %s",
		    f->uri, vf->path, strerror(vf->init_errno));
	}
	vf->ctrl->blocking = 0;
	vf->fd = libxenvchan_fd_for_select(vf->ctrl);
	if (vf->announce[0] != '\0')
		xs_rm(vf->xs, XBT_NULL, vf->announce);
	vf->announce[0] = '\0';
	xs_close(vf->xs);
	vf->xs = NULL;
	if (vf->xw != NULL)
		xs_close(vf->xw);
	vf->xw = NULL;
	vf->xs_fd = -1;
	if (conduit_observed(f->ctx))
		conduit_emit(f->ctx, CONDUIT_PHASE_CONNECTED, CONDUIT_OK,
		             f->uri, vf->path, f);
	return CONDUIT_OK;
}

static const struct conduit_flow_ops vc_flow_ops = {
    .name = "vchan",
    .handshake = vf_handshake,
    .read = vf_read,
    .writev = vf_writev,
    .shutdown = vf_shutdown,
    .close = vf_close,
    .destroy = vf_destroy,
    .wait = vf_wait,
    .pending = vf_pending,
    .fd = vf_fd,
    .unread = vf_unread,
};

static struct vc_flow *new_flow(conduit_ctx *ctx, const char *uri)
{
	struct vc_flow *vf = calloc(1, sizeof(*vf));
	if (vf == NULL || conduit_flow_init(&vf->base, &vc_flow_ops, ctx,
	                                    uri) != CONDUIT_OK) {
		free(vf);
		conduit_ctx_fail(ctx, CONDUIT_ERR_NOMEM,
		                 "vchan: out of memory");
		return NULL;
	}
	vf->fd = -1;
	vf->xs_fd = -1;
	return vf;
}

static int vc_connect(void *state, conduit_ctx *ctx, const conduit_endpoint *ep,
                      conduit_flow **out)
{
	(void)state;
	if (conduit_endpoint_option(ep, "read-ring") != NULL ||
	    conduit_endpoint_option(ep, "write-ring") != NULL)
		return conduit_ctx_fail(ctx, CONDUIT_ERR_OPTION,
		                        "connect %s: ring sizes are chosen by "
		                        "the listening side",
		                        cd_endpoint_shown(ep));
	struct xs_handle *xs = vc_open_xs(ctx, cd_endpoint_shown(ep));
	if (xs == NULL)
		return CONDUIT_ERR_UNSUPPORTED;
	unsigned self, server;
	int rc = CONDUIT_OK;
	if (vc_read_domid(xs, &self) < 0) {
		xs_close(xs);
		return conduit_ctx_fail(
		    ctx, CONDUIT_ERR_UNSUPPORTED,
		    "connect %s: this domain's id is not in "
		    "XenStore",
		    cd_endpoint_shown(ep));
	}
	bool named = !vc_is_domid(ep->host);
	if (named)
		rc = vc_lookup(ctx, xs, ep->host, &server);
	else
		server = (unsigned)strtoul(ep->host, NULL, 10);
	struct vc_flow *vf = NULL;
	char path[VC_XS_BUF];
	if (rc == CONDUIT_OK)
		rc = ring_path(ctx, path, server, self, ep->path,
		               cd_endpoint_shown(ep));
	if (rc == CONDUIT_OK && (vf = new_flow(ctx, ep->uri)) == NULL)
		rc = CONDUIT_ERR_NOMEM;
	if (rc != CONDUIT_OK) {
		xs_close(xs);
		return rc;
	}
	memcpy(vf->path, path, sizeof(path));
	vf->xs = xs;
	/* Fires when the listener writes or removes the ring's keys. */
	vf->xs_fd = watch_fd(&vf->xw, path, "ring");
	vf->server = server;
	uint32_t ms =
	    ctx->connect_timeout_ms ? ctx->connect_timeout_ms : VC_CONNECT_MS;
	vf->deadline = conduit_now_ms() + ms;
	if (named) {
		/* Announce: /conduit/SERVER/CLIENT/PORT = our domid. */
		struct vc_state *st = vc_state_of(ctx);
		char me[64], val[16];
		if (st != NULL && st->name[0] != '\0')
			snprintf(me, sizeof(me), "%s", st->name);
		else
			snprintf(me, sizeof(me), "dom%u", self);
		snprintf(vf->announce, sizeof(vf->announce),
		         "/conduit/%s/%s/%s", ep->host, me, ep->path);
		snprintf(val, sizeof(val), "%u", self);
		if (!xs_write(xs, XBT_NULL, vf->announce, val,
		              (unsigned)strlen(val))) {
			int e = errno;
			vf->announce[0] = '\0';
			vf_destroy(&vf->base);
			return conduit_ctx_fail(
			    ctx,
			    e == EACCES ? CONDUIT_ERR_PERMISSION
			                : CONDUIT_ERR_SYSTEM,
			    "connect %s: cannot announce this "
			    "domain under /conduit/%s: %s",
			    cd_endpoint_shown(ep), ep->host, strerror(e));
		}
	}
	if (conduit_observed(ctx))
		conduit_emit(ctx, CONDUIT_PHASE_CONNECTING, CONDUIT_OK,
		             cd_endpoint_shown(ep), vf->path, &vf->base);
	*out = &vf->base;
	return CONDUIT_OK;
}

/* ---- Listeners ------------------------------------------------------ */

static struct vc_listener *vl_of(conduit_listener *l)
{
	return (struct vc_listener *)l;
}

/* Arm a server ring for domain peer; false (message on l) on failure. */
static int arm(struct vc_listener *vl, unsigned peer)
{
	if (vl->narmed == VC_ARMED_MAX)
		return CONDUIT_OK; /* others wait for a slot */
	for (size_t i = 0; i < vl->narmed; i++)
		if (vl->armed[i].peer == peer)
			return CONDUIT_OK;
	struct vc_ring *r = &vl->armed[vl->narmed];
	int rc = ring_path(vl->base.ctx, r->path, vl->self, peer, vl->port,
	                   vl->base.uri);
	if (rc != CONDUIT_OK)
		return conduit_listener_fail(&vl->base, rc, "%s",
		                             conduit_ctx_error(vl->base.ctx));
	/* Before the ring: the advertisement (readable by the peer), and
	 * the claim key, empty, writable by the peer domain only.  A
	 * client that finds ring-ref finds them too. */
	char key[VC_XS_BUF + 16];
	struct xs_permissions ad[2] = {{vl->self, XS_PERM_NONE},
	                               {peer, XS_PERM_READ}};
	struct xs_permissions cl[2] = {{vl->self, XS_PERM_NONE},
	                               {peer, XS_PERM_READ | XS_PERM_WRITE}};
	bool ok = false;
	int e = 0;
	/* A transaction that conflicted (EAGAIN: another listener of this
	 * domain wrote beside it meanwhile) is tried again. */
	for (int tries = 0; tries < VC_TX_TRIES && !ok; tries++) {
		xs_transaction_t t = xs_transaction_start(vl->xs);
		if (t == XBT_NULL) {
			e = errno;
			break;
		}
		/* Keys a server of this path left when it went away go
		 * first: a client must not find a new claim beside an old
		 * ring. */
		xs_rm(vl->xs, t, r->path);
		snprintf(key, sizeof(key), "%s/" VC_ADVERT, r->path);
		ok = xs_write(vl->xs, t, key, VC_WIRE, strlen(VC_WIRE)) &&
		     xs_set_permissions(vl->xs, t, key, ad, 2);
		snprintf(key, sizeof(key), "%s/claim", r->path);
		ok = ok && xs_write(vl->xs, t, key, "", 0) &&
		     xs_set_permissions(vl->xs, t, key, cl, 2);
		e = errno;
		if (!xs_transaction_end(vl->xs, t, !ok) && ok) {
			ok = false;
			e = errno;
			if (e == EAGAIN)
				continue;
		}
		break;
	}
	if (!ok) {
		xs_rm(vl->xs, XBT_NULL, r->path);
		return conduit_listener_fail(&vl->base, CONDUIT_ERR_SYSTEM,
		                             "listen %s: cannot write %s: %s",
		                             vl->base.uri, key, strerror(e));
	}
	r->ctrl = libxenvchan_server_init(NULL, (int)peer, r->path,
	                                  vl->read_min, vl->write_min);
	if (r->ctrl == NULL) {
		e = errno;
		xs_rm(vl->xs, XBT_NULL, r->path);
		return conduit_listener_fail(&vl->base, CONDUIT_ERR_SYSTEM,
		                             "listen %s: libxenvchan could not "
		                             "make a ring for domain %u: %s",
		                             vl->base.uri, peer, strerror(e));
	}
	r->ctrl->blocking = 0;
	r->peer = peer;
	vl->narmed++;
	return CONDUIT_OK;
}

/* Named listeners: arm a ring for each new announcement. */
static void scan_announcements(struct vc_listener *vl)
{
	char dir[96];
	snprintf(dir, sizeof(dir), "/conduit/%s", vl->name);
	unsigned n = 0;
	char **kids = xs_directory(vl->xs, XBT_NULL, dir, &n);
	for (unsigned i = 0; kids != NULL && i < n; i++) {
		char node[256];
		snprintf(node, sizeof(node), "%s/%s/%s", dir, kids[i],
		         vl->port);
		char *v = xs_read(vl->xs, XBT_NULL, node, NULL);
		if (v == NULL)
			continue;
		char *end;
		unsigned long d = strtoul(v, &end, 10);
		bool ok = *v != '\0' && *end == '\0' && d <= 32751;
		free(v);
		unsigned np = 0;
		struct xs_permissions *p =
		    ok ? xs_get_permissions(vl->xs, XBT_NULL, node, &np) : NULL;
		/* Only a domain may announce itself. */
		ok = ok && p != NULL && np > 0 && p[0].id == d;
		free(p);
		xs_rm(vl->xs, XBT_NULL, node);
		if (ok)
			arm(vl, (unsigned)d);
	}
	free(kids);
}

static void disarm(struct vc_listener *vl, size_t i)
{
	vl->armed[i] = vl->armed[--vl->narmed];
}

static int vl_accept(conduit_listener *l, conduit_flow **out)
{
	struct vc_listener *vl = vl_of(l);
	if (vl->named)
		scan_announcements(vl);
	else if (vl->narmed == 0) {
		int rc = arm(vl, vl->direct_peer);
		if (rc != CONDUIT_OK)
			return rc;
	}
	for (size_t i = 0; i < vl->narmed; i++) {
		struct vc_ring *r = &vl->armed[i];
		int fd = libxenvchan_fd_for_select(r->ctrl);
		struct pollfd p = {fd, POLLIN, 0};
		while (poll(&p, 1, 0) == 1 && (p.revents & POLLIN)) {
			if (libxenvchan_wait(r->ctrl) < 0)
				break;
			p.revents = 0;
		}
		int live = libxenvchan_is_open(r->ctrl);
		if (live == 2)
			continue; /* nobody yet */
		struct libxenvchan *ctrl = r->ctrl;
		unsigned peer = r->peer;
		/* A conduit client claimed the ring before it mapped it;
		 * a ring live without a claim has a plain client. */
		char key[VC_XS_BUF + 16];
		snprintf(key, sizeof(key), "%s/claim", r->path);
		char *claim = xs_read(vl->xs, XBT_NULL, key, NULL);
		bool plain = claim == NULL || claim[0] == '\0';
		free(claim);
		/* Connected (or come and gone): hide the ring from everyone
		 * else now, and stop libxenvchan from removing the keys
		 * again at close, when they may be the next ring's. */
		xs_rm(vl->xs, XBT_NULL, r->path);
		free(ctrl->xs_path);
		ctrl->xs_path = NULL;
		disarm(vl, i);
		if (!vl->named)
			arm(vl, vl->direct_peer);
		if (live == 0) {
			libxenvchan_close(ctrl);
			i = (size_t)-1; /* the list changed: start over */
			continue;
		}
		char uri[128];
		snprintf(uri, sizeof(uri), "vchan://%u/%s", peer, vl->port);
		struct vc_flow *vf = new_flow(l->ctx, uri);
		if (vf == NULL) {
			libxenvchan_close(ctrl);
			return conduit_listener_fail(l, CONDUIT_ERR_NOMEM,
			                             "accept: out of memory");
		}
		vf->ctrl = ctrl;
		vf->fd = fd;
		vf->plain = plain;
		vf->base.state |= CONDUIT_FLOW_ESTABLISHED;
		/* conduit_accept() reports "accepted". */
		*out = &vf->base;
		return CONDUIT_OK;
	}
	return CONDUIT_WANT_READ;
}

/* A named listener's announcements: looked at when the watch on
 * /conduit/NAME fired (or always, without a watch).  Events drained. */
static void check_announcements(struct vc_listener *vl)
{
	if (vl->xs_fd < 0 || drain_watch(&vl->xw, &vl->xs_fd))
		scan_announcements(vl);
}

static void vl_wait(conduit_listener *l, struct conduit_waitset *ws)
{
	struct vc_listener *vl = vl_of(l);
	if (vl->named)
		check_announcements(vl);
	for (size_t i = 0; i < vl->narmed; i++)
		conduit_waitset_fd(ws,
		                   libxenvchan_fd_for_select(vl->armed[i].ctrl),
		                   CONDUIT_POLLIN);
	if (vl->named && vl->xs_fd >= 0)
		conduit_waitset_fd(ws, vl->xs_fd, CONDUIT_POLLIN);
	else if (vl->named || vl->narmed == 0)
		conduit_waitset_deadline(ws, conduit_now_ms() + VC_POLL_MS);
}

static unsigned vl_pending(conduit_listener *l)
{
	struct vc_listener *vl = vl_of(l);
	/* XenStore is pending work, looked at each time the caller is
	 * about to sleep: announcements when the watch fired. */
	if (vl->named)
		check_announcements(vl);
	else if (vl->narmed == 0)
		arm(vl, vl->direct_peer);
	for (size_t i = 0; i < vl->narmed; i++)
		if (libxenvchan_is_open(vl->armed[i].ctrl) != 2)
			return 1;
	return 0;
}

static void vl_destroy(conduit_listener *l)
{
	struct vc_listener *vl = vl_of(l);
	for (size_t i = 0; i < vl->narmed; i++)
		libxenvchan_close(vl->armed[i].ctrl);
	if (vl->registered)
		vc_unregister_name(vl->xs, vl->name, vl->self);
	if (vl->xs != NULL)
		xs_close(vl->xs);
	if (vl->xw != NULL)
		xs_close(vl->xw);
	conduit_listener_fini(l);
	free(vl);
}

static const struct conduit_listener_ops vc_listener_ops = {
    .name = "vchan",
    .accept = vl_accept,
    .destroy = vl_destroy,
    .wait = vl_wait,
    .pending = vl_pending,
};

static int vc_listen(void *state, conduit_ctx *ctx, const conduit_endpoint *ep,
                     conduit_listener **out)
{
	(void)state;
	struct xs_handle *xs = vc_open_xs(ctx, cd_endpoint_shown(ep));
	if (xs == NULL)
		return CONDUIT_ERR_UNSUPPORTED;
	struct vc_listener *vl = calloc(1, sizeof(*vl));
	if (vl == NULL || conduit_listener_init(&vl->base, &vc_listener_ops,
	                                        ctx, ep->uri) != CONDUIT_OK) {
		free(vl);
		xs_close(xs);
		return conduit_ctx_fail(ctx, CONDUIT_ERR_NOMEM,
		                        "listen: out of memory");
	}
	vl->xs = xs;
	vl->xs_fd = -1;
	snprintf(vl->port, sizeof(vl->port), "%s", ep->path);
	const char *o = conduit_endpoint_option(ep, "read-ring");
	vl->read_min = o != NULL ? strtoul(o, NULL, 10) : 0;
	o = conduit_endpoint_option(ep, "write-ring");
	vl->write_min = o != NULL ? strtoul(o, NULL, 10) : 0;
	int rc = CONDUIT_OK;
	if (vc_read_domid(xs, &vl->self) < 0)
		rc = conduit_ctx_fail(ctx, CONDUIT_ERR_UNSUPPORTED,
		                      "listen %s: this domain's id is not in "
		                      "XenStore",
		                      cd_endpoint_shown(ep));
	char probe[VC_XS_BUF];
	vl->named = !vc_is_domid(ep->host);
	if (rc == CONDUIT_OK)
		/* The longest client id is 5 digits: check the worst case
		 * now rather than refuse some clients later. */
		rc = ring_path(
		    ctx, probe, vl->self,
		    vl->named ? 32751 : (unsigned)strtoul(ep->host, NULL, 10),
		    ep->path, cd_endpoint_shown(ep));
	if (rc == CONDUIT_OK && vl->named) {
		snprintf(vl->name, sizeof(vl->name), "%s", ep->host);
		struct vc_state *st = vc_state_of(ctx);
		bool ours = st != NULL && strcmp(st->name, vl->name) == 0;
		rc = vc_register_name(ctx, xs, vl->name, vl->self);
		vl->registered = rc == CONDUIT_OK && !ours;
		if (rc == CONDUIT_OK) {
			/* Fires on each announcement under the name. */
			char node[96];
			snprintf(node, sizeof(node), "/conduit/%s", vl->name);
			vl->xs_fd = watch_fd(&vl->xw, node, "announce");
		}
	} else if (rc == CONDUIT_OK) {
		vl->direct_peer = (unsigned)strtoul(ep->host, NULL, 10);
		rc = arm(vl, vl->direct_peer);
		if (rc != CONDUIT_OK)
			rc = conduit_ctx_fail(
			    ctx, rc, "%s", conduit_listener_error(&vl->base));
	}
	if (rc != CONDUIT_OK) {
		vl->registered = false;
		vl_destroy(&vl->base);
		return rc;
	}
	*out = &vl->base;
	return CONDUIT_OK;
}

/* ---- Context state and the public naming calls ---------------------- */

/* The name this context registered goes with it; the context frees st. */
static void vc_detach(void *state)
{
	struct vc_state *st = state;
	if (st->name[0] != '\0') {
		struct xs_handle *xs = xs_open(0);
		if (xs != NULL) {
			vc_unregister_name(xs, st->name, st->domid);
			xs_close(xs);
		}
	}
}

static const char *const vc_transports[] = {"vchan", NULL};

const struct conduit_backend cd_backend_vchan = {
    .name = "vchan",
    .transports = vc_transports,
    .connect = vc_connect,
    .listen = vc_listen,
    .state_size = sizeof(struct vc_state),
    .detach = vc_detach,
};
