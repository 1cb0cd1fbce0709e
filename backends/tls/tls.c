/*
 * tls.c - TLS as a layer over any flow, with mbedTLS.
 *
 * A TLS flow (struct tt_flow) owns an inner flow and talks to it only
 * through conduit_read() / conduit_write(), from mbedTLS's send and receive
 * callbacks, so the same code runs over TCP, Unix sockets and whatever
 * transport comes next.  The pieces:
 *
 *   - per context (struct tt_state): the settings of tls.h, the random
 *     generator (CTR-DRBG fed by conduit_platform_entropy(), so a unikernel
 *     supplies its own entropy), the system CA bundle parsed once, and a
 *     small cache of built mbedtls_ssl_config objects;
 *   - per configuration (struct tt_conf): an mbedtls_ssl_config for one
 *     role and one set of URI options.  Configurations are reference
 *     counted: a flow holds the one it started with, and changing a
 *     setting only drops the cache's references, so a configuration is
 *     never changed while a flow uses it and is freed with its last user;
 *   - per flow: an mbedtls_ssl_context and an output queue;
 *   - resumption: a server's ticket key and session cache (struct
 *     tt_resume) belong to one generation of the settings, so a setting
 *     that changes who may connect (client auth, trust, identities) also
 *     retires every ticket and cached session; a client's sessions are
 *     kept in a small store on the context, keyed by server name and port.
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
#include "core.h"

#include <conduit/platform.h>
#include <conduit/tls.h>

#include <mbedtls/asn1.h>
#include <mbedtls/cipher.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/md.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/oid.h>
#include <mbedtls/pem.h>
#include <mbedtls/pk.h>
#include <mbedtls/pkcs12.h>
#include <mbedtls/pkcs5.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_cache.h>
#include <mbedtls/ssl_ticket.h>
#include <mbedtls/version.h>
#include <mbedtls/x509_crt.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define TT_DEFAULT_HS_MS 30000u
#define TT_MAX_ALPN      16
#define TT_CACHE         8     /* configurations kept per context */
#define TT_RECORD        16384 /* plaintext bytes per record */
#define TT_MAX_IDS       16
#define TT_MAX_SESSIONS  16      /* client sessions kept per context */
#define TT_LIFETIME      7200u   /* seconds a session may be resumed */
#define TT_MAX_LIFETIME  604800u /* RFC 8446's cap on ticket lifetimes */
#define TT_CACHE_ENTRIES 1000

/* Fields mbedTLS 3 made private (read only where no getter exists). */
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
#define TT_PRIV(x) MBEDTLS_PRIVATE(x)
#else
#define TT_PRIV(x) x
#endif

/* ------------------------------------------------------------------ */
/* Shared, reference-counted pieces                                     */

struct tt_ca {
	unsigned refs;
	mbedtls_x509_crt crt;
};

struct tt_id {
	unsigned refs;
	mbedtls_x509_crt crt;
	mbedtls_pk_context key;
};

struct tt_state;

struct tt_flow;

/* A server's resumption state for one generation of the settings. */
struct tt_resume {
	unsigned refs;
	bool tickets, cache;
	/* The flow whose handshake runs now: a context is used by one thread
	 * at a time, so the callbacks below know whom they serve. */
	struct tt_flow *hs_flow;
	mbedtls_ssl_ticket_context ticket;
	mbedtls_ssl_cache_context sc;
};

struct conduit_tls_session {
	int port;       /* the endpoint's, -1 for transports without */
	uint32_t opts;  /* hash of the URI options it was made with */
	bool verified;  /* the server's chain and name were checked */
	char name[256]; /* the name verified, "" when none */
	mbedtls_ssl_session s;
};

struct tt_conf {
	unsigned refs;
	unsigned gen; /* the settings generation it was built from */
	char *key;    /* role and URI options: the cache key */
	bool server;
	bool verify; /* client: the peer is checked */
	struct tt_state *st;
	struct tt_ca *ca;
	struct tt_id *ids[TT_MAX_IDS]; /* the first is the default */
	size_t nids;
	struct tt_resume *res; /* server with resumption, else NULL */
	const char **alpn;     /* NULL-terminated, one allocation; or NULL */
	mbedtls_ssl_config conf;
};

struct tt_state {
	bool rng_ready;
	mbedtls_entropy_context entropy;
	mbedtls_ctr_drbg_context drbg;
	unsigned gen;         /* bumped by every setter */
	struct tt_ca *ca;     /* from the API; NULL: the system bundle */
	struct tt_ca *sys_ca; /* parsed on first need, then kept */
	struct tt_id *ids[TT_MAX_IDS];
	size_t nids;
	conduit_tls_password_fn pw_fn;
	void *pw_arg;
	unsigned resume;       /* CONDUIT_TLS_RESUME_* */
	uint32_t lifetime;     /* seconds */
	struct tt_resume *res; /* this generation's; made on first need */
	conduit_tls_session *sessions[TT_MAX_SESSIONS]; /* newest first */
	int client_auth;
	const char **alpn;
	uint32_t hs_timeout_ms;
	bool insecure;
	struct tt_conf *cache[TT_CACHE];
};

static void ca_put(struct tt_ca *ca)
{
	if (ca != NULL && --ca->refs == 0) {
		mbedtls_x509_crt_free(&ca->crt);
		free(ca);
	}
}

static void id_put(struct tt_id *id)
{
	if (id != NULL && --id->refs == 0) {
		mbedtls_x509_crt_free(&id->crt);
		mbedtls_pk_free(&id->key);
		free(id);
	}
}

static void res_put(struct tt_resume *r)
{
	if (r != NULL && --r->refs == 0) {
		mbedtls_ssl_ticket_free(&r->ticket);
		mbedtls_ssl_cache_free(&r->sc);
		free(r);
	}
}

static void conf_put(struct tt_conf *c)
{
	if (c == NULL || --c->refs > 0)
		return;
	mbedtls_ssl_config_free(&c->conf);
	ca_put(c->ca);
	for (size_t i = 0; i < c->nids; i++)
		id_put(c->ids[i]);
	res_put(c->res);
	free(c->alpn);
	free(c->key);
	free(c);
}

static void cache_clear(struct tt_state *st)
{
	for (size_t i = 0; i < TT_CACHE; i++) {
		conf_put(st->cache[i]);
		st->cache[i] = NULL;
	}
	/* New settings, new ticket key and cache (see the top). */
	res_put(st->res);
	st->res = NULL;
	st->gen++;
}

static void ids_clear(struct tt_state *st)
{
	for (size_t i = 0; i < st->nids; i++)
		id_put(st->ids[i]);
	st->nids = 0;
}

static void sessions_clear(struct tt_state *st)
{
	for (size_t i = 0; i < TT_MAX_SESSIONS; i++) {
		conduit_tls_session_free(st->sessions[i]);
		st->sessions[i] = NULL;
	}
}

/* The context allocated st, zeroed.  Small until first used: certificates
 * and the random generator are set up by the first TLS flow. */
static int tt_attach(void *state, conduit_ctx *ctx, void *arg)
{
	(void)ctx;
	(void)arg;
	struct tt_state *st = state;
	st->hs_timeout_ms = TT_DEFAULT_HS_MS;
	st->resume = CONDUIT_TLS_RESUME_DEFAULT;
	st->lifetime = TT_LIFETIME;
	return CONDUIT_OK;
}

/* What attach and use set up; the context frees st itself. */
static void tt_detach(void *state)
{
	struct tt_state *st = state;
	cache_clear(st);
	ca_put(st->ca);
	ca_put(st->sys_ca);
	ids_clear(st);
	sessions_clear(st);
	free(st->alpn);
	if (st->rng_ready) {
		mbedtls_ctr_drbg_free(&st->drbg);
		mbedtls_entropy_free(&st->entropy);
	}
}

/* ------------------------------------------------------------------ */
/* Randomness and text                                                  */

/* An mbedTLS entropy source over the platform contract. */
static int tt_entropy(void *data, unsigned char *out, size_t len, size_t *olen)
{
	(void)data;
	if (conduit_platform_entropy(out, len) != 0)
		return MBEDTLS_ERR_ENTROPY_SOURCE_FAILED;
	*olen = len;
	return 0;
}

static int rng_ready(struct tt_state *st)
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

static const char *mbed_text(int err, char *buf, size_t len)
{
	mbedtls_strerror(err, buf, len);
	return buf;
}

/* Verification flags in words, joined with ", " and a last ", and ". */
static void verify_words(uint32_t flags, const char *name, char *buf,
                         size_t len)
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

/* ------------------------------------------------------------------ */
/* Loading certificates and keys                                        */

static struct tt_state *state_of(conduit_ctx *ctx);

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
static int ca_load(struct tt_ca **out, const char *path, const char *pem,
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
		ca_put(ca);
		return r;
	}
	*out = ca;
	return 0;
}

/*
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

#define TT_KEY_UNSUPPORTED 1        /* beside mbedTLS's (negative) errors */
#define TT_MAX_ITERATIONS  10000000 /* PBKDF2; OpenSSL makes 2048 */
#define TT_MAX_KEY_FILE    (1u << 20)

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

/* What an encrypted key says about its encryption. */
struct tt_p8 {
	char what[200];   /* "PBES2 (PBKDF2, hmacWithSHA256, aes-256-cbc)" */
	bool ours;        /* PBES2, PBKDF2 and AES-CBC: decrypted here */
	bool mbedtls_can; /* a scheme mbedTLS decrypts itself */
	mbedtls_md_type_t md;
	mbedtls_cipher_type_t cipher;
	size_t keylen;
	int iterations;
	const unsigned char *salt, *iv, *data;
	size_t salt_len, data_len;
	unsigned char *der; /* owned; the pointers above point into it */
	size_t der_len;
};

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
 * the caller's to free with p8_free().
 */
static int p8_inspect(struct tt_p8 *k, const char *path, const char *pem,
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
		size_t used = 0;
		mbedtls_pem_init(&pc);
		if (mbedtls_pem_read_buffer(
		        &pc, "-----BEGIN ENCRYPTED PRIVATE KEY-----",
		        "-----END ENCRYPTED PRIVATE KEY-----", data, NULL, 0,
		        &used) == 0 &&
		    (k->der = malloc(pc.TT_PRIV(buflen))) != NULL) {
			k->der_len = pc.TT_PRIV(buflen);
			memcpy(k->der, pc.TT_PRIV(buf), k->der_len);
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

static void p8_free(struct tt_p8 *k)
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
static int p8_decrypt(mbedtls_pk_context *key, const struct tt_p8 *k,
                      const char *password, struct tt_state *st)
{
	unsigned char dk[32];
	size_t pwlen = strlen(password);
	if (k->iterations < 1 || k->iterations > TT_MAX_ITERATIONS ||
	    k->keylen > sizeof(dk))
		return MBEDTLS_ERR_PK_KEY_INVALID_FORMAT;
#if MBEDTLS_VERSION_NUMBER >= 0x03030000
	int r = mbedtls_pkcs5_pbkdf2_hmac_ext(
	    k->md, (const unsigned char *)password, pwlen, k->salt, k->salt_len,
	    (unsigned)k->iterations, (uint32_t)k->keylen, dk);
#else
	mbedtls_md_context_t md;
	mbedtls_md_init(&md);
	int r = mbedtls_md_setup(&md, mbedtls_md_info_from_type(k->md), 1);
	if (r == 0)
		r = mbedtls_pkcs5_pbkdf2_hmac(
		    &md, (const unsigned char *)password, pwlen, k->salt,
		    k->salt_len, (unsigned)k->iterations, (uint32_t)k->keylen,
		    dk);
	mbedtls_md_free(&md);
#endif
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
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
		r = mbedtls_pk_parse_key(key, plain, plen, NULL, 0,
		                         mbedtls_ctr_drbg_random, &st->drbg);
#else
		(void)st;
		r = mbedtls_pk_parse_key(key, plain, plen, NULL, 0);
#endif
		if (r != 0)
			r = MBEDTLS_ERR_PK_PASSWORD_MISMATCH;
	}
	if (plain != NULL) {
		mbedtls_platform_zeroize(plain, k->data_len + 16);
		free(plain);
	}
	return r;
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
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
	/* 3.x blinds private-key operations with the caller's generator. */
	if (rng_ready(st) != 0)
		return MBEDTLS_ERR_ENTROPY_SOURCE_FAILED;
	if (path != NULL)
		return mbedtls_pk_parse_keyfile(
		    key, path, password, mbedtls_ctr_drbg_random, &st->drbg);
	char *c = nul_copy(pem, len);
	if (c == NULL)
		return MBEDTLS_ERR_PK_ALLOC_FAILED;
	int r = mbedtls_pk_parse_key(key, (const unsigned char *)c, len + 1, pw,
	                             pwlen, mbedtls_ctr_drbg_random, &st->drbg);
#else
	(void)st;
	if (path != NULL)
		return mbedtls_pk_parse_keyfile(key, path, password);
	char *c = nul_copy(pem, len);
	if (c == NULL)
		return MBEDTLS_ERR_PK_ALLOC_FAILED;
	int r = mbedtls_pk_parse_key(key, (const unsigned char *)c, len + 1, pw,
	                             pwlen);
#endif
	mbedtls_platform_zeroize(c, len);
	free(c);
	return r;
}

/*
 * Parse a key: with the password given, else without one and, if it turns
 * out encrypted, with the context's password callback.  When mbedTLS fails
 * on a key whose encryption p8_inspect() recognises, the scheme decides:
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
	bool known = p8_inspect(&k, path, pem, len) == 0;
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
		r = p8_decrypt(key, &k, used, st);
	} else if (known && r != 0 && (!k.mbedtls_can || unavailable(r))) {
		snprintf(what, whatlen, "%s", k.what);
		r = TT_KEY_UNSUPPORTED;
	} else if (r != 0 && used != NULL && !unavailable(r) &&
	           r != MBEDTLS_ERR_PK_ALLOC_FAILED &&
	           (known || key_try(key, path, pem, len, NULL, st) ==
	                         MBEDTLS_ERR_PK_PASSWORD_REQUIRED)) {
		r = MBEDTLS_ERR_PK_PASSWORD_MISMATCH;
	}
	p8_free(&k);
	mbedtls_platform_zeroize(pw, sizeof(pw));
	return r;
}

/* A new identity from files (paths) or memory; the message on failure is
 * written to err. */
static int id_load(struct tt_id **out, struct tt_state *st,
                   const char *cert_path, const char *key_path,
                   const char *cert_pem, size_t cert_len, const char *key_pem,
                   size_t key_len, const char *password, char *err,
                   size_t errlen)
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
		               : mbed_text(r, m, sizeof(m)));
		id_put(id);
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
			        : mbed_text(r, m, sizeof(m)),
			    MBEDTLS_VERSION_STRING);
		else
			snprintf(err, errlen, "key %s: %s", kname,
			         r == MBEDTLS_ERR_PK_PASSWORD_REQUIRED
			             ? "the key is encrypted and no password "
			               "was given"
			         : r == MBEDTLS_ERR_PK_PASSWORD_MISMATCH
			             ? "wrong password"
			             : mbed_text(r, m, sizeof(m)));
		id_put(id);
		return CONDUIT_ERR_CERT;
	}
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
	r = mbedtls_pk_check_pair(&id->crt.pk, &id->key,
	                          mbedtls_ctr_drbg_random, &st->drbg);
#else
	r = mbedtls_pk_check_pair(&id->crt.pk, &id->key);
#endif
	if (r != 0) {
		snprintf(err, errlen,
		         "key %s does not belong to certificate %s",
		         key_path != NULL ? key_path : "(memory)",
		         cert_path != NULL ? cert_path : "(memory)");
		id_put(id);
		return CONDUIT_ERR_CERT;
	}
	*out = id;
	return CONDUIT_OK;
}

/* The system CA bundle: the first of the usual places that parses. */
static int system_ca(struct tt_state *st, char *err, size_t errlen)
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
		if (ca_load(&st->sys_ca, places[i], NULL, 0) == 0)
			return CONDUIT_OK;
	snprintf(err, errlen,
	         "no system CA bundle found (looked in %s and others); set "
	         "one with conduit_tls_set_ca_file()",
	         places[0]);
	return CONDUIT_ERR_CERT;
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

/* A NULL-terminated copy of a protocol list in one allocation. */
static const char **alpn_copy(const char *const *in, size_t n)
{
	size_t bytes = (n + 1) * sizeof(char *);
	for (size_t i = 0; i < n; i++)
		bytes += strlen(in[i]) + 1;
	const char **out = malloc(bytes);
	if (out == NULL)
		return NULL;
	char *p = (char *)(out + n + 1);
	for (size_t i = 0; i < n; i++) {
		size_t l = strlen(in[i]) + 1;
		memcpy(p, in[i], l);
		out[i] = p;
		p += l;
	}
	out[n] = NULL;
	return out;
}

/* "h2,http/1.1" as a protocol list. */
static const char **alpn_split(const char *s)
{
	const char *v[TT_MAX_ALPN];
	char buf[TT_MAX_ALPN * 256];
	size_t n = 0;
	if (strlen(s) >= sizeof(buf))
		return NULL;
	strcpy(buf, s);
	for (char *save = NULL, *t = strtok_r(buf, ",", &save);
	     t != NULL && n < TT_MAX_ALPN; t = strtok_r(NULL, ",", &save))
		v[n++] = t;
	return alpn_copy(v, n);
}

static int tt_sni(void *arg, mbedtls_ssl_context *ssl,
                  const unsigned char *name, size_t len);

/* Options of an endpoint that shape a configuration: the cache key. */
static char *conf_key(const conduit_endpoint *ep, bool server)
{
	static const char *const keys[] = {"ca", "cert", "key", "alpn",
	                                   "insecure-no-verify"};
	size_t n = 2;
	for (size_t i = 0; i < 5; i++) {
		const char *v = conduit_endpoint_option(ep, keys[i]);
		n += v != NULL ? strlen(keys[i]) + strlen(v) + 2 : 0;
	}
	char *k = malloc(n + 1);
	if (k == NULL)
		return NULL;
	size_t at = (size_t)sprintf(k, "%c", server ? 's' : 'c');
	for (size_t i = 0; i < 5; i++) {
		const char *v = conduit_endpoint_option(ep, keys[i]);
		if (v != NULL)
			at += (size_t)sprintf(k + at, "\n%s=%s", keys[i], v);
	}
	return k;
}

/* The ticket and cache callbacks: mbedTLS's own, noting on the flow being
 * served that its handshake resumes (mbedTLS offers no query for it). */
static int res_ticket_write(void *p, const mbedtls_ssl_session *session,
                            unsigned char *start, const unsigned char *end,
                            size_t *tlen, uint32_t *lifetime)
{
	struct tt_resume *r = p;
	return mbedtls_ssl_ticket_write(&r->ticket, session, start, end, tlen,
	                                lifetime);
}

static void res_note(struct tt_resume *r);

static int res_ticket_parse(void *p, mbedtls_ssl_session *session,
                            unsigned char *buf, size_t len)
{
	struct tt_resume *r = p;
	int ret = mbedtls_ssl_ticket_parse(&r->ticket, session, buf, len);
	if (ret == 0)
		res_note(r);
	return ret;
}

#if MBEDTLS_VERSION_NUMBER >= 0x03000000
static int res_cache_get(void *p, unsigned char const *id, size_t id_len,
                         mbedtls_ssl_session *session)
{
	struct tt_resume *r = p;
	int ret = mbedtls_ssl_cache_get(&r->sc, id, id_len, session);
	if (ret == 0)
		res_note(r);
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
		res_note(r);
	return ret;
}

static int res_cache_set(void *p, const mbedtls_ssl_session *session)
{
	struct tt_resume *r = p;
	return mbedtls_ssl_cache_set(&r->sc, session);
}
#endif

/* A server configuration's resumption: the generation's ticket key and
 * cache, made on first need. */
static int conf_resume(struct tt_conf *c, struct tt_state *st, char *err,
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
			         mbed_text(ret, m, sizeof(m)));
			res_put(r);
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
		mbedtls_ssl_conf_session_cache(&c->conf, c->res, res_cache_get,
		                               res_cache_set);
	return CONDUIT_OK;
}

/* Build a configuration for a role and an endpoint's options. */
static int conf_build(struct tt_conf **out, struct tt_state *st,
                      const conduit_endpoint *ep, bool server, char *key,
                      char *err, size_t errlen)
{
	char m[200];
	int rc = CONDUIT_OK;
	if (rng_ready(st) != 0) {
		free(key);
		snprintf(err, errlen, "the entropy source failed");
		return CONDUIT_ERR_SYSTEM;
	}
	struct tt_conf *c = calloc(1, sizeof(*c));
	if (c == NULL) {
		free(key);
		snprintf(err, errlen, "out of memory");
		return CONDUIT_ERR_NOMEM;
	}
	c->refs = 1;
	c->gen = st->gen;
	c->key = key;
	c->server = server;
	c->st = st;
	mbedtls_ssl_config_init(&c->conf);

	const char *o_ca = conduit_endpoint_option(ep, "ca");
	const char *o_cert = conduit_endpoint_option(ep, "cert");
	const char *o_key = conduit_endpoint_option(ep, "key");
	const char *o_alpn = conduit_endpoint_option(ep, "alpn");
	const char *o_insec = conduit_endpoint_option(ep, "insecure-no-verify");
	bool insecure =
	    st->insecure || (o_insec != NULL && strcmp(o_insec, "1") == 0);
	int auth = server     ? st->client_auth
	           : insecure ? CONDUIT_TLS_VERIFY_NONE
	                      : CONDUIT_TLS_VERIFY_REQUIRED;
	c->verify = auth == CONDUIT_TLS_VERIFY_REQUIRED;

	/* Trust: the URI's, the API's, or the system's. */
	if (auth != CONDUIT_TLS_VERIFY_NONE) {
		if (o_ca != NULL) {
			int r = ca_load(&c->ca, o_ca, NULL, 0);
			if (r != 0) {
				snprintf(err, errlen, "ca %s: %s", o_ca,
				         mbed_text(r, m, sizeof(m)));
				rc = CONDUIT_ERR_CERT;
				goto fail;
			}
		} else if (st->ca != NULL) {
			c->ca = st->ca;
			c->ca->refs++;
		} else {
			rc = system_ca(st, err, errlen);
			if (rc != CONDUIT_OK)
				goto fail;
			c->ca = st->sys_ca;
			c->ca->refs++;
		}
	}
	/* Identity: the URI's or the API's. */
	if (o_cert != NULL || o_key != NULL) {
		if (o_cert == NULL || o_key == NULL) {
			snprintf(err, errlen, "cert= and key= go together");
			rc = CONDUIT_ERR_OPTION;
			goto fail;
		}
		rc = id_load(&c->ids[0], st, o_cert, o_key, NULL, 0, NULL, 0,
		             NULL, err, errlen);
		if (rc != CONDUIT_OK)
			goto fail;
		c->nids = 1;
	} else {
		for (size_t i = 0; i < st->nids; i++) {
			c->ids[i] = st->ids[i];
			c->ids[i]->refs++;
		}
		c->nids = st->nids;
	}
	if (server && c->nids == 0) {
		snprintf(
		    err, errlen,
		    "a TLS server needs a certificate and its key, and this "
		    "context has none: set one with "
		    "conduit_tls_set_cert_file() or conduit_tls_set_cert_pem() "
		    "(several, chosen by SNI: conduit_tls_add_cert_file() or "
		    "_pem()), or give cert=FILE and key=FILE in the URI where "
		    "the context allows file options");
		rc = CONDUIT_ERR_CERT;
		goto fail;
	}
	/* ALPN: the URI's list, or the API's. */
	if (o_alpn != NULL) {
		c->alpn = alpn_split(o_alpn);
	} else if (st->alpn != NULL) {
		size_t n = 0;
		while (st->alpn[n] != NULL)
			n++;
		c->alpn = alpn_copy(st->alpn, n);
	}
	if ((o_alpn != NULL || st->alpn != NULL) && c->alpn == NULL) {
		snprintf(err, errlen, "out of memory");
		rc = CONDUIT_ERR_NOMEM;
		goto fail;
	}

	mbedtls_ssl_config *cf = &c->conf;
	int r = mbedtls_ssl_config_defaults(
	    cf, server ? MBEDTLS_SSL_IS_SERVER : MBEDTLS_SSL_IS_CLIENT,
	    MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT);
	if (r != 0) {
		snprintf(err, errlen, "configuration: %s",
		         mbed_text(r, m, sizeof(m)));
		rc = CONDUIT_ERR_TLS;
		goto fail;
	}
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
	mbedtls_ssl_conf_authmode(cf, auth == CONDUIT_TLS_VERIFY_REQUIRED
	                                  ? MBEDTLS_SSL_VERIFY_REQUIRED
	                              : auth == CONDUIT_TLS_VERIFY_OPTIONAL
	                                  ? MBEDTLS_SSL_VERIFY_OPTIONAL
	                                  : MBEDTLS_SSL_VERIFY_NONE);
	if (c->ca != NULL)
		mbedtls_ssl_conf_ca_chain(cf, &c->ca->crt, NULL);
	/* The default identity; the SNI callback may pick another. */
	if (c->nids > 0 && (r = mbedtls_ssl_conf_own_cert(
	                        cf, &c->ids[0]->crt, &c->ids[0]->key)) != 0) {
		snprintf(err, errlen, "certificate: %s",
		         mbed_text(r, m, sizeof(m)));
		rc = CONDUIT_ERR_CERT;
		goto fail;
	}
	if (c->alpn != NULL && c->alpn[0] != NULL &&
	    (r = mbedtls_ssl_conf_alpn_protocols(cf, c->alpn)) != 0) {
		snprintf(err, errlen, "alpn: %s", mbed_text(r, m, sizeof(m)));
		rc = CONDUIT_ERR_OPTION;
		goto fail;
	}
	if (server)
		mbedtls_ssl_conf_sni(cf, tt_sni, c);
	if (server && (rc = conf_resume(c, st, err, errlen)) != CONDUIT_OK)
		goto fail;
	*out = c;
	return CONDUIT_OK;
fail:
	conf_put(c);
	return rc;
}

/* The configuration for an endpoint and role, from the cache or new; the
 * caller gets a reference. */
static int conf_get(struct tt_conf **out, struct tt_state *st,
                    const conduit_endpoint *ep, bool server, char *err,
                    size_t errlen)
{
	char *key = conf_key(ep, server);
	if (key == NULL) {
		snprintf(err, errlen, "out of memory");
		return CONDUIT_ERR_NOMEM;
	}
	for (size_t i = 0; i < TT_CACHE; i++) {
		struct tt_conf *c = st->cache[i];
		if (c != NULL && strcmp(c->key, key) == 0) {
			free(key);
			c->refs++;
			*out = c;
			return CONDUIT_OK;
		}
	}
	struct tt_conf *c = NULL;
	int rc = conf_build(&c, st, ep, server, key, err, errlen);
	if (rc != CONDUIT_OK)
		return rc;
	/* Keep it: the oldest entry makes room. */
	conf_put(st->cache[TT_CACHE - 1]);
	memmove(&st->cache[1], &st->cache[0],
	        (TT_CACHE - 1) * sizeof(st->cache[0]));
	st->cache[0] = c;
	c->refs++;
	*out = c;
	return CONDUIT_OK;
}

/* ------------------------------------------------------------------ */
/* Flows                                                                */

struct tt_flow {
	conduit_flow base;
	conduit_flow *inner;
	struct tt_conf *conf;
	mbedtls_ssl_context ssl;
	bool server;
	bool inner_ready; /* the inner flow is established */
	bool hs_done;
	bool announced;        /* "tls-handshaking" has been reported */
	bool close_notify_in;  /* the peer's close_notify arrived */
	bool close_notify_out; /* ours is queued or sent */
	bool shut_wr_pending;  /* shut the inner write side once drained */
	bool inner_eof;
	bool name_set; /* client: a host name or an IP literal to check */
	bool sni_set;
	bool resumed; /* the handshake resumed a session */
	bool offered; /* client: a stored session was offered */
	int port;     /* the endpoint's port, -1 when none */
	unsigned char offered_master[48]; /* to recognise its resumption */
	int ip_family; /* client to an IP literal: AF_INET/AF_INET6 */
	uint8_t ip[16];
	unsigned in_want;  /* CONDUIT_POLL* the inner flow's last read needed */
	unsigned out_want; /* and its last write */
	unsigned hs_want;
	int io_status;     /* a failure of the inner flow seen by the BIO */
	uint64_t deadline; /* handshake; UINT64_MAX: none */
	char name[256];    /* name verified (client) or asked for (server) */
	uint8_t *obuf;     /* output queue, see the top of the file */
	size_t ooff, olen, ocap;
};

static const struct conduit_flow_ops tt_ops;

static struct tt_flow *tf_of(conduit_flow *f)
{
	return (struct tt_flow *)f;
}

static void res_note(struct tt_resume *r)
{
	if (r->hs_flow != NULL)
		r->hs_flow->resumed = true;
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
static int tt_sni(void *arg, mbedtls_ssl_context *ssl,
                  const unsigned char *name, size_t len)
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
static int tt_verify_ip(void *arg, mbedtls_x509_crt *crt, int depth,
                        uint32_t *flags)
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
	if (tf->io_status != CONDUIT_OK)
		return conduit_flow_fail(f, tf->io_status, "tls %s: %s: %s",
		                         f->uri, what,
		                         conduit_flow_error(tf->inner));
	if (r == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED) {
		verify_words(mbedtls_ssl_get_verify_result(&tf->ssl), tf->name,
		             words, sizeof(words));
		return conduit_flow_fail(f, CONDUIT_ERR_CERT,
		                         "tls %s: certificate verification "
		                         "failed: %s",
		                         f->uri, words);
	}
#ifdef MBEDTLS_ERR_SSL_NO_CLIENT_CERTIFICATE
	if (r == MBEDTLS_ERR_SSL_NO_CLIENT_CERTIFICATE)
		return conduit_flow_fail(
		    f, CONDUIT_ERR_CERT,
		    "tls %s: certificate verification "
		    "failed: the client sent no "
		    "certificate, and this server requires "
		    "one",
		    f->uri);
#endif
	if (r == MBEDTLS_ERR_SSL_CONN_EOF || (r == 0 && tf->inner_eof))
		return conduit_flow_fail(f, CONDUIT_ERR_TLS,
		                         "tls %s: %s: the peer closed the "
		                         "connection during the handshake",
		                         f->uri, what);
	if (r == MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE) {
#if MBEDTLS_VERSION_NUMBER < 0x03000000
		int alert = tf->ssl.in_msg != NULL ? tf->ssl.in_msg[1] : 0;
#else
		int alert = 0; /* the record is private in 3.x */
#endif
		return conduit_flow_fail(f, CONDUIT_ERR_TLS,
		                         "tls %s: %s: the peer refused: %s "
		                         "(alert %d)",
		                         f->uri, what, alert_text(alert),
		                         alert);
	}
#ifdef MBEDTLS_ERR_SSL_NO_APPLICATION_PROTOCOL
	if (r == MBEDTLS_ERR_SSL_NO_APPLICATION_PROTOCOL)
		return conduit_flow_fail(
		    f, CONDUIT_ERR_TLS,
		    "tls %s: %s: no ALPN protocol in common", f->uri, what);
#endif
	if (r == MBEDTLS_ERR_SSL_INVALID_RECORD
#ifdef MBEDTLS_ERR_SSL_BAD_HS_CLIENT_HELLO /* 2.x only */
	    || r == MBEDTLS_ERR_SSL_BAD_HS_CLIENT_HELLO ||
	    r == MBEDTLS_ERR_SSL_BAD_HS_SERVER_HELLO
#endif
	)
		return conduit_flow_fail(f, CONDUIT_ERR_TLS,
		                         "tls %s: %s: the peer does not speak "
		                         "TLS 1.2 or later (%s)",
		                         f->uri, what,
		                         mbed_text(r, m, sizeof(m)));
	return conduit_flow_fail(f, CONDUIT_ERR_TLS, "tls %s: %s: %s", f->uri,
	                         what, mbed_text(r, m, sizeof(m)));
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

/*
 * A client's handshake is over: was the session offered resumed (a
 * resumed session keeps its master secret, a full handshake makes a new
 * one), and should the context remember the session?
 */
static void client_done(struct tt_flow *tf)
{
	struct tt_state *st = tf->conf->st;
	if (tf->offered) {
		const mbedtls_ssl_session *now = tf->ssl.TT_PRIV(session);
		tf->resumed = now != NULL &&
		              memcmp(now->TT_PRIV(master), tf->offered_master,
		                     sizeof(tf->offered_master)) == 0;
		mbedtls_platform_zeroize(tf->offered_master,
		                         sizeof(tf->offered_master));
	}
	if (st->resume & CONDUIT_TLS_RESUME_REMEMBER) {
		conduit_tls_session *s = NULL;
		if (conduit_tls_session_get(&tf->base, &s) == CONDUIT_OK)
			store_put(st, s);
	}
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
			client_done(tf);
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
				memcpy(stage + s,
				       (const unsigned char *)iov[j].base + o,
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
	conf_put(tf->conf);
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
	if (in->state & (CONDUIT_FLOW_FAILED | CONDUIT_FLOW_CLOSED)) {
		conduit_waitset_deadline(ws, 0); /* the next call reports it */
		return;
	}
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
	in->ops->wait(in, need, ws);
}

/* Whether the inner flow can do, without waiting, one of the operations
 * in bits (CONDUIT_POLL*). */
static bool inner_can(conduit_flow *in, unsigned bits)
{
	return in->ops->pending != NULL && (in->ops->pending(in, bits) & bits);
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

/* The name a client checks: servername=, else a DNS host; an IP literal
 * (as host or servername) is checked against IP-address names instead. */
static void client_name(struct tt_flow *tf, const conduit_endpoint *ep)
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

/* FNV-1a of a configuration's key: sessions remember the URI options
 * (identity, trust) of the connection they came from. */
static uint32_t opts_hash(const char *key)
{
	uint32_t h = 2166136261u;
	for (const unsigned char *p = (const unsigned char *)key; *p; p++)
		h = (h ^ *p) * 16777619u;
	return h;
}

/* A stored session for this client's server name and port, offered if
 * this connection verifies no more than the one it came from did. */
static void offer_session(struct tt_flow *tf, struct tt_state *st)
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
			memcpy(tf->offered_master, s->s.TT_PRIV(master),
			       sizeof(tf->offered_master));
			tf->offered = true;
		}
		return;
	}
}

static int tt_wrap(void *state, conduit_ctx *ctx, const conduit_endpoint *ep,
                   conduit_flow *inner, int is_server, conduit_flow **out)
{
	struct tt_state *st = state;
	char err[512], m[200];
	const char *role = is_server ? "server" : "client";
	struct tt_conf *conf = NULL;
	int rc = conf_get(&conf, st, ep, is_server != 0, err, sizeof(err));
	/* No inner flow: conduit_listen() asks whether a server could be
	 * made at all.  The configuration built stays cached for the first
	 * accept. */
	if (inner == NULL) {
		*out = NULL;
		conf_put(conf);
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
		conf_put(conf);
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
		client_name(tf, ep);
		if (tf->ip_family != 0) {
			/* No SNI and no DNS-name match for an IP literal. */
			mbedtls_ssl_set_verify(&tf->ssl, tt_verify_ip, tf);
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
			/* 3.6.3+ refuses to verify without a name unless told
			 * that none is intended. */
			r = mbedtls_ssl_set_hostname(&tf->ssl, NULL);
#endif
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
		snprintf(err, sizeof(err), "%s", mbed_text(r, m, sizeof(m)));
	}
	if (rc != CONDUIT_OK) {
		/* inner stays with the caller, untouched. */
		mbedtls_ssl_free(&tf->ssl);
		conf_put(conf);
		conduit_flow_fini(&tf->base);
		free(tf);
		return conduit_ctx_fail(ctx, rc, "tls %s %s: %s", role,
		                        cd_endpoint_shown(ep), err);
	}
	if (!tf->server)
		offer_session(tf, st);
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

/* ------------------------------------------------------------------ */
/* The public configuration API                                         */

static struct tt_state *state_of(conduit_ctx *ctx)
{
	if (ctx == NULL)
		return NULL;
	const struct cd_registration *reg = cd_find_layer(ctx, "tls");
	if (reg == NULL || reg->be != &cd_backend_tls)
		return NULL;
	return reg->state;
}

#define TT_STATE(ctx, st)                                                      \
	struct tt_state *st = state_of(ctx);                                   \
	if (ctx == NULL)                                                       \
		return CONDUIT_ERR_INVALID;                                    \
	if (st == NULL)                                                        \
	return conduit_ctx_fail(ctx, CONDUIT_ERR_NO_BACKEND,                   \
	                        "tls: this context has no TLS layer "          \
	                        "of this build")

static int set_ca(conduit_ctx *ctx, const char *path, const char *pem,
                  size_t len)
{
	TT_STATE(ctx, st);
	struct tt_ca *ca = NULL;
	if (path != NULL || pem != NULL) {
		int r = ca_load(&ca, path, pem, len);
		if (r != 0) {
			char m[200];
			return conduit_ctx_fail(
			    ctx,
			    r == MBEDTLS_ERR_X509_ALLOC_FAILED
			        ? CONDUIT_ERR_NOMEM
			        : CONDUIT_ERR_CERT,
			    "tls: CA %s: %s", path != NULL ? path : "(memory)",
			    mbed_text(r, m, sizeof(m)));
		}
	}
	ca_put(st->ca);
	st->ca = ca;
	cache_clear(st);
	/* Sessions vouch for servers checked against the old trust. */
	sessions_clear(st);
	return CONDUIT_OK;
}

int conduit_tls_set_ca_file(conduit_ctx *ctx, const char *path_or_dir)
{
	return set_ca(ctx, path_or_dir, NULL, 0);
}

int conduit_tls_set_ca_pem(conduit_ctx *ctx, const char *pem, size_t len)
{
	if (pem == NULL || len == 0)
		return CONDUIT_ERR_INVALID;
	return set_ca(ctx, NULL, pem, len);
}

/* Load an identity; add it (add) or make it the only one. */
static int set_id(conduit_ctx *ctx, bool add, const char *cert_path,
                  const char *key_path, const char *cert_pem, size_t cert_len,
                  const char *key_pem, size_t key_len, const char *password)
{
	TT_STATE(ctx, st);
	char err[512];
	if (add && st->nids == TT_MAX_IDS)
		return conduit_ctx_fail(
		    ctx, CONDUIT_ERR_INVALID,
		    "tls: certificate %s: at most %d "
		    "identities per context",
		    cert_path != NULL ? cert_path : "(memory)", TT_MAX_IDS);
	struct tt_id *id = NULL;
	int rc = id_load(&id, st, cert_path, key_path, cert_pem, cert_len,
	                 key_pem, key_len, password, err, sizeof(err));
	if (rc != CONDUIT_OK)
		return conduit_ctx_fail(ctx, rc, "tls: %s", err);
	if (!add)
		ids_clear(st);
	st->ids[st->nids++] = id;
	cache_clear(st);
	/* A resumed session would present the old client identity. */
	if (!add)
		sessions_clear(st);
	return CONDUIT_OK;
}

int conduit_tls_set_cert_file(conduit_ctx *ctx, const char *cert_path,
                              const char *key_path, const char *password)
{
	if (cert_path == NULL || key_path == NULL)
		return CONDUIT_ERR_INVALID;
	return set_id(ctx, false, cert_path, key_path, NULL, 0, NULL, 0,
	              password);
}

int conduit_tls_set_cert_pem(conduit_ctx *ctx, const char *cert_pem,
                             size_t cert_len, const char *key_pem,
                             size_t key_len, const char *password)
{
	if (cert_pem == NULL || key_pem == NULL || cert_len == 0 ||
	    key_len == 0)
		return CONDUIT_ERR_INVALID;
	return set_id(ctx, false, NULL, NULL, cert_pem, cert_len, key_pem,
	              key_len, password);
}

int conduit_tls_add_cert_file(conduit_ctx *ctx, const char *cert_path,
                              const char *key_path, const char *password)
{
	if (cert_path == NULL || key_path == NULL)
		return CONDUIT_ERR_INVALID;
	return set_id(ctx, true, cert_path, key_path, NULL, 0, NULL, 0,
	              password);
}

int conduit_tls_add_cert_pem(conduit_ctx *ctx, const char *cert_pem,
                             size_t cert_len, const char *key_pem,
                             size_t key_len, const char *password)
{
	if (cert_pem == NULL || key_pem == NULL || cert_len == 0 ||
	    key_len == 0)
		return CONDUIT_ERR_INVALID;
	return set_id(ctx, true, NULL, NULL, cert_pem, cert_len, key_pem,
	              key_len, password);
}

int conduit_tls_set_password_cb(conduit_ctx *ctx, conduit_tls_password_fn fn,
                                void *arg)
{
	TT_STATE(ctx, st);
	st->pw_fn = fn;
	st->pw_arg = fn != NULL ? arg : NULL;
	return CONDUIT_OK;
}

int conduit_tls_set_resumption(conduit_ctx *ctx, unsigned flags)
{
	if (flags &
	    ~(unsigned)(CONDUIT_TLS_RESUME_TICKETS | CONDUIT_TLS_RESUME_CACHE |
	                CONDUIT_TLS_RESUME_REMEMBER))
		return CONDUIT_ERR_INVALID;
	TT_STATE(ctx, st);
	st->resume = flags;
	cache_clear(st);
	return CONDUIT_OK;
}

int conduit_tls_set_session_lifetime(conduit_ctx *ctx, uint32_t seconds)
{
	if (seconds == 0 || seconds > TT_MAX_LIFETIME)
		return CONDUIT_ERR_INVALID;
	TT_STATE(ctx, st);
	st->lifetime = seconds;
	cache_clear(st);
	return CONDUIT_OK;
}

int conduit_tls_set_client_auth(conduit_ctx *ctx, int mode)
{
	if (mode != CONDUIT_TLS_VERIFY_NONE &&
	    mode != CONDUIT_TLS_VERIFY_OPTIONAL &&
	    mode != CONDUIT_TLS_VERIFY_REQUIRED)
		return CONDUIT_ERR_INVALID;
	TT_STATE(ctx, st);
	st->client_auth = mode;
	cache_clear(st);
	return CONDUIT_OK;
}

int conduit_tls_set_alpn(conduit_ctx *ctx, const char *const *protocols)
{
	size_t n = 0;
	while (protocols != NULL && protocols[n] != NULL) {
		size_t l = strlen(protocols[n]);
		if (l == 0 || l > 255 || n == TT_MAX_ALPN)
			return CONDUIT_ERR_INVALID;
		n++;
	}
	TT_STATE(ctx, st);
	const char **copy = NULL;
	if (n > 0 && (copy = alpn_copy(protocols, n)) == NULL)
		return conduit_ctx_fail(ctx, CONDUIT_ERR_NOMEM,
		                        "tls: out of memory");
	free(st->alpn);
	st->alpn = copy;
	cache_clear(st);
	return CONDUIT_OK;
}

int conduit_tls_set_handshake_timeout(conduit_ctx *ctx, uint32_t ms)
{
	TT_STATE(ctx, st);
	st->hs_timeout_ms = ms;
	return CONDUIT_OK;
}

int conduit_tls_insecure_no_verify(conduit_ctx *ctx, int on)
{
	TT_STATE(ctx, st);
	st->insecure = on != 0;
	cache_clear(st);
	return CONDUIT_OK;
}

/* ------------------------------------------------------------------ */
/* Queries                                                              */

int conduit_tls_is_tls(const conduit_flow *f)
{
	return f != NULL && f->ops == &tt_ops;
}

/* The TLS flow behind f once its handshake is done, else NULL. */
static struct tt_flow *done_tls(conduit_flow *f)
{
	if (!conduit_tls_is_tls(f))
		return NULL;
	struct tt_flow *tf = tf_of(f);
	return tf->hs_done ? tf : NULL;
}

const char *conduit_tls_version(conduit_flow *f)
{
	struct tt_flow *tf = done_tls(f);
	return tf != NULL ? mbedtls_ssl_get_version(&tf->ssl) : NULL;
}

const char *conduit_tls_cipher(conduit_flow *f)
{
	struct tt_flow *tf = done_tls(f);
	return tf != NULL ? mbedtls_ssl_get_ciphersuite(&tf->ssl) : NULL;
}

const char *conduit_tls_alpn(conduit_flow *f)
{
	struct tt_flow *tf = done_tls(f);
	return tf != NULL ? mbedtls_ssl_get_alpn_protocol(&tf->ssl) : NULL;
}

const char *conduit_tls_servername(conduit_flow *f)
{
	struct tt_flow *tf = done_tls(f);
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
	struct tt_flow *tf = done_tls(f);
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
	struct tt_flow *tf = done_tls(f);
	return tf != NULL && tf->resumed;
}

/* ------------------------------------------------------------------ */
/* Client sessions                                                      */

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
	struct tt_flow *tf = done_tls(f);
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
	bool some = s->s.TT_PRIV(id_len) > 0;
#ifdef MBEDTLS_SSL_SESSION_TICKETS
	some = some || s->s.TT_PRIV(ticket_len) > 0;
#endif
	if (!some) {
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
	sessions_clear(st);
	return CONDUIT_OK;
}
