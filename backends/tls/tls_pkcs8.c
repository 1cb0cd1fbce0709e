/*
 * tls_pkcs8.c - encrypted private keys that mbedTLS cannot open itself.
 *
 * OpenSSL 3 encrypts private keys (openssl pkey -aes256, genpkey -aes256)
 * as PKCS#8 PBES2 with PBKDF2, the PRF hmacWithSHA256 and AES-256-CBC.
 * mbedTLS 2.28 knows that PRF but decrypts PBES2 with DES and 3DES only;
 * it answers "feature unavailable", which looked like a wrong password.
 * So when mbedTLS says it cannot, the key's algorithm identifiers are read
 * here (EncryptedPrivateKeyInfo, RFC 5958; PBES2 and PBKDF2, RFC 8018):
 * PBES2 with PBKDF2 and AES-CBC is decrypted here with mbedTLS's own
 * PBKDF2 and AES, and any other scheme is named in the message rather
 * than blaming the password.
 */
#include "tlspriv.h"

#include <mbedtls/asn1.h>
#include <mbedtls/oid.h>
#include <mbedtls/pem.h>
#include <mbedtls/platform_util.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TT_MAX_ITERATIONS 10000000 /* PBKDF2; OpenSSL makes 2048 */
#define TT_MAX_KEY_FILE   (1u << 20)

#define TT_OID(s) s, sizeof(s) - 1
static const struct tt_oid {
	const char *der; /* the OID's contents octets */
	size_t len;
	const char *name;
	mbedtls_md_type_t md;         /* a PBKDF2 PRF */
	mbedtls_cipher_type_t cipher; /* an AES-CBC cipher decrypted here */
	size_t keylen;
} tt_oids[] = {
    {TT_OID("\x2a\x86\x48\x86\xf7\x0d\x01\x05\x0d"), "PBES2", 0, 0, 0},
    {TT_OID("\x2a\x86\x48\x86\xf7\x0d\x01\x05\x0c"), "PBKDF2", 0, 0, 0},
    {TT_OID("\x2b\x06\x01\x04\x01\xda\x47\x04\x0b"), "scrypt", 0, 0, 0},
    {TT_OID("\x2a\x86\x48\x86\xf7\x0d\x02\x07"), "hmacWithSHA1",
     MBEDTLS_MD_SHA1, 0, 0},
    {TT_OID("\x2a\x86\x48\x86\xf7\x0d\x02\x08"), "hmacWithSHA224",
     MBEDTLS_MD_SHA224, 0, 0},
    {TT_OID("\x2a\x86\x48\x86\xf7\x0d\x02\x09"), "hmacWithSHA256",
     MBEDTLS_MD_SHA256, 0, 0},
    {TT_OID("\x2a\x86\x48\x86\xf7\x0d\x02\x0a"), "hmacWithSHA384",
     MBEDTLS_MD_SHA384, 0, 0},
    {TT_OID("\x2a\x86\x48\x86\xf7\x0d\x02\x0b"), "hmacWithSHA512",
     MBEDTLS_MD_SHA512, 0, 0},
    {TT_OID("\x60\x86\x48\x01\x65\x03\x04\x01\x02"), "aes-128-cbc", 0,
     MBEDTLS_CIPHER_AES_128_CBC, 16},
    {TT_OID("\x60\x86\x48\x01\x65\x03\x04\x01\x16"), "aes-192-cbc", 0,
     MBEDTLS_CIPHER_AES_192_CBC, 24},
    {TT_OID("\x60\x86\x48\x01\x65\x03\x04\x01\x2a"), "aes-256-cbc", 0,
     MBEDTLS_CIPHER_AES_256_CBC, 32},
    {TT_OID("\x2a\x86\x48\x86\xf7\x0d\x03\x07"), "des-ede3-cbc", 0, 0, 0},
    {TT_OID("\x2b\x0e\x03\x02\x07"), "des-cbc", 0, 0, 0},
    {TT_OID("\x2a\x86\x48\x86\xf7\x0d\x01\x0c\x01\x03"),
     "pbeWithSHAAnd3-KeyTripleDES-CBC", 0, 0, 0},
    {TT_OID("\x2a\x86\x48\x86\xf7\x0d\x01\x0c\x01\x04"),
     "pbeWithSHAAnd2-KeyTripleDES-CBC", 0, 0, 0},
};

/* Ciphers and schemes mbedTLS decrypts itself (PBES2 and PKCS#12). */
static bool mbedtls_decrypts(const struct tt_oid *o)
{
	static const char *const names[] = {"des-ede3-cbc", "des-cbc",
	                                    "pbeWithSHAAnd3-KeyTripleDES-CBC",
	                                    "pbeWithSHAAnd2-KeyTripleDES-CBC"};
	for (size_t i = 0; o != NULL && i < sizeof(names) / sizeof(names[0]);
	     i++)
		if (strcmp(o->name, names[i]) == 0)
			return true;
	return false;
}
#undef TT_OID

static const struct tt_oid *oid_find(const mbedtls_asn1_buf *oid)
{
	for (size_t i = 0; i < sizeof(tt_oids) / sizeof(tt_oids[0]); i++)
		if (oid->len == tt_oids[i].len &&
		    memcmp(oid->p, tt_oids[i].der, oid->len) == 0)
			return &tt_oids[i];
	return NULL;
}

/* An OID's name, or its dotted form for one not in the table. */
static const char *oid_text(const mbedtls_asn1_buf *oid, char *buf, size_t len)
{
	const struct tt_oid *o = oid_find(oid);
	if (o != NULL)
		return o->name;
	if (mbedtls_oid_get_numeric_string(buf, len, oid) < 0)
		snprintf(buf, len, "an unknown algorithm");
	return buf;
}

#define TT_SEQ (MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE)

/* PBES2-params: the key derivation and the cipher (RFC 8018 A.4). */
static int p8_pbes2(struct tt_p8 *k, const mbedtls_asn1_buf *params)
{
	mbedtls_asn1_buf kdf, kdfp, enc, encp, prf, prfp;
	unsigned char *p = params->p, *end = p + params->len;
	size_t n;
	char b1[64], b2[64], b3[64];
	if (params->tag != TT_SEQ ||
	    mbedtls_asn1_get_alg(&p, end, &kdf, &kdfp) ||
	    mbedtls_asn1_get_alg(&p, end, &enc, &encp))
		return -1;
	const struct tt_oid *ko = oid_find(&kdf), *eo = oid_find(&enc);
	const char *prf_name = NULL;
	if (ko != NULL && strcmp(ko->name, "PBKDF2") == 0) {
		/* PBKDF2-params: salt, iterationCount, keyLength OPTIONAL,
		 * prf DEFAULT hmacWithSHA1 (RFC 8018 A.2). */
		unsigned char *q = kdfp.p, *qend = q + kdfp.len;
		int keylen = 0;
		if (kdfp.tag != TT_SEQ ||
		    mbedtls_asn1_get_tag(&q, qend, &n,
		                         MBEDTLS_ASN1_OCTET_STRING))
			return -1;
		k->salt = q;
		k->salt_len = n;
		q += n;
		if (mbedtls_asn1_get_int(&q, qend, &k->iterations))
			return -1;
		if (q < qend && *q == MBEDTLS_ASN1_INTEGER &&
		    mbedtls_asn1_get_int(&q, qend, &keylen))
			return -1;
		k->md = MBEDTLS_MD_SHA1;
		prf_name = "hmacWithSHA1";
		if (q < qend) {
			if (mbedtls_asn1_get_alg(&q, qend, &prf, &prfp))
				return -1;
			const struct tt_oid *po = oid_find(&prf);
			k->md = po != NULL ? po->md : MBEDTLS_MD_NONE;
			prf_name = oid_text(&prf, b3, sizeof(b3));
		}
		if (eo != NULL && eo->cipher != MBEDTLS_CIPHER_NONE &&
		    encp.tag == MBEDTLS_ASN1_OCTET_STRING && encp.len == 16 &&
		    (keylen == 0 || (size_t)keylen == eo->keylen) &&
		    k->md != MBEDTLS_MD_NONE &&
		    mbedtls_md_info_from_type(k->md) != NULL &&
		    mbedtls_cipher_info_from_type(eo->cipher) != NULL) {
			k->ours = true;
			k->cipher = eo->cipher;
			k->keylen = eo->keylen;
			k->iv = encp.p;
		}
		k->mbedtls_can = mbedtls_decrypts(eo) &&
		                 k->md != MBEDTLS_MD_NONE &&
		                 mbedtls_md_info_from_type(k->md) != NULL;
	}
	snprintf(k->what, sizeof(k->what), "PBES2 (%.60s%s%.60s, %.60s)",
	         oid_text(&kdf, b1, sizeof(b1)), prf_name != NULL ? ", " : "",
	         prf_name != NULL ? prf_name : "",
	         oid_text(&enc, b2, sizeof(b2)));
	return 0;
}

/*
 * Read how a key is encrypted: a PEM "ENCRYPTED PRIVATE KEY" or DER
 * EncryptedPrivateKeyInfo (PKCS#8), or a legacy PEM key's DEK-Info.
 * 0 with k->what set, or -1 when the key is none of these.  k->der is
 * the caller's to free with tt_p8_free().
 */
int tt_p8_inspect(struct tt_p8 *k, const char *path, const char *pem,
                  size_t len)
{
	memset(k, 0, sizeof(*k));
	unsigned char *data = NULL;
	size_t dlen = 0;
	if (path != NULL) {
		FILE *fp = fopen(path, "rb");
		if (fp == NULL)
			return -1;
		data = malloc(TT_MAX_KEY_FILE + 1);
		if (data != NULL)
			dlen = fread(data, 1, TT_MAX_KEY_FILE, fp);
		fclose(fp);
	} else if ((data = malloc(len + 1)) != NULL) {
		memcpy(data, pem, len);
		dlen = len;
	}
	if (data == NULL)
		return -1;
	data[dlen] = '\0';
	int rc = -1;
	const char *dek = strstr((const char *)data, "DEK-Info: ");
	if (strstr((const char *)data,
	           "-----BEGIN ENCRYPTED PRIVATE KEY-----")) {
		mbedtls_pem_context pc;
		const unsigned char *der = NULL;
		size_t used = 0, der_len = 0;
		mbedtls_pem_init(&pc);
		if (mbedtls_pem_read_buffer(
		        &pc, "-----BEGIN ENCRYPTED PRIVATE KEY-----",
		        "-----END ENCRYPTED PRIVATE KEY-----", data, NULL, 0,
		        &used) == 0) {
			tt_mb_pem_der(&pc, &der, &der_len);
			if ((k->der = malloc(der_len)) != NULL) {
				k->der_len = der_len;
				memcpy(k->der, der, der_len);
			}
		}
		mbedtls_pem_free(&pc);
	} else if (dek != NULL) {
		size_t n = strcspn(dek + 10, ",\r\n");
		snprintf(k->what, sizeof(k->what),
		         "legacy PEM encryption (%.*s)", (int)(n < 64 ? n : 64),
		         dek + 10);
		/* mbedTLS has DES, 3DES and AES-CBC for these; it says
		 * "unavailable" for others. */
		k->mbedtls_can = true;
		rc = 0;
	} else if (dlen > 0 && data[0] == TT_SEQ) {
		k->der = data;
		k->der_len = dlen;
		data = NULL;
	}
	mbedtls_platform_zeroize(data, data != NULL ? dlen : 0);
	free(data);
	if (k->der == NULL)
		return rc;

	/* EncryptedPrivateKeyInfo: algorithm, then the encrypted key. */
	mbedtls_asn1_buf alg, params;
	unsigned char *p = k->der, *end = p + k->der_len;
	size_t n;
	char b[64];
	if (mbedtls_asn1_get_tag(&p, end, &n, TT_SEQ))
		return -1;
	end = p + n;
	if (mbedtls_asn1_get_alg(&p, end, &alg, &params) ||
	    mbedtls_asn1_get_tag(&p, end, &n, MBEDTLS_ASN1_OCTET_STRING))
		return -1;
	k->data = p;
	k->data_len = n;
	const struct tt_oid *o = oid_find(&alg);
	if (o != NULL && strcmp(o->name, "PBES2") == 0)
		return p8_pbes2(k, &params);
	snprintf(k->what, sizeof(k->what), "%s", oid_text(&alg, b, sizeof(b)));
	k->mbedtls_can = mbedtls_decrypts(o);
	return 0;
}

void tt_p8_free(struct tt_p8 *k)
{
	if (k->der != NULL) {
		mbedtls_platform_zeroize(k->der, k->der_len);
		free(k->der);
	}
	k->der = NULL;
}

/* Decrypt a PBES2 key with password and parse it: 0, or
 * MBEDTLS_ERR_PK_PASSWORD_MISMATCH when the password does not open it
 * (the padding is wrong, or what it opens to is no key). */
int tt_p8_decrypt(mbedtls_pk_context *key, const struct tt_p8 *k,
                  const char *password, struct tt_state *st)
{
	unsigned char dk[32];
	size_t pwlen = strlen(password);
	if (k->iterations < 1 || k->iterations > TT_MAX_ITERATIONS ||
	    k->keylen > sizeof(dk))
		return MBEDTLS_ERR_PK_KEY_INVALID_FORMAT;
	int r = tt_mb_pbkdf2(k->md, (const unsigned char *)password, pwlen,
	                     k->salt, k->salt_len, (unsigned)k->iterations,
	                     (uint32_t)k->keylen, dk);
	unsigned char *plain = r == 0 ? malloc(k->data_len + 16) : NULL;
	size_t plen = 0;
	if (r == 0 && plain == NULL)
		r = MBEDTLS_ERR_PK_ALLOC_FAILED;
	if (r == 0) {
		mbedtls_cipher_context_t cc;
		mbedtls_cipher_init(&cc);
		r = mbedtls_cipher_setup(
		    &cc, mbedtls_cipher_info_from_type(k->cipher));
		if (r == 0)
			r = mbedtls_cipher_setkey(&cc, dk, (int)(k->keylen * 8),
			                          MBEDTLS_DECRYPT);
		if (r == 0)
			r = mbedtls_cipher_set_padding_mode(
			    &cc, MBEDTLS_PADDING_PKCS7);
		if (r == 0)
			r = mbedtls_cipher_crypt(&cc, k->iv, 16, k->data,
			                         k->data_len, plain, &plen);
		mbedtls_cipher_free(&cc);
		/* A wrong key shows as bad padding, or (1 time in 256 or
		 * so) as bytes that are no key. */
		if (r == MBEDTLS_ERR_CIPHER_INVALID_PADDING)
			r = MBEDTLS_ERR_PK_PASSWORD_MISMATCH;
	}
	mbedtls_platform_zeroize(dk, sizeof(dk));
	if (r == 0) {
		mbedtls_pk_free(key);
		mbedtls_pk_init(key);
		r = tt_mb_pk_parse(key, plain, plen, NULL, 0, st);
		if (r != 0)
			r = MBEDTLS_ERR_PK_PASSWORD_MISMATCH;
	}
	if (plain != NULL) {
		mbedtls_platform_zeroize(plain, k->data_len + 16);
		free(plain);
	}
	return r;
}
