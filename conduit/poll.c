/*
 * poll.c - waiting on any mix of flows and listeners, whatever their
 * backend.  Each object describes what it waits on for an interest (fds,
 * a deadline) and what it can do without waiting (pending work); the
 * context's backends add their own (timers, shared wires).  One poll(2)
 * covers everything.  The blocking conveniences are built on it.
 */
#include "core.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

int conduit_waitset_fd(struct conduit_waitset *ws, int fd, unsigned events)
{
	if (ws->nfds == ws->cap) {
		if (!ws->grow) {
			ws->overflow = true;
			ws->nfds++; /* keep counting so the caller learns the
			               size */
			return CONDUIT_OK;
		}
		size_t cap = ws->cap ? ws->cap * 2 : 16;
		struct pollfd *p = realloc(ws->fds, cap * sizeof(*p));
		if (p == NULL) {
			ws->overflow = true;
			return CONDUIT_ERR_NOMEM;
		}
		ws->fds = p;
		ws->cap = cap;
	}
	if (ws->nfds < ws->cap) {
		struct pollfd *p = &ws->fds[ws->nfds];
		p->fd = fd;
		p->events = (short)(((events & CONDUIT_POLLIN) ? POLLIN : 0) |
		                    ((events & CONDUIT_POLLOUT) ? POLLOUT : 0));
		p->revents = 0;
	}
	ws->nfds++;
	return CONDUIT_OK;
}

void conduit_waitset_deadline(struct conduit_waitset *ws, uint64_t at_ms)
{
	if (at_ms < ws->deadline)
		ws->deadline = at_ms;
}

/* What is ready for item without waiting.  Inline: conduit_poll() asks
 * this of every item on every turn. */
static inline unsigned item_pending(const struct conduit_pollitem *it)
{
	conduit_flow *f = it->flow;
	if (__builtin_expect(f != NULL, 1)) {
		/* The common case first: a flow still in use whose backend
		 * can tell. */
		unsigned (*pending)(conduit_flow *, unsigned) = f->ops->pending;
		if (__builtin_expect(!(f->state & (CONDUIT_FLOW_FAILED |
		                                   CONDUIT_FLOW_CLOSED)) &&
		                         pending != NULL,
		                     1))
			return pending(f, it->events) & it->events;
		if (f->state & (CONDUIT_FLOW_FAILED | CONDUIT_FLOW_CLOSED))
			return it->events;
		return 0;
	}
	conduit_listener *l = it->listener;
	if (l->ops->pending != NULL && (it->events & CONDUIT_POLLIN))
		return l->ops->pending(l) ? CONDUIT_POLLIN : 0;
	return 0;
}

static const unsigned bits[2] = {CONDUIT_POLLIN, CONDUIT_POLLOUT};

/* Fill ws with what items wait on, one span per (item, interest bit),
 * then the context's backends.  spans has 2*n entries. */
static void collect(conduit_ctx *ctx, struct conduit_pollitem *items, size_t n,
                    struct conduit_waitset *ws, struct cd_span *spans)
{
	uint64_t all = UINT64_MAX;
	for (size_t i = 0; i < n; i++) {
		for (int b = 0; b < 2; b++) {
			struct cd_span *sp = &spans[2 * i + b];
			ws->deadline = UINT64_MAX;
			/* A failed or closed flow is ready (item_pending) and
			 * waits on nothing: its descriptor may be gone (-1). */
			bool over =
			    items[i].flow != NULL &&
			    (items[i].flow->state &
			     (CONDUIT_FLOW_FAILED | CONDUIT_FLOW_CLOSED));
			if ((items[i].events & bits[b]) && !over) {
				if (items[i].flow != NULL)
					items[i].flow->ops->wait(items[i].flow,
					                         bits[b], ws);
				else if (bits[b] == CONDUIT_POLLIN)
					items[i].listener->ops->wait(
					    items[i].listener, ws);
			}
			sp->end = ws->nfds;
			sp->deadline = ws->deadline;
			if (ws->deadline < all)
				all = ws->deadline;
		}
	}
	ws->deadline = UINT64_MAX;
	for (size_t i = 0; i < ctx->nbackends; i++)
		if (ctx->backends[i].be->ctx_wait != NULL)
			ctx->backends[i].be->ctx_wait(ctx->backends[i].state,
			                              ws);
	if (all < ws->deadline)
		ws->deadline = all;
}

/* An item that is not valid: neither or both of flow and listener, or
 * unknown event bits. */
static inline bool item_invalid(const struct conduit_pollitem *it)
{
	return (it->flow == NULL) == (it->listener == NULL) ||
	       (it->events & ~(CONDUIT_POLLIN | CONDUIT_POLLOUT));
}

/* The index of the first item that is not valid; n if all are. */
static inline size_t first_invalid(const struct conduit_pollitem *items,
                                   size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (item_invalid(&items[i]))
			return i;
	return n;
}

static inline int valid_items(struct conduit_pollitem *items, size_t n)
{
	if (n > 0 && items == NULL)
		return 0;
	size_t bad = first_invalid(items, n);
	for (size_t i = 0; i < bad; i++)
		items[i].revents = 0;
	return bad == n;
}

/* Every backend's pending work; the first failure, after running all. */
static inline int run_procs(conduit_ctx *ctx)
{
	int rc = CONDUIT_OK;
	for (size_t i = 0; i < ctx->nprocs; i++) {
		int r = ctx->procs[i].fn(ctx->procs[i].state);
		if (r != CONDUIT_OK && rc == CONDUIT_OK)
			rc = r;
	}
	return rc;
}

int conduit_process(conduit_ctx *ctx)
{
	if (ctx == NULL)
		return CONDUIT_ERR_INVALID;
	return run_procs(ctx);
}

static int ms_until(uint64_t deadline, uint64_t now)
{
	if (deadline == UINT64_MAX)
		return -1;
	if (deadline <= now)
		return 0;
	uint64_t d = deadline - now;
	return d > INT32_MAX ? INT32_MAX : (int)d;
}

static int grow_spans(conduit_ctx *ctx, size_t n)
{
	if (ctx->spans_cap >= 2 * n)
		return CONDUIT_OK;
	struct cd_span *s = realloc(ctx->spans, 2 * n * sizeof(*s));
	if (s == NULL)
		return conduit_ctx_fail(ctx, CONDUIT_ERR_NOMEM,
		                        "poll: out of memory for %zu items", n);
	ctx->spans = s;
	ctx->spans_cap = 2 * n;
	return CONDUIT_OK;
}

int conduit_wait_fds(conduit_ctx *ctx, struct conduit_pollitem *items, size_t n,
                     struct pollfd *fds, size_t cap, size_t *nfds,
                     int *timeout_ms)
{
	if (ctx == NULL || nfds == NULL || timeout_ms == NULL ||
	    (fds == NULL && cap > 0) || !valid_items(items, n))
		return CONDUIT_ERR_INVALID;
	int rc = grow_spans(ctx, n);
	if (rc != CONDUIT_OK)
		return rc;
	struct conduit_waitset ws = {
	    .fds = fds, .cap = cap, .grow = false, .deadline = UINT64_MAX};
	bool ready = false;
	for (size_t i = 0; i < n; i++)
		if (item_pending(&items[i]) != 0)
			ready = true;
	collect(ctx, items, n, &ws, ctx->spans);
	*nfds = ws.nfds;
	if (ws.overflow)
		return conduit_ctx_fail(
		    ctx, CONDUIT_ERR_INVALID,
		    "wait_fds: %zu descriptors needed, room for "
		    "%zu",
		    ws.nfds, cap);
	*timeout_ms = ready ? 0 : ms_until(ws.deadline, conduit_now_ms());
	return CONDUIT_OK;
}

/* Every backend's pending work when no one looks at the status
 * (conduit_poll: a failing stack shows in its flows). */
static inline void run_procs_quiet(conduit_ctx *ctx)
{
	const struct cd_proc *p = ctx->procs, *end = p + ctx->nprocs;
	for (; p < end; p++)
		p->fn(p->state);
}

/* One turn that never sleeps: the backends' pending work, then what each
 * item can do; the number of items ready.  Sets every revents. */
static inline size_t ready_now(conduit_ctx *ctx, struct conduit_pollitem *items,
                               size_t n)
{
	run_procs_quiet(ctx);
	size_t ready = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned r = item_pending(&items[i]);
		items[i].revents = r;
		ready += r != 0;
	}
	return ready;
}

/*
 * The waiting part of conduit_poll(), entered once a turn found nothing
 * ready (every revents is 0): wait until limit (UINT64_MAX: forever),
 * or, when rel_ms >= 0, until rel_ms milliseconds after now.  now is a
 * recent clock reading (0 if none was taken).  The clock is read only
 * where a deadline needs it: not when something is ready at once, and not
 * after poll(2) reports a descriptor: a deadline that passed meanwhile is
 * seen on the next call.  Kept apart so that a call that finds work at
 * once runs none of it.
 */
static __attribute__((noinline)) int
wait_until(conduit_ctx *ctx, struct conduit_pollitem *items, size_t n,
           uint64_t limit, uint64_t now, int rel_ms, size_t *nready)
{
	int rc = grow_spans(ctx, n);
	if (rc != CONDUIT_OK)
		return rc;
	if (rel_ms >= 0) {
		/* The timeout runs from the first time there is nothing to
		 * do: a call that finds work at once, a busy loop's every
		 * call, reads no clock. */
		now = conduit_now_ms();
		limit = now + (uint64_t)rel_ms;
	}
	for (;;) {
		struct conduit_waitset ws = {.fds = ctx->pfds,
		                             .cap = ctx->pfds_cap,
		                             .grow = true,
		                             .deadline = UINT64_MAX};
		collect(ctx, items, n, &ws, ctx->spans);
		ctx->pfds = ws.fds;
		ctx->pfds_cap = ws.cap;
		if (ws.overflow)
			return conduit_ctx_fail(
			    ctx, CONDUIT_ERR_NOMEM,
			    "poll: out of memory for %zu descriptors", ws.nfds);
		uint64_t wake = ws.deadline < limit ? ws.deadline : limit;
		bool timed = wake != UINT64_MAX;
		if (timed && now == 0)
			now = conduit_now_ms();
		int r = poll(ws.fds, (nfds_t)ws.nfds,
		             timed ? ms_until(wake, now) : -1);
		if (r < 0 && errno != EINTR)
			return conduit_ctx_fail(
			    ctx, conduit_status_from_errno(errno), "poll: %s",
			    strerror(errno));
		now = timed && r <= 0 ? conduit_now_ms() : 0;

		size_t ready = 0, k = 0;
		for (size_t i = 0; i < n; i++) {
			for (int b = 0; b < 2; b++) {
				struct cd_span *sp = &ctx->spans[2 * i + b];
				bool hit = now != 0 && sp->deadline <= now;
				for (; k < sp->end; k++)
					if (r > 0 && ws.fds[k].revents != 0)
						hit = true;
				if (hit && (items[i].events & bits[b]))
					items[i].revents |= bits[b];
			}
			if (items[i].revents)
				ready++;
		}
		if (ready == 0 && now != 0 && now >= limit)
			return CONDUIT_OK;
		if (ready == 0)
			ready = ready_now(ctx, items, n);
		if (ready > 0) {
			*nready = ready;
			return CONDUIT_OK;
		}
	}
}

/* conduit_poll() with an item that is not valid: revents of the items
 * before it cleared. */
static CD_COLD int invalid_items(struct conduit_pollitem *items, size_t bad)
{
	for (size_t i = 0; i < bad; i++)
		items[i].revents = 0;
	return CONDUIT_ERR_INVALID;
}

/*
 * The first turn is ready_now() with each item checked as it is reached
 * (one pass over the items, not two); a bad item stops the call before
 * anything is reported, with the backends' pending work done, which any
 * turn may do.
 */
CD_HOT int conduit_poll(conduit_ctx *ctx, struct conduit_pollitem *items,
                        size_t n, int timeout_ms, size_t *nready)
{
	if (__builtin_expect(
	        ctx == NULL || nready == NULL || (n > 0 && items == NULL), 0)) {
		if (nready != NULL)
			*nready = 0;
		return CONDUIT_ERR_INVALID;
	}
	*nready = 0;
	run_procs_quiet(ctx);
	size_t ready = 0;
	for (size_t i = 0; i < n; i++) {
		struct conduit_pollitem *it = &items[i];
		if (__builtin_expect(item_invalid(it), 0))
			return invalid_items(items, i);
		unsigned r = item_pending(it);
		it->revents = r;
		ready += r != 0;
	}
	if (ready > 0) {
		*nready = ready;
		return CONDUIT_OK;
	}
	return wait_until(ctx, items, n, UINT64_MAX, 0,
	                  timeout_ms < 0 ? -1 : timeout_ms, nready);
}

/* ------------------------------------------------------------------ */
/* Blocking conveniences                                               */

/*
 * The deadline of a *_wait call is fixed at its first "want", not at entry:
 * an operation that completes at once then reads no clock.  Time spent
 * before that first want is a few system calls that never block.
 */
struct wait_clock {
	int timeout_ms;
	uint64_t deadline; /* 0 until the first wait */
};

/* Descriptors wait_single() keeps on its stack: a flow waits on one, a
 * stack of netifs on a few; more take wait_until(). */
#define WAIT1_FDS 8

/*
 * wait_until() for the one item of a blocking call (read_wait,
 * write_all, ...), entered once a turn found nothing ready: the same
 * steps, without the span bookkeeping and buffers a poll of many items
 * needs.  These calls wait once per would-block, which with small writes
 * is once every few microseconds.
 */
static int wait_single(conduit_ctx *ctx, struct conduit_pollitem *it,
                       uint64_t limit, uint64_t now, size_t *nready)
{
	for (;;) {
		struct pollfd fds[WAIT1_FDS];
		struct conduit_waitset ws = {.fds = fds,
		                             .cap = WAIT1_FDS,
		                             .grow = false,
		                             .deadline = UINT64_MAX};
		if (it->flow != NULL) {
			for (int b = 0; b < 2; b++)
				if (it->events & bits[b])
					it->flow->ops->wait(it->flow, bits[b],
					                    &ws);
		} else {
			it->listener->ops->wait(it->listener, &ws);
		}
		size_t mine = ws.nfds;
		uint64_t own = ws.deadline;
		ws.deadline = UINT64_MAX;
		for (size_t i = 0; i < ctx->nbackends; i++)
			if (ctx->backends[i].be->ctx_wait != NULL)
				ctx->backends[i].be->ctx_wait(
				    ctx->backends[i].state, &ws);
		if (ws.overflow)
			return wait_until(ctx, it, 1, limit, now, -1, nready);
		uint64_t wake = own < ws.deadline ? own : ws.deadline;
		if (limit < wake)
			wake = limit;
		bool timed = wake != UINT64_MAX;
		if (timed && now == 0)
			now = conduit_now_ms();
		int r = poll(fds, (nfds_t)ws.nfds,
		             timed ? ms_until(wake, now) : -1);
		if (r < 0 && errno != EINTR)
			return conduit_ctx_fail(
			    ctx, conduit_status_from_errno(errno), "poll: %s",
			    strerror(errno));
		now = timed && r <= 0 ? conduit_now_ms() : 0;
		bool hit = now != 0 && own <= now;
		for (size_t k = 0; k < mine && r > 0 && !hit; k++)
			hit = fds[k].revents != 0;
		if (hit) {
			it->revents = it->events;
			*nready = 1;
			return CONDUIT_OK;
		}
		if (now != 0 && now >= limit)
			return CONDUIT_OK;
		size_t ready = ready_now(ctx, it, 1);
		if (ready > 0) {
			*nready = ready;
			return CONDUIT_OK;
		}
	}
}

/* Wait for one object; CONDUIT_ERR_TIMED_OUT once the deadline passes. */
static int wait_one(conduit_ctx *ctx, conduit_flow *f, conduit_listener *l,
                    unsigned events, struct wait_clock *wc)
{
	struct conduit_pollitem it = {
	    .flow = f, .listener = l, .events = events};
	size_t nready = 0;
	uint64_t now = 0, limit = UINT64_MAX;
	if (wc->timeout_ms >= 0) {
		now = conduit_now_ms();
		if (wc->deadline == 0)
			wc->deadline = now + (uint64_t)wc->timeout_ms;
		else if (now >= wc->deadline)
			return CONDUIT_ERR_TIMED_OUT;
		limit = wc->deadline;
	}
	int rc = CONDUIT_OK;
	nready = ready_now(ctx, &it, 1);
	if (nready == 0)
		rc = wait_single(ctx, &it, limit, now, &nready);
	if (rc != CONDUIT_OK)
		return rc;
	/* conduit_poll returns nothing ready only when its timeout ran out. */
	return nready == 0 ? CONDUIT_ERR_TIMED_OUT : CONDUIT_OK;
}

int conduit_connect_wait(conduit_flow **out, conduit_ctx *ctx, const char *uri,
                         int timeout_ms)
{
	/* Checked here, not only by conduit_connect(): the flow is stored
	 * through out after connecting, and a failure must leave it NULL. */
	if (out != NULL)
		*out = NULL;
	if (out == NULL)
		return CONDUIT_ERR_INVALID;
	struct wait_clock wc = {timeout_ms, 0};
	conduit_flow *f = NULL;
	int rc = conduit_connect(&f, ctx, uri);
	if (rc != CONDUIT_OK)
		return rc;
	for (;;) {
		rc = conduit_handshake(f);
		if (rc != CONDUIT_WANT_READ && rc != CONDUIT_WANT_WRITE)
			break;
		rc = wait_one(ctx, f, NULL, CONDUIT_POLLOUT, &wc);
		if (rc == CONDUIT_ERR_TIMED_OUT) {
			conduit_ctx_fail(ctx, rc,
			                 "connect %s: timed out after %d ms",
			                 f->uri, timeout_ms);
			conduit_flow_free(f);
			return rc;
		}
		if (rc != CONDUIT_OK)
			break;
	}
	if (rc != CONDUIT_OK) {
		conduit_ctx_fail(ctx, rc, "%s", conduit_flow_error(f));
		conduit_flow_free(f);
		return rc;
	}
	*out = f;
	return CONDUIT_OK;
}

int conduit_accept_wait(conduit_flow **out, conduit_listener *l, int timeout_ms)
{
	if (out != NULL)
		*out = NULL;
	if (out == NULL || l == NULL)
		return CONDUIT_ERR_INVALID;
	struct wait_clock wc = {timeout_ms, 0};
	for (;;) {
		int rc = conduit_accept(out, l);
		if (rc != CONDUIT_WANT_READ && rc != CONDUIT_WANT_WRITE)
			return rc;
		rc = wait_one(l->ctx, NULL, l, CONDUIT_POLLIN, &wc);
		if (rc == CONDUIT_ERR_TIMED_OUT)
			return conduit_listener_fail(
			    l, rc, "accept %s: timed out after %d ms", l->uri,
			    timeout_ms);
		if (rc != CONDUIT_OK)
			return rc;
	}
}

int conduit_read_wait(conduit_flow *f, void *buf, size_t len, size_t *nread,
                      int timeout_ms)
{
	if (f == NULL)
		return CONDUIT_ERR_INVALID;
	struct wait_clock wc = {timeout_ms, 0};
	for (;;) {
		int rc = conduit_read(f, buf, len, nread);
		if (rc != CONDUIT_WANT_READ && rc != CONDUIT_WANT_WRITE)
			return rc;
		rc = wait_one(f->ctx, f, NULL, CONDUIT_POLLIN, &wc);
		if (rc == CONDUIT_ERR_TIMED_OUT)
			return conduit_flow_fail(
			    f, rc, "read %s: timed out after %d ms", f->uri,
			    timeout_ms);
		if (rc != CONDUIT_OK)
			return rc;
	}
}

int conduit_write_all(conduit_flow *f, const void *buf, size_t len,
                      size_t *nwritten, int timeout_ms)
{
	size_t done = 0;
	if (nwritten != NULL)
		*nwritten = 0;
	if (f == NULL || (buf == NULL && len > 0))
		return CONDUIT_ERR_INVALID;
	struct wait_clock wc = {timeout_ms, 0};
	int rc = CONDUIT_OK;
	while (done < len) {
		size_t n = 0;
		rc = conduit_write(f, (const char *)buf + done, len - done, &n);
		done += n;
		if (rc == CONDUIT_OK)
			continue;
		if (rc != CONDUIT_WANT_READ && rc != CONDUIT_WANT_WRITE)
			break;
		rc = wait_one(f->ctx, f, NULL, CONDUIT_POLLOUT, &wc);
		if (rc == CONDUIT_ERR_TIMED_OUT) {
			conduit_flow_fail(f, rc,
			                  "write %s: timed out after %d ms",
			                  f->uri, timeout_ms);
			break;
		}
		if (rc != CONDUIT_OK)
			break;
	}
	if (nwritten != NULL)
		*nwritten = done;
	return done == len ? CONDUIT_OK : rc;
}

int conduit_close_wait(conduit_flow *f, int timeout_ms)
{
	if (f == NULL)
		return CONDUIT_ERR_INVALID;
	struct wait_clock wc = {timeout_ms, 0};
	for (;;) {
		int rc = conduit_close(f);
		if (rc != CONDUIT_WANT_READ && rc != CONDUIT_WANT_WRITE)
			return rc;
		unsigned ev =
		    rc == CONDUIT_WANT_READ ? CONDUIT_POLLIN : CONDUIT_POLLOUT;
		rc = wait_one(f->ctx, f, NULL, ev, &wc);
		if (rc != CONDUIT_OK)
			return conduit_flow_fail(f, rc, "close %s: %s", f->uri,
			                         conduit_strerror(rc));
	}
}
