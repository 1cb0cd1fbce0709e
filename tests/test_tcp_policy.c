/*
 * test_tcp_policy.c - one TCP policy for both stacks.  First the connect
 * race on its own (backends/tcppolicy), driven with a fake clock: the
 * order of the addresses, the 250 ms stagger, the limit of attempts in
 * flight, addresses arriving while it runs, failure, the timeout.  Then
 * the same behaviour cases against each TCP stack of the build, host
 * sockets on loopback and lwIP over in-memory wires: a silent first
 * address loses the race after about 250 ms, refusing addresses are tried
 * in the policy's order, the connect timeout ends the race, and nodelay=
 * and keepalive= reach the connection.
 *
 * A silent address is, on host sockets, a loopback listener whose queue
 * is full (Linux drops the SYNs); on lwIP, a wire whose client side drops
 * every frame it sends.  Everything stays on loopback and on the private
 * addresses of wires this test makes.
 */
#include "flowkit.h"
#include "harness.h"

#include <conduit/conduit.h>
#ifdef CONDUIT_HAVE_LWIP
#include <conduit/lwip.h>

#include "lwpriv.h"
#endif

#include "core.h"
#include "tcppolicy.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* The race on its own                                                 */

/* Step r at now and expect it to start address want. */
static void expect_start(struct cd_race *r, uint64_t now, size_t want)
{
	size_t got = 999;
	enum cd_race_step s = cd_race_next(r, now, &got);
	ck_assert_msg(s == CD_RACE_START && got == want,
	              "at %llu ms: step %d address %zu, want a start of %zu",
	              (unsigned long long)now, (int)s, got, want);
}

static void expect_step(struct cd_race *r, uint64_t now, enum cd_race_step want)
{
	size_t got = 999;
	enum cd_race_step s = cd_race_next(r, now, &got);
	ck_assert_msg(s == want, "at %llu ms: step %d (address %zu), want %d",
	              (unsigned long long)now, (int)s, got, (int)want);
}

static void add_all(struct cd_race *r, const int *fam, size_t n)
{
	for (size_t i = 0; i < n; i++)
		ck_status(cd_race_add(r, fam[i]), CONDUIT_OK);
}

#define V4 CD_RACE_OTHER
#define V6 CD_RACE_V6

/* Families alternate, IPv6 first, each family in its own order; one
 * attempt every 250 ms while none fails. */
START_TEST(race_order_and_stagger)
{
	static const int fam[] = {V4, V4, V6, V4, V6};
	static const size_t order[] = {2, 0, 4, 1, 3};
	struct cd_race r;
	cd_race_init(&r, 1000, 0, 0);
	add_all(&r, fam, 5);
	cd_race_complete(&r);
	for (size_t k = 0; k < 5; k++) {
		uint64_t t = 1000 + 250 * k;
		if (k > 0) {
			/* Not a moment before its time. */
			ck_assert_uint_eq(cd_race_wake(&r), t);
			expect_step(&r, t - 1, CD_RACE_WAIT);
		}
		expect_start(&r, t, order[k]);
		ck_assert_uint_eq(r.inflight, k + 1);
	}
	/* All started, none ended: only an attempt's end moves it now. */
	expect_step(&r, 5000, CD_RACE_WAIT);
	ck_assert_uint_eq(cd_race_wake(&r), UINT64_MAX);
	cd_race_won(&r);
	expect_step(&r, 5000, CD_RACE_WAIT);
	cd_race_fini(&r);
}
END_TEST

/* A failure starts the next address at once; when every address failed
 * and no more are coming, the race fails, and says so again. */
START_TEST(race_failure_starts_next_and_all_fail)
{
	struct cd_race r;
	cd_race_init(&r, 0, 0, 0);
	static const int fam[] = {V4, V4, V4};
	add_all(&r, fam, 3);
	cd_race_complete(&r);
	expect_start(&r, 0, 0);
	expect_step(&r, 10, CD_RACE_WAIT);
	cd_race_failed(&r);
	ck_assert_uint_eq(cd_race_wake(&r), 0);
	expect_start(&r, 10, 1);
	cd_race_failed(&r);
	expect_start(&r, 11, 2);
	expect_step(&r, 12, CD_RACE_WAIT);
	cd_race_failed(&r);
	expect_step(&r, 12, CD_RACE_FAILED);
	expect_step(&r, 13, CD_RACE_FAILED);
	ck_assert_uint_eq(cd_race_wake(&r), UINT64_MAX);
	cd_race_fini(&r);
}
END_TEST

/* No more than max_inflight at once; with every slot taken the race does
 * not ask to be woken for a start time already passed. */
START_TEST(race_limit_in_flight)
{
	struct cd_race r;
	cd_race_init(&r, 0, 5000, 3);
	for (int i = 0; i < 5; i++)
		ck_status(cd_race_add(&r, V4), CONDUIT_OK);
	cd_race_complete(&r);
	for (size_t k = 0; k < 3; k++)
		expect_start(&r, 250 * k, k);
	expect_step(&r, 2000, CD_RACE_WAIT);
	ck_assert_uint_eq(cd_race_wake(&r), 5000);
	cd_race_failed(&r);
	expect_start(&r, 2001, 3);
	/* A slot is free but the stagger holds the last one back. */
	expect_step(&r, 2002, CD_RACE_WAIT);
	ck_assert_uint_eq(cd_race_wake(&r), 5000); /* every slot taken */
	cd_race_failed(&r);
	expect_start(&r, 2003, 4);
	cd_race_fini(&r);
}
END_TEST

/* The timeout ends the race whatever is in flight or still to start. */
START_TEST(race_timeout)
{
	struct cd_race r;
	cd_race_init(&r, 100, 600, 0);
	static const int fam[] = {V6, V4, V6, V4};
	add_all(&r, fam, 4);
	cd_race_complete(&r);
	expect_start(&r, 100, 0);
	expect_start(&r, 350, 1);
	expect_start(&r, 600, 2);
	ck_assert_uint_eq(cd_race_wake(&r), 700); /* the fourth, at 850 */
	expect_step(&r, 699, CD_RACE_WAIT);
	expect_step(&r, 700, CD_RACE_TIMEOUT);
	expect_step(&r, 900, CD_RACE_TIMEOUT);
	ck_assert_uint_eq(cd_race_wake(&r), UINT64_MAX);
	cd_race_fini(&r);

	/* No timeout: never. */
	cd_race_init(&r, 0, 0, 0);
	ck_status(cd_race_add(&r, V4), CONDUIT_OK);
	expect_start(&r, 0, 0);
	expect_step(&r, UINT64_MAX - 1, CD_RACE_WAIT);
	cd_race_fini(&r);
}
END_TEST

/*
 * A partial answer: the race starts on the first family's addresses,
 * fits the other family's in by alternating as they come, waits (rather
 * than fails) while more may come, and fails only once told none will.
 */
START_TEST(race_partial_answers)
{
	struct cd_race r;
	cd_race_init(&r, 0, 0, 0);
	/* Nothing known yet: wait, do not fail. */
	expect_step(&r, 0, CD_RACE_WAIT);
	/* The AAAA answer: two IPv6 addresses (0, 1). */
	ck_status(cd_race_add(&r, V6), CONDUIT_OK);
	ck_status(cd_race_add(&r, V6), CONDUIT_OK);
	expect_start(&r, 5, 0);
	/* The A answer: two IPv4 addresses (2, 3) go between. */
	ck_status(cd_race_add(&r, V4), CONDUIT_OK);
	ck_status(cd_race_add(&r, V4), CONDUIT_OK);
	expect_step(&r, 100, CD_RACE_WAIT);
	expect_start(&r, 255, 2);
	expect_start(&r, 505, 1);
	expect_start(&r, 755, 3);
	/* Everything failed, but the lookup is not over. */
	for (int i = 0; i < 4; i++)
		cd_race_failed(&r);
	expect_step(&r, 800, CD_RACE_WAIT);
	ck_assert_uint_eq(cd_race_wake(&r), UINT64_MAX);
	/* A late address starts at once: nothing is in flight. */
	ck_status(cd_race_add(&r, V4), CONDUIT_OK);
	expect_start(&r, 900, 4);
	cd_race_failed(&r);
	expect_step(&r, 901, CD_RACE_WAIT);
	cd_race_complete(&r);
	expect_step(&r, 902, CD_RACE_FAILED);
	cd_race_fini(&r);

	/* The A answer first: IPv4 starts, IPv6 takes the next turn. */
	cd_race_init(&r, 0, 0, 0);
	ck_status(cd_race_add(&r, V4), CONDUIT_OK);
	ck_status(cd_race_add(&r, V4), CONDUIT_OK);
	expect_start(&r, 0, 0);
	ck_status(cd_race_add(&r, V6), CONDUIT_OK);
	cd_race_complete(&r);
	expect_start(&r, 250, 2);
	expect_start(&r, 500, 1);
	cd_race_fini(&r);
}
END_TEST

/* More addresses than the race keeps inline: still in order (checked
 * for leaks under the sanitizers). */
START_TEST(race_many_addresses)
{
	struct cd_race r;
	cd_race_init(&r, 0, 0, 0);
	/* 100 IPv4 then 100 IPv6: they must alternate 6, 4, 6, 4 ... */
	for (int i = 0; i < 200; i++)
		ck_status(cd_race_add(&r, i < 100 ? V4 : V6), CONDUIT_OK);
	cd_race_complete(&r);
	ck_assert_uint_eq(cd_race_count(&r), 200);
	for (size_t k = 0; k < 200; k++) {
		size_t want = k % 2 == 0 ? 100 + k / 2 : k / 2;
		expect_start(&r, 0, want);
		cd_race_failed(&r);
	}
	expect_step(&r, 0, CD_RACE_FAILED);
	cd_race_fini(&r);

	/* A partial answer that runs dry, then a long one: none started
	 * twice, the families still alternating past the first 64. */
	cd_race_init(&r, 0, 0, 0);
	ck_status(cd_race_add(&r, V4), CONDUIT_OK);
	expect_start(&r, 0, 0);
	cd_race_failed(&r);
	expect_step(&r, 1, CD_RACE_WAIT);
	for (int i = 0; i < 80; i++)
		ck_status(cd_race_add(&r, i % 4 == 0 ? V4 : V6), CONDUIT_OK);
	cd_race_complete(&r);
	char seen[81] = {0};
	seen[0] = 1;
	int last = V4;
	for (int k = 0; k < 80; k++) {
		size_t got = 999;
		ck_assert_int_eq(cd_race_next(&r, 2, &got), CD_RACE_START);
		ck_assert_uint_lt(got, 81);
		ck_assert_msg(!seen[got], "address %zu started twice", got);
		seen[got] = 1;
		/* Address i + 1 was added as the i-th of the second answer. */
		int fam = (got - 1) % 4 == 0 ? V4 : V6;
		/* Alternating while IPv4 lasts (20 of them, 60 of IPv6). */
		if (k < 40)
			ck_assert_int_ne(fam, last);
		last = fam;
		cd_race_failed(&r);
	}
	expect_step(&r, 3, CD_RACE_FAILED);
	cd_race_fini(&r);
}
END_TEST

/* The options both stacks read from an endpoint. */
START_TEST(tcp_options_parsed_once)
{
	conduit_ctx *ctx = fk_new_ctx();
	conduit_endpoint *ep = NULL;
	struct cd_tcp_opts o;
	ck_status(conduit_endpoint_parse(&ep, "tcp://h.test:1", NULL, 0),
	          CONDUIT_OK);
	ck_status(cd_tcp_opts_parse(&o, ctx, ep), CONDUIT_OK);
	ck_assert(o.nodelay && !o.have_source && o.keep_idle_s == 0);
	conduit_endpoint_free(ep);

	ck_status(conduit_endpoint_parse(
	              &ep, "tcp://h.test:1?keepalive=42&nodelay=0&source=::1",
	              NULL, 0),
	          CONDUIT_OK);
	ck_status(cd_tcp_opts_parse(&o, ctx, ep), CONDUIT_OK);
	ck_assert(!o.nodelay && o.have_source);
	ck_assert_int_eq(o.source.family, CONDUIT_AF_INET6);
	ck_assert_uint_eq(o.keep_idle_s, 42);
	ck_assert_uint_eq(o.keep_intvl_s, 14);
	ck_assert_uint_eq(o.keep_cnt, CD_TCP_KEEPCNT);
	ck_assert(cd_tcp_opts_fit(&o, CONDUIT_AF_INET6));
	ck_assert(!cd_tcp_opts_fit(&o, CONDUIT_AF_INET));
	ck_status(cd_tcp_opts_no_fit(ctx, ep, &o), CONDUIT_ERR_OPTION);
	ck_assert_msg(strstr(conduit_ctx_error(ctx), "source=::1 is IPv6"),
	              "%s", conduit_ctx_error(ctx));
	conduit_endpoint_free(ep);

	/* A short keepalive still probes every second. */
	ck_status(
	    conduit_endpoint_parse(&ep, "tcp://h.test:1?keepalive=2", NULL, 0),
	    CONDUIT_OK);
	ck_status(cd_tcp_opts_parse(&o, ctx, ep), CONDUIT_OK);
	ck_assert_uint_eq(o.keep_intvl_s, 1);
	conduit_endpoint_free(ep);
	conduit_ctx_free(ctx);
}
END_TEST

/* ------------------------------------------------------------------ */
/* The same cases on every TCP stack of the build                      */

enum stack_kind { ST_HOST, ST_LWIP };

static const enum stack_kind stacks[] = {
#ifdef CONDUIT_HAVE_TCP
    ST_HOST,
#endif
#ifdef CONDUIT_HAVE_LWIP
    ST_LWIP,
#endif
};
#define NSTACKS (sizeof(stacks) / sizeof(stacks[0]))

/*
 * A stack with a listener on good:port, and addresses of each kind at
 * that port: silent (never answers), refusing (two IPv4 and an IPv6).
 */
struct rig {
	enum stack_kind kind;
	conduit_ctx *ctx;
	conduit_listener *l;
	int port;
	char good[48], silent[48], refuse4a[48], refuse4b[48], refuse6[48];
#ifdef CONDUIT_HAVE_TCP
	struct fk_silent sil;
#endif
#ifdef CONDUIT_HAVE_LWIP
	conduit_lwip *st;
	conduit_lwip_netif *n[6];
#endif
};

#ifdef CONDUIT_HAVE_LWIP
/* Three wires: 10.0.1.0/24 (fd01::/64) refuses, 10.0.2.0/24 has the
 * listener, 10.0.3.0/24 drops everything its client side sends. */
static void lwip_up(struct rig *r)
{
	static const struct conduit_lwip_netif_config cfg[6] = {
	    {.ipv4 = "10.0.1.1/24", .ipv6 = "fd01::1"},
	    {.ipv4 = "10.0.1.2/24", .ipv6 = "fd01::2"},
	    {.ipv4 = "10.0.2.1/24", .ipv6 = "fd02::1"},
	    {.ipv4 = "10.0.2.2/24", .ipv6 = "fd02::2"},
	    {.ipv4 = "10.0.3.1/24"},
	    {.ipv4 = "10.0.3.2/24"},
	};
	ck_status(conduit_lwip_stack(&r->st), CONDUIT_OK);
	for (int i = 0; i < 6; i += 2)
		ck_status(conduit_lwip_netif_wire_pair(&r->n[i], &r->n[i + 1],
		                                       r->st, &cfg[i],
		                                       &cfg[i + 1], NULL),
		          CONDUIT_OK);
	struct conduit_lwip_wire_config dead = {.loss = 1.0};
	ck_status(conduit_lwip_wire_set(r->n[4], &dead), CONDUIT_OK);
	ck_status(conduit_ctx_use_lwip(r->ctx, r->st), CONDUIT_OK);
	r->l = fk_listen(r->ctx, "tcp://10.0.2.2:0");
	r->port = fk_listener_port(r->l);
	strcpy(r->good, "10.0.2.2");
	strcpy(r->silent, "10.0.3.2");
	strcpy(r->refuse4a, "10.0.1.2");
	/* The client side of the listener's wire: nothing listens there. */
	strcpy(r->refuse4b, "10.0.2.1");
	strcpy(r->refuse6, "fd01::2");
}
#endif

static void rig_up(struct rig *r, enum stack_kind kind)
{
	memset(r, 0, sizeof(*r));
	r->kind = kind;
	r->ctx = fk_new_ctx();
#ifdef CONDUIT_HAVE_LWIP
	if (kind == ST_LWIP) {
		lwip_up(r);
		return;
	}
#endif
#ifdef CONDUIT_HAVE_TCP
	r->l = fk_listen(r->ctx, "tcp://127.0.0.1:0");
	r->port = fk_listener_port(r->l);
	fk_silent_listen(&r->sil, "127.0.0.2", r->port);
	strcpy(r->good, "127.0.0.1");
	strcpy(r->silent, "127.0.0.2");
	strcpy(r->refuse4a, "127.0.0.3");
	strcpy(r->refuse4b, "127.0.0.4");
	strcpy(r->refuse6, "::1");
#endif
}

#ifdef CONDUIT_HAVE_LWIP
/* Drive the stack until lwIP holds no connection but TIME-WAIT (bounded
 * by time), then check that nothing of ours is left. */
static void lwip_check_clean(struct rig *r)
{
	struct conduit_lwip_stats s;
	uint64_t end = cd_now_ms() + (uint64_t)cd_scaled(4000);
	for (;;) {
		conduit_lwip_stats(r->st, &s);
		if ((s.lwip_active == 0 && s.frames == 0) || cd_now_ms() > end)
			break;
		size_t n = 0;
		conduit_poll(r->ctx, NULL, 0, 10, &n);
	}
	ck_assert_msg(s.flows == 0 && s.pcbs == 0 && s.pbufs == 0,
	              "left: flows %zu pcbs %zu pbufs %zu", s.flows, s.pcbs,
	              s.pbufs);
	ck_assert_msg(s.lwip_active == 0 && s.lwip_bound == 0,
	              "lwIP still has pcbs: active %zu bound %zu",
	              s.lwip_active, s.lwip_bound);
}
#endif

static void rig_down(struct rig *r)
{
	conduit_listener_free(r->l);
	r->l = NULL;
#ifdef CONDUIT_HAVE_LWIP
	if (r->kind == ST_LWIP) {
		lwip_check_clean(r);
		conduit_ctx_free(r->ctx);
		for (int i = 0; i < 6; i++)
			conduit_lwip_netif_free(r->n[i]);
		conduit_lwip_release(r->st);
		return;
	}
#endif
#ifdef CONDUIT_HAVE_TCP
	fk_silent_free(&r->sil);
#endif
	conduit_ctx_free(r->ctx);
}

static const char *stack_name(const struct rig *r)
{
	return r->kind == ST_LWIP ? "lwip" : "host";
}

/* An endpoint for tcp://name.test:port carrying the given addresses, as
 * a name that resolves to them would. */
static conduit_endpoint *endpoint_with(const struct rig *r,
                                       const char *const *addrs, size_t n)
{
	char uri[64];
	snprintf(uri, sizeof(uri), "tcp://name.test:%d", r->port);
	conduit_endpoint *ep = NULL;
	ck_status(conduit_endpoint_parse(&ep, uri, NULL, 0), CONDUIT_OK);
	struct conduit_addr a[8];
	ck_assert_uint_le(n, 8);
	for (size_t i = 0; i < n; i++)
		a[i] = fk_addr(addrs[i]);
	ck_status(cd_endpoint_set_addresses(ep, a, n), CONDUIT_OK);
	return ep;
}

/* How a connect went: its status, how long it took, the flow and the
 * server's side (when it connected). */
struct outcome {
	int rc;
	uint64_t ms;
	conduit_flow *f, *s;
	char error[512];
};

/*
 * Connect to ep and drive the flow (and the listener, accepting) with
 * conduit_poll until the handshake ends, for at most limit_ms.  A
 * synchronous failure counts like one found by the handshake.
 */
static void connect_ep(struct rig *r, conduit_endpoint *ep, int limit_ms,
                       struct outcome *o)
{
	memset(o, 0, sizeof(*o));
	uint64_t t0 = cd_now_ms();
	o->rc = conduit_connect_endpoint(&o->f, r->ctx, ep);
	if (o->rc != CONDUIT_OK) {
		o->ms = cd_now_ms() - t0;
		snprintf(o->error, sizeof(o->error), "%s",
		         conduit_ctx_error(r->ctx));
		return;
	}
	o->rc = CONDUIT_WANT_WRITE;
	uint64_t end = t0 + (uint64_t)cd_scaled(limit_ms);
	while (fk_is_want(o->rc) && cd_now_ms() < end) {
		struct conduit_pollitem it[2] = {
		    {.flow = o->f, .events = CONDUIT_POLLOUT},
		    {.listener = r->l, .events = CONDUIT_POLLIN}};
		size_t n = 0;
		ck_status(conduit_poll(r->ctx, it, 2, 50, &n), CONDUIT_OK);
		o->rc = conduit_handshake(o->f);
		if (o->s == NULL) {
			int rc = conduit_accept(&o->s, r->l);
			ck_assert_msg(rc == CONDUIT_OK || fk_is_want(rc),
			              "accept: %s",
			              conduit_listener_error(r->l));
		}
	}
	o->ms = cd_now_ms() - t0;
	snprintf(o->error, sizeof(o->error), "%s", conduit_flow_error(o->f));
	ck_assert_msg(!fk_is_want(o->rc), "connect still going after %d ms",
	              limit_ms);
}

/* Wait (bounded) for the server's side of a connection that is made. */
static void accept_it(struct rig *r, struct outcome *o)
{
	uint64_t end = cd_now_ms() + (uint64_t)cd_scaled(3000);
	while (o->s == NULL && cd_now_ms() < end) {
		struct conduit_pollitem it = {.listener = r->l,
		                              .events = CONDUIT_POLLIN};
		size_t n = 0;
		ck_status(conduit_poll(r->ctx, &it, 1, 50, &n), CONDUIT_OK);
		int rc = conduit_accept(&o->s, r->l);
		ck_assert_msg(rc == CONDUIT_OK || fk_is_want(rc), "accept: %s",
		              conduit_listener_error(r->l));
	}
	ck_assert_msg(o->s != NULL, "the listener got no connection");
}

static void outcome_free(struct outcome *o)
{
	conduit_flow_free(o->f);
	conduit_flow_free(o->s);
	o->f = o->s = NULL;
}

/* The addresses the CONNECTING events name, in order, joined by ' '. */
static void attempts(const struct fk_events *log, char *buf, size_t len)
{
	buf[0] = '\0';
	for (int i = 0; i < log->n; i++)
		if (log->phase[i] == CONDUIT_PHASE_CONNECTING) {
			size_t k = strlen(buf);
			snprintf(buf + k, len - k, "%s%s", k ? " " : "",
			         log->detail[i]);
		}
}

/* "ADDR:PORT", IPv6 in brackets, as events and messages show it. */
static const char *at(const struct rig *r, const char *addr, char *buf,
                      size_t len)
{
	if (strchr(addr, ':') != NULL)
		snprintf(buf, len, "[%s]:%d", addr, r->port);
	else
		snprintf(buf, len, "%s:%d", addr, r->port);
	return buf;
}

/*
 * The first address never answers; the second, 250 ms later, connects.
 * Trying in turn would wait out the whole 10 s connect timeout.  The
 * loser is closed: only the winner's connection is left.
 */
START_TEST(silent_first_address_loses_the_race)
{
	struct rig r;
	rig_up(&r, stacks[_i]);
	const char *addrs[] = {r.silent, r.good};
	conduit_endpoint *ep = endpoint_with(&r, addrs, 2);
	conduit_ctx_set_connect_timeout(r.ctx, 10000);
	static struct fk_events log;
	memset(&log, 0, sizeof(log));
	conduit_ctx_set_observer(r.ctx, fk_record, &log);
	struct outcome o;
	connect_ep(&r, ep, 5000, &o);
	ck_assert_msg(o.rc == CONDUIT_OK, "%s: %s (%s)", stack_name(&r),
	              conduit_status_name(o.rc), o.error);
	ck_assert_msg(o.ms >= 240 && o.ms < (uint64_t)cd_scaled(2000),
	              "%s: connected after %llu ms", stack_name(&r),
	              (unsigned long long)o.ms);
	char want[128], a1[64], a2[64], got[512];
	snprintf(want, sizeof(want), "%s %s", at(&r, r.silent, a1, sizeof(a1)),
	         at(&r, r.good, a2, sizeof(a2)));
	attempts(&log, got, sizeof(got));
	ck_assert_msg(strcmp(got, want) == 0, "%s: attempts %s, want %s",
	              stack_name(&r), got, want);
	ck_assert_int_eq(fk_count_phase(&log, CONDUIT_PHASE_CONNECTED), 1);
	for (int i = 0; i < log.n; i++)
		if (log.phase[i] == CONDUIT_PHASE_CONNECTED)
			ck_assert_str_eq(log.detail[i], a2);
	conduit_ctx_set_observer(r.ctx, NULL, NULL);
	accept_it(&r, &o);
	fk_exchange(o.f, o.s);
#ifdef CONDUIT_HAVE_LWIP
	if (r.kind == ST_LWIP) {
		/* The loser's pcb is gone: the listener's, the client's and
		 * the server's are left, two of them connections. */
		struct conduit_lwip_stats s;
		conduit_lwip_stats(r.st, &s);
		ck_assert_uint_eq(s.pcbs, 3);
		ck_assert_uint_eq(s.lwip_active, 2);
	}
#endif
	outcome_free(&o);
	conduit_endpoint_free(ep);
	rig_down(&r);
}
END_TEST

/* A refusing address gives way to the next one without the stagger, and
 * when every address refuses, they were tried in the policy's order
 * (IPv6 first, then alternating) and the failure counts them. */
START_TEST(refused_addresses)
{
	struct rig r;
	rig_up(&r, stacks[_i]);
	static struct fk_events log;
	memset(&log, 0, sizeof(log));
	conduit_ctx_set_observer(r.ctx, fk_record, &log);

	const char *one[] = {r.refuse4a, r.good};
	conduit_endpoint *ep = endpoint_with(&r, one, 2);
	struct outcome o;
	connect_ep(&r, ep, 5000, &o);
	ck_assert_msg(o.rc == CONDUIT_OK, "%s: %s (%s)", stack_name(&r),
	              conduit_status_name(o.rc), o.error);
	ck_assert_int_eq(fk_count_phase(&log, CONDUIT_PHASE_CONNECTING), 2);
	accept_it(&r, &o);
	fk_exchange(o.f, o.s);
	outcome_free(&o);
	conduit_endpoint_free(ep);

	memset(&log, 0, sizeof(log));
	const char *all[] = {r.refuse4a, r.refuse4b, r.refuse6};
	ep = endpoint_with(&r, all, 3);
	connect_ep(&r, ep, 5000, &o);
	ck_assert_msg(o.rc == CONDUIT_ERR_REFUSED, "%s: %s (%s)",
	              stack_name(&r), conduit_status_name(o.rc), o.error);
	char want[256], a[3][64], got[512];
	snprintf(want, sizeof(want), "%s %s %s",
	         at(&r, r.refuse6, a[0], sizeof(a[0])),
	         at(&r, r.refuse4a, a[1], sizeof(a[1])),
	         at(&r, r.refuse4b, a[2], sizeof(a[2])));
	attempts(&log, got, sizeof(got));
	ck_assert_msg(strcmp(got, want) == 0, "%s: attempts %s, want %s",
	              stack_name(&r), got, want);
	char tail[128];
	snprintf(tail, sizeof(tail), "(3 addresses tried, last %s)", a[2]);
	ck_assert_msg(strstr(o.error, "connection refused") &&
	                  strstr(o.error, tail),
	              "%s: message '%s'", stack_name(&r), o.error);
	conduit_ctx_set_observer(r.ctx, NULL, NULL);
	outcome_free(&o);
	conduit_endpoint_free(ep);
	rig_down(&r);
}
END_TEST

/* Every address silent: the second starts 250 ms after the first, and
 * the connect timeout ends the race with every attempt closed. */
START_TEST(connect_timeout_ends_the_race)
{
	struct rig r;
	rig_up(&r, stacks[_i]);
	const char *addrs[] = {r.silent, r.silent};
	conduit_endpoint *ep = endpoint_with(&r, addrs, 2);
	conduit_ctx_set_connect_timeout(r.ctx, 600);
	static struct fk_events log;
	memset(&log, 0, sizeof(log));
	conduit_ctx_set_observer(r.ctx, fk_record, &log);
	int fds = cd_count_fds();
	struct outcome o;
	connect_ep(&r, ep, 5000, &o);
	ck_assert_msg(o.rc == CONDUIT_ERR_TIMED_OUT, "%s: %s (%s)",
	              stack_name(&r), conduit_status_name(o.rc), o.error);
	ck_assert_msg(o.ms >= 590 && o.ms < (uint64_t)cd_scaled(3000),
	              "%s: timed out after %llu ms", stack_name(&r),
	              (unsigned long long)o.ms);
	ck_assert_int_eq(fk_count_phase(&log, CONDUIT_PHASE_CONNECTING), 2);
	ck_assert_msg(strstr(o.error, "timed out after 600 ms") != NULL,
	              "%s: message '%s'", stack_name(&r), o.error);
	ck_assert_int_eq(cd_count_fds(), fds);
	ck_assert_ptr_null(o.s);
	conduit_ctx_set_observer(r.ctx, NULL, NULL);
	outcome_free(&o);
	conduit_endpoint_free(ep);
	rig_down(&r);
}
END_TEST

/* The TCP options of a connected flow, read back from the stack. */
struct opts_seen {
	bool nodelay, keepalive;
	unsigned idle_s, intvl_s, cnt;
};

static void read_options(const struct rig *r, const conduit_flow *f,
                         struct opts_seen *t)
{
	memset(t, 0, sizeof(*t));
#ifdef CONDUIT_HAVE_LWIP
	if (r->kind == ST_LWIP) {
		struct cd_lwip_tcp_info li;
		ck_status(cd_lwip_tcp_info(f, &li), CONDUIT_OK);
		t->nodelay = li.nodelay;
		t->keepalive = li.keepalive;
		t->idle_s = li.keep_idle_ms / 1000;
		t->intvl_s = li.keep_intvl_ms / 1000;
		t->cnt = li.keep_cnt;
		return;
	}
#endif
	(void)r;
	int fd = conduit_flow_fd(f);
	ck_assert_int_ge(fd, 0);
	int v = 0;
	socklen_t len = sizeof(v);
	ck_assert_int_eq(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &len), 0);
	t->nodelay = v != 0;
	ck_assert_int_eq(getsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &v, &len), 0);
	t->keepalive = v != 0;
	ck_assert_int_eq(getsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &v, &len),
	                 0);
	t->idle_s = (unsigned)v;
	ck_assert_int_eq(getsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &v, &len),
	                 0);
	t->intvl_s = (unsigned)v;
	ck_assert_int_eq(getsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &v, &len), 0);
	t->cnt = (unsigned)v;
}

/* Connect to r's listener with the query q and read the options. */
static void options_with(struct rig *r, const char *q, struct opts_seen *t)
{
	char uri[128];
	snprintf(uri, sizeof(uri), "tcp://%s:%d%s", r->good, r->port, q);
	conduit_endpoint *ep = NULL;
	ck_status(conduit_endpoint_parse(&ep, uri, NULL, 0), CONDUIT_OK);
	struct outcome o;
	connect_ep(r, ep, 5000, &o);
	ck_assert_msg(o.rc == CONDUIT_OK, "%s %s: %s (%s)", stack_name(r), uri,
	              conduit_status_name(o.rc), o.error);
	read_options(r, o.f, t);
	accept_it(r, &o);
	fk_exchange(o.f, o.s);
	outcome_free(&o);
	conduit_endpoint_free(ep);
}

/* nodelay is on unless nodelay=0; keepalive= sets the same timers on
 * either stack (lwIP used to ignore it). */
START_TEST(nodelay_and_keepalive)
{
	struct rig r;
	rig_up(&r, stacks[_i]);
	struct opts_seen t;
	options_with(&r, "", &t);
	ck_assert_msg(t.nodelay && !t.keepalive,
	              "%s: default nodelay %d "
	              "keepalive %d",
	              stack_name(&r), t.nodelay, t.keepalive);

	options_with(&r, "?keepalive=42", &t);
	ck_assert_msg(t.nodelay && t.keepalive, "%s: nodelay %d keepalive %d",
	              stack_name(&r), t.nodelay, t.keepalive);
	ck_assert_uint_eq(t.idle_s, 42);
	ck_assert_uint_eq(t.intvl_s, 14);
	ck_assert_uint_eq(t.cnt, CD_TCP_KEEPCNT);

	options_with(&r, "?nodelay=0&keepalive=5", &t);
	ck_assert_msg(!t.nodelay && t.keepalive, "%s: nodelay %d keepalive %d",
	              stack_name(&r), t.nodelay, t.keepalive);
	ck_assert_uint_eq(t.idle_s, 5);
	ck_assert_uint_eq(t.intvl_s, 1);
	rig_down(&r);
}
END_TEST

/* A source address of a family the host has no address of: the same
 * error on either stack, before anything is sent. */
START_TEST(source_family_mismatch)
{
	struct rig r;
	rig_up(&r, stacks[_i]);
	char uri[128];
	snprintf(uri, sizeof(uri), "tcp://%s:%d?source=::1", r.good, r.port);
	conduit_flow *f = NULL;
	ck_status(conduit_connect(&f, r.ctx, uri), CONDUIT_ERR_OPTION);
	ck_assert_ptr_null(f);
	ck_assert_msg(strstr(conduit_ctx_error(r.ctx),
	                     "source=::1 is IPv6, but the host has no IPv6 "
	                     "address") != NULL,
	              "%s: %s", stack_name(&r), conduit_ctx_error(r.ctx));
	rig_down(&r);
}
END_TEST

#ifdef CONDUIT_HAVE_LWIP
/*
 * lwIP keeps one attempt's pcb as the flow's own.  When that attempt
 * fails while another is still in flight (a refusal that comes late, over
 * a slow wire, after the silent second address started), the race goes
 * on with the other one, and the timeout still ends it, every pcb let go.
 */
START_TEST(lwip_first_attempt_fails_while_second_in_flight)
{
	struct rig r;
	rig_up(&r, ST_LWIP);
	struct conduit_lwip_wire_config slow = {.delay_ms = 300};
	ck_status(conduit_lwip_wire_set(r.n[0], &slow), CONDUIT_OK);
	const char *addrs[] = {r.refuse4a, r.silent};
	conduit_endpoint *ep = endpoint_with(&r, addrs, 2);
	conduit_ctx_set_connect_timeout(r.ctx, 1500);
	static struct fk_events log;
	memset(&log, 0, sizeof(log));
	conduit_ctx_set_observer(r.ctx, fk_record, &log);
	struct outcome o;
	connect_ep(&r, ep, 5000, &o);
	ck_assert_msg(o.rc == CONDUIT_ERR_TIMED_OUT, "%s (%s)",
	              conduit_status_name(o.rc), o.error);
	ck_assert_msg(o.ms >= 1490, "ended after %llu ms",
	              (unsigned long long)o.ms);
	ck_assert_int_eq(fk_count_phase(&log, CONDUIT_PHASE_CONNECTING), 2);
	conduit_ctx_set_observer(r.ctx, NULL, NULL);
	outcome_free(&o);
	conduit_endpoint_free(ep);
	struct conduit_lwip_wire_config fine = {0};
	ck_status(conduit_lwip_wire_set(r.n[0], &fine), CONDUIT_OK);

	/* The same, and a third address that answers: it wins. */
	ck_status(conduit_lwip_wire_set(r.n[0], &slow), CONDUIT_OK);
	const char *three[] = {r.refuse4a, r.silent, r.good};
	ep = endpoint_with(&r, three, 3);
	connect_ep(&r, ep, 5000, &o);
	ck_assert_msg(o.rc == CONDUIT_OK, "%s (%s)", conduit_status_name(o.rc),
	              o.error);
	accept_it(&r, &o);
	fk_exchange(o.f, o.s);
	outcome_free(&o);
	conduit_endpoint_free(ep);
	ck_status(conduit_lwip_wire_set(r.n[0], &fine), CONDUIT_OK);
	rig_down(&r);
}
END_TEST
#endif

int main(void)
{
	const struct cd_test tests[] = {
	    CD_TEST(race_order_and_stagger, 0),
	    CD_TEST(race_failure_starts_next_and_all_fail, 0),
	    CD_TEST(race_limit_in_flight, 0),
	    CD_TEST(race_timeout, 0),
	    CD_TEST(race_partial_answers, 0),
	    CD_TEST(race_many_addresses, 0),
	    CD_TEST(tcp_options_parsed_once, 0),
#ifdef CONDUIT_HAVE_LWIP
	    CD_TEST(lwip_first_attempt_fails_while_second_in_flight, 20),
#endif
	};
	Suite *s =
	    cd_suite("tcp_policy", tests, sizeof(tests) / sizeof(tests[0]));
	cd_suite_add_loop(s, "silent_first_address_loses_the_race",
	                  silent_first_address_loses_the_race, NSTACKS, 20);
	cd_suite_add_loop(s, "refused_addresses", refused_addresses, NSTACKS,
	                  20);
	cd_suite_add_loop(s, "connect_timeout_ends_the_race",
	                  connect_timeout_ends_the_race, NSTACKS, 20);
	cd_suite_add_loop(s, "nodelay_and_keepalive", nodelay_and_keepalive,
	                  NSTACKS, 20);
	cd_suite_add_loop(s, "source_family_mismatch", source_family_mismatch,
	                  NSTACKS, 20);
	return cd_run(s);
}
