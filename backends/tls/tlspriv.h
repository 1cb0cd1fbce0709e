/*
 * tlspriv.h - private to the TLS layer: the objects its files share and
 * the functions one file calls in another (tls.c lists the files).
 *
 * The objects:
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
 */
#ifndef CONDUIT_TLSPRIV_H
#define CONDUIT_TLSPRIV_H

#include "core.h"

#include <conduit/tls.h>

#include <mbedtls/cipher.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/md.h>
#include <mbedtls/pem.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_cache.h>
#include <mbedtls/ssl_ticket.h>
#include <mbedtls/version.h>
#include <mbedtls/x509_crt.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TT_DEFAULT_HS_MS 30000u
#define TT_MAX_ALPN      16
#define TT_CACHE         8     /* configurations kept per context */
#define TT_RECORD        16384 /* plaintext bytes per record */
#define TT_MAX_IDS       16
#define TT_MAX_SESSIONS  16      /* client sessions kept per context */
#define TT_LIFETIME      7200u   /* seconds a session may be resumed */
#define TT_MAX_LIFETIME  604800u /* RFC 8446's cap on ticket lifetimes */
#define TT_CACHE_ENTRIES 1000

#define TT_KEY_UNSUPPORTED 1 /* beside mbedTLS's (negative) errors */

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
	 * at a time, so the callbacks of tls_session.c know whom they serve. */
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
	uint8_t *obuf;     /* output queue, see the top of tls.c */
	size_t ooff, olen, ocap;
};

static inline struct tt_flow *tf_of(conduit_flow *f)
{
	return (struct tt_flow *)f;
}

#define TT_STATE(ctx, st)                                                      \
	struct tt_state *st = tt_state_of(ctx);                                \
	if (ctx == NULL)                                                       \
		return CONDUIT_ERR_INVALID;                                    \
	if (st == NULL)                                                        \
	return conduit_ctx_fail(ctx, CONDUIT_ERR_NO_BACKEND,                   \
	                        "tls: this context has no TLS layer "          \
	                        "of this build")

/* tls.c: mbedTLS's text for err, in buf. */
const char *tt_mbed_text(int err, char *buf, size_t len);

/* tls_config.c: the backend's detach (frees the context's state); a
 * configuration's release; the configuration for an endpoint and role,
 * from the cache or built (the caller holds a reference; the message on
 * failure is in err); the context's state, NULL without a TLS layer. */
void tt_detach(void *state);
void tt_conf_put(struct tt_conf *c);
int tt_conf_get(struct tt_conf **out, struct tt_state *st,
                const conduit_endpoint *ep, bool server, char *err,
                size_t errlen);
struct tt_state *tt_state_of(conduit_ctx *ctx);

/* tls_keypair.c: releases; a CA file, directory or PEM (0 or an mbedTLS
 * error); an identity (CONDUIT_OK or a status with its message in err);
 * the system bundle into st->sys_ca. */
void tt_ca_put(struct tt_ca *ca);
void tt_id_put(struct tt_id *id);
int tt_ca_load(struct tt_ca **out, const char *path, const char *pem,
               size_t len);
int tt_id_load(struct tt_id **out, struct tt_state *st, const char *cert_path,
               const char *key_path, const char *cert_pem, size_t cert_len,
               const char *key_pem, size_t key_len, const char *password,
               char *err, size_t errlen);
int tt_system_ca(struct tt_state *st, char *err, size_t errlen);

/* tls_pkcs8.c: how a key is encrypted (struct tt_p8), and the decryption
 * of the PBES2 schemes mbedTLS lacks. */
int tt_p8_inspect(struct tt_p8 *k, const char *path, const char *pem,
                  size_t len);
void tt_p8_free(struct tt_p8 *k);
int tt_p8_decrypt(mbedtls_pk_context *key, const struct tt_p8 *k,
                  const char *password, struct tt_state *st);

/* tls_verify.c: verification flags in words; the server's SNI callback
 * (arg: the tt_conf); the IP-literal check (arg: the tt_flow); the name a
 * client checks, from its endpoint. */
void tt_verify_words(uint32_t flags, const char *name, char *buf, size_t len);
int tt_sni(void *arg, mbedtls_ssl_context *ssl, const unsigned char *name,
           size_t len);
int tt_verify_ip(void *arg, mbedtls_x509_crt *crt, int depth, uint32_t *flags);
void tt_client_name(struct tt_flow *tf, const conduit_endpoint *ep);

/* tls_session.c: a server's resumption state (release; note that the
 * flow being served resumes; set up on a configuration) and a client's
 * sessions (forget them all; after a handshake; offer one before). */
void tt_res_put(struct tt_resume *r);
void tt_res_note(struct tt_resume *r);
int tt_conf_resume(struct tt_conf *c, struct tt_state *st, char *err,
                   size_t errlen);
void tt_sessions_clear(struct tt_state *st);
void tt_client_done(struct tt_flow *tf);
void tt_offer_session(struct tt_flow *tf, struct tt_state *st);

/* tls_conninfo.c: the TLS flow behind f once its handshake is done, else
 * NULL. */
struct tt_flow *tt_done_tls(conduit_flow *f);

/*
 * tls_mbedtls.c: everything that depends on the mbedTLS line (2.28 or
 * 3.x).  Functions returning int return 0 or an mbedTLS error.
 */

/* The context's generator (CTR-DRBG over conduit_platform_entropy()),
 * seeded on first need; and its release, when it was made. */
int tt_mb_rng_ready(struct tt_state *st);
void tt_mb_rng_free(struct tt_state *st);
/* mbedTLS's defaults for a role, then conduit's generator, suites, groups
 * and TLS 1.2 as the floor. */
int tt_mb_conf_defaults(mbedtls_ssl_config *cf, bool server,
                        struct tt_state *st);
/* Parse a key (buf holds PEM with its NUL counted, or DER), or a key
 * file; check that a private key matches a certificate's public key. */
int tt_mb_pk_parse(mbedtls_pk_context *key, const unsigned char *buf,
                   size_t len, const unsigned char *pw, size_t pwlen,
                   struct tt_state *st);
int tt_mb_pk_parse_file(mbedtls_pk_context *key, const char *path,
                        const char *password, struct tt_state *st);
int tt_mb_pk_check_pair(const mbedtls_pk_context *pub,
                        const mbedtls_pk_context *prv, struct tt_state *st);
/* PBKDF2 with the HMAC of md: keylen bytes into out. */
int tt_mb_pbkdf2(mbedtls_md_type_t md, const unsigned char *pw, size_t pwlen,
                 const unsigned char *salt, size_t salt_len,
                 unsigned iterations, uint32_t keylen, unsigned char *out);
/* The DER that mbedtls_pem_read_buffer() decoded into pc (pc's). */
void tt_mb_pem_der(const mbedtls_pem_context *pc, const unsigned char **der,
                   size_t *len);
/* A client to an IP literal: no host name is set, on purpose. */
int tt_mb_no_hostname(mbedtls_ssl_context *ssl);
/* The alert number of a fatal alert received, 0 when the line hides it. */
int tt_mb_alert(const mbedtls_ssl_context *ssl);
/* Failures that some lines name and others do not. */
enum tt_mb_err {
	TT_MB_OTHER,
	TT_MB_NO_CLIENT_CERT, /* a server required one and got none */
	TT_MB_NO_ALPN,        /* no ALPN protocol in common */
	TT_MB_NOT_TLS,        /* the peer's bytes are no TLS 1.2+ */
};
enum tt_mb_err tt_mb_err_kind(int r);
/* Server: mbedTLS's session cache on cf, over r's, noting resumptions. */
void tt_mb_conf_cache(mbedtls_ssl_config *cf, struct tt_resume *r);
/* A session with something to resume with (an ID or a ticket). */
bool tt_mb_session_resumable(const mbedtls_ssl_session *s);
/* Client: note the session offered on tf; after the handshake, whether
 * that session was resumed. */
void tt_mb_offer_note(struct tt_flow *tf, const mbedtls_ssl_session *s);
bool tt_mb_offer_resumed(const struct tt_flow *tf);

#endif
