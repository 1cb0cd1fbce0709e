/*
 * tls.c - TLS as a layer over any flow, with mbedTLS.
 *
 * A TLS flow (struct tt_flow) owns an inner flow and talks to it only
 * through conduit_read() / conduit_write(), from mbedTLS's send and receive
 * callbacks, so the same code runs over TCP, Unix sockets and whatever
 * transport comes next.  This file is the flow itself (handshake, read,
 * write, shutdown, close, waiting) and the backend entry that wraps an
 * inner flow.  The other concerns have files of their own, tied together
 * by tlspriv.h, which also describes the objects they share:
 *
 *   tls_config.c    the settings of tls.h and the configurations built
 *                   from them and an endpoint's options
 *   tls_keypair.c   CA bundles, certificates and keys
 *   tls_pkcs8.c     encrypted PKCS#8 keys that mbedTLS cannot open
 *   tls_verify.c    the names a certificate is checked against, SNI
 *   tls_session.c   resumption: server tickets and cache, client sessions
 *   tls_conninfo.c  what a flow tells about its connection
 *   tls_mbedtls.c   the glue to mbedTLS: whatever differs between its
 *                   lines (2.28, 3.x) is there and nowhere else
 *
 * The output queue is what makes mbedTLS fit conduit's write contract.
 * mbedTLS wants a write that returned WANT_WRITE repeated with the same
 * bytes, while conduit lets a caller move on.  So the send callback never
 * says "would block": what the inner flow does not take is queued (at most
 * one record, since no new record is made while the queue holds bytes), the
 * bytes count as written, and every later operation drains the queue first.
 * A want therefore always comes from the inner flow, and waiting asks the
 * inner flow for what the last blocked call needed (a TLS read may want to
 * write, when the queue is not empty).
 *
 * Only the TLS flow reports "accepted", "failed" and "closed" to the
 * observer: the core marks the inner flow as a layer's once wrapping
 * succeeds and keeps its events to itself, since the application never
 * holds it (conduit.h's observer comment says what each layer reports).
 */
#include "tlspriv.h"

#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *tt_mbed_text(int err, char *buf, size_t len)
{
	mbedtls_strerror(err, buf, len);
	return buf;
}

/* ------------------------------------------------------------------ */
/* Flows                                                                */

/* Drain the output queue into the inner flow.  CONDUIT_OK when empty,
 * WANT_* when it still holds bytes, or the inner flow's failure. */
static int tt_flush(struct tt_flow *tf)
{
	while (tf->ooff < tf->olen) {
		size_t n = 0;
		int rc = conduit_write(tf->inner, tf->obuf + tf->ooff,
		                       tf->olen - tf->ooff, &n);
		if (rc == CONDUIT_WANT_READ || rc == CONDUIT_WANT_WRITE) {
			tf->out_want = rc == CONDUIT_WANT_READ
			                   ? CONDUIT_POLLIN
			                   : CONDUIT_POLLOUT;
			return rc;
		}
		if (rc != CONDUIT_OK)
			return conduit_flow_fail(&tf->base, rc, "tls %s: %s",
			                         tf->base.uri,
			                         conduit_flow_error(tf->inner));
		tf->ooff += n;
	}
	tf->ooff = tf->olen = 0;
	if (tf->shut_wr_pending) {
		tf->shut_wr_pending = false;
		int rc = conduit_shutdown(tf->inner, CONDUIT_SHUT_WR);
		if (rc != CONDUIT_OK)
			return conduit_flow_fail(&tf->base, rc, "tls %s: %s",
			                         tf->base.uri,
			                         conduit_flow_error(tf->inner));
	}
	return CONDUIT_OK;
}

static int queue(struct tt_flow *tf, const unsigned char *p, size_t len)
{
	if (tf->ooff > 0 && tf->ooff == tf->olen)
		tf->ooff = tf->olen = 0;
	if (tf->olen + len > tf->ocap) {
		size_t cap = tf->ocap ? tf->ocap : 4096;
		while (cap < tf->olen + len)
			cap *= 2;
		uint8_t *b = realloc(tf->obuf, cap);
		if (b == NULL)
			return -1;
		tf->obuf = b;
		tf->ocap = cap;
	}
	memcpy(tf->obuf + tf->olen, p, len);
	tf->olen += len;
	return 0;
}

/* mbedTLS's send callback: never "would block" (see the top). */
static int bio_send(void *arg, const unsigned char *buf, size_t len)
{
	struct tt_flow *tf = arg;
	size_t n = 0;
	if (tf->olen == tf->ooff) {
		int rc = conduit_write(tf->inner, buf, len, &n);
		if (rc == CONDUIT_WANT_READ || rc == CONDUIT_WANT_WRITE) {
			tf->out_want = rc == CONDUIT_WANT_READ
			                   ? CONDUIT_POLLIN
			                   : CONDUIT_POLLOUT;
			n = 0;
		} else if (rc != CONDUIT_OK) {
			tf->io_status = rc;
			return MBEDTLS_ERR_NET_SEND_FAILED;
		}
	}
	if (n < len && queue(tf, buf + n, len - n) != 0) {
		tf->io_status = CONDUIT_ERR_NOMEM;
		return MBEDTLS_ERR_NET_SEND_FAILED;
	}
	return (int)len;
}

static int bio_recv(void *arg, unsigned char *buf, size_t len)
{
	struct tt_flow *tf = arg;
	size_t n = 0;
	int rc = conduit_read(tf->inner, buf, len, &n);
	switch (rc) {
	case CONDUIT_OK:
		return (int)n;
	case CONDUIT_WANT_READ:
	case CONDUIT_WANT_WRITE:
		tf->in_want =
		    rc == CONDUIT_WANT_READ ? CONDUIT_POLLIN : CONDUIT_POLLOUT;
		return MBEDTLS_ERR_SSL_WANT_READ;
	case CONDUIT_EOF:
		tf->inner_eof = true;
		return 0;
	default:
		tf->io_status = rc;
		return MBEDTLS_ERR_NET_CONN_RESET;
	}
}

static const char *alert_text(int alert)
{
	switch (alert) {
	case 40:
		return "handshake failure";
	case 42:
		return "bad certificate";
	case 43:
		return "unsupported certificate";
	case 44:
		return "certificate revoked";
	case 45:
		return "certificate expired";
	case 46:
		return "certificate unknown";
	case 48:
		return "unknown CA";
	case 70:
		return "protocol version";
	case 71:
		return "insufficient security";
	case 80:
		return "internal error";
	case 112:
		return "unrecognized name";
	case 116:
		return "certificate required";
	case 120:
		return "no application protocol";
	default:
		return "alert";
	}
}

/* Turn an mbedTLS failure into a status and a message naming the URI. */
static int tt_fail(struct tt_flow *tf, int r, const char *what)
{
	conduit_flow *f = &tf->base;
	char m[200], words[400];
	enum tt_mb_err kind = tt_mb_err_kind(r);
	if (tf->io_status != CONDUIT_OK)
		return conduit_flow_fail(f, tf->io_status, "tls %s: %s: %s",
		                         f->uri, what,
		                         conduit_flow_error(tf->inner));
	if (r == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED) {
		tt_verify_words(mbedtls_ssl_get_verify_result(&tf->ssl),
		                tf->name, words, sizeof(words));
		return conduit_flow_fail(f, CONDUIT_ERR_CERT,
		                         "tls %s: certificate verification "
		                         "failed: %s",
		                         f->uri, words);
	}
	if (kind == TT_MB_NO_CLIENT_CERT)
		return conduit_flow_fail(
		    f, CONDUIT_ERR_CERT,
		    "tls %s: certificate verification "
		    "failed: the client sent no "
		    "certificate, and this server requires "
		    "one",
		    f->uri);
	if (r == MBEDTLS_ERR_SSL_CONN_EOF || (r == 0 && tf->inner_eof))
		return conduit_flow_fail(f, CONDUIT_ERR_TLS,
		                         "tls %s: %s: the peer closed the "
		                         "connection during the handshake",
		                         f->uri, what);
	if (r == MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE) {
		int alert = tt_mb_alert(&tf->ssl);
		return conduit_flow_fail(f, CONDUIT_ERR_TLS,
		                         "tls %s: %s: the peer refused: %s "
		                         "(alert %d)",
		                         f->uri, what, alert_text(alert),
		                         alert);
	}
	if (kind == TT_MB_NO_ALPN)
		return conduit_flow_fail(
		    f, CONDUIT_ERR_TLS,
		    "tls %s: %s: no ALPN protocol in common", f->uri, what);
	if (kind == TT_MB_NOT_TLS)
		return conduit_flow_fail(f, CONDUIT_ERR_TLS,
		                         "tls %s: %s: the peer does not speak "
		                         "TLS 1.2 or later (%s)",
		                         f->uri, what,
		                         tt_mbed_text(r, m, sizeof(m)));
	return conduit_flow_fail(f, CONDUIT_ERR_TLS, "tls %s: %s: %s", f->uri,
	                         what, tt_mbed_text(r, m, sizeof(m)));
}

static int want_of(unsigned poll_bits)
{
	return poll_bits == CONDUIT_POLLOUT ? CONDUIT_WANT_WRITE
	                                    : CONDUIT_WANT_READ;
}

/* The transport is up: the handshake clock starts.  "tls-handshaking" is
 * reported by the first handshake step, so that an accepted flow says
 * "accepted" (which conduit_accept() reports once wrapping is done) before
 * it. */
static void tt_started(struct tt_flow *tf)
{
	uint32_t ms = ((struct tt_state *)tf->conf->st)->hs_timeout_ms;
	tf->deadline = ms ? conduit_now_ms() + ms : UINT64_MAX;
}

static int tt_handshake(conduit_flow *f)
{
	struct tt_flow *tf = tf_of(f);
	if (!tf->inner_ready) {
		int rc = conduit_handshake(tf->inner);
		if (rc == CONDUIT_WANT_READ || rc == CONDUIT_WANT_WRITE)
			return rc;
		if (rc != CONDUIT_OK)
			return conduit_flow_fail(f, rc, "%s",
			                         conduit_flow_error(tf->inner));
		tf->inner_ready = true;
		tt_started(tf);
	}
	if (!tf->announced) {
		tf->announced = true;
		conduit_emit(f->ctx, CONDUIT_PHASE_TLS_HANDSHAKING, CONDUIT_OK,
		             f->uri, tf->server ? "server" : "client", f);
	}
	if (conduit_now_ms() >= tf->deadline)
		return conduit_flow_fail(
		    f, CONDUIT_ERR_TIMED_OUT,
		    "tls %s: handshake timed out after %u ms", f->uri,
		    (unsigned)((struct tt_state *)tf->conf->st)->hs_timeout_ms);
	int rc = tt_flush(tf);
	if (rc != CONDUIT_OK && rc != CONDUIT_WANT_READ &&
	    rc != CONDUIT_WANT_WRITE)
		return rc;
	if (!tf->hs_done) {
		/* The rule mbedTLS 2.28 does not enforce: a verifying client
		 * without a name would accept any trusted certificate. */
		if (!tf->server && tf->conf->verify && !tf->name_set)
			return conduit_flow_fail(
			    f, CONDUIT_ERR_TLS,
			    "tls %s: no server name to verify", f->uri);
		struct tt_resume *res = tf->conf->res;
		if (res != NULL)
			res->hs_flow = tf;
		int r = mbedtls_ssl_handshake(&tf->ssl);
		if (res != NULL)
			res->hs_flow = NULL;
		if (r == MBEDTLS_ERR_SSL_WANT_READ ||
		    r == MBEDTLS_ERR_SSL_WANT_WRITE) {
			tf->hs_want =
			    tf->olen > tf->ooff ? tf->out_want : tf->in_want;
			return want_of(tf->hs_want);
		}
		if (r != 0)
			return tt_fail(tf, r, "handshake");
		tf->hs_done = true;
		if (!tf->server)
			tt_client_done(tf);
	}
	/* The last flight (our Finished) must leave before we say done: a
	 * caller that only reads would wait for an answer to it forever. */
	rc = tt_flush(tf);
	if (rc != CONDUIT_OK) {
		tf->hs_want = tf->out_want;
		return rc;
	}
	if (conduit_observed(f->ctx)) {
		char d[160];
		const char *alpn = mbedtls_ssl_get_alpn_protocol(&tf->ssl);
		snprintf(d, sizeof(d), "%s %s%s%s",
		         mbedtls_ssl_get_version(&tf->ssl),
		         mbedtls_ssl_get_ciphersuite(&tf->ssl),
		         alpn != NULL ? " alpn " : "",
		         alpn != NULL ? alpn : "");
		conduit_emit(f->ctx, CONDUIT_PHASE_TLS_HANDSHAKED, CONDUIT_OK,
		             f->uri, d, f);
	}
	return CONDUIT_OK;
}

static int tt_read(conduit_flow *f, void *buf, size_t len, size_t *nread)
{
	struct tt_flow *tf = tf_of(f);
	if (tf->close_notify_in)
		return CONDUIT_EOF;
	if (tf->olen > tf->ooff) {
		int rc = tt_flush(tf);
		if (rc != CONDUIT_OK && rc != CONDUIT_WANT_READ &&
		    rc != CONDUIT_WANT_WRITE)
			return rc;
	}
	if (len > INT32_MAX)
		len = INT32_MAX;
	int r = mbedtls_ssl_read(&tf->ssl, buf, len);
	if (r > 0) {
		*nread = (size_t)r;
		return CONDUIT_OK;
	}
	if (r == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY) {
		tf->close_notify_in = true;
		return CONDUIT_EOF;
	}
	if (r == MBEDTLS_ERR_SSL_WANT_READ || r == MBEDTLS_ERR_SSL_WANT_WRITE)
		return want_of(tf->in_want);
	if (tf->io_status == CONDUIT_OK &&
	    (r == 0 || r == MBEDTLS_ERR_SSL_CONN_EOF))
		return conduit_flow_fail(
		    f, CONDUIT_ERR_TRUNCATED,
		    "tls %s: the peer closed the connection "
		    "without a TLS close_notify; the data "
		    "may be truncated",
		    f->uri);
	return tt_fail(tf, r, "read");
}

static int tt_writev(conduit_flow *f, const struct conduit_iov *iov,
                     size_t iovcnt, size_t *nwritten)
{
	struct tt_flow *tf = tf_of(f);
	int rc = tt_flush(tf);
	if (rc != CONDUIT_OK)
		return rc;
	unsigned char stage[2048];
	size_t total = 0, i = 0, off = 0;
	while (i < iovcnt && tf->olen == tf->ooff) {
		if (off == iov[i].len) {
			i++;
			off = 0;
			continue;
		}
		const unsigned char *p =
		    (const unsigned char *)iov[i].base + off;
		size_t n = iov[i].len - off;
		size_t take = n;
		/* Small pieces of a gather write share a record. */
		if (n < sizeof(stage) && i + 1 < iovcnt) {
			size_t s = 0, j = i, o = off;
			while (j < iovcnt && s < sizeof(stage)) {
				size_t c = iov[j].len - o;
				if (c > sizeof(stage) - s)
					c = sizeof(stage) - s;
				if (c > 0) /* an empty piece may have no base */
					memcpy(
					    stage + s,
					    (const unsigned char *)iov[j].base +
					        o,
					    c);
				s += c;
				o += c;
				if (o == iov[j].len) {
					j++;
					o = 0;
				}
			}
			p = stage;
			take = s;
		}
		if (take > TT_RECORD)
			take = TT_RECORD;
		int r = mbedtls_ssl_write(&tf->ssl, p, take);
		if (r == MBEDTLS_ERR_SSL_WANT_READ ||
		    r == MBEDTLS_ERR_SSL_WANT_WRITE)
			break;
		if (r < 0) {
			if (total > 0)
				break; /* report what went; the error comes back
				        */
			return tt_fail(tf, r, "write");
		}
		/* Advance over r bytes across the iovecs. */
		total += (size_t)r;
		for (size_t left = (size_t)r; left > 0;) {
			size_t c = iov[i].len - off;
			if (c > left)
				c = left;
			off += c;
			left -= c;
			if (off == iov[i].len && left > 0) {
				i++;
				off = 0;
			}
		}
	}
	*nwritten = total;
	return total > 0 ? CONDUIT_OK : want_of(tf->out_want);
}

static int tt_shutdown(conduit_flow *f, unsigned how)
{
	struct tt_flow *tf = tf_of(f);
	if (how & CONDUIT_SHUT_WR) {
		if (!tf->close_notify_out) {
			tf->close_notify_out = true;
			int r = mbedtls_ssl_close_notify(&tf->ssl);
			if (r != 0 && r != MBEDTLS_ERR_SSL_WANT_READ &&
			    r != MBEDTLS_ERR_SSL_WANT_WRITE)
				return tt_fail(tf, r, "shutdown");
		}
		/* The inner write side is shut once the alert has left:
		 * now, or by the next operation that drains the queue. */
		tf->shut_wr_pending = true;
		int rc = tt_flush(tf);
		if (rc != CONDUIT_OK && rc != CONDUIT_WANT_READ &&
		    rc != CONDUIT_WANT_WRITE)
			return rc;
	}
	if (how & CONDUIT_SHUT_RD) {
		int rc = conduit_shutdown(tf->inner, CONDUIT_SHUT_RD);
		if (rc != CONDUIT_OK)
			return conduit_flow_fail(f, rc, "tls %s: %s", f->uri,
			                         conduit_flow_error(tf->inner));
	}
	return CONDUIT_OK;
}

static int tt_close(conduit_flow *f)
{
	struct tt_flow *tf = tf_of(f);
	if (!tf->close_notify_out) {
		tf->close_notify_out = true;
		/* A peer already gone is no reason to fail a close. */
		(void)mbedtls_ssl_close_notify(&tf->ssl);
	}
	int rc = tt_flush(tf);
	if (rc == CONDUIT_WANT_READ || rc == CONDUIT_WANT_WRITE)
		return rc;
	if (rc != CONDUIT_OK) {
		conduit_close(tf->inner);
		return rc;
	}
	rc = conduit_close(tf->inner);
	if (rc != CONDUIT_OK && rc != CONDUIT_WANT_READ &&
	    rc != CONDUIT_WANT_WRITE)
		return conduit_flow_fail(f, rc, "tls %s: %s", f->uri,
		                         conduit_flow_error(tf->inner));
	return rc;
}

static void tt_destroy(conduit_flow *f)
{
	struct tt_flow *tf = tf_of(f);
	mbedtls_ssl_free(&tf->ssl);
	tt_conf_put(tf->conf);
	conduit_flow_free(tf->inner);
	free(tf->obuf);
	conduit_flow_fini(f);
	free(tf);
}

static void tt_wait(conduit_flow *f, unsigned interest,
                    struct conduit_waitset *ws)
{
	struct tt_flow *tf = tf_of(f);
	conduit_flow *in = tf->inner;
	/* (A failed or closed inner flow makes ws ready now: the helper
	 * below says so, and the next call reports it.) */
	unsigned need = 0;
	if (!tf->inner_ready) {
		need = interest; /* still connecting: the inner flow knows */
	} else if (!tf->hs_done || !(f->state & CONDUIT_FLOW_ESTABLISHED)) {
		need = tf->hs_want;
		conduit_waitset_deadline(ws, tf->deadline);
	} else {
		if (interest & CONDUIT_POLLIN)
			need |= tf->in_want;
		if (interest & CONDUIT_POLLOUT)
			need |= tf->olen > tf->ooff ? tf->out_want
			                            : CONDUIT_POLLOUT;
	}
	if (tf->olen > tf->ooff)
		need |= tf->out_want;
	if (need == 0)
		need = CONDUIT_POLLIN;
	conduit_flow_inner_wait(in, need, ws);
}

/* Whether the inner flow can do, without waiting, one of the operations
 * in bits (CONDUIT_POLL*). */
static bool inner_can(conduit_flow *in, unsigned bits)
{
	return conduit_flow_inner_pending(in, bits) != 0;
}

/*
 * What the caller can do without waiting is what TLS can do, which is not
 * what the inner flow can: a client waiting for the server's flight has
 * room to write below it, and answering "ready" to its CONDUIT_POLLOUT
 * made conduit_poll() return at once, round after round, for the whole
 * handshake, burning the CPU the peer needed to answer.  So the inner flow
 * is asked about what the TLS operation needs from it (what tt_wait()
 * waits on), and the answer is given for the interest it serves.
 */
static unsigned tt_pending(conduit_flow *f, unsigned interest)
{
	struct tt_flow *tf = tf_of(f);
	conduit_flow *in = tf->inner;
	if (in->state & (CONDUIT_FLOW_FAILED | CONDUIT_FLOW_CLOSED))
		return interest;
	bool queued = tf->olen > tf->ooff;
	if (!tf->inner_ready) /* still connecting: the inner flow knows */
		return inner_can(in, interest) ? interest : 0;
	if (!tf->hs_done || !(f->state & CONDUIT_FLOW_ESTABLISHED)) {
		/* Reading and writing both drive the handshake. */
		unsigned need = tf->hs_want | (queued ? tf->out_want : 0);
		return inner_can(in, need) ? interest : 0;
	}
	unsigned ready = 0;
	if ((interest & CONDUIT_POLLIN) &&
	    (tf->close_notify_in || mbedtls_ssl_get_bytes_avail(&tf->ssl) > 0 ||
	     mbedtls_ssl_check_pending(&tf->ssl) || inner_can(in, tf->in_want)))
		ready |= CONDUIT_POLLIN;
	/* A write drains the queue first, and needs what that needs. */
	if ((interest & CONDUIT_POLLOUT) &&
	    inner_can(in, queued ? tf->out_want : CONDUIT_POLLOUT))
		ready |= CONDUIT_POLLOUT;
	return ready;
}

static int tt_peer_cred(conduit_flow *f, struct conduit_peer_cred *cred)
{
	struct tt_flow *tf = tf_of(f);
	int rc = conduit_flow_peer_cred(tf->inner, cred);
	if (rc != CONDUIT_OK)
		conduit_flow_fail(f, rc, "%s", conduit_flow_error(tf->inner));
	return rc;
}

static int tt_fd(const conduit_flow *f)
{
	return conduit_flow_fd(((const struct tt_flow *)f)->inner);
}

static int tt_unread(conduit_flow *f, size_t *n)
{
	struct tt_flow *tf = tf_of(f);
	size_t inner = 0;
	if (tf->inner->ops->unread != NULL) {
		int rc = tf->inner->ops->unread(tf->inner, &inner);
		if (rc != CONDUIT_OK)
			return conduit_flow_fail(f, rc, "%s",
			                         conduit_flow_error(tf->inner));
	}
	*n = mbedtls_ssl_get_bytes_avail(&tf->ssl) + inner;
	return CONDUIT_OK;
}

static const struct conduit_flow_ops tt_ops = {
    .name = "tls",
    .handshake = tt_handshake,
    .read = tt_read,
    .writev = tt_writev,
    .shutdown = tt_shutdown,
    .close = tt_close,
    .destroy = tt_destroy,
    .wait = tt_wait,
    .pending = tt_pending,
    .peer_cred = tt_peer_cred,
    .fd = tt_fd,
    .unread = tt_unread,
};

static int tt_wrap(void *state, conduit_ctx *ctx, const conduit_endpoint *ep,
                   conduit_flow *inner, int is_server, conduit_flow **out)
{
	struct tt_state *st = state;
	char err[512], m[200];
	const char *role = is_server ? "server" : "client";
	struct tt_conf *conf = NULL;
	int rc = tt_conf_get(&conf, st, ep, is_server != 0, err, sizeof(err));
	/* No inner flow: conduit_listen() asks whether a server could be
	 * made at all.  The configuration built stays cached for the first
	 * accept. */
	if (inner == NULL) {
		*out = NULL;
		tt_conf_put(conf);
		if (rc != CONDUIT_OK)
			return conduit_ctx_fail(ctx, rc, "listen %s: %s",
			                        cd_endpoint_shown(ep), err);
		return CONDUIT_OK;
	}
	if (rc != CONDUIT_OK)
		return conduit_ctx_fail(ctx, rc, "tls %s %s: %s", role,
		                        cd_endpoint_shown(ep), err);
	/* A server flow is named after its peer, as accepted flows are:
	 * the inner flow's URI under tls+. */
	char *name = NULL;
	if (is_server && strncmp(inner->uri, "tls+", 4) != 0 &&
	    (name = malloc(strlen(inner->uri) + 5)) != NULL)
		sprintf(name, "tls+%s", inner->uri);
	struct tt_flow *tf = calloc(1, sizeof(*tf));
	int irc = tf != NULL ? conduit_flow_init(&tf->base, &tt_ops, ctx,
	                                         name != NULL ? name : ep->uri)
	                     : CONDUIT_ERR_NOMEM;
	free(name);
	if (irc != CONDUIT_OK) {
		free(tf);
		tt_conf_put(conf);
		return conduit_ctx_fail(ctx, CONDUIT_ERR_NOMEM,
		                        "tls %s: out of memory",
		                        cd_endpoint_shown(ep));
	}
	tf->conf = conf;
	tf->server = is_server != 0;
	tf->in_want = CONDUIT_POLLIN;
	/* A client speaks first (its ClientHello), a server listens. */
	tf->hs_want = is_server ? CONDUIT_POLLIN : CONDUIT_POLLOUT;
	tf->out_want = CONDUIT_POLLOUT;
	tf->deadline = UINT64_MAX;
	tf->port = conduit_endpoint_port(ep);
	mbedtls_ssl_init(&tf->ssl);
	int r = mbedtls_ssl_setup(&tf->ssl, &conf->conf);
	if (r == 0 && !tf->server) {
		tt_client_name(tf, ep);
		if (tf->ip_family != 0) {
			/* No SNI and no DNS-name match for an IP literal. */
			mbedtls_ssl_set_verify(&tf->ssl, tt_verify_ip, tf);
			r = tt_mb_no_hostname(&tf->ssl);
		} else if (tf->name_set) {
			r = mbedtls_ssl_set_hostname(&tf->ssl, tf->name);
			tf->sni_set = r == 0;
		} else if (conf->verify) {
			/* A vchan host is a domain, not a name that a
			 * certificate is checked against; a Unix address
			 * has no host at all. */
			char why[160];
			if (ep->host[0] != '\0')
				snprintf(why, sizeof(why),
				         "%s host \"%.64s\" names a domain, "
				         "which TLS cannot check",
				         ep->transport, ep->host);
			else
				snprintf(why, sizeof(why),
				         "a %s address has no host",
				         ep->transport);
			rc = CONDUIT_ERR_TLS;
			snprintf(err, sizeof(err),
			         "no server name to verify the certificate "
			         "against: %s; add servername=NAME (the name "
			         "in the server's certificate), or pass NAME "
			         "to conduit_starttls()",
			         why);
		}
	}
	if (r != 0) {
		rc = CONDUIT_ERR_TLS;
		snprintf(err, sizeof(err), "%s", tt_mbed_text(r, m, sizeof(m)));
	}
	if (rc != CONDUIT_OK) {
		/* inner stays with the caller, untouched. */
		mbedtls_ssl_free(&tf->ssl);
		tt_conf_put(conf);
		conduit_flow_fini(&tf->base);
		free(tf);
		return conduit_ctx_fail(ctx, rc, "tls %s %s: %s", role,
		                        cd_endpoint_shown(ep), err);
	}
	if (!tf->server)
		tt_offer_session(tf, st);
	mbedtls_ssl_set_bio(&tf->ssl, tf, bio_send, bio_recv, NULL);
	tf->inner = inner;
	/* An inner flow established already (StartTLS, an accepted flow)
	 * starts the handshake clock now. */
	if (inner->state & CONDUIT_FLOW_ESTABLISHED) {
		tf->inner_ready = true;
		tt_started(tf);
	}
	*out = &tf->base;
	return CONDUIT_OK;
}

static const char *const tt_layers[] = {"tls", NULL};

const struct conduit_backend cd_backend_tls = {
    .name = "tls",
    .layers = tt_layers,
    .wrap = tt_wrap,
    .state_size = sizeof(struct tt_state),
    .attach = tt_attach,
    .detach = tt_detach,
};

int conduit_tls_is_tls(const conduit_flow *f)
{
	return f != NULL && f->ops == &tt_ops;
}
