/*
 * tls_config.c - the TLS layer's settings: the per-context state, its
 * random generator, the setters of tls.h, and the mbedtls_ssl_config
 * built for a role and an endpoint's options (cached per context, see
 * tlspriv.h).
 */
#include "tlspriv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void tt_conf_put(struct tt_conf *c)
{
	if (c == NULL || --c->refs > 0)
		return;
	mbedtls_ssl_config_free(&c->conf);
	tt_ca_put(c->ca);
	for (size_t i = 0; i < c->nids; i++)
		tt_id_put(c->ids[i]);
	tt_res_put(c->res);
	free(c->alpn);
	free(c->key);
	free(c);
}

static void cache_clear(struct tt_state *st)
{
	for (size_t i = 0; i < TT_CACHE; i++) {
		tt_conf_put(st->cache[i]);
		st->cache[i] = NULL;
	}
	/* New settings, new ticket key and cache (see tlspriv.h). */
	tt_res_put(st->res);
	st->res = NULL;
	st->gen++;
}

static void ids_clear(struct tt_state *st)
{
	for (size_t i = 0; i < st->nids; i++)
		tt_id_put(st->ids[i]);
	st->nids = 0;
}

void *cd_tls_state_new(void)
{
	struct tt_state *st = calloc(1, sizeof(*st));
	if (st != NULL) {
		st->hs_timeout_ms = TT_DEFAULT_HS_MS;
		st->resume = CONDUIT_TLS_RESUME_DEFAULT;
		st->lifetime = TT_LIFETIME;
	}
	return st;
}

void tt_detach(void *state)
{
	struct tt_state *st = state;
	if (st == NULL)
		return;
	cache_clear(st);
	tt_ca_put(st->ca);
	tt_ca_put(st->sys_ca);
	ids_clear(st);
	tt_sessions_clear(st);
	free(st->alpn);
	tt_mb_rng_free(st);
	free(st);
}

/* ------------------------------------------------------------------ */
/* Configurations                                                       */

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

/* A new configuration for a role, holding key (taken over), its mbedTLS
 * part initialised but not set up. */
static int conf_new(struct tt_conf **out, struct tt_state *st, bool server,
                    char *key, char *err, size_t errlen)
{
	if (tt_mb_rng_ready(st) != 0) {
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
	*out = c;
	return CONDUIT_OK;
}

/* Whom the configuration checks (CONDUIT_TLS_VERIFY_*): a server asks for
 * client certificates as the context says; a client verifies the server
 * unless the context or the URI says insecure-no-verify. */
static int conf_auth(const struct tt_state *st, const conduit_endpoint *ep,
                     bool server)
{
	const char *o_insec = conduit_endpoint_option(ep, "insecure-no-verify");
	bool insecure =
	    st->insecure || (o_insec != NULL && strcmp(o_insec, "1") == 0);
	return server     ? st->client_auth
	       : insecure ? CONDUIT_TLS_VERIFY_NONE
	                  : CONDUIT_TLS_VERIFY_REQUIRED;
}

/* Trust: the URI's (o_ca), the API's, or the system's. */
static int conf_trust(struct tt_conf *c, struct tt_state *st, const char *o_ca,
                      char *err, size_t errlen)
{
	if (o_ca != NULL) {
		char m[200];
		int r = tt_ca_load(&c->ca, o_ca, NULL, 0);
		if (r != 0) {
			snprintf(err, errlen, "ca %s: %s", o_ca,
			         tt_mbed_text(r, m, sizeof(m)));
			return CONDUIT_ERR_CERT;
		}
	} else if (st->ca != NULL) {
		c->ca = st->ca;
		c->ca->refs++;
	} else {
		int rc = tt_system_ca(st, err, errlen);
		if (rc != CONDUIT_OK)
			return rc;
		c->ca = st->sys_ca;
		c->ca->refs++;
	}
	return CONDUIT_OK;
}

/* Identity: the URI's (o_cert and o_key) or the API's; a server must have
 * one. */
static int conf_identity(struct tt_conf *c, struct tt_state *st,
                         const char *o_cert, const char *o_key, char *err,
                         size_t errlen)
{
	if (o_cert != NULL || o_key != NULL) {
		if (o_cert == NULL || o_key == NULL) {
			snprintf(err, errlen, "cert= and key= go together");
			return CONDUIT_ERR_OPTION;
		}
		int rc = tt_id_load(&c->ids[0], st, o_cert, o_key, NULL, 0,
		                    NULL, 0, NULL, err, errlen);
		if (rc != CONDUIT_OK)
			return rc;
		c->nids = 1;
	} else {
		for (size_t i = 0; i < st->nids; i++) {
			c->ids[i] = st->ids[i];
			c->ids[i]->refs++;
		}
		c->nids = st->nids;
	}
	if (c->server && c->nids == 0) {
		snprintf(
		    err, errlen,
		    "a TLS server needs a certificate and its key, and this "
		    "context has none: set one with "
		    "conduit_tls_set_cert_file() or conduit_tls_set_cert_pem() "
		    "(several, chosen by SNI: conduit_tls_add_cert_file() or "
		    "_pem()), or give cert=FILE and key=FILE in the URI where "
		    "the context allows file options");
		return CONDUIT_ERR_CERT;
	}
	return CONDUIT_OK;
}

/* ALPN: the URI's list (o_alpn), or the API's. */
static int conf_alpn(struct tt_conf *c, const struct tt_state *st,
                     const char *o_alpn, char *err, size_t errlen)
{
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
		return CONDUIT_ERR_NOMEM;
	}
	return CONDUIT_OK;
}

/* The mbedTLS configuration proper, from what the steps above gathered:
 * the library's defaults for the role, conduit's suites, groups and
 * version floor, then the checks (auth), trust, identity, ALPN, SNI and
 * resumption. */
static int conf_engine(struct tt_conf *c, struct tt_state *st, int auth,
                       char *err, size_t errlen)
{
	char m[200];
	mbedtls_ssl_config *cf = &c->conf;
	int r = tt_mb_conf_defaults(cf, c->server, st);
	if (r != 0) {
		snprintf(err, errlen, "configuration: %s",
		         tt_mbed_text(r, m, sizeof(m)));
		return CONDUIT_ERR_TLS;
	}
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
		         tt_mbed_text(r, m, sizeof(m)));
		return CONDUIT_ERR_CERT;
	}
	if (c->alpn != NULL && c->alpn[0] != NULL &&
	    (r = mbedtls_ssl_conf_alpn_protocols(cf, c->alpn)) != 0) {
		snprintf(err, errlen, "alpn: %s",
		         tt_mbed_text(r, m, sizeof(m)));
		return CONDUIT_ERR_OPTION;
	}
	if (!c->server)
		return CONDUIT_OK;
	mbedtls_ssl_conf_sni(cf, tt_sni, c);
	return tt_conf_resume(c, st, err, errlen);
}

/* Build a configuration for a role and an endpoint's options, step by
 * step; key (the cache key) is taken over. */
static int conf_build(struct tt_conf **out, struct tt_state *st,
                      const conduit_endpoint *ep, bool server, char *key,
                      char *err, size_t errlen)
{
	struct tt_conf *c = NULL;
	int rc = conf_new(&c, st, server, key, err, errlen);
	if (rc != CONDUIT_OK)
		return rc;
	int auth = conf_auth(st, ep, server);
	c->verify = auth == CONDUIT_TLS_VERIFY_REQUIRED;
	if (auth != CONDUIT_TLS_VERIFY_NONE)
		rc = conf_trust(c, st, conduit_endpoint_option(ep, "ca"), err,
		                errlen);
	if (rc == CONDUIT_OK)
		rc = conf_identity(c, st, conduit_endpoint_option(ep, "cert"),
		                   conduit_endpoint_option(ep, "key"), err,
		                   errlen);
	if (rc == CONDUIT_OK)
		rc = conf_alpn(c, st, conduit_endpoint_option(ep, "alpn"), err,
		               errlen);
	if (rc == CONDUIT_OK)
		rc = conf_engine(c, st, auth, err, errlen);
	if (rc != CONDUIT_OK) {
		tt_conf_put(c);
		return rc;
	}
	*out = c;
	return CONDUIT_OK;
}

/* The configuration for an endpoint and role, from the cache or new; the
 * caller gets a reference. */
int tt_conf_get(struct tt_conf **out, struct tt_state *st,
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
	tt_conf_put(st->cache[TT_CACHE - 1]);
	memmove(&st->cache[1], &st->cache[0],
	        (TT_CACHE - 1) * sizeof(st->cache[0]));
	st->cache[0] = c;
	c->refs++;
	*out = c;
	return CONDUIT_OK;
}

/* ------------------------------------------------------------------ */
/* The public configuration API                                         */

struct tt_state *tt_state_of(conduit_ctx *ctx)
{
	if (ctx == NULL)
		return NULL;
	const struct cd_registration *reg = cd_find_layer(ctx, "tls");
	if (reg == NULL || reg->be != &cd_backend_tls)
		return NULL;
	return reg->state;
}

static int set_ca(conduit_ctx *ctx, const char *path, const char *pem,
                  size_t len)
{
	TT_STATE(ctx, st);
	struct tt_ca *ca = NULL;
	if (path != NULL || pem != NULL) {
		int r = tt_ca_load(&ca, path, pem, len);
		if (r != 0) {
			char m[200];
			return conduit_ctx_fail(
			    ctx,
			    r == MBEDTLS_ERR_X509_ALLOC_FAILED
			        ? CONDUIT_ERR_NOMEM
			        : CONDUIT_ERR_CERT,
			    "tls: CA %s: %s", path != NULL ? path : "(memory)",
			    tt_mbed_text(r, m, sizeof(m)));
		}
	}
	tt_ca_put(st->ca);
	st->ca = ca;
	cache_clear(st);
	/* Sessions vouch for servers checked against the old trust. */
	tt_sessions_clear(st);
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
	int rc = tt_id_load(&id, st, cert_path, key_path, cert_pem, cert_len,
	                    key_pem, key_len, password, err, sizeof(err));
	if (rc != CONDUIT_OK)
		return conduit_ctx_fail(ctx, rc, "tls: %s", err);
	if (!add)
		ids_clear(st);
	st->ids[st->nids++] = id;
	cache_clear(st);
	/* A resumed session would present the old client identity. */
	if (!add)
		tt_sessions_clear(st);
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
