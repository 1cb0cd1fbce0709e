/*
 * test_hostile.c - hostile input that the fuzz harnesses (tests/fuzz)
 * found: each finding keeps a test here once it is fixed.
 *   - Raw control bytes in a URI must never reach a message, an explain
 *     step or an observer's event: a terminal would obey them, and a
 *     newline would forge a log line.  They are shown as "\x1b".
 *   - Bytes that are not UTF-8 are shown escaped too.
 *   - A secret in a fragment (OAuth's #access_token=) is hidden as one in
 *     the query is.
 *   - A rules file whose map target cannot be an endpoint is refused whole
 *     at load, at the target's line and column, not when a URI hits it.
 *   - One host grammar: numeric forms a URI refuses (2130706433, 0x7f.1)
 *     are refused in connect-to values and rules files too.
 */
#include "flowkit.h"
#include "harness.h"

#include <conduit/conduit.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Everything shown for one resolution, NUL-separated. */
struct shown {
	char text[16384];
	size_t len;
};

static void add(struct shown *s, const char *t)
{
	size_t n = strlen(t);
	ck_assert_uint_lt(s->len + n + 1, sizeof(s->text));
	memcpy(s->text + s->len, t, n + 1);
	s->len += n + 1;
}

static void observe(void *arg, const struct conduit_event *ev)
{
	add(arg, ev->uri);
	add(arg, ev->detail);
}

static int no_dns(void *arg, const char *host, struct conduit_addr *a,
                  size_t cap, size_t *n)
{
	(void)arg;
	(void)host;
	if (cap == 0)
		return CONDUIT_ERR_RESOLVE;
	a[0] = fk_addr("192.0.2.1");
	*n = 1;
	return CONDUIT_OK;
}

/* Resolve uri with explain on a context that records events; everything
 * shown lands in s.  Returns the status. */
static int resolve_shown(const char *uri, struct shown *s)
{
	memset(s, 0, sizeof(*s));
	conduit_ctx *ctx = fk_new_ctx();
	conduit_ctx_set_lookup(ctx, no_dns, NULL);
	conduit_ctx_set_observer(ctx, observe, s);
	conduit_endpoint *ep = NULL;
	conduit_explain *x = NULL;
	int rc = conduit_resolve_explain(&ep, &x, ctx, uri);
	if (rc != CONDUIT_OK)
		add(s, conduit_ctx_error(ctx));
	for (size_t i = 0; i < conduit_explain_count(x); i++)
		add(s, conduit_explain_step(x, i));
	char err[512] = "";
	conduit_endpoint *parsed = NULL;
	if (conduit_endpoint_parse(&parsed, uri, err, sizeof(err)) !=
	    CONDUIT_OK)
		add(s, err);
	conduit_endpoint_free(parsed);
	conduit_explain_free(x);
	conduit_endpoint_free(ep);
	conduit_ctx_free(ctx);
	return rc;
}

/* No byte below 0x20, no DEL, and no byte of 0x80 or more that is not
 * part of printable UTF-8 (these tests use ASCII only, so: none). */
static void ck_printable(const struct shown *s)
{
	for (size_t i = 0; i < s->len; i++) {
		unsigned char c = (unsigned char)s->text[i];
		if (c == 0)
			continue;
		ck_assert_msg(c >= 0x20 && c < 0x7f,
		              "byte 0x%02x shown raw in \"%s\"", c,
		              s->text + i - (i > 40 ? 40 : i));
	}
}

static bool shows(const struct shown *s, const char *needle)
{
	for (size_t off = 0; off < s->len; off += strlen(s->text + off) + 1)
		if (strstr(s->text + off, needle) != NULL)
			return true;
	return false;
}

START_TEST(control_bytes_are_escaped)
{
	struct shown s;
	/* A scheme that would set the terminal's title and clear it. */
	ck_assert_int_ne(resolve_shown("a\x1b]0;PWNED\x07\x1b[2Jb://x", &s),
	                 CONDUIT_OK);
	ck_printable(&s);
	ck_assert_msg(shows(&s, "\\x1b]0;pwned\\x07\\x1b[2jb"),
	              "the escaped scheme is not shown");
	/* A newline that would forge a second log line. */
	ck_assert_int_ne(
	    resolve_shown("fake\nconduit: connected OK to tcp://evil:1", &s),
	    CONDUIT_OK);
	ck_printable(&s);
	ck_assert(shows(&s, "fake\\x0aconduit"));
	/* In a host, a path and an option value, too. */
	const char *uris[] = {"tcp://ho\x1bst:1", "unix:///tmp/a\rb",
	                      "tcp://h:1?nodelay=\x07", "https://h/\x1b[2J",
	                      "tcp://h:1?connect-to=\x1b:2"};
	for (size_t i = 0; i < sizeof(uris) / sizeof(uris[0]); i++) {
		resolve_shown(uris[i], &s);
		ck_printable(&s);
	}
}
END_TEST

START_TEST(bytes_not_utf8_are_escaped)
{
	struct shown s;
	ck_assert_int_ne(resolve_shown("e\x80y://x", &s), CONDUIT_OK);
	ck_printable(&s);
	ck_assert(shows(&s, "e\\x80y"));
	/* A C1 control written as UTF-8 (U+009B, a terminal's CSI). */
	ck_assert_int_ne(resolve_shown("e\xc2\x9by://x", &s), CONDUIT_OK);
	ck_printable(&s);
	ck_assert(shows(&s, "e\\xc2\\x9by"));
}
END_TEST

/* The service-URI parser and the redactor once split a URI differently:
 * the password ran to the last '@', while the redactor's query began at
 * the first '?', so the transport URI made from the rest carried a
 * secret the redactor of that new text could not see. */
START_TEST(secrets_of_the_given_uri_stay_hidden_in_what_it_made)
{
	struct shown s;
	ck_assert_int_ne(resolve_shown("https://u:x?@h:1token=SECRET", &s),
	                 CONDUIT_OK);
	ck_assert_msg(!shows(&s, "SECRET"), "the token is shown");
	ck_assert(shows(&s, "invalid port"));
	/* One that resolves: its events and steps hide the password. */
	ck_status(resolve_shown("https://u:pass?word@h:1/#x", &s), CONDUIT_OK);
	ck_assert_msg(!shows(&s, "pass?word"), "the password is shown");
}
END_TEST

START_TEST(printable_utf8_is_kept)
{
	struct shown s;
	ck_assert_int_ne(resolve_shown("caf\xc3\xa9://x", &s), CONDUIT_OK);
	ck_assert(shows(&s, "caf\xc3\xa9"));
	ck_assert(!shows(&s, "\\xc3"));
}
END_TEST

START_TEST(fragment_secrets_are_hidden)
{
	struct shown s;
	const char *uris[] = {
	    "https://app.example:99999/cb#access_token=SECRET",
	    "https://app.example/cb#state=1&access_token=SECRET&x=2",
	    "tcp://h:1?a=1#token=SECRET",
	    "https://app.example:1/cb?x#access_token=SECRET",
	    "nosuch://app.example/#access_token=SECRET",
	};
	for (size_t i = 0; i < sizeof(uris) / sizeof(uris[0]); i++) {
		resolve_shown(uris[i], &s);
		ck_assert_msg(!shows(&s, "SECRET"), "%s: the token is shown",
		              uris[i]);
		ck_printable(&s);
	}
	/* A resolution that succeeds shows its steps without the token. */
	ck_status(
	    resolve_shown("https://app.example/cb#access_token=SECRET", &s),
	    CONDUIT_OK);
	ck_assert(!shows(&s, "SECRET"));
}
END_TEST

/* Load text as rules; the status, with the message in msg. */
static int load(const char *text, char *msg, size_t len)
{
	conduit_ctx *ctx = fk_new_ctx();
	ck_status(conduit_ctx_add_rules(
	              ctx, "map kept.test tcp://127.0.0.1:1\n", "first"),
	          CONDUIT_OK);
	int rc = conduit_ctx_add_rules(ctx, text, "r.conf");
	snprintf(msg, len, "%s",
	         rc == CONDUIT_OK ? "" : conduit_ctx_error(ctx));
	/* A refused file leaves the rules the context had. */
	conduit_endpoint *ep = NULL;
	ck_status(conduit_resolve(&ep, ctx, "tcp://kept.test:9"), CONDUIT_OK);
	ck_assert_str_eq(conduit_endpoint_uri(ep), "tcp://127.0.0.1:1");
	conduit_endpoint_free(ep);
	conduit_ctx_free(ctx);
	return rc;
}

START_TEST(rule_targets_checked_at_load)
{
	static const struct {
		const char *text, *want;
	} bad[] = {
	    {"map bad.test tcp://127.0.0.1:1?nodelay=7\n",
	     "r.conf:1:14: bad target: "},
	    {"# a service scheme is not an endpoint\n"
	     "map ok.test unix:///run/ok.sock\n"
	     "map web.test https://example.org/\n",
	     "r.conf:3:14: bad target: "},
	    {"map *.xen tcp://{label}\n",
	     "r.conf:1:11: bad target (for host a.xen, scheme https, port "
	     "443): tcp://a: port required"},
	    {"map x.test tcp://h:1?keepalive=0\n", "r.conf:1:12: bad target"},
	    {"map y.test unix:///p?mode=99999\n", "r.conf:1:12: bad target"},
	};
	char msg[512];
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_status(load(bad[i].text, msg, sizeof(msg)),
		          CONDUIT_ERR_RULES);
		ck_assert_msg(strncmp(msg, bad[i].want, strlen(bad[i].want)) ==
		                  0,
		              "rules %zu: got \"%s\", want \"%s...\"", i, msg,
		              bad[i].want);
	}
	/* Targets that make endpoints, with placeholders, still load. */
	ck_status(load("map *.xen vchan://{label}/{scheme}\n"
	               "map *.svc.example unix:///run/{prefix}.sock\n"
	               "map db.internal tcp://{host}:{port}\n"
	               "map s.test tls+tcp://[::1]:8443?servername={host}\n",
	               msg, sizeof(msg)),
	          CONDUIT_OK);
}
END_TEST

/* Numeric host forms that the URI grammar refuses are refused as a
 * connect-to value and as a rules file's destination too: the system
 * resolver would read 2130706433 or 0x7f.1 as 127.0.0.1. */
START_TEST(one_host_grammar_for_connect_to)
{
	static const char *const forms[] = {"2130706433", "0x7f.1", "127.1",
	                                    "0x7f000001", "017700000001"};
	char uri[128], msg[512];
	for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
		/* The URI grammar's own verdict on the host. */
		snprintf(uri, sizeof(uri), "tcp://%s:80", forms[i]);
		conduit_endpoint *ep = NULL;
		ck_assert_int_ne(
		    conduit_endpoint_parse(&ep, uri, msg, sizeof(msg)),
		    CONDUIT_OK);
		/* As a connect-to option. */
		snprintf(uri, sizeof(uri), "tcp://h.test:1?connect-to=%s:80",
		         forms[i]);
		ck_assert_msg(
		    conduit_endpoint_parse(&ep, uri, msg, sizeof(msg)) ==
		        CONDUIT_ERR_OPTION,
		    "%s: accepted", uri);
		ck_assert_msg(strstr(msg, "IPv4") != NULL, "%s: %s", uri, msg);
		/* As a rules file's destination. */
		char rules[128];
		snprintf(rules, sizeof(rules), "connect-to h.test:1 %s:80\n",
		         forms[i]);
		ck_status(load(rules, msg, sizeof(msg)), CONDUIT_ERR_RULES);
		ck_assert_msg(strstr(msg, "r.conf:1:21: bad IPv4 address") ==
		                  msg,
		              "%s: %s", rules, msg);
	}
	/* The forms the grammar accepts stay accepted. */
	char msg2[256];
	conduit_endpoint *ep = NULL;
	ck_status(conduit_endpoint_parse(
	              &ep, "tcp://h.test:1?connect-to=127.0.0.1:80", msg2,
	              sizeof(msg2)),
	          CONDUIT_OK);
	conduit_endpoint_free(ep);
	ck_status(load("connect-to h.test:1 10.1.2.3:80\n"
	               "connect-to g.test:1 x1.example:\n",
	               msg2, sizeof(msg2)),
	          CONDUIT_OK);
}
END_TEST

int main(void)
{
	const struct cd_test tests[] = {
	    CD_TEST(control_bytes_are_escaped, 0),
	    CD_TEST(bytes_not_utf8_are_escaped, 0),
	    CD_TEST(printable_utf8_is_kept, 0),
	    CD_TEST(secrets_of_the_given_uri_stay_hidden_in_what_it_made, 0),
	    CD_TEST(fragment_secrets_are_hidden, 0),
	    CD_TEST(rule_targets_checked_at_load, 0),
	    CD_TEST(one_host_grammar_for_connect_to, 0),
	};
	return cd_run(
	    cd_suite("hostile", tests, sizeof(tests) / sizeof(tests[0])));
}
