/*
 * fuzz_rules.c - the rules parser.  Every input is loaded as a rules file
 * on a fresh context; a refusal's message must be printable, and a file
 * that loads must then resolve a handful of URIs (which may hit its rules)
 * with printable results and no failure of the resolver's own checks.
 */
#include "fuzzkit.h"

#include <stdlib.h>
#include <string.h>

static int lookup(void *arg, const char *host, struct conduit_addr *addrs,
                  size_t cap, size_t *n)
{
	(void)arg;
	(void)host;
	if (cap < 1)
		return CONDUIT_ERR_RESOLVE;
	memset(addrs, 0, sizeof(*addrs));
	addrs[0].family = CONDUIT_AF_INET;
	addrs[0].bytes[0] = 192;
	addrs[0].bytes[2] = 2;
	addrs[0].bytes[3] = 7;
	*n = 1;
	return CONDUIT_OK;
}

static const char *const probes[] = {
    "https://a.xen/",      "tcp://db.internal:80", "imaps://mail.test",
    "echo://x.y.xen/",     "tcp://api.test:443",   "unix:///run/app.sock",
    "https://[::1]:8443/", "fuzzsvc://h.test",     "tls://b.test:1",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	conduit_ctx *ctx = NULL;
	if (conduit_ctx_new(&ctx) != CONDUIT_OK)
		abort();
	conduit_ctx_set_lookup(ctx, lookup, NULL);
	struct fz_log log = {0};
	char *text = malloc(size + 1);
	if (text == NULL)
		abort();
	memcpy(text, data, size);
	text[size] = '\0';
	conduit_ctx_set_observer(ctx, fz_observe, &log);
	int rc = conduit_ctx_add_rules(ctx, text, "fuzz.rules");
	fz_log_add(&log, "load", conduit_status_name(rc));
	if (rc != CONDUIT_OK) {
		fz_log_add(&log, "error", conduit_ctx_error(ctx));
	} else {
		for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]);
		     i++) {
			conduit_endpoint *ep = NULL;
			conduit_explain *x = NULL;
			rc = conduit_resolve_explain(&ep, &x, ctx, probes[i]);
			if (rc != CONDUIT_OK)
				fz_log_add(&log, "error",
				           conduit_ctx_error(ctx));
			for (size_t k = 0; k < conduit_explain_count(x); k++)
				fz_log_add(&log, "explain",
				           conduit_explain_step(x, k));
			conduit_explain_free(x);
			conduit_endpoint_free(ep);
		}
	}
	fz_check_printable(&log);
	fz_log_free(&log);
	free(text);
	conduit_ctx_free(ctx);
	return 0;
}
