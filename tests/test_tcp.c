/*
 * test_tcp.c - the TCP backend on the host's sockets, over loopback only:
 * bulk echo between two processes over IPv4 and IPv6 with every byte
 * checked, listening on port 0, the exact status and message of each
 * failure (refused, bad port, unknown scheme, a name that cannot resolve,
 * an unknown IPv6 zone, a connect that times out), socket options
 * (nodelay, keepalive, source address), trying every address of an
 * endpoint in turn, half-close, observer events and byte counters; a
 * listening URI with connect-to refused, and the backend's messages
 * without the values of secret options.
 *
 * Forked peers never call ck_assert: they report through their exit status
 * only (0 is success, other values name the step that failed).
 */
#include "flowkit.h"
#include "harness.h"

#include <conduit/conduit.h>

#include "core.h" /* cd_endpoint_set_addresses() */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BIG (64 * MiB)

static int getsockopt_int(const conduit_flow *f, int level, int opt)
{
	int v = -1;
	socklen_t len = sizeof(v);
	ck_assert_int_eq(getsockopt(conduit_flow_fd(f), level, opt, &v, &len),
	                 0);
	return v;
}

/* ------------------------------------------------------------------ */
/* Bulk echo                                                           */

/* IPv4: the test process is the non-blocking client, the peer echoes. */
START_TEST(echo_64mib_ipv4)
{
	conduit_ctx *ctx = fk_new_ctx();
	conduit_listener *l = fk_listen(ctx, "tcp://127.0.0.1:0");
	char uri[128];
	snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d", fk_listener_port(l));

	pid_t pid = fk_spawn_echo_server(l, cd_scaled(20000), cd_scaled(50000));
	fk_echo_client(ctx, uri, 101, BIG, cd_scaled(50000));
	ck_assert_int_eq(cd_wait_peer(pid, cd_scaled(10000)), 0);
	conduit_listener_free(l);
	conduit_ctx_free(ctx);
}
END_TEST

/* IPv6: the peer is the non-blocking client and checks the echo; the test
 * process echoes with the blocking conveniences. */
START_TEST(echo_64mib_ipv6)
{
	conduit_ctx *ctx = fk_new_ctx();
	conduit_listener *l = fk_listen(ctx, "tcp://[::1]:0");
	char uri[128];
	snprintf(uri, sizeof(uri), "tcp://[::1]:%d", fk_listener_port(l));

	pid_t pid = cd_fork_peer();
	if (pid == 0) {
		conduit_flow *f = NULL;
		if (conduit_connect(&f, ctx, uri) != CONDUIT_OK)
			_exit(60);
		int r = fk_pump_echo(ctx, f, 102, BIG, cd_scaled(50000));
		conduit_flow_free(f);
		_exit(r);
	}
	conduit_flow *s = NULL;
	ck_status(conduit_accept_wait(&s, l, cd_scaled(10000)), CONDUIT_OK);
	ck_assert_msg(strncmp(conduit_flow_uri(s), "tcp://[::1]:", 12) == 0,
	              "accepted flow's URI %s", conduit_flow_uri(s));
	int r = fk_echo_blocking(s, cd_scaled(50000));
	ck_assert_msg(r == 0, "echo failed at step %d: %s", r,
	              conduit_flow_error(s));
	struct conduit_flow_stats st;
	conduit_flow_stats(s, &st);
	ck_assert_uint_eq(st.bytes_read, BIG);
	ck_assert_uint_eq(st.bytes_written, BIG);
	conduit_flow_free(s);
	r = cd_wait_peer(pid, cd_scaled(10000));
	ck_assert_msg(r == 0, "IPv6 client failed at step %d", r);
	conduit_listener_free(l);
	conduit_ctx_free(ctx);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Port 0                                                              */

START_TEST(listen_port_zero_reports_real_port)
{
	static const struct {
		const char *listen, *prefix, *connect_host[2];
	} cases[] = {
	    {"tcp://127.0.0.1:0", "tcp://127.0.0.1:", {"127.0.0.1", NULL}},
	    {"tcp://[::1]:0", "tcp://[::1]:", {"[::1]", NULL}},
	    /* Every address: reachable over both families. */
	    {"tcp://:0", "tcp://:", {"127.0.0.1", "[::1]"}},
	};
	conduit_ctx *ctx = fk_new_ctx();
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		conduit_listener *l = fk_listen(ctx, cases[i].listen);
		const char *bound = conduit_listener_uri(l);
		ck_assert_msg(strncmp(bound, cases[i].prefix,
		                      strlen(cases[i].prefix)) == 0,
		              "%s is bound as %s", cases[i].listen, bound);
		int port = fk_listener_port(l);
		for (int k = 0; k < 2 && cases[i].connect_host[k]; k++) {
			char uri[128];
			snprintf(uri, sizeof(uri), "tcp://%s:%d",
			         cases[i].connect_host[k], port);
			conduit_flow *c = NULL, *s = NULL;
			fk_pair(ctx, l, uri, &c, &s);
			fk_exchange(c, s);
			conduit_flow_free(c);
			conduit_flow_free(s);
		}
		conduit_listener_free(l);
	}
	conduit_ctx_free(ctx);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Errors                                                              */

/* A loopback port nobody listens on (it was just in use). */
static int closed_port(conduit_ctx *ctx)
{
	conduit_listener *l = fk_listen(ctx, "tcp://127.0.0.1:0");
	int port = fk_listener_port(l);
	conduit_listener_free(l);
	return port;
}

START_TEST(connect_refused)
{
	conduit_ctx *ctx = fk_new_ctx();
	int port = closed_port(ctx);
	char uri[128];
	snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d", port);

	/* Non-blocking: the failure arrives in the handshake. */
	conduit_flow *f = NULL;
	int rc = conduit_connect(&f, ctx, uri);
	if (rc == CONDUIT_OK) {
		ck_status(fk_drive_handshake(ctx, f, 1000),
		          CONDUIT_ERR_REFUSED);
		const char *msg = conduit_flow_error(f);
		ck_assert_msg(strstr(msg, uri) && strstr(msg, "refused"),
		              "message '%s' should name %s and say refused",
		              msg, uri);
		/* The failure sticks. */
		size_t n;
		ck_status(conduit_write(f, "x", 1, &n), CONDUIT_ERR_REFUSED);
		conduit_flow_free(f);
	} else {
		ck_status(rc, CONDUIT_ERR_REFUSED);
	}

	/* Blocking: the message is on the context. */
	ck_status(conduit_connect_wait(&f, ctx, uri, cd_scaled(5000)),
	          CONDUIT_ERR_REFUSED);
	ck_assert_ptr_null(f);
	const char *msg = conduit_ctx_error(ctx);
	ck_assert_msg(strstr(msg, uri) && strstr(msg, "refused"),
	              "message '%s' should name %s and say refused", msg, uri);
	conduit_ctx_free(ctx);
}
END_TEST

START_TEST(port_out_of_range)
{
	static const char *const bad[] = {
	    "tcp://127.0.0.1:65536", "tcp://127.0.0.1:99999",
	    "tcp://[::1]:4294967297", "tcp://127.0.0.1:-1"};
	conduit_ctx *ctx = fk_new_ctx();
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		conduit_flow *f = NULL;
		conduit_listener *l = NULL;
		int rc = conduit_connect(&f, ctx, bad[i]);
		ck_assert_msg(rc == CONDUIT_ERR_PORT, "connect %s: %s", bad[i],
		              conduit_status_name(rc));
		ck_assert_ptr_null(f);
		ck_assert_str_ne(conduit_ctx_error(ctx), "");
		rc = conduit_listen(&l, ctx, bad[i]);
		ck_assert_msg(rc == CONDUIT_ERR_PORT, "listen %s: %s", bad[i],
		              conduit_status_name(rc));
		ck_assert_ptr_null(l);
	}
	/* The edges that are valid. */
	conduit_endpoint *ep = NULL;
	ck_status(conduit_endpoint_parse(&ep, "tcp://127.0.0.1:65535", NULL, 0),
	          CONDUIT_OK);
	ck_assert_int_eq(conduit_endpoint_port(ep), 65535);
	conduit_endpoint_free(ep);
	conduit_ctx_free(ctx);
}
END_TEST

START_TEST(unknown_scheme)
{
	conduit_ctx *ctx = fk_new_ctx();
	conduit_flow *f = NULL;
	ck_status(conduit_connect(&f, ctx, "gopherish://127.0.0.1:70"),
	          CONDUIT_ERR_SCHEME);
	ck_assert_ptr_null(f);
	const char *msg = conduit_ctx_error(ctx);
	ck_assert_msg(strstr(msg, "gopherish") != NULL,
	              "message '%s' does not name the scheme", msg);
	conduit_listener *l = NULL;
	ck_status(conduit_listen(&l, ctx, "gopherish://127.0.0.1:0"),
	          CONDUIT_ERR_SCHEME);
	ck_assert_ptr_nonnull(strstr(conduit_ctx_error(ctx), "gopherish"));
	conduit_ctx_free(ctx);
}
END_TEST

/* RFC 6761 reserves .invalid: no name under it ever resolves.  The system
 * resolver would still ask the configured name server, so the lookup runs
 * in a network namespace of its own (this test process is a fork of the
 * runner, and the tests run as root): nothing leaves the machine. */
START_TEST(name_does_not_resolve)
{
	static const char uri[] = "tcp://no-such-host.conduit-test.invalid:80";
	ck_assert_msg(unshare(CLONE_NEWNET) == 0,
	              "unshare(CLONE_NEWNET): %s (the suite needs root)",
	              strerror(errno));
	conduit_ctx *ctx = fk_new_ctx();
	conduit_flow *f = NULL;
	ck_status(conduit_connect(&f, ctx, uri), CONDUIT_ERR_RESOLVE);
	ck_assert_ptr_null(f);
	const char *msg = conduit_ctx_error(ctx);
	ck_assert_msg(strstr(msg, "no-such-host.conduit-test.invalid") != NULL,
	              "message '%s' does not name the host", msg);
	conduit_endpoint *ep = NULL;
	ck_status(conduit_resolve(&ep, ctx, uri), CONDUIT_ERR_RESOLVE);
	ck_assert_ptr_null(ep);
	conduit_ctx_free(ctx);
}
END_TEST

START_TEST(ipv6_unknown_zone)
{
	static const char uri[] = "tcp://[fe80::1%25nosuchif0]:1";
	conduit_ctx *ctx = fk_new_ctx();
	conduit_flow *f = NULL;
	ck_status(conduit_connect(&f, ctx, uri), CONDUIT_ERR_HOST);
	ck_assert_ptr_null(f);
	const char *msg = conduit_ctx_error(ctx);
	ck_assert_msg(strstr(msg, "nosuchif0") != NULL,
	              "message '%s' does not name the interface", msg);
	conduit_endpoint *ep = NULL;
	ck_status(conduit_resolve(&ep, ctx, uri), CONDUIT_ERR_HOST);
	ck_assert_ptr_null(ep);
	conduit_ctx_free(ctx);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Connect timeout                                                     */

START_TEST(connect_timeout)
{
	struct fk_silent fl;
	fk_silent_listen(&fl, "127.0.0.1", 0);
	char uri[128];
	snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d", fl.port);
	conduit_ctx *ctx = fk_new_ctx();

	/* The context's timeout, driven by hand. */
	conduit_ctx_set_connect_timeout(ctx, 300);
	uint64_t start = cd_now_ms();
	conduit_flow *f = NULL;
	ck_status(conduit_connect(&f, ctx, uri), CONDUIT_OK);
	int rc = CONDUIT_WANT_WRITE;
	for (int i = 0; i < 10000 && fk_is_want(rc); i++) {
		struct conduit_pollitem it = {.flow = f,
		                              .events = CONDUIT_POLLOUT};
		size_t nready;
		ck_status(conduit_poll(ctx, &it, 1, 5000, &nready), CONDUIT_OK);
		rc = conduit_handshake(f);
	}
	ck_status(rc, CONDUIT_ERR_TIMED_OUT);
	ck_assert_uint_ge(cd_now_ms() - start, 280);
	ck_assert_msg(strstr(conduit_flow_error(f), "timed out") &&
	                  strstr(conduit_flow_error(f), uri),
	              "message: %s", conduit_flow_error(f));
	conduit_flow_free(f);

	/* The context's timeout through the blocking call. */
	start = cd_now_ms();
	ck_status(conduit_connect_wait(&f, ctx, uri, -1),
	          CONDUIT_ERR_TIMED_OUT);
	ck_assert_ptr_null(f);
	ck_assert_uint_ge(cd_now_ms() - start, 280);
	ck_assert_msg(strstr(conduit_ctx_error(ctx), "timed out"),
	              "message: %s", conduit_ctx_error(ctx));

	/* The blocking call's own timeout. */
	conduit_ctx_set_connect_timeout(ctx, 0);
	start = cd_now_ms();
	ck_status(conduit_connect_wait(&f, ctx, uri, 300),
	          CONDUIT_ERR_TIMED_OUT);
	ck_assert_ptr_null(f);
	ck_assert_uint_ge(cd_now_ms() - start, 280);
	ck_assert_msg(strstr(conduit_ctx_error(ctx), "timed out"),
	              "message: %s", conduit_ctx_error(ctx));
	conduit_ctx_free(ctx);
	fk_silent_free(&fl);
}
END_TEST

/*
 * A connection the kernel finished while nobody asked is made, even when
 * the question comes only after the connect deadline: the handshake looks
 * for success before it looks at the clock.
 */
START_TEST(connected_before_deadline_asked_after)
{
	conduit_ctx *ctx = fk_new_ctx();
	conduit_listener *l = fk_listen(ctx, "tcp://127.0.0.1:0");
	char uri[128];
	snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d", fk_listener_port(l));
	struct fk_events log;
	memset(&log, 0, sizeof(log));
	conduit_ctx_set_observer(ctx, fk_record, &log);
	conduit_ctx_set_connect_timeout(ctx, 50);

	conduit_flow *c = NULL;
	ck_status(conduit_connect(&c, ctx, uri), CONDUIT_OK);
	/* Still in progress after conduit_connect(), so the handshake below
	 * is what finds the connection made. */
	ck_assert_int_eq(fk_count_phase(&log, CONDUIT_PHASE_CONNECTED), 0);
	/* Loopback completes the TCP handshake in the kernel at once; wait
	 * until the listener holds it, then past the deadline. */
	conduit_flow *s = NULL;
	ck_status(conduit_accept_wait(&s, l, cd_scaled(2000)), CONDUIT_OK);
	struct timespec ts = {0, 120 * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
	int rc = conduit_handshake(c);
	ck_assert_msg(rc == CONDUIT_OK, "handshake after the deadline: %s (%s)",
	              conduit_status_name(rc), conduit_flow_error(c));
	ck_assert_int_eq(fk_count_phase(&log, CONDUIT_PHASE_CONNECTED), 1);
	conduit_ctx_set_observer(ctx, NULL, NULL);
	fk_exchange(c, s);
	fk_free_all(c, s, l, ctx);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Several addresses                                                   */

START_TEST(every_address_tried)
{
	conduit_ctx *ctx = fk_new_ctx();
	conduit_listener *l = fk_listen(ctx, "tcp://127.0.0.1:0");
	int port = fk_listener_port(l);
	char uri[128];
	snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d", port);
	conduit_endpoint *ep = NULL;
	ck_status(conduit_endpoint_parse(&ep, uri, NULL, 0), CONDUIT_OK);

	/* 127.0.0.2 is loopback too, but the listener is bound to
	 * 127.0.0.1 only: that address refuses, the next one works. */
	struct conduit_addr two[2] = {fk_addr("127.0.0.2"),
	                              fk_addr("127.0.0.1")};
	ck_status(cd_endpoint_set_addresses(ep, two, 2), CONDUIT_OK);
	struct fk_events log = {0};
	conduit_ctx_set_observer(ctx, fk_record, &log);
	conduit_flow *f = NULL;
	ck_status(conduit_connect_endpoint(&f, ctx, ep), CONDUIT_OK);
	int rc = fk_drive_handshake(ctx, f, 2000);
	ck_assert_msg(rc == CONDUIT_OK,
	              "connect with one refusing address: %s "
	              "(%s)",
	              conduit_status_name(rc), conduit_flow_error(f));
	conduit_ctx_set_observer(ctx, NULL, NULL);
	int connecting = 0;
	char want1[64], want2[64];
	snprintf(want1, sizeof(want1), "127.0.0.2:%d", port);
	snprintf(want2, sizeof(want2), "127.0.0.1:%d", port);
	for (int i = 0; i < log.n; i++) {
		if (log.phase[i] != CONDUIT_PHASE_CONNECTING)
			continue;
		ck_assert_str_eq(log.detail[i],
		                 connecting == 0 ? want1 : want2);
		connecting++;
	}
	ck_assert_int_eq(connecting, 2);
	conduit_flow *s = NULL;
	ck_status(conduit_accept_wait(&s, l, cd_scaled(2000)), CONDUIT_OK);
	fk_exchange(f, s);
	conduit_flow_free(f);
	conduit_flow_free(s);

	/* Nothing on ::1 at that port either: both refuse. */
	struct conduit_addr none[2] = {fk_addr("127.0.0.2"), fk_addr("::1")};
	ck_status(cd_endpoint_set_addresses(ep, none, 2), CONDUIT_OK);
	rc = conduit_connect_endpoint(&f, ctx, ep);
	const char *msg = conduit_ctx_error(ctx);
	if (rc == CONDUIT_OK) {
		rc = fk_drive_handshake(ctx, f, 2000);
		msg = conduit_flow_error(f);
	}
	ck_status(rc, CONDUIT_ERR_REFUSED);
	ck_assert_msg(strstr(msg, "2 addresses tried") && strstr(msg, uri),
	              "message '%s'", msg);
	conduit_flow_free(f);
	conduit_endpoint_free(ep);
	conduit_listener_free(l);
	conduit_ctx_free(ctx);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Options                                                             */

START_TEST(nodelay_default_and_off)
{
	conduit_ctx *ctx = fk_new_ctx();
	conduit_listener *l = fk_listen(ctx, "tcp://127.0.0.1:0");
	conduit_flow *c = NULL, *s = NULL;
	fk_pair(ctx, l, NULL, &c, &s);
	ck_assert_int_ne(getsockopt_int(c, IPPROTO_TCP, TCP_NODELAY), 0);
	ck_assert_int_ne(getsockopt_int(s, IPPROTO_TCP, TCP_NODELAY), 0);
	/* Without the option, no keepalive. */
	ck_assert_int_eq(getsockopt_int(c, SOL_SOCKET, SO_KEEPALIVE), 0);
	conduit_flow_free(c);
	conduit_flow_free(s);

	char uri[128];
	snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d?nodelay=0",
	         fk_listener_port(l));
	fk_pair(ctx, l, uri, &c, &s);
	ck_assert_int_eq(getsockopt_int(c, IPPROTO_TCP, TCP_NODELAY), 0);
	fk_exchange(c, s);
	conduit_flow_free(c);
	conduit_flow_free(s);

	snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d?nodelay=1",
	         fk_listener_port(l));
	fk_pair(ctx, l, uri, &c, &s);
	ck_assert_int_ne(getsockopt_int(c, IPPROTO_TCP, TCP_NODELAY), 0);
	fk_free_all(c, s, l, ctx);
}
END_TEST

START_TEST(keepalive_option)
{
	conduit_ctx *ctx = fk_new_ctx();
	conduit_listener *l = fk_listen(ctx, "tcp://127.0.0.1:0");
	char uri[128];
	snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d?keepalive=42",
	         fk_listener_port(l));
	conduit_flow *c = NULL, *s = NULL;
	fk_pair(ctx, l, uri, &c, &s);
	ck_assert_int_ne(getsockopt_int(c, SOL_SOCKET, SO_KEEPALIVE), 0);
#ifdef TCP_KEEPIDLE
	ck_assert_int_eq(getsockopt_int(c, IPPROTO_TCP, TCP_KEEPIDLE), 42);
#endif
	fk_exchange(c, s);
	fk_free_all(c, s, l, ctx);
}
END_TEST

static void local_ip(const conduit_flow *f, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	ck_assert_int_eq(
	    getsockname(conduit_flow_fd(f), (struct sockaddr *)&ss, &sl), 0);
	ck_assert_int_eq(ss.ss_family, AF_INET);
	ck_assert_ptr_nonnull(inet_ntop(AF_INET,
	                                &((struct sockaddr_in *)&ss)->sin_addr,
	                                buf, (socklen_t)len));
}

START_TEST(source_option_binds_local_address)
{
	conduit_ctx *ctx = fk_new_ctx();
	/* Every address, so that a source other than 127.0.0.1 can reach
	 * it too. */
	conduit_listener *l = fk_listen(ctx, "tcp://:0");
	int port = fk_listener_port(l);
	static const char *const sources[] = {"127.0.0.1", "127.0.0.2"};
	for (size_t i = 0; i < 2; i++) {
		char uri[128], ip[64];
		snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d?source=%s", port,
		         sources[i]);
		conduit_flow *c = NULL, *s = NULL;
		fk_pair(ctx, l, uri, &c, &s);
		local_ip(c, ip, sizeof(ip));
		ck_assert_str_eq(ip, sources[i]);
		/* The server sees it as the peer. */
		ck_assert_msg(strstr(conduit_flow_uri(s), sources[i]) != NULL,
		              "accepted flow %s, source %s",
		              conduit_flow_uri(s), sources[i]);
		fk_exchange(c, s);
		conduit_flow_free(c);
		conduit_flow_free(s);
	}
	/* A source of the other family cannot be used. */
	char uri[128];
	snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d?source=::1", port);
	conduit_flow *c = NULL;
	ck_assert_int_eq(conduit_connect(&c, ctx, uri), CONDUIT_ERR_OPTION);
	ck_assert_ptr_null(c);
	ck_assert_msg(strstr(conduit_ctx_error(ctx), "source=::1 is IPv6") !=
	                  NULL,
	              "message: %s", conduit_ctx_error(ctx));
	conduit_listener_free(l);
	conduit_ctx_free(ctx);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Half-close                                                          */

START_TEST(half_close)
{
	static const char request[] = "GET / then end of stream";
	static const char reply[] = "the answer, after the end of stream";
	conduit_ctx *ctx = fk_new_ctx();
	conduit_listener *l = fk_listen(ctx, "tcp://127.0.0.1:0");
	char uri[128];
	snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d", fk_listener_port(l));

	pid_t pid = cd_fork_peer();
	if (pid == 0) {
		/* Client: send, shut down the write side, read to EOF. */
		conduit_flow *f = NULL;
		if (conduit_connect_wait(&f, ctx, uri, cd_scaled(5000)) !=
		    CONDUIT_OK)
			_exit(70);
		if (conduit_write_all(f, request, sizeof(request), NULL,
		                      cd_scaled(5000)) != CONDUIT_OK)
			_exit(71);
		if (conduit_shutdown(f, CONDUIT_SHUT_WR) != CONDUIT_OK)
			_exit(72);
		char got[128];
		size_t have = 0, n = 0;
		int rc = CONDUIT_OK;
		for (int i = 0; i < 1000 && rc == CONDUIT_OK; i++) {
			rc =
			    conduit_read_wait(f, got + have, sizeof(got) - have,
			                      &n, cd_scaled(5000));
			if (rc == CONDUIT_OK)
				have += n;
			if (have >= sizeof(got))
				_exit(73);
		}
		if (rc != CONDUIT_EOF)
			_exit(74);
		if (have != sizeof(reply) || memcmp(got, reply, have) != 0)
			_exit(75);
		conduit_flow_free(f);
		_exit(0);
	}

	conduit_flow *s = NULL;
	ck_status(conduit_accept_wait(&s, l, cd_scaled(5000)), CONDUIT_OK);
	char got[128];
	size_t have = 0, n = 0;
	int rc = CONDUIT_OK;
	for (int i = 0; i < 1000 && rc == CONDUIT_OK; i++) {
		rc = conduit_read_wait(s, got + have, sizeof(got) - have, &n,
		                       cd_scaled(5000));
		if (rc == CONDUIT_OK)
			have += n;
		ck_assert_uint_lt(have, sizeof(got));
	}
	ck_status(rc, CONDUIT_EOF);
	ck_assert_uint_eq(have, sizeof(request));
	ck_assert_mem_eq(got, request, have);
	/* The peer finished sending; this side still may. */
	ck_status(
	    conduit_write_all(s, reply, sizeof(reply), NULL, cd_scaled(5000)),
	    CONDUIT_OK);
	ck_status(conduit_close(s), CONDUIT_OK);
	conduit_flow_free(s);
	int r = cd_wait_peer(pid, cd_scaled(10000));
	ck_assert_msg(r == 0, "half-closing client failed at step %d", r);
	conduit_listener_free(l);
	conduit_ctx_free(ctx);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Observer and counters                                               */

START_TEST(observer_events)
{
	conduit_ctx *cctx = fk_new_ctx(), *sctx = fk_new_ctx();
	struct fk_events clog = {0}, slog = {0};
	conduit_listener *l = fk_listen(sctx, "tcp://127.0.0.1:0");
	int port = fk_listener_port(l);
	char uri[128], addr[64];
	snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d", port);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	conduit_ctx_set_observer(cctx, fk_record, &clog);
	conduit_ctx_set_observer(sctx, fk_record, &slog);

	conduit_flow *c = NULL, *s = NULL;
	ck_status(conduit_connect(&c, cctx, uri), CONDUIT_OK);
	ck_status(fk_drive_handshake(cctx, c, 2000), CONDUIT_OK);
	ck_status(conduit_accept_wait(&s, l, cd_scaled(2000)), CONDUIT_OK);
	fk_exchange(c, s);
	ck_status(conduit_close(c), CONDUIT_OK);
	conduit_flow_free(c);
	ck_status(conduit_close(s), CONDUIT_OK);
	conduit_flow_free(s);

	static const enum conduit_phase want[] = {
	    CONDUIT_PHASE_RESOLVING, CONDUIT_PHASE_RESOLVED,
	    CONDUIT_PHASE_CONNECTING, CONDUIT_PHASE_CONNECTED,
	    CONDUIT_PHASE_CLOSED};
	char seen[256] = "";
	for (int i = 0; i < clog.n; i++) {
		strcat(seen, conduit_phase_name(clog.phase[i]));
		strcat(seen, " ");
	}
	ck_assert_msg(clog.n == 5, "client events: %s", seen);
	for (int i = 0; i < 5; i++) {
		ck_assert_msg(clog.phase[i] == want[i], "client events: %s",
		              seen);
		ck_status(clog.status[i], CONDUIT_OK);
	}
	ck_assert_ptr_null(clog.flow[0]);
	ck_assert_ptr_eq(clog.flow[2], c);
	ck_assert_ptr_eq(clog.flow[3], c);
	ck_assert_ptr_eq(clog.flow[4], c);
	ck_assert_str_eq(clog.detail[2], addr);
	ck_assert_str_eq(clog.detail[3], addr);

	ck_assert_int_eq(slog.n, 2);
	ck_assert_int_eq(slog.phase[0], CONDUIT_PHASE_ACCEPTED);
	ck_assert_ptr_eq(slog.flow[0], s);
	ck_assert_msg(strncmp(slog.detail[0], "tcp://127.0.0.1:", 16) == 0,
	              "accepted peer: %s", slog.detail[0]);
	ck_assert_int_eq(slog.phase[1], CONDUIT_PHASE_CLOSED);

	/* A failure is reported as one. */
	conduit_listener_free(l);
	clog.n = 0;
	ck_assert_int_ne(conduit_connect_wait(&c, cctx, uri, cd_scaled(5000)),
	                 CONDUIT_OK);
	bool failed = false;
	for (int i = 0; i < clog.n; i++)
		if (clog.phase[i] == CONDUIT_PHASE_FAILED &&
		    clog.status[i] == CONDUIT_ERR_REFUSED)
			failed = true;
	ck_assert_msg(failed, "no failed event for a refused connect");
	conduit_ctx_free(cctx);
	conduit_ctx_free(sctx);
}
END_TEST

START_TEST(byte_counters)
{
	conduit_ctx *ctx = fk_new_ctx();
	conduit_listener *l = fk_listen(ctx, "tcp://127.0.0.1:0");
	conduit_flow *c = NULL, *s = NULL;
	fk_pair(ctx, l, NULL, &c, &s);
	struct conduit_flow_stats st;
	conduit_flow_stats(c, &st);
	ck_assert_uint_eq(st.bytes_read, 0);
	ck_assert_uint_eq(st.bytes_written, 0);

	enum { UP = 300000, DOWN = 7777 };
	uint8_t *buf = malloc(UP);
	ck_assert_ptr_nonnull(buf);
	cd_pattern(5, 0, buf, UP);
	/* Client to server: a plain write and a gather write. */
	struct conduit_iov iov[3] = {{buf, 10}, {buf + 10, 0}, {buf + 10, 90}};
	size_t n = 0;
	uint64_t up = 0, got = 0;
	ck_status(conduit_writev(c, iov, 3, &n), CONDUIT_OK);
	ck_assert_uint_eq(n, 100);
	up += n;
	uint8_t *in = malloc(UP);
	ck_assert_ptr_nonnull(in);
	/* The rest, interleaved with reading so neither side stalls. */
	for (int i = 0; i < 100000 && (up < UP || got < UP); i++) {
		if (up < UP) {
			int rc = conduit_write(c, buf + up, UP - up, &n);
			if (rc == CONDUIT_OK)
				up += n;
			else
				ck_assert(fk_is_want(rc));
		}
		int rc = conduit_read_wait(s, in + got, UP - got, &n,
		                           cd_scaled(2000));
		ck_status(rc, CONDUIT_OK);
		got += n;
	}
	ck_assert_uint_eq(got, UP);
	ck_assert_mem_eq(in, buf, UP);
	ck_status(conduit_write_all(s, buf, DOWN, NULL, cd_scaled(2000)),
	          CONDUIT_OK);
	got = 0;
	for (int i = 0; i < 1000 && got < DOWN; i++) {
		ck_status(conduit_read_wait(c, in + got, DOWN - got, &n,
		                            cd_scaled(2000)),
		          CONDUIT_OK);
		got += n;
	}
	ck_assert_uint_eq(got, DOWN);

	conduit_flow_stats(c, &st);
	ck_assert_uint_eq(st.bytes_written, UP);
	ck_assert_uint_eq(st.bytes_read, DOWN);
	conduit_flow_stats(s, &st);
	ck_assert_uint_eq(st.bytes_read, UP);
	ck_assert_uint_eq(st.bytes_written, DOWN);
	/* Failed or refused calls count nothing. */
	ck_status(conduit_shutdown(c, CONDUIT_SHUT_WR), CONDUIT_OK);
	ck_status(conduit_write(c, buf, 10, &n), CONDUIT_ERR_STATE);
	conduit_flow_stats(c, &st);
	ck_assert_uint_eq(st.bytes_written, UP);
	free(buf);
	free(in);
	fk_free_all(c, s, l, ctx);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Odds and ends                                                       */

START_TEST(write_after_peer_closed_no_sigpipe)
{
	conduit_ctx *ctx = fk_new_ctx();
	conduit_listener *l = fk_listen(ctx, "tcp://127.0.0.1:0");
	conduit_flow *c = NULL, *s = NULL;
	fk_pair(ctx, l, NULL, &c, &s);
	conduit_flow_free(s);
	/* The first writes may be accepted before the reset comes back;
	 * then EPIPE, which with SIGPIPE at its default would kill us. */
	static uint8_t buf[16 * 1024];
	int rc = CONDUIT_OK;
	for (int i = 0; i < 2000 && (rc == CONDUIT_OK || fk_is_want(rc)); i++) {
		size_t n = 0;
		rc = conduit_write(c, buf, sizeof(buf), &n);
		if (rc != CONDUIT_OK) {
			struct conduit_pollitem it = {
			    .flow = c, .events = CONDUIT_POLLOUT};
			size_t nready;
			ck_status(conduit_poll(ctx, &it, 1, 100, &nready),
			          CONDUIT_OK);
		}
	}
	ck_assert_msg(rc == CONDUIT_ERR_CLOSED || rc == CONDUIT_ERR_RESET,
	              "write to a closed peer: %s", conduit_status_name(rc));
	fk_free_all(c, NULL, l, ctx);
}
END_TEST

START_TEST(tcp_flow_properties)
{
	conduit_ctx *ctx = fk_new_ctx();
	conduit_listener *l = fk_listen(ctx, "tcp://[::1]:0");
	conduit_flow *c = NULL, *s = NULL;
	fk_pair(ctx, l, NULL, &c, &s);
	const conduit_flow *both[2] = {c, s};
	for (int i = 0; i < 2; i++) {
		int fd = conduit_flow_fd(both[i]);
		ck_assert_int_ge(fd, 0);
		ck_assert(fcntl(fd, F_GETFD) & FD_CLOEXEC);
		ck_assert(fcntl(fd, F_GETFL) & O_NONBLOCK);
	}
	/* TCP carries no peer credentials. */
	struct conduit_peer_cred cred;
	ck_status(conduit_flow_peer_cred(c, &cred), CONDUIT_ERR_UNSUPPORTED);
	ck_assert_int_eq(cred.pid, -1);
	ck_assert_str_ne(conduit_flow_error(c), "");
	ck_assert_str_eq(conduit_flow_uri(c), conduit_listener_uri(l));
	fk_free_all(c, s, l, ctx);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Listeners and connect-to; secrets in the backend's messages         */

/*
 * connect-to moves where a connection goes; a listener goes nowhere, so
 * the option on a listening URI is refused, naming the URI and the
 * option, before anything is bound (it used to bind the connect-to
 * destination's address instead of the host's).
 */
START_TEST(listen_refuses_connect_to)
{
	static const char *const uris[] = {
	    "tcp://127.0.0.1:0?connect-to=127.0.0.2:80",
	    "tcp://:0?connect-to=127.0.0.2:80",
	    "tcp://[::1]:0?connect-to=%5B::1%5D:80",
	    "tcp://name.test:0?connect-to=127.0.0.1:80",
	};
	conduit_ctx *ctx = fk_new_ctx();
	for (size_t i = 0; i < sizeof(uris) / sizeof(uris[0]); i++) {
		conduit_listener *l = NULL;
		int rc = conduit_listen(&l, ctx, uris[i]);
		const char *m = conduit_ctx_error(ctx);
		ck_assert_msg(rc == CONDUIT_ERR_OPTION,
		              "listen %s: got %s (%s), "
		              "bound as %s",
		              uris[i], conduit_status_name(rc), m,
		              l != NULL ? conduit_listener_uri(l) : "-");
		ck_assert_ptr_null(l);
		char want[128];
		snprintf(want, sizeof(want), "listen %s: connect-to", uris[i]);
		ck_assert_msg(strstr(m, want) == m && strstr(m, "listener"),
		              "message: %s", m);
	}
	/* The same host without the option listens. */
	conduit_listener *l = fk_listen(ctx, "tcp://127.0.0.1:0");
	conduit_listener_free(l);
	conduit_ctx_free(ctx);
}
END_TEST

/* The TCP backend's own messages name the endpoint without the values of
 * secret options (a TLS key file here).  Called on the backend directly,
 * so that its message is the one seen whatever layers the build has. */
START_TEST(tcp_messages_hide_secrets)
{
	conduit_ctx *ctx = fk_new_ctx();
	const struct cd_registration *reg = cd_find_transport(ctx, "tcp");
	ck_assert_ptr_nonnull(reg);
	conduit_listener *busy = fk_listen(ctx, "tcp://127.0.0.1:0");
	char uri[160];

	/* connect: a source address of the wrong family */
	conduit_endpoint *ep = NULL;
	ck_status(conduit_endpoint_parse(&ep,
	                                 "tls+tcp://[::1]:1?source=127.0.0.1&"
	                                 "key=/secret/k.pem",
	                                 NULL, 0),
	          CONDUIT_OK);
	struct conduit_addr a = fk_addr("::1");
	ck_status(cd_endpoint_set_addresses(ep, &a, 1), CONDUIT_OK);
	conduit_flow *f = NULL;
	ck_status(reg->be->connect(reg->state, ctx, ep, &f),
	          CONDUIT_ERR_OPTION);
	ck_assert_ptr_null(f);
	const char *m = conduit_ctx_error(ctx);
	ck_assert_msg(strstr(m, "connect tls+tcp://[::1]:1?key=****&source=") ==
	                      m &&
	                  strstr(m, "/secret") == NULL,
	              "message: %s", m);
	conduit_endpoint_free(ep);

	/* listen: the address is in use */
	snprintf(uri, sizeof(uri), "tls+tcp://127.0.0.1:%d?key=/secret/k.pem",
	         fk_listener_port(busy));
	ck_status(conduit_endpoint_parse(&ep, uri, NULL, 0), CONDUIT_OK);
	conduit_listener *l = NULL;
	ck_status(reg->be->listen(reg->state, ctx, ep, &l),
	          CONDUIT_ERR_ADDR_IN_USE);
	ck_assert_ptr_null(l);
	m = conduit_ctx_error(ctx);
	ck_assert_msg(strstr(m, "listen tls+tcp://127.0.0.1:") == m &&
	                  strstr(m, "?key=****: 127.0.0.1:") != NULL &&
	                  strstr(m, "/secret") == NULL,
	              "message: %s", m);
	conduit_endpoint_free(ep);

	/* listen: connect-to refused, with a key beside it */
	ck_status(
	    conduit_endpoint_parse(&ep,
	                           "tls+tcp://127.0.0.1:0?key=/secret/k.pem&"
	                           "connect-to=127.0.0.2:1",
	                           NULL, 0),
	    CONDUIT_OK);
	ck_status(reg->be->listen(reg->state, ctx, ep, &l), CONDUIT_ERR_OPTION);
	m = conduit_ctx_error(ctx);
	ck_assert_msg(strstr(m, "/secret") == NULL && strstr(m, "key=****"),
	              "message: %s", m);
	conduit_endpoint_free(ep);
	conduit_listener_free(busy);
	conduit_ctx_free(ctx);
}
END_TEST

int main(void)
{
	const struct cd_test tests[] = {
	    CD_TEST(echo_64mib_ipv4, 60),
	    CD_TEST(echo_64mib_ipv6, 60),
	    CD_TEST(listen_port_zero_reports_real_port, 0),
	    CD_TEST(connect_refused, 0),
	    CD_TEST(port_out_of_range, 0),
	    CD_TEST(unknown_scheme, 0),
	    CD_TEST(name_does_not_resolve, 30),
	    CD_TEST(ipv6_unknown_zone, 0),
	    CD_TEST(connect_timeout, 0),
	    CD_TEST(connected_before_deadline_asked_after, 0),
	    CD_TEST(every_address_tried, 0),
	    CD_TEST(nodelay_default_and_off, 0),
	    CD_TEST(keepalive_option, 0),
	    CD_TEST(source_option_binds_local_address, 0),
	    CD_TEST(half_close, 0),
	    CD_TEST(observer_events, 0),
	    CD_TEST(byte_counters, 0),
	    CD_TEST(write_after_peer_closed_no_sigpipe, 0),
	    CD_TEST(tcp_flow_properties, 0),
	    CD_TEST(listen_refuses_connect_to, 0),
	    CD_TEST(tcp_messages_hide_secrets, 0),
	};
	return cd_run(cd_suite("tcp", tests, sizeof(tests) / sizeof(tests[0])));
}
