/*
 * redact.c - hiding secrets in URIs that are shown: userinfo passwords and
 * the values of options whose keys look secret, in any string, however
 * malformed (cd_uri_redact), and the two questions the parser asks of a
 * piece of its input before quoting it in a message.
 */
#include "uripriv.h"

#include <stdint.h>
#include <string.h>

static const char hexdig[] = "0123456789ABCDEF";

/* ------------------------------------------------------------------ */
/* Redaction                                                           */

/* A bounded writer that keeps counting past its end, so the caller can
 * tell that it truncated. */
struct sink {
	char *buf;
	size_t cap;
	size_t n;
};

static void sink_raw(struct sink *s, char c)
{
	if (s->n + 1 < s->cap)
		s->buf[s->n] = c;
	s->n++;
}

/* Bytes that could upset a terminal or split a log line are shown
 * percent-encoded; the input is possibly hostile. */
static void sink_byte(struct sink *s, unsigned char c)
{
	if (c <= 0x20 || c >= 0x7f) {
		sink_raw(s, '%');
		sink_raw(s, hexdig[c >> 4]);
		sink_raw(s, hexdig[c & 15]);
	} else {
		sink_raw(s, (char)c);
	}
}

static void sink_span(struct sink *s, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		sink_byte(s, (unsigned char)p[i]);
}

static void sink_end(struct sink *s)
{
	if (s->n < s->cap) {
		s->buf[s->n] = '\0';
		return;
	}
	/* Truncated: end in "..." so nobody mistakes it for the whole. */
	s->buf[s->cap - 1] = '\0';
	size_t dots = s->cap - 1 < 3 ? s->cap - 1 : 3;
	memset(s->buf + s->cap - 1 - dots, '.', dots);
}

/* Does an option key (raw, maybe percent-encoded) name a secret?  Keys
 * that cannot be decoded in full count as secret: better a hidden value
 * than a leaked one. */
bool cd_uri_secret_key(const char *k, size_t n)
{
	char d[128];
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		int c = (unsigned char)k[i];
		if (c == '%' && i + 2 < n && hexval(k[i + 1]) >= 0 &&
		    hexval(k[i + 2]) >= 0) {
			c = hexval(k[i + 1]) * 16 + hexval(k[i + 2]);
			i += 2;
		}
		if (c == 0 || o + 1 >= sizeof(d))
			return true;
		d[o++] = (char)lower(c);
	}
	d[o] = '\0';
	return strstr(d, "pass") != NULL || strstr(d, "secret") != NULL ||
	       strstr(d, "key") != NULL || strstr(d, "token") != NULL;
}

/*
 * Where a password may sit.  Finding "the authority" in a malformed or
 * hostile string is guesswork, so the rule needs no structure at all:
 * in every '/'-separated segment that contains an '@', the text from its
 * first ':' to its last '@' is hidden.  That covers userinfo written as
 * RFC 3986 says, written without "//", with '?' or '#' typed in the
 * password, or behind garbage.  The price is that the odd path segment
 * such as "a:b@c" shows as "a:****@c" in messages; canonical URIs are
 * never redacted.  Returns the end of the segment that starts at a, with
 * its hidden range in [*p0, *p1) (empty when none).
 */
static size_t seg_password(const char *uri, size_t a, size_t *p0, size_t *p1)
{
	size_t e = a + strcspn(uri + a, "/");
	const char *at = NULL;
	*p0 = *p1 = 0;
	for (size_t j = a; j < e; j++)
		if (uri[j] == '@')
			at = uri + j;
	if (at != NULL) {
		const char *colon =
		    memchr(uri + a, ':', (size_t)(at - uri) - a);
		if (colon != NULL) {
			*p0 = (size_t)(colon - uri) + 1;
			*p1 = (size_t)(at - uri);
		}
	}
	return e;
}

/* Does uri[at, at + n) touch a hidden password? */
bool cd_uri_touches_password(const char *uri, size_t at, size_t n)
{
	size_t a = at;
	while (a > 0 && uri[a - 1] != '/')
		a--;
	for (;;) {
		size_t p0, p1;
		size_t e = seg_password(uri, a, &p0, &p1);
		if (p1 > p0 && at < p1 && at + n > p0)
			return true;
		if (uri[e] == '\0' || e + 1 >= at + n)
			return false;
		a = e + 1;
	}
}

/*
 * Two kinds of bytes are hidden: passwords (above), and the values of
 * options whose keys look secret, in the query and in the fragment alike
 * (OAuth's implicit flow puts access_token= in the fragment).  Options
 * start after the first '?' or '#' and after every '&' or '#' that ends
 * one; a secret value ends only at '&', since a '#' in it must not start a
 * "fragment" that shows the rest.  fn is called for each run of hidden
 * bytes, [a, b), in order.
 */
static void hidden_runs(const char *uri, size_t len,
                        void (*fn)(void *arg, size_t a, size_t b), void *arg)
{
	size_t q = strcspn(uri, "?#");
	size_t pair =
	    q < len ? q + 1 : SIZE_MAX; /* where the next pair starts */
	size_t v0 = 0, v1 = 0;          /* a secret value */
	size_t p0 = 0, p1 = 0;          /* a password */
	size_t run = SIZE_MAX;          /* where the hidden run began */
	for (size_t i = 0; i < len; i++) {
		if (i == 0 || uri[i - 1] == '/')
			seg_password(uri, i, &p0, &p1);
		if (i == pair) {
			size_t k = strcspn(uri + i, "=&#");
			size_t e = i + k;
			pair = SIZE_MAX;
			if (uri[e] == '=' && cd_uri_secret_key(uri + i, k)) {
				v0 = e + 1;
				v1 = e = v0 + strcspn(uri + v0, "&");
			} else if (uri[e] == '=') {
				e += 1 + strcspn(uri + e + 1, "&#");
			}
			if (uri[e] == '&' || uri[e] == '#')
				pair = e + 1;
		}
		bool hide = (i >= p0 && i < p1) || (i >= v0 && i < v1);
		if (hide && run == SIZE_MAX)
			run = i;
		if (!hide && run != SIZE_MAX) {
			fn(arg, run, i);
			run = SIZE_MAX;
		}
	}
	if (run != SIZE_MAX)
		fn(arg, run, len);
}

struct redacting {
	struct sink *s;
	const char *uri;
	size_t shown; /* the bytes before this were written or hidden */
};

static void redact_run(void *arg, size_t a, size_t b)
{
	struct redacting *r = arg;
	for (size_t i = r->shown; i < a; i++)
		sink_byte(r->s, (unsigned char)r->uri[i]);
	sink_span(r->s, "****", 4);
	r->shown = b;
}

/* Each run of hidden bytes shows as one "****". */
void cd_uri_redact(const char *uri, char *out, size_t outlen)
{
	if (out == NULL || outlen == 0)
		return;
	struct sink s = {out, outlen, 0};
	if (uri == NULL) {
		sink_span(&s, "(null)", 6);
		sink_end(&s);
		return;
	}
	size_t len = strlen(uri);
	struct redacting r = {&s, uri, 0};
	hidden_runs(uri, len, redact_run, &r);
	for (size_t i = r.shown; i < len; i++)
		sink_byte(&s, (unsigned char)uri[i]);
	sink_end(&s);
}

/* Shorter hidden runs are not looked for in other text: "x" would take
 * every x of a message with it. */
#define SCRUB_MIN 4

struct scrubbing {
	const char *uri;
	char *msg;
	size_t cap;
};

static void scrub_run(void *arg, size_t a, size_t b)
{
	struct scrubbing *sc = arg;
	size_t n = b - a;
	if (n < SCRUB_MIN)
		return;
	char *hit;
	char *from = sc->msg;
	while ((hit = memmem(from, strlen(from), sc->uri + a, n)) != NULL) {
		/* "****" is no longer than what it replaces. */
		memcpy(hit, "****", 4);
		memmove(hit + 4, hit + n, strlen(hit + n) + 1);
		from = hit + 4;
	}
}

void cd_uri_scrub(const char *uri, char *msg, size_t cap)
{
	if (uri == NULL || msg == NULL || cap == 0)
		return;
	struct scrubbing sc = {uri, msg, cap};
	hidden_runs(uri, strlen(uri), scrub_run, &sc);
}
