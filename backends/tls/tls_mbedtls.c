/*
 * tls_mbedtls.c - the glue between the TLS layer and the mbedTLS line it
 * is built against.  Every call whose signature, behaviour or reachable
 * fields differ between mbedTLS 2.28 and 3.x, and every test of
 * MBEDTLS_VERSION_NUMBER, sits here; the other files of the layer call the
 * functions below and never ask which line they run on.  A port to another
 * line changes this file (and tlspriv.h's declarations of it) only.
 */
#include "tlspriv.h"

#include <conduit/platform.h>

#include <mbedtls/pem.h>
#include <mbedtls/pkcs5.h>

#include <string.h>

/* Fields mbedTLS 3 made private (read only where no getter exists). */
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
#define TT_PRIV(x) MBEDTLS_PRIVATE(x)
#else
#define TT_PRIV(x) x
#endif

/* ------------------------------------------------------------------ */
/* Randomness                                                           */

/* An mbedTLS entropy source over the platform contract. */
static int tt_entropy(void *data, unsigned char *out, size_t len, size_t *olen)
{
	(void)data;
	if (conduit_platform_entropy(out, len) != 0)
		return MBEDTLS_ERR_ENTROPY_SOURCE_FAILED;
	*olen = len;
	return 0;
}

int tt_mb_rng_ready(struct tt_state *st)
{
	if (st->rng_ready)
		return 0;
	mbedtls_entropy_init(&st->entropy);
	mbedtls_ctr_drbg_init(&st->drbg);
	static const unsigned char pers[] = "conduit tls";
	int r = mbedtls_entropy_add_source(&st->entropy, tt_entropy, NULL, 32,
	                                   MBEDTLS_ENTROPY_SOURCE_STRONG);
	if (r == 0)
		r = mbedtls_ctr_drbg_seed(&st->drbg, mbedtls_entropy_func,
		                          &st->entropy, pers, sizeof(pers) - 1);
	if (r != 0) {
		mbedtls_ctr_drbg_free(&st->drbg);
		mbedtls_entropy_free(&st->entropy);
		return r;
	}
	st->rng_ready = true;
	return 0;
}

void tt_mb_rng_free(struct tt_state *st)
{
	if (st->rng_ready) {
		mbedtls_ctr_drbg_free(&st->drbg);
		mbedtls_entropy_free(&st->entropy);
	}
}

/* ------------------------------------------------------------------ */
/* Configurations                                                       */

/* ECDHE with AEAD only, in the order of preference. */
static const int tt_suites[] = {
#if MBEDTLS_VERSION_NUMBER >= 0x03000000 && defined(MBEDTLS_SSL_PROTO_TLS1_3)
    MBEDTLS_TLS1_3_AES_128_GCM_SHA256,
    MBEDTLS_TLS1_3_AES_256_GCM_SHA384,
    MBEDTLS_TLS1_3_CHACHA20_POLY1305_SHA256,
#endif
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    0,
};

/* P-256 first: in 2.28 it is the fastest (its default puts P-521 first). */
#if MBEDTLS_VERSION_NUMBER >= 0x03010000 /* groups by IANA number */
static const uint16_t tt_groups[] = {
    MBEDTLS_SSL_IANA_TLS_GROUP_SECP256R1,
    MBEDTLS_SSL_IANA_TLS_GROUP_X25519,
    MBEDTLS_SSL_IANA_TLS_GROUP_SECP384R1,
    MBEDTLS_SSL_IANA_TLS_GROUP_NONE,
};
#else
static const mbedtls_ecp_group_id tt_curves[] = {
    MBEDTLS_ECP_DP_SECP256R1,
    MBEDTLS_ECP_DP_CURVE25519,
    MBEDTLS_ECP_DP_SECP384R1,
    MBEDTLS_ECP_DP_NONE,
};
#endif

int tt_mb_conf_defaults(mbedtls_ssl_config *cf, bool server,
                        struct tt_state *st)
{
	int r = mbedtls_ssl_config_defaults(
	    cf, server ? MBEDTLS_SSL_IS_SERVER : MBEDTLS_SSL_IS_CLIENT,
	    MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT);
	if (r != 0)
		return r;
	mbedtls_ssl_conf_rng(cf, mbedtls_ctr_drbg_random, &st->drbg);
	mbedtls_ssl_conf_ciphersuites(cf, tt_suites);
#if MBEDTLS_VERSION_NUMBER >= 0x03010000
	mbedtls_ssl_conf_groups(cf, tt_groups);
#else
	mbedtls_ssl_conf_curves(cf, tt_curves);
#endif
#if MBEDTLS_VERSION_NUMBER >= 0x03020000
	mbedtls_ssl_conf_min_tls_version(cf, MBEDTLS_SSL_VERSION_TLS1_2);
#else
	mbedtls_ssl_conf_min_version(cf, MBEDTLS_SSL_MAJOR_VERSION_3,
	                             MBEDTLS_SSL_MINOR_VERSION_3);
#endif
	return 0;
}

/* ------------------------------------------------------------------ */
/* Keys                                                                 */

/* 3.x blinds private-key operations with the caller's generator, made
 * ready here on first need; 2.x takes none. */

int tt_mb_pk_parse(mbedtls_pk_context *key, const unsigned char *buf,
                   size_t len, const unsigned char *pw, size_t pwlen,
                   struct tt_state *st)
{
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
	if (tt_mb_rng_ready(st) != 0)
		return MBEDTLS_ERR_ENTROPY_SOURCE_FAILED;
	return mbedtls_pk_parse_key(key, buf, len, pw, pwlen,
	                            mbedtls_ctr_drbg_random, &st->drbg);
#else
	(void)st;
	return mbedtls_pk_parse_key(key, buf, len, pw, pwlen);
#endif
}

int tt_mb_pk_parse_file(mbedtls_pk_context *key, const char *path,
                        const char *password, struct tt_state *st)
{
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
	if (tt_mb_rng_ready(st) != 0)
		return MBEDTLS_ERR_ENTROPY_SOURCE_FAILED;
	return mbedtls_pk_parse_keyfile(key, path, password,
	                                mbedtls_ctr_drbg_random, &st->drbg);
#else
	(void)st;
	return mbedtls_pk_parse_keyfile(key, path, password);
#endif
}

int tt_mb_pk_check_pair(const mbedtls_pk_context *pub,
                        const mbedtls_pk_context *prv, struct tt_state *st)
{
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
	if (tt_mb_rng_ready(st) != 0)
		return MBEDTLS_ERR_ENTROPY_SOURCE_FAILED;
	return mbedtls_pk_check_pair(pub, prv, mbedtls_ctr_drbg_random,
	                             &st->drbg);
#else
	(void)st;
	return mbedtls_pk_check_pair(pub, prv);
#endif
}

int tt_mb_pbkdf2(mbedtls_md_type_t md, const unsigned char *pw, size_t pwlen,
                 const unsigned char *salt, size_t salt_len,
                 unsigned iterations, uint32_t keylen, unsigned char *out)
{
#if MBEDTLS_VERSION_NUMBER >= 0x03030000
	return mbedtls_pkcs5_pbkdf2_hmac_ext(md, pw, pwlen, salt, salt_len,
	                                     iterations, keylen, out);
#else
	mbedtls_md_context_t ctx;
	mbedtls_md_init(&ctx);
	int r = mbedtls_md_setup(&ctx, mbedtls_md_info_from_type(md), 1);
	if (r == 0)
		r = mbedtls_pkcs5_pbkdf2_hmac(&ctx, pw, pwlen, salt, salt_len,
		                              iterations, keylen, out);
	mbedtls_md_free(&ctx);
	return r;
#endif
}

void tt_mb_pem_der(const mbedtls_pem_context *pc, const unsigned char **der,
                   size_t *len)
{
	*der = pc->TT_PRIV(buf);
	*len = pc->TT_PRIV(buflen);
}

/* ------------------------------------------------------------------ */
/* Handshakes and their failures                                        */

int tt_mb_no_hostname(mbedtls_ssl_context *ssl)
{
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
	/* 3.6.3+ refuses to verify without a name unless told that none is
	 * intended. */
	return mbedtls_ssl_set_hostname(ssl, NULL);
#else
	(void)ssl;
	return 0;
#endif
}

int tt_mb_alert(const mbedtls_ssl_context *ssl)
{
#if MBEDTLS_VERSION_NUMBER < 0x03000000
	return ssl->in_msg != NULL ? ssl->in_msg[1] : 0;
#else
	(void)ssl;
	return 0; /* the record is private in 3.x */
#endif
}

enum tt_mb_err tt_mb_err_kind(int r)
{
#ifdef MBEDTLS_ERR_SSL_NO_CLIENT_CERTIFICATE
	if (r == MBEDTLS_ERR_SSL_NO_CLIENT_CERTIFICATE)
		return TT_MB_NO_CLIENT_CERT;
#endif
#ifdef MBEDTLS_ERR_SSL_NO_APPLICATION_PROTOCOL
	if (r == MBEDTLS_ERR_SSL_NO_APPLICATION_PROTOCOL)
		return TT_MB_NO_ALPN;
#endif
	if (r == MBEDTLS_ERR_SSL_INVALID_RECORD
#ifdef MBEDTLS_ERR_SSL_BAD_HS_CLIENT_HELLO /* 2.x only */
	    || r == MBEDTLS_ERR_SSL_BAD_HS_CLIENT_HELLO ||
	    r == MBEDTLS_ERR_SSL_BAD_HS_SERVER_HELLO
#endif
	)
		return TT_MB_NOT_TLS;
	return TT_MB_OTHER;
}

/* ------------------------------------------------------------------ */
/* Resumption                                                           */

/* The server's session cache: mbedTLS's own, noting on the flow being
 * served that its handshake resumes (mbedTLS offers no query for it). */
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
static int res_cache_get(void *p, unsigned char const *id, size_t id_len,
                         mbedtls_ssl_session *session)
{
	struct tt_resume *r = p;
	int ret = mbedtls_ssl_cache_get(&r->sc, id, id_len, session);
	if (ret == 0)
		tt_res_note(r);
	return ret;
}

static int res_cache_set(void *p, unsigned char const *id, size_t id_len,
                         const mbedtls_ssl_session *session)
{
	struct tt_resume *r = p;
	return mbedtls_ssl_cache_set(&r->sc, id, id_len, session);
}
#else
static int res_cache_get(void *p, mbedtls_ssl_session *session)
{
	struct tt_resume *r = p;
	int ret = mbedtls_ssl_cache_get(&r->sc, session);
	if (ret == 0)
		tt_res_note(r);
	return ret;
}

static int res_cache_set(void *p, const mbedtls_ssl_session *session)
{
	struct tt_resume *r = p;
	return mbedtls_ssl_cache_set(&r->sc, session);
}
#endif

void tt_mb_conf_cache(mbedtls_ssl_config *cf, struct tt_resume *r)
{
	mbedtls_ssl_conf_session_cache(cf, r, res_cache_get, res_cache_set);
}

bool tt_mb_session_resumable(const mbedtls_ssl_session *s)
{
	bool some = s->TT_PRIV(id_len) > 0;
#ifdef MBEDTLS_SSL_SESSION_TICKETS
	some = some || s->TT_PRIV(ticket_len) > 0;
#endif
	return some;
}

/* A resumed session keeps its master secret, a full handshake makes a new
 * one: the offered session's is kept to compare. */
void tt_mb_offer_note(struct tt_flow *tf, const mbedtls_ssl_session *s)
{
	memcpy(tf->offered_master, s->TT_PRIV(master),
	       sizeof(tf->offered_master));
}

bool tt_mb_offer_resumed(const struct tt_flow *tf)
{
	const mbedtls_ssl_session *now = tf->ssl.TT_PRIV(session);
	return now != NULL && memcmp(now->TT_PRIV(master), tf->offered_master,
	                             sizeof(tf->offered_master)) == 0;
}
