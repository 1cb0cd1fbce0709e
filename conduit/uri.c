/*
 * uri.c - conduit's URI grammar: parsing a URI into the fields of an
 * endpoint.  The other parts of the grammar have files of their own, tied
 * together by uripriv.h: canonical.c prints an endpoint back as its
 * canonical URI (the form described at the end of this comment),
 * grammar.c holds the tables of transports, layers and their options with
 * the checks of option values, and redact.c hides secrets in URIs that
 * are shown in messages.
 *
 * The parser is strict on purpose.  URIs come from configuration files,
 * command lines and sometimes from peers; guessing what a malformed one
 * meant would connect somewhere the user did not ask for, so anything the
 * grammar below does not describe is refused with a message that names the
 * URI (redacted) and says what is wrong with it.
 *
 * Grammar (RFC 3986 syntax; dec(x) is x percent-decoded):
 *
 *   URI        = SCHEME ":" HIER [ "?" QUERY ]   ; a "#fragment" is refused
 *   SCHEME     = *( LAYER "+" ) TRANSPORT        ; case-insensitive
 *   LAYER      = "tls"                ; written outermost first, each once,
 *                                     ; at most CD_MAX_LAYERS
 *   TRANSPORT  = "tcp" / "unix" / "unix-abstract" / "vchan" / "mem"
 *
 *   tcp           "//" [ HOST ] ":" PORT [ "/" ]
 *     HOST       = NAME / IPV4 / "[" IPV6 [ "%25" ZONE ] "]"
 *     NAME       dec(reg-name), lower-cased: labels of 1-63 bytes from
 *                [a-z0-9_-], none starting or ending with '-', joined by
 *                '.', at most 253 bytes.  One trailing dot is allowed and
 *                kept (it tells the resolver not to try its search list).
 *                A name whose labels are all numbers (1.2.3, 0x7f.1,
 *                2130706433) must be a valid IPV4: system resolvers read
 *                such names as addresses in surprising ways.  A non-ASCII
 *                name must be written in its punycode (xn--) form.
 *     IPV4       dotted quad, each part 0-255 without leading zeros
 *     IPV6       RFC 4291 text, kept as written but lower-cased
 *     ZONE       1*( unreserved / pct-encoded ) (RFC 6874), decoded, 1-63
 *                printable bytes, case kept
 *     PORT       1*DIGIT, 0-65535; leading zeros are dropped
 *     An empty HOST (tcp://:PORT) means every local address.
 *   unix          "//" "/" PATH      absolute path, empty authority
 *                 "/" PATH           absolute path, printed as above
 *                 PATH               relative path (rootless)
 *     The socket path is dec(PATH): 1-107 bytes, no NUL byte.
 *   unix-abstract "//" AUTH PATH
 *     The abstract name is dec(AUTH) followed by dec(PATH), so
 *     unix-abstract://app/ctl names "app/ctl" and unix-abstract:///x names
 *     "/x": 1-107 bytes, no NUL byte.  A ':' in AUTH would be a port and
 *     is refused (CONDUIT_ERR_PORT); write it as %3A.
 *   mem           "//" AUTH PATH     as unix-abstract: an in-memory flow's
 *                                    name ("mem://3/a"); such flows come
 *                                    from conduit_mem_pair() only, so the
 *                                    URI serves StartTLS and messages
 *
 *   vchan         "//" DOMAIN "/" PORT
 *     DOMAIN     a domain id (decimal 0-32751, leading zeros dropped) or a
 *                name registered in XenStore: 1-63 bytes of [a-z0-9_-],
 *                lower-cased, not all digits; kept as the endpoint's
 *                host, of kind CONDUIT_HOST_NONE (never looked up in DNS)
 *     PORT       the vchan port name: 1-63 bytes of [A-Za-z0-9_-] (case
 *                kept), written as is (XenStore allows nothing else)
 *
 *   QUERY      = [ OPTION *( "&" OPTION ) ]
 *   OPTION     = KEY "=" VALUE       ; both decoded; keys case-sensitive
 *     Each key at most once, and only keys on the transport's list:
 *       tcp            nodelay=0|1, keepalive=1-86400 (seconds),
 *                      source=IPv4|IPv6 (unbracketed, no zone)
 *       unix           mode=0-0777 (octal)
 *       unix-abstract  none
 *       mem            none
 *       vchan          read-ring=BYTES, write-ring=BYTES (1024-1048576:
 *                      the listening side's ring sizes)
 *
 * No userinfo.  '[' and ']' only around an IPv6 host.  Every byte must be
 * one RFC 3986 allows in a URI: spaces, control characters and bytes of
 * 0x80 and above must be percent-encoded.  At most CD_URI_MAX bytes.
 *
 * The canonical form printed for an endpoint: lower-case scheme, layers
 * outermost first; no "/" after a tcp port; the port without leading
 * zeros; IPv6 in brackets with "%25" before the zone; unix paths as
 * "unix:///abs" or "unix:rel"; options sorted by key, numeric values
 * normalised (keepalive in plain decimal, mode as four octal digits);
 * percent-encoding only where needed, with upper-case hex digits.  It
 * always parses back to an equal endpoint.
 */
#include "uripriv.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

/* The longest socket path or abstract name (sun_path less its NUL). */
#define SUN_MAX (sizeof(((struct sockaddr_un *)0)->sun_path) - 1)

/* How much of an input URI a message shows, and how long its reason may
 * be: messages stay under 300 bytes, a log line, however long the input
 * was. */
#define SHOWN_MAX  160
#define REASON_MAX 137
/* How much of a piece of the URI (a key, a port) a reason quotes. */
#define CLIP_MAX 40

#define DNS_NAME_MAX  253
#define DNS_LABEL_MAX 63
#define ZONE_MAX      63
#define SCHEME_MAX    63

/* Describe a byte for a message without putting raw bytes into it. */
static const char *charname(int c, char buf[8])
{
	unsigned char u = (unsigned char)c;
	if (u > 0x20 && u < 0x7f)
		snprintf(buf, 8, "'%c'", u);
	else
		snprintf(buf, 8, "0x%02x", u);
	return buf;
}

/* ------------------------------------------------------------------ */
/* Parser state and messages                                           */

struct span {
	const char *p;
	size_t n;
};

struct parts {
	bool has_auth;
	struct span auth;
	struct span path;
	bool has_query;
	struct span query;
	bool has_frag;
};

struct pstate {
	const char *uri;
	char *err;
	size_t errlen;
	conduit_endpoint *ep;
	const struct cd_transport *tp;
	unsigned flags; /* CD_PARSE_* */
};

static void vmessage(char *err, size_t errlen, const char *uri, const char *fmt,
                     va_list ap) __attribute__((format(printf, 4, 0)));

static void vmessage(char *err, size_t errlen, const char *uri, const char *fmt,
                     va_list ap)
{
	if (err == NULL || errlen == 0)
		return;
	char shown[SHOWN_MAX + 1];
	char reason[REASON_MAX + 1];
	cd_uri_redact(uri, shown, sizeof(shown));
	vsnprintf(reason, sizeof(reason), fmt, ap);
	/* The reason may quote the URI too (an unknown scheme, say). */
	char msg[SHOWN_MAX + REASON_MAX + 3];
	snprintf(msg, sizeof(msg), "%s: %s", shown, reason);
	cd_text_escape(err, errlen, msg);
}

void cd_uri_error(char *err, size_t errlen, const char *uri, const char *fmt,
                  ...)
{
	va_list ap;
	va_start(ap, fmt);
	vmessage(err, errlen, uri, fmt, ap);
	va_end(ap);
}

static int fail(struct pstate *ps, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct pstate *ps, int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vmessage(ps->err, ps->errlen, ps->uri, fmt, ap);
	va_end(ap);
	return status;
}

static int nomem(struct pstate *ps)
{
	return fail(ps, CONDUIT_ERR_NOMEM, "out of memory");
}

/* A piece of the (already checked, printable) input for a message.  A
 * piece that overlaps what the redactor hides is not quoted at all: the
 * reason must not show what the URI part of the message hides. */
static const char *clip(const struct pstate *ps, char buf[CLIP_MAX + 4],
                        const char *p, size_t n)
{
	if (cd_uri_touches_password(ps->uri, (size_t)(p - ps->uri), n)) {
		memcpy(buf, "****", 5);
	} else if (n > CLIP_MAX) {
		memcpy(buf, p, CLIP_MAX);
		memcpy(buf + CLIP_MAX, "...", 4);
	} else {
		memcpy(buf, p, n);
		buf[n] = '\0';
	}
	return buf;
}

/* Percent-decode p[0..n) into a new string; *outn gets its length, which
 * the caller compares with strlen() to find decoded NUL bytes. */
static char *decode(const char *p, size_t n, size_t *outn)
{
	char *d = malloc(n + 1);
	if (d == NULL)
		return NULL;
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '%' && i + 2 < n && hexval(p[i + 1]) >= 0 &&
		    hexval(p[i + 2]) >= 0) {
			d[o++] =
			    (char)(hexval(p[i + 1]) * 16 + hexval(p[i + 2]));
			i += 2;
		} else {
			d[o++] = p[i];
		}
	}
	d[o] = '\0';
	if (outn != NULL)
		*outn = o;
	return d;
}

static bool has_nul(const char *d, size_t n)
{
	return memchr(d, '\0', n) != NULL;
}

static char *empty(void)
{
	char *s = malloc(1);
	if (s != NULL)
		s[0] = '\0';
	return s;
}

/* ------------------------------------------------------------------ */
/* tcp: host and port                                                  */

static bool numeric_label(const char *s, size_t n)
{
	if (n == 0)
		return false;
	if (n >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		for (size_t i = 2; i < n; i++)
			if (hexval(s[i]) < 0)
				return false;
		return true;
	}
	for (size_t i = 0; i < n; i++)
		if (!is_digit(s[i]))
			return false;
	return true;
}

/*
 * A dotted quad as inet_pton(AF_INET) takes it: four decimal parts of
 * 0-255, none with a leading zero, nothing else.  Written out because a
 * tcp host is checked here and converted again by every lookup of an
 * endpoint, both on the path of every connect; the libc call is several
 * times slower for the same answer.
 */
bool cd_ipv4_parse(const char *s, unsigned char out[4])
{
	for (int part = 0; part < 4; part++) {
		if (part > 0 && *s++ != '.')
			return false;
		if (!is_digit(*s))
			return false;
		unsigned v = (unsigned)(*s++ - '0');
		for (int d = 1; d < 3 && is_digit(*s); d++) {
			if (v == 0)
				return false; /* leading zero */
			v = v * 10 + (unsigned)(*s++ - '0');
		}
		if (v > 255 || is_digit(*s))
			return false;
		out[part] = (unsigned char)v;
	}
	return *s == '\0';
}

bool cd_host_numeric(const char *s, size_t n)
{
	if (n > 0 && s[n - 1] == '.')
		n--;
	size_t i = 0;
	while (i <= n) {
		size_t l = 0;
		while (i + l < n && s[i + l] != '.')
			l++;
		if (!numeric_label(s + i, l))
			return false;
		i += l + 1;
	}
	return true;
}

static int check_dns(struct pstate *ps, const char *h)
{
	size_t n = strlen(h);
	char cb[8];
	if (n > 0 && h[n - 1] == '.')
		n--;
	if (n > DNS_NAME_MAX)
		return fail(ps, CONDUIT_ERR_HOST,
		            "host name is %zu bytes, limit %d", n,
		            DNS_NAME_MAX);
	size_t i = 0;
	while (i <= n) {
		size_t l = 0;
		while (i + l < n && h[i + l] != '.')
			l++;
		if (l == 0)
			return fail(ps, CONDUIT_ERR_HOST,
			            "empty label in host name");
		if (l > DNS_LABEL_MAX)
			return fail(ps, CONDUIT_ERR_HOST,
			            "host name label is %zu bytes, limit %d", l,
			            DNS_LABEL_MAX);
		for (size_t j = i; j < i + l; j++) {
			int c = h[j];
			if (!(c >= 'a' && c <= 'z') && !is_digit(c) &&
			    c != '-' && c != '_')
				return fail(
				    ps, CONDUIT_ERR_HOST,
				    "invalid character %s in host name "
				    "(letters, digits, '-', '_' and '.' only)",
				    charname(c, cb));
		}
		if (h[i] == '-' || h[i + l - 1] == '-')
			return fail(ps, CONDUIT_ERR_HOST,
			            "host name label starts or ends with '-'");
		i += l + 1;
	}
	return CONDUIT_OK;
}

static int parse_regname(struct pstate *ps, const char *s, const char *e)
{
	conduit_endpoint *ep = ps->ep;
	char cb[CLIP_MAX + 4];
	for (const char *p = s; p < e; p++)
		if (!is_unreserved(*p) && !is_subdelim(*p) && *p != '%')
			return fail(ps, CONDUIT_ERR_HOST,
			            "invalid character %s in host ('[' and ']' "
			            "only enclose an IPv6 address)",
			            charname(*p, cb));
	size_t n;
	char *h = decode(s, (size_t)(e - s), &n);
	if (h == NULL)
		return nomem(ps);
	ep->host = h;
	if (n == 0) {
		ep->host_kind = CONDUIT_HOST_NONE;
		return CONDUIT_OK;
	}
	if (has_nul(h, n))
		return fail(ps, CONDUIT_ERR_HOST, "NUL byte in host name");
	for (size_t i = 0; i < n; i++) {
		if ((unsigned char)h[i] >= 0x80)
			return fail(
			    ps, CONDUIT_ERR_HOST,
			    "non-ASCII host name; use its punycode (xn--) "
			    "form");
		h[i] = (char)lower(h[i]);
	}
	if (cd_host_numeric(h, strlen(h))) {
		unsigned char a[4];
		if (n > 15 || !cd_ipv4_parse(h, a))
			return fail(ps, CONDUIT_ERR_HOST,
			            "\"%s\" is not a valid IPv4 address (write "
			            "four numbers 0-255 without leading zeros, "
			            "a.b.c.d)",
			            clip(ps, cb, s, (size_t)(e - s)));
		ep->host_kind = CONDUIT_HOST_IPV4;
		return CONDUIT_OK;
	}
	int rc = check_dns(ps, h);
	if (rc != CONDUIT_OK)
		return rc;
	ep->host_kind = CONDUIT_HOST_NAME;
	return CONDUIT_OK;
}

/* The inside of "[...]". */
static int parse_iplit(struct pstate *ps, const char *s, const char *e)
{
	conduit_endpoint *ep = ps->ep;
	char cb[8];
	if (s == e)
		return fail(ps, CONDUIT_ERR_HOST, "empty IPv6 address in '[]'");
	if (*s == 'v' || *s == 'V')
		return fail(ps, CONDUIT_ERR_HOST,
		            "IPvFuture address not supported (only IPv6 goes "
		            "in '[]')");
	const char *pct = memchr(s, '%', (size_t)(e - s));
	const char *aend = pct != NULL ? pct : e;
	char buf[64];
	size_t n = (size_t)(aend - s);
	unsigned char a[16];
	bool ok = n > 0 && n < sizeof(buf);
	if (ok) {
		for (size_t i = 0; i < n; i++)
			buf[i] = (char)lower(s[i]);
		buf[n] = '\0';
		ok = inet_pton(AF_INET6, buf, a) == 1;
	}
	if (!ok)
		return fail(ps, CONDUIT_ERR_HOST, "invalid IPv6 address");
	ep->host = malloc(n + 1);
	if (ep->host == NULL)
		return nomem(ps);
	memcpy(ep->host, buf, n + 1);
	ep->host_kind = CONDUIT_HOST_IPV6;
	if (pct == NULL)
		return CONDUIT_OK;
	if (e - pct < 3 || pct[1] != '2' || pct[2] != '5')
		return fail(ps, CONDUIT_ERR_HOST,
		            "IPv6 zone must be written %%25ZONE (RFC 6874), "
		            "e.g. [fe80::1%%25eth0]");
	const char *z = pct + 3;
	if (z == e)
		return fail(ps, CONDUIT_ERR_HOST, "empty IPv6 zone");
	for (const char *p = z; p < e; p++)
		if (!is_unreserved(*p) && *p != '%')
			return fail(ps, CONDUIT_ERR_HOST,
			            "invalid character %s in IPv6 zone",
			            charname(*p, cb));
	size_t zn;
	ep->zone = decode(z, (size_t)(e - z), &zn);
	if (ep->zone == NULL)
		return nomem(ps);
	if (zn > ZONE_MAX)
		return fail(ps, CONDUIT_ERR_HOST,
		            "IPv6 zone is %zu bytes, limit %d", zn, ZONE_MAX);
	for (size_t i = 0; i < zn; i++) {
		unsigned char c = (unsigned char)ep->zone[i];
		if (c <= 0x20 || c >= 0x7f)
			return fail(ps, CONDUIT_ERR_HOST,
			            "invalid byte %s in IPv6 zone",
			            charname(c, cb));
	}
	return CONDUIT_OK;
}

static int parse_port(struct pstate *ps, const char *s, const char *e)
{
	char cb[CLIP_MAX + 4];
	size_t n = (size_t)(e - s);
	if (n == 0)
		return fail(ps, CONDUIT_ERR_PORT, "empty port");
	long x = 0;
	for (const char *p = s; p < e; p++) {
		if (!is_digit(*p))
			return fail(ps, CONDUIT_ERR_PORT,
			            "invalid port \"%s\" (digits only)",
			            clip(ps, cb, s, n));
		if (x <= 65535)
			x = x * 10 + (*p - '0');
	}
	if (x > 65535)
		return fail(ps, CONDUIT_ERR_PORT,
		            "port %s out of range 0-65535", clip(ps, cb, s, n));
	ps->ep->port = (int)x;
	return CONDUIT_OK;
}

/* Would this unbracketed text be an IPv6 address, or one with a port? */
static bool looks_ipv6(const char *s, size_t n)
{
	char buf[64];
	unsigned char a[16];
	for (int pass = 0; pass < 2; pass++) {
		if (n == 0 || n >= sizeof(buf))
			return false;
		memcpy(buf, s, n);
		buf[n] = '\0';
		if (inet_pton(AF_INET6, buf, a) == 1)
			return true;
		while (n > 0 && s[n - 1] != ':')
			n--;
		if (n == 0)
			return false;
		n--;
	}
	return false;
}

static int parse_hostport(struct pstate *ps, const struct parts *pt)
{
	const char *name = ps->tp->name;
	if (!pt->has_auth)
		return fail(ps, CONDUIT_ERR_URI,
		            "%s URIs need an authority (%s://HOST:PORT)", name,
		            name);
	if (pt->path.n > 1 || (pt->path.n == 1 && pt->path.p[0] != '/'))
		return fail(ps, CONDUIT_ERR_URI, "%s URIs take no path", name);
	const char *a = pt->auth.p;
	const char *end = a + pt->auth.n;
	const char *port = NULL;
	int rc;
	if (a < end && *a == '[') {
		const char *rb = memchr(a, ']', pt->auth.n);
		if (rb == NULL)
			return fail(ps, CONDUIT_ERR_HOST,
			            "'[' without a closing ']' in host");
		rc = parse_iplit(ps, a + 1, rb);
		if (rc != CONDUIT_OK)
			return rc;
		if (rb + 1 < end) {
			if (rb[1] != ':')
				return fail(
				    ps, CONDUIT_ERR_HOST,
				    "unexpected text after ']' (expected "
				    "':' and the port)");
			port = rb + 2;
		}
	} else {
		const char *c = memchr(a, ':', pt->auth.n);
		if (c != NULL &&
		    memchr(c + 1, ':', (size_t)(end - c - 1)) != NULL &&
		    looks_ipv6(a, pt->auth.n))
			return fail(
			    ps, CONDUIT_ERR_HOST,
			    "an IPv6 address must be written in brackets "
			    "(%s://[::1]:PORT)",
			    name);
		rc = parse_regname(ps, a, c != NULL ? c : end);
		if (rc != CONDUIT_OK)
			return rc;
		if (c != NULL)
			port = c + 1;
	}
	if (port == NULL)
		return fail(ps, CONDUIT_ERR_PORT,
		            "port required (%s://HOST:PORT)", name);
	return parse_port(ps, port, end);
}

/* ------------------------------------------------------------------ */
/* unix: a path                                                        */

static int no_brackets(struct pstate *ps, struct span s, const char *what)
{
	char cb[8];
	for (size_t i = 0; i < s.n; i++)
		if (s.p[i] == '[' || s.p[i] == ']')
			return fail(
			    ps, CONDUIT_ERR_URI,
			    "invalid character %s in %s ('[' and ']' only "
			    "enclose an IPv6 host)",
			    charname(s.p[i], cb), what);
	return CONDUIT_OK;
}

static int parse_path(struct pstate *ps, const struct parts *pt)
{
	const char *name = ps->tp->name;
	conduit_endpoint *ep = ps->ep;
	if (pt->has_auth && pt->auth.n > 0) {
		if (pt->auth.p[0] == ':')
			return fail(ps, CONDUIT_ERR_PORT,
			            "%s URIs take no port", name);
		return fail(
		    ps, CONDUIT_ERR_HOST,
		    "%s URIs take no host (write %s:///ABSOLUTE/PATH or "
		    "%s:RELATIVE/PATH)",
		    name, name, name);
	}
	if (pt->path.n == 0)
		return fail(ps, CONDUIT_ERR_URI, "empty socket path");
	size_t n;
	ep->path = decode(pt->path.p, pt->path.n, &n);
	if (ep->path == NULL)
		return nomem(ps);
	if (has_nul(ep->path, n))
		return fail(ps, CONDUIT_ERR_URI,
		            "NUL byte (%%00) in socket path");
	if (n > SUN_MAX)
		return fail(ps, CONDUIT_ERR_PATH_TOO_LONG,
		            "socket path is %zu bytes, limit %zu", n,
		            (size_t)SUN_MAX);
	return CONDUIT_OK;
}

/* ------------------------------------------------------------------ */
/* unix-abstract: a name                                               */

static int parse_abstract(struct pstate *ps, const struct parts *pt)
{
	const char *name = ps->tp->name;
	conduit_endpoint *ep = ps->ep;
	if (!pt->has_auth)
		return fail(ps, CONDUIT_ERR_URI,
		            "%s URIs need '//' (%s://NAME)", name, name);
	int rc = no_brackets(ps, pt->auth, "abstract socket name");
	if (rc != CONDUIT_OK)
		return rc;
	if (memchr(pt->auth.p, ':', pt->auth.n) != NULL)
		return fail(
		    ps, CONDUIT_ERR_PORT,
		    "%s URIs take no port (write a ':' in the name as %%3A)",
		    name);
	size_t an, pn;
	char *a = decode(pt->auth.p, pt->auth.n, &an);
	char *p = decode(pt->path.p, pt->path.n, &pn);
	char *both = a != NULL && p != NULL ? malloc(an + pn + 1) : NULL;
	if (both != NULL) {
		memcpy(both, a, an);
		memcpy(both + an, p, pn);
		both[an + pn] = '\0';
	}
	free(a);
	free(p);
	if (both == NULL)
		return nomem(ps);
	ep->path = both;
	if (an + pn == 0)
		return fail(ps, CONDUIT_ERR_URI, "empty abstract socket name");
	if (has_nul(both, an + pn))
		return fail(ps, CONDUIT_ERR_URI,
		            "NUL byte (%%00) in abstract socket name");
	if (an + pn > SUN_MAX)
		return fail(ps, CONDUIT_ERR_PATH_TOO_LONG,
		            "abstract socket name is %zu bytes, limit %zu",
		            an + pn, (size_t)SUN_MAX);
	return CONDUIT_OK;
}

/* ------------------------------------------------------------------ */
/* vchan: a domain and a port name                                     */

#define VCHAN_NAME_MAX  63
#define VCHAN_DOMID_MAX 32751 /* DOMID_FIRST_RESERVED - 1 */

static int parse_vchan(struct pstate *ps, const struct parts *pt)
{
	conduit_endpoint *ep = ps->ep;
	char cb[8];
	if (!pt->has_auth || pt->auth.n == 0)
		return fail(ps, CONDUIT_ERR_HOST,
		            "vchan URIs need a domain (vchan://DOMID/PORT or "
		            "vchan://NAME/PORT)");
	const char *a = pt->auth.p;
	size_t an = pt->auth.n;
	if (memchr(a, ':', an) != NULL)
		return fail(ps, CONDUIT_ERR_PORT,
		            "vchan ports are names in the path "
		            "(vchan://DOMAIN/PORT), not numbers after ':'");
	bool digits = true;
	for (size_t i = 0; i < an; i++) {
		int c = lower((unsigned char)a[i]);
		if (!is_digit(c))
			digits = false;
		if (!is_digit(c) && !(c >= 'a' && c <= 'z') && c != '-' &&
		    c != '_')
			return fail(ps, CONDUIT_ERR_HOST,
			            "invalid character %s in vchan domain (a "
			            "domain id, or a name of [a-z0-9_-])",
			            charname(a[i], cb));
	}
	if (an > VCHAN_NAME_MAX)
		return fail(ps, CONDUIT_ERR_HOST,
		            "vchan domain name is %zu bytes, limit %d", an,
		            VCHAN_NAME_MAX);
	char host[VCHAN_NAME_MAX + 1];
	if (digits) {
		long x = 0;
		for (size_t i = 0; i < an && x <= VCHAN_DOMID_MAX; i++)
			x = x * 10 + (a[i] - '0');
		if (x > VCHAN_DOMID_MAX)
			return fail(ps, CONDUIT_ERR_HOST,
			            "domain id out of range 0-%d",
			            VCHAN_DOMID_MAX);
		snprintf(host, sizeof(host), "%ld", x);
	} else {
		for (size_t i = 0; i < an; i++)
			host[i] = (char)lower((unsigned char)a[i]);
		host[an] = '\0';
	}
	ep->host = cd_strdup(host);
	if (ep->host == NULL)
		return nomem(ps);
	/* Kept as the host, but of kind NONE: it is no DNS name, and no
	 * resolver step may look it up (XenStore names are the backend's
	 * business). */
	ep->host_kind = CONDUIT_HOST_NONE;
	const char *p = pt->path.p;
	size_t pn = pt->path.n;
	if (pn < 2 || p[0] != '/')
		return fail(
		    ps, CONDUIT_ERR_PORT,
		    "vchan URIs need a port name (vchan://DOMAIN/PORT)");
	p++;
	pn--;
	if (pn > VCHAN_NAME_MAX)
		return fail(ps, CONDUIT_ERR_PORT,
		            "vchan port name is %zu bytes, limit %d", pn,
		            VCHAN_NAME_MAX);
	for (size_t i = 0; i < pn; i++) {
		int c = (unsigned char)p[i];
		if (!is_alpha(c) && !is_digit(c) && c != '-' && c != '_')
			return fail(ps, CONDUIT_ERR_PORT,
			            "invalid character %s in vchan port name "
			            "(XenStore allows [A-Za-z0-9_-])",
			            charname(c, cb));
	}
	ep->path = malloc(pn + 1);
	if (ep->path == NULL)
		return nomem(ps);
	memcpy(ep->path, p, pn);
	ep->path[pn] = '\0';
	return CONDUIT_OK;
}

/* ------------------------------------------------------------------ */
/* The shapes                                                          */

const struct cd_shape cd_shape_hostport = {parse_hostport,
                                           cd_uri_print_hostport};
const struct cd_shape cd_shape_path = {parse_path, cd_uri_print_path};
const struct cd_shape cd_shape_abstract = {parse_abstract,
                                           cd_uri_print_abstract};
const struct cd_shape cd_shape_vchan = {parse_vchan, cd_uri_print_vchan};

/* ------------------------------------------------------------------ */
/* The whole URI                                                       */

/* Every byte must be one RFC 3986 allows.  Bytes of 0x80 and above are
 * only noted here (*high): in a tcp host they deserve their own message,
 * which needs the URI split first. */
static int scan(struct pstate *ps, size_t len, size_t *high)
{
	const char *u = ps->uri;
	bool in_brackets = false;
	*high = SIZE_MAX;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)u[i];
		/* Most bytes are letters and digits, which no test below
		 * is about. */
		if (is_unreserved(c))
			continue;
		if (c == '%') {
			if (hexval(u[i + 1]) >= 0 && hexval(u[i + 2]) >= 0) {
				i += 2;
				continue;
			}
			/* "[fe80::1%eth0]": the common way to get a zone
			 * wrong deserves the right hint. */
			if (in_brackets)
				return fail(
				    ps, CONDUIT_ERR_HOST,
				    "IPv6 zone must be written %%25ZONE (RFC "
				    "6874), e.g. [fe80::1%%25eth0]");
			return fail(ps, CONDUIT_ERR_URI,
			            "malformed percent-escape at offset %zu "
			            "(expected %%XX with two hex digits)",
			            i);
		}
		if (c >= 0x80) {
			if (*high == SIZE_MAX)
				*high = i;
			continue;
		}
		/* An IPv6 host opens the authority (userinfo is refused). */
		if (c == '[' && i >= 2 && u[i - 1] == '/' && u[i - 2] == '/')
			in_brackets = true;
		else if (c == ']')
			in_brackets = false;
		if (!is_uri_char(c))
			return fail(ps, CONDUIT_ERR_URI,
			            "invalid character 0x%02x at offset %zu", c,
			            i);
	}
	return CONDUIT_OK;
}

static int parse_scheme(struct pstate *ps, const char **rest)
{
	const char *u = ps->uri;
	conduit_endpoint *ep = ps->ep;
	char cb[8];
	size_t n = strcspn(u, ":/?#");
	if (u[n] != ':')
		return fail(ps, CONDUIT_ERR_SCHEME,
		            "no scheme (write e.g. tcp://HOST:PORT or "
		            "unix:///PATH)");
	if (n == 0)
		return fail(ps, CONDUIT_ERR_SCHEME, "empty scheme");
	for (size_t i = 0; i < n; i++) {
		int c = (unsigned char)u[i];
		if (c >= 0x80)
			return fail(ps, CONDUIT_ERR_URI,
			            "invalid character 0x%02x at offset %zu", c,
			            i);
		if (i == 0 && !is_alpha(c))
			return fail(ps, CONDUIT_ERR_SCHEME,
			            "scheme must start with a letter");
		if (!is_alpha(c) && !is_digit(c) && !in_set(c, "+-."))
			return fail(ps, CONDUIT_ERR_SCHEME,
			            "invalid character %s in scheme",
			            charname(c, cb));
	}
	if (n > SCHEME_MAX)
		return fail(ps, CONDUIT_ERR_SCHEME,
		            "unknown scheme \"%.40s...\"", u);
	char whole[SCHEME_MAX + 1], parts[SCHEME_MAX + 1], known[64];
	for (size_t i = 0; i < n; i++)
		whole[i] = parts[i] = (char)lower(u[i]);
	whole[n] = parts[n] = '\0';
	*rest = u + n + 1;

	/* The last '+'-separated name is the transport; the others are
	 * layers, outermost first. */
	char *last = strrchr(parts, '+');
	char *tname = last != NULL ? last + 1 : parts;
	if (last != NULL)
		*last = '\0';
	if (*tname == '\0')
		return fail(ps, CONDUIT_ERR_SCHEME,
		            "empty name in scheme \"%s\"", whole);
	const char *found[CD_MAX_LAYERS];
	size_t nfound = 0;
	for (char *p = parts; last != NULL;) {
		char *plus = strchr(p, '+');
		if (plus != NULL)
			*plus = '\0';
		if (*p == '\0')
			return fail(ps, CONDUIT_ERR_SCHEME,
			            "empty name in scheme \"%s\"", whole);
		const struct cd_layer *ly = cd_grammar_layer(p, strlen(p));
		const char *l = ly != NULL ? ly->name : NULL;
		if (l == NULL && cd_grammar_transport(p, strlen(p)) != NULL)
			return fail(
			    ps, CONDUIT_ERR_SCHEME,
			    "\"%s\" is a transport and must come last in "
			    "scheme \"%s\"",
			    p, whole);
		if (l == NULL)
			return fail(ps, CONDUIT_ERR_SCHEME,
			            "unknown layer \"%s\" in scheme \"%s\"", p,
			            whole);
		for (size_t i = 0; i < nfound; i++)
			if (found[i] == l)
				return fail(ps, CONDUIT_ERR_SCHEME,
				            "%s layer given twice", l);
		if (nfound == CD_MAX_LAYERS)
			return fail(ps, CONDUIT_ERR_SCHEME,
			            "more than %d layers in scheme \"%s\"",
			            CD_MAX_LAYERS, whole);
		found[nfound++] = l;
		if (plus == NULL)
			break;
		p = plus + 1;
	}
	const struct cd_transport *tp =
	    cd_grammar_transport(tname, strlen(tname));
	const struct cd_layer *alone =
	    tp == NULL && last == NULL ? cd_grammar_layer(tname, strlen(tname))
	                               : NULL;
	if (alone != NULL && alone->alone_over != NULL &&
	    (ps->flags & CD_PARSE_LAYER_ALONE)) {
		/* "tls://" where the caller takes it: tls over its transport.
		 */
		tp = cd_grammar_transport(alone->alone_over,
		                          strlen(alone->alone_over));
		found[nfound++] = alone->name;
	}
	if (tp == NULL) {
		if (cd_grammar_layer(tname, strlen(tname)) != NULL)
			return fail(
			    ps, CONDUIT_ERR_SCHEME,
			    "\"%s\" is a layer; name the transport under "
			    "it too (e.g. %s+tcp://HOST:PORT)",
			    tname, tname);
		if (last == NULL)
			return fail(
			    ps, CONDUIT_ERR_SCHEME,
			    "unknown scheme \"%s\" (known transports: %s)",
			    whole,
			    cd_grammar_transport_list(known, sizeof(known)));
		return fail(ps, CONDUIT_ERR_SCHEME,
		            "unknown transport \"%s\" in scheme \"%s\" (known: "
		            "%s)",
		            tname, whole,
		            cd_grammar_transport_list(known, sizeof(known)));
	}
	ps->tp = tp;
	ep->transport = tp->name;
	ep->nlayers = nfound;
	for (size_t i = 0; i < nfound; i++)
		ep->layers[i] = found[nfound - 1 - i];
	return CONDUIT_OK;
}

static void split(const char *rest, struct parts *pt)
{
	const char *p = rest;
	size_t n;
	memset(pt, 0, sizeof(*pt));
	if (p[0] == '/' && p[1] == '/') {
		p += 2;
		n = strcspn(p, "/?#");
		pt->has_auth = true;
		pt->auth = (struct span){p, n};
		p += n;
	}
	n = strcspn(p, "?#");
	pt->path = (struct span){p, n};
	p += n;
	if (*p == '?') {
		p++;
		n = strcspn(p, "#");
		pt->has_query = true;
		pt->query = (struct span){p, n};
		p += n;
	}
	pt->has_frag = *p == '#';
}

static int opt_compare(const void *a, const void *b)
{
	const struct cd_option *x = a, *y = b;
	return strcmp(x->key, y->key);
}

static int parse_option(struct pstate *ps, const char *s, size_t n)
{
	const struct cd_transport *tp = ps->tp;
	conduit_endpoint *ep = ps->ep;
	char cb[CLIP_MAX + 4], vb[CLIP_MAX + 4];
	if (n == 0)
		return fail(ps, CONDUIT_ERR_OPTION,
		            "empty option in query (a stray '&')");
	const char *eq = memchr(s, '=', n);
	if (eq == NULL)
		return fail(ps, CONDUIT_ERR_OPTION,
		            "option \"%s\" has no value (write KEY=VALUE)",
		            clip(ps, cb, s, n));
	size_t kn = (size_t)(eq - s);
	if (kn == 0)
		return fail(ps, CONDUIT_ERR_OPTION, "empty option name");
	size_t dn;
	char *key = decode(s, kn, &dn);
	if (key == NULL)
		return nomem(ps);
	const struct cd_optdef *def = cd_grammar_option_for(tp, ep, key, dn);
	size_t nlayer_opts = 0;
	for (size_t l = 0; l < ep->nlayers; l++) {
		const struct cd_layer *ly = cd_grammar_layer_of(ep->layers[l]);
		nlayer_opts += ly != NULL ? ly->nopts : 0;
	}
	free(key);
	if (def == NULL && tp->nopts == 0 && nlayer_opts == 0)
		return fail(ps, CONDUIT_ERR_OPTION,
		            "unknown option \"%s\" (%s URIs take no options)",
		            clip(ps, cb, s, kn), tp->name);
	if (def == NULL) {
		char allowed[128];
		size_t o = 0;
		allowed[0] = '\0';
		for (size_t i = 0; i < tp->nopts && o < sizeof(allowed); i++)
			o += (size_t)snprintf(allowed + o, sizeof(allowed) - o,
			                      "%s%s", o ? ", " : "",
			                      tp->opts[i].key);
		for (size_t l = 0; l < ep->nlayers; l++) {
			const struct cd_layer *ly =
			    cd_grammar_layer_of(ep->layers[l]);
			for (size_t i = 0;
			     ly != NULL && i < ly->nopts && o < sizeof(allowed);
			     i++)
				o += (size_t)snprintf(
				    allowed + o, sizeof(allowed) - o, "%s%s",
				    o ? ", " : "", ly->opts[i].key);
		}
		return fail(ps, CONDUIT_ERR_OPTION,
		            "unknown option \"%s\" for %s (known: %s)",
		            clip(ps, cb, s, kn), tp->name, allowed);
	}
	for (size_t i = 0; i < ep->nopts; i++)
		if (strcmp(ep->opts[i].key, def->key) == 0)
			return fail(ps, CONDUIT_ERR_OPTION,
			            "option %s given twice", def->key);
	const char *raw = eq + 1;
	size_t rn = n - kn - 1;
	char *val = decode(raw, rn, &dn);
	if (val == NULL)
		return nomem(ps);
	if (has_nul(val, dn)) {
		free(val);
		return fail(ps, CONDUIT_ERR_OPTION, "NUL byte in option %s",
		            def->key);
	}
	char buf[300];
	const char *canon = NULL;
	const char *why = def->check(val, buf, sizeof(buf), &canon);
	if (why != NULL) {
		free(val);
		/* Values of keys that look secret are never quoted. */
		const char *shown =
		    cd_uri_secret_key(s, kn) ? "****" : clip(ps, vb, raw, rn);
		return fail(ps, CONDUIT_ERR_OPTION,
		            "invalid value \"%s\" for option %s: %s", shown,
		            def->key, why);
	}
	if (canon != val) {
		free(val);
		val = malloc(strlen(canon) + 1);
		if (val == NULL)
			return nomem(ps);
		strcpy(val, canon);
	}
	char *k = malloc(strlen(def->key) + 1);
	if (k == NULL) {
		free(val);
		return nomem(ps);
	}
	strcpy(k, def->key);
	ep->opts[ep->nopts].key = k;
	ep->opts[ep->nopts].value = val;
	ep->nopts++;
	return CONDUIT_OK;
}

static int parse_query(struct pstate *ps, const struct parts *pt)
{
	conduit_endpoint *ep = ps->ep;
	if (!pt->has_query || pt->query.n == 0)
		return CONDUIT_OK;
	int rc = no_brackets(ps, pt->query, "query");
	if (rc != CONDUIT_OK)
		return rc;
	/* Unknown and repeated keys are refused, so the transport's list and
	 * its layers' lists bound the count: a layer's options come on top
	 * of the transport's. */
	size_t cap = ps->tp->nopts;
	for (size_t l = 0; l < ep->nlayers; l++) {
		const struct cd_layer *ly = cd_grammar_layer_of(ep->layers[l]);
		cap += ly != NULL ? ly->nopts : 0;
	}
	ep->opts = calloc(cap ? cap : 1, sizeof(*ep->opts));
	if (ep->opts == NULL)
		return nomem(ps);
	const char *p = pt->query.p, *end = p + pt->query.n;
	for (;;) {
		const char *amp = memchr(p, '&', (size_t)(end - p));
		const char *e = amp != NULL ? amp : end;
		rc = parse_option(ps, p, (size_t)(e - p));
		if (rc != CONDUIT_OK)
			return rc;
		if (amp == NULL)
			break;
		p = amp + 1;
	}
	qsort(ep->opts, ep->nopts, sizeof(*ep->opts), opt_compare);
	return CONDUIT_OK;
}

int cd_uri_parse(conduit_endpoint *ep, const char *uri, unsigned flags,
                 char *err, size_t errlen)
{
	struct pstate ps = {uri, err, errlen, ep, NULL, flags};
	int rc;
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (uri == NULL)
		return fail(&ps, CONDUIT_ERR_INVALID, "no URI given");
	size_t len = strlen(uri);
	if (len == 0)
		return fail(&ps, CONDUIT_ERR_URI, "empty URI");
	if (len > CD_URI_MAX)
		return fail(&ps, CONDUIT_ERR_URI,
		            "URI too long (%zu bytes, limit %d)", len,
		            CD_URI_MAX);
	size_t high;
	rc = scan(&ps, len, &high);
	if (rc != CONDUIT_OK)
		return rc;
	const char *rest = uri;
	rc = parse_scheme(&ps, &rest);
	if (rc != CONDUIT_OK)
		return rc;
	struct parts pt;
	split(rest, &pt);
	if (pt.has_frag)
		return fail(&ps, CONDUIT_ERR_URI, "fragment not allowed");
	if (pt.has_auth && memchr(pt.auth.p, '@', pt.auth.n) != NULL)
		return fail(&ps, CONDUIT_ERR_URI,
		            "userinfo not allowed (conduit URIs carry no "
		            "credentials)");
	if (high != SIZE_MAX) {
		const char *h = uri + high;
		const char *a = pt.auth.p;
		if (ps.tp->inet && pt.has_auth && h >= a &&
		    h < a + strcspn(a, ":/?#") && a[0] != '[')
			return fail(
			    &ps, CONDUIT_ERR_HOST,
			    "non-ASCII host name; use its punycode (xn--) "
			    "form");
		return fail(&ps, CONDUIT_ERR_URI,
		            "invalid character 0x%02x at offset %zu",
		            (unsigned char)*h, high);
	}
	rc = no_brackets(&ps, pt.path, "path");
	if (rc != CONDUIT_OK)
		return rc;
	rc = ps.tp->shape->parse(&ps, &pt);
	if (rc != CONDUIT_OK)
		return rc;
	rc = parse_query(&ps, &pt);
	if (rc != CONDUIT_OK)
		return rc;
	if ((ep->host == NULL && (ep->host = empty()) == NULL) ||
	    (ep->zone == NULL && (ep->zone = empty()) == NULL) ||
	    (ep->path == NULL && (ep->path = empty()) == NULL))
		return nomem(&ps);
	return CONDUIT_OK;
}
