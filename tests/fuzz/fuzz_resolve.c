/*
 * fuzz_resolve.c - the resolver with explain, on a context with rules, a
 * service of its own and a lookup hook that answers every name with two
 * documentation addresses (no DNS; nothing is ever connected).  Every
 * message, explain step, observer event and printed endpoint must be
 * printable, and a URI built around a secret value must show the same
 * thing whatever the value, and never the value.
 */
#include "core.h"
#include "fuzzkit.h"

#include <stdlib.h>
#include <string.h>

static const char rules[] = "# rules the inputs may hit\n"
                            "map *.xen vchan://{label}/{scheme}\n"
                            "map db.internal tcp://127.0.0.1:5432\n"
                            "map sock.test unix:///run/app.sock\n"
                            "connect-to api.test:443 127.0.0.1:8443\n"
                            "connect-to *:8080 [::1]:8081\n"
                            "service fuzzsvc 7000 tls\n";

static int lookup(void *arg, const char *host, struct conduit_addr *addrs,
                  size_t cap, size_t *n)
{
	(void)arg;
	if (cap < 2 || strcmp(host, "nowhere.test") == 0)
		return CONDUIT_ERR_RESOLVE;
	memset(addrs, 0, 2 * sizeof(*addrs));
	addrs[0].family = CONDUIT_AF_INET6;
	addrs[0].bytes[0] = 0x20;
	addrs[0].bytes[1] = 0x01;
	addrs[0].bytes[2] = 0x0d;
	addrs[0].bytes[3] = 0xb8;
	addrs[0].bytes[15] = 1;
	addrs[1].family = CONDUIT_AF_INET;
	addrs[1].bytes[0] = 192;
	addrs[1].bytes[2] = 2;
	addrs[1].bytes[3] = 1;
	*n = 2;
	return CONDUIT_OK;
}

static conduit_ctx *ctx;
static struct fz_log *current;

static void observe(void *arg, const struct conduit_event *ev)
{
	(void)arg;
	if (current != NULL)
		fz_observe(current, ev);
}

static void setup(void)
{
	if (ctx != NULL)
		return;
	if (conduit_ctx_new(&ctx) != CONDUIT_OK ||
	    conduit_ctx_add_rules(ctx, rules, "fuzz.rules") != CONDUIT_OK)
		abort();
	conduit_ctx_set_lookup(ctx, lookup, NULL);
	conduit_ctx_set_observer(ctx, observe, NULL);
}

static void resolve_once(const char *uri, struct fz_log *log)
{
	current = log;
	conduit_endpoint *ep = NULL;
	conduit_explain *x = NULL;
	int rc = conduit_resolve_explain(&ep, &x, ctx, uri);
	fz_log_add(log, "status", conduit_status_name(rc));
	if (rc != CONDUIT_OK)
		fz_log_add(log, "error", conduit_ctx_error(ctx));
	for (size_t i = 0; i < conduit_explain_count(x); i++)
		fz_log_add(log, "explain", conduit_explain_step(x, i));
	if (ep != NULL)
		fz_log_add(log, "shown", cd_endpoint_shown(ep));
	conduit_explain_free(x);
	conduit_endpoint_free(ep);
	current = NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	setup();
	fz_check_uri_input(data, size, resolve_once);
	return 0;
}
