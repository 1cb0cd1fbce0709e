/*
 * test_resolve.c - the resolver: service table, map and connect-to rules
 * (label boundaries, specificity, captures, TLS kept but never doubled,
 * the logical name kept for TLS, the URI's TLS options kept over a map
 * rule), explanations, secrets kept out of messages, events and steps,
 * rules that fail to load leaving the old ones in place, a name whose
 * first address is silent losing the connect race, connect-to values the
 * lookup refuses, and what a context's lookup function may return
 * (duplicates removed, odd statuses a resolution error).
 *
 * Names are looked up through a context lookup function (a static table)
 * so that no test depends on, or sends anything to, a name server.
 */
#include "flowkit.h"
#include "harness.h"

#include <conduit/conduit.h>

#include "core.h" /* cd_lookup(), for connect-to values the grammar never makes */

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char common_rules[] =
    "# rules shared by the table below\n"
    "map db.internal unix:///run/db.sock\n"
    "map *.xen unix-abstract://xen-{label}-{scheme}\n"
    "map *.svc.example unix:///run/{prefix}.sock\n"
    "map *.example tcp://gateway.example:{port}\n"
    "map exact.svc.example tcp://10.0.0.1:9000\n"
    "map secure.example tls+tcp://10.1.1.1:8443\n"
    "map *.bad vchan://{prefix}/x\n"
    "connect-to example.com:443 127.0.0.1:8443\n"
    "connect-to *.cdn.test:* 127.0.0.2:\n"
    "connect-to *:8080 [::1]:9090\n"
    "service myproto 7000\n"
    "service mysecure 7001 tls\n"
    "map pinned-alpn.example tls+tcp://10.1.1.2:8443?alpn=h2\n";

/* Every name resolves to 127.0.0.1, except nx.test, which does not. */
static int table_lookup(void *arg, const char *host, struct conduit_addr *a,
                        size_t cap, size_t *n)
{
	(void)arg;
	if (strcmp(host, "nx.test") == 0 || cap == 0)
		return CONDUIT_ERR_RESOLVE;
	a[0] = fk_addr("127.0.0.1");
	*n = 1;
	return CONDUIT_OK;
}

static conduit_ctx *rules_ctx(void)
{
	conduit_ctx *ctx = fk_new_ctx();
	conduit_ctx_set_lookup(ctx, table_lookup, NULL);
	ck_assert_msg(conduit_ctx_add_rules(ctx, common_rules, "common") ==
	                  CONDUIT_OK,
	              "%s", conduit_ctx_error(ctx));
	return ctx;
}

struct rcase {
	const char *uri;
	int status;
	const char *want; /* the endpoint URI, or a message fragment */
};

static const struct rcase cases[] = {
    /* static host rules, whole labels only */
    {"tcp://db.internal:5432", CONDUIT_OK, "unix:///run/db.sock"},
    {"tcp://DB.Internal:5432", CONDUIT_OK, "unix:///run/db.sock"},
    {"http://db.internal/x", CONDUIT_OK, "unix:///run/db.sock"},
    {"https://db.internal/x", CONDUIT_OK,
     "tls+unix:///run/db.sock?servername=db.internal"},
    {"tcp://db.internal:5432?nodelay=0", CONDUIT_OK, "unix:///run/db.sock"},
    {"tcp://foodb.internal:1", CONDUIT_OK, "tcp://foodb.internal:1"},
    {"tcp://x.db.internal:1", CONDUIT_OK, "tcp://x.db.internal:1"},
    /* suffix rules and captures */
    {"https://logger.xen/", CONDUIT_OK,
     "tls+unix-abstract://xen-logger-https?servername=logger.xen"},
    {"http://logger.xen", CONDUIT_OK, "unix-abstract://xen-logger-http"},
    {"tcp://a.b.xen:5", CONDUIT_OK, "unix-abstract://xen-a-tcp"},
    {"tcp://xen:5", CONDUIT_OK, "tcp://xen:5"},
    {"tcp://fooxen:5", CONDUIT_OK, "tcp://fooxen:5"},
    {"tcp://api.svc.example:80", CONDUIT_OK, "unix:///run/api.sock"},
    {"tcp://a.b.svc.example:80", CONDUIT_OK, "unix:///run/a.b.sock"},
    {"tcp://exact.svc.example:1", CONDUIT_OK, "tcp://10.0.0.1:9000"},
    {"https://exact.svc.example/", CONDUIT_OK,
     "tls+tcp://10.0.0.1:9000?servername=exact.svc.example"},
    {"tcp://www.example:8081", CONDUIT_OK, "tcp://gateway.example:8081"},
    {"https://www.example", CONDUIT_OK,
     "tls+tcp://gateway.example:443?servername=www.example"},
    {"tcp://svc.example:80", CONDUIT_OK, "tcp://gateway.example:80"},
    /* TLS is never doubled */
    {"https://secure.example", CONDUIT_OK,
     "tls+tcp://10.1.1.1:8443?servername=secure.example"},
    {"tcp://secure.example:1", CONDUIT_OK,
     "tls+tcp://10.1.1.1:8443?servername=secure.example"},
    {"tls+tcp://secure.example:1", CONDUIT_OK,
     "tls+tcp://10.1.1.1:8443?servername=secure.example"},
    /* connect-to: only the destination moves */
    {"https://example.com", CONDUIT_OK,
     "tls+tcp://example.com:443?connect-to=127.0.0.1:8443"},
    {"https://example.com:444", CONDUIT_OK, "tls+tcp://example.com:444"},
    {"tcp://example.com:443", CONDUIT_OK,
     "tcp://example.com:443?connect-to=127.0.0.1:8443"},
    {"tcp://example.com:443?connect-to=10.0.0.9:1", CONDUIT_OK,
     "tcp://example.com:443?connect-to=10.0.0.9:1"},
    {"tcp://img.cdn.test:80", CONDUIT_OK,
     "tcp://img.cdn.test:80?connect-to=127.0.0.2:80"},
    {"https://img.cdn.test", CONDUIT_OK,
     "tls+tcp://img.cdn.test:443?connect-to=127.0.0.2:443"},
    {"tcp://cdn.test:80", CONDUIT_OK, "tcp://cdn.test:80"},
    {"tcp://anything.test:8080", CONDUIT_OK,
     "tcp://anything.test:8080?connect-to=%5B::1%5D:9090"},
    {"tcp://img.cdn.test:8080", CONDUIT_OK,
     "tcp://img.cdn.test:8080?connect-to=127.0.0.2:8080"},
    /* services */
    {"myproto://h.test", CONDUIT_OK, "tcp://h.test:7000"},
    {"mysecure://h.test", CONDUIT_OK, "tls+tcp://h.test:7001"},
    {"tls://h.test:443", CONDUIT_OK, "tls+tcp://h.test:443"},
    {"HTTPS://h.test", CONDUIT_OK, "tls+tcp://h.test:443"},
    {"https://h.test:", CONDUIT_OK, "tls+tcp://h.test:443"},
    {"https://user:secret@h.test/p?q=1#f", CONDUIT_OK, "tls+tcp://h.test:443"},
    /* a '?' or '#' typed in a password is still user info: the host is
     * what follows the last '@', never the password's first half */
    {"https://user:se?cret@h.test/p", CONDUIT_OK, "tls+tcp://h.test:443"},
    {"https://user:se#cret@h.test:8443", CONDUIT_OK, "tls+tcp://h.test:8443"},
    {"imaps://mail.test", CONDUIT_OK, "tls+tcp://mail.test:993"},
    {"imap://mail.test", CONDUIT_OK, "tcp://mail.test:143"},
    {"pop3s://mail.test", CONDUIT_OK, "tls+tcp://mail.test:995"},
    {"smtp://mail.test", CONDUIT_OK, "tcp://mail.test:25"},
    {"submissions://mail.test", CONDUIT_OK, "tls+tcp://mail.test:465"},
    {"xmpp-client://chat.test", CONDUIT_OK, "tcp://chat.test:5222"},
    {"xmpps-client://chat.test", CONDUIT_OK, "tls+tcp://chat.test:5223"},
    {"ldap://dir.test", CONDUIT_OK, "tcp://dir.test:389"},
    {"ldaps://dir.test", CONDUIT_OK, "tls+tcp://dir.test:636"},
    {"ws://ws.test/chat", CONDUIT_OK, "tcp://ws.test:80"},
    {"wss://ws.test/chat", CONDUIT_OK, "tls+tcp://ws.test:443"},
    {"gopher://hole.test", CONDUIT_OK, "tcp://hole.test:70"},
    /* one trailing dot names the same host: the rules still apply,
     * and the server name TLS checks carries no dot */
    {"tcp://db.internal.:5432", CONDUIT_OK, "unix:///run/db.sock"},
    {"https://logger.xen./", CONDUIT_OK,
     "tls+unix-abstract://xen-logger-https?servername=logger.xen"},
    {"tcp://a.b.svc.example.:80", CONDUIT_OK, "unix:///run/a.b.sock"},
    {"https://www.example./", CONDUIT_OK,
     "tls+tcp://gateway.example:443?servername=www.example"},
    {"https://example.com./", CONDUIT_OK,
     "tls+tcp://example.com.:443?connect-to=127.0.0.1:8443"},
    /* a layer's options come on top of the transport's */
    {"tls+unix-abstract://n?alpn=h2&servername=a.test", CONDUIT_OK,
     "tls+unix-abstract://n?alpn=h2&servername=a.test"},
    {"tls+unix:///tmp/x.sock?mode=0600&servername=a.test&alpn=h2", CONDUIT_OK,
     "tls+unix:///tmp/x.sock?alpn=h2&mode=0600&servername=a.test"},
    {"tls+tcp://h.test:1?nodelay=1&keepalive=9&source=127.0.0.1&"
     "connect-to=127.0.0.1:2&alpn=h2&servername=a.test",
     CONDUIT_OK,
     "tls+tcp://h.test:1?alpn=h2&connect-to=127.0.0.1:2&keepalive=9&"
     "nodelay=1&servername=a.test&source=127.0.0.1"},
    /* A map rule keeps the TLS options the URI wrote (the TLS it asked
     * for stays); the transport's options are the rule's to set; where
     * the rule's target sets a TLS option too, the target's wins. */
    {"tls+tcp://db.internal:443?alpn=h2", CONDUIT_OK,
     "tls+unix:///run/db.sock?alpn=h2&servername=db.internal"},
    {"tls+tcp://db.internal:443?servername=other.test", CONDUIT_OK,
     "tls+unix:///run/db.sock?servername=other.test"},
    {"tls://db.internal:443?alpn=h2,http/1.1&nodelay=0&"
     "connect-to=10.0.0.1:1&keepalive=5&source=127.0.0.1",
     CONDUIT_OK,
     "tls+unix:///run/db.sock?alpn=h2,http/1.1&servername=db.internal"},
    {"tls+tcp://www.example:443?alpn=h2&connect-to=10.9.9.9:1", CONDUIT_OK,
     "tls+tcp://gateway.example:443?alpn=h2&servername=www.example"},
    {"tls+tcp://secure.example:1?alpn=h2", CONDUIT_OK,
     "tls+tcp://10.1.1.1:8443?alpn=h2&servername=secure.example"},
    {"tls+tcp://api.svc.example:1?servername=log.test&alpn=syslog", CONDUIT_OK,
     "tls+unix:///run/api.sock?alpn=syslog&servername=log.test"},
    {"tls+tcp://pinned-alpn.example:1?alpn=http/1.1&servername=s.test",
     CONDUIT_OK, "tls+tcp://10.1.1.2:8443?alpn=h2&servername=s.test"},
    {"tcp://pinned-alpn.example:1?nodelay=0", CONDUIT_OK,
     "tls+tcp://10.1.1.2:8443?alpn=h2&servername=pinned-alpn.example"},
    /* a service URI's query is the application's, never TLS options */
    {"https://db.internal/?servername=x.test&alpn=h2", CONDUIT_OK,
     "tls+unix:///run/db.sock?servername=db.internal"},
    /* literals and paths see no host rules */
    {"https://127.0.0.1/", CONDUIT_OK, "tls+tcp://127.0.0.1:443"},
    {"https://[::1]:8443/x", CONDUIT_OK, "tls+tcp://[::1]:8443"},
    {"unix:///tmp/x.sock", CONDUIT_OK, "unix:///tmp/x.sock"},
    /* errors */
    {"nosuchproto://h.test", CONDUIT_ERR_SCHEME,
     "unknown scheme \"nosuchproto\""},
    {"https://:443/", CONDUIT_ERR_HOST, "https://:443/"},
    {"https:/h.test", CONDUIT_ERR_URI, "needs //HOST"},
    {"https://h.test:99999/", CONDUIT_ERR_PORT, "99999"},
    {"https://h test/", CONDUIT_ERR_URI, "invalid character"},
    {"tcp://x.y.bad:1", CONDUIT_ERR_HOST, "the rule at common:8 gave"},
    {"tcp://nx.test:1", CONDUIT_ERR_RESOLVE, "nx.test"},
    {"https://nx.test/", CONDUIT_ERR_RESOLVE, "nx.test"},
};

START_TEST(rule_table)
{
	conduit_ctx *ctx = rules_ctx();
	const struct rcase *c = &cases[_i];
	conduit_endpoint *ep = NULL;
	int rc = conduit_resolve(&ep, ctx, c->uri);
	ck_assert_msg(rc == c->status, "%s: got %s (%s), want %s", c->uri,
	              conduit_status_name(rc), conduit_ctx_error(ctx),
	              conduit_status_name(c->status));
	if (rc == CONDUIT_OK) {
		ck_assert_msg(strcmp(conduit_endpoint_uri(ep), c->want) == 0,
		              "%s: resolved to %s, want %s", c->uri,
		              conduit_endpoint_uri(ep), c->want);
		/* What a rule produced is an ordinary endpoint: it prints
		 * and parses back to itself. */
		conduit_endpoint *again = NULL;
		ck_assert_int_eq(conduit_endpoint_parse(
		                     &again, conduit_endpoint_uri(ep), NULL, 0),
		                 CONDUIT_OK);
		ck_assert(conduit_endpoint_equal(ep, again));
		conduit_endpoint_free(again);
	} else {
		ck_assert_ptr_null(ep);
		ck_assert_msg(strstr(conduit_ctx_error(ctx), c->want) != NULL,
		              "%s: message '%s' lacks '%s'", c->uri,
		              conduit_ctx_error(ctx), c->want);
	}
	ck_assert_msg(strstr(conduit_ctx_error(ctx), "secret") == NULL,
	              "a password leaked: %s", conduit_ctx_error(ctx));
	conduit_endpoint_free(ep);
	conduit_ctx_free(ctx);
}
END_TEST

/* The steps name the service, the rule and its place, what TLS does, the
 * addresses and the result; never a password. */
START_TEST(explain_steps)
{
	conduit_ctx *ctx = rules_ctx();
	conduit_endpoint *ep = NULL;
	conduit_explain *x = NULL;
	ck_assert_int_eq(conduit_resolve_explain(
	                     &ep, &x, ctx, "https://u:hunter2@logger.xen/"),
	                 CONDUIT_OK);
	static const char *const want[] = {
	    "uri: https://u:****@logger.xen/",
	    "service: https (built in): port 443, TLS",
	    "rule: map *.xen (common:3) sends logger.xen to "
	    "unix-abstract://xen-logger-https",
	    "tls: kept from https, over the rule's transport",
	    "tls: server name logger.xen",
	    "endpoint: tls+unix-abstract://xen-logger-https?servername="
	    "logger.xen",
	};
	size_t n = conduit_explain_count(x);
	ck_assert_uint_eq(n, sizeof(want) / sizeof(want[0]));
	for (size_t i = 0; i < n; i++) {
		ck_assert_str_eq(conduit_explain_step(x, i), want[i]);
		ck_assert(strstr(conduit_explain_step(x, i), "hunter2") ==
		          NULL);
	}
	ck_assert_ptr_null(conduit_explain_step(x, n));
	conduit_explain_free(x);
	conduit_endpoint_free(ep);

	/* connect-to and the lookup */
	ck_assert_int_eq(
	    conduit_resolve_explain(&ep, &x, ctx, "https://example.com/"),
	    CONDUIT_OK);
	bool saw_rule = false, saw_addr = false;
	for (size_t i = 0; i < conduit_explain_count(x); i++) {
		const char *s = conduit_explain_step(x, i);
		if (strstr(s, "rule: connect-to example.com:443 (") == s &&
		    strstr(s, "127.0.0.1:8443") && strstr(s, "common:9") &&
		    strstr(s, "the name stays example.com"))
			saw_rule = true;
		if (strcmp(s, "addresses: 127.0.0.1, port 8443") == 0)
			saw_addr = true;
	}
	ck_assert_msg(saw_rule && saw_addr, "connect-to steps missing");
	conduit_explain_free(x);
	conduit_endpoint_free(ep);

	/* A failure still explains how far it got. */
	ck_assert_int_eq(
	    conduit_resolve_explain(&ep, &x, ctx, "tcp://nx.test:1"),
	    CONDUIT_ERR_RESOLVE);
	ck_assert_ptr_null(ep);
	size_t last = conduit_explain_count(x) - 1;
	ck_assert_msg(strstr(conduit_explain_step(x, last), "error: ") ==
	                  conduit_explain_step(x, last),
	              "last step: %s", conduit_explain_step(x, last));
	conduit_explain_free(x);
	ck_assert_int_eq(conduit_resolve_explain(NULL, &x, ctx, "tcp://h:1"),
	                 CONDUIT_ERR_INVALID);
	conduit_explain_free(NULL);
	conduit_ctx_free(ctx);
}
END_TEST

/* A bad rules text is refused whole, and the rules in force stay. */
START_TEST(bad_rules_keep_the_old_ones)
{
	conduit_ctx *ctx = rules_ctx();
	ck_assert_int_eq(
	    conduit_ctx_add_rules(ctx,
	                          "map new.test unix:///n.sock\n"
	                          "map db.internal unix:///x.sock\n",
	                          "later"),
	    CONDUIT_ERR_RULES);
	const char *msg = conduit_ctx_error(ctx);
	ck_assert_msg(strstr(msg, "later:2:") == msg && strstr(msg, "common:2"),
	              "message: %s", msg);
	conduit_endpoint *ep = NULL;
	ck_assert_int_eq(conduit_resolve(&ep, ctx, "tcp://db.internal:1"),
	                 CONDUIT_OK);
	ck_assert_str_eq(conduit_endpoint_uri(ep), "unix:///run/db.sock");
	conduit_endpoint_free(ep);
	/* The good first line of the refused text did not sneak in. */
	ck_assert_int_eq(conduit_resolve(&ep, ctx, "tcp://new.test:1"),
	                 CONDUIT_OK);
	ck_assert_str_eq(conduit_endpoint_uri(ep), "tcp://new.test:1");
	conduit_endpoint_free(ep);
	conduit_ctx_free(ctx);
}
END_TEST

/* Rules from a file, and the errors of files that cannot be read. */
START_TEST(rules_from_a_file)
{
	char dir[256], path[512];
	cd_tmpdir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/conduit.rules", dir);
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs("map app.test unix:///run/app.sock  # the app\n", f);
	fputs("service  app 9000 tls\n", f);
	fclose(f);
	conduit_ctx *ctx = fk_new_ctx();
	conduit_ctx_set_lookup(ctx, table_lookup, NULL);
	ck_assert_msg(conduit_ctx_load_rules(ctx, path) == CONDUIT_OK, "%s",
	              conduit_ctx_error(ctx));
	conduit_endpoint *ep = NULL;
	ck_assert_int_eq(conduit_resolve(&ep, ctx, "app://app.test"),
	                 CONDUIT_OK);
	ck_assert_str_eq(conduit_endpoint_uri(ep),
	                 "tls+unix:///run/app.sock?servername=app.test");
	conduit_endpoint_free(ep);

	/* A second file with an error: file:line:column, old rules kept. */
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs("\n\nmap  *.a*.test unix:///x\n", f);
	fclose(f);
	ck_assert_int_eq(conduit_ctx_load_rules(ctx, path), CONDUIT_ERR_RULES);
	char want[600];
	snprintf(want, sizeof(want), "%s:3:", path);
	ck_assert_msg(strstr(conduit_ctx_error(ctx), want) ==
	                  conduit_ctx_error(ctx),
	              "message: %s", conduit_ctx_error(ctx));
	ck_assert_int_eq(conduit_resolve(&ep, ctx, "app://app.test"),
	                 CONDUIT_OK);
	conduit_endpoint_free(ep);

	snprintf(path, sizeof(path), "%s/missing.rules", dir);
	ck_assert_int_eq(conduit_ctx_load_rules(ctx, path),
	                 CONDUIT_ERR_NOT_FOUND);
	ck_assert_ptr_nonnull(strstr(conduit_ctx_error(ctx), path));
	ck_assert_int_eq(conduit_ctx_load_rules(ctx, dir), CONDUIT_ERR_RULES);
	ck_assert_int_eq(conduit_ctx_add_service(ctx, "bad name", 1, 0),
	                 CONDUIT_ERR_INVALID);
	ck_assert_int_eq(conduit_ctx_add_service(ctx, "tcp", 1, 0),
	                 CONDUIT_ERR_RULES);
	ck_assert_int_eq(conduit_ctx_add_service(ctx, "newsvc", 4242, 1),
	                 CONDUIT_OK);
	ck_assert_int_eq(conduit_resolve(&ep, ctx, "newsvc://h.test"),
	                 CONDUIT_OK);
	ck_assert_str_eq(conduit_endpoint_uri(ep), "tls+tcp://h.test:4242");
	conduit_endpoint_free(ep);
	conduit_ctx_free(ctx);
	cd_rmtree(dir);
}
END_TEST

/* Options that name files or weaken security need the context's consent;
 * rules files are trusted. */
START_TEST(untrusted_uri_options)
{
	conduit_ctx *ctx = rules_ctx();
	conduit_endpoint *ep = NULL;
	static const char ca[] = "tls+tcp://h.test:1?ca=/etc/ssl/ca.pem";
	static const char weak[] = "tls+tcp://h.test:1?insecure-no-verify=1";
	ck_assert_int_eq(conduit_resolve(&ep, ctx, ca), CONDUIT_ERR_OPTION);
	ck_assert_ptr_nonnull(
	    strstr(conduit_ctx_error(ctx), "ca names a file"));
	ck_assert_int_eq(conduit_resolve(&ep, ctx, weak), CONDUIT_ERR_OPTION);
	ck_assert_ptr_nonnull(
	    strstr(conduit_ctx_error(ctx), "weakens security"));
	/* Harmless options need nothing. */
	ck_assert_int_eq(
	    conduit_resolve(&ep, ctx, "tls+tcp://h.test:1?alpn=h2,http/1.1"),
	    CONDUIT_OK);
	conduit_endpoint_free(ep);

	conduit_ctx_allow_uri_options(ctx, CONDUIT_URI_FILES);
	ck_assert_int_eq(conduit_resolve(&ep, ctx, ca), CONDUIT_OK);
	ck_assert_str_eq(conduit_endpoint_option(ep, "ca"), "/etc/ssl/ca.pem");
	conduit_endpoint_free(ep);
	ck_assert_int_eq(conduit_resolve(&ep, ctx, weak), CONDUIT_ERR_OPTION);
	conduit_ctx_allow_uri_options(ctx,
	                              CONDUIT_URI_FILES | CONDUIT_URI_INSECURE);
	ck_assert_int_eq(conduit_resolve(&ep, ctx, weak), CONDUIT_OK);
	conduit_endpoint_free(ep);

	/* A rule may name files: it is configuration, not input. */
	conduit_ctx_allow_uri_options(ctx, 0);
	ck_assert_int_eq(
	    conduit_ctx_add_rules(ctx,
	                          "map pinned.test "
	                          "tls+tcp://10.0.0.7:443?ca=/p.pem\n",
	                          "trusted"),
	    CONDUIT_OK);
	ck_assert_int_eq(conduit_resolve(&ep, ctx, "https://pinned.test/"),
	                 CONDUIT_OK);
	ck_assert_str_eq(conduit_endpoint_option(ep, "ca"), "/p.pem");
	conduit_endpoint_free(ep);
	conduit_ctx_free(ctx);
}
END_TEST

/* Two addresses for one name: the first never answers, the second does.
 * The race connects in about 250 ms; trying in turn would wait out the
 * 10 s connect timeout. */
static struct conduit_addr race_addrs[2];

static int race_lookup(void *arg, const char *host, struct conduit_addr *a,
                       size_t cap, size_t *n)
{
	(void)arg;
	if (strcmp(host, "race.test") != 0 || cap < 2)
		return CONDUIT_ERR_RESOLVE;
	a[0] = race_addrs[0];
	a[1] = race_addrs[1];
	*n = 2;
	return CONDUIT_OK;
}

START_TEST(name_with_a_silent_first_address)
{
	conduit_ctx *ctx = fk_new_ctx();
	conduit_listener *l = fk_listen(ctx, "tcp://127.0.0.1:0");
	int port = fk_listener_port(l);
	struct fk_silent s;
	fk_silent_listen(&s, "127.0.0.2", port);
	race_addrs[0] = fk_addr("127.0.0.2");
	race_addrs[1] = fk_addr("127.0.0.1");
	conduit_ctx_set_lookup(ctx, race_lookup, NULL);
	conduit_ctx_set_connect_timeout(ctx, 10000);
	char uri[64];
	snprintf(uri, sizeof(uri), "tcp://race.test:%d", port);
	conduit_flow *f = NULL, *srv = NULL;
	ck_assert_msg(conduit_connect_wait(&f, ctx, uri, 8000) == CONDUIT_OK,
	              "%s", conduit_ctx_error(ctx));
	ck_assert_int_eq(conduit_accept_wait(&srv, l, 5000), CONDUIT_OK);
	fk_exchange(f, srv);
	fk_free_all(f, srv, l, ctx);
	fk_silent_free(&s);
}
END_TEST

/*
 * Resolution of mutated URIs against the common rules, under the static
 * lookup.  Deterministic (a fixed xorshift seed) and bounded.  Checked
 * only: the status is one resolution can give; an endpoint prints as a
 * URI that parses back to an equal endpoint; and the password put in the
 * user info shows in no message and no step, not even its first bytes.
 * Leaks and memory errors are the sanitizer build's to find.
 */
static uint32_t fz_state;

static uint32_t fz_next(void)
{
	uint32_t x = fz_state;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return fz_state = x;
}

static uint32_t fz_pick(uint32_t n)
{
	return fz_next() % n;
}

/* Append s to buf (of len bytes) if it fits. */
static void fz_cat(char *buf, size_t len, const char *s)
{
	size_t at = strlen(buf), n = strlen(s);
	if (at + n < len)
		memcpy(buf + at, s, n + 1);
}

/* A password that starts with a marker nothing else in the URI holds,
 * with bytes that end an authority (?, #) or look like one (:, @). */
static void fz_password(char *pw, size_t len)
{
	static const char chars[] = "Ab3?#:@!$&'()*+,;=~-._%";
	snprintf(pw, len, "Zq7w");
	size_t n = 1 + fz_pick(10);
	for (size_t i = 0; i < n && strlen(pw) + 1 < len; i++) {
		char c[2] = {chars[fz_pick(sizeof(chars) - 1)], '\0'};
		fz_cat(pw, len, c);
	}
}

static bool fz_status_ok(int rc)
{
	switch (rc) {
	case CONDUIT_OK:
	case CONDUIT_ERR_NOMEM:
	case CONDUIT_ERR_URI:
	case CONDUIT_ERR_SCHEME:
	case CONDUIT_ERR_HOST:
	case CONDUIT_ERR_PORT:
	case CONDUIT_ERR_OPTION:
	case CONDUIT_ERR_PATH_TOO_LONG:
	case CONDUIT_ERR_RESOLVE:
		return true;
	default:
		return false;
	}
}

START_TEST(fuzz_mutated_uris)
{
	static const char *const schemes[] = {
	    "https",         "http",    "tls",      "tcp",
	    "tls+tcp",       "myproto", "mysecure", "imaps",
	    "wss",           "TLS+TCP", "unix",     "tls+unix",
	    "unix-abstract", "gopher",  "nosuch",   "tls+tls+tcp",
	};
	static const char *const hosts[] = {
	    "db.internal",
	    "logger.xen",
	    "a.b.xen",
	    "api.svc.example",
	    "www.example",
	    "secure.example",
	    "x.bad",
	    "example.com",
	    "img.cdn.test",
	    "h.test",
	    "nx.test",
	    "127.0.0.1",
	    "[::1]",
	    "[fe80::1%25lo]",
	    "DB.Internal.",
	    "xen",
	    "",
	    "-bad.test",
	    "1.2.3",
	    "a..b",
	    "[::1",
	    "h.test.",
	};
	static const char *const ports[] = {
	    "",       ":",     ":443",
	    ":8080",  ":0",    ":65535",
	    ":65536", ":0080", ":99999999999999999999",
	    ":-1",    ":x",    "::80",
	};
	static const char *const tails[] = {
	    "",
	    "/",
	    "/p?q=1#f",
	    "?nodelay=0",
	    "?connect-to=127.0.0.1:1",
	    "?servername=s.test",
	    "?ca=/etc/ca.pem",
	    "?key=/k&alpn=h2",
	    "#frag",
	    "/a/b/c",
	    "?token=zz",
	    "?connect-to=%5B::1%5D:9",
	};
	static const char junk[] = "@:/?#[]%.&=+ aZ09{}\x01\x7f";
	conduit_ctx *ctx = rules_ctx();
	fz_state = 0x9e3779b9u;
	for (int iter = 0; iter < 4000; iter++) {
		char uri[1024] = "", pw[32] = "", host[600] = "";
		fz_cat(uri, sizeof(uri), schemes[fz_pick(16)]);
		fz_cat(uri, sizeof(uri), fz_pick(8) ? "://" : ":");
		bool with_pw = fz_pick(2) == 0 && strstr(uri, "://") != NULL;
		if (with_pw) {
			fz_password(pw, sizeof(pw));
			fz_cat(uri, sizeof(uri), "u:");
			fz_cat(uri, sizeof(uri), pw);
			fz_cat(uri, sizeof(uri), "@");
		}
		if (fz_pick(10) == 0) {
			/* a long host: labels of up to 70 bytes */
			size_t labels = 1 + fz_pick(8);
			for (size_t l = 0; l < labels; l++) {
				size_t n = 1 + fz_pick(70);
				for (size_t i = 0; i < n; i++)
					fz_cat(host, sizeof(host), "a");
				fz_cat(host, sizeof(host),
				       l + 1 < labels ? "." : ".xen");
			}
		} else {
			fz_cat(host, sizeof(host), hosts[fz_pick(22)]);
		}
		fz_cat(uri, sizeof(uri), host);
		fz_cat(uri, sizeof(uri), ports[fz_pick(12)]);
		fz_cat(uri, sizeof(uri), tails[fz_pick(12)]);
		/* A few stray bytes after the user info, which stays whole. */
		size_t keep = 0;
		if (with_pw)
			keep = (size_t)(strstr(uri, "@") - uri) + 1;
		for (uint32_t k = fz_pick(3) ? 0 : 1 + fz_pick(3); k > 0; k--) {
			size_t len = strlen(uri);
			if (len + 2 >= sizeof(uri) || len <= keep)
				break;
			size_t at = keep + fz_pick((uint32_t)(len - keep + 1));
			memmove(uri + at + 1, uri + at, len - at + 1);
			uri[at] = junk[fz_pick(sizeof(junk) - 1)];
		}

		conduit_endpoint *ep = NULL;
		conduit_explain *x = NULL;
		int rc = conduit_resolve_explain(&ep, &x, ctx, uri);
		ck_assert_msg(fz_status_ok(rc), "%s: status %s", uri,
		              conduit_status_name(rc));
		if (rc == CONDUIT_OK) {
			conduit_endpoint *again = NULL;
			const char *printed = conduit_endpoint_uri(ep);
			char msg[512] = "";
			int prc = conduit_endpoint_parse(&again, printed, msg,
			                                 sizeof(msg));
			ck_assert_msg(prc == CONDUIT_OK,
			              "%s: %s does not parse: %s", uri, printed,
			              msg);
			ck_assert_msg(conduit_endpoint_equal(ep, again),
			              "%s: %s parses to another endpoint", uri,
			              conduit_endpoint_uri(ep));
			conduit_endpoint_free(again);
		} else {
			ck_assert_ptr_null(ep);
		}
		if (with_pw) {
			const char *m = conduit_ctx_error(ctx);
			ck_assert_msg(
			    strstr(m, pw) == NULL && strstr(m, "Zq7w") == NULL,
			    "%s: message shows the password: %s", uri, m);
			for (size_t i = 0; i < conduit_explain_count(x); i++) {
				const char *st = conduit_explain_step(x, i);
				ck_assert_msg(strstr(st, pw) == NULL &&
				                  strstr(st, "Zq7w") == NULL,
				              "%s: step shows the password: %s",
				              uri, st);
			}
		}
		conduit_explain_free(x);
		conduit_endpoint_free(ep);
	}
	conduit_ctx_free(ctx);
}
END_TEST

/* The "tls:" step says which name the certificate is checked against,
 * and, where the URI gives none TLS could check (a vchan host is a
 * domain; a Unix address has no host), that servername=NAME is needed. */
START_TEST(tls_server_name_step)
{
	static const struct {
		const char *uri;
		const char *want; /* the whole "tls:" step */
	} rows[] = {
	    {"tls+tcp://h.test:1", "tls: server name h.test (the host as "
	                           "written)"},
	    {"tls+tcp://h.test:1?servername=s.test", "tls: server name s.test"},
	    {"tls+tcp://127.0.0.1:1",
	     "tls: no server name (not a DNS name); the certificate must "
	     "carry the address"},
	    {"tls+tcp://[::1]:1",
	     "tls: no server name (not a DNS name); the certificate must "
	     "carry the address"},
	    {"tls+vchan://logger/https",
	     "tls: no server name: vchan host \"logger\" names a domain, "
	     "which TLS cannot check; servername=NAME is needed (the name "
	     "in the server's certificate)"},
	    {"tls+vchan://7/https",
	     "tls: no server name: vchan host \"7\" names a domain, which "
	     "TLS cannot check; servername=NAME is needed (the name in the "
	     "server's certificate)"},
	    {"tls+vchan://logger/https?servername=logger.example",
	     "tls: server name logger.example"},
	    {"tls+unix:///run/x.sock",
	     "tls: no server name: a unix address has no host; "
	     "servername=NAME is needed (the name in the server's "
	     "certificate)"},
	};
	conduit_ctx *ctx = rules_ctx();
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		conduit_endpoint *ep = NULL;
		conduit_explain *x = NULL;
		int rc = conduit_resolve_explain(&ep, &x, ctx, rows[i].uri);
		ck_assert_msg(rc == CONDUIT_OK, "%s: %s", rows[i].uri,
		              conduit_ctx_error(ctx));
		const char *got = NULL;
		for (size_t k = 0; k < conduit_explain_count(x); k++) {
			const char *st = conduit_explain_step(x, k);
			if (strncmp(st, "tls: ", 5) == 0)
				got = st;
		}
		ck_assert_msg(got != NULL, "%s: no tls step", rows[i].uri);
		ck_assert_msg(strcmp(got, rows[i].want) == 0,
		              "%s: step '%s', want '%s'", rows[i].uri, got,
		              rows[i].want);
		conduit_explain_free(x);
		conduit_endpoint_free(ep);
	}
	conduit_ctx_free(ctx);
}
END_TEST

/* ------------------------------------------------------------------ */
/* connect-to values reaching the lookup                               */

/*
 * The grammar refuses a connect-to value that is not HOST:PORT, so the
 * resolver never makes one; the lookup checks it again rather than do
 * arithmetic on a ':' it did not find.  The bad values are put on an
 * endpoint by hand, as only code inside conduit could.
 */
START_TEST(connect_to_value_checked)
{
	conduit_ctx *ctx = rules_ctx();
	conduit_endpoint *ep = NULL;
	ck_status(
	    conduit_resolve(&ep, ctx, "tcp://h.test:80?connect-to=nocolon"),
	    CONDUIT_ERR_OPTION);
	ck_assert_ptr_null(ep);
	ck_assert_msg(strstr(conduit_ctx_error(ctx), "connect-to") != NULL,
	              "message: %s", conduit_ctx_error(ctx));

	static const char *const bad[] = {
	    "nocolon",
	    ":80",
	    "[:80",
	    "[]:80",
	    "[::1]",
	    "[::1]x:80",
	    "h.test:",
	    "h.test:0",
	    "h.test:65536",
	    "h.test:8x",
	    "h.test:-1",
	    "h.test:+80",
	    "[nothex]:80",
	    "[fe80::1%lo]:80",
	    "",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_int_eq(
		    conduit_endpoint_parse(
		        &ep,
		        "tls+tcp://h.test:80?connect-to=127.0.0.1:9"
		        "&key=/secret/k.pem",
		        NULL, 0),
		    CONDUIT_OK);
		const char *old = conduit_endpoint_option(ep, "connect-to");
		ck_assert_ptr_nonnull(old);
		for (size_t k = 0; k < ep->nopts; k++)
			if (strcmp(ep->opts[k].key, "connect-to") == 0) {
				free(ep->opts[k].value);
				ep->opts[k].value = strdup(bad[i]);
				ck_assert_ptr_nonnull(ep->opts[k].value);
			}
		int rc = cd_lookup(ctx, ep);
		const char *m = conduit_ctx_error(ctx);
		ck_assert_msg(rc == CONDUIT_ERR_OPTION,
		              "connect-to=%s: got %s (%s)", bad[i],
		              conduit_status_name(rc), m);
		ck_assert_msg(strstr(m, "connect-to") != NULL &&
		                  strstr(m, "HOST:PORT") != NULL &&
		                  strstr(m, "/secret") == NULL,
		              "connect-to=%s: message: %s", bad[i], m);
		ck_assert_uint_eq(conduit_endpoint_address_count(ep), 0);
		conduit_endpoint_free(ep);
	}

	/* A good value still sets the destination. */
	ck_assert_int_eq(
	    conduit_endpoint_parse(
	        &ep, "tcp://h.test:80?connect-to=%5B::1%5D:81", NULL, 0),
	    CONDUIT_OK);
	ck_status(cd_lookup(ctx, ep), CONDUIT_OK);
	ck_assert_int_eq(ep->dest_port, 81);
	ck_assert_uint_eq(conduit_endpoint_address_count(ep), 1);
	conduit_endpoint_free(ep);
	conduit_ctx_free(ctx);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Secrets in messages, events and explanations                        */

struct leak_watch {
	int events;
	char leak[256]; /* the first event that showed a secret */
};

static const char *const secrets[] = {"hunter2", "tok3n", "/secret"};

static const char *find_secret(const char *s)
{
	for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++)
		if (s != NULL && strstr(s, secrets[i]) != NULL)
			return secrets[i];
	return NULL;
}

static void watch_events(void *arg, const struct conduit_event *ev)
{
	struct leak_watch *w = arg;
	w->events++;
	if (w->leak[0] == '\0' &&
	    (find_secret(ev->uri) != NULL || find_secret(ev->detail) != NULL))
		snprintf(w->leak, sizeof(w->leak), "%s %s %s",
		         conduit_phase_name(ev->phase), ev->uri, ev->detail);
}

/*
 * Every path that shows an input URI or an endpoint URI: a lookup that
 * fails (through a rule and without), an unknown zone, a connect-to name
 * that does not resolve, a lookup function's odd answer, the rule and
 * endpoint steps of an explanation, and the observer's events.  Each URI
 * carries a password, a secret query value or a key file, or all three.
 */
START_TEST(secrets_stay_out_of_messages)
{
	conduit_ctx *ctx = rules_ctx();
	conduit_ctx_allow_uri_options(ctx, CONDUIT_URI_FILES);
	ck_assert_msg(
	    conduit_ctx_add_rules(
	        ctx,
	        "map keyed.test tls+tcp://nx.test:443?key=/secret/k.pem\n"
	        "map keyed-ok.test tls+tcp://127.0.0.1:443?key=/secret/k.pem\n"
	        "map keyed-ct.test tls+tcp://127.0.0.1:443?key=/secret/k.pem&"
	        "connect-to=nx.test:1\n",
	        "secret-rules") == CONDUIT_OK,
	    "%s", conduit_ctx_error(ctx));
	struct leak_watch w = {0};
	conduit_ctx_set_observer(ctx, watch_events, &w);
	static const struct {
		const char *uri;
		int status;
	} scases[] = {
	    {"https://u:hunter2@keyed.test/?token=tok3n", CONDUIT_ERR_RESOLVE},
	    {"https://u:hunter2@keyed-ok.test/?token=tok3n", CONDUIT_OK},
	    {"https://u:hunter2@keyed-ct.test/", CONDUIT_ERR_RESOLVE},
	    {"tls+tcp://nx.test:1?key=/secret/k.pem", CONDUIT_ERR_RESOLVE},
	    {"tls+tcp://127.0.0.1:1?key=/secret/k.pem&connect-to=nx.test:2",
	     CONDUIT_ERR_RESOLVE},
	    {"tls+tcp://[fe80::1%25nosuch0]:1?key=/secret/k.pem",
	     CONDUIT_ERR_HOST},
	    {"tls+tcp://h.test:1?key=/secret/k.pem", CONDUIT_OK},
	    {"https://u:hunter2@nx.test/?token=tok3n", CONDUIT_ERR_RESOLVE},
	};
	for (size_t i = 0; i < sizeof(scases) / sizeof(scases[0]); i++) {
		conduit_endpoint *ep = NULL;
		conduit_explain *x = NULL;
		int rc = conduit_resolve_explain(&ep, &x, ctx, scases[i].uri);
		const char *m = conduit_ctx_error(ctx);
		ck_assert_msg(rc == scases[i].status, "%s: got %s (%s)",
		              scases[i].uri, conduit_status_name(rc), m);
		if (rc != CONDUIT_OK)
			ck_assert_msg(find_secret(m) == NULL,
			              "%s: message shows %s: %s", scases[i].uri,
			              find_secret(m), m);
		ck_assert_uint_gt(conduit_explain_count(x), 1);
		for (size_t k = 0; k < conduit_explain_count(x); k++) {
			const char *st = conduit_explain_step(x, k);
			ck_assert_msg(find_secret(st) == NULL,
			              "%s: step shows %s: %s", scases[i].uri,
			              find_secret(st), st);
		}
		if (rc == CONDUIT_OK) /* the value itself is the secret kept */
			ck_assert_str_eq(conduit_endpoint_option(ep, "key"),
			                 "/secret/k.pem");
		conduit_explain_free(x);
		conduit_endpoint_free(ep);
		ck_assert_msg(w.leak[0] == '\0', "%s: event shows a secret: %s",
		              scases[i].uri, w.leak);
	}
	ck_assert_int_gt(w.events, 0);

	/* A lookup that fails through a rule names the URI as given and
	 * the endpoint the rule made, both redacted. */
	conduit_endpoint *ep = NULL;
	ck_status(conduit_resolve(&ep, ctx, "https://u:hunter2@keyed.test/"),
	          CONDUIT_ERR_RESOLVE);
	ck_assert_msg(strstr(conduit_ctx_error(ctx),
	                     "resolve https://u:****@keyed.test/ "
	                     "(tls+tcp://nx.test:443?key=****&servername="
	                     "keyed.test): nx.test") == conduit_ctx_error(ctx),
	              "message: %s", conduit_ctx_error(ctx));
	conduit_ctx_free(ctx);
}
END_TEST

/*
 * Connecting and listening: whatever fails, and at whichever layer (the
 * core, the transport, TLS), the message and the events show the endpoint
 * with its key= value hidden.
 */
START_TEST(secrets_stay_out_of_connects)
{
	conduit_ctx *ctx = rules_ctx();
	conduit_ctx_allow_uri_options(ctx, CONDUIT_URI_FILES);
	struct leak_watch w = {0};
	conduit_ctx_set_observer(ctx, watch_events, &w);
	static const char *const uris[] = {
	    "tls+tcp://127.0.0.1:1?key=/secret/k.pem",
	    "tls+tcp://127.0.0.1:1?cert=/public/c.pem&key=/secret/k.pem",
	    "tls+unix:///nonexistent/dir/s.sock?key=/secret/k.pem",
	    "tls+vchan://0/port?key=/secret/k.pem",
	    "https://u:hunter2@127.0.0.1:1/?token=tok3n",
	};
	for (size_t i = 0; i < sizeof(uris) / sizeof(uris[0]); i++) {
		conduit_flow *f = NULL;
		int rc = conduit_connect_wait(&f, ctx, uris[i], 2000);
		ck_assert_msg(rc != CONDUIT_OK, "%s connected", uris[i]);
		const char *m = conduit_ctx_error(ctx);
		ck_assert_msg(m[0] != '\0', "%s: no message", uris[i]);
		ck_assert_msg(find_secret(m) == NULL,
		              "%s: message shows %s: %s", uris[i],
		              find_secret(m), m);
		conduit_listener *l = NULL;
		rc = conduit_listen(&l, ctx, uris[i]);
		if (rc == CONDUIT_OK) {
			ck_assert_msg(find_secret(conduit_listener_uri(l)) ==
			                  NULL,
			              "%s: listener shows %s", uris[i],
			              conduit_listener_uri(l));
			conduit_listener_free(l);
		} else {
			m = conduit_ctx_error(ctx);
			ck_assert_msg(find_secret(m) == NULL,
			              "listen %s: message shows %s: %s",
			              uris[i], find_secret(m), m);
		}
		ck_assert_msg(w.leak[0] == '\0', "%s: event shows a secret: %s",
		              uris[i], w.leak);
	}
	ck_assert_int_gt(w.events, 0);
	conduit_ctx_free(ctx);
}
END_TEST

/* The explanation says which of the URI's options a map rule kept, which
 * it dropped and which the rule's own replaced. */
START_TEST(map_rule_tls_options_explained)
{
	conduit_ctx *ctx = rules_ctx();
	conduit_ctx_allow_uri_options(ctx, CONDUIT_URI_FILES);
	conduit_endpoint *ep = NULL;
	conduit_explain *x = NULL;
	ck_status(conduit_resolve_explain(
	              &ep, &x, ctx,
	              "tls+tcp://pinned-alpn.example:1?alpn=http/1.1&"
	              "ca=/etc/ca.pem&nodelay=0"),
	          CONDUIT_OK);
	ck_assert_str_eq(conduit_endpoint_uri(ep),
	                 "tls+tcp://10.1.1.2:8443?alpn=h2&ca=/etc/ca.pem&"
	                 "servername=pinned-alpn.example");
	bool kept = false, dropped = false, replaced = false;
	for (size_t i = 0; i < conduit_explain_count(x); i++) {
		const char *st = conduit_explain_step(x, i);
		if (strcmp(st,
		           "tls: the URI's ca kept over the rule's target") ==
		    0)
			kept = true;
		if (strcmp(st, "rule: the URI's nodelay dropped (the rule's "
		               "target sets the transport)") == 0)
			dropped = true;
		if (strcmp(st, "tls: the URI's alpn replaced by the rule's") ==
		    0)
			replaced = true;
	}
	ck_assert_msg(kept && dropped && replaced,
	              "kept %d dropped %d replaced %d", kept, dropped,
	              replaced);
	conduit_explain_free(x);
	conduit_endpoint_free(ep);

	/* The URI's insecure option stays refused when the context does not
	 * allow it: the check comes before any rule. */
	ck_status(conduit_resolve(
	              &ep, ctx, "tls+tcp://db.internal:1?insecure-no-verify=1"),
	          CONDUIT_ERR_OPTION);
	ck_assert_ptr_null(ep);
	conduit_ctx_free(ctx);
}
END_TEST

/* ------------------------------------------------------------------ */
/* What a context's lookup function returns                            */

static int dup_lookup(void *arg, const char *host, struct conduit_addr *a,
                      size_t cap, size_t *n)
{
	(void)arg;
	(void)host;
	if (cap < 7)
		return CONDUIT_ERR_RESOLVE;
	a[0] = fk_addr("127.0.0.1");
	a[1] = fk_addr("::1");
	a[2] = fk_addr("127.0.0.1");
	/* The same IPv4 address with bytes a lookup need not clear. */
	memset(a[2].bytes + 4, 0xa5, 12);
	a[2].scope = 7;
	a[3] = fk_addr("::1");
	a[4] = fk_addr("10.0.0.1");
	a[5] = fk_addr("::1");
	a[5].scope = 2; /* another interface: another address */
	a[6] = fk_addr("127.0.0.1");
	*n = 7;
	return CONDUIT_OK;
}

START_TEST(custom_lookup_duplicates_removed)
{
	conduit_ctx *ctx = fk_new_ctx();
	conduit_ctx_set_lookup(ctx, dup_lookup, NULL);
	conduit_endpoint *ep = NULL;
	conduit_explain *x = NULL;
	ck_status(conduit_resolve_explain(&ep, &x, ctx, "tcp://dup.test:80"),
	          CONDUIT_OK);
	static const char *const want[] = {"127.0.0.1", "::1", "10.0.0.1",
	                                   "::1%2"};
	size_t n = conduit_endpoint_address_count(ep);
	ck_assert_uint_eq(n, sizeof(want) / sizeof(want[0]));
	for (size_t i = 0; i < n; i++) {
		const struct conduit_addr *a = conduit_endpoint_address(ep, i);
		char b[64];
		ck_assert_str_eq(conduit_addr_format(a, b, sizeof(b)), want[i]);
		if (a->family == CONDUIT_AF_INET) {
			static const uint8_t zero[12];
			ck_assert_mem_eq(a->bytes + 4, zero, 12);
			ck_assert_uint_eq(a->scope, 0);
		}
	}
	bool saw = false;
	for (size_t i = 0; i < conduit_explain_count(x); i++)
		if (strcmp(conduit_explain_step(x, i),
		           "addresses: 127.0.0.1, ::1, 10.0.0.1, ::1%2") == 0)
			saw = true;
	ck_assert(saw);
	conduit_explain_free(x);
	conduit_endpoint_free(ep);
	conduit_ctx_free(ctx);
}
END_TEST

/* What odd_lookup answers: a status, and how many addresses it claims. */
struct odd_answer {
	int status;
	size_t n;   /* SIZE_MAX: one more than cap */
	int family; /* of the first address */
};

static int odd_lookup(void *arg, const char *host, struct conduit_addr *a,
                      size_t cap, size_t *n)
{
	const struct odd_answer *ans = arg;
	(void)host;
	if (cap > 0) {
		a[0] = fk_addr("127.0.0.1");
		a[0].family = ans->family;
	}
	*n = ans->n == SIZE_MAX ? cap + 1 : ans->n;
	return ans->status;
}

START_TEST(custom_lookup_odd_statuses)
{
	static const struct {
		struct odd_answer ans;
		int want;
		const char *why;
	} ocases[] = {
	    {{CONDUIT_WANT_READ, 1, CONDUIT_AF_INET},
	     CONDUIT_ERR_RESOLVE,
	     "CONDUIT_WANT_READ"},
	    {{CONDUIT_WANT_WRITE, 0, CONDUIT_AF_INET},
	     CONDUIT_ERR_RESOLVE,
	     "CONDUIT_WANT_WRITE"},
	    {{CONDUIT_EOF, 0, CONDUIT_AF_INET},
	     CONDUIT_ERR_RESOLVE,
	     "CONDUIT_EOF"},
	    {{12345, 1, CONDUIT_AF_INET}, CONDUIT_ERR_RESOLVE, "12345"},
	    {{-3, 1, CONDUIT_AF_INET}, CONDUIT_ERR_RESOLVE, "-3"},
	    {{CONDUIT_ERR_TIMED_OUT, 0, CONDUIT_AF_INET},
	     CONDUIT_ERR_RESOLVE,
	     "timed out"},
	    {{CONDUIT_OK, 0, CONDUIT_AF_INET},
	     CONDUIT_ERR_RESOLVE,
	     "no address"},
	    {{CONDUIT_OK, SIZE_MAX, CONDUIT_AF_INET},
	     CONDUIT_ERR_RESOLVE,
	     "room for"},
	    {{CONDUIT_OK, 1, 0}, CONDUIT_ERR_RESOLVE, "family 0"},
	    {{CONDUIT_OK, 1, 5}, CONDUIT_ERR_RESOLVE, "family 5"},
	    {{CONDUIT_ERR_RESOLVE, 0, CONDUIT_AF_INET},
	     CONDUIT_ERR_RESOLVE,
	     "no address found"},
	    {{CONDUIT_ERR_NOMEM, 0, CONDUIT_AF_INET},
	     CONDUIT_ERR_NOMEM,
	     "out of memory"},
	    {{CONDUIT_OK, 1, CONDUIT_AF_INET}, CONDUIT_OK, NULL},
	};
	for (size_t i = 0; i < sizeof(ocases) / sizeof(ocases[0]); i++) {
		conduit_ctx *ctx = fk_new_ctx();
		conduit_ctx_set_lookup(ctx, odd_lookup, (void *)&ocases[i].ans);
		conduit_endpoint *ep = NULL;
		int rc = conduit_resolve(&ep, ctx, "tcp://odd.test:80");
		const char *m = conduit_ctx_error(ctx);
		ck_assert_msg(rc == ocases[i].want, "case %zu: got %s (%s)", i,
		              conduit_status_name(rc), m);
		if (rc != CONDUIT_OK) {
			ck_assert_ptr_null(ep);
			ck_assert_msg(strstr(m, "resolve tcp://odd.test:80: "
			                        "odd.test: ") == m &&
			                  strstr(m, ocases[i].why) != NULL,
			              "case %zu: message: %s", i, m);
		} else {
			ck_assert_uint_eq(conduit_endpoint_address_count(ep),
			                  1);
		}
		/* A connect reports the same, never a "want". */
		conduit_flow *f = NULL;
		if (rc != CONDUIT_OK)
			ck_status(conduit_connect(&f, ctx, "tcp://odd.test:80"),
			          ocases[i].want);
		ck_assert_ptr_null(f);
		conduit_endpoint_free(ep);
		conduit_ctx_free(ctx);
	}
}
END_TEST

int main(void)
{
	const struct cd_test tests[] = {
	    CD_TEST(explain_steps, 10),
	    CD_TEST(tls_server_name_step, 10),
	    CD_TEST(bad_rules_keep_the_old_ones, 10),
	    CD_TEST(rules_from_a_file, 10),
	    CD_TEST(untrusted_uri_options, 10),
	    CD_TEST(name_with_a_silent_first_address, 20),
	    CD_TEST(fuzz_mutated_uris, 30),
	    CD_TEST(connect_to_value_checked, 10),
	    CD_TEST(secrets_stay_out_of_messages, 10),
	    CD_TEST(secrets_stay_out_of_connects, 20),
	    CD_TEST(map_rule_tls_options_explained, 10),
	    CD_TEST(custom_lookup_duplicates_removed, 10),
	    CD_TEST(custom_lookup_odd_statuses, 10),
	};
	Suite *s = cd_suite("resolve", tests, sizeof(tests) / sizeof(tests[0]));
	cd_suite_add_loop(s, "rule_table", rule_table,
	                  (int)(sizeof(cases) / sizeof(cases[0])), 10);
	return cd_run(s);
}
