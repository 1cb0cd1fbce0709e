/*
 * endpoint.c - the endpoint value: making one from a URI (the grammar is
 * in uri.c), copying, comparing and freeing it, its accessors, and the
 * addresses a lookup attaches to it.
 *
 * An endpoint is immutable once returned to the application, so accessors
 * hand out pointers into it and never allocate.  The strings that are
 * "absent" are stored as "" rather than NULL, so code inside conduit can
 * read the fields without checking; the accessors still cope with a NULL
 * endpoint, since that is harmless to answer.
 */
#include "core.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static char *sdup(const char *s)
{
	if (s == NULL)
		s = "";
	size_t n = strlen(s) + 1;
	char *p = malloc(n);
	if (p != NULL)
		memcpy(p, s, n);
	return p;
}

/*
 * Every endpoint made here has one spare byte after the struct that
 * holds "" for each of its absent strings.  Most endpoints have no zone
 * and many no path; sharing that byte saves an allocation and a free for
 * each on every resolution.  The byte is never freed on its own (see
 * own_free()), and no string field is ever written through.
 */
static char *none(conduit_endpoint *ep)
{
	return (char *)(ep + 1);
}

/* A new endpoint: zeroed, port -1, its spare byte "". */
static conduit_endpoint *ep_alloc(void)
{
	conduit_endpoint *ep = malloc(sizeof(*ep) + 1);
	if (ep == NULL)
		return NULL;
	/* Not calloc, which skips glibc's per-thread cache and costs
	 * several times as much for a block this small (and the memset
	 * leaves out the spare byte so that the compiler does not turn the
	 * pair back into calloc). */
	memset(ep, 0, sizeof(*ep));
	*none(ep) = '\0';
	ep->host_kind = CONDUIT_HOST_NONE;
	ep->port = -1;
	return ep;
}

/* Free a string field unless it is the shared "" of its endpoint. */
static void own_free(conduit_endpoint *ep, char *s)
{
	if (s != none(ep))
		free(s);
}

/* A copy of s for ep, or ep's shared "" when s is absent or empty. */
static char *ep_dup(conduit_endpoint *ep, const char *s)
{
	if (s == NULL || s[0] == '\0')
		return none(ep);
	return sdup(s);
}

static const char *str(const char *s)
{
	return s != NULL ? s : "";
}

static bool same(const char *a, const char *b)
{
	return strcmp(str(a), str(b)) == 0;
}

int conduit_endpoint_parse(conduit_endpoint **out, const char *uri, char *err,
                           size_t errlen)
{
	return cd_endpoint_parse(out, uri, 0, err, errlen);
}

int cd_endpoint_parse(conduit_endpoint **out, const char *uri, unsigned flags,
                      char *err, size_t errlen)
{
	if (out == NULL) {
		cd_uri_error(err, errlen, uri,
		             "nowhere to store the endpoint (out is NULL)");
		return CONDUIT_ERR_INVALID;
	}
	*out = NULL;
	conduit_endpoint *ep = ep_alloc();
	if (ep == NULL) {
		cd_uri_error(err, errlen, uri, "out of memory");
		return CONDUIT_ERR_NOMEM;
	}
	/* Absent strings are the endpoint's own "": the parser sets only
	 * those the URI has (and would fill NULL ones itself). */
	ep->host = ep->zone = ep->path = none(ep);
	int rc = cd_uri_parse(ep, uri, flags, err, errlen);
	if (rc == CONDUIT_OK) {
		rc = cd_endpoint_set_uri(ep, cd_uri_format(ep));
		if (rc != CONDUIT_OK)
			cd_uri_error(err, errlen, uri, "out of memory");
	}
	if (rc != CONDUIT_OK) {
		conduit_endpoint_free(ep);
		return rc;
	}
	*out = ep;
	return CONDUIT_OK;
}

int cd_endpoint_set_uri(conduit_endpoint *ep, char *uri)
{
	if (uri == NULL)
		return CONDUIT_ERR_NOMEM;
	char *shown = NULL;
	if (strchr(uri, '?') != NULL) {
		/* Each hidden run becomes "****": at most 4 bytes a byte. */
		size_t cap = strlen(uri) * 4 + 8;
		char *buf = malloc(cap);
		if (buf == NULL) {
			free(uri);
			return CONDUIT_ERR_NOMEM;
		}
		cd_uri_redact(uri, buf, cap);
		if (strcmp(buf, uri) != 0) {
			shown = sdup(buf);
			if (shown == NULL) {
				free(buf);
				free(uri);
				return CONDUIT_ERR_NOMEM;
			}
		}
		free(buf);
	}
	free(ep->uri);
	free(ep->shown);
	ep->uri = uri;
	ep->shown = shown;
	return CONDUIT_OK;
}

const char *cd_endpoint_shown(const conduit_endpoint *ep)
{
	if (ep == NULL)
		return "";
	return ep->shown != NULL ? ep->shown : str(ep->uri);
}

conduit_endpoint *conduit_endpoint_dup(const conduit_endpoint *ep)
{
	if (ep == NULL)
		return NULL;
	conduit_endpoint *n = ep_alloc();
	if (n == NULL)
		return NULL;
	n->transport = ep->transport;
	n->nlayers = ep->nlayers;
	memcpy(n->layers, ep->layers, sizeof(n->layers));
	n->host_kind = ep->host_kind;
	n->port = ep->port;
	n->dest_port = ep->dest_port;
	n->uri = sdup(ep->uri);
	if (ep->shown != NULL && (n->shown = sdup(ep->shown)) == NULL)
		goto fail;
	n->host = ep_dup(n, ep->host);
	n->zone = ep_dup(n, ep->zone);
	n->path = ep_dup(n, ep->path);
	if (n->uri == NULL || n->host == NULL || n->zone == NULL ||
	    n->path == NULL)
		goto fail;
	if (ep->nopts > 0) {
		n->opts = calloc(ep->nopts, sizeof(*n->opts));
		if (n->opts == NULL)
			goto fail;
		for (size_t i = 0; i < ep->nopts; i++) {
			n->opts[i].key = sdup(ep->opts[i].key);
			n->opts[i].value = sdup(ep->opts[i].value);
			n->nopts++;
			if (n->opts[i].key == NULL || n->opts[i].value == NULL)
				goto fail;
		}
	}
	if (cd_endpoint_set_addresses(n, ep->addrs, ep->naddrs) != CONDUIT_OK)
		goto fail;
	return n;
fail:
	conduit_endpoint_free(n);
	return NULL;
}

void conduit_endpoint_free(conduit_endpoint *ep)
{
	if (ep == NULL)
		return;
	free(ep->uri);
	free(ep->shown);
	own_free(ep, ep->host);
	own_free(ep, ep->zone);
	own_free(ep, ep->path);
	for (size_t i = 0; i < ep->nopts; i++) {
		free(ep->opts[i].key);
		free(ep->opts[i].value);
	}
	free(ep->opts);
	free(ep->addrs);
	free(ep);
}

/* Field by field rather than by printed URI, so that endpoints built by
 * hand (without a canonical uri) compare correctly too.  Options are
 * kept sorted by key, so equal sets line up. */
int conduit_endpoint_equal(const conduit_endpoint *a, const conduit_endpoint *b)
{
	if (a == b)
		return 1;
	if (a == NULL || b == NULL)
		return 0;
	if (!same(a->transport, b->transport) || a->nlayers != b->nlayers ||
	    a->host_kind != b->host_kind || a->port != b->port ||
	    !same(a->host, b->host) || !same(a->zone, b->zone) ||
	    !same(a->path, b->path) || a->nopts != b->nopts)
		return 0;
	for (size_t i = 0; i < a->nlayers && i < CD_MAX_LAYERS; i++)
		if (!same(a->layers[i], b->layers[i]))
			return 0;
	for (size_t i = 0; i < a->nopts; i++)
		if (!same(a->opts[i].key, b->opts[i].key) ||
		    !same(a->opts[i].value, b->opts[i].value))
			return 0;
	return 1;
}

const char *conduit_endpoint_uri(const conduit_endpoint *ep)
{
	return ep != NULL ? str(ep->uri) : "";
}

const char *conduit_endpoint_transport(const conduit_endpoint *ep)
{
	return ep != NULL ? str(ep->transport) : "";
}

size_t conduit_endpoint_layer_count(const conduit_endpoint *ep)
{
	return ep != NULL ? ep->nlayers : 0;
}

const char *conduit_endpoint_layer(const conduit_endpoint *ep, size_t i)
{
	if (ep == NULL || i >= ep->nlayers || i >= CD_MAX_LAYERS)
		return NULL;
	return ep->layers[i];
}

enum conduit_host_kind conduit_endpoint_host_kind(const conduit_endpoint *ep)
{
	return ep != NULL ? ep->host_kind : CONDUIT_HOST_NONE;
}

const char *conduit_endpoint_host(const conduit_endpoint *ep)
{
	return ep != NULL ? str(ep->host) : "";
}

const char *conduit_endpoint_zone(const conduit_endpoint *ep)
{
	return ep != NULL ? str(ep->zone) : "";
}

int conduit_endpoint_port(const conduit_endpoint *ep)
{
	return ep != NULL ? ep->port : -1;
}

const char *conduit_endpoint_path(const conduit_endpoint *ep)
{
	return ep != NULL ? str(ep->path) : "";
}

const char *conduit_endpoint_option(const conduit_endpoint *ep, const char *key)
{
	if (ep == NULL || key == NULL)
		return NULL;
	for (size_t i = 0; i < ep->nopts; i++)
		if (ep->opts[i].key != NULL &&
		    strcmp(ep->opts[i].key, key) == 0)
			return str(ep->opts[i].value);
	return NULL;
}

size_t conduit_endpoint_address_count(const conduit_endpoint *ep)
{
	return ep != NULL ? ep->naddrs : 0;
}

const struct conduit_addr *conduit_endpoint_address(const conduit_endpoint *ep,
                                                    size_t i)
{
	if (ep == NULL || i >= ep->naddrs)
		return NULL;
	return &ep->addrs[i];
}

int cd_endpoint_set_addresses(conduit_endpoint *ep,
                              const struct conduit_addr *addrs, size_t n)
{
	if (ep == NULL)
		return CONDUIT_ERR_INVALID;
	struct conduit_addr *copy = NULL;
	if (addrs != NULL && n > 0) {
		if (n > SIZE_MAX / sizeof(*copy))
			return CONDUIT_ERR_NOMEM;
		/* Copy before freeing: addrs may be ep's own list. */
		copy = malloc(n * sizeof(*copy));
		if (copy == NULL)
			return CONDUIT_ERR_NOMEM;
		memcpy(copy, addrs, n * sizeof(*copy));
	} else {
		n = 0;
	}
	free(ep->addrs);
	ep->addrs = copy;
	ep->naddrs = n;
	return CONDUIT_OK;
}

const char *conduit_addr_format(const struct conduit_addr *a, char *buf,
                                size_t len)
{
	char tmp[INET6_ADDRSTRLEN + 16];
	if (buf == NULL || len == 0)
		return buf;
	buf[0] = '\0';
	if (a == NULL)
		return buf;
	if (a->family == CONDUIT_AF_INET) {
		if (inet_ntop(AF_INET, a->bytes, tmp, sizeof(tmp)) == NULL)
			return buf;
	} else if (a->family == CONDUIT_AF_INET6) {
		if (inet_ntop(AF_INET6, a->bytes, tmp, sizeof(tmp)) == NULL)
			return buf;
		if (a->scope != 0) {
			size_t n = strlen(tmp);
			snprintf(tmp + n, sizeof(tmp) - n, "%%%u",
			         (unsigned)a->scope);
		}
	} else {
		snprintf(tmp, sizeof(tmp), "?");
	}
	snprintf(buf, len, "%s", tmp);
	return buf;
}
