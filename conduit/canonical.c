/*
 * canonical.c - printing an endpoint as its canonical URI (uri.c's opening
 * comment describes the form): each shape's printer and the whole URI.
 * Every endpoint is printed once when it is made, so this is on the path
 * of every resolution and every connect.
 */
#include "uripriv.h"

#include <stdlib.h>
#include <string.h>

static const char hexdig[] = "0123456789ABCDEF";

/* A growing string for printing. */
struct sbuf {
	char *p;
	size_t len;
	size_t cap;
	bool failed;
};

/* ------------------------------------------------------------------ */
/* Printing helpers                                                    */

static void sb_putn(struct sbuf *sb, const char *s, size_t n)
{
	if (sb->failed)
		return;
	if (sb->len + n + 1 > sb->cap) {
		size_t cap = sb->cap ? sb->cap : 64;
		while (cap < sb->len + n + 1)
			cap *= 2;
		char *np = realloc(sb->p, cap);
		if (np == NULL) {
			sb->failed = true;
			return;
		}
		sb->p = np;
		sb->cap = cap;
	}
	memcpy(sb->p + sb->len, s, n);
	sb->len += n;
	sb->p[sb->len] = '\0';
}

static void sb_puts(struct sbuf *sb, const char *s)
{
	sb_putn(sb, s, strlen(s));
}

/* Append s, percent-encoding every byte that is neither unreserved nor
 * in keep.  Runs of bytes that stay as they are go in one copy: every
 * endpoint is printed once when it is made, so this is on the path of
 * every resolution. */
static void sb_encode(struct sbuf *sb, const char *s, const char *keep)
{
	while (*s != '\0') {
		const char *run = s;
		while (*s != '\0' && (is_unreserved((unsigned char)*s) ||
		                      in_set((unsigned char)*s, keep)))
			s++;
		if (s > run)
			sb_putn(sb, run, (size_t)(s - run));
		if (*s == '\0')
			break;
		unsigned char c = (unsigned char)*s++;
		char e[3] = {'%', hexdig[c >> 4], hexdig[c & 15]};
		sb_putn(sb, e, 3);
	}
}

/* What may stay unencoded where.  Paths keep pchar and '/'; an abstract
 * name's first part sits in the authority, where ':' and '@' would mean
 * port and userinfo; option values must not hold '&', '=', '#' or '+'
 * (read as a space by some other parsers). */
#define KEEP_PATH     "!$&'()*+,;=:@/"
#define KEEP_ABSTRACT "!$&'()*+,;=/"
#define KEEP_ZONE     ""
#define KEEP_VALUE    "!$'()*,;:@/?"

/* ------------------------------------------------------------------ */
/* The shapes' printers                                                */

/* ":" and a decimal int: by hand, since every endpoint is printed once
 * when it is made and snprintf() cost more than the rest of the print. */
static void sb_port(struct sbuf *sb, int port)
{
	char buf[16];
	size_t i = sizeof(buf);
	unsigned long v =
	    port < 0 ? 0ul - (unsigned long)port : (unsigned long)port;
	do
		buf[--i] = (char)('0' + v % 10);
	while ((v /= 10) != 0);
	if (port < 0)
		buf[--i] = '-';
	buf[--i] = ':';
	sb_putn(sb, buf + i, sizeof(buf) - i);
}

void cd_uri_print_hostport(struct sbuf *sb, const conduit_endpoint *ep)
{
	sb_puts(sb, "//");
	if (ep->host_kind == CONDUIT_HOST_IPV6 && ep->host != NULL) {
		sb_puts(sb, "[");
		sb_puts(sb, ep->host);
		if (ep->zone != NULL && ep->zone[0] != '\0') {
			sb_puts(sb, "%25");
			sb_encode(sb, ep->zone, KEEP_ZONE);
		}
		sb_puts(sb, "]");
	} else if (ep->host_kind != CONDUIT_HOST_NONE && ep->host != NULL) {
		/* Checked names and IPv4 hold nothing that needs encoding;
		 * encoding anyway keeps odd hand-made endpoints printable. */
		sb_encode(sb, ep->host, "");
	}
	sb_port(sb, ep->port);
}

/* The decoded path decides the form, not how it was written: a relative
 * path never starts with '/', so "unix:" + path can never be read as
 * "unix://authority", and an absolute one always gets the empty
 * authority (so "//x" prints as "unix:////x"). */
void cd_uri_print_path(struct sbuf *sb, const conduit_endpoint *ep)
{
	const char *path = ep->path != NULL ? ep->path : "";
	if (path[0] == '/')
		sb_puts(sb, "//");
	sb_encode(sb, path, KEEP_PATH);
}

void cd_uri_print_abstract(struct sbuf *sb, const conduit_endpoint *ep)
{
	sb_puts(sb, "//");
	sb_encode(sb, ep->path != NULL ? ep->path : "", KEEP_ABSTRACT);
}

void cd_uri_print_vchan(struct sbuf *sb, const conduit_endpoint *ep)
{
	sb_puts(sb, "//");
	sb_encode(sb, ep->host != NULL ? ep->host : "", "");
	sb_puts(sb, "/");
	sb_encode(sb, ep->path != NULL ? ep->path : "", "");
}

/* ------------------------------------------------------------------ */
/* The whole URI                                                       */

char *cd_uri_format(const conduit_endpoint *ep)
{
	struct sbuf sb = {NULL, 0, 0, false};
	if (ep == NULL || ep->transport == NULL)
		return NULL;
	size_t nl = ep->nlayers < CD_MAX_LAYERS ? ep->nlayers : CD_MAX_LAYERS;
	for (size_t i = nl; i > 0; i--) {
		sb_puts(&sb, ep->layers[i - 1]);
		sb_puts(&sb, "+");
	}
	sb_puts(&sb, ep->transport);
	sb_puts(&sb, ":");
	const struct cd_transport *tp = cd_grammar_transport_of(ep->transport);
	if (tp != NULL)
		tp->shape->print(&sb, ep);
	for (size_t i = 0; i < ep->nopts; i++) {
		sb_puts(&sb, i == 0 ? "?" : "&");
		sb_encode(&sb, ep->opts[i].key, KEEP_VALUE);
		sb_puts(&sb, "=");
		sb_encode(&sb, ep->opts[i].value, KEEP_VALUE);
	}
	if (sb.failed) {
		free(sb.p);
		return NULL;
	}
	return sb.p;
}
