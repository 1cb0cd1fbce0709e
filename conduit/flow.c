/*
 * flow.c - the flow and listener life cycles common to every backend:
 * argument and state checks, byte counters, observer events, and the
 * connect / listen entry points that pick a backend for the endpoint's
 * transport and stack its layers on top.
 */
#include "core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/*
 * The URI a flow or listener keeps is the one every message, observer
 * event and conduit_flow_uri() shows: it is kept redacted (passwords and
 * secret option values such as key= hidden), so that no backend can leak
 * them by quoting it.  A URI with neither user info nor a query has
 * nothing to hide and is copied as it is.
 */
/* The flow's URI is in its backend's buffer (conduit_flow_init_in), not
 * on the heap.  Core-private, above the CONDUIT_FLOW_* bits of
 * backend.h, as CD_FLOW_INNER below. */
#define CD_FLOW_URI_IN 0x200u

static char *shown_dup(const char *uri)
{
	if (uri == NULL)
		uri = "";
	if (strpbrk(uri, "?@") == NULL)
		return cd_strdup(uri);
	/* Each hidden run becomes "****": at most 4 bytes per input byte. */
	size_t cap = strlen(uri) * 4 + 8;
	char *buf = malloc(cap);
	if (buf == NULL)
		return NULL;
	cd_uri_redact(uri, buf, cap);
	char *out = cd_strdup(buf);
	free(buf);
	return out;
}

int conduit_flow_init_in(conduit_flow *f, const struct conduit_flow_ops *ops,
                         conduit_ctx *ctx, const char *uri, char *buf,
                         size_t cap)
{
	memset(f, 0, sizeof(*f));
	f->ops = ops;
	f->ctx = ctx;
	if (uri == NULL)
		uri = "";
	/* A short URI with nothing to hide goes in the backend's buffer. */
	if (buf != NULL) {
		size_t n = strlen(uri);
		if (n < cap && strpbrk(uri, "?@") == NULL) {
			memcpy(buf, uri, n + 1);
			f->uri = buf;
			f->state |= CD_FLOW_URI_IN;
			return CONDUIT_OK;
		}
	}
	f->uri = shown_dup(uri);
	return f->uri != NULL ? CONDUIT_OK : CONDUIT_ERR_NOMEM;
}

int conduit_flow_init(conduit_flow *f, const struct conduit_flow_ops *ops,
                      conduit_ctx *ctx, const char *uri)
{
	return conduit_flow_init_in(f, ops, ctx, uri, NULL, 0);
}

void conduit_flow_fini(conduit_flow *f)
{
	if (!(f->state & CD_FLOW_URI_IN))
		free(f->uri);
	free(f->error);
	f->uri = NULL;
	f->error = NULL;
}

int conduit_listener_init(conduit_listener *l,
                          const struct conduit_listener_ops *ops,
                          conduit_ctx *ctx, const char *uri)
{
	memset(l, 0, sizeof(*l));
	l->ops = ops;
	l->ctx = ctx;
	l->uri = shown_dup(uri);
	return l->uri != NULL ? CONDUIT_OK : CONDUIT_ERR_NOMEM;
}

void conduit_listener_fini(conduit_listener *l)
{
	free(l->uri);
	free(l->error);
	l->uri = NULL;
	l->error = NULL;
}

/*
 * A flow under a layer (the transport under TLS) is part of the layered
 * flow, which is the one the application holds: its own failure and close
 * are not reported, since the layered flow reports them once, under its
 * URI, with the transport's reason in its message.  Set here, after each
 * successful wrap, so no layer has to remember it.  A core-private bit,
 * above the CONDUIT_FLOW_* bits of backend.h.
 */
#define CD_FLOW_INNER 0x100u

static bool is_error(int rc)
{
	return rc >= CONDUIT_ERR_INVALID;
}

/* A failure that ends the flow: later calls report it again. */
static int fail_for_good(conduit_flow *f, int rc)
{
	if (!(f->state & CONDUIT_FLOW_FAILED)) {
		f->state |= CONDUIT_FLOW_FAILED;
		f->failure = rc;
		if (!(f->state & CD_FLOW_INNER))
			conduit_emit(f->ctx, CONDUIT_PHASE_FAILED, rc, f->uri,
			             conduit_flow_error(f), f);
	}
	return rc;
}

int conduit_handshake(conduit_flow *f)
{
	if (f == NULL)
		return CONDUIT_ERR_INVALID;
	if (f->state & CONDUIT_FLOW_FAILED)
		return f->failure;
	if (f->state & CONDUIT_FLOW_CLOSED)
		return conduit_flow_fail(f, CONDUIT_ERR_STATE,
		                         "%s: flow is closed", f->uri);
	if (f->state & CONDUIT_FLOW_ESTABLISHED)
		return CONDUIT_OK;
	int rc = f->ops->handshake != NULL ? f->ops->handshake(f) : CONDUIT_OK;
	if (rc == CONDUIT_OK)
		f->state |= CONDUIT_FLOW_ESTABLISHED;
	else if (is_error(rc))
		fail_for_good(f, rc);
	return rc;
}

/* The checks every data operation shares; CONDUIT_OK to go on. */
static int ready_for(conduit_flow *f, unsigned shut_bit, const char *op)
{
	if (f->state & CONDUIT_FLOW_FAILED)
		return f->failure;
	if (f->state & CONDUIT_FLOW_CLOSED)
		return conduit_flow_fail(f, CONDUIT_ERR_STATE,
		                         "%s %s: flow is closed", op, f->uri);
	if (f->state & shut_bit)
		return conduit_flow_fail(f, CONDUIT_ERR_STATE,
		                         "%s %s: this direction is shut down",
		                         op, f->uri);
	if (!(f->state & CONDUIT_FLOW_ESTABLISHED))
		return conduit_handshake(f);
	return CONDUIT_OK;
}

/*
 * The state bits under which a data operation in direction shut_bit goes
 * straight to the backend: established, and none of failed, closed or
 * that direction shut.  One test of a mask on every read and write; any
 * other state takes ready_for(), which says why.
 */
#define CD_GO_MASK(shut_bit)                                                   \
	(CONDUIT_FLOW_ESTABLISHED | CONDUIT_FLOW_FAILED |                      \
	 CONDUIT_FLOW_CLOSED | (shut_bit))

/*
 * Reads and writes are the calls every loop makes: their common case (an
 * established flow, the backend moves bytes) is a few instructions and a
 * call, and everything else lives in the cold functions below, away from
 * the code a busy loop keeps in the instruction cache.
 */

/* What a backend's read or write returned, when not CONDUIT_OK. */
static CD_COLD int op_status(conduit_flow *f, int rc)
{
	if (is_error(rc))
		fail_for_good(f, rc);
	return rc;
}

static CD_COLD int read_slow(conduit_flow *f, void *buf, size_t len,
                             size_t *nread)
{
	int rc = ready_for(f, CONDUIT_FLOW_SHUT_RD, "read");
	if (rc != CONDUIT_OK || len == 0)
		return rc;
	rc = f->ops->read(f, buf, len, nread);
	if (rc == CONDUIT_OK)
		f->bytes_read += *nread;
	return rc == CONDUIT_OK ? rc : op_status(f, rc);
}

CD_HOT int conduit_read(conduit_flow *f, void *buf, size_t len, size_t *nread)
{
	if (__builtin_expect(
	        f == NULL || nread == NULL || (buf == NULL && len > 0), 0)) {
		if (nread != NULL)
			*nread = 0;
		return CONDUIT_ERR_INVALID;
	}
	*nread = 0;
	if (__builtin_expect((f->state & CD_GO_MASK(CONDUIT_FLOW_SHUT_RD)) !=
	                             CONDUIT_FLOW_ESTABLISHED ||
	                         len == 0,
	                     0))
		return read_slow(f, buf, len, nread);
	int rc = f->ops->read(f, buf, len, nread);
	if (__builtin_expect(rc != CONDUIT_OK, 0))
		return op_status(f, rc);
	f->bytes_read += *nread;
	return CONDUIT_OK;
}

static CD_COLD int write_slow(conduit_flow *f, const struct conduit_iov *iov,
                              size_t iovcnt, size_t total, size_t *nwritten)
{
	int rc = ready_for(f, CONDUIT_FLOW_SHUT_WR, "write");
	if (rc != CONDUIT_OK || total == 0)
		return rc;
	rc = f->ops->writev(f, iov, iovcnt, nwritten);
	if (rc == CONDUIT_OK)
		f->bytes_written += *nwritten;
	return rc == CONDUIT_OK ? rc : op_status(f, rc);
}

/* The part of a write after the arguments are checked: total is the sum
 * of the buffers' lengths.  Inlined into both entry points, so that
 * conduit_write() is not a call to conduit_writev(). */
static inline __attribute__((always_inline)) int
write_checked(conduit_flow *f, const struct conduit_iov *iov, size_t iovcnt,
              size_t total, size_t *nwritten)
{
	if (__builtin_expect((f->state & CD_GO_MASK(CONDUIT_FLOW_SHUT_WR)) !=
	                             CONDUIT_FLOW_ESTABLISHED ||
	                         total == 0,
	                     0))
		return write_slow(f, iov, iovcnt, total, nwritten);
	int rc = f->ops->writev(f, iov, iovcnt, nwritten);
	if (__builtin_expect(rc != CONDUIT_OK, 0))
		return op_status(f, rc);
	f->bytes_written += *nwritten;
	return CONDUIT_OK;
}

int conduit_writev(conduit_flow *f, const struct conduit_iov *iov,
                   size_t iovcnt, size_t *nwritten)
{
	if (nwritten != NULL)
		*nwritten = 0;
	if (f == NULL || nwritten == NULL || (iov == NULL && iovcnt > 0))
		return CONDUIT_ERR_INVALID;
	size_t total = 0;
	for (size_t i = 0; i < iovcnt; i++) {
		if (iov[i].base == NULL && iov[i].len > 0)
			return CONDUIT_ERR_INVALID;
		total += iov[i].len;
	}
	return write_checked(f, iov, iovcnt, total, nwritten);
}

CD_HOT int conduit_write(conduit_flow *f, const void *buf, size_t len,
                         size_t *nwritten)
{
	if (__builtin_expect(
	        f == NULL || nwritten == NULL || (buf == NULL && len > 0), 0)) {
		if (nwritten != NULL)
			*nwritten = 0;
		return CONDUIT_ERR_INVALID;
	}
	*nwritten = 0;
	struct conduit_iov iov = {buf, len};
	return write_checked(f, &iov, 1, len, nwritten);
}

int conduit_shutdown(conduit_flow *f, unsigned how)
{
	if (f == NULL || how == 0 || (how & ~CONDUIT_SHUT_RDWR) != 0)
		return CONDUIT_ERR_INVALID;
	if (f->state & CONDUIT_FLOW_FAILED)
		return f->failure;
	if (f->state & CONDUIT_FLOW_CLOSED)
		return conduit_flow_fail(f, CONDUIT_ERR_STATE,
		                         "shutdown %s: flow is closed", f->uri);
	if (!(f->state & CONDUIT_FLOW_ESTABLISHED)) {
		int rc = conduit_handshake(f);
		if (rc != CONDUIT_OK)
			return rc;
	}
	unsigned todo = 0;
	if ((how & CONDUIT_SHUT_RD) && !(f->state & CONDUIT_FLOW_SHUT_RD))
		todo |= CONDUIT_SHUT_RD;
	if ((how & CONDUIT_SHUT_WR) && !(f->state & CONDUIT_FLOW_SHUT_WR))
		todo |= CONDUIT_SHUT_WR;
	if (todo == 0)
		return CONDUIT_OK;
	int rc = f->ops->shutdown(f, todo);
	if (rc != CONDUIT_OK)
		return rc;
	if (todo & CONDUIT_SHUT_RD)
		f->state |= CONDUIT_FLOW_SHUT_RD;
	if (todo & CONDUIT_SHUT_WR)
		f->state |= CONDUIT_FLOW_SHUT_WR;
	return CONDUIT_OK;
}

int conduit_close(conduit_flow *f)
{
	if (f == NULL)
		return CONDUIT_ERR_INVALID;
	if (f->state & CONDUIT_FLOW_CLOSED)
		return CONDUIT_OK;
	if ((f->state & CONDUIT_FLOW_ESTABLISHED) &&
	    !(f->state & CONDUIT_FLOW_FAILED) && f->ops->close != NULL) {
		int rc = f->ops->close(f);
		if (rc == CONDUIT_WANT_READ || rc == CONDUIT_WANT_WRITE)
			return rc;
		if (rc != CONDUIT_OK) {
			f->state |= CONDUIT_FLOW_CLOSED;
			if (!(f->state & CD_FLOW_INNER))
				conduit_emit(f->ctx, CONDUIT_PHASE_CLOSED, rc,
				             f->uri, conduit_flow_error(f), f);
			return rc;
		}
	}
	f->state |= CONDUIT_FLOW_CLOSED;
	if (!(f->state & CD_FLOW_INNER))
		conduit_emit(f->ctx, CONDUIT_PHASE_CLOSED, CONDUIT_OK, f->uri,
		             "", f);
	return CONDUIT_OK;
}

void conduit_flow_free(conduit_flow *f)
{
	if (f == NULL)
		return;
	if (!(f->state & (CONDUIT_FLOW_CLOSED | CD_FLOW_INNER)))
		conduit_emit(f->ctx, CONDUIT_PHASE_CLOSED, CONDUIT_OK, f->uri,
		             "freed without close", f);
	f->ops->destroy(f);
}

const char *conduit_flow_error(const conduit_flow *f)
{
	return f != NULL && f->error != NULL ? f->error : "";
}

const char *conduit_flow_uri(const conduit_flow *f)
{
	return f != NULL ? f->uri : "";
}

void conduit_flow_stats(const conduit_flow *f, struct conduit_flow_stats *st)
{
	if (st == NULL)
		return;
	st->bytes_read = f != NULL ? f->bytes_read : 0;
	st->bytes_written = f != NULL ? f->bytes_written : 0;
}

int conduit_flow_peer_cred(conduit_flow *f, struct conduit_peer_cred *cred)
{
	if (f == NULL || cred == NULL)
		return CONDUIT_ERR_INVALID;
	cred->uid = cred->gid = cred->pid = -1;
	if (f->ops->peer_cred == NULL)
		return conduit_flow_fail(
		    f, CONDUIT_ERR_UNSUPPORTED,
		    "%s: %s flows carry no peer credentials", f->uri,
		    f->ops->name);
	return f->ops->peer_cred(f, cred);
}

int conduit_flow_fd(const conduit_flow *f)
{
	if (f == NULL || f->ops->fd == NULL)
		return -1;
	return f->ops->fd(f);
}

/* ------------------------------------------------------------------ */
/* Pass-throughs for layers (see backend.h)                            */

unsigned conduit_want_bits(int status)
{
	return status == CONDUIT_WANT_READ    ? CONDUIT_POLLIN
	       : status == CONDUIT_WANT_WRITE ? CONDUIT_POLLOUT
	                                      : 0u;
}

unsigned conduit_flow_inner_pending(conduit_flow *inner, unsigned interest)
{
	if (inner->state & (CONDUIT_FLOW_FAILED | CONDUIT_FLOW_CLOSED))
		return interest;
	if (inner->ops->pending == NULL)
		return 0;
	return inner->ops->pending(inner, interest) & interest;
}

void conduit_flow_inner_wait(conduit_flow *inner, unsigned interest,
                             struct conduit_waitset *ws)
{
	/* Its descriptor may be gone; the next call reports why. */
	if (inner->state & (CONDUIT_FLOW_FAILED | CONDUIT_FLOW_CLOSED)) {
		conduit_waitset_deadline(ws, 0);
		return;
	}
	inner->ops->wait(inner, interest, ws);
}

/* An error of the inner flow becomes the layer's, with its message. */
static int inner_status(conduit_flow *f, conduit_flow *inner, int rc)
{
	if (is_error(rc))
		return conduit_flow_fail(f, rc, "%s",
		                         conduit_flow_error(inner));
	return rc;
}

int conduit_flow_inner_read(conduit_flow *f, conduit_flow *inner, void *buf,
                            size_t len, size_t *nread)
{
	return inner_status(f, inner, conduit_read(inner, buf, len, nread));
}

int conduit_flow_inner_writev(conduit_flow *f, conduit_flow *inner,
                              const struct conduit_iov *iov, size_t iovcnt,
                              size_t *nwritten)
{
	return inner_status(f, inner,
	                    conduit_writev(inner, iov, iovcnt, nwritten));
}

int conduit_flow_inner_shutdown(conduit_flow *f, conduit_flow *inner,
                                unsigned how)
{
	return inner_status(f, inner, conduit_shutdown(inner, how));
}

int conduit_flow_inner_close(conduit_flow *f, conduit_flow *inner)
{
	return inner_status(f, inner, conduit_close(inner));
}

int conduit_flow_inner_unread(conduit_flow *f, conduit_flow *inner, size_t *n)
{
	*n = 0;
	if (inner->ops->unread == NULL)
		return conduit_flow_fail(f, CONDUIT_ERR_UNSUPPORTED,
		                         "%s: %s flows cannot tell whether "
		                         "bytes are waiting",
		                         f->uri, inner->ops->name);
	return inner_status(f, inner, inner->ops->unread(inner, n));
}

/* ------------------------------------------------------------------ */

static int check_layers(conduit_ctx *ctx, const conduit_endpoint *ep,
                        const char *op)
{
	for (size_t i = 0; i < ep->nlayers; i++)
		if (cd_find_layer(ctx, ep->layers[i]) == NULL)
			return conduit_ctx_fail(ctx, CONDUIT_ERR_NO_BACKEND,
			                        "%s %s: no %s layer in this "
			                        "context (not built in, or "
			                        "not registered)",
			                        op, cd_endpoint_shown(ep),
			                        ep->layers[i]);
	return CONDUIT_OK;
}

static const struct cd_registration *
transport_for(conduit_ctx *ctx, const conduit_endpoint *ep, const char *op)
{
	const struct cd_registration *reg =
	    cd_find_transport(ctx, ep->transport);
	if (reg == NULL)
		conduit_ctx_fail(
		    ctx, CONDUIT_ERR_NO_BACKEND,
		    "%s %s: no %s backend in this context (not built "
		    "in, or not registered)",
		    op, cd_endpoint_shown(ep), ep->transport);
	return reg;
}

int conduit_connect_endpoint(conduit_flow **out, conduit_ctx *ctx,
                             const conduit_endpoint *ep)
{
	if (out != NULL)
		*out = NULL;
	if (out == NULL || ctx == NULL || ep == NULL)
		return CONDUIT_ERR_INVALID;
	const struct cd_registration *reg = transport_for(ctx, ep, "connect");
	if (reg == NULL)
		return CONDUIT_ERR_NO_BACKEND;
	int rc = check_layers(ctx, ep, "connect");
	if (rc != CONDUIT_OK)
		return rc;
	if (reg->be->connect == NULL)
		return conduit_ctx_fail(ctx, CONDUIT_ERR_NO_BACKEND,
		                        "connect %s: backend %s cannot connect",
		                        cd_endpoint_shown(ep), reg->be->name);

	/* Host transports need addresses; a parsed-only endpoint gets them
	 * here (literals without blocking). */
	conduit_endpoint *looked = NULL;
	if (ep->host_kind != CONDUIT_HOST_NONE && ep->naddrs == 0) {
		looked = conduit_endpoint_dup(ep);
		if (looked == NULL)
			return conduit_ctx_fail(ctx, CONDUIT_ERR_NOMEM,
			                        "connect %s: out of memory",
			                        cd_endpoint_shown(ep));
		rc = cd_lookup(ctx, looked);
		if (rc != CONDUIT_OK) {
			conduit_endpoint_free(looked);
			return rc;
		}
		ep = looked;
	}

	conduit_flow *f = NULL;
	rc = reg->be->connect(reg->state, ctx, ep, &f);
	for (size_t i = 0; rc == CONDUIT_OK && i < ep->nlayers; i++) {
		const struct cd_registration *lr =
		    cd_find_layer(ctx, ep->layers[i]);
		conduit_flow *outer = NULL;
		rc = lr->be->wrap(lr->state, ctx, ep, f, 0, &outer);
		if (rc != CONDUIT_OK)
			conduit_flow_free(f);
		else
			f->state |= CD_FLOW_INNER;
		f = outer;
	}
	conduit_endpoint_free(looked);
	if (rc != CONDUIT_OK)
		return rc;
	*out = f;
	return CONDUIT_OK;
}

int conduit_connect(conduit_flow **out, conduit_ctx *ctx, const char *uri)
{
	if (out != NULL)
		*out = NULL;
	if (out == NULL || ctx == NULL || uri == NULL)
		return CONDUIT_ERR_INVALID;
	struct cd_use u;
	int rc = cd_resolve_use(&u, ctx, uri);
	if (rc != CONDUIT_OK)
		return rc;
	rc = conduit_connect_endpoint(out, ctx, u.ep);
	cd_resolve_done(ctx, &u, uri);
	return rc;
}

/*
 * A listener for an endpoint with layers (tls+tcp://:443): the
 * transport's listener underneath, and each accepted flow wrapped in the
 * layers, server side.
 */
struct layered {
	conduit_listener base;
	conduit_listener *inner;
	conduit_endpoint *ep;
};

static int ll_accept(conduit_listener *l, conduit_flow **out)
{
	struct layered *ll = (struct layered *)l;
	conduit_flow *f = NULL;
	/* The transport's accept without conduit_accept()'s "accepted":
	 * conduit_accept() reports this listener's flow, the layered one. */
	int rc = ll->inner->ops->accept(ll->inner, &f);
	if (rc != CONDUIT_OK) {
		if (rc != CONDUIT_WANT_READ && rc != CONDUIT_WANT_WRITE)
			conduit_listener_fail(
			    l, rc, "%s", conduit_listener_error(ll->inner));
		return rc;
	}
	for (size_t i = 0; i < ll->ep->nlayers; i++) {
		const struct cd_registration *lr =
		    cd_find_layer(l->ctx, ll->ep->layers[i]);
		conduit_flow *outer = NULL;
		rc = lr != NULL
		         ? lr->be->wrap(lr->state, l->ctx, ll->ep, f, 1, &outer)
		         : CONDUIT_ERR_NO_BACKEND;
		if (rc != CONDUIT_OK) {
			conduit_flow_free(f);
			return conduit_listener_fail(l, rc, "accept %s: %s",
			                             l->uri,
			                             conduit_ctx_error(l->ctx));
		}
		f->state |= CD_FLOW_INNER;
		f = outer;
	}
	*out = f;
	return CONDUIT_OK;
}

static void ll_destroy(conduit_listener *l)
{
	struct layered *ll = (struct layered *)l;
	conduit_listener_free(ll->inner);
	conduit_endpoint_free(ll->ep);
	conduit_listener_fini(l);
	free(ll);
}

static void ll_wait(conduit_listener *l, struct conduit_waitset *ws)
{
	struct layered *ll = (struct layered *)l;
	ll->inner->ops->wait(ll->inner, ws);
}

static unsigned ll_pending(conduit_listener *l)
{
	struct layered *ll = (struct layered *)l;
	return ll->inner->ops->pending != NULL
	           ? ll->inner->ops->pending(ll->inner)
	           : 0;
}

static const struct conduit_listener_ops layered_ops = {
    .name = "layered",
    .accept = ll_accept,
    .destroy = ll_destroy,
    .wait = ll_wait,
    .pending = ll_pending,
};

static int layered_listener(conduit_listener **out, conduit_ctx *ctx,
                            const conduit_endpoint *ep, conduit_listener *inner)
{
	/* The bound URI: the layers' scheme over the transport's URI. */
	char *uri = NULL;
	const char *iuri = conduit_listener_uri(inner);
	size_t plen = 0;
	for (size_t i = 0; i < ep->nlayers; i++)
		plen += strlen(ep->layers[i]) + 1;
	struct layered *ll = calloc(1, sizeof(*ll));
	uri = malloc(plen + strlen(iuri) + 1);
	conduit_endpoint *copy = conduit_endpoint_dup(ep);
	if (ll == NULL || uri == NULL || copy == NULL) {
		free(ll);
		free(uri);
		conduit_endpoint_free(copy);
		conduit_listener_free(inner);
		return conduit_ctx_fail(ctx, CONDUIT_ERR_NOMEM,
		                        "listen %s: out of memory",
		                        cd_endpoint_shown(ep));
	}
	char *p = uri;
	for (size_t i = ep->nlayers; i-- > 0;) {
		size_t n = strlen(ep->layers[i]);
		memcpy(p, ep->layers[i], n);
		p[n] = '+';
		p += n + 1;
	}
	/* Transports are given the whole endpoint, and some print it with
	 * its layers already (tcp does): never write them twice. */
	if (strncmp(iuri, uri, plen) == 0)
		p = uri;
	strcpy(p, iuri);
	int rc = conduit_listener_init(&ll->base, &layered_ops, ctx, uri);
	free(uri);
	if (rc != CONDUIT_OK) {
		free(ll);
		conduit_endpoint_free(copy);
		conduit_listener_free(inner);
		return conduit_ctx_fail(ctx, rc, "listen %s: out of memory",
		                        cd_endpoint_shown(ep));
	}
	ll->inner = inner;
	ll->ep = copy;
	*out = &ll->base;
	return CONDUIT_OK;
}

int conduit_listen_endpoint(conduit_listener **out, conduit_ctx *ctx,
                            const conduit_endpoint *ep)
{
	if (out != NULL)
		*out = NULL;
	if (out == NULL || ctx == NULL || ep == NULL)
		return CONDUIT_ERR_INVALID;
	const struct cd_registration *reg = transport_for(ctx, ep, "listen");
	if (reg == NULL)
		return CONDUIT_ERR_NO_BACKEND;
	int rc = check_layers(ctx, ep, "listen");
	if (rc != CONDUIT_OK)
		return rc;
	if (reg->be->listen == NULL)
		return conduit_ctx_fail(ctx, CONDUIT_ERR_NO_BACKEND,
		                        "listen %s: backend %s cannot listen",
		                        cd_endpoint_shown(ep), reg->be->name);
	if (ep->nlayers == 0)
		return reg->be->listen(reg->state, ctx, ep, out);
	/*
	 * A layer that could not serve any client (TLS with no certificate,
	 * a cert= file that does not load) is refused here rather than at
	 * every accept, before anything is bound: each layer is asked to wrap
	 * no flow, which only checks (the message is then on ctx).
	 */
	for (size_t i = 0; i < ep->nlayers; i++) {
		const struct cd_registration *lr =
		    cd_find_layer(ctx, ep->layers[i]);
		conduit_flow *none = NULL;
		rc = lr->be->wrap(lr->state, ctx, ep, NULL, 1, &none);
		if (rc != CONDUIT_OK)
			return rc;
	}
	conduit_listener *inner = NULL;
	rc = reg->be->listen(reg->state, ctx, ep, &inner);
	if (rc != CONDUIT_OK)
		return rc;
	return layered_listener(out, ctx, ep, inner);
}

int conduit_listen(conduit_listener **out, conduit_ctx *ctx, const char *uri)
{
	if (out != NULL)
		*out = NULL;
	if (out == NULL || ctx == NULL || uri == NULL)
		return CONDUIT_ERR_INVALID;
	char msg[512];
	conduit_endpoint *ep = NULL;
	/* "tls://" is "tls+tcp://" here as when connecting: the one
	 * shorthand a listening URI may use (services are for clients).
	 * The grammar's table says what a layer alone stands for. */
	int rc =
	    cd_endpoint_parse(&ep, uri, CD_PARSE_LAYER_ALONE, msg, sizeof(msg));
	if (rc != CONDUIT_OK)
		return conduit_ctx_fail(ctx, rc, "listen %s", msg);
	rc = conduit_listen_endpoint(out, ctx, ep);
	conduit_endpoint_free(ep);
	return rc;
}

int conduit_accept(conduit_flow **out, conduit_listener *l)
{
	if (out != NULL)
		*out = NULL;
	if (out == NULL || l == NULL)
		return CONDUIT_ERR_INVALID;
	int rc = l->ops->accept(l, out);
	if (rc == CONDUIT_OK)
		conduit_emit(l->ctx, CONDUIT_PHASE_ACCEPTED, CONDUIT_OK, l->uri,
		             (*out)->uri, *out);
	return rc;
}

int conduit_starttls(conduit_flow **fp, int role, const char *servername)
{
	if (fp == NULL || *fp == NULL ||
	    (role != CONDUIT_ROLE_CLIENT && role != CONDUIT_ROLE_SERVER))
		return CONDUIT_ERR_INVALID;
	conduit_flow *f = *fp;
	conduit_ctx *ctx = f->ctx;
	const struct cd_registration *lr = cd_find_layer(ctx, "tls");
	if (lr == NULL)
		return conduit_flow_fail(f, CONDUIT_ERR_NO_BACKEND,
		                         "starttls %s: no tls layer in this "
		                         "context (not built in, or not "
		                         "registered)",
		                         f->uri);
	int rc = conduit_handshake(f);
	if (rc != CONDUIT_OK)
		return rc == CONDUIT_WANT_READ || rc == CONDUIT_WANT_WRITE
		           ? conduit_flow_fail(f, CONDUIT_ERR_STATE,
		                               "starttls %s: the flow is not "
		                               "established yet",
		                               f->uri)
		           : rc;
	if (f->state & (CONDUIT_FLOW_SHUT_RD | CONDUIT_FLOW_SHUT_WR))
		return conduit_flow_fail(
		    f, CONDUIT_ERR_STATE,
		    "starttls %s: a direction is shut down", f->uri);
	size_t unread = 0;
	if (f->ops->unread == NULL)
		return conduit_flow_fail(f, CONDUIT_ERR_UNSUPPORTED,
		                         "starttls %s: %s flows cannot tell "
		                         "whether plaintext is waiting",
		                         f->uri, f->ops->name);
	rc = f->ops->unread(f, &unread);
	if (rc != CONDUIT_OK)
		return rc;
	if (unread > 0)
		return conduit_flow_fail(f, CONDUIT_ERR_STATE,
		                         "starttls %s: %zu bytes of plaintext "
		                         "arrived before the TLS handshake and "
		                         "were not read; refusing to start TLS "
		                         "over them",
		                         f->uri, unread);
	/* The layer reads its options from an endpoint: the flow's own,
	 * with the layer put over it and the server name asked for. */
	char msg[512], why[400] = "the URI grammar has no tls layer";
	conduit_endpoint *ep = NULL;
	rc = conduit_endpoint_parse(&ep, f->uri, msg, sizeof(msg));
	if (rc != CONDUIT_OK)
		return conduit_flow_fail(f, rc, "starttls %s", msg);
	const struct cd_layer *tls = cd_grammar_layer("tls", 3);
	rc = tls != NULL ? cd_endpoint_add_layer(ep, tls, why, sizeof(why))
	                 : CONDUIT_ERR_SCHEME;
	if (rc == CONDUIT_OK && servername != NULL)
		rc = cd_endpoint_add_option(ep, "servername", servername, why,
		                            sizeof(why));
	if (rc != CONDUIT_OK) {
		conduit_endpoint_free(ep);
		return conduit_flow_fail(f, rc, "starttls %s: %s", f->uri, why);
	}
	conduit_flow *outer = NULL;
	rc = lr->be->wrap(lr->state, ctx, ep, f, role == CONDUIT_ROLE_SERVER,
	                  &outer);
	conduit_endpoint_free(ep);
	if (rc != CONDUIT_OK)
		return conduit_flow_fail(f, rc, "%s", conduit_ctx_error(ctx));
	f->state |= CD_FLOW_INNER;
	*fp = outer;
	return CONDUIT_OK;
}

const char *conduit_listener_uri(const conduit_listener *l)
{
	return l != NULL ? l->uri : "";
}

const char *conduit_listener_error(const conduit_listener *l)
{
	return l != NULL && l->error != NULL ? l->error : "";
}

void conduit_listener_free(conduit_listener *l)
{
	if (l != NULL)
		l->ops->destroy(l);
}
