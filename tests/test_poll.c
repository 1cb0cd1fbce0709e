/*
 * test_poll.c - waiting and the rules every flow obeys, whatever its
 * backend: a single-process event loop over two listeners and 128 flows
 * (unix and tcp mixed) with every byte checked, conduit_poll()'s timeout,
 * an external event loop built on conduit_wait_fds() + poll(2) +
 * conduit_process(), backends' per-context hooks (order, state, failures),
 * invalid arguments and NULL pointers everywhere, the states in which
 * reading, writing and shutting down are refused, and the status texts
 * and names.
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

/* A unix listener in a fresh directory (dir receives its path). */
static conduit_listener *unix_listener(conduit_ctx *ctx, char *dir, size_t len)
{
	char uri[512];
	cd_tmpdir(dir, len);
	snprintf(uri, sizeof(uri), "unix://%s/poll.sock", dir);
	return fk_listen(ctx, uri);
}

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
	lis[0] = unix_listener(ctx, dir, sizeof(dir));
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
	conduit_listener *l = unix_listener(ctx, dir, sizeof(dir));
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
	conduit_listener *l = unix_listener(ctx, dir, sizeof(dir));
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

/* ------------------------------------------------------------------ */
/* An external event loop                                              */

/*
 * The application owns the loop: conduit_wait_fds() says what to wait
 * for, poll(2) waits, conduit_process() does pending work, and then every
 * operation is simply retried (they are all non-blocking).  An echo of
 * 1 MiB over TCP, checked byte by byte.
 */
START_TEST(external_loop_wait_fds)
{
	enum { TOTAL = 1024 * 1024 };
	conduit_ctx *ctx = fk_new_ctx();
	conduit_listener *l = fk_listen(ctx, "tcp://127.0.0.1:0");
	conduit_flow *c = NULL, *s = NULL;
	ck_status(conduit_connect(&c, ctx, conduit_listener_uri(l)),
	          CONDUIT_OK);

	uint64_t sent = 0, got = 0;
	uint8_t echo[4096];
	size_t echolen = 0, echooff = 0;
	bool server_eof = false, client_eof = false;
	uint64_t deadline = cd_now_ms() + (uint64_t)cd_scaled(10000);
	int loops = 0;
	while (!client_eof) {
		ck_assert_msg(cd_now_ms() < deadline, "external loop stuck");
		ck_assert_int_lt(++loops, 1000000);
		struct conduit_pollitem items[3];
		size_t n = 0;
		memset(items, 0, sizeof(items));
		if (s == NULL) {
			items[n].listener = l;
			items[n++].events = CONDUIT_POLLIN;
		} else {
			items[n].flow = s;
			items[n++].events = echooff < echolen ? CONDUIT_POLLOUT
			                                      : CONDUIT_POLLIN;
		}
		items[n].flow = c;
		items[n++].events =
		    CONDUIT_POLLIN | (sent < TOTAL ? CONDUIT_POLLOUT : 0u);

		struct pollfd fds[8];
		size_t nfds = 0;
		int timeout = -2;
		ck_status(
		    conduit_wait_fds(ctx, items, n, fds, 8, &nfds, &timeout),
		    CONDUIT_OK);
		ck_assert_uint_ge(nfds, 1);
		ck_assert_int_ge(timeout, -1);
		for (size_t k = 0; k < nfds; k++) {
			ck_assert_int_ge(fds[k].fd, 0);
			ck_assert(fds[k].events & (POLLIN | POLLOUT));
		}
		/* Never wait forever in a test. */
		int r = poll(fds, (nfds_t)nfds,
		             timeout < 0 || timeout > 1000 ? 1000 : timeout);
		ck_assert_msg(r >= 0 || errno == EINTR, "poll: %s",
		              strerror(errno));
		ck_status(conduit_process(ctx), CONDUIT_OK);

		if (s == NULL) {
			int rc = conduit_accept(&s, l);
			if (rc != CONDUIT_WANT_READ)
				ck_status(rc, CONDUIT_OK);
		}
		if (sent < TOTAL) {
			uint8_t out[4096];
			size_t len = TOTAL - sent < sizeof(out) ? TOTAL - sent
			                                        : sizeof(out);
			cd_pattern(77, sent, out, len);
			size_t w = 0;
			int rc = conduit_write(c, out, len, &w);
			if (!fk_is_want(rc)) {
				ck_status(rc, CONDUIT_OK);
				sent += w;
				if (sent == TOTAL)
					ck_status(conduit_shutdown(
					              c, CONDUIT_SHUT_WR),
					          CONDUIT_OK);
			}
		}
		if (s != NULL && echooff == echolen && !server_eof) {
			size_t rd = 0;
			int rc = conduit_read(s, echo, sizeof(echo), &rd);
			if (rc == CONDUIT_EOF) {
				server_eof = true;
				ck_status(conduit_shutdown(s, CONDUIT_SHUT_WR),
				          CONDUIT_OK);
			} else if (!fk_is_want(rc)) {
				ck_status(rc, CONDUIT_OK);
				echolen = rd;
				echooff = 0;
			}
		}
		if (s != NULL && echooff < echolen) {
			size_t w = 0;
			int rc = conduit_write(s, echo + echooff,
			                       echolen - echooff, &w);
			if (!fk_is_want(rc)) {
				ck_status(rc, CONDUIT_OK);
				echooff += w;
			}
		}
		uint8_t in[4096];
		size_t rd = 0;
		int rc = conduit_read(c, in, sizeof(in), &rd);
		if (rc == CONDUIT_EOF) {
			client_eof = true;
		} else if (!fk_is_want(rc)) {
			ck_status(rc, CONDUIT_OK);
			size_t bad = cd_pattern_check(77, got, in, rd);
			ck_assert_msg(bad == rd, "echo wrong at byte %llu",
			              (unsigned long long)(got + bad));
			got += rd;
		}
	}
	ck_assert_uint_eq(sent, TOTAL);
	ck_assert_uint_eq(got, TOTAL);

	/* The descriptors it asks for are the flows' own. */
	struct conduit_pollitem items[2] = {
	    {.flow = c, .events = CONDUIT_POLLOUT},
	    {.flow = s, .events = CONDUIT_POLLOUT}};
	struct pollfd fds[4];
	size_t nfds = 0;
	int timeout = -2;
	ck_status(conduit_wait_fds(ctx, items, 2, fds, 4, &nfds, &timeout),
	          CONDUIT_OK);
	ck_assert_uint_eq(nfds, 2);
	ck_assert_int_eq(fds[0].fd, conduit_flow_fd(c));
	ck_assert_int_eq(fds[1].fd, conduit_flow_fd(s));
	ck_assert_int_eq(fds[0].events, POLLOUT);
	ck_assert_int_eq(timeout, -1);

	fk_free_all(c, s, l, ctx);
}
END_TEST

START_TEST(wait_fds_reports_needed_count)
{
	char dir[256];
	conduit_ctx *ctx = fk_new_ctx();
	conduit_listener *l = unix_listener(ctx, dir, sizeof(dir));
	conduit_flow *c[3], *s[3];
	for (int i = 0; i < 3; i++)
		fk_pair(ctx, l, NULL, &c[i], &s[i]);
	struct conduit_pollitem items[3];
	memset(items, 0, sizeof(items));
	for (int i = 0; i < 3; i++) {
		items[i].flow = c[i];
		items[i].events = CONDUIT_POLLIN;
	}
	struct pollfd fds[8];
	size_t nfds = 0;
	int timeout = 0;
	ck_status(conduit_wait_fds(ctx, items, 3, fds, 1, &nfds, &timeout),
	          CONDUIT_ERR_INVALID);
	ck_assert_uint_eq(nfds, 3);
	ck_assert_str_ne(conduit_ctx_error(ctx), "");
	nfds = 0;
	ck_status(conduit_wait_fds(ctx, items, 3, NULL, 0, &nfds, &timeout),
	          CONDUIT_ERR_INVALID);
	ck_assert_uint_eq(nfds, 3);
	ck_status(conduit_wait_fds(ctx, items, 3, fds, 3, &nfds, &timeout),
	          CONDUIT_OK);
	ck_assert_uint_eq(nfds, 3);
	ck_assert_int_eq(timeout, -1);
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(fds[i].fd, conduit_flow_fd(c[i]));
		ck_assert_int_eq(fds[i].events, POLLIN);
	}
	/* Both interests: one entry each. */
	for (int i = 0; i < 3; i++)
		items[i].events = CONDUIT_POLLIN | CONDUIT_POLLOUT;
	ck_status(conduit_wait_fds(ctx, items, 3, fds, 5, &nfds, &timeout),
	          CONDUIT_ERR_INVALID);
	ck_assert_uint_eq(nfds, 6);
	ck_status(conduit_wait_fds(ctx, items, 3, fds, 8, &nfds, &timeout),
	          CONDUIT_OK);
	ck_assert_uint_eq(nfds, 6);
	/* Something ready now: the timeout is zero. */
	ck_status(conduit_close(c[0]), CONDUIT_OK);
	items[0].events = CONDUIT_POLLIN;
	ck_status(conduit_wait_fds(ctx, items, 1, fds, 8, &nfds, &timeout),
	          CONDUIT_OK);
	ck_assert_int_eq(timeout, 0);
	for (int i = 0; i < 3; i++) {
		conduit_flow_free(c[i]);
		conduit_flow_free(s[i]);
	}
	conduit_listener_free(l);
	conduit_ctx_free(ctx);
	cd_rmtree(dir);
}
END_TEST

START_TEST(invalid_poll_items)
{
	char dir[256];
	conduit_ctx *ctx = fk_new_ctx();
	conduit_listener *l = unix_listener(ctx, dir, sizeof(dir));
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

/* ------------------------------------------------------------------ */
/* Failed and closed flows                                             */

START_TEST(failed_flow_ready_at_once)
{
	conduit_ctx *ctx = fk_new_ctx();
	conduit_listener *l = fk_listen(ctx, "tcp://127.0.0.1:0");
	char uri[128];
	snprintf(uri, sizeof(uri), "%s", conduit_listener_uri(l));
	conduit_listener_free(l);

	conduit_flow *f = NULL;
	int rc = conduit_connect(&f, ctx, uri);
	if (rc != CONDUIT_OK) {
		/* Refused on the spot: nothing to poll.  Loopback usually
		 * reports it asynchronously, which is what is tested. */
		ck_status(rc, CONDUIT_ERR_REFUSED);
		conduit_ctx_free(ctx);
		return;
	}
	ck_status(fk_drive_handshake(ctx, f, 1000), CONDUIT_ERR_REFUSED);

	/* Whatever it is asked, a failed flow is ready: the next call
	 * reports the failure instead of waiting. */
	for (int round = 0; round < 3; round++) {
		struct conduit_pollitem it = {
		    .flow = f, .events = CONDUIT_POLLIN | CONDUIT_POLLOUT};
		size_t nready = 0;
		uint64_t start = cd_now_ms();
		ck_status(conduit_poll(ctx, &it, 1, 10000, &nready),
		          CONDUIT_OK);
		ck_assert_uint_lt(cd_now_ms() - start, 5000);
		ck_assert_uint_eq(nready, 1);
		ck_assert_uint_eq(it.revents, CONDUIT_POLLIN | CONDUIT_POLLOUT);
		char b;
		size_t n;
		ck_status(conduit_read(f, &b, 1, &n), CONDUIT_ERR_REFUSED);
	}
	/* conduit_wait_fds() agrees: do not sleep. */
	struct conduit_pollitem it = {.flow = f, .events = CONDUIT_POLLIN};
	struct pollfd fds[2];
	size_t nfds;
	int timeout = -2;
	ck_status(conduit_wait_fds(ctx, &it, 1, fds, 2, &nfds, &timeout),
	          CONDUIT_OK);
	ck_assert_int_eq(timeout, 0);
	/* Nothing to wait on, and certainly no stale descriptor that an
	 * epoll-based loop would choke on. */
	for (size_t k = 0; k < nfds; k++)
		ck_assert_msg(fds[k].fd >= 0,
		              "wait_fds gave descriptor %d for "
		              "a failed flow",
		              fds[k].fd);
	conduit_flow_free(f);
	conduit_ctx_free(ctx);
}
END_TEST

START_TEST(operations_after_close)
{
	char dir[256];
	conduit_ctx *ctx = fk_new_ctx();
	conduit_listener *l = unix_listener(ctx, dir, sizeof(dir));
	conduit_flow *c = NULL, *s = NULL;
	fk_pair(ctx, l, NULL, &c, &s);
	ck_status(conduit_close(c), CONDUIT_OK);
	char b[4];
	size_t n = 9;
	ck_status(conduit_read(c, b, sizeof(b), &n), CONDUIT_ERR_STATE);
	ck_assert_uint_eq(n, 0);
	ck_assert_ptr_nonnull(strstr(conduit_flow_error(c), "closed"));
	ck_status(conduit_write(c, "x", 1, &n), CONDUIT_ERR_STATE);
	struct conduit_iov iov = {"x", 1};
	ck_status(conduit_writev(c, &iov, 1, &n), CONDUIT_ERR_STATE);
	ck_status(conduit_shutdown(c, CONDUIT_SHUT_WR), CONDUIT_ERR_STATE);
	ck_status(conduit_shutdown(c, CONDUIT_SHUT_RDWR), CONDUIT_ERR_STATE);
	ck_status(conduit_handshake(c), CONDUIT_ERR_STATE);
	ck_status(conduit_read_wait(c, b, sizeof(b), &n, 100),
	          CONDUIT_ERR_STATE);
	ck_status(conduit_write_all(c, "x", 1, &n, 100), CONDUIT_ERR_STATE);
	ck_assert_uint_eq(n, 0);
	/* Closing again is harmless. */
	ck_status(conduit_close(c), CONDUIT_OK);
	/* Nothing was counted. */
	struct conduit_flow_stats st;
	conduit_flow_stats(c, &st);
	ck_assert_uint_eq(st.bytes_read + st.bytes_written, 0);
	fk_free_all(c, s, l, ctx);
	cd_rmtree(dir);
}
END_TEST

START_TEST(operations_after_shutdown)
{
	char dir[256];
	conduit_ctx *ctx = fk_new_ctx();
	conduit_listener *l = unix_listener(ctx, dir, sizeof(dir));
	conduit_flow *c = NULL, *s = NULL;
	fk_pair(ctx, l, NULL, &c, &s);
	char b = 0;
	size_t n = 0;

	/* Write side shut: writes refused, reads go on. */
	ck_status(conduit_shutdown(c, CONDUIT_SHUT_WR), CONDUIT_OK);
	ck_status(conduit_write(c, "x", 1, &n), CONDUIT_ERR_STATE);
	ck_assert_ptr_nonnull(strstr(conduit_flow_error(c), "shut down"));
	ck_status(conduit_shutdown(c, CONDUIT_SHUT_WR), CONDUIT_OK);
	ck_status(conduit_read_wait(s, &b, 1, &n, cd_scaled(2000)),
	          CONDUIT_EOF);
	ck_status(conduit_write_all(s, "y", 1, NULL, cd_scaled(2000)),
	          CONDUIT_OK);
	ck_status(conduit_read_wait(c, &b, 1, &n, cd_scaled(2000)), CONDUIT_OK);
	ck_assert_int_eq(b, 'y');
	/* The state error is not a failure of the flow. */
	ck_status(conduit_write(c, "x", 1, &n), CONDUIT_ERR_STATE);
	ck_status(conduit_read(c, &b, 1, &n), CONDUIT_WANT_READ);

	/* Read side shut: reads refused, writes go on. */
	ck_status(conduit_shutdown(s, CONDUIT_SHUT_RD), CONDUIT_OK);
	ck_status(conduit_read(s, &b, 1, &n), CONDUIT_ERR_STATE);
	ck_status(conduit_read_wait(s, &b, 1, &n, 100), CONDUIT_ERR_STATE);
	ck_status(conduit_write_all(s, "z", 1, NULL, cd_scaled(2000)),
	          CONDUIT_OK);
	ck_status(conduit_read_wait(c, &b, 1, &n, cd_scaled(2000)), CONDUIT_OK);
	ck_assert_int_eq(b, 'z');

	/* Invalid directions. */
	ck_status(conduit_shutdown(s, 0), CONDUIT_ERR_INVALID);
	ck_status(conduit_shutdown(s, 4), CONDUIT_ERR_INVALID);
	fk_free_all(c, s, l, ctx);
	cd_rmtree(dir);
}
END_TEST

/* ------------------------------------------------------------------ */
/* NULL everywhere                                                     */

START_TEST(null_arguments)
{
	char dir[256];
	conduit_ctx *ctx = fk_new_ctx();
	conduit_listener *l = unix_listener(ctx, dir, sizeof(dir));
	const char *uri = conduit_listener_uri(l);
	conduit_flow *c = NULL, *s = NULL;
	fk_pair(ctx, l, NULL, &c, &s);
	conduit_flow *f = NULL;
	conduit_listener *l2 = NULL;
	conduit_endpoint *ep = NULL;
	char buf[16];
	size_t n = 0;
	int timeout = 0;
	struct pollfd fds[2];
	struct conduit_flow_stats st = {1, 1};
	struct conduit_peer_cred cred;
	struct conduit_iov iov = {buf, 1};

	/* Context. */
	ck_status(conduit_ctx_new(NULL), CONDUIT_ERR_INVALID);
	conduit_ctx_free(NULL);
	ck_assert_str_eq(conduit_ctx_error(NULL), "");
	conduit_ctx_set_connect_timeout(NULL, 5);
	ck_assert_uint_eq(conduit_ctx_backend_count(NULL), 0);
	ck_assert_ptr_null(conduit_ctx_backend_name(NULL, 0));
	ck_assert_ptr_null(conduit_ctx_backend_name(ctx, 1000));
	conduit_ctx_set_observer(NULL, NULL, NULL);
	ck_assert_str_eq(conduit_phase_name((enum conduit_phase)1000), "?");

	/* Endpoints. */
	ck_status(conduit_endpoint_parse(NULL, uri, buf, sizeof(buf)),
	          CONDUIT_ERR_INVALID);
	ck_assert_int_ne(conduit_endpoint_parse(&ep, NULL, NULL, 0),
	                 CONDUIT_OK);
	ck_assert_ptr_null(ep);
	ck_assert_ptr_null(conduit_endpoint_dup(NULL));
	conduit_endpoint_free(NULL);
	(void)conduit_endpoint_equal(NULL, NULL);
	ck_assert_ptr_nonnull(conduit_endpoint_uri(NULL));
	ck_assert_ptr_nonnull(conduit_endpoint_transport(NULL));
	ck_assert_uint_eq(conduit_endpoint_layer_count(NULL), 0);
	ck_assert_ptr_null(conduit_endpoint_layer(NULL, 0));
	(void)conduit_endpoint_host_kind(NULL);
	ck_assert_ptr_nonnull(conduit_endpoint_host(NULL));
	ck_assert_ptr_nonnull(conduit_endpoint_zone(NULL));
	ck_assert_int_eq(conduit_endpoint_port(NULL), -1);
	ck_assert_ptr_nonnull(conduit_endpoint_path(NULL));
	ck_assert_ptr_null(conduit_endpoint_option(NULL, "mode"));
	ck_assert_uint_eq(conduit_endpoint_address_count(NULL), 0);
	ck_assert_ptr_null(conduit_endpoint_address(NULL, 0));
	(void)conduit_addr_format(NULL, buf, sizeof(buf));
	(void)conduit_addr_format(NULL, NULL, 0);
	ck_status(conduit_resolve(NULL, ctx, uri), CONDUIT_ERR_INVALID);
	ck_status(conduit_resolve(&ep, NULL, uri), CONDUIT_ERR_INVALID);
	ck_status(conduit_resolve(&ep, ctx, NULL), CONDUIT_ERR_INVALID);
	ck_assert_ptr_null(ep);

	/* Connecting and listening. */
	ck_status(conduit_connect(NULL, ctx, uri), CONDUIT_ERR_INVALID);
	ck_status(conduit_connect(&f, NULL, uri), CONDUIT_ERR_INVALID);
	ck_status(conduit_connect(&f, ctx, NULL), CONDUIT_ERR_INVALID);
	ck_status(conduit_connect_endpoint(NULL, ctx, NULL),
	          CONDUIT_ERR_INVALID);
	ck_status(conduit_connect_endpoint(&f, ctx, NULL), CONDUIT_ERR_INVALID);
	ck_status(conduit_connect_wait(NULL, ctx, uri, 100),
	          CONDUIT_ERR_INVALID);
	ck_status(conduit_connect_wait(&f, NULL, uri, 100),
	          CONDUIT_ERR_INVALID);
	ck_status(conduit_connect_wait(&f, ctx, NULL, 100),
	          CONDUIT_ERR_INVALID);
	ck_assert_ptr_null(f);
	ck_status(conduit_listen(NULL, ctx, uri), CONDUIT_ERR_INVALID);
	ck_status(conduit_listen(&l2, NULL, uri), CONDUIT_ERR_INVALID);
	ck_status(conduit_listen(&l2, ctx, NULL), CONDUIT_ERR_INVALID);
	ck_status(conduit_listen_endpoint(&l2, ctx, NULL), CONDUIT_ERR_INVALID);
	ck_status(conduit_listen_endpoint(NULL, NULL, NULL),
	          CONDUIT_ERR_INVALID);
	ck_assert_ptr_null(l2);
	ck_status(conduit_accept(NULL, l), CONDUIT_ERR_INVALID);
	ck_status(conduit_accept(&f, NULL), CONDUIT_ERR_INVALID);
	ck_status(conduit_accept_wait(NULL, l, 100), CONDUIT_ERR_INVALID);
	ck_status(conduit_accept_wait(&f, NULL, 100), CONDUIT_ERR_INVALID);
	ck_assert_str_eq(conduit_listener_uri(NULL), "");
	ck_assert_str_eq(conduit_listener_error(NULL), "");
	conduit_listener_free(NULL);
	/* None of that queued a connection. */
	ck_status(conduit_accept(&f, l), CONDUIT_WANT_READ);

	/* Flows. */
	ck_status(conduit_handshake(NULL), CONDUIT_ERR_INVALID);
	ck_status(conduit_read(NULL, buf, 1, &n), CONDUIT_ERR_INVALID);
	ck_status(conduit_read(c, NULL, 1, &n), CONDUIT_ERR_INVALID);
	ck_status(conduit_read(c, buf, 1, NULL), CONDUIT_ERR_INVALID);
	ck_status(conduit_write(NULL, buf, 1, &n), CONDUIT_ERR_INVALID);
	ck_status(conduit_write(c, NULL, 1, &n), CONDUIT_ERR_INVALID);
	ck_status(conduit_write(c, buf, 1, NULL), CONDUIT_ERR_INVALID);
	ck_status(conduit_writev(NULL, &iov, 1, &n), CONDUIT_ERR_INVALID);
	ck_status(conduit_writev(c, NULL, 1, &n), CONDUIT_ERR_INVALID);
	ck_status(conduit_writev(c, &iov, 1, NULL), CONDUIT_ERR_INVALID);
	struct conduit_iov holes[2] = {{buf, 1}, {NULL, 3}};
	ck_status(conduit_writev(c, holes, 2, &n), CONDUIT_ERR_INVALID);
	ck_status(conduit_shutdown(NULL, CONDUIT_SHUT_WR), CONDUIT_ERR_INVALID);
	ck_status(conduit_close(NULL), CONDUIT_ERR_INVALID);
	conduit_flow_free(NULL);
	ck_assert_str_eq(conduit_flow_error(NULL), "");
	ck_assert_str_eq(conduit_flow_uri(NULL), "");
	conduit_flow_stats(NULL, &st);
	ck_assert_uint_eq(st.bytes_read + st.bytes_written, 0);
	conduit_flow_stats(c, NULL);
	ck_status(conduit_flow_peer_cred(NULL, &cred), CONDUIT_ERR_INVALID);
	ck_status(conduit_flow_peer_cred(c, NULL), CONDUIT_ERR_INVALID);
	ck_assert_int_eq(conduit_flow_fd(NULL), -1);
	ck_status(conduit_read_wait(NULL, buf, 1, &n, 100),
	          CONDUIT_ERR_INVALID);
	ck_status(conduit_read_wait(c, buf, 1, NULL, 100), CONDUIT_ERR_INVALID);
	ck_status(conduit_write_all(NULL, buf, 1, &n, 100),
	          CONDUIT_ERR_INVALID);
	ck_status(conduit_write_all(c, NULL, 1, &n, 100), CONDUIT_ERR_INVALID);
	ck_status(conduit_close_wait(NULL, 100), CONDUIT_ERR_INVALID);

	/* Waiting. */
	ck_status(conduit_poll(NULL, NULL, 0, 0, &n), CONDUIT_ERR_INVALID);
	ck_status(conduit_wait_fds(NULL, NULL, 0, fds, 2, &n, &timeout),
	          CONDUIT_ERR_INVALID);
	ck_status(conduit_process(NULL), CONDUIT_ERR_INVALID);

	/* The flows the invalid calls were given are unharmed. */
	ck_status(conduit_write_all(c, "k", 1, NULL, cd_scaled(1000)),
	          CONDUIT_OK);
	ck_status(conduit_read_wait(s, buf, 1, &n, cd_scaled(1000)),
	          CONDUIT_OK);
	ck_assert_int_eq(buf[0], 'k');
	fk_free_all(c, s, l, ctx);
	cd_rmtree(dir);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Status texts                                                        */

START_TEST(status_texts_and_names)
{
	for (int i = 0; i < CONDUIT_STATUS_COUNT; i++) {
		const char *t = conduit_strerror(i),
		           *nm = conduit_status_name(i);
		ck_assert_ptr_nonnull(t);
		ck_assert_ptr_nonnull(nm);
		ck_assert_str_ne(t, "");
		ck_assert_str_ne(t, "unknown status");
		ck_assert_msg(strncmp(nm, "CONDUIT_", 8) == 0, "name %s", nm);
		for (int j = 0; j < i; j++) {
			ck_assert_str_ne(t, conduit_strerror(j));
			ck_assert_str_ne(nm, conduit_status_name(j));
		}
	}
	/* The names are the enumerators. */
	ck_assert_str_eq(conduit_status_name(CONDUIT_OK), "CONDUIT_OK");
	ck_assert_str_eq(conduit_status_name(CONDUIT_ERR_REFUSED),
	                 "CONDUIT_ERR_REFUSED");
	ck_assert_str_eq(conduit_status_name(CONDUIT_STATUS_COUNT - 1),
	                 "CONDUIT_ERR_TRUNCATED");
	ck_assert_str_eq(conduit_strerror(CONDUIT_ERR_TIMED_OUT), "timed out");
	static const int out[] = {-1,
	                          CONDUIT_STATUS_COUNT,
	                          CONDUIT_STATUS_COUNT + 1,
	                          1000,
	                          INT_MAX,
	                          INT_MIN};
	for (size_t i = 0; i < sizeof(out) / sizeof(out[0]); i++) {
		ck_assert_str_eq(conduit_strerror(out[i]), "unknown status");
		ck_assert_str_eq(conduit_status_name(out[i]), "?");
	}
	/* Phase names likewise. */
	for (int p = CONDUIT_PHASE_RESOLVING; p <= CONDUIT_PHASE_TLS_HANDSHAKED;
	     p++) {
		ck_assert_str_ne(conduit_phase_name((enum conduit_phase)p),
		                 "?");
		for (int q = CONDUIT_PHASE_RESOLVING; q < p; q++)
			ck_assert_str_ne(
			    conduit_phase_name((enum conduit_phase)p),
			    conduit_phase_name((enum conduit_phase)q));
	}
	ck_assert_str_eq(conduit_phase_name(CONDUIT_PHASE_CONNECTING),
	                 "connecting");
	ck_assert_str_eq(conduit_phase_name((enum conduit_phase) - 1), "?");
}
END_TEST

int main(void)
{
	const struct cd_test tests[] = {
	    CD_TEST(event_loop_128_flows, 30),
	    CD_TEST(poll_timeout_nothing_ready, 0),
	    CD_TEST(backend_hooks_run_in_order, 0),
	    CD_TEST(external_loop_wait_fds, 20),
	    CD_TEST(wait_fds_reports_needed_count, 0),
	    CD_TEST(invalid_poll_items, 0),
	    CD_TEST(failed_flow_ready_at_once, 0),
	    CD_TEST(operations_after_close, 0),
	    CD_TEST(operations_after_shutdown, 0),
	    CD_TEST(null_arguments, 0),
	    CD_TEST(status_texts_and_names, 0),
	};
	return cd_run(
	    cd_suite("poll", tests, sizeof(tests) / sizeof(tests[0])));
}
