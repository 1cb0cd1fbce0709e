/*
 * mem.c - the in-memory flow: two flows sharing two bounded ring buffers,
 * one per direction.  No descriptor and no thread: readiness is what
 * pending() reads off the rings and the flags the ends set, and wait()
 * has nothing to add but "now" (see mem.h for why a *_wait call on one end
 * cannot be woken by anything but its own deadline).
 *
 * The life of a direction, as the writer and the reader see it:
 *   eof     the writer shut down (SHUT_WR) or closed: after the bytes in
 *           the ring, the reader gets CONDUIT_EOF;
 *   gone    the reader shut down (SHUT_RD) or closed: what the ring holds
 *           is dropped, the writer gets CONDUIT_ERR_CLOSED;
 *   reset   the other end went away without a graceful close (freed
 *           unclosed, or failed): CONDUIT_ERR_RESET, once the bytes
 *           already delivered are read.
 */
#include "core.h"

#include <conduit/mem.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One direction: a ring of cap bytes, len of them used from head. */
struct mem_ring {
	unsigned char *buf;
	size_t cap, head, len;
	bool eof;   /* the writer will write no more */
	bool gone;  /* the reader will read no more */
	bool reset; /* the writer's end went away abortively */
};

/* What the two ends share; freed with the second end. */
struct mem_pair {
	struct mem_ring ring[2]; /* ring[i]: written by end i, read by 1-i */
	size_t max_io;
	int refs;
};

struct mem_flow {
	conduit_flow base;
	struct mem_pair *pair;
	int side;      /* 0: "a", 1: "b" */
	int inject;    /* a failure for the next operation, or CONDUIT_OK */
	bool graceful; /* the close op ran to its end */
	char uri_buf[48];
};

/* The context's record, registered with the first pair. */
struct mem_state {
	unsigned long pairs;
};

static const struct conduit_flow_ops mem_ops;

static struct mem_flow *mf_of(conduit_flow *f)
{
	return (struct mem_flow *)f;
}

static struct mem_ring *ring_out(struct mem_flow *mf)
{
	return &mf->pair->ring[mf->side];
}

static struct mem_ring *ring_in(struct mem_flow *mf)
{
	return &mf->pair->ring[1 - mf->side];
}

static size_t clip(const struct mem_flow *mf, size_t n)
{
	size_t max = mf->pair->max_io;
	return max != 0 && n > max ? max : n;
}

/* The armed failure of an operation, recorded on the flow. */
static int injected(struct mem_flow *mf, const char *op)
{
	int st = mf->inject;
	mf->inject = CONDUIT_OK;
	return conduit_flow_fail(&mf->base, st, "%s %s: injected failure", op,
	                         mf->base.uri);
}

static int mem_read(conduit_flow *f, void *buf, size_t len, size_t *nread)
{
	struct mem_flow *mf = mf_of(f);
	if (mf->inject != CONDUIT_OK)
		return injected(mf, "read");
	struct mem_ring *r = ring_in(mf);
	if (r->len > 0) {
		size_t n = clip(mf, len < r->len ? len : r->len);
		size_t first = r->cap - r->head;
		if (first > n)
			first = n;
		memcpy(buf, r->buf + r->head, first);
		memcpy((unsigned char *)buf + first, r->buf, n - first);
		r->head = (r->head + n) % r->cap;
		r->len -= n;
		if (r->len == 0)
			r->head = 0;
		*nread = n;
		return CONDUIT_OK;
	}
	if (r->eof)
		return CONDUIT_EOF;
	if (r->reset)
		return conduit_flow_fail(f, CONDUIT_ERR_RESET,
		                         "read %s: the peer went away without "
		                         "closing",
		                         f->uri);
	return CONDUIT_WANT_READ;
}

static int mem_writev(conduit_flow *f, const struct conduit_iov *iov,
                      size_t iovcnt, size_t *nwritten)
{
	struct mem_flow *mf = mf_of(f);
	if (mf->inject != CONDUIT_OK)
		return injected(mf, "write");
	struct mem_ring *w = ring_out(mf);
	/* The peer's reset shows in the ring it writes, which we read. */
	if (ring_in(mf)->reset)
		return conduit_flow_fail(f, CONDUIT_ERR_RESET,
		                         "write %s: the peer went away without "
		                         "closing",
		                         f->uri);
	if (w->gone)
		return conduit_flow_fail(f, CONDUIT_ERR_CLOSED,
		                         "write %s: the peer has stopped "
		                         "reading",
		                         f->uri);
	size_t room = clip(mf, w->cap - w->len);
	if (room == 0)
		return CONDUIT_WANT_WRITE;
	size_t done = 0;
	for (size_t i = 0; i < iovcnt && done < room; i++) {
		const unsigned char *p = iov[i].base;
		size_t n = iov[i].len < room - done ? iov[i].len : room - done;
		while (n > 0) {
			size_t tail = (w->head + w->len) % w->cap;
			size_t k = w->cap - tail < n ? w->cap - tail : n;
			memcpy(w->buf + tail, p, k);
			w->len += k;
			p += k;
			n -= k;
			done += k;
		}
	}
	*nwritten = done;
	return CONDUIT_OK;
}

static int mem_shutdown(conduit_flow *f, unsigned how)
{
	struct mem_flow *mf = mf_of(f);
	if (how & CONDUIT_SHUT_WR)
		ring_out(mf)->eof = true;
	if (how & CONDUIT_SHUT_RD) {
		struct mem_ring *r = ring_in(mf);
		r->gone = true;
		r->len = r->head = 0;
	}
	return CONDUIT_OK;
}

static int mem_close(conduit_flow *f)
{
	struct mem_flow *mf = mf_of(f);
	mem_shutdown(f, CONDUIT_SHUT_RDWR);
	mf->graceful = true;
	return CONDUIT_OK;
}

static void mem_destroy(conduit_flow *f)
{
	struct mem_flow *mf = mf_of(f);
	struct mem_pair *p = mf->pair;
	if (!mf->graceful) {
		/* Abortive: the peer learns it on its next operation. */
		ring_out(mf)->reset = true;
		struct mem_ring *r = ring_in(mf);
		r->gone = true;
		r->len = r->head = 0;
	}
	if (--p->refs == 0) {
		free(p->ring[0].buf);
		free(p->ring[1].buf);
		free(p);
	}
	conduit_flow_fini(f);
	free(mf);
}

static unsigned mem_pending(conduit_flow *f, unsigned interest)
{
	struct mem_flow *mf = mf_of(f);
	if (mf->inject != CONDUIT_OK)
		return interest; /* the next operation fails at once */
	const struct mem_ring *r = ring_in(mf), *w = ring_out(mf);
	unsigned ready = 0;
	if ((interest & CONDUIT_POLLIN) && (r->len > 0 || r->eof || r->reset))
		ready |= CONDUIT_POLLIN;
	if ((interest & CONDUIT_POLLOUT) &&
	    (w->len < w->cap || w->gone || r->reset))
		ready |= CONDUIT_POLLOUT;
	return ready;
}

static void mem_wait(conduit_flow *f, unsigned interest,
                     struct conduit_waitset *ws)
{
	/* Nothing to wait on: only the peer's calls change the rings.  What
	 * is ready already must not sleep, for a layer that asks wait()
	 * without asking pending() first. */
	if (mem_pending(f, interest) != 0)
		conduit_waitset_deadline(ws, 0);
}

static int mem_unread(conduit_flow *f, size_t *n)
{
	*n = ring_in(mf_of(f))->len;
	return CONDUIT_OK;
}

static const struct conduit_flow_ops mem_ops = {
    .name = "mem",
    .read = mem_read,
    .writev = mem_writev,
    .shutdown = mem_shutdown,
    .close = mem_close,
    .destroy = mem_destroy,
    .wait = mem_wait,
    .pending = mem_pending,
    .unread = mem_unread,
};

static void mem_detach(void *state)
{
	free(state);
}

static const struct conduit_backend cd_backend_mem = {
    .name = "mem",
    .detach = mem_detach,
};

/* The context's mem record, registering the backend on first use:
 * CONDUIT_OK with *out, or a failure with its message on ctx. */
static int state_for(struct mem_state **out, conduit_ctx *ctx)
{
	for (size_t i = 0; i < ctx->nbackends; i++)
		if (ctx->backends[i].be == &cd_backend_mem) {
			*out = ctx->backends[i].state;
			return CONDUIT_OK;
		}
	struct mem_state *st = calloc(1, sizeof(*st));
	if (st == NULL)
		return conduit_ctx_fail(ctx, CONDUIT_ERR_NOMEM,
		                        "mem pair: out of memory");
	int rc = conduit_ctx_register(ctx, &cd_backend_mem, st);
	if (rc != CONDUIT_OK) {
		free(st);
		return rc; /* the message is on ctx */
	}
	*out = st;
	return CONDUIT_OK;
}

static struct mem_flow *end_new(conduit_ctx *ctx, struct mem_pair *p, int side,
                                unsigned long n)
{
	struct mem_flow *mf = calloc(1, sizeof(*mf));
	if (mf == NULL)
		return NULL;
	char uri[sizeof(mf->uri_buf)];
	snprintf(uri, sizeof(uri), "mem://%lu/%c", n, side == 0 ? 'a' : 'b');
	if (conduit_flow_init_in(&mf->base, &mem_ops, ctx, uri, mf->uri_buf,
	                         sizeof(mf->uri_buf)) != CONDUIT_OK) {
		free(mf);
		return NULL;
	}
	mf->base.state |= CONDUIT_FLOW_ESTABLISHED;
	mf->pair = p;
	mf->side = side;
	p->refs++;
	return mf;
}

int conduit_mem_pair(conduit_flow **a, conduit_flow **b, conduit_ctx *ctx,
                     const struct conduit_mem_config *cfg)
{
	if (a != NULL)
		*a = NULL;
	if (b != NULL)
		*b = NULL;
	if (ctx == NULL)
		return CONDUIT_ERR_INVALID;
	if (a == NULL || b == NULL)
		return conduit_ctx_fail(ctx, CONDUIT_ERR_INVALID,
		                        "mem pair: no place for the %s flow",
		                        a == NULL ? "first" : "second");
	size_t cap = cfg != NULL ? cfg->capacity : 0;
	if (cap == 0)
		cap = CONDUIT_MEM_DEFAULT_CAPACITY;
	if (cap > CONDUIT_MEM_MAX_CAPACITY)
		return conduit_ctx_fail(ctx, CONDUIT_ERR_INVALID,
		                        "mem pair: capacity %zu is above the "
		                        "limit of %u bytes",
		                        cap, CONDUIT_MEM_MAX_CAPACITY);
	struct mem_state *st = NULL;
	int rc = state_for(&st, ctx);
	if (rc != CONDUIT_OK)
		return rc;
	struct mem_pair *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return conduit_ctx_fail(ctx, CONDUIT_ERR_NOMEM,
		                        "mem pair: out of memory");
	p->max_io = cfg != NULL ? cfg->max_io : 0;
	for (int i = 0; i < 2; i++) {
		p->ring[i].cap = cap;
		p->ring[i].buf = malloc(cap);
	}
	unsigned long n = ++st->pairs;
	struct mem_flow *fa = NULL, *fb = NULL;
	if (p->ring[0].buf != NULL && p->ring[1].buf != NULL)
		fa = end_new(ctx, p, 0, n);
	if (fa != NULL)
		fb = end_new(ctx, p, 1, n);
	if (fb == NULL) {
		if (fa != NULL) {
			fa->graceful = true;
			mem_destroy(&fa->base); /* frees p with the last ref */
		} else {
			free(p->ring[0].buf);
			free(p->ring[1].buf);
			free(p);
		}
		return conduit_ctx_fail(ctx, CONDUIT_ERR_NOMEM,
		                        "mem pair: out of memory for two "
		                        "buffers of %zu bytes",
		                        cap);
	}
	*a = &fa->base;
	*b = &fb->base;
	return CONDUIT_OK;
}

int conduit_mem_inject(conduit_flow *f, int status)
{
	if (f == NULL || f->ops != &mem_ops || status < CONDUIT_ERR_INVALID ||
	    status >= CONDUIT_STATUS_COUNT)
		return CONDUIT_ERR_INVALID;
	mf_of(f)->inject = status;
	return CONDUIT_OK;
}
