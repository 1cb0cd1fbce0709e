/*
 * test_connect.c - how a flow connects when its endpoint has several
 * addresses: the RFC 8305 race (a silent address does not hold up a good
 * one), the order of attempts (families alternate), losers closed, and
 * failure when every address refuses or stays silent.
 *
 * A "silent" address is a loopback listener whose accept queue is full:
 * Linux then drops new SYNs, so a connect to it neither succeeds nor
 * fails until TCP gives up.  Addresses are set on the endpoint through the
 * private cd_endpoint_set_addresses(), standing in for a name that
 * resolves to several addresses.
 */
#include "flowkit.h"
#include "harness.h"

#include <conduit/conduit.h>

#include "core.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* An endpoint for tcp://name.test:port carrying the given addresses. */
static conduit_endpoint *endpoint_with(int port, const char *const *addrs,
                                       size_t n)
{
	char uri[64];
	snprintf(uri, sizeof(uri), "tcp://name.test:%d", port);
	conduit_endpoint *ep = NULL;
	ck_assert_int_eq(conduit_endpoint_parse(&ep, uri, NULL, 0), CONDUIT_OK);
	struct conduit_addr a[16];
	ck_assert_uint_le(n, 16);
	for (size_t i = 0; i < n; i++)
		a[i] = fk_addr(addrs[i]);
	ck_assert_int_eq(cd_endpoint_set_addresses(ep, a, n), CONDUIT_OK);
	return ep;
}

/*
 * The first address never answers; the second, 250 ms later, connects.
 * Trying in turn would wait out the whole (10 s) connect timeout and fail.
 */
START_TEST(silent_first_address_loses_the_race)
{
	conduit_ctx *ctx = fk_new_ctx();
	conduit_listener *l = NULL;
	ck_assert_int_eq(conduit_listen(&l, ctx, "tcp://127.0.0.1:0"), CONDUIT_OK);
	int port = fk_listener_port(l);

	struct fk_silent s;
	fk_silent_listen(&s, "127.0.0.2", port);
	static const char *const addrs[] = {"127.0.0.2", "127.0.0.1"};
	conduit_endpoint *ep = endpoint_with(port, addrs, 2);

	struct fk_events seen = {0};
	conduit_ctx_set_observer(ctx, fk_record, &seen);
	conduit_ctx_set_connect_timeout(ctx, 10000);
	int before = cd_count_fds();
	conduit_flow *f = NULL;
	ck_assert_int_eq(conduit_connect_endpoint(&f, ctx, ep), CONDUIT_OK);
	ck_assert_int_eq(fk_drive_handshake(ctx, f, 2000), CONDUIT_OK);
	/* The loser's descriptor is closed: one socket remains. */
	ck_assert_int_eq(cd_count_fds(), before + 1);
	ck_assert_int_eq(fk_count_phase(&seen, CONDUIT_PHASE_CONNECTING), 2);
	ck_assert_int_eq(fk_count_phase(&seen, CONDUIT_PHASE_CONNECTED), 1);
	ck_assert_msg(strncmp(seen.detail[0], "127.0.0.2:", 10) == 0,
	              "first attempt went to %s", seen.detail[0]);
	for (int i = 0; i < seen.n; i++)
		if (seen.phase[i] == CONDUIT_PHASE_CONNECTED)
			ck_assert_msg(strstr(seen.detail[i], "127.0.0.1:") != NULL,
			              "connected to %s", seen.detail[i]);

	/* The winner really is the listener on 127.0.0.1. */
	conduit_flow *srv = NULL;
	ck_assert_int_eq(conduit_accept_wait(&srv, l, 5000), CONDUIT_OK);
	size_t n = 0;
	ck_assert_int_eq(conduit_write_all(f, "x", 1, &n, 5000), CONDUIT_OK);
	char c = 0;
	ck_assert_int_eq(conduit_read_wait(srv, &c, 1, &n, 5000), CONDUIT_OK);
	ck_assert_int_eq(c, 'x');

	conduit_ctx_set_observer(ctx, NULL, NULL);
	conduit_flow_free(srv);
	conduit_flow_free(f);
	conduit_endpoint_free(ep);
	conduit_listener_free(l);
	fk_silent_free(&s);
	conduit_ctx_free(ctx);
}
END_TEST

/*
 * Families alternate, IPv6 first, and each family keeps its order.  Every address refuses, so attempts follow each
 * other at once and the failure names the count and the last address.
 */
START_TEST(families_alternate_and_all_refuse)
{
	conduit_ctx *ctx = fk_new_ctx();
	/* A port nobody listens on: bind one, read it, close it. */
	conduit_listener *l = NULL;
	ck_assert_int_eq(conduit_listen(&l, ctx, "tcp://127.0.0.1:0"), CONDUIT_OK);
	int port = fk_listener_port(l);
	conduit_listener_free(l);

	static const char *const addrs[] = {"127.0.0.1", "127.0.0.2", "::1",
	                                    "127.0.0.3", "::ffff:127.0.0.4"};
	static const char *const order[] = {"[::1]", "127.0.0.1",
	                                    "[::ffff:127.0.0.4]", "127.0.0.2",
	                                    "127.0.0.3"};
	conduit_endpoint *ep = endpoint_with(port, addrs, 5);
	struct fk_events seen = {0};
	conduit_ctx_set_observer(ctx, fk_record, &seen);
	conduit_flow *f = NULL;
	int rc = conduit_connect_endpoint(&f, ctx, ep);
	if (rc == CONDUIT_OK) {
		rc = fk_drive_handshake(ctx, f, 2000);
		ck_assert_msg(strstr(conduit_flow_error(f), "5 addresses tried"),
		              "message: %s", conduit_flow_error(f));
		conduit_flow_free(f);
	} else {
		ck_assert_msg(strstr(conduit_ctx_error(ctx), "5 addresses tried"),
		              "message: %s", conduit_ctx_error(ctx));
	}
	ck_assert_int_eq(rc, CONDUIT_ERR_REFUSED);
	int k = 0;
	for (int i = 0; i < seen.n; i++) {
		if (seen.phase[i] != CONDUIT_PHASE_CONNECTING)
			continue;
		ck_assert_int_lt(k, 5);
		ck_assert_msg(strncmp(seen.detail[i], order[k], strlen(order[k])) ==
		                      0,
		              "attempt %d went to %s, expected %s", k,
		              seen.detail[i], order[k]);
		k++;
	}
	ck_assert_int_eq(k, 5);
	conduit_ctx_set_observer(ctx, NULL, NULL);
	conduit_endpoint_free(ep);
	conduit_ctx_free(ctx);
}
END_TEST

/* Every address silent: the connect timeout ends the race, and every
 * attempt's descriptor is closed. */
START_TEST(all_silent_times_out)
{
	conduit_ctx *ctx = fk_new_ctx();
	struct fk_silent a, b;
	int port = fk_silent_listen(&a, "127.0.0.2", 0);
	fk_silent_listen(&b, "127.0.0.3", port);
	static const char *const addrs[] = {"127.0.0.2", "127.0.0.3"};
	conduit_endpoint *ep = endpoint_with(port, addrs, 2);
	conduit_ctx_set_connect_timeout(ctx, 700);
	int before = cd_count_fds();
	conduit_flow *f = NULL;
	ck_assert_int_eq(conduit_connect_endpoint(&f, ctx, ep), CONDUIT_OK);
	ck_assert_int_eq(fk_drive_handshake(ctx, f, 2000), CONDUIT_ERR_TIMED_OUT);
	ck_assert_int_eq(cd_count_fds(), before);
	ck_assert_msg(strstr(conduit_flow_error(f), "timed out") != NULL,
	              "message: %s", conduit_flow_error(f));
	conduit_flow_free(f);
	conduit_endpoint_free(ep);
	fk_silent_free(&a);
	fk_silent_free(&b);
	conduit_ctx_free(ctx);
}
END_TEST

/*
 * More addresses than attempts may be in flight, all silent: once every
 * slot is taken, the next address can only start when an attempt ends, so
 * the flow must not ask to be woken for a start time that has passed.
 * If it did, every conduit_poll() would return at once: a busy loop for
 * the rest of the connect timeout.
 */
START_TEST(full_race_does_not_spin)
{
	conduit_ctx *ctx = fk_new_ctx();
	struct fk_silent s;
	int port = fk_silent_listen(&s, "127.0.0.2", 0);
	static const char *const addrs[] = {
		"127.0.0.2", "127.0.0.2", "127.0.0.2", "127.0.0.2", "127.0.0.2",
		"127.0.0.2", "127.0.0.2", "127.0.0.2", "127.0.0.2", "127.0.0.2",
	};
	conduit_endpoint *ep = endpoint_with(port, addrs, 10);
	struct fk_events seen = {0};
	conduit_ctx_set_observer(ctx, fk_record, &seen);
	conduit_ctx_set_connect_timeout(ctx, 8000);
	conduit_flow *f = NULL;
	ck_assert_int_eq(conduit_connect_endpoint(&f, ctx, ep), CONDUIT_OK);
	/* Eight attempts start 250 ms apart: about 1.75 s. */
	uint64_t until = cd_now_ms() + 5000;
	while (fk_count_phase(&seen, CONDUIT_PHASE_CONNECTING) < 8 &&
	       cd_now_ms() < until) {
		ck_status(conduit_handshake(f), CONDUIT_WANT_WRITE);
		usleep(20 * 1000);
	}
	ck_assert_int_eq(fk_count_phase(&seen, CONDUIT_PHASE_CONNECTING), 8);
	usleep(300 * 1000); /* past the start time of the ninth */
	ck_status(conduit_handshake(f), CONDUIT_WANT_WRITE);
	ck_assert_int_eq(fk_count_phase(&seen, CONDUIT_PHASE_CONNECTING), 8);
	struct conduit_pollitem it = {.flow = f, .events = CONDUIT_POLLOUT};
	struct pollfd fds[16];
	size_t nfds = 0;
	int timeout = -2;
	ck_status(conduit_wait_fds(ctx, &it, 1, fds, 16, &nfds, &timeout),
	          CONDUIT_OK);
	ck_assert_uint_eq(nfds, 8);
	ck_assert_msg(timeout > 1000, "woken again in %d ms", timeout);
	conduit_ctx_set_observer(ctx, NULL, NULL);
	conduit_flow_free(f);
	conduit_endpoint_free(ep);
	fk_silent_free(&s);
	conduit_ctx_free(ctx);
}
END_TEST

int main(void)
{
	const struct cd_test tests[] = {
		CD_TEST(silent_first_address_loses_the_race, 20),
		CD_TEST(families_alternate_and_all_refuse, 10),
		CD_TEST(all_silent_times_out, 10),
		CD_TEST(full_race_does_not_spin, 20),
	};
	return cd_run(cd_suite("connect", tests, sizeof(tests) / sizeof(tests[0])));
}
