/*
 * flowkit.c - the conduit helpers the Check suites share (see flowkit.h),
 * kept in one place so that the unix, tcp and poll suites set up
 * connections, check streams, serve echoes and clean up the same way.
 * The stream helpers (fk_pump_echo(), fk_echo_blocking()), fk_is_want()
 * and fk_free_all() run in forked peers as well: they never call
 * ck_assert, and the stream helpers return 0 or the number of the step
 * that failed.  Everything else is for the test process and fails the
 * test on the spot.
 */
#include "flowkit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

bool fk_is_want(int rc)
{
	return rc == CONDUIT_WANT_READ || rc == CONDUIT_WANT_WRITE;
}

conduit_ctx *fk_new_ctx(void)
{
	conduit_ctx *ctx = NULL;
	ck_status(conduit_ctx_new(&ctx), CONDUIT_OK);
	return ctx;
}

conduit_listener *fk_listen(conduit_ctx *ctx, const char *uri)
{
	conduit_listener *l = NULL;
	int rc = conduit_listen(&l, ctx, uri);
	ck_assert_msg(rc == CONDUIT_OK, "listen %s: %s (%s)", uri,
	              conduit_status_name(rc), conduit_ctx_error(ctx));
	return l;
}

conduit_listener *fk_unix_listener(conduit_ctx *ctx, char *dir, size_t len)
{
	char uri[512];
	cd_tmpdir(dir, len);
	snprintf(uri, sizeof(uri), "unix://%s/poll.sock", dir);
	return fk_listen(ctx, uri);
}

int fk_listener_port(const conduit_listener *l)
{
	conduit_endpoint *ep = NULL;
	char err[256] = "";
	int rc = conduit_endpoint_parse(&ep, conduit_listener_uri(l), err,
	                                sizeof(err));
	ck_assert_msg(rc == CONDUIT_OK, "listener URI %s does not parse: %s",
	              conduit_listener_uri(l), err);
	int port = conduit_endpoint_port(ep);
	conduit_endpoint_free(ep);
	ck_assert_int_gt(port, 0);
	ck_assert_int_le(port, 65535);
	return port;
}

void fk_pair(conduit_ctx *ctx, conduit_listener *l, const char *uri,
             conduit_flow **client, conduit_flow **server)
{
	if (uri == NULL)
		uri = conduit_listener_uri(l);
	int rc = conduit_connect_wait(client, ctx, uri, cd_scaled(5000));
	ck_assert_msg(rc == CONDUIT_OK, "connect %s: %s (%s)", uri,
	              conduit_status_name(rc), conduit_ctx_error(ctx));
	ck_status(conduit_accept_wait(server, l, cd_scaled(5000)), CONDUIT_OK);
}

void fk_exchange(conduit_flow *c, conduit_flow *s)
{
	char b = 0;
	size_t n = 0;
	ck_status(conduit_write_all(c, "t", 1, NULL, cd_scaled(2000)),
	          CONDUIT_OK);
	ck_status(conduit_read_wait(s, &b, 1, &n, cd_scaled(2000)), CONDUIT_OK);
	ck_assert_int_eq(b, 't');
	ck_status(conduit_write_all(s, "u", 1, NULL, cd_scaled(2000)),
	          CONDUIT_OK);
	ck_status(conduit_read_wait(c, &b, 1, &n, cd_scaled(2000)), CONDUIT_OK);
	ck_assert_int_eq(b, 'u');
}

void fk_free_all(conduit_flow *c, conduit_flow *s, conduit_listener *l,
                 conduit_ctx *ctx)
{
	if (c != NULL)
		conduit_flow_free(c);
	if (s != NULL)
		conduit_flow_free(s);
	if (l != NULL)
		conduit_listener_free(l);
	if (ctx != NULL)
		conduit_ctx_free(ctx);
}

/* Handshakes, with a wait for writable after each one that still wants to
 * wait, for at most FK_HANDSHAKE_MS (scaled). */
int fk_drive_handshake(conduit_ctx *ctx, conduit_flow *f, int poll_ms)
{
	int rc = CONDUIT_WANT_WRITE;
	uint64_t end = cd_now_ms() + (uint64_t)cd_scaled(FK_HANDSHAKE_MS);
	while (cd_now_ms() < end) {
		rc = conduit_handshake(f);
		if (!fk_is_want(rc))
			break;
		struct conduit_pollitem it = {.flow = f,
		                              .events = CONDUIT_POLLOUT};
		size_t nready;
		ck_status(conduit_poll(ctx, &it, 1, poll_ms, &nready),
		          CONDUIT_OK);
	}
	return rc;
}

/*
 * Steps: 1 out of time, 2 conduit_poll() failed, 3 the shutdown
 * after the last byte failed, 4 a write failed, 5 more came back than was
 * sent, 6 a byte came back wrong, 7 a read failed, 8 end of stream before
 * everything was sent and echoed.
 */
int fk_pump_echo(conduit_ctx *ctx, conduit_flow *f, uint32_t seed,
                 uint64_t total, int timeout_ms)
{
	static uint8_t out[FK_CHUNK], in[FK_CHUNK];
	uint64_t sent = 0, got = 0;
	size_t outlen = 0, outoff = 0;
	uint64_t deadline = cd_now_ms() + (uint64_t)timeout_ms;
	bool eof = false;
	while (!eof) {
		if (cd_now_ms() > deadline)
			return 1;
		struct conduit_pollitem it = {
		    .flow = f,
		    .events =
		        CONDUIT_POLLIN | (sent < total ? CONDUIT_POLLOUT : 0u)};
		size_t nready = 0;
		if (conduit_poll(ctx, &it, 1, 1000, &nready) != CONDUIT_OK)
			return 2;
		if (it.revents & CONDUIT_POLLOUT) {
			if (outoff == outlen) {
				uint64_t left = total - sent;
				outlen =
				    left < FK_CHUNK ? (size_t)left : FK_CHUNK;
				cd_pattern(seed, sent, out, outlen);
				outoff = 0;
			}
			size_t n = 0;
			int rc =
			    conduit_write(f, out + outoff, outlen - outoff, &n);
			if (rc == CONDUIT_OK) {
				outoff += n;
				sent += n;
				if (sent == total &&
				    conduit_shutdown(f, CONDUIT_SHUT_WR) !=
				        CONDUIT_OK)
					return 3;
			} else if (!fk_is_want(rc)) {
				return 4;
			}
		}
		if (it.revents & CONDUIT_POLLIN) {
			size_t n = 0;
			int rc = conduit_read(f, in, sizeof(in), &n);
			if (rc == CONDUIT_OK) {
				if (n > total - got)
					return 5;
				if (cd_pattern_check(seed, got, in, n) != n)
					return 6;
				got += n;
			} else if (rc == CONDUIT_EOF) {
				eof = true;
			} else if (!fk_is_want(rc)) {
				return 7;
			}
		}
	}
	return got == total && sent == total ? 0 : 8;
}

/* The flow's own counters must agree with what was pumped through it. */
void fk_echo_client(conduit_ctx *ctx, const char *uri, uint32_t seed,
                    uint64_t total, int timeout_ms)
{
	conduit_flow *f = NULL;
	ck_status(conduit_connect(&f, ctx, uri), CONDUIT_OK);
	int r = fk_pump_echo(ctx, f, seed, total, timeout_ms);
	ck_assert_msg(r == 0, "echo of %llu bytes to %s failed at step %d: %s",
	              (unsigned long long)total, uri, r, conduit_flow_error(f));
	struct conduit_flow_stats st;
	conduit_flow_stats(f, &st);
	ck_assert_uint_eq(st.bytes_written, total);
	ck_assert_uint_eq(st.bytes_read, total);
	conduit_flow_free(f);
}

/* Steps: 20 out of time, 21 a read failed, 22 a write failed,
 * 23 the close failed. */
int fk_echo_blocking(conduit_flow *f, int timeout_ms)
{
	static uint8_t buf[FK_CHUNK];
	uint64_t deadline = cd_now_ms() + (uint64_t)timeout_ms;
	for (;;) {
		if (cd_now_ms() > deadline)
			return 20;
		size_t n = 0;
		int rc = conduit_read_wait(f, buf, sizeof(buf), &n, timeout_ms);
		if (rc == CONDUIT_EOF)
			break;
		if (rc != CONDUIT_OK)
			return 21;
		if (conduit_write_all(f, buf, n, NULL, timeout_ms) !=
		    CONDUIT_OK)
			return 22;
	}
	return conduit_close_wait(f, timeout_ms) == CONDUIT_OK ? 0 : 23;
}

/* The peer exits 0, 50 if no connection came within accept_ms, or
 * fk_echo_blocking()'s step. */
pid_t fk_spawn_echo_server(conduit_listener *l, int accept_ms, int echo_ms)
{
	pid_t pid = cd_fork_peer();
	if (pid != 0)
		return pid;
	conduit_flow *f = NULL;
	if (conduit_accept_wait(&f, l, accept_ms) != CONDUIT_OK)
		_exit(50);
	int r = fk_echo_blocking(f, echo_ms);
	conduit_flow_free(f);
	/* The listener is not freed: for a unix socket that would remove
	 * the parent's socket file. */
	_exit(r);
}

int fk_silent_listen(struct fk_silent *s, const char *ipv4, int port)
{
	struct sockaddr_in sin;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	ck_assert_int_eq(inet_pton(AF_INET, ipv4, &sin.sin_addr), 1);
	s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(s->lfd, 0);
	ck_assert_msg(bind(s->lfd, (struct sockaddr *)&sin, sizeof(sin)) == 0,
	              "bind %s:%d: %s", ipv4, port, strerror(errno));
	ck_assert_int_eq(listen(s->lfd, 1), 0);
	socklen_t len = sizeof(sin);
	ck_assert_int_eq(getsockname(s->lfd, (struct sockaddr *)&sin, &len), 0);
	s->port = ntohs(sin.sin_port);
	s->nclients = 0;
	/* Fill the queue with connections nobody accepts, until a SYN goes
	 * unanswered. */
	for (int i = 0; i < 32; i++) {
		int fd = socket(AF_INET,
		                SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		ck_assert_int_ge(fd, 0);
		s->clients[s->nclients++] = fd;
		int r = connect(fd, (struct sockaddr *)&sin, sizeof(sin));
		ck_assert(r == 0 || errno == EINPROGRESS);
		struct pollfd p = {.fd = fd, .events = POLLOUT};
		if (r != 0 && poll(&p, 1, 200) == 0)
			return s->port;
	}
	ck_abort_msg("32 connections did not fill a listen queue of 1");
	return -1;
}

void fk_silent_free(struct fk_silent *s)
{
	for (int i = 0; i < s->nclients; i++)
		close(s->clients[i]);
	close(s->lfd);
}

void fk_record(void *arg, const struct conduit_event *ev)
{
	struct fk_events *log = arg;
	if (log->n >= 32)
		return;
	log->phase[log->n] = ev->phase;
	log->status[log->n] = ev->status;
	snprintf(log->detail[log->n], sizeof(log->detail[0]), "%s", ev->detail);
	log->flow[log->n] = ev->flow;
	log->n++;
}

int fk_count_phase(const struct fk_events *log, enum conduit_phase p)
{
	int n = 0;
	for (int i = 0; i < log->n; i++)
		if (log->phase[i] == p)
			n++;
	return n;
}

struct conduit_addr fk_addr(const char *text)
{
	struct conduit_addr a;
	memset(&a, 0, sizeof(a));
	if (inet_pton(AF_INET, text, a.bytes) == 1) {
		a.family = CONDUIT_AF_INET;
	} else {
		ck_assert_msg(inet_pton(AF_INET6, text, a.bytes) == 1,
		              "not an IP address: %s", text);
		a.family = CONDUIT_AF_INET6;
	}
	return a;
}
