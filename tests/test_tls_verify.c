/*
 * test_tls_verify.c - the TLS handshake and what it checks, conduit to
 * conduit over loopback TCP and Unix sockets: each verification failure with
 * its own status and a message naming the reason (untrusted, expired, not
 * yet valid, wrong name, IP literal against a CN-only certificate), a
 * plaintext peer, the handshake deadline, mutual TLS, ALPN, the flow
 * queries, and the events a TLS flow reports.
 *
 * Certificates are made once per run by the openssl command in a temporary
 * directory (tlskit.c); without openssl every test fails loudly.  Most
 * tests run both ends in this process, non-blocking, driven by
 * conduit_poll(); forked peers report only through their exit status.
 */
#include "flowkit.h"
#include "harness.h"
#include "tlskit.h"

#include <conduit/conduit.h>
#include <conduit/tls.h>

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

START_TEST(certificates_made)
{
	need_certs();
}
END_TEST

/* tls+unix: peer credentials pass through; a verifying client needs a
 * name. */
START_TEST(unix_peer_cred_and_name_required)
{
	conduit_ctx *ctx = tls_ctx("srv");
	char dir[256], luri[400], uri[500];
	cd_tmpdir(dir, sizeof(dir));
	snprintf(luri, sizeof(luri), "tls+unix://%s/s.sock", dir);
	conduit_listener *l = fk_listen(ctx, luri);
	conduit_flow *f = NULL;
	ck_status(conduit_connect(&f, ctx, luri), CONDUIT_ERR_TLS);
	ck_assert_ptr_null(f);
	const char *m = conduit_ctx_error(ctx);
	ck_assert_msg(strstr(m, "no server name") != NULL &&
	                  strstr(m, "a unix address has no host; add "
	                            "servername=NAME") != NULL,
	              "%s", m);
	conduit_listener_free(l);
	struct pair p;
	snprintf(uri, sizeof(uri), "%s?servername=localhost", luri);
	pair_open(&p, ctx, ctx, luri, uri);
	pair_ok(&p);
	struct conduit_peer_cred cred;
	ck_status(conduit_flow_peer_cred(p.s, &cred), CONDUIT_OK);
	ck_assert_int_eq(cred.uid, (int64_t)getuid());
	ck_assert_int_eq(cred.pid, (int64_t)getpid());
	pair_talk(&p);
	pair_free(&p);
	cd_rmtree(dir);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Verification failures                                               */

/* A server with identity `name`; the client connects to fmt; the client's
 * handshake must end with want_status and a message holding each of the
 * words. */
static void refused(const char *name, conduit_ctx *cctx, const char *fmt,
                    int want_status, const char *w1, const char *w2)
{
	struct pair p;
	pair_open(&p, tls_ctx(name), cctx, TCP_LISTEN, fmt);
	pair_handshake(&p);
	const char *msg = conduit_flow_error(p.c);
	ck_assert_msg(p.rc_c == want_status, "%s: got %s (%s), want %s", p.uri,
	              conduit_status_name(p.rc_c), msg,
	              conduit_status_name(want_status));
	/* The message names the endpoint (after the resolver). */
	char port[16];
	snprintf(port, sizeof(port), ":%d", fk_listener_port(p.l));
	ck_assert_msg(strstr(msg, "tls tls+tcp://127.0.0.1") != NULL &&
	                  strstr(msg, port) != NULL,
	              "no URI in: %s", msg);
	ck_assert_msg(w1 == NULL || strstr(msg, w1) != NULL, "no '%s' in: %s",
	              w1, msg);
	ck_assert_msg(w2 == NULL || strstr(msg, w2) != NULL, "no '%s' in: %s",
	              w2, msg);
	/* No application byte comes through a refused handshake. */
	char b;
	size_t n = 9;
	ck_assert_int_ne(conduit_read(p.c, &b, 1, &n), CONDUIT_OK);
	ck_assert_uint_eq(n, 0);
	pair_free(&p);
}

START_TEST(wrong_name_refused)
{
	refused("other", tls_ctx(NULL), TCP_NAMED, CONDUIT_ERR_CERT,
	        "certificate verification failed",
	        "its names do not include localhost");
}
END_TEST

START_TEST(ip_literal_with_ip_san_accepted)
{
	struct pair p;
	pair_open(&p, tls_ctx("srv"), tls_ctx(NULL), TCP_LISTEN,
	          "tls+tcp://127.0.0.1:PORT");
	pair_ok(&p);
	/* No SNI for an IP literal. */
	ck_assert_ptr_null(conduit_tls_servername(p.c));
	ck_assert_ptr_null(conduit_tls_servername(p.s));
	pair_talk(&p);
	pair_free(&p);
}
END_TEST

/* A listening URI may use tls:// for tls+tcp://, as a connecting one may;
 * a listening service URI is still refused (services are for clients). */
START_TEST(listen_tls_shorthand)
{
	struct pair p;
	pair_open(&p, tls_ctx("srv"), tls_ctx(NULL), "TLS://127.0.0.1:0",
	          "tls://localhost:PORT");
	ck_assert_msg(
	    strncmp(conduit_listener_uri(p.l), "tls+tcp://127.0.0.1:", 20) == 0,
	    "listener %s", conduit_listener_uri(p.l));
	pair_ok(&p);
	pair_talk(&p);
	pair_free(&p);
	conduit_ctx *ctx = tls_ctx("srv");
	conduit_listener *l = NULL;
	ck_status(conduit_listen(&l, ctx, "https://127.0.0.1:0/"),
	          CONDUIT_ERR_SCHEME);
	ck_assert_ptr_null(l);
	ck_assert_ptr_nonnull(strstr(conduit_ctx_error(ctx), "https"));
	conduit_ctx_free(ctx);
}
END_TEST

/* CN=127.0.0.1 is not an IP-address name; https:// goes through the
 * service table to tls+tcp. */
START_TEST(ip_literal_cn_only_refused)
{
	refused("cnip", tls_ctx(NULL), "https://127.0.0.1:PORT/x",
	        CONDUIT_ERR_CERT, "its names do not include 127.0.0.1", NULL);
}
END_TEST

START_TEST(untrusted_ca_refused_insecure_accepts)
{
	need_certs();
	/* The system bundle does not know the test CA. */
	refused("srv", fk_new_ctx(), TCP_NAMED, CONDUIT_ERR_CERT,
	        "the certificate is not trusted (issuer unknown)", NULL);
	/* Another CA than the server's. */
	conduit_ctx *c2 = fk_new_ctx();
	ck_status(conduit_tls_set_ca_file(c2, cp("ca2.crt")), CONDUIT_OK);
	refused("srv", c2, TCP_NAMED, CONDUIT_ERR_CERT, "not trusted", NULL);
	/* Untrusted and the wrong name: both reasons, joined. */
	refused("other", fk_new_ctx(), "tls+tcp://127.0.0.1:PORT",
	        CONDUIT_ERR_CERT,
	        "not trusted (issuer unknown), and its names do not include "
	        "127.0.0.1",
	        NULL);

	conduit_ctx *ins = fk_new_ctx();
	ck_status(conduit_tls_insecure_no_verify(ins, 1), CONDUIT_OK);
	struct pair p;
	pair_open(&p, tls_ctx("other"), ins, TCP_LISTEN, TCP_NAMED);
	pair_ok(&p);
	char subj[128];
	ck_status(conduit_tls_peer_subject(p.c, subj, sizeof(subj)),
	          CONDUIT_ERR_CERT);
	pair_talk(&p);
	pair_free(&p);
}
END_TEST

START_TEST(expired_and_future_refused)
{
	refused("expired", tls_ctx(NULL), TCP_NAMED, CONDUIT_ERR_CERT,
	        "the certificate has expired", NULL);
	refused("future", tls_ctx(NULL), TCP_NAMED, CONDUIT_ERR_CERT,
	        "the certificate is not valid yet", NULL);
}
END_TEST

/* A plain TCP listener *l of ctx, a TLS client *c of ctx connected to it
 * by the name localhost (its handshake not begun) and the plain flow *s
 * accepted for it. */
static void plain_server(conduit_ctx *ctx, conduit_listener **l,
                         conduit_flow **c, conduit_flow **s)
{
	*l = fk_listen(ctx, "tcp://127.0.0.1:0");
	char uri[128];
	with_port(uri, sizeof(uri), TCP_NAMED, fk_listener_port(*l));
	*c = NULL;
	*s = NULL;
	ck_status(conduit_connect(c, ctx, uri), CONDUIT_OK);
	ck_status(conduit_accept_wait(s, *l, cd_scaled(5000)), CONDUIT_OK);
}

/* A plain TCP server that answers with text. */
START_TEST(plaintext_peer_refused)
{
	conduit_ctx *ctx = tls_ctx(NULL);
	conduit_listener *l;
	conduit_flow *c, *s;
	plain_server(ctx, &l, &c, &s);
	send_str(s, "HTTP/1.0 400 Bad Request\r\n\r\n");
	int rc = fk_drive_handshake(ctx, c, 200);
	ck_assert_msg(rc == CONDUIT_ERR_TLS, "%s: %s", conduit_status_name(rc),
	              conduit_flow_error(c));
	fk_free_all(c, s, l, ctx);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Mutual TLS                                                          */

static conduit_ctx *mtls_server(void)
{
	conduit_ctx *s = tls_ctx("srv");
	ck_status(conduit_tls_set_client_auth(s, CONDUIT_TLS_VERIFY_REQUIRED),
	          CONDUIT_OK);
	return s;
}

START_TEST(mtls_required)
{
	/* No client certificate: the server refuses it. */
	struct pair p;
	pair_open(&p, mtls_server(), tls_ctx(NULL), TCP_LISTEN, TCP_NAMED);
	pair_handshake(&p);
	ck_assert_msg(p.rc_s == CONDUIT_ERR_CERT, "server: %s (%s)",
	              conduit_status_name(p.rc_s), conduit_flow_error(p.s));
	ck_assert_msg(strstr(conduit_flow_error(p.s), "no certificate") != NULL,
	              "%s", conduit_flow_error(p.s));
	ck_assert_msg(p.rc_c != CONDUIT_OK, "client got in without a cert");
	pair_free(&p);

	/* A client certificate from another CA. */
	pair_open(&p, mtls_server(), tls_ctx("client2"), TCP_LISTEN, TCP_NAMED);
	pair_handshake(&p);
	ck_assert_msg(p.rc_s == CONDUIT_ERR_CERT, "server: %s (%s)",
	              conduit_status_name(p.rc_s), conduit_flow_error(p.s));
	ck_assert_msg(strstr(conduit_flow_error(p.s), "not trusted") != NULL,
	              "%s", conduit_flow_error(p.s));
	ck_assert_int_ne(p.rc_c, CONDUIT_OK);
	pair_free(&p);

	/* The right one: both read each other's identity. */
	pair_open(&p, mtls_server(), tls_ctx("client"), TCP_LISTEN, TCP_NAMED);
	pair_ok(&p);
	char buf[256];
	ck_status(conduit_tls_peer_subject(p.s, buf, sizeof(buf)), CONDUIT_OK);
	ck_assert_str_eq(buf, "CN=client one");
	const char *want[] = {"DNS:client.example", "email:client@example.org",
	                      "URI:spiffe://conduit/test"};
	for (size_t i = 0; i < 3; i++) {
		ck_status(conduit_tls_peer_san(p.s, i, buf, sizeof(buf)),
		          CONDUIT_OK);
		ck_assert_str_eq(buf, want[i]);
	}
	ck_status(conduit_tls_peer_san(p.s, 3, buf, sizeof(buf)),
	          CONDUIT_ERR_NOT_FOUND);
	ck_status(conduit_tls_peer_subject(p.c, buf, sizeof(buf)), CONDUIT_OK);
	ck_assert_str_eq(buf, "CN=localhost");
	ck_status(conduit_tls_peer_san(p.c, 1, buf, sizeof(buf)), CONDUIT_OK);
	ck_assert_str_eq(buf, "IP:127.0.0.1");
	ck_status(conduit_tls_peer_subject(p.c, buf, 4), CONDUIT_ERR_INVALID);
	pair_talk(&p);
	pair_free(&p);
}
END_TEST

START_TEST(mtls_optional)
{
	conduit_ctx *s = tls_ctx("srv");
	ck_status(conduit_tls_set_client_auth(s, CONDUIT_TLS_VERIFY_OPTIONAL),
	          CONDUIT_OK);
	struct pair p;
	pair_open(&p, s, tls_ctx(NULL), TCP_LISTEN, TCP_NAMED);
	pair_ok(&p);
	char buf[128];
	ck_status(conduit_tls_peer_subject(p.s, buf, sizeof(buf)),
	          CONDUIT_ERR_NOT_FOUND);
	pair_free(&p);
}
END_TEST

/* ------------------------------------------------------------------ */
/* ALPN, version, cipher, queries                                      */

START_TEST(alpn_both_ways)
{
	const char *srv[] = {"h2", "http/1.1", NULL};
	struct {
		const char *client; /* URI alpn= */
		const char *want;   /* NULL: refused */
	} cases[] = {
	    {"http/1.1", "http/1.1"},
	    {"x-other,http/1.1,h2", "h2"},
	    {"spdy/1", NULL},
	};
	for (size_t i = 0; i < 3; i++) {
		conduit_ctx *s = tls_ctx("srv");
		ck_status(conduit_tls_set_alpn(s, srv), CONDUIT_OK);
		char fmt[128];
		snprintf(fmt, sizeof(fmt), TCP_NAMED "&alpn=%s",
		         cases[i].client);
		struct pair p;
		pair_open(&p, s, tls_ctx(NULL), TCP_LISTEN, fmt);
		pair_handshake(&p);
		if (cases[i].want == NULL) {
			ck_assert_int_eq(p.rc_s, CONDUIT_ERR_TLS);
			ck_assert_int_ne(p.rc_c, CONDUIT_OK);
		} else {
			ck_assert_msg(p.rc_c == CONDUIT_OK &&
			                  p.rc_s == CONDUIT_OK,
			              "%s / %s", conduit_flow_error(p.c),
			              conduit_flow_error(p.s));
			ck_assert_str_eq(conduit_tls_alpn(p.c), cases[i].want);
			ck_assert_str_eq(conduit_tls_alpn(p.s), cases[i].want);
		}
		pair_free(&p);
	}
	/* Client API list, server without ALPN: none negotiated. */
	conduit_ctx *c = tls_ctx(NULL);
	ck_status(conduit_tls_set_alpn(c, srv), CONDUIT_OK);
	struct pair p;
	pair_open(&p, tls_ctx("srv"), c, TCP_LISTEN, TCP_NAMED);
	pair_ok(&p);
	ck_assert_ptr_null(conduit_tls_alpn(p.c));
	pair_free(&p);
}
END_TEST

START_TEST(version_cipher_and_queries)
{
	struct fk_events ev = {0};
	conduit_ctx *c = tls_ctx(NULL);
	conduit_ctx_set_observer(c, fk_record, &ev);
	struct pair p;
	pair_open(&p, tls_ctx("srv"), c, TCP_LISTEN, TCP_NAMED);
	/* Nothing to report before the handshake. */
	ck_assert_ptr_null(conduit_tls_version(p.c));
	char buf[128];
	ck_status(conduit_tls_peer_subject(p.c, buf, sizeof(buf)),
	          CONDUIT_ERR_STATE);
	pair_ok(&p);
	ck_assert_str_eq(conduit_tls_version(p.c), "TLSv1.2");
	ck_assert_str_eq(conduit_tls_version(p.s), "TLSv1.2");
	const char *suite = conduit_tls_cipher(p.c);
	ck_assert_msg(strstr(suite, "ECDHE-ECDSA") != NULL &&
	                  (strstr(suite, "GCM") || strstr(suite, "CHACHA")),
	              "%s", suite);
	ck_assert_str_eq(suite, conduit_tls_cipher(p.s));
	ck_assert_str_eq(conduit_tls_servername(p.c), "localhost");
	ck_assert_str_eq(conduit_tls_servername(p.s), "localhost");
	ck_assert_int_eq(fk_count_phase(&ev, CONDUIT_PHASE_TLS_HANDSHAKING), 1);
	ck_assert_int_eq(fk_count_phase(&ev, CONDUIT_PHASE_TLS_HANDSHAKED), 1);
	ck_assert_str_eq(conduit_phase_name(CONDUIT_PHASE_TLS_HANDSHAKED),
	                 "tls-handshaked");
	ck_assert_int_ge(conduit_flow_fd(p.c), 0);

	/* A plain flow is no TLS flow. */
	conduit_ctx *ctx = fk_new_ctx();
	conduit_listener *l = fk_listen(ctx, "tcp://127.0.0.1:0");
	conduit_flow *a, *b;
	fk_pair(ctx, l, NULL, &a, &b);
	ck_assert(!conduit_tls_is_tls(a));
	ck_assert_ptr_null(conduit_tls_version(a));
	ck_assert_ptr_null(conduit_tls_cipher(a));
	ck_assert_ptr_null(conduit_tls_alpn(a));
	ck_status(conduit_tls_peer_subject(a, buf, sizeof(buf)),
	          CONDUIT_ERR_UNSUPPORTED);
	ck_status(conduit_tls_peer_san(a, 0, buf, sizeof(buf)),
	          CONDUIT_ERR_UNSUPPORTED);
	ck_status(conduit_tls_peer_subject(NULL, buf, sizeof(buf)),
	          CONDUIT_ERR_INVALID);
	ck_assert_str_eq(conduit_strerror(CONDUIT_ERR_TRUNCATED),
	                 "peer closed without TLS close_notify");
	fk_free_all(a, b, l, ctx);
	pair_free(&p);
}
END_TEST

/* A TCP server that accepts and never answers: the deadline ends it. */
START_TEST(handshake_deadline)
{
	conduit_ctx *ctx = tls_ctx(NULL);
	ck_status(conduit_tls_set_handshake_timeout(ctx, 300), CONDUIT_OK);
	conduit_listener *l;
	conduit_flow *c, *s;
	plain_server(ctx, &l, &c, &s);
	uint64_t t0 = cd_now_ms();
	int rc = fk_drive_handshake(ctx, c, 1000);
	uint64_t took = cd_now_ms() - t0;
	ck_assert_msg(rc == CONDUIT_ERR_TIMED_OUT, "%s: %s",
	              conduit_status_name(rc), conduit_flow_error(c));
	ck_assert_msg(took >= 250 && took < (uint64_t)cd_scaled(3000),
	              "took %llu ms", (unsigned long long)took);
	ck_assert_msg(strstr(conduit_flow_error(c), "timed out") != NULL, "%s",
	              conduit_flow_error(c));
	fk_free_all(c, s, l, ctx);
}
END_TEST

/* Every event with its URI, for the tests of what layered flows report. */
struct ev_log {
	int n;
	struct {
		enum conduit_phase phase;
		int status;
		char uri[160];
		char detail[200];
		conduit_flow *flow;
	} e[48];
};

static void ev_record(void *arg, const struct conduit_event *ev)
{
	struct ev_log *log = arg;
	if (log->n >= 48)
		return;
	log->e[log->n].phase = ev->phase;
	log->e[log->n].status = ev->status;
	snprintf(log->e[log->n].uri, sizeof(log->e[0].uri), "%s", ev->uri);
	snprintf(log->e[log->n].detail, sizeof(log->e[0].detail), "%s",
	         ev->detail);
	log->e[log->n].flow = ev->flow;
	log->n++;
}

static int ev_count(const struct ev_log *log, enum conduit_phase p)
{
	int n = 0;
	for (int i = 0; i < log->n; i++)
		n += log->e[i].phase == p;
	return n;
}

/* The index of the first event of phase p, or -1. */
static int ev_find(const struct ev_log *log, enum conduit_phase p)
{
	for (int i = 0; i < log->n; i++)
		if (log->e[i].phase == p)
			return i;
	return -1;
}

/* The whole log, for failure messages. */
static const char *ev_text(const struct ev_log *log)
{
	static char buf[8192];
	size_t at = 0;
	buf[0] = '\0';
	for (int i = 0; i < log->n && at < sizeof(buf); i++)
		at += (size_t)snprintf(
		    buf + at, sizeof(buf) - at, "\n  %s %s %s [%s] %p",
		    conduit_phase_name(log->e[i].phase),
		    conduit_status_name(log->e[i].status), log->e[i].uri,
		    log->e[i].detail, (void *)log->e[i].flow);
	return buf;
}

/* Each of the phases from first to last (inclusive) that the log holds,
 * exactly want times; and every URI is a tls+ one. */
static void ev_once(const struct ev_log *log, const enum conduit_phase *ph,
                    const int *want, size_t n)
{
	for (size_t i = 0; i < n; i++)
		ck_assert_msg(ev_count(log, ph[i]) == want[i],
		              "%d \"%s\" events, want %d:%s",
		              ev_count(log, ph[i]), conduit_phase_name(ph[i]),
		              want[i], ev_text(log));
	for (int i = 0; i < log->n; i++)
		ck_assert_msg(strncmp(log->e[i].uri, "tls+", 4) == 0,
		              "event %d not under a tls+ URI:%s", i,
		              ev_text(log));
}

/* A TLS accept: "accepted" once, under the listener's tls+ URI, for the
 * flow the application gets and before its handshake starts; the client
 * sees its transport connect once and the handshake once; one "closed"
 * each. */
START_TEST(events_tls_accept)
{
	struct ev_log se, ce;
	memset(&se, 0, sizeof(se));
	memset(&ce, 0, sizeof(ce));
	conduit_ctx *s = tls_ctx("srv"), *c = tls_ctx(NULL);
	conduit_ctx_set_observer(s, ev_record, &se);
	conduit_ctx_set_observer(c, ev_record, &ce);
	struct pair p;
	pair_open(&p, s, c, TCP_LISTEN, TCP_NAMED);
	pair_ok(&p);
	pair_talk(&p);
	ck_status(conduit_close_wait(p.c, cd_scaled(5000)), CONDUIT_OK);
	ck_status(conduit_close_wait(p.s, cd_scaled(5000)), CONDUIT_OK);
	conduit_flow *sf = p.s, *cf = p.c;
	static const enum conduit_phase sph[] = {
	    CONDUIT_PHASE_ACCEPTED,       CONDUIT_PHASE_TLS_HANDSHAKING,
	    CONDUIT_PHASE_TLS_HANDSHAKED, CONDUIT_PHASE_FAILED,
	    CONDUIT_PHASE_CLOSED,         CONDUIT_PHASE_CONNECTING,
	    CONDUIT_PHASE_CONNECTED};
	static const int swant[] = {1, 1, 1, 0, 1, 0, 0};
	ev_once(&se, sph, swant, 7);
	int a = ev_find(&se, CONDUIT_PHASE_ACCEPTED);
	ck_assert_str_eq(se.e[a].uri, conduit_listener_uri(p.l));
	ck_assert_ptr_eq(se.e[a].flow, sf);
	ck_assert_str_eq(se.e[a].detail, conduit_flow_uri(sf));
	ck_assert_msg(strncmp(se.e[a].detail, "tls+tcp://127.0.0.1:", 20) == 0,
	              "%s", se.e[a].detail);
	ck_assert_int_lt(a, ev_find(&se, CONDUIT_PHASE_TLS_HANDSHAKING));
	for (int i = 0; i < se.n; i++)
		ck_assert_ptr_eq(se.e[i].flow, sf);

	static const enum conduit_phase cph[] = {
	    CONDUIT_PHASE_CONNECTING,      CONDUIT_PHASE_CONNECTED,
	    CONDUIT_PHASE_TLS_HANDSHAKING, CONDUIT_PHASE_TLS_HANDSHAKED,
	    CONDUIT_PHASE_FAILED,          CONDUIT_PHASE_CLOSED,
	    CONDUIT_PHASE_ACCEPTED};
	static const int cwant[] = {1, 1, 1, 1, 0, 1, 0};
	ev_once(&ce, cph, cwant, 7);
	ck_assert_int_lt(ev_find(&ce, CONDUIT_PHASE_CONNECTED),
	                 ev_find(&ce, CONDUIT_PHASE_TLS_HANDSHAKING));
	int h = ev_find(&ce, CONDUIT_PHASE_TLS_HANDSHAKED);
	ck_assert_ptr_eq(ce.e[h].flow, cf);
	ck_assert_str_eq(ce.e[h].uri, conduit_flow_uri(cf));
	ck_assert_ptr_eq(ce.e[ev_find(&ce, CONDUIT_PHASE_CLOSED)].flow, cf);
	conduit_ctx_set_observer(s, NULL, NULL);
	conduit_ctx_set_observer(c, NULL, NULL);
	pair_free(&p);
}
END_TEST

/* A TLS connect the transport refuses: one "failed", under the tls+ URI,
 * whether the refusal comes at once or while connecting, and no
 * handshake.  Over TCP to a port nobody listens on, and over a Unix
 * socket file that does not exist. */
START_TEST(events_tls_connect_refused)
{
	need_certs();
	char uri[256];
	for (int leg = 0; leg < 2; leg++) {
		struct ev_log ce;
		memset(&ce, 0, sizeof(ce));
		conduit_ctx *c = tls_ctx(NULL);
		conduit_ctx_set_observer(c, ev_record, &ce);
		if (leg == 0)
			snprintf(uri, sizeof(uri),
			         "tls+tcp://127.0.0.1:%d?servername=localhost",
			         cd_free_port());
		else
			snprintf(uri, sizeof(uri),
			         "tls+unix://%s?servername=localhost",
			         cp("nobody.sock"));
		int want =
		    leg == 0 ? CONDUIT_ERR_REFUSED : CONDUIT_ERR_NOT_FOUND;
		conduit_flow *f = NULL;
		int rc = conduit_connect(&f, c, uri);
		if (rc == CONDUIT_OK) {
			rc = fk_drive_handshake(c, f, 200);
			ck_assert_msg(rc == want, "%s: %s: %s", uri,
			              conduit_status_name(rc),
			              conduit_flow_error(f));
			/* Asking again reports it again, not another event. */
			ck_status(conduit_handshake(f), want);
			conduit_flow_free(f);
		} else {
			ck_assert_msg(rc == want, "%s: %s: %s", uri,
			              conduit_status_name(rc),
			              conduit_ctx_error(c));
		}
		static const enum conduit_phase ph[] = {
		    CONDUIT_PHASE_FAILED, CONDUIT_PHASE_TLS_HANDSHAKING,
		    CONDUIT_PHASE_TLS_HANDSHAKED, CONDUIT_PHASE_CONNECTED,
		    CONDUIT_PHASE_RESOLVED};
		static const int n[] = {1, 0, 0, 0, 1};
		ev_once(&ce, ph, n, 5);
		int fi = ev_find(&ce, CONDUIT_PHASE_FAILED);
		ck_assert_int_eq(ce.e[fi].status, want);
		/* A flow the application got says "closed" once when freed;
		 * none, none. */
		ck_assert_int_eq(ev_count(&ce, CONDUIT_PHASE_CLOSED),
		                 f != NULL ? 1 : 0);
		ck_assert_msg(f == NULL || ce.e[fi].flow == f, "%s",
		              ev_text(&ce));
		conduit_ctx_set_observer(c, NULL, NULL);
		conduit_ctx_free(c);
	}
}
END_TEST

/* A handshake that fails on a certificate: one "failed" on each side, for
 * the application's flows, and one "closed" each when they are freed. */
START_TEST(events_tls_bad_cert)
{
	struct ev_log se, ce;
	memset(&se, 0, sizeof(se));
	memset(&ce, 0, sizeof(ce));
	need_certs();
	conduit_ctx *s = tls_ctx("srv"), *c = fk_new_ctx();
	ck_status(conduit_tls_set_ca_file(c, cp("ca2.crt")), CONDUIT_OK);
	conduit_ctx_set_observer(s, ev_record, &se);
	conduit_ctx_set_observer(c, ev_record, &ce);
	struct pair p;
	pair_open(&p, s, c, TCP_LISTEN, TCP_NAMED);
	pair_handshake(&p);
	ck_assert_msg(p.rc_c == CONDUIT_ERR_CERT, "client %s: %s",
	              conduit_status_name(p.rc_c), conduit_flow_error(p.c));
	ck_assert_msg(!fk_is_want(p.rc_s) && p.rc_s != CONDUIT_OK,
	              "server %s: %s", conduit_status_name(p.rc_s),
	              conduit_flow_error(p.s));
	/* Reading after the failure reports it, and no event more. */
	char b;
	size_t got = 0;
	ck_status(conduit_read(p.c, &b, 1, &got), CONDUIT_ERR_CERT);
	conduit_flow *sf = p.s, *cf = p.c;
	conduit_flow_free(p.c);
	conduit_flow_free(p.s);
	p.c = p.s = NULL;
	static const enum conduit_phase ph[] = {
	    CONDUIT_PHASE_FAILED, CONDUIT_PHASE_CLOSED,
	    CONDUIT_PHASE_TLS_HANDSHAKING, CONDUIT_PHASE_TLS_HANDSHAKED};
	static const int n[] = {1, 1, 1, 0};
	ev_once(&ce, ph, n, 4);
	ev_once(&se, ph, n, 4);
	ck_assert_int_eq(ev_count(&se, CONDUIT_PHASE_ACCEPTED), 1);
	int fc = ev_find(&ce, CONDUIT_PHASE_FAILED);
	int fs = ev_find(&se, CONDUIT_PHASE_FAILED);
	ck_assert_ptr_eq(ce.e[fc].flow, cf);
	ck_assert_int_eq(ce.e[fc].status, CONDUIT_ERR_CERT);
	ck_assert_msg(strstr(ce.e[fc].detail, "not trusted") != NULL, "%s",
	              ce.e[fc].detail);
	ck_assert_ptr_eq(se.e[fs].flow, sf);
	ck_assert_int_eq(se.e[fs].status, p.rc_s);
	conduit_ctx_set_observer(s, NULL, NULL);
	conduit_ctx_set_observer(c, NULL, NULL);
	pair_free(&p);
}
END_TEST

int main(void)
{
	const struct cd_test tests[] = {
	    CD_TEST(certificates_made, 0),
	    CD_TEST(listen_tls_shorthand, 20),
	    CD_TEST(unix_peer_cred_and_name_required, 0),
	    CD_TEST(wrong_name_refused, 0),
	    CD_TEST(ip_literal_with_ip_san_accepted, 0),
	    CD_TEST(ip_literal_cn_only_refused, 0),
	    CD_TEST(untrusted_ca_refused_insecure_accepts, 20),
	    CD_TEST(expired_and_future_refused, 0),
	    CD_TEST(plaintext_peer_refused, 0),
	    CD_TEST(mtls_required, 20),
	    CD_TEST(mtls_optional, 0),
	    CD_TEST(alpn_both_ways, 20),
	    CD_TEST(version_cipher_and_queries, 0),
	    CD_TEST(handshake_deadline, 0),
	    CD_TEST(events_tls_accept, 0),
	    CD_TEST(events_tls_connect_refused, 0),
	    CD_TEST(events_tls_bad_cert, 0),
	};
	return tk_main("tls_verify", tests, sizeof(tests) / sizeof(tests[0]));
}
