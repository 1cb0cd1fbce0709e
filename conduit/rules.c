/*
 * rules.c - the rules-file parser.  It turns the text of a rules file (or
 * rules given by an application as text) into a struct cd_ruleset that the
 * resolver applies, and it does every check that can be done without a
 * URI in hand: host patterns, placeholders, ports, destinations, and ties
 * between rules.  A bad file is rejected whole with "name:line:column:
 * reason", so a typo can never leave half a configuration in force.  It
 * also holds cd_pattern_match(), the one definition of how a host pattern
 * matches a host and how specific that match is.
 *
 * The syntax
 * ----------
 * A rules file is ASCII text (UTF-8 is allowed inside comments).  Lines end
 * with "\n"; the last line may lack it, and one "\r" just before the line
 * end is ignored (CRLF files work).  A line holds at most 4096 bytes, not
 * counting its line end; a file holds at most 10000 rules.  Fields are
 * separated by spaces and tabs.  A "#" at the start of a field begins a
 * comment that runs to the end of the line; a "#" inside a field is part
 * of it (so "http://h/#x" keeps its fragment).  Blank and comment-only
 * lines are ignored.  A NUL byte is an error anywhere; other control bytes
 * (tab aside) and bytes of 0x80 and above are errors outside comments.
 * Directives are lower-case and one of:
 *
 *   map PATTERN TARGET
 *     Endpoints for hosts matching PATTERN are made from TARGET.
 *     PATTERN is a host pattern: a DNS name ("db.internal"), or "*."
 *     followed by a DNS name ("*.xen": one or more whole labels in front of
 *     ".xen").  Names are lower-cased and one trailing dot is dropped.  Each
 *     label holds 1-63 bytes of a-z, 0-9, "_" and "-" and neither starts
 *     nor ends with "-"; the whole pattern (with its "*.") holds at most 253
 *     bytes.  A "*" anywhere else is an error, and "*" alone is not allowed
 *     in a map.
 *     TARGET is a URI template of non-blank characters.  It starts with a
 *     scheme (a letter, then letters, digits, "+", "-", ".") and ":".  It
 *     may hold the placeholders {host}, {label}, {prefix}, {port} and
 *     {scheme}; any other "{...}" and any unbalanced "{" or "}" is an
 *     error.  The template is not parsed as a URI here: the resolver
 *     parses what it expands to.  It is stored as written.
 *
 *   connect-to PATTERN:PORT DEST
 *     curl's --connect-to: a connection to a matching host and port goes
 *     to DEST instead, while the URI's host stays the logical name (TLS
 *     server name, certificate check).  PATTERN is a host pattern as for
 *     map, or "*" for any host; IPv6 literals ("[") are not patterns.
 *     PORT is a decimal 0-65535 or "*" for any port.  DEST is HOST:PORT:
 *     HOST is a DNS name (checked and lower-cased as above), an IPv4
 *     address, or an IPv6 address in brackets (no zone), or a template
 *     using {host}, {label} and {prefix} with the other characters drawn
 *     from letters, digits, ".", "_" and "-".  PORT is a decimal 1-65535,
 *     or empty ("HOST:") to keep the port the URI asked for.  Placeholders
 *     are not allowed in the port.  The destination is stored
 *     normalised: names lower-cased without a trailing dot, addresses in
 *     their canonical text, ports without leading zeros.
 *
 *   service NAME PORT [tls]
 *     A URI scheme NAME (lower-cased; a letter, then letters, digits, "-"
 *     and ".") uses PORT (1-65535) by default and, with the word "tls",
 *     runs over TLS.  NAME may not hold "+" (layers are written in URIs,
 *     not in services) and may not be a transport: tcp, unix,
 *     unix-abstract or vchan.
 *
 * Ties.  Two map rules with the same pattern, two connect-to rules with
 * the same pattern and the same port (a number or "*"), and two service
 * rules with the same name are errors: the second names the first's
 * place, whether it is earlier in the same text or in a set loaded before
 * (passed as `existing`).  Rules of different kinds never tie, and "*:443"
 * does not tie with "example.com:443": the more specific one wins.
 *
 * Errors.  The text is checked line by line and the first error found is
 * the only one reported; within a line, bad bytes and the line length are
 * checked first, then the directive, the number of fields, the fields from
 * left to right, and the tie.  A missing field is reported at the end of
 * the line's fields (the "#" of a trailing comment, or the line end); an
 * extra field at its own column.  Lines and columns count from 1, columns
 * in bytes.
 */
#include "core.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define NELEM(a)        (sizeof(a) / sizeof((a)[0]))
#define LINE_MAX_BYTES  4096
#define RULES_MAX       10000
#define NAME_MAX_BYTES  253
#define LABEL_MAX_BYTES 63
/* map takes 3 fields and service at most 4; one more is enough to report
 * an extra field. */
#define MAX_FIELDS 5

struct field {
	const char *s;
	size_t len;
	size_t col;
};

/* Where the parse is, and the set it is building. */
struct parser {
	const char *name;
	size_t line;
	char *err;
	size_t errlen;
	const struct cd_ruleset *existing;
	size_t n, cap;
	struct cd_rule *rules;
	/* open-addressing index over existing and new rules, for ties:
	 * slot holds 1 + index (existing first, then new), 0 when empty */
	size_t *slots;
	size_t mask;
};

/* Placeholder sets, as bits. */
enum {
	PH_HOST = 1,
	PH_LABEL = 2,
	PH_PREFIX = 4,
	PH_PORT = 8,
	PH_SCHEME = 16,
	PH_MAP = PH_HOST | PH_LABEL | PH_PREFIX | PH_PORT | PH_SCHEME,
	PH_DEST = PH_HOST | PH_LABEL | PH_PREFIX,
};

static const struct {
	const char *name;
	unsigned bit;
} placeholders[] = {
    {"host", PH_HOST}, {"label", PH_LABEL},   {"prefix", PH_PREFIX},
    {"port", PH_PORT}, {"scheme", PH_SCHEME},
};

/* What a DNS name is being checked for; only the messages differ. */
enum name_use { USE_PATTERN, USE_DEST };

/*
 * Write bytes fit for a message into buf: printable ASCII as is, anything
 * else as \xNN, and "..." when it does not all fit.  Every piece of input
 * that reaches a message goes through here, so a file cannot put escape
 * sequences on a terminal nor make a message unbounded.
 */
static const char *show(char *buf, size_t size, const char *s, size_t n)
{
	size_t need = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		need += (c < 0x20 || c >= 0x7f || c == '\\') ? 4 : 1;
	}
	bool cut = need > size - 1;
	size_t room = cut ? size - 4 : size - 1;
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c >= 0x7f || c == '\\') {
			if (o + 4 > room)
				break;
			snprintf(buf + o, size - o, "\\x%02x", c);
			o += 4;
		} else {
			if (o + 1 > room)
				break;
			buf[o++] = (char)c;
		}
	}
	if (cut) {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o] = '\0';
	return buf;
}

/* Shown pieces of input are short: a message stays near 200 bytes. */
#define SHOWN 52

static int fail(struct parser *ps, size_t col, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct parser *ps, size_t col, const char *fmt, ...)
{
	char reason[256], name[128];
	va_list ap;

	if (ps->err == NULL || ps->errlen == 0)
		return CONDUIT_ERR_RULES;
	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	snprintf(ps->err, ps->errlen, "%s:%zu:%zu: %s",
	         show(name, sizeof(name), ps->name, strlen(ps->name)), ps->line,
	         col, reason);
	return CONDUIT_ERR_RULES;
}

static int nomem(struct parser *ps)
{
	char name[128];
	if (ps->err != NULL && ps->errlen != 0)
		snprintf(ps->err, ps->errlen, "%s: out of memory",
		         show(name, sizeof(name), ps->name, strlen(ps->name)));
	return CONDUIT_ERR_NOMEM;
}

static bool field_is(const struct field *f, const char *word)
{
	return f->len == strlen(word) && memcmp(f->s, word, f->len) == 0;
}

static char lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

static bool is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/*
 * Check a DNS name of n bytes at column col and write it lower-cased,
 * without its trailing dot, NUL-terminated, to out (n + 1 bytes).  extra
 * is what precedes it in the pattern ("*." is 2) and counts towards the
 * 253-byte limit.
 */
static int check_name(struct parser *ps, const char *s, size_t n, size_t col,
                      size_t extra, enum name_use use, char *out)
{
	char sh[SHOWN];

	if (n > 1 && s[n - 1] == '.')
		n--;
	if (n == 0)
		return fail(ps, col, "missing host name");
	size_t start = 0; /* of the current label */
	for (size_t i = 0; i <= n; i++) {
		char c = i < n ? lower(s[i]) : '.';
		if (c == '.') {
			size_t len = i - start;
			if (len == 0)
				return fail(ps, col + i, "empty label in '%s'",
				            show(sh, sizeof(sh), s, n));
			if (s[i - 1] == '-')
				return fail(ps, col + i - 1,
				            "label ends with '-'");
			start = i + 1;
		} else if ((c >= 'a' && c <= 'z') || is_digit(c) || c == '_' ||
		           c == '-') {
			if (c == '-' && i == start)
				return fail(ps, col + i,
				            "label starts with '-'");
			if (i - start == LABEL_MAX_BYTES)
				return fail(ps, col + start,
				            "label longer than 63 bytes");
		} else if (c == '*') {
			if (use == USE_DEST)
				return fail(
				    ps, col + i,
				    "'*' is not allowed in a destination");
			return fail(ps, col + i,
			            "'*' is allowed only as the whole first "
			            "label ('*.example.com')");
		} else if (c == '[' || c == ']') {
			if (use == USE_DEST)
				return fail(
				    ps, col + i,
				    "misplaced '%c' (an IPv6 destination "
				    "is written [ADDRESS]:PORT)",
				    c);
			return fail(ps, col + i,
			            "IPv6 literals are not supported in host "
			            "patterns (patterns are DNS names)");
		} else {
			return fail(ps, col + i,
			            "invalid character '%s' in host name",
			            show(sh, sizeof(sh), s + i, 1));
		}
		if (i < n)
			out[i] = c;
	}
	if (n + extra > NAME_MAX_BYTES)
		return fail(ps, col - extra, "host name longer than 253 bytes");
	out[n] = '\0';
	return CONDUIT_OK;
}

/* A host pattern: "name", "*.name", or (when any is true) "*". */
static int parse_pattern(struct parser *ps, const char *s, size_t n, size_t col,
                         bool any, const char *what, char **out)
{
	char *p = malloc(n + 1);
	if (p == NULL)
		return nomem(ps);
	int rc;
	if (n == 1 && s[0] == '*') {
		if (!any) {
			free(p);
			return fail(
			    ps, col,
			    "'*' alone is not allowed in %s (use a name "
			    "or *.SUFFIX)",
			    what);
		}
		strcpy(p, "*");
		rc = CONDUIT_OK;
	} else if (n >= 2 && s[0] == '*' && s[1] == '.') {
		if (n == 2)
			rc = fail(ps, col + 2,
			          "'*.' needs a DNS suffix after it");
		else
			rc = check_name(ps, s + 2, n - 2, col + 2, 2,
			                USE_PATTERN, p + 2);
		p[0] = '*';
		p[1] = '.';
	} else {
		rc = check_name(ps, s, n, col, 0, USE_PATTERN, p);
	}
	if (rc != CONDUIT_OK) {
		free(p);
		return rc;
	}
	*out = p;
	return CONDUIT_OK;
}

/* A decimal port in [min, 65535], or "*" (-1) when star is true. */
static int parse_port(struct parser *ps, const char *s, size_t n, size_t col,
                      int min, bool star, int *port)
{
	char sh[SHOWN];

	if (star && n == 1 && s[0] == '*') {
		*port = -1;
		return CONDUIT_OK;
	}
	long v = 0;
	for (size_t i = 0; i < n; i++) {
		if (!is_digit(s[i]) || n > 10) {
			v = -1;
			break;
		}
		v = v * 10 + (s[i] - '0');
	}
	if (n == 0 || v < min || v > 65535)
		return fail(ps, col, "bad port '%s' (expected %d-65535%s)",
		            show(sh, sizeof(sh), s, n), min,
		            star ? " or '*'" : "");
	*port = (int)v;
	return CONDUIT_OK;
}

/*
 * Check the placeholders in s: every "{" closes with "}" before any other
 * brace, and names one of the set `allowed`.  where names the place in
 * messages.
 */
static int check_braces(struct parser *ps, const char *s, size_t n, size_t col,
                        unsigned allowed, const char *where)
{
	char sh[SHOWN];

	for (size_t i = 0; i < n; i++) {
		if (s[i] == '}')
			return fail(ps, col + i, "unbalanced '}'");
		if (s[i] != '{')
			continue;
		size_t j = i + 1;
		while (j < n && s[j] != '}' && s[j] != '{')
			j++;
		if (j == n || s[j] == '{')
			return fail(ps, col + i, "unbalanced '{'");
		const char *nm = s + i + 1;
		size_t len = j - i - 1;
		unsigned bit = 0;
		for (size_t k = 0; k < NELEM(placeholders); k++)
			if (strlen(placeholders[k].name) == len &&
			    memcmp(placeholders[k].name, nm, len) == 0)
				bit = placeholders[k].bit;
		if (bit == 0)
			return fail(ps, col + i,
			            "unknown placeholder {%s} (known: {host}, "
			            "{label}, {prefix}, {port}, {scheme})",
			            show(sh, sizeof(sh), nm, len));
		if ((bit & allowed) == 0)
			return fail(ps, col + i,
			            "placeholder {%s} cannot be used in %s "
			            "(allowed: {host}, {label}, {prefix})",
			            show(sh, sizeof(sh), nm, len), where);
		i = j;
	}
	return CONDUIT_OK;
}

/* A map target: "scheme:" then anything, with known placeholders. */
static int check_target(struct parser *ps, const struct field *f)
{
	size_t i = 0;
	if (f->len > 0 && is_alpha(f->s[0])) {
		i = 1;
		while (i < f->len &&
		       (is_alpha(f->s[i]) || is_digit(f->s[i]) ||
		        f->s[i] == '+' || f->s[i] == '-' || f->s[i] == '.'))
			i++;
	}
	if (i == 0 || i == f->len || f->s[i] != ':')
		return fail(ps, f->col + i,
		            "target must start with a URI scheme and ':' "
		            "(as in 'tcp://' or 'unix:')");
	return check_braces(ps, f->s, f->len, f->col, PH_MAP, "a map target");
}

/* The host part of a connect-to destination that holds placeholders. */
static int check_dest_template(struct parser *ps, const char *s, size_t n,
                               size_t col, char *out)
{
	char sh[SHOWN];

	int rc =
	    check_braces(ps, s, n, col, PH_DEST, "a connect-to destination");
	if (rc != CONDUIT_OK)
		return rc;
	bool inside = false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '{' || c == '}') {
			inside = c == '{';
		} else if (!inside && !is_alpha(c) && !is_digit(c) &&
		           c != '.' && c != '_' && c != '-') {
			return fail(
			    ps, col + i,
			    "invalid character '%s' in destination host",
			    show(sh, sizeof(sh), s + i, 1));
		}
		out[i] = lower(c);
	}
	out[n] = '\0';
	return CONDUIT_OK;
}

/* An address literal of family af; its canonical text goes to out
 * (INET6_ADDRSTRLEN bytes). */
static int check_addr(struct parser *ps, int af, const char *s, size_t n,
                      size_t col, char *out)
{
	char tmp[INET6_ADDRSTRLEN], sh[SHOWN];
	unsigned char bin[sizeof(struct in6_addr)];
	bool ok = false;

	if (n < sizeof(tmp)) {
		memcpy(tmp, s, n);
		tmp[n] = '\0';
		ok = inet_pton(af, tmp, bin) == 1 &&
		     inet_ntop(af, bin, out, INET6_ADDRSTRLEN) != NULL;
	}
	if (!ok)
		return fail(ps, col, "bad %s address '%s'",
		            af == AF_INET6 ? "IPv6" : "IPv4",
		            show(sh, sizeof(sh), s, n));
	return CONDUIT_OK;
}

/* connect-to's DEST: HOST:PORT, stored normalised as the rule's target. */
static int parse_dest(struct parser *ps, const struct field *f, char **out)
{
	const char *s = f->s, *end = f->s + f->len;
	const char *host, *colon;
	size_t hlen;
	bool v6 = false;
	int rc;

	if (s[0] == '[') {
		const char *close = memchr(s, ']', f->len);
		if (close == NULL)
			return fail(ps, f->col, "unclosed '[' in destination");
		host = s + 1;
		hlen = (size_t)(close - host);
		colon = close + 1;
		if (colon == end || *colon != ':')
			return fail(ps, f->col + (size_t)(colon - s),
			            "destination needs HOST:PORT after ']' "
			            "(write HOST: to keep the port)");
		v6 = true;
	} else {
		colon = memrchr(s, ':', f->len);
		if (colon == NULL)
			return fail(ps, f->col + f->len,
			            "destination needs HOST:PORT (write HOST: "
			            "to keep the port)");
		host = s;
		hlen = (size_t)(colon - s);
		const char *c1 = memchr(host, ':', hlen);
		if (c1 != NULL)
			return fail(ps, f->col + (size_t)(c1 - s),
			            "an IPv6 destination must be in brackets "
			            "([::1]:PORT)");
		if (hlen == 0)
			return fail(ps, f->col, "missing destination host");
	}

	/* the port: empty keeps the URI's port */
	const char *pstr = colon + 1;
	size_t plen = (size_t)(end - pstr);
	size_t pcol = f->col + (size_t)(pstr - s);
	int port = 0;
	if (memchr(pstr, '{', plen) != NULL || memchr(pstr, '}', plen) != NULL)
		return fail(ps, pcol,
		            "placeholders are allowed only in the host part of "
		            "the destination");
	if (plen > 0) {
		rc = parse_port(ps, pstr, plen, pcol, 1, false, &port);
		if (rc != CONDUIT_OK)
			return rc;
	}

	/* the host, written into a buffer big enough for any form of it */
	size_t hcol = f->col + (size_t)(host - s);
	char *h = malloc(hlen + INET6_ADDRSTRLEN + 1);
	if (h == NULL)
		return nomem(ps);
	if (v6)
		rc = check_addr(ps, AF_INET6, host, hlen, hcol, h);
	else if (memchr(host, '{', hlen) || memchr(host, '}', hlen))
		rc = check_dest_template(ps, host, hlen, hcol, h);
	else if (cd_host_numeric(host, hlen)) /* "10.1.2", "0x7f.1": */
		rc = check_addr(ps, AF_INET, host, hlen, hcol,
		                h); /* never a name */
	else
		rc = check_name(ps, host, hlen, hcol, 0, USE_DEST, h);
	if (rc != CONDUIT_OK) {
		free(h);
		return rc;
	}
	char *t = NULL;
	const char *open = v6 ? "[" : "", *shut = v6 ? "]" : "";
	int w = port > 0 ? asprintf(&t, "%s%s%s:%d", open, h, shut, port)
	                 : asprintf(&t, "%s%s%s:", open, h, shut);
	free(h);
	if (w < 0)
		return nomem(ps);
	*out = t;
	return CONDUIT_OK;
}

/* ---- ties ------------------------------------------------------- */

static size_t rule_hash(const struct cd_rule *r)
{
	uint64_t h = 14695981039346656037u; /* FNV-1a */
	for (const unsigned char *p = (const unsigned char *)r->pattern; *p;
	     p++) {
		h ^= *p;
		h *= 1099511628211u;
	}
	h ^= (uint64_t)r->kind;
	h *= 1099511628211u;
	if (r->kind == CD_RULE_CONNECT_TO) {
		h ^= (uint64_t)(r->port + 1);
		h *= 1099511628211u;
	}
	return (size_t)(h ^ (h >> 31));
}

static bool rules_tie(const struct cd_rule *a, const struct cd_rule *b)
{
	return a->kind == b->kind && strcmp(a->pattern, b->pattern) == 0 &&
	       (a->kind != CD_RULE_CONNECT_TO || a->port == b->port);
}

static size_t existing_n(const struct parser *ps)
{
	return ps->existing != NULL ? ps->existing->n : 0;
}

static const struct cd_rule *rule_at(const struct parser *ps, size_t i)
{
	size_t en = existing_n(ps);
	return i < en ? &ps->existing->rules[i] : &ps->rules[i - en];
}

/* The rule r ties with, or NULL after recording r as rule number idx.
 * The first of several rules that tie (possible only in `existing`,
 * which may come from code) is the one remembered. */
static const struct cd_rule *tie_check(struct parser *ps,
                                       const struct cd_rule *r, size_t idx)
{
	size_t i = rule_hash(r) & ps->mask;
	while (ps->slots[i] != 0) {
		const struct cd_rule *o = rule_at(ps, ps->slots[i] - 1);
		if (rules_tie(o, r))
			return o;
		i = (i + 1) & ps->mask;
	}
	ps->slots[i] = idx + 1;
	return NULL;
}

/* Size the index for every rule this parse can see: the existing ones and
 * at most one per line of the text. */
static int tie_init(struct parser *ps, const char *text, size_t len)
{
	size_t lines = 1;
	const char *p = text, *end = text + len;
	while (lines <= RULES_MAX && p < end &&
	       (p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
		lines++;
		p++;
	}
	size_t want = existing_n(ps) + lines;
	if (want > SIZE_MAX / 4 / sizeof(size_t))
		return nomem(ps);
	size_t size = 16;
	while (size < 2 * want)
		size *= 2;
	ps->slots = calloc(size, sizeof(size_t));
	if (ps->slots == NULL)
		return nomem(ps);
	ps->mask = size - 1;
	for (size_t i = 0; i < existing_n(ps); i++)
		if (ps->existing->rules[i].pattern != NULL)
			(void)tie_check(ps, &ps->existing->rules[i], i);
	return CONDUIT_OK;
}

/* ---- directives ------------------------------------------------- */

static void rule_clear(struct cd_rule *r)
{
	free(r->pattern);
	free(r->target);
	free(r->origin);
	r->pattern = r->target = r->origin = NULL;
}

/* Add r (whose strings the set takes over) unless it ties; col is where
 * the tie is reported. */
static int add_rule(struct parser *ps, struct cd_rule *r, size_t col)
{
	char sh[SHOWN], where[SHOWN + 16];

	const struct cd_rule *o = tie_check(ps, r, existing_n(ps) + ps->n);
	if (o != NULL) {
		const char *org = o->origin != NULL ? o->origin : "(unknown)";
		show(where, sizeof(where), org, strlen(org));
		show(sh, sizeof(sh), r->pattern, strlen(r->pattern));
		int rc;
		if (r->kind == CD_RULE_MAP)
			rc = fail(ps, col, "map %s is already defined at %s",
			          sh, where);
		else if (r->kind == CD_RULE_SERVICE)
			rc =
			    fail(ps, col, "service %s is already defined at %s",
			         sh, where);
		else if (r->port < 0)
			rc = fail(ps, col,
			          "connect-to %s:* is already defined at %s",
			          sh, where);
		else
			rc = fail(ps, col,
			          "connect-to %s:%d is already defined at %s",
			          sh, r->port, where);
		rule_clear(r);
		return rc;
	}
	if (ps->n == ps->cap) {
		size_t cap = ps->cap ? ps->cap * 2 : 16;
		struct cd_rule *nr = realloc(ps->rules, cap * sizeof(*nr));
		if (nr == NULL) {
			rule_clear(r);
			return nomem(ps);
		}
		ps->rules = nr;
		ps->cap = cap;
	}
	if (asprintf(&r->origin, "%s:%zu", ps->name, ps->line) < 0) {
		r->origin = NULL;
		rule_clear(r);
		return nomem(ps);
	}
	ps->rules[ps->n++] = *r;
	return CONDUIT_OK;
}

static int extra_field(struct parser *ps, const struct field *f,
                       const char *usage)
{
	char sh[SHOWN];
	return fail(ps, f->col, "extra field '%s' (%s)",
	            show(sh, sizeof(sh), f->s, f->len), usage);
}

static int do_map(struct parser *ps, const struct field *f, size_t nf,
                  size_t eol)
{
	static const char usage[] = "map takes a pattern and a target";
	struct cd_rule r = {.kind = CD_RULE_MAP, .port = -1};

	if (nf < 3)
		return fail(ps, eol, "map needs a pattern and a target");
	if (nf > 3)
		return extra_field(ps, &f[3], usage);
	int rc = parse_pattern(ps, f[1].s, f[1].len, f[1].col, false, "a map",
	                       &r.pattern);
	if (rc != CONDUIT_OK)
		return rc;
	rc = check_target(ps, &f[2]);
	if (rc == CONDUIT_OK) {
		r.target = strndup(f[2].s, f[2].len);
		r.target_col = f[2].col;
		if (r.target == NULL)
			rc = nomem(ps);
	}
	if (rc != CONDUIT_OK) {
		rule_clear(&r);
		return rc;
	}
	return add_rule(ps, &r, f[1].col);
}

static int do_connect_to(struct parser *ps, const struct field *f, size_t nf,
                         size_t eol)
{
	struct cd_rule r = {.kind = CD_RULE_CONNECT_TO};

	if (nf < 3)
		return fail(ps, eol,
		            "connect-to needs HOST:PORT and a destination "
		            "HOST:PORT");
	if (nf > 3)
		return extra_field(ps, &f[3],
		                   "connect-to takes HOST:PORT and a "
		                   "destination");
	const char *s = f[1].s;
	if (s[0] == '[')
		return fail(ps, f[1].col,
		            "IPv6 literals are not supported in host patterns "
		            "(patterns are DNS names)");
	const char *colon = memchr(s, ':', f[1].len);
	if (colon == NULL)
		return fail(ps, f[1].col + f[1].len,
		            "expected HOST:PORT (PORT a number or '*')");
	size_t hlen = (size_t)(colon - s);
	size_t plen = f[1].len - hlen - 1;
	if (hlen == 0)
		return fail(ps, f[1].col, "missing host pattern before ':'");
	if (plen == 0)
		return fail(ps, f[1].col + hlen + 1,
		            "missing port after ':' (a number or '*')");
	int rc = parse_pattern(ps, s, hlen, f[1].col, true, "connect-to",
	                       &r.pattern);
	if (rc == CONDUIT_OK)
		rc = parse_port(ps, colon + 1, plen, f[1].col + hlen + 1, 0,
		                true, &r.port);
	if (rc == CONDUIT_OK)
		rc = parse_dest(ps, &f[2], &r.target);
	if (rc != CONDUIT_OK) {
		rule_clear(&r);
		return rc;
	}
	return add_rule(ps, &r, f[1].col);
}

static int do_service(struct parser *ps, const struct field *f, size_t nf,
                      size_t eol)
{
	char sh[SHOWN];
	struct cd_rule r = {.kind = CD_RULE_SERVICE};

	if (nf < 3)
		return fail(ps, eol, "service needs a name and a port");
	if (nf > 3 && !field_is(&f[3], "tls"))
		return fail(ps, f[3].col,
		            "expected 'tls' or the end of the line, found '%s'",
		            show(sh, sizeof(sh), f[3].s, f[3].len));
	if (nf > 4)
		return extra_field(ps, &f[4],
		                   "service takes a name, a port and 'tls'");
	const char *s = f[1].s;
	size_t n = f[1].len;
	if (!is_alpha(s[0]))
		return fail(ps, f[1].col,
		            "service name '%s' must start with a letter",
		            show(sh, sizeof(sh), s, n));
	for (size_t i = 1; i < n; i++) {
		if (s[i] == '+')
			return fail(ps, f[1].col + i,
			            "service names cannot hold '+' (layers "
			            "such as tls+ are written in the URI)");
		if (!is_alpha(s[i]) && !is_digit(s[i]) && s[i] != '-' &&
		    s[i] != '.')
			return fail(ps, f[1].col + i,
			            "invalid character '%s' in service name",
			            show(sh, sizeof(sh), s + i, 1));
	}
	r.pattern = malloc(n + 1);
	if (r.pattern == NULL)
		return nomem(ps);
	for (size_t i = 0; i < n; i++)
		r.pattern[i] = lower(s[i]);
	r.pattern[n] = '\0';
	/* A service named as a transport would make URIs ambiguous. */
	int rc = CONDUIT_OK;
	const struct cd_transport *tp = cd_grammar_transport(r.pattern, n);
	if (tp != NULL)
		rc = fail(ps, f[1].col,
		          "'%s' is a transport, not a service name", tp->name);
	if (rc == CONDUIT_OK)
		rc = parse_port(ps, f[2].s, f[2].len, f[2].col, 1, false,
		                &r.port);
	r.tls = nf == 4;
	if (rc != CONDUIT_OK) {
		rule_clear(&r);
		return rc;
	}
	return add_rule(ps, &r, f[1].col);
}

/* ---- lines ------------------------------------------------------ */

/* Split one line (without its line end) into fields, checking its bytes.
 * *eol is the column where the fields end. */
static int split_line(struct parser *ps, const char *s, size_t len,
                      struct field *f, size_t *nf, size_t *eol)
{
	size_t i = 0;
	*nf = 0;
	*eol = len + 1;
	while (i < len) {
		unsigned char c = (unsigned char)s[i];
		if (c == ' ' || c == '\t') {
			i++;
			continue;
		}
		if (c == '#') {
			/* comments may hold anything but NUL, which only
			 * a binary file would */
			const char *z = memchr(s + i, '\0', len - i);
			if (z != NULL)
				return fail(ps, (size_t)(z - s) + 1,
				            "NUL byte in rules text");
			*eol = i + 1;
			return CONDUIT_OK;
		}
		size_t start = i;
		for (; i < len && s[i] != ' ' && s[i] != '\t'; i++) {
			c = (unsigned char)s[i];
			if (c == 0)
				return fail(ps, i + 1,
				            "NUL byte in rules text");
			if (c < 0x20 || c == 0x7f)
				return fail(ps, i + 1, "control byte 0x%02x",
				            c);
			if (c >= 0x80)
				return fail(
				    ps, i + 1,
				    "non-ASCII byte 0x%02x (only comments "
				    "may hold UTF-8)",
				    c);
		}
		if (*nf < MAX_FIELDS)
			f[(*nf)++] =
			    (struct field){s + start, i - start, start + 1};
	}
	return CONDUIT_OK;
}

static int parse_line(struct parser *ps, const char *s, size_t len)
{
	struct field f[MAX_FIELDS];
	size_t nf, eol;
	char sh[SHOWN];

	if (len > LINE_MAX_BYTES)
		return fail(ps, LINE_MAX_BYTES + 1, "line longer than %d bytes",
		            LINE_MAX_BYTES);
	int rc = split_line(ps, s, len, f, &nf, &eol);
	if (rc != CONDUIT_OK || nf == 0)
		return rc;
	int (*fn)(struct parser *, const struct field *, size_t, size_t);
	if (field_is(&f[0], "map"))
		fn = do_map;
	else if (field_is(&f[0], "connect-to"))
		fn = do_connect_to;
	else if (field_is(&f[0], "service"))
		fn = do_service;
	else
		return fail(ps, 1 + (size_t)(f[0].s - s),
		            "unknown directive '%s' (known: map, connect-to, "
		            "service)",
		            show(sh, sizeof(sh), f[0].s, f[0].len));
	if (ps->n == RULES_MAX)
		return fail(ps, f[0].col, "more than %d rules in one file",
		            RULES_MAX);
	return fn(ps, f, nf, eol);
}

static void free_rules(struct cd_rule *rules, size_t n)
{
	for (size_t i = 0; i < n; i++)
		rule_clear(&rules[i]);
	free(rules);
}

int cd_rules_parse(struct cd_ruleset *out, const char *text, size_t len,
                   const char *name, const struct cd_ruleset *existing,
                   char *err, size_t errlen)
{
	struct parser ps = {
	    .name = name != NULL ? name : "(rules)",
	    .err = err,
	    .errlen = errlen,
	    .existing = existing,
	};

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (out == NULL || (text == NULL && len > 0) ||
	    (existing != NULL && existing->n > 0 && existing->rules == NULL)) {
		char sh[128];
		if (err != NULL && errlen > 0)
			snprintf(
			    err, errlen, "%s: invalid argument",
			    show(sh, sizeof(sh), ps.name, strlen(ps.name)));
		return CONDUIT_ERR_INVALID;
	}
	if (text == NULL)
		text = "";
	int rc = tie_init(&ps, text, len);
	const char *p = text, *end = text + len;
	while (rc == CONDUIT_OK && p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl != NULL ? nl : end;
		ps.line++;
		/* one \r before the line end belongs to the line end */
		if (le > p && le[-1] == '\r')
			le--;
		rc = parse_line(&ps, p, (size_t)(le - p));
		p = nl != NULL ? nl + 1 : end;
	}
	free(ps.slots);
	if (rc != CONDUIT_OK) {
		free_rules(ps.rules, ps.n);
		return rc;
	}
	out->n = ps.n;
	out->rules = ps.rules;
	return CONDUIT_OK;
}

void cd_ruleset_free(struct cd_ruleset *rs)
{
	if (rs == NULL)
		return;
	if (rs->rules != NULL)
		free_rules(rs->rules, rs->n);
	rs->rules = NULL;
	rs->n = 0;
}

int cd_ruleset_merge(struct cd_ruleset *dst, struct cd_ruleset *src)
{
	if (src == NULL || src->n == 0) {
		if (src != NULL && src != dst) {
			free(src->rules);
			src->rules = NULL;
		}
		return CONDUIT_OK;
	}
	if (dst == NULL || dst == src)
		return CONDUIT_ERR_INVALID;
	if (dst->n == 0) {
		free(dst->rules);
		*dst = *src;
	} else {
		if (src->n > SIZE_MAX / sizeof(struct cd_rule) - dst->n)
			return CONDUIT_ERR_NOMEM;
		struct cd_rule *r =
		    realloc(dst->rules, (dst->n + src->n) * sizeof(*r));
		if (r == NULL)
			return CONDUIT_ERR_NOMEM;
		memcpy(r + dst->n, src->rules, src->n * sizeof(*r));
		dst->rules = r;
		dst->n += src->n;
		free(src->rules);
	}
	src->rules = NULL;
	src->n = 0;
	return CONDUIT_OK;
}

/* ---- matching --------------------------------------------------- */

static int count_labels(const char *s)
{
	int n = 1;
	for (; *s; s++)
		n += *s == '.';
	return n;
}

int cd_pattern_match(const char *pattern, const char *host)
{
	if (pattern == NULL || host == NULL || host[0] == '\0')
		return -1;
	if (strcmp(pattern, "*") == 0)
		return 0;
	if (pattern[0] == '*') {
		if (pattern[1] != '.' || pattern[2] == '\0')
			return -1;
		/* whole labels only: the host must have ".SUFFIX" at its end
		 * and at least one byte (a label) before that dot */
		const char *suffix = pattern + 2;
		size_t sl = strlen(suffix), hl = strlen(host);
		if (hl < sl + 2 || host[hl - sl - 1] != '.' ||
		    strcmp(host + hl - sl, suffix) != 0)
			return -1;
		return count_labels(suffix);
	}
	if (strcmp(pattern, host) != 0)
		return -1;
	return 1000 + count_labels(host);
}
