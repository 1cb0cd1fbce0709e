/*
 * test_grammar.c - the URI grammar's tables and the endpoints built on
 * them without printing and parsing text: which transports and layers
 * exist and what each carries, options and layers put on an endpoint
 * value (checked as the parser checks them), a layer's scheme alone
 * ("tls://") where a caller takes the shorthand, and the two callers that
 * used to rewrite URI text: conduit_listen and conduit_starttls.
 */
#include "core.h"
#include "flowkit.h"
#include "harness.h"

#include <stdio.h>
#include <string.h>

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static conduit_endpoint *parse_ok(const char *uri)
{
	conduit_endpoint *ep = NULL;
	char msg[256];
	int rc = conduit_endpoint_parse(&ep, uri, msg, sizeof(msg));
	ck_assert_msg(rc == CONDUIT_OK, "%s: %s", uri, msg);
	return ep;
}

/* The table says what each transport's URIs carry, and the parser
 * agrees: a sample URI of each gives the parts the table promises. */
START_TEST(transports_carry_what_the_table_says)
{
	static const struct {
		const char *name, *sample;
	} samples[] = {
	    {"tcp", "tcp://h.test:80"},
	    {"unix", "unix:///run/x.sock"},
	    {"unix-abstract", "unix-abstract://x"},
	    {"vchan", "vchan://logger/syslog"},
	    {"mem", "mem://1/a"},
	};
	size_t n = 0;
	while (cd_grammar_transport_at(n) != NULL)
		n++;
	ck_assert_uint_eq(n, NELEM(samples));
	for (size_t i = 0; i < NELEM(samples); i++) {
		const struct cd_transport *tp = cd_grammar_transport(
		    samples[i].name, strlen(samples[i].name));
		ck_assert_ptr_nonnull(tp);
		ck_assert_str_eq(tp->name, samples[i].name);
		conduit_endpoint *ep = parse_ok(samples[i].sample);
		/* Endpoints point to the table's own name. */
		ck_assert_ptr_eq(ep->transport, tp->name);
		ck_assert_int_eq(ep->port >= 0, tp->has_port);
		ck_assert_int_eq(ep->host[0] != '\0', tp->has_host);
		ck_assert_int_eq(ep->path[0] != '\0', tp->has_path);
		ck_assert_int_eq(ep->host_kind == CONDUIT_HOST_NAME, tp->inet);
		/* Every option of the table is one the endpoint may carry,
		 * and the keys are sorted. */
		for (size_t k = 0; k < tp->nopts; k++) {
			ck_assert_ptr_eq(cd_grammar_option(ep, tp->opts[k].key),
			                 &tp->opts[k]);
			if (k > 0)
				ck_assert_int_lt(strcmp(tp->opts[k - 1].key,
				                        tp->opts[k].key),
				                 0);
		}
		ck_assert_ptr_null(cd_grammar_option(ep, "servername"));
		conduit_endpoint_free(ep);
	}
	ck_assert_ptr_nonnull(cd_grammar_transport("TCP", 3));
	ck_assert_ptr_null(cd_grammar_transport("tcp", 2));
	ck_assert_ptr_null(cd_grammar_transport("tls", 3));
	ck_assert_ptr_null(cd_grammar_transport("udp", 3));
	const struct cd_layer *tls = cd_grammar_layer("tls", 3);
	ck_assert_ptr_nonnull(tls);
	ck_assert_str_eq(tls->alone_over, "tcp");
	ck_assert_ptr_nonnull(cd_grammar_layer_option(tls, "alpn", 4));
	ck_assert_ptr_null(cd_grammar_layer_option(tls, "nodelay", 7));
	ck_assert_ptr_null(cd_grammar_layer("tcp", 3));
}
END_TEST

/* A layer and options put on a value give the endpoint the URI would. */
START_TEST(layers_and_options_on_the_value)
{
	const struct cd_layer *tls = cd_grammar_layer("tls", 3);
	char why[256];
	conduit_endpoint *ep = parse_ok("tcp://H.test:443?nodelay=1");
	ck_status(cd_endpoint_add_option(ep, "servername", "x.test", why,
	                                 sizeof(why)),
	          CONDUIT_ERR_OPTION); /* no TLS yet: not a tcp option */
	ck_assert_str_eq(why, "unknown option \"servername\" for tcp");
	ck_status(cd_endpoint_add_layer(ep, tls, why, sizeof(why)), CONDUIT_OK);
	ck_status(cd_endpoint_add_option(ep, "servername", "Name.TEST", why,
	                                 sizeof(why)),
	          CONDUIT_OK);
	ck_status(cd_endpoint_add_option(ep, "alpn", "h2", why, sizeof(why)),
	          CONDUIT_OK);
	conduit_endpoint *want =
	    parse_ok("tls+tcp://h.test:443?servername=name.test&alpn=h2&"
	             "nodelay=1");
	ck_assert_str_eq(conduit_endpoint_uri(ep), conduit_endpoint_uri(want));
	ck_assert(conduit_endpoint_equal(ep, want));
	ck_assert_str_eq(conduit_endpoint_uri(ep),
	                 "tls+tcp://h.test:443?alpn=h2&nodelay=1&"
	                 "servername=name.test");

	/* What the parser refuses, this refuses, saying why. */
	ck_status(cd_endpoint_add_layer(ep, tls, why, sizeof(why)),
	          CONDUIT_ERR_SCHEME);
	ck_assert_str_eq(why, "tls layer given twice");
	ck_status(cd_endpoint_add_option(ep, "alpn", "h3", why, sizeof(why)),
	          CONDUIT_ERR_OPTION);
	ck_assert_str_eq(why, "option alpn given twice");
	ck_status(cd_endpoint_add_option(ep, "insecure-no-verify", "yes", why,
	                                 sizeof(why)),
	          CONDUIT_ERR_OPTION);
	ck_assert_msg(strstr(why, "invalid value \"yes\" for option "
	                          "insecure-no-verify") == why,
	              "%s", why);
	/* A secret-looking key's value is never quoted. */
	ck_status(cd_endpoint_add_option(ep, "key", "", why, sizeof(why)),
	          CONDUIT_ERR_OPTION);
	ck_assert_msg(strstr(why, "\"****\" for option key") != NULL, "%s",
	              why);
	/* Refusals leave the value as it was. */
	ck_assert(conduit_endpoint_equal(ep, want));
	conduit_endpoint_free(want);

	/* No room for another layer. */
	conduit_endpoint *full = parse_ok("tcp://h.test:1");
	full->nlayers = CD_MAX_LAYERS;
	for (size_t i = 0; i < CD_MAX_LAYERS; i++)
		full->layers[i] = "other";
	ck_status(cd_endpoint_add_layer(full, tls, why, sizeof(why)),
	          CONDUIT_ERR_SCHEME);
	ck_assert_uint_eq(full->nlayers, CD_MAX_LAYERS);
	conduit_endpoint_free(full);
	conduit_endpoint_free(ep);
}
END_TEST

/* "tls://" is tls over the layer's transport only where asked for. */
START_TEST(a_layer_alone_where_taken)
{
	char msg[256];
	conduit_endpoint *ep = NULL;
	ck_status(
	    conduit_endpoint_parse(&ep, "tls://h.test:1", msg, sizeof(msg)),
	    CONDUIT_ERR_SCHEME);
	ck_assert_ptr_nonnull(strstr(msg, "\"tls\" is a layer"));
	ck_assert_ptr_null(ep);
	ck_status(cd_endpoint_parse(&ep, "TLS://h.test:1?alpn=h2&nodelay=0",
	                            CD_PARSE_LAYER_ALONE, msg, sizeof(msg)),
	          CONDUIT_OK);
	conduit_endpoint *want =
	    parse_ok("tls+tcp://h.test:1?alpn=h2&nodelay=0");
	ck_assert(conduit_endpoint_equal(ep, want));
	ck_assert_str_eq(conduit_endpoint_uri(ep), conduit_endpoint_uri(want));
	conduit_endpoint_free(ep);
	conduit_endpoint_free(want);
	/* Errors name the URI as given. */
	ck_status(cd_endpoint_parse(&ep, "tls://h.test:99999",
	                            CD_PARSE_LAYER_ALONE, msg, sizeof(msg)),
	          CONDUIT_ERR_PORT);
	ck_assert_msg(strstr(msg, "tls://h.test:99999: ") == msg, "%s", msg);
	/* A layer over a layer alone is still no transport. */
	ck_status(cd_endpoint_parse(&ep, "tls+tls://h.test:1",
	                            CD_PARSE_LAYER_ALONE, msg, sizeof(msg)),
	          CONDUIT_ERR_SCHEME);
}
END_TEST

START_TEST(listen_takes_the_shorthand)
{
	conduit_ctx *ctx = fk_new_ctx();
	conduit_listener *l = NULL;
	ck_status(conduit_listen(&l, ctx, "tls://127.0.0.1:99999"),
	          CONDUIT_ERR_PORT);
	ck_assert_ptr_null(l);
	ck_assert_msg(
	    strstr(conduit_ctx_error(ctx), "listen tls://127.0.0.1:99999: ") ==
	        conduit_ctx_error(ctx),
	    "%s", conduit_ctx_error(ctx));
	ck_status(conduit_listen(&l, ctx, "tls+vchan://1/x?nodelay=1"),
	          CONDUIT_ERR_OPTION);
	conduit_ctx_free(ctx);
}
END_TEST

#if defined(CONDUIT_HAVE_TLS) && defined(CONDUIT_HAVE_TCP)
/* StartTLS puts the layer on the flow's endpoint: a bad server name is
 * refused with the reason, and the flow stays the application's. */
START_TEST(starttls_checks_the_server_name)
{
	conduit_ctx *ctx = fk_new_ctx();
	conduit_listener *l = fk_listen(ctx, "tcp://127.0.0.1:0");
	conduit_flow *c = NULL, *s = NULL;
	fk_pair(ctx, l, NULL, &c, &s);
	conduit_flow *before = c;
	ck_status(conduit_starttls(&c, CONDUIT_ROLE_CLIENT, "bad name"),
	          CONDUIT_ERR_OPTION);
	ck_assert_ptr_eq(c, before);
	char want[300];
	snprintf(want, sizeof(want),
	         "starttls %s: invalid value \"bad name\" for option "
	         "servername: ",
	         conduit_flow_uri(c));
	ck_assert_msg(strstr(conduit_flow_error(c), want) ==
	                  conduit_flow_error(c),
	              "%s", conduit_flow_error(c));
	fk_exchange(c, s);
	fk_free_all(c, s, l, ctx);
}
END_TEST
#endif

int main(void)
{
	const struct cd_test tests[] = {
		CD_TEST(transports_carry_what_the_table_says, 0),
		CD_TEST(layers_and_options_on_the_value, 0),
		CD_TEST(a_layer_alone_where_taken, 0),
		CD_TEST(listen_takes_the_shorthand, 0),
#if defined(CONDUIT_HAVE_TLS) && defined(CONDUIT_HAVE_TCP)
		CD_TEST(starttls_checks_the_server_name, 0),
#endif
	};
	return cd_run(cd_suite("grammar", tests, NELEM(tests)));
}
