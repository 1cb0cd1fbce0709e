/*
 * tls_keypair.c - trust and identities: CA files, directories and PEM
 * (the system bundle found once), certificates and their private keys,
 * with a password or the context's password callback, and messages that
 * say which file failed and why.
 */
#include "tlspriv.h"

#include <mbedtls/pem.h>
#include <mbedtls/pkcs12.h>
#include <mbedtls/pkcs5.h>
#include <mbedtls/platform_util.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void tt_ca_put(struct tt_ca *ca)
{
	if (ca != NULL && --ca->refs == 0) {
		mbedtls_x509_crt_free(&ca->crt);
		free(ca);
	}
}

void tt_id_put(struct tt_id *id)
{
	if (id != NULL && --id->refs == 0) {
		mbedtls_x509_crt_free(&id->crt);
		mbedtls_pk_free(&id->key);
		free(id);
	}
}

/* A NUL-terminated copy: mbedTLS wants PEM with its NUL counted. */
static char *nul_copy(const char *p, size_t len)
{
	char *c = malloc(len + 1);
	if (c != NULL) {
		memcpy(c, p, len);
		c[len] = '\0';
	}
	return c;
}

static int is_dir(const char *path)
{
	struct stat sb;
	return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* Parse a CA file or directory into a new tt_ca.  Returns 0 or an mbedTLS
 * error; a source with some bad entries is fine if one certificate
 * parsed. */
int tt_ca_load(struct tt_ca **out, const char *path, const char *pem,
               size_t len)
{
	struct tt_ca *ca = calloc(1, sizeof(*ca));
	if (ca == NULL)
		return MBEDTLS_ERR_X509_ALLOC_FAILED;
	ca->refs = 1;
	mbedtls_x509_crt_init(&ca->crt);
	int r;
	if (path != NULL) {
		r = is_dir(path) ? mbedtls_x509_crt_parse_path(&ca->crt, path)
		                 : mbedtls_x509_crt_parse_file(&ca->crt, path);
	} else {
		char *c = nul_copy(pem, len);
		r = c != NULL ? mbedtls_x509_crt_parse(
		                    &ca->crt, (const unsigned char *)c, len + 1)
		              : MBEDTLS_ERR_X509_ALLOC_FAILED;
		free(c);
	}
	/* r > 0 counts certificates that failed; an empty chain has
	 * version 0. */
	if (r >= 0 && ca->crt.version == 0)
		r = MBEDTLS_ERR_X509_INVALID_FORMAT;
	if (r < 0) {
		tt_ca_put(ca);
		return r;
	}
	*out = ca;
	return 0;
}

/* mbedTLS's way of saying it cannot decrypt this (the high-level part of
 * a combined error code). */
static bool unavailable(int r)
{
	int hi = r < 0 ? -((-r) & 0xFF80) : 0;
	return hi != 0 && (hi == MBEDTLS_ERR_PK_FEATURE_UNAVAILABLE ||
	                   hi == MBEDTLS_ERR_PKCS5_FEATURE_UNAVAILABLE ||
	                   hi == MBEDTLS_ERR_PKCS12_FEATURE_UNAVAILABLE ||
	                   hi == MBEDTLS_ERR_PEM_FEATURE_UNAVAILABLE ||
	                   hi == MBEDTLS_ERR_CIPHER_FEATURE_UNAVAILABLE);
}

/* One attempt at a key with one password (NULL: none). */
static int key_try(mbedtls_pk_context *key, const char *path, const char *pem,
                   size_t len, const char *password, struct tt_state *st)
{
	const unsigned char *pw = (const unsigned char *)password;
	size_t pwlen = password != NULL ? strlen(password) : 0;
	mbedtls_pk_free(key);
	mbedtls_pk_init(key);
	if (path != NULL)
		return tt_mb_pk_parse_file(key, path, password, st);
	char *c = nul_copy(pem, len);
	if (c == NULL)
		return MBEDTLS_ERR_PK_ALLOC_FAILED;
	int r = tt_mb_pk_parse(key, (const unsigned char *)c, len + 1, pw,
	                       pwlen, st);
	mbedtls_platform_zeroize(c, len);
	free(c);
	return r;
}

/*
 * Parse a key: with the password given, else without one and, if it turns
 * out encrypted, with the context's password callback.  When mbedTLS fails
 * on a key whose encryption tt_p8_inspect() recognises, the scheme decides:
 * PBES2 with AES-CBC is decrypted here, a scheme mbedTLS decrypts failed
 * on the password (a wrong one may also surface as a parse error of the
 * garbage it decrypts to), and any other is TT_KEY_UNSUPPORTED with the
 * scheme in what.  (mbedTLS cannot tell these apart on DER keys: it
 * reports every failure there as an invalid format.)
 */
static int key_parse(mbedtls_pk_context *key, const char *path, const char *pem,
                     size_t len, const char *password, struct tt_state *st,
                     char *what, size_t whatlen)
{
	int r = key_try(key, path, pem, len, password, st);
	if (r == 0 || r == MBEDTLS_ERR_PK_ALLOC_FAILED ||
	    r == MBEDTLS_ERR_PK_FILE_IO_ERROR)
		return r;
	char pw[257];
	const char *used = password;
	struct tt_p8 k;
	bool known = tt_p8_inspect(&k, path, pem, len) == 0;
	if ((known || r == MBEDTLS_ERR_PK_PASSWORD_REQUIRED) && used == NULL &&
	    st->pw_fn != NULL) {
		int n = st->pw_fn(pw, sizeof(pw) - 1,
		                  path != NULL ? path : "(memory)", st->pw_arg);
		if (n >= 0 && (size_t)n < sizeof(pw)) {
			pw[n] = '\0';
			used = pw;
			if (!k.ours)
				r = key_try(key, path, pem, len, pw, st);
		}
	}
	if (known && used == NULL) {
		r = MBEDTLS_ERR_PK_PASSWORD_REQUIRED;
	} else if (known && k.ours) {
		r = tt_p8_decrypt(key, &k, used, st);
	} else if (known && r != 0 && (!k.mbedtls_can || unavailable(r))) {
		snprintf(what, whatlen, "%s", k.what);
		r = TT_KEY_UNSUPPORTED;
	} else if (r != 0 && used != NULL && !unavailable(r) &&
	           r != MBEDTLS_ERR_PK_ALLOC_FAILED &&
	           (known || key_try(key, path, pem, len, NULL, st) ==
	                         MBEDTLS_ERR_PK_PASSWORD_REQUIRED)) {
		r = MBEDTLS_ERR_PK_PASSWORD_MISMATCH;
	}
	tt_p8_free(&k);
	mbedtls_platform_zeroize(pw, sizeof(pw));
	return r;
}

/* A new identity from files (paths) or memory; the message on failure is
 * written to err. */
int tt_id_load(struct tt_id **out, struct tt_state *st, const char *cert_path,
               const char *key_path, const char *cert_pem, size_t cert_len,
               const char *key_pem, size_t key_len, const char *password,
               char *err, size_t errlen)
{
	char m[200];
	struct tt_id *id = calloc(1, sizeof(*id));
	if (id == NULL) {
		snprintf(err, errlen, "out of memory");
		return CONDUIT_ERR_NOMEM;
	}
	id->refs = 1;
	mbedtls_x509_crt_init(&id->crt);
	mbedtls_pk_init(&id->key);
	int r;
	if (cert_path != NULL) {
		r = mbedtls_x509_crt_parse_file(&id->crt, cert_path);
	} else {
		char *c = nul_copy(cert_pem, cert_len);
		r = c != NULL ? mbedtls_x509_crt_parse(&id->crt,
		                                       (const unsigned char *)c,
		                                       cert_len + 1)
		              : MBEDTLS_ERR_X509_ALLOC_FAILED;
		free(c);
	}
	if (r != 0) {
		snprintf(err, errlen, "certificate %s: %s",
		         cert_path != NULL ? cert_path : "(memory)",
		         r > 0 ? "some certificates did not parse"
		               : tt_mbed_text(r, m, sizeof(m)));
		tt_id_put(id);
		return CONDUIT_ERR_CERT;
	}
	char what[200] = "";
	r = key_parse(&id->key, key_path, key_pem, key_len, password, st, what,
	              sizeof(what));
	if (r != 0) {
		const char *kname = key_path != NULL ? key_path : "(memory)";
		if (r == TT_KEY_UNSUPPORTED || unavailable(r))
			snprintf(
			    err, errlen,
			    "key %s: encrypted with %s, which this build "
			    "(mbedTLS %s) cannot decrypt; re-encrypt it with "
			    "`openssl pkey -in KEY -aes256 -out NEW` (PBES2, "
			    "PBKDF2, AES-256-CBC) or store it unencrypted",
			    kname,
			    r == TT_KEY_UNSUPPORTED
			        ? what
			        : tt_mbed_text(r, m, sizeof(m)),
			    MBEDTLS_VERSION_STRING);
		else
			snprintf(err, errlen, "key %s: %s", kname,
			         r == MBEDTLS_ERR_PK_PASSWORD_REQUIRED
			             ? "the key is encrypted and no password "
			               "was given"
			         : r == MBEDTLS_ERR_PK_PASSWORD_MISMATCH
			             ? "wrong password"
			             : tt_mbed_text(r, m, sizeof(m)));
		tt_id_put(id);
		return CONDUIT_ERR_CERT;
	}
	r = tt_mb_pk_check_pair(&id->crt.pk, &id->key, st);
	if (r != 0) {
		snprintf(err, errlen,
		         "key %s does not belong to certificate %s",
		         key_path != NULL ? key_path : "(memory)",
		         cert_path != NULL ? cert_path : "(memory)");
		tt_id_put(id);
		return CONDUIT_ERR_CERT;
	}
	*out = id;
	return CONDUIT_OK;
}

/* The system CA bundle: the first of the usual places that parses. */
int tt_system_ca(struct tt_state *st, char *err, size_t errlen)
{
	static const char *const places[] = {
	    "/etc/ssl/certs/ca-certificates.crt", /* Debian, Ubuntu, Alpine */
	    "/etc/pki/tls/certs/ca-bundle.crt",   /* Fedora, RHEL */
	    "/etc/ssl/cert.pem",                  /* BSDs, macOS */
	    "/etc/ssl/certs",                     /* a hashed directory */
	};
	if (st->sys_ca != NULL)
		return CONDUIT_OK;
	for (size_t i = 0; i < sizeof(places) / sizeof(places[0]); i++)
		if (tt_ca_load(&st->sys_ca, places[i], NULL, 0) == 0)
			return CONDUIT_OK;
	snprintf(err, errlen,
	         "no system CA bundle found (looked in %s and others); set "
	         "one with conduit_tls_set_ca_file()",
	         places[0]);
	return CONDUIT_ERR_CERT;
}
