/*
 * certs.c - throwaway certificates made in memory (see certs.h).
 */
#include "certs.h"

#include <mbedtls/asn1write.h>
#include <mbedtls/ecp.h>
#include <mbedtls/oid.h>
#include <mbedtls/version.h>
#include <mbedtls/x509_crt.h>

#include <stdint.h>
#include <string.h>
#include <time.h>

/* subjectAltName and extKeyUsage values, DER written back to front. */

/* Close the len bytes written before p into a SEQUENCE and hand them out;
 * an mbedTLS status on failure. */
static int der_seq(unsigned char *p, unsigned char *buf, size_t len,
                   const unsigned char **out, size_t *outlen)
{
	int r = mbedtls_asn1_write_len(&p, buf, len);
	if (r < 0)
		return r;
	len += (size_t)r;
	r = mbedtls_asn1_write_tag(
	    &p, buf, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE);
	if (r < 0)
		return r;
	*out = p;
	*outlen = len + (size_t)r;
	return 0;
}

static int der_san(const struct tool_cert *c, unsigned char *buf, size_t size,
                   const unsigned char **out, size_t *outlen)
{
	unsigned char *p = buf + size;
	size_t len = 0;
	int r;
	/* GeneralName: [7] iPAddress, [2] dNSName. */
	for (size_t i = c->nip4; i-- > 0;) {
		r = mbedtls_asn1_write_tagged_string(
		    &p, buf, MBEDTLS_ASN1_CONTEXT_SPECIFIC | 7,
		    (const char *)c->ip4[i], 4);
		if (r < 0)
			return r;
		len += (size_t)r;
	}
	for (size_t i = c->ndns; i-- > 0;) {
		r = mbedtls_asn1_write_tagged_string(
		    &p, buf, MBEDTLS_ASN1_CONTEXT_SPECIFIC | 2, c->dns[i],
		    strlen(c->dns[i]));
		if (r < 0)
			return r;
		len += (size_t)r;
	}
	return der_seq(p, buf, len, out, outlen);
}

static int der_eku(unsigned char *buf, size_t size, const unsigned char **out,
                   size_t *outlen)
{
	unsigned char *p = buf + size;
	int r =
	    mbedtls_asn1_write_oid(&p, buf, MBEDTLS_OID_SERVER_AUTH,
	                           MBEDTLS_OID_SIZE(MBEDTLS_OID_SERVER_AUTH));
	if (r < 0)
		return r;
	return der_seq(p, buf, (size_t)r, out, outlen);
}

static int set_serial(mbedtls_x509write_cert *w, unsigned char serial)
{
#if MBEDTLS_VERSION_NUMBER >= 0x03040000
	return mbedtls_x509write_crt_set_serial_raw(w, &serial, 1);
#else
	mbedtls_mpi m;
	mbedtls_mpi_init(&m);
	int r = mbedtls_mpi_lset(&m, serial);
	if (r == 0)
		r = mbedtls_x509write_crt_set_serial(w, &m);
	mbedtls_mpi_free(&m);
	return r;
#endif
}

int tool_key_new(mbedtls_pk_context *k, mbedtls_ctr_drbg_context *drbg)
{
	int r =
	    mbedtls_pk_setup(k, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY));
	if (r == 0)
		r = mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1,
		                        mbedtls_pk_ec(*k),
		                        mbedtls_ctr_drbg_random, drbg);
	return r;
}

/* The extensions beyond basicConstraints. */
static int cert_extensions(mbedtls_x509write_cert *w, const struct tool_cert *c)
{
	int r = 0;
	if (c->key_usage)
		r = mbedtls_x509write_crt_set_key_usage(
		    w, c->ca ? MBEDTLS_X509_KU_KEY_CERT_SIGN |
		                   MBEDTLS_X509_KU_CRL_SIGN
		             : MBEDTLS_X509_KU_DIGITAL_SIGNATURE);
	if (r != 0 || c->ndns + c->nip4 == 0)
		return r;
	unsigned char der[512];
	const unsigned char *v;
	size_t vlen;
	r = der_san(c, der, sizeof(der), &v, &vlen);
	if (r == 0)
		r = mbedtls_x509write_crt_set_extension(
		    w, MBEDTLS_OID_SUBJECT_ALT_NAME,
		    MBEDTLS_OID_SIZE(MBEDTLS_OID_SUBJECT_ALT_NAME), 0, v, vlen);
	if (r == 0)
		r = der_eku(der, sizeof(der), &v, &vlen);
	if (r == 0)
		r = mbedtls_x509write_crt_set_extension(
		    w, MBEDTLS_OID_EXTENDED_KEY_USAGE,
		    MBEDTLS_OID_SIZE(MBEDTLS_OID_EXTENDED_KEY_USAGE), 0, v,
		    vlen);
	return r;
}

int tool_cert_pem(char *pem, size_t size, mbedtls_pk_context *subject_key,
                  mbedtls_pk_context *issuer_key, const struct tool_cert *c,
                  mbedtls_ctr_drbg_context *drbg)
{
	char from[16], to[16];
	time_t t = time(NULL);
	struct tm tm;
	/* Valid from an hour ago (clocks differ) for a day. */
	time_t a = t - 3600, b = t + 86400;
	gmtime_r(&a, &tm);
	strftime(from, sizeof(from), "%Y%m%d%H%M%S", &tm);
	gmtime_r(&b, &tm);
	strftime(to, sizeof(to), "%Y%m%d%H%M%S", &tm);

	mbedtls_x509write_cert w;
	mbedtls_x509write_crt_init(&w);
	mbedtls_x509write_crt_set_version(&w, MBEDTLS_X509_CRT_VERSION_3);
	mbedtls_x509write_crt_set_md_alg(&w, MBEDTLS_MD_SHA256);
	mbedtls_x509write_crt_set_subject_key(&w, subject_key);
	mbedtls_x509write_crt_set_issuer_key(&w, issuer_key);
	int r = mbedtls_x509write_crt_set_subject_name(&w, c->subject);
	if (r == 0)
		r = mbedtls_x509write_crt_set_issuer_name(&w, c->issuer);
	if (r == 0)
		r = set_serial(&w, c->serial);
	if (r == 0)
		r = mbedtls_x509write_crt_set_validity(&w, from, to);
	if (r == 0)
		r = mbedtls_x509write_crt_set_basic_constraints(
		    &w, c->ca ? 1 : 0, c->ca ? 0 : -1);
	if (r == 0)
		r = cert_extensions(&w, c);
	if (r == 0)
		r = mbedtls_x509write_crt_pem(&w, (unsigned char *)pem, size,
		                              mbedtls_ctr_drbg_random, drbg);
	mbedtls_x509write_crt_free(&w);
	return r;
}
