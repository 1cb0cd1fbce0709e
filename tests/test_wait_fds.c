/*
 * test_wait_fds.c - an application's own event loop: conduit_wait_fds()
 * says what to wait for, poll(2) waits, conduit_process() does pending
 * work; and the count of descriptors reported when the caller's array is
 * too small.
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
	conduit_listener *l = fk_unix_listener(ctx, dir, sizeof(dir));
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

int main(void)
{
	const struct cd_test tests[] = {
	    CD_TEST(external_loop_wait_fds, 20),
	    CD_TEST(wait_fds_reports_needed_count, 0),
	};
	return cd_run(
	    cd_suite("wait_fds", tests, sizeof(tests) / sizeof(tests[0])));
}
