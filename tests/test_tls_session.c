/*
 * test_tls_session.c - resumption between conduit ends: tickets, the
 * server's session cache, client sessions handed over and refused when they
 * should be (another name, a tampered or expired ticket, changed checks).
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

/* Only to alter a session ticket as an attacker or a bad disk would. */
#include <mbedtls/ssl.h>
#include <mbedtls/version.h>

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* Resumption                                                          */

static void resumed_is(struct pair *p, int want)
{
	ck_assert_msg(conduit_tls_resumed(p->c) == want &&
	                  conduit_tls_resumed(p->s) == want,
	              "%s: resumed: client %d, server %d, want %d", p->uri,
	              conduit_tls_resumed(p->c), conduit_tls_resumed(p->s),
	              want);
}

/* Hand the client's session to its context for the next connection. */
static void keep_session(struct pair *p)
{
	conduit_tls_session *sess = NULL;
	ck_status(conduit_tls_session_get(p->c, &sess), CONDUIT_OK);
	ck_status(conduit_tls_set_session(p->cctx, sess), CONDUIT_OK);
	conduit_tls_session_free(sess);
}

START_TEST(resume_with_ticket)
{
	struct pair p;
	pair_open(&p, tls_ctx("srv"), tls_ctx(NULL), TCP_LISTEN, TCP_NAMED);
	/* Before the handshake there is no session to take. */
	conduit_tls_session *sess = NULL;
	ck_status(conduit_tls_session_get(p.c, &sess), CONDUIT_ERR_STATE);
	pair_ok(&p);
	resumed_is(&p, 0);
	ck_status(conduit_tls_session_get(p.s, &sess), CONDUIT_ERR_UNSUPPORTED);
	ck_status(conduit_tls_session_get(NULL, &sess), CONDUIT_ERR_INVALID);
	keep_session(&p);
	pair_again(&p, NULL);
	resumed_is(&p, 1);
	pair_talk(&p);
	/* A resumed flow still knows whom it talks to. */
	char subj[256];
	ck_status(conduit_tls_peer_subject(p.c, subj, sizeof(subj)),
	          CONDUIT_OK);
	ck_assert_str_eq(subj, "CN=localhost");
	ck_assert_str_eq(conduit_tls_cipher(p.c),
	                 "TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256");
	/* The session is offered again until replaced. */
	pair_again(&p, NULL);
	resumed_is(&p, 1);
	/* Forgotten: a full handshake. */
	ck_status(conduit_tls_clear_sessions(p.cctx), CONDUIT_OK);
	pair_again(&p, NULL);
	resumed_is(&p, 0);
	/* Not TLS, or NULL: 0. */
	ck_assert_int_eq(conduit_tls_resumed(NULL), 0);
	pair_free(&p);
}
END_TEST

START_TEST(resume_with_server_cache)
{
	struct pair p;
	conduit_ctx *s = tls_ctx("srv");
	ck_status(conduit_tls_set_resumption(s, CONDUIT_TLS_RESUME_CACHE),
	          CONDUIT_OK);
	pair_open(&p, s, tls_ctx(NULL), TCP_LISTEN, TCP_NAMED);
	pair_ok(&p);
	resumed_is(&p, 0);
	keep_session(&p);
	pair_again(&p, NULL);
	resumed_is(&p, 1);
	pair_talk(&p);
	/* A server that resumes nothing: full handshakes, no error. */
	ck_status(conduit_tls_set_resumption(s, 0), CONDUIT_OK);
	pair_again(&p, NULL);
	resumed_is(&p, 0);
	keep_session(&p);
	pair_again(&p, NULL);
	resumed_is(&p, 0);
	pair_talk(&p);
	ck_status(conduit_tls_set_resumption(s, 0x80), CONDUIT_ERR_INVALID);
	ck_status(conduit_tls_set_session_lifetime(s, 0), CONDUIT_ERR_INVALID);
	ck_status(conduit_tls_set_session_lifetime(s, 604801),
	          CONDUIT_ERR_INVALID);
	pair_free(&p);
}
END_TEST

/* The client remembers sessions itself, per server name and port. */
START_TEST(resume_not_for_other_name)
{
	struct pair p;
	conduit_ctx *c = tls_ctx(NULL);
	ck_status(
	    conduit_tls_set_resumption(c, CONDUIT_TLS_RESUME_DEFAULT |
	                                      CONDUIT_TLS_RESUME_REMEMBER),
	    CONDUIT_OK);
	pair_open(&p, sni_server(), c, TCP_LISTEN, TCP_NAMED);
	pair_ok(&p);
	resumed_is(&p, 0);
	pair_again(&p, "tls+tcp://127.0.0.1:PORT?servername=other.example");
	resumed_is(&p, 0);
	char subj[256];
	ck_status(conduit_tls_peer_subject(p.c, subj, sizeof(subj)),
	          CONDUIT_OK);
	ck_assert_str_eq(subj, "CN=other.example");
	pair_again(&p, TCP_NAMED);
	resumed_is(&p, 1);
	ck_status(conduit_tls_peer_subject(p.c, subj, sizeof(subj)),
	          CONDUIT_OK);
	ck_assert_str_eq(subj, "CN=localhost");
	pair_again(&p, "tls+tcp://127.0.0.1:PORT?servername=other.example");
	resumed_is(&p, 1);
	ck_status(conduit_tls_peer_subject(p.c, subj, sizeof(subj)),
	          CONDUIT_OK);
	ck_assert_str_eq(subj, "CN=other.example");
	pair_free(&p);
}
END_TEST

/* Flip a byte of the session ticket inside a saved session. */
static void tamper_ticket(unsigned char *blob, size_t *len, size_t cap)
{
	size_t head = 15 + blob[14]; /* conduit's header, see tls_session.c */
	mbedtls_ssl_session ms;
	mbedtls_ssl_session_init(&ms);
	ck_assert_int_eq(
	    mbedtls_ssl_session_load(&ms, blob + head, *len - head), 0);
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
	unsigned char *t = ms.MBEDTLS_PRIVATE(ticket);
	size_t tlen = ms.MBEDTLS_PRIVATE(ticket_len);
#else
	unsigned char *t = ms.ticket;
	size_t tlen = ms.ticket_len;
#endif
	ck_assert_msg(t != NULL && tlen > 40, "no ticket in the session");
	t[tlen / 2] ^= 0x5a;
	size_t n = 0;
	ck_assert_int_eq(
	    mbedtls_ssl_session_save(&ms, blob + head, cap - head, &n), 0);
	*len = head + n;
	mbedtls_ssl_session_free(&ms);
}

START_TEST(resume_tampered_or_expired_is_full)
{
	struct pair p;
	conduit_ctx *s = tls_ctx("srv");
	/* 2 s: long enough for the steps that must resume, even slowed by
	 * the sanitizers. */
	ck_status(conduit_tls_set_session_lifetime(s, 2), CONDUIT_OK);
	pair_open(&p, s, tls_ctx(NULL), TCP_LISTEN, TCP_NAMED);
	pair_ok(&p);
	conduit_tls_session *sess = NULL;
	ck_status(conduit_tls_session_get(p.c, &sess), CONDUIT_OK);
	unsigned char blob[8192];
	size_t n = 0;
	ck_status(conduit_tls_session_save(sess, NULL, 0, &n), CONDUIT_OK);
	ck_assert_uint_lt(n, sizeof(blob));
	ck_status(conduit_tls_session_save(sess, blob, n - 1, &n),
	          CONDUIT_ERR_INVALID);
	ck_status(conduit_tls_session_save(sess, blob, sizeof(blob), &n),
	          CONDUIT_OK);
	conduit_tls_session_free(sess);
	/* Saved and loaded, it resumes. */
	ck_status(conduit_tls_session_load(&sess, blob, n), CONDUIT_OK);
	ck_status(conduit_tls_set_session(p.cctx, sess), CONDUIT_OK);
	conduit_tls_session_free(sess);
	pair_again(&p, NULL);
	resumed_is(&p, 1);
	/* Bytes that are not a session. */
	ck_status(conduit_tls_session_load(&sess, blob, 10),
	          CONDUIT_ERR_INVALID);
	ck_status(conduit_tls_session_load(&sess, blob, n - 5),
	          CONDUIT_ERR_INVALID);
	ck_status(conduit_tls_session_load(&sess, "not a session", 13),
	          CONDUIT_ERR_INVALID);
	ck_assert_ptr_null(sess);
	/* A ticket altered: the server cannot open it and does a full
	 * handshake. */
	tamper_ticket(blob, &n, sizeof(blob));
	ck_status(conduit_tls_session_load(&sess, blob, n), CONDUIT_OK);
	ck_status(conduit_tls_set_session(p.cctx, sess), CONDUIT_OK);
	conduit_tls_session_free(sess);
	pair_again(&p, NULL);
	resumed_is(&p, 0);
	pair_talk(&p);
	/* A ticket older than the lifetime (mbedTLS counts whole seconds:
	 * 3.2 s is more than 2 however the seconds fall). */
	keep_session(&p);
	usleep(3200 * 1000);
	pair_again(&p, NULL);
	resumed_is(&p, 0);
	pair_talk(&p);
	pair_free(&p);
}
END_TEST

/* Resuming skips the checks: it must not outlive the settings that made
 * the session acceptable. */
START_TEST(resume_refused_when_checks_changed)
{
	/* A session made without verification is not offered to a client
	 * that verifies. */
	struct pair p;
	conduit_ctx *c = tls_ctx(NULL);
	ck_status(conduit_tls_insecure_no_verify(c, 1), CONDUIT_OK);
	pair_open(&p, tls_ctx("srv"), c, TCP_LISTEN, TCP_NAMED);
	pair_ok(&p);
	keep_session(&p);
	ck_status(conduit_tls_insecure_no_verify(c, 0), CONDUIT_OK);
	pair_again(&p, NULL);
	resumed_is(&p, 0);
	/* A server that starts requiring client certificates does not
	 * resume a session of a client that had none. */
	keep_session(&p);
	ck_status(
	    conduit_tls_set_client_auth(p.sctx, CONDUIT_TLS_VERIFY_REQUIRED),
	    CONDUIT_OK);
	conduit_close(p.c);
	conduit_close(p.s);
	conduit_flow_free(p.c);
	conduit_flow_free(p.s);
	ck_status(conduit_connect(&p.c, p.cctx, p.uri), CONDUIT_OK);
	ck_status(conduit_accept_wait(&p.s, p.l, cd_scaled(5000)), CONDUIT_OK);
	pair_handshake(&p);
	ck_assert_msg(p.rc_s == CONDUIT_ERR_CERT, "%s: %s",
	              conduit_status_name(p.rc_s), conduit_flow_error(p.s));
	ck_assert_int_eq(conduit_tls_resumed(p.s), 0);
	/* New trust forgets the sessions checked under the old one. */
	ck_status(conduit_tls_set_client_auth(p.sctx, CONDUIT_TLS_VERIFY_NONE),
	          CONDUIT_OK);
	pair_again(&p, NULL);
	keep_session(&p);
	ck_status(conduit_tls_set_ca_file(p.cctx, cp("ca.crt")), CONDUIT_OK);
	pair_again(&p, NULL);
	resumed_is(&p, 0);
	pair_free(&p);
}
END_TEST

int main(void)
{
	const struct cd_test tests[] = {
	    CD_TEST(resume_with_ticket, 0),
	    CD_TEST(resume_with_server_cache, 0),
	    CD_TEST(resume_not_for_other_name, 0),
	    CD_TEST(resume_tampered_or_expired_is_full, 20),
	    CD_TEST(resume_refused_when_checks_changed, 0),
	};
	return tk_main("tls_session", tests, sizeof(tests) / sizeof(tests[0]));
}
