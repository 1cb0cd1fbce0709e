/*
 * test_connect.c - how a flow connects when its endpoint has several
 * addresses: the RFC 8305 race (a silent address does not hold up a good
 * one), the order of attempts (families alternate), losers closed, and
 * failure when every address refuses or stays silent.  And the
 * resolutions conduit_connect() remembers: what is remembered and what
 * never is, the same observer events, and forgetting on any change.
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
	ck_assert_int_eq(conduit_listen(&l, ctx, "tcp://127.0.0.1:0"),
	                 CONDUIT_OK);
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
			ck_assert_msg(strstr(seen.detail[i], "127.0.0.1:") !=
			                  NULL,
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
 * Families alternate, IPv6 first, and each family keeps its order.  Every
 * address refuses, so attempts follow each other at once and the failure names
 * the count and the last address.
 */
START_TEST(families_alternate_and_all_refuse)
{
	conduit_ctx *ctx = fk_new_ctx();
	/* A port nobody listens on: bind one, read it, close it. */
	conduit_listener *l = NULL;
	ck_assert_int_eq(conduit_listen(&l, ctx, "tcp://127.0.0.1:0"),
	                 CONDUIT_OK);
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
		ck_assert_msg(
		    strstr(conduit_flow_error(f), "5 addresses tried"),
		    "message: %s", conduit_flow_error(f));
		conduit_flow_free(f);
	} else {
		ck_assert_msg(
		    strstr(conduit_ctx_error(ctx), "5 addresses tried"),
		    "message: %s", conduit_ctx_error(ctx));
	}
	ck_assert_int_eq(rc, CONDUIT_ERR_REFUSED);
	int k = 0;
	for (int i = 0; i < seen.n; i++) {
		if (seen.phase[i] != CONDUIT_PHASE_CONNECTING)
			continue;
		ck_assert_int_lt(k, 5);
		ck_assert_msg(
		    strncmp(seen.detail[i], order[k], strlen(order[k])) == 0,
		    "attempt %d went to %s, expected %s", k, seen.detail[i],
		    order[k]);
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
	ck_assert_int_eq(fk_drive_handshake(ctx, f, 2000),
	                 CONDUIT_ERR_TIMED_OUT);
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

/* The resolutions conduit_connect() made afresh (the library's test hook,
 * defined here only). */
static unsigned missed;

void cd_remember_missed(const conduit_ctx *ctx)
{
	(void)ctx;
	missed++;
}

/* How many resolutions ctx remembers. */
static int remembered(const conduit_ctx *ctx)
{
	int n = 0;
	for (size_t i = 0; i < CD_REMEMBERED; i++)
		n += ctx->remembered[i].uri != NULL;
	return n;
}

/* Accept on l within ms, or fail the test. */
static conduit_flow *accept_on(conduit_listener *l, int ms)
{
	conduit_flow *s = NULL;
	ck_assert_int_eq(conduit_accept_wait(&s, l, cd_scaled(ms)), CONDUIT_OK);
	return s;
}

/* Nothing waits on l. */
static void nothing_on(conduit_listener *l)
{
	conduit_flow *s = NULL;
	ck_assert_int_eq(conduit_accept(&s, l), CONDUIT_WANT_READ);
	ck_assert_ptr_null(s);
}

/* Two unix listeners, a and b, in a directory of their own, and a
 * context whose rule maps every *.test name to a. */
struct two_socks {
	char dir[256], a_uri[600], b_uri[600];
	conduit_ctx *ctx;
	conduit_listener *la, *lb;
};

static void two_socks_open(struct two_socks *t)
{
	char rules[700];
	cd_tmpdir(t->dir, sizeof(t->dir));
	snprintf(t->a_uri, sizeof(t->a_uri), "unix://%s/a.sock", t->dir);
	snprintf(t->b_uri, sizeof(t->b_uri), "unix://%s/b.sock", t->dir);
	t->ctx = fk_new_ctx();
	t->la = fk_listen(t->ctx, t->a_uri);
	t->lb = fk_listen(t->ctx, t->b_uri);
	snprintf(rules, sizeof(rules), "map *.test %s\n", t->a_uri);
	ck_assert_int_eq(conduit_ctx_add_rules(t->ctx, rules, "t"), CONDUIT_OK);
}

/* Free the n flows, then the listeners, the context and the directory. */
static void two_socks_close(struct two_socks *t, conduit_flow **flows, size_t n)
{
	for (size_t i = 0; i < n; i++)
		conduit_flow_free(flows[i]);
	conduit_listener_free(t->la);
	conduit_listener_free(t->lb);
	conduit_ctx_free(t->ctx);
	cd_rmtree(t->dir);
}

/*
 * A name mapped by a rule to a unix socket is remembered; the second
 * connect gives the same events as the first; a rule added later that
 * maps the name elsewhere is obeyed at once.
 */
START_TEST(remembered_until_the_rules_change)
{
	struct two_socks t;
	two_socks_open(&t);
	conduit_ctx *ctx = t.ctx;
	conduit_listener *la = t.la, *lb = t.lb;
	char rules[700];

	struct fk_events first = {0}, again = {0};
	conduit_flow *c1 = NULL, *c2 = NULL, *c3 = NULL;
	conduit_ctx_set_observer(ctx, fk_record, &first);
	ck_assert_int_eq(conduit_connect(&c1, ctx, "tcp://db.test:80"),
	                 CONDUIT_OK);
	ck_assert_int_eq(remembered(ctx), 1);
	conduit_ctx_set_observer(ctx, fk_record, &again);
	ck_assert_int_eq(conduit_connect(&c2, ctx, "tcp://db.test:80"),
	                 CONDUIT_OK);
	ck_assert_int_eq(remembered(ctx), 1);
	conduit_ctx_set_observer(ctx, NULL, NULL);
	/* The same events, resolving through connected, with the same
	 * details. */
	ck_assert_int_ge(first.n, 3);
	ck_assert_int_eq(again.n, first.n);
	for (int i = 0; i < first.n; i++) {
		ck_assert_int_eq(again.phase[i], first.phase[i]);
		ck_assert_int_eq(again.status[i], first.status[i]);
		ck_assert_str_eq(again.detail[i], first.detail[i]);
	}
	ck_assert_int_eq(fk_count_phase(&again, CONDUIT_PHASE_RESOLVING), 1);
	ck_assert_int_eq(fk_count_phase(&again, CONDUIT_PHASE_RESOLVED), 1);
	conduit_flow *s1 = accept_on(la, 2000), *s2 = accept_on(la, 2000);
	fk_exchange(c2, s2);

	/* An exact rule beats the wildcard: the next connect obeys it. */
	snprintf(rules, sizeof(rules), "map db.test %s\n", t.b_uri);
	ck_assert_int_eq(conduit_ctx_add_rules(ctx, rules, "t2"), CONDUIT_OK);
	ck_assert_int_eq(remembered(ctx), 0);
	ck_assert_int_eq(conduit_connect(&c3, ctx, "tcp://db.test:80"),
	                 CONDUIT_OK);
	conduit_flow *s3 = accept_on(lb, 2000);
	fk_exchange(c3, s3);
	nothing_on(la);

	/* Allowing URI options and setting a lookup forget too. */
	ck_assert_int_eq(remembered(ctx), 1);
	conduit_ctx_allow_uri_options(ctx, CONDUIT_URI_FILES);
	ck_assert_int_eq(remembered(ctx), 0);
	conduit_flow *c4 = NULL;
	ck_assert_int_eq(conduit_connect(&c4, ctx, "tcp://db.test:80"),
	                 CONDUIT_OK);
	ck_assert_int_eq(remembered(ctx), 1);
	conduit_ctx_set_lookup(ctx, NULL, NULL);
	ck_assert_int_eq(remembered(ctx), 0);
	conduit_flow *s4 = accept_on(lb, 2000);

	conduit_flow *all[] = {c1, c2, c3, c4, s1, s2, s3, s4};
	two_socks_close(&t, all, sizeof(all) / sizeof(all[0]));
}
END_TEST

/*
 * What is never remembered: a looked-up name, a password, a port from
 * the system's service table; what is: IP literals, one entry per URI,
 * at most CD_REMEMBERED, the oldest going first.
 */
START_TEST(names_and_secrets_are_not_remembered)
{
	conduit_ctx *ctx = fk_new_ctx();
	conduit_listener *l = fk_listen(ctx, "tcp://127.0.0.1:0");
	int port = fk_listener_port(l);
	char uri[128];
	conduit_flow *c = NULL;

	snprintf(uri, sizeof(uri), "tcp://localhost:%d", port);
	ck_assert_int_eq(conduit_connect(&c, ctx, uri), CONDUIT_OK);
	conduit_flow_free(c);
	ck_assert_int_eq(remembered(ctx), 0);

	ck_assert_int_eq(conduit_ctx_add_service(ctx, "pw", (uint16_t)port, 0),
	                 CONDUIT_OK);
	ck_assert_int_eq(
	    conduit_connect(&c, ctx, "pw://user:secret@127.0.0.1/"),
	    CONDUIT_OK);
	conduit_flow_free(c);
	ck_assert_int_eq(remembered(ctx), 0);
	/* A token in a service URI's query is not in its endpoint, but
	 * would be in the URI kept: not remembered either. */
	ck_assert_int_eq(
	    conduit_connect(&c, ctx, "pw://127.0.0.1/api?access_token=S3CRET"),
	    CONDUIT_OK);
	conduit_flow_free(c);
	ck_assert_int_eq(remembered(ctx), 0);
	/* The same without the secrets is remembered. */
	ck_assert_int_eq(conduit_connect(&c, ctx, "pw://127.0.0.1/api?page=2"),
	                 CONDUIT_OK);
	conduit_flow_free(c);
	ck_assert_int_eq(remembered(ctx), 1);
	ck_assert_int_eq(conduit_connect(&c, ctx, "pw://127.0.0.1/"),
	                 CONDUIT_OK);
	conduit_flow_free(c);
	ck_assert_int_eq(remembered(ctx), 2);
	for (size_t i = 0; i < CD_REMEMBERED; i++)
		ck_assert(ctx->remembered[i].uri == NULL ||
		          (strstr(ctx->remembered[i].uri, "secret") == NULL &&
		           strstr(ctx->remembered[i].uri, "S3CRET") == NULL));

	/* "echo" is port 7 in the system's table (netbase): its answer is
	 * a file's, and not remembered.  The connect itself may fail. */
	conduit_endpoint *ep = NULL;
	ck_assert_msg(conduit_resolve(&ep, ctx, "echo://127.0.0.1") ==
	                  CONDUIT_OK,
	              "echo://: %s (the system's service table is Debian's "
	              "netbase, which tools/setup installs)",
	              conduit_ctx_error(ctx));
	ck_assert_int_eq(conduit_endpoint_port(ep), 7);
	conduit_endpoint_free(ep);
	if (conduit_connect(&c, ctx, "echo://127.0.0.1") == CONDUIT_OK)
		conduit_flow_free(c);
	ck_assert_int_eq(remembered(ctx), 2);

	/* Literals are remembered once each, at most CD_REMEMBERED (the
	 * connects to other loopback addresses are refused later; here
	 * they only start). */
	for (int i = 0; i < 2 * CD_REMEMBERED; i++) {
		snprintf(uri, sizeof(uri), "tcp://127.0.0.%d:%d",
		         2 + i % (CD_REMEMBERED + 2), port);
		ck_assert_int_eq(conduit_connect(&c, ctx, uri), CONDUIT_OK);
		conduit_flow_free(c);
	}
	ck_assert_int_eq(remembered(ctx), CD_REMEMBERED);
	snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d", port);
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(conduit_connect(&c, ctx, uri), CONDUIT_OK);
		conduit_flow_free(c);
	}
	ck_assert_int_le(remembered(ctx), CD_REMEMBERED);
	ck_assert_int_ge(remembered(ctx), 1);
	int same = 0;
	for (size_t i = 0; i < CD_REMEMBERED; i++)
		if (ctx->remembered[i].uri != NULL &&
		    strcmp(ctx->remembered[i].uri, uri) == 0)
			same++;
	ck_assert_int_eq(same, 1);
	conduit_listener_free(l);
	conduit_ctx_free(ctx);
}
END_TEST

/* An observer that maps db.test elsewhere when told "resolving". */
struct remapper {
	conduit_ctx *ctx;
	const char *rule;
	int resolving, resolved;
};

static void remap(void *arg, const struct conduit_event *ev)
{
	struct remapper *m = arg;
	if (ev->phase == CONDUIT_PHASE_RESOLVED)
		m->resolved++;
	if (ev->phase != CONDUIT_PHASE_RESOLVING)
		return;
	if (m->resolving++ == 0)
		ck_assert_int_eq(
		    conduit_ctx_add_rules(m->ctx, m->rule, "remap"),
		    CONDUIT_OK);
}

/* Settings changed by the observer at "resolving" hold for that very
 * connect, remembered or not, with one event of each kind. */
START_TEST(observer_remaps_while_resolving)
{
	struct two_socks t;
	two_socks_open(&t);
	conduit_ctx *ctx = t.ctx;
	conduit_listener *la = t.la, *lb = t.lb;
	char rules[700];
	conduit_flow *c1 = NULL, *c2 = NULL;
	ck_assert_int_eq(conduit_connect(&c1, ctx, "tcp://db.test:80"),
	                 CONDUIT_OK);
	ck_assert_int_eq(remembered(ctx), 1);
	conduit_flow *s1 = accept_on(la, 2000);

	snprintf(rules, sizeof(rules), "map db.test %s\n", t.b_uri);
	struct remapper m = {ctx, rules, 0, 0};
	conduit_ctx_set_observer(ctx, remap, &m);
	ck_assert_int_eq(conduit_connect(&c2, ctx, "tcp://db.test:80"),
	                 CONDUIT_OK);
	conduit_ctx_set_observer(ctx, NULL, NULL);
	ck_assert_int_eq(m.resolving, 1);
	ck_assert_int_eq(m.resolved, 1);
	conduit_flow *s2 = accept_on(lb, 2000);
	fk_exchange(c2, s2);
	nothing_on(la);

	conduit_flow *all[] = {c1, c2, s1, s2};
	two_socks_close(&t, all, sizeof(all) / sizeof(all[0]));
}
END_TEST

/* Using a remembered URI keeps the others: a set of CD_REMEMBERED URIs
 * used in turn stays remembered whole; one more takes one slot. */
START_TEST(a_full_set_used_in_turn_stays)
{
	conduit_ctx *ctx = fk_new_ctx();
	conduit_listener *l = fk_listen(ctx, "tcp://127.0.0.1:0");
	int port = fk_listener_port(l);
	missed = 0;
	char uri[CD_REMEMBERED + 1][64];
	for (int i = 0; i <= CD_REMEMBERED; i++)
		snprintf(uri[i], sizeof(uri[i]), "tcp://127.0.0.%d:%d", 2 + i,
		         port);
	/* In order, then backwards, then every third. */
	for (int round = 0; round < 3; round++)
		for (int k = 0; k < CD_REMEMBERED; k++) {
			int i = round == 0   ? k
			        : round == 1 ? CD_REMEMBERED - 1 - k
			                     : (3 * k) % CD_REMEMBERED;
			conduit_flow *c = NULL;
			ck_assert_int_eq(conduit_connect(&c, ctx, uri[i]),
			                 CONDUIT_OK);
			conduit_flow_free(c);
		}
	/* Resolved once each, in the first round only. */
	ck_assert_uint_eq(missed, CD_REMEMBERED);
	for (int i = 0; i < CD_REMEMBERED; i++) {
		bool found = false;
		for (size_t k = 0; k < CD_REMEMBERED; k++)
			if (ctx->remembered[k].uri != NULL &&
			    strcmp(ctx->remembered[k].uri, uri[i]) == 0)
				found = true;
		ck_assert_msg(found, "%s was forgotten", uri[i]);
	}
	conduit_flow *c = NULL;
	ck_assert_int_eq(conduit_connect(&c, ctx, uri[CD_REMEMBERED]),
	                 CONDUIT_OK);
	conduit_flow_free(c);
	ck_assert_uint_eq(missed, CD_REMEMBERED + 1); /* a new one: afresh */
	ck_assert_int_eq(remembered(ctx), CD_REMEMBERED);
	bool last = false;
	for (size_t k = 0; k < CD_REMEMBERED; k++)
		if (strcmp(ctx->remembered[k].uri, uri[CD_REMEMBERED]) == 0)
			last = true;
	ck_assert(last);
	conduit_listener_free(l);
	conduit_ctx_free(ctx);
}
END_TEST

/* An observer that, on the first "resolved" event, connects to other
 * URIs (filling every slot) and changes the rules: the connect that
 * called it must still use its endpoint safely (ASan watches). */
struct meddler {
	conduit_ctx *ctx;
	int port;
	int calls;
	bool inside;
};

static void meddle(void *arg, const struct conduit_event *ev)
{
	struct meddler *m = arg;
	if (ev->phase != CONDUIT_PHASE_RESOLVED || m->inside)
		return;
	m->inside = true;
	m->calls++;
	for (int i = 0; i < CD_REMEMBERED + 1; i++) {
		char uri[128];
		snprintf(uri, sizeof(uri), "tcp://127.0.0.%d:%d", 2 + i,
		         m->port);
		conduit_flow *f = NULL;
		if (conduit_connect(&f, m->ctx, uri) == CONDUIT_OK)
			conduit_flow_free(f);
	}
	char rules[64];
	snprintf(rules, sizeof(rules), "map m%d.test tcp://127.0.0.1:1\n",
	         m->calls);
	ck_assert_int_eq(conduit_ctx_add_rules(m->ctx, rules, "m"), CONDUIT_OK);
	m->inside = false;
}

START_TEST(observer_that_connects_meanwhile)
{
	conduit_ctx *ctx = fk_new_ctx();
	conduit_listener *l = fk_listen(ctx, "tcp://127.0.0.1:0");
	struct meddler m = {ctx, fk_listener_port(l), 0, false};
	char uri[128];
	snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d", m.port);
	/* Remembered first, then taken out while the observer meddles. */
	conduit_flow *c = NULL, *s = NULL;
	ck_assert_int_eq(conduit_connect(&c, ctx, uri), CONDUIT_OK);
	conduit_flow_free(c);
	conduit_ctx_set_observer(ctx, meddle, &m);
	for (int round = 0; round < 3; round++) {
		ck_assert_int_eq(conduit_connect(&c, ctx, uri), CONDUIT_OK);
		ck_assert_int_eq(fk_drive_handshake(ctx, c, 2000), CONDUIT_OK);
		conduit_flow_free(c);
	}
	conduit_ctx_set_observer(ctx, NULL, NULL);
	ck_assert_int_ge(m.calls, 3);
	ck_assert_int_le(remembered(ctx), CD_REMEMBERED);
	/* Still works, remembered or not. */
	ck_assert_int_eq(conduit_connect(&c, ctx, uri), CONDUIT_OK);
	s = accept_on(l, 2000);
	while (s != NULL) {
		conduit_flow *next = NULL;
		conduit_flow_free(s);
		if (conduit_accept(&next, l) != CONDUIT_OK)
			break;
		s = next;
	}
	conduit_flow_free(c);
	conduit_listener_free(l);
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
	    CD_TEST(remembered_until_the_rules_change, 10),
	    CD_TEST(names_and_secrets_are_not_remembered, 10),
	    CD_TEST(a_full_set_used_in_turn_stays, 10),
	    CD_TEST(observer_remaps_while_resolving, 10),
	    CD_TEST(observer_that_connects_meanwhile, 20),
	};
	return cd_run(
	    cd_suite("connect", tests, sizeof(tests) / sizeof(tests[0])));
}
