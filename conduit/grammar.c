/*
 * grammar.c - the tables of conduit's URI grammar (see struct cd_transport
 * in core.h): which transports and layers exist, how each transport's
 * URIs are laid out, which options each allows and how a value of each
 * is checked and made canonical; and adding a layer or an option to an
 * endpoint as a URI would.  uri.c's opening comment is the grammar they
 * encode.
 */
#include "uripriv.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------ */
/* Option checks                                                       */

/* Digits only, at least one, value at most max (no overflow whatever
 * the length: leading zeros are fine).  -1 if not. */
static long number(const char *v, int base, long max)
{
	long x = 0;
	if (*v == '\0')
		return -1;
	for (; *v; v++) {
		int d = hexval(*v);
		if (!is_digit(*v) || d >= base)
			return -1;
		x = x * base + d;
		if (x > max)
			return -1;
	}
	return x;
}

static const char *check_bool(const char *v, char *buf, size_t len,
                              const char **canon)
{
	(void)buf;
	(void)len;
	if (strcmp(v, "0") != 0 && strcmp(v, "1") != 0)
		return "must be 0 or 1";
	*canon = v;
	return NULL;
}

static const char *check_keepalive(const char *v, char *buf, size_t len,
                                   const char **canon)
{
	long x = number(v, 10, 86400);
	if (x < 1)
		return "must be a number of seconds from 1 to 86400";
	snprintf(buf, len, "%ld", x);
	*canon = buf;
	return NULL;
}

static const char *check_ring(const char *v, char *buf, size_t len,
                              const char **canon)
{
	long x = number(v, 10, 1048576);
	if (x < 1024)
		return "must be a ring size in bytes from 1024 to 1048576";
	snprintf(buf, len, "%ld", x);
	*canon = buf;
	return NULL;
}

static const char *check_mode(const char *v, char *buf, size_t len,
                              const char **canon)
{
	long x = number(v, 8, 0777);
	if (x < 0)
		return "must be an octal permission from 0 to 0777";
	snprintf(buf, len, "%04lo", (unsigned long)x);
	*canon = buf;
	return NULL;
}

static const char *check_ip(const char *v, char *buf, size_t len,
                            const char **canon)
{
	unsigned char a[16];
	size_t n = strlen(v);
	if (n >= len)
		return "must be an IPv4 or IPv6 address";
	for (size_t i = 0; i <= n; i++)
		buf[i] = (char)lower(v[i]);
	if (inet_pton(AF_INET, buf, a) != 1 && inet_pton(AF_INET6, buf, a) != 1)
		return "must be an IPv4 or IPv6 address";
	*canon = buf;
	return NULL;
}

/* A DNS name as a TLS server name: labels of [a-z0-9_-], lower-cased. */
static const char *check_servername(const char *v, char *buf, size_t len,
                                    const char **canon)
{
	size_t n = strlen(v);
	if (n == 0 || n > 253 || n >= len)
		return "must be a DNS name of 1 to 253 bytes";
	size_t label = 0;
	for (size_t i = 0; i <= n; i++) {
		int c = lower(v[i]);
		buf[i] = (char)c;
		if (c == '.' || c == '\0') {
			if (label == 0 || label > 63)
				return "must be a DNS name (labels of 1 to 63 "
				       "bytes)";
			if (buf[i - 1] == '-' || buf[i - label] == '-')
				return "must be a DNS name (no label starts or "
				       "ends "
				       "with '-')";
			label = 0;
		} else if (is_alpha(c) || is_digit(c) || c == '-' || c == '_') {
			label++;
		} else {
			return "must be a DNS name (letters, digits, '-', '_')";
		}
	}
	*canon = buf;
	return NULL;
}

/* A file name for the TLS layer (CA bundle, certificate, key). */
static const char *check_file(const char *v, char *buf, size_t len,
                              const char **canon)
{
	(void)buf;
	(void)len;
	if (v[0] == '\0' || strlen(v) > 4096)
		return "must be a file name of 1 to 4096 bytes";
	*canon = v;
	return NULL;
}

/* ALPN protocol names: comma-separated, each 1-255 printable bytes. */
static const char *check_alpn(const char *v, char *buf, size_t len,
                              const char **canon)
{
	(void)buf;
	(void)len;
	size_t run = 0;
	for (const char *p = v;; p++) {
		if (*p == ',' || *p == '\0') {
			if (run == 0 || run > 255)
				return "must be protocol names of 1 to 255 "
				       "bytes, "
				       "separated by commas";
			run = 0;
			if (*p == '\0')
				break;
		} else if ((unsigned char)*p <= 0x20 ||
		           (unsigned char)*p >= 0x7f) {
			return "protocol names are printable ASCII";
		} else {
			run++;
		}
	}
	*canon = v;
	return NULL;
}

/* HOST:PORT for connect-to: a DNS name, IPv4 or [IPv6], and 1-65535. */
static const char *check_connect_to(const char *v, char *buf, size_t len,
                                    const char **canon)
{
	static const char *const why =
	    "must be HOST:PORT (a DNS name, IPv4 or [IPv6], port 1-65535)";
	const char *colon = strrchr(v, ':');
	if (colon == NULL || colon == v)
		return why;
	long port = number(colon + 1, 10, 65535);
	if (port < 1)
		return why;
	size_t hn = (size_t)(colon - v);
	if (hn + 8 > len || hn > 255)
		return why;
	unsigned char a[16];
	char host[256];
	if (v[0] == '[') {
		if (v[hn - 1] != ']' || hn < 3)
			return why;
		memcpy(host, v + 1, hn - 2);
		host[hn - 2] = '\0';
		for (size_t i = 0; host[i]; i++)
			host[i] = (char)lower(host[i]);
		if (inet_pton(AF_INET6, host, a) != 1)
			return why;
		snprintf(buf, len, "[%s]:%ld", host, port);
	} else {
		memcpy(host, v, hn);
		host[hn] = '\0';
		const char *c = NULL;
		char hb[256];
		if (cd_host_numeric(host, hn)) {
			if (!cd_ipv4_parse(host, a))
				return "must be HOST:PORT with a host that is "
				       "a "
				       "valid IPv4 address (a.b.c.d, each "
				       "0-255 "
				       "without leading zeros) when it is all "
				       "numbers";
		} else if (check_servername(host, hb, sizeof(hb), &c) != NULL) {
			return why;
		}
		snprintf(buf, len, "%s:%ld", c != NULL ? c : host, port);
	}
	*canon = buf;
	return NULL;
}

/* ------------------------------------------------------------------ */
/* The tables                                                          */

static const struct cd_optdef tcp_opts[] = {
    {"connect-to", check_connect_to, 0},
    {"keepalive", check_keepalive, 0},
    {"nodelay", check_bool, 0},
    {"source", check_ip, 0},
};

static const struct cd_optdef unix_opts[] = {
    {"mode", check_mode, 0},
};

static const struct cd_optdef vchan_opts[] = {
    {"read-ring", check_ring, 0},
    {"write-ring", check_ring, 0},
};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* The one list of transports (see struct cd_transport in core.h): the
 * parser, the printer, the resolver and the rules file all read it. */
static const struct cd_transport transports[] = {
    {.name = "tcp",
     .shape = &cd_shape_hostport,
     .has_host = true,
     .inet = true,
     .has_port = true,
     .opts = tcp_opts,
     .nopts = NELEM(tcp_opts)},
    {.name = "unix",
     .shape = &cd_shape_path,
     .has_path = true,
     .opts = unix_opts,
     .nopts = NELEM(unix_opts)},
    {.name = "unix-abstract", .shape = &cd_shape_abstract, .has_path = true},
    {.name = "vchan",
     .shape = &cd_shape_vchan,
     .has_host = true,
     .has_path = true,
     .opts = vchan_opts,
     .nopts = NELEM(vchan_opts)},
    {.name = "mem", .shape = &cd_shape_abstract, .has_path = true},
};

/* Options a layer adds to whatever transport it is over. */
static const struct cd_optdef tls_opts[] = {
    {"alpn", check_alpn, 0},
    {"ca", check_file, CD_OPT_FILE},
    {"cert", check_file, CD_OPT_FILE},
    {"insecure-no-verify", check_bool, CD_OPT_INSECURE},
    {"key", check_file, CD_OPT_FILE},
    {"servername", check_servername, 0},
};

static const struct cd_layer layers[] = {
    {.name = "tls",
     .alone_over = "tcp",
     .opts = tls_opts,
     .nopts = NELEM(tls_opts)},
};

const char *cd_grammar_transport_list(char *buf, size_t len)
{
	size_t o = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < NELEM(transports) && o < len; i++)
		o += (size_t)snprintf(buf + o, len - o, "%s%s", i ? ", " : "",
		                      transports[i].name);
	return buf;
}

const struct cd_transport *cd_grammar_transport(const char *name, size_t len)
{
	for (size_t i = 0; i < NELEM(transports); i++)
		if (strlen(transports[i].name) == len &&
		    strncasecmp(transports[i].name, name, len) == 0)
			return &transports[i];
	return NULL;
}

const struct cd_transport *cd_grammar_transport_at(size_t i)
{
	return i < NELEM(transports) ? &transports[i] : NULL;
}

const struct cd_layer *cd_grammar_layer(const char *name, size_t len)
{
	for (size_t i = 0; i < NELEM(layers); i++)
		if (strlen(layers[i].name) == len &&
		    strncasecmp(layers[i].name, name, len) == 0)
			return &layers[i];
	return NULL;
}

/* The definition of key (len bytes) among opts; NULL if absent. */
static const struct cd_optdef *optdef_in(const struct cd_optdef *opts, size_t n,
                                         const char *key, size_t len)
{
	for (size_t i = 0; i < n; i++)
		if (strlen(opts[i].key) == len &&
		    memcmp(opts[i].key, key, len) == 0)
			return &opts[i];
	return NULL;
}

/* A layer's table entry from an endpoint's layer name: the table's own
 * string (compared by address, as a parse is on a connect's path), or
 * an equal one. */
const struct cd_layer *cd_grammar_layer_of(const char *name)
{
	for (size_t i = 0; i < NELEM(layers); i++)
		if (layers[i].name == name)
			return &layers[i];
	return cd_grammar_layer(name, strlen(name));
}

/* The same for an endpoint's transport. */
const struct cd_transport *cd_grammar_transport_of(const char *name)
{
	for (size_t i = 0; i < NELEM(transports); i++)
		if (transports[i].name == name)
			return &transports[i];
	return cd_grammar_transport(name, strlen(name));
}

/* The transport's option or one of the layers' (a later layer's wins, as
 * no two lists share a key). */
const struct cd_optdef *cd_grammar_option_for(const struct cd_transport *tp,
                                              const conduit_endpoint *ep,
                                              const char *key, size_t len)
{
	const struct cd_optdef *def =
	    tp != NULL ? optdef_in(tp->opts, tp->nopts, key, len) : NULL;
	for (size_t l = 0; l < ep->nlayers; l++) {
		const struct cd_layer *ly = cd_grammar_layer_of(ep->layers[l]);
		const struct cd_optdef *d =
		    ly != NULL ? optdef_in(ly->opts, ly->nopts, key, len)
		               : NULL;
		if (d != NULL)
			def = d;
	}
	return def;
}

const struct cd_optdef *cd_grammar_option(const conduit_endpoint *ep,
                                          const char *key)
{
	return cd_grammar_option_for(cd_grammar_transport_of(ep->transport), ep,
	                             key, strlen(key));
}

const struct cd_optdef *cd_grammar_layer_option(const struct cd_layer *ly,
                                                const char *key, size_t len)
{
	return optdef_in(ly->opts, ly->nopts, key, len);
}

unsigned cd_option_class(const conduit_endpoint *ep, const char *key)
{
	for (size_t l = 0; l < ep->nlayers; l++) {
		const struct cd_layer *ly = cd_grammar_layer_of(ep->layers[l]);
		const struct cd_optdef *d =
		    ly != NULL
		        ? optdef_in(ly->opts, ly->nopts, key, strlen(key))
		        : NULL;
		if (d != NULL)
			return d->cls;
	}
	return 0;
}

int cd_endpoint_add_layer(conduit_endpoint *ep, const struct cd_layer *ly,
                          char *why, size_t whylen)
{
	for (size_t i = 0; i < ep->nlayers; i++)
		if (strcmp(ep->layers[i], ly->name) == 0) {
			snprintf(why, whylen, "%s layer given twice", ly->name);
			return CONDUIT_ERR_SCHEME;
		}
	if (ep->nlayers == CD_MAX_LAYERS) {
		snprintf(why, whylen, "more than %d layers", CD_MAX_LAYERS);
		return CONDUIT_ERR_SCHEME;
	}
	ep->layers[ep->nlayers++] = ly->name;
	int rc = cd_endpoint_set_uri(ep, cd_uri_format(ep));
	if (rc != CONDUIT_OK) {
		ep->nlayers--;
		snprintf(why, whylen, "out of memory");
	}
	return rc;
}

int cd_endpoint_add_option(conduit_endpoint *ep, const char *key,
                           const char *value, char *why, size_t whylen)
{
	const struct cd_optdef *def = cd_grammar_option(ep, key);
	if (def == NULL) {
		snprintf(why, whylen, "unknown option \"%.40s\" for %s", key,
		         ep->transport);
		return CONDUIT_ERR_OPTION;
	}
	for (size_t i = 0; i < ep->nopts; i++)
		if (strcmp(ep->opts[i].key, def->key) == 0) {
			snprintf(why, whylen, "option %s given twice",
			         def->key);
			return CONDUIT_ERR_OPTION;
		}
	char buf[300];
	const char *canon = NULL;
	const char *bad = def->check(value, buf, sizeof(buf), &canon);
	if (bad != NULL) {
		bool secret = cd_uri_secret_key(def->key, strlen(def->key));
		snprintf(
		    why, whylen, "invalid value \"%.40s%s\" for option %s: %s",
		    secret ? "****" : value,
		    !secret && strlen(value) > 40 ? "..." : "", def->key, bad);
		return CONDUIT_ERR_OPTION;
	}
	struct cd_option *o = realloc(ep->opts, (ep->nopts + 1) * sizeof(*o));
	if (o == NULL) {
		snprintf(why, whylen, "out of memory");
		return CONDUIT_ERR_NOMEM;
	}
	ep->opts = o;
	char *k = cd_strdup(def->key), *v = cd_strdup(canon);
	if (k == NULL || v == NULL) {
		free(k);
		free(v);
		snprintf(why, whylen, "out of memory");
		return CONDUIT_ERR_NOMEM;
	}
	/* Options stay sorted by key, as the parser leaves them. */
	size_t at = 0;
	while (at < ep->nopts && strcmp(o[at].key, k) < 0)
		at++;
	memmove(&o[at + 1], &o[at], (ep->nopts - at) * sizeof(*o));
	o[at] = (struct cd_option){k, v};
	ep->nopts++;
	int rc = cd_endpoint_set_uri(ep, cd_uri_format(ep));
	if (rc != CONDUIT_OK)
		snprintf(why, whylen, "out of memory");
	return rc;
}
