/*
 * tls_conninfo.c - what a TLS flow tells once its handshake is done:
 * version, cipher suite, ALPN protocol, server name, whether it resumed,
 * and the peer certificate's subject and alternative names.
 */
#include "tlspriv.h"

#include <mbedtls/asn1.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* Queries                                                              */

/* The TLS flow behind f once its handshake is done, else NULL. */
struct tt_flow *tt_done_tls(conduit_flow *f)
{
	if (!conduit_tls_is_tls(f))
		return NULL;
	struct tt_flow *tf = tf_of(f);
	return tf->hs_done ? tf : NULL;
}

const char *conduit_tls_version(conduit_flow *f)
{
	struct tt_flow *tf = tt_done_tls(f);
	return tf != NULL ? mbedtls_ssl_get_version(&tf->ssl) : NULL;
}

const char *conduit_tls_cipher(conduit_flow *f)
{
	struct tt_flow *tf = tt_done_tls(f);
	return tf != NULL ? mbedtls_ssl_get_ciphersuite(&tf->ssl) : NULL;
}

const char *conduit_tls_alpn(conduit_flow *f)
{
	struct tt_flow *tf = tt_done_tls(f);
	return tf != NULL ? mbedtls_ssl_get_alpn_protocol(&tf->ssl) : NULL;
}

const char *conduit_tls_servername(conduit_flow *f)
{
	struct tt_flow *tf = tt_done_tls(f);
	return tf != NULL && tf->sni_set ? tf->name : NULL;
}

/* The peer's verified certificate, or a status saying why there is none. */
static int peer_cert(conduit_flow *f, char *buf, size_t len,
                     const mbedtls_x509_crt **out)
{
	if (f == NULL || buf == NULL || len == 0)
		return CONDUIT_ERR_INVALID;
	buf[0] = '\0';
	if (!conduit_tls_is_tls(f))
		return CONDUIT_ERR_UNSUPPORTED;
	struct tt_flow *tf = tt_done_tls(f);
	if (tf == NULL)
		return CONDUIT_ERR_STATE;
	const mbedtls_x509_crt *crt = mbedtls_ssl_get_peer_cert(&tf->ssl);
	if (crt == NULL)
		return CONDUIT_ERR_NOT_FOUND;
	if (mbedtls_ssl_get_verify_result(&tf->ssl) != 0)
		return CONDUIT_ERR_CERT;
	/* An insecure client verified nothing, whatever the flags say. */
	if (!tf->server && !tf->conf->verify)
		return CONDUIT_ERR_CERT;
	*out = crt;
	return CONDUIT_OK;
}

int conduit_tls_peer_subject(conduit_flow *f, char *buf, size_t len)
{
	const mbedtls_x509_crt *crt = NULL;
	int rc = peer_cert(f, buf, len, &crt);
	if (rc != CONDUIT_OK)
		return rc;
	int n = mbedtls_x509_dn_gets(buf, len, &crt->subject);
	if (n < 0 || (size_t)n >= len) {
		buf[0] = '\0';
		return CONDUIT_ERR_INVALID;
	}
	return CONDUIT_OK;
}

int conduit_tls_peer_san(conduit_flow *f, size_t i, char *buf, size_t len)
{
	const mbedtls_x509_crt *crt = NULL;
	int rc = peer_cert(f, buf, len, &crt);
	if (rc != CONDUIT_OK)
		return rc;
	const mbedtls_x509_sequence *s = &crt->subject_alt_names;
	for (size_t k = 0; k < i && s != NULL; k++)
		s = s->next;
	if (s == NULL || s->buf.p == NULL)
		return CONDUIT_ERR_NOT_FOUND;
	int tag = s->buf.tag & MBEDTLS_ASN1_TAG_VALUE_MASK;
	const char *kind = tag == 1   ? "email"
	                   : tag == 2 ? "DNS"
	                   : tag == 6 ? "URI"
	                              : NULL;
	int n;
	if (kind != NULL) {
		n = snprintf(buf, len, "%s:%.*s", kind, (int)s->buf.len,
		             (const char *)s->buf.p);
	} else if (tag == 7 && (s->buf.len == 4 || s->buf.len == 16)) {
		char a[INET6_ADDRSTRLEN];
		inet_ntop(s->buf.len == 4 ? AF_INET : AF_INET6, s->buf.p, a,
		          sizeof(a));
		n = snprintf(buf, len, "IP:%s", a);
	} else {
		n = snprintf(buf, len, "other:%d", tag);
	}
	if (n < 0 || (size_t)n >= len) {
		buf[0] = '\0';
		return CONDUIT_ERR_INVALID;
	}
	return CONDUIT_OK;
}

int conduit_tls_resumed(conduit_flow *f)
{
	struct tt_flow *tf = tt_done_tls(f);
	return tf != NULL && tf->resumed;
}
