/*
 * demo_exchange.c - the exchange every leg of `conduit demo` runs: a
 * header, round trips echoed by the server, then a pattern the server
 * checks and acknowledges (see demo.c).
 */
#include "common.h"
#include "demo_int.h"
#ifdef CONDUIT_HAVE_TLS
#include <conduit/tls.h>
#endif

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* The exchange: one client and one server state machine per leg,      */
/* driven by conduit_poll().  Round trips use pattern offsets far past  */
/* the bulk stream's.                                                   */

#define PING_BASE (1ull << 56)

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v = 0;
	for (int i = 0; i < 4; i++)
		v |= (uint32_t)p[i] << (8 * i);
	return v;
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

const char *step_name(enum step s)
{
	switch (s) {
	case ST_ACCEPT:
		return "accept";
	case ST_CONNECT:
		return "connect";
	case ST_HEADER:
		return "header";
	case ST_PING:
	case ST_ECHO:
		return "round trips";
	case ST_BULK:
	case ST_VERIFY:
		return "bulk transfer";
	case ST_ACK:
	case ST_REPLY:
		return "acknowledgement";
	case ST_EOF:
		return "end of stream";
	case ST_CLOSE:
		return "close";
	case ST_DONE:
		return "done";
	case ST_FAILED:
		break;
	}
	return "failed";
}

__attribute__((format(printf, 2, 3))) static int peer_fail(struct peer *p,
                                                           const char *fmt, ...)
{
	if (p->st == ST_FAILED)
		return -1;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(p->why, sizeof(p->why), fmt, ap);
	va_end(ap);
	one_line(p->why);
	p->failed_in = p->st;
	p->st = ST_FAILED;
	return -1;
}

static bool peer_finished(const struct peer *p)
{
	return p->st == ST_DONE || p->st == ST_FAILED;
}

int peer_init(struct peer *p, bool server, uint64_t total)
{
	memset(p, 0, sizeof(*p));
	p->server = server;
	p->st = server ? ST_ACCEPT : ST_CONNECT;
	p->interest = server ? CONDUIT_POLLIN : CONDUIT_POLLOUT;
	p->total = total;
	p->pings = PINGS;
	p->bad_at = NO_OFFSET;
	p->obuf = malloc(CHUNK);
	p->ibuf = malloc(CHUNK);
	p->rtt = calloc(PINGS, sizeof(double));
	if (p->obuf == NULL || p->ibuf == NULL || p->rtt == NULL)
		return peer_fail(p, "out of memory");
	return 0;
}

void peer_free(struct peer *p)
{
	conduit_flow_free(p->f);
	p->f = NULL;
	free(p->obuf);
	free(p->ibuf);
	free(p->rtt);
	p->obuf = p->ibuf = NULL;
	p->rtt = NULL;
}

static bool is_want(int rc)
{
	return rc == CONDUIT_WANT_READ || rc == CONDUIT_WANT_WRITE;
}

/* What a failed operation means: 0 to wait for interest, -1 failed. */
static int io_result(struct peer *p, int rc, unsigned interest)
{
	if (is_want(rc)) {
		p->interest = interest;
		return 0;
	}
	if (rc == CONDUIT_EOF)
		return peer_fail(p, "the %s ended the stream early",
		                 p->server ? "client" : "server");
	const char *msg = conduit_flow_error(p->f);
	return peer_fail(p, "%s", msg[0] != '\0' ? msg : conduit_strerror(rc));
}

static int flush_out(struct peer *p)
{
	while (p->ooff < p->olen) {
		size_t n = 0;
		int rc = conduit_write(p->f, p->obuf + p->ooff,
		                       p->olen - p->ooff, &n);
		if (rc != CONDUIT_OK)
			return rc;
		if (n == 0)
			return CONDUIT_WANT_WRITE;
		p->ooff += n;
		p->ops++;
	}
	p->olen = p->ooff = 0;
	return CONDUIT_OK;
}

/* Read towards want bytes in ibuf: 2 once all have come, else what one
 * operation returns (1 progress, 0 wait, -1 failed).  eof: the failure at
 * end of stream (NULL: io_result's). */
static int read_in(struct peer *p, size_t want, const char *eof)
{
	size_t n = 0;
	int rc = conduit_read(p->f, p->ibuf + p->ilen, want - p->ilen, &n);
	if (rc == CONDUIT_EOF && eof != NULL)
		return peer_fail(p, "%s", eof);
	if (rc != CONDUIT_OK)
		return io_result(p, rc, CONDUIT_POLLIN);
	p->ops++;
	p->ilen += n;
	return p->ilen < want ? 1 : 2;
}

/* Close the flow and free it (socket flows keep their descriptor until
 * freed): CONDUIT_OK, or the close's status to wait on or fail with. */
static int close_flow(struct peer *p)
{
	int rc = conduit_close(p->f);
	if (rc != CONDUIT_OK)
		return rc;
	conduit_flow_free(p->f);
	p->f = NULL;
	p->ops++;
	return CONDUIT_OK;
}

static void next_ping(struct peer *p)
{
	tool_pat_fill(p->obuf, PING_LEN,
	              PING_BASE + (uint64_t)p->ping_i * PING_LEN);
	p->olen = PING_LEN;
	p->ooff = 0;
	p->ilen = 0;
	p->t_ping = tool_now_us();
}

static void tls_note(struct peer *p)
{
#ifdef CONDUIT_HAVE_TLS
	if (!conduit_tls_is_tls(p->f))
		return;
	char subject[160];
	if (conduit_tls_peer_subject(p->f, subject, sizeof(subject)) !=
	    CONDUIT_OK)
		setf(subject, sizeof(subject), "(none)");
	const char *v = conduit_tls_version(p->f);
	const char *c = conduit_tls_cipher(p->f);
	const char *name = conduit_tls_servername(p->f);
	if (name == NULL)
		name = p->checked_name != NULL ? p->checked_name : "?";
	setf(p->tls, sizeof(p->tls),
	     "%s %s; server \"%s\" verified against the demo CA for %s",
	     v != NULL ? v : "?", c != NULL ? c : "?", subject, name);
#else
	(void)p;
#endif
}

/* One operation of the client; 1 progress, 0 wait, -1 failed. */
static int client_once(struct peer *p)
{
	size_t n = 0;
	int rc;
	switch (p->st) {
	case ST_CONNECT:
		rc = conduit_handshake(p->f);
		if (rc != CONDUIT_OK)
			return io_result(p, rc, CONDUIT_POLLOUT);
		p->t_connected = tool_now_us();
		tls_note(p);
		put32(p->obuf, MAGIC_HDR);
		put32(p->obuf + 4, p->pings);
		put64(p->obuf + 8, p->total);
		p->olen = HDR_LEN;
		p->ooff = 0;
		p->st = ST_HEADER;
		p->ops++;
		return 1;
	case ST_HEADER:
		if ((rc = flush_out(p)) != CONDUIT_OK)
			return io_result(p, rc, CONDUIT_POLLOUT);
		p->st = ST_PING;
		next_ping(p);
		return 1;
	case ST_PING:
		if (p->olen > 0) {
			if ((rc = flush_out(p)) != CONDUIT_OK)
				return io_result(p, rc, CONDUIT_POLLOUT);
			return 1;
		}
		if ((rc = read_in(p, PING_LEN, NULL)) != 2)
			return rc;
		p->rtt[p->ping_i] = tool_now_us() - p->t_ping;
		if (tool_pat_check(p->ibuf, PING_LEN,
		                   PING_BASE + (uint64_t)p->ping_i *
		                                   PING_LEN) != UINT64_MAX)
			return peer_fail(p, "round trip %u came back altered",
			                 p->ping_i);
		if (++p->ping_i < p->pings) {
			next_ping(p);
		} else {
			p->st = ST_BULK;
			p->t_bulk0 = tool_now_us();
		}
		return 1;
	case ST_BULK:
		if (p->olen == 0) {
			if (p->moved == p->total) {
				/* End of stream tells the server to answer. */
				rc = conduit_shutdown(p->f, CONDUIT_SHUT_WR);
				if (rc != CONDUIT_OK)
					return io_result(p, rc,
					                 CONDUIT_POLLOUT);
				p->st = ST_ACK;
				p->ilen = 0;
				p->ops++;
				return 1;
			}
			size_t len = p->total - p->moved < CHUNK
			                 ? (size_t)(p->total - p->moved)
			                 : CHUNK;
			tool_pat_fill(p->obuf, len, p->moved);
			p->olen = len;
			p->ooff = 0;
			p->moved += len;
		}
		if ((rc = flush_out(p)) != CONDUIT_OK)
			return io_result(p, rc, CONDUIT_POLLOUT);
		return 1;
	case ST_ACK:
		rc = read_in(p, ACK_LEN,
		             "the server closed without an acknowledgement");
		if (rc != 2)
			return rc;
		p->t_bulk1 = tool_now_us();
		if (get32(p->ibuf) != MAGIC_ACK)
			return peer_fail(p, "the acknowledgement is garbled");
		uint32_t status = get32(p->ibuf + 4);
		uint64_t v = get64(p->ibuf + 8);
		if (status == ACK_MISMATCH)
			return peer_fail(p, "the server found byte %llu wrong",
			                 (unsigned long long)v);
		if (status != ACK_OK || v != p->total)
			return peer_fail(p,
			                 "the server received %llu bytes of "
			                 "%llu",
			                 (unsigned long long)v,
			                 (unsigned long long)p->total);
		p->verified = v;
		p->st = ST_EOF;
		return 1;
	case ST_EOF:
		rc = conduit_read(p->f, p->ibuf, CHUNK, &n);
		if (rc == CONDUIT_OK)
			return peer_fail(p,
			                 "%zu unexpected bytes after the "
			                 "acknowledgement",
			                 n);
		if (rc != CONDUIT_EOF)
			return io_result(p, rc, CONDUIT_POLLIN);
		p->st = ST_CLOSE;
		p->ops++;
		return 1;
	case ST_CLOSE:
		if ((rc = close_flow(p)) != CONDUIT_OK)
			return io_result(p, rc, CONDUIT_POLLOUT);
		p->st = ST_DONE;
		return 1;
	default:
		return 0;
	}
}

/* One operation of the server; 1 progress, 0 wait, -1 failed. */
static int server_once(struct peer *p)
{
	size_t n = 0;
	int rc;
	switch (p->st) {
	case ST_HEADER:
		if ((rc = read_in(p, HDR_LEN, NULL)) != 2)
			return rc;
		if (get32(p->ibuf) != MAGIC_HDR)
			return peer_fail(p, "the client sent a garbled header");
		p->pings = get32(p->ibuf + 4);
		p->total = get64(p->ibuf + 8);
		p->echo_left = (uint64_t)p->pings * PING_LEN;
		p->ilen = 0;
		p->st = ST_ECHO;
		return 1;
	case ST_ECHO:
		if (p->olen > 0) {
			if ((rc = flush_out(p)) != CONDUIT_OK)
				return io_result(p, rc, CONDUIT_POLLOUT);
			return 1;
		}
		if (p->echo_left == 0) {
			p->st = ST_VERIFY;
			return 1;
		}
		/* Never past the round trips: the bulk bytes are checked. */
		rc = conduit_read(
		    p->f, p->obuf,
		    p->echo_left < CHUNK ? (size_t)p->echo_left : CHUNK, &n);
		if (rc != CONDUIT_OK)
			return io_result(p, rc, CONDUIT_POLLIN);
		p->ops++;
		p->olen = n;
		p->ooff = 0;
		p->echo_left -= n;
		return 1;
	case ST_VERIFY:
		rc = conduit_read(p->f, p->ibuf, CHUNK, &n);
		if (rc == CONDUIT_EOF) {
			uint32_t status = ACK_OK;
			uint64_t v = p->moved;
			if (p->bad_at != NO_OFFSET) {
				status = ACK_MISMATCH;
				v = p->bad_at;
			} else if (p->moved != p->total) {
				status = ACK_LENGTH;
			}
			put32(p->obuf, MAGIC_ACK);
			put32(p->obuf + 4, status);
			put64(p->obuf + 8, v);
			p->olen = ACK_LEN;
			p->ooff = 0;
			p->st = ST_REPLY;
			p->ops++;
			return 1;
		}
		if (rc != CONDUIT_OK)
			return io_result(p, rc, CONDUIT_POLLIN);
		p->ops++;
		if (p->bad_at == NO_OFFSET) {
			p->bad_at = tool_pat_check(p->ibuf, n, p->moved);
		}
		p->moved += n;
		return 1;
	case ST_REPLY:
		if ((rc = flush_out(p)) != CONDUIT_OK)
			return io_result(p, rc, CONDUIT_POLLOUT);
		p->st = ST_CLOSE;
		return 1;
	case ST_CLOSE:
		if ((rc = close_flow(p)) != CONDUIT_OK)
			return io_result(p, rc, CONDUIT_POLLOUT);
		if (p->bad_at != NO_OFFSET) {
			p->st = ST_VERIFY;
			return peer_fail(p, "byte %llu of the stream was wrong",
			                 (unsigned long long)p->bad_at);
		}
		if (p->moved != p->total) {
			p->st = ST_VERIFY;
			return peer_fail(p, "received %llu bytes of %llu",
			                 (unsigned long long)p->moved,
			                 (unsigned long long)p->total);
		}
		p->st = ST_DONE;
		return 1;
	default:
		return 0;
	}
}

static void peer_step(struct peer *p)
{
	for (int turn = 0; turn < STEP_TURNS && !peer_finished(p); turn++) {
		int r = p->server ? server_once(p) : client_once(p);
		if (r <= 0)
			break;
	}
	/* A failed side lets go at once, so the other one notices. */
	if (p->st == ST_FAILED && p->f != NULL) {
		conduit_flow_free(p->f);
		p->f = NULL;
	}
}

static bool run_finished(const struct run *r)
{
	return (r->cli == NULL || peer_finished(r->cli)) &&
	       (r->srv == NULL || peer_finished(r->srv));
}

static void run_fail_all(struct run *r, const char *fmt_phase_msg)
{
	struct peer *ps[2] = {r->cli, r->srv};
	for (int i = 0; i < 2; i++)
		if (ps[i] != NULL && !peer_finished(ps[i])) {
			peer_fail(ps[i], "%s", fmt_phase_msg);
			conduit_flow_free(ps[i]->f);
			ps[i]->f = NULL;
		}
}

void run_loop(struct run *r)
{
	uint64_t last = tool_now_ms(), seen = UINT64_MAX;
	for (long turn = 0; turn < MAX_TURNS; turn++) {
		struct peer *s = r->srv;
		if (s != NULL && s->st == ST_ACCEPT) {
			int rc = conduit_accept(&s->f, r->l);
			if (rc == CONDUIT_OK) {
				s->st = ST_HEADER;
				s->interest = CONDUIT_POLLIN;
				s->ops++;
			} else if (!is_want(rc)) {
				peer_fail(s, "%s",
				          conduit_listener_error(r->l));
			}
		}
		if (r->cli != NULL)
			peer_step(r->cli);
		if (s != NULL && s->f != NULL)
			peer_step(s);
		if (run_finished(r))
			return;

		uint64_t ops = (r->cli ? r->cli->ops : 0) + (s ? s->ops : 0);
		uint64_t t = tool_now_ms();
		bool moved = ops != seen;
		if (moved) {
			seen = ops;
			last = t;
		} else if (t - last >= (uint64_t)STALL_MS) {
			char m[120];
			setf(m, sizeof(m), "timed out: nothing moved for %d s",
			     STALL_MS / 1000);
			run_fail_all(r, m);
			return;
		}
		if (stop_sig) {
			run_fail_all(r, "interrupted");
			return;
		}

		struct conduit_pollitem it[3];
		size_t n = 0;
		if (s != NULL && s->st == ST_ACCEPT)
			it[n++] = (struct conduit_pollitem){
			    .listener = r->l, .events = CONDUIT_POLLIN};
		if (s != NULL && s->f != NULL && !peer_finished(s))
			it[n++] = (struct conduit_pollitem){
			    .flow = s->f, .events = s->interest};
		if (r->cli != NULL && r->cli->f != NULL &&
		    !peer_finished(r->cli))
			it[n++] = (struct conduit_pollitem){
			    .flow = r->cli->f, .events = r->cli->interest};
		int left = (int)(STALL_MS - (t - last));
		int tmo = moved ? 0 : (left < 100 ? left : 100);
		size_t ready = 0;
		int rc = conduit_poll(r->ctx, it, n, tmo, &ready);
		if (rc != CONDUIT_OK) {
			char m[400];
			setf(m, sizeof(m), "poll: %s",
			     conduit_ctx_error(r->ctx));
			run_fail_all(r, m);
			return;
		}
	}
	run_fail_all(r, "gave up after too many turns");
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* The client's figures, or the failure (the client's first: it is the
 * one that saw the exchange from the start; the server's adds why). */
void fill_result(struct result *res, struct peer *cli, struct peer *srv)
{
	if (cli->st == ST_DONE && (srv == NULL || srv->st == ST_DONE)) {
		res->out = O_PASS;
		res->bytes = cli->verified;
		res->secs = (cli->t_bulk1 - cli->t_bulk0) / 1e6;
		qsort(cli->rtt, cli->pings, sizeof(double), cmp_double);
		res->rtt_n = (int)cli->pings;
		res->rtt_us = cli->pings > 0 ? cli->rtt[cli->pings / 2] : 0;
		res->setup_ms = (cli->t_connected - cli->t_start) / 1e3;
		setf(res->tls, sizeof(res->tls), "%s", cli->tls);
		return;
	}
	res->out = O_FAIL;
	if (cli->st == ST_FAILED) {
		setf(res->phase, sizeof(res->phase), "client %s",
		     step_name(cli->failed_in));
		if (srv != NULL && srv->st == ST_FAILED)
			setf(res->why, sizeof(res->why),
			     "%s (server, in %s: %s)", cli->why,
			     step_name(srv->failed_in), srv->why);
		else
			setf(res->why, sizeof(res->why), "%s", cli->why);
	} else if (srv != NULL) {
		setf(res->phase, sizeof(res->phase), "server %s",
		     step_name(srv->failed_in));
		setf(res->why, sizeof(res->why), "%s", srv->why);
	}
}

/* Resolve uri with its explanation into res, then connect through the
 * resolver.  0, or -1 with the failure in res and in p. */
int client_start(struct result *res, struct peer *p, conduit_ctx *ctx,
                 const char *uri)
{
	setf(res->uri, sizeof(res->uri), "%s", uri);
	conduit_endpoint *ep = NULL;
	conduit_explain *x = NULL;
	int rc = conduit_resolve_explain(&ep, &x, ctx, uri);
	size_t len = 0;
	res->explain[0] = '\0';
	for (size_t i = 0; x != NULL && i < conduit_explain_count(x); i++) {
		const char *s = conduit_explain_step(x, i);
		/* The URI and the endpoint are shown on their own. */
		if (strncmp(s, "uri:", 4) == 0 ||
		    strncmp(s, "endpoint:", 9) == 0)
			continue;
		int w = snprintf(res->explain + len, sizeof(res->explain) - len,
		                 "%s%s", len > 0 ? "; " : "", s);
		if (w < 0 || (size_t)w >= sizeof(res->explain) - len)
			break;
		len += (size_t)w;
	}
	conduit_explain_free(x);
	if (rc != CONDUIT_OK) {
		setf(res->phase, sizeof(res->phase), "client resolve");
		setf(res->why, sizeof(res->why), "%s", conduit_ctx_error(ctx));
		conduit_endpoint_free(ep);
		return peer_fail(p, "%s", conduit_ctx_error(ctx));
	}
	setf(res->endpoint, sizeof(res->endpoint), "%s",
	     conduit_endpoint_uri(ep));
	/* The name a TLS client checks: servername=, else the host. */
	static char checked[256];
	const char *sn = conduit_endpoint_option(ep, "servername");
	setf(checked, sizeof(checked), "%s",
	     sn != NULL ? sn : conduit_endpoint_host(ep));
	p->checked_name = checked;
	conduit_endpoint_free(ep);

	p->t_start = tool_now_us();
	if (conduit_connect(&p->f, ctx, uri) != CONDUIT_OK) {
		setf(res->phase, sizeof(res->phase), "client connect");
		setf(res->why, sizeof(res->why), "%s", conduit_ctx_error(ctx));
		return peer_fail(p, "%s", conduit_ctx_error(ctx));
	}
	return 0;
}
