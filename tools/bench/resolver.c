/*
 * resolver.c - conduit-bench's resolver figure.
 */
#include "sock.h"

#include <stdio.h>

/*
 * Resolutions per second of a URI that rules resolve without DNS
 * (https://logger.xen/ through "map *.xen ..."), beside the baseline of
 * parsing the resulting endpoint URI alone: the ratio is what the service
 * table, the rule and the TLS merge cost on top of one parse.  One
 * process, no peer.
 */
#define RESOLVE_URI  "https://logger.xen/"
#define RESOLVE_RULE "map *.xen unix-abstract://xen-{label}-{scheme}\n"

/* The two-variant order of round i. */
static enum api turn(unsigned i, int k)
{
	return ((i + (unsigned)k) & 1) ? API_CONDUIT : API_RAW;
}

static int resolve_loop(enum api a, conduit_ctx *ctx, const char *result,
                        unsigned n, double *secs)
{
	uint64_t t0 = tool_now_ns();
	for (unsigned i = 0; i < n; i++) {
		conduit_endpoint *ep = NULL;
		int rc = a == API_CONDUIT
		             ? conduit_resolve(&ep, ctx, RESOLVE_URI)
		             : conduit_endpoint_parse(&ep, result, NULL, 0);
		if (rc != CONDUIT_OK) {
			bench_fail("%s", conduit_ctx_error(ctx));
			return -1;
		}
		conduit_endpoint_free(ep);
	}
	*secs = (double)(tool_now_ns() - t0) / 1e9;
	return 0;
}

int bench_resolver(const struct bench_settings *settings)
{
	(void)settings;
	struct row *r = add_row(T_RESOLVE, "resolve_rate", "1/s", true, 0);
	conduit_ctx *ctx = NULL;
	if (r == NULL || conduit_ctx_new(&ctx) != CONDUIT_OK ||
	    conduit_ctx_add_rules(ctx, RESOLVE_RULE, "bench") != CONDUIT_OK) {
		bench_fail("cannot set up the resolver context");
		conduit_ctx_free(ctx);
		return fail_figure(T_RESOLVE, "resolutions", API_CONDUIT);
	}
	snprintf(r->label, sizeof(r->label), "rule-based resolve (/s)");
	conduit_endpoint *ep = NULL;
	if (conduit_resolve(&ep, ctx, RESOLVE_URI) != CONDUIT_OK) {
		bench_fail("%s", conduit_ctx_error(ctx));
		conduit_ctx_free(ctx);
		return fail_figure(T_RESOLVE, "resolutions", API_CONDUIT);
	}
	char result[256];
	snprintf(result, sizeof(result), "%s", conduit_endpoint_uri(ep));
	conduit_endpoint_free(ep);
	unsigned n = P.quick ? 50000 : 200000;
	r->amount_name = "resolutions";
	r->amount = n;
	double s = 0;
	for (int k = 0; k < 2; k++) /* warm-up */
		if (resolve_loop(turn(0, k), ctx, result, n / 10, &s) < 0) {
			conduit_ctx_free(ctx);
			return fail_figure(T_RESOLVE, "resolutions",
			                   turn(0, k));
		}
	for (unsigned i = 0; i < P.repeats; i++) {
		double v[NAPI] = {0, 0, 0};
		for (int k = 0; k < 2; k++) {
			enum api a = turn(i, k);
			if (resolve_loop(a, ctx, result, n, &s) < 0) {
				conduit_ctx_free(ctx);
				return fail_figure(T_RESOLVE, "resolutions", a);
			}
			v[a] = s > 0 ? n / s : 0;
		}
		row_add(r, v);
	}
	conduit_ctx_free(ctx);
	row_finish(r);
	return 0;
}

void bench_resolver_epilogue(void)
{
	if (!report_is_json())
		printf("\nresolver: %s through a *.xen rule; its baseline is\n"
		       "parsing the resulting endpoint URI alone.\n",
		       RESOLVE_URI);
}
