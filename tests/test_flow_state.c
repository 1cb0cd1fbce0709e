/*
 * test_flow_state.c - the states in which the core answers for every
 * backend: a failed flow is ready at once and repeats its failure, and
 * reading, writing and shutting down are refused after close and after
 * shutdown.
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
	conduit_listener *l = fk_unix_listener(ctx, dir, sizeof(dir));
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
	conduit_listener *l = fk_unix_listener(ctx, dir, sizeof(dir));
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

int main(void)
{
	const struct cd_test tests[] = {
	    CD_TEST(failed_flow_ready_at_once, 0),
	    CD_TEST(operations_after_close, 0),
	    CD_TEST(operations_after_shutdown, 0),
	};
	return cd_run(
	    cd_suite("flow_state", tests, sizeof(tests) / sizeof(tests[0])));
}
