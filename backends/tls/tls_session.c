/*
 * tls_session.c - resumption.  A server's ticket key and session cache
 * (one per generation of the settings); a client's store of sessions on
 * the context, offered again to the same server name and port; and the
 * conduit_tls_session API that saves, loads and hands sessions over.
 */
#include "tlspriv.h"

#include <mbedtls/platform_util.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void tt_res_put(struct tt_resume *r)
{
	if (r != NULL && --r->refs == 0) {
		mbedtls_ssl_ticket_free(&r->ticket);
		mbedtls_ssl_cache_free(&r->sc);
		free(r);
	}
}

void tt_res_note(struct tt_resume *r)
{
	if (r->hs_flow != NULL)
		r->hs_flow->resumed = true;
}

/* The ticket callbacks: mbedTLS's own, noting on the flow being served
 * that its handshake resumes (mbedTLS offers no query for it).  The cache's
 * are in tls_mbedtls.c: their signatures differ between mbedTLS lines. */
static int res_ticket_write(void *p, const mbedtls_ssl_session *session,
                            unsigned char *start, const unsigned char *end,
                            size_t *tlen, uint32_t *lifetime)
{
	struct tt_resume *r = p;
	return mbedtls_ssl_ticket_write(&r->ticket, session, start, end, tlen,
	                                lifetime);
}

static int res_ticket_parse(void *p, mbedtls_ssl_session *session,
                            unsigned char *buf, size_t len)
{
	struct tt_resume *r = p;
	int ret = mbedtls_ssl_ticket_parse(&r->ticket, session, buf, len);
	if (ret == 0)
		tt_res_note(r);
	return ret;
}

/* A server configuration's resumption: the generation's ticket key and
 * cache, made on first need. */
int tt_conf_resume(struct tt_conf *c, struct tt_state *st, char *err,
                   size_t errlen)
{
	unsigned want = st->resume &
	                (CONDUIT_TLS_RESUME_TICKETS | CONDUIT_TLS_RESUME_CACHE);
	if (want == 0)
		return CONDUIT_OK;
	if (st->res == NULL) {
		struct tt_resume *r = calloc(1, sizeof(*r));
		if (r == NULL) {
			snprintf(err, errlen, "out of memory");
			return CONDUIT_ERR_NOMEM;
		}
		r->refs = 1;
		mbedtls_ssl_ticket_init(&r->ticket);
		mbedtls_ssl_cache_init(&r->sc);
		r->tickets = (want & CONDUIT_TLS_RESUME_TICKETS) != 0;
		r->cache = (want & CONDUIT_TLS_RESUME_CACHE) != 0;
		/* The key is random and never leaves memory; it is replaced
		 * every lifetime, and the one before still opens tickets for
		 * one more. */
		int ret = 0;
		if (r->tickets)
			ret = mbedtls_ssl_ticket_setup(
			    &r->ticket, mbedtls_ctr_drbg_random, &st->drbg,
			    MBEDTLS_CIPHER_AES_256_GCM, st->lifetime);
		if (ret != 0) {
			char m[200];
			snprintf(err, errlen, "session tickets: %s",
			         tt_mbed_text(ret, m, sizeof(m)));
			tt_res_put(r);
			return CONDUIT_ERR_TLS;
		}
		mbedtls_ssl_cache_set_timeout(&r->sc, (int)st->lifetime);
		mbedtls_ssl_cache_set_max_entries(&r->sc, TT_CACHE_ENTRIES);
		st->res = r;
	}
	c->res = st->res;
	c->res->refs++;
	if (c->res->tickets)
		mbedtls_ssl_conf_session_tickets_cb(&c->conf, res_ticket_write,
		                                    res_ticket_parse, c->res);
	if (c->res->cache)
		tt_mb_conf_cache(&c->conf, c->res);
	return CONDUIT_OK;
}

/* ------------------------------------------------------------------ */
/* Client sessions                                                      */

void tt_sessions_clear(struct tt_state *st)
{
	for (size_t i = 0; i < TT_MAX_SESSIONS; i++) {
		conduit_tls_session_free(st->sessions[i]);
		st->sessions[i] = NULL;
	}
}

/* Keep s (taken over) in the context's client store, replacing the one for
 * the same name and port, else the oldest. */
static void store_put(struct tt_state *st, conduit_tls_session *s)
{
	size_t at = TT_MAX_SESSIONS - 1;
	for (size_t i = 0; i < TT_MAX_SESSIONS; i++) {
		const conduit_tls_session *o = st->sessions[i];
		if (o != NULL && o->port == s->port &&
		    strcmp(o->name, s->name) == 0) {
			at = i;
			break;
		}
	}
	conduit_tls_session_free(st->sessions[at]);
	memmove(&st->sessions[1], &st->sessions[0],
	        at * sizeof(st->sessions[0]));
	st->sessions[0] = s;
}

/* FNV-1a of a configuration's key: sessions remember the URI options
 * (identity, trust) of the connection they came from. */
static uint32_t opts_hash(const char *key)
{
	uint32_t h = 2166136261u;
	for (const unsigned char *p = (const unsigned char *)key; *p; p++)
		h = (h ^ *p) * 16777619u;
	return h;
}

/*
 * A client's handshake is over: was the session offered resumed (a
 * resumed session keeps its master secret, a full handshake makes a new
 * one), and should the context remember the session?
 */
void tt_client_done(struct tt_flow *tf)
{
	struct tt_state *st = tf->conf->st;
	if (tf->offered) {
		tf->resumed = tt_mb_offer_resumed(tf);
		mbedtls_platform_zeroize(tf->offered_master,
		                         sizeof(tf->offered_master));
	}
	if (st->resume & CONDUIT_TLS_RESUME_REMEMBER) {
		conduit_tls_session *s = NULL;
		if (conduit_tls_session_get(&tf->base, &s) == CONDUIT_OK)
			store_put(st, s);
	}
}

/* A stored session for this client's server name and port, offered if
 * this connection verifies no more than the one it came from did. */
void tt_offer_session(struct tt_flow *tf, struct tt_state *st)
{
	for (size_t i = 0; i < TT_MAX_SESSIONS; i++) {
		const conduit_tls_session *s = st->sessions[i];
		if (s == NULL || s->port != tf->port ||
		    strcmp(s->name, tf->name) != 0)
			continue;
		/* Other URI options (cert=, ca=, ...): another client. */
		if (s->opts != opts_hash(tf->conf->key))
			return;
		if (tf->conf->verify && !s->verified)
			return;
		if (mbedtls_ssl_set_session(&tf->ssl, &s->s) == 0) {
			tt_mb_offer_note(tf, &s->s);
			tf->offered = true;
		}
		return;
	}
}

void conduit_tls_session_free(conduit_tls_session *s)
{
	if (s == NULL)
		return;
	mbedtls_ssl_session_free(&s->s);
	mbedtls_platform_zeroize(s, sizeof(*s));
	free(s);
}

static conduit_tls_session *session_new(void)
{
	conduit_tls_session *s = calloc(1, sizeof(*s));
	if (s != NULL)
		mbedtls_ssl_session_init(&s->s);
	return s;
}

int conduit_tls_session_get(conduit_flow *f, conduit_tls_session **out)
{
	if (f == NULL || out == NULL)
		return CONDUIT_ERR_INVALID;
	*out = NULL;
	if (!conduit_tls_is_tls(f) || tf_of(f)->server)
		return CONDUIT_ERR_UNSUPPORTED;
	struct tt_flow *tf = tt_done_tls(f);
	if (tf == NULL)
		return CONDUIT_ERR_STATE;
	conduit_tls_session *s = session_new();
	if (s == NULL)
		return CONDUIT_ERR_NOMEM;
	int r = mbedtls_ssl_get_session(&tf->ssl, &s->s);
	if (r != 0) {
		conduit_tls_session_free(s);
		return r == MBEDTLS_ERR_SSL_ALLOC_FAILED ? CONDUIT_ERR_NOMEM
		                                         : CONDUIT_ERR_TLS;
	}
	/* Nothing to resume with: no session ID and no ticket. */
	if (!tt_mb_session_resumable(&s->s)) {
		conduit_tls_session_free(s);
		return CONDUIT_ERR_NOT_FOUND;
	}
	s->port = tf->port;
	s->opts = opts_hash(tf->conf->key);
	s->verified =
	    tf->conf->verify && mbedtls_ssl_get_verify_result(&tf->ssl) == 0;
	snprintf(s->name, sizeof(s->name), "%s", tf->name);
	*out = s;
	return CONDUIT_OK;
}

/*
 * The saved form: "cdts", a format byte, verified, the port + 1 and the
 * options' hash (4 bytes each, big-endian), the name's length (1 byte) and
 * the name, then mbedTLS's own serialisation of the session (which refuses
 * another version or build of mbedTLS on load).
 */
#define TT_SAVE_HEAD 15

static void put32(unsigned char *b, uint32_t v)
{
	b[0] = (unsigned char)(v >> 24);
	b[1] = (unsigned char)(v >> 16);
	b[2] = (unsigned char)(v >> 8);
	b[3] = (unsigned char)v;
}

static uint32_t get32(const unsigned char *b)
{
	return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 |
	       (uint32_t)b[2] << 8 | b[3];
}

int conduit_tls_session_save(const conduit_tls_session *s, void *buf,
                             size_t len, size_t *n)
{
	if (s == NULL || n == NULL)
		return CONDUIT_ERR_INVALID;
	size_t nl = strlen(s->name), head = TT_SAVE_HEAD + nl, body = 0;
	unsigned char *b = buf;
	int r = mbedtls_ssl_session_save(&s->s, NULL, 0, &body);
	if (r != 0 && r != MBEDTLS_ERR_SSL_BUFFER_TOO_SMALL)
		return CONDUIT_ERR_TLS;
	*n = head + body;
	if (buf == NULL)
		return CONDUIT_OK;
	if (len < *n)
		return CONDUIT_ERR_INVALID;
	memcpy(b, "cdts", 4);
	b[4] = 1;
	b[5] = s->verified;
	put32(b + 6, (uint32_t)(s->port + 1));
	put32(b + 10, s->opts);
	b[14] = (unsigned char)nl;
	memcpy(b + TT_SAVE_HEAD, s->name, nl);
	size_t got = 0;
	if (mbedtls_ssl_session_save(&s->s, b + head, body, &got) != 0 ||
	    got != body)
		return CONDUIT_ERR_TLS;
	return CONDUIT_OK;
}

int conduit_tls_session_load(conduit_tls_session **out, const void *buf,
                             size_t len)
{
	if (out == NULL)
		return CONDUIT_ERR_INVALID;
	*out = NULL;
	const unsigned char *b = buf;
	if (b == NULL || len < TT_SAVE_HEAD || memcmp(b, "cdts", 4) != 0 ||
	    b[4] != 1 || b[5] > 1 || len < TT_SAVE_HEAD + (size_t)b[14])
		return CONDUIT_ERR_INVALID;
	size_t nl = b[14];
	uint32_t port = get32(b + 6);
	if (port > 65536 || memchr(b + TT_SAVE_HEAD, '\0', nl) != NULL)
		return CONDUIT_ERR_INVALID;
	conduit_tls_session *s = session_new();
	if (s == NULL)
		return CONDUIT_ERR_NOMEM;
	s->verified = b[5];
	s->port = (int)port - 1;
	s->opts = get32(b + 10);
	memcpy(s->name, b + TT_SAVE_HEAD, nl);
	s->name[nl] = '\0';
	int r = mbedtls_ssl_session_load(&s->s, b + TT_SAVE_HEAD + nl,
	                                 len - TT_SAVE_HEAD - nl);
	if (r != 0) {
		conduit_tls_session_free(s);
		return r == MBEDTLS_ERR_SSL_ALLOC_FAILED ? CONDUIT_ERR_NOMEM
		                                         : CONDUIT_ERR_INVALID;
	}
	*out = s;
	return CONDUIT_OK;
}

/* A deep copy, through the saved form (mbedTLS has no public copy). */
static int session_dup(conduit_tls_session **out, const conduit_tls_session *s)
{
	size_t n = 0;
	int rc = conduit_tls_session_save(s, NULL, 0, &n);
	if (rc != CONDUIT_OK)
		return rc;
	unsigned char *b = malloc(n);
	if (b == NULL)
		return CONDUIT_ERR_NOMEM;
	rc = conduit_tls_session_save(s, b, n, &n);
	if (rc == CONDUIT_OK)
		rc = conduit_tls_session_load(out, b, n);
	mbedtls_platform_zeroize(b, n);
	free(b);
	return rc;
}

int conduit_tls_set_session(conduit_ctx *ctx, const conduit_tls_session *s)
{
	if (s == NULL)
		return CONDUIT_ERR_INVALID;
	TT_STATE(ctx, st);
	conduit_tls_session *copy = NULL;
	int rc = session_dup(&copy, s);
	if (rc != CONDUIT_OK)
		return conduit_ctx_fail(ctx, rc, "tls: session for %s: %s",
		                        s->name[0] ? s->name : "(no name)",
		                        rc == CONDUIT_ERR_NOMEM
		                            ? "out of memory"
		                            : "cannot be copied");
	store_put(st, copy);
	return CONDUIT_OK;
}

int conduit_tls_clear_sessions(conduit_ctx *ctx)
{
	TT_STATE(ctx, st);
	tt_sessions_clear(st);
	return CONDUIT_OK;
}
