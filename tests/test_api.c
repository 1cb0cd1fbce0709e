/*
 * test_api.c - the edges of the public API: NULL pointers and invalid
 * arguments everywhere, and the status and phase texts and names.
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
/* NULL everywhere                                                     */

START_TEST(null_arguments)
{
	char dir[256];
	conduit_ctx *ctx = fk_new_ctx();
	conduit_listener *l = fk_unix_listener(ctx, dir, sizeof(dir));
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
	    CD_TEST(null_arguments, 0),
	    CD_TEST(status_texts_and_names, 0),
	};
	return cd_run(cd_suite("api", tests, sizeof(tests) / sizeof(tests[0])));
}
