/*
 * test_rules.c - the rules-file parser and host-pattern matching.  A table
 * of good texts gives every rule each should produce, field by field; a
 * table of bad texts gives the exact "name:line:column: " each must be
 * rejected with and a piece of the reason.  Around them: the limits
 * (label and name lengths, line length, rule count), ties with rules
 * loaded before, merging and freeing, error buffers of every size, what a
 * message may show, a pattern-matching table with its specificity order,
 * and a bounded, deterministic mutation fuzz.  The suite runs under ASan in
 * CI, so every path here is also a leak check.
 */
#include "core.h"
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))
#define ERRLEN   512
/* Messages stay below this however long the input. */
#define MSG_LIMIT 300

/* ---- good texts ------------------------------------------------- */

struct xrule {
	enum cd_rule_kind kind;
	const char *pattern;
	int port;
	bool tls;
	const char *target; /* NULL for services */
	const char *origin;
};

#define M(pat, tgt, line)                                                      \
	{                                                                      \
		CD_RULE_MAP, pat, -1, false, tgt, "rules.conf:" #line          \
	}
#define C(pat, port, dst, line)                                                \
	{                                                                      \
		CD_RULE_CONNECT_TO, pat, port, false, dst, "rules.conf:" #line \
	}
#define S(name, port, tls, line)                                               \
	{                                                                      \
		CD_RULE_SERVICE, name, port, tls, NULL, "rules.conf:" #line    \
	}

struct good {
	const char *text;
	size_t n;
	struct xrule r[4];
};

static const struct good goods[] = {
    /* nothing to do */
    {"", 0, {{0}}},
    {"# only a comment\n", 0, {{0}}},
    {"\n\n   \n\t\n", 0, {{0}}},
    {"# caf\xc3\xa9 \xe2\x98\x95 comments may be UTF-8\n", 0, {{0}}},
    /* map */
    {"map db.internal unix:///run/db.sock\n",
     1,
     {M("db.internal", "unix:///run/db.sock", 1)}},
    {"map DB.Internal. unix:///run/db.sock",
     1,
     {M("db.internal", "unix:///run/db.sock", 1)}},
    {"map *.xen vchan://{label}/{scheme}\n",
     1,
     {M("*.xen", "vchan://{label}/{scheme}", 1)}},
    {"map *.b.c tcp://{host}:{port}\n",
     1,
     {M("*.b.c", "tcp://{host}:{port}", 1)}},
    {"  map\t*.XEN.\t vchan://{prefix}/x   # trailing comment\n",
     1,
     {M("*.xen", "vchan://{prefix}/x", 1)}},
    {"map a_b.c-d.e9 tcp://x:1\n", 1, {M("a_b.c-d.e9", "tcp://x:1", 1)}},
    {"map 10.0.0.1 tcp://x:1\n", 1, {M("10.0.0.1", "tcp://x:1", 1)}},
    {"map h https://h/#frag\n", 1, {M("h", "https://h/#frag", 1)}},
    {"map h t:x#not-a-comment # a comment\n",
     1,
     {M("h", "t:x#not-a-comment", 1)}},
    {"map h tls+tcp://{host}:{port}?servername={host}\n",
     1,
     {M("h", "tls+tcp://{host}:{port}?servername={host}", 1)}},
    {"map h unix-abstract:foo\n", 1, {M("h", "unix-abstract:foo", 1)}},
    {"map h a:\n", 1, {M("h", "a:", 1)}},
    {"map h X-1.y+Z:Stuff\n", 1, {M("h", "X-1.y+Z:Stuff", 1)}},
    {"map\ta\tt:\n", 1, {M("a", "t:", 1)}},
    {"map a t:1\r\nmap b t:2\r\n", 2, {M("a", "t:1", 1), M("b", "t:2", 2)}},
    {"map a t:\nmap *.a t:\n", 2, {M("a", "t:", 1), M("*.a", "t:", 2)}},
    /* connect-to */
    {"connect-to example.com:443 127.0.0.1:8443\n",
     1,
     {C("example.com", 443, "127.0.0.1:8443", 1)}},
    {"connect-to *:* [::1]:8443\n", 1, {C("*", -1, "[::1]:8443", 1)}},
    {"connect-to *.example.com:80 backend.internal:\n",
     1,
     {C("*.example.com", 80, "backend.internal:", 1)}},
    {"connect-to Example.COM.:0443 Backend.Internal.:08443\n",
     1,
     {C("example.com", 443, "backend.internal:8443", 1)}},
    {"connect-to x:1 [2001:DB8:0:0::1]:1\n",
     1,
     {C("x", 1, "[2001:db8::1]:1", 1)}},
    {"connect-to *.xen:* {label}.internal:\n",
     1,
     {C("*.xen", -1, "{label}.internal:", 1)}},
    {"connect-to a:0 {host}:9\n", 1, {C("a", 0, "{host}:9", 1)}},
    {"connect-to a:65535 {prefix}-X.{label}:65535\n",
     1,
     {C("a", 65535, "{prefix}-x.{label}:65535", 1)}},
    {"connect-to a:1 1.2.3.4:\n", 1, {C("a", 1, "1.2.3.4:", 1)}},
    {"connect-to a:1 [::ffff:1.2.3.4]:7\n",
     1,
     {C("a", 1, "[::ffff:1.2.3.4]:7", 1)}},
    {"connect-to a:1 b:2\nconnect-to a:2 b:2\nconnect-to a:* b:2\n"
     "connect-to *:1 b:2\n",
     4,
     {C("a", 1, "b:2", 1), C("a", 2, "b:2", 2), C("a", -1, "b:2", 3),
      C("*", 1, "b:2", 4)}},
    /* service */
    {"service gopher 70\n", 1, {S("gopher", 70, false, 1)}},
    {"service Gemini 1965 tls\n", 1, {S("gemini", 1965, true, 1)}},
    {"service x.y-z 1\n", 1, {S("x.y-z", 1, false, 1)}},
    {"service s 65535 tls # comment\n", 1, {S("s", 65535, true, 1)}},
    {"service foo 7\r", 1, {S("foo", 7, false, 1)}},
    /* kinds never tie with each other; lines count blank ones */
    {"map a t:1\n\n# c\nconnect-to a:1 b:2\n  \nservice a 3\n",
     3,
     {M("a", "t:1", 1), C("a", 1, "b:2", 4), S("a", 3, false, 6)}},
    {"# caf\xc3\xa9\nmap a t:\n", 1, {M("a", "t:", 2)}},
};

static void check_rule(const char *text, size_t i, const struct cd_rule *got,
                       const struct xrule *want)
{
	ck_assert_msg(got->kind == want->kind, "%s: rule %zu kind %d", text, i,
	              got->kind);
	ck_assert_str_eq(got->pattern, want->pattern);
	ck_assert_msg(got->port == want->port, "%s: rule %zu port %d", text, i,
	              got->port);
	ck_assert_msg(got->tls == want->tls, "%s: rule %zu tls", text, i);
	if (want->target == NULL)
		ck_assert_ptr_null(got->target);
	else
		ck_assert_str_eq(got->target, want->target);
	ck_assert_str_eq(got->origin, want->origin);
}

START_TEST(test_good_table)
{
	ck_assert_uint_ge(NELEM(goods), 30);
	for (size_t t = 0; t < NELEM(goods); t++) {
		const struct good *g = &goods[t];
		struct cd_ruleset rs = {0};
		char err[ERRLEN] = "";
		int rc = cd_rules_parse(&rs, g->text, strlen(g->text),
		                        "rules.conf", NULL, err, sizeof(err));
		ck_assert_msg(rc == CONDUIT_OK, "%zu: %s", t, err);
		ck_assert_msg(rs.n == g->n, "%zu: %zu rules", t, rs.n);
		for (size_t i = 0; i < rs.n; i++)
			check_rule(g->text, i, &rs.rules[i], &g->r[i]);
		cd_ruleset_free(&rs);
		ck_assert_uint_eq(rs.n, 0);
		ck_assert_ptr_null(rs.rules);
	}
}
END_TEST

/* ---- bad texts -------------------------------------------------- */

struct bad {
	const char *text;
	const char *prefix;   /* exact start of the message */
	const char *reason;   /* somewhere after it */
	const char *existing; /* parsed first as "base.conf", or NULL */
};

#define A16 "aaaaaaaaaaaaaaaa"

static const struct bad bads[] = {
    /* directives and field counts */
    {"mpa a t:\n", "rules.conf:1:1: ",
     "unknown directive 'mpa' (known: map, connect-to, service)", NULL},
    {"  MAP a t:\n", "rules.conf:1:3: ", "unknown directive 'MAP'", NULL},
    {"map db.internal\n",
     "rules.conf:1:16: ", "map needs a pattern and a target", NULL},
    {"map\n", "rules.conf:1:4: ", "map needs a pattern and a target", NULL},
    {"map a # t:\n", "rules.conf:1:7: ", "map needs a pattern", NULL},
    {"map a t: extra\n", "rules.conf:1:10: ", "extra field 'extra'", NULL},
    {"map a t:1\nservice b 1\n\nfoo\n",
     "rules.conf:4:1: ", "unknown directive 'foo'", NULL},
    {"map a t:\r\nmap b\r\n", "rules.conf:2:6: ", "map needs", NULL},
    /* host patterns */
    {"map a!b t:\n", "rules.conf:1:6: ", "invalid character '!'", NULL},
    {"map a.*.b t:\n", "rules.conf:1:7: ", "'*' is allowed only", NULL},
    {"map *foo t:\n", "rules.conf:1:5: ", "'*' is allowed only", NULL},
    {"map *.*.xen t:\n", "rules.conf:1:7: ", "'*' is allowed only", NULL},
    {"map * t:\n", "rules.conf:1:5: ", "'*' alone is not allowed", NULL},
    {"map *. t:\n", "rules.conf:1:7: ", "'*.' needs a DNS suffix", NULL},
    {"map a..b t:\n", "rules.conf:1:7: ", "empty label", NULL},
    {"map . t:\n", "rules.conf:1:5: ", "empty label", NULL},
    {"map -a t:\n", "rules.conf:1:5: ", "label starts with '-'", NULL},
    {"map a-.b t:\n", "rules.conf:1:6: ", "label ends with '-'", NULL},
    {"map b." A16 A16 A16 A16 ".c t:\n",
     "rules.conf:1:7: ", "label longer than 63 bytes", NULL},
    {"map [::1] t:\n", "rules.conf:1:5: ", "IPv6 literals are not", NULL},
    /* map targets */
    {"map a tcp//x\n", "rules.conf:1:10: ", "must start with a URI scheme",
     NULL},
    {"map a {scheme}://x\n", "rules.conf:1:7: ", "URI scheme", NULL},
    {"map a 1tcp://x\n", "rules.conf:1:7: ", "URI scheme", NULL},
    {"map a t:{hots}\n", "rules.conf:1:9: ", "unknown placeholder {hots}",
     NULL},
    {"map a t:{}\n", "rules.conf:1:9: ", "unknown placeholder {}", NULL},
    {"map a t:{host\n", "rules.conf:1:9: ", "unbalanced '{'", NULL},
    {"map a t:host}\n", "rules.conf:1:13: ", "unbalanced '}'", NULL},
    {"map a t:{{host}}\n", "rules.conf:1:9: ", "unbalanced '{'", NULL},
    /* connect-to */
    {"connect-to a:1\n", "rules.conf:1:15: ", "connect-to needs HOST:PORT",
     NULL},
    {"connect-to a:1 b:2 c\n", "rules.conf:1:20: ", "extra field 'c'", NULL},
    {"connect-to a b:1\n", "rules.conf:1:13: ", "expected HOST:PORT", NULL},
    {"connect-to :1 b:1\n", "rules.conf:1:12: ", "missing host pattern", NULL},
    {"connect-to a: b:1\n", "rules.conf:1:14: ", "missing port", NULL},
    {"connect-to [::1]:443 b:1\n", "rules.conf:1:12: ",
     "IPv6 literals are not supported in host patterns", NULL},
    {"connect-to a:65536 b:1\n", "rules.conf:1:14: ", "bad port '65536'", NULL},
    {"connect-to a:abc b:1\n", "rules.conf:1:14: ", "bad port 'abc'", NULL},
    {"connect-to a:-1 b:1\n", "rules.conf:1:14: ", "bad port '-1'", NULL},
    {"connect-to a.*:1 b:1\n", "rules.conf:1:14: ", "'*' is allowed only",
     NULL},
    {"connect-to a:0 b:0\n", "rules.conf:1:18: ", "bad port '0'", NULL},
    {"connect-to a:1 b:99999999999\n", "rules.conf:1:18: ", "bad port", NULL},
    {"connect-to a:1 b\n", "rules.conf:1:17: ", "destination needs HOST:PORT",
     NULL},
    {"connect-to a:1 :80\n", "rules.conf:1:16: ", "missing destination host",
     NULL},
    {"connect-to a:1 ::1:80\n", "rules.conf:1:16: ", "must be in brackets",
     NULL},
    {"connect-to a:1 1.2.3:80\n",
     "rules.conf:1:16: ", "bad IPv4 address '1.2.3'", NULL},
    {"connect-to a:1 1.2.3.400:80\n", "rules.conf:1:16: ", "bad IPv4 address",
     NULL},
    {"connect-to a:1 [::g]:80\n", "rules.conf:1:17: ", "bad IPv6 address '::g'",
     NULL},
    {"connect-to a:1 [fe80::1%eth0]:80\n",
     "rules.conf:1:17: ", "bad IPv6 address", NULL},
    {"connect-to a:1 [::1:80\n", "rules.conf:1:16: ", "unclosed '['", NULL},
    {"connect-to a:1 [::1]80\n", "rules.conf:1:21: ", "HOST:PORT", NULL},
    {"connect-to a:1 b!c:80\n", "rules.conf:1:17: ", "invalid character '!'",
     NULL},
    {"connect-to a:1 *.b:80\n",
     "rules.conf:1:16: ", "'*' is not allowed in a destination", NULL},
    {"connect-to a:1 {port}.x:80\n",
     "rules.conf:1:16: ", "placeholder {port} cannot be used", NULL},
    {"connect-to a:1 {bogus}:80\n",
     "rules.conf:1:16: ", "unknown placeholder {bogus}", NULL},
    {"connect-to a:1 {label:80\n", "rules.conf:1:16: ", "unbalanced '{'", NULL},
    {"connect-to a:1 {label}/x:80\n",
     "rules.conf:1:23: ", "invalid character '/'", NULL},
    {"connect-to a:1 b:{port}\n", "rules.conf:1:18: ", "only in the host part",
     NULL},
    /* service */
    {"service foo\n", "rules.conf:1:12: ", "service needs a name and a port",
     NULL},
    {"service tcp 1\n", "rules.conf:1:9: ", "'tcp' is a transport", NULL},
    {"service VCHAN 1\n", "rules.conf:1:9: ", "'vchan' is a transport", NULL},
    {"service unix-abstract 1\n", "rules.conf:1:9: ", "is a transport", NULL},
    {"service tls+foo 1\n", "rules.conf:1:12: ", "cannot hold '+'", NULL},
    {"service 9p 1\n", "rules.conf:1:9: ", "must start with a letter", NULL},
    {"service a_b 1\n", "rules.conf:1:10: ", "invalid character '_'", NULL},
    {"service foo 0\n", "rules.conf:1:13: ", "bad port '0'", NULL},
    {"service foo 65536\n", "rules.conf:1:13: ", "bad port '65536'", NULL},
    {"service foo * tls\n", "rules.conf:1:13: ", "bad port '*'", NULL},
    {"service foo 1 tsl\n", "rules.conf:1:15: ", "expected 'tls'", NULL},
    {"service foo 1 tls x\n", "rules.conf:1:19: ", "extra field 'x'", NULL},
    /* bytes */
    {"map a\rb t:\n", "rules.conf:1:6: ", "control byte 0x0d", NULL},
    {"map a t:\x01\n", "rules.conf:1:9: ", "control byte 0x01", NULL},
    {"map a t:\x7f\n", "rules.conf:1:9: ", "control byte 0x7f", NULL},
    {"map caf\xc3\xa9 t:\n", "rules.conf:1:8: ", "non-ASCII byte 0xc3", NULL},
    /* ties, within the text and with rules loaded before */
    {"map db.internal t:1\n# x\nmap DB.internal. t:2\n", "rules.conf:3:5: ",
     "map db.internal is already defined at rules.conf:1", NULL},
    {"connect-to *:* a:1\nconnect-to *:* b:2\n", "rules.conf:2:12: ",
     "connect-to *:* is already defined at rules.conf:1", NULL},
    {"connect-to a:443 b:1\n\nconnect-to A:0443 c:1\n", "rules.conf:3:12: ",
     "connect-to a:443 is already defined at "
     "rules.conf:1",
     NULL},
    {"service foo 1\nservice FOO 2 tls\n", "rules.conf:2:9: ",
     "service foo is already defined at rules.conf:1", NULL},
    {"map db.internal u:\n",
     "rules.conf:1:5: ", "map db.internal is already defined at base.conf:3",
     "\n\nmap db.internal t:\n"},
    {"map x t:\nservice http 8080\n", "rules.conf:2:9: ",
     "service http is already defined at base.conf:1", "service http 80\n"},
    {"connect-to *.xen:* b:\n", "rules.conf:1:12: ",
     "connect-to *.xen:* is already defined at base.conf:2",
     "connect-to *.xen:1 a:\nconnect-to *.xen:* a:\n"},
};

/* Parse b's text (after its existing set) and check the message. */
static void check_bad(const struct bad *b, size_t len, size_t t)
{
	struct cd_ruleset base = {0};
	char err[ERRLEN];
	if (b->existing != NULL)
		ck_assert_int_eq(
		    cd_rules_parse(&base, b->existing, strlen(b->existing),
		                   "base.conf", NULL, err, sizeof(err)),
		    CONDUIT_OK);
	/* *out must be left as it was */
	struct cd_rule dummy;
	struct cd_ruleset rs = {.n = 77, .rules = &dummy};
	memset(err, 'X', sizeof(err));
	int rc = cd_rules_parse(&rs, b->text, len, "rules.conf",
	                        b->existing != NULL ? &base : NULL, err,
	                        sizeof(err));
	ck_assert_msg(rc == CONDUIT_ERR_RULES, "%zu: status %s", t,
	              conduit_status_name(rc));
	ck_assert_msg(rs.n == 77 && rs.rules == &dummy, "%zu: out touched", t);
	ck_assert_msg(memchr(err, '\0', sizeof(err)) != NULL, "%zu", t);
	ck_assert_msg(strncmp(err, b->prefix, strlen(b->prefix)) == 0,
	              "%zu: got \"%s\", want prefix \"%s\"", t, err, b->prefix);
	ck_assert_msg(strstr(err + strlen(b->prefix), b->reason) != NULL,
	              "%zu: got \"%s\", want \"%s\"", t, err, b->reason);
	ck_assert_uint_lt(strlen(err), MSG_LIMIT);
	cd_ruleset_free(&base);
}

START_TEST(test_bad_table)
{
	ck_assert_uint_ge(NELEM(bads), 25);
	for (size_t t = 0; t < NELEM(bads); t++)
		check_bad(&bads[t], strlen(bads[t].text), t);
}
END_TEST

/* A NUL byte cannot sit in a C string table: given by length. */
START_TEST(test_nul_byte)
{
	static const char t1[] = "map a t:\nmap b\0c t:\n";
	static const char t2[] = "# a comment \0 with NUL\n";
	struct bad b1 = {t1, "rules.conf:2:6: ", "NUL byte", NULL};
	struct bad b2 = {t2, "rules.conf:1:13: ", "NUL byte", NULL};
	check_bad(&b1, sizeof(t1) - 1, 0);
	check_bad(&b2, sizeof(t2) - 1, 1);
}
END_TEST

/* ---- limits ----------------------------------------------------- */

static int parse_str(struct cd_ruleset *rs, const char *text, char *err)
{
	return cd_rules_parse(rs, text, strlen(text), "rules.conf", NULL, err,
	                      ERRLEN);
}

/* "map NAME t:" with NAME made of labels of the given lengths. */
static char *map_of_labels(const size_t *lens, size_t n, const char *pre)
{
	size_t total = 64 + strlen(pre);
	for (size_t i = 0; i < n; i++)
		total += lens[i] + 1;
	char *s = malloc(total);
	ck_assert_ptr_nonnull(s);
	size_t o = (size_t)sprintf(s, "map %s", pre);
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			s[o++] = '.';
		memset(s + o, 'a' + (int)(i % 26), lens[i]);
		o += lens[i];
	}
	strcpy(s + o, " t:\n");
	return s;
}

START_TEST(test_name_limits)
{
	struct cd_ruleset rs = {0};
	char err[ERRLEN];
	/* 63 + 1 + 63 + 1 + 63 + 1 + 61 = 253 bytes: the longest name */
	size_t ok[] = {63, 63, 63, 61};
	char *s = map_of_labels(ok, 4, "");
	ck_assert_int_eq(parse_str(&rs, s, err), CONDUIT_OK);
	ck_assert_uint_eq(strlen(rs.rules[0].pattern), 253);
	cd_ruleset_free(&rs);
	free(s);

	size_t over[] = {63, 63, 63, 62};
	s = map_of_labels(over, 4, "");
	ck_assert_int_eq(parse_str(&rs, s, err), CONDUIT_ERR_RULES);
	ck_assert_str_eq(err, "rules.conf:1:5: host name longer than 253 "
	                      "bytes");
	free(s);

	/* "*." counts: a host it matches must fit in 253 bytes too */
	size_t wild[] = {63, 63, 63, 59};
	s = map_of_labels(wild, 4, "*.");
	ck_assert_int_eq(parse_str(&rs, s, err), CONDUIT_OK);
	cd_ruleset_free(&rs);
	free(s);
	size_t wild_over[] = {63, 63, 63, 60};
	s = map_of_labels(wild_over, 4, "*.");
	ck_assert_int_eq(parse_str(&rs, s, err), CONDUIT_ERR_RULES);
	ck_assert_str_eq(err, "rules.conf:1:5: host name longer than 253 "
	                      "bytes");
	free(s);

	/* the trailing dot does not count */
	char *t = NULL;
	s = map_of_labels(ok, 4, "");
	ck_assert_int_ge(asprintf(&t, "%.*s. t:\n", (int)(strlen(s) - 4), s),
	                 0);
	ck_assert_int_eq(parse_str(&rs, t, err), CONDUIT_OK);
	cd_ruleset_free(&rs);
	free(t);
	free(s);

	size_t lab[] = {64};
	s = map_of_labels(lab, 1, "");
	ck_assert_int_eq(parse_str(&rs, s, err), CONDUIT_ERR_RULES);
	ck_assert_str_eq(err, "rules.conf:1:5: label longer than 63 bytes");
	free(s);
}
END_TEST

START_TEST(test_line_limit)
{
	struct cd_ruleset rs = {0};
	char err[ERRLEN];
	/* exactly 4096 bytes (padded with a comment), then CRLF */
	char *s = malloc(4096 + 16);
	ck_assert_ptr_nonnull(s);
	strcpy(s, "map a t: #");
	memset(s + 10, 'c', 4096 - 10);
	strcpy(s + 4096, "\r\n");
	ck_assert_int_eq(parse_str(&rs, s, err), CONDUIT_OK);
	ck_assert_uint_eq(rs.n, 1);
	cd_ruleset_free(&rs);
	/* one byte more */
	s[4096] = 'c';
	strcpy(s + 4097, "\nmap b t:\n");
	ck_assert_int_eq(parse_str(&rs, s, err), CONDUIT_ERR_RULES);
	ck_assert_str_eq(err, "rules.conf:1:4097: line longer than 4096 "
	                      "bytes");
	/* also on a later line without a final newline */
	strcpy(s, "map a t:\n");
	memset(s + 9, ' ', 4097);
	s[9 + 4097] = '\0';
	ck_assert_int_eq(parse_str(&rs, s, err), CONDUIT_ERR_RULES);
	ck_assert_str_eq(err, "rules.conf:2:4097: line longer than 4096 "
	                      "bytes");
	free(s);
}
END_TEST

/* 10,000 rules load (and the tie check keeps that quick); one more does
 * not. */
START_TEST(test_rule_limit)
{
	size_t cap = 10001 * 40;
	char *s = malloc(cap);
	ck_assert_ptr_nonnull(s);
	size_t o = 0;
	for (int i = 0; i < 10001; i++)
		o += (size_t)snprintf(s + o, cap - o,
		                      "map h%d.example tcp://x:%d\n", i,
		                      i % 65535 + 1);
	struct cd_ruleset rs = {0};
	char err[ERRLEN];
	size_t len10k = (size_t)(strstr(s, "map h10000.") - s);
	uint64_t t0 = cd_now_ms();
	ck_assert_int_eq(cd_rules_parse(&rs, s, len10k, "rules.conf", NULL, err,
	                                sizeof(err)),
	                 CONDUIT_OK);
	ck_assert_uint_eq(rs.n, 10000);
	ck_assert_str_eq(rs.rules[9999].origin, "rules.conf:10000");
	ck_assert_uint_lt(cd_now_ms() - t0, (uint64_t)cd_scaled(2000));
	/* the same again on top of them: every one ties */
	struct cd_ruleset again = {0};
	ck_assert_int_eq(cd_rules_parse(&again, s, len10k, "more.conf", &rs,
	                                err, sizeof(err)),
	                 CONDUIT_ERR_RULES);
	ck_assert_str_eq(err, "more.conf:1:5: map h0.example is already "
	                      "defined at rules.conf:1");
	cd_ruleset_free(&rs);
	ck_assert_int_eq(
	    cd_rules_parse(&rs, s, o, "rules.conf", NULL, err, sizeof(err)),
	    CONDUIT_ERR_RULES);
	ck_assert_str_eq(err, "rules.conf:10001:1: more than 10000 rules in "
	                      "one file");
	free(s);
}
END_TEST

/* ---- sets ------------------------------------------------------- */

START_TEST(test_existing_and_merge)
{
	struct cd_ruleset a = {0}, b = {0};
	char err[ERRLEN];
	const char *ta = "map a t:\nservice foo 1\n";
	const char *tb = "map *.a t:\nconnect-to a:1 b:\nservice bar 2 tls\n";
	ck_assert_int_eq(cd_rules_parse(&a, ta, strlen(ta), "a.conf", NULL, err,
	                                sizeof(err)),
	                 CONDUIT_OK);
	ck_assert_int_eq(
	    cd_rules_parse(&b, tb, strlen(tb), "b.conf", &a, err, sizeof(err)),
	    CONDUIT_OK);
	ck_assert_int_eq(cd_ruleset_merge(&a, &b), CONDUIT_OK);
	ck_assert_uint_eq(a.n, 5);
	ck_assert_uint_eq(b.n, 0);
	ck_assert_ptr_null(b.rules);
	ck_assert_str_eq(a.rules[0].origin, "a.conf:1");
	ck_assert_str_eq(a.rules[4].origin, "b.conf:3");
	ck_assert_str_eq(a.rules[4].pattern, "bar");

	/* a third file sees both */
	const char *tc = "service BAR 3\n";
	struct cd_ruleset c = {0};
	ck_assert_int_eq(
	    cd_rules_parse(&c, tc, strlen(tc), "c.conf", &a, err, sizeof(err)),
	    CONDUIT_ERR_RULES);
	ck_assert_str_eq(err, "c.conf:1:9: service bar is already defined at "
	                      "b.conf:3");

	/* empty sets on either side, NULLs */
	struct cd_ruleset e = {0};
	ck_assert_int_eq(cd_ruleset_merge(&a, &e), CONDUIT_OK);
	ck_assert_uint_eq(a.n, 5);
	ck_assert_int_eq(cd_ruleset_merge(&e, &a), CONDUIT_OK);
	ck_assert_uint_eq(e.n, 5);
	ck_assert_uint_eq(a.n, 0);
	ck_assert_int_eq(cd_ruleset_merge(&e, NULL), CONDUIT_OK);
	ck_assert_int_eq(cd_ruleset_merge(NULL, NULL), CONDUIT_OK);
	ck_assert_int_eq(cd_ruleset_merge(NULL, &e), CONDUIT_ERR_INVALID);
	ck_assert_int_eq(cd_ruleset_merge(&e, &e), CONDUIT_ERR_INVALID);
	ck_assert_uint_eq(e.n, 5);
	cd_ruleset_free(&e);
	ck_assert_uint_eq(e.n, 0);
	ck_assert_ptr_null(e.rules);
	cd_ruleset_free(&e);
	cd_ruleset_free(&a);
	cd_ruleset_free(NULL);

	/* an empty text on an empty set */
	ck_assert_int_eq(
	    cd_rules_parse(&c, NULL, 0, "c.conf", &e, err, sizeof(err)),
	    CONDUIT_OK);
	ck_assert_uint_eq(c.n, 0);
	cd_ruleset_free(&c);
}
END_TEST

START_TEST(test_bad_arguments)
{
	struct cd_ruleset rs = {0};
	char err[ERRLEN];
	ck_assert_int_eq(
	    cd_rules_parse(NULL, "map a t:", 8, "r", NULL, err, sizeof(err)),
	    CONDUIT_ERR_INVALID);
	ck_assert_str_eq(err, "r: invalid argument");
	ck_assert_int_eq(
	    cd_rules_parse(&rs, NULL, 3, "r", NULL, err, sizeof(err)),
	    CONDUIT_ERR_INVALID);
	/* no name, no error buffer */
	ck_assert_int_eq(
	    cd_rules_parse(&rs, "map", 3, NULL, NULL, err, sizeof(err)),
	    CONDUIT_ERR_RULES);
	ck_assert_str_eq(err, "(rules):1:4: map needs a pattern and a target");
	ck_assert_int_eq(cd_rules_parse(&rs, "map", 3, "r", NULL, NULL, 0),
	                 CONDUIT_ERR_RULES);
	ck_assert_int_eq(
	    cd_rules_parse(&rs, "map a t:", 8, "r", NULL, NULL, 99),
	    CONDUIT_OK);
	cd_ruleset_free(&rs);
}
END_TEST

/* ---- messages --------------------------------------------------- */

START_TEST(test_errbuf_sizes)
{
	const char *text = "map a t:\nmap b t: extra\n";
	const char *full = "rules.conf:2:10: extra field 'extra' (map takes a "
	                   "pattern and a target)";
	for (size_t len = 0; len <= strlen(full) + 2; len++) {
		char buf[128];
		memset(buf, 'Z', sizeof(buf));
		struct cd_ruleset rs = {0};
		int rc = cd_rules_parse(&rs, text, strlen(text), "rules.conf",
		                        NULL, len ? buf : NULL, len);
		ck_assert_int_eq(rc, CONDUIT_ERR_RULES);
		if (len == 0) {
			ck_assert_int_eq(buf[0], 'Z');
			continue;
		}
		size_t want = strlen(full) < len - 1 ? strlen(full) : len - 1;
		ck_assert_uint_eq(strlen(buf), want);
		ck_assert_int_eq(strncmp(buf, full, want), 0);
		ck_assert_int_eq(buf[len], 'Z');
	}
}
END_TEST

START_TEST(test_message_contents)
{
	struct cd_ruleset rs = {0};
	char err[ERRLEN];
	/* a name with control bytes is escaped */
	ck_assert_int_eq(
	    cd_rules_parse(&rs, "x", 1, "a\x1b[31m\nb", NULL, err, sizeof(err)),
	    CONDUIT_ERR_RULES);
	ck_assert_str_eq(err, "a\\x1b[31m\\x0ab:1:1: unknown directive 'x' "
	                      "(known: map, connect-to, service)");

	/* long input is shortened: a 3000-byte directive, name, target */
	char *s = malloc(8000);
	ck_assert_ptr_nonnull(s);
	memset(s, 'q', 3000);
	s[3000] = '\0';
	ck_assert_int_eq(parse_str(&rs, s, err), CONDUIT_ERR_RULES);
	ck_assert_uint_lt(strlen(err), MSG_LIMIT);
	ck_assert_ptr_nonnull(strstr(err, "...' (known"));
	ck_assert_int_eq(
	    cd_rules_parse(&rs, "map", 3, s, NULL, err, sizeof(err)),
	    CONDUIT_ERR_RULES);
	ck_assert_uint_lt(strlen(err), MSG_LIMIT);
	ck_assert_ptr_nonnull(strstr(err, "...:1:4: map needs"));
	strcpy(s, "map a t:{");
	memset(s + 9, 'p', 3000);
	strcpy(s + 3009, "}");
	ck_assert_int_eq(parse_str(&rs, s, err), CONDUIT_ERR_RULES);
	ck_assert_uint_lt(strlen(err), MSG_LIMIT);
	ck_assert_ptr_nonnull(strstr(err, "rules.conf:1:9: unknown placeholder"
	                                  " {ppp"));
	/* a tie naming a long origin stays short too */
	struct cd_ruleset base = {0};
	memset(s, 'n', 3000);
	s[3000] = '\0';
	ck_assert_int_eq(
	    cd_rules_parse(&base, "map a t:", 8, s, NULL, err, sizeof(err)),
	    CONDUIT_OK);
	ck_assert_int_eq(
	    cd_rules_parse(&rs, "map a t:", 8, "r", &base, err, sizeof(err)),
	    CONDUIT_ERR_RULES);
	ck_assert_uint_lt(strlen(err), MSG_LIMIT);
	ck_assert_ptr_nonnull(strstr(err, "r:1:5: map a is already defined at "
	                                  "nnn"));
	cd_ruleset_free(&base);
	free(s);
}
END_TEST

/* ---- matching --------------------------------------------------- */

struct match {
	const char *pattern;
	const char *host;
	int score;
};

static const struct match matches[] = {
    /* exact names: whole name only */
    {"bar.com", "bar.com", 1002},
    {"bar.com", "foobar.com", -1},
    {"bar.com", "a.bar.com", -1},
    {"bar.com", "bar.co", -1},
    {"bar.com", "bar.com.evil", -1},
    {"db.internal", "db.internal", 1002},
    {"localhost", "localhost", 1001},
    {"a.b.c.d", "a.b.c.d", 1004},
    {"10.0.0.1", "10.0.0.1", 1004},
    /* suffixes: whole labels, at least one more */
    {"*.bar.com", "foobar.com", -1},
    {"*.bar.com", "bar.com", -1},
    {"*.bar.com", "a.bar.com", 2},
    {"*.bar.com", "a.b.bar.com", 2},
    {"*.bar.com", "a.bar.com.evil", -1},
    {"*.bar.com", ".bar.com", -1},
    {"*.com", "a.bar.com", 1},
    {"*.b.c", "a.b.c", 2},
    {"*.c", "a.b.c", 1},
    {"*.xen", "vm1.xen", 1},
    {"*.xen", "xen", -1},
    {"*.xen", "vm1.xenial", -1},
    {"*.xen", "vm1.axen", -1},
    {"*.en", "vm1.xen", -1},
    {"*.xen", "a_b-c.xen", 1},
    /* any host */
    {"*", "anything", 0},
    {"*", "a.b.c", 0},
    {"*", "", -1},
    /* not patterns the parser makes */
    {"*.", "a.", -1},
    {"**.x", "a.x", -1},
    {"*x", "ax", -1},
    {"", "a", -1},
};

START_TEST(test_match_table)
{
	ck_assert_uint_ge(NELEM(matches), 25);
	for (size_t i = 0; i < NELEM(matches); i++) {
		const struct match *m = &matches[i];
		int got = cd_pattern_match(m->pattern, m->host);
		ck_assert_msg(got == m->score, "%s vs %s: %d, want %d",
		              m->pattern, m->host, got, m->score);
	}
	ck_assert_int_eq(cd_pattern_match(NULL, "a"), -1);
	ck_assert_int_eq(cd_pattern_match("a", NULL), -1);
	ck_assert_int_eq(cd_pattern_match("*", NULL), -1);
}
END_TEST

/* The most specific pattern wins: each beats every one after it. */
START_TEST(test_match_order)
{
	static const char *const order[] = {
	    "a.b.bar.com", "*.b.bar.com", "*.bar.com", "*.com", "*",
	};
	int prev = 1 << 30;
	for (size_t i = 0; i < NELEM(order); i++) {
		int s = cd_pattern_match(order[i], "a.b.bar.com");
		ck_assert_msg(s >= 0 && s < prev, "%s: %d", order[i], s);
		prev = s;
	}
	/* any exact name beats any wildcard, however long */
	ck_assert_int_gt(cd_pattern_match("x", "x"),
	                 cd_pattern_match("*.b.c.d.e.f.g", "a.b.c.d.e.f.g"));
}
END_TEST

/* ---- fuzz ------------------------------------------------------- */

static uint32_t rnd_state;

static uint32_t rnd(void)
{
	/* xorshift32: the same sequence on every run */
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 17;
	rnd_state ^= rnd_state << 5;
	return rnd_state;
}

static void mutate(char *buf, size_t *len, size_t cap)
{
	static const char alphabet[] = " \t\n\r#*.:{}[]-_+/aZ09x\x01\x80\xff";
	size_t n = *len;
	switch (rnd() % 5) {
	case 0: /* replace */
		if (n > 0)
			buf[rnd() % n] =
			    alphabet[rnd() % (sizeof(alphabet) - 1)];
		break;
	case 1: /* delete */
		if (n > 0) {
			size_t at = rnd() % n;
			memmove(buf + at, buf + at + 1, n - at - 1);
			n--;
		}
		break;
	case 2: /* insert */
		if (n + 1 < cap) {
			size_t at = n > 0 ? rnd() % (n + 1) : 0;
			memmove(buf + at + 1, buf + at, n - at);
			buf[at] = alphabet[rnd() % (sizeof(alphabet) - 1)];
			n++;
		}
		break;
	case 3: /* repeat the whole text: ties */
		if (2 * n + 1 < cap) {
			memcpy(buf + n, buf, n);
			n *= 2;
		}
		break;
	default: /* cut */
		if (n > 0)
			n = rnd() % n;
		break;
	}
	*len = n;
}

/* What every rule of a successful parse must satisfy. */
static void check_parsed(const struct cd_ruleset *rs)
{
	for (size_t i = 0; i < rs->n; i++) {
		const struct cd_rule *r = &rs->rules[i];
		ck_assert_ptr_nonnull(r->pattern);
		ck_assert_ptr_nonnull(r->origin);
		ck_assert_int_eq(strncmp(r->origin, "rules.conf:", 11), 0);
		if (r->kind == CD_RULE_SERVICE) {
			ck_assert_ptr_null(r->target);
			ck_assert(r->port >= 1 && r->port <= 65535);
			continue;
		}
		ck_assert_ptr_nonnull(r->target);
		ck_assert(r->port >= -1 && r->port <= 65535);
		const char *p = r->pattern;
		if (strcmp(p, "*") == 0)
			continue;
		char host[300];
		if (p[0] == '*')
			snprintf(host, sizeof(host), "x%s", p + 1);
		else
			snprintf(host, sizeof(host), "%s", p);
		ck_assert_int_ge(cd_pattern_match(p, host), 1);
	}
}

START_TEST(test_fuzz)
{
	static const size_t errlens[] = {0, 1, 2, 16, 64, ERRLEN};
	char buf[1024];
	char err[ERRLEN + 1];
	size_t ok = 0, bad = 0;
	rnd_state = 0x2545f491u;
	for (int iter = 0; iter < 5000; iter++) {
		const char *src = goods[rnd() % NELEM(goods)].text;
		size_t len = strlen(src);
		memcpy(buf, src, len);
		int muts = 1 + (int)(rnd() % 4);
		for (int m = 0; m < muts; m++)
			mutate(buf, &len, sizeof(buf));
		size_t el = errlens[rnd() % NELEM(errlens)];
		memset(err, 'Z', sizeof(err));
		struct cd_ruleset rs = {0};
		int rc = cd_rules_parse(&rs, buf, len, "rules.conf", NULL,
		                        el ? err : NULL, el);
		ck_assert_msg(rc == CONDUIT_OK || rc == CONDUIT_ERR_RULES,
		              "status %s", conduit_status_name(rc));
		if (rc == CONDUIT_OK) {
			ok++;
			check_parsed(&rs);
			cd_ruleset_free(&rs);
			continue;
		}
		bad++;
		ck_assert_uint_eq(rs.n, 0);
		if (el == 0)
			continue;
		ck_assert_int_eq(err[el], 'Z');
		size_t n = strlen(err);
		ck_assert_uint_lt(n, el);
		for (size_t i = 0; i < n; i++)
			ck_assert_msg((unsigned char)err[i] >= 0x20 &&
			                  (unsigned char)err[i] < 0x7f,
			              "raw byte in \"%s\"", err);
		if (el == ERRLEN)
			ck_assert_int_eq(strncmp(err, "rules.conf:", 11), 0);
	}
	/* the mutations must exercise both outcomes */
	ck_assert_uint_gt(ok, 100);
	ck_assert_uint_gt(bad, 100);
}
END_TEST

int main(void)
{
	const struct cd_test tests[] = {
	    CD_TEST(test_good_table, 0),
	    CD_TEST(test_bad_table, 0),
	    CD_TEST(test_nul_byte, 0),
	    CD_TEST(test_name_limits, 0),
	    CD_TEST(test_line_limit, 0),
	    CD_TEST(test_rule_limit, 30),
	    CD_TEST(test_existing_and_merge, 0),
	    CD_TEST(test_bad_arguments, 0),
	    CD_TEST(test_errbuf_sizes, 0),
	    CD_TEST(test_message_contents, 0),
	    CD_TEST(test_match_table, 0),
	    CD_TEST(test_match_order, 0),
	    CD_TEST(test_fuzz, 60),
	};
	return cd_run(cd_suite("rules", tests, NELEM(tests)));
}
