/*
 * test_lwip.c - TCP over the lwIP stack through conduit: two netifs of one
 * stack joined by an in-memory wire (echo, 64 MiB each way at once, IPv4
 * and IPv6, many connections, refused, connect timeout, a lossy and
 * reordering wire), full-size frames read from a descriptor (the PBUF_POOL
 * trap, meant to run under ASan), two processes each with its own stack
 * joined by a datagram socketpair, and lwIP against the Linux kernel's TCP
 * through a TAP device in a network namespace the test makes.  Segments
 * arriving after a close, a SYN-ACK resent from a timer and destinations
 * lwIP would loop back run in forked children, since lwIP aborts the
 * process when it reaches for its loopback.  After every test the stack's
 * counters must show no pcb, pbuf or frame left.
 *
 * Everything stays on private addresses inside wires and namespaces the
 * tests make (10.0.0.0/24, fd00::/64).  Forked peers report through their
 * exit status only.
 */
#include "flowkit.h"
#include "harness.h"

#include <conduit/conduit.h>
#include <conduit/lwip.h>

#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define BIG (64 * MiB)

static const struct conduit_lwip_netif_config cfg_a = {.ipv4 = "10.0.0.1/24",
                                                       .ipv6 = "fd00::1"};
static const struct conduit_lwip_netif_config cfg_b = {.ipv4 = "10.0.0.2/24",
                                                       .ipv6 = "fd00::2"};

/* One stack, two netifs on a wire, and a context on it. */
struct rig {
	conduit_lwip *st;
	conduit_lwip_netif *a, *b;
	conduit_ctx *ctx;
};

static void rig_up(struct rig *r, const struct conduit_lwip_wire_config *w)
{
	memset(r, 0, sizeof(*r));
	ck_status(conduit_lwip_stack(&r->st), CONDUIT_OK);
	ck_status(conduit_lwip_netif_wire_pair(&r->a, &r->b, r->st, &cfg_a,
	                                       &cfg_b, w),
	          CONDUIT_OK);
	r->ctx = fk_new_ctx();
	ck_status(conduit_ctx_use_lwip(r->ctx, r->st), CONDUIT_OK);
}

/* Poll the stack until its closing handshakes are over (bounded). */
static void settle(struct rig *r)
{
	struct conduit_lwip_stats s;
	uint64_t end = cd_now_ms() + (uint64_t)cd_scaled(4000);
	while (cd_now_ms() < end) {
		conduit_lwip_stats(r->st, &s);
		if (s.lwip_active == 0 && s.frames == 0)
			break;
		size_t n = 0;
		conduit_poll(r->ctx, NULL, 0, 10, &n);
	}
}

/* Nothing of ours is left, and lwIP holds no connection but TIME-WAIT. */
static void check_clean(struct rig *r)
{
	settle(r);
	struct conduit_lwip_stats s;
	conduit_lwip_stats(r->st, &s);
	ck_assert_msg(s.flows == 0 && s.listeners == 0 && s.pcbs == 0 &&
	                  s.pbufs == 0,
	              "left: flows %zu listeners %zu pcbs %zu pbufs %zu",
	              s.flows, s.listeners, s.pcbs, s.pbufs);
	ck_assert_msg(s.lwip_active == 0 && s.lwip_listen == 0 &&
	                  s.lwip_bound == 0,
	              "lwIP still has pcbs: active %zu listen %zu bound %zu",
	              s.lwip_active, s.lwip_listen, s.lwip_bound);
}

static void rig_down(struct rig *r)
{
	check_clean(r);
	conduit_ctx_free(r->ctx);
	conduit_lwip_netif_free(r->a);
	conduit_lwip_netif_free(r->b);
	struct conduit_lwip_stats s;
	conduit_lwip_stats(r->st, &s);
	ck_assert_uint_eq(s.frames, 0);
	ck_assert_uint_eq(s.netifs, 0);
	conduit_lwip_release(r->st);
}

/*
 * Finish a connect of c (to uri, for messages) and accept it on l, driving
 * both with conduit_poll only, within limit_ms.  Each turn polls only what
 * is still awaited: an established flow is always writable, so polling it
 * would return at once and turn the wait for the other side into a spin.
 */
static void pair_finish(conduit_ctx *ctx, conduit_listener *l, const char *uri,
                        conduit_flow *c, conduit_flow **s, int limit_ms)
{
	bool up = false;
	uint64_t end = cd_now_ms() + (uint64_t)limit_ms;
	while (!up || *s == NULL) {
		ck_assert_msg(cd_now_ms() < end, "connect %s: no progress (%s)",
		              uri, up ? "not accepted" : "not connected");
		struct conduit_pollitem it[2];
		size_t k = 0;
		if (!up)
			it[k++] = (struct conduit_pollitem){
			    .flow = c, .events = CONDUIT_POLLOUT};
		if (*s == NULL)
			it[k++] = (struct conduit_pollitem){
			    .listener = l, .events = CONDUIT_POLLIN};
		size_t n = 0;
		ck_status(conduit_poll(ctx, it, k, 100, &n), CONDUIT_OK);
		if (!up) {
			int rc = conduit_handshake(c);
			if (rc == CONDUIT_OK)
				up = true;
			else
				ck_assert_msg(fk_is_want(rc), "handshake: %s",
				              conduit_flow_error(c));
		}
		if (*s == NULL) {
			int rc = conduit_accept(s, l);
			ck_assert_msg(rc == CONDUIT_OK || fk_is_want(rc),
			              "accept: %s", conduit_listener_error(l));
		}
	}
}

/* Connect to uri (NULL: l's own) and accept it on l (pair_finish). */
static void pair(conduit_ctx *ctx, conduit_listener *l, const char *uri,
                 conduit_flow **c, conduit_flow **s)
{
	if (uri == NULL)
		uri = conduit_listener_uri(l);
	ck_status(conduit_connect(c, ctx, uri), CONDUIT_OK);
	ck_assert_int_eq(conduit_flow_fd(*c), -1);
	*s = NULL;
	pair_finish(ctx, l, uri, *c, s, cd_scaled(30000));
}

/* One direction of a duplex transfer. */
struct side {
	conduit_flow *f;
	uint32_t out_seed, in_seed;
	uint64_t sent, got;
	bool shut, eof;
	uint8_t buf[FK_CHUNK];
};

static void side_step(struct side *sd, unsigned rev, uint64_t total)
{
	if ((rev & CONDUIT_POLLOUT) && sd->sent < total) {
		uint64_t left = total - sd->sent;
		size_t len = left < FK_CHUNK ? (size_t)left : FK_CHUNK;
		cd_pattern(sd->out_seed, sd->sent, sd->buf, len);
		size_t n = 0;
		int rc = conduit_write(sd->f, sd->buf, len, &n);
		ck_assert_msg(rc == CONDUIT_OK || fk_is_want(rc), "write: %s",
		              conduit_flow_error(sd->f));
		sd->sent += n;
	}
	if (sd->sent == total && !sd->shut) {
		ck_status(conduit_shutdown(sd->f, CONDUIT_SHUT_WR), CONDUIT_OK);
		sd->shut = true;
	}
	if ((rev & CONDUIT_POLLIN) && !sd->eof) {
		size_t n = 0;
		int rc = conduit_read(sd->f, sd->buf, sizeof(sd->buf), &n);
		if (rc == CONDUIT_OK) {
			ck_assert_msg(cd_pattern_check(sd->in_seed, sd->got,
			                               sd->buf, n) == n,
			              "corrupt byte near offset %llu",
			              (unsigned long long)sd->got);
			sd->got += n;
		} else if (rc == CONDUIT_EOF) {
			sd->eof = true;
		} else {
			ck_assert_msg(fk_is_want(rc), "read: %s",
			              conduit_flow_error(sd->f));
		}
	}
}

/* total bytes from c to s and from s to c at the same time, every byte
 * checked, each side ending with end of stream; conduit_poll only. */
static void duplex(conduit_ctx *ctx, conduit_flow *c, conduit_flow *s,
                   uint64_t total, int limit_ms)
{
	static struct side sides[2];
	memset(sides, 0, sizeof(sides));
	sides[0].f = c;
	sides[0].out_seed = 11;
	sides[0].in_seed = 22;
	sides[1].f = s;
	sides[1].out_seed = 22;
	sides[1].in_seed = 11;
	uint64_t end = cd_now_ms() + (uint64_t)cd_scaled(limit_ms);
	while (!(sides[0].eof && sides[1].eof)) {
		ck_assert_msg(
		    cd_now_ms() < end,
		    "duplex stalled: c sent %llu got %llu, s sent %llu "
		    "got %llu",
		    (unsigned long long)sides[0].sent,
		    (unsigned long long)sides[0].got,
		    (unsigned long long)sides[1].sent,
		    (unsigned long long)sides[1].got);
		struct conduit_pollitem it[2];
		for (int i = 0; i < 2; i++)
			it[i] = (struct conduit_pollitem){
			    .flow = sides[i].f,
			    .events =
			        (sides[i].eof ? 0u : CONDUIT_POLLIN) |
			        (sides[i].sent < total ? CONDUIT_POLLOUT : 0u)};
		size_t n = 0;
		ck_status(conduit_poll(ctx, it, 2, 1000, &n), CONDUIT_OK);
		for (int i = 0; i < 2; i++)
			side_step(&sides[i], it[i].revents, total);
	}
	ck_assert_uint_eq(sides[0].got, total);
	ck_assert_uint_eq(sides[1].got, total);
	struct conduit_flow_stats fs;
	conduit_flow_stats(c, &fs);
	ck_assert_uint_eq(fs.bytes_written, total);
	ck_assert_uint_eq(fs.bytes_read, total);
}

static void close_pair(conduit_ctx *ctx, conduit_flow *c, conduit_flow *s)
{
	(void)ctx;
	ck_status(conduit_close(c), CONDUIT_OK);
	ck_status(conduit_close(s), CONDUIT_OK);
	conduit_flow_free(c);
	conduit_flow_free(s);
}

static void transfer_test(const char *listen_uri, const char *host,
                          uint64_t total,
                          const struct conduit_lwip_wire_config *w,
                          int limit_ms)
{
	struct rig r;
	rig_up(&r, w);
	conduit_listener *l = fk_listen(r.ctx, listen_uri);
	char uri[128];
	snprintf(uri, sizeof(uri), "tcp://%s:%d", host, fk_listener_port(l));
	conduit_flow *c, *s;
	pair(r.ctx, l, uri, &c, &s);
	duplex(r.ctx, c, s, total, limit_ms);
	if (w != NULL && w->loss > 0) {
		struct conduit_lwip_stats st;
		conduit_lwip_stats(r.st, &st);
		ck_assert_msg(st.frames_dropped > 0, "the wire lost nothing");
	}
	close_pair(r.ctx, c, s);
	conduit_listener_free(l);
	rig_down(&r);
}

START_TEST(wire_bulk_64mib_ipv4)
{
	transfer_test("tcp://10.0.0.2:0", "10.0.0.2", BIG, NULL, 60000);
}
END_TEST

START_TEST(wire_bulk_ipv6)
{
	transfer_test("tcp://[fd00::2]:0", "[fd00::2]", 8 * MiB, NULL, 30000);
}
END_TEST

START_TEST(wire_echo_small)
{
	struct rig r;
	rig_up(&r, NULL);
	conduit_listener *l = fk_listen(r.ctx, "tcp://10.0.0.2:7000");
	ck_assert_str_eq(conduit_listener_uri(l), "tcp://10.0.0.2:7000");
	conduit_flow *c, *s;
	pair(r.ctx, l, "tcp://10.0.0.2:7000", &c, &s);
	ck_assert_str_eq(conduit_flow_uri(c), "tcp://10.0.0.2:7000");
	ck_assert_msg(strncmp(conduit_flow_uri(s), "tcp://10.0.0.1:", 15) == 0,
	              "accepted flow: %s", conduit_flow_uri(s));
	fk_exchange(c, s);
	/* Read before anything came: want, not block. */
	char b;
	size_t n = 9;
	ck_status(conduit_read(c, &b, 1, &n), CONDUIT_WANT_READ);
	ck_assert_uint_eq(n, 0);
	close_pair(r.ctx, c, s);
	conduit_listener_free(l);
	rig_down(&r);
}
END_TEST

/* A full send buffer is "want write", never lost data. */
START_TEST(backpressure_no_loss)
{
	struct rig r;
	rig_up(&r, NULL);
	conduit_listener *l = fk_listen(r.ctx, "tcp://10.0.0.2:0");
	conduit_flow *c, *s;
	pair(r.ctx, l, NULL, &c, &s);
	/* Nobody reads s: c fills the window and its own buffer. */
	static uint8_t buf[FK_CHUNK];
	uint64_t sent = 0;
	int rc = CONDUIT_OK;
	for (int i = 0; i < 1000 && rc == CONDUIT_OK; i++) {
		size_t n = 0;
		cd_pattern(5, sent, buf, sizeof(buf));
		rc = conduit_write(c, buf, sizeof(buf), &n);
		sent += n;
		size_t k = 0;
		conduit_poll(r.ctx, NULL, 0, 0, &k);
	}
	ck_status(rc, CONDUIT_WANT_WRITE);
	ck_assert_msg(sent >= 64 * 1024 && sent < 16 * MiB, "sent %llu",
	              (unsigned long long)sent);
	/* Everything written arrives, in order. */
	uint64_t got = 0;
	uint64_t end = cd_now_ms() + (uint64_t)cd_scaled(10000);
	while (got < sent) {
		ck_assert(cd_now_ms() < end);
		size_t n = 0;
		rc =
		    conduit_read_wait(s, buf, sizeof(buf), &n, cd_scaled(5000));
		ck_status(rc, CONDUIT_OK);
		ck_assert_uint_eq(cd_pattern_check(5, got, buf, n), n);
		got += n;
	}
	close_pair(r.ctx, c, s);
	conduit_listener_free(l);
	rig_down(&r);
}
END_TEST

#define MANY 64

START_TEST(many_connections)
{
	struct rig r;
	rig_up(&r, NULL);
	conduit_listener *l = fk_listen(r.ctx, "tcp://10.0.0.2:0");
	static conduit_flow *c[MANY], *s[MANY];
	for (int i = 0; i < MANY; i++)
		pair(r.ctx, l, NULL, &c[i], &s[i]);
	struct conduit_lwip_stats st;
	conduit_lwip_stats(r.st, &st);
	ck_assert_uint_eq(st.flows, 2 * MANY);
	ck_assert_uint_eq(st.pcbs, 2 * MANY + 1);
	/* All open at once; each carries its own bytes. */
	for (int i = 0; i < MANY; i++) {
		uint8_t v = (uint8_t)i;
		size_t n = 0;
		ck_status(conduit_write_all(c[i], &v, 1, &n, cd_scaled(2000)),
		          CONDUIT_OK);
	}
	for (int i = MANY; i-- > 0;) {
		uint8_t v = 0xff;
		size_t n = 0;
		ck_status(conduit_read_wait(s[i], &v, 1, &n, cd_scaled(2000)),
		          CONDUIT_OK);
		ck_assert_uint_eq(v, (uint8_t)i);
	}
	for (int i = 0; i < MANY; i++)
		close_pair(r.ctx, c[i], s[i]);
	conduit_listener_free(l);
	rig_down(&r);
}
END_TEST

START_TEST(connect_refused)
{
	struct rig r;
	rig_up(&r, NULL);
	conduit_flow *f = NULL;
	ck_status(conduit_connect_wait(&f, r.ctx, "tcp://10.0.0.2:9",
	                               cd_scaled(5000)),
	          CONDUIT_ERR_REFUSED);
	ck_assert_ptr_null(f);
	ck_assert_msg(strstr(conduit_ctx_error(r.ctx), "refused") != NULL, "%s",
	              conduit_ctx_error(r.ctx));
	/* And over IPv6, after neighbour discovery. */
	ck_status(conduit_connect_wait(&f, r.ctx, "tcp://[fd00::2]:9",
	                               cd_scaled(5000)),
	          CONDUIT_ERR_REFUSED);
	rig_down(&r);
}
END_TEST

/* A peer that never answers: an address nobody has (ARP goes unanswered),
 * and a wire that drops everything. */
START_TEST(connect_timeout)
{
	struct rig r;
	rig_up(&r, NULL);
	conduit_ctx_set_connect_timeout(r.ctx, 300);
	conduit_flow *f = NULL;
	uint64_t t0 = cd_now_ms();
	ck_status(conduit_connect(&f, r.ctx, "tcp://10.0.0.99:80"), CONDUIT_OK);
	ck_status(fk_drive_handshake(r.ctx, f, 100), CONDUIT_ERR_TIMED_OUT);
	uint64_t took = cd_now_ms() - t0;
	ck_assert_msg(took >= 290 && took < (uint64_t)cd_scaled(3000),
	              "took %llu", (unsigned long long)took);
	conduit_flow_free(f);

	struct conduit_lwip_wire_config dead = {.loss = 1.0};
	ck_status(conduit_lwip_wire_set(r.a, &dead), CONDUIT_OK);
	conduit_listener *l = fk_listen(r.ctx, "tcp://10.0.0.2:0");
	char uri[64];
	snprintf(uri, sizeof(uri), "tcp://10.0.0.2:%d", fk_listener_port(l));
	ck_status(conduit_connect(&f, r.ctx, uri), CONDUIT_OK);
	ck_status(fk_drive_handshake(r.ctx, f, 100), CONDUIT_ERR_TIMED_OUT);
	ck_assert_msg(strstr(conduit_flow_error(f), "timed out") != NULL, "%s",
	              conduit_flow_error(f));
	conduit_flow_free(f);
	conduit_listener_free(l);
	struct conduit_lwip_stats st;
	conduit_lwip_stats(r.st, &st);
	ck_assert_uint_gt(st.frames_dropped, 0);
	rig_down(&r);
}
END_TEST

START_TEST(reset_after_connected)
{
	struct rig r;
	rig_up(&r, NULL);
	conduit_listener *l = fk_listen(r.ctx, "tcp://10.0.0.2:0");
	conduit_flow *c, *s;
	pair(r.ctx, l, NULL, &c, &s);
	fk_exchange(c, s);
	/* Freed without close: abortive, the peer sees a reset. */
	conduit_flow_free(s);
	char b;
	size_t n = 0;
	ck_status(conduit_read_wait(c, &b, 1, &n, cd_scaled(3000)),
	          CONDUIT_ERR_RESET);
	conduit_flow_free(c);
	conduit_listener_free(l);
	rig_down(&r);
}
END_TEST

START_TEST(lossy_reordering_wire)
{
	struct conduit_lwip_wire_config w = {
	    .loss = 0.01, .reorder = 0.01, .seed = 42};
	transfer_test("tcp://10.0.0.2:0", "10.0.0.2", 3 * MiB, &w, 90000);
}
END_TEST

/*
 * Waiting must sleep.  Every frame the client side sends is dropped for a
 * while, so its SYN is lost and lwIP can only wait for its retransmission
 * timer; a listener with nothing to accept waits too.  conduit_poll() must
 * sleep until the timer or the wire has work: the process's CPU time over
 * the wait is a small fraction of the wall time.  Then the wire heals and
 * the connection comes up through the retransmitted SYN.
 */
START_TEST(dropped_syn_waits_without_spinning)
{
	struct rig r;
	rig_up(&r, NULL);
	conduit_listener *l = fk_listen(r.ctx, "tcp://10.0.0.2:0");
	char uri[64];
	snprintf(uri, sizeof(uri), "tcp://10.0.0.2:%d", fk_listener_port(l));
	const struct conduit_lwip_wire_config drop = {.loss = 1.0},
	                                      heal = {.loss = 0};
	ck_status(conduit_lwip_wire_set(r.a, &drop), CONDUIT_OK);
	conduit_flow *c = NULL, *s = NULL;
	ck_status(conduit_connect(&c, r.ctx, uri), CONDUIT_OK);

	/* The connection cannot come up: every SYN (and ARP request) is
	 * lost.  Poll both as an event loop would, for 1.5 s. */
	uint64_t t0 = cd_now_ms(), cpu0 = cd_cpu_ms();
	unsigned turns = 0;
	while (cd_now_ms() - t0 < 1500) {
		struct conduit_pollitem it[2] = {
		    {.flow = c, .events = CONDUIT_POLLOUT},
		    {.listener = l, .events = CONDUIT_POLLIN}};
		size_t n = 0;
		ck_status(conduit_poll(r.ctx, it, 2, 1000, &n), CONDUIT_OK);
		turns++;
		ck_assert_int_eq(it[1].revents, 0);
		int rc = conduit_handshake(c);
		ck_assert_msg(fk_is_want(rc), "handshake over a dead wire: %s",
		              conduit_status_name(rc));
		ck_status(conduit_accept(&s, l), CONDUIT_WANT_READ);
	}
	uint64_t wall = cd_now_ms() - t0, cpu = cd_cpu_ms() - cpu0;
	struct conduit_lwip_stats st;
	conduit_lwip_stats(r.st, &st);
	ck_assert_msg(st.frames_dropped > 0, "the wire dropped nothing");
	/* lwIP's timers tick every 250 ms or so: a sleeping wait makes a few
	 * dozen turns at most; a spin, hundreds of thousands. */
	ck_assert_msg(cpu * 10 < wall && turns < 200,
	              "waiting for a lost SYN used %llu ms of CPU in %llu ms "
	              "(%u turns): conduit_poll spins",
	              (unsigned long long)cpu, (unsigned long long)wall, turns);

	/* Healed: the retransmitted SYN gets through, still without a spin. */
	ck_status(conduit_lwip_wire_set(r.a, &heal), CONDUIT_OK);
	t0 = cd_now_ms();
	cpu0 = cd_cpu_ms();
	pair_finish(r.ctx, l, uri, c, &s, cd_scaled(15000));
	wall = cd_now_ms() - t0;
	cpu = cd_cpu_ms() - cpu0;
	ck_assert_msg(
	    cpu * 4 < wall + 40,
	    "waiting for the retransmitted SYN used %llu ms of CPU in "
	    "%llu ms",
	    (unsigned long long)cpu, (unsigned long long)wall);
	fk_exchange(c, s);
	close_pair(r.ctx, c, s);
	conduit_listener_free(l);
	rig_down(&r);
}
END_TEST

/*
 * Full-size frames read from a descriptor, as PBUF_RAM: two netifs of
 * this stack joined by a datagram socketpair, a bulk transfer (every data
 * frame 1514 bytes), and oversized junk frames.  Under ASan a frame put in
 * one of the library's short pool pbufs would be reported here.
 */
START_TEST(full_size_frames)
{
	int sv[2];
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv),
	                 0);
	struct rig r;
	memset(&r, 0, sizeof(r));
	ck_status(conduit_lwip_stack(&r.st), CONDUIT_OK);
	ck_status(conduit_lwip_netif_dgram(&r.a, r.st, sv[0], &cfg_a),
	          CONDUIT_OK);
	ck_status(conduit_lwip_netif_dgram(&r.b, r.st, sv[1], &cfg_b),
	          CONDUIT_OK);
	r.ctx = fk_new_ctx();
	ck_status(conduit_ctx_use_lwip(r.ctx, r.st), CONDUIT_OK);
	conduit_listener *l = fk_listen(r.ctx, "tcp://10.0.0.2:0");
	conduit_flow *c, *s;
	pair(r.ctx, l, NULL, &c, &s);
	duplex(r.ctx, c, s, 4 * MiB, 30000);
	struct conduit_lwip_stats st;
	conduit_lwip_stats(r.st, &st);
	ck_assert_uint_eq(st.max_frame, 1514);
	close_pair(r.ctx, c, s);
	conduit_listener_free(l);
	rig_down(&r);
}
END_TEST

/*
 * Runts from a wire: frames shorter than Ethernet's 60-byte minimum, as a
 * hostile or broken peer sends them (a card would have padded them).
 * lwIP's ARP input reads a whole ARP header whatever the frame's length;
 * under ASan an unpadded runt is reported here (tests/fuzz found it).
 * The stack must then still answer a well-formed ARP request.
 */
START_TEST(runt_frames)
{
	int sv[2];
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv),
	                 0);
	struct rig r;
	memset(&r, 0, sizeof(r));
	ck_status(conduit_lwip_stack(&r.st), CONDUIT_OK);
	ck_status(conduit_lwip_netif_dgram(&r.b, r.st, sv[0], &cfg_b),
	          CONDUIT_OK);
	r.ctx = fk_new_ctx();
	ck_status(conduit_ctx_use_lwip(r.ctx, r.st), CONDUIT_OK);
	/* An ARP request for 10.0.0.2 from 10.0.0.1 (02:00:00:00:00:01). */
	static const uint8_t arp[42] = {
	    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0,  1, 0x08, 0x06,
	    0,    1,    0x08, 0,    6,    4,    0, 1, 2, 0, 0,  0, 0,    1,
	    10,   0,    0,    1,    0,    0,    0, 0, 0, 0, 10, 0, 0,    2};
	/* Cut short inside the ARP header, after the Ethernet header, and
	 * inside it. */
	static const size_t cuts[] = {41, 30, 22, 15, 14, 13, 1};
	for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
		ck_assert_int_eq(send(sv[1], arp, cuts[i], 0),
		                 (ssize_t)cuts[i]);
		size_t n = 0;
		ck_status(conduit_poll(r.ctx, NULL, 0, 0, &n), CONDUIT_OK);
	}
	/* The whole request (42 bytes, a runt too) is answered. */
	ck_assert_int_eq(send(sv[1], arp, sizeof(arp), 0),
	                 (ssize_t)sizeof(arp));
	uint8_t reply[1600];
	bool answered = false;
	uint64_t end = cd_now_ms() + (uint64_t)cd_scaled(2000);
	while (!answered && cd_now_ms() < end) {
		size_t n = 0;
		ck_status(conduit_poll(r.ctx, NULL, 0, 10, &n), CONDUIT_OK);
		/* IPv6's own announcements come and go too. */
		ssize_t got;
		while (!answered && (got = recv(sv[1], reply, sizeof(reply),
		                                MSG_DONTWAIT)) >= 42)
			answered = reply[12] == 0x08 && reply[13] == 0x06 &&
			           reply[21] == 2; /* an ARP reply */
	}
	ck_assert_msg(answered, "no ARP reply");
	close(sv[1]);
	conduit_ctx_free(r.ctx);
	conduit_lwip_netif_free(r.b);
	conduit_lwip_release(r.st);
}
END_TEST

/* ---- two processes, one stack each, over a datagram socketpair ---- */

static int dgram_stack(int fd, const struct conduit_lwip_netif_config *cfg,
                       conduit_lwip **st, conduit_lwip_netif **nif,
                       conduit_ctx **ctx)
{
	if (conduit_lwip_stack(st) != CONDUIT_OK)
		return 1;
	if (conduit_lwip_netif_dgram(nif, *st, fd, cfg) != CONDUIT_OK)
		return 2;
	if (conduit_ctx_new(ctx) != CONDUIT_OK)
		return 3;
	if (conduit_ctx_use_lwip(*ctx, *st) != CONDUIT_OK)
		return 4;
	return 0;
}

static void two_process_echo(const char *listen_uri, const char *uri,
                             uint64_t total)
{
	int sv[2];
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv),
	                 0);
	pid_t pid = cd_fork_peer();
	if (pid == 0) {
		close(sv[0]);
		conduit_lwip *st;
		conduit_lwip_netif *nif;
		conduit_ctx *ctx = NULL;
		int rc = dgram_stack(sv[1], &cfg_b, &st, &nif, &ctx);
		if (rc != 0)
			_exit(10 + rc);
		conduit_listener *l = NULL;
		if (conduit_listen(&l, ctx, listen_uri) != CONDUIT_OK)
			_exit(20);
		conduit_flow *f = NULL;
		if (conduit_accept_wait(&f, l, cd_scaled(20000)) != CONDUIT_OK)
			_exit(21);
		rc = fk_echo_blocking(f, cd_scaled(120000));
		conduit_flow_free(f);
		/* Let the closing handshake reach the other process: a
		 * second of polling (conduit_poll sleeps when idle). */
		uint64_t end = cd_now_ms() + 1000;
		while (cd_now_ms() < end) {
			size_t n = 0;
			conduit_poll(ctx, NULL, 0, 10, &n);
		}
		conduit_listener_free(l);
		conduit_ctx_free(ctx);
		conduit_lwip_release(st);
		_exit(rc);
	}
	close(sv[1]);
	conduit_lwip *st;
	conduit_lwip_netif *nif;
	conduit_ctx *ctx = NULL;
	ck_assert_int_eq(dgram_stack(sv[0], &cfg_a, &st, &nif, &ctx), 0);
	conduit_flow *f = NULL;
	int rc = CONDUIT_ERR_REFUSED;
	/* The peer may not listen yet: a refusal is retried a while. */
	uint64_t up_by = cd_now_ms() + (uint64_t)cd_scaled(5000);
	while (rc == CONDUIT_ERR_REFUSED && cd_now_ms() < up_by) {
		rc = conduit_connect_wait(&f, ctx, uri, cd_scaled(5000));
		if (rc == CONDUIT_ERR_REFUSED)
			usleep(20000);
	}
	ck_assert_msg(rc == CONDUIT_OK, "connect %s: %s", uri,
	              conduit_ctx_error(ctx));
	ck_assert_int_eq(fk_pump_echo(ctx, f, 7, total, cd_scaled(120000)), 0);
	ck_status(conduit_close(f), CONDUIT_OK);
	conduit_flow_free(f);
	ck_assert_int_eq(cd_wait_peer(pid, cd_scaled(20000)), 0);
	struct conduit_lwip_stats s;
	conduit_lwip_stats(st, &s);
	ck_assert_uint_eq(s.pcbs, 0);
	ck_assert_uint_eq(s.pbufs, 0);
	conduit_ctx_free(ctx);
	conduit_lwip_release(st);
}

START_TEST(two_processes_64mib)
{
	two_process_echo("tcp://10.0.0.2:7000", "tcp://10.0.0.2:7000", BIG);
}
END_TEST

START_TEST(two_processes_ipv6)
{
	two_process_echo("tcp://[fd00::2]:7000", "tcp://[fd00::2]:7000",
	                 4 * MiB);
}
END_TEST

/* ---- lwIP and the Linux kernel's TCP through a TAP device ---- */

#define TAP_NAME "cdtap0"
#define NO_TAP   77

static int if_ioctl(const char *name, unsigned long req, struct ifreq *ifr)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -1;
	snprintf(ifr->ifr_name, IFNAMSIZ, "%s", name);
	int r = ioctl(s, req, ifr);
	close(s);
	return r;
}

static int if_up(const char *name)
{
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	if (if_ioctl(name, SIOCGIFFLAGS, &ifr) < 0)
		return -1;
	ifr.ifr_flags |= IFF_UP;
	return if_ioctl(name, SIOCSIFFLAGS, &ifr);
}

static int if_addr(const char *name, const char *ip, const char *mask)
{
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	struct sockaddr_in *in = (struct sockaddr_in *)&ifr.ifr_addr;
	in->sin_family = AF_INET;
	inet_pton(AF_INET, ip, &in->sin_addr);
	if (if_ioctl(name, SIOCSIFADDR, &ifr) < 0)
		return -1;
	inet_pton(AF_INET, mask, &in->sin_addr);
	return if_ioctl(name, SIOCSIFNETMASK, &ifr);
}

/* The kernel's side: plain sockets.  Echo one connection on port 7000. */
static int kernel_echo_server(int ready_fd)
{
	alarm(60);
	int s = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(7000)};
	inet_pton(AF_INET, "10.0.0.1", &a.sin_addr);
	if (bind(s, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(s, 4) < 0)
		return 1;
	if (write(ready_fd, "r", 1) != 1)
		return 2;
	int c = accept(s, NULL, NULL);
	if (c < 0)
		return 3;
	static char buf[65536];
	for (;;) {
		ssize_t n = read(c, buf, sizeof(buf));
		if (n < 0)
			return 4;
		if (n == 0)
			break;
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(c, buf + off, (size_t)(n - off));
			if (w <= 0)
				return 5;
			off += w;
		}
	}
	shutdown(c, SHUT_WR);
	close(c);
	close(s);
	return 0;
}

/* The kernel connects to lwIP's listener, sends a pattern, checks the
 * echo. */
static int kernel_client(uint64_t total)
{
	alarm(60);
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(7001)};
	inet_pton(AF_INET, "10.0.0.2", &a.sin_addr);
	int r = -1;
	for (int i = 0; i < 100 && r < 0; i++) {
		r = connect(s, (struct sockaddr *)&a, sizeof(a));
		if (r < 0) {
			close(s);
			usleep(20000);
			s = socket(AF_INET, SOCK_STREAM, 0);
		}
	}
	if (r < 0)
		return 1;
	static uint8_t out[65536], in[65536];
	uint64_t sent = 0, got = 0;
	while (sent < total) {
		size_t len = total - sent < sizeof(out) ? (size_t)(total - sent)
		                                        : sizeof(out);
		cd_pattern(9, sent, out, len);
		for (size_t off = 0; off < len;) {
			ssize_t w = write(s, out + off, len - off);
			if (w <= 0)
				return 2;
			off += (size_t)w;
		}
		sent += len;
		/* Read back what is there, so neither side stalls. */
		while (got + sizeof(in) <= sent) {
			ssize_t n = read(s, in, sizeof(in));
			if (n <= 0)
				return 3;
			if (cd_pattern_check(9, got, in, (size_t)n) !=
			    (size_t)n)
				return 4;
			got += (uint64_t)n;
		}
	}
	shutdown(s, SHUT_WR);
	for (;;) {
		ssize_t n = read(s, in, sizeof(in));
		if (n < 0)
			return 5;
		if (n == 0)
			break;
		if (cd_pattern_check(9, got, in, (size_t)n) != (size_t)n)
			return 6;
		got += (uint64_t)n;
	}
	close(s);
	return got == total ? 0 : 7;
}

/* Runs in a forked child: make the namespace and the TAP, then both
 * directions.  Exit status: 0, NO_TAP, or the failing step. */
static int tap_child(void)
{
	if (unshare(CLONE_NEWNET) < 0)
		return NO_TAP;
	conduit_lwip *st;
	conduit_lwip_netif *nif;
	if (conduit_lwip_stack(&st) != CONDUIT_OK)
		return 30;
	struct conduit_lwip_netif_config cfg = {.ipv4 = "10.0.0.2/24"};
	int rc = conduit_lwip_netif_tap(&nif, st, TAP_NAME, &cfg);
	if (rc == CONDUIT_ERR_UNSUPPORTED || rc == CONDUIT_ERR_PERMISSION)
		return NO_TAP;
	if (rc != CONDUIT_OK)
		return 31;
	if (if_up("lo") < 0 ||
	    if_addr(TAP_NAME, "10.0.0.1", "255.255.255.0") < 0 ||
	    if_up(TAP_NAME) < 0)
		return 32;
	conduit_ctx *ctx;
	if (conduit_ctx_new(&ctx) != CONDUIT_OK ||
	    conduit_ctx_use_lwip(ctx, st) != CONDUIT_OK)
		return 33;

	/* lwIP connects to the kernel. */
	int pfd[2];
	if (pipe(pfd) < 0)
		return 34;
	fflush(NULL);
	pid_t srv = fork();
	if (srv == 0) {
		close(pfd[0]);
		_exit(kernel_echo_server(pfd[1]));
	}
	close(pfd[1]);
	char c;
	if (read(pfd[0], &c, 1) != 1)
		return 35;
	close(pfd[0]);
	conduit_flow *f = NULL;
	if (conduit_connect_wait(&f, ctx, "tcp://10.0.0.1:7000", 10000) !=
	    CONDUIT_OK)
		return 36;
	rc = fk_pump_echo(ctx, f, 3, 16 * MiB, 60000);
	if (rc != 0)
		return 40 + rc;
	conduit_close(f);
	conduit_flow_free(f);
	if (cd_wait_peer(srv, 10000) != 0)
		return 37;

	/* The kernel connects to lwIP. */
	conduit_listener *l = NULL;
	if (conduit_listen(&l, ctx, "tcp://10.0.0.2:7001") != CONDUIT_OK)
		return 50;
	fflush(NULL);
	pid_t cli = fork();
	if (cli == 0)
		_exit(kernel_client(8 * MiB));
	if (conduit_accept_wait(&f, l, 10000) != CONDUIT_OK)
		return 51;
	rc = fk_echo_blocking(f, 60000);
	if (rc != 0)
		return 60 + rc;
	rc = cd_wait_peer(cli, 10000);
	if (rc != 0)
		return 70 + (rc > 6 ? 6 : rc);
	conduit_flow_free(f);
	conduit_listener_free(l);
	conduit_ctx_free(ctx);
	conduit_lwip_release(st);
	return 0;
}

START_TEST(tap_kernel_tcp)
{
	pid_t pid = cd_fork_peer();
	if (pid == 0)
		_exit(tap_child());
	int rc = cd_wait_peer(pid, cd_scaled(100000));
	if (rc == NO_TAP) {
		const char *allow = getenv("CONDUIT_ALLOW_NO_TAP");
		ck_assert_msg(
		    allow != NULL && strcmp(allow, "1") == 0,
		    "NO TAP DEVICE: cannot unshare a network namespace "
		    "or create " TAP_NAME " via /dev/net/tun (needs "
		    "CAP_NET_ADMIN); the lwIP <-> kernel TCP test did NOT "
		    "run.  Set CONDUIT_ALLOW_NO_TAP=1 to skip it.");
		fprintf(stderr,
		        "test_lwip: TAP UNAVAILABLE: lwIP <-> kernel TCP "
		        "test SKIPPED (CONDUIT_ALLOW_NO_TAP=1)\n");
		return;
	}
	ck_assert_msg(rc == 0, "TAP child failed at step %d", rc);
}
END_TEST

/* ---- one process, two netifs on one subnet: replies nobody pinned ---- */

/*
 * Run fn(arg) in a forked child and fail unless it exits 0 within ms.
 * lwIP's assertions abort the process, so these scenarios run apart: an
 * abort is reported as the signal, not as the test runner's crash.
 */
static void in_child(const char *what, int (*fn)(const void *), const void *arg,
                     int ms)
{
	pid_t pid = cd_fork_peer();
	if (pid == 0)
		_exit(fn(arg));
	int status = 0;
	pid_t r;
	uint64_t end = cd_now_ms() + (uint64_t)ms;
	for (;;) {
		r = waitpid(pid, &status, WNOHANG);
		if (r < 0 && errno == EINTR)
			continue;
		if (r != 0 || cd_now_ms() >= end)
			break;
		usleep(5000);
	}
	if (r == 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		ck_abort_msg("%s: still running after %d ms", what, ms);
	}
	ck_assert_msg(r == pid, "%s: waitpid: %s", what, strerror(errno));
	ck_assert_msg(!WIFSIGNALED(status),
	              "%s: the process died of signal %d (%s)", what,
	              WTERMSIG(status), strsignal(WTERMSIG(status)));
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	              "%s: failed at step %d", what, WEXITSTATUS(status));
}

/* The rig of a child: no Check assertions there, only exit statuses. */
static int kid_up(struct rig *k)
{
	memset(k, 0, sizeof(*k));
	if (conduit_lwip_stack(&k->st) != CONDUIT_OK)
		return 1;
	if (conduit_lwip_netif_wire_pair(&k->a, &k->b, k->st, &cfg_a, &cfg_b,
	                                 NULL) != CONDUIT_OK)
		return 2;
	if (conduit_ctx_new(&k->ctx) != CONDUIT_OK ||
	    conduit_ctx_use_lwip(k->ctx, k->st) != CONDUIT_OK)
		return 3;
	return 0;
}

/* Settle, then 0 if nothing is left, else step. */
static int kid_down(struct rig *k, int step)
{
	struct conduit_lwip_stats s;
	uint64_t end = cd_now_ms() + (uint64_t)cd_scaled(4000);
	while (cd_now_ms() < end) {
		conduit_lwip_stats(k->st, &s);
		if (s.lwip_active == 0 && s.frames == 0)
			break;
		size_t n = 0;
		conduit_poll(k->ctx, NULL, 0, 10, &n);
	}
	conduit_lwip_stats(k->st, &s);
	bool clean = s.flows == 0 && s.listeners == 0 && s.pcbs == 0 &&
	             s.pbufs == 0 && s.lwip_active == 0;
	conduit_ctx_free(k->ctx);
	conduit_lwip_netif_free(k->a);
	conduit_lwip_netif_free(k->b);
	conduit_lwip_release(k->st);
	return clean ? 0 : step;
}

/* Write on f until the peer's reset shows (reads drain what came); 0, or
 * step when something else ends it or nothing does within ms. */
static int send_until_reset(conduit_ctx *ctx, conduit_flow *f, int ms, int step)
{
	static const char junk[100];
	char buf[512];
	uint64_t end = cd_now_ms() + (uint64_t)cd_scaled(ms);
	while (cd_now_ms() < end) {
		size_t n = 0;
		int rc = conduit_write(f, junk, sizeof(junk), &n);
		if (rc == CONDUIT_ERR_RESET)
			return 0;
		if (rc != CONDUIT_OK && !fk_is_want(rc))
			return step;
		rc = conduit_read(f, buf, sizeof(buf), &n);
		if (rc == CONDUIT_ERR_RESET)
			return 0;
		if (rc != CONDUIT_OK && rc != CONDUIT_EOF && !fk_is_want(rc))
			return step + 1;
		struct conduit_pollitem it = {.flow = f,
		                              .events = CONDUIT_POLLIN};
		conduit_poll(ctx, &it, 1, 20, &n);
	}
	return step + 2;
}

struct stray {
	const char *host; /* netif B's address, as in a URI */
	bool unread;      /* close with the peer's bytes unread (RST) */
	bool close_server;
};

/*
 * A flow is closed while its peer's segments are on the wire: lwIP has no
 * pcb for them any more and answers each with a reset that no pcb pins to
 * a netif.  Routed among two netifs on one subnet, that reset once left
 * by the netif owning its destination, which lwIP hands to its loopback
 * (and so to its thread, which never runs): an abort.
 */
static int stray_child(const void *arg)
{
	const struct stray *sc = arg;
	struct rig k;
	int rc = kid_up(&k);
	if (rc != 0)
		return rc;
	char uri[96];
	snprintf(uri, sizeof(uri), "tcp://%s:7100", sc->host);
	conduit_listener *l = NULL;
	conduit_flow *c = NULL, *s = NULL;
	if (conduit_listen(&l, k.ctx, uri) != CONDUIT_OK)
		return 4;
	if (conduit_connect_wait(&c, k.ctx, uri, cd_scaled(5000)) != CONDUIT_OK)
		return 5;
	if (conduit_accept_wait(&s, l, cd_scaled(5000)) != CONDUIT_OK)
		return 6;
	conduit_flow *closer = sc->close_server ? s : c;
	conduit_flow *sender = sc->close_server ? c : s;
	static const char msg[100] = "stray";
	size_t n = 0;
	if (conduit_write_all(sender, msg, sizeof(msg), &n, cd_scaled(5000)) !=
	    CONDUIT_OK)
		return 7;
	struct conduit_pollitem it = {.flow = closer, .events = CONDUIT_POLLIN};
	if (conduit_poll(k.ctx, &it, 1, cd_scaled(5000), &n) != CONDUIT_OK ||
	    !(it.revents & CONDUIT_POLLIN))
		return 8;
	if (!sc->unread) {
		char buf[sizeof(msg)];
		for (size_t got = 0; got < sizeof(msg); got += n)
			if (conduit_read_wait(closer, buf, sizeof(buf) - got,
			                      &n,
			                      cd_scaled(5000)) != CONDUIT_OK)
				return 9;
	}
	/* Three more segments on their way, not yet delivered. */
	for (int i = 0; i < 3; i++)
		if (conduit_write(sender, msg, sizeof(msg), &n) != CONDUIT_OK ||
		    n != sizeof(msg))
			return 10;
	if (conduit_close(closer) != CONDUIT_OK)
		return 11;
	conduit_flow_free(closer);
	rc = send_until_reset(k.ctx, sender, 5000, 12);
	if (rc != 0)
		return rc;
	conduit_flow_free(sender);
	conduit_listener_free(l);
	return kid_down(&k, 20);
}

static void stray_test(const char *host)
{
	for (int i = 0; i < 4; i++) {
		struct stray sc = {.host = host,
		                   .unread = (i & 1) != 0,
		                   .close_server = (i & 2) != 0};
		char what[128];
		snprintf(what, sizeof(what),
		         "%s: %s closes %s, its peer sends on", host,
		         sc.close_server ? "server" : "client",
		         sc.unread ? "with bytes unread" : "after reading all");
		in_child(what, stray_child, &sc, cd_scaled(20000));
	}
}

START_TEST(segments_after_close_ipv4)
{
	stray_test("10.0.0.2");
}
END_TEST

START_TEST(segments_after_close_ipv6)
{
	stray_test("[fd00::2]");
}
END_TEST

/*
 * A listener on every address pins a connection to its netif only when
 * it is accepted; until then lwIP routes its segments.  Its SYN-ACK lost,
 * the retransmission comes from lwIP's timer, outside any frame's
 * delivery: it must still leave by the netif the SYN came in by.  The
 * client is on B and the listener's side on A, so that routing among the
 * netifs would pick B, which owns the destination.
 */
static int synack_child(const void *arg)
{
	const char *host_a = arg;
	struct rig k;
	int rc = kid_up(&k);
	if (rc != 0)
		return rc;
	conduit_listener *l = NULL;
	if (conduit_listen(&l, k.ctx, "tcp://:7200") != CONDUIT_OK)
		return 4;
	char uri[96];
	snprintf(uri, sizeof(uri), "tcp://%s:7200?source=%s", host_a,
	         strchr(host_a, ':') != NULL ? "fd00::2" : "10.0.0.2");
	conduit_flow *c = NULL, *s = NULL;
	/* Once through, so that ARP and neighbour discovery are done. */
	if (conduit_connect_wait(&c, k.ctx, uri, cd_scaled(5000)) != CONDUIT_OK)
		return 5;
	if (conduit_accept_wait(&s, l, cd_scaled(5000)) != CONDUIT_OK)
		return 6;
	conduit_flow_free(c);
	conduit_flow_free(s);
	struct conduit_lwip_stats st0, st;
	conduit_lwip_stats(k.st, &st0);

	/* The SYN is queued to A; A's answer is lost. */
	struct conduit_lwip_wire_config dead = {.loss = 1.0};
	if (conduit_connect(&c, k.ctx, uri) != CONDUIT_OK)
		return 7;
	if (conduit_lwip_wire_set(k.a, &dead) != CONDUIT_OK)
		return 8;
	conduit_lwip_process(k.st);
	conduit_lwip_stats(k.st, &st);
	if (st.frames_dropped <= st0.frames_dropped)
		return 9;
	/* Now B's retransmitted SYNs are lost instead, so only A's timer
	 * can bring the SYN-ACK. */
	if (conduit_lwip_wire_set(k.a, NULL) != CONDUIT_OK ||
	    conduit_lwip_wire_set(k.b, &dead) != CONDUIT_OK)
		return 10;
	uint64_t end = cd_now_ms() + (uint64_t)cd_scaled(10000);
	while ((rc = conduit_handshake(c)) != CONDUIT_OK) {
		if (!fk_is_want(rc) || cd_now_ms() >= end)
			return 11;
		size_t n = 0;
		conduit_poll(k.ctx, NULL, 0, 20, &n);
	}
	if (conduit_lwip_wire_set(k.b, NULL) != CONDUIT_OK)
		return 12;
	/* B's ACK was lost too: its first byte completes the handshake. */
	char b = 'x';
	size_t n = 0;
	if (conduit_write_all(c, &b, 1, &n, cd_scaled(5000)) != CONDUIT_OK)
		return 13;
	b = 0;
	if (conduit_accept_wait(&s, l, cd_scaled(10000)) != CONDUIT_OK ||
	    conduit_read_wait(s, &b, 1, &n, cd_scaled(5000)) != CONDUIT_OK ||
	    b != 'x')
		return 14;
	conduit_close(c);
	conduit_close(s);
	conduit_flow_free(c);
	conduit_flow_free(s);
	conduit_listener_free(l);
	return kid_down(&k, 20);
}

START_TEST(any_listener_synack_from_timer)
{
	in_child("IPv4", synack_child, "10.0.0.1", cd_scaled(30000));
	in_child("IPv6", synack_child, "[fd00::1]", cd_scaled(30000));
}
END_TEST

/*
 * Destinations lwIP would hand to its loopback (which needs its thread):
 * the loopback addresses, and a netif's own address as seen from that
 * netif (source= picks it).  Refused as unreachable, with A the default
 * netif so that every address has a way out.
 */
static int loopback_child(const void *arg)
{
	(void)arg;
	static const char *const uris[] = {
	    "tcp://127.0.0.1:7300",
	    "tcp://[::1]:7300",
	    "tcp://10.0.0.1:7300?source=10.0.0.1",
	    "tcp://[fd00::1]:7300?source=fd00::1",
	};
	struct rig k;
	memset(&k, 0, sizeof(k));
	struct conduit_lwip_netif_config ca = cfg_a;
	ca.is_default = 1;
	if (conduit_lwip_stack(&k.st) != CONDUIT_OK ||
	    conduit_lwip_netif_wire_pair(&k.a, &k.b, k.st, &ca, &cfg_b, NULL) !=
	        CONDUIT_OK ||
	    conduit_ctx_new(&k.ctx) != CONDUIT_OK ||
	    conduit_ctx_use_lwip(k.ctx, k.st) != CONDUIT_OK)
		return 1;
	for (size_t i = 0; i < sizeof(uris) / sizeof(uris[0]); i++) {
		conduit_flow *f = NULL;
		int rc =
		    conduit_connect_wait(&f, k.ctx, uris[i], cd_scaled(2000));
		if (rc != CONDUIT_ERR_UNREACHABLE || f != NULL)
			return 10 + (int)i;
		const char *m = conduit_ctx_error(k.ctx);
		if (strstr(m, "loopback") == NULL) {
			fprintf(stderr, "%s: %s\n", uris[i], m);
			return 20 + (int)i;
		}
	}
	/* The stack is still there: a connection across the wire works. */
	conduit_listener *l = NULL;
	conduit_flow *c = NULL, *s = NULL;
	if (conduit_listen(&l, k.ctx, "tcp://10.0.0.2:7300") != CONDUIT_OK ||
	    conduit_connect_wait(&c, k.ctx, "tcp://10.0.0.2:7300",
	                         cd_scaled(5000)) != CONDUIT_OK ||
	    conduit_accept_wait(&s, l, cd_scaled(5000)) != CONDUIT_OK)
		return 30;
	conduit_close(c);
	conduit_close(s);
	conduit_flow_free(c);
	conduit_flow_free(s);
	conduit_listener_free(l);
	return kid_down(&k, 40);
}

START_TEST(loopback_destinations_refused)
{
	in_child("loopback destinations", loopback_child, NULL,
	         cd_scaled(20000));
}
END_TEST

/*
 * connect-to moves where a connection goes; a listener goes nowhere, so
 * the option on a listening URI is refused, naming the URI and the
 * option, before anything is bound (the lookup used to follow it and bind
 * the destination's address, here another netif's, instead of the host's).
 */
START_TEST(listen_refuses_connect_to)
{
	static const char *const uris[] = {
	    "tcp://10.0.0.2:0?connect-to=10.0.0.1:80",
	    "tcp://:0?connect-to=10.0.0.1:80",
	    "tcp://[fd00::2]:0?connect-to=%5Bfd00::1%5D:80",
	    "tcp://name.test:0?connect-to=10.0.0.1:80",
	};
	struct rig r;
	rig_up(&r, NULL);
	for (size_t i = 0; i < sizeof(uris) / sizeof(uris[0]); i++) {
		conduit_listener *l = NULL;
		int rc = conduit_listen(&l, r.ctx, uris[i]);
		const char *m = conduit_ctx_error(r.ctx);
		ck_assert_msg(rc == CONDUIT_ERR_OPTION,
		              "listen %s: got %s (%s), bound as %s", uris[i],
		              conduit_status_name(rc), m,
		              l != NULL ? conduit_listener_uri(l) : "-");
		ck_assert_ptr_null(l);
		char want[128];
		snprintf(want, sizeof(want), "listen %s: connect-to", uris[i]);
		ck_assert_msg(strstr(m, want) == m &&
		                  strstr(m, "listener") != NULL,
		              "message: %s", m);
	}
	/* The same host without the option listens, on B. */
	conduit_listener *l = fk_listen(r.ctx, "tcp://10.0.0.2:0");
	const char *bound = conduit_listener_uri(l);
	ck_assert_msg(strncmp(bound, "tcp://10.0.0.2:", 15) == 0, "bound as %s",
	              bound);
	conduit_listener_free(l);
	rig_down(&r);
}
END_TEST

START_TEST(one_context_at_a_time)
{
	struct rig r;
	rig_up(&r, NULL);
	conduit_ctx *other = fk_new_ctx();
	ck_status(conduit_ctx_use_lwip(other, r.st), CONDUIT_ERR_STATE);
	ck_status(conduit_ctx_use_lwip(r.ctx, r.st), CONDUIT_OK);
	conduit_ctx_free(other);
	/* A bad address is refused with a message, nothing is made. */
	conduit_lwip_netif *x = NULL, *y = NULL;
	struct conduit_lwip_netif_config bad = {.ipv4 = "10.0.0.300/24"};
	ck_status(
	    conduit_lwip_netif_wire_pair(&x, &y, r.st, &bad, &cfg_b, NULL),
	    CONDUIT_ERR_INVALID);
	ck_assert_ptr_null(x);
	ck_assert_msg(strstr(conduit_lwip_error(r.st), "10.0.0.300") != NULL,
	              "%s", conduit_lwip_error(r.st));
	/* Listening on an address no netif has. */
	conduit_listener *l = NULL;
	ck_status(conduit_listen(&l, r.ctx, "tcp://10.0.0.77:80"),
	          CONDUIT_ERR_ADDR_UNAVAILABLE);
	rig_down(&r);
}
END_TEST

/*
 * How a peer is shown: an accepted flow's URI and the connected and
 * accepted events' details ("ADDR:PORT", IPv6 in brackets), and the
 * address in a failed connect's message.  Three-digit octets, ports of
 * one to five digits and IPv6 on netifs of their own, as RFC 5952 text
 * (lower case, the longest run of zeros shortened) as on host TCP,
 * although lwIP's own formatter writes upper case and shortens the
 * first run.
 */
static bool port_text(const char *p)
{
	size_t n = strspn(p, "0123456789");
	if (n == 0 || n > 5 || p[n] != '\0' || (p[0] == '0'))
		return false;
	return atol(p) <= 65535;
}

/* The detail of the first event of phase p about flow f, or NULL. */
static const char *event_detail(const struct fk_events *log,
                                enum conduit_phase p, const conduit_flow *f)
{
	for (int i = 0; i < log->n; i++)
		if (log->phase[i] == p && log->flow[i] == f)
			return log->detail[i];
	return NULL;
}

START_TEST(peer_text_in_uris_and_events)
{
	static const struct conduit_lwip_netif_config ca = {
	    .ipv4 = "192.168.100.254/24", .ipv6 = "fd00:0:0:1::fe"};
	static const struct conduit_lwip_netif_config cb = {
	    .ipv4 = "192.168.100.7/24", .ipv6 = "fd00:0:0:1::7"};
	static const struct {
		const char *listen, *server, *client;
	} cases[] = {
	    {"tcp://192.168.100.7:65535", "192.168.100.7:65535",
	     "192.168.100.254:"},
	    {"tcp://192.168.100.7:7", "192.168.100.7:7", "192.168.100.254:"},
	    {"tcp://192.168.100.7:80", "192.168.100.7:80", "192.168.100.254:"},
	    {"tcp://[fd00:0:0:1::7]:1000", "[fd00:0:0:1::7]:1000",
	     "[fd00:0:0:1::fe]:"},
	};
	struct rig r;
	memset(&r, 0, sizeof(r));
	ck_status(conduit_lwip_stack(&r.st), CONDUIT_OK);
	ck_status(
	    conduit_lwip_netif_wire_pair(&r.a, &r.b, r.st, &ca, &cb, NULL),
	    CONDUIT_OK);
	r.ctx = fk_new_ctx();
	ck_status(conduit_ctx_use_lwip(r.ctx, r.st), CONDUIT_OK);
	static struct fk_events log;
	conduit_ctx_set_observer(r.ctx, fk_record, &log);

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		conduit_listener *l = fk_listen(r.ctx, cases[i].listen);
		memset(&log, 0, sizeof(log));
		conduit_flow *c, *s;
		pair(r.ctx, l, NULL, &c, &s);
		/* The accepted flow is named by its peer, the client. */
		const char *su = conduit_flow_uri(s);
		size_t k = strlen(cases[i].client);
		ck_assert_msg(strncmp(su, "tcp://", 6) == 0 &&
		                  strncmp(su + 6, cases[i].client, k) == 0 &&
		                  port_text(su + 6 + k),
		              "%s: accepted flow %s", cases[i].listen, su);
		const char *d = event_detail(&log, CONDUIT_PHASE_CONNECTED, c);
		ck_assert_msg(d != NULL && strcmp(d, cases[i].server) == 0,
		              "%s: connected to %s", cases[i].listen,
		              d != NULL ? d : "(no event)");
		/* One accepted event for the flow, naming it by its URI. */
		int found = 0;
		for (int e = 0; e < log.n; e++)
			if (log.phase[e] == CONDUIT_PHASE_ACCEPTED) {
				ck_assert_ptr_eq(log.flow[e], s);
				ck_assert_str_eq(log.detail[e], su);
				found++;
			}
		ck_assert_msg(found == 1, "%s: %d accepted events for %s",
		              cases[i].listen, found, su);
		fk_exchange(c, s);
		close_pair(r.ctx, c, s);
		conduit_listener_free(l);
	}
	conduit_ctx_set_observer(r.ctx, NULL, NULL);

	/* A refused connect names the address it tried. */
	conduit_flow *f = NULL;
	ck_status(conduit_connect_wait(&f, r.ctx, "tcp://192.168.100.7:9",
	                               cd_scaled(5000)),
	          CONDUIT_ERR_REFUSED);
	ck_assert_str_eq(conduit_ctx_error(r.ctx),
	                 "connect tcp://192.168.100.7:9: 192.168.100.7:9: "
	                 "connection refused");
	ck_status(conduit_connect_wait(&f, r.ctx, "tcp://[fd00:0:0:1::7]:65535",
	                               cd_scaled(5000)),
	          CONDUIT_ERR_REFUSED);
	ck_assert_str_eq(conduit_ctx_error(r.ctx),
	                 "connect tcp://[fd00:0:0:1::7]:65535: "
	                 "[fd00:0:0:1::7]:65535: connection refused");
	/* And one no netif leads to, refused before anything is sent. */
	ck_status(conduit_connect(&f, r.ctx, "tcp://10.200.30.4:443"),
	          CONDUIT_ERR_UNREACHABLE);
	ck_assert_ptr_null(f);
	ck_assert_str_eq(conduit_ctx_error(r.ctx),
	                 "connect tcp://10.200.30.4:443: 10.200.30.4:443: no "
	                 "lwIP netif leads there");
	rig_down(&r);
}
END_TEST

/*
 * A flow whose connection ended in both directions keeps working (end of
 * stream, no error) while lwIP's TIME-WAIT holds the pcb, and lets go of
 * the pcb by itself: lwIP frees such a pcb without telling anyone.
 */
static void read_to_eof(conduit_ctx *ctx, conduit_flow *f)
{
	uint64_t end = cd_now_ms() + (uint64_t)cd_scaled(5000);
	for (;;) {
		ck_assert_msg(cd_now_ms() < end, "no end of stream on %s",
		              conduit_flow_uri(f));
		char b[16];
		size_t n = 0;
		int rc = conduit_read(f, b, sizeof(b), &n);
		if (rc == CONDUIT_EOF)
			return;
		ck_assert_msg(rc == CONDUIT_WANT_READ, "read %s: %s",
		              conduit_flow_uri(f), conduit_flow_error(f));
		struct conduit_pollitem it = {.flow = f,
		                              .events = CONDUIT_POLLIN};
		ck_status(conduit_poll(ctx, &it, 1, 100, &n), CONDUIT_OK);
	}
	ck_abort_msg("no end of stream on %s", conduit_flow_uri(f));
}

START_TEST(time_wait_lets_go_of_pcb)
{
	struct rig r;
	rig_up(&r, NULL);
	conduit_listener *l = fk_listen(r.ctx, "tcp://10.0.0.2:0");
	conduit_flow *c, *s;
	pair(r.ctx, l, NULL, &c, &s);
	conduit_listener_free(l);
	/* The client ends first, so its side is the one in TIME-WAIT. */
	ck_status(conduit_shutdown(c, CONDUIT_SHUT_WR), CONDUIT_OK);
	read_to_eof(r.ctx, s);
	ck_status(conduit_shutdown(s, CONDUIT_SHUT_WR), CONDUIT_OK);
	read_to_eof(r.ctx, c);
	struct conduit_lwip_stats st;
	uint64_t end = cd_now_ms() + (uint64_t)cd_scaled(5000);
	for (;;) {
		conduit_lwip_stats(r.st, &st);
		if (st.pcbs == 0)
			break;
		ck_assert_msg(cd_now_ms() < end,
		              "flows still hold %zu pcbs (TIME-WAIT %zu)",
		              st.pcbs, st.lwip_time_wait);
		size_t n = 0;
		ck_status(conduit_poll(r.ctx, NULL, 0, 10, &n), CONDUIT_OK);
	}
	ck_assert_uint_eq(st.flows, 2);
	ck_assert_uint_eq(st.lwip_time_wait, 1);
	/* Still a clean end of stream on both, not a failure. */
	char b;
	size_t n = 0;
	ck_status(conduit_read(c, &b, 1, &n), CONDUIT_EOF);
	ck_status(conduit_read(s, &b, 1, &n), CONDUIT_EOF);
	close_pair(r.ctx, c, s);
	rig_down(&r);
}
END_TEST

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct cd_test tests[] = {
	    CD_TEST(wire_echo_small, 0),
	    CD_TEST(wire_bulk_64mib_ipv4, 120),
	    CD_TEST(wire_bulk_ipv6, 60),
	    CD_TEST(backpressure_no_loss, 30),
	    CD_TEST(many_connections, 30),
	    CD_TEST(connect_refused, 0),
	    CD_TEST(connect_timeout, 0),
	    CD_TEST(reset_after_connected, 0),
	    CD_TEST(lossy_reordering_wire, 120),
	    CD_TEST(dropped_syn_waits_without_spinning, 60),
	    CD_TEST(full_size_frames, 60),
	    CD_TEST(runt_frames, 0),
	    CD_TEST(two_processes_64mib, 150),
	    CD_TEST(two_processes_ipv6, 60),
	    CD_TEST(tap_kernel_tcp, 120),
	    CD_TEST(one_context_at_a_time, 0),
	    CD_TEST(segments_after_close_ipv4, 60),
	    CD_TEST(segments_after_close_ipv6, 60),
	    CD_TEST(any_listener_synack_from_timer, 90),
	    CD_TEST(loopback_destinations_refused, 30),
	    CD_TEST(listen_refuses_connect_to, 0),
	    CD_TEST(peer_text_in_uris_and_events, 30),
	    CD_TEST(time_wait_lets_go_of_pcb, 30),
	};
	return cd_run(
	    cd_suite("lwip", tests, sizeof(tests) / sizeof(tests[0])));
}
