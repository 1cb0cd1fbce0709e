/*
 * remember.c - the resolutions conduit_connect() remembers, so that a
 * client connecting to one URI again and again does not parse and resolve
 * it each time.  resolve.c makes fresh resolutions; this file decides
 * which of them may be kept, finds them again and forgets them when the
 * context's settings change.
 */
#include "core.h"

#include <stdlib.h>
#include <string.h>

/* An endpoint's URI as messages, events and explanations show it. */
static const char *redacted(const char *uri, char buf[CD_SHOWN_URI])
{
	cd_uri_redact(uri, buf, CD_SHOWN_URI);
	return buf;
}

/*
 * A client that connects to the same URI again and again (a pool, a
 * reconnect loop, a request per connection) would parse and resolve it
 * every time.  conduit_connect() remembers the last few endpoints whose
 * resolution depends on nothing but the URI and the context's settings,
 * and any change to those settings forgets them all.  So an endpoint is
 * remembered only when:
 *   - no name was looked up: a DNS answer may change, and its addresses
 *     must be asked for again (an IP literal, or no host: unix, vchan,
 *     which names its domain only when connecting);
 *   - it has no IPv6 zone: interface names map to indexes that change;
 *   - its port came not from the system's service table (a file);
 *   - no connect-to destination was looked up;
 *   - neither the URI nor the endpoint carries a secret (userinfo, a key
 *     option): nothing secret is kept longer than the caller's own call.
 * A remembered endpoint is taken out of its slot while in use and put
 * back after, so an observer that connects or changes settings from its
 * callback never frees one that is being used.
 */

static uint64_t uri_hash(const char *s, size_t *len)
{
	uint64_t h = 1469598103934665603u; /* FNV-1a */
	const unsigned char *p = (const unsigned char *)s;
	for (; *p != '\0'; p++)
		h = (h ^ *p) * 1099511628211u;
	*len = (size_t)((const char *)p - s);
	return h;
}

static bool rememberable(const conduit_endpoint *ep, const char *uri,
                         size_t len)
{
	if (ep->shown != NULL || memchr(uri, '@', len) != NULL)
		return false;
	/* A service URI's path and query are not in its endpoint, but the
	 * URI as given is what would be kept: nothing a message would
	 * hide (an access_token=, a password=) may be in it. */
	if (memchr(uri, '?', len) != NULL || memchr(uri, '#', len) != NULL) {
		char sh[CD_SHOWN_URI];
		if (len >= sizeof(sh) || strcmp(redacted(uri, sh), uri) != 0)
			return false;
	}
	if (ep->host_kind == CONDUIT_HOST_NAME ||
	    (ep->host_kind == CONDUIT_HOST_IPV6 && ep->zone[0] != '\0'))
		return false;
	return conduit_endpoint_option(ep, "connect-to") == NULL;
}

static struct cd_remembered *
find_remembered(conduit_ctx *ctx, const struct cd_use *u, const char *uri)
{
	for (size_t i = 0; i < CD_REMEMBERED; i++) {
		struct cd_remembered *r = &ctx->remembered[i];
		if (r->uri != NULL && r->hash == u->hash && r->len == u->len &&
		    memcmp(r->uri, uri, u->len) == 0)
			return r;
	}
	return NULL;
}

static void forget(struct cd_remembered *r)
{
	free(r->uri);
	conduit_endpoint_free(r->ep);
	r->uri = NULL;
	r->ep = NULL;
}

int cd_resolve_use(struct cd_use *u, conduit_ctx *ctx, const char *uri)
{
	u->ep = NULL;
	u->uri = NULL;
	u->slot = CD_REMEMBERED;
	u->fresh_ok = false;
	u->gen = ctx->settings_gen;
	/* The slot used last first, compared whole: a client connecting
	 * to one URI again and again does not hash it each time. */
	struct cd_remembered *r = &ctx->remembered[ctx->remembered_last];
	if (r->uri != NULL && strcmp(r->uri, uri) == 0) {
		u->hash = r->hash;
		u->len = r->len;
	} else {
		u->hash = uri_hash(uri, &u->len);
		r = find_remembered(ctx, u, uri);
	}
	bool announced = false;
	if (r != NULL) {
		u->ep = r->ep;
		u->uri = r->uri;
		u->slot = (unsigned)(r - ctx->remembered);
		r->ep = NULL;
		r->uri = NULL;
		if (!conduit_observed(ctx))
			return CONDUIT_OK;
		/* The events a fresh resolution gives.  An observer may
		 * change the settings when told "resolving", as it could
		 * before a fresh resolution reads them: then the remembered
		 * endpoint is no longer the answer. */
		char sh[CD_SHOWN_URI], detail[64];
		conduit_emit(ctx, CONDUIT_PHASE_RESOLVING, CONDUIT_OK,
		             redacted(uri, sh), "", NULL);
		if (ctx->settings_gen == u->gen) {
			conduit_emit(ctx, CONDUIT_PHASE_RESOLVED, CONDUIT_OK,
			             redacted(u->ep->uri, sh),
			             cd_addr_count(u->ep, detail), NULL);
			return CONDUIT_OK;
		}
		free(u->uri);
		conduit_endpoint_free(u->ep);
		u->ep = NULL;
		u->uri = NULL;
		u->slot = CD_REMEMBERED;
		u->gen = ctx->settings_gen;
		announced = true;
	}
	if (cd_remember_missed != NULL)
		cd_remember_missed(ctx);
	bool system = false;
	int rc = cd_resolve_fresh(&u->ep, ctx, uri, &system, announced);
	u->fresh_ok = !system;
	return rc;
}

void cd_resolve_done(conduit_ctx *ctx, struct cd_use *u, const char *uri)
{
	bool keep = u->ep != NULL && u->gen == ctx->settings_gen &&
	            (u->uri != NULL ||
	             (u->fresh_ok && rememberable(u->ep, uri, u->len))) &&
	            find_remembered(ctx, u, uri) == NULL;
	if (keep && u->uri == NULL) {
		u->uri = malloc(u->len + 1);
		if (u->uri != NULL)
			memcpy(u->uri, uri, u->len + 1);
		keep = u->uri != NULL;
	}
	if (!keep) {
		free(u->uri);
		conduit_endpoint_free(u->ep);
	} else {
		/* Back where it came from if that slot is still free, else
		 * into a free slot, else in place of the next in turn; and
		 * the one just used is never the next to go. */
		unsigned slot = u->slot;
		if (slot >= CD_REMEMBERED ||
		    ctx->remembered[slot].uri != NULL) {
			slot = ctx->remembered_next;
			for (unsigned i = 0; i < CD_REMEMBERED; i++)
				if (ctx->remembered[i].uri == NULL) {
					slot = i;
					break;
				}
		}
		struct cd_remembered *r = &ctx->remembered[slot];
		ctx->remembered_last = slot;
		if (slot == ctx->remembered_next)
			ctx->remembered_next = (slot + 1) % CD_REMEMBERED;
		forget(r);
		*r = (struct cd_remembered){u->hash, u->len, u->uri, u->ep};
	}
	u->ep = NULL;
	u->uri = NULL;
}

void cd_ctx_changed(conduit_ctx *ctx)
{
	ctx->settings_gen++;
	for (size_t i = 0; i < CD_REMEMBERED; i++)
		forget(&ctx->remembered[i]);
}
