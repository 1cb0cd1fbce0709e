/*
 * resolve.c - the resolver: from a URI to an endpoint, through the
 * service table, the context's rules and the address lookup, in one
 * documented order (see conduit_resolve() in conduit.h).  Each step can
 * be written down as it happens, which is what conduit_resolve_explain()
 * returns and `conduit resolve --explain` prints.
 *
 * Rules rewrite URI text and the result is parsed again by the same
 * grammar as any URI, so whatever a rule produces is an ordinary,
 * printable endpoint: the TLS server name and a connect-to destination
 * are endpoint options, not hidden state.
 */
#include "core.h"

#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct conduit_explain {
	size_t n, cap;
	char **steps;
};

static void step(conduit_explain *x, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void step(conduit_explain *x, const char *fmt, ...)
{
	if (x == NULL)
		return;
	if (x->n == x->cap) {
		size_t cap = x->cap ? 2 * x->cap : 8;
		char **p = realloc(x->steps, cap * sizeof(*p));
		if (p == NULL)
			return; /* an explanation short of a step, not a failure
			         */
		x->steps = p;
		x->cap = cap;
	}
	va_list ap;
	va_start(ap, fmt);
	char *s = NULL;
	cd_set_message(&s, fmt, ap); /* escaped as every message is */
	if (s != NULL)
		x->steps[x->n++] = s;
	va_end(ap);
}

size_t conduit_explain_count(const conduit_explain *x)
{
	return x != NULL ? x->n : 0;
}

const char *conduit_explain_step(const conduit_explain *x, size_t i)
{
	return x != NULL && i < x->n ? x->steps[i] : NULL;
}

void conduit_explain_free(conduit_explain *x)
{
	if (x == NULL)
		return;
	for (size_t i = 0; i < x->n; i++)
		free(x->steps[i]);
	free(x->steps);
	free(x);
}

/* ------------------------------------------------------------------ */
/* Services                                                            */

struct service {
	const char *name;
	uint16_t port;
	bool tls;
};

/* Built in; rules and conduit_ctx_add_service() come first, and
 * /etc/services is asked for schemes that are in neither. */
static const struct service builtin[] = {
    {"http", 80, false},
    {"https", 443, true},
    {"ws", 80, false},
    {"wss", 443, true},
    {"imap", 143, false},
    {"imaps", 993, true},
    {"pop3", 110, false},
    {"pop3s", 995, true},
    {"smtp", 25, false},
    {"submission", 587, false},
    {"submissions", 465, true},
    {"xmpp-client", 5222, false},
    {"xmpps-client", 5223, true},
    {"xmpp-server", 5269, false},
    {"ldap", 389, false},
    {"ldaps", 636, true},
    {"irc", 6667, false},
    {"ircs", 6697, true},
    {"mqtt", 1883, false},
    {"mqtts", 8883, true},
    {"syslog-tls", 6514, true},
    {"ftp", 21, false},
};

/* Find a service for scheme; writes where it came from into origin. */
static bool find_service(const conduit_ctx *ctx, const char *scheme,
                         struct service *out, char *origin, size_t olen)
{
	for (size_t i = 0; i < ctx->rules.n; i++) {
		const struct cd_rule *r = &ctx->rules.rules[i];
		if (r->kind == CD_RULE_SERVICE &&
		    strcmp(r->pattern, scheme) == 0) {
			*out = (struct service){r->pattern, (uint16_t)r->port,
			                        r->tls};
			snprintf(origin, olen, "%s", r->origin);
			return true;
		}
	}
	for (size_t i = 0; i < sizeof(builtin) / sizeof(builtin[0]); i++)
		if (strcmp(builtin[i].name, scheme) == 0) {
			*out = builtin[i];
			snprintf(origin, olen, "built in");
			return true;
		}
#ifdef __linux__
	struct servent se, *res = NULL;
	char buf[1024];
	if (getservbyname_r(scheme, "tcp", &se, buf, sizeof(buf), &res) == 0 &&
	    res != NULL) {
		*out = (struct service){scheme, ntohs((uint16_t)res->s_port),
		                        false};
		snprintf(origin, olen, "/etc/services");
		return true;
	}
#else
	struct servent *res = getservbyname(scheme, "tcp");
	if (res != NULL) {
		*out = (struct service){scheme, ntohs((uint16_t)res->s_port),
		                        false};
		snprintf(origin, olen, "/etc/services");
		return true;
	}
#endif
	return false;
}

/* ------------------------------------------------------------------ */
/* Text helpers                                                        */

struct text {
	char *p;
	size_t len, cap;
	bool failed;
};

static void put(struct text *t, const char *s, size_t n)
{
	if (t->failed)
		return;
	if (t->len + n + 1 > t->cap) {
		size_t cap = t->cap ? t->cap : 128;
		while (cap < t->len + n + 1)
			cap *= 2;
		char *p = realloc(t->p, cap);
		if (p == NULL) {
			t->failed = true;
			return;
		}
		t->p = p;
		t->cap = cap;
	}
	memcpy(t->p + t->len, s, n);
	t->len += n;
	t->p[t->len] = '\0';
}

static void puts_(struct text *t, const char *s)
{
	put(t, s, strlen(s));
}

/* Decimal text of a port; returns buf. */
static const char *port_text(unsigned v, char buf[8])
{
	char tmp[8];
	int n = 0;
	do
		tmp[n++] = (char)('0' + v % 10);
	while ((v /= 10) != 0 && n < 7);
	for (int i = 0; i < n; i++)
		buf[i] = tmp[n - 1 - i];
	buf[n] = '\0';
	return buf;
}

/* What a rule's placeholders stand for. */
struct captures {
	const char *scheme;
	const char *host;
	const char *prefix; /* the labels a wildcard matched */
	size_t prefix_len;
	int port;
};

static void expand(struct text *t, const char *tmpl, const struct captures *c)
{
	for (const char *p = tmpl; *p != '\0';) {
		if (*p != '{') {
			size_t n = strcspn(p, "{");
			put(t, p, n);
			p += n;
			continue;
		}
		const char *end = strchr(p, '}');
		if (end == NULL) { /* the rules parser refuses these */
			puts_(t, p);
			break;
		}
		size_t n = (size_t)(end - p - 1);
		const char *name = p + 1;
		char num[8];
		if (n == 4 && memcmp(name, "host", 4) == 0) {
			puts_(t, c->host);
		} else if (n == 5 && memcmp(name, "label", 5) == 0) {
			put(t, c->host, strcspn(c->host, "."));
		} else if (n == 6 && memcmp(name, "prefix", 6) == 0) {
			put(t, c->prefix, c->prefix_len);
		} else if (n == 6 && memcmp(name, "scheme", 6) == 0) {
			puts_(t, c->scheme);
		} else if (n == 4 && memcmp(name, "port", 4) == 0) {
			if (c->port >= 0)
				puts_(t, port_text((unsigned)c->port, num));
		} else {
			put(t, p, n + 2);
		}
		p = end + 1;
	}
}

char *cd_rule_expand(const char *tmpl, const char *scheme, const char *host,
                     const char *prefix, int port)
{
	struct captures c = {.scheme = scheme,
	                     .host = host,
	                     .prefix = prefix,
	                     .prefix_len = strlen(prefix),
	                     .port = port};
	struct text t = {0};
	expand(&t, tmpl, &c);
	puts_(&t, "");
	if (t.failed) {
		free(t.p);
		return NULL;
	}
	return t.p;
}

/* ------------------------------------------------------------------ */
/* The steps                                                           */

struct rstate {
	conduit_ctx *ctx;
	conduit_explain *x;
	const char *uri;
	bool have_shown;
	char shown_buf[512]; /* the URI as messages may show it */
	char scheme[64];
	/* The host as rules see it: one trailing dot names the same host,
	 * and patterns and TLS server names are written without it. */
	char name[256];
	/* The system's service table answered: outside the context's
	 * settings, so the result is not remembered. */
	bool system_service;
};

/* The redacted URI, made on first use: only failures, observers and
 * explanations need it. */
static const char *shown(struct rstate *rs)
{
	if (!rs->have_shown) {
		cd_uri_redact(rs->uri, rs->shown_buf, sizeof(rs->shown_buf));
		rs->have_shown = true;
	}
	return rs->shown_buf;
}

/* An endpoint's (or a rule's target's) URI as messages, events and
 * explanations show it: without the values of secret options such as a
 * TLS key file, which a rule, being configuration, may name.  The size is
 * lookup.c's, so that its messages and these match. */

static const char *redacted(const char *uri, char buf[CD_SHOWN_URI])
{
	cd_uri_redact(uri, buf, CD_SHOWN_URI);
	return buf;
}

static int parse_flags(struct rstate *rs, const char *text, unsigned flags,
                       conduit_endpoint **out, const struct cd_rule *rule);

/* Parse text into *out; on failure the message names the URI as given
 * and, for text a rule made, the rule's place. */
static int parse_into(struct rstate *rs, const char *text,
                      conduit_endpoint **out, const struct cd_rule *rule)
{
	return parse_flags(rs, text, 0, out, rule);
}

static int parse_flags(struct rstate *rs, const char *text, unsigned flags,
                       conduit_endpoint **out, const struct cd_rule *rule)
{
	char msg[512];
	int rc = cd_endpoint_parse(out, text, flags, msg, sizeof(msg));
	if (rc == CONDUIT_OK)
		return rc;
	/* text was made from the URI given, and may have carried one of its
	 * secrets out of the place where the redactor looks for it. */
	cd_uri_scrub(rs->uri, msg, sizeof(msg));
	if (rule != NULL)
		conduit_ctx_fail(rs->ctx, rc,
		                 "resolve %s: the rule at %s gave %s",
		                 shown(rs), rule->origin, msg);
	else if (strcmp(text, rs->uri) != 0)
		conduit_ctx_fail(rs->ctx, rc, "resolve %s: as %s gave %s",
		                 shown(rs), rs->scheme, msg);
	else
		conduit_ctx_fail(rs->ctx, rc, "resolve %s", msg);
	return rc;
}

/* A service URI (https://user@host:port/path?q#f) as a transport URI:
 * the host and port, the service's port when none is written. */
static int service_uri(struct rstate *rs, const struct service *svc,
                       struct text *t)
{
	const char *p = rs->uri + strlen(rs->scheme) + 1;
	if (p[0] != '/' || p[1] != '/')
		return conduit_ctx_fail(rs->ctx, CONDUIT_ERR_URI,
		                        "resolve %s: a %s URI needs //HOST",
		                        shown(rs), rs->scheme);
	p += 2;
	/* User info is for the application (and never shown).  It ends at
	 * the last '@' before the first '/', as cd_uri_redact() reads it: a
	 * '?' or '#' typed in a password must not turn its first half into
	 * a host and port that a message would quote. */
	size_t seg = strcspn(p, "/");
	for (size_t i = seg; i-- > 0;)
		if (p[i] == '@') {
			p += i + 1;
			break;
		}
	size_t alen = strcspn(p, "/?#");
	if (alen == 0)
		return conduit_ctx_fail(rs->ctx, CONDUIT_ERR_HOST,
		                        "resolve %s: no host", shown(rs));
	const char *portsep = NULL;
	if (p[0] == '[') {
		const char *close = memchr(p, ']', alen);
		if (close != NULL && close + 1 < p + alen && close[1] == ':')
			portsep = close + 1;
	} else {
		portsep = memchr(p, ':', alen);
	}
	size_t hostlen = portsep != NULL ? (size_t)(portsep - p) : alen;
	if (hostlen == 0)
		return conduit_ctx_fail(rs->ctx, CONDUIT_ERR_HOST,
		                        "resolve %s: no host", shown(rs));
	puts_(t, svc->tls ? "tls+tcp://" : "tcp://");
	put(t, p, alen);
	if (portsep == NULL || portsep + 1 == p + alen) {
		char num[8];
		if (portsep == NULL)
			puts_(t, ":");
		puts_(t, port_text(svc->port, num));
	}
	return t->failed
	           ? conduit_ctx_fail(rs->ctx, CONDUIT_ERR_NOMEM,
	                              "resolve %s: out of memory", shown(rs))
	           : CONDUIT_OK;
}

/* Options that name files or weaken security, in a URI from outside. */
static int check_trust(struct rstate *rs, const conduit_endpoint *ep)
{
	for (size_t i = 0; i < ep->nopts; i++) {
		unsigned cls = cd_option_class(ep, ep->opts[i].key);
		if ((cls & ~rs->ctx->uri_options) == 0)
			continue;
		return conduit_ctx_fail(
		    rs->ctx, CONDUIT_ERR_OPTION,
		    "resolve %s: option %s %s; this context does not take "
		    "such options from URIs (conduit_ctx_allow_uri_options)",
		    shown(rs), ep->opts[i].key,
		    cls & CD_OPT_FILE ? "names a file" : "weakens security");
	}
	return CONDUIT_OK;
}

/* Steps 1: scheme, service. */
static int first_endpoint(struct rstate *rs, conduit_endpoint **out)
{
	const char *u = rs->uri;
	size_t n = strcspn(u, ":/?#");
	if (u[n] != ':' || n == 0 || n >= sizeof(rs->scheme))
		return parse_into(rs, u, out, NULL); /* the grammar says why */
	for (size_t i = 0; i < n; i++)
		rs->scheme[i] =
		    (char)((u[i] >= 'A' && u[i] <= 'Z') ? u[i] + 32 : u[i]);
	rs->scheme[n] = '\0';

	const char *last = memrchr(rs->scheme, '+', n);
	const char *tname = last != NULL ? last + 1 : rs->scheme;
	if (cd_grammar_transport(tname, strlen(tname)) != NULL ||
	    last != NULL) {
		step(rs->x, "scheme: %s is a transport URI", rs->scheme);
		return parse_into(rs, u, out, NULL);
	}
	/* A layer alone ("tls://") is that layer over its transport: the
	 * grammar's table says which, and the parser builds it. */
	const struct cd_layer *alone = cd_grammar_layer(rs->scheme, n);
	if (alone != NULL && alone->alone_over != NULL) {
		step(rs->x, "scheme: %s means %s+%s", alone->name, alone->name,
		     alone->alone_over);
		return parse_flags(rs, u, CD_PARSE_LAYER_ALONE, out, NULL);
	}
	struct service svc;
	char origin[128];
	if (!find_service(rs->ctx, rs->scheme, &svc, origin, sizeof(origin)))
		return conduit_ctx_fail(
		    rs->ctx, CONDUIT_ERR_SCHEME,
		    "resolve %s: unknown scheme \"%s\" (not a "
		    "transport, and no service of that name)",
		    shown(rs), rs->scheme);
	step(rs->x, "service: %s (%s): port %u%s", rs->scheme, origin, svc.port,
	     svc.tls ? ", TLS" : "");
	rs->system_service = strcmp(origin, "/etc/services") == 0;
	struct text t = {0};
	int rc = service_uri(rs, &svc, &t);
	if (rc == CONDUIT_OK)
		rc = parse_into(rs, t.p, out, NULL);
	free(t.p);
	return rc;
}

static bool has_layer(const conduit_endpoint *ep, const char *layer)
{
	for (size_t i = 0; i < ep->nlayers; i++)
		if (strcmp(ep->layers[i], layer) == 0)
			return true;
	return false;
}

/* The best rule of a kind for host (and port), or NULL. */
static const struct cd_rule *best_rule(const conduit_ctx *ctx,
                                       enum cd_rule_kind kind, const char *host,
                                       int port)
{
	const struct cd_rule *best = NULL;
	int best_score = -1;
	for (size_t i = 0; i < ctx->rules.n; i++) {
		const struct cd_rule *r = &ctx->rules.rules[i];
		if (r->kind != kind)
			continue;
		int m = cd_pattern_match(r->pattern, host);
		if (m < 0)
			continue;
		int score = m * 2;
		if (kind == CD_RULE_CONNECT_TO) {
			if (r->port >= 0 && r->port != port)
				continue;
			score +=
			    r->port >= 0; /* an exact port is more specific */
		}
		if (score > best_score) {
			best = r;
			best_score = score;
		}
	}
	return best;
}

static void captures_for(const struct cd_rule *r, const conduit_endpoint *ep,
                         const char *host, const char *scheme,
                         struct captures *c)
{
	c->scheme = scheme;
	c->host = host;
	c->port = ep->port;
	c->prefix = host;
	c->prefix_len = strlen(host);
	if (r->pattern[0] == '*' && r->pattern[1] == '.') {
		size_t suffix = strlen(r->pattern + 1); /* ".xen" */
		if (c->prefix_len > suffix)
			c->prefix_len -= suffix;
	}
}

/* The grammar's TLS layer (always in the table: resolution knows TLS as
 * a layer of the grammar, not as a backend). */
static const struct cd_layer *tls_layer(void)
{
	return cd_grammar_layer("tls", 3);
}

/*
 * Put TLS over an endpoint a rule made (as the outermost layer) and/or
 * name the server TLS must verify.  Done on the value rather than by
 * printing and parsing a new URI: both are valid by construction (the tls
 * layer takes servername; servername is a checked DNS name), and
 * resolution is on every connect's path.
 */
static int add_tls(conduit_endpoint *ep, bool layer, const char *servername)
{
	char why[128];
	int rc = CONDUIT_OK;
	if (layer)
		rc = cd_endpoint_add_layer(ep, tls_layer(), why, sizeof(why));
	if (rc == CONDUIT_OK && servername != NULL)
		rc = cd_endpoint_add_option(ep, "servername", servername, why,
		                            sizeof(why));
	return rc;
}

/*
 * The options of a URI a map rule rewrote.  The rule's target names the
 * transport, so the URI's transport options (tcp's nodelay=, connect-to=,
 * ...) are dropped.  The TLS the URI asked for stays, and with it the TLS
 * options the URI wrote (alpn=, servername=, files where the context let
 * the URI name them), unless the target sets the same option: the rule
 * is the more specific configuration for this host.  Which options are
 * TLS options is the grammar's table's to say.  When any is kept, the
 * target gets TLS (when add_layer) and those options, on the value;
 * *layered says the TLS layer is on.
 */
static int carry_options(struct rstate *rs, const conduit_endpoint *cur,
                         conduit_endpoint *target, const struct cd_rule *r,
                         bool add_layer, bool *layered)
{
	*layered = false;
	if (cur->nopts == 0)
		return CONDUIT_OK;
	bool want_tls = has_layer(cur, "tls");
	const struct cd_layer *tls = tls_layer();
	/* Keys are unique and from the grammar's few lists: fewer than 64. */
	uint64_t keep = 0;
	size_t nkept = 0;
	for (size_t i = 0; i < cur->nopts && i < 64; i++) {
		const char *key = cur->opts[i].key;
		if (!want_tls ||
		    cd_grammar_layer_option(tls, key, strlen(key)) == NULL) {
			step(rs->x,
			     "rule: the URI's %s dropped (the rule's "
			     "target sets the transport)",
			     key);
		} else if (conduit_endpoint_option(target, key) != NULL) {
			step(rs->x, "tls: the URI's %s replaced by the rule's",
			     key);
		} else {
			keep |= (uint64_t)1 << i;
			nkept++;
			step(rs->x,
			     "tls: the URI's %s kept over the rule's target",
			     key);
		}
	}
	if (nkept == 0)
		return CONDUIT_OK;
	char why[128];
	int rc = add_layer
	             ? cd_endpoint_add_layer(target, tls, why, sizeof(why))
	             : CONDUIT_OK;
	for (size_t i = 0; i < cur->nopts && i < 64 && rc == CONDUIT_OK; i++)
		if (keep & ((uint64_t)1 << i))
			rc = cd_endpoint_add_option(target, cur->opts[i].key,
			                            cur->opts[i].value, why,
			                            sizeof(why));
	if (rc == CONDUIT_ERR_NOMEM)
		return conduit_ctx_fail(rs->ctx, rc,
		                        "resolve %s: out of memory", shown(rs));
	if (rc != CONDUIT_OK)
		return conduit_ctx_fail(
		    rs->ctx, rc, "resolve %s: the rule at %s gave %s: %s",
		    shown(rs), r->origin, cd_endpoint_shown(target), why);
	*layered = add_layer;
	return CONDUIT_OK;
}

/* Step 2: a map rule replaces the endpoint. */
static int apply_map(struct rstate *rs, conduit_endpoint **ep,
                     const struct cd_rule *r)
{
	conduit_endpoint *cur = *ep;
	struct captures c;
	captures_for(r, cur, rs->name,
	             rs->scheme[0] ? rs->scheme : cur->transport, &c);
	struct text t = {0};
	expand(&t, r->target, &c);
	if (t.failed) {
		free(t.p);
		return conduit_ctx_fail(rs->ctx, CONDUIT_ERR_NOMEM,
		                        "resolve %s: out of memory", shown(rs));
	}
	conduit_endpoint *target = NULL;
	int rc = parse_into(rs, t.p, &target, r);
	free(t.p);
	if (rc != CONDUIT_OK)
		return rc;
	if (rs->x != NULL) {
		char sh[CD_SHOWN_URI];
		step(rs->x, "rule: map %s (%s) sends %s to %s", r->pattern,
		     r->origin, cur->host, redacted(target->uri, sh));
	}

	/* TLS the URI asked for stays, once, with the TLS options the URI
	 * wrote, and checks the name as written unless the rule or the URI
	 * names another. */
	bool want_tls = has_layer(cur, "tls");
	bool had_tls = has_layer(target, "tls");
	bool add_layer = want_tls && !had_tls;
	if (add_layer)
		step(rs->x, "tls: kept from %s, over the rule's transport",
		     rs->scheme);
	else if (want_tls)
		step(rs->x,
		     "tls: the rule's target has TLS already; not doubled");
	bool layered = false;
	rc = carry_options(rs, cur, target, r, add_layer, &layered);
	if (rc != CONDUIT_OK) {
		conduit_endpoint_free(target);
		return rc;
	}
	if (layered)
		add_layer = false;
	bool add_name = (want_tls || had_tls) &&
	                conduit_endpoint_option(target, "servername") == NULL &&
	                strcmp(target->host, rs->name) != 0;
	if (add_layer || add_name) {
		rc = add_tls(target, add_layer, add_name ? rs->name : NULL);
		if (rc == CONDUIT_ERR_SCHEME)
			rc = conduit_ctx_fail(
			    rs->ctx, rc,
			    "resolve %s: the rule at %s gives more "
			    "than %d layers with TLS",
			    shown(rs), r->origin, CD_MAX_LAYERS);
		else if (rc != CONDUIT_OK)
			rc = conduit_ctx_fail(rs->ctx, rc,
			                      "resolve %s: out of memory",
			                      shown(rs));
		if (rc != CONDUIT_OK) {
			conduit_endpoint_free(target);
			return rc;
		}
	}
	conduit_endpoint_free(cur);
	*ep = target;
	return CONDUIT_OK;
}

/* Step 3: a connect-to rule changes only the destination. */
static int apply_connect_to(struct rstate *rs, conduit_endpoint **ep,
                            const struct cd_rule *r)
{
	conduit_endpoint *cur = *ep;
	struct captures c;
	captures_for(r, cur, rs->name, rs->scheme, &c);
	struct text dest = {0};
	expand(&dest, r->target, &c);
	/* "HOST:" keeps the port as written. */
	if (!dest.failed && dest.len > 0 && dest.p[dest.len - 1] == ':') {
		char num[16];
		snprintf(num, sizeof(num), "%d", cur->port);
		puts_(&dest, num);
	}
	/* The option goes on a copy of the value: no URI text to print,
	 * escape and parse again. */
	conduit_endpoint *next = dest.failed ? NULL : conduit_endpoint_dup(cur);
	char why[400];
	int rc = next == NULL
	             ? CONDUIT_ERR_NOMEM
	             : cd_endpoint_add_option(next, "connect-to",
	                                      dest.p != NULL ? dest.p : "", why,
	                                      sizeof(why));
	if (rc == CONDUIT_ERR_NOMEM)
		conduit_ctx_fail(rs->ctx, rc, "resolve %s: out of memory",
		                 shown(rs));
	else if (rc != CONDUIT_OK)
		conduit_ctx_fail(rs->ctx, rc,
		                 "resolve %s: the rule at %s gave a "
		                 "destination the URI cannot carry: %s",
		                 shown(rs), r->origin, why);
	if (rc != CONDUIT_OK)
		conduit_endpoint_free(next);
	if (rc == CONDUIT_OK) {
		char rp[8];
		step(rs->x,
		     "rule: connect-to %s:%s (%s) connects to %s; the name "
		     "stays "
		     "%s",
		     r->pattern,
		     r->port >= 0 ? port_text((unsigned)r->port, rp) : "*",
		     r->origin, conduit_endpoint_option(next, "connect-to"),
		     cur->host);
		conduit_endpoint_free(cur);
		*ep = next;
	}
	free(dest.p);
	return rc;
}

const char *cd_addr_count(const conduit_endpoint *ep, char buf[64])
{
	buf[0] = '\0';
	if (ep->naddrs > 0)
		snprintf(buf, 64, "%zu address%s", ep->naddrs,
		         ep->naddrs == 1 ? "" : "es");
	return buf;
}

/* Resolve uri; *system (if not NULL) tells whether the system's service
 * table was asked.  announced: the "resolving" event was given already. */
static int resolve(conduit_endpoint **out, conduit_explain *x, conduit_ctx *ctx,
                   const char *uri, bool *system, bool announced)
{
	/* Field by field: a designated initializer would clear the three
	 * buffers (some 800 bytes) on every resolution; each is written
	 * before it is read, and starts as "". */
	struct rstate rs;
	rs.ctx = ctx;
	rs.x = x;
	rs.uri = uri;
	rs.have_shown = false;
	rs.shown_buf[0] = '\0';
	rs.scheme[0] = '\0';
	rs.name[0] = '\0';
	rs.system_service = false;
	bool observed = conduit_observed(ctx);
	if (observed && !announced)
		conduit_emit(ctx, CONDUIT_PHASE_RESOLVING, CONDUIT_OK,
		             shown(&rs), "", NULL);
	if (x != NULL)
		step(x, "uri: %s", shown(&rs));

	conduit_endpoint *ep = NULL;
	int rc = first_endpoint(&rs, &ep);
	if (rc == CONDUIT_OK)
		rc = check_trust(&rs, ep);
	if (rc == CONDUIT_OK && ep->host_kind == CONDUIT_HOST_NAME &&
	    ctx->rules.n > 0) {
		size_t hl = strlen(ep->host);
		if (hl > 0 && ep->host[hl - 1] == '.')
			hl--;
		snprintf(rs.name, sizeof(rs.name), "%.*s", (int)hl, ep->host);
		const struct cd_rule *r =
		    best_rule(ctx, CD_RULE_MAP, rs.name, ep->port);
		if (r != NULL)
			rc = apply_map(&rs, &ep, r);
		else if (cd_grammar_option(ep, "connect-to") != NULL &&
		         conduit_endpoint_option(ep, "connect-to") == NULL &&
		         (r = best_rule(ctx, CD_RULE_CONNECT_TO, rs.name,
		                        ep->port)) != NULL)
			rc = apply_connect_to(&rs, &ep, r);
	}
	if (rc == CONDUIT_OK && has_layer(ep, "tls")) {
		const char *sn = conduit_endpoint_option(ep, "servername");
		if (sn != NULL)
			step(x, "tls: server name %s", sn);
		else if (ep->host_kind == CONDUIT_HOST_NAME)
			step(x, "tls: server name %s (the host as written)",
			     ep->host);
		else if (ep->host_kind == CONDUIT_HOST_IPV4 ||
		         ep->host_kind == CONDUIT_HOST_IPV6)
			step(x, "tls: no server name (not a DNS name); the "
			        "certificate must carry the address");
		else if (ep->host != NULL && ep->host[0] != '\0')
			/* A vchan host is a domain, not a name that a
			 * certificate is checked against. */
			step(x,
			     "tls: no server name: %s host \"%s\" names a "
			     "domain, which TLS cannot check; "
			     "servername=NAME is needed (the name in the "
			     "server's certificate)",
			     ep->transport, ep->host);
		else
			step(x,
			     "tls: no server name: a %s address has no "
			     "host; servername=NAME is needed (the name in "
			     "the server's certificate)",
			     ep->transport);
	}
	if (rc == CONDUIT_OK) {
		/* The lookup names the endpoint, and the URI as given. */
		rc = cd_lookup_for(ctx, ep, uri);
		if (rc == CONDUIT_OK && x != NULL && ep->naddrs > 0) {
			struct text a = {0};
			for (size_t i = 0; i < ep->naddrs && i < 16; i++) {
				char b[64];
				conduit_addr_format(&ep->addrs[i], b,
				                    sizeof(b));
				puts_(&a, i ? ", " : "");
				puts_(&a, b);
			}
			char num[8] = "";
			if (conduit_endpoint_option(ep, "connect-to") != NULL &&
			    ep->dest_port > 0)
				port_text((unsigned)ep->dest_port, num);
			step(x, "addresses: %s%s%s", a.failed ? "?" : a.p,
			     num[0] != '\0' ? ", port " : "", num);
			free(a.p);
		}
	}
	if (rc != CONDUIT_OK) {
		step(x, "error: %s", conduit_ctx_error(ctx));
		conduit_emit(ctx, CONDUIT_PHASE_RESOLVED, rc, shown(&rs),
		             conduit_ctx_error(ctx), NULL);
		conduit_endpoint_free(ep);
		return rc;
	}
	if (x != NULL || observed) {
		char sh[CD_SHOWN_URI];
		redacted(ep->uri, sh);
		step(x, "endpoint: %s", sh);
		char detail[64];
		if (observed)
			conduit_emit(ctx, CONDUIT_PHASE_RESOLVED, CONDUIT_OK,
			             sh, cd_addr_count(ep, detail), NULL);
	}
	*out = ep;
	if (system != NULL)
		*system = rs.system_service;
	return CONDUIT_OK;
}

int cd_resolve_fresh(conduit_endpoint **out, conduit_ctx *ctx, const char *uri,
                     bool *system, bool announced)
{
	return resolve(out, NULL, ctx, uri, system, announced);
}

int conduit_resolve(conduit_endpoint **out, conduit_ctx *ctx, const char *uri)
{
	if (out != NULL)
		*out = NULL;
	if (out == NULL || ctx == NULL || uri == NULL)
		return CONDUIT_ERR_INVALID;
	return resolve(out, NULL, ctx, uri, NULL, false);
}

int conduit_resolve_explain(conduit_endpoint **out, conduit_explain **explain,
                            conduit_ctx *ctx, const char *uri)
{
	if (out != NULL)
		*out = NULL;
	if (explain != NULL)
		*explain = NULL;
	if (out == NULL || explain == NULL || ctx == NULL || uri == NULL)
		return CONDUIT_ERR_INVALID;
	conduit_explain *x = calloc(1, sizeof(*x));
	if (x == NULL)
		return conduit_ctx_fail(ctx, CONDUIT_ERR_NOMEM,
		                        "resolve: out of memory");
	*explain = x;
	return resolve(out, x, ctx, uri, NULL, false);
}

/* ------------------------------------------------------------------ */
/* Loading rules                                                       */

/*
 * A map target must make an endpoint for every URI its rule meets, so each
 * is parsed at load with its placeholders filled from a host the pattern
 * matches ("*.xen": a.xen; label and prefix "a"), scheme https and port
 * 443: a target that cannot be an endpoint (bad options, a service scheme
 * such as https://, no port where one is needed) fails the whole file, at
 * its line and column, not every URI that later hits the rule.
 */
static int check_map_targets(conduit_ctx *ctx, const struct cd_ruleset *rs)
{
	for (size_t i = 0; i < rs->n; i++) {
		const struct cd_rule *r = &rs->rules[i];
		if (r->kind != CD_RULE_MAP)
			continue;
		char host[300];
		bool wild = strncmp(r->pattern, "*.", 2) == 0;
		snprintf(host, sizeof(host), "%s%s", wild ? "a." : "",
		         wild ? r->pattern + 2 : r->pattern);
		struct captures c = {.scheme = "https",
		                     .host = host,
		                     .prefix = wild ? "a" : "",
		                     .prefix_len = wild ? 1 : 0,
		                     .port = 443};
		struct text t = {0};
		expand(&t, r->target, &c);
		puts_(&t, "");
		if (t.failed) {
			free(t.p);
			return conduit_ctx_fail(ctx, CONDUIT_ERR_NOMEM,
			                        "%s: out of memory", r->origin);
		}
		char why[512];
		conduit_endpoint *ep = NULL;
		int rc = cd_endpoint_parse(&ep, t.p, 0, why, sizeof(why));
		conduit_endpoint_free(ep);
		bool filled = strchr(r->target, '{') != NULL;
		free(t.p);
		if (rc != CONDUIT_OK)
			return conduit_ctx_fail(
			    ctx, CONDUIT_ERR_RULES,
			    "%s:%zu: bad target%s%s%s: %s", r->origin,
			    r->target_col, filled ? " (for host " : "",
			    filled ? host : "",
			    filled ? ", scheme https, port 443)" : "", why);
	}
	return CONDUIT_OK;
}

int conduit_ctx_add_rules(conduit_ctx *ctx, const char *text, const char *name)
{
	if (ctx == NULL || text == NULL)
		return CONDUIT_ERR_INVALID;
	char err[512];
	struct cd_ruleset rs = {0};
	int rc = cd_rules_parse(&rs, text, strlen(text),
	                        name != NULL ? name : "rules", &ctx->rules, err,
	                        sizeof(err));
	if (rc != CONDUIT_OK)
		return conduit_ctx_fail(ctx, rc, "%s", err);
	rc = check_map_targets(ctx, &rs);
	if (rc != CONDUIT_OK) {
		cd_ruleset_free(&rs);
		return rc;
	}
	rc = cd_ruleset_merge(&ctx->rules, &rs);
	cd_ruleset_free(&rs);
	cd_ctx_changed(ctx);
	if (rc != CONDUIT_OK)
		return conduit_ctx_fail(ctx, rc, "%s: out of memory",
		                        name != NULL ? name : "rules");
	return CONDUIT_OK;
}

#define RULES_MAX_BYTES (1024 * 1024)

int conduit_ctx_load_rules(conduit_ctx *ctx, const char *path)
{
	if (ctx == NULL || path == NULL)
		return CONDUIT_ERR_INVALID;
	FILE *f = fopen(path, "re");
	if (f == NULL)
		return conduit_ctx_fail(ctx,
		                        conduit_status_from_errno(errno) ==
		                                CONDUIT_ERR_NOT_FOUND
		                            ? CONDUIT_ERR_NOT_FOUND
		                            : CONDUIT_ERR_RULES,
		                        "rules %s: %s", path, strerror(errno));
	char *buf = malloc(RULES_MAX_BYTES + 1);
	if (buf == NULL) {
		fclose(f);
		return conduit_ctx_fail(ctx, CONDUIT_ERR_NOMEM,
		                        "rules %s: out of memory", path);
	}
	size_t n = fread(buf, 1, RULES_MAX_BYTES + 1, f);
	bool bad = ferror(f);
	fclose(f);
	int rc;
	if (bad)
		rc = conduit_ctx_fail(ctx, CONDUIT_ERR_RULES,
		                      "rules %s: read error", path);
	else if (n > RULES_MAX_BYTES)
		rc = conduit_ctx_fail(ctx, CONDUIT_ERR_RULES,
		                      "rules %s: larger than %d bytes", path,
		                      RULES_MAX_BYTES);
	else if (memchr(buf, '\0', n) != NULL)
		rc = conduit_ctx_fail(ctx, CONDUIT_ERR_RULES,
		                      "rules %s: contains a NUL byte", path);
	else {
		buf[n] = '\0';
		rc = conduit_ctx_add_rules(ctx, buf, path);
	}
	free(buf);
	return rc;
}

int conduit_ctx_add_service(conduit_ctx *ctx, const char *name, uint16_t port,
                            int tls)
{
	if (ctx == NULL || name == NULL || strlen(name) > 64 ||
	    strpbrk(name, " \t\r\n#") != NULL)
		return CONDUIT_ERR_INVALID;
	char line[128];
	snprintf(line, sizeof(line), "service %s %u%s\n", name, port,
	         tls ? " tls" : "");
	return conduit_ctx_add_rules(ctx, line, "conduit_ctx_add_service");
}
