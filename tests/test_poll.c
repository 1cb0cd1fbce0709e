/*
 * test_poll.c - conduit_poll(): a single-process event loop over two
 * listeners and 128 flows (unix and tcp mixed) with every byte checked,
 * its timeout, backends' per-context hooks (order, state, failures), and
 * poll items that are not valid.
 */
#include "flowkit.h"
#include "harness.h"

#include <conduit/backend.h>
#include <conduit/conduit.h>

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* A small event loop over 130 objects                                 */

enum { NCLIENTS = 64, PER_CLIENT = 48 * 1024, BUFSZ = 8192 };

/*
 * One end of a connection.  A client sends a 4-byte header with its index
 * and then PER_CLIENT bytes of its stream, and reads its stream back.  A
 * server learns the index from the header, checks the stream as it comes
 * and echoes it.
 */
struct end {
	conduit_flow *f;
	bool client;
	bool done;
	uint32_t idx;
	uint64_t sent, got; /* stream bytes only, header excluded */
	uint8_t hdr[4];
	size_t hdrlen; /* client: header bytes sent; server: received */
	uint8_t buf[BUFSZ];
	size_t buflen, bufoff; /* server: echo bytes held */
	bool eof;
};

static uint32_t stream_seed(uint32_t idx)
{
	return 1000 + idx;
}

/* Events an end waits for, or 0 when it has nothing left to do. */
static unsigned end_events(const struct end *e, bool go)
{
	if (e->done)
		return 0;
	if (e->client) {
		unsigned ev = CONDUIT_POLLIN;
		if (go && (e->hdrlen < 4 || e->sent < PER_CLIENT))
			ev |= CONDUIT_POLLOUT;
		return ev;
	}
	if (e->bufoff < e->buflen)
		return CONDUIT_POLLOUT;
	return CONDUIT_POLLIN;
}

/* Client work after a wake-up; returns 0 or a step number. */
static int client_step(struct end *e, unsigned revents)
{
	if (revents & CONDUIT_POLLOUT) {
		size_t n = 0;
		int rc;
		if (e->hdrlen < 4) {
			rc = conduit_write(e->f, e->hdr + e->hdrlen,
			                   4 - e->hdrlen, &n);
			if (rc == CONDUIT_OK)
				e->hdrlen += n;
		} else {
			uint8_t out[BUFSZ];
			uint64_t left = PER_CLIENT - e->sent;
			size_t len = left < BUFSZ ? (size_t)left : BUFSZ;
			cd_pattern(stream_seed(e->idx), e->sent, out, len);
			rc = conduit_write(e->f, out, len, &n);
			if (rc == CONDUIT_OK) {
				e->sent += n;
				if (e->sent == PER_CLIENT &&
				    conduit_shutdown(e->f, CONDUIT_SHUT_WR) !=
				        CONDUIT_OK)
					return 1;
			}
		}
		if (rc != CONDUIT_OK && !fk_is_want(rc))
			return 2;
	}
	if (revents & CONDUIT_POLLIN) {
		uint8_t in[BUFSZ];
		size_t n = 0;
		int rc = conduit_read(e->f, in, sizeof(in), &n);
		if (rc == CONDUIT_OK) {
			if (n > PER_CLIENT - e->got ||
			    cd_pattern_check(stream_seed(e->idx), e->got, in,
			                     n) != n)
				return 3;
			e->got += n;
		} else if (rc == CONDUIT_EOF) {
			if (e->got != PER_CLIENT || e->sent != PER_CLIENT)
				return 4;
			e->done = true;
		} else if (!fk_is_want(rc)) {
			return 5;
		}
	}
	return 0;
}

/* Server work after a wake-up; returns 0 or a step number. */
static int server_step(struct end *e, unsigned revents)
{
	if ((revents & CONDUIT_POLLIN) && e->bufoff == e->buflen && !e->eof) {
		size_t n = 0;
		uint8_t *dst = e->hdrlen < 4 ? e->hdr + e->hdrlen : e->buf;
		size_t room = e->hdrlen < 4 ? 4 - e->hdrlen : sizeof(e->buf);
		int rc = conduit_read(e->f, dst, room, &n);
		if (rc == CONDUIT_OK && e->hdrlen < 4) {
			e->hdrlen += n;
			if (e->hdrlen == 4) {
				e->idx = (uint32_t)e->hdr[0] |
				         (uint32_t)e->hdr[1] << 8 |
				         (uint32_t)e->hdr[2] << 16 |
				         (uint32_t)e->hdr[3] << 24;
				if (e->idx >= NCLIENTS)
					return 10;
			}
		} else if (rc == CONDUIT_OK) {
			if (n > PER_CLIENT - e->got ||
			    cd_pattern_check(stream_seed(e->idx), e->got,
			                     e->buf, n) != n)
				return 11;
			e->got += n;
			e->buflen = n;
			e->bufoff = 0;
		} else if (rc == CONDUIT_EOF) {
			if (e->got != PER_CLIENT)
				return 12;
			e->eof = true;
		} else if (!fk_is_want(rc)) {
			return 13;
		}
	}
	if ((revents & CONDUIT_POLLOUT) && e->bufoff < e->buflen) {
		size_t n = 0;
		int rc = conduit_write(e->f, e->buf + e->bufoff,
		                       e->buflen - e->bufoff, &n);
		if (rc == CONDUIT_OK) {
			e->bufoff += n;
			e->sent += n;
		} else if (!fk_is_want(rc)) {
			return 14;
		}
	}
	if (e->eof && e->bufoff == e->buflen && !e->done) {
		/* All echoed: pass the end of stream on. */
		if (conduit_shutdown(e->f, CONDUIT_SHUT_WR) != CONDUIT_OK)
			return 15;
		e->done = true;
	}
	return 0;
}

START_TEST(event_loop_128_flows)
{
	char dir[256];
	conduit_ctx *ctx = fk_new_ctx();
	conduit_listener *lis[2];
	lis[0] = fk_unix_listener(ctx, dir, sizeof(dir));
	lis[1] = fk_listen(ctx, "tcp://127.0.0.1:0");

	static struct end ends[2 * NCLIENTS];
	memset(ends, 0, sizeof(ends));
	int nends = 0;
	for (uint32_t i = 0; i < NCLIENTS; i++) {
		struct end *e = &ends[nends++];
		e->client = true;
		e->idx = i;
		for (int b = 0; b < 4; b++)
			e->hdr[b] = (uint8_t)(i >> (8 * b));
		const char *uri = conduit_listener_uri(lis[i % 2]);
		int rc = conduit_connect(&e->f, ctx, uri);
		ck_assert_msg(rc == CONDUIT_OK, "connect %s: %s", uri,
		              conduit_ctx_error(ctx));
	}

	static struct conduit_pollitem items[2 + 2 * NCLIENTS];
	static struct end *owner[2 + 2 * NCLIENTS];
	int accepted = 0, finished = 0;
	size_t most = 0, polls = 0;
	uint64_t deadline = cd_now_ms() + (uint64_t)cd_scaled(20000);
	while (finished < 2 * NCLIENTS) {
		ck_assert_msg(cd_now_ms() < deadline,
		              "event loop stuck: %d accepted, %d finished",
		              accepted, finished);
		ck_assert_uint_lt(polls, 1000000);
		/* Clients send only once all 64 are accepted, so that one
		 * poll really covers every flow at once. */
		bool go = accepted == NCLIENTS;
		size_t n = 0;
		for (int i = 0; i < 2; i++) {
			memset(&items[n], 0, sizeof(items[n]));
			items[n].listener = lis[i];
			items[n].events =
			    accepted < NCLIENTS ? CONDUIT_POLLIN : 0;
			owner[n++] = NULL;
		}
		for (int i = 0; i < nends; i++) {
			unsigned ev = end_events(&ends[i], go);
			if (ends[i].done)
				continue;
			memset(&items[n], 0, sizeof(items[n]));
			items[n].flow = ends[i].f;
			items[n].events = ev;
			owner[n++] = &ends[i];
		}
		if (n > most)
			most = n;
		size_t nready = 0;
		ck_status(conduit_poll(ctx, items, n, 2000, &nready),
		          CONDUIT_OK);
		polls++;
		size_t seen = 0;
		for (size_t k = 0; k < n; k++) {
			if (items[k].revents == 0)
				continue;
			seen++;
			ck_assert_msg((items[k].revents & ~items[k].events) ==
			                  0,
			              "revents %u outside events %u",
			              items[k].revents, items[k].events);
			struct end *e = owner[k];
			if (e == NULL) {
				/* A listener: take every waiting connection. */
				for (int j = 0; j < NCLIENTS; j++) {
					conduit_flow *f = NULL;
					int rc = conduit_accept(
					    &f, items[k].listener);
					if (rc == CONDUIT_WANT_READ)
						break;
					ck_status(rc, CONDUIT_OK);
					ck_assert_int_lt(nends, 2 * NCLIENTS);
					ends[nends].f = f;
					ends[nends].client = false;
					nends++;
					accepted++;
				}
				continue;
			}
			int r = e->client ? client_step(e, items[k].revents)
			                  : server_step(e, items[k].revents);
			ck_assert_msg(r == 0, "%s %u failed at step %d: %s",
			              e->client ? "client" : "server", e->idx,
			              r, conduit_flow_error(e->f));
			if (e->done)
				finished++;
		}
		ck_assert_uint_eq(seen, nready);
	}
	ck_assert_int_eq(accepted, NCLIENTS);
	ck_assert_uint_eq(most, 2 + 2 * NCLIENTS);

	for (int i = 0; i < nends; i++) {
		struct conduit_flow_stats st;
		conduit_flow_stats(ends[i].f, &st);
		if (ends[i].client) {
			ck_assert_uint_eq(st.bytes_written, 4 + PER_CLIENT);
			ck_assert_uint_eq(st.bytes_read, PER_CLIENT);
		} else {
			ck_assert_uint_eq(st.bytes_read, 4 + PER_CLIENT);
			ck_assert_uint_eq(st.bytes_written, PER_CLIENT);
		}
		ck_status(conduit_close(ends[i].f), CONDUIT_OK);
		conduit_flow_free(ends[i].f);
	}
	conduit_listener_free(lis[0]);
	conduit_listener_free(lis[1]);
	conduit_ctx_free(ctx);
	cd_rmtree(dir);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Timeouts                                                            */

START_TEST(poll_timeout_nothing_ready)
{
	char dir[256];
	conduit_ctx *ctx = fk_new_ctx();
	conduit_listener *l = fk_unix_listener(ctx, dir, sizeof(dir));
	conduit_flow *c = NULL, *s = NULL;
	fk_pair(ctx, l, NULL, &c, &s);

	/* An idle flow and a listener with nobody waiting. */
	struct conduit_pollitem it[2] = {
	    {.flow = c, .events = CONDUIT_POLLIN},
	    {.listener = l, .events = CONDUIT_POLLIN}};
	size_t nready = 99;
	uint64_t start = cd_now_ms();
	ck_status(conduit_poll(ctx, it, 2, 200, &nready), CONDUIT_OK);
	uint64_t took = cd_now_ms() - start;
	ck_assert_uint_eq(nready, 0);
	ck_assert_uint_eq(it[0].revents, 0);
	ck_assert_uint_eq(it[1].revents, 0);
	ck_assert_msg(took >= 190, "returned after %llu ms of 200",
	              (unsigned long long)took);
	ck_assert_msg(took < 5000, "returned after %llu ms of 200",
	              (unsigned long long)took);

	/* No items at all: a plain sleep. */
	start = cd_now_ms();
	ck_status(conduit_poll(ctx, NULL, 0, 100, &nready), CONDUIT_OK);
	ck_assert_uint_eq(nready, 0);
	ck_assert_uint_ge(cd_now_ms() - start, 90);

	/* Zero: look, do not sleep. */
	start = cd_now_ms();
	ck_status(conduit_poll(ctx, it, 2, 0, &nready), CONDUIT_OK);
	ck_assert_uint_eq(nready, 0);
	ck_assert_uint_lt(cd_now_ms() - start, 5000);

	/* Writable is ready at once; readable once data arrives. */
	it[0].events = CONDUIT_POLLIN | CONDUIT_POLLOUT;
	ck_status(conduit_poll(ctx, it, 1, 5000, &nready), CONDUIT_OK);
	ck_assert_uint_eq(nready, 1);
	ck_assert_uint_eq(it[0].revents, CONDUIT_POLLOUT);
	ck_status(conduit_write_all(s, "d", 1, NULL, cd_scaled(1000)),
	          CONDUIT_OK);
	it[0].events = CONDUIT_POLLIN;
	ck_status(conduit_poll(ctx, it, 1, 5000, &nready), CONDUIT_OK);
	ck_assert_uint_eq(nready, 1);
	ck_assert_uint_eq(it[0].revents, CONDUIT_POLLIN);

	fk_free_all(c, s, l, ctx);
	cd_rmtree(dir);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Backends' pending work                                              */

/* A backend's per-context hook that logs each run: its tag, in order. */
struct hook {
	char tag;
	int status;      /* what it returns */
	unsigned nap_ms; /* sleeps this long on its next run */
	unsigned runs;
};
static char hook_log[64];
static size_t hook_nlog;

static int hook_run(void *state)
{
	struct hook *h = state;
	h->runs++;
	if (hook_nlog < sizeof(hook_log) - 1)
		hook_log[hook_nlog++] = h->tag;
	hook_log[hook_nlog] = '\0';
	if (h->nap_ms > 0) {
		usleep(h->nap_ms * 1000u);
		h->nap_ms = 0;
	}
	return h->status;
}

static void hook_log_clear(void)
{
	hook_nlog = 0;
	hook_log[0] = '\0';
}

static const char *const no_names[] = {NULL};
static const struct conduit_backend hook_a = {
    .name = "hook-a", .transports = no_names, .ctx_process = hook_run};
static const struct conduit_backend hook_b = {
    .name = "hook-b", .transports = no_names, .ctx_process = hook_run};
static const struct conduit_backend hook_none = {.name = "hook-none",
                                                 .transports = no_names};

/*
 * conduit_process() and conduit_poll() run every registered hook once per
 * turn, in the order of registration, with the state last registered,
 * and report the first failure after running them all.
 */
START_TEST(backend_hooks_run_in_order)
{
	conduit_ctx *ctx = fk_new_ctx();
	size_t builtin = conduit_ctx_backend_count(ctx);
	struct hook a = {.tag = 'a'}, a2 = {.tag = 'A'}, b = {.tag = 'b'};
	ck_status(conduit_ctx_register(ctx, &hook_a, &a), CONDUIT_OK);
	ck_status(conduit_ctx_register(ctx, &hook_none, NULL), CONDUIT_OK);
	ck_status(conduit_ctx_register(ctx, &hook_b, &b), CONDUIT_OK);
	hook_log_clear();
	ck_status(conduit_process(ctx), CONDUIT_OK);
	ck_assert_str_eq(hook_log, "ab");

	/* Failures: the first is reported, and every hook still ran. */
	b.status = CONDUIT_ERR_SYSTEM;
	hook_log_clear();
	ck_status(conduit_process(ctx), CONDUIT_ERR_SYSTEM);
	ck_assert_str_eq(hook_log, "ab");
	a.status = CONDUIT_ERR_NOMEM;
	hook_log_clear();
	ck_status(conduit_process(ctx), CONDUIT_ERR_NOMEM);
	ck_assert_str_eq(hook_log, "ab");
	a.status = b.status = CONDUIT_OK;

	/* Registered again: the new state, in the old place, no new entry. */
	ck_status(conduit_ctx_register(ctx, &hook_a, &a2), CONDUIT_OK);
	ck_assert_uint_eq(conduit_ctx_backend_count(ctx), builtin + 3);
	hook_log_clear();
	ck_status(conduit_process(ctx), CONDUIT_OK);
	ck_assert_str_eq(hook_log, "Ab");

	/* conduit_poll: one turn when something is ready at once (a
	 * failed hook does not make the poll fail)... */
	char dir[256];
	conduit_listener *l = fk_unix_listener(ctx, dir, sizeof(dir));
	conduit_flow *c = NULL, *s = NULL;
	fk_pair(ctx, l, NULL, &c, &s);
	struct conduit_pollitem it = {.flow = c, .events = CONDUIT_POLLOUT};
	size_t nready = 0;
	b.status = CONDUIT_ERR_SYSTEM;
	hook_log_clear();
	ck_status(conduit_poll(ctx, &it, 1, 1000, &nready), CONDUIT_OK);
	ck_assert_uint_eq(nready, 1);
	ck_assert_str_eq(hook_log, "Ab");
	b.status = CONDUIT_OK;
	/* ...and with timeout 0 and nothing ready, one turn, no sleep. */
	it.events = CONDUIT_POLLIN;
	hook_log_clear();
	uint64_t start = cd_now_ms();
	ck_status(conduit_poll(ctx, &it, 1, 0, &nready), CONDUIT_OK);
	ck_assert_uint_eq(nready, 0);
	ck_assert_uint_lt(cd_now_ms() - start, 1000);
	ck_assert_str_eq(hook_log, "Ab");

	/* Slow pending work does not shorten the timeout. */
	a2.nap_ms = 30;
	start = cd_now_ms();
	ck_status(conduit_poll(ctx, &it, 1, 60, &nready), CONDUIT_OK);
	uint64_t took = cd_now_ms() - start;
	ck_assert_uint_eq(nready, 0);
	ck_assert_msg(took >= 60 && took < 5000, "returned after %llu ms of 60",
	              (unsigned long long)took);
	ck_assert_uint_eq(a2.nap_ms, 0);
	ck_assert_uint_eq(a.runs, 3);

	fk_free_all(c, s, l, ctx);
	cd_rmtree(dir);
}
END_TEST

START_TEST(invalid_poll_items)
{
	char dir[256];
	conduit_ctx *ctx = fk_new_ctx();
	conduit_listener *l = fk_unix_listener(ctx, dir, sizeof(dir));
	conduit_flow *c = NULL, *s = NULL;
	fk_pair(ctx, l, NULL, &c, &s);
	struct pollfd fds[4];
	size_t nready = 7, nfds = 0;
	int timeout = 0;

	struct conduit_pollitem bad[] = {
	    {.flow = c, .listener = l, .events = CONDUIT_POLLIN},
	    {.events = CONDUIT_POLLIN},
	    {.flow = c, .events = 4},
	    {.flow = c, .events = CONDUIT_POLLIN | 0x80000000u},
	    {.listener = l, .events = 0x100},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		/* Next to a valid item, so the bad one cannot hide. */
		struct conduit_pollitem two[2] = {
		    {.flow = s, .events = CONDUIT_POLLOUT}, bad[i]};
		uint64_t start = cd_now_ms();
		ck_status(conduit_poll(ctx, two, 2, 2000, &nready),
		          CONDUIT_ERR_INVALID);
		ck_assert_uint_lt(cd_now_ms() - start, 1000);
		ck_assert_uint_eq(nready, 0);
		ck_status(
		    conduit_wait_fds(ctx, two, 2, fds, 4, &nfds, &timeout),
		    CONDUIT_ERR_INVALID);
	}
	ck_status(conduit_poll(ctx, NULL, 1, 0, &nready), CONDUIT_ERR_INVALID);
	struct conduit_pollitem ok = {.flow = c, .events = CONDUIT_POLLOUT};
	ck_status(conduit_poll(ctx, &ok, 1, 0, NULL), CONDUIT_ERR_INVALID);
	ck_status(conduit_poll(NULL, &ok, 1, 0, &nready), CONDUIT_ERR_INVALID);
	ck_status(conduit_wait_fds(ctx, NULL, 1, fds, 4, &nfds, &timeout),
	          CONDUIT_ERR_INVALID);
	ck_status(conduit_wait_fds(ctx, &ok, 1, fds, 4, NULL, &timeout),
	          CONDUIT_ERR_INVALID);
	ck_status(conduit_wait_fds(ctx, &ok, 1, fds, 4, &nfds, NULL),
	          CONDUIT_ERR_INVALID);
	ck_status(conduit_wait_fds(ctx, &ok, 1, NULL, 4, &nfds, &timeout),
	          CONDUIT_ERR_INVALID);
	/* Events 0 is valid and never ready. */
	struct conduit_pollitem none = {.flow = c, .events = 0};
	ck_status(conduit_poll(ctx, &none, 1, 0, &nready), CONDUIT_OK);
	ck_assert_uint_eq(nready, 0);

	fk_free_all(c, s, l, ctx);
	cd_rmtree(dir);
}
END_TEST

int main(void)
{
	const struct cd_test tests[] = {
	    CD_TEST(event_loop_128_flows, 30),
	    CD_TEST(poll_timeout_nothing_ready, 0),
	    CD_TEST(backend_hooks_run_in_order, 0),
	    CD_TEST(invalid_poll_items, 0),
	};
	return cd_run(
	    cd_suite("poll", tests, sizeof(tests) / sizeof(tests[0])));
}
