/*
 * tls_verify.c - what a certificate is checked against, beyond mbedTLS's
 * own chain check: the name a client verifies (a DNS name, or an IP
 * literal matched against IP-address names), the identity a server picks
 * by SNI, and verification failures in words.
 */
#include "tlspriv.h"

#include <mbedtls/asn1.h>
#include <mbedtls/oid.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Verification flags in words, joined with ", " and a last ", and ". */
void tt_verify_words(uint32_t flags, const char *name, char *buf, size_t len)
{
	static const struct {
		uint32_t bit;
		const char *text;
	} words[] = {
	    {MBEDTLS_X509_BADCERT_NOT_TRUSTED,
	     "the certificate is not trusted (issuer unknown)"},
	    {MBEDTLS_X509_BADCERT_EXPIRED, "the certificate has expired"},
	    {MBEDTLS_X509_BADCERT_FUTURE, "the certificate is not valid yet"},
	    {MBEDTLS_X509_BADCERT_REVOKED, "the certificate is revoked"},
	    {MBEDTLS_X509_BADCERT_MISSING, "no certificate was sent"},
	    {MBEDTLS_X509_BADCERT_SKIP_VERIFY, "verification was skipped"},
	    {MBEDTLS_X509_BADCERT_KEY_USAGE,
	     "the certificate's key usage does not allow this"},
	    {MBEDTLS_X509_BADCERT_EXT_KEY_USAGE,
	     "the certificate is not for this purpose (extended key "
	     "usage)"},
	    {MBEDTLS_X509_BADCERT_BAD_MD,
	     "the certificate is signed with an unacceptable hash"},
	    {MBEDTLS_X509_BADCERT_BAD_PK,
	     "the certificate's key type is not acceptable"},
	    {MBEDTLS_X509_BADCERT_BAD_KEY, "the certificate's key is too weak"},
	    {MBEDTLS_X509_BADCERT_OTHER, "the certificate is unacceptable"},
	    {MBEDTLS_X509_BADCRL_EXPIRED, "a revocation list has expired"},
	};
	size_t n = 0, count = 0, total = 0;
	uint32_t known = MBEDTLS_X509_BADCERT_CN_MISMATCH;
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		known |= words[i].bit;
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		total += (flags & words[i].bit) != 0;
	total += (flags & MBEDTLS_X509_BADCERT_CN_MISMATCH) != 0;
	total += (flags & ~known) != 0;
	buf[0] = '\0';
#define TT_SEP (count == 0 ? "" : count + 1 == total ? ", and " : ", ")
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
		if (!(flags & words[i].bit) || n >= len)
			continue;
		n += (size_t)snprintf(buf + n, len - n, "%s%s", TT_SEP,
		                      words[i].text);
		count++;
	}
	if ((flags & MBEDTLS_X509_BADCERT_CN_MISMATCH) && n < len) {
		n += (size_t)snprintf(
		    buf + n, len - n, "%sits names do not include %s", TT_SEP,
		    name != NULL && name[0] ? name : "the name asked for");
		count++;
	}
	if ((flags & ~known) && n < len)
		snprintf(buf + n, len - n, "%sverification flags 0x%x", TT_SEP,
		         (unsigned)(flags & ~known));
#undef TT_SEP
}

/* Does a DNS name of a certificate (pattern, len bytes) cover name?  A
 * wildcard stands for exactly one whole label, leftmost only. */
static bool dns_match(const unsigned char *pattern, size_t len,
                      const char *name)
{
	const char *p = (const char *)pattern;
	if (len > 2 && p[0] == '*' && p[1] == '.') {
		const char *dot = strchr(name, '.');
		return dot != NULL && dot != name && strlen(dot) == len - 1 &&
		       strncasecmp(dot, p + 1, len - 1) == 0;
	}
	return strlen(name) == len && memchr(p, '*', len) == NULL &&
	       strncasecmp(name, p, len) == 0;
}

/* Does an identity's leaf carry name?  DNS names first; the subject's CN
 * only when there are none (RFC 6125 6.4.4). */
static bool id_names(const struct tt_id *id, const char *name)
{
	bool any = false;
	for (const mbedtls_x509_sequence *s = &id->crt.subject_alt_names;
	     s != NULL && s->buf.p != NULL; s = s->next) {
		if ((s->buf.tag & MBEDTLS_ASN1_TAG_VALUE_MASK) != 2)
			continue;
		any = true;
		if (dns_match(s->buf.p, s->buf.len, name))
			return true;
	}
	if (any)
		return false;
	for (const mbedtls_x509_name *n = &id->crt.subject; n != NULL;
	     n = n->next)
		if (n->oid.p != NULL &&
		    MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &n->oid) == 0 &&
		    dns_match(n->val.p, n->val.len, name))
			return true;
	return false;
}

/* The server's SNI callback: remember the name and answer with the first
 * identity that carries it; the default (the first) otherwise, which the
 * configuration already holds. */
int tt_sni(void *arg, mbedtls_ssl_context *ssl, const unsigned char *name,
           size_t len)
{
	struct tt_conf *c = arg;
	struct tt_flow *tf =
	    (struct tt_flow *)((char *)ssl - offsetof(struct tt_flow, ssl));
	if (len >= sizeof(tf->name) || memchr(name, '\0', len) != NULL)
		return -1;
	memcpy(tf->name, name, len);
	tf->name[len] = '\0';
	tf->sni_set = true;
	for (size_t i = 0; i < c->nids; i++) {
		if (!id_names(c->ids[i], tf->name))
			continue;
		if (i == 0)
			return 0; /* the configuration's own */
		return mbedtls_ssl_set_hs_own_cert(ssl, &c->ids[i]->crt,
		                                   &c->ids[i]->key);
	}
	return 0;
}

/* Client to an IP literal: mbedTLS matches DNS names only, so the leaf's
 * IP-address names are checked here. */
int tt_verify_ip(void *arg, mbedtls_x509_crt *crt, int depth, uint32_t *flags)
{
	struct tt_flow *tf = arg;
	if (depth != 0)
		return 0;
	size_t want = tf->ip_family == AF_INET ? 4 : 16;
	for (const mbedtls_x509_sequence *s = &crt->subject_alt_names;
	     s != NULL && s->buf.p != NULL; s = s->next) {
		/* [7] iPAddress, context-specific primitive */
		if ((s->buf.tag & MBEDTLS_ASN1_TAG_VALUE_MASK) == 7 &&
		    s->buf.len == want && memcmp(s->buf.p, tf->ip, want) == 0)
			return 0;
	}
	*flags |= MBEDTLS_X509_BADCERT_CN_MISMATCH;
	return 0;
}

/* The name a client checks: servername=, else a DNS host; an IP literal
 * (as host or servername) is checked against IP-address names instead. */
void tt_client_name(struct tt_flow *tf, const conduit_endpoint *ep)
{
	const char *sn = conduit_endpoint_option(ep, "servername");
	const char *host = sn != NULL ? sn : conduit_endpoint_host(ep);
	enum conduit_host_kind kind =
	    sn != NULL ? CONDUIT_HOST_NAME : conduit_endpoint_host_kind(ep);
	if (kind == CONDUIT_HOST_NONE || host[0] == '\0')
		return;
	if (inet_pton(AF_INET, host, tf->ip) == 1)
		tf->ip_family = AF_INET;
	else if (inet_pton(AF_INET6, host, tf->ip) == 1)
		tf->ip_family = AF_INET6;
	snprintf(tf->name, sizeof(tf->name), "%s", host);
	tf->name_set = true;
}
