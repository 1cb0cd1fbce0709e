/*
 * scale_flows.c - 10,000 concurrent flows held by one echo server (see
 * scale.c).
 */
#include "scale.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

/* Concurrency: the echo server                                        */

/* Flow i's message: its index in the first four bytes, so no two are
 * alike, then bytes that depend on both index and position. */
static unsigned char msg_byte(size_t flow, size_t k)
{
	if (k < 4)
		return (unsigned char)(flow >> (8 * k));
	uint64_t x = (uint64_t)flow * 0x9e3779b97f4a7c15u +
	             (uint64_t)k * 0xbf58476d1ce4e5b9u;
	x ^= x >> 31;
	x *= 0x94d049bb133111ebu;
	x ^= x >> 29;
	return (unsigned char)x;
}

/* What the server tells the client process when it is done. */
struct srv_report {
	int ok;
	int port;                   /* first message: the tcp port (unix: 0) */
	char msg[400];              /* why it failed */
	long long heap0, heap_full; /* before the first flow, all open */
	long long rss0, rss_full;
	unsigned long long accepted, written;
};

/* One flow of the server: what it still has to send back. */
struct sconn {
	conduit_flow *flow;
	int fd;
	uint16_t len, off;
	unsigned char buf[2 * MSG_LEN];
};

struct server {
	enum api api;
	size_t n;
	uint64_t deadline;
	conduit_ctx *ctx;
	conduit_listener *l;
	int lfd;
	struct sconn *c;
	struct conduit_pollitem *items; /* conduit: [0] listener, k+1 c[k] */
	struct pollfd *pfds;            /* raw: the same layout */
	size_t live;
	unsigned long long accepted, written, closed;
	struct srv_report rep;
};

__attribute__((format(printf, 2, 3))) static int srv_fail(struct server *sv,
                                                          const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(sv->rep.msg, sizeof(sv->rep.msg), fmt, ap);
	va_end(ap);
	return -1;
}

/* Send what c holds; 1 all sent, 0 would block, -1 failed. */
static int srv_flush(struct server *sv, struct sconn *c, size_t k)
{
	while (c->off < c->len) {
		size_t n = 0;
		if (sv->api == API_CONDUIT) {
			int rc = conduit_write(c->flow, c->buf + c->off,
			                       (size_t)(c->len - c->off), &n);
			if (rc == CONDUIT_WANT_WRITE || rc == CONDUIT_WANT_READ)
				return 0;
			if (rc != CONDUIT_OK)
				return srv_fail(
				    sv, "write on flow %zu: %s", k,
				    bench_cerr(conduit_flow_error(c->flow),
				               rc));
		} else {
			ssize_t r =
			    send(c->fd, c->buf + c->off,
			         (size_t)(c->len - c->off), MSG_NOSIGNAL);
			if (r < 0 && (errno == EAGAIN || errno == EINTR))
				return 0;
			if (r < 0)
				return srv_fail(sv, "send on flow %zu: %s", k,
				                strerror(errno));
			n = (size_t)r;
		}
		c->off = (uint16_t)(c->off + n);
		sv->written += n;
	}
	c->off = c->len = 0;
	return 1;
}

/* Forget flow k: the last one takes its place. */
static void srv_drop(struct server *sv, size_t k)
{
	struct sconn *c = &sv->c[k];
	if (sv->api == API_CONDUIT) {
		conduit_close(c->flow);
		conduit_flow_free(c->flow);
	} else {
		close(c->fd);
	}
	sv->live--;
	sv->c[k] = sv->c[sv->live];
	if (sv->api == API_CONDUIT)
		sv->items[k + 1] = sv->items[sv->live + 1];
	else
		sv->pfds[k + 1] = sv->pfds[sv->live + 1];
	sv->closed++;
}

/* Echo on flow k: send what is held, then read more and send it back.
 * 0 on, -1 failed; the flow may have been dropped (end of stream). */
static int srv_serve(struct server *sv, size_t k)
{
	struct sconn *c = &sv->c[k];
	for (int turn = 0; turn < 4; turn++) {
		int r = srv_flush(sv, c, k);
		if (r <= 0)
			return r;
		size_t n = 0;
		if (sv->api == API_CONDUIT) {
			int rc =
			    conduit_read(c->flow, c->buf, sizeof(c->buf), &n);
			if (rc == CONDUIT_WANT_READ || rc == CONDUIT_WANT_WRITE)
				return 0;
			if (rc == CONDUIT_EOF) {
				srv_drop(sv, k);
				return 0;
			}
			if (rc != CONDUIT_OK)
				return srv_fail(
				    sv, "read on flow %zu: %s", k,
				    bench_cerr(conduit_flow_error(c->flow),
				               rc));
		} else {
			ssize_t m = recv(c->fd, c->buf, sizeof(c->buf), 0);
			if (m < 0 && (errno == EAGAIN || errno == EINTR))
				return 0;
			if (m == 0) {
				srv_drop(sv, k);
				return 0;
			}
			if (m < 0)
				return srv_fail(sv, "recv on flow %zu: %s", k,
				                strerror(errno));
			n = (size_t)m;
		}
		c->len = (uint16_t)n;
		c->off = 0;
	}
	return 0;
}

/* Accept what is waiting (a burst at most); each new flow is greeted. */
static int srv_accept(struct server *sv)
{
	for (int i = 0; i < ACCEPT_BURST && sv->accepted < sv->n; i++) {
		struct sconn *c = &sv->c[sv->live];
		memset(c, 0, sizeof(*c));
		c->fd = -1;
		if (sv->api == API_CONDUIT) {
			int rc = conduit_accept(&c->flow, sv->l);
			if (rc == CONDUIT_WANT_READ || rc == CONDUIT_WANT_WRITE)
				return 0;
			if (rc != CONDUIT_OK)
				return srv_fail(
				    sv, "accept: %s",
				    bench_cerr(conduit_listener_error(sv->l),
				               rc));
			sv->items[sv->live + 1] = (struct conduit_pollitem){
			    .flow = c->flow, .events = CONDUIT_POLLIN};
		} else {
			int fd = accept4(sv->lfd, NULL, NULL,
			                 SOCK_CLOEXEC | SOCK_NONBLOCK);
			if (fd < 0 && (errno == EAGAIN || errno == EINTR ||
			               errno == ECONNABORTED))
				return 0;
			if (fd < 0)
				return srv_fail(sv, "accept: %s",
				                strerror(errno));
			/* conduit's tcp backend sets this on accepted flows. */
			int one = 1;
			if (sv->rep.port != 0)
				setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one,
				           sizeof(one));
			c->fd = fd;
			sv->pfds[sv->live + 1] =
			    (struct pollfd){.fd = fd, .events = POLLIN};
		}
		sv->live++;
		sv->accepted++;
		c->buf[0] = GREETING;
		c->len = 1;
		if (srv_flush(sv, c, sv->live - 1) < 0)
			return -1;
	}
	return 0;
}

/* One wait and what it woke; 0 on, -1 failed. */
static int srv_turn(struct server *sv)
{
	size_t live = sv->live;
	bool want_accept = sv->accepted < sv->n;
	int ms = left_ms(sv->deadline, 1000);
	if (sv->api == API_CONDUIT) {
		sv->items[0].events = want_accept ? CONDUIT_POLLIN : 0;
		for (size_t k = 0; k < live; k++)
			sv->items[k + 1].events = sv->c[k].off < sv->c[k].len
			                              ? CONDUIT_POLLOUT
			                              : CONDUIT_POLLIN;
		size_t nready = 0;
		int rc =
		    conduit_poll(sv->ctx, sv->items, live + 1, ms, &nready);
		if (rc != CONDUIT_OK)
			return srv_fail(
			    sv, "conduit_poll: %s",
			    bench_cerr(conduit_ctx_error(sv->ctx), rc));
		/* Backwards: a dropped flow takes the last one's place, which
		 * has been served already. */
		for (size_t k = live; k-- > 0;)
			if (sv->items[k + 1].revents != 0 &&
			    srv_serve(sv, k) < 0)
				return -1;
		if (want_accept && sv->items[0].revents != 0)
			return srv_accept(sv);
		return 0;
	}
	sv->pfds[0].events = want_accept ? POLLIN : 0;
	for (size_t k = 0; k < live; k++)
		sv->pfds[k + 1].events =
		    sv->c[k].off < sv->c[k].len ? POLLOUT : POLLIN;
	int r = poll(sv->pfds, live + 1, ms);
	if (r < 0 && errno != EINTR)
		return srv_fail(sv, "poll: %s", strerror(errno));
	if (r <= 0)
		return 0;
	for (size_t k = live; k-- > 0;)
		if (sv->pfds[k + 1].revents != 0 && srv_serve(sv, k) < 0)
			return -1;
	if (want_accept && sv->pfds[0].revents != 0)
		return srv_accept(sv);
	return 0;
}

/* The server process: listen, send the port, serve until every one of
 * the n flows has come and gone, send the report. */
static int server_main(enum api api, struct addr *a, size_t n,
                       uint64_t deadline, int rep)
{
	struct server sv = {
	    .api = api, .n = n, .deadline = deadline, .lfd = -1};
	int st = -1;
	sv.c = calloc(n, sizeof(*sv.c));
	if (api == API_CONDUIT)
		sv.items = calloc(n + 1, sizeof(*sv.items));
	else
		sv.pfds = calloc(n + 1, sizeof(*sv.pfds));
	if (sv.c == NULL || (sv.items == NULL && sv.pfds == NULL)) {
		srv_fail(&sv, "out of memory for %zu flows", n);
		goto out;
	}
	/* Touch the server's own tables now, so that what grows later is
	 * what serving the flows costs. */
	memset(sv.c, 0xff, n * sizeof(*sv.c));
	if (api == API_CONDUIT) {
		if (conduit_ctx_new(&sv.ctx) != CONDUIT_OK) {
			srv_fail(&sv, "conduit_ctx_new failed");
			goto out;
		}
		int rc = conduit_listen(&sv.l, sv.ctx, a->uri);
		if (rc != CONDUIT_OK) {
			srv_fail(&sv, "listen %s: %s", a->uri,
			         bench_cerr(conduit_ctx_error(sv.ctx), rc));
			goto out;
		}
		memset(sv.items, 0, (n + 1) * sizeof(*sv.items));
		sv.items[0].listener = sv.l;
		if (a->tr == TR_TCP)
			sv.rep.port = uri_port(conduit_listener_uri(sv.l));
	} else {
		sv.lfd = raw_listen(a);
		if (sv.lfd < 0) {
			srv_fail(&sv, "listen %s failed", a->uri);
			goto out;
		}
		memset(sv.pfds, 0, (n + 1) * sizeof(*sv.pfds));
		sv.pfds[0].fd = sv.lfd;
		if (a->tr == TR_TCP)
			sv.rep.port =
			    ntohs(((struct sockaddr_in *)&a->sa)->sin_port);
	}
#ifdef HAVE_MALLINFO2
	/* The heap inherited from the parent has free pages that are still
	 * resident: hand them back, or flows would fill them without the
	 * RSS growing. */
	malloc_trim(0);
#endif
	sv.rep.heap0 = heap_used();
	sv.rep.rss0 = rss_bytes();
	sv.rep.ok = 1;
	if (write(rep, &sv.rep, sizeof(sv.rep)) != (ssize_t)sizeof(sv.rep))
		goto out;
	sv.rep.ok = 0;
	bool measured = false;
	unsigned long long full = (unsigned long long)n * (1 + MSG_LEN);
	for (unsigned long turns = 0; sv.closed < n; turns++) {
		if (tool_now_ms() >= deadline || turns > 100000000ul) {
			srv_fail(
			    &sv,
			    "server timed out: %llu of %zu flows accepted, "
			    "%llu closed, %llu of %llu bytes sent",
			    sv.accepted, n, sv.closed, sv.written, full);
			goto out;
		}
		if (srv_turn(&sv) < 0)
			goto out;
		/* Every flow open and every echo sent: the server at its
		 * fullest. */
		if (!measured && sv.accepted == n && sv.written == full) {
			sv.rep.heap_full = heap_used();
			sv.rep.rss_full = rss_bytes();
			measured = true;
		}
	}
	if (!measured) {
		srv_fail(&sv,
		         "flows ended before every echo was sent: %llu of "
		         "%llu bytes",
		         sv.written, full);
		goto out;
	}
	sv.rep.ok = 1;
	st = 0;
out:
	sv.rep.accepted = sv.accepted;
	sv.rep.written = sv.written;
	for (size_t k = 0; k < sv.live; k++) {
		if (api == API_CONDUIT)
			conduit_flow_free(sv.c[k].flow);
		else
			close(sv.c[k].fd);
	}
	conduit_listener_free(sv.l);
	conduit_ctx_free(sv.ctx);
	if (sv.lfd >= 0)
		close(sv.lfd);
	free(sv.c);
	free(sv.items);
	free(sv.pfds);
	if (write(rep, &sv.rep, sizeof(sv.rep)) != (ssize_t)sizeof(sv.rep))
		st = -1;
	return st;
}

/* ------------------------------------------------------------------ */
/* Concurrency: the clients                                            */

enum cstate { C_CONNECTING, C_GREETING, C_SENDING, C_ECHO, C_DONE };

struct cconn {
	int fd;
	uint8_t state;
	uint8_t sent, got;
};

struct scale_result {
	double setup_ms, round_ms;
	double rss_per_flow, heap_per_flow;
};

static int client_setup(struct cconn *cc, size_t n, const struct addr *a,
                        uint64_t deadline)
{
	size_t act[MAX_OUTSTANDING];
	struct pollfd pf[MAX_OUTSTANDING];
	size_t nact = 0, next = 0, up = 0;
	for (unsigned long turn = 0; up < n; turn++) {
		if (tool_now_ms() >= deadline || turn > 10000000ul)
			return scale_fail(
			    "setting up %s flows timed out: %zu of %zu up, "
			    "%zu connecting or waiting for the greeting",
			    scale_tr_name[a->tr], up, n, nact);
		while (next < n && nact < MAX_OUTSTANDING) {
			int fd = -1;
			int r = raw_connect_start(a, &fd);
			if (r == -EAGAIN)
				break; /* the queue is full: after a wait */
			if (r < 0)
				return scale_fail("connect %s (flow %zu): %s",
				                  a->uri, next, strerror(-r));
			cc[next].fd = fd;
			cc[next].state = r == 0 ? C_GREETING : C_CONNECTING;
			act[nact++] = next++;
		}
		for (size_t j = 0; j < nact; j++) {
			pf[j].fd = cc[act[j]].fd;
			pf[j].events =
			    cc[act[j]].state == C_CONNECTING ? POLLOUT : POLLIN;
			pf[j].revents = 0;
		}
		int r = poll(pf, nact, left_ms(deadline, nact > 0 ? 1000 : 1));
		if (r < 0 && errno != EINTR)
			return scale_fail("poll: %s", strerror(errno));
		for (size_t j = nact; r > 0 && j-- > 0;) {
			if (pf[j].revents == 0)
				continue;
			struct cconn *c = &cc[act[j]];
			if (c->state == C_CONNECTING) {
				int err = 0;
				socklen_t len = sizeof(err);
				if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR,
				               &err, &len) < 0)
					err = errno;
				if (err != 0)
					return scale_fail(
					    "connect %s (flow %zu): %s", a->uri,
					    act[j], strerror(err));
				c->state = C_GREETING;
				continue;
			}
			unsigned char b = 0;
			ssize_t k = recv(c->fd, &b, 1, 0);
			if (k < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (k < 0)
				return scale_fail(
				    "flow %zu, waiting for the greeting: %s",
				    act[j], strerror(errno));
			if (k == 0 || b != GREETING)
				return scale_fail(
				    "flow %zu: %s instead of the greeting",
				    act[j],
				    k == 0 ? "end of stream" : "a wrong byte");
			c->state = C_SENDING;
			up++;
			act[j] = act[--nact];
		}
	}
	return 0;
}

static int client_round(struct cconn *cc, size_t n, uint64_t deadline)
{
	size_t *pend = malloc(n * sizeof(*pend));
	struct pollfd *pf = malloc(n * sizeof(*pf));
	int rc = -1;
	if (pend == NULL || pf == NULL) {
		scale_fail("out of memory for %zu flows", n);
		goto out;
	}
	size_t npend = n, done = 0;
	for (size_t i = 0; i < n; i++)
		pend[i] = i;
	for (unsigned long turn = 0; done < n; turn++) {
		if (tool_now_ms() >= deadline || turn > 10000000ul) {
			size_t sending = 0;
			for (size_t j = 0; j < npend; j++)
				sending += cc[pend[j]].state == C_SENDING;
			scale_fail(
			    "the echo round timed out: %zu of %zu echoes "
			    "complete, %zu still sending, %zu waiting for "
			    "their echo",
			    done, n, sending, npend - sending);
			goto out;
		}
		/* Send, or read what has come; then wait for the rest. */
		for (size_t j = npend; j-- > 0;) {
			size_t i = pend[j];
			struct cconn *c = &cc[i];
			if (turn > 0 && pf[j].revents == 0)
				continue;
			if (c->state == C_SENDING) {
				unsigned char m[MSG_LEN];
				for (size_t k = c->sent; k < MSG_LEN; k++)
					m[k] = msg_byte(i, k);
				ssize_t k =
				    send(c->fd, m + c->sent, MSG_LEN - c->sent,
				         MSG_NOSIGNAL);
				if (k < 0 && errno != EAGAIN &&
				    errno != EINTR) {
					scale_fail("send on flow %zu: %s", i,
					           strerror(errno));
					goto out;
				}
				if (k > 0)
					c->sent = (uint8_t)(c->sent + k);
				if (c->sent == MSG_LEN)
					c->state = C_ECHO;
				continue;
			}
			unsigned char in[MSG_LEN];
			ssize_t k = recv(c->fd, in, MSG_LEN - c->got, 0);
			if (k < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (k <= 0) {
				scale_fail(
				    "flow %zu: %s after %u of %d echoed bytes",
				    i,
				    k == 0 ? "end of stream" : strerror(errno),
				    c->got, MSG_LEN);
				goto out;
			}
			for (ssize_t q = 0; q < k; q++) {
				unsigned char want =
				    msg_byte(i, c->got + (size_t)q);
				if (in[q] != want) {
					scale_fail(
					    "flow %zu: echoed byte %zu is "
					    "0x%02x, "
					    "sent 0x%02x",
					    i, c->got + (size_t)q, in[q], want);
					goto out;
				}
			}
			c->got = (uint8_t)(c->got + k);
			if (c->got == MSG_LEN) {
				c->state = C_DONE;
				done++;
				pend[j] = pend[--npend];
			}
		}
		/* Order no longer matches pf after the swaps: rebuild it. */
		for (size_t j = 0; j < npend; j++) {
			pf[j].fd = cc[pend[j]].fd;
			pf[j].events =
			    cc[pend[j]].state == C_SENDING ? POLLOUT : POLLIN;
			pf[j].revents = 0;
		}
		if (npend == 0)
			break;
		int r = poll(pf, npend, left_ms(deadline, 1000));
		if (r < 0 && errno != EINTR) {
			scale_fail("poll: %s", strerror(errno));
			goto out;
		}
		if (r < 0)
			for (size_t j = 0; j < npend; j++)
				pf[j].revents = 0;
	}
	rc = 0;
out:
	free(pend);
	free(pf);
	return rc;
}

/* One concurrency run: server api over tr with n flows. */
static int scale_run(enum api api, enum tr tr, size_t n,
                     struct scale_result *res)
{
	struct addr a;
	if (make_addr(&a, tr, "scale.sock") < 0)
		return -1;
	uint64_t deadline = tool_now_ms() + SCALE_DEADLINE_MS;
	int rep[2];
	if (pipe2(rep, O_CLOEXEC) < 0)
		return scale_fail("pipe: %s", strerror(errno));
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		close(rep[0]);
		close(rep[1]);
		return scale_fail("fork: %s", strerror(errno));
	}
	if (pid == 0) {
#ifdef __linux__
		prctl(PR_SET_PDEATHSIG, SIGKILL);
#endif
		alarm(SCALE_DEADLINE_MS / 1000 + 30);
		close(rep[0]);
		_exit(server_main(api, &a, n, deadline, rep[1]) == 0 ? 0 : 1);
	}
	close(rep[1]);

	int rc = -1;
	const char *who = api == API_CONDUIT ? "conduit" : "raw";
	struct cconn *cc = calloc(n, sizeof(*cc));
	struct srv_report sr;
	memset(&sr, 0, sizeof(sr));
	if (cc == NULL) {
		scale_fail("out of memory for %zu flows", n);
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		cc[i].fd = -1;
	if (read_full(rep[0], &sr, sizeof(sr), IO_MS) < 0)
		goto out;
	if (!sr.ok) {
		scale_fail("%s %s server: %s", who, scale_tr_name[tr], sr.msg);
		goto out;
	}
	if (tr == TR_TCP)
		set_port(&a, sr.port);

	double t0 = (tool_now_us() / 1e6);
	if (client_setup(cc, n, &a, deadline) < 0)
		goto out;
	double t1 = (tool_now_us() / 1e6);
	if (client_round(cc, n, deadline) < 0)
		goto out;
	double t2 = (tool_now_us() / 1e6);
	res->setup_ms = (t1 - t0) * 1000.0;
	res->round_ms = (t2 - t1) * 1000.0;
	for (size_t i = 0; i < n; i++) {
		close(cc[i].fd);
		cc[i].fd = -1;
	}
	int wait = left_ms(deadline, SCALE_DEADLINE_MS);
	if (read_full(rep[0], &sr, sizeof(sr), wait > 0 ? wait : 1) < 0)
		goto out;
	if (!sr.ok) {
		scale_fail("%s %s server: %s", who, scale_tr_name[tr], sr.msg);
		goto out;
	}
	res->rss_per_flow = sr.rss0 >= 0 && sr.rss_full >= 0
	                        ? (double)(sr.rss_full - sr.rss0) / (double)n
	                        : -1;
	res->heap_per_flow = (double)(sr.heap_full - sr.heap0) / (double)n;
	rc = 0;
out:
	for (size_t i = 0; cc != NULL && i < n; i++)
		if (cc[i].fd >= 0)
			close(cc[i].fd);
	free(cc);
	close(rep[0]);
	if (reap(pid, rc == 0 ? IO_MS : 1000) < 0 && rc == 0)
		rc = scale_fail("the %s %s server failed", who,
		                scale_tr_name[tr]);
	if (tr == TR_UNIX)
		unlink(a.path);
	return rc;
}

int scale_section(const struct bench_settings *s)
{
	size_t n = s->quick ? SCALE_FLOWS_QUICK : SCALE_FLOWS;
	unsigned reps = s->quick ? 1 : (s->repeats < 3 ? s->repeats : 3);
	if (reps == 0)
		reps = 1;
	if (s->quick)
		fprintf(stderr,
		        "conduit-bench: --quick: %d concurrent flows (the full "
		        "run uses %d)\n",
		        SCALE_FLOWS_QUICK, SCALE_FLOWS);
	/* The labels say how many flows, and whether this is the quick run. */
	static const char *const lab_full[4] = {
	    "10,000 flows: set up all (ms)",
	    "10,000 flows: one echo round (ms)",
	    "10,000 flows: server RSS per flow (bytes)",
	    "10,000 flows: server heap per flow (bytes)"};
	static const char *const lab_quick[4] = {
	    "2,000 flows (quick): set up all (ms)",
	    "2,000 flows (quick): one echo round (ms)",
	    "2,000 flows (quick): server RSS per flow (bytes)",
	    "2,000 flows (quick): server heap per flow (bytes)"};
	static const char *const fig[4] = {
	    "concurrent_setup", "concurrent_round", "concurrent_server_rss",
	    "concurrent_server_heap"};
	static const char *const unit[4] = {"ms", "ms", "bytes", "bytes"};
	int rc = 0;
	for (int t = TR_UNIX; t <= TR_TCP && rc == 0; t++) {
		struct bench_figure f[4];
		for (int k = 0; k < 4; k++)
			f[k] = (struct bench_figure){
			    .transport = scale_tr_name[t],
			    .figure = fig[k],
			    .label = s->quick ? lab_quick[k] : lab_full[k],
			    .unit = unit[k],
			    .baseline = "raw poll(2) server",
			    .param_name = "flows",
			    .param = n,
			    .higher_better = false,
			    .decimals = k < 2 ? 1 : 0,
			};
		for (unsigned r = 0; r < reps && rc == 0; r++) {
			for (int k = 0; k < 2; k++) {
				enum api api = (enum api)((k + (int)r) % 2);
				struct scale_result res = {0};
				if (scale_run(api, (enum tr)t, n, &res) < 0) {
					rc = scale_fail(
					    "%zu concurrent %s flows failed", n,
					    scale_tr_name[t]);
					break;
				}
				double v[4] = {res.setup_ms, res.round_ms,
				               res.rss_per_flow,
				               res.heap_per_flow};
				for (int q = 0; q < 4; q++) {
					if (api == API_RAW)
						f[q].base[r] = v[q];
					else
						f[q].conduit[r] = v[q];
				}
			}
		}
		for (int k = 0; k < 4 && rc == 0; k++) {
			f[k].n = reps;
			bench_emit(&f[k]);
		}
	}
	return rc;
}

/* ------------------------------------------------------------------ */
