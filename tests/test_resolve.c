/*
 * test_resolve.c - the resolver: service table, map and connect-to rules
 * (label boundaries, specificity, captures, TLS kept but never doubled,
 * the logical name kept for TLS), explanations, secrets kept out of
 * messages, rules that fail to load leaving the old ones in place, and a
 * name whose first address is silent losing the connect race.
 *
 * Names are looked up through a context lookup function (a static table)
 * so that no test depends on, or sends anything to, a name server.
 */
#include "flowkit.h"
#include "harness.h"

#include <conduit/conduit.h>

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
	"map *.bad tcp://{label}\n"
	"connect-to example.com:443 127.0.0.1:8443\n"
	"connect-to *.cdn.test:* 127.0.0.2:\n"
	"connect-to *:8080 [::1]:9090\n"
	"service myproto 7000\n"
	"service mysecure 7001 tls\n";

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
	{"https://user:secret@h.test/p?q=1#f", CONDUIT_OK,
	 "tls+tcp://h.test:443"},
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
	{"tcp://x.bad:1", CONDUIT_ERR_PORT, "the rule at common:8 gave"},
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
		ck_assert_int_eq(conduit_endpoint_parse(&again,
		                                        conduit_endpoint_uri(ep),
		                                        NULL, 0),
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
	ck_assert_int_eq(conduit_resolve_explain(&ep, &x, ctx,
	                                         "https://u:hunter2@logger.xen/"),
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
		ck_assert(strstr(conduit_explain_step(x, i), "hunter2") == NULL);
	}
	ck_assert_ptr_null(conduit_explain_step(x, n));
	conduit_explain_free(x);
	conduit_endpoint_free(ep);

	/* connect-to and the lookup */
	ck_assert_int_eq(conduit_resolve_explain(&ep, &x, ctx,
	                                         "https://example.com/"),
	                 CONDUIT_OK);
	bool saw_rule = false, saw_addr = false;
	for (size_t i = 0; i < conduit_explain_count(x); i++) {
		const char *s = conduit_explain_step(x, i);
		if (strstr(s, "rule: connect-to example.com") == s &&
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
	ck_assert_int_eq(conduit_resolve_explain(&ep, &x, ctx, "tcp://nx.test:1"),
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
	ck_assert_int_eq(conduit_ctx_add_rules(ctx,
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
	ck_assert_int_eq(conduit_resolve(&ep, ctx, "app://app.test"), CONDUIT_OK);
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
	ck_assert_int_eq(conduit_resolve(&ep, ctx, "app://app.test"), CONDUIT_OK);
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
	ck_assert_ptr_nonnull(strstr(conduit_ctx_error(ctx), "ca names a file"));
	ck_assert_int_eq(conduit_resolve(&ep, ctx, weak), CONDUIT_ERR_OPTION);
	ck_assert_ptr_nonnull(
		strstr(conduit_ctx_error(ctx), "weakens security"));
	/* Harmless options need nothing. */
	ck_assert_int_eq(conduit_resolve(&ep, ctx,
	                                 "tls+tcp://h.test:1?alpn=h2,http/1.1"),
	                 CONDUIT_OK);
	conduit_endpoint_free(ep);

	conduit_ctx_allow_uri_options(ctx, CONDUIT_URI_FILES);
	ck_assert_int_eq(conduit_resolve(&ep, ctx, ca), CONDUIT_OK);
	ck_assert_str_eq(conduit_endpoint_option(ep, "ca"), "/etc/ssl/ca.pem");
	conduit_endpoint_free(ep);
	ck_assert_int_eq(conduit_resolve(&ep, ctx, weak), CONDUIT_ERR_OPTION);
	conduit_ctx_allow_uri_options(ctx, CONDUIT_URI_FILES |
	                                           CONDUIT_URI_INSECURE);
	ck_assert_int_eq(conduit_resolve(&ep, ctx, weak), CONDUIT_OK);
	conduit_endpoint_free(ep);

	/* A rule may name files: it is configuration, not input. */
	conduit_ctx_allow_uri_options(ctx, 0);
	ck_assert_int_eq(conduit_ctx_add_rules(ctx,
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

int main(void)
{
	const struct cd_test tests[] = {
		CD_TEST(explain_steps, 10),
		CD_TEST(bad_rules_keep_the_old_ones, 10),
		CD_TEST(rules_from_a_file, 10),
		CD_TEST(untrusted_uri_options, 10),
		CD_TEST(name_with_a_silent_first_address, 20),
	};
	Suite *s = cd_suite("resolve", tests, sizeof(tests) / sizeof(tests[0]));
	cd_suite_add_loop(s, "rule_table", rule_table,
	                  (int)(sizeof(cases) / sizeof(cases[0])), 10);
	return cd_run(s);
}
